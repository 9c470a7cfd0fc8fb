"""Building blocks chosen by name from a config: activations, norms, weight inits."""

from __future__ import annotations

import math

from torch import nn

from dlbench.errors import unknown_name

ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),  # the slope the lecture notes use
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

NORMS_1D = {
    "none": None,
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
}

INITS = {
    "default": None,
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "normal": lambda w: nn.init.normal_(w, std=0.02),
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]()


def norm_1d(name: str | None, features: int) -> nn.Module | None:
    name = name or "none"
    if name not in NORMS_1D:
        raise unknown_name("norm", name, NORMS_1D)
    return None if NORMS_1D[name] is None else NORMS_1D[name](features)


def init_weights(module: nn.Module, name: str) -> None:
    """Apply a named init to the weights of every Linear/Conv layer; biases start at zero."""
    if name not in INITS:
        raise unknown_name("init", name, INITS)
    if INITS[name] is None:
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            INITS[name](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def flat_size(shape: list[int]) -> int:
    return math.prod(shape)
