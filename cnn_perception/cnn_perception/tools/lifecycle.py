"""A lifecycle client for managed nodes: what `ros2 lifecycle` and nav2's manager call.

Used by the lifecycle tests and `bench --lifecycle`; it calls the standard services of
`nodes/managed.py`'s nodes over DDS, from another process than theirs.
"""

import time

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rcl_interfaces.srv import SetParameters
import rclpy

TRANSITIONS = {
    'configure': Transition.TRANSITION_CONFIGURE,
    'activate': Transition.TRANSITION_ACTIVATE,
    'deactivate': Transition.TRANSITION_DEACTIVATE,
    'cleanup': Transition.TRANSITION_CLEANUP,
}


class LifecycleClient:
    """The lifecycle services of one node (`fqn`, e.g. /cnn_perception/classifier).

    `spin_until(predicate, timeout)` spins the caller's executor (a node belongs to one);
    by default `rclpy.spin_once` on `node`.
    """

    def __init__(self, node, fqn: str, spin_until=None):
        self.node, self.fqn = node, fqn
        self.spin_until = spin_until or (lambda pred, timeout: wait_for(pred, timeout, node))
        self._change = node.create_client(ChangeState, f'{fqn}/change_state')
        self._get = node.create_client(GetState, f'{fqn}/get_state')
        self._transitions = node.create_client(
            GetAvailableTransitions, f'{fqn}/get_available_transitions'
        )
        self._params = node.create_client(SetParameters, f'{fqn}/set_parameters')

    def wait(self, timeout: float = 60.0) -> None:
        for client in (self._change, self._get, self._transitions):
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'{client.srv_name}: no such service after {timeout:.0f} s')

    def _call(self, client, request, timeout: float):
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f'{client.srv_name}: no answer after {timeout:.0f} s')
        return future.result()

    def state(self, timeout: float = 10.0) -> str:
        return self._call(self._get, GetState.Request(), timeout).current_state.label

    def change(self, transition: str, timeout: float = 120.0) -> bool:
        """Trigger `transition` (configure, activate, ..., shutdown); whether it succeeded."""
        req = ChangeState.Request()
        if transition in TRANSITIONS:
            req.transition.id = TRANSITIONS[transition]
        else:
            req.transition.label = transition  # e.g. 'shutdown' from the current state
        return self._call(self._change, req, timeout).success

    def available(self, timeout: float = 10.0) -> list[str]:
        res = self._call(self._transitions, GetAvailableTransitions.Request(), timeout)
        return [t.transition.label for t in res.available_transitions]

    def set_param(self, name: str, value, timeout: float = 10.0) -> tuple[bool, str]:
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        res = self._call(self._params, req, timeout).results[0]
        return res.successful, res.reason


def wait_for(predicate, timeout: float, node=None, step: float = 0.05) -> bool:
    """Spin `node` (if given) until `predicate()` holds or `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if node is not None:
            rclpy.spin_once(node, timeout_sec=step)
        else:
            time.sleep(step)
    return predicate()
