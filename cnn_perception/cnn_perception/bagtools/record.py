"""`bag record`: subscribe raw, write the CDR bytes DDS carried into a new rosbag2."""

from collections.abc import Callable
from pathlib import Path
import threading
import time

from cnn_perception.contract import ANNOTATION_TYPE, message_class
from cnn_perception.errors import UserError
from cnn_perception.io.annotations import Builder, annotation_topic
from cnn_perception.io.bags import typestore
from cnn_perception.runtime import stop_on_signals


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
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    if not topics and not all_topics:
        raise UserError('bag record: name --topics or give --all')
    out = Path(out)
    if out.exists():
        raise UserError(f'{out}: exists already; bags are never overwritten')
    stop = threading.Event()
    stop_on_signals(stop)
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node('cnn_perception_bag_recorder')
    store = typestore()
    annotate = Builder(store.types)
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out, version=9, storage_plugin=plugin)
    writer.open()
    conns, counts, lock = {}, {}, threading.Lock()
    ann_topics: set[str] = set()  # written by the recorder itself, not subscribed
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
        ann_topic = annotation_topic(topic)
        ann_conn = None
        if ann_topic and ann_topic not in conns:
            ann_conn = writer.add_connection(ann_topic, ANNOTATION_TYPE, typestore=store)
            conns[ann_topic] = ann_conn
            ann_topics.add(ann_topic)
            counts[ann_topic] = 0
        cls = message_class(msgtype)

        def on_msg(raw: bytes, topic=topic, conn=conn, ann_conn=ann_conn, cls=cls) -> None:
            now = time.time_ns()
            ann = None
            if ann_conn is not None:  # Foxglove's overlay of this result, same stamp
                msg = deserialize_message(raw, cls)
                ann = store.serialize_cdr(annotate.for_result(topic, msg), ANNOTATION_TYPE)
            with lock:
                writer.write(conn, now, raw)
                counts[topic] += 1
                if ann is not None:
                    writer.write(ann_conn, now, bytes(ann))
                    counts[ann_topic] += 1

        node.create_subscription(cls, topic, on_msg, qos, raw=True)

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
        n_ann = len(ann_topics)
        n = len([c for c in conns.values() if c]) - n_ann
        extra = f' (+{n_ann} annotation channel(s) for Foxglove)' if n_ann else ''
        log(f'bag record: recording {n} topic(s){extra} to {out}')
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
