"""Datasets, one module per family; importing this package registers them all."""

from dlbench.data import series, synthetic, tabular, text, vision  # noqa: F401  (they register into DATASETS)
from dlbench.data.base import DataModule, DataSource

__all__ = ["DataModule", "DataSource"]
