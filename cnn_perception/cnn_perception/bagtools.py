"""rosbag2 record / play / info / process without `ros2 bag` (on the `rosbags` library).

Bags are real rosbag2 directories (metadata.yaml + MCAP or sqlite3) with the message
definitions of every topic, ours included, so `ros2 bag info/play` and Foxglove open
them. Messages travel as the CDR bytes DDS carried: recording subscribes raw, playing
publishes raw, nothing is re-encoded.
"""

from collections.abc import Callable
import importlib
from pathlib import Path
import signal
import threading
import time

from cnn_perception.errors import BagError, UserError
from cnn_perception.io.bags import open_reader, typestore

STORAGE = ('mcap', 'sqlite3')


def message_class(msgtype: str):
    """Rclpy class for 'pkg/msg/Name' (rosidl_runtime_py is not always installed)."""
    pkg, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.msg'), name)
    except (ImportError, AttributeError) as exc:
        raise BagError(f'message type {msgtype} is not available in this environment') from exc


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM end recording cleanly: the bag is closed, metadata written."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


# ----------------------------------------------------------------------------- record
def record(
    out: Path,
    topics: list[str] | None = None,
    all_topics: bool = False,
    duration: float = 0.0,
    storage: str = 'mcap',
    wait_for_topics: float = 30.0,
    log: Callable[[str], None] = print,
) -> dict:
    """Record topics into a new bag; returns {topic: count}.

    QoS is matched to each topic's publishers (best effort if any publisher is, transient
    local when all are, so latched LabelMaps are caught). Messages are written with
    their receive time.
    """
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import StoragePlugin, Writer

    if not topics and not all_topics:
        raise UserError('bag record: name --topics or give --all')
    out = Path(out)
    if out.exists():
        raise UserError(f'{out}: exists already; bags are never overwritten')
    stop = threading.Event()
    _stop_on_signals(stop)
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node('cnn_perception_bag_recorder')
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out, version=9, storage_plugin=plugin)
    writer.open()
    conns, counts, lock = {}, {}, threading.Lock()
    own = {'/rosout', '/parameter_events'}

    def subscribe(topic: str, types: list[str]) -> None:
        msgtype = types[0]
        if msgtype not in store.types:
            log(f'bag record: skipping {topic}: type {msgtype} unknown to the bag type store')
            conns[topic] = None
            return
        pubs = node.get_publishers_info_by_topic(topic)
        best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs)
        latched = pubs and all(
            p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs
        )
        qos = QoSProfile(
            depth=100,
            reliability=ReliabilityPolicy.BEST_EFFORT
            if best_effort
            else ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        conn = writer.add_connection(topic, msgtype, typestore=store)
        conns[topic] = conn
        counts[topic] = 0

        def on_msg(raw: bytes, topic=topic, conn=conn) -> None:
            with lock:
                writer.write(conn, time.time_ns(), raw)
                counts[topic] += 1

        node.create_subscription(message_class(msgtype), topic, on_msg, qos, raw=True)

    def discover() -> None:
        for topic, types in node.get_topic_names_and_types():
            if topic in conns or topic in own:
                continue
            if all_topics or topic in (topics or []):
                subscribe(topic, types)

    try:
        deadline = time.monotonic() + wait_for_topics
        discover()
        while topics and not all_topics and time.monotonic() < deadline and not stop.is_set():
            if all(t in conns for t in topics):
                break
            rclpy.spin_once(node, timeout_sec=0.1)
            discover()
        missing = [t for t in (topics or []) if t not in conns]
        if missing:
            log(f'bag record: not (yet) advertised: {", ".join(missing)}; recording the rest')
        log(f'bag record: recording {len([c for c in conns.values() if c])} topic(s) to {out}')
        end = time.monotonic() + duration if duration > 0 else None
        last_discovery = time.monotonic()
        while not stop.is_set() and (end is None or time.monotonic() < end):
            rclpy.spin_once(node, timeout_sec=0.1)
            if time.monotonic() - last_discovery > 1.0:
                discover()  # late publishers (and --all) keep being picked up
                last_discovery = time.monotonic()
    finally:
        with lock:
            writer.close()
        node.destroy_node()
        rclpy.try_shutdown()
    log(f'bag record: closed {out}: ' + ', '.join(f'{t} {n}' for t, n in sorted(counts.items())))
    return counts


# ----------------------------------------------------------------------------- play
def play(
    bag: Path,
    rate: float = 1.0,
    loop: bool = False,
    topics: list[str] | None = None,
    clock: bool = False,
    wait_for_subscribers: float = 5.0,
    log: Callable[[str], None] = print,
) -> int:
    """Republish a bag with its original timing (scaled by `rate`); returns messages sent."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock

    if rate <= 0:
        raise UserError('bag play: --rate must be > 0')
    reader = open_reader(bag)
    conns = [c for c in reader.connections if not topics or c.topic in topics]
    if not conns:
        reader.close()
        raise BagError(f'{bag}: none of the requested topics is in the bag')
    stop = threading.Event()
    _stop_on_signals(stop)
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node('cnn_perception_bag_player')
    # Reliable publishers match both reliable and best-effort subscribers.
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {}
    for c in conns:
        if c.topic not in pubs:
            pubs[c.topic] = node.create_publisher(message_class(c.msgtype), c.topic, qos)
    clock_pub = node.create_publisher(Clock, '/clock', 10) if clock else None
    sent = 0
    try:
        deadline = time.monotonic() + wait_for_subscribers
        while time.monotonic() < deadline and not all(
            p.get_subscription_count() > 0 for p in pubs.values()
        ):
            rclpy.spin_once(node, timeout_sec=0.05)
        log(f'bag play: {bag} ({len(pubs)} topic(s)) at rate {rate}')
        while not stop.is_set():
            t0_wall, t0_bag = None, None
            for conn, stamp, raw in reader.messages(connections=conns):
                if stop.is_set():
                    break
                if t0_wall is None:
                    t0_wall, t0_bag = time.monotonic(), stamp
                due = t0_wall + (stamp - t0_bag) / 1e9 / rate
                while not stop.is_set() and (wait := due - time.monotonic()) > 0:
                    time.sleep(min(wait, 0.05))
                if clock_pub is not None:
                    clock_pub.publish(Clock(clock=_time_msg(stamp)))
                pubs[conn.topic].publish(bytes(raw))
                sent += 1
            if not loop:
                break
        time.sleep(0.2)  # let the last messages leave before the publishers go
    finally:
        reader.close()
        node.destroy_node()
        rclpy.try_shutdown()
    log(f'bag play: sent {sent} message(s)')
    return sent


def _time_msg(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


# ----------------------------------------------------------------------------- info
def info(bag: Path) -> dict:
    import yaml

    reader = open_reader(bag)
    raw_meta = yaml.safe_load((Path(bag) / 'metadata.yaml').read_text())
    bag_meta = raw_meta['rosbag2_bagfile_information']
    try:
        topics = {}
        for c in reader.connections:
            t = topics.setdefault(c.topic, {'type': c.msgtype, 'count': 0})
            t['count'] += c.msgcount
        meta = {
            'path': str(bag),
            'storage': bag_meta['storage_identifier'],
            'version': bag_meta['version'],
            'messages': reader.message_count,
            'start_ns': reader.start_time if reader.message_count else 0,
            'end_ns': reader.end_time if reader.message_count else 0,
            'duration_s': reader.duration / 1e9 if reader.message_count else 0.0,
            'files': [str(Path(bag) / f['path']) for f in bag_meta.get('files', [])],
            'size_bytes': sum(
                (Path(bag) / f['path']).stat().st_size for f in bag_meta.get('files', [])
            ),
            'topics': topics,
        }
    finally:
        reader.close()
    return meta


def format_info(meta: dict) -> str:
    lines = [
        f'Files:             {", ".join(Path(f).name for f in meta["files"])}',
        f'Bag size:          {meta["size_bytes"] / 1e6:.1f} MB',
        f'Storage id:        {meta["storage"]} (rosbag2 version {meta["version"]})',
        f'Duration:          {meta["duration_s"]:.3f} s',
        f'Start:             {meta["start_ns"] / 1e9:.3f}',
        f'End:               {meta["end_ns"] / 1e9:.3f}',
        f'Messages:          {meta["messages"]}',
        'Topic information:',
    ]
    for topic, t in sorted(meta['topics'].items()):
        lines.append(f'  Topic: {topic} | Type: {t["type"]} | Count: {t["count"]}')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------- process
NS = '/cnn_perception'


def process(
    bag_in: Path,
    bag_out: Path,
    image_topic: str,
    classifier: bool = False,
    defects: str | None = None,
    features: bool = False,
    storage: str = 'mcap',
    classifier_model: str = 'efficientnet_lite0',
    backend: str = 'onnxruntime',
    log: Callable[[str], None] = print,
) -> dict:
    """Run the models on every image of `image_topic`; write their outputs to a new bag.

    No ROS graph: messages are (de)serialised with rclpy's CDR functions only. Output
    topics and fields are those of the live nodes (`results.py`), each message stamped
    with its source image's header and written at the source message's bag time.
    """
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from sensor_msgs.msg import Image
    from tqdm import tqdm

    from cnn_perception.core.draw import draw_defects, draw_label_panel
    from cnn_perception.io.images import ImageError, numpy_to_image, to_rgb8
    from cnn_perception.results import classification_msg, detections_msg, overlay_lines

    if not (classifier or defects or features):
        raise UserError('bag process: choose --classifier, --defects MODEL and/or --features')
    bag_out = Path(bag_out)
    if bag_out.exists():
        raise UserError(f'{bag_out}: exists already; bags are never overwritten')
    clf = det = fmm = mosaics = None
    if classifier:
        from cnn_perception.core.classifier import load_classifier

        clf = load_classifier(classifier_model, backend=backend)
    if defects:
        from cnn_perception.core.defects import DefectDetector, load_defect_model

        det = DefectDetector(load_defect_model(defects, log=log), backend=backend)
    if features:
        from cnn_perception.core import feature_maps as fm

        fmm = fm.FeatureMapModel(backend=backend)
        mosaics = fm.MosaicBuilder()
    reader = open_reader(bag_in)
    conns = [c for c in reader.connections if c.topic == image_topic]
    if not conns:
        have = ', '.join(sorted({c.topic for c in reader.connections}))
        reader.close()
        raise BagError(f'{bag_in}: no topic {image_topic} (has: {have})')
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    counts: dict[str, int] = {}
    with Writer(bag_out, version=9, storage_plugin=plugin) as writer:
        out_conns = {}

        def write(topic: str, msgtype: str, msg, stamp: int) -> None:
            if topic not in out_conns:
                out_conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(out_conns[topic], stamp, serialize_message(msg))
            counts[topic] = counts.get(topic, 0) + 1

        total = sum(c.msgcount for c in conns)
        try:
            for conn, stamp, raw in tqdm(
                reader.messages(connections=conns), total=total, unit='frame', desc='bag process'
            ):
                msg = deserialize_message(bytes(raw), Image)
                write(image_topic, conn.msgtype, msg, stamp)
                try:
                    rgb = to_rgb8(msg)
                except ImageError as exc:
                    log(f'bag process: frame at {stamp} skipped: {exc}')
                    counts['skipped'] = counts.get('skipped', 0) + 1
                    continue
                if clf is not None:
                    pred = clf.predict(rgb)
                    write(
                        f'{NS}/classifier/classification',
                        'cnn_perception_msgs/msg/Classification',
                        classification_msg(msg.header, pred, clf.info.name),
                        stamp,
                    )
                    panel = draw_label_panel(rgb, overlay_lines(pred, clf.info.name))
                    write(
                        f'{NS}/classifier/overlay',
                        'sensor_msgs/msg/Image',
                        numpy_to_image(panel, 'rgb8', msg.header),
                        stamp,
                    )
                if det is not None:
                    res = det.detect(rgb)
                    write(
                        f'{NS}/defects/detections',
                        'cnn_perception_msgs/msg/DetectionArray',
                        detections_msg(msg.header, res, Path(defects).name),
                        stamp,
                    )
                    write(
                        f'{NS}/defects/heatmap',
                        'sensor_msgs/msg/Image',
                        numpy_to_image(draw_defects(rgb, res), 'rgb8', msg.header),
                        stamp,
                    )
                if fmm is not None:
                    from cnn_perception.core import feature_maps as fm

                    logits, acts = fmm.run(rgb)
                    mosaic = mosaics.stacked({n: acts[n] for n in fmm.layers})
                    write(
                        f'{NS}/feature_maps/mosaic',
                        'sensor_msgs/msg/Image',
                        numpy_to_image(mosaic, 'rgb8', msg.header),
                        stamp,
                    )
                    full = fm.cam_to_source(
                        fm.eigen_cam(acts[fmm.cam_layer]), fmm.preprocess, *rgb.shape[:2]
                    )
                    write(
                        f'{NS}/feature_maps/cam',
                        'sensor_msgs/msg/Image',
                        numpy_to_image(fm.cam_overlay(rgb, full), 'rgb8', msg.header),
                        stamp,
                    )
        finally:
            reader.close()
    log(f'bag process: wrote {bag_out}: ' + ', '.join(f'{t} {n}' for t, n in counts.items()))
    return counts
