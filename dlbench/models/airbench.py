"""The network of Keller Jordan's airbench94 (94% on CIFAR-10 in a few GPU-seconds).

A 2x2 whitening convolution (its weights fixed from the training images' patch statistics, its
bias learned), three conv groups (conv, max-pool, BatchNorm, GELU, conv, BatchNorm, GELU; the
convs start as identities), a 3x3 max-pool, and a linear layer scaled by 1/9. BatchNorms have
a fixed scale of 1, a learned shift, eps 1e-12 and a fast running average (PyTorch momentum
0.4). The rest of the recipe is config: see configs/experiment/airbench_cifar10.yaml.
"""

from __future__ import annotations

import torch
from torch import nn

from dlbench.models.layers import check_fits, image_shape
from dlbench.registry import MODELS


class Conv(nn.Conv2d):
    """A bias-free 3x3 'same' convolution whose first in_channels filters start as the identity."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__(channels_in, channels_out, kernel_size=3, padding="same", bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(channels_in, channels_out)])


def batch_norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    norm.weight.requires_grad_(False)  # scale fixed at 1; only the shift (bias) is learned
    return norm


def conv_group(channels_in: int, channels_out: int, momentum: float) -> nn.Sequential:
    return nn.Sequential(
        Conv(channels_in, channels_out),
        nn.MaxPool2d(2),
        batch_norm(channels_out, momentum),
        nn.GELU(),
        Conv(channels_out, channels_out),
        batch_norm(channels_out, momentum),
        nn.GELU(),
    )


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


class AirbenchNet(nn.Sequential):
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Whitening: the first conv's filters become the eigenvectors of the covariance of the
        images' 2x2 patches, scaled by 1/sqrt(eigenvalue + eps), and their negatives."""
        whiten = self.whiten
        c, (h, w) = images.shape[1], whiten.kernel_size
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending, as airbench orders them
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, c, h, w)
        with torch.no_grad():
            whiten.weight.copy_(torch.cat([filters, -filters]).to(whiten.weight))


@MODELS.register("airbench")
def airbench(
    input_shape: list[int],
    num_outputs: int,
    widths: list[int] = (64, 256, 256),
    batchnorm_momentum: float = 0.4,  # PyTorch's momentum (airbench writes 0.6 = 1 - 0.4)
    scale: float = 1 / 9,  # 1/9
) -> nn.Module:
    """airbench94's net: 2x2 whitening conv, three conv groups, max-pool, linear x 1/9."""
    channels = image_shape(input_shape, "airbench")[0]
    whiten_width = 2 * channels * 2 * 2
    net = AirbenchNet()
    net.add_module("whiten", nn.Conv2d(channels, whiten_width, kernel_size=2, bias=True))
    net.add_module("act", nn.GELU())
    width = whiten_width
    for i, out in enumerate(widths, start=1):
        net.add_module(f"block{i}", conv_group(width, out, batchnorm_momentum))
        width = out
    net.add_module("pool", nn.MaxPool2d(3))
    net.add_module("flatten", nn.Flatten())
    net.add_module("fc", nn.Linear(width, num_outputs, bias=False))
    net.add_module("scale", Scale(scale))
    nn.init.zeros_(net.whiten.bias)
    net.whiten.weight.requires_grad_(False)  # fixed by init_from_data
    # (2x2 whitening, three 2x2 pools and a 3x3 one: 25 pixels make one)
    return check_fits(
        net, input_shape, "airbench", "It takes images of 25x25 pixels or more (CIFAR's 32x32)."
    )
