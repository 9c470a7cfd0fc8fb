"""Function minimisation: gradient descent on one scalar, as in seed 002's lesson."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlbench.data.info import DataInfo
from dlbench.errors import DlbenchError
from dlbench.registry import TASKS
from dlbench.tasks.base import Optimize, Task


@TASKS.register("minimize")
class Minimize(Task):
    """Minimise a polynomial f(x) over the model's scalar x; stop when |Δx| < tolerance.

    Each step logs x, f(x) and f'(x) (train/x_step, train/f_step, train/grad_step). f itself is
    what is minimised: the task takes no loss.
    """

    monitor = ("train/f", "min")
    default_loss = None  # f itself is minimised

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None,
        data: DataInfo,
        coefficients: list[float] = (0.1, -0.8, -1.5, 5.4),
        tolerance: float = 1e-6,
    ):
        super().__init__(model, loss)
        if data.name != "none":  # (its batches would only set the steps an epoch, unsaid)
            raise DlbenchError(
                f"task=minimize minimises its own f(x) and reads no data (dataset={data.name}'s would "
                "only set its steps an epoch): give dataset=none, as experiment=gd_polynomial does"
            )
        self.coefficients = list(coefficients)  # highest power first: 0.1x³ - 0.8x² - 1.5x + 5.4
        self.tolerance = tolerance
        self.delta = float("inf")

    def f(self, x: torch.Tensor) -> torch.Tensor:
        degree = len(self.coefficients) - 1
        return sum(c * x ** (degree - i) for i, c in enumerate(self.coefficients))

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        x = self.model()
        before = x.detach().clone()
        fx = self.f(x)
        optimize("model", fx)
        grad = torch.func.grad(self.f)(before)
        self.delta = float((self.model().detach() - before).abs())
        return {"x": before, "f": fx.detach(), "grad": grad}

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        x = self.model().detach()
        return {"x": x, "f": self.f(x)}

    def compute_metrics(self, split: str) -> dict[str, float]:
        return {}

    def should_stop(self) -> bool:
        return self.delta < self.tolerance

    def report(self) -> str:
        x = float(self.model().detach())
        return f"x = {x:.6f}, f(x) = {float(self.f(torch.tensor(x))):.6f}, last |Δx| = {self.delta:.2e}"
