"""Whole-image classification: pixels -> CNN -> logits -> softmax -> top-k classes."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnn_perception.core.backends import (
    OnnxBackend,
    TorchBackend,
    cached_export,
    info_from_onnx,
    time_call,
)
from cnn_perception.core.models import DEFAULT_MODEL, ModelInfo
from cnn_perception.errors import UserError


@dataclass
class Hypothesis:
    class_id: int
    label: str
    score: float


@dataclass
class Prediction:
    results: list[Hypothesis]
    logits: np.ndarray
    inference_ms: float


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k_of(logits, labels, top_k: int, threshold: float, ms: float) -> Prediction:
    """Softmax, then the k most probable classes at or above `threshold`, best first."""
    probs = softmax(logits.astype(np.float64))
    k = max(1, min(int(top_k), probs.size))
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.argsort(-probs[idx])]
    results = [
        Hypothesis(int(i), labels[i], float(probs[i])) for i in idx if probs[i] >= threshold
    ]
    return Prediction(results, logits, ms)


class Classifier:
    """A model plus its backend; `predict(rgb)` on HxWx3 uint8 RGB frames.

    With a `localizer` (`load_classifier(..., localize=True)`) the backend's graph also
    returns the last feature maps, and `localize(rgb)` gives the classes and their boxes
    from the same pass (`core/localize.py`).
    """

    def __init__(self, backend, info: ModelInfo, localizer=None):
        self.backend = backend
        self.info = info
        self.preprocess = info.preprocess
        self.localizer = localizer

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    def predict(self, rgb: np.ndarray, top_k: int = 5, threshold: float = 0.0) -> Prediction:
        x = self.preprocess(rgb)
        logits, ms = time_call(self.backend.run, x)
        return top_k_of(logits[0], self.labels, top_k, threshold, ms)

    def localize(self, rgb: np.ndarray, top_k: int = 5, threshold: float = 0.0, min_score=0.0):
        """Return (Prediction, boxes, box_ms): the top-k classes and where they are.

        One network pass (logits and the last feature maps); boxes for the classes at or
        above `min_score` (`Localizer`), best first; `box_ms` the time of the boxes alone.
        """
        if self.localizer is None:
            raise UserError('this classifier was loaded without localize=True')
        (logits, features), ms = time_call(self._pass, rgb)
        pred = top_k_of(logits, self.labels, top_k, threshold, ms)
        boxes, box_ms = time_call(
            self.localizer, pred.results, features, logits, self.preprocess,
            rgb.shape[0], rgb.shape[1], min_score,
        )  # fmt: skip
        return pred, boxes, box_ms

    def _pass(self, rgb: np.ndarray):
        return self._outputs(self.preprocess(rgb))

    def _outputs(self, x: np.ndarray):
        logits, features = self.backend.run_outputs(x)[:2]
        return logits[0], features[0]

    def warm_up(self, runs: int = 2) -> None:
        x = np.zeros((1, 3, self.preprocess.crop, self.preprocess.crop), np.float32)
        for _ in range(runs):
            self.backend.run(x)
        if self.localizer is not None:  # CAM or EigenCAM: decided on a noisy input
            noise = np.random.default_rng(0).integers(0, 256, (1, 3, x.shape[2], x.shape[3]))
            logits, features = self._outputs(((noise - 127.5) / 64).astype(np.float32))
            self.localizer.check(features, logits, self.info.name)


def int8_path(fp32_path: Path) -> Path:
    """Where the INT8 twin of an fp32 ONNX export is cached: beside it, `.int8.onnx`."""
    return Path(fp32_path).with_suffix('.int8.onnx')


def ensure_int8(fp32_path: Path, preprocess, frames=None, min_agreement=None, log=print) -> Path:
    """Return the cached INT8 twin of an export, quantized now if missing (no torch)."""
    from cnn_perception.core.quantize import (
        DEFAULT_MIN_AGREEMENT,
        QualityGateError,
        default_calibration_frames,
        quantize,
    )

    path = int8_path(fp32_path)
    refused = path.with_suffix('.refused.txt')  # the gate's verdict on the built-in frames
    if frames is None:
        if path.is_file():
            return path
        if refused.is_file():  # do not quantize again at every start to be refused again
            raise QualityGateError(refused.read_text().strip())
    try:
        quantize(
            fp32_path,
            path,
            frames if frames is not None else default_calibration_frames(),
            preprocess,
            min_agreement if min_agreement is not None else DEFAULT_MIN_AGREEMENT,
            log=log,
        )
    except QualityGateError as exc:
        if frames is None:
            refused.write_text(f'{exc} (cached verdict: {refused}; `export --int8` retries)')
        raise
    refused.unlink(missing_ok=True)
    return path


def load_classifier(
    model: str = DEFAULT_MODEL,
    *,
    weights: str | None = None,
    backend: str = 'onnxruntime',
    device: str = 'cpu',
    fp16: bool = False,
    num_threads: int = 0,
    input_size: int | None = None,
    precision: str = 'fp32',
    localize: bool = False,
    log=print,
) -> Classifier:
    """Build a classifier from a registry name, a checkpoint (.pt) or an ONNX file.

    An .onnx path runs on ONNX Runtime without importing torch (the Pi path). Otherwise
    the torch model is built; for backend 'onnxruntime' it is exported once to a cached
    .onnx file next to its weights. `precision='int8'` runs the INT8 twin of that export
    (`core/quantize.py`), quantized once with the built-in calibration frames when
    `export --int8` has not made it yet; the ONNX Runtime backend only. `localize`: the
    graph also returns the last feature maps (export tag 'cam'), for `Classifier.localize`.
    """
    if precision not in ('fp32', 'int8'):
        raise UserError(f'unknown precision {precision!r}: use fp32 or int8')
    if precision == 'int8' and backend != 'onnxruntime':
        raise UserError('precision int8 runs on the onnxruntime backend (INT8 ONNX export)')
    if Path(model).suffix == '.onnx':
        if backend != 'onnxruntime':
            raise UserError(f'{model}: an ONNX file runs only on the onnxruntime backend')
        return _onnx_classifier(Path(model), device, num_threads, input_size, precision,
                                localize, log)  # fmt: skip

    from cnn_perception.core.models import get_model, is_registered, model_entry

    def build():
        net, info = get_model(model, weights=weights)
        if input_size and input_size != info.preprocess.crop:
            info.preprocess = info.preprocess.with_size(input_size)
        return net, info

    if backend == 'torch':
        net, info = build()
        if not localize:
            return Classifier(TorchBackend(net, device, fp16, num_threads), info)
        from cnn_perception.core.feature_nets import MultiOutputNet
        from cnn_perception.core.localize import Localizer, head_from_torch

        cam = MultiOutputNet(net, [model_entry(info.arch).cam_layer])
        # whether the head fits the maps is checked on the first frame (`Localizer.check`)
        localizer = Localizer(head_from_torch(net), info.arch, log=log)
        return Classifier(TorchBackend(cam, device, fp16, num_threads), info, localizer)
    if backend != 'onnxruntime':
        raise UserError(f'unknown backend {backend!r}: use torch or onnxruntime')
    if is_registered(model):
        size = input_size or model_entry(model).preprocess.crop
    else:  # a checkpoint of the user's: its own preprocessing says the size
        built = build()
        size, build = built[1].preprocess.crop, lambda: built
    tag, names, make = '', ('logits',), build
    if localize:
        tag, names = 'cam', ('logits', 'features')

        def make():
            from cnn_perception.core.feature_nets import MultiOutputNet

            net, info = build()
            return MultiOutputNet(net, [model_entry(info.arch).cam_layer]), info

    # Shipped weights exported before (by `export`, or any earlier run) load without
    # importing torch: the Pi path after one export.
    path = cached_export(model, size, tag, make, weights=weights, output_names=names)
    return _onnx_classifier(path, device, num_threads, None, precision, localize, log)


def _onnx_classifier(path: Path, device, num_threads, input_size, precision, localize, log):
    onnx = OnnxBackend(path, device=device, num_threads=num_threads)
    info = info_from_onnx(onnx)
    if input_size and input_size != info.preprocess.crop:
        # The exported graph has a fixed input size; a different one fails per frame
        # (reported by the node), which the reliability tests use as a real fault.
        info.preprocess = info.preprocess.with_size(input_size)
    localizer = None
    if localize:
        from cnn_perception.core.localize import Localizer, head_from_onnx

        if len(onnx.session.get_outputs()) < 2:
            raise UserError(
                f'{path}: this ONNX graph returns the logits only; localize needs its last '
                'feature maps too: pass the registry model or checkpoint instead (its '
                "export with them is made and cached), or export with outputs 'logits', "
                "'features'"
            )
        localizer = Localizer(head_from_onnx(path), info.arch, log=log)
    if precision == 'int8' and info.precision != 'int8':
        onnx = OnnxBackend(ensure_int8(path, info.preprocess), device, num_threads)
    return Classifier(onnx, info, localizer)


class SharedClassifier(Classifier):
    """Top-k from the process's shared backbone pass (`core/shared.py`): the whole frame.

    With `localize`, boxes from the same pass: its last feature maps are an output of the
    pass (`cam`), the dense head is read from its ONNX file or the torch module.
    """

    def __init__(self, shared, localize: bool = False, log=print):
        from cnn_perception.core.models import ModelInfo

        info = ModelInfo(shared.model, shared.model, shared.labels, shared.preprocess)
        localizer = None
        if localize:
            from cnn_perception.core import localize as loc

            if hasattr(shared.backend, 'path'):
                head = loc.head_from_onnx(shared.backend.path)
            else:
                head = loc.head_from_torch(shared.backend.model.net)
            localizer = loc.Localizer(head, shared.model, log=log)
        super().__init__(shared.backend, info, localizer)
        self.shared = shared

    def predict(self, rgb: np.ndarray, top_k: int = 5, threshold: float = 0.0) -> Prediction:
        # the classifier leads the heads sharing the pass: its frames are the ones handed on
        logits, ms = time_call(lambda: self.shared.run(rgb, pin=True)['logits'])
        return top_k_of(logits, self.labels, top_k, threshold, ms)

    def _pass(self, rgb: np.ndarray):
        out = self.shared.run(rgb, pin=True)
        return out['logits'], out['cam']

    def warm_up(self, runs: int = 2) -> None:
        for i in range(runs):
            self.shared.run(np.full((240, 320, 3), i, np.uint8))
        if self.localizer is not None:
            noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
            logits, features = self._pass(noise)
            self.localizer.check(features, logits, self.info.name)
