"""rosbag2 record / play / info / process without `ros2 bag` (on the `rosbags` library).

Bags are real rosbag2 directories (metadata.yaml + MCAP or sqlite3) with the message
definitions of every topic, ours included, so `ros2 bag info/play` and Foxglove open
them. Messages travel as the CDR bytes DDS carried: recording subscribes raw, playing
publishes raw, nothing is re-encoded.
"""

from cnn_perception.bagtools.common import STORAGE
from cnn_perception.bagtools.info import format_info, info
from cnn_perception.bagtools.play import play
from cnn_perception.bagtools.process import process
from cnn_perception.bagtools.record import record

__all__ = ['STORAGE', 'format_info', 'info', 'play', 'process', 'record']
