"""One-step-ahead forecasting: regression on windows of a series, scored in its own units."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlbench.data.info import DataInfo
from dlbench.figures import new_figure
from dlbench.registry import TASKS
from dlbench.tasks.regression import Regression


@TASKS.register("forecast")
class Forecast(Regression):
    """Predict the next value of a series from a window of past values; MSE, MAE and R² in
    the series' units on the held-out tail, and a forecast-vs-truth figure of the test split."""

    def __init__(self, model: nn.Module, loss: nn.Module, data: DataInfo):
        super().__init__(model, loss, data)
        self.mean, self.std = data.scale or [0.0, 1.0]
        self.test_points: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _update(self, split: str, output: torch.Tensor, y: torch.Tensor) -> None:
        output, y = output * self.std + self.mean, y * self.std + self.mean  # back to the series' units
        super()._update(split, output, y)
        if split == "test":
            self.test_points.append((output.detach().float().reshape(-1).cpu(), y.float().reshape(-1).cpu()))

    def figures(self, split: str) -> dict[str, Any]:
        if split != "test" or not self.test_points:
            return {}
        predicted = torch.cat([p for p, _ in self.test_points])
        truth = torch.cat([t for _, t in self.test_points])
        self.test_points = []
        fig, ax = new_figure(figsize=(8, 3))
        ax.plot(truth.numpy(), label="truth")
        ax.plot(predicted.numpy(), label="forecast")
        ax.set_xlabel("step of the held-out tail")
        ax.legend()
        fig.tight_layout()
        return {"test/forecast": fig}

    def report(self) -> None:
        return None
