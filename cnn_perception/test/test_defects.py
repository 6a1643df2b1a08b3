"""Defect detector on real texture photographs with painted defects (brick wall)."""

import json
import time

from cnn_perception_msgs.msg import DetectionArray
from conftest import cli_run, run_cli, stop_process
import cv2
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data

from cnn_perception.core.defects import (
    DefectDetector,
    DefectModel,
    FeatureExtractor,
    boxes_from_map,
    greedy_coreset,
    nearest_distance,
    nearest_search_session,
    normalise,
)
from cnn_perception.errors import ModelFileError
from cnn_perception.io.images import numpy_to_image


def cli(*args, timeout=600):
    res = cli_run(*args, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def fitted(root, surface: str):
    """Fit on 100 normal crops; test on 40 + 40 other crops (other random placements)."""
    for split, count, seed in (('fit', 100, 1), ('test', 40, 2)):
        cli('defects', 'make-dataset', '--out', root / split, '--texture', surface,
            '--count', count, '--seed', seed)  # fmt: skip
    t0 = time.monotonic()
    # the plain split these acceptance figures (docs/defects.md) were measured with
    out = cli('defects', 'fit', '--normal', root / 'fit' / 'normal', '--out', root / 'm.npz',
              '--calibration', 'holdout')  # fmt: skip
    return root, time.monotonic() - t0, out


def evaluate_cli(root) -> dict:
    out = cli(
        'defects',
        'eval',
        '--model',
        root / 'm.npz',
        '--normal',
        root / 'test' / 'normal',
        '--defect',
        root / 'test' / 'defect',
        '--masks',
        root / 'test' / 'masks',
        '--json',
        '--plot',
        root / 'roc.png',
    )
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def brick(tmp_path_factory):
    return fitted(tmp_path_factory.mktemp('brick'), 'brick')


def test_fit_is_quick_and_reports_its_calibration(brick):
    root, seconds, out = brick
    assert seconds < 120, f'fitting 100 images took {seconds:.0f} s'
    assert 'calibration: quantile threshold' in out
    model = DefectModel.load(root / 'm.npz')
    assert model.metrics['calibration']['val_normal'] == 20  # 20% held out of 100
    # 5% of 80 images x 40 x 40 patches (256 px crops scaled to the 320 px input)
    assert len(model.memory) == round(0.05 * 80 * 40 * 40)


def test_acceptance_figures_on_held_out_crops(brick):
    m = evaluate_cli(brick[0])
    assert m['image_auroc'] >= 0.95 and m['pixel_auroc'] >= 0.95, m
    assert m['box_hit_rate'] >= 0.9 and m['false_alarm_rate'] <= 0.1, m
    for key in ('plot', 'sheet'):
        img = cv2.imread(m[key])
        assert img is not None and img.std() > 10


def test_acceptance_on_a_surface_held_out_of_tuning(tmp_path):
    """The Moon's cratered ground, held out while the method was tuned.

    Layers, input size, coreset, boxes and calibration were chosen on brick and gravel
    only (docs/defects.md); this surface was first evaluated with them fixed.
    """
    m = evaluate_cli(fitted(tmp_path, 'moon')[0])
    assert m['image_auroc'] >= 0.95 and m['pixel_auroc'] >= 0.95, m
    assert m['box_hit_rate'] >= 0.9 and m['false_alarm_rate'] <= 0.1, m


def test_score_takes_a_builtin_model_as_the_node_does(brick):
    """`--model builtin:brick`: the model the node defaults to, fitted once and cached."""
    root = brick[0]
    defect = sorted((root / 'test' / 'defect').glob('*stain*.png'))[0]
    normal = sorted((root / 'test' / 'normal').glob('*.png'))[0]
    out = cli('defects', 'score', '--model', 'builtin:brick', defect, normal, '--json')
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r['is_defect'] for r in rows] == [True, False], rows


