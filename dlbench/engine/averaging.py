"""An average of the model's weights, used in place of the trained weights once it exists:

- `trainer.ema=DECAY`: an exponential moving average of the weights and buffers, updated after
  every optimizer step (timm's ModelEmaV3, Lightning's and MMEngine's EMA), starting from the
  weights after the first step (AveragedModel's first update copies them). Evaluation, best.pt
  and everything that reads a checkpoint use it from the first step on.
- `trainer.swa_start=EPOCH`: stochastic weight averaging (Izmailov et al., 2018): an equal
  average of the weights at the end of each epoch from EPOCH on, trained at a constant
  `trainer.swa_lr` if set; at the end BatchNorm's statistics are recomputed for the average
  (`update_bn`), and the average is the model the run tests and saves.

Both are `torch.optim.swa_utils.AveragedModel`. A checkpoint keeps the trained weights too
(`trained`), so a resume goes on from them exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from dlbench.config import TrainerConfig
from dlbench.engine.optim import lr_ratios


class WeightAverage:
    def __init__(self, model: torch.nn.Module, cfg: TrainerConfig):
        self.cfg = cfg
        self.kind = "ema" if cfg.ema is not None else "swa"
        if self.kind == "ema":
            self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
        else:
            self.averaged = AveragedModel(model)  # (BatchNorm's statistics: update_bn at the end)
        self.finished = False  # SWA: the statistics were recomputed, the average is the model

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    def in_use(self) -> bool:
        """Whether evaluation and checkpoints take the average instead of the trained weights."""
        return self.finished if self.kind == "swa" else int(self.averaged.n_averaged) > 0

    def describe(self) -> str:
        if self.kind == "ema":
            return f"the EMA of the weights (trainer.ema={self.cfg.ema})"
        return f"the SWA average of the weights from epoch {self.cfg.swa_start} (trainer.swa_start)"

    def after_step(self, model: torch.nn.Module) -> None:
        if self.kind == "ema":
            self.averaged.update_parameters(model)
            # a count is not averaged (BatchNorm's num_batches_tracked came out 8 after 12 steps)
            for kept, buffer in zip(self.averaged.module.buffers(), model.buffers(), strict=True):
                if not buffer.is_floating_point():
                    kept.copy_(buffer)

    def after_epoch(self, model: torch.nn.Module, epochs_done: int) -> None:
        if self.kind == "swa" and epochs_done >= self.cfg.swa_start:
            self.averaged.update_parameters(model)

    def swa_scheduler(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) trains at trainer.swa_lr."""
        return self.kind == "swa" and self.cfg.swa_lr is not None and epoch + 1 >= self.cfg.swa_start

    def new_swa_lr(self, optimizer: torch.optim.Optimizer) -> SWALR:
        """The learning rate goes to trainer.swa_lr over one epoch (cosine), then stays (a
        normalisation layer's, optimizer.norm_lr_scale times it)."""
        return SWALR(optimizer, swa_lr=[self.cfg.swa_lr * r for r in lr_ratios(optimizer)], anneal_epochs=1)

    @torch.no_grad()
    def finish(self, batches: Any, device: torch.device) -> None:
        """SWA, after the last epoch: BatchNorm's running statistics for the averaged weights,
        from one pass over the training data; from now on the average is the model. The pass
        leaves the random streams as they were (dropout draws in it): a resume with more epochs
        goes on as the longer run did, which made no such pass."""
        if self.kind == "swa" and int(self.averaged.n_averaged) > 0:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                update_bn(batches, self.averaged.module, device=device)
            self.finished = True

    def state_dict(self) -> dict[str, Any]:
        return {"averaged": self.averaged.state_dict(), "finished": self.finished}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state["averaged"])
        self.finished = bool(state["finished"])
