"""One backbone pass per frame for every head in the process (no rclpy).

When the classifier, the defect detector and the feature-map publisher run in one process
on the same frames and the same backbone, each would run its own EfficientNet pass. With
`shared_backbone: true` they share one: a multi-output ONNX graph computes, per frame,
the class logits, the defect detector's patch features (stage 2, 3x3 averaged) and the
mosaic / CAM activations, and keeps the last few frames' outputs keyed by the frame's
content, so whichever head asks second gets them for free.

The shared geometry is the defect detector's: the whole frame, short side 320 px (sides
multiples of 16). The classifier then pools over the whole frame instead of a 224 px
centre crop (a different answer on some frames: docs/benchmarks.md, "shared backbone");
the defect features are exactly those of its own pass.
"""

from collections import OrderedDict
import hashlib
import threading

import numpy as np

from cnn_perception.core.models import DEFAULT_MODEL, ModelInfo, model_entry
from cnn_perception.core.preprocess import normaliser, to_nchw

SHARED_SIZE = 320
PATCH_LAYERS = (2,)
_registry: dict[tuple, 'SharedBackbone'] = {}
_registry_lock = threading.Lock()


def _shared_net(net, patch_layers, acts):
    """Wrap `net` to return (logits, patch features, *activations) in one pass."""
    import torch
    from torch import nn
    import torch.nn.functional as F  # noqa: N812

    modules = dict(net.named_modules())

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self._acts: dict[str, torch.Tensor] = {}
            for name in acts:
                modules[name].register_forward_hook(self._keep(name))
            for i in patch_layers:
                modules[f'blocks.{i}'].register_forward_hook(self._keep(f'blocks.{i}'))

        def _keep(self, name):
            def fn(mod, inputs, output):
                self._acts[name] = output.clone()

            return fn

        def forward(self, x):
            logits = self.net(x)
            feats = [F.avg_pool2d(self._acts[f'blocks.{i}'], 3, 1, 1) for i in patch_layers]
            size = feats[0].shape[-2:]
            feats = [feats[0]] + [F.interpolate(f, size=size, mode='bilinear') for f in feats[1:]]
            return (logits, torch.cat(feats, 1), *[self._acts[n] for n in acts])

    return Shared().eval()


class SharedBackbone:
    """The process's one pass per frame; get it with `SharedBackbone.get(...)`."""

    @classmethod
    def for_node(cls, model: str, p: dict) -> 'SharedBackbone':
        """Return the shared pass for a head with parameters `p`, refusing what it is not.

        It runs on ONNX Runtime on the CPU; a head configured for torch or CUDA (the
        Jetson) would otherwise be moved to the CPU without a word. The pass serves every
        head, so it uses ONNX Runtime's default threads whatever a head's `num_threads`
        (desktop.yaml gives the low-rate heads one thread for their own passes).
        """
        from cnn_perception.errors import UserError

        if p.get('backend', 'onnxruntime') != 'onnxruntime' or p.get('device', 'cpu') != 'cpu':
            raise UserError(
                f'shared_backbone runs on ONNX Runtime on the CPU, not on '
                f'{p.get("backend")}/{p.get("device")}: set shared_backbone false (on a GPU '
                'each head runs its own pass) or backend onnxruntime, device cpu'
            )
        return cls.get(model)

    @classmethod
    def get(cls, model: str = DEFAULT_MODEL, num_threads: int = 0) -> 'SharedBackbone':
        key = (model, num_threads)
        with _registry_lock:
            if key not in _registry:
                _registry[key] = cls(model, num_threads)
            return _registry[key]

    def __init__(self, model: str = DEFAULT_MODEL, num_threads: int = 0):
        from cnn_perception.core.backends import OnnxBackend, registry_onnx_path

        entry = model_entry(model)
        self.model = model
        self.feature_layers = list(entry.feature_layers)
        self.acts = list(dict.fromkeys([*entry.feature_layers, entry.cam_layer]))
        self.cam_layer = entry.cam_layer
        self.patch_layers = PATCH_LAYERS
        self.input_size = SHARED_SIZE
        self.preprocess = entry.preprocess
        self.labels = entry.labels()
        self._scale, self._offset = normaliser(entry.preprocess.mean, entry.preprocess.std)
        path = registry_onnx_path(model, SHARED_SIZE, 'shared')
        if path is None or not path.is_file():
            path = self._export(model)
        self.backend = OnnxBackend(path, num_threads=num_threads)
        self._names = ['logits', 'patch', *self.acts]
        self._cache: OrderedDict[bytes, dict] = OrderedDict()
        self._busy: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()
        self.passes = 0  # network calls actually made
        self.requests = 0  # heads served

    def _export(self, model: str):
        from cnn_perception.core.backends import export_onnx, onnx_cache_path
        from cnn_perception.core.models import get_model

        net, info = get_model(model)
        path = onnx_cache_path(info, SHARED_SIZE, 'shared')
        names = ('logits', 'patch', *[f'act{i}' for i in range(len(self.acts))])
        export_onnx(
            _shared_net(net, self.patch_layers, self.acts),
            ModelInfo(info.name, info.arch, info.labels, info.preprocess, info.weights_path),
            path,
            SHARED_SIZE,
            spatial_dynamic=True,
            output_names=names,
        )
        return path

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Short side to 320 (aspect kept, sides multiples of 16), normalised NCHW."""
        import cv2

        h, w = rgb.shape[:2]
        s = self.input_size / min(h, w)
        nh, nw = max(16, round(h * s / 16) * 16), max(16, round(w * s / 16) * 16)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        return to_nchw(cv2.resize(rgb, (nw, nh), interpolation=interp), self._scale, self._offset)

    def run(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Return this frame's outputs: computed once, then served from the cache."""
        key = hashlib.blake2b(
            np.ascontiguousarray(rgb[::7, ::7]).tobytes() + bytes(str(rgb.shape), 'ascii'),
            digest_size=16,
        ).digest()
        while True:
            with self._lock:
                self.requests += 1
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
                wait = self._busy.get(key)
                if wait is None:
                    self._busy[key] = threading.Event()
                    break
                self.requests -= 1
            wait.wait(5.0)  # another head is computing this very frame
        try:
            outs = self.backend.session.run(None, {self.backend._input: self.prepare(rgb)})
            result = {n: o[0] for n, o in zip(self._names, outs, strict=True)}
            self.passes += 1
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > 4:
                    self._cache.popitem(last=False)
            return result
        finally:
            with self._lock:
                self._busy.pop(key).set()

    def matches_defect_model(self, m) -> bool:
        """Whether a defect model's features are exactly this pass's patch output."""
        mean, std = self.preprocess.mean, self.preprocess.std
        return (
            m.backbone == self.model
            and tuple(m.layers) == tuple(self.patch_layers)
            and m.input_size == self.input_size
            and tuple(m.mean) == tuple(mean)
            and tuple(m.std) == tuple(std)
        )


class SharedFeatures:
    """FeatureExtractor-compatible view of the shared pass (the defect detector's input)."""

    def __init__(self, shared: SharedBackbone):
        self.shared = shared
        self.backend = shared.backend  # the nearest-patch search runs where this is

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        out = self.shared.run(rgb)['patch']
        return np.ascontiguousarray(out.transpose(1, 2, 0), np.float32)
