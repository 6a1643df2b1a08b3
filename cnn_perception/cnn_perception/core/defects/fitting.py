"""Fitting a memory bank on normal images, and calibrating its threshold."""

import numpy as np

from cnn_perception.core.defects.detector import DefectDetector
from cnn_perception.core.defects.extractor import FeatureExtractor
from cnn_perception.core.defects.model import DEFAULT_CORESET_RATIO
from cnn_perception.core.defects.search import greedy_coreset

GATE_QUANTILE = 0.25  # DefectModel.gate_quantile
GATE_MARGIN = 1.25
GATE_ABOVE = 1.1


def fit(
    normal: list[np.ndarray],
    *,
    extractor: FeatureExtractor,
    coreset_ratio: float = DEFAULT_CORESET_RATIO,
    max_memory: int = 20000,
    seed: int = 0,
    progress: bool = True,
    log=print,
) -> np.ndarray:
    """Memory bank of normal patch features, thinned by the greedy coreset."""
    feats = features_of(normal, extractor, progress)
    return bank_of([f.reshape(-1, f.shape[-1]) for f in feats], coreset_ratio, max_memory,
                   seed, progress, log)  # fmt: skip


def features_of(images: list[np.ndarray], extractor: FeatureExtractor, progress=True) -> list:
    from tqdm import tqdm

    return [extractor(img) for img in tqdm(images, desc='features', unit='img',
                                            disable=not progress)]  # fmt: skip


def bank_of(
    feats: list[np.ndarray],
    coreset_ratio: float,
    max_memory: int = 20000,
    seed: int = 0,
    progress: bool = True,
    log=print,
) -> np.ndarray:
    """Coreset-thinned memory bank from per-image (patches, D) feature arrays."""
    from tqdm import tqdm

    bank = np.concatenate(feats)
    n = int(min(max_memory, max(1, round(len(bank) * coreset_ratio))))
    with tqdm(total=n, desc='coreset', unit='patch', disable=not progress) as bar:
        idx = greedy_coreset(bank, n, seed, progress=bar.update)
    log(
        f'memory bank: {n} of {len(bank)} normal patches ({n / len(bank):.1%}), '
        f'{bank.shape[1]} features each'
    )
    return np.ascontiguousarray(bank[idx])


def calibrate(
    detector: DefectDetector,
    val_normal: list[np.ndarray],
    val_defect: list[np.ndarray] | None = None,
    sigmas: float = 2.5,
) -> dict:
    """Choose threshold and base from validation images; returns what was chosen and why.

    Normal images only: a high quantile of their image scores, estimated from a normal
    fit, mean + `sigmas` standard deviations (2.5: the 99.4% point), never below the
    highest of them. Twenty-odd validation images cannot estimate a 99% quantile on
    their own: the empirical one is simply their maximum, which moved the false-alarm /
    recall trade-off by a lot from one validation draw to the next while tuning.
    """
    normal_maps = [detector.raw_map(img) for img in val_normal]
    defect_scores = [detector.raw_map(img).max() for img in val_defect or []]
    how = threshold_from_maps(normal_maps, defect_scores, sigmas)
    apply_calibration(detector.model, how)
    return how


def apply_calibration(model, how: dict) -> None:
    """Set the model's threshold, base and off-surface gate from a calibration."""
    model.threshold, model.base, model.gate = how['threshold'], how['base'], how['gate']


