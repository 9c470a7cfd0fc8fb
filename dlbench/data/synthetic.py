"""Data generated from a seed: the regression sets of the lecture notes. Always offline."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from dlbench.data.base import DataSource, check_count, check_noise
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS


@DATASETS.register("synthetic_linear")
def synthetic_linear(
    n_samples: int = 100,
    weights: list[float] = (1.0, 2.0, 3.0),
    bias: float = 5.0,
    noise: float = 0.0,
    x_dist: str = "normal",  # normal | uniform
    x_scale: float = 1.0,
    seed: int = 0,
) -> DataSource:
    """y = X·weights + bias + noise·N(0, 1), with X ~ x_scale·N(0, 1) or x_scale·U(0, 1)."""
    check_count("n_samples", n_samples)
    check_noise(noise)
    if not weights:  # (a linear model of no inputs trained, and "learned weight []")
        raise DlbenchError("dataset.weights is empty: give one true weight per input, e.g. [1.0, 2.0]")
    if x_dist not in ("normal", "uniform"):
        raise DlbenchError(f"dataset.x_dist={x_dist}: choose normal or uniform")
    g = torch.Generator().manual_seed(seed)
    shape = (n_samples, len(weights))
    x = torch.randn(shape, generator=g) if x_dist == "normal" else torch.rand(shape, generator=g)
    x = x * x_scale
    y = x @ torch.tensor(list(weights)).unsqueeze(1) + bias
    y = y + noise * torch.randn(y.shape, generator=g)
    return DataSource(TensorDataset(x, y), truth={"weight": list(weights), "bias": [bias]})


@DATASETS.register("synthetic_quadratic")
def synthetic_quadratic(
    n_samples: int = 1000,
    a: float = 1.0,
    b: float = 0.0,
    c: float = 3.0,
    noise: float = 0.0,
    seed: int = 0,
    test_samples: int = 0,  # > 0: a test split of this many fresh points (seed 001 tries 5 new x)
) -> DataSource:
    """y = a·x² + b·x + c + noise·N(0, 1), with x ~ N(0, 1). With test_samples, the test split is
    drawn afresh after the training points (which stay the same), instead of carved from them."""
    check_count("n_samples", n_samples)
    check_noise(noise)
    if test_samples < 0:
        raise DlbenchError(f"dataset.test_samples={test_samples}: must be 0 (carve) or more")
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> TensorDataset:
        x = torch.randn(n, 1, generator=g)
        return TensorDataset(x, a * x**2 + b * x + c + noise * torch.randn(n, 1, generator=g))

    train = draw(n_samples)
    return DataSource(train, test=draw(test_samples) if test_samples else None)


@DATASETS.register("none")
def none() -> DataSource:
    """No data: one empty sample, so each epoch is one step (function minimisation)."""
    return DataSource(TensorDataset(torch.zeros(1, 1), torch.zeros(1, 1)))
