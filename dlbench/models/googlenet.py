"""GoogLeNet (seed 001): nine inception modules with the channel table of the lecture notes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from dlbench.models.layers import check_fits, choose_stem, image_shape, init_cnn
from dlbench.registry import MODELS

# The seed's table: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per module; "M" is a
# 3x3 stride-2 max-pool. A module's input is the sum of the previous module's four outputs.
TABLE = [
    (64, 96, 128, 16, 32, 32),  # 3a -> 256
    (128, 128, 192, 32, 96, 64),  # 3b -> 480
    "M",
    (192, 96, 208, 16, 48, 64),  # 4a -> 512
    (160, 112, 224, 24, 64, 64),  # 4b -> 512
    (128, 128, 256, 24, 64, 64),  # 4c -> 512
    (112, 144, 288, 32, 64, 64),  # 4d -> 528
    (256, 160, 320, 32, 128, 128),  # 4e -> 832
    "M",
    (256, 160, 320, 32, 128, 128),  # 5a -> 832
    (384, 192, 384, 48, 128, 128),  # 5b -> 1024
]


def conv(in_ch: int, out_ch: int, kernel: int, batch_norm: bool, stride: int = 1) -> nn.Sequential:
    """Conv -> (BatchNorm) -> ReLU, 'same' padding."""
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->5x5; 3x3 max-pool->1x1), concatenated."""

    def __init__(self, in_ch: int, c1: int, r3: int, c3: int, r5: int, c5: int, pool: int, bn: bool):
        super().__init__()
        self.branch1 = conv(in_ch, c1, 1, bn)
        self.branch3 = nn.Sequential(conv(in_ch, r3, 1, bn), conv(r3, c3, 3, bn))
        self.branch5 = nn.Sequential(conv(in_ch, r5, 1, bn), conv(r5, c5, 5, bn))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_ch, pool, 1, bn))
        self.out_channels = c1 + c3 + c5 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


@MODELS.register("googlenet")
def googlenet(
    input_shape: list[int],
    num_outputs: int,
    width: float = 1.0,  # multiplies every channel count of the table
    batch_norm: bool = False,  # true: BatchNorm after every conv (trains much more easily)
    # cifar: one 3x3 conv to 192 | imagenet: 7x7/2, max-pool, 3x3, max-pool (with ReLUs) |
    # seed: seed 001's layer_1, the same convs and pools with no activation between them
    stem: Literal["auto", "cifar", "imagenet", "seed"] = "auto",
    dropout: float = 0.4,
) -> nn.Module:
    """GoogLeNet: a conv stem, nine inception modules (seed 001's table), global pool, dropout, FC.

    stem=imagenet: 7x7/2 conv, 3x3/2 max-pool, 3x3 conv to 192, 3x3/2 max-pool, with the ReLUs
    the paper has; stem=seed is the same as seed 001 draws it, with no activation between the
    layers. stem=cifar is one 3x3 conv to 192 at full resolution. width scales every channel
    count; batch_norm adds BatchNorm after each conv.
    """
    channels, _, _ = image_shape(input_shape, "googlenet")

    def w(c: int) -> int:
        return max(1, round(c * width))

    if stem == "seed":  # seed 001: nn.Conv2d(3, 64, 7, 2, 3), MaxPool, nn.Conv2d(64, 192, 3, 1, 1), MaxPool
        stem_layers = nn.Sequential(
            nn.Conv2d(channels, w(64), 7, stride=2, padding=3),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(w(64), w(192), 3, padding=1),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    elif choose_stem(stem, input_shape) == "imagenet":
        stem_layers = nn.Sequential(
            conv(channels, w(64), 7, batch_norm, stride=2),
            nn.MaxPool2d(3, stride=2, padding=1),
            conv(w(64), w(192), 3, batch_norm),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
    else:
        stem_layers = conv(channels, w(192), 3, batch_norm)
    blocks: list[nn.Module] = []
    in_ch = w(192)
    for row in TABLE:
        if row == "M":
            blocks.append(nn.MaxPool2d(3, stride=2, padding=1))
            continue
        module = Inception(in_ch, *(w(c) for c in row), bn=batch_norm)
        blocks.append(module)
        in_ch = module.out_channels
    model = nn.Sequential(
        OrderedDict(
            stem=stem_layers,
            inception=nn.Sequential(*blocks),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            dropout=nn.Dropout(dropout),
            fc=nn.Linear(in_ch, num_outputs),
        )
    )
    init_cnn(model)
    return check_fits(model, input_shape, "googlenet")
