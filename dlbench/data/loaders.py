"""The training split's order and in-memory batching: EpochSampler (a permutation drawn from
(seed, epoch), shared over the processes) and TensorLoader (batches sliced from tensors)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler, TensorDataset

from dlbench.engine import distributed

ORDER = torch.Generator()  # draws each epoch's order, seeded anew each time (one, not one an epoch)


class EpochSampler(DistributedSampler):
    """torch's DistributedSampler: this process's share of a permutation drawn from (seed, epoch),
    so a resumed run sees exactly the batches the uninterrupted run would have seen, and N
    processes together see the batches one process would. `skip` starts part-way through the
    epoch (a checkpoint written mid-epoch)."""

    def __init__(self, dataset: Dataset, seed: int, epoch: int = 0, skip: int = 0):
        super().__init__(dataset, num_replicas=distributed.world_size(), rank=distributed.rank(), seed=seed)
        self.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def order(self) -> torch.Tensor:
        """The epoch's indices as one tensor: in one process, the same permutation as iterating
        (DistributedSampler's `randperm` of seed + epoch), without making a Python int of each."""
        if self.num_replicas > 1 or not self.shuffle:
            return torch.as_tensor(list(self), dtype=torch.long)
        order = torch.randperm(len(self.dataset), generator=ORDER.manual_seed(self.seed + self.epoch))
        return order[self.skip :] if self.skip else order

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class TensorLoader:
    """Batches sliced from tensors already in memory: no per-sample indexing, no collate.

    `sampler` (an iterable of indices) picks and orders the samples; None takes them all in order.
    A shuffled epoch is gathered CHUNK batches at a time (one indexing per tensor), then sliced:
    an indexing costs a few microseconds whatever its size, so one a chunk costs less than one a
    batch (digits_mlp: ~80 us less an epoch of 21 batches), and no more than CHUNK batches are
    held at once.
    """

    CHUNK = 32  # batches gathered together

    def __init__(self, dataset: TensorDataset, batch_size: int, sampler: Any = None, augment=None):
        self.tensors = dataset.tensors
        self.device = self.tensors[0].device  # where its batches are made
        self.batch_size, self.sampler, self.augment = batch_size, sampler, augment
        self.epoch = 0  # whose augmentations its batches get (its order is the sampler's)

    @property
    def n(self) -> int:
        """The samples of an epoch (the sampler's: its epoch and skip may change between them)."""
        return len(self.tensors[0]) if self.sampler is None else len(self.sampler)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        n = self.n
        if self.sampler is None:  # in order: slices of the tensors themselves
            for start in range(0, n, self.batch_size):
                yield self._batch([t[start : start + self.batch_size] for t in self.tensors], None)
            return
        if hasattr(self.sampler, "order"):  # (a tensor already)
            order = self.sampler.order().to(self.device)
        else:
            order = torch.as_tensor(list(self.sampler), dtype=torch.long, device=self.device)
        size, chunks = self.batch_size, self.batch_size * self.CHUNK
        for first in range(0, n, chunks):
            chunk = order if n <= chunks else order[first : first + chunks]
            gathered = [t[chunk] for t in self.tensors]
            if len(chunk) <= size:  # one batch (a full batch): the gather is the batch
                yield self._batch(gathered, chunk)
                continue
            for start in range(0, len(chunk), size):
                yield self._batch([g[start : start + size] for g in gathered], chunk[start : start + size])

    def _batch(self, batch: list[torch.Tensor], index: torch.Tensor | None) -> list[torch.Tensor]:
        """The batch, its images augmented where configured (`index`: its samples' indices)."""
        if self.augment is not None:
            batch[0] = self.augment(batch[0], index, self.epoch)
        return batch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)