def threshold_from_maps(normal_maps: list, defect_scores=(), sigmas: float = 2.5) -> dict:
    """Threshold and base from the raw maps of normal images (and defect image scores)."""
    normal_scores = np.array([m.max() for m in normal_maps])
    base = float(np.median(np.concatenate([m.ravel()[::97] for m in normal_maps])))
    if len(defect_scores):
        from sklearn.metrics import precision_recall_curve, roc_auc_score

        defect_scores = np.asarray(defect_scores)
        y = np.r_[np.zeros(len(normal_scores)), np.ones(len(defect_scores))]
        s = np.r_[normal_scores, defect_scores]
        prec, rec, thr = precision_recall_curve(y, s)
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-9)
        best = int(np.argmax(f1))
        # midway between the chosen score and the next lower one: robust to new data
        lower = s[s < thr[best]]
        threshold = float((thr[best] + lower.max()) / 2) if lower.size else float(thr[best])
        how = {'method': 'f1', 'f1': float(f1[best]), 'image_auroc': float(roc_auc_score(y, s))}
    elif len(normal_scores) >= 3:
        fitted = normal_scores.mean() + sigmas * normal_scores.std(ddof=1)
        threshold = float(max(fitted, normal_scores.max()))
        how = {'method': 'quantile', 'estimate': f'mean + {sigmas:g} sd', 'sigmas': sigmas}
    else:
        threshold = float(normal_scores.max() * 1.1)
        how = {'method': 'quantile', 'estimate': 'max x 1.1 (under 3 validation images)'}
    # The off-surface gate: GATE_ABOVE the defect threshold (three quarters of a frame
    # that far beyond it is not the surface), raised where the normal frames' own
    # statistic comes within GATE_MARGIN of it, so that no clean frame is turned away.
    # At 1.1 the brick wall stays on the surface from half to one and a half times its
    # brightness (clipped), while the closest other scene (the camera-man photograph)
    # is still turned away (docs/defects.md, "Off the surface").
    surface = [float(np.quantile(m, GATE_QUANTILE)) for m in normal_maps]
    how['gate'] = float(max(GATE_ABOVE * threshold, GATE_MARGIN * max(surface)))
    how['val_surface_max'] = max(surface) / how['gate']
    how.update(
        # the normal fit of the validation scores, for `threshold_for` (tiled frames)
        val_mean=float(normal_scores.mean()),
        val_sd=float(normal_scores.std(ddof=1)) if len(normal_scores) > 2 else 0.0,
        threshold=threshold,
        base=base,
        val_normal=len(normal_maps),
        val_defect=len(defect_scores),
        val_false_alarms=float(np.mean(normal_scores >= threshold)),
    )
    return how


def fit_kfold(
    normal: list[np.ndarray],
    *,
    extractor: FeatureExtractor,
    coreset_ratio: float = DEFAULT_CORESET_RATIO,
    folds: int = 5,
    sigmas: float = 2.5,
    seed: int = 0,
    progress: bool = True,
    log=print,
) -> tuple[np.ndarray, dict]:
    """Memory bank of every image, calibrated on every image: (memory, calibration).

    Each image is scored once against a bank built without its fold, so the threshold
    comes from as many normal scores as there are images (k-fold), not from the fifth
    held back by a plain split -- what a user with one short clean flight needs. The
    features are computed once; only the coreset is built k + 1 times.
    """
    from cnn_perception.core.defects.model import DefectModel

    feats = features_of(normal, extractor, progress)
    flat = [f.reshape(-1, f.shape[-1]) for f in feats]
    order = np.random.default_rng(seed).permutation(len(normal))
    parts = [order[i::folds] for i in range(min(folds, len(normal)))]
    maps = [None] * len(normal)
    for k, held in enumerate(parts):
        out = set(held.tolist())
        rest = [flat[i] for i in order if i not in out]
        bank = bank_of(rest, coreset_ratio, seed=seed, progress=False, log=lambda *_: None)
        det = DefectDetector(DefectModel(bank), extractor=extractor)
        for i in held:
            maps[i] = det.map_from_features(feats[i], *normal[i].shape[:2])
        log(f'calibration fold {k + 1}/{len(parts)}: {len(held)} images scored')
    how = threshold_from_maps(maps, (), sigmas)
    how.update(method='kfold', folds=len(parts))
    return bank_of(flat, coreset_ratio, seed=seed, progress=progress, log=log), how
