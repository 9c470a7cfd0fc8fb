"""Image-to-image networks (seed 000, part III), each registered model a `GAN` container
(gan.py) holding its networks by name.

- pix2pix: U-Net generator and 70x70 PatchGAN discriminator.
- cyclegan: two ResNet generators and two PatchGAN discriminators with instance norm.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models.gan import GAN, init_normal
from dlbench.models.layers import image_shape
from dlbench.registry import MODELS


# ---- pix2pix and CycleGAN --------------------------------------------------------------------
def norm_layer(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels)


class UNet(nn.Module):
    """pix2pix's U-Net: 4x4 stride-2 convs down to 1x1 (BN, LeakyReLU 0.2), transposed convs
    back up (BN, ReLU; dropout 0.5 where the output is 2, 4 or 8 px), each decoder step
    concatenated with the encoder step of the same size; tanh output."""

    def __init__(self, channels: int, out_channels: int, size: int, width: int = 64, dropout: float = 0.5):
        super().__init__()
        downs = int(math.log2(size))
        if 2**downs != size or downs < 2:
            raise DlbenchError(f"model=pix2pix: the U-Net needs a power-of-two image size; got {size}")
        widths = [min(width * 2**i, width * 8) for i in range(downs)]
        self.down = nn.ModuleList()
        c = channels
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(c, w, 4, 2, 1, bias=False))
            if 0 < i < downs - 1:
                layers.append(nn.BatchNorm2d(w))
            self.down.append(nn.Sequential(*layers))
            c = w
        self.up = nn.ModuleList()
        for i in reversed(range(downs)):
            out = out_channels if i == 0 else widths[i - 1]
            inputs = widths[i] if i == downs - 1 else widths[i] * 2
            layers = [nn.ReLU(True), nn.ConvTranspose2d(inputs, out, 4, 2, 1, bias=i == 0)]
            if i == 0:
                layers.append(nn.Tanh())
            else:
                layers.append(nn.BatchNorm2d(out))
                if size >> i in (2, 4, 8):  # this step's output is 2, 4 or 8 px
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for layer in self.up[1:]:
            x = layer(torch.cat([x, skips.pop()], dim=1))
        return x


def patch_discriminator(channels: int, norm: str, width: int = 64, layers: int = 3) -> nn.Sequential:
    """PatchGAN: C64-C128-C256-C512 (4x4 convs, LeakyReLU 0.2; the last stride 1) and a 4x4
    conv to one logit per patch; with 3 layers each logit sees 70x70 pixels."""
    out: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    c = width
    for i in range(1, layers + 1):
        w = width * min(2**i, 8)
        out += [
            nn.Conv2d(c, w, 4, 2 if i < layers else 1, 1, bias=False),
            norm_layer(norm, w),
            nn.LeakyReLU(0.2, True),
        ]
        c = w
    return nn.Sequential(*out, nn.Conv2d(c, 1, 4, 1, 1))


@MODELS.register("pix2pix")
def pix2pix(input_shape: list[int], out_channels: int = 3, width: int = 64, dropout: float = 0.5) -> GAN:
    """pix2pix: U-Net generator A -> B and a 70x70 PatchGAN that judges (A, B) pairs."""
    channels, height, _ = image_shape(input_shape, "pix2pix")
    return GAN(
        generator=init_normal(UNet(channels, out_channels, height, width, dropout)),
        discriminator=init_normal(patch_discriminator(channels + out_channels, "batch", width)),
    )


class ResidualBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), nn.InstanceNorm2d(c),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def resnet_generator(channels: int, width: int, blocks: int) -> nn.Sequential:
    """c7s1-64, d128, d256, R256 x blocks, u128, u64, c7s1-C (instance norm, tanh)."""
    w = width
    return nn.Sequential(
        nn.ReflectionPad2d(3), nn.Conv2d(channels, w, 7), nn.InstanceNorm2d(w), nn.ReLU(True),
        nn.Conv2d(w, 2 * w, 3, 2, 1), nn.InstanceNorm2d(2 * w), nn.ReLU(True),
        nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.InstanceNorm2d(4 * w), nn.ReLU(True),
        *[ResidualBlock(4 * w) for _ in range(blocks)],
        nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(2 * w), nn.ReLU(True),
        nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), nn.InstanceNorm2d(w), nn.ReLU(True),
        nn.ReflectionPad2d(3), nn.Conv2d(w, channels, 7), nn.Tanh(),
    )  # fmt: skip


@MODELS.register("cyclegan")
def cyclegan(
    input_shape: list[int],
    width: int = 64,
    blocks: int | None = None,  # residual blocks: null = 9 from 256 px, else 6
) -> GAN:
    """CycleGAN: ResNet generators A -> B and B -> A (9 residual blocks from 256 px, else 6),
    PatchGAN discriminators with instance norm, no sigmoid (LSGAN)."""
    channels, height, _ = image_shape(input_shape, "cyclegan")
    if height % 4:
        raise DlbenchError(f"model=cyclegan: the image size must be a multiple of 4; got {height}")
    n = blocks if blocks is not None else (9 if height >= 256 else 6)
    return GAN(
        generator_ab=init_normal(resnet_generator(channels, width, n)),
        generator_ba=init_normal(resnet_generator(channels, width, n)),
        discriminator_a=init_normal(patch_discriminator(channels, "instance", width)),
        discriminator_b=init_normal(patch_discriminator(channels, "instance", width)),
    )
