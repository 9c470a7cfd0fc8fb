"""Channel/spatial attention blocks (seed 000) that the ResNet family can insert in each block.

Each block maps a feature map x to x reweighted by a gate in (0, 1):
- SE (squeeze-and-excitation): global average pool -> FC -> ReLU -> FC -> sigmoid -> scale.
- GE (gather-excite): gather context over an `extent` (average pooling, or depthwise strided
  convs when parametric), optionally an SE-style MLP, upsample, sigmoid -> scale.
- CBAM: channel attention (a shared MLP on the average- and max-pooled map) and then spatial
  attention (a 7x7 conv on the channel-wise average and max).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dlbench.errors import DlbenchError, unknown_name

KINDS = ("none", "se", "ge", "cbam")


def mlp(channels: int, reduction: int) -> nn.Sequential:
    """1x1 conv C -> C/r, ReLU, 1x1 conv C/r -> C (an FC layer applied at every position)."""
    hidden = max(1, channels // reduction)
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
    )


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = mlp(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)))


class GatherExcite(nn.Module):
    """Gather-Excite (Hu et al., 2018). extent=0 gathers over the whole map (global).

    parametric=false (GE-theta-minus): the gather is an average pool, no parameters.
    parametric=true (GE-theta): depthwise convs with BatchNorm do the gather: log2(extent)
    3x3 stride-2 convs, or one conv as large as the feature map for the global extent.
    use_mlp=true (GE-theta-plus): an SE-style MLP (reduction r) on the gathered context.
    """

    def __init__(
        self,
        channels: int,
        extent: int = 0,
        parametric: bool = False,
        use_mlp: bool = False,
        reduction: int = 16,
        feature_size: int | None = None,
    ):
        super().__init__()
        if extent != 0 and (extent < 2 or extent & (extent - 1)):
            raise DlbenchError(f"model.ge_extent={extent}: use 0 (global) or a power of two (2, 4, 8, ...)")
        self.extent = extent
        self.gather: nn.Module | None = None
        if parametric:
            layers: list[nn.Module] = []
            if extent == 0:
                k = feature_size or 1
                layers += [
                    nn.Conv2d(channels, channels, k, groups=channels, bias=False),
                    nn.BatchNorm2d(channels),
                ]
            else:
                for i in range(int(math.log2(extent))):
                    if i:
                        layers.append(nn.ReLU(inplace=True))
                    layers += [
                        nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False),
                        nn.BatchNorm2d(channels),
                    ]
            self.gather = nn.Sequential(*layers)
        self.mlp = mlp(channels, reduction) if use_mlp else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather is not None:
            context = self.gather(x)
        elif self.extent == 0:
            context = x.mean(dim=(2, 3), keepdim=True)
        else:
            k = 2 * self.extent - 1
            context = F.avg_pool2d(x, k, stride=self.extent, padding=k // 2, count_include_pad=False)
        context = self.mlp(context)
        if context.shape[-2:] != x.shape[-2:]:
            context = F.interpolate(context, size=x.shape[-2:], mode="nearest")
        return x * torch.sigmoid(context)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel, then spatial."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        self.channel_mlp = mlp(channels, reduction)
        self.spatial = nn.Sequential(
            nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False), nn.BatchNorm2d(1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.channel_mlp(F.adaptive_avg_pool2d(x, 1))
        peak = self.channel_mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + peak)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


def factory(
    kind: str,
    reduction: int = 16,
    ge_extent: int = 0,
    ge_parametric: bool = False,
    ge_mlp: bool = False,
    cbam_kernel: int = 7,
) -> Callable[[int, int], nn.Module | None]:
    """A function (channels, feature map size) -> the attention block, or None for 'none'."""
    if kind not in KINDS:
        raise unknown_name("attention", kind, KINDS)
    if reduction < 1:
        raise DlbenchError(f"model.reduction={reduction}: must be at least 1")

    def make(channels: int, feature_size: int) -> nn.Module | None:
        if kind == "se":
            return SqueezeExcite(channels, reduction)
        if kind == "ge":
            return GatherExcite(channels, ge_extent, ge_parametric, ge_mlp, reduction, feature_size)
        if kind == "cbam":
            return CBAM(channels, reduction, cbam_kernel)
        return None

    return make
