"""Presence -> detection: boxes from the classifier's own activations (core, CLI, live)."""

import json

from cnn_perception_msgs.msg import DetectionArray
from conftest import cli_run, coffee_without_torch, run_cli, stop_process
import cv2
import numpy as np
from photos import CAT_IDS, COFFEE_LABELS, chelsea, coffee
import pytest

from cnn_perception.contract import NAMESPACE
from cnn_perception.core.classifier import load_classifier
from cnn_perception.core.localize import head_from_onnx, iou

# Drawn by hand on the photographs (x, y, width, height in their pixels).
CUP = (175, 18, 235, 287)  # coffee: the cup with its handle, not the saucer
CAT = (0, 0, 395, 300)  # chelsea: the cat fills the frame up to its right ear


def in_view(box, clf, h, w):
    """Clip a hand box to the centre square the classifier sees."""
    x0, y0, scale = clf.preprocess.crop_box(h, w)
    side = clf.preprocess.crop * scale
    a, b = max(box[0], x0), max(box[1], y0)
    c, d = min(box[0] + box[2], x0 + side), min(box[1] + box[3], y0 + side)
    return a, b, c - a, d - b


@pytest.mark.parametrize('backend', ['onnxruntime', 'torch'])
def test_boxes_on_the_cup_and_the_cat_from_an_exact_cam(backend):
    logs = []
    clf = load_classifier('efficientnet_lite0', backend=backend, localize=True, log=logs.append)
    clf.warm_up()
    assert clf.localizer.exact, 'pooling + one dense layer: the map is exact'
    assert not logs
    pred, boxes, _ = clf.localize(coffee(), 5, 0.0, 0.1)
    assert boxes[0].label in COFFEE_LABELS
    assert iou((boxes[0].x, boxes[0].y, boxes[0].width, boxes[0].height), CUP) >= 0.5
    img = chelsea()
    pred, boxes, _ = clf.localize(img, 5, 0.0, 0.1)
    top = boxes[0]
    assert top.class_id in CAT_IDS and pred.results[0].class_id == top.class_id
    assert iou((top.x, top.y, top.width, top.height), in_view(CAT, clf, *img.shape[:2])) >= 0.5
    # nothing passes the minimum score: no boxes, no error
    assert clf.localize(img, 5, 0.0, 1.0)[1] == []


def test_the_pi_path_reads_the_dense_head_from_the_onnx_file():
    import torch

    from cnn_perception.core.models import get_model

    clf = load_classifier('efficientnet_lite0', localize=True)
    head = head_from_onnx(clf.backend.path)
    net, _ = get_model('efficientnet_lite0')
    assert np.allclose(head.weight, net.classifier.weight.detach().numpy(), atol=1e-6)
    assert np.allclose(head.bias, net.classifier.bias.detach().numpy(), atol=1e-6)
    # the cam graph's logits are the plain graph's
    plain = load_classifier('efficientnet_lite0')
    x = plain.preprocess(coffee())
    assert np.allclose(plain.backend.run(x), clf.backend.run(x), atol=1e-4)
    del torch


def test_the_pi_path_boxes_without_torch():
    load_classifier('efficientnet_lite0', localize=True)  # the export, cached
    check = (
        'c.warm_up(); assert c.localizer.exact\n'
        'b = c.localize(data.coffee(), 5, 0.0, 0.1)[1]\n'
        'assert b and b[0].label == "espresso" and 100 < b[0].x < 250, b'
    )
    assert coffee_without_torch("'efficientnet_lite0', localize=True", check) == 'espresso'


def test_a_model_added_with_register_model_gets_exact_boxes():
    import functools

    from cnn_perception.core import models

    lite0 = models.model_entry('efficientnet_lite0')
    entry = models.ModelEntry(
        'my_lite0',
        lite0.build,
        lite0.preprocess,
        weights=functools.partial(models.shipped_lite_weights, 0),
        load=models.load_by_position,
        cam_layer='bn2',
    )
    models.register_model(entry, replace=True)
    clf = load_classifier('my_lite0', backend='torch', localize=True)
    clf.warm_up()
    assert clf.localizer.exact and clf.localizer.shift == (0.0, 0.0)  # not calibrated
    _, boxes, _ = clf.localize(coffee(), 5, 0.0, 0.1)
    assert boxes[0].label in COFFEE_LABELS
    assert iou((boxes[0].x, boxes[0].y, boxes[0].width, boxes[0].height), CUP) >= 0.3


