"""Datasets, one module per family; importing this package registers them all."""

from dlbench.data import (  # noqa: F401  (they register into DATASETS)
    imagenet,
    series,
    synthetic,
    tabular,
    text,
    translation_images,
    vision,
)
from dlbench.data.base import DataModule, DataSource

__all__ = ["DataModule", "DataSource"]
