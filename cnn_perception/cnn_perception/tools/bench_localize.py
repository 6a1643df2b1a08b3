"""`bench --localize`: how well the classifier's own activations put a box on what it sees.

The set is built here from real photographs (scikit-image, scikit-learn, no network):
five objects of known ImageNet classes, each cut from its photograph along a box drawn by
hand, pasted on six real backgrounds (brick, grass, gravel, sky, the Hubble deep field,
a wooden table) at random places inside the classifier's view and at 10-60% of its side,
plus the five photographs whole and their centre 80%, each mirrored too (20 frames),
boxed by hand. Truth boxes lie in the view (the centre
square the classifier sees; whole photographs' boxes are clipped to it).

Scores, as in the weakly supervised localisation literature:
- top-1 localisation (CAM paper): the top-1 class is right and its best box has
  IoU >= 0.5 with the truth;
- GT-known localisation: the best box of the most probable right class, IoU >= 0.5;
- MaxBoxAcc (Choe et al. 2020): GT-known with the largest region's box, at the best of
  the map thresholds 0.05..0.95; MaxBoxAccV2: the best-matching region's box, mean over
  IoU 0.3 / 0.5 / 0.7.
The map cut and the grid offset (`core/localize.CALIBRATION`) are chosen on a second
set (another seed), `calibrate`; the cost is the median frame time with boxes over the
classifier's alone.
"""

import statistics
import time

import cv2
import numpy as np

# object -> (photo, hand-drawn box x0, y0, x1, y1 in the photo, accepted ImageNet ids)
OBJECTS = {
    'cat': ('chelsea', (0, 0, 395, 300), {281, 282, 283, 284, 285}),
    'cup': ('coffee', (75, 15, 480, 390), {967, 968, 504}),
    'motorcycle': ('motorcycle', (90, 95, 690, 450), {665, 670}),
    'palace': ('china', (60, 28, 372, 392), {698, 663, 832}),
    'rocket': ('rocket', (298, 125, 342, 405), {657, 744, 812}),
}
# background -> (photo, region x0, y0, x1, y1 or None for all of it)
BACKGROUNDS = {
    'brick': ('brick', None),
    'grass': ('grass', None),
    'gravel': ('gravel', None),
    'sky': ('china', (340, 0, 640, 130)),
    'deep field': ('hubble_deep_field', None),
    'wood': ('coffee', (480, 60, 600, 400)),
}
FRAME = (480, 640)  # height, width: a drone camera's 4:3
MIN_SCORE = 0.1  # the classifier node's localize_min_score default
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def photo(name: str) -> np.ndarray:
    from skimage import data

    if name == 'china':
        from sklearn.datasets import load_sample_image

        return load_sample_image('china.jpg')
    if name == 'motorcycle':
        return data.stereo_motorcycle()[0]
    img = getattr(data, name)()
    return np.ascontiguousarray(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])


def _cut(name, box):
    img = photo(name)
    return img if box is None else img[box[1] : box[3], box[0] : box[2]]


def _cover(img, h, w):
    """Scale `img` to cover h x w and centre-crop it."""
    s = max(h / img.shape[0], w / img.shape[1])
    big = cv2.resize(img, (round(img.shape[1] * s) + 1, round(img.shape[0] * s) + 1))
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y : y + h, x : x + w])


def view_of(preprocess, h: int, w: int):
    """Return the classifier's view in an h x w frame: (x, y, side) in source pixels."""
    x0, y0, scale = preprocess.crop_box(h, w)
    return x0, y0, preprocess.crop * scale


def build_set(preprocess, per_pair: int = 4, seed: int = 0):
    """Frames with truth: [(rgb, (x, y, w, h), accepted ids, kind)], kind 'pasted' | 'whole'."""
    rng = np.random.default_rng(seed)
    h, w = FRAME
    vx, vy, side = view_of(preprocess, h, w)
    cuts = {k: _cut(p, b) for k, (p, b, _) in OBJECTS.items()}
    out = []
    for bg_name, (bg_photo, region) in BACKGROUNDS.items():
        bg = _cover(_cut(bg_photo, region), h, w)
        for name, (_, _, ids) in OBJECTS.items():
            obj = cuts[name]
            for _ in range(per_pair):
                s = rng.uniform(0.1, 0.6) * side / max(obj.shape[:2])
                ow, oh = max(4, round(obj.shape[1] * s)), max(4, round(obj.shape[0] * s))
                x = round(vx + rng.uniform(0, side - ow))
                y = round(vy + rng.uniform(0, side - oh))
                frame = bg.copy()
                small = cv2.resize(obj, (ow, oh), interpolation=cv2.INTER_AREA)
                frame[y : y + oh, x : x + ow] = small
                out.append((frame, (x, y, ow, oh), ids, f'pasted on {bg_name}'))
    for p, box, ids in OBJECTS.values():
        for img, (a, b, c, d) in _whole_variants(photo(p), box):
            vx2, vy2, side2 = view_of(preprocess, *img.shape[:2])
            x0, y0 = max(a, vx2), max(b, vy2)
            x1, y1 = min(c, vx2 + side2), min(d, vy2 + side2)
            out.append((img, (x0, y0, x1 - x0, y1 - y0), ids, 'whole'))
    return out


