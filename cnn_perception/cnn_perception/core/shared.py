"""One backbone pass per frame for every head in the process (no rclpy).

When the classifier, the defect detector and the feature-map publisher run in one process
on the same frames and the same backbone, each would run its own EfficientNet pass. With
`shared_backbone: true` they share one: a multi-output network computes, per frame, the
class logits, the defect detector's patch features (stage 2, 3x3 averaged) and the
mosaic / CAM activations, and keeps the last few frames' outputs keyed by the frame's
content, so whichever head asks second gets them for free.

Which head asks first matters on a busy CPU: a head that runs a few times a second, handed
the camera's newest frame, would compute that frame's pass itself (the classifier is still
on an older one, and goes on to a newer one), so most of its frames cost a whole pass. So
the classifier leads: its frames' outputs are pinned here (`run(..., pin=True)`), and who
hands which frame to whom is the in-process frame hub's job (`intra.FrameHub`: `follow`,
`hand_over`, `leading`), not this module's: this one is pure, frame in, outputs out.

The shared geometry is the whole frame, aspect kept, short side SHARED_SHORT (192) px:
a 640x480 frame goes through as 256x192, the pixel count of the classifier's own
224 x 224 centre crop, so the pass costs what the classifier alone does. The classifier
reads its class from the whole frame (global pooling does not care about the shape):
on the bench's labelled photo frames 54 of 60 right against 50 of 60 from its centre
crop (docs/benchmarks.md, "One backbone pass"). The defect detector scores all of the
frame with a model fitted on that geometry (`defects fit --input-size 192`; the built-in
models are fitted so on first use), and the feature maps and boxes are placed on the
whole frame. Until 2026-12-04 the pass was the classifier's centre crop: 57% of a 4:3
frame was inspected, its borders never.

It runs on ONNX Runtime (CPU) or on torch (CUDA, fp16: the Jetson), as the heads'
`backend` / `device` say.
"""

from collections import OrderedDict
import hashlib
import threading

import numpy as np

from cnn_perception.core.models import DEFAULT_MODEL, model_entry
from cnn_perception.core.preprocess import WholeFrame

PATCH_LAYERS = (2,)
SHARED_SHORT = 192  # the whole frame's short side in the pass, network pixels
# The outputs of the graph every frame goes through: logits, the defect detector's patch
# features, the last feature maps (the classifier's boxes, `core/localize.py`)
LEAN = ('logits', 'patch', 'cam')
_registry: dict[tuple, 'SharedBackbone'] = {}
_registry_lock = threading.Lock()


