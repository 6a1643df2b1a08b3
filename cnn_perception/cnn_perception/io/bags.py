"""
rosbag2 support on the `rosbags` library (no ROS install needed).

Messages are stored as CDR bytes, exactly what rclpy's `serialize_message` produces, so
a bag written here plays in `ros2 bag play` and opens in Foxglove. The type store knows
the ROS 2 Jazzy standard types plus this project's messages, parsed from the
`cnn_perception_msgs` .msg files themselves (installed share dir, or the source tree).
"""

from contextlib import ExitStack
from functools import lru_cache
import os
from pathlib import Path
from typing import Any

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from cnn_perception.errors import BagError

MSGS_PACKAGE = 'cnn_perception_msgs'
# A zstd frame starts with these bytes; a CDR payload starts with its encapsulation
# header (0x00 0x00 or 0x00 0x01), so a message compressed by rosbag2's
# `--compression-mode message` is told apart from a plain one by its first bytes alone.
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'


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
    """Any camera bag a user brings, behind one API.

    Opens a rosbag2 directory (MCAP or sqlite3, any metadata version, rosbag2's zstd
    compression in `file` or `message` mode), a lone `.mcap` / `.db3` piece or a folder of
    them without `metadata.yaml` (pieces read in time order; a missing piece of a split
    named in `quirks`, the rest read), and a ROS 1 `.bag` (see `bag_layout.find_layout`).

    `connections` (topic, msgtype, msgcount; one per topic and type over all pieces, type
    names as ROS 2 spells them: `sensor_msgs/Image` of the first ROS 2 releases becomes
    `sensor_msgs/msg/Image`), `messages()` yielding (connection, bag time ns, raw CDR,
    decompressed), `to_cdr` (what DDS and rosbag2 carry) and `deserialize`. rosbag2
    messages are read with this project's type store (ROS 2 Jazzy plus
    cnn_perception_msgs), so bags without type definitions read too; ROS 1 bags carry
    their definitions and are read with them. `quirks` lists what was unusual.
    """

    def __init__(self, path: str | Path):
        from cnn_perception.io.bag_layout import find_layout

        self.path = Path(path)
        self.layout = find_layout(self.path)
        self.ros1 = self.layout.kind == 'ros1'
        self.quirks = list(self.layout.quirks)
        self.missing_stamps = 0  # image frames whose header stamp was 0
        self.compression = ''  # 'zstd (file)' / 'zstd (message)' when rosbag2 compressed it
        self._stack = ExitStack()
        self._tmp = None  # where file-compressed pieces are decompressed to
        try:
            self._sources = self._open_sources()
        except BagError:
            self._stack.close()
            raise
        except Exception as exc:  # rosbags raises ReaderError and storage-specific errors
            self._stack.close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BagError(f'{self.path}: cannot open bag ({first[:200]})') from exc
        self._merge_connections()
        self.store = self._sources[0].reader.typestore if self.ros1 else typestore()

    def _open_sources(self) -> list['_Source']:
        if self.ros1:
            from rosbags.highlevel import AnyReader

            reader = AnyReader([self.path])
            reader.open()
            self._stack.callback(reader.close)
            return [_Source(reader, False)]
        from rosbags.rosbag2 import Reader

        if self.layout.kind == 'rosbag2':  # rosbags reads metadata and compression itself
            reader = Reader(self.path)
            reader.open()
            self._stack.callback(reader.close)
            if reader.compression_mode:
                self.compression = f'{reader.compression_format} ({reader.compression_mode})'
            return [_Source(reader, False)]
        meta = self.layout.metadata or {}
        mode = str(meta.get('compression_mode', '') or '').lower()
        sources = []
        for piece in self.layout.pieces:
            if piece.name.endswith('.zstd'):
                piece = self._decompressed(piece)
            reader = Reader(piece)
            reader.open()
            self._stack.callback(reader.close)
            sources.append(_Source(reader, True))
        if mode == 'message':
            self.compression = 'zstd (message)'
        elif any(s.compressed_messages() for s in sources):
            self.compression = 'zstd (message)'
            self.quirks.append('zstd-compressed messages without metadata: found in the payload')
        if self.layout.file_compressed:
            self.compression = 'zstd (file)'
        return sources

    def _decompressed(self, piece: Path) -> Path:
        """Decompress a `.zstd` piece to a temporary file, streaming (never whole in memory)."""
        import shutil
        from tempfile import TemporaryDirectory

        if self._tmp is None:
            self._tmp = self._stack.enter_context(TemporaryDirectory(prefix='cnn_bag_'))
        out = Path(self._tmp) / piece.name.removesuffix('.zstd')
        with piece.open('rb') as raw, zstd_module().open(raw, 'rb') as src, out.open('wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return out

    def _merge_connections(self) -> None:
        """One connection per (topic, type) over every piece, type names normalised."""
        merged: dict[tuple[str, str], Any] = {}
        renamed = set()
        for src in self._sources:
            for c in src.reader.connections:
                msgtype = ros2_type_name(c.msgtype)
                if msgtype != c.msgtype:
                    renamed.add(c.msgtype)
                key = (c.topic, msgtype)
                if key not in merged:
                    merged[key] = c._replace(id=len(merged) + 1, msgtype=msgtype, msgcount=0)
                m = merged[key]
                merged[key] = m._replace(msgcount=m.msgcount + c.msgcount)
                src.to_merged[c.id] = merged[key].id
        if renamed:
            self.quirks.append(
                f'type names without /msg/ ({", ".join(sorted(renamed))}): read as ROS 2 names'
            )
        self.connections = list(merged.values())
        self.message_count = sum(c.msgcount for c in self.connections)
        starts = [s.reader.start_time for s in self._sources if _count(s.reader)]
        ends = [s.reader.end_time for s in self._sources if _count(s.reader)]
        self.start_time = min(starts) if starts else 0
        self.end_time = max(ends) if ends else 0
        self.duration = self.end_time - self.start_time

    def image_connections(self, topic: str | None = None) -> list:
        """Return the connections of image topic `topic`, or of the bag's only image topic.

        With no topic given, a bag with several image topics fails in one line that lists
        them; so does a topic the bag does not have.
        """
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
        """Yield (connection, bag time ns, raw bytes) in time order over every piece."""
        import heapq

        by_id = {c.id: c for c in self.connections}
        wanted = {c.id for c in (self.connections if connections is None else connections)}
        streams = []
        for src in self._sources:
            mine = [c for c in src.reader.connections if src.to_merged.get(c.id) in wanted]
            if mine:
                streams.append(src.messages(mine, by_id))
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=lambda item: item[1])

    def frames(self, connections, on_bad):
        """Yield (conn, stamp, raw, message, RGB) of every image message that decodes.

        The others go to `on_bad(where, why)` ('/topic at <bag ns>', the reason) and are
        skipped: one bad message never ends a read. A frame whose header stamp is 0 (early
        ROS 2 drivers) gets its record time instead, so results keep the frames' order and
        the tracker its timing; `missing_stamps` counts them.
        """
        from cnn_perception.io.images import ImageError

        for conn, stamp, raw in self.messages(connections):
            try:
                msg, rgb = decode_bag_frame(self, conn, raw)
            except ImageError as exc:
                on_bad(f'{norm_topic(conn.topic)} at {stamp}', str(exc))
                continue
            if not msg.header.stamp.sec and not msg.header.stamp.nanosec:
                msg = _with_stamp(msg, stamp)
                serialize = self.store.serialize_ros1 if self.ros1 else self.store.serialize_cdr
                raw = serialize(msg, conn.msgtype)
                self.missing_stamps += 1
            yield conn, stamp, raw, msg, rgb

    def notes(self) -> list[str]:
        """List what was unusual in the bag, for the summaries and reports a user reads."""
        stamps = self.missing_stamps
        return self.quirks + (
            [f'{stamps} frame(s) had header stamp 0: their record time was used'] if stamps else []
        )

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
            raise BagError(f'{msgtype} has no ROS 2 equivalent in this environment')
        msg = _as_ros2(self.deserialize(raw, msgtype), msgtype, ros2)
        return bytes(ros2.serialize_cdr(msg, msgtype))

    def deserialize(self, raw, msgtype: str):
        if self.ros1:
            return self.store.deserialize_ros1(bytes(raw), msgtype)
        return self.store.deserialize_cdr(bytes(raw), msgtype)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Source:
    """One opened reader (a rosbag2 directory, one piece, a ROS 1 bag) and its id map."""

    def __init__(self, reader, may_compress: bool):
        self.reader = reader
        self.may_compress = may_compress  # a piece read alone: rosbags leaves zstd as is
        self.to_merged: dict[int, int] = {}

    def messages(self, conns, by_id):
        unzstd = zstd_module().decompress if self.may_compress else None
        for c, stamp, raw in self.reader.messages(connections=conns):
            if unzstd is not None and bytes(raw[:4]) == ZSTD_MAGIC:
                raw = unzstd(raw)
            yield by_id[self.to_merged[c.id]], stamp, raw

    def compressed_messages(self) -> bool:
        first = next(iter(self.reader.messages()), None)
        return first is not None and bytes(first[2][:4]) == ZSTD_MAGIC


def _count(reader) -> int:
    return sum(c.msgcount for c in reader.connections)


def zstd_module():
    """Return the zstd module rosbags itself uses (Python 3.14's, else its backport)."""
    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    return zstd


def ros2_type_name(msgtype: str) -> str:
    """'pkg/msg/Type' for the 'pkg/Type' names of the first ROS 2 releases."""
    parts = msgtype.split('/')
    return f'{parts[0]}/msg/{parts[1]}' if len(parts) == 2 else msgtype


def _with_stamp(msg, ns: int):
    """Return a copy of a stored message with its header stamp set to `ns`."""
    from dataclasses import replace

    stamp = replace(msg.header.stamp, sec=ns // 10**9, nanosec=ns % 10**9)
    return replace(msg, header=replace(msg.header, stamp=stamp))


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
