"""Patch features of an image from a registry backbone, on torch or ONNX Runtime."""

import cv2
import numpy as np

from cnn_perception.core.defects.model import DEFAULT_INPUT_SIZE, DEFAULT_LAYERS
from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.core.preprocess import Preprocess, normaliser, resize, to_nchw
from cnn_perception.errors import ModelFileError


class FeatureExtractor:
    """Patch features of an image on torch or ONNX Runtime (same numbers, 1e-4)."""

    def __init__(
        self,
        backbone: str = DEFAULT_MODEL,
        layers: tuple[int, ...] = DEFAULT_LAYERS,
        input_size: int = DEFAULT_INPUT_SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        backend: str = 'onnxruntime',
        device: str = 'cpu',
        num_threads: int = 0,
        centre_crop: float = 0.0,
    ):
        self.input_size = input_size
        self.centre_crop = centre_crop
        self._scale, self._offset = normaliser(mean, std)
        # The classifier's recipe (short side to input_size / centre_crop, centre square
        # of input_size): with centre_crop 0.875 at 224 the network input is exactly the
        # classifier's, so both heads can share one pass (core/shared.py).
        self._crop = (
            Preprocess(round(input_size / centre_crop), input_size, tuple(mean), tuple(std))
            if centre_crop
            else None
        )
        tag = 'patch' + ''.join(map(str, layers))
        if backend == 'onnxruntime':
            from cnn_perception.core.backends import OnnxBackend, cached_export

            path = cached_export(
                backbone, input_size, tag, lambda: _build(backbone, layers),
                spatial_dynamic=True, output_names=('features',),
            )  # fmt: skip
            self.backend = OnnxBackend(path, device=device, num_threads=num_threads)
        elif backend == 'torch':
            from cnn_perception.core.backends import TorchBackend

            net, _ = _build(backbone, layers)
            self.backend = TorchBackend(net, device, device.startswith('cuda'), num_threads)
        else:
            raise ModelFileError(f'unknown backend {backend!r}: use onnxruntime or torch')

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Normalised NCHW network input (`geometry` says which part of the frame)."""
        if self._crop is not None:
            return self._crop(rgb)
        h, w = rgb.shape[:2]
        _, _, _, _, nh, nw = self.geometry(h, w)
        img = resize(rgb, (nw, nh), cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR)
        return to_nchw(img, self._scale, self._offset)

    def geometry(self, h: int, w: int) -> tuple[float, float, float, float, int, int]:
        """(x0, y0, sx, sy, in_h, in_w) for an h x w frame.

        Network-input pixel (u, v) lies at source pixel (x0 + u * sx, y0 + v * sy); the
        input is in_h x in_w. Whole frame: short side to input_size, aspect kept, sides
        multiples of 16. Centre crop: the classifier's square.
        """
        return frame_geometry(h, w, self.input_size, self._crop)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w, D) patch features of one RGB image."""
        out = self.backend.run(self.prepare(rgb))[0]
        return np.ascontiguousarray(out.transpose(1, 2, 0), np.float32)


def frame_geometry(h: int, w: int, input_size: int, crop: Preprocess | None = None):
    """`FeatureExtractor.geometry` without an extractor (the shared pass uses it too)."""
    if crop is not None:  # a Preprocess (centre square) or a WholeFrame
        x0, y0, vw, vh, nw, nh = crop.view(h, w)
        return x0, y0, vw / nw, vh / nh, nh, nw
    s = input_size / min(h, w)
    nh, nw = max(16, round(h * s / 16) * 16), max(16, round(w * s / 16) * 16)
    return 0.0, 0.0, w / nw, h / nh, nh, nw


def _build(backbone: str, layers):
    from cnn_perception.core.feature_nets import build_patch_net

    return build_patch_net(backbone, tuple(layers))
