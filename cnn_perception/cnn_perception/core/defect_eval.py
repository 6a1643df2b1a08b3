"""Evaluation of a defect model: AUROC (image and pixel), F1, box hits, false alarms."""

import numpy as np


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


def evaluate(
    normal_results: list, defect_results: list, masks: list | None = None, pixel_stride: int = 2
) -> dict:
    """Metrics from DefectResults; masks (bool arrays) align with defect_results.

    A defect image counts as localised when one of its boxes overlaps the bounding box of
    its ground-truth mask with IoU >= 0.2 (box-to-box, the usual detection criterion: a
    thin crack's pixel mask covers a small part of any box around it).
    """
    from sklearn.metrics import f1_score, roc_auc_score

    y = np.r_[np.zeros(len(normal_results)), np.ones(len(defect_results))]
    scores = np.array([r.score for r in normal_results + defect_results])
    flagged = scores >= 0.5
    out = {
        'normal_images': len(normal_results),
        'defect_images': len(defect_results),
        'image_auroc': float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else None,
        'f1': float(f1_score(y, flagged)),
        'recall': float(flagged[y == 1].mean()) if y.sum() else None,
        'false_alarm_rate': float(flagged[y == 0].mean()) if (y == 0).any() else None,
    }
    if masks is not None:
        hits = []
        pix_s, pix_y = [], []
        for r, m in zip(defect_results, masks, strict=True):
            gt = mask_box(m)
            hits.append(
                gt is not None
                and any(box_iou((b.x, b.y, b.width, b.height), gt) >= 0.2 for b in r.boxes)
            )
            pix_s.append(r.score_map[::pixel_stride, ::pixel_stride].ravel())
            pix_y.append(m[::pixel_stride, ::pixel_stride].ravel())
        for r in normal_results:
            pix_s.append(r.score_map[::pixel_stride, ::pixel_stride].ravel())
            pix_y.append(np.zeros(pix_s[-1].size, bool))
        out['box_hit_rate'] = float(np.mean(hits)) if hits else None
        out['pixel_auroc'] = float(roc_auc_score(np.concatenate(pix_y), np.concatenate(pix_s)))
    return out
