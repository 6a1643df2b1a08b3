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
    from cnn_perception.io.annotations import register

    register(store)  # foxglove_msgs/ImageAnnotations, written beside the results
    return store


IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')


def norm_topic(topic: str) -> str:
    """'/a/b' for 'a/b' too: some recorders store topics without the leading slash."""
    return '/' + topic.lstrip('/')


class BagReader:
    """A rosbag2 directory (MCAP or sqlite3, any metadata version) or a ROS 1 `.bag`.

    One API over both: `connections` (topic, msgtype, msgcount), `messages()` yielding
    (connection, bag time ns, raw bytes), `to_cdr` (what DDS and rosbag2 carry) and
    `deserialize`. rosbag2 messages are read with this project's type store (ROS 2 Jazzy
    plus cnn_perception_msgs), so a bag without type definitions (Foxy's metadata
    version 1) reads too; ROS 1 bags carry their definitions and are read with them.
    """

    def __init__(self, path: str | Path):
        from cnn_perception.errors import BagError

        self.path = Path(path)
        self.ros1 = self.path.suffix == '.bag' and self.path.is_file()
        if not self.ros1 and not (self.path / 'metadata.yaml').is_file():
            hint = ''
            if self.path.is_file() and (self.path.parent / 'metadata.yaml').is_file():
                hint = f'; pass the bag directory {self.path.parent}'
            raise BagError(
                f'{self.path}: not a rosbag2 directory (no metadata.yaml) nor a ROS 1 .bag '
                f'file{hint}'
            )
        try:
            if self.ros1:
                from rosbags.highlevel import AnyReader

                self.reader = AnyReader([self.path])
            else:
                from rosbags.rosbag2 import Reader

                self.reader = Reader(self.path)
            self.reader.open()
        except Exception as exc:  # rosbags raises ReaderError and storage-specific errors
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BagError(f'{self.path}: cannot open bag ({first[:200]})') from exc
        self.store = self.reader.typestore if self.ros1 else typestore()

    @property
    def connections(self):
        return self.reader.connections

    def image_connections(self, topic: str | None = None) -> list:
        """Return the connections of image topic `topic`, or of the bag's only image topic.

        With no topic given, a bag with several image topics fails in one line that lists
        them; so does a topic the bag does not have.
        """
        from cnn_perception.errors import BagError

        images = {}
        for c in self.connections:
            if c.msgtype in IMAGE_TYPES:
                images.setdefault(c.topic, [c.msgtype, 0])[1] += c.msgcount
        listing = ', '.join(f'{t} ({m.rsplit("/", 1)[-1]}, {n})' for t, (m, n) in images.items())
        if topic is None:
            if len(images) != 1:
                raise BagError(
                    f'{self.path}: '
                    + (
                        f'several image topics: {listing}; choose one with --image-topic'
                        if images
                        else 'no sensor_msgs Image or CompressedImage topic (has: '
                        + ', '.join(sorted({c.topic for c in self.connections}))
                        + ')'
                    )
                )
            topic = next(iter(images))
        conns = [c for c in self.connections if norm_topic(c.topic) == norm_topic(topic)]
        if not conns:
            raise BagError(f'{self.path}: no topic {topic} (image topics: {listing or "none"})')
        if conns[0].msgtype not in IMAGE_TYPES:
            raise BagError(f'{self.path}: {topic} is {conns[0].msgtype}, not an image topic')
        return conns

    def messages(self, connections=None):
        if connections is not None and not connections:
            return iter(())  # none asked for (rosbags would read them all)
        return self.reader.messages(connections=connections or self.connections)

    def frames(self, connections, on_bad):
        """Yield (conn, stamp, raw, message, RGB) of every image message that decodes.

        The others go to `on_bad(where, why)` ('/topic at <bag ns>', the reason) and are
        skipped: one bad message never ends a read.
        """
        from cnn_perception.io.images import ImageError

        for conn, stamp, raw in self.messages(connections):
            try:
                msg, rgb = decode_bag_frame(self, conn, raw)
            except ImageError as exc:
                on_bad(f'{norm_topic(conn.topic)} at {stamp}', str(exc))
                continue
            yield conn, stamp, raw, msg, rgb

    def to_cdr(self, raw, msgtype: str) -> bytes:
        """CDR bytes of a message as stored; ROS 1 messages become their ROS 2 type.

        A ROS 1 message is read with the bag's own definitions and rebuilt field by field
        as the ROS 2 type of the same name (std_msgs/Header loses `seq`, as in ROS 2);
        a type ROS 2 does not have raises BagError.
        """
        if not self.ros1:
            return bytes(raw)
        ros2 = typestore()
        if msgtype not in ros2.types:
            from cnn_perception.errors import BagError

            raise BagError(f'{msgtype} has no ROS 2 equivalent in this environment')
        msg = _as_ros2(self.deserialize(raw, msgtype), msgtype, ros2)
        return bytes(ros2.serialize_cdr(msg, msgtype))

    def deserialize(self, raw, msgtype: str):
        if self.ros1:
            return self.store.deserialize_ros1(bytes(raw), msgtype)
        return self.store.deserialize_cdr(bytes(raw), msgtype)

    def __getattr__(self, name: str):
        # message_count, start_time, end_time, duration: the reader's own
        return getattr(self.reader, name)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_ros2(obj, msgtype: str, store):
    """Rebuild a (ROS 1) rosbags message as `store`'s type of the same name."""
    cls = store.types[msgtype]
    kwargs = {}
    for name in cls.__dataclass_fields__:
        if name == '__msgtype__':
            continue
        value = getattr(obj, name)
        sub = getattr(value, '__msgtype__', None)
        if sub:
            value = _as_ros2(value, sub, store)
        elif isinstance(value, list) and value and getattr(value[0], '__msgtype__', None):
            value = [_as_ros2(v, v.__msgtype__, store) for v in value]
        kwargs[name] = value
    return cls(**kwargs)


def open_reader(path: str | Path) -> BagReader:
    """Open a bag; a missing or corrupt bag raises BagError naming it."""
    return BagReader(path)


def decode_bag_frame(reader: BagReader, conn, raw):
    """(message, RGB frame) of one stored image message; ImageError says what is wrong."""
    from cnn_perception.io.images import ImageError, frame_to_rgb8

    try:
        msg = reader.deserialize(raw, conn.msgtype)
    except Exception as exc:  # rosbags raises SerdeError, struct.error, IndexError, ...
        raise ImageError(
            f'undeserialisable {conn.msgtype.rsplit("/", 1)[-1]} ({type(exc).__name__}, '
            f'{len(raw)} bytes)'
        ) from exc
    return msg, frame_to_rgb8(msg)


def image_frames(path: str | Path, topic: str | None = None, on_bad=None):
    """Yield (header, RGB frame) of one image topic; bad messages go to `on_bad(why)`."""
    with BagReader(path) as reader:
        conns = reader.image_connections(topic)
        bad = (lambda where, why: on_bad(f'{where}: {why}')) if on_bad else (lambda *_: None)
        for _, _, _, msg, rgb in reader.frames(conns, bad):
            yield msg.header, rgb
