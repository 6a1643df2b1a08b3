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
