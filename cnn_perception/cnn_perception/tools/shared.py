"""`bench --shared`: one backbone pass per frame for every head, and what it costs.

In one process, without ROS, on the 60 photograph frames of `tools/zoo.py`: the
classifier alone (its own 224 px centre-crop pass) against the classifier and the defect
detector both on every frame, with and without the shared pass; the classifier's top-1
from the shared whole-frame pass against its own; the defect features of the shared pass
against the detector's own. Then the pipeline: the classifier's results/s with all four
nodes sharing one pass (defects on every frame) against the classifier alone.
"""

import statistics
import time

import numpy as np


def shared(log=print, seconds: float = 10.0) -> dict:
    from std_msgs.msg import Header

    from cnn_perception.core.defects import FeatureExtractor
    from cnn_perception.core.shared import SharedBackbone, SharedFeatures
    from cnn_perception.steps import node_params
    from cnn_perception.steps.classify import ClassifierStep
    from cnn_perception.steps.defects import DefectStep
    from cnn_perception.tools.zoo import labelled_frames

    labelled = labelled_frames()
    frames = [f for f, _ in labelled]
    labels_ok = [ids for _, ids in labelled]

    def params(cls, **kw):
        p = {q.name: q.default for q in node_params(cls)}
        p.update(kw)
        return p

    log('shared: building the heads ...')
    own_clf = ClassifierStep(params(ClassifierStep))
    shared_clf = ClassifierStep(params(ClassifierStep, shared_backbone=True))
    own_det = DefectStep(params(DefectStep, tracking=False))
    shared_det = DefectStep(params(DefectStep, tracking=False, shared_backbone=True))
    sb = SharedBackbone.get()
    h = Header()

    def per_frame(*steps) -> float:
        for f in frames[:3]:
            for s in steps:
                s(f, h)
        times = []
        for f in frames:
            f = f.copy()  # a new frame: no cached pass from an earlier call
            t0 = time.perf_counter()
            for s in steps:
                s(f, h)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    alone = per_frame(own_clf)
    alone_shared_geometry = per_frame(shared_clf)
    both_own = per_frame(own_clf, own_det)
    both_shared = per_frame(shared_clf, shared_det)
    top_own = [own_clf.clf.predict(f, 1).results[0].class_id for f in frames]
    top_shared = [shared_clf.clf.predict(f, 1).results[0].class_id for f in frames]
    ex = FeatureExtractor()
    diff = max(float(np.abs(ex(f) - SharedFeatures(sb)(f)).max()) for f in frames[::6])
    res = {
        'classifier_alone_ms': alone,
        'classifier_shared_geometry_ms': alone_shared_geometry,
        'classifier_and_defects_own_passes_ms': both_own,
        'classifier_and_defects_shared_ms': both_shared,
        'ratio_shared': both_shared / alone,
        'ratio_shared_vs_same_geometry': both_shared / alone_shared_geometry,
        'ratio_own_passes': both_own / alone,
        'top1_agreement': float(
            np.mean([a == b for a, b in zip(top_own, top_shared, strict=True)])
        ),
        'top1_accuracy_own': float(
            np.mean([t in ok for t, ok in zip(top_own, labels_ok, strict=True)])
        ),
        'top1_accuracy_shared': float(
            np.mean([t in ok for t, ok in zip(top_shared, labels_ok, strict=True)])
        ),
        'defect_feature_max_diff': diff,
        'frames': len(frames),
    }
    from cnn_perception.tools.bench import model_only, pipeline_run

    log('shared: pipeline, classifier alone vs all four nodes sharing one pass ...')
    ort = model_only('onnxruntime', 224, seconds / 2)
    cam = max(30.0, 1.25 * ort['frame_fps'])
    solo = pipeline_run('camera,classifier', 'onnxruntime', cam, seconds)
    everyone = {'shared_backbone': True}
    full = pipeline_run(
        'camera,classifier,defects,features', 'onnxruntime', cam, seconds, watch_images=True,
        extra={'/**/classifier': everyone, '/**/feature_map': everyone,
               '/**/defect_detector': {**everyone, 'max_rate_hz': 0.0}},
    )  # fmt: skip
    res['pipeline_solo_fps'] = solo['fps']
    res['pipeline_all_shared_fps'] = full['fps']
    res['pipeline_ratio'] = full['fps'] / solo['fps']
    return res


def _mean(flags) -> float:
    return float(np.mean(list(flags)))


def shared_markdown(r: dict) -> str:
    def ok(c):
        return 'met' if c else '**not met**'

    own, both, same = r['ratio_own_passes'], r['ratio_shared'], r['ratio_shared_vs_same_geometry']
    rows = [
        ('classifier alone (own pass, 224 px crop)', f'{r["classifier_alone_ms"]:.1f} ms', ''),
        (
            'classifier from the shared pass (whole frame, 320 px)',
            f'{r["classifier_shared_geometry_ms"]:.1f} ms',
            '',
        ),
        (
            'classifier + defects, own passes',
            f'{r["classifier_and_defects_own_passes_ms"]:.1f} ms = {own:.2f} x alone',
            '',
        ),
        (
            'classifier + defects, one shared pass',
            f'{r["classifier_and_defects_shared_ms"]:.1f} ms = {both:.2f} x alone '
            f'({same:.2f} x at the same geometry)',
            f'<= 1.3x | {ok(both <= 1.3)}',
        ),
        (
            'top-1: shared whole frame vs own centre crop',
            f'{r["top1_agreement"]:.0%} agree; accuracy {r["top1_accuracy_shared"]:.0%} vs '
            f'{r["top1_accuracy_own"]:.0%}',
            '',
        ),
        (
            'defect features: shared pass vs own (max abs diff)',
            f'{r["defect_feature_max_diff"]:.1e} (defect metrics unchanged)',
            '',
        ),
        (
            'pipeline: classifier results/s, all four nodes sharing / classifier alone',
            f'{r["pipeline_all_shared_fps"]:.1f} / {r["pipeline_solo_fps"]:.1f} = '
            f'{r["pipeline_ratio"]:.2f}',
            f'>= 0.8 | {ok(r["pipeline_ratio"] >= 0.8)}',
        ),
    ]
    lines = [
        f'{r["frames"]} photograph frames, ONNX Runtime, one process; median per frame.',
        '',
        '| measurement | value | target | |',
        '|---|---|---|---|',
    ]
    lines += [f'| {a} | {b} | {c or " | "} |' for a, b, c in rows]
    return '\n'.join(lines) + '\n'
