"""What every node shares: QoS, parameters, diagnostics, the latest-frame-wins worker."""

import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions

from cnn_perception import contract
from cnn_perception.errors import UserError
from cnn_perception.params import Param, check_value

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR

# Images: best effort, keep last 1 -- a late frame is worthless, a queued one is harmful.
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)
# Results: reliable, a short queue so a slow subscriber sees every result it can.
RESULT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
# Overlays for people (rviz): reliable, so both reliable and best-effort viewers match;
# depth 1, a stale overlay is worthless.
OUTPUT_IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE
)
# Sent once, for late joiners too (the label map): reliable, transient local.
LATCHED_QOS = QoSProfile(
    depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
)
# contract.Topic.qos -> the profile: every publisher and subscriber takes its QoS from here
QOS_BY_KIND = {
    'image_in': IMAGE_QOS,
    'result': RESULT_QOS,
    'output_image': OUTPUT_IMAGE_QOS,
    'latched': LATCHED_QOS,
}


def overridable() -> QoSOverridingOptions:
    """Let users override history/depth/reliability per topic with qos_overrides params."""
    return QoSOverridingOptions.with_default_policies()


def declare_params(node: Node, params: list[Param], settable=None) -> None:
    """Declare with descriptors (ranges where given) and check every later change.

    A value the descriptor refuses (type, range) fails the declaration, so the node cannot
    start: rclpy holds no value to fix later. Changes to a restart-only parameter are
    refused unless `settable()` says the node will read it again (an unconfigured
    lifecycle node). The values are read and checked by `read_params`.
    """
    spec = {p.name: p for p in params}
    for p in params:
        desc = ParameterDescriptor(description=p.description, read_only=False)
        if p.choices:
            desc.additional_constraints = 'one of: ' + ', '.join(p.choices)
        if p.low is not None and isinstance(p.default, bool) is False:
            if isinstance(p.default, int):
                desc.integer_range = [
                    IntegerRange(from_value=int(p.low), to_value=int(p.high), step=1)
                ]
            elif isinstance(p.default, float):
                desc.floating_point_range = [
                    FloatingPointRange(from_value=float(p.low), to_value=float(p.high), step=0.0)
                ]
        try:
            node.declare_parameter(p.name, p.default, desc)
        except (ParameterException, TypeError, ValueError) as exc:
            # An out-of-range or wrongly typed value from a YAML file or the command line.
            reason = getattr(exc, 'reason', None) or str(exc).splitlines()[0]
            raise UserError(f'parameter {node.get_name()}.{p.name}: {reason}') from exc

    def on_set(changes) -> SetParametersResult:
        for change in changes:
            p = spec.get(change.name)
            if p is None:
                continue
            if not p.live and not (settable is not None and settable()):
                return SetParametersResult(
                    successful=False,
                    reason=f'{p.name} is read at start-up; restart the node to change it '
                    '(a lifecycle node: cleanup, set it, configure)',
                )
            problem = check_value(p, change.value)
            if problem:
                return SetParametersResult(successful=False, reason=f'{p.name}: {problem}')
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


def read_params(node: Node, params: list[Param]) -> dict[str, Any]:
    """Return the current values of declared `params`, checked; UserError names a bad one."""
    values = {}
    for p in params:
        values[p.name] = node.get_parameter(p.name).value
        problem = check_value(p, values[p.name])
        if problem:
            raise UserError(f'parameter {node.get_name()}.{p.name}: {problem}')
    return values


class Diagnostics:
    """One DiagnosticStatus per node on /diagnostics, sent at 1 Hz and on every change.

    Log lines for problems are throttled (once per `log_period` per message), so a burst
    of bad frames cannot flood the console; the counters keep the whole story.
    """

    def __init__(self, node: Node, hardware_id: str = '', log_period: float = 5.0):
        self.node = node
        self.name = f'{node.get_namespace().rstrip("/")}/{node.get_name()}'.lstrip('/')
        self.hardware_id = hardware_id
        self.level, self.message = OK, 'starting'
        self.values: dict[str, Any] = {}
        self.counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last_log: dict[str, float] = {}
        self._log_period = log_period
        self._pub = node.create_publisher(
            DiagnosticArray, contract.DIAGNOSTICS.name, QOS_BY_KIND[contract.DIAGNOSTICS.qos]
        )
        node.create_timer(1.0, self.publish)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def update(self, **values: Any) -> None:
        """Set key/values shown with the status (any thread: `publish` reads them too)."""
        with self._lock:
            self.values.update(values)

    def set(self, level: int, message: str, **values: Any) -> None:
        changed = (level, message) != (self.level, self.message)
        with self._lock:
            self.level, self.message = level, message
            self.values.update(values)
        if level >= WARN:
            self.log(level, message)
        if changed:
            self.publish()

    def log(self, level: int, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(message, -1e9) < self._log_period:
            return
        self._last_log[message] = now
        # One call site per severity: rclpy refuses a call site whose severity changes.
        logger = self.node.get_logger()
        if level >= ERROR:
            logger.error(message)
        elif level >= WARN:
            logger.warning(message)
        else:
            logger.info(message)

    def publish(self) -> None:
        with self._lock:
            kv = {
                **{k: str(v) for k, v in self.values.items()},
                **{k: str(v) for k, v in self.counters.items()},
            }
            status = DiagnosticStatus(
                level=self.level,
                name=self.name,
                message=self.message,
                hardware_id=self.hardware_id,
                values=[KeyValue(key=k, value=v) for k, v in sorted(kv.items())],
            )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        if self.node.context.ok():  # not while shutting down
            self._pub.publish(msg)


def run_node(node_cls, prog: str, args=None) -> int:
    """Run a node until ^C (the `main` of every node); a UserError: one line, exit 2."""
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from cnn_perception.runtime import keep_heap_small, limit_blas_threads, stop_on_signals

    limit_blas_threads()
    keep_heap_small(False)  # CNN_PERCEPTION_TRIM_HEAP=1 (pi.launch.py) turns it on
    stop = threading.Event()
    stop_on_signals(stop)  # ^C ends the loop; the node is destroyed with its context valid
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = node_cls()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except UserError as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        # A shutdown from elsewhere (the context) during a callback, which then fails on
        # its publishers (RCLError, "context is invalid"), is a shutdown.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
