"""torch's own optimizers, schedulers and losses that dlbench can drive (allow-lists), registered
under snake_case names when a registry first needs them (`Registry(from_torch=...)`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlbench.registry import Registry


def snake_case(name: str) -> str:
    """CrossEntropyLoss -> cross_entropy_loss, StepLR -> step_lr, BCEWithLogits -> bce_with_logits."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _register_torch(
    registry: Registry, module: Any, names: tuple[str, ...], naming: Callable[[str], str]
) -> None:
    for attr in names:
        if (obj := getattr(module, attr, None)) is not None:  # (one a newer torch added: not in an older)
            registry.add(naming(attr), obj)


# Allow-lists: the torch components that dlbench's loop can drive, from a config. A class torch
# adds is offered once it is added here, not before.
#
# Optimizers whose step takes the dense gradients of one backward pass. Not LBFGS (its step
# re-evaluates the model through a closure, which a training step does not give) nor SparseAdam
# (it takes only sparse gradients, which no model of dlbench's makes).
OPTIMIZERS = (
    "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax",
    "Muon", "NAdam", "RAdam", "RMSprop", "Rprop", "SGD",
)  # fmt: skip
# Schedulers built from numbers. Not LambdaLR, MultiplicativeLR (a Python function),
# ChainedScheduler, SequentialLR (other schedulers): none can come from a config file.
SCHEDULERS = (
    "ConstantLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR", "ExponentialLR",
    "LinearLR", "MultiStepLR", "OneCycleLR", "PolynomialLR", "ReduceLROnPlateau", "StepLR",
)  # fmt: skip
# The losses a task of dlbench's computes (each task names those it takes: `Task.losses` in
# dlbench/tasks/). Not the others: each takes inputs no task gives it (a triplet, sequence
# lengths, a variance, pairs of inputs, multi-label targets).
LOSSES = (
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "L1Loss", "MSELoss",
    "MultiMarginLoss", "NLLLoss", "PoissonNLLLoss", "SmoothL1Loss",
)  # fmt: skip


def register_optimizers(registry: Registry) -> None:
    import torch

    _register_torch(registry, torch.optim, OPTIMIZERS, str.lower)


def register_schedulers(registry: Registry) -> None:
    import torch

    _register_torch(registry, torch.optim.lr_scheduler, SCHEDULERS, snake_case)


def register_losses(registry: Registry) -> None:
    import torch

    _register_torch(registry, torch.nn, LOSSES, lambda n: snake_case(n.removesuffix("Loss")))
