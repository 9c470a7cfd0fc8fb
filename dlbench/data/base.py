"""What a dataset constructor returns (DataSource), and the DataModule that carves its splits
(splits.py) and makes their loaders (loaders.py); and what the CSV readers share (is_number,
csv_rows)."""

from __future__ import annotations

import csv
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from dlbench.config import DataConfig
from dlbench.data.loaders import EpochSampler, TensorLoader
from dlbench.data.splits import carve, check_labels, labels_of
from dlbench.data.transforms import Augment, Augmented, mixing
from dlbench.engine import distributed
from dlbench.errors import DlbenchError, first_line
from dlbench.terminal import counted

log = logging.getLogger("dlbench")


@dataclass
class DataSource:
    """The data a registered dataset constructor returns, with the splits it ships with.

    Splits left as None are carved from `train` (test first, then val) by `DataModule`.
    `num_classes` is None for regression data.
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    normalization: tuple[list[float], list[float]] | None = None  # (mean, std) of image inputs
    truth: dict[str, list[float]] | None = None  # the parameters synthetic data was made with
    ordered: bool = False  # a time series: val and test are carved from the end, not at random
    # Data whose preprocessing is learned (a vocabulary, a scale) from the train split only:
    # encode(train, val, test) -> ((train, val, test), metadata), called after the carving.
    encode: Callable[..., tuple[tuple[Dataset, Dataset | None, Dataset | None], dict]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # written into cfg.dataset (e.g. a vocabulary)


def as_source(built: Any, name: str) -> DataSource:
    """What a registered dataset constructor returned, as a DataSource.

    A user's constructor may return a torch `Dataset` (one split: val and test are carved from
    it), a tuple or list `(train, val, test)` or a dict with those keys (val and test may be
    None), or a DataSource. Samples are `(input, target)` pairs; PIL images and numpy arrays
    become tensors. An integer target means classes: their number comes from a `classes`
    attribute (its names too), else from a `targets` attribute, else from reading every label
    once. Any other target (a float, a vector) means regression.
    """
    if isinstance(built, DataSource):
        return built
    if isinstance(built, Dataset):
        splits = [built, None, None]
    elif isinstance(built, (tuple, list)) and 1 <= len(built) <= 3:
        splits = [*built, None, None][:3]
    elif isinstance(built, dict) and "train" in built and set(built) <= {"train", "val", "test"}:
        splits = [built.get("train"), built.get("val"), built.get("test")]
    else:
        splits = [None]
    if splits[0] is None or not all(s is None or isinstance(s, Dataset) for s in splits):
        raise DlbenchError(
            f"dataset '{name}': its constructor returned {type(built).__name__}; return a torch Dataset, "
            "a (train, val, test) tuple of Datasets, or a DataSource"
        )
    if streams := [type(s).__name__ for s in splits if isinstance(s, IterableDataset)]:
        raise DlbenchError(  # (len() of it: a TypeError, "unexpected error", exit 1)
            f"dataset '{name}': {streams[0]} is an IterableDataset, a stream with no length or index: "
            "dlbench splits, shuffles each epoch and resumes mid-epoch by index; give it __len__ "
            "and __getitem__ (a map-style torch Dataset)"
        )
    train, val, test = (None if s is None else AsTensors(s) for s in splits)
    if len(train) == 0:
        raise DlbenchError(f"dataset '{name}' has no samples")
    sample = train[0]
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise DlbenchError(
            f"dataset '{name}': a sample must be an (input, target) pair, got {type(sample).__name__}"
        )
    target = torch.as_tensor(sample[1])
    if target.is_floating_point() or target.dim() > 0:
        return DataSource(train, val, test)  # regression
    labels = labels_of(train)
    if labels is None:  # read once: the splits are stratified by them, and they are checked
        labels = train.targets = torch.tensor([int(train[i][1]) for i in range(len(train))])
    classes = getattr(splits[0], "classes", None)
    if classes is not None:
        return DataSource(train, val, test, num_classes=len(classes), class_names=[str(c) for c in classes])
    top, present = int(labels.max()), set(labels.tolist())
    if missing := top + 1 - len({label for label in present if label >= 0}):  # (labels 1..K: K+1 outputs)
        first = list(itertools.islice((c for c in range(top + 1) if c not in present), 5))
        log.warning(
            f"dataset '{name}': its labels run to {top}, and {counted(missing, 'class', 'classes')} below "
            f"that {'has' if missing == 1 else 'have'} no sample ({', '.join(map(str, first))}"
            f"{', ...' if missing > len(first) else ''}): a model gets an output for each; classes are "
            "numbered 0..N-1"
        )
    return DataSource(train, val, test, num_classes=int(labels.max()) + 1)


class AsTensors(Dataset):
    """A user's Dataset whose inputs may be PIL images or numpy arrays: each becomes a tensor
    (images as float in [0, 1], channels first), so batches stack."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        if (targets := getattr(dataset, "targets", None)) is not None:
            self.targets = targets  # read by labels_of: stratified splits without loading samples

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sample = self.dataset[index]  # (an error of the user's own __getitem__ is theirs, as it is)
        try:
            x, y, *rest = sample
            if isinstance(x, PIL.Image.Image):
                from torchvision.transforms import v2

                x = v2.functional.to_dtype(v2.functional.to_image(x), torch.float32, scale=True)
            elif not isinstance(x, torch.Tensor):
                x = _as_float32(torch.as_tensor(np.asarray(x)))
            if not isinstance(y, (int, torch.Tensor)):  # a float or an array: a regression target
                y = _as_float32(torch.as_tensor(np.asarray(y)))
            if isinstance(y, torch.Tensor) and y.dim() == 0 and y.is_floating_point():  # [B, 1] batches
                y = y.reshape(1)
        except (TypeError, ValueError) as err:  # (a label "cat", a dict: numpy's or torch's TypeError)
            raise DlbenchError(
                f"sample {index} of {type(self.dataset).__name__} is {type(sample).__name__} "
                f"({first_line(err)}): a dataset's sample is (input, target), the input numbers (a "
                "tensor, an array, a PIL image), the target a class number or numbers to regress"
            ) from err
        return (x, y, *rest)


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() else t


