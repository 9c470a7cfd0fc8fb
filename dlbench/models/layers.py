"""Building blocks chosen by name from a config: activations, norms, weight inits."""

from __future__ import annotations

import math

import torch
from torch import nn

from dlbench.errors import DlbenchError, unknown_name

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


NORMS_2D = {
    "none": None,
    "batch": nn.BatchNorm2d,
    "layer": lambda c: nn.GroupNorm(1, c),  # LayerNorm over (C, H, W)
    "instance": lambda c: nn.GroupNorm(c, c),  # each channel on its own (InstanceNorm with affine)
    "group": lambda c: nn.GroupNorm(8 if c % 8 == 0 else 1, c),
}


def norm_2d(name: str, channels: int) -> nn.Module:
    """A normalisation layer for conv feature maps by name (seed 003's norms lesson)."""
    if name not in NORMS_2D:
        raise unknown_name("norm", name, NORMS_2D)
    return nn.Identity() if NORMS_2D[name] is None else NORMS_2D[name](channels)


def init_weights(module: nn.Module, name: str) -> None:
    """Apply a named init to the weights of every Linear/Conv layer; biases keep PyTorch's own
    init, as the notes' `nn.init.xavier_uniform_(self.fc1.weight)` leaves them (seed 002)."""
    if name not in INITS:
        raise unknown_name("init", name, INITS)
    if INITS[name] is None:
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            INITS[name](m.weight)


def flat_size(shape: list[int]) -> int:
    return math.prod(shape)


def image_shape(input_shape: list[int], model: str) -> tuple[int, int, int]:
    """(channels, height, width) of an image input; a clear error for any other data."""
    if len(input_shape) != 3:
        raise DlbenchError(
            f"model={model} needs images (channels, height, width); this dataset's inputs have shape "
            f"{list(input_shape)}. Choose an image dataset (mnist, cifar10, image_folder, ...)."
        )
    return input_shape[0], input_shape[1], input_shape[2]


def choose_stem(stem: str, input_shape: list[int]) -> str:
    """The input scale of a CNN: 'imagenet' (a strided first layer for ~224px images) or
    'cifar' (a small stride-1 first layer for ~32px images). 'auto' picks imagenet from 128px."""
    if stem not in STEMS:
        raise unknown_name("stem", stem, STEMS)
    if stem == "auto":
        return "imagenet" if min(input_shape[1:]) >= 128 else "cifar"
    return stem


STEMS = ("auto", "cifar", "imagenet")


def init_cnn(model: nn.Module) -> None:
    """He (fan-out) init for convolutions, unit BatchNorm, zero biases: torchvision's CNN init."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_fits(
    model: nn.Module,
    input_shape: list[int],
    name: str,
    hint: str = "It needs larger images: 'dataset.image_size=[32,32]' resizes an image data set's "
    "(dlbench list datasets NAME shows whether it has the key).",
) -> nn.Module:
    """Run one zero image through the model, so a too-small input fails here, with a clear
    message (and `hint`), rather than deep inside the first training step."""
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    except RuntimeError as err:
        raise DlbenchError(
            f"model={name} cannot take inputs of shape {list(input_shape)} ({err}). {hint}"
        ) from err
    return model.train(training)
