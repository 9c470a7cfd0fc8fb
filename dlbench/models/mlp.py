"""Fully connected models: a linear layer and a multi-layer perceptron."""

from __future__ import annotations

from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models import layers
from dlbench.registry import MODELS


@MODELS.register("linear")
def linear(input_shape: list[int], num_outputs: int, bias: bool = True, init: str = "default") -> nn.Module:
    """One linear layer on the flattened input: linear and logistic regression."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(layers.flat_size(input_shape), num_outputs, bias=bias))
    layers.init_weights(model, init)
    return model


@MODELS.register("mlp")
def mlp(
    input_shape: list[int],
    num_outputs: int,
    hidden: list[int] = (128,),
    activation: str = "relu",  # relu | tanh | sigmoid | leaky_relu | elu | gelu | silu
    norm: str = "none",  # none | batch | layer
    dropout: float = 0.0,
    # default | xavier_uniform | xavier_normal | kaiming_uniform | kaiming_normal | normal
    init: str = "default",
) -> nn.Module:
    """Multi-layer perceptron: [Linear, norm, activation, dropout] per hidden size, then Linear."""
    if any(size < 1 for size in hidden):  # (0: a layer of nothing, torch's warning; -3: its error)
        raise DlbenchError(f"model.hidden={list(hidden)}: each layer's size is at least 1")
    modules: list[nn.Module] = [nn.Flatten()]
    width = layers.flat_size(input_shape)
    for size in hidden:
        modules.append(nn.Linear(width, size))
        if (n := layers.norm_1d(norm, size)) is not None:
            modules.append(n)
        modules.append(layers.activation(activation))
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        width = size
    modules.append(nn.Linear(width, num_outputs))
    model = nn.Sequential(*modules)
    layers.init_weights(model, init)
    return model
