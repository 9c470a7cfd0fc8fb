"""ResNet (seeds 000, 001) with optional attention in every block (SE, GE, CBAM).

The layout is torchvision's (stride in the 3x3 conv of a bottleneck, "ResNet v1.5"), so with
stem=imagenet and 1000 classes each depth has exactly torchvision's parameter count. A block
is residual: out = relu(F(x) + shortcut(x)); the shortcut is the identity, or a 1x1 stride-s
convolution (+BatchNorm) where the block changes the size or the number of channels.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models import attention as attn
from dlbench.models.layers import check_fits, choose_stem, image_shape, init_cnn
from dlbench.models.pretrained import freeze_backbone, load_torchvision_weights
from dlbench.registry import MODELS

# depth -> (block, blocks per stage)
DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, norm: str = "batch") -> list[nn.Module]:
    """A conv and its BatchNorm; with norm=none the conv alone, with a bias (seed 001's blocks)."""
    if norm == "none":
        return [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2)]
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(out_ch)]


class Block(nn.Module):
    """A residual block: basic (3x3, 3x3) or bottleneck (1x1 reduce, 3x3, 1x1 expand x4),
    then the attention block (if any) on the residual branch, before the addition."""

    def __init__(
        self, kind: str, in_ch: int, planes: int, stride: int, attention: nn.Module | None, norm: str
    ):
        super().__init__()
        self.out_channels = planes * (4 if kind == "bottleneck" else 1)
        if kind == "basic":
            layers = [
                *conv_bn(in_ch, planes, 3, stride, norm),
                nn.ReLU(inplace=True),
                *conv_bn(planes, planes, 3, norm=norm),
            ]
        else:
            layers = [
                *conv_bn(in_ch, planes, 1, norm=norm),
                nn.ReLU(inplace=True),
                *conv_bn(planes, planes, 3, stride, norm),
                nn.ReLU(inplace=True),
                *conv_bn(planes, self.out_channels, 1, norm=norm),
            ]
        self.residual = nn.Sequential(*layers)
        self.attention = attention or nn.Identity()
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != self.out_channels:
            self.shortcut = nn.Sequential(*conv_bn(in_ch, self.out_channels, 1, stride, norm))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.attention(self.residual(x)) + self.shortcut(x))


def make_stages(
    kind: str,
    blocks: list[int],
    in_ch: int,
    width: int,
    size: int,
    make_attention: Callable[[int, int], nn.Module | None],
    norm: str = "batch",
) -> tuple[nn.Sequential, int]:
    """Stage i has blocks[i] blocks of width * 2**i planes; every stage after the first
    halves the feature map in its first block. Returns the stages and their output channels."""
    stages = []
    for i, n in enumerate(blocks):
        planes = width * 2**i
        stage = []
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            size = math.ceil(size / stride)
            expanded = planes * (4 if kind == "bottleneck" else 1)
            block = Block(kind, in_ch, planes, stride, make_attention(expanded, size), norm)
            stage.append(block)
            in_ch = block.out_channels
        stages.append((f"stage{i + 1}", nn.Sequential(*stage)))
    return nn.Sequential(OrderedDict(stages)), in_ch


