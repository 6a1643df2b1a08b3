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
    """A model plus its backend; `predict(rgb)` on HxWx3 uint8 RGB frames."""

    def __init__(self, backend, info: ModelInfo):
        self.backend = backend
        self.info = info
        self.preprocess = info.preprocess

    @property
    def labels(self) -> list[str]:
        return self.info.labels

    def predict(self, rgb: np.ndarray, top_k: int = 5, threshold: float = 0.0) -> Prediction:
        x = self.preprocess(rgb)
        logits, ms = time_call(self.backend.run, x)
        return top_k_of(logits[0], self.labels, top_k, threshold, ms)

    def warm_up(self, runs: int = 2) -> None:
        x = np.zeros((1, 3, self.preprocess.crop, self.preprocess.crop), np.float32)
        for _ in range(runs):
            self.backend.run(x)


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
) -> Classifier:
    """Build a classifier from a registry name, a checkpoint (.pt) or an ONNX file.

    An .onnx path runs on ONNX Runtime without importing torch (the Pi path). Otherwise
    the torch model is built; for backend 'onnxruntime' it is exported once to a cached
    .onnx file next to its weights. `precision='int8'` runs the INT8 twin of that export
    (`core/quantize.py`), quantized once with the built-in calibration frames when
    `export --int8` has not made it yet; the ONNX Runtime backend only.
    """
    if precision not in ('fp32', 'int8'):
        raise UserError(f'unknown precision {precision!r}: use fp32 or int8')
    if precision == 'int8' and backend != 'onnxruntime':
        raise UserError('precision int8 runs on the onnxruntime backend (INT8 ONNX export)')
    if Path(model).suffix == '.onnx':
        if backend != 'onnxruntime':
            raise UserError(f'{model}: an ONNX file runs only on the onnxruntime backend')
        onnx = OnnxBackend(Path(model), device=device, num_threads=num_threads)
        info = info_from_onnx(onnx)
        if input_size and input_size != info.preprocess.crop:
            # The exported graph has a fixed input size; a different one fails per frame
            # (reported by the node), which the reliability tests use as a real fault.
            info.preprocess = info.preprocess.with_size(input_size)
        if precision == 'int8' and info.precision != 'int8':
            path = ensure_int8(Path(model), info.preprocess)
            onnx = OnnxBackend(path, device=device, num_threads=num_threads)
        return Classifier(onnx, info)

    from cnn_perception.core.models import get_model, is_registered, model_entry

    def build():
        net, info = get_model(model, weights=weights)
        if input_size and input_size != info.preprocess.crop:
            info.preprocess = info.preprocess.with_size(input_size)
        return net, info

    if backend == 'torch':
        net, info = build()
        return Classifier(TorchBackend(net, device, fp16, num_threads), info)
    if backend != 'onnxruntime':
        raise UserError(f'unknown backend {backend!r}: use torch or onnxruntime')
    if is_registered(model):
        size = input_size or model_entry(model).preprocess.crop
    else:  # a checkpoint of the user's: its own preprocessing says the size
        built = build()
        size, build = built[1].preprocess.crop, lambda: built
    # Shipped weights exported before (by `export`, or any earlier run) load without
    # importing torch: the Pi path after one export.
    path = cached_export(model, size, '', build, weights=weights)
    onnx = OnnxBackend(path, device=device, num_threads=num_threads)
    info = info_from_onnx(onnx)
    if precision == 'int8':
        onnx = OnnxBackend(ensure_int8(path, info.preprocess), device, num_threads)
    return Classifier(onnx, info)


class SharedClassifier(Classifier):
    """Top-k from the process's shared backbone pass (`core/shared.py`): its centre crop."""

    def __init__(self, shared):
        from cnn_perception.core.models import ModelInfo

        info = ModelInfo(shared.model, shared.model, shared.labels, shared.preprocess)
        super().__init__(shared.backend, info)
        self.shared = shared

    def predict(self, rgb: np.ndarray, top_k: int = 5, threshold: float = 0.0) -> Prediction:
        # the classifier leads the heads sharing the pass: its frames are the ones handed on
        logits, ms = time_call(lambda: self.shared.run(rgb, pin=True)['logits'])
        return top_k_of(logits, self.labels, top_k, threshold, ms)

    def warm_up(self, runs: int = 2) -> None:
        for i in range(runs):
            self.shared.run(np.full((240, 320, 3), i, np.uint8))
