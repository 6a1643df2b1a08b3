"""Surface photographs (scikit-image ships them) and random crops of them (no rclpy, no torch).

What the built-in defect models are fitted on; the labelled datasets made of them (with
painted defects) are tooling: `cnn_perception.tools.datasets`.
"""

import cv2
import numpy as np

# The texture classes of the transfer-learning example.
TEXTURES = ('brick', 'gravel', 'grass')
# Surfaces a defect dataset can be made of: the textures, plus the Moon's cratered ground
# (Apollo 14 photograph), which was held out while the defect detector was tuned.
SURFACES = (*TEXTURES, 'moon')


def texture(name: str) -> np.ndarray:
    """Return a 512x512 RGB surface photograph from scikit-image (see SURFACES)."""
    from skimage import data

    if name not in SURFACES:
        raise ValueError(f'unknown texture {name!r}: use {", ".join(SURFACES)}')
    gray = getattr(data, name)()
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def random_crops(
    img: np.ndarray,
    n: int,
    rng: np.random.Generator,
    size: int = 160,
    region: tuple[int, int] | None = None,
    out_size: int = 160,
) -> list:
    """N random square crops (side size .. 1.5 size) from the columns in `region`."""
    h, w = img.shape[:2]
    x_lo, x_hi = region or (0, w)
    crops = []
    for _ in range(n):
        s = int(rng.integers(size, min(int(size * 1.5), h, x_hi - x_lo) + 1))
        y = int(rng.integers(0, h - s + 1))
        x = int(rng.integers(x_lo, x_hi - s + 1))
        crops.append(
            cv2.resize(
                img[y : y + s, x : x + s], (out_size, out_size), interpolation=cv2.INTER_AREA
            )
        )
    return crops


def augment_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    crop = img[y : y + size, x : x + size]
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def normal_crops(texture_name: str, count: int, size: int = 256, seed: int = 0) -> list:
    """`count` defect-free crops (random place, rotation, flip) of a surface photograph."""
    rng = np.random.default_rng(seed)
    src = texture(texture_name)
    return [augment_crop(src, size, rng) for _ in range(count)]