def _whole_variants(img, box):
    """Yield the photograph whole and its centre 80%, each mirrored too, with the hand box."""
    h, w = img.shape[:2]
    for keep in (1.0, 0.8):
        ch, cw = int(h * keep), int(w * keep)
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = img[top : top + ch, left : left + cw]
        a, b = max(0, box[0] - left), max(0, box[1] - top)
        c, d = min(cw, box[2] - left), min(ch, box[3] - top)
        yield np.ascontiguousarray(crop), (a, b, c, d)
        yield np.ascontiguousarray(crop[:, ::-1]), (cw - c, b, cw - a, d)


def _outputs(clf, rgb):
    logits, features = clf.backend.run_outputs(clf.preprocess(rgb))[:2]
    return logits[0], features[0]


def _scores(clf, frames, fractions=THRESHOLDS):
    """Per threshold: top-1 and GT-known localisation hits, MaxBoxAcc's two box rules."""
    from cnn_perception.core.classifier import top_k_of
    from cnn_perception.core.localize import iou, regions, view_map

    n = len(fractions)
    top1 = np.zeros(n)
    known = np.zeros(n)
    largest = np.zeros(n)
    best = {d: np.zeros(n) for d in (0.3, 0.5, 0.7)}
    cls_hits = 0
    loc = clf.localizer
    for rgb, truth, ids, _ in frames:
        logits, features = _outputs(clf, rgb)
        pred = top_k_of(logits, clf.labels, 5, 0.0, 0.0)
        cls_hits += pred.results[0].class_id in ids
        right = max(ids, key=lambda i: logits[i])
        view = clf.preprocess.view(*rgb.shape[:2])
        up_right = view_map(loc.maps(features, [right])[0])
        up_top = view_map(loc.maps(features, [pred.results[0].class_id])[0])
        gap = 1.0 / features.shape[1]
        for j, f in enumerate(fractions):

            def boxes(up, f=f, view=view, gap=gap):
                return [loc.to_source(r[:4], view) for r in regions(up, f, gap=gap)]

            right_boxes = boxes(up_right)
            ious = [iou(b, truth) for b in right_boxes] or [0.0]
            known[j] += ious[0] >= 0.5  # regions come largest mass first
            if pred.results[0].class_id in ids:
                top1[j] += (iou(boxes(up_top)[0], truth) if boxes(up_top) else 0.0) >= 0.5
            areas = [b[2] * b[3] for b in right_boxes]
            largest[j] += ious[int(np.argmax(areas))] >= 0.5 if areas else False
            for d in best:
                best[d][j] += max(ious) >= d
    m = len(frames)
    return {
        'top1_cls': cls_hits / m,
        'top1_loc': top1 / m,
        'known_loc': known / m,
        'maxboxacc': largest / m,
        'v2': {d: v / m for d, v in best.items()},
    }


def calibrate(model: str = 'efficientnet_lite0', seed: int = 1, log=print) -> dict:
    """Measure the map cut and map shift on a calibration set (not the bench's).

    Threshold: the best mean of GT-known localisation on pasted objects and on whole
    photographs (near objects fill the view, far ones do not; each kind counts half).
    """
    from cnn_perception.core.classifier import load_classifier

    clf = load_classifier(model, localize=True, log=log)
    clf.warm_up()
    frames = build_set(clf.preprocess, seed=seed)
    pasted = _scores(clf, [f for f in frames if f[3] != 'whole'])['known_loc']
    whole = _scores(clf, [f for f in frames if f[3] == 'whole'])['known_loc']
    best = int(np.argmax(pasted + whole))
    return {'model': model, 'fraction': float(THRESHOLDS[best]), 'shift': map_shift(clf)}


