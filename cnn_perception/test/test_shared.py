"""One backbone pass per frame for the heads that share it (shared_backbone: true)."""

from cnn_perception_msgs.msg import Classification, DetectionArray
from conftest import run_cli, stop_process
import numpy as np
from photos import COFFEE_LABELS, coffee
from std_msgs.msg import Header
import yaml

from cnn_perception import contract
from cnn_perception.steps import node_params


def _params(cls, **kw):
    p = {q.name: q.default for q in node_params(cls)}
    p.update(kw)
    return p


def test_heads_share_one_pass_per_frame_and_defect_features_are_unchanged():
    from cnn_perception.core.defects import FeatureExtractor
    from cnn_perception.core.shared import SharedBackbone, SharedFeatures
    from cnn_perception.steps.classify import ClassifierStep
    from cnn_perception.steps.defects import DefectStep
    from cnn_perception.steps.features import FeatureStep

    clf = ClassifierStep(_params(ClassifierStep, shared_backbone=True))
    det = DefectStep(_params(DefectStep, shared_backbone=True, tracking=False))
    fm = FeatureStep(_params(FeatureStep, shared_backbone=True))
    sb = SharedBackbone.get()
    img = coffee()
    before = sb.passes
    out = clf(img.copy(), Header())
    det(img.copy(), Header())  # the same frame, decoded again by another node
    fm(img.copy(), Header(), frozenset(FeatureStep.outputs))
    assert sb.passes == before + 1, 'three heads, one network call'
    assert out.messages[0][1].results[0].label in COFFEE_LABELS
    feats_own = FeatureExtractor()(img)
    assert np.abs(feats_own - SharedFeatures(sb)(img)).max() < 1e-3


def test_a_shared_backbone_is_refused_on_torch_or_cuda_instead_of_moving_to_the_cpu():
    import pytest

    from cnn_perception.errors import UserError
    from cnn_perception.steps.classify import ClassifierStep
    from cnn_perception.steps.defects import DefectStep

    with pytest.raises(UserError, match='shared_backbone runs on ONNX Runtime on the CPU'):
        ClassifierStep(_params(ClassifierStep, shared_backbone=True, backend='torch'))
    with pytest.raises(UserError, match='not on onnxruntime/cuda'):
        DefectStep(_params(DefectStep, shared_backbone=True, device='cuda', tracking=False))


def test_a_pipeline_with_a_shared_backbone_answers_every_head(probe, tmp_path):
    clf = probe.listen(Classification, contract.CLASSIFICATION.full(), 50)
    det = probe.listen(DetectionArray, contract.DETECTIONS.full(), 50)
    params = tmp_path / 'p.yaml'
    from cnn_perception import platforms

    doc = yaml.safe_load(platforms.params_file('desktop').read_text())
    for key in ('/**/classifier', '/**/defect_detector', '/**/feature_map'):
        doc[key]['ros__parameters']['shared_backbone'] = True
    params.write_text(yaml.safe_dump(doc))
    pipe = run_cli('run', '--params-file', str(params), '--duration', '120')
    try:
        assert probe.spin_until(lambda: len(clf) >= 5 and len(det) >= 3, 90), ''.join(pipe.lines)
    finally:
        log = stop_process(pipe)
    assert 'Traceback' not in log
    assert all(m.results for _, m in clf)
