"""Few normal frames: false alarms of the two calibrations on one short clean flight.

A user fits the detector on the frames of one short clean flight (60 frames of 320x240
here, crops of a surface photograph at random places), then flies again: 40 other
normal frames and 40 with a painted defect. Compared in one run: the plain split (a
fifth held back, mean + 2.5 sd of its 12 scores) and k-fold (every frame scored against
a bank built without its fold). Tooling: `python -m cnn_perception defects study`.
"""

import numpy as np


def frames(texture_name: str, n: int, seed: int, size=(320, 240), defects: bool = False):
    from cnn_perception.core.surfaces import texture
    from cnn_perception.tools.datasets import DEFECT_KINDS, paint_defect

    src = texture(texture_name)
    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for i in range(n):
        y = int(rng.integers(0, src.shape[0] - h + 1))
        x = int(rng.integers(0, src.shape[1] - w + 1))
        crop = np.ascontiguousarray(src[y : y + h, x : x + w])
        if rng.random() < 0.5:
            crop = np.ascontiguousarray(crop[:, ::-1])
        if defects:
            crop, _ = paint_defect(crop, DEFECT_KINDS[i % len(DEFECT_KINDS)], rng)
        out.append(crop)
    return out


def study(texture_name: str = 'brick', seed: int = 0, log=print) -> dict:
    from sklearn.metrics import roc_auc_score

    from cnn_perception.core.defects import (
        DefectDetector,
        DefectModel,
        FeatureExtractor,
        calibrate,
        fit,
        fit_kfold,
    )

    flight = frames(texture_name, 60, seed)
    test_normal = frames(texture_name, 40, seed + 1000)
    test_defect = frames(texture_name, 40, seed + 2000, defects=True)
    ex = FeatureExtractor()
    res = {}
    # the plain split, as `defects fit` did it: a fifth held back for calibration
    order = np.random.default_rng(0).permutation(len(flight))
    val, rest = [flight[i] for i in order[:12]], [flight[i] for i in order[12:]]
    m = DefectModel(fit(rest, extractor=ex, progress=False, log=lambda *_: None))
    det = DefectDetector(m, extractor=ex)
    calibrate(det, val)
    res['holdout'] = _measure(det, test_normal, test_defect, roc_auc_score)
    memory, how = fit_kfold(flight, extractor=ex, progress=False, log=lambda *_: None)
    m = DefectModel(memory, threshold=how['threshold'], base=how['base'])
    m.metrics = {'calibration': how}
    res['kfold'] = _measure(DefectDetector(m, extractor=ex), test_normal, test_defect,
                            roc_auc_score)  # fmt: skip
    log(f'{texture_name}: ' + ', '.join(f'{k} {v}' for k, v in res.items()))
    return res


def _measure(det, normal, defect, auroc) -> dict:
    sn = [det.detect(i).score for i in normal]
    sd = [det.detect(i).score for i in defect]
    y = [0] * len(sn) + [1] * len(sd)
    return {
        'false_alarms': int(sum(s >= 0.5 for s in sn)),
        'normal_frames': len(sn),
        'false_alarm_rate': float(np.mean(np.array(sn) >= 0.5)),
        'recall': float(np.mean(np.array(sd) >= 0.5)),
        'image_auroc': float(auroc(y, sn + sd)),
    }
