"""Datasets, one module per family (vision, imagenet, tabular, synthetic, series, text,
translation_images), each registering into DATASETS when imported; `base.py` has DataSource and
DataModule, `splits.py` carves the splits, `loaders.py` batches them."""
