"""What every node shares: QoS, parameters, diagnostics, the latest-frame-wins worker."""

from collections.abc import Callable
from dataclasses import dataclass
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
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.qos_overriding_options import QoSOverridingOptions

from cnn_perception.errors import UserError

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


def overridable() -> QoSOverridingOptions:
    """Let users override history/depth/reliability per topic with qos_overrides params."""
    return QoSOverridingOptions.with_default_policies()


@dataclass(frozen=True)
class Param:
    """A parameter: default, description, optional range / choices, live or restart-only."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False  # changeable at run time; otherwise changes are rejected


def declare_params(node: Node, params: list[Param]) -> dict[str, Any]:
    """Declare with descriptors (ranges where given) and validate every later change."""
    spec = {p.name: p for p in params}
    values = {}
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
            values[p.name] = node.declare_parameter(p.name, p.default, desc).value
        except (ParameterException, TypeError, ValueError) as exc:
            # An out-of-range or wrongly typed value from a YAML file or the command line.
            reason = getattr(exc, 'reason', None) or str(exc).splitlines()[0]
            raise UserError(f'parameter {node.get_name()}.{p.name}: {reason}') from exc
        problem = check_value(p, values[p.name])
        if problem:
            raise UserError(f'parameter {node.get_name()}.{p.name}: {problem}')

    def on_set(changes) -> SetParametersResult:
        for change in changes:
            p = spec.get(change.name)
            if p is None:
                continue
            if not p.live:
                return SetParametersResult(
                    successful=False,
                    reason=f'{p.name} is read at start-up; restart the node to change it',
                )
            problem = check_value(p, change.value)
            if problem:
                return SetParametersResult(successful=False, reason=f'{p.name}: {problem}')
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


def check_value(p: Param, value: Any) -> str | None:
    """Return why `value` is not acceptable for `p`, or None."""
    if type(value) is not type(p.default) and not (
        isinstance(p.default, float) and type(value) is int
    ):
        return f'expected {type(p.default).__name__}, got {type(value).__name__}'
    if p.choices and value not in p.choices:
        return f'{value!r} is not one of {", ".join(p.choices)}'
    if p.low is not None and not (p.low <= value <= p.high):
        return f'{value} is out of range [{p.low}, {p.high}]'
    return None


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
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        node.create_timer(1.0, self.publish)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

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


class LatestFrameWorker:
    """Runs `process(item)` on its own thread; `submit` replaces any item still waiting.

    The executor thread only drops a reference into a one-slot mailbox, so inference
    never blocks callbacks and frames are never queued: when the model is slower than the
    camera, the frames in between are dropped (and counted). `min_period` (seconds)
    throttles the rate; `process` exceptions are handed to `on_error` and the worker
    carries on, slowing down after `backoff_after` consecutive failures.
    """

    def __init__(
        self,
        process: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        name: str = 'inference',
        backoff_after: int = 5,
    ):
        self._process = process
        self._on_error = on_error
        self._cv = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._stop = False
        self.min_period = 0.0
        self.processed = 0
        self.dropped = 0
        self.failures_in_a_row = 0
        self.backoff_after = backoff_after
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        with self._cv:
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cv.notify()

    def _run(self) -> None:
        last_start = 0.0
        while True:
            with self._cv:
                while not self._has_item and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
            # Throttle before taking the item, so a newer frame may still replace it.
            period = self.min_period
            if self.failures_in_a_row >= self.backoff_after:
                period = max(period, 1.0)
            wait = last_start + period - time.monotonic()
            if wait > 0:
                with self._cv:
                    self._cv.wait_for(lambda: self._stop, timeout=wait)
                    if self._stop:
                        return
            with self._cv:
                item, self._item, self._has_item = self._item, None, False
            last_start = time.monotonic()
            try:
                self._process(item)
                self.processed += 1
                self.failures_in_a_row = 0
            except Exception as exc:  # one bad frame must never stop the node
                self.failures_in_a_row += 1
                try:
                    self._on_error(exc)
                except Exception:  # reporting must never kill the worker either
                    pass

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout)


def subscribe_images(node: Node, callback: Callable[[bytes], None]):
    """Subscribe to `image` raw: frames arrive as CDR bytes.

    Only the frames actually processed are decoded (`decode_image`); the ones that
    latest-frame-wins drops cost no Python conversion at all.
    """
    from sensor_msgs.msg import Image

    return node.create_subscription(
        Image, 'image', callback, IMAGE_QOS, raw=True, qos_overriding_options=overridable()
    )


def decode_image(raw: bytes):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from cnn_perception.io.images import ImageError

    try:
        return deserialize_message(raw, Image)
    except Exception as exc:  # malformed CDR from a misbehaving publisher
        raise ImageError(f'undecodable Image message ({type(exc).__name__})') from exc


class FrameMonitor:
    """Checks on a decoded frame that do not stop processing; returns a warning or None.

    A missing frame_id (rviz and tf cannot place the result) and stamps going backwards
    (a looped bag, a clock reset) are reported, and the frame is processed all the same.
    """

    def __init__(self):
        self.last_ns: int | None = None

    def check(self, header) -> str | None:
        ns = header.stamp.sec * 10**9 + header.stamp.nanosec
        problem = None
        if not header.frame_id:
            problem = 'image without frame_id (results cannot be placed in a frame)'
        if self.last_ns is not None and ns < self.last_ns:
            problem = (
                f'image stamp went backwards by {(self.last_ns - ns) / 1e9:.3f} s '
                '(bag looped or clock reset?)'
            )
        self.last_ns = ns
        return problem


class FrameNode(Node):
    """Base of the nodes that process frames: diagnostics, frame checks and the worker.

    Subclasses set `task` (the word in failure messages), create `self.diag`, then call
    `start_frames`; their `_process(raw)` ends with `frame_done`.
    """

    task = 'inference'

    def start_frames(self, process, max_rate_hz: float, name: str, on_image=None) -> None:
        self.monitor = FrameMonitor()
        self.worker = LatestFrameWorker(process, self.report_failure, name=name)
        self.set_max_rate(max_rate_hz)
        subscribe_images(self, on_image or self.worker.submit)

    def set_max_rate(self, hz: float) -> None:
        self.worker.min_period = 1.0 / hz if hz > 0 else 0.0

    def report_failure(self, exc: Exception) -> None:
        from cnn_perception.io.images import ImageError

        if isinstance(exc, ImageError):
            self.diag.count('bad_frames')
            self.diag.set(WARN, f'bad image skipped: {exc}')
            return
        self.diag.count('inference_errors')
        n = self.worker.failures_in_a_row
        level = ERROR if n >= self.worker.backoff_after else WARN
        self.diag.set(level, f'{self.task} failed ({n} in a row): {type(exc).__name__}: {exc}')

    def frame_done(self, header, ok_message: str, **values) -> None:
        """Diagnostics after a processed frame: frame warnings, or back to OK."""
        warning = self.monitor.check(header)
        if warning:
            self.diag.count('frame_warnings')
            self.diag.set(WARN, warning)
        elif self.diag.level != OK:
            self.diag.set(OK, ok_message)
        self.diag.values.update(
            processed=self.worker.processed + 1, dropped=self.worker.dropped, **values
        )

    def destroy_node(self) -> None:
        if getattr(self, 'worker', None) is not None:
            self.worker.stop()
        super().destroy_node()


def run_node(node_cls, prog: str, args=None) -> int:
    """Run a node until ^C (the `main` of every node); a UserError: one line, exit 2."""
    import sys

    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = node_cls()
        rclpy.spin(node)
    except UserError as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
