"""Fully connected models: a linear layer and a multi-layer perceptron."""

from __future__ import annotations

from torch import nn

from dlbench.models import layers
from dlbench.registry import MODELS


@MODELS.register("linear")
def linear(in_shape: list[int], out_features: int, bias: bool = True, init: str = "default") -> nn.Module:
    """One linear layer on the flattened input: linear and logistic regression."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(layers.flat_size(in_shape), out_features, bias=bias))
    layers.init_weights(model, init)
    return model


@MODELS.register("mlp")
def mlp(
    in_shape: list[int],
    out_features: int,
    hidden: list[int] = (128,),
    activation: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    init: str = "default",
) -> nn.Module:
    """Multi-layer perceptron: [Linear, norm, activation, dropout] per hidden size, then Linear."""
    modules: list[nn.Module] = [nn.Flatten()]
    width = layers.flat_size(in_shape)
    for size in hidden:
        modules.append(nn.Linear(width, size))
        if (n := layers.norm_1d(norm, size)) is not None:
            modules.append(n)
        modules.append(layers.activation(activation))
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        width = size
    modules.append(nn.Linear(width, out_features))
    model = nn.Sequential(*modules)
    layers.init_weights(model, init)
    return model
