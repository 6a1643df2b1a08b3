"""The public model registry: EfficientNet-Lite1 and Lite2 through every path Lite0 takes."""

import json
import subprocess
import sys

import numpy as np
from photos import CAT_IDS, COFFEE_LABELS, chelsea, coffee
import pytest

from cnn_perception.core.classifier import load_classifier
from cnn_perception.core.models import (
    ModelEntry,
    Preprocess,
    get_model,
    list_models,
    model_entry,
    register_model,
)
from cnn_perception.errors import ModelFileError

LITES = ['efficientnet_lite1', 'efficientnet_lite2']


@pytest.fixture(scope='module', params=LITES)
def pair(request):
    name = request.param
    return name, {b: load_classifier(name, backend=b) for b in ('torch', 'onnxruntime')}


def test_lite1_and_lite2_are_registered_with_their_own_input_sizes():
    assert {'efficientnet_lite0', *LITES} <= set(list_models())
    assert [model_entry(n).preprocess.crop for n in ('efficientnet_lite0', *LITES)] == [
        224,
        240,
        260,
    ]
    for n in LITES:
        e = model_entry(n)
        assert e.weights().is_file() and e.feature_layers and e.cam_layer == 'bn2'


def test_right_top1_on_both_backends_and_they_agree(pair):
    name, clfs = pair
    for img, ok in ((chelsea(), lambda r: r.class_id in CAT_IDS), (coffee(), None)):
        top = {b: c.predict(img, top_k=3) for b, c in clfs.items()}
        for b, pred in top.items():
            r = pred.results[0]
            assert ok(r) if ok else r.label in COFFEE_LABELS, (name, b, pred.results)
        diff = np.abs(top['torch'].logits - top['onnxruntime'].logits).max()
        assert diff < 1e-3, (name, diff)
        assert clfs['onnxruntime'].backend.session.get_inputs()[0].shape[2] == (
            model_entry(name).preprocess.crop
        )


def test_explain_counts_every_parameter_of_lite2():
    out = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', 'explain', '--model', 'efficientnet_lite2',
         '--json'],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    net, _ = get_model('efficientnet_lite2')
    t = report['totals']
    assert t['params'] == t['model_params'] == sum(p.numel() for p in net.parameters())
    assert report['input_size'] == 260 and t['formula_failed'] == 0


def test_feature_maps_and_cam_come_from_the_registry_entry():
    from cnn_perception.core import feature_maps as fm

    m = fm.FeatureMapModel('efficientnet_lite1', backend='onnxruntime')
    logits, acts = m.run(chelsea())
    assert m.layers == list(model_entry('efficientnet_lite1').feature_layers)
    assert int(np.argmax(logits)) in CAT_IDS
    assert acts['bn2'].shape[0] == 1280 and acts['conv_stem'].shape[1] == 120  # 240 / 2


def test_register_model_adds_an_architecture_and_unknown_names_fail_in_one_line():
    import timm

    entry = register_model(
        ModelEntry(
            name='tiny_test_net',
            build=lambda n: timm.create_model('efficientnet_lite0', num_classes=n),
            preprocess=Preprocess(resize=160, crop=128),
        )
    )
    assert model_entry('tiny_test_net') is entry and 'tiny_test_net' in list_models()
    with pytest.raises(ValueError, match='registered already'):
        register_model(entry)  # never replaced silently
    assert register_model(entry, replace=True) is entry
    with pytest.raises(ModelFileError, match='has no weights'):
        get_model('tiny_test_net')
    with pytest.raises(ModelFileError, match="unknown model 'nope'"):
        model_entry('nope')
