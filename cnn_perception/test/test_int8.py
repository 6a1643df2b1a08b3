"""INT8 for the CPU boards: the quality gate, the cache, the torch-free path, the fallback."""

import subprocess
import sys

from conftest import cli_run
from photos import COFFEE_LABELS
import pytest


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Copy the shipped Lite0 weights: their exports are cached beside them, not shared."""
    from cnn_perception.core.models import model_entry

    d = tmp_path_factory.mktemp('int8')
    w = d / 'lite0.pth'
    w.write_bytes(model_entry('efficientnet_lite0').weights().read_bytes())
    return w


def test_the_gate_refuses_in_one_line_and_caches_nothing(weights, tmp_path):
    out = tmp_path / 'lite0.onnx'
    r = cli_run('export', 'efficientnet_lite0', '--weights', weights, '--onnx', out, '--int8')
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'INT8 export refused: top-1 agrees with fp32 on' in lines[0]
    assert out.is_file() and not out.with_suffix('.int8.onnx').exists()
    assert not list(weights.parent.glob('*.int8.onnx'))


def test_an_accepted_int8_export_classifies_without_torch(weights, tmp_path):
    out = tmp_path / 'lite0.onnx'
    r = cli_run('export', 'efficientnet_lite0', '--weights', weights, '--onnx', out, '--int8',
                '--min-agreement', '0.5')  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert 'INT8: top-1 agrees with fp32 on' in r.stdout
    int8 = out.with_suffix('.int8.onnx')
    assert int8.is_file() and list(weights.parent.glob('*.int8.onnx'))
    code = (
        'import sys; from skimage import data\n'
        'from cnn_perception.core.classifier import load_classifier\n'
        f'c = load_classifier({str(out)!r}, precision="int8")\n'
        'assert c.backend.path.name.endswith(".int8.onnx"), c.backend.path\n'
        'print(c.predict(data.coffee(), 1).results[0].label)\n'
        'assert "torch" not in sys.modules, "torch was imported"\n'
    )
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() in COFFEE_LABELS


def test_precision_int8_needs_onnxruntime_and_a_known_precision():
    r = cli_run('classify', '--backend', 'torch', '--precision', 'int8', 'x.png')
    assert r.returncode == 2 and 'onnxruntime backend' in r.stderr


def test_a_refused_int8_falls_back_to_fp32_in_the_node_step(weights, tmp_path):
    """The Pi configuration asks for int8; refused by the gate, the node runs fp32."""
    from cnn_perception.steps import node_params
    from cnn_perception.steps.classify import ClassifierStep

    (tmp_path / 'w.pth').write_bytes(weights.read_bytes())
    p = {q.name: q.default for q in node_params(ClassifierStep)}
    p.update(weights=str(tmp_path / 'w.pth'), precision='int8')
    said = []
    step = ClassifierStep(p, log=said.append)
    assert step.precision.startswith('fp32 (int8 refused') and 'running fp32' in said[0]
    assert list(tmp_path.glob('*.refused.txt'))  # the verdict is kept: no retry per start
    said.clear()
    ClassifierStep(p, log=said.append)
    assert 'cached verdict' in said[0]
