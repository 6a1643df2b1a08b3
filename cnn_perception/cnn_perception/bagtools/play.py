"""`bag play`: republish a rosbag2 or ROS 1 bag with its timing (CDR bytes, not re-encoded)."""

from collections.abc import Callable
from pathlib import Path
import threading
import time

from cnn_perception.contract import message_class
from cnn_perception.errors import BagError, UserError
from cnn_perception.io.bags import BagReader, norm_topic
from cnn_perception.runtime import stop_on_signals


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
    reader = BagReader(bag)
    wanted = {norm_topic(t) for t in topics or []}
    conns = [c for c in reader.connections if not wanted or norm_topic(c.topic) in wanted]
    classes, missing = {}, set()
    for c in conns:
        if c.msgtype in classes or (c.topic, c.msgtype) in missing:
            continue  # a topic recorded over several connections is named once
        try:
            classes[c.msgtype] = message_class(c.msgtype)
        except BagError:
            missing.add((c.topic, c.msgtype))
            log(f'bag play: skipping {c.topic}: type {c.msgtype} is not available here')
    conns = [c for c in conns if c.msgtype in classes]
    if not conns:
        reader.close()
        raise BagError(f'{bag}: none of the requested topics is in the bag (or playable)')
    stop = threading.Event()
    stop_on_signals(stop)
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node('cnn_perception_bag_player')
    # Reliable publishers match both reliable and best-effort subscribers.
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {}
    for c in conns:
        if c.topic not in pubs:
            pubs[c.topic] = node.create_publisher(classes[c.msgtype], norm_topic(c.topic), qos)
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
                pubs[conn.topic].publish(reader.to_cdr(raw, conn.msgtype))
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
