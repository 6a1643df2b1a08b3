"""Small labelled datasets cut from real texture photographs (scikit-image ships them).

Used by the tests, the demo and anyone trying transfer learning without a dataset of
their own. No rclpy, no torch.
"""

from pathlib import Path

import cv2
import numpy as np

TEXTURES = ('brick', 'gravel', 'grass')


def texture(name: str) -> np.ndarray:
    """Return a 512x512 RGB texture photograph from scikit-image."""
    from skimage import data

    if name not in TEXTURES:
        raise ValueError(f'unknown texture {name!r}: use {", ".join(TEXTURES)}')
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
