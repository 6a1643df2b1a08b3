"""The interface package works over DDS between processes and in rosbag2 files."""

from pathlib import Path

from conftest import TEST_DIR, python_process, spin_until, stop_process
from msg_samples import samples
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
import yaml


def test_every_message_crosses_processes_over_dds(rclpy_context):
    import rclpy
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile

    expected = samples()
    proc = python_process(str(TEST_DIR / 'pub_samples.py'))
    node = rclpy.create_node('sample_probe', context=rclpy_context)
    got = {}
    qos = QoSProfile(depth=1, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    try:
        for name, msg in expected.items():
            node.create_subscription(
                type(msg), f'samples/{name}', lambda m, n=name: got.setdefault(n, m), qos
            )
        executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
        executor.add_node(node)
        ok = spin_until(node, lambda: len(got) == len(expected), 30.0, executor)
        assert ok, f'received only {sorted(got)} of {sorted(expected)}'
    finally:
        node.destroy_node()
        out = stop_process(proc)
    assert 'publishing' in out
    for name, msg in expected.items():
        assert got[name] == msg, name


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_every_message_round_trips_through_a_rosbag2_file(tmp_path: Path, storage):
    from cnn_perception.io.bags import typestore

    store = typestore()
    bag = tmp_path / 'bag'
    expected = samples()
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(bag, version=9, storage_plugin=plugin) as writer:
        for i, (name, msg) in enumerate(expected.items()):
            conn = writer.add_connection(
                f'/samples/{name}', f'cnn_perception_msgs/msg/{name}', typestore=store
            )
            writer.write(conn, 1_000 + i, serialize_message(msg))

    meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['version'] in (8, 9)
    assert meta['storage_identifier'] == storage
    assert meta['message_count'] == len(expected)

    seen = {}
    with Reader(bag) as reader:
        for conn, _stamp, raw in reader.messages():
            name = conn.topic.rsplit('/', 1)[1]
            msg = deserialize_message(bytes(raw), type(expected[name]))
            assert msg == expected[name], name
            # The bag's own type definitions (from our .msg files) decode it too.
            decoded = store.deserialize_cdr(raw, conn.msgtype)
            seen[name] = decoded
            assert conn.msgdef.data.strip(), 'message definition stored in the bag'
    assert set(seen) == set(expected)
    assert seen['LabelMap'].labels == ['tench', 'goldfish', 'ünïcode']
    assert seen['DetectionArray'].detections[1].bbox.center_y == pytest.approx(240.25)
    assert seen['Classification'].header.stamp.nanosec == 123_456_789
