"""Generators and discriminators (seed 000, part III). Each registered model is a `GAN`
container holding its networks by name; the GAN tasks train them with one optimizer each.

- gan_mlp: MLP generator and discriminator (LeakyReLU 0.2, tanh output).
- dcgan: G = FC -> 5x5 stride-2 transposed convs + BN + ReLU -> tanh; D = 5x5 stride-2 convs +
  BN + LeakyReLU -> FC. The number of layers follows the image size.
- cgan: the conditional GAN of the seed: label one-hot joined to the noise and to the image,
  dropout 0.5, a maxout discriminator (k=5, last k=4).

pix2pix and cyclegan, image to image, are in image_to_image.py.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models.layers import image_shape
from dlbench.registry import MODELS


class GAN(nn.Module):
    """The networks of a GAN by name; `latent_dim` and `num_classes` say what G takes."""

    def __init__(self, latent_dim: int = 0, num_classes: int = 0, **networks: nn.Module):
        super().__init__()
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.nets = nn.ModuleDict(networks)

    def __getattr__(self, name: str):
        """gan.generator is gan.nets["generator"]."""
        nets = self.__dict__.get("_modules", {}).get("nets")
        if nets is not None and name in nets:
            return nets[name]
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The (first) generator: noise (or an image, for image-to-image models) -> images."""
        first = next(iter(self.nets.values()))
        if not self.num_classes:
            return first(x)
        if labels is None:  # `dlbench show`: class 0
            labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return first(x, labels)


def init_normal(model: nn.Module) -> nn.Module:
    """DCGAN / pix2pix init: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


# ---- gan_mlp ---------------------------------------------------------------------------------
class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int, shape: list[int], hidden: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, math.prod(shape)), nn.Tanh())
        self.shape = list(shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.shape)


def mlp_discriminator(shape: list[int], hidden: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 1))


@MODELS.register("gan_mlp")
def gan_mlp(
    input_shape: list[int],
    latent_dim: int = 100,
    g_hidden: list[int] = (256, 512, 1024),
    d_hidden: list[int] = (512, 256),
    dropout: float = 0.3,  # in the discriminator
) -> GAN:
    """MLP generator (noise -> hidden LeakyReLU layers -> tanh image) and MLP discriminator."""
    return GAN(
        latent_dim,
        generator=MLPGenerator(latent_dim, input_shape, list(g_hidden)),
        discriminator=mlp_discriminator(input_shape, list(d_hidden), dropout),
    )


# ---- dcgan -----------------------------------------------------------------------------------
def upsamplings(size: int) -> tuple[int, int]:
    """(start size, number of 2x steps) with start = size / 2**steps and 4 <= start < 8."""
    start, steps = size, 0
    while start % 2 == 0 and start // 2 >= 4:
        start //= 2
        steps += 1
    if steps == 0 or start >= 8:
        raise DlbenchError(
            f"model=dcgan: image size {size} must be 4..7 times a power of two (28, 32, 64...)"
        )
    return start, steps


class DCGenerator(nn.Module):
    def __init__(self, latent_dim: int, shape: list[int], width: int):
        super().__init__()
        channels, height, _ = shape
        self.start, steps = upsamplings(height)
        self.top = width * 2 ** (steps - 1)
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, self.top * self.start * self.start, bias=False),
            nn.BatchNorm1d(self.top * self.start * self.start),
            nn.ReLU(True),
        )
        layers: list[nn.Module] = []
        c = self.top
        for i in range(steps):
            last = i == steps - 1
            out = channels if last else c // 2
            layers.append(nn.ConvTranspose2d(c, out, 5, 2, padding=2, output_padding=1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(True)]
            c = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.top, self.start, self.start))


def dc_discriminator(shape: list[int], width: int, activation: str = "leaky_relu") -> nn.Sequential:
    channels, height, width_px = shape
    start, steps = upsamplings(height)
    layers: list[nn.Module] = []
    c = channels
    for i in range(steps):
        out = width * 2**i
        layers.append(nn.Conv2d(c, out, 5, 2, padding=2, bias=i == 0))
        if i > 0:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.LeakyReLU(0.2, True) if activation == "leaky_relu" else nn.ReLU(True))
        c = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * start * (width_px // 2**steps), 1))


@MODELS.register("dcgan")
def dcgan(
    input_shape: list[int],
    latent_dim: int = 100,
    width: int = 64,  # channels of D's first conv and G's last hidden layer (doubled per layer)
    # D's activation: leaky_relu (0.2, the DCGAN paper) | relu (what seed 000's figure labels)
    d_activation: Literal["leaky_relu", "relu"] = "leaky_relu",
) -> GAN:
    """DCGAN: G = FC -> 5x5 stride-2 transposed convs (BN, ReLU) -> tanh; D = 5x5 stride-2
    convs (BN, LeakyReLU 0.2, or ReLU with d_activation=relu as seed 000's figure labels it)
    -> FC. As many 2x steps as the image size allows (28: 2, 32: 3)."""
    channels, height, width_px = image_shape(input_shape, "dcgan")
    if height != width_px:
        raise DlbenchError(
            f"model=dcgan needs square images; got {height}x{width_px} (set dataset.image_size)"
        )
    return GAN(
        latent_dim,
        generator=init_normal(DCGenerator(latent_dim, list(input_shape), width)),
        discriminator=init_normal(dc_discriminator(list(input_shape), width, d_activation)),
    )


# ---- cgan (seed 000) -------------------------------------------------------------------------
class Maxout(nn.Module):
    """A linear layer with k pieces per unit, keeping the largest (Goodfellow et al., 2013)."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).amax(dim=-1)


class CGenerator(nn.Module):
    def __init__(self, latent_dim: int, num_classes: int, shape: list[int], dropout: float):
        super().__init__()
        self.num_classes, self.shape = num_classes, list(shape)
        self.noise = nn.Sequential(nn.Linear(latent_dim, 200), nn.ReLU(), nn.Dropout(dropout))
        self.label = nn.Sequential(nn.Linear(num_classes, 1000), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Sequential(nn.Linear(1200, math.prod(shape)), nn.Tanh())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = F.one_hot(labels, self.num_classes).float()
        return self.out(torch.cat([self.noise(z), self.label(y)], dim=1)).view(-1, *self.shape)


class CDiscriminator(nn.Module):
    def __init__(self, num_classes: int, shape: list[int], dropout: float):
        super().__init__()
        self.num_classes = num_classes
        self.image = nn.Sequential(nn.Flatten(), Maxout(math.prod(shape), 240, 5), nn.Dropout(dropout))
        self.label = nn.Sequential(Maxout(num_classes, 50, 5), nn.Dropout(dropout))
        self.joint = nn.Sequential(Maxout(290, 240, 4), nn.Dropout(dropout), nn.Linear(240, 1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = F.one_hot(labels, self.num_classes).float()
        return self.joint(torch.cat([self.image(x), self.label(y)], dim=1))


@MODELS.register("cgan")
def cgan(input_shape: list[int], num_classes: int, latent_dim: int = 100, dropout: float = 0.5) -> GAN:
    """Conditional GAN (seed 000): G joins noise (FC 200) and one-hot label (FC 1000) into an
    image; D joins a maxout of the image (240 units, k=5) and of the label (50, k=5) into a
    maxout (240, k=4) and one logit. Dropout 0.5; tanh output for images in [-1, 1]."""
    return GAN(
        latent_dim,
        num_classes,
        generator=CGenerator(latent_dim, num_classes, list(input_shape), dropout),
        discriminator=CDiscriminator(num_classes, list(input_shape), dropout),
    )
