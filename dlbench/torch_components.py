"""torch's own optimizers, schedulers and losses, registered under snake_case names when a
registry first needs them (`Registry(from_torch=...)`)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlbench.registry import Registry


def snake_case(name: str) -> str:
    """CrossEntropyLoss -> cross_entropy_loss, StepLR -> step_lr, BCEWithLogits -> bce_with_logits."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _register_torch(
    registry: Registry, module: Any, base: type, naming: Callable[[str], str], skip=()
) -> None:
    for attr in dir(module):
        obj = getattr(module, attr)
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
            if not attr.startswith("_") and attr not in skip:
                registry.add(naming(attr), obj)


# torch's own optimizers (sgd, adam, adamw, rmsprop, ...), schedulers (step_lr, one_cycle_lr, ...)
# and losses (cross_entropy, mse, bce_with_logits, ...), registered from torch itself.
def register_optimizers(registry: Registry) -> None:
    import torch

    _register_torch(registry, torch.optim, torch.optim.Optimizer, str.lower)


def register_schedulers(registry: Registry) -> None:
    import torch

    # Schedulers that take Python callables or other schedulers cannot come from a config file.
    skip = ("LambdaLR", "MultiplicativeLR", "ChainedScheduler", "SequentialLR")
    schedulers = torch.optim.lr_scheduler
    _register_torch(registry, schedulers, schedulers.LRScheduler, snake_case, skip)


def register_losses(registry: Registry) -> None:
    import torch

    naming = lambda n: snake_case(n.removesuffix("Loss"))  # noqa: E731
    _register_torch(registry, torch.nn.modules.loss, torch.nn.modules.loss._Loss, naming, skip=("NLLLoss2d",))
