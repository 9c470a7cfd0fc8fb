"""Classification and regression metrics as sums over the samples seen, on the device, added up
over every process (DDP) when they are read.

Why not torchmetrics here: importing torchmetrics imports torchvision, torch._dynamo,
scipy.signal and matplotlib, 2 to 4 seconds that were the largest part of a small run's
start-up; and these metrics are a confusion matrix and five sums. They follow torchmetrics'
definitions (macro averages leave out a class that is neither in the targets nor predicted;
x/0 is 0), and the tests check every value against torchmetrics. The GAN and seq2seq tasks,
which need FID and BLEU, still use torchmetrics.
"""

from __future__ import annotations

from typing import Any

import torch


def _summed(t: torch.Tensor) -> torch.Tensor:
    """A tensor summed over every process of a distributed run (itself with one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


def _argmax(scores: torch.Tensor) -> torch.Tensor:
    """Each row's first largest score's index: argmax, from max (on the CPU in half argmax's time,
    measured on 1,472 x 10 and 5,000 x 1,000 scores; the same indices, ties and NaN included)."""
    return scores.max(dim=1).indices


def _divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b == 0, torch.zeros_like(a), a / b.clamp_min(1e-30))


def _value(t: torch.Tensor) -> float:
    """A metric as it is logged: a float32 value (TensorBoard's precision, torchmetrics')."""
    return float(t.float())


class Predictions:
    """A split's batches of (target, prediction) pairs, kept until they are counted together: one
    count for up to FOLD_EVERY batches, so a step costs a list append instead of several small
    operations. A batch is given as its predictions (integers) or as the model's class scores
    (floats, one per class), whose argmax is the prediction. Scores on the CPU are kept as they
    are and their argmax taken for all of them at once (a small argmax costs ~4% of a
    digits_mlp step); on a GPU at once (a launch; a CUDA-graphed model writes its next output
    over this one). A subclass counts them (`_count`)."""

    FOLD_EVERY = 256  # batches kept before they are counted
    KEEP_AT_MOST = 2**22  # values kept before they are counted (16 MB of float32 scores)

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.counts: torch.Tensor | None = None
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # batches not counted yet
        self.kept = 0  # values in `pending`

    def update(self, values: torch.Tensor, target: torch.Tensor) -> None:
        if values.is_floating_point() and not values.is_cpu:
            values = _argmax(values)
        self.pending.append((target, values))
        self.kept += values.numel()
        if len(self.pending) >= self.FOLD_EVERY or self.kept >= self.KEEP_AT_MOST:
            self._fold()

    def _fold(self) -> None:
        """Count the pending batches into `counts`."""
        if not self.pending:
            return
        target = torch.cat([t if t.dim() == 1 else t.reshape(-1) for t, _ in self.pending]).long()
        values = [v for _, v in self.pending]
        if all(v.is_floating_point() for v in values):  # scores: one argmax for every batch
            preds = _argmax(torch.cat(values))
        else:
            preds = torch.cat([_argmax(v) if v.is_floating_point() else v.reshape(-1) for v in values])
        self.pending, self.kept = [], 0
        counts = self._count(target, preds.long())
        self.counts = counts if self.counts is None else self.counts + counts

    def _count(self, target: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        self.counts, self.pending, self.kept = None, [], 0

    def saved(self) -> dict[str, Any]:
        """The counts so far (a checkpoint in the middle of an epoch keeps them: `carry`)."""
        self._fold()
        return {"counts": None if self.counts is None else self.counts.cpu()}

    def carry(self, saved: dict[str, Any], device: torch.device) -> None:
        counts = saved["counts"]
        if counts is not None and not (isinstance(counts, torch.Tensor) and counts.shape == self.shape()):
            raise ValueError(f"counts of shape {getattr(counts, 'shape', None)}, not {self.shape()}")
        self.counts = None if counts is None else counts.long().to(device)

    def shape(self) -> tuple[int, ...]:
        """The shape of `counts`."""
        return (self.num_classes, self.num_classes)


class ConfusionMatrix(Predictions):
    """Counts of (target, prediction) pairs: accuracy, balanced accuracy, macro F1, and each
    class's precision, recall and F1 (the val and test splits')."""

    def _count(self, target: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        n = self.num_classes
        return torch.bincount(target * n + preds, minlength=n * n).reshape(n, n)

    def matrix(self) -> torch.Tensor:
        """Rows are the true classes, columns the predicted ones (every process's samples)."""
        self._fold()
        if self.counts is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        return _summed(self.counts)

    def per_class(self) -> dict[str, torch.Tensor]:
        return per_class(self.matrix())

    def compute(self) -> dict[str, float]:
        return scores(self.matrix())


class Accuracy(Predictions):
    """The correct predictions and the samples, and so accuracy alone: what the train split
    reports, counted at an epoch's end in about half a confusion matrix's time (digits_mlp's
    train/ figures: ~0.45 -> ~0.37 ms an epoch in the run)."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.samples = 0

    def _count(self, target: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        self.samples += target.numel()
        return (preds == target).sum()

    def compute(self) -> dict[str, float]:
        self._fold()
        if self.counts is None:
            return {"acc": 0.0}
        counted = torch.stack([self.counts, self.counts.new_tensor(self.samples)])
        correct, total = _summed(counted).tolist()
        return {"acc": _value(torch.tensor(correct / total if total else 0.0))}  # (float32, as `scores`)

    def reset(self) -> None:
        super().reset()
        self.samples = 0

    def saved(self) -> dict[str, Any]:
        return {**super().saved(), "samples": self.samples}

    def carry(self, saved: dict[str, Any], device: torch.device) -> None:
        super().carry(saved, device)
        if not isinstance(saved["samples"], int) or saved["samples"] < 0:
            raise ValueError(f"samples {saved['samples']!r}")
        self.samples = saved["samples"]

    def shape(self) -> tuple[int, ...]:
        return ()


def per_class(matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each class's precision, recall and F1 from a confusion matrix (ConfusionMatrix.matrix)."""
    m = matrix.double()
    tp = m.diag()
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    precision, recall = _divide(tp, tp + fp), _divide(tp, tp + fn)
    return {"precision": precision, "recall": recall, "f1": _divide(2 * tp, 2 * tp + fp + fn)}


def scores(matrix: torch.Tensor) -> dict[str, float]:
    """acc (micro), balanced_acc (macro recall) and f1_macro."""
    m = matrix.double()
    values = {"acc": _value(_divide(m.diag().sum(), m.sum()))}
    seen = (m.sum(0) + m.sum(1)) > 0  # in the targets or predicted
    classes = per_class(m)
    for name, key in (("balanced_acc", "recall"), ("f1_macro", "f1")):
        values[name] = _value(classes[key][seen].mean()) if seen.any() else 0.0
    return values


class RegressionSums:
    """MSE and MAE over every value, R² per output averaged over the outputs."""

    def __init__(self):
        self.sums: torch.Tensor | None = (
            None  # rows: n, sum of squared errors, sum of |errors|, sum y, sum y²
        )

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        output = output.detach().double().reshape(len(target), -1)
        target = target.detach().double().reshape(len(target), -1)
        error = output - target
        rows = torch.stack(
            [
                torch.full_like(target[0], float(len(target))),
                (error**2).sum(0),
                error.abs().sum(0),
                target.sum(0),
                (target**2).sum(0),
            ]
        )
        self.sums = rows if self.sums is None else self.sums + rows

    def compute(self) -> dict[str, float]:
        if self.sums is None:
            return {}
        n, squared, absolute, total, total_squared = _summed(self.sums)
        values = {"mse": _value(squared.sum() / n.sum()), "mae": _value(absolute.sum() / n.sum())}
        if float(n[0]) >= 2:
            spread = total_squared - total**2 / n
            values["r2"] = _value((1 - _divide(squared, spread)).mean())
        return values

    def reset(self) -> None:
        self.sums = None

    def saved(self) -> dict[str, Any]:
        return {"sums": None if self.sums is None else self.sums.cpu()}

    def carry(self, saved: dict[str, Any], device: torch.device) -> None:
        sums = saved["sums"]
        if sums is not None and not (isinstance(sums, torch.Tensor) and sums.dim() == 2 and len(sums) == 5):
            raise ValueError(f"sums of shape {getattr(sums, 'shape', None)}")
        self.sums = None if sums is None else sums.double().to(device)


class Untracked:
    """The train split's metrics in an epoch whose train/ metrics nobody reads (it neither
    reports nor feeds the monitor): updates cost nothing (Task.metrics)."""

    def update(self, *args, **kwargs) -> None:
        pass

    def __getitem__(self, name: str) -> Untracked:  # a collection's member (seq2seq's)
        return self


UNTRACKED = Untracked()
