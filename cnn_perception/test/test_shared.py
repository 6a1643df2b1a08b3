"""One backbone pass per frame for the heads that share it (shared_backbone: true)."""

from cnn_perception_msgs.msg import Classification, DetectionArray
from conftest import diag_value, run_cli, stop_process
from diagnostic_msgs.msg import DiagnosticArray
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


def test_heads_share_one_pass_per_frame_with_their_own_answers():
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.core.defects import FeatureExtractor
    from cnn_perception.core.defects.builtin import SHARED_GEOMETRY
    from cnn_perception.core.shared import SharedBackbone, SharedFeatures
    from cnn_perception.steps.classify import ClassifierStep
    from cnn_perception.steps.defects import DefectStep
    from cnn_perception.steps.features import FeatureStep

    clf = ClassifierStep(_params(ClassifierStep, shared_backbone=True))
    det = DefectStep(_params(DefectStep, shared_backbone=True, tracking=False))
    fm = FeatureStep(_params(FeatureStep, shared_backbone=True))
    sb = SharedBackbone.get()
    assert det.detector.extractor.shared is sb, "the built-in model is fitted on the pass's crop"
    img = coffee()
    before = sb.passes
    out = clf(img.copy(), Header())
    det(img.copy(), Header())  # the same frame, decoded again by another node
    assert sb.passes == before + 1, 'two heads, one network call'
    # the feature maps' activations come from the second graph, for the frames watched
    maps = fm(img.copy(), Header(), frozenset(FeatureStep.outputs))
    assert len(maps.images) == 2 and sb.passes == before + 2
    fm(img.copy(), Header(), frozenset(FeatureStep.outputs))
    clf(img.copy(), Header())
    assert sb.passes == before + 2, 'every output of this frame is cached now'
    assert out.messages[0][1].results[0].label in COFFEE_LABELS
    # the shared pass's logits are the classifier's network on the whole frame
    import torch

    own = load_classifier(backend='torch')
    with torch.inference_mode():
        logits = own.backend.model(torch.from_numpy(sb.prepare(img))).numpy()
    assert sb.prepare(img).shape == (1, 3, 192, 288)  # coffee: 400 x 600, all of it
    assert np.abs(logits - sb.run(img)['logits']).max() < 1e-3
    # the defect features: those of the detector's own pass over the same whole frame
    feats_own = FeatureExtractor(**SHARED_GEOMETRY)(img)
    assert np.abs(feats_own - SharedFeatures(sb)(img)).max() < 1e-3


def test_the_leaders_frame_stays_pinned_after_the_cache_moved_on():
    """A follower handed the leader's frame late finds its pass done (intra.FrameHub)."""
    from cnn_perception.core.shared import SharedBackbone

    sb = SharedBackbone.get()
    heads = sb.heads
    sb.heads = max(heads, 2)  # two heads in the process: the cache is in use
    try:
        img = coffee()
        sb.run(img, pin=True)  # the leader's step
        before = sb.passes
        rng = np.random.default_rng(0)
        for _ in range(5):  # the leader goes on unpinned; the cache keeps 4 frames
            sb.run(rng.integers(0, 255, (120, 160, 3), np.uint8))
        passes = sb.passes
        sb.run(img.copy())  # the follower, woken late: its frame's pass is kept
        assert sb.passes == passes and passes == before + 5
        sb.forget()
        sb.run(img.copy())
        assert sb.passes == passes + 1, 'forget drops the pinned frame too'
    finally:
        sb.heads = heads


