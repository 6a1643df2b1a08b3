"""
rosbag2 support on the `rosbags` library (no ROS install needed).

Messages are stored as CDR bytes, exactly what rclpy's `serialize_message` produces, so
a bag written here plays in `ros2 bag play` and opens in Foxglove. The type store knows
the ROS 2 Jazzy standard types plus this project's messages, parsed from the
`cnn_perception_msgs` .msg files themselves (installed share dir, or the source tree).
"""

from functools import lru_cache
import os
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

MSGS_PACKAGE = 'cnn_perception_msgs'


def msg_dir() -> Path:
    """Directory holding the project's .msg files (installed share dir first)."""
    candidates = []
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / 'share' / MSGS_PACKAGE / 'msg')
    # Source checkout: <repo>/cnn_perception/cnn_perception/io/bags.py -> <repo>/msgs pkg.
    candidates.append(Path(__file__).resolve().parents[3] / MSGS_PACKAGE / 'msg')
    for cand in candidates:
        if cand.is_dir() and any(cand.glob('*.msg')):
            return cand
    raise FileNotFoundError(
        f'cannot find the {MSGS_PACKAGE} .msg files (looked in: '
        + ', '.join(str(c) for c in candidates)
        + '); run `make setup` or source the workspace'
    )


@lru_cache(maxsize=1)
def typestore():
    """Typestore with ROS 2 Jazzy types and the cnn_perception_msgs messages."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(msg_dir().glob('*.msg')):
        types.update(get_types_from_msg(path.read_text(), f'{MSGS_PACKAGE}/msg/{path.stem}'))
    store.register(types)
    return store


def open_reader(path: str | Path):
    """Open a rosbags Reader; a missing or corrupt bag raises BagError naming it."""
    from rosbags.rosbag2 import Reader

    from cnn_perception.errors import BagError

    path = Path(path)
    if not (path / 'metadata.yaml').is_file():
        raise BagError(f'{path}: not a rosbag2 directory (no metadata.yaml)')
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError and storage-specific errors
        raise BagError(f'{path}: cannot open bag ({str(exc).splitlines()[0][:200]})') from exc
    return reader


def image_messages(path: str | Path, topic: str):
    """Yield the sensor_msgs/Image messages of one topic, decoded with the typestore."""
    from cnn_perception.errors import BagError

    reader = open_reader(path)
    store = typestore()
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise BagError(
                f'{path}: no topic {topic} (has: '
                + ', '.join(sorted({c.topic for c in reader.connections}))
                + ')'
            )
        for conn, _stamp, raw in reader.messages(connections=conns):
            yield store.deserialize_cdr(raw, conn.msgtype)
    finally:
        reader.close()
