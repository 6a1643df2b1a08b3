"""Frame hand-over and frame checks shared by the nodes, without rclpy (unit-tested alone)."""

from collections.abc import Callable
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


# glibc's mallopt parameter number for the mmap threshold (malloc.h)
_M_MMAP_THRESHOLD = -3


def keep_heap_small(threshold: int = 1 << 20) -> bool:
    """Fix glibc's mmap threshold (1 MiB) in a node process; True when it took.

    glibc serves an allocation above the threshold with its own mmap, returned to the
    system when freed, and by default raises the threshold to the size of each such
    block freed (up to 32 MiB): after the first frames, the ONNX Runtime activations
    and the frames themselves (0.9 MiB at 640x480) come from the heap instead, whose
    freed memory the process keeps, spread over one arena per worker thread. The Pi
    configuration's peak RSS read 394-448 MB across runs so; with the threshold fixed
    at 1 MiB, 335-342 MB, at the same speed (at the default 128 KiB, also 324 MB, but
    the classifier ran 20% slower: a page fault per page of every 640x480 frame).
    Where the user set MALLOC_MMAP_THRESHOLD_ glibc's own way, that is kept.
    """
    import ctypes
    import ctypes.util

    if os.environ.get('MALLOC_MMAP_THRESHOLD_'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # not glibc: its allocator, its defaults
        return False


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
