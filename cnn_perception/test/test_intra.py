"""Frames handed over inside one process (intra.py): the hub alone, then a real pipeline.

The pipeline test runs `run --nodes camera,classifier` as its own OS process and watches
it from this one over DDS: while nobody outside listens to the camera, its frames reach
the classifier without DDS; once someone does, they go out over DDS as well, and the
classifier does not process the copies that come back to it.
"""

import numpy as np

from cnn_perception.intra import FrameHub, cdr_stamp_ns


class Header:
    frame_id = 'cam'


class Context:
    """Stands for an rclpy Context: hubs are kept per context object."""


def test_hub_hands_each_frame_to_every_local_subscriber_read_only():
    got_a, got_b = [], []
    ctx = Context()
    hub = FrameHub.get(ctx, '/ns/camera/image_raw')
    assert FrameHub.get(ctx, '/ns/camera/image_raw') is hub
    assert FrameHub.get(ctx, '/ns/other') is not hub
    assert FrameHub.get(Context(), '/ns/camera/image_raw') is not hub
    take_a = lambda h, f, seq: got_a.append(f)  # noqa: E731
    hub.subscribe(take_a)
    hub.subscribe(lambda h, f, seq: got_b.append(f))
    frame = np.zeros((4, 6, 3), np.uint8)
    assert hub.publish(Header(), frame, 123) == 2
    assert got_a[0] is frame and got_b[0] is frame and not frame.flags.writeable
    hub.unsubscribe(take_a)
    assert hub.local_count == 1 and hub.publish(Header(), frame.copy(), 124) == 1

    def broken(h, f, seq):
        raise RuntimeError('node gone')

    hub.subscribe(broken)
    assert hub.publish(Header(), frame.copy(), 125) == 2, 'a failing taker stops nobody'
    assert hub.errors == 1 and 'node gone' in hub.last_error and len(got_b) == 3


def test_each_frame_has_its_own_sequence_number_whatever_its_stamp_and_array():
    """What a node de-duplicates by: never id() of an array Python may reuse."""
    hub = FrameHub('/cam')
    seqs = []
    hub.subscribe(lambda h, f, seq: seqs.append(seq))
    for _ in range(3):  # the same stamp (0, a camera without a clock) every time
        hub.publish(Header(), np.zeros((2, 2, 3), np.uint8), 0)
    assert seqs == [1, 2, 3]


def test_the_leader_hands_its_frames_to_the_heads_that_follow_it():
    hub, other = FrameHub('/cam/image'), FrameHub('/other/image')
    got, elsewhere = [], []

    def take(h, f, seq):
        got.append((h, f, seq))

    hub.follow(take)
    other.follow(lambda h, f, seq: elsewhere.append(h))
    assert not hub.leading(1.0), 'no leader yet: followers take the topic'
    img = np.zeros((2, 2, 3), np.uint8)
    hub.hand_over('header 1', img, 7)
    assert got == [('header 1', img, 7)] and elsewhere == [], 'only the same image stream'
    assert hub.leading(1.0) and not other.leading(1.0)
    hub.unsubscribe(take)
    hub.hand_over('header 2', img, 8)
    assert len(got) == 1


def test_a_frame_that_comes_back_over_dds_is_recognised_by_its_stamp():
    from rclpy.serialization import serialize_message

    from cnn_perception.io.images import numpy_to_image

    msg = numpy_to_image(np.zeros((2, 2, 3), np.uint8), 'rgb8')
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1700000000, 250
    raw = serialize_message(msg)
    assert cdr_stamp_ns(raw) == 1700000000 * 10**9 + 250
    hub = FrameHub('/t')
    assert not hub.seen(raw), 'nothing handed over yet'
    hub.subscribe(lambda h, f, seq: None)
    hub.publish(msg.header, np.zeros((2, 2, 3), np.uint8), 1700000000 * 10**9 + 250)
    assert hub.seen(raw)
    msg.header.stamp.nanosec = 251
    assert not hub.seen(serialize_message(msg)), 'another frame from another publisher'
    assert cdr_stamp_ns(b'\x00\x01') is None


def test_pipeline_hands_frames_over_in_process_and_over_dds_only_when_someone_listens(probe):
    from cnn_perception_msgs.msg import Classification
    from conftest import diag_value, run_cli, stop_process
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from cnn_perception import contract

    diags = probe.listen(DiagnosticArray, '/diagnostics')
    results = probe.listen(Classification, contract.CLASSIFICATION.full())
    proc = run_cli('run', '--nodes', 'camera,classifier', '--duration', '120')
    try:

        def camera(key):
            return int(diag_value(diags, '/camera', key) or -1)

        def classifier(key):
            return int(diag_value(diags, '/classifier', key) or -1)

        assert probe.spin_until(lambda: camera('frames_in_process_only') > 30, 90), (
            'the camera never handed a frame over in-process:\n' + ''.join(proc.lines)[-3000:]
        )
        # each node publishes its diagnostics once a second, at its own phase
        probe.spin_until(lambda: classifier('processed') > 0, 5)
        assert classifier('processed') > 0 and classifier('duplicates_skipped') == 0
        # Someone outside the process subscribes to the camera: frames go out over DDS.
        images = probe.listen(Image, contract.CAMERA_IMAGE.full(), qos_profile_sensor_data)
        assert probe.spin_until(lambda: len(images) > 20, 30), 'no frames over DDS'
        local_only = camera('frames_in_process_only')
        probe.spin_until(lambda: classifier('duplicates_skipped') > 20, 30)
        assert classifier('duplicates_skipped') > 20, 'the DDS copies were not recognised'
        assert camera('frames_in_process_only') - local_only <= 2
        # Each frame processed once: no two results carry the same image stamp.
        stamps = [contract.stamp_ns(m.header) for _, m in results]
        assert len(stamps) > 50 and len(set(stamps)) == len(stamps)
        assert diag_value(diags, '/classifier', 'bad_frames') is None
    finally:
        log = stop_process(proc)
    assert 'Traceback' not in log, log[-3000:]
