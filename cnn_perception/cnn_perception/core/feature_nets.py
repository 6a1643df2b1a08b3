"""torch modules built on registry backbones (imported lazily: this module needs torch)."""

import torch
from torch import nn
import torch.nn.functional as F  # noqa: N812


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
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.layers:
                feats.append(F.avg_pool2d(x, 3, stride=1, padding=1))
        size = feats[0].shape[-2:]
        feats = [feats[0]] + [
            F.interpolate(f, size=size, mode='bilinear', align_corners=False) for f in feats[1:]
        ]
        return torch.cat(feats, dim=1)


def build_patch_net(backbone_name: str, layers: tuple[int, ...]):
    from cnn_perception.core.models import get_model

    backbone, info = get_model(backbone_name)
    if not hasattr(backbone, 'blocks'):
        raise ValueError(f'{backbone_name}: patch features need an EfficientNet backbone')
    return PatchFeatureNet(backbone, layers).eval(), info