@MODELS.register("resnet")
def resnet(
    input_shape: list[int],
    num_outputs: int,
    depth: int = 18,  # 18 | 34 (basic blocks) | 50 | 101 | 152 (bottleneck blocks)
    # blocks per stage, overrides depth: e.g. [3, 3, 3] with width 16 is ResNet-20
    layers: list[int] | None = None,
    block: Literal["auto", "basic", "bottleneck"] = "auto",  # auto (from depth) | basic | bottleneck
    width: int = 64,  # planes of the first stage, doubled at every stage
    # auto | cifar (3x3 conv, no pooling) | imagenet (7x7/2 conv, 3x3/2 max-pool)
    stem: Literal["auto", "cifar", "imagenet"] = "auto",
    attention: Literal["none", "se", "ge", "cbam"] = "none",  # none | se | ge | cbam
    reduction: int = 16,  # the attention MLP's channel reduction ratio (se, cbam, ge with ge_mlp)
    ge_extent: int = 0,  # gather-excite extent: 0 = global, else 2, 4, 8, ...
    ge_parametric: bool = False,  # false: average-pool gather (GE-θ-) | true: depthwise-conv gather (GE-θ)
    ge_mlp: bool = False,  # true: an SE-style MLP on the gathered context (GE-θ+)
    cbam_kernel: int = 7,  # CBAM's spatial-attention conv size
    zero_init_residual: bool = False,  # start each block as the identity (zero the last BatchNorm's scale)
    # batch | none: no BatchNorm, convs with biases and PyTorch's default init (seed 001's ResNet)
    norm: Literal["batch", "none"] = "batch",
    pretrained: bool = False,  # torchvision's ImageNet weights from torch's hub cache (never downloaded)
    freeze: Literal["none", "backbone"] = "none",  # backbone: train only the last layer (fc)
) -> nn.Module:
    """ResNet-18/34/50/101/152 (basic or bottleneck blocks), with SE, GE or CBAM attention.

    depth picks torchvision's layout; `layers` (blocks per stage, e.g. [3, 3, 3]) and `block`
    override it, so the CIFAR ResNet-20 of He et al. is layers=[3,3,3] block=basic width=16.
    width is the first stage's planes (doubled each stage). stem=imagenet: 7x7/2 conv and a
    3x3/2 max-pool; stem=cifar: one 3x3 conv at full resolution. attention=se|ge|cbam puts
    that block in every residual branch (reduction: its MLP's ratio; ge_extent: 0 = global,
    else 2, 4, 8...; ge_parametric: learned depthwise gather; ge_mlp: SE-style excite).
    norm=none drops every BatchNorm, as seed 001's bottleneck ResNet draws it (its convs get
    biases and PyTorch's default init). pretrained=true loads torchvision's ImageNet weights
    from torch's hub cache (the last layer stays new for another number of classes);
    freeze=backbone then trains only that last layer.
    """
    channels, height, width_px = image_shape(input_shape, "resnet")
    if pretrained and (layers is not None or block != "auto"):
        raise DlbenchError(
            "model.pretrained=true: torchvision's weights are for its depths (18, 34, 50, 101, 152); "
            "leave model.layers and model.block unset"
        )
    if layers is None:
        if depth not in DEPTHS:
            raise DlbenchError(
                f"model.depth={depth}: choose one of {', '.join(map(str, DEPTHS))}, "
                "or give the blocks per stage with model.layers=[...]"
            )
        default_block, layers = DEPTHS[depth]
    else:
        default_block = "basic" if depth < 50 else "bottleneck"
    kind = default_block if block == "auto" else block
    if not layers or min(layers) < 1:
        raise DlbenchError(f"model.layers={layers}: give at least one stage of at least one block")
    make_attention = attn.factory(attention, reduction, ge_extent, ge_parametric, ge_mlp, cbam_kernel)
    size = min(height, width_px)
    if choose_stem(stem, input_shape) == "imagenet":
        stem_layers = nn.Sequential(
            *conv_bn(channels, width, 7, 2, norm), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, padding=1)
        )
        size = math.ceil(size / 4)
    else:
        stem_layers = nn.Sequential(*conv_bn(channels, width, 3, norm=norm), nn.ReLU(inplace=True))
    stages, out_ch = make_stages(kind, list(layers), width, width, size, make_attention, norm)
    model = nn.Sequential(
        OrderedDict(
            stem=stem_layers,
            stages=stages,
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(out_ch, num_outputs),
        )
    )
    if norm == "batch":  # without BatchNorm, He init lets every residual branch add its full scale:
        init_cnn(model)  # ResNet-50's outputs come out ~300x those of PyTorch's default init
    if zero_init_residual:  # each block starts as the identity (Goyal et al., 2017)
        for m in model.modules():
            if isinstance(m, Block):
                nn.init.zeros_(m.residual[-1].weight)
    if pretrained:
        layout = "model.stem=imagenet, width=64, norm=batch, attention=none, no model.layers"
        load_torchvision_weights(model, f"resnet{depth}", layout)
    freeze_backbone(model, freeze)
    return check_fits(model, input_shape, "resnet")
