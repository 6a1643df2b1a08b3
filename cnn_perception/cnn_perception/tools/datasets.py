"""Labelled datasets cut from real texture photographs, some with painted defects.

Used by the tests, the demo, the benchmarks and anyone trying transfer learning or the
defect detector without a dataset of their own. No rclpy, no torch. Tooling: what a robot
runs never imports it.
"""

from pathlib import Path

import cv2
import numpy as np

from cnn_perception.core.surfaces import (  # noqa: F401  (re-exported for the tools)
    SURFACES,
    TEXTURES,
    augment_crop,
    random_crops,
    texture,
)


def make_texture_classes(
    out: Path, per_class: int = 30, seed: int = 0, split: str = 'train'
) -> Path:
    """Write an ImageFolder with one folder per texture.

    'train' crops come from the left 60% of each photograph, 'test' crops from the right
    40%, so held-out crops share no pixels with the training set.
    """
    rng = np.random.default_rng(seed)
    region = {'train': (0, 307), 'test': (307, 512)}[split]
    for name in TEXTURES:
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, crop in enumerate(random_crops(texture(name), per_class, rng, 128, region)):
            cv2.imwrite(str(folder / f'{name}_{i:03d}.png'), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return Path(out)


DEFECT_KINDS = ('crack', 'scratch', 'hole', 'stain')


def paint_defect(img: np.ndarray, kind: str, rng: np.random.Generator):
    """Paint one defect of `kind` onto a copy of img; returns (image, mask 0/255)."""
    h, w = img.shape[:2]
    out = img.copy()
    mask = np.zeros((h, w), np.uint8)
    m = max(24, h // 6)
    cx, cy = int(rng.integers(m, w - m)), int(rng.integers(m, h - m))
    if kind == 'crack':
        pts = [(cx, cy)]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(6, 11))):
            angle += rng.normal(0, 0.5)
            step = rng.uniform(6, 12)
            x = int(np.clip(pts[-1][0] + step * np.cos(angle), 2, w - 3))
            y = int(np.clip(pts[-1][1] + step * np.sin(angle), 2, h - 3))
            pts.append((x, y))
        cv2.polylines(mask, [np.array(pts, np.int32)], False, 255, int(rng.integers(2, 4)))
        out[mask > 0] = (out[mask > 0] * 0.25).astype(np.uint8)
    elif kind == 'scratch':
        length, angle = rng.uniform(40, 80), rng.uniform(0, np.pi)
        dx, dy = length / 2 * np.cos(angle), length / 2 * np.sin(angle)
        p1 = (int(np.clip(cx - dx, 0, w - 1)), int(np.clip(cy - dy, 0, h - 1)))
        p2 = (int(np.clip(cx + dx, 0, w - 1)), int(np.clip(cy + dy, 0, h - 1)))
        cv2.line(mask, p1, p2, 255, int(rng.integers(2, 4)))
        bright = rng.random() < 0.5
        out[mask > 0] = 235 if bright else 20
    elif kind == 'hole':
        axes = (int(rng.integers(6, 14)), int(rng.integers(6, 14)))
        cv2.ellipse(mask, (cx, cy), axes, rng.uniform(0, 180), 0, 360, 255, -1)
        shade = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 3)
        out = (out * (1 - 0.85 * shade[..., None])).astype(np.uint8)
        mask = (shade > 0.25).astype(np.uint8) * 255
    elif kind == 'stain':
        axes = (int(rng.integers(12, 24)), int(rng.integers(10, 20)))
        cv2.ellipse(mask, (cx, cy), axes, rng.uniform(0, 180), 0, 360, 255, -1)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 4)[..., None] * 0.7
        color = np.array([150, 90, 30], np.float32)  # rust brown
        out = (out * (1 - alpha) + color * alpha).astype(np.uint8)
        mask = (alpha[..., 0] > 0.2).astype(np.uint8) * 255
    else:
        raise ValueError(f'unknown defect kind {kind!r}: use {", ".join(DEFECT_KINDS)}')
    return out, mask


def make_defect_images(
    texture_name: str = 'brick',
    count: int = 40,
    size: int = 256,
    seed: int = 0,
    with_defects: bool = True,
):
    """Return (normal crops, defect crops, masks) as RGB arrays, in memory.

    Crops are randomly placed, rotated and flipped, so images are not aligned; each
    defect image carries one painted defect, kinds in turn.
    """
    rng = np.random.default_rng(seed)
    src = texture(texture_name)
    normal = [augment_crop(src, size, rng) for _ in range(count)]
    defects, masks = [], []
    for i in range(count if with_defects else 0):
        img, mask = paint_defect(augment_crop(src, size, rng), DEFECT_KINDS[i % 4], rng)
        defects.append(img)
        masks.append(mask)
    return normal, defects, masks


def make_defect_dataset(
    out: Path, texture_name: str = 'brick', count: int = 40, size: int = 256, seed: int = 0
) -> Path:
    """Write normal/, defect/ and masks/ (one mask per defect image, same file name)."""
    normal, defects, masks = make_defect_images(texture_name, count, size, seed)
    out = Path(out)
    for sub in ('normal', 'defect', 'masks'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(normal):
        cv2.imwrite(
            str(out / 'normal' / f'{texture_name}_{i:03d}.png'),
            cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
        )
    for i, (img, mask) in enumerate(zip(defects, masks, strict=True)):
        name = f'{texture_name}_{DEFECT_KINDS[i % 4]}_{i:03d}.png'
        cv2.imwrite(str(out / 'defect' / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(out / 'masks' / name), mask)
    return out
