"""Managed nodes: every node is a ROS 2 lifecycle node when its `lifecycle` parameter is true.

The states, as a drone uses them (nav2's lifecycle manager and `ros2 lifecycle` drive
them through the standard `<node>/change_state`, `get_state`, `get_available_states`,
`get_available_transitions` services and the `transition_event` topic):

- configure: parameters read and checked, the model loaded, publishers made (inactive).
  A bad parameter or a missing model fails the transition with the reason (logged, on
  /diagnostics at ERROR); the node stays unconfigured and its process alive, so a
  corrected parameter (`ros2 param set`) and a second configure can succeed.
- activate: subscriptions and camera capture start, results flow.
- deactivate: nothing is captured or computed (the camera device is closed, the
  subscriptions are gone); the model stays loaded, so activating again is quick.
- cleanup: the model is freed; shutdown: from any state.

With `lifecycle: false` (the default) the node configures and activates itself in its
constructor: a plain node, as before, with no lifecycle services. With `lifecycle: true`
and `autostart: true` it does the same through its state machine (launch files, the
pipeline); with `autostart: false` it waits, unconfigured, for a manager.

A subclass implements `declare` (its parameters, once), `configure`, `activate`,
`deactivate` and `cleanup`, and makes its result publishers with `make_publisher`.
"""

import gc

from rclpy.lifecycle import LifecycleNodeMixin, TransitionCallbackReturn
from rclpy.node import Node

from cnn_perception.errors import UserError
from cnn_perception.nodes.common import ERROR, OK, Diagnostics, declare_params, read_params
from cnn_perception.params import Param
from cnn_perception.runtime import trim_heap

LIFECYCLE_PARAMS = [
    Param(
        'lifecycle',
        False,
        'A managed (lifecycle) node: configure / activate / deactivate / cleanup through the '
        'standard lifecycle services; false: a plain node that starts active',
    ),
    Param(
        'autostart',
        True,
        'With lifecycle: configure and activate at start-up; false: wait unconfigured for '
        'a lifecycle manager',
    ),
]
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNodeMixin, Node):
    """A node with configure / activate / deactivate / cleanup, managed or self-started."""

    def __init__(self, name: str, hardware_id: str = '', **kwargs):
        Node.__init__(self, name, **kwargs)
        declare_params(self, LIFECYCLE_PARAMS)
        flags = read_params(self, LIFECYCLE_PARAMS)
        self.managed = flags['lifecycle']
        LifecycleNodeMixin.__init__(self, enable_communication_interface=self.managed)
        self.configured = self.active = False
        self.diag = Diagnostics(self, hardware_id=hardware_id)
        self.declare()
        if not self.managed:
            self._configure()  # a UserError stops the node, as for any plain node
            self._activate()
            return
        self.diag.set(OK, 'unconfigured')
        if flags['autostart'] and self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    # What a subclass implements
    def declare(self) -> None:
        """Declare the node's parameters (once, at construction)."""

    def configure(self) -> None:
        """Read the parameters, load the model, make the publishers; UserError: why not."""

    def activate(self) -> None:
        """Start the subscriptions / the capture."""

    def deactivate(self) -> None:
        """Stop them; nothing runs until `activate`."""

    def cleanup(self) -> None:
        """Free what `configure` made (safe after a half-done configure)."""

    # Helpers
    def settable(self) -> bool:
        """Whether restart-only parameters may change now: a managed node not configured."""
        return self.managed and not self.configured

    def make_publisher(self, *args, **kwargs):
        """Make a result publisher: inactive until activation when managed."""
        if self.managed:
            return self.create_lifecycle_publisher(*args, **kwargs)
        return self.create_publisher(*args, **kwargs)

    def drop_publisher(self, pub) -> None:
        if self.managed:
            self.destroy_lifecycle_publisher(pub)
        else:
            self.destroy_publisher(pub)

    # The transitions
    def _configure(self) -> None:
        self.configure()
        self.configured = True

    def _activate(self) -> None:
        self.activate()
        self.active = True

    def _deactivate(self) -> None:
        self.active = False
        self.deactivate()

    def _cleanup(self) -> None:
        self.configured = False
        self.cleanup()
        gc.collect()  # the model's tensors, sessions: back to the allocator now
        trim_heap()

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # a UserError names the parameter; anything else, a bug
            why = str(exc) if isinstance(exc, UserError) else f'{type(exc).__name__}: {exc}'
            self.diag.set(ERROR, f'configure failed: {why}')
            self._cleanup()
            return FAILURE
        self.diag.set(OK, 'configured (inactive)')
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        ret = super().on_activate(state)  # the lifecycle publishers first
        self._activate()
        return ret

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._deactivate()  # the last frame in flight still publishes
        self.diag.set(OK, 'inactive: nothing captured or computed')
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._cleanup()
        self.diag.set(OK, 'unconfigured')
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop()
        self.diag.set(OK, 'finalized')
        return SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        # A transition raised: free what there is; SUCCESS goes back to unconfigured.
        self.get_logger().error(f'transition from {state.label} failed; cleaning up')
        self._stop()
        return SUCCESS

    def _stop(self) -> None:
        if self.active:
            self._deactivate()
        if self.configured:
            self._cleanup()

    def destroy_node(self) -> None:
        if self.active:
            self._deactivate()
        super().destroy_node()
