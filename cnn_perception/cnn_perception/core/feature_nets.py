"""torch modules built on registry backbones (imported lazily: this module needs torch)."""

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812


def pool_patches(stages: list[torch.Tensor]) -> torch.Tensor:
    """PatchCore's patch features from stage outputs: 3x3 average, upsampled, concatenated.

    Each stage output is averaged over a 3x3 neighbourhood (so a patch feature describes
    its surroundings, not one pixel), the deeper maps are upsampled to the first's grid.
    """
    feats = [F.avg_pool2d(s, 3, stride=1, padding=1) for s in stages]
    size = feats[0].shape[-2:]
    feats = [feats[0]] + [
        F.interpolate(f, size=size, mode='bilinear', align_corners=False) for f in feats[1:]
    ]
    return torch.cat(feats, dim=1)


class MultiOutputNet(nn.Module):
    """`net` returning (logits, [patch features], *activations of `layers`) from one pass.

    The one hook wrapper for every multi-output graph: the feature maps (logits and the
    layers a person watches; Grad-CAM reads `grads`) and the shared pass (logits, the
    defect detector's patch features of `patch_layers`, and the feature maps' layers).
    `with_acts = False` returns logits and patch features only, without copying the
    activations (the shared pass's lean torch path).
    """

    def __init__(self, net, layers: list[str], patch_layers: tuple[int, ...] = ()):
        super().__init__()
        from cnn_perception.errors import UserError

        modules = dict(net.named_modules())
        self.patch_names = [f'blocks.{i}' for i in patch_layers]
        missing = [name for name in [*layers, *self.patch_names] if name not in modules]
        if missing:
            raise UserError(f'unknown layer(s) {", ".join(missing)}; see `features --list-layers`')
        self.net, self.layers = net, list(layers)
        self.with_acts = True
        self._acts: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        for name in dict.fromkeys([*self.layers, *self.patch_names]):
            modules[name].register_forward_hook(self._keep(name, name in self.patch_names))

    def _keep(self, name: str, always: bool):
        def fn(mod, inputs, output):
            if always or self.with_acts:
                self._acts[name] = output.clone()  # later in-place ops must not change it
            if output.requires_grad:  # Grad-CAM: the gradient reaching the real output
                output.register_hook(lambda g: self.grads.__setitem__(name, g))

        return fn

    def forward(self, x):
        out = [self.net(x)]
        if self.patch_names:
            out.append(pool_patches([self._acts[n] for n in self.patch_names]))
        if self.with_acts:
            out += [self._acts[n] for n in self.layers]
        return tuple(out)


class PatchFeatureNet(nn.Module):
    """Mid-level EfficientNet stages as one locally-aware patch feature map (PatchCore).

    Each chosen stage output is averaged over a 3x3 neighbourhood (so a patch feature
    describes its surroundings, not one pixel), the deeper maps are upsampled to the
    finest chosen grid, and everything is concatenated along channels.
    """

    def __init__(self, backbone, layers: tuple[int, ...]):
        super().__init__()
        self.stem = nn.Sequential(backbone.conv_stem, backbone.bn1)
        self.blocks = nn.ModuleList(backbone.blocks[: max(layers) + 1])
        self.layers = tuple(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        stages = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.layers:
                stages.append(x)
        return pool_patches(stages)


def build_patch_net(backbone_name: str, layers: tuple[int, ...]):
    from cnn_perception.core.models import get_model

    backbone, info = get_model(backbone_name)
    if not hasattr(backbone, 'blocks'):
        raise ValueError(f'{backbone_name}: patch features need an EfficientNet backbone')
    return PatchFeatureNet(backbone, layers).eval(), info
