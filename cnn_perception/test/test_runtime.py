"""rclpy-free pieces the nodes rely on: the latest-frame worker, frame checks, parameters."""

import os
import subprocess
import sys
import threading
import time

import pytest

from cnn_perception.errors import UserError
from cnn_perception.params import Param, check_value, params_from_file
from cnn_perception.runtime import FrameMonitor, LatestFrameWorker
from cnn_perception.steps import node_params, step_class


class Header:
    def __init__(self, sec, frame_id='cam'):
        self.frame_id = frame_id
        self.stamp = type('T', (), {'sec': sec, 'nanosec': 0})()


def test_worker_drops_what_it_cannot_keep_up_with_and_never_queues():
    done, gate = [], threading.Event()

    def slow(item):
        gate.wait(5)
        done.append(item)

    w = LatestFrameWorker(slow, lambda e: None)
    try:
        for i in range(10):
            w.submit(i)
            time.sleep(0.01)
        gate.set()
        deadline = time.monotonic() + 5
        while w.processed + w.dropped < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done[-1] == 9, 'the newest frame is always processed'
        assert w.processed == len(done) <= 3 and w.processed + w.dropped == 10
    finally:
        w.stop()


def test_worker_survives_failures_and_reports_them():
    errors, seen = [], []

    def process(item):
        if item == 'bad':
            raise ValueError('boom')
        seen.append(item)

    w = LatestFrameWorker(process, errors.append)
    try:
        w.submit('bad')
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        w.submit('good')
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [str(e) for e in errors] == ['boom'] and seen == ['good']
        assert w.failures_in_a_row == 0
    finally:
        w.stop()


def test_worker_throttles_to_min_period():
    times = []
    w = LatestFrameWorker(lambda i: times.append(time.monotonic()), lambda e: None)
    w.min_period = 0.2
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            w.submit(0)
            time.sleep(0.01)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert gaps and min(gaps) >= 0.19, gaps
    finally:
        w.stop()


def test_frame_monitor_names_missing_frame_and_backwards_stamps():
    m = FrameMonitor()
    assert m.check(Header(10)) is None
    assert 'frame_id' in m.check(Header(11, ''))
    assert 'backwards by 5.000 s' in m.check(Header(6))
    assert m.check(Header(7)) is None


def test_check_value_types_ranges_choices():
    p = Param('rate', 1.0, 'x', 0.0, 10.0)
    assert check_value(p, 5) is None  # an int where a float is expected is fine
    assert 'out of range' in check_value(p, 11.0)
    assert 'expected float' in check_value(p, 'fast')
    c = Param('backend', 'onnxruntime', 'x', choices=('onnxruntime', 'torch'))
    assert 'not one of' in check_value(c, 'tensorflow')


def test_params_from_file_follows_ros_wildcards(tmp_path):
    params = node_params(step_class('classifier'))
    f = tmp_path / 'p.yaml'
    f.write_text(
        '/**:\n  ros__parameters:\n    top_k: 3\n'
        '/**/classifier:\n  ros__parameters:\n    model: efficientnet_lite1\n    top_k: 2\n'
        '/**/defect_detector:\n  ros__parameters:\n    top_k: 9\n'
    )
    p = params_from_file(f, 'classifier', params)
    assert p['model'] == 'efficientnet_lite1' and p['top_k'] == 2
    assert p['backend'] == 'onnxruntime' and p['image_transport'] == 'raw'  # defaults
    f.write_text('/**/classifier:\n  ros__parameters:\n    top_k: 0\n')
    with pytest.raises(UserError, match='top_k: 0 is out of range'):
        params_from_file(f, 'classifier', params)


def test_worker_thread_runs_at_the_niceness_asked_for_and_only_that_thread():

    seen = []
    w = LatestFrameWorker(
        lambda item: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())),
        lambda e: None,
        niceness=7,
    )
    try:
        w.submit(1)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        w.stop()
    assert seen == [7] and not w.nice_error
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0, 'only that thread'


HEAP_PROBE = """
import sys
import time
import numpy as np
from cnn_perception.runtime import keep_heap_small

def rss_mb():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024

took = keep_heap_small(True, 0.2) if sys.argv[1] == 'trimmed' else None
# glibc raises its mmap threshold to the size of a freed mmapped block: an 8 MiB
# buffer once freed, 1.5 MiB buffers come from the heap afterwards
big = np.ones(1 << 20); del big
before = rss_mb()
blocks, pins = [], []
for _ in range(60):
    blocks.append(np.ones(196608))  # 1.5 MiB, touched
    pins.append(np.ones(4096))  # 32 KiB, long-lived, between them on the heap
del blocks
time.sleep(1.0)
print(took, rss_mb() - before)
"""


def test_keep_heap_small_returns_freed_frame_buffers_to_the_system():
    """Without it, 90 MB of freed 1.5 MiB buffers stay in the process (the Pi's budget)."""
    kept = {}
    for mode in ('default', 'trimmed'):
        env = {k: v for k, v in os.environ.items() if k != 'CNN_PERCEPTION_TRIM_HEAP'}
        r = subprocess.run([sys.executable, '-c', HEAP_PROBE, mode], capture_output=True,
                           text=True, timeout=60, check=True, env=env)  # fmt: skip
        took, grown = r.stdout.split()
        kept[mode] = float(grown)
    assert took == 'True'
    assert kept['default'] > 60 and kept['trimmed'] < 10, kept
