"""Means of a step's outputs, summed on the device so the training loop never waits for
them: over an epoch (BatchMeans) and over windows of N steps (RunningMeans, seed 003's
running loss)."""

from __future__ import annotations

import time

import torch

from dlbench.engine import distributed


class BatchMeans:
    """Sample-weighted means of a step's outputs over an epoch, kept on the device so the loop
    never waits for them: each step only keeps its values; they are summed and read (one sync)
    at the end."""

    def __init__(self) -> None:
        self.values: dict[str, list[torch.Tensor]] = {}
        self.sizes: dict[str, list[int]] = {}
        self.count = 0
        self.started = time.perf_counter()  # (for samples/s)

    def add(self, values: dict[str, torch.Tensor], n: int) -> None:
        for key, value in values.items():
            if key not in self.values:
                self.values[key], self.sizes[key] = [], []
            self.values[key].append(value.detach() if value.requires_grad else value)
            self.sizes[key].append(n)
        self.count += n

    def result(self, prefix: str) -> dict[str, float]:
        """The means over every process (sums and counts added up across them). Each key's
        values are read in one go and summed in double precision."""
        keys = list(self.values)
        read = {k: torch.stack(self.values[k]).float().tolist() for k in keys}
        sums = [sum(v * n for v, n in zip(read[k], self.sizes[k], strict=True)) for k in keys]
        count = float(self.count)
        if distributed.world_size() > 1:
            *totals, total = distributed.sum_across([torch.tensor(v) for v in [*sums, count]])
            sums, count = [float(t) for t in totals], float(total)
        return {f"{prefix}/{k}": v / max(count, 1.0) for k, v in zip(keys, sums, strict=True)}


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
        window = {key: float(total) / self.count for key, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return window
