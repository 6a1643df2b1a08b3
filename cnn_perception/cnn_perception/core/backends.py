"""Inference backends behind one interface: `backend.run(x) -> logits` (numpy in and out).

- `TorchBackend`: eager PyTorch on the CPU, or CUDA with optional fp16 (the Jetson path).
- `OnnxBackend`: ONNX Runtime; CPU provider by default, CUDA/TensorRT when present and
  asked for. Needs no torch at all when given an exported .onnx file (the Pi path).

Exported ONNX files carry the model's labels and preprocessing in their metadata and are
cached by a hash of the weights file, so a change of weights re-exports.
"""

import hashlib
import json
import os
from pathlib import Path
import time
from typing import Any

import numpy as np

from cnn_perception.core.preprocess import Preprocess
from cnn_perception.errors import ModelFileError

ONNX_META_KEY = 'cnn_perception'


class TorchBackend:
    """Eager PyTorch; `device='cuda'` with `fp16=True` is the Jetson configuration."""

    name = 'torch'

    def __init__(self, model, device: str = 'cpu', fp16: bool = False, num_threads: int = 0):
        import torch

        if device.startswith('cuda') and not torch.cuda.is_available():
            raise ModelFileError('device cuda requested but torch sees no CUDA device')
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.device = device
        self.fp16 = bool(fp16 and device.startswith('cuda'))
        self.model = model.to(device).eval()
        if self.fp16:
            self.model = self.model.half()
        self._torch = torch

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_outputs(x)[0]

    def run_outputs(self, x: np.ndarray, names=None) -> list[np.ndarray]:
        """Every output of the model (a multi-output net's tuple), as numpy."""
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device)
            if self.fp16:
                t = t.half()
            out = self.model(t)
            if self.device.startswith('cuda'):
                torch.cuda.synchronize()
            return [o.float().cpu().numpy() for o in (out if isinstance(out, tuple) else (out,))]


