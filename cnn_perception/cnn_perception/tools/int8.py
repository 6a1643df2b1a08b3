"""`bench --int8`: INT8 against fp32 on ONNX Runtime, Lite0 at 224, in one run.

Two INT8 models of the same fp32 export: quantized as it is (post-training, the
torch-free path a Pi takes by itself) and after quantization-aware fine-tuning
(`export --int8`, core/qat.py). For each: throughput of the network call (median of
repeats, each repeat a timed loop, interleaved with fp32; the ratio per repeat:
min..max), top-1 agreement with fp32 on the 60 photograph frames of `tools/zoo.py`
(crops, mirror, darker; none of them seen by calibration or fine-tuning), on those of
them fp32 is sure of (top-1 ahead of the second by >= 0.1), the logits' SQNR, and the
quality gate's own figure. Quantized into a temporary folder with the gate off, so a
model the gate refuses is measured too.
"""

from pathlib import Path
import statistics
import tempfile
import time

import numpy as np

from cnn_perception.core.models import DEFAULT_MODEL


def _compare(fp, q, frames) -> dict:
    from cnn_perception.core.classifier import softmax

    a = [fp.run(None, {'input': x})[0][0] for x in frames]
    b = [q.run(None, {'input': x})[0][0] for x in frames]
    same = [x.argmax() == y.argmax() for x, y in zip(a, b, strict=True)]
    margin = [np.diff(np.sort(softmax(x.astype(np.float64)))[-2:])[0] for x in a]
    sure = [s for s, m in zip(same, margin, strict=True) if m >= 0.1]
    la, lb = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # signal-to-quantization-noise of the logits: how far INT8 is from fp32 overall, a
    # steadier figure than agreement, which only counts the frames that flip
    sqnr = 10 * np.log10((la**2).mean() / ((la - lb) ** 2).mean())
    return {
        'frames': len(frames),
        'agreement': float(np.mean(same)),
        'disagreements': int(len(same) - sum(same)),
        'sure_frames': len(sure),
        'agreement_sure': float(np.mean(sure)) if sure else float('nan'),
        'logit_sqnr_db': float(sqnr),
    }


def _speed(fp, q, x, repeats: int, calls: int) -> dict:
    def per_call(sess) -> float:
        for _ in range(10):
            sess.run(None, {'input': x})
        t0 = time.perf_counter()
        for _ in range(calls):
            sess.run(None, {'input': x})
        return (time.perf_counter() - t0) / calls * 1000

    ratios, fp_ms, q_ms = [], [], []
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        f, i = per_call(fp), per_call(q)
        fp_ms.append(f)
        q_ms.append(i)
        ratios.append(f / i)
    return {
        'fp32_ms': statistics.median(fp_ms),
        'int8_ms': statistics.median(q_ms),
        'speedup_median': statistics.median(ratios),
        'speedup_min': min(ratios),
        'speedup_max': max(ratios),
    }