def test_score_json_boxes_lie_on_the_painted_defect(brick):
    root = brick[0]
    defect = sorted((root / 'test' / 'defect').glob('*stain*.png'))[0]
    normal = sorted((root / 'test' / 'normal').glob('*.png'))[0]
    out = cli('defects', 'score', '--model', root / 'm.npz', defect, normal, '--json')
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r['is_defect'] for r in rows] == [True, False]
    assert rows[1]['boxes'] == [] and rows[1]['score'] < 0.5 <= rows[0]['score']
    box = rows[0]['boxes'][0]
    mask = cv2.imread(str(root / 'test' / 'masks' / defect.name), cv2.IMREAD_GRAYSCALE)
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean(), ys.mean()
    assert box['x'] <= cx <= box['x'] + box['width'] and box['y'] <= cy <= box['y'] + box['height']
    assert rows[0]['inference_ms'] > 0


def test_backends_agree_on_patch_features():
    from skimage import data

    img = cv2.cvtColor(data.brick(), cv2.COLOR_GRAY2RGB)[:256, :256]
    a = FeatureExtractor(backend='onnxruntime')(img)
    b = FeatureExtractor(backend='torch')(img)
    assert a.shape == b.shape == (40, 40, 40)  # 256 px -> 320 px input, stride 8
    assert np.abs(a - b).max() < 1e-3


def test_coreset_picks_spread_out_points():
    rng = np.random.default_rng(0)
    clusters = np.concatenate([rng.normal(c, 0.01, (500, 8)) for c in (0, 5, 10, 15)])
    idx = greedy_coreset(clusters.astype(np.float32), 4, proj_dim=8)
    assert sorted(set(np.round(clusters[idx, 0] / 5).astype(int))) == [0, 1, 2, 3]


def test_normalisation_puts_the_threshold_at_one_half():
    s = normalise(np.array([10.0, 20.0, 30.0, 1e6]), base=10.0, threshold=20.0)
    assert s[0] == 0 and s[1] == pytest.approx(0.5) and s[2] > 0.5 and s[3] < 1.0
    assert normalise(15.0, 10.0, 20.0, sensitivity=2.0) == pytest.approx(0.5)


def test_hysteresis_boxes_span_a_faint_crack_and_hug_a_strong_stain():
    norm = np.zeros((200, 200), np.float32)
    norm[50, 20:120] = 0.45  # a faint line, just under the threshold ...
    norm[50, 60:64] = 0.55  # ... which passes it only here
    norm = cv2.GaussianBlur(norm, (0, 0), 1.5) * (0.55 / cv2.GaussianBlur(norm, (0, 0), 1.5).max())
    yy, xx = np.mgrid[:200, :200]
    stain = 0.9 * np.exp(-((xx - 150) ** 2 + (yy - 150) ** 2) / (2 * 12.0**2))
    norm = np.maximum(norm, stain.astype(np.float32))
    boxes = boxes_from_map(norm, min_area=4)
    assert len(boxes) == 2
    strong, faint = boxes
    assert faint.width > 60, faint  # the whole crack, not the 4 px over the threshold
    # the stain's box is its core, well inside where the smoothed blob exceeds 0.35
    wide = np.nonzero(norm[150] >= 0.35)[0]
    assert strong.width < 0.8 * (wide.max() - wide.min() + 1), strong
    assert boxes_from_map(np.full((50, 50), 0.49, np.float32)) == []


def test_ort_patch_search_matches_numpy():
    rng = np.random.default_rng(1)
    memory = rng.normal(size=(500, 40)).astype(np.float32)
    feats = rng.normal(size=(300, 40)).astype(np.float32)
    ref = nearest_distance(feats, memory, np.einsum('ij,ij->i', memory, memory))
    part = nearest_search_session(memory).run(None, {'features': feats})[0]
    got = np.sqrt(np.maximum(part + np.einsum('ij,ij->i', feats, feats), 0))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_threshold_rises_with_the_number_of_tiles():
    from statistics import NormalDist

    model = DefectModel(
        np.zeros((4, 40), np.float32),
        threshold=12.5,
        metrics={'calibration': {'val_mean': 10.0, 'val_sd': 1.0}},
    )
    det = DefectDetector(model)
    assert det.threshold_for(1) == 12.5
    a = 1 - NormalDist().cdf(2.5)
    assert det.threshold_for(15) == pytest.approx(10.0 + NormalDist().inv_cdf(1 - a / 15))
    assert 12.5 < det.threshold_for(4) < det.threshold_for(15)
    model.metrics = {}  # a model without the normal fit keeps its threshold
    assert DefectDetector(model).threshold_for(15) == 12.5


