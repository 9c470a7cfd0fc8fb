"""Means of a step's outputs, summed on the device so the training loop never waits for
them: over an epoch (BatchMeans) and over windows of N steps (RunningMeans, seed 003's
running loss)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from dlbench.engine import distributed
from dlbench.errors import DlbenchError


class BatchMeans:
    """Sample-weighted means of a step's outputs over an epoch, kept on the device so the loop
    never waits for them: each step only keeps its values; they are summed and read (one sync)
    at the end. `source` names the step that returns them (in a message about a value that is
    not a number)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[str, list[torch.Tensor]] = {}
        self.sizes: dict[str, list[int]] = {}
        self.count = 0
        self.started = time.perf_counter()  # (for samples/s)
        self.carried: dict[str, Any] | None = None  # the values before a resume (`carry`)

    def add(self, values: dict[str, torch.Tensor], n: int) -> None:
        if not self.values and not isinstance(values, Mapping):
            raise DlbenchError(
                f"{self.source} returned a {type(values).__name__}: a step returns its values by "
                "name, e.g. {'loss': loss.detach()}"
            )
        for key, value in values.items():
            if key not in self.values:  # (a key's first value is checked: not every step's)
                check_step_value(key, value, self.source)
                self.values[key], self.sizes[key] = [], []
            self.values[key].append(value.detach() if value.requires_grad else value)
            self.sizes[key].append(n)
        self.count += n

    def result(self, prefix: str) -> dict[str, float]:
        """The means over every process (sums and counts added up across them). Each key's
        values are read in one go and summed in double precision."""
        read, sizes = self.read()
        keys = list(read)
        sums = [sum(v * n for v, n in zip(read[k], sizes[k], strict=True)) for k in keys]
        count = float(self.count + (self.carried["count"] if self.carried else 0))
        if distributed.world_size() > 1:
            *totals, total = distributed.sum_across([torch.tensor(v) for v in [*sums, count]])
            sums, count = [float(t) for t in totals], float(total)
        return {f"{prefix}/{k}": v / max(count, 1.0) for k, v in zip(keys, sums, strict=True)}

    def read(self) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
        """Each key's values, read (one wait for the device), and their sizes: those carried
        over a resume first."""
        now = {k: torch.stack(v).float().tolist() for k, v in self.values.items()}
        if not self.carried:
            return now, self.sizes
        values, sizes = self.carried["values"], self.carried["sizes"]
        keys = [*values, *(k for k in now if k not in values)]  # (after a resume, maybe no step more)
        read = {k: values.get(k, []) + now.get(k, []) for k in keys}
        return read, {k: sizes.get(k, []) + self.sizes.get(k, []) for k in keys}

    def saved(self) -> dict[str, Any]:
        """The epoch's values so far, as a checkpoint in the middle of the epoch keeps them
        (`carry`: the resumed epoch's means are then the whole epoch's, summed in the same order)."""
        values, sizes = self.read()
        count = self.count + (self.carried["count"] if self.carried else 0)
        return {"values": values, "sizes": {k: list(v) for k, v in sizes.items()}, "count": count}

    def carry(self, saved: dict[str, Any]) -> None:
        """Start from what `saved` holds (the epoch before a resume)."""
        self.carried = saved


def check_step_value(key: object, value: object, source: str) -> None:
    """A step's values are numbers, each a 0-d tensor: a task of one's own (a plugin) that
    returns anything else is told so in one line, not deep in the sums."""
    if not (isinstance(value, torch.Tensor) and value.dim() == 0):
        tensor = isinstance(value, torch.Tensor)
        what = f"a tensor of shape {list(value.shape)}" if tensor else f"a {type(value).__name__}"
        raise DlbenchError(
            f"{source} returned {key!r} as {what}: each value a step returns is a number as a 0-d "
            "tensor (e.g. loss.detach(), or .mean() of a batch's values)"
        )


class RunningMeans:
    """The mean of each step value over windows of `every` steps (seed 003's running loss). The
    windows count the run's steps, not each epoch's, so they also close when an epoch has fewer
    than `every` mini-batches. Summed on the device; read once per window."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor], step: int | None) -> dict[str, float] | None:
        """Add one mini-batch's values; at the end of a window (its last optimizer `step`),
        return their means (and start anew). `step` None: a micro-batch inside an accumulation
        group, added only."""
        if not self.every:
            return None
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0) + value.detach().float()
        self.count += 1
        if step is None or step % self.every:
            return None
        sums, count = self.sums, self.count
        if distributed.world_size() > 1:  # (every process's batches: one's alone, before)
            *summed, total = distributed.sum_across([*sums.values(), torch.tensor(float(count))])
            sums, count = dict(zip(sums, summed, strict=True)), float(total)
        window = {key: float(total) / count for key, total in sums.items()}
        self.sums, self.count = {}, 0
        return window

    def saved(self) -> dict[str, Any]:
        """The open window, read (a checkpoint keeps it: a window goes on over a resume)."""
        return {"sums": {key: float(total) for key, total in self.sums.items()}, "count": self.count}

    def carry(self, saved: dict[str, Any], device: torch.device) -> None:
        sums = saved["sums"].items()
        self.sums = {k: torch.tensor(total, dtype=torch.float32, device=device) for k, total in sums}
        self.count = saved["count"]
