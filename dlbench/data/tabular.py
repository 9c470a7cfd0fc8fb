"""Small tabular and image sets bundled with scikit-learn: always offline."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits, load_iris
from torch.utils.data import TensorDataset

from dlbench.data.base import DataSource
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS


@DATASETS.register("digits")
def digits() -> DataSource:
    """scikit-learn's handwritten digits: 1,797 grayscale 8x8 images, 10 classes (the default)."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(bunch.target, dtype=torch.long)
    return DataSource(TensorDataset(x, y), num_classes=10, class_names=[str(i) for i in range(10)])


@DATASETS.register("iris")
def iris(
    features: list[int] | None = None,
    classes: list[int] | None = None,
    standardize: bool = False,
) -> DataSource:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species.

    `features` keeps some columns (e.g. [0, 1]); `classes` keeps some species, relabelled
    0..k-1 in the order given (e.g. [0, 1]: setosa vs versicolor, the first 100 rows).
    """
    bunch = load_iris()
    x = torch.tensor(bunch.data, dtype=torch.float32)
    y = torch.tensor(bunch.target, dtype=torch.long)
    names = [str(n) for n in bunch.target_names]
    if features is not None:
        if not features or not all(0 <= f < x.shape[1] for f in features):
            raise DlbenchError(f"dataset.features={features}: iris has features 0..{x.shape[1] - 1}")
        x = x[:, features]
    if classes is not None:
        if len(classes) < 2 or not all(0 <= c < len(names) for c in classes):
            raise DlbenchError(f"dataset.classes={classes}: choose two or more of 0..{len(names) - 1}")
        keep = torch.isin(y, torch.tensor(classes))
        x, y = x[keep], torch.tensor([classes.index(int(c)) for c in y[keep]])
        names = [names[c] for c in classes]
    if standardize:
        x = (x - x.mean(0)) / x.std(0)
    return DataSource(TensorDataset(x, y), num_classes=len(names), class_names=names)
