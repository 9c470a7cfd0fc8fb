"""Regression: real-valued targets, MSE by default."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlbench.data.info import DataInfo
from dlbench.errors import DlbenchError
from dlbench.registry import TASKS
from dlbench.tasks.base import SPLITS, Optimize, Task
from dlbench.tasks.metrics import RegressionSums


@TASKS.register("regression")
class Regression(Task):
    """Predict real-valued targets; metrics MSE, MAE and R²."""

    default_loss = "mse"
    losses = ("mse", "l1", "smooth_l1", "huber", "poisson_nll")

    def __init__(self, model: nn.Module, loss: nn.Module, data: DataInfo):
        super().__init__(model, loss)
        if getattr(data, "num_classes", None):  # (its outputs met the class numbers as values)
            raise DlbenchError(
                f"this task predicts numbers, and dataset '{data.name}' has classes ({data.num_classes}): "
                "use task=classification (task=auto chooses by the data)"
            )
        self.truth = getattr(data, "truth", None)
        for split in SPLITS:
            setattr(self, f"{split}_metrics", RegressionSums())

    def _update(self, split: str, output: torch.Tensor, y: torch.Tensor) -> None:
        self.metrics(split).update(output, y)

    def trial_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(2, 1), torch.ones(2, 1)

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        x, y = batch
        output = self.model(x)
        if output.shape != y.shape:  # (a loss broadcasts [B, 1] against [B] to [B, B]: it trains, wrongly)
            column = "; a target of one number a sample is a column, [N, 1]" if y.dim() == 1 else ""
            raise DlbenchError(
                f"the model's output for a sample has shape {list(output.shape[1:])}, its target "
                f"{list(y.shape[1:])}: a regression model gives one value per target (model.num_outputs, "
                f"which the data sets{column})"
            )
        loss = self.loss(output, y)
        optimize("model", loss)
        if self.track_train_metrics:  # (an epoch that reports train/ metrics: the trainer says)
            self._update("train", output, y)
        return {"loss": loss.detach()}

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        x, y = batch
        output = self.model(x)
        self._update(split, output, y)
        return {"loss": self.loss(output, y)}

    def report(self) -> str | None:
        """For a single linear layer: the learned weight and bias, beside the true ones."""
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if len(linears) != 1:
            return None
        weight, bias = linears[0].weight.detach().flatten(), linears[0].bias
        lines = [f"learned weight {_fmt(weight)}  bias {_fmt(None if bias is None else bias.detach())}"]
        if self.truth:
            lines.append(f"true    weight {_fmt(self.truth['weight'])}  bias {_fmt(self.truth['bias'])}")
        return "\n".join(lines)


def _fmt(values) -> str:
    if values is None:
        return "none"
    return "[" + ", ".join(f"{float(v):.4f}" for v in values) + "]"
