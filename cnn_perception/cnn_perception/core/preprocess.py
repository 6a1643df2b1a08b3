"""Image preprocessing in numpy + OpenCV, so the ONNX Runtime path needs no torch."""

from dataclasses import asdict, dataclass
from functools import cached_property

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: resize the short side, centre-crop, normalise.

    `resize` / `crop` are pixels; mean and std apply to RGB values scaled to [0, 1].
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> 'Preprocess':
        return cls(
            resize=int(d['resize']),
            crop=int(d['crop']),
            mean=tuple(float(v) for v in d['mean']),
            std=tuple(float(v) for v in d['std']),
        )

    def with_size(self, crop: int) -> 'Preprocess':
        """Return the same recipe at another input size (keeping the resize/crop ratio)."""
        return Preprocess(
            resize=round(crop * self.resize / self.crop), crop=crop, mean=self.mean, std=self.std
        )

    def view(self, height: int, width: int) -> tuple[float, float, float, float, int, int]:
        """(x0, y0, width, height) of the source region the network sees, and its input (w, h)."""
        x0, y0, scale = self.crop_box(height, width)
        side = self.crop * scale
        return x0, y0, side, side, self.crop, self.crop

    def crop_box(self, height: int, width: int) -> tuple[float, float, float]:
        """(x0, y0, scale) mapping network-input pixels back to source pixels."""
        scale = self.resize / min(height, width)
        new_h, new_w = max(self.crop, round(height * scale)), max(self.crop, round(width * scale))
        top, left = (new_h - self.crop) // 2, (new_w - self.crop) // 2
        return left / scale, top / scale, 1.0 / scale

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> 1x3xCxC float32, ready for the network."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'expected an HxWx3 RGB image, got shape {rgb.shape}')
        h, w = rgb.shape[:2]
        scale = self.resize / min(h, w)
        new_h, new_w = max(self.crop, round(h * scale)), max(self.crop, round(w * scale))
        # INTER_AREA (box filter) only for strong shrinking, where bilinear would alias;
        # down to half size bilinear is nearly as clean and cheaper (float32 bilinear
        # 0.31 ms, INTER_AREA 1.1 ms for 640x480 here, 2026-12-05).
        interp = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
        img = resize(rgb, (new_w, new_h), interp)
        top, left = (new_h - self.crop) // 2, (new_w - self.crop) // 2
        img = img[top : top + self.crop, left : left + self.crop]
        return to_nchw(img, self._scale, self._offset)

    @cached_property  # per-frame hot path: computed once per recipe
    def _scale(self) -> np.ndarray:
        return normaliser(self.mean, self.std)[0]

    @cached_property
    def _offset(self) -> np.ndarray:
        return normaliser(self.mean, self.std)[1]


@dataclass(frozen=True)
class WholeFrame:
    """The whole frame as the network's input: short side to `short`, aspect kept.

    Sides are rounded to multiples of 16, as the defect detector's own whole-frame input
    (`defects.extractor.frame_geometry`), so the two see the same pixels. The shared
    backbone pass (core/shared.py) uses it: every head covers the whole frame.
    """

    short: int = 192
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def crop(self) -> int:  # the input's short side (what `Preprocess.crop` is to a square)
        return self.short

    def size(self, height: int, width: int) -> tuple[int, int]:
        """Return the network input's (height, width) for an h x w frame."""
        s = self.short / min(height, width)
        return max(16, round(height * s / 16) * 16), max(16, round(width * s / 16) * 16)

    def view(self, height: int, width: int) -> tuple[float, float, float, float, int, int]:
        nh, nw = self.size(height, width)
        return 0.0, 0.0, float(width), float(height), nw, nh

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f'expected an HxWx3 RGB image, got shape {rgb.shape}')
        nh, nw = self.size(*rgb.shape[:2])
        interp = cv2.INTER_AREA if nh < rgb.shape[0] / 2 else cv2.INTER_LINEAR
        img = resize(rgb, (nw, nh), interp)
        scale, offset = normaliser(self.mean, self.std)
        return to_nchw(img, scale, offset)


def resize(rgb: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """Return `cv2.resize(rgb, size)`; bilinear in float32, for the same pixels on every CPU.

    OpenCV's 8-bit bilinear resize is fixed point, and its AVX2 (x86-64) and NEON (arm64)
    versions round differently: one grey level on a fifth of a photograph's pixels, up to
    7e-3 in a class probability between this machine and a Pi (`make pi-check`). In
    float32 both give the same image, for 0.16 ms more per 640x480 frame here (0.31 vs
    0.15 ms). INTER_AREA is the same on both as it is.
    """
    if interp == cv2.INTER_LINEAR:
        return cv2.resize(rgb.astype(np.float32), size, interpolation=interp)
    return cv2.resize(rgb, size, interpolation=interp)


def normaliser(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) such that uint8 * scale + offset = (x / 255 - mean) / std."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def to_nchw(img: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 (or float32 0..255) -> 1x3xHxW float32, one multiply-add per channel.

    Written straight into the NCHW tensor: no float HWC intermediate, no transpose copy
    (a third of the cost of the naive `(img / 255 - mean) / std` then transpose).
    """
    h, w = img.shape[:2]
    x = np.empty((1, 3, h, w), np.float32)
    for c in range(3):
        np.multiply(img[..., c], scale[c], out=x[0, c], casting='unsafe')
        x[0, c] += offset[c]
    return x
