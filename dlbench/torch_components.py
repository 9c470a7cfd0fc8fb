"""torch's own optimizers, schedulers and losses that dlbench can drive (allow-lists), registered
under snake_case names when a registry first needs them (`Registry(from_torch=...)`)."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Range:
    """Where a setting of torch's has the meaning its documentation gives it."""

    low: float
    high: float = math.inf
    ends: str = "[]"  # which ends are in it: "[)" takes low, not high
    whole: bool = False  # a count (of epochs, steps, evaluations)

    def holds(self, value: float) -> bool:
        if self.whole and value != int(value):
            return False
        above = value >= self.low if self.ends[0] == "[" else value > self.low
        return above and (value <= self.high if self.ends[1] == "]" else value < self.high)

    def __str__(self) -> str:
        if self.whole:
            upto = f" and at most {self.high:g}" if self.high < math.inf else ""
            return f"a whole number of at least {self.low:g}{upto}"
        if self.high == math.inf:
            return f"{'at least' if self.ends[0] == '[' else 'above'} {self.low:g}"
        return f"in {self.ends[0]}{self.low:g}, {self.high:g}{self.ends[1]}"


COUNT = Range(1, whole=True)
RATE = Range(0)  # a learning rate (a bound of one: none is negative)
MOMENTUM = Range(0, 1, "[)")  # 1: the velocity never decays; above: the steps grow without end
# a setting torch divides an lr by: from the smallest normal float (below it, 1/x is inf, and so is the lr)
DIVISOR = sys.float_info.min

# What torch's settings mean, where torch itself does not refuse a value without that meaning:
# StepLR's step_size=-1 or gamma=-1 made the lr grow or turn negative, SGD's momentum=1.5 diverged,
# ReduceLROnPlateau's patience=-1 cut the lr every epoch, each without a word. By class, then
# keyword; a list (milestones, a lr by parameter group) is checked number by number. Settings
# torch checks (Adam's betas, LinearLR's factors, OneCycleLR's pct_start) are left to its
# message, but where a value it takes fails later: ConstantLR's factor 0 (it divides by it at
# total_iters), ReduceLROnPlateau's factor 0 or below (the first cut goes to min_lr).
MEANINGS: dict[str, dict[str, Range]] = {
    "SGD": {"momentum": MOMENTUM, "dampening": Range(0, 1)},
    "RMSprop": {"momentum": MOMENTUM, "alpha": Range(0, 1, "[)")},  # (1: every step divides by eps)
    "Adadelta": {"eps": Range(0, ends="()")},  # (eps 0: nothing moves)
    "ASGD": {"lambd": RATE, "alpha": RATE},
    "Rprop": {"step_sizes": RATE},
    "Muon": {"momentum": MOMENTUM, "eps": Range(0, ends="()"), "ns_steps": Range(1, 99, whole=True)},
    "StepLR": {"step_size": COUNT, "gamma": Range(0, ends="()")},
    "MultiStepLR": {"milestones": COUNT, "gamma": Range(0, ends="()")},
    "ExponentialLR": {"gamma": Range(0, ends="()")},  # (above 1 the lr grows: allowed, as in StepLR)
    "ConstantLR": {"factor": Range(DIVISOR, 1), "total_iters": COUNT},  # (factor 0: it divides by it)
    "LinearLR": {"total_iters": COUNT},
    "PolynomialLR": {"total_iters": COUNT, "power": RATE},
    "CosineAnnealingLR": {"T_max": COUNT, "eta_min": RATE},
    "CosineAnnealingWarmRestarts": {"eta_min": RATE},
    "CyclicLR": {
        "base_lr": RATE,
        "max_lr": RATE,
        "step_size_up": COUNT,
        "step_size_down": Range(0, whole=True),
        "gamma": Range(0, 1, "(]"),  # (read in exp_range mode: above 1, the cycles grow without end)
        "base_momentum": MOMENTUM,
        "max_momentum": MOMENTUM,
    },
    "OneCycleLR": {
        "max_lr": RATE,
        "div_factor": Range(DIVISOR),
        "final_div_factor": Range(DIVISOR),
        "base_momentum": MOMENTUM,
        "max_momentum": MOMENTUM,
    },
    # (a negative smoothing is read as none, without a word; above 1 torch refuses it)
    "CrossEntropyLoss": {"label_smoothing": Range(0, 1)},
    "HuberLoss": {"delta": Range(0, ends="()")},
    "ReduceLROnPlateau": {
        "factor": Range(0, 1, "()"),
        "patience": Range(0, whole=True),
        "threshold": Range(0),
        "cooldown": Range(0, whole=True),
        "min_lr": RATE,
        "eps": Range(0),
    },
}


def check_meaning(fn: Callable[..., Any], values: dict[str, Any], where: str) -> None:
    """Refuse a value of a setting of torch's class `fn` outside the range of its meaning
    (MEANINGS), in one message that says the range. Values still to resolve, and nulls, are
    left; a list's numbers are checked one by one (a list of lists is torch's to refuse)."""
    import torch  # (imported by then: `fn` is torch's)

    from dlbench.errors import DlbenchError

    meanings = MEANINGS.get(fn.__name__, {})
    if isinstance(fn, type) and issubclass(fn, torch.optim.Optimizer):  # (every optimizer's lr, decay)
        meanings = {"lr": RATE, "weight_decay": RATE, **meanings}
    for key, value in values.items():
        if (meaning := meanings.get(key)) is None:
            continue
        several = isinstance(value, (list, tuple))
        numbers = [n for n in (value if several else [value]) if type(n) in (int, float)]  # (not bools)
        for number in numbers:
            if not meaning.holds(number):
                what = f"each of {fn.__name__}'s {key}" if several else f"{fn.__name__}'s {key}"
                raise DlbenchError(f"{where}.{key}={value}: {what} must be {meaning}")
