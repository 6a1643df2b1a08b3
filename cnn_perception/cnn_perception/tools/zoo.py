"""`bench --zoo`: the registry's shipped classifiers side by side, accuracy and speed, one run.

Accuracy on real photographs (scikit-image, matplotlib), each with the ImageNet classes a
person would accept for it, chosen by what the photo shows (not by what a model said),
under 12 variations each (crops, mirror, darker): 60 frames. Speed on ONNX Runtime, every
model at its own input size, measured in the same run (ratios are what to compare).
"""

import statistics
import time

import cv2
import numpy as np

# photo -> accepted ImageNet class ids
PHOTOS = {
    'chelsea': {281, 282, 283, 284, 285},  # a domestic cat
    'coffee': {967, 968, 504},  # espresso, cup, coffee mug
    'rocket': {657, 744, 812},  # missile, projectile, space shuttle
    'motorcycle': {665, 670},  # moped, motor scooter
    'grace_hopper': {652, 457, 906},  # military uniform, bow tie, Windsor tie
}
ZOO = ('efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2')


def photo(name: str) -> np.ndarray:
    from skimage import data

    if name == 'grace_hopper':
        import matplotlib.cbook as cbook
        from PIL import Image

        with cbook.get_sample_data('grace_hopper.jpg') as f:
            return np.asarray(Image.open(f).convert('RGB'))
    if name == 'motorcycle':
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def variants(rgb: np.ndarray) -> list[np.ndarray]:
    """12 frames of one photo: centre crops 100/80/60%, mirrored or not, bright or darker."""
    out = []
    h, w = rgb.shape[:2]
    for keep in (1.0, 0.8, 0.6):
        ch, cw = int(h * keep), int(w * keep)
        crop = rgb[(h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
        for flip in (False, True):
            img = crop[:, ::-1] if flip else crop
            for gain in (1.0, 0.7):
                out.append(np.ascontiguousarray(cv2.convertScaleAbs(img, alpha=gain)))
    return out


def labelled_frames() -> list[tuple[np.ndarray, set[int]]]:
    return [(v, ids) for name, ids in PHOTOS.items() for v in variants(photo(name))]


def zoo(models=ZOO, repeats: int = 20, log=print) -> dict:
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.core.explain import explain_model
    from cnn_perception.core.models import get_model

    frames = labelled_frames()
    rows = {}
    for name in models:
        log(f'zoo: {name} ...')
        clf = load_classifier(name, backend='onnxruntime')
        clf.warm_up(3)
        top1 = top5 = 0
        for rgb, ids in frames:
            res = clf.predict(rgb, top_k=5).results
            top1 += res[0].class_id in ids
            top5 += any(h.class_id in ids for h in res)
        size = clf.preprocess.crop
        x = clf.preprocess(frames[0][0])
        net_ms, frame_ms = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            clf.backend.run(x)
            net_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            clf.predict(frames[0][0])
            frame_ms.append((time.perf_counter() - t0) * 1000)
        net, _ = get_model(name)
        totals = explain_model(net, size)['totals']
        rows[name] = {
            'input': size,
            'params_m': totals['model_params'] / 1e6,
            'macs_m': totals['macs'] / 1e6,
            'top1': top1 / len(frames),
            'top5': top5 / len(frames),
            'net_ms': statistics.median(net_ms),
            'frame_ms': statistics.median(frame_ms),
        }
    return {'frames': len(frames), 'photos': list(PHOTOS), 'models': rows}


def zoo_markdown(r: dict) -> str:
    base = r['models'][next(iter(r['models']))]
    lines = [
        f'{r["frames"]} frames: {", ".join(r["photos"])}, 12 variations each. ONNX Runtime '
        'on this CPU, median of 20 calls; "x Lite0" is the ratio of the network call.',
        '',
        '| model | input | params | multiply-adds | top-1 | top-5 | network call | x Lite0 '
        '| whole frame |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for name, m in r['models'].items():
        lines.append(
            f'| {name} | {m["input"]} | {m["params_m"]:.2f} M | {m["macs_m"]:.0f} M | '
            f'{m["top1"]:.0%} | {m["top5"]:.0%} | {m["net_ms"]:.1f} ms | '
            f'{m["net_ms"] / base["net_ms"]:.2f} | {m["frame_ms"]:.1f} ms |'
        )
    return '\n'.join(lines) + '\n'
