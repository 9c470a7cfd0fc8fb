"""The task interface: what one training step and one evaluation step mean.

A task owns its networks, loss(es) and metrics; the trainer owns the loop. The trainer calls
`training_step(batch, optimize)` (under autocast with trainer.precision=bf16 or 16), and the task
calls `optimize(name, loss)` once per optimizer it has (one for a classifier, two for a GAN).
`optimize` is the trainer's update (engine/step.py): zero_grad, backward, the NaN guard,
gradient accumulation and clipping, the optimizer step, so no task writes a loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from dlbench.data.info import DataInfo
from dlbench.engine.optim import Optimization, build_optimization
from dlbench.errors import DlbenchError, first_line
from dlbench.registry import LOSSES, raised_in_torch
from dlbench.tasks.metrics import UNTRACKED

Optimize = Callable[[str, torch.Tensor], None]
SPLITS = ("train", "val", "test")

if TYPE_CHECKING:  # (a type only)
    from dlbench.data.base import DataModule


Rows = tuple[list[str], list[list[str]]]  # a header and its rows (`dlbench predict` prints it)


@dataclass
class PredictOptions:
    """`dlbench predict`'s options: the classes shown per input, the samples a GAN draws, and
    where generated images go."""

    top_k: int = 3
    num: int = 64
    out: str | None = None


class Task(nn.Module):
    default_loss: str | None = "mse"  # the loss a `loss=auto` config gets (None: the task's own)
    # The losses (by name) a config may give it: those computed on its model's output and its
    # targets. Empty: its default_loss alone. A loss of one's own (a plugin's) is the user's.
    losses: tuple[str, ...] = ()
    # parameters that name another trained run (a GAN's judge): build.py loads each as a
    # classifier function before the task is built
    trained_runs: tuple[str, ...] = ()
    soft_targets = False  # whether training_step takes soft labels (dataset.mixup/cutmix batches)
    monitor = ("val/loss", "min")  # the metric (and its better direction) trainer.monitor=null means
    track_train_metrics = True  # off in the epochs whose train/ metrics nobody reads (the trainer's)

    def __init__(self, model: nn.Module, loss: nn.Module | None):
        super().__init__()
        self.model = model
        self.loss = loss

    @classmethod
    def check_loss(cls, loss: str, task: str) -> None:
        """Refuse `loss=NAME` (as `task=TASK`) where NAME is one of dlbench's or torch's losses
        that this task does not list: each takes its own inputs (a triplet, class indices, one
        logit), so another would fail at the first step. A task of one's own (a plugin's) takes
        any loss, as a loss of one's own is taken by every task: they are the user's."""
        taken = tuple(dict.fromkeys([*cls.losses, *filter(None, [cls.default_loss])]))
        if not taken:
            raise DlbenchError(f"task={task} minimises its own objective: leave out loss={loss}")
        if loss in taken or LOSSES.origin(loss) not in ("dlbench", "torch"):
            return
        if not cls.__module__.startswith("dlbench."):
            return
        raise DlbenchError(
            f"task={task} takes loss={'|'.join(taken)} (or a loss of your own, from a plugin), "
            f"not loss={loss}"
        )

    def trial_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A model output and targets of this task's shapes, two samples (`check_loss_settings`);
        None: the task has no such simple pair."""
        return None

    def loss_of(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task's loss of an output and its targets (a classifier's makes one-hot targets)."""
        return self.loss(output, y)

    def check_loss_settings(self) -> None:
        """The loss, as configured, gives one number on a trial batch: a setting torch takes when
        it builds the loss but not when it computes it (`loss.label_smoothing=2`, huber's
        `delta=0`, `reduction=none`) is one message before the run, not a failure at its first
        step."""
        batch = self.trial_batch()
        if batch is None or self.loss is None:
            return
        was_training = self.training
        try:
            self.train(False)  # (not a training step: nothing counts it as one)
            with torch.no_grad():
                value = self.loss_of(*batch)
        except (ValueError, RuntimeError, TypeError) as err:
            if not raised_in_torch(err):  # (a plugin's loss: its own bug, with its traceback)
                raise
            name = type(self.loss).__name__
            raise DlbenchError(f"the loss's settings ({name}): {first_line(err)}") from err
        finally:
            self.train(was_training)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise DlbenchError(
                "the loss gives one value per sample (loss.reduction=none?): a training step needs one "
                "number (reduction mean or sum)"
            )

    @staticmethod
    def output_size(data: DataModule) -> int:
        """How many outputs the model needs for this data (sizes the model's last layer)."""
        return data.num_outputs

    def networks(self) -> dict[str, nn.Module]:
        """The trainable networks, by name (compiled and moved by the trainer)."""
        return {"model": self.model}

    @contextlib.contextmanager
    def networks_replaced(self, wrappers: dict[str, nn.Module]) -> Iterator[None]:
        """Inside, the named networks are these wrappers of themselves (DDP's, during a training
        step); outside, the networks again (evaluation and checkpoints see no wrapper)."""
        originals = {name: getattr(self, name) for name in wrappers}
        for name, wrapper in wrappers.items():
            setattr(self, name, wrapper)
        try:
            yield
        finally:
            for name, network in originals.items():
                setattr(self, name, network)

    def configure_optimizers(
        self, optimizer_cfg: Mapping, scheduler_cfg: Mapping, total_steps: int, steps_per_epoch: int
    ) -> dict[str, Optimization]:
        """One optimizer over every parameter, named 'model'. A GAN returns one per network."""
        return {
            "model": build_optimization(
                self.model, optimizer_cfg, scheduler_cfg, total_steps, steps_per_epoch
            )
        }

    @staticmethod
    def takes_soft_labels(loss: Any) -> bool:
        """Whether `loss` takes a mixed batch's soft labels (asked where `soft_targets`)."""
        return True

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        """Forward, loss, `optimize(name, loss)`; return the values to average over the epoch."""
        raise NotImplementedError

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        """Forward and loss on a val/test batch (no gradients); update the split's metrics."""
        raise NotImplementedError

    def metrics(self, split: str) -> Any:
        """The metrics of a split: `update`, `compute`, `reset` (tasks/metrics.py, or torchmetrics).
        In an epoch that does not report, the train split's updates go nowhere (the trainer
        sets `track_train_metrics`)."""
        if split == "train" and not self.track_train_metrics:
            return UNTRACKED
        return getattr(self, f"{split}_metrics")

    def compute_metrics(self, split: str) -> dict[str, float]:
        """The split's metrics over everything seen since the last reset, then reset them."""
        collection = self.metrics(split)
        values = {
            k: float(v) for k, v in collection.compute().items() if not torch.is_tensor(v) or v.numel() == 1
        }
        collection.reset()
        return values

    def figures(self, split: str) -> dict[str, Any]:
        """Matplotlib figures to log after evaluating a split (e.g. a confusion matrix)."""
        return {}

    def should_stop(self) -> bool:
        """True when the task has converged (checked after each epoch)."""
        return False

    PREDICT_OPTIONS: tuple[str, ...] = ()  # the PredictOptions its predict_table reads

    def predict_table(self, inputs: list[str], info: DataInfo, options: PredictOptions) -> Rows:
        """What the trained model says about `inputs` (`dlbench predict RUN INPUT...`), as a
        table: a header and one row per input (or per file written). A task that can predict
        says how; `info` is the DataInfo its checkpoint saved."""
        raise DlbenchError(
            "predict needs a classifier, a seq2seq, a GAN or an image-to-image run; "
            f"this run's task ({type(self).__name__}) predicts nothing"
        )

    def report(self) -> Any:
        """Text or a rich renderable to print at the end of a run, beside the metrics table."""
        return None
