"""rosbag2 record / play / info / process without `ros2 bag` (on the `rosbags` library).

Bags are real rosbag2 directories (metadata.yaml + MCAP or sqlite3) with the message
definitions of every topic, ours included, so `ros2 bag info/play` and Foxglove open
them. Messages travel as the CDR bytes DDS carried: recording subscribes raw, playing
publishes raw, nothing is re-encoded.
"""

import signal
import threading

STORAGE = ('mcap', 'sqlite3')


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM end recording cleanly: the bag is closed, metadata written."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may install handlers (a library caller's thread)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


from cnn_perception.bagtools.info import format_info, info  # noqa: E402
from cnn_perception.bagtools.play import play  # noqa: E402
from cnn_perception.bagtools.process import process  # noqa: E402
from cnn_perception.bagtools.record import record  # noqa: E402

__all__ = ['STORAGE', 'format_info', 'info', 'play', 'process', 'record']