def test_a_head_that_is_not_one_dense_layer_falls_back_to_eigencam_once():
    import torch
    from torch import nn

    from cnn_perception.core.backends import TorchBackend
    from cnn_perception.core.classifier import Classifier
    from cnn_perception.core.feature_nets import MultiOutputNet
    from cnn_perception.core.localize import Localizer, head_from_torch
    from cnn_perception.core.models import get_model

    net, info = get_model('efficientnet_lite0')
    torch.manual_seed(0)
    hidden = nn.Linear(1280, 1280)
    net.classifier = nn.Sequential(hidden, nn.ReLU(), net.classifier)  # two dense layers
    logs = []
    clf = Classifier(
        TorchBackend(MultiOutputNet(net.eval(), ['bn2'])),
        info,
        Localizer(head_from_torch(net, 1280), 'two_dense', log=logs.append),
    )
    clf.warm_up()
    assert clf.localizer.exact is False
    assert len(logs) == 1 and 'EigenCAM' in logs[0]
    _, boxes, _ = clf.localize(coffee(), 5, 0.0, 0.0)
    assert boxes and len({b.class_id for b in boxes}) == 1, 'top-1 class only'
    clf.localize(chelsea(), 5, 0.0, 0.0)
    assert len(logs) == 1, 'said once'


def test_localize_cli_json_lines(tmp_path):
    paths = []
    for name, img in (('coffee', coffee()), ('cat', chelsea())):
        paths.append(tmp_path / f'{name}.jpg')
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    res = cli_run('localize', *map(str, paths), '--json', '--out', str(tmp_path / 'out'))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(s) for s in res.stdout.splitlines()]
    assert [d['image'] for d in lines] == [str(p) for p in paths]
    cup = lines[0]['detections'][0]
    assert set(cup) == {'label', 'class_id', 'score', 'x', 'y', 'width', 'height'}
    assert cup['label'] in COFFEE_LABELS
    assert iou((cup['x'], cup['y'], cup['width'], cup['height']), CUP) >= 0.5
    scores = [d['score'] for d in lines[1]['detections']]
    assert scores == sorted(scores, reverse=True)
    assert (tmp_path / 'out' / 'coffee.boxes.png').is_file()
    (tmp_path / 'bad.jpg').write_text('not an image')
    res = cli_run('localize', str(tmp_path / 'bad.jpg'))
    assert res.returncode == 2 and 'not a readable image' in res.stderr
    assert 'Traceback' not in res.stderr


def test_live_boxes_with_stable_ids_over_dds(tmp_path, probe):
    params = tmp_path / 'p.yaml'
    params.write_text(
        '/**/camera:\n  ros__parameters:\n    fps: 10.0\n'
        '/**/classifier:\n  ros__parameters:\n    localize: false\n'  # the flag wins
    )
    proc = run_cli(
        'run', '--nodes', 'camera,classifier', '--source', 'test:',
        '--params-file', str(params), '--duration', '120', '--localize',
    )  # fmt: skip
    try:
        msgs = probe.listen(DetectionArray, f'{NAMESPACE}/classifier/detections')
        assert probe.spin_until(lambda: sum(bool(m.detections) for _, m in msgs) >= 12, 90), (
            f'{len(msgs)} DetectionArrays, none with boxes'
        )
    finally:
        log = stop_process(proc)
    assert 'Traceback' not in log, log
    arrays = [m for _, m in msgs]
    assert all(a.header.frame_id == 'camera_optical_frame' for a in arrays)
    labels = {d.hypothesis.label for a in arrays for d in a.detections}
    assert labels & ({'tabby', 'tiger cat', 'Egyptian cat'} | COFFEE_LABELS), labels
    # the test camera pans slowly over the photographs: one object keeps its id
    ids = [d.id for a in arrays for d in a.detections if d.id]
    assert ids and max(ids.count(i) for i in set(ids)) >= 3, ids
    for a in arrays:
        for d in a.detections:
            assert 0 <= d.bbox.center_x <= 640 and 0 <= d.bbox.center_y <= 480
            assert 0 < d.hypothesis.score <= 1


