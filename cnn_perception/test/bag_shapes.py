"""Camera bags in the shapes they reach users, written with `rosbags`, `mcap` and sqlite3.

A lone MCAP (with and without message definitions), rosbag2's zstd compression in message
and file mode (with metadata.yaml and as a lone piece), an early-ROS-2 `.db3` without
metadata.yaml whose types lack `/msg/` and whose header stamps are 0, a split recording
with a piece missing, and raw Bayer frames of each pattern. The frames are real
photographs (field_bags.frames) or flat colour fields whose colour is known.
"""

from pathlib import Path
import shutil
import sqlite3

from field_bags import frames, stamp
import numpy as np
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_JAZZY)
T = STORE.types
TOPIC = '/camera/image_raw'
IMAGE = 'sensor_msgs/msg/Image'
# One colour per Bayer pattern, all channels distinct (a swapped R and B shows).
COLOUR = (200, 100, 30)


def image_msg(rgb: np.ndarray, i: int, encoding: str = 'rgb8', zero_stamp: bool = False):
    ns = 0 if zero_stamp else stamp(i)
    header = T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9),
        frame_id='camera',
    )
    h, w = rgb.shape[:2]
    data = np.ascontiguousarray(rgb).reshape(-1).view(np.uint8)
    return T[IMAGE](
        header=header,
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=data.size // h,
        data=data,
    )


def cdr(msg) -> bytes:
    return bytes(STORE.serialize_cdr(msg, IMAGE))


def write_bag(path: Path, msgs, storage='mcap', compression=None, start=0) -> Path:
    """Write a rosbag2 directory (metadata.yaml + one piece) of `msgs` on TOPIC."""
    writer = Writer(
        path,
        version=9,
        storage_plugin=StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3,
    )
    if compression:
        writer.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection(TOPIC, IMAGE, typestore=STORE)
        for i, msg in enumerate(msgs, start):
            writer.write(conn, stamp(i), cdr(msg))
    return path


def photo_msgs(n: int, start: int = 0):
    return [image_msg(rgb, i) for i, rgb in enumerate(frames(n), start)]


def lone(bag_dir: Path, dest: Path) -> Path:
    """Move the bag's only storage piece out of its directory (metadata.yaml left behind)."""
    (piece,) = [p for p in bag_dir.iterdir() if p.name != 'metadata.yaml']
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(piece, dest)
    shutil.rmtree(bag_dir)
    return dest


def mcap_without_definitions(path: Path, msgs) -> Path:
    """Write a lone MCAP whose schemas name their type but carry no definition text."""
    from mcap.writer import Writer as McapWriter

    with path.open('wb') as f:
        w = McapWriter(f)
        w.start(profile='ros2', library='field test')
        schema = w.register_schema(name=IMAGE, encoding='ros2msg', data=b'')
        channel = w.register_channel(topic=TOPIC, message_encoding='cdr', schema_id=schema)
        for i, msg in enumerate(msgs):
            w.add_message(channel, log_time=stamp(i), publish_time=stamp(i), data=cdr(msg))
        w.finish()
    return path


def early_db3(path: Path, msgs) -> Path:
    """Write a `.db3` as the first ROS 2 releases did: schema 1, 'sensor_msgs/Image'."""
    db = sqlite3.connect(path)
    db.executescript(
        'CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL, '
        'serialization_format TEXT NOT NULL);'
        'CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, '
        'timestamp INTEGER NOT NULL, data BLOB NOT NULL);'
    )
    db.execute("INSERT INTO topics VALUES (1, ?, 'sensor_msgs/Image', 'cdr')", (TOPIC,))
    db.executemany(
        'INSERT INTO messages(topic_id, timestamp, data) VALUES (1, ?, ?)',
        [(stamp(i), cdr(m)) for i, m in enumerate(msgs)],
    )
    db.commit()
    db.close()
    return path


def split_recording(folder: Path, pieces: int, per_piece: int, drop: int | None) -> Path:
    """Write pieces `rec_0.mcap` .. `rec_{n-1}.mcap` (no metadata.yaml), one dropped."""
    folder.mkdir(parents=True)
    for k in range(pieces):
        bag = write_bag(
            folder / f'tmp{k}', photo_msgs(per_piece, k * per_piece), start=k * per_piece
        )
        lone(bag, folder / f'rec_{k}.mcap')
    if drop is not None:
        (folder / f'rec_{drop}.mcap').unlink()
    return folder


def bayer_mosaic(pattern: str, h: int, w: int, bits: int = 8) -> np.ndarray:
    """Return a flat COLOUR field as a Bayer camera of `pattern` (ROS naming) records it."""
    dtype = np.uint8 if bits == 8 else np.uint16
    scale = 1 if bits == 8 else 257
    value = dict(zip('rgb', COLOUR, strict=True))
    m = np.zeros((h, w), dtype)
    for dy in range(2):
        for dx in range(2):
            m[dy::2, dx::2] = value[pattern[2 * dy + dx]] * scale
    return m


def bayer_bag(path: Path, bits: int = 8) -> Path:
    """Write one frame per pattern, each a flat COLOUR field, 64x48."""
    msgs = [
        image_msg(bayer_mosaic(p, 48, 64, bits), i, f'bayer_{p}{bits}')
        for i, p in enumerate(('rggb', 'bggr', 'gbrg', 'grbg'))
    ]
    return write_bag(path, msgs, 'mcap')


def photo_bayer_msgs(n: int, pattern: str = 'bggr'):
    """Return the photographs of `frames(n)` as a Bayer camera of `pattern` would record them."""
    out = []
    for i, rgb in enumerate(frames(n)):
        m = np.zeros(rgb.shape[:2], np.uint8)
        for dy in range(2):
            for dx in range(2):
                c = 'rgb'.index(pattern[2 * dy + dx])
                m[dy::2, dx::2] = rgb[dy::2, dx::2, c]
        out.append(image_msg(m, i, f'bayer_{pattern}8'))
    return out