class DataModule:
    """The train/val/test splits of one dataset, their metadata and their loaders."""

    def __init__(self, source: DataSource, cfg: DataConfig):
        self.cfg = cfg
        self.num_classes = source.num_classes
        self.class_names = source.class_names
        classification = source.num_classes is not None
        train, val, test = source.train, source.val, source.test
        self.validate_on = cfg.validate_on
        if self.validate_on != "val":  # validating on another split: no val split, nothing carved for it
            val = None
        if test is None:
            train, test = carve(train, cfg.test_fraction, cfg.split_seed, classification, source.ordered)
        if val is None and self.validate_on == "val":
            train, val = carve(train, cfg.val_fraction, cfg.split_seed + 1, classification, source.ordered)
        if len(train) == 0:
            raise DlbenchError(f"dataset '{cfg.name}' has no training samples")
        for split, part in (("train", train), ("val", val), ("test", test)):
            check_labels(
                part if classification else None, source.num_classes, f"dataset '{cfg.name}': {split}"
            )
        self.meta = dict(source.meta)
        if source.encode is not None:
            (train, val, test), learned = source.encode(train, val, test)
            self.meta.update(learned)
        if self.validate_on == "test":
            if test is None:
                raise DlbenchError(
                    f"dataset.validate_on=test: '{cfg.name}' has no test split here "
                    "(dataset.test_fraction=0 and none shipped)"
                )
            val = test
        elif self.validate_on == "train":
            val = train  # before augmentation: the training samples as they are
        x, y = train[0][:2]
        self.input_shape = list(torch.as_tensor(x).shape)
        # (learned from the train split by `encode`, a table's standardisation: the data's own)
        self.normalization = self.meta.pop("normalization", None) or source.normalization
        self.truth = source.truth
        # Data in memory is batched by slicing and augmented a whole batch at a time; other
        # data (image folders), or augmentations with no batch version, go sample by sample.
        augment = Augment(**(cfg.augment or {}))
        augment.check_images(self.input_shape, cfg.name)
        self.in_memory = str(cfg.in_memory).lower()
        if self.in_memory == "true" and not isinstance(train, TensorDataset):
            raise DlbenchError(
                f"dataset.in_memory=true: '{cfg.name}' is read from files sample by sample "
                "(use dataset.in_memory=auto or false)"
            )
        self.batch_augment = None
        if self.in_memory != "false" and isinstance(train, TensorDataset) and augment.batchable():
            self.batch_augment = augment.batch()
        elif (per_sample := augment.build(self.input_shape[-2:])) is not None:
            train = Augmented(train, per_sample)
        self.splits: dict[str, Dataset | None] = {"train": train, "val": val, "test": test}
        # mixup/cutmix: applied by the trainer to each training batch once it is on the device
        self.mix = mixing(cfg.mixup, cfg.cutmix, source.num_classes, self.input_shape, cfg.name)
        if self.mix is not None:
            log.info(
                "training batches are mixed: train/acc counts the mixed labels' argmax; val/, test/ are not"
            )
        self.num_outputs = source.num_classes if classification else int(torch.as_tensor(y).numel())
        self.train_loader: TensorLoader | None = None  # (train_tensors': reused from epoch to epoch)

    def loader(self, split: str, epoch: int = 0, seed: int = 0, skip: int = 0):
        """A loader over this process's share of a split; the train split is shuffled by
        (seed, epoch), or by the seed alone with dataset.shuffle=once, and its first `skip`
        batches are left out (resuming mid-epoch)."""
        dataset = self.splits[split]
        if dataset is None:
            return None
        batch_size = self.batch_size(split)
        in_memory = isinstance(dataset, TensorDataset) and self.in_memory != "false"
        order = epoch if self.cfg.shuffle == "epoch" else 0  # (the permutation's; augmentations' stay)
        if split == "train" and in_memory:
            return self.train_tensors(dataset, batch_size, seed, epoch, skip, order)
        if split == "train":
            sampler = EpochSampler(dataset, seed, order, skip * batch_size)
        elif distributed.world_size() > 1:  # evaluation: every sample once, over all processes
            sampler = range(distributed.rank(), len(dataset), distributed.world_size())
        else:
            sampler = None
        if in_memory:
            return TensorLoader(dataset, batch_size, sampler)
        inner = dataset
        while isinstance(inner, Augmented):  # an ImageNet crop inside a configured augmentation
            inner.seed, inner.epoch = seed, epoch
            inner = inner.dataset
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=torch.cuda.is_available(),
            # its own generator: the loader draws its workers' seeds without touching the
            # global one, so a run resumed mid-epoch continues the same random sequence
            generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch),
        )

    def train_tensors(
        self, dataset: TensorDataset, batch_size: int, seed: int, epoch: int, skip: int, order: int
    ):
        """The in-memory training split's loader: one for every epoch, its sampler set to the
        epoch's (seed, `order`: the epoch whose permutation it takes, skip), its augmentations
        the epoch's. A loader and sampler made anew each epoch cost ~2.5 us, a few percent of a
        tiny epoch (mlp_regression's one full-batch step)."""
        loader = self.train_loader
        if loader is None or loader.tensors is not dataset.tensors or loader.batch_size != batch_size:
            loader = TensorLoader(dataset, batch_size, EpochSampler(dataset, seed), self.batch_augment)
            self.train_loader = loader
        loader.sampler.seed, loader.sampler.skip, loader.epoch = seed, skip * batch_size, epoch
        loader.sampler.set_epoch(order)
        return loader

    def batch_size(self, split: str) -> int:
        """This process's batch size: the configured (global) batch over the processes."""
        size = self.cfg.batch_size if split == "train" else self.cfg.eval_batch_size or self.cfg.batch_size
        key = (
            "dataset.batch_size"
            if split == "train" or not self.cfg.eval_batch_size
            else "dataset.eval_batch_size"
        )
        return distributed.per_process(size, key) or len(self.splits[split])

    def place(self, device: torch.device) -> None:
        """Keep in-memory splits on the training device, so a batch is a slice of device memory
        (`in_memory=auto`: when they take less than a quarter of the device's free memory)."""
        if self.in_memory == "false" or device.type == "cpu":
            return
        shared = {id(d): d for d in self.splits.values() if isinstance(d, TensorDataset)}
        tensors = [t for d in shared.values() for t in d.tensors]
        size = sum(t.numel() * t.element_size() for t in tensors)
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        if self.in_memory == "auto" and free is not None and size > free / 4:
            log.info(f"the data ({size / 2**30:.1f} GiB) stays in host memory (in_memory=auto)")
            return
        moved: dict[int, TensorDataset] = {}  # a split validated on itself is moved once
        for split, dataset in self.splits.items():
            if isinstance(dataset, TensorDataset):
                if id(dataset) not in moved:
                    moved[id(dataset)] = TensorDataset(*(t.to(device) for t in dataset.tensors))
                self.splits[split] = moved[id(dataset)]

    def size(self, split: str) -> int:
        dataset = self.splits[split]
        return 0 if dataset is None else len(dataset)


