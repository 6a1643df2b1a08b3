"""Bags the way drones and other people's drivers record them, written with `rosbags`.

Compressed JPEG / PNG camera topics in sqlite3 rosbag2 files of Humble's version 8, ROS 1
`.bag` files with mono8 frames, two camera topics, topic names without a leading slash,
Image messages with step = 0, and corrupt messages among good ones. The frames are real
photographs (scikit-image), so a classifier has something to recognise.
"""

from pathlib import Path

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore
from skimage import data

T0 = 1_700_000_000  # seconds of the first stamp
PHOTOS = (data.chelsea, data.coffee)


def frames(n: int, size=(320, 240)) -> list[np.ndarray]:
    """N RGB frames alternating cat and coffee cup, each slightly shifted."""
    out = []
    for i in range(n):
        img = PHOTOS[i % 2]()
        h, w = img.shape[:2]
        dx = (i * 7) % max(1, w // 10)
        out.append(cv2.resize(img[:, dx : w - (w // 10 - dx)], size, interpolation=cv2.INTER_AREA))
    return out


def stamp(i: int, fps: float = 5.0) -> int:
    return T0 * 10**9 + round(i * 1e9 / fps)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(
        '.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return buf.tobytes()


def png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


class _Msgs:
    """Message constructors of one type store (ROS 2 Humble or ROS 1 Noetic)."""

    def __init__(self, store):
        self.store = store
        t = store.types
        self.Time = t['builtin_interfaces/msg/Time']
        self.Header = t['std_msgs/msg/Header']
        self.Image = t['sensor_msgs/msg/Image']
        self.CompressedImage = t['sensor_msgs/msg/CompressedImage']
        self.ros1 = 'seq' in self.Header.__dataclass_fields__

    def header(self, ns: int, frame_id: str = 'drone_cam'):
        stamp = self.Time(sec=ns // 10**9, nanosec=ns % 10**9)
        if self.ros1:
            return self.Header(seq=0, stamp=stamp, frame_id=frame_id)
        return self.Header(stamp=stamp, frame_id=frame_id)

    def compressed(self, ns: int, blob: bytes, fmt: str):
        return self.CompressedImage(
            header=self.header(ns), format=fmt, data=np.frombuffer(blob, np.uint8)
        )

    def image(self, ns: int, arr: np.ndarray, encoding: str, step: int | None = None):
        arr = np.ascontiguousarray(arr)
        return self.Image(
            header=self.header(ns),
            height=arr.shape[0],
            width=arr.shape[1],
            encoding=encoding,
            is_bigendian=0,
            step=arr.strides[0] if step is None else step,
            data=arr.reshape(-1).view(np.uint8),
        )

    def serialize(self, msg, msgtype: str) -> bytes:
        if self.ros1:
            return bytes(self.store.serialize_ros1(msg, msgtype))
        return bytes(self.store.serialize_cdr(msg, msgtype))


def write_bag(path: Path, topics: dict[str, tuple[str, list]], storage='sqlite3', version=8):
    """topics: name -> (msgtype, [(ns, message or raw bytes)]); ROS 1 when path ends in .bag."""
    if str(path).endswith('.bag'):
        from rosbags.rosbag1 import Writer

        m = _Msgs(get_typestore(Stores.ROS1_NOETIC))
        writer = Writer(path)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        m = _Msgs(get_typestore(Stores.ROS2_HUMBLE))
        plugin = StoragePlugin.SQLITE3 if storage == 'sqlite3' else StoragePlugin.MCAP
        writer = Writer(path, version=version, storage_plugin=plugin)
    with writer:
        for topic, (msgtype, items) in topics.items():
            conn = writer.add_connection(topic, msgtype, typestore=m.store)
            for ns, msg in items:
                raw = msg if isinstance(msg, bytes) else m.serialize(msg, msgtype)
                writer.write(conn, ns, raw)
    return path


def msgs(ros1: bool = False) -> _Msgs:
    return _Msgs(get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE))


CI = 'sensor_msgs/msg/CompressedImage'
IMG = 'sensor_msgs/msg/Image'


def compressed_bag(path: Path, n: int = 6, codec: str = 'jpeg', topic=None, **kw) -> Path:
    m = msgs()
    topic = topic or '/drone/camera/image_raw/compressed'
    fmt = 'rgb8; jpeg compressed bgr8' if codec == 'jpeg' else 'rgb8; png compressed bgr8'
    enc = jpeg if codec == 'jpeg' else png
    items = [(stamp(i), m.compressed(stamp(i), enc(f), fmt)) for i, f in enumerate(frames(n))]
    return write_bag(path, {topic: (CI, items)}, **kw)


def ros1_mono_bag(path: Path, n: int = 4) -> Path:
    m = msgs(ros1=True)
    items = [
        (stamp(i), m.image(stamp(i), cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), 'mono8'))
        for i, f in enumerate(frames(n))
    ]
    return write_bag(path, {'/cam0/image_raw': (IMG, items)})


def quirky_raw_bag(path: Path, n: int = 4) -> Path:
    """Image frames with step = 0 on a topic without leading slash, CameraInfo beside."""
    m = msgs()
    items = [(stamp(i), m.image(stamp(i), f, 'rgb8', step=0)) for i, f in enumerate(frames(n))]
    info_t = m.store.types['sensor_msgs/msg/CameraInfo']
    roi = m.store.types['sensor_msgs/msg/RegionOfInterest']
    info = info_t(
        header=m.header(stamp(0)), height=240, width=320, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.eye(3).ravel(), r=np.eye(3).ravel(), p=np.zeros(12),
        binning_x=0, binning_y=0,
        roi=roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )  # fmt: skip
    return write_bag(
        path,
        {
            'camera/image_raw': (IMG, items),
            'camera/camera_info': ('sensor_msgs/msg/CameraInfo', [(stamp(0), info)]),
        },
        storage='mcap',
        version=9,
    )


def two_topic_bag(path: Path, n: int = 3) -> Path:
    m = msgs()
    fr = frames(n)
    jp = [(stamp(i), m.compressed(stamp(i), jpeg(f), 'jpeg')) for i, f in enumerate(fr)]
    raw = [(stamp(i), m.image(stamp(i), f, 'rgb8')) for i, f in enumerate(fr)]
    return write_bag(path, {'/front/image/compressed': (CI, jp), '/down/image': (IMG, raw)})


def corrupt_bag(path: Path) -> tuple[Path, list[int], list[int]]:
    """8 JPEG frames; 3 of them broken three ways. Returns (bag, good stamps, bad stamps)."""
    m = msgs()
    good, bad, items = [], [], []
    rng = np.random.default_rng(3)
    for i, f in enumerate(frames(8)):
        ns = stamp(i)
        if i == 2:  # not CDR at all: garbage bytes
            items.append((ns, rng.integers(0, 256, 40, np.uint8).tobytes()))
        elif i == 4:  # a valid message whose JPEG is cut off
            items.append((ns, m.compressed(ns, jpeg(f)[:300], 'rgb8; jpeg compressed bgr8')))
        elif i == 6:  # a CDR message truncated mid-data
            items.append((ns, m.serialize(m.compressed(ns, jpeg(f), 'jpeg'), CI)[:120]))
        else:
            items.append((ns, m.compressed(ns, jpeg(f), 'rgb8; jpeg compressed bgr8')))
            good.append(ns)
            continue
        bad.append(ns)
    write_bag(path, {'/drone/camera/image_raw/compressed': (CI, items)})
    return path, good, bad