def test_bag_process_localize_writes_boxes_foxglove_decodes(tmp_path):
    """`bag process --localize`: detections and their annotations, read as Foxglove reads."""
    import bag_shapes as bs
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from cnn_perception import contract

    msgs = [bs.image_msg(img, i) for i, img in enumerate([coffee(), chelsea()] * 2)]
    bag_in = bs.write_bag(tmp_path / 'in', msgs)
    res = cli_run(
        'bag', 'process', str(bag_in), str(tmp_path / 'out'), '--classifier', '--localize'
    )
    assert res.returncode == 0, res.stderr
    by_topic, schemas = {}, {}
    with open(next((tmp_path / 'out').glob('*.mcap')), 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, _, decoded in reader.iter_decoded_messages():
            schemas[channel.topic] = schema.name
            by_topic.setdefault(channel.topic, []).append(decoded)
    dets = by_topic[contract.CLASSIFIER_DETECTIONS.full()]
    assert len(dets) == 4 and all(d.detections for d in dets)
    assert dets[0].detections[0].hypothesis.label in COFFEE_LABELS
    assert dets[1].detections[0].hypothesis.class_id in CAT_IDS
    topic = contract.CLASSIFIER_BOX_ANNOTATIONS.full()
    assert schemas[topic] == 'foxglove_msgs/msg/ImageAnnotations'
    ann = by_topic[topic]
    assert len(ann) == 4 and len(ann[0].points) == len(dets[0].detections)
    p = ann[0].points[0]
    assert p.type == 2 and len(p.points) == 4  # a closed box
    stamp = dets[0].header.stamp
    assert (p.timestamp.sec, p.timestamp.nanosec) == (stamp.sec, stamp.nanosec)
    assert dets[0].detections[0].hypothesis.label in ann[0].texts[0].text


def test_the_shared_pass_boxes_the_whole_frame_and_tracks_objects():
    """The shared pass sees the whole frame: boxes anywhere in it, one track per object."""
    from std_msgs.msg import Header

    from cnn_perception import contract
    from cnn_perception.core.shared import SharedBackbone
    from cnn_perception.io.sources import TestScene
    from cnn_perception.steps import node_params
    from cnn_perception.steps.classify import ClassifierStep

    p = {q.name: q.default for q in node_params(ClassifierStep)}
    p.update(localize=True, shared_backbone=True)
    shared = ClassifierStep(p)
    scene = TestScene(640, 480, speed_px=8)
    seen = []
    for i in range(12):
        rgb = scene.read()
        header = Header(frame_id='cam')
        header.stamp.sec = 100 + i
        b = dict(shared(rgb, header).messages)[contract.CLASSIFIER_DETECTIONS]
        assert b.header.stamp.sec == 100 + i and b.header.frame_id == 'cam'
        for d in b.detections:
            x0, y0 = d.bbox.center_x - d.bbox.size_x / 2, d.bbox.center_y - d.bbox.size_y / 2
            assert -1 <= x0 and x0 + d.bbox.size_x <= 641 and -1 <= y0
            assert y0 + d.bbox.size_y <= 481
        seen.append([(d.id, d.hypothesis.class_id) for d in b.detections if d.id])
    SharedBackbone.get('efficientnet_lite0').forget()
    # the scene pans over the cat: its track keeps one id and one class across frames
    ids = [i for frame in seen for i in frame]
    assert ids, seen
    first = ids[0]
    assert sum(1 for frame in seen if first in frame) >= 6, seen
