"""Frame hand-over and frame checks shared by the nodes, without rclpy (unit-tested alone)."""

from collections.abc import Callable
import functools
import os
import threading
import time
from typing import Any

from cnn_perception.contract import stamp_ns


def limit_blas_threads() -> None:
    """Run numpy's BLAS (OpenBLAS) on the calling thread only, in a node process.

    The nodes' BLAS calls are small (EigenCAM, norms), so a BLAS thread pool gains
    nothing, while OpenBLAS's spare thread spins after each call: measured in the
    four-node pipeline on 2 cores, it took 0.15 of a core from the classifier. ONNX
    Runtime and torch keep their own thread settings (`num_threads`).
    """
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api='blas')
    except Exception:  # no threadpoolctl or an unknown BLAS: keep the library defaults
        pass


def keep_heap_small(wanted: bool = True, period_s: float = 1.0) -> bool:
    """Hand the heap's free pages back to the system every `period_s`; True if started.

    ONNX Runtime without its arena (make_session) allocates each run's tensors anew, and
    glibc, once the first large blocks were freed, serves them from the heap of the
    calling thread's arena, keeping the freed pages: one arena per worker thread, each
    holding its own; `malloc_trim` every second hands them back. Fixing glibc's mmap
    threshold instead made every run map and unmap its tensors, and the trim costs speed
    where frames come fast (both measured: docs/benchmarks.md, commit 7036d22); so only
    the Pi's processes trim
    (platforms.TRIM_HEAP), where the camera runs at 5 frames/s and memory is the limit.
    `wanted` is the platform's choice; CNN_PERCEPTION_TRIM_HEAP=1 / 0 overrides it. Not
    glibc: nothing is started.
    """
    env = os.environ.get('CNN_PERCEPTION_TRIM_HEAP', '')
    if env in ('0', '1'):
        wanted = env == '1'
    if not wanted or _malloc_trim() is None:
        return False

    def loop() -> None:
        while True:
            time.sleep(period_s)
            trim_heap()

    threading.Thread(target=loop, name='malloc-trim', daemon=True).start()
    return True


def trim_heap() -> None:
    """Hand the heap's free pages back to the system now (glibc's `malloc_trim`)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6').malloc_trim
    except (OSError, AttributeError):  # not glibc: its allocator, its behaviour
        return None


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set `stop`: the caller ends cleanly (bags closed, nodes destroyed).

    Instead of rclpy's own handler, which shuts the context down at once and lets a
    KeyboardInterrupt land inside whatever callback runs (rclpy Kilted's executor logs
    it as FATAL); with `stop`, the last results and defect-track ends still go out.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may install handlers (a library caller's thread)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


class LatestFrameWorker:
    """Runs `process(item)` on its own thread; `submit` replaces any item still waiting.

    The executor thread only drops a reference into a one-slot mailbox, so inference
    never blocks callbacks and frames are never queued: when the model is slower than the
    camera, the frames in between are dropped (and counted). `min_period` (seconds)
    throttles the rate; `process` exceptions are handed to `on_error` and the worker
    carries on, slowing down after `backoff_after` consecutive failures. `niceness` > 0
    lowers this thread's scheduling priority (Linux nice, per thread): a head that runs
    at a few hertz beside the classifier yields the CPU to it instead of sharing it.
    """

    def __init__(
        self,
        process: Callable[[Any], None],
        on_error: Callable[[Exception], None],
        name: str = 'inference',
        backoff_after: int = 5,
        niceness: int = 0,
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
        self.niceness = niceness
        self.nice_error = ''
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        with self._cv:
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._cv.notify()

    def _run(self) -> None:
        if self.niceness > 0:
            try:  # on Linux, PRIO_PROCESS with a thread id sets that thread alone
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)
            except (OSError, AttributeError) as exc:  # not Linux: runs at normal priority
                self.nice_error = f'{type(exc).__name__}: {exc}'
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


class FrameMonitor:
    """Checks on a decoded frame that do not stop processing; returns a warning or None.

    A missing frame_id (rviz and tf cannot place the result) and stamps going backwards
    (a looped bag, a clock reset) are reported, and the frame is processed all the same.
    """

    def __init__(self):
        self.last_ns: int | None = None

    def check(self, header) -> str | None:
        ns = stamp_ns(header)
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