def test_the_shared_pass_on_onnxruntime_never_imports_torch():
    """The Pi's memory budget: labels come from the ONNX file, not torchvision."""
    import subprocess
    import sys

    code = (
        'import sys, numpy as np\n'
        'from std_msgs.msg import Header\n'
        'from cnn_perception.steps import node_params\n'
        'from cnn_perception.steps.classify import ClassifierStep\n'
        'from cnn_perception.steps.defects import DefectStep\n'
        'from cnn_perception.steps.features import FeatureStep\n'
        'steps = []\n'
        'for cls in (ClassifierStep, DefectStep, FeatureStep):\n'
        '    p = {q.name: q.default for q in node_params(cls)}\n'
        "    p['shared_backbone'] = True\n"
        '    steps.append(cls(p))\n'
        'img = np.full((480, 640, 3), 90, np.uint8)\n'
        'for s in steps:\n'
        '    s(img, Header(), frozenset(s.outputs))\n'
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == 'False', out.stdout


def test_the_shared_pass_inspects_the_whole_frame_corners_included():
    """desktop.yaml's shared pass: a defect in each corner (outside any centre crop) found."""
    import cv2

    from cnn_perception.core.surfaces import texture
    from cnn_perception.steps.defects import DefectStep
    from cnn_perception.tools.datasets import paint_defect

    step = DefectStep(_params(DefectStep, shared_backbone=True, tracking=False))
    assert step.shared_pass is not None
    assert (step.detector.model.input_size, step.detector.model.centre_crop) == (192, 0.0)
    rng = np.random.default_rng(0)
    # the wall at the scale the built-in model knows: 341 x 256 photo pixels -> 640 x 480
    crop = texture('brick')[100:356, 60:401].copy()
    clean = cv2.resize(crop, (640, 480))
    assert not step.detector.detect(clean).boxes
    centres = []
    corners = (('hole', 0, 0), ('crack', 277, 0), ('stain', 0, 192), ('scratch', 277, 192))
    for kind, px, py in corners:
        patch, mask = paint_defect(crop[py : py + 64, px : px + 64], kind, rng)
        crop[py : py + 64, px : px + 64] = patch
        ys, xs = np.nonzero(mask)
        centres.append(((xs.mean() + px) * 640 / 341, (ys.mean() + py) * 480 / 256))
    res = step.detector.detect(cv2.resize(crop, (640, 480)))
    # every one outside the 420 px centre square the pass once saw (x 110-530)
    assert all(x < 110 or x > 530 for x, _ in centres)

    def found(x, y):
        return any(b.x - 8 <= x <= b.x + b.width + 8 and b.y - 8 <= y <= b.y + b.height + 8
                   for b in res.boxes)  # fmt: skip

    assert all(found(x, y) for x, y in centres), (centres, res.boxes)
    assert len(res.boxes) == 4, res.boxes


def test_a_shared_backbone_runs_on_torch_and_refuses_onnxruntime_on_cuda():
    import pytest

    from cnn_perception.core.shared import SharedBackbone
    from cnn_perception.errors import UserError
    from cnn_perception.steps.classify import ClassifierStep
    from cnn_perception.steps.defects import DefectStep

    with pytest.raises(UserError, match='with device cuda set backend torch'):
        DefectStep(_params(DefectStep, shared_backbone=True, device='cuda', tracking=False))
    # torch (on the CPU here; CUDA on the Jetson, checked by scripts/cuda_check.py)
    clf = ClassifierStep(_params(ClassifierStep, shared_backbone=True, backend='torch'))
    onnx = SharedBackbone.get()
    # a defect detector on torch in the same process reads the patch features of that pass
    torch_params = {'backend': 'torch', 'device': 'cpu'}
    assert SharedBackbone.for_node('efficientnet_lite0', torch_params, ('patch',)) is (
        clf.clf.shared
    )
    img = coffee()
    t = clf.clf.shared.run(img, acts=True)
    o = onnx.run(img, acts=True)
    assert clf.clf.shared is not onnx and clf.clf.shared.backend.name == 'torch'
    for name in ('logits', 'patch', onnx.cam_layer):
        assert np.abs(t[name] - o[name]).max() < 1e-3 * max(1.0, np.abs(o[name]).max()), name


def test_a_pipeline_with_a_shared_backbone_answers_every_head(probe, tmp_path):
    clf = probe.listen(Classification, contract.CLASSIFICATION.full(), 50)
    det = probe.listen(DetectionArray, contract.DETECTIONS.full(), 50)
    params = tmp_path / 'p.yaml'
    from cnn_perception import platforms

    doc = yaml.safe_load(platforms.params_file('desktop').read_text())
    for key in ('/**/classifier', '/**/defect_detector', '/**/feature_map'):
        doc[key]['ros__parameters']['shared_backbone'] = True
    params.write_text(yaml.safe_dump(doc))
    diags = probe.listen(DiagnosticArray, '/diagnostics')
    pipe = run_cli('run', '--params-file', str(params), '--duration', '120')
    try:
        assert probe.spin_until(lambda: len(clf) >= 5 and len(det) >= 3, 90), ''.join(pipe.lines)

        def defects(key):
            return int(diag_value(diags, '/defect_detector', key) or 0)

        # the defect detector takes the frames the classifier has computed the pass of
        probe.spin_until(lambda: defects('processed') >= 3, 30)
        tail = ''.join(pipe.lines)[-3000:]
        assert defects('frames_from_shared_pass') >= defects('processed') > 0, tail
    finally:
        log = stop_process(pipe)
    assert 'Traceback' not in log
    assert all(m.results for _, m in clf)
    stamps = {contract.stamp_ns(m.header) for _, m in clf}
    assert all(contract.stamp_ns(m.header) in stamps for _, m in det[1:]), (
        'each defect result is for a frame the classifier processed'
    )