def test_tile_grid_covers_wide_and_tall_frames():
    grid = DefectDetector.tile_grid
    assert grid(720, 1280, 0) == ([0], [0], 0)  # tiling off
    assert grid(300, 300, 256) == ([0], [0], 0)  # not much larger than a tile
    ys, xs, side = grid(480, 1280, 480)  # one row of tiles
    assert ys == [0] and side == 480 and len(xs) > 1 and xs[-1] + side == 1280
    ys, xs, side = grid(720, 1280, 320)
    assert ys[-1] + side == 720 and xs[-1] + side == 1280
    assert all(b - a <= 0.75 * side for a, b in zip(xs, xs[1:], strict=False))  # overlap


def test_tiling_keeps_a_small_defect_in_a_large_frame(brick):
    """The whole 512x512 wall photo at the scale the model was fitted at (256 crops).

    Without tiling the frame is shrunk to 256 px: bricks and defect halve in size and the
    whole frame looks anomalous; 256 px tiles keep the scale and find the defect.
    """
    from cnn_perception.tools.datasets import paint_defect, texture

    root = brick[0]
    det = DefectDetector(DefectModel.load(root / 'm.npz'))
    wall = texture('brick')
    img, mask = paint_defect(wall, 'hole', np.random.default_rng(0))
    ys, xs = np.nonzero(mask)
    tiled = det.detect(img, tile=256)
    assert tiled.is_defect
    b = tiled.boxes[0]
    assert b.x <= xs.mean() <= b.x + b.width and b.y <= ys.mean() <= b.y + b.height
    assert b.width * b.height < 0.05 * 512 * 512
    assert not det.detect(wall, tile=256).is_defect
    untiled = det.detect(img)
    assert untiled.boxes[0].width > 400  # the lost detail: everything differs at half scale


