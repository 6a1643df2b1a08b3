"""`bench --int8`: INT8 against fp32 on ONNX Runtime, Lite0 at 224, in one run.

Throughput of the network call (median of repeats, each repeat a timed loop, and the
ratio per repeat: min..max), top-1 agreement with fp32 on the 60 photograph frames of
`tools/zoo.py` (crops, mirror, darker) and on those of them fp32 is sure of (top-1 ahead
of the second by >= 0.1), and the quality gate's own figure on the held-out calibration
frames. Quantized into a temporary file with the gate off, so a refused model is
measured too.
"""

from pathlib import Path
import statistics
import tempfile
import time

import numpy as np


def int8(repeats: int = 5, calls: int = 100, log=print) -> dict:
    from cnn_perception.core.backends import make_session
    from cnn_perception.core.classifier import load_classifier, softmax
    from cnn_perception.core.quantize import default_calibration_frames, quantize
    from cnn_perception.tools.zoo import labelled_frames

    clf = load_classifier()
    pre = clf.preprocess
    with tempfile.TemporaryDirectory() as tmp:
        log('int8: quantizing (gate off) ...')
        rep = quantize(clf.backend.path, Path(tmp) / 'q.onnx', default_calibration_frames(),
                       pre, min_agreement=0.0, log=lambda *_: None)  # fmt: skip
        fp, q = make_session(str(clf.backend.path)), make_session(str(rep.path))
        frames = [pre(f) for f, _ in labelled_frames()]
        a = [fp.run(None, {'input': x})[0][0] for x in frames]
        b = [q.run(None, {'input': x})[0][0] for x in frames]
        same = [x.argmax() == y.argmax() for x, y in zip(a, b, strict=True)]
        margin = [np.diff(np.sort(softmax(x.astype(np.float64)))[-2:])[0] for x in a]
        sure = [s for s, m in zip(same, margin, strict=True) if m >= 0.1]
        la, lb = np.asarray(a, np.float64), np.asarray(b, np.float64)
        # signal-to-quantization-noise of the logits: how far INT8 is from fp32 overall,
        # a steadier figure than agreement, which only counts frames that flip
        sqnr = 10 * np.log10((la**2).mean() / ((la - lb) ** 2).mean())

        def per_call(sess) -> float:
            x = frames[0]
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
        'frames': len(frames),
        'agreement': float(np.mean(same)),
        'disagreements': int(len(same) - sum(same)),
        'sure_frames': len(sure),
        'agreement_sure': float(np.mean(sure)) if sure else float('nan'),
        'logit_sqnr_db': float(sqnr),
        'gate_agreement': rep.agreement,
        'gate_frames': rep.held_out,
        'fp32_ms': statistics.median(fp_ms),
        'int8_ms': statistics.median(q_ms),
        'speedup_median': statistics.median(ratios),
        'speedup_min': min(ratios),
        'speedup_max': max(ratios),
    }


def int8_markdown(r: dict) -> str:
    def ok(c):
        return 'met' if c else '**not met**'

    return (
        '\n'.join(
            [
                'EfficientNet-Lite0 at 224 on ONNX Runtime (CPU), fp32 export vs its INT8 twin '
                '(`export --int8`, built-in calibration frames), one run.',
                '',
                '| measurement | value | target | |',
                '|---|---|---|---|',
                f'| network call fp32 / INT8 (median of {5} repeats) | {r["fp32_ms"]:.2f} / '
                f'{r["int8_ms"]:.2f} ms | | |',
                f'| INT8 throughput / fp32 | {r["speedup_median"]:.2f}x (min..max '
                f'{r["speedup_min"]:.2f}..{r["speedup_max"]:.2f}) | >= 1.4x | '
                f'{ok(r["speedup_median"] >= 1.4)} |',
                f'| top-1 agreement with fp32, {r["frames"]} photograph frames | '
                f'{r["agreement"]:.1%} ({r["disagreements"]} differ) | >= 97% | '
                f'{ok(r["agreement"] >= 0.97)} |',
                f'| ... on the {r["sure_frames"]} frames fp32 is sure of (margin >= 0.1) | '
                f'{r["agreement_sure"]:.1%} | | |',
                f'| logits: signal / quantization noise, the same frames | '
                f'{r["logit_sqnr_db"]:.1f} dB | | |',
                f'| quality gate: agreement on {r["gate_frames"]} held-out calibration frames | '
                f'{r["gate_agreement"]:.1%} | >= 97% to be cached | |',
                '| defect features | stay fp32 (their AUROC is unchanged by construction) | | |',
            ]
        )
        + '\n'
    )
