"""classifier_node driven by real photographs over DDS, in its own process."""

from builtin_interfaces.msg import Time
from cnn_perception_msgs.msg import Classification, LabelMap
from conftest import run_cli, set_param, stop_process
import cv2
from photos import CAT_IDS, COFFEE_LABELS, chelsea, coffee
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data

from cnn_perception.contract import NAMESPACE
from cnn_perception.io.images import numpy_to_image

NS = NAMESPACE
TOPIC = '/test/image'


@pytest.fixture(scope='module')
def classifier_process():
    proc = run_cli('run', '--nodes', 'classifier', '--image-topic', TOPIC, '--duration', '300')
    yield proc
    log = stop_process(proc)
    assert 'Traceback' not in log, log


def frame(rgb, sec: int):
    msg = numpy_to_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 'bgr8')
    msg.header.stamp = Time(sec=sec, nanosec=0)
    msg.header.frame_id = 'cam'
    return msg


def test_photos_are_classified_with_their_header(classifier_process, probe):
    pub = probe.node.create_publisher(type(frame(coffee(), 0)), TOPIC, qos_profile_sensor_data)
    results = probe.listen(Classification, f'{NS}/classifier/classification')
    labels = probe.listen(
        LabelMap,
        f'{NS}/classifier/labels',
        QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL),
    )
    assert probe.spin_until(lambda: labels, 60), 'LabelMap (transient local) not received'
    assert len(labels[0][1].labels) == 1000 and labels[0][1].labels[285] == 'Egyptian cat'
    for sec, img in ((11, chelsea()), (12, coffee())):
        # Publish until this frame's result arrives (discovery may drop the first ones).
        def got(sec=sec):
            return any(m.header.stamp.sec == sec for _, m in results)

        for _ in range(40):
            pub.publish(frame(img, sec))
            if probe.spin_until(got, 0.5):
                break
        assert got(), f'no classification for frame {sec}'
    by_sec = {m.header.stamp.sec: m for _, m in results}
    cat, cup = by_sec[11], by_sec[12]
    assert cat.results[0].class_id in CAT_IDS and cup.results[0].label in COFFEE_LABELS
    assert cat.header.frame_id == 'cam' and cat.model == 'efficientnet_lite0'
    assert len(cat.results) == 5 and cat.inference_ms > 0
    assert set(by_sec) <= {11, 12}, 'only published frames are answered'


def test_live_parameters_and_rejections(classifier_process, probe):
    assert not set_param(probe, 'top_k', 0).successful
    res = set_param(probe, 'model', 'resnet18')
    assert not res.successful and 'restart' in res.reason
    res = set_param(probe, 'score_threshold', 1.5)
    assert not res.successful and 'out of range' in res.reason
    assert set_param(probe, 'top_k', 2).successful
    pub = probe.node.create_publisher(type(frame(coffee(), 0)), TOPIC, qos_profile_sensor_data)
    results = probe.listen(Classification, f'{NS}/classifier/classification')

    def got():
        return any(m.header.stamp.sec == 21 for _, m in results)

    for _ in range(40):
        pub.publish(frame(coffee(), 21))
        if probe.spin_until(got, 0.5):
            break
    assert [len(m.results) for _, m in results if m.header.stamp.sec == 21][0] == 2


def test_frames_it_cannot_keep_up_with_are_dropped_not_queued(classifier_process, probe):
    import time

    assert set_param(probe, 'max_rate_hz', 4.0).successful
    pub = probe.node.create_publisher(type(frame(coffee(), 0)), TOPIC, qos_profile_sensor_data)
    results = probe.listen(Classification, f'{NS}/classifier/classification')
    msg = frame(coffee(), 0)
    sent = {}
    t0 = time.monotonic()
    sec = 1000
    while time.monotonic() - t0 < 5.0:  # ~20 frames/s for 5 s against a 4 Hz classifier
        sec += 1
        msg.header.stamp = Time(sec=sec)
        pub.publish(msg)
        sent[sec] = time.monotonic()
        probe.spin_for(0.02)
    last_sent = time.monotonic()
    probe.spin_for(2.0)
    got = [(t, m.header.stamp.sec) for t, m in results if m.header.stamp.sec > 1000]
    assert len(sent) > 60
    assert 10 <= len(got) <= 4 * 5 + 3, f'{len(got)} results for {len(sent)} frames at 4 Hz'
    assert all(s in sent for _, s in got)
    # No backlog: nothing arrives long after the last frame, and every answer is to a
    # frame that was recent when it came.
    assert all(t - last_sent < 0.6 for t, _ in got if t > last_sent)
    lags = [round(t - sent[s], 2) for t, s in got]
    assert max(lags) < 0.6, lags
    assert set_param(probe, 'max_rate_hz', 0.0).successful


def test_overlays_for_people_are_throttled_results_are_not(classifier_process, probe):
    import time

    from sensor_msgs.msg import Image

    assert set_param(probe, 'image_max_rate_hz', 2.0).successful
    pub = probe.node.create_publisher(type(frame(coffee(), 0)), TOPIC, qos_profile_sensor_data)
    results = probe.listen(Classification, f'{NS}/classifier/classification')
    overlays = probe.listen(Image, f'{NS}/classifier/overlay', qos_profile_sensor_data)
    msg = frame(coffee(), 0)
    t0 = time.monotonic()
    sec = 2000
    while time.monotonic() - t0 < 4.0:  # ~10 frames/s for 4 s, each one classified
        sec += 1
        msg.header.stamp = Time(sec=sec)
        pub.publish(msg)
        probe.spin_for(0.1)
    probe.spin_for(1.0)
    got = [m.header.stamp.sec for _, m in results if m.header.stamp.sec > 2000]
    drawn = [m.header.stamp.sec for _, m in overlays if m.header.stamp.sec > 2000]
    assert len(got) >= 20, f'{len(got)} results for {sec - 2000} frames'
    # 2 Hz over ~4 s of frames; the first overlay may wait for the subscription to match
    assert 2 <= len(drawn) <= 2 * 5 + 1, f'{len(drawn)} overlays for {len(got)} results'
    assert set(drawn) <= set(got)  # an overlay is always of a frame that has results
    assert set_param(probe, 'image_max_rate_hz', 0.0).successful
