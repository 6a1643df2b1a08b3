"""Classifier core on real photographs and real weights: both backends, parity, files."""

from pathlib import Path

from conftest import coffee_without_torch
import numpy as np
from photos import CAT_IDS, COFFEE_LABELS, chelsea, coffee
import pytest

from cnn_perception.core.classifier import load_classifier
from cnn_perception.core.models import get_model
from cnn_perception.errors import ModelFileError


@pytest.fixture(scope='module')
def classifiers():
    return {b: load_classifier(backend=b) for b in ('torch', 'onnxruntime')}


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_real_photos_get_the_right_top1(classifiers, backend):
    clf = classifiers[backend]
    cat = clf.predict(chelsea(), top_k=5)
    cup = clf.predict(coffee(), top_k=5)
    assert cat.results[0].class_id in CAT_IDS, cat.results
    assert cup.results[0].label in COFFEE_LABELS, cup.results
    assert clf.labels[285] == 'Egyptian cat' and clf.labels[967] == 'espresso'
    assert [h.score for h in cat.results] == sorted((h.score for h in cat.results), reverse=True)


def test_backends_agree(classifiers):
    for img in (chelsea(), coffee()):
        a = classifiers['torch'].predict(img).logits
        b = classifiers['onnxruntime'].predict(img).logits
        assert np.abs(a - b).max() < 1e-3
        assert a.argmax() == b.argmax()


def test_onnx_file_path_never_imports_torch(tmp_path, classifiers):
    onnx = classifiers['onnxruntime'].backend.path
    assert coffee_without_torch(f'{str(onnx)!r}, backend="onnxruntime"') in COFFEE_LABELS


def test_changed_weights_get_a_new_onnx_export(tmp_path):
    import torch

    from cnn_perception.core.backends import onnx_cache_path

    _, info = get_model('efficientnet_lite0')
    state = torch.load(info.weights_path, weights_only=True)
    mine = tmp_path / 'lite0.pth'
    torch.save(state, mine)
    _, info1 = get_model('efficientnet_lite0', weights=mine)
    first = onnx_cache_path(info1, 224)
    assert first.parent == tmp_path  # cached next to the weights
    state['_fc.bias'] = state['_fc.bias'] + 1.0
    torch.save(state, mine)
    _, info2 = get_model('efficientnet_lite0', weights=mine)
    assert onnx_cache_path(info2, 224) != first


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_bad_weight_files_fail_with_one_clear_error(tmp_path):
    import pickle

    import torch

    good = get_model('efficientnet_lite0')[1].weights_path
    truncated = _write(tmp_path / 'truncated.pth', good.read_bytes()[: 1 << 20])
    not_weights = _write(tmp_path / 'evil.pth', pickle.dumps(Path('/etc/passwd')))
    text = _write(tmp_path / 'notes.pth', b'these are not weights')
    wrong_arch = tmp_path / 'resnet.pth'
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), wrong_arch)
    cases = {
        tmp_path / 'missing.pth': 'no such model file',
        truncated: 'not a readable weights file',
        not_weights: 'not a readable weights file',
        text: 'not a readable weights file',
        wrong_arch: 'do not fit the mobilenet_v3_small architecture',
    }
    for path, why in cases.items():
        with pytest.raises(ModelFileError) as err:
            get_model(
                'mobilenet_v3_small' if path == wrong_arch else 'efficientnet_lite0', weights=path
            )
        assert str(path) in str(err.value) and why in str(err.value)
        assert '\n' not in str(err.value)
    with pytest.raises(ModelFileError, match='unknown model'):
        get_model('resnet9000')
    with pytest.raises(ModelFileError, match='no weights on this machine'):
        get_model('alexnet')


def test_torchvision_architecture_takes_a_user_weights_file(tmp_path):
    import torch
    import torchvision

    path = tmp_path / 'mnv3.pth'
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    clf = load_classifier('mobilenet_v3_small', weights=str(path), backend='onnxruntime')
    assert len(clf.predict(coffee(), top_k=3).results) == 3
    assert clf.backend.path.parent == tmp_path


def test_explain_totals_match_the_real_parameter_count():
    from cnn_perception.core.explain import conv_output_size, explain_model

    net, _ = get_model('efficientnet_lite0')
    report = explain_model(net, 224)
    t = report['totals']
    assert t['params'] == sum(p.numel() for p in net.parameters()) == 4_652_008
    assert t['formula_checked'] > 40 and t['formula_failed'] == 0
    first = report['layers'][0]
    assert (first['kernel'], first['stride'], first['padding']) == (3, 2, 1)
    assert first['out_shape'] == [32, 112, 112]
    assert conv_output_size(224, 3, 1, 2) == 112 and conv_output_size(227, 11, 0, 4) == 55
    assert report['layers'][-1]['out_shape'] == [1000]