def map_shift(clf) -> tuple[float, float]:
    """Median offset of an object's map centre from the object's, in view units.

    Three objects on three backgrounds at two sizes on a grid of places, each frame the
    network's input itself (no resize), the map's centroid above half its peak.
    """
    from cnn_perception.core.localize import view_map
    from cnn_perception.core.preprocess import Preprocess

    crop = clf.preprocess.crop
    exact = Preprocess(crop, crop, clf.preprocess.mean, clf.preprocess.std)
    ys, xs = np.mgrid[:crop, :crop]
    offsets = []
    for name in ('cat', 'cup', 'motorcycle'):
        p, box, ids = OBJECTS[name]
        obj = _cut(p, box)
        for bg_name in ('brick', 'gravel', 'sky'):
            bg = _cover(_cut(*BACKGROUNDS[bg_name]), crop, crop)
            for s in (0.35, 0.5):
                ow = int(crop * s)
                oh = int(ow * obj.shape[0] / obj.shape[1])
                for x in range(0, crop - ow, crop // 6):
                    for y in range(0, crop - oh, crop // 6):
                        f = bg.copy()
                        f[y : y + oh, x : x + ow] = cv2.resize(obj, (ow, oh))
                        logits, features = clf.backend.run_outputs(exact(f))[:2]
                        right = max(ids, key=lambda i: logits[0][i])
                        up = view_map(clf.localizer.maps(features[0], [right])[0], crop)
                        w = np.maximum(up - 0.5, 0)
                        cx, cy = (xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()
                        offsets.append((cx - (x + ow / 2), cy - (y + oh / 2)))
    dx, dy = np.median(np.array(offsets), 0) / crop
    return round(float(dx), 3), round(float(dy), 3)


BANDS = (('objects 10-25% of the view', 0.1, 0.25), ('25-40%', 0.25, 0.4), ('40-60%', 0.4, 0.61))


def localize(models=None, log=print) -> dict:
    """Localisation scores and cost of each shipped Lite model, one run (docs/benchmarks.md)."""
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.tools.zoo import ZOO

    rows = {}
    for name in models or ZOO:
        log(f'localize: {name} ...')
        plain = load_classifier(name)
        clf = load_classifier(name, localize=True, log=log)
        plain.warm_up(3)
        clf.warm_up(3)
        j = int(np.argmin(np.abs(THRESHOLDS - clf.localizer.fraction)))
        frames = build_set(clf.preprocess)
        s = _scores(clf, frames)
        side = view_of(clf.preprocess, *FRAME)[2]
        bands = {}
        for label, lo, hi in BANDS:
            part = [f for f in frames if f[3] != 'whole' and lo <= max(f[1][2:]) / side < hi]
            bands[label] = (len(part), float(_scores(clf, part)['known_loc'][j]))
        part = [f for f in frames if f[3] == 'whole']
        bands['whole photographs'] = (len(part), float(_scores(clf, part)['known_loc'][j]))
        t_plain, t_loc = [], []
        for rgb, *_ in frames[::2]:
            t0 = time.perf_counter()
            plain.predict(rgb)
            t1 = time.perf_counter()
            clf.localize(rgb, 5, 0.0, MIN_SCORE)
            t_loc.append((time.perf_counter() - t1) * 1000)
            t_plain.append((t1 - t0) * 1000)
        rows[name] = {
            'frames': len(frames),
            'fraction': clf.localizer.fraction,
            'top1_cls': s['top1_cls'],
            'top1_loc': float(s['top1_loc'][j]),
            'loc_if_right': float(s['top1_loc'][j] / max(s['top1_cls'], 1e-9)),
            'known_loc': float(s['known_loc'][j]),
            'maxboxacc': float(s['maxboxacc'].max()),
            'maxboxacc_v2': float(np.mean([v.max() for v in s['v2'].values()])),
            'bands': bands,
            'classify_ms': statistics.median(t_plain),
            'localize_ms': statistics.median(t_loc),
        }
        rows[name]['ratio'] = rows[name]['localize_ms'] / rows[name]['classify_ms']
    return {'models': rows}


def localize_markdown(r: dict) -> str:
    first = next(iter(r['models'].values()))
    lines = [
        f'{first["frames"]} frames (5 objects x 6 backgrounds x 4 placements, and 5 '
        'photographs whole or cropped, mirrored or not), each model at its calibrated cut '
        '(`core/localize.CALIBRATION`); ONNX '
        'Runtime on this CPU, '
        "median frame time with boxes (classes of p >= 0.1, the node's default) over the "
        'classifier alone.',
        '',
        '| model | cut | top-1 class | top-1 loc | top-1 loc, class right | GT-known loc '
        '| MaxBoxAcc | MaxBoxAccV2 | classifier | with boxes | ratio |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for name, m in r['models'].items():
        lines.append(
            f'| {name} | {m["fraction"]} | {m["top1_cls"]:.0%} | {m["top1_loc"]:.0%} | '
            f'{m["loc_if_right"]:.0%} | '
            f'{m["known_loc"]:.0%} | '
            f'{m["maxboxacc"]:.0%} | {m["maxboxacc_v2"]:.0%} | {m["classify_ms"]:.1f} ms | '
            f'{m["localize_ms"]:.1f} ms | {m["ratio"]:.2f} |'
        )
    lines += ['', 'GT-known localisation by object size:', '']
    names = list(r['models'])
    lines += ['| frames | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    for band in first['bands']:
        n = first['bands'][band][0]
        cells = ' | '.join(f'{r["models"][m]["bands"][band][1]:.0%}' for m in names)
        lines.append(f'| {band} ({n}) | {cells} |')
    return '\n'.join(lines) + '\n'
