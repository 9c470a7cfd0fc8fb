"""Small tabular and image sets bundled with scikit-learn (always offline), and any CSV table.

scikit-learn ships digits and iris as small CSV files; they are read directly, which saves
importing scikit-learn (a second of start-up) for the default run."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dlbench.data.base import DataSource, csv_rows, is_number
from dlbench.errors import DlbenchError, did_you_mean
from dlbench.registry import DATASETS


def bundled(name: str, skip_header: bool = False) -> np.ndarray:
    """A data file scikit-learn ships (sklearn/datasets/data/), as numbers."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DlbenchError("scikit-learn is not installed; it ships the digits and iris data sets")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    with gzip.open(path, "rt") if name.endswith(".gz") else path.open() as f:
        return np.loadtxt(f, delimiter=",", skiprows=1 if skip_header else 0)


@DATASETS.register("digits")
def digits() -> DataSource:
    """scikit-learn's handwritten digits: 1,797 grayscale 8x8 images, 10 classes (the default)."""
    table = bundled("digits.csv.gz")  # 64 pixel values 0..16, then the digit
    x = torch.tensor(table[:, :64], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(table[:, 64], dtype=torch.long)
    return DataSource(TensorDataset(x, y), num_classes=10, class_names=[str(i) for i in range(10)])


@DATASETS.register("iris")
def iris(
    features: list[int] | None = None,  # e.g. [0, 1]: the first two measurements
    classes: list[int] | None = None,  # e.g. [0, 1]: setosa vs versicolor
    standardize: bool = False,
) -> DataSource:
    """Fisher's iris: 150 flowers, 4 measurements, 3 species.

    `features` keeps some columns (e.g. [0, 1]); `classes` keeps some species, relabelled
    0..k-1 in the order given (e.g. [0, 1]: setosa vs versicolor, the first 100 rows).
    """
    table = bundled("iris.csv", skip_header=True)  # 4 measurements, then the species (0, 1, 2)
    x = torch.tensor(table[:, :4], dtype=torch.float32)
    y = torch.tensor(table[:, 4], dtype=torch.long)
    names = ["setosa", "versicolor", "virginica"]
    if features is not None:
        if not features or not all(0 <= f < x.shape[1] for f in features):
            raise DlbenchError(f"dataset.features={features}: iris has features 0..{x.shape[1] - 1}")
        if len(set(features)) < len(features):  # ([0, 0]: one measurement fed twice, without a word)
            raise DlbenchError(f"dataset.features={features}: names a feature twice")
        x = x[:, features]
    if classes is not None:
        if len(classes) < 2 or not all(0 <= c < len(names) for c in classes):
            raise DlbenchError(f"dataset.classes={classes}: choose two or more of 0..{len(names) - 1}")
        if repeated := [c for i, c in enumerate(classes) if c in classes[:i]]:
            raise DlbenchError(
                f"dataset.classes={classes}: class {repeated[0]} is given twice; choose two or more "
                f"different classes of 0..{len(names) - 1}"
            )
        keep = torch.isin(y, torch.tensor(classes))
        x, y = x[keep], torch.tensor([classes.index(int(c)) for c in y[keep]])
        names = [names[c] for c in classes]
    encode = standardized if standardize else None  # (after the splits are carved: the train split's)
    return DataSource(TensorDataset(x, y), num_classes=len(names), class_names=names, encode=encode)


def standardized(train, val, test):
    """DataSource.encode: every split's features scaled by the train split's mean and standard
    deviation, per feature (val and test are not looked at: they were scaled with all 150
    flowers' before), which the run records as its data's normalization (export writes it)."""

    def tensors(split):
        xs, ys = zip(*(split[i] for i in range(len(split))), strict=True)
        return torch.stack(xs), torch.stack(ys)

    x = tensors(train)[0]
    mean, std = x.mean(0), torch.nan_to_num(x.std(0), nan=1.0)  # (one flower: no spread, nan)
    std[std == 0] = 1.0  # (a feature constant in the train split: centred, not divided by 0)

    def scaled(split):
        if split is None or len(split) == 0:
            return split
        x, y = tensors(split)
        return TensorDataset((x - mean) / std, y)

    return tuple(map(scaled, (train, val, test))), {"normalization": [mean.tolist(), std.tolist()]}


def check_targets(file: Path, column: str, cells: list[tuple[int, str]], target_type: str) -> None:
    """A target column's cells, by line: none empty; among numbers that are not all whole (or
    values to regress, dataset.target_type=value) no text cell, a missing value (NA) that made
    every value a class of its own (exit 0, test/acc 0); and in a column of numbers (or of values)
    each finite (a nan was read as a class). Whole numbers with a word or two among them stay
    classes (0, 1, 2, other)."""
    if blank := next((number for number, cell in cells if not cell), None):
        raise DlbenchError(f"csv: {file} line {blank}, target {column}: the cell is empty")
    numbers = [float(cell) for _, cell in cells if is_number(cell)]
    texts = [(number, cell) for number, cell in cells if not is_number(cell)]
    values = target_type == "value" or not all(n.is_integer() for n in numbers if math.isfinite(n))
    if target_type != "class" and texts and numbers and values:
        number, cell = texts[0]
        raise DlbenchError(
            f"csv: {file} line {number}, target {column}: {cell!r} is not a number, where "
            f"{len(numbers)} of the column's {len(cells)} cells are values: a missing value? (remove "
            "its row: a value to regress is a number)"
        )
    odd = [(number, cell) for number, cell in cells if is_number(cell) and not math.isfinite(float(cell))]
    if odd and (target_type == "value" or not texts):
        raise DlbenchError(
            f"csv: {file} line {odd[0][0]}, target {column}: {odd[0][1]!r} is not a finite number"
        )


@DATASETS.register("csv")
def csv_table(
    path: str = "data.csv",
    target: str | int = -1,
    features: list[str | int] | None = None,
    header: bool | None = None,
    target_type: str = "auto",
) -> DataSource:
    """A table in a CSV file: one row per sample, predict the `target` column from the others.

    `target` and `features` name columns by header name or by index (negative counts from the
    end); features are every other column by default. `header`: null finds out (a first row
    with a word in it is a header). `target_type`: auto (text or whole numbers are classes:
    classification; other numbers are values: regression) | class | value. Seed 001's "define
    your own dataset", as a file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DlbenchError(f"csv: no such file {file} (set dataset.path)")
    rows = [(line, row) for line, row in csv_rows(file, "csv") if any(cell.strip() for cell in row)]
    if target_type not in ("auto", "class", "value"):
        raise DlbenchError(f"dataset.target_type={target_type}: choose auto, class or value")
    if not rows:  # (with dataset.header=true: rows[0] was an IndexError)
        raise DlbenchError(f"csv: {file} has no rows; a data set needs more")
    if header is None:
        header = any(not is_number(cell) for cell in rows[0][1])
    names = [c.strip() for c in rows[0][1]] if header else [str(i) for i in range(len(rows[0][1]))]
    body = rows[1:] if header else rows
    if len(body) < 2:
        raise DlbenchError(f"csv: {file} has {len(body)} data row(s); a data set needs more")

    def column(key: str | int) -> int:
        if isinstance(key, int) or key.lstrip("-").isdigit():
            index = int(key)
            if not -len(names) <= index < len(names):
                raise DlbenchError(f"csv: {file} has columns 0..{len(names) - 1}, not {key}")
            return index % len(names)
        if key not in names:
            raise DlbenchError(
                f"csv: {file} has no column '{key}'.{did_you_mean(key, names)} Columns: {', '.join(names)}"
            )
        return names.index(key)

    y_col = column(target)
    x_cols = (
        [column(k) for k in features]
        if features is not None
        else [i for i in range(len(names)) if i != y_col]
    )
    if y_col in x_cols or not x_cols:
        raise DlbenchError(f"csv: the features must be columns other than the target ({names[y_col]})")
    x_rows, targets, lines = [], [], []
    for number, row in body:
        if len(row) != len(names):
            raise DlbenchError(
                f"csv: {file} line {number} has {len(row)} columns, the first row {len(names)}"
            )
        values = []
        for i in x_cols:
            if not is_number(row[i]) or not math.isfinite(value := float(row[i])):
                raise DlbenchError(
                    f"csv: {file} line {number}, column {names[i]}: {row[i]!r} is not a finite number"
                )
            values.append(value)
        x_rows.append(values)
        targets.append(row[y_col].strip())
        lines.append(number)
    x = torch.tensor(x_rows, dtype=torch.float32)
    check_targets(file, names[y_col], list(zip(lines, targets, strict=True)), target_type)
    numeric = all(is_number(t) and math.isfinite(float(t)) for t in targets)
    whole = numeric and all(float(t).is_integer() for t in targets)
    if target_type == "value" or (target_type == "auto" and numeric and not whole):
        if not numeric:
            raise DlbenchError(
                f"csv: target column {names[y_col]} holds text; it cannot be a value to regress"
            )
        return DataSource(TensorDataset(x, torch.tensor([[float(t)] for t in targets])))
    if whole:  # (0 and 0.0 are one class, named 0; exactly: 2**53 + 1 is not 2**53)
        targets = [str(int(Decimal(t))) for t in targets]
    keys = sorted(set(targets), key=lambda t: (float(t), t) if numeric else (0, t))
    index = {k: i for i, k in enumerate(keys)}
    y = torch.tensor([index[t] for t in targets], dtype=torch.long)
    return DataSource(TensorDataset(x, y), num_classes=len(keys), class_names=keys)
