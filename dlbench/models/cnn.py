"""The lecture notes' small CNNs, sized from the dataset (channels, image size, classes)."""

from __future__ import annotations

import torch
from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models import layers
from dlbench.registry import MODELS


def _flat_features(features: nn.Module, input_shape: list[int], model: str) -> int:
    """The size of `features`' output for one input of input_shape (a dry run, no gradients)."""
    try:
        with torch.no_grad():
            return features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    except RuntimeError as err:
        raise DlbenchError(f"model={model} cannot take inputs of shape {input_shape}: {err}") from err


@MODELS.register("cnn_mnist")
def cnn_mnist(
    input_shape: list[int],
    num_outputs: int,
    dropout: float = 0.2,
    hidden: int = 512,
    norm: str = "none",  # none | batch | layer | instance | group, after each conv
) -> nn.Module:
    """Seed 002's MyCNN: conv32-pool-conv64-pool-drop-fc512-drop-fc (3x3 convs, padding 1).

    norm=batch|layer|instance|group puts that normalisation after each conv (seed 003's lesson).

    The seed ends with log_softmax and then uses cross_entropy; log_softmax is idempotent, so
    returning logits to cross-entropy trains the same model.
    """
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], 32, kernel_size=3, padding=1),
        layers.norm_2d(norm, 32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        layers.norm_2d(norm, 64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_features(features, input_shape, "cnn_mnist"), hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs),
    )


@MODELS.register("cnn_seed001")
def cnn_seed001(input_shape: list[int], num_outputs: int, hidden: int = 100) -> nn.Module:
    """Seed 001's MyCNN: conv16-ReLU-conv32-pool-conv64-ReLU-pool (5x5 kernels), fc 100-ReLU-fc.

    As the slide draws it, the second conv has no ReLU before its pool. The slide's first FC
    is `Linear(64*3*3, 10)` followed by `Linear(100, 10)`, a typo: built as 64*3*3 -> 100 -> 10,
    the 3x3 being what 28x28 inputs leave (28 -> 24 -> 20 -> 10 -> 6 -> 3)."""
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], 16, 5),
        nn.ReLU(),
        nn.Conv2d(16, 32, 5),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 5),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_features(features, input_shape, "cnn_seed001"), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_outputs),
    )


@MODELS.register("lenet5")
def lenet5(input_shape: list[int], num_outputs: int, activation: str = "tanh") -> nn.Module:
    """LeNet-5 (seed 001): conv6-avgpool-conv16-avgpool-conv120, fc84, tanh; 32x32 inputs."""
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}.get(activation)
    if act is None:
        raise DlbenchError(f"model.activation={activation}: choose tanh or relu")
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], 6, kernel_size=5),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(16, 120, kernel_size=5),
        act(),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_features(features, input_shape, "lenet5"), 84),
        act(),
        nn.Linear(84, num_outputs),
    )


@MODELS.register("cifar10_net")
def cifar10_net(input_shape: list[int], num_outputs: int, channels: list[int] = (7, 16)) -> nn.Module:
    """Seed 003's Net: conv(3,7,5)-pool-conv(7,16,5)-pool-fc400-120-84-classes, ReLU."""
    features = nn.Sequential(
        nn.Conv2d(input_shape[0], channels[0], 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels[0], channels[1], 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    return nn.Sequential(
        features,
        nn.Linear(_flat_features(features, input_shape, "cifar10_net"), 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_outputs),
    )


class Scalar(nn.Module):
    """One trainable number x, the 'model' of function minimisation (seed 002's gradient descent)."""

    def __init__(self, init: float):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(float(init)))

    def forward(self, _: torch.Tensor | None = None) -> torch.Tensor:
        return self.x


@MODELS.register("scalar")
def scalar(init: float = 12.0) -> nn.Module:
    """A single trainable scalar starting at `init` (for task=minimize)."""
    return Scalar(init)