def check_count(key: str, value: int) -> None:
    """A generated data set's count of samples (pairs, steps): at least 1 (a negative one was
    torch's "negative dimension", an unexpected error)."""
    if value < 1:
        raise DlbenchError(f"dataset.{key}={value}: must be at least 1")


def check_noise(noise: float) -> None:
    """A generated data set's `noise`: the standard deviation of the Gaussian noise it adds (a
    negative one drew the same noise as its absolute value, without a word)."""
    if not 0 <= noise < math.inf:
        raise DlbenchError(f"dataset.noise={noise}: a standard deviation, 0 (none) or more")


def is_number(text: str) -> bool:
    """Whether a CSV cell is a number (CSV tables and series)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_rows(file: Path, name: str) -> list[tuple[int, list[str]]]:
    """The rows of a CSV file (CSV tables and series), each with the line it starts on, or one
    message naming the file and the line it cannot read: text that is not UTF-8, or a field over
    csv's limit of 128 KiB, which no table of numbers has (a quote left open, or a damaged
    file). `name`: the data set's. A byte-order mark (Excel's "CSV UTF-8") is not text."""
    rows, line = [], 1  # line: where the row being read starts
    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                rows.append((line, row))
                line = reader.line_num + 1
    except UnicodeDecodeError as err:
        raise DlbenchError(f"{name}: {file} is not UTF-8 text ({err})") from err
    except csv.Error as err:
        raise DlbenchError(
            f'{name}: {file} line {line} cannot be read as CSV ({err}). Look there for a quote (") '
            "left open or a damaged part, and fix or remove that line"
        ) from err
    return rows
