"""Transfer learning end to end on real texture photographs (brick / gravel / grass)."""

import json
from pathlib import Path
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
from cnn_perception_msgs.msg import Classification
from conftest import run_cli, stop_process
import cv2
import pytest
from rclpy.qos import qos_profile_sensor_data

from cnn_perception.io.images import numpy_to_image
from cnn_perception.tools.datasets import TEXTURES, make_texture_classes


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('textures')
    data = make_texture_classes(root / 'train', per_class=30)
    held_out = make_texture_classes(root / 'test', per_class=8, seed=1, split='test')
    ckpt = root / 'textures.pt'
    t0 = time.monotonic()
    res = subprocess.run(
        [
            sys.executable,
            '-m',
            'cnn_perception',
            'train',
            '--data',
            str(data),
            '--out',
            str(ckpt),
            '--epochs',
            '4',
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    return ckpt, held_out, seconds, res.stdout


def test_train_reaches_95_percent_quickly_and_writes_its_outputs(trained):
    import torch

    ckpt, _, seconds, out = trained
    assert seconds < 180, f'training took {seconds:.0f} s'
    state = torch.load(ckpt, weights_only=True)  # no arbitrary code in the checkpoint
    assert state['labels'] == sorted(TEXTURES)
    assert state['metrics']['val_accuracy'] >= 0.95, out
    assert len(state['metrics']['history']) == 4
    assert 'true \\ predicted' in out and 'epoch 4/4' in out
    curves = ckpt.with_name('textures_curves.png')
    img = cv2.imread(str(curves))
    assert img is not None and img.shape[0] > 200 and img.std() > 10


def test_checkpoint_classifies_held_out_crops_via_classify(trained):
    ckpt, held_out, _, _ = trained
    files = sorted(held_out.glob('*/*.png'))
    res = subprocess.run(
        [
            sys.executable,
            '-m',
            'cnn_perception',
            'classify',
            '--model',
            str(ckpt),
            '--json',
            '--top-k',
            '1',
            '--repeat',
            '1',
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    right = sum(Path(r['image']).parent.name == r['results'][0]['label'] for r in rows)
    assert right / len(rows) >= 0.9, rows


def test_checkpoint_runs_in_the_node(trained, tmp_path, probe):
    ckpt, held_out, _, _ = trained
    params = tmp_path / 'params.yaml'
    params.write_text(f'/**/classifier:\n  ros__parameters:\n    model: {ckpt}\n')
    proc = run_cli(
        'run',
        '--nodes',
        'classifier',
        '--params-file',
        str(params),
        '--image-topic',
        '/test/textures',
        '--duration',
        '120',
    )
    results = probe.listen(Classification, '/cnn_perception/classifier/classification')
    pub = probe.node.create_publisher(
        type(numpy_to_image(cv2.imread(str(next(held_out.glob('*/*.png')))), 'bgr8')),
        '/test/textures',
        qos_profile_sensor_data,
    )
    expected = {}
    try:
        for i, name in enumerate(TEXTURES):
            path = sorted((held_out / name).glob('*.png'))[0]
            msg = numpy_to_image(cv2.imread(str(path)), 'bgr8')
            msg.header.stamp = Time(sec=100 + i)
            expected[100 + i] = name

            def got(sec=100 + i):
                return any(m.header.stamp.sec == sec for _, m in results)

            assert probe.publish_until(pub, msg, got), f'no result for {name}'
    finally:
        log = stop_process(proc)
    for _, m in results:
        assert m.results[0].label == expected[m.header.stamp.sec], log
        assert m.model == 'textures'