def test_bad_model_files_fail_with_one_clear_line(brick, tmp_path):
    root = brick[0]
    good = (root / 'm.npz').read_bytes()
    (tmp_path / 'trunc.npz').write_bytes(good[: len(good) // 2])
    old = DefectModel.load(root / 'm.npz')
    meta = old.meta()
    meta['version'] = 0
    with open(tmp_path / 'old.npz', 'wb') as f:
        np.savez(f, memory=old.memory, meta=np.array(json.dumps(meta)))
    for name, why in (
        ('missing.npz', 'no such defect model'),
        ('trunc.npz', 'not a readable'),
        ('old.npz', 'version 0'),
    ):
        with pytest.raises(ModelFileError, match=why) as err:
            DefectModel.load(tmp_path / name)
        assert name in str(err.value) and '\n' not in str(err.value)
    res = cli_run('defects', 'score', '--model', tmp_path / 'trunc.npz', tmp_path / 'x.png')
    assert res.returncode == 2 and 'Traceback' not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_node_publishes_every_frame_and_boxes_only_on_defects(brick, tmp_path, probe):
    from builtin_interfaces.msg import Time

    root = brick[0]
    params = tmp_path / 'p.yaml'
    params.write_text(f'/**/defect_detector:\n  ros__parameters:\n    model: {root / "m.npz"}\n')
    proc = run_cli(
        'run',
        '--nodes',
        'defects',
        '--params-file',
        str(params),
        '--image-topic',
        '/test/wall',
        '--duration',
        '120',
    )
    got = probe.listen(DetectionArray, '/cnn_perception/defects/detections')
    defect = cv2.imread(str(sorted((root / 'test' / 'defect').glob('*.png'))[0]))
    normal = cv2.imread(str(sorted((root / 'test' / 'normal').glob('*.png'))[0]))
    pub = probe.node.create_publisher(
        type(numpy_to_image(normal, 'bgr8')), '/test/wall', qos_profile_sensor_data
    )
    try:
        for sec, img in ((1, defect), (2, normal)):
            msg = numpy_to_image(img, 'bgr8')
            msg.header.stamp = Time(sec=sec)
            msg.header.frame_id = 'wall_cam'

            def seen(sec=sec):
                return any(m.header.stamp.sec == sec for _, m in got)

            assert probe.publish_until(pub, msg, seen), f'no DetectionArray for frame {sec}'
    finally:
        log = stop_process(proc)
    by_sec = {m.header.stamp.sec: m for _, m in got}
    assert by_sec[1].detections and by_sec[1].image_score >= 0.5, log
    assert by_sec[2].detections == [] and by_sec[2].image_score < 0.5  # empty is an answer
    assert by_sec[1].header.frame_id == 'wall_cam'
    det = by_sec[1].detections[0]
    assert det.hypothesis.label == 'defect' and det.bbox.size_x > 0


def test_fit_takes_other_stages_and_rejects_unknown_ones(brick, tmp_path):
    root = brick[0]
    cli('defects', 'fit', '--normal', root / 'test' / 'normal', '--out', tmp_path / 'm24.npz',
        '--layers', '4', '2')  # fmt: skip
    model = DefectModel.load(tmp_path / 'm24.npz')
    assert model.layers == (2, 4) and model.memory.shape[1] == 40 + 112
    res = cli_run('defects', 'fit', '--normal', root / 'test' / 'normal', '--out',
                  tmp_path / 'x.npz', '--layers', '9')  # fmt: skip
    assert res.returncode == 2 and 'stages 0 to 6' in res.stderr and 'Traceback' not in res.stderr


def test_one_short_clean_flight_is_enough_kfold_calibration():
    """Fit on 60 normal 320x240 frames with the k-fold calibration.

    <= 10% false alarms on 40 other normal frames, and an image AUROC no lower than with
    the plain holdout split (issue 15, item 6).
    """
    from cnn_perception.tools.calibration_study import study

    res = study('brick')
    k, h = res['kfold'], res['holdout']
    assert k['false_alarm_rate'] <= 0.10, res
    assert k['image_auroc'] >= h['image_auroc'] - 0.005, res


def test_off_surface_gate_turns_away_what_is_not_the_wall(tmp_path):
    """Grass, sky, a cup, a cat and blank frames are not inspected; any wall view is."""
    from cnn_perception.core.defects import load_defect_model
    from cnn_perception.core.surfaces import texture
    from cnn_perception.tools.bench_localize import photo
    from cnn_perception.tools.datasets import augment_crop, paint_defect

    model = load_defect_model('builtin:brick')
    assert model.gate >= model.threshold > 0
    det = DefectDetector(model)
    rng = np.random.default_rng(3)
    wall = augment_crop(texture('brick'), 320, rng)
    painted, _ = paint_defect(wall, 'hole', rng)
    sky = cv2.resize(photo('china')[0:140, 300:640], (320, 320))
    half = wall.copy()
    half[:, 160:] = sky[:, 160:]
    on = {
        'wall': wall,
        'wall with a hole': painted,
        'wall in shade': (wall * 0.5).astype(np.uint8),
        'wall in sun': np.clip(wall * 1.5, 0, 255).astype(np.uint8),
        'half wall, half sky': half,
    }
    off = {
        'grass': cv2.resize(texture('grass'), (320, 320)),
        'sky': sky,
        'cup': photo('coffee'),
        'cat': photo('chelsea'),
        'black': np.zeros((240, 320, 3), np.uint8),
        'white': np.full((240, 320, 3), 255, np.uint8),
        'one colour': np.full((240, 320, 3), (40, 120, 200), np.uint8),
    }
    res = {k: det.detect(v) for k, v in {**on, **off}.items()}
    surface = {k: round(r.surface, 2) for k, r in res.items()}
    assert all(not res[k].off_surface for k in on), surface
    assert all(res[k].off_surface and not res[k].boxes for k in off), surface
    assert all(not res[k].is_defect for k in off)
    assert res['wall with a hole'].is_defect  # the gate takes nothing from a real defect
    assert DefectDetector(model).detect(off['grass'], tile=128).off_surface  # tiled too


def test_a_model_from_before_the_gate_loads_and_inspects_everything(tmp_path):
    from cnn_perception.core.defects import load_defect_model

    model = load_defect_model('builtin:brick')
    meta = model.meta()
    for key in ('gate', 'gate_quantile'):
        meta.pop(key)
    with open(tmp_path / 'old.npz', 'wb') as f:
        np.savez(f, memory=model.memory, meta=np.array(json.dumps(meta)))
    said = []
    old = load_defect_model(str(tmp_path / 'old.npz'), log=said.append)
    assert old.gate == 0 and len(said) == 1 and 'off-surface gate' in said[0]
    r = DefectDetector(old).detect(np.zeros((240, 320, 3), np.uint8))
    assert not r.off_surface and r.surface == 0.0
