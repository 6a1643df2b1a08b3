"""Feature maps and class activation maps on real photographs; the node's laziness."""

import json
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
from conftest import diag_value, run_cli, stop_process
import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from photos import chelsea, coffee
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from cnn_perception.core import feature_maps as fm
from cnn_perception.io.images import numpy_to_image

# Regions read off the photographs (pixels, x0, y0, x1, y1): in scikit-image's `coffee`
# (600x400) the cup with its rim and the coffee surface; in `chelsea` (451x300) the cat,
# which fills the right two thirds (the left third is blurred background).
CUP = (150, 20, 460, 300)
CAT = (150, 0, 451, 300)


def features_json(tmp_path, img, cam='eigencam'):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / 'in.png'
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    res = subprocess.run(
        [
            sys.executable,
            '-m',
            'cnn_perception',
            'features',
            str(path),
            '--out',
            str(tmp_path / cam),
            '--cam',
            cam,
            '--json',
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def inside(xy, box):
    return box[0] <= xy[0] <= box[2] and box[1] <= xy[1] <= box[3]


@pytest.mark.parametrize('cam', ['eigencam', 'gradcam'])
def test_cam_peaks_on_the_object_of_the_top_class(tmp_path, cam):
    cup = features_json(tmp_path / 'cup', coffee(), cam)
    cat = features_json(tmp_path / 'cat', chelsea(), cam)
    assert cup['cam']['label'] in ('espresso', 'cup') and inside(cup['cam']['peak_xy'], CUP)
    assert 'cat' in cat['cam']['label'] and inside(cat['cam']['peak_xy'], CAT)
    assert cup['cam']['method'] == cam
    overlay = cv2.imread(cup['cam']['path'])
    assert overlay.shape == (400, 600, 3)


def test_layer_mosaics_follow_the_layer_shapes(tmp_path):
    rep = features_json(tmp_path, coffee())
    layers = {d['name']: d for d in rep['layers']}
    first, deep = layers['conv_stem'], layers['blocks.5']
    assert first['shape'] == [32, 112, 112] and deep['shape'] == [192, 7, 7]
    a, b = cv2.imread(first['path']), cv2.imread(deep['path'])
    assert a is not None and b is not None
    assert a.shape[0] > 3 * b.shape[0] and a.shape[1] > 3 * b.shape[1]
    assert a.std() > 10 and b.std() > 10  # real content, not flat
    text = (tmp_path / 'eigencam' / 'shapes.txt').read_text()
    assert 'conv_stem: 32 channels x 112 x 112' in text


def test_list_layers_names_real_modules():
    res = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', 'features', '--list-layers', '--json'],
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = {r['name']: r['shape'] for r in json.loads(res.stdout)}
    assert rows['conv_stem'] == [32, 112, 112] and rows['bn2'] == [1280, 7, 7]


def test_backends_agree_and_mosaic_channels_stay_put():
    a = fm.FeatureMapModel(backend='onnxruntime')
    b = fm.FeatureMapModel(backend='torch')
    la, acts_a = a.run(coffee())
    lb, acts_b = b.run(coffee())
    assert np.abs(la - lb).max() < 1e-3
    for name in a.outputs:
        assert np.abs(acts_a[name] - acts_b[name]).max() < 1e-2, name
    mb = fm.MosaicBuilder(channels=8, choose_frames=2)
    for img in (coffee(), coffee(), chelsea(), chelsea()):
        _, acts = a.run(img)
        mb.layer('blocks.3', acts['blocks.3'])
    chosen = mb._chosen['blocks.3'].copy()
    _, acts = a.run(chelsea())
    mb.layer('blocks.3', acts['blocks.3'])
    assert np.array_equal(mb._chosen['blocks.3'], chosen)


def test_eigen_cam_is_the_first_principal_component_of_real_activations():
    """The small-Gram-matrix route gives what the plain SVD of EigenCAM's paper gives."""
    model = fm.FeatureMapModel('efficientnet_lite0', backend='onnxruntime')
    for img in (chelsea(), coffee()):
        _, acts = model.run(img)
        for act in (acts[model.cam_layer], acts[model.layers[0]]):  # C > HW, and HW > C
            c, h, w = act.shape
            flat = act.reshape(c, h * w).T.astype(np.float64)
            _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
            proj = flat @ vt[0]
            if np.corrcoef(proj, flat.mean(1))[0, 1] < 0:
                proj = -proj
            ref = np.maximum(proj, 0).reshape(h, w)
            ref = ref / ref.max()
            assert np.abs(fm.eigen_cam(act) - ref).max() < 1e-4, (act.shape, img.shape)


def test_node_is_idle_unwatched_and_throttled_when_watched(probe):
    diags = probe.listen(DiagnosticArray, '/diagnostics')
    proc = run_cli('run', '--nodes', 'features', '--image-topic', '/test/fm', '--duration', '120')
    pub = probe.node.create_publisher(Image, '/test/fm', qos_profile_sensor_data)
    msg = numpy_to_image(cv2.cvtColor(coffee(), cv2.COLOR_RGB2BGR), 'bgr8')

    def value(key):
        v = diag_value(diags, 'feature_map', key)
        return int(v) if v is not None else None

    def feed(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg.header.stamp = Time(sec=int(time.time()))
            pub.publish(msg)
            probe.spin_for(0.05)

    try:
        assert probe.spin_until(lambda: value('inferences') is not None, 60), 'node not up'
        feed(4.0)
        assert value('inferences') == 0, 'inference with nobody watching'
        mosaics = probe.listen(Image, '/cnn_perception/feature_maps/mosaic')
        feed(2.0)  # discovery of the new subscriber
        start = len(mosaics)
        feed(5.0)
        n = len(mosaics) - start
    finally:
        stop_process(proc)
    assert 4 <= n <= 2 * 5 + 1, f'{n} mosaics in 5 s at max_rate_hz 2'
    m = mosaics[-1][1]
    assert m.encoding == 'rgb8' and m.height > m.width  # layers stacked top to bottom
