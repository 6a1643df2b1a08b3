"""What the bag tools share: storage choices and a clean stop on SIGINT / SIGTERM."""

import signal
import threading

STORAGE = ('mcap', 'sqlite3')


def stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM end recording cleanly: the bag is closed, metadata written."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may install handlers (a library caller's thread)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