def int8(
    repeats: int = 5,
    calls: int = 100,
    log=print,
    steps: int | None = None,
    model: Path | None = None,
) -> dict:
    """Measure both INT8 twins; `model`: a fine-tuned one made elsewhere, not here."""
    from cnn_perception.core.backends import OnnxBackend, make_session
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.core.models import get_model
    from cnn_perception.core.qat import quantize_finetuned
    from cnn_perception.core.quantize import (
        FINETUNE_STEPS,
        GATE_PHOTOS,
        augmented_frames,
        default_calibration_frames,
        photos,
        quantize,
        top1_agreement,
    )
    from cnn_perception.tools.zoo import labelled_frames

    steps = FINETUNE_STEPS if steps is None else steps
    clf = load_classifier()
    pre = clf.preprocess
    frames = [pre(f) for f, _ in labelled_frames()]
    fp = make_session(str(clf.backend.path))
    res = {'repeats': repeats, 'finetune_steps': steps}
    with tempfile.TemporaryDirectory() as tmp:
        log('int8: post-training quantization (gate off) ...')
        rep = quantize(clf.backend.path, Path(tmp) / 'ptq.onnx', default_calibration_frames(),
                       pre, min_agreement=0.0, log=lambda *_: None)  # fmt: skip
        q = make_session(str(rep.path))
        res['ptq'] = {**_compare(fp, q, frames), **_speed(fp, q, frames[0], repeats, calls)}
        res['ptq'].update(gate_agreement=rep.agreement, gate_frames=rep.held_out)
        if model is not None:
            path, made = Path(model), 'elsewhere'
            given = OnnxBackend(path)
            steps = given.metadata().get('int8_finetune_steps', steps)
            gate = [pre(f) for f in augmented_frames(photos(GATE_PHOTOS), 40, seed=7)]
            gate_agreement = top1_agreement(fp, given.session, gate)
            seconds = float('nan')
        else:
            log(f'int8: quantization-aware fine-tuning, {steps} steps (gate off) ...')
            net, info = get_model(DEFAULT_MODEL)
            t0 = time.perf_counter()
            rep = quantize_finetuned(net, info, clf.backend.path, Path(tmp) / 'qat.onnx', steps,
                                     min_agreement=0.0, log=lambda *_: None)  # fmt: skip
            path, made, seconds = rep.path, 'here', time.perf_counter() - t0
            gate_agreement = rep.agreement
        q = make_session(str(path))
        res['qat'] = {**_compare(fp, q, frames), **_speed(fp, q, frames[0], repeats, calls)}
        res['qat'].update(
            gate_agreement=gate_agreement, gate_frames=40, seconds=seconds, made=made
        )
        res['finetune_steps'] = steps
    return res


def int8_markdown(r: dict) -> str:
    def ok(c):
        return 'met' if c else '**not met**'

    p, q = r['ptq'], r['qat']
    rows = [
        ('network call fp32 / INT8 (median of '
         f'{r["repeats"]} repeats)', lambda x: f'{x["fp32_ms"]:.2f} / {x["int8_ms"]:.2f} ms',
         '', None),
        ('INT8 throughput / fp32', lambda x: f'{x["speedup_median"]:.2f}x (min..max '
         f'{x["speedup_min"]:.2f}..{x["speedup_max"]:.2f})', '>= 1.4x',
         lambda x: x['speedup_median'] >= 1.4),
        (f'top-1 agreement with fp32, {q["frames"]} photograph frames',
         lambda x: f'{x["agreement"]:.1%} ({x["disagreements"]} differ)', '>= 97%',
         lambda x: x['agreement'] >= 0.97),
        ('... on the frames fp32 is sure of (margin >= 0.1)',
         lambda x: f'{x["agreement_sure"]:.1%} of {x["sure_frames"]}', '', None),
        ('logits: signal / quantization noise, the same frames',
         lambda x: f'{x["logit_sqnr_db"]:.1f} dB', '', None),
        ('quality gate: agreement on its held-out frames',
         lambda x: f'{x["gate_agreement"]:.1%} of {x["gate_frames"]}', '>= 97% to be cached',
         lambda x: x['gate_agreement'] >= 0.97),
    ]  # fmt: skip
    lines = [
        'EfficientNet-Lite0 at 224 on ONNX Runtime (CPU), the fp32 export against two INT8 '
        'twins, one run: quantized as it is (post-training) and after '
        f'{r["finetune_steps"]} steps of quantization-aware fine-tuning (`export --int8`, '
        + (
            f'{q["seconds"] / 60:.0f} min here'
            if q.get('made') != 'elsewhere'
            else 'made on another machine, measured here'
        )
        + '). The target column is for the model `export --int8` makes.',
        '',
        '| measurement | post-training | fine-tuned | target | |',
        '|---|---|---|---|---|',
    ]
    for name, fmt, target, check in rows:
        verdict = ok(check(q)) if check else ''
        lines.append(f'| {name} | {fmt(p)} | {fmt(q)} | {target} | {verdict} |')
    lines.append(
        '| defect features | stay fp32 (their AUROC is unchanged by construction) | | | |'
    )
    return '\n'.join(lines) + '\n'
