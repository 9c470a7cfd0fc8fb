"""An optimizer with its scheduler, built from the `optimizer` and `scheduler` config nodes."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dlbench.registry import OPTIMIZERS, SCHEDULERS


@dataclass
class Optimization:
    """One optimizer, its optional LR scheduler, and when that scheduler steps."""

    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    interval: str = "epoch"  # epoch | step

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step_scheduler(self, interval: str, monitor_value: float | None = None) -> None:
        if self.scheduler is None or interval != self.interval:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if monitor_value is not None:
                self.scheduler.step(monitor_value)
        else:
            self.scheduler.step()


def build_optimization(
    params: Iterable[torch.nn.Parameter],
    optimizer_cfg: Mapping[str, Any],
    scheduler_cfg: Mapping[str, Any],
    total_steps: int,
    steps_per_epoch: int,
) -> Optimization:
    """Build an optimizer over `params` and its scheduler.

    Schedulers that need the length of training (`total_steps` of OneCycleLR, `T_max`,
    `total_iters`) get it from the trainer when the config leaves it out, counted in the
    scheduler's interval (epochs or steps).
    """
    optimizer = OPTIMIZERS.build(optimizer_cfg, "optimizer", params=params)
    name = scheduler_cfg.get("name", "none")
    if name in (None, "none"):
        return Optimization(optimizer)
    interval = scheduler_cfg.get("interval", "epoch")
    length = total_steps if interval == "step" else max(1, total_steps // max(1, steps_per_epoch))
    accepted = inspect.signature(SCHEDULERS.get(name)).parameters
    filled = {
        k: length for k in ("total_steps", "T_max", "total_iters") if k in accepted and k not in scheduler_cfg
    }
    scheduler = SCHEDULERS.build(scheduler_cfg, "scheduler", skip=["interval"], optimizer=optimizer, **filled)
    return Optimization(optimizer, scheduler, interval)
