"""camera_node for real: its own process, DDS, a probe in this process."""

import subprocess
import sys

from conftest import run_cli, stop_process
import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from cnn_perception.contract import NAMESPACE, stamp_ns

NS = NAMESPACE


def stamps(box):
    return [stamp_ns(m.header) for _, m in box]


def test_test_source_publishes_at_the_requested_rate(probe):
    images = probe.listen(Image, f'{NS}/camera/image_raw', qos_profile_sensor_data)
    infos = probe.listen(CameraInfo, f'{NS}/camera/camera_info', qos_profile_sensor_data)
    proc = run_cli('run', '--nodes', 'camera', '--source', 'test:', '--duration', '14')
    try:
        assert probe.spin_until(lambda: len(images) > 0, 20), 'no image arrived'
        start = len(images)
        probe.spin_for(8.0)
        rate = (len(images) - start) / 8.0
    finally:
        out = stop_process(proc)
    assert rate >= 0.9 * 30, f'{rate:.1f} frames/s received of 30 requested\n{out}'
    s = stamps(images)
    assert all(b > a for a, b in zip(s, s[1:], strict=False)), 'stamps must strictly increase'
    first = images[0][1]
    assert (first.width, first.height, first.encoding) == (640, 480, 'bgr8')
    assert first.header.frame_id == 'camera_optical_frame'
    assert infos and (infos[-1][1].width, infos[-1][1].height) == (640, 480)


def test_dir_and_file_sources(tmp_path, probe):
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f'{i}.png'), np.full((120, 160, 3), 60 * i, np.uint8))
    video = tmp_path / 'clip.avi'
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (160, 120))
    for i in range(10):
        out.write(np.full((120, 160, 3), 20 * i, np.uint8))
    out.release()
    images = probe.listen(Image, f'{NS}/camera/image_raw', qos_profile_sensor_data)
    for source in (f'dir:{folder}', f'file:{video}'):
        images.clear()
        proc = run_cli('run', '--nodes', 'camera', '--source', source, '--duration', '20')
        try:
            ok = probe.spin_until(lambda: len(images) >= 5, 20)
        finally:
            log = stop_process(proc)
        assert ok, f'{source}: {len(images)} images\n{log}'
        assert (images[0][1].width, images[0][1].height) == (640, 480)  # scaled to the params


def test_bad_source_is_one_clear_line_and_nonzero_exit():
    res = subprocess.run(
        [
            sys.executable,
            '-m',
            'cnn_perception',
            'run',
            '--nodes',
            'camera',
            '--source',
            'webcam please',
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "'webcam please'" in lines[0] and 'v4l2:' in lines[0] and 'test:' in lines[0]
    assert 'Traceback' not in res.stdout + res.stderr


def test_unplugged_source_is_reported_and_comes_back(tmp_path, probe):
    video = tmp_path / 'clip.avi'

    def write_clip():
        out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (160, 120))
        for i in range(5):
            out.write(np.full((120, 160, 3), 40 * i, np.uint8))
        out.release()

    write_clip()
    images = probe.listen(Image, f'{NS}/camera/image_raw', qos_profile_sensor_data)
    diags = probe.listen(DiagnosticArray, '/diagnostics')

    def camera_levels():
        return [s.level for _, m in diags for s in m.status if s.name.endswith('camera')]

    proc = run_cli('run', '--nodes', 'camera', '--source', f'file:{video}', '--duration', '40')
    try:
        assert probe.spin_until(lambda: len(images) >= 3, 20)
        video.unlink()  # unplugged
        assert probe.spin_until(lambda: DiagnosticStatus.ERROR in camera_levels(), 10)
        probe.spin_for(1.0)
        n = len(images)
        probe.spin_for(1.0)
        assert len(images) == n, 'no frames while the source is gone'
        assert proc.poll() is None, 'the node stays up'
        write_clip()  # plugged back in
        assert probe.spin_until(lambda: len(images) > n + 3, 20), 'frames resume'
    finally:
        log = stop_process(proc)
    assert 'Traceback' not in log
    # a device that does not exist at all: the node stays up and says so
    diags.clear()
    proc = run_cli('run', '--nodes', 'camera', '--source', 'v4l2:/dev/video99', '--duration', '20')
    try:
        assert probe.spin_until(lambda: DiagnosticStatus.ERROR in camera_levels(), 15)
        assert proc.poll() is None
    finally:
        stop_process(proc)
    msgs = [s.message for _, m in diags for s in m.status if s.level == DiagnosticStatus.ERROR]
    assert any('/dev/video99' in m for m in msgs), msgs
