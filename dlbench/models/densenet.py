"""DenseNet (seed 000): every layer of a dense block sees the concatenation of all before it.

Layers are BN-ReLU-1x1 conv (bn_size x growth) - BN-ReLU-3x3 conv (growth); between blocks a
transition (BN-ReLU-1x1 conv that keeps `compression` of the channels, 2x2 average pool);
then BN-ReLU, global average pool and one FC layer. The ImageNet layouts are torchvision's.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models.layers import check_fits, choose_stem, image_shape, init_cnn
from dlbench.models.pretrained import freeze_backbone, load_torchvision_weights
from dlbench.registry import MODELS

# The ImageNet DenseNets: depth -> layers per dense block.
IMAGENET_BLOCKS = {121: [6, 12, 24, 16], 169: [6, 12, 32, 32], 201: [6, 12, 48, 32], 264: [6, 12, 64, 48]}


def bn_relu_conv(in_ch: int, out_ch: int, kernel: int) -> list[nn.Module]:
    return [
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
    ]


class DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth_rate: int, bn_size: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(
            *bn_relu_conv(in_ch, bn_size * growth_rate, 1),
            *bn_relu_conv(bn_size * growth_rate, growth_rate, 3),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.layers(x)], dim=1)


def blocks_for(depth: int) -> list[int]:
    """121/169/201/264: the ImageNet layouts; any depth = 6n + 4: three blocks of n layers
    (the CIFAR DenseNet-BC of the paper, e.g. depth 100 -> [16, 16, 16])."""
    if depth in IMAGENET_BLOCKS:
        return IMAGENET_BLOCKS[depth]
    if depth >= 10 and (depth - 4) % 6 == 0:
        return [(depth - 4) // 6] * 3
    raise DlbenchError(
        f"model.depth={depth}: use 121, 169, 201 or 264 (ImageNet layouts), a CIFAR depth 6n+4 "
        "(40, 100, 190, ...), or give the layers per block with model.blocks=[...]"
    )


@MODELS.register("densenet")
def densenet(
    input_shape: list[int],
    num_outputs: int,
    # 121 | 169 | 201 | 264 (ImageNet layouts), or 6n+4 for the CIFAR DenseNet-BC (e.g. 100)
    depth: int = 121,
    blocks: list[int] | None = None,  # layers per dense block, overrides depth, e.g. [6, 12, 24, 16]
    growth_rate: int = 32,  # k: channels each layer adds
    compression: float = 0.5,  # fraction of channels a transition keeps (BC: 0.5)
    bn_size: int = 4,  # bottleneck width: 1x1 conv to bn_size * k channels
    init_features: int | None = None,  # channels of the first conv; null: 2 * growth_rate
    dropout: float = 0.0,
    # auto | cifar (one 3x3 conv) | imagenet (7x7/2 conv, BN, ReLU, 3x3/2 max-pool)
    stem: Literal["auto", "cifar", "imagenet"] = "auto",
    pretrained: bool = False,  # torchvision's ImageNet weights from torch's hub cache (never downloaded)
    freeze: Literal["none", "backbone"] = "none",  # backbone: train only the last layer (fc)
) -> nn.Module:
    """DenseNet-121/169/201 and the CIFAR DenseNet-BC (depth 6n+4): growth rate, compression.

    `blocks` (layers per dense block) overrides depth. init_features defaults to twice the
    growth rate. stem=imagenet: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool; stem=cifar: one 3x3 conv.
    pretrained=true loads torchvision's ImageNet weights; freeze=backbone trains only the fc.
    """
    channels, _, _ = image_shape(input_shape, "densenet")
    blocks = list(blocks) if blocks is not None else blocks_for(depth)
    if not 0 < compression <= 1:
        raise DlbenchError(f"model.compression={compression}: must be in (0, 1]")
    features = init_features or 2 * growth_rate
    if choose_stem(stem, input_shape) == "imagenet":
        layers: list[nn.Module] = [
            nn.Conv2d(channels, features, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(features),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
    else:
        layers = [nn.Conv2d(channels, features, 3, padding=1, bias=False)]
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(features, growth_rate, bn_size, dropout))
            features += growth_rate
        if i < len(blocks) - 1:  # a transition between blocks
            out = math.floor(features * compression)
            layers += [*bn_relu_conv(features, out, 1), nn.AvgPool2d(2, stride=2)]
            features = out
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*layers),
            norm=nn.BatchNorm2d(features),
            relu=nn.ReLU(inplace=True),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(features, num_outputs),
        )
    )
    init_cnn(model)
    if pretrained:
        layout = "depth 121, 169 or 201, growth_rate=32, bn_size=4, stem=imagenet, no blocks"
        load_torchvision_weights(model, f"densenet{depth}", layout)
    freeze_backbone(model, freeze)
    return check_fits(model, input_shape, "densenet")