def make_session(model: str | bytes, device: str = 'cpu', num_threads: int = 0):
    """Open an ONNX Runtime session (file path or serialised model), this project's settings."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if num_threads > 0:
        opts.intra_op_num_threads = num_threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool threads busy-wait after each run by default; on a 2-core drone
    # computer that steals the CPU from DDS, the camera and the other nodes.
    opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    # The CPU arena keeps each session's peak allocations for good; with four sessions
    # in one process (the Pi runs every node together) that cost the Pi's memory budget
    # for no measurable speed (docs/benchmarks.md, commit 98f0791).
    opts.enable_cpu_mem_arena = False
    providers = ['CPUExecutionProvider']
    if device.startswith('cuda'):
        have = ort.get_available_providers()
        providers = [
            p for p in ('TensorrtExecutionProvider', 'CUDAExecutionProvider') if p in have
        ] + providers
    return ort.InferenceSession(model, opts, providers=providers)


class OnnxBackend:
    """ONNX Runtime session; providers picked from what the installed build offers."""

    name = 'onnxruntime'

    def __init__(self, path: Path, device: str = 'cpu', num_threads: int = 0):

        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f'{path}: no such ONNX file (create it with `export`)')
        try:
            self.session = make_session(str(path), device, num_threads)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelFileError(
                f'{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]}); '
                're-export it with `python -m cnn_perception export`'
            ) from exc
        self.path = path
        self.device = device
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def run_outputs(self, x: np.ndarray, names: list[str] | None = None) -> list[np.ndarray]:
        """Return the outputs `names` (all when None); ONNX Runtime computes only those."""
        return self.session.run(names, {self.input_name: x})

    def metadata(self) -> dict[str, Any]:
        raw = self.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
        if not raw:
            raise ModelFileError(
                f'{self.path}: ONNX file has no cnn_perception metadata (labels, '
                'preprocessing); export it with `python -m cnn_perception export`'
            )
        return json.loads(raw)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()[:12]


def cache_dir_for(weights: Path) -> Path:
    """Next to the weights when that folder is writable, else the user cache."""
    if os.access(weights.parent, os.W_OK):
        return weights.parent
    base = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return base / 'cnn_perception' / 'onnx'


def onnx_cache_path(info, input_size: int, tag: str = '') -> Path:
    """Cache file for an export of `info`'s weights; `tag` names a sub-network.

    The one place the name is made: `<weights stem>.<arch>[.<tag>].<size>.<sha12>.onnx`,
    next to the weights, so a change of weights re-exports.
    """
    weights = Path(info.weights_path)
    part = f'.{tag}' if tag else ''
    return cache_dir_for(weights) / (
        f'{weights.stem}.{info.arch}{part}.{input_size}.{file_hash(weights)}.onnx'
    )


def registry_onnx_path(model_name: str, input_size: int, tag: str = '') -> Path | None:
    """Where the export of a registry model's shipped weights lives, found without torch.

    This is how the torch-free (Pi) path finds the classifier and the sub-networks (patch
    features, feature maps) exported earlier; None for models without shipped weights.
    """
    from cnn_perception.core.models import ModelInfo, is_registered, model_entry

    if not is_registered(model_name):  # a checkpoint file: exported by its own hash
        return None
    weights = model_entry(model_name).weights()
    if weights is None:
        return None
    return onnx_cache_path(ModelInfo(model_name, model_name, [], None, weights), input_size, tag)


def cached_export(
    model_name: str,
    input_size: int,
    tag: str,
    build,
    weights: str | None = None,
    **export_kw,
) -> Path:
    """Return the ONNX file of a model's (sub-)network, exporting it only the first time.

    The one way every ONNX session here starts: a registry model's cached export is found
    without torch (the Pi path); otherwise `build()` -> (torch net, ModelInfo) is exported
    once next to the weights (`onnx_cache_path`, keyed by the weights' hash and `tag`).
    `weights`: a checkpoint of the user's, never looked up in the registry's cache.
    """
    if not weights:
        path = registry_onnx_path(model_name, input_size, tag)
        if path is not None and path.is_file():
            return path
    net, info = build()
    path = onnx_cache_path(info, input_size, tag)
    if not path.is_file():
        export_onnx(net, info, path, input_size, **export_kw)
    return path


def export_onnx(
    model,
    info,
    path: Path,
    input_size: int | None = None,
    spatial_dynamic: bool = False,
    output_names: tuple[str, ...] = ('logits',),
) -> Path:
    """Export to ONNX (batch dimension dynamic) with labels/preprocessing as metadata.

    `spatial_dynamic` also frees height and width (fully convolutional feature nets).
    """
    import onnx
    import torch

    size = input_size or info.preprocess.crop
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f'.{os.getpid()}.tmp')
    dummy = torch.zeros(1, 3, size, size)
    axes = {0: 'batch', 2: 'height', 3: 'width'} if spatial_dynamic else {0: 'batch'}
    dyn = {'input': axes, **{name: {0: 'batch'} for name in output_names}}
    if spatial_dynamic:
        dyn.update({name: {0: 'batch', 2: f'{name}_h', 3: f'{name}_w'} for name in output_names})
    model = model.cpu().float().eval()
    with torch.inference_mode():
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=['input'],
            output_names=list(output_names),
            dynamic_axes=dyn,
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    meta = {
        'name': info.name,
        'arch': info.arch,
        'labels': list(info.labels),
        'preprocess': info.preprocess.with_size(size).to_dict(),
        'weights_sha256_12': file_hash(Path(info.weights_path)) if info.weights_path else '',
    }
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
    onnx.save(proto, str(tmp))
    tmp.replace(path)  # atomic: a crash never leaves a half-written cache entry
    return path


def info_from_onnx(backend: OnnxBackend):
    from cnn_perception.core.models import ModelInfo

    meta = backend.metadata()
    return ModelInfo(
        meta['name'],
        meta['arch'],
        list(meta['labels']),
        Preprocess.from_dict(meta['preprocess']),
        backend.path,
        precision=meta.get('precision', 'fp32'),
    )


def time_call(fn, *args) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000.0
