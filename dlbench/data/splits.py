"""How a data set is split: its class labels (read without loading samples), checked against
the number of classes, and a part carved off, stratified by class or from the end of ordered data."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from dlbench.errors import DlbenchError


def labels_of(dataset: Dataset) -> torch.Tensor | None:
    """The integer class labels of a dataset, where they can be read without loading samples."""
    if isinstance(dataset, Subset):
        labels = labels_of(dataset.dataset)
        return None if labels is None else labels[torch.as_tensor(dataset.indices)]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) > 1:
        labels = dataset.tensors[1]
    else:
        labels = getattr(dataset, "targets", None)
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    return labels if not labels.is_floating_point() and labels.dim() == 1 else None


def check_labels(dataset: Dataset | None, num_classes: int | None, where: str) -> None:
    """Refuse class labels outside 0..num_classes-1 now, before any step (or CUDA kernel) meets them."""
    labels = labels_of(dataset) if dataset is not None and num_classes else None
    if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DlbenchError(
            f"{where} split has labels outside 0..{num_classes - 1} "
            f"(found {int(labels.min())}..{int(labels.max())})"
        )


def subset(dataset: Dataset, indices: list[int]) -> Dataset:
    """Select samples; a TensorDataset stays a TensorDataset so it can be batched by slicing."""
    if isinstance(dataset, TensorDataset):
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorDataset(*(t[idx] for t in dataset.tensors))
    return Subset(dataset, indices)


def carve(dataset: Dataset, fraction: float, seed: int, classification: bool, ordered: bool = False):
    """Split off `fraction` of a dataset (stratified by class where it can be; the last
    samples when the data is ordered in time): (rest, part)."""
    n = len(dataset)
    if fraction <= 0:
        return dataset, None
    n_part = max(1, round(n * fraction))
    if n_part >= n:
        raise DlbenchError(f"Cannot carve {fraction:.0%} of a split of {n} samples and keep any")
    if ordered:
        return subset(dataset, list(range(n - n_part))), subset(dataset, list(range(n - n_part, n)))
    labels = labels_of(dataset) if classification else None
    part = stratified_sample(labels, n_part, seed) if labels is not None else None
    if part is None:  # no labels, or a class too small to stratify: a plain random split
        part = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_part].tolist()
    chosen = set(part)
    return subset(dataset, [i for i in range(n) if i not in chosen]), subset(dataset, sorted(part))


def stratified_sample(labels: torch.Tensor, n_part: int, seed: int) -> list[int] | None:
    """`n_part` indices with each class in its share of the data (largest remainders get the
    extra ones), each class shuffled by `seed`; None when some class has fewer than 2 samples."""
    counts = torch.unique(labels, return_counts=True)[1]  # per class, classes in ascending order
    if (counts < 2).any():
        return None
    exact = counts.double() * n_part / len(labels)
    take = exact.floor().long()
    extra = n_part - int(take.sum())
    take[torch.argsort(exact - take, descending=True)[:extra]] += 1
    generator = torch.Generator().manual_seed(seed)
    part = []
    by_class = torch.argsort(labels, stable=True).split(counts.tolist())  # each class's indices, in order
    for members, k in zip(by_class, take.tolist(), strict=True):
        part += members[torch.randperm(len(members), generator=generator)[:k]].tolist()
    return part
