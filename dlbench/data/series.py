"""Time series for one-step-ahead forecasting: a generated noisy sine and any CSV column.

A series becomes windows: `window` past values -> the next one. Val and test are the end of
the series (no shuffling across time); the values are standardised with the mean and
standard deviation of the training part only.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from dlbench.data.base import DataSource, check_count, check_noise, csv_rows, is_number
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS


def standardizer(normalize: bool):
    """encode(train, val, test): scale every split with the train split's statistics."""

    def encode(train, val, test):
        x, y = train.tensors  # consecutive windows: their values are the series' first part
        values = torch.cat([x[:, 0], x[-1, 1:], y[-1:]])
        mean, std = (float(values.mean()), float(values.std()) or 1.0) if normalize else (0.0, 1.0)
        scaled = tuple(
            None if s is None else TensorDataset((s.tensors[0] - mean) / std, (s.tensors[1] - mean) / std)
            for s in (train, val, test)
        )
        return scaled, {"scale": [mean, std]}

    return encode


def windows(series: torch.Tensor, window: int, where: str) -> TensorDataset:
    if window < 1:
        raise DlbenchError(f"dataset.window={window}: must be at least 1")
    if len(series) <= window + 2:
        raise DlbenchError(f"{where}: {len(series)} values are too few for windows of {window}")
    x = series.unfold(0, window, 1)[:-1].unsqueeze(-1)  # (N, window, 1)
    y = series[window:].unsqueeze(-1)  # (N, 1): the value after each window
    return TensorDataset(x.float(), y.float())


def _source(series: torch.Tensor, window: int, normalize: bool, where: str) -> DataSource:
    return DataSource(train=windows(series, window, where), ordered=True, encode=standardizer(normalize))


@DATASETS.register("sine")
def sine(
    length: int = 1000, period: float = 50.0, noise: float = 0.1, window: int = 20, seed: int = 0
) -> DataSource:
    """sin(2πt/period) + noise·N(0, 1) for t = 0..length-1 (generated)."""
    if not 0 < period < math.inf:  # (0: a series of NaN, stopped as a NaN loss at step 1)
        raise DlbenchError(f"dataset.period={period}: a positive number of steps")
    check_count("length", length)
    check_noise(noise)
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    series = torch.sin(2 * math.pi * t / period) + noise * torch.randn(
        length, generator=g, dtype=torch.float64
    )
    return _source(series, window, False, "sine")


@DATASETS.register("csv_series")
def csv_series(
    path: str = "series.csv", column: str | int = 0, window: int = 20, normalize: bool = True
) -> DataSource:
    """One numeric column of a CSV file (by header name or index), in file order."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DlbenchError(f"csv_series: no such file {file} (set dataset.path)")
    rows = csv_rows(file, "csv_series")
    if not rows:
        raise DlbenchError(f"csv_series: {file} is empty")
    header = rows[0][1]
    has_header = any(not is_number(cell) for cell in header if cell.strip())
    if isinstance(column, str) and not column.isdigit():
        if not has_header or column not in header:
            raise DlbenchError(f"csv_series: {file} has no column '{column}' (columns: {', '.join(header)})")
        index = header.index(column)
    else:
        index = int(column)
        if index < 0:
            raise DlbenchError(f"dataset.column={column}: a column's index counts from 0 (or give its name)")
    values = []
    for number, row in rows[1:] if has_header else rows:
        if index >= len(row) or not is_number(row[index]):
            raise DlbenchError(f"csv_series: {file} line {number}, column {column}: not a number")
        if not math.isfinite(value := float(row[index])):
            where = f"csv_series: {file} line {number}, column {column}"
            raise DlbenchError(f"{where}: {row[index]} is not a finite number")
        values.append(value)
    return _source(torch.tensor(values, dtype=torch.float64), window, normalize, "csv_series")