class SharedBackbone:
    """The process's one pass per frame; get it with `SharedBackbone.for_node(...)`."""

    @classmethod
    def for_node(cls, model: str, p: dict, outputs=('logits', 'patch')) -> 'SharedBackbone':
        """Return the shared pass for a head with parameters `p` that reads `outputs`.

        One pass per model, backend and device in the process (ONNX Runtime on the CPU,
        or torch: fp16 on CUDA); heads configured differently get separate ones. It
        serves every head, so it uses the library's default threads whatever a head's
        `num_threads` (desktop.yaml gives the low-rate heads one thread for their own
        passes).
        """
        from cnn_perception.errors import UserError

        backend, device = p.get('backend', 'onnxruntime'), p.get('device', 'cpu')
        if backend == 'onnxruntime' and device != 'cpu':
            raise UserError(
                'shared_backbone runs ONNX Runtime on the CPU or torch on CUDA: with device '
                'cuda set backend torch (the Jetson configuration)'
            )
        shared = cls.get(model, backend=backend, device=device)
        with _registry_lock:
            shared.needs.update(outputs)
            shared.heads += 1
        return shared

    @classmethod
    def get(
        cls, model: str = DEFAULT_MODEL, backend: str = 'onnxruntime', device: str = 'cpu'
    ) -> 'SharedBackbone':
        key = (model, backend, device)
        with _registry_lock:
            if key not in _registry:
                _registry[key] = cls(model, backend, device)
            return _registry[key]

    def __init__(
        self, model: str = DEFAULT_MODEL, backend: str = 'onnxruntime', device: str = 'cpu'
    ):
        entry = model_entry(model)
        self.model = model
        self.feature_layers = list(entry.feature_layers)
        self.acts = list(dict.fromkeys([*entry.feature_layers, entry.cam_layer]))
        self.cam_layer = entry.cam_layer
        self.patch_layers = PATCH_LAYERS
        own = entry.preprocess
        self.preprocess = WholeFrame(SHARED_SHORT, own.mean, own.std)
        self.input_size = SHARED_SHORT
        self.needs: set[str] = set()  # what the heads read: 'logits', 'patch', 'cam'
        self.heads = 0  # nodes that got it through `for_node`
        self._open_acts = lambda: None  # the ONNX path opens its second graph here
        if backend == 'torch':
            self.backend, self._run = self._torch(model, device)
            self.labels = entry.labels()
        else:
            self.backend, self._run = self._onnx(model)
            # from the file: the registry's labels come through torchvision, i.e. torch,
            # which the ONNX Runtime path never imports (the Pi's memory budget)
            self.labels = list(self.backend.metadata()['labels'])
        self._cache: OrderedDict[bytes, dict] = OrderedDict()
        self._busy: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()
        self.passes = 0  # network calls actually made
        self.requests = 0  # heads served
        self._pinned: tuple[bytes, dict] | None = None  # the leader's last frame

    def _onnx(self, model: str):
        """Open the lean graph (logits, patch features, last maps); the one with activations later.

        The graph with the feature maps' activations too is opened by `open_acts` (the
        feature-map head, at start-up) or when a head first asks for them.

        Activations taken out as graph outputs stop ONNX Runtime fusing the stem's
        convolution with its batch norm, so every frame goes through the lean graph
        (the measurements: README, design notes; docs/benchmarks.md, "One backbone pass").
        """
        from cnn_perception.core.backends import OnnxBackend

        lean = OnnxBackend(self._onnx_file(model, [self.cam_layer]))
        full = []
        graph_names = {'logits': 'logits', 'patch': 'patch'}
        graph_names.update({a: f'act{i}' for i, a in enumerate(self.acts)})
        graph_names['cam'] = graph_names[self.cam_layer]

        def open_full():
            if not full:
                full.append(OnnxBackend(self._onnx_file(model, self.acts)))
            return full[0]

        def run(x, names):
            # ONNX Runtime computes only what the requested outputs need: with the
            # classifier alone in the process, the patch features' pooling is skipped
            if all(n in LEAN for n in names):
                return lean.run_outputs(x, ['act0' if n == 'cam' else n for n in names])
            return open_full().run_outputs(x, [graph_names[n] for n in names])

        self._open_acts = open_full
        return lean, run

    def _torch(self, model: str, device: str):
        """torch, fp16 on CUDA like every head's own CUDA pass (the Jetson configuration)."""
        import torch

        from cnn_perception.core.backends import TorchBackend
        from cnn_perception.core.feature_nets import MultiOutputNet
        from cnn_perception.core.models import get_model

        net, _ = get_model(model)
        net = MultiOutputNet(net, self.acts, self.patch_layers)
        backend = TorchBackend(net, device, device.startswith('cuda'))

        lock = threading.Lock()  # with_acts is the module's: one forward at a time
        on_gpu = device.startswith('cuda')

        def run(x, names):
            with torch.inference_mode(), lock:
                backend.model.with_acts = any(n not in LEAN[:2] for n in names)
                t = torch.from_numpy(x).to(backend.device)
                outs = backend.model(t.half() if backend.fp16 else t)
                every = dict(zip(['logits', 'patch', *self.acts], outs, strict=False))
                every['cam'] = every.get(self.cam_layer)
                # On CUDA the patch features stay there for the defect detector's search
                # (torch.cdist), instead of a round trip through the host
                on_device = {'patch'} if on_gpu else set()
                host = [n for n in names if n not in on_device]
                # one copy to the host for the rest (each .cpu() would synchronise)
                sizes = [every[n].numel() for n in host]
                flat = torch.cat([every[n].reshape(-1).float() for n in host]).cpu().numpy()
                kept = {n: every[n].float() for n in names if n in on_device}
            parts = np.split(flat, np.cumsum(sizes)[:-1])
            kept.update({n: p.reshape(every[n].shape) for n, p in zip(host, parts, strict=True)})
            return [kept[n] for n in names]

        return backend, run

    def _onnx_file(self, model: str, acts: list):
        from cnn_perception.core.backends import cached_export
        from cnn_perception.core.models import get_model

        def build():
            from cnn_perception.core.feature_nets import MultiOutputNet

            net, info = get_model(model)
            return MultiOutputNet(net, acts, self.patch_layers), info

        names = ('logits', 'patch', *[f'act{i}' for i in range(len(acts))])
        # lean: v1 a 320 px whole-frame graph, v2 without the last feature maps (`cam`),
        # v3 with them; v4 any frame shape (the whole frame at SHARED_SHORT)
        tag = 'sharedv4acts' if len(acts) > 1 else 'sharedv4'
        return cached_export(model, self.input_size, tag, build, output_names=names,
                             spatial_dynamic=True)  # fmt: skip

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Return the whole frame as the pass's input: short side SHARED_SHORT, NCHW."""
        return self.preprocess(rgb)

    def geometry(self, h: int, w: int):
        """Return where the pass looks in an h x w frame (`FeatureExtractor.geometry`)."""
        from cnn_perception.core.defects.extractor import frame_geometry

        return frame_geometry(h, w, self.input_size, self.preprocess)

    def run(self, rgb: np.ndarray, acts: bool = False, pin: bool = False) -> dict:
        """Return this frame's outputs: computed once, then served from the cache.

        What the heads registered (`for_node`: 'logits', 'patch'; both when none did);
        with `acts` the feature maps' activations too (a frame first computed without
        them is run again, with them, for the one head that wants them: the feature
        maps, a few times a second while someone watches). A lone head (one `for_node`
        in the process: desktop.yaml's classifier without the others) skips the cache:
        hashing the frame costs more than it saves there (docs/benchmarks.md). `pin` (the
        leading head, whose frames are handed on to the others: `intra.FrameHub.hand_over`)
        keeps this frame's outputs beside the cache until the next pinned frame, so that a
        follower that wakes late still finds them after the cache of 4 moved on.
        """
        names = [n for n in LEAN if n in self.needs or not self.needs]
        names += self.acts if acts else []
        if self.heads == 1:  # one head in the process (the classifier alone): no one to share
            outs = self._run(self.prepare(rgb), names)
            self.passes += 1
            self.requests += 1
            return {n: o[0] for n, o in zip(names, outs, strict=True)}
        key = self._key(rgb)
        while True:
            with self._lock:
                self.requests += 1
                hit = self._cache.get(key)
                if hit is None and self._pinned is not None and self._pinned[0] == key:
                    hit = self._cache[key] = self._pinned[1]
                if hit is not None and all(n in hit for n in names):
                    self._cache.move_to_end(key)
                    if pin:
                        self._pinned = (key, hit)
                    return hit
                wait = self._busy.get(key)
                if wait is None:
                    self._busy[key] = threading.Event()
                    break
                self.requests -= 1
            wait.wait(5.0)  # another head is computing this very frame
        try:
            outs = self._run(self.prepare(rgb), names)
            result = {**(hit or {}), **{n: o[0] for n, o in zip(names, outs, strict=True)}}
            self.passes += 1
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > 4:
                    self._cache.popitem(last=False)
                if pin:
                    self._pinned = (key, result)
            return result
        finally:
            with self._lock:
                self._busy.pop(key).set()

    @staticmethod
    def _key(rgb: np.ndarray) -> bytes:
        return hashlib.blake2b(
            np.ascontiguousarray(rgb[::7, ::7]).tobytes() + bytes(str(rgb.shape), 'ascii'),
            digest_size=16,
        ).digest()

    def release(self) -> None:
        """Let go of a head's share (`for_node`); after the last, the next `get` loads anew."""
        with _registry_lock:
            self.heads -= 1
            if self.heads <= 0:
                for key in [k for k, v in _registry.items() if v is self]:
                    del _registry[key]

    def open_acts(self) -> None:
        """Open the graph with the activations now, for a head that will read them.

        At start-up rather than on the first frame someone watches: opening it took long
        enough there that a defect detector sharing the pass dropped that frame.
        """
        self._open_acts()

    def forget(self) -> None:
        """Empty the cache of recent frames (benchmarks: each measurement computes its pass)."""
        with self._lock:
            self._cache.clear()
            self._pinned = None

    centre_crop = 0.0  # the whole frame (DefectModel.centre_crop's convention)

    def matches_defect_model(self, m) -> bool:
        """Whether a defect model's features are exactly this pass's patch output."""
        mean, std = self.preprocess.mean, self.preprocess.std
        return (
            m.backbone == self.model
            and tuple(m.layers) == tuple(self.patch_layers)
            and m.input_size == self.input_size
            and abs(m.centre_crop - self.centre_crop) < 1e-6
            and tuple(m.mean) == tuple(mean)
            and tuple(m.std) == tuple(std)
        )


class SharedFeatures:
    """FeatureExtractor-compatible view of the shared pass (the defect detector's input)."""

    def __init__(self, shared: SharedBackbone):
        self.shared = shared
        self.backend = shared.backend  # the nearest-patch search runs where this is

    def geometry(self, h: int, w: int):
        return self.shared.geometry(h, w)

    def __call__(self, rgb: np.ndarray):
        """(h, w, D) patch features: numpy, or a CUDA tensor when the pass runs there."""
        out = self.shared.run(rgb)['patch']
        if not isinstance(out, np.ndarray):  # torch on CUDA: the search runs there too
            return out.permute(1, 2, 0).contiguous()
        return np.ascontiguousarray(out.transpose(1, 2, 0), np.float32)
