"""Image data sets: MNIST, Fashion-MNIST, CIFAR-10/100 in their official formats, and the input
shape of the built-in image sets, known without reading them (`known_shape`). Any tree of image
files is the image_folder data set (image_folder.py).

The MNIST family and CIFAR are decoded once into tensors (they fit in memory), preprocessed
once (resize, normalise) and batched by slicing. `download=true` fetches the official files
into `root` on first use (torchvision's addresses and checksums); `download=false` reads the
files already there, which is what an offline machine or a cluster without internet does.
"""

from __future__ import annotations

import functools
import math
import pickle
import reprlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from dlbench.data.base import DataSource
from dlbench.data.download import extract, fetch
from dlbench.data.folders import describe, first_fit
from dlbench.data.transforms import normalization, preprocess
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS

MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def _missing(name: str, base: Path, below: list[str], files: list[str]) -> DlbenchError:
    places = ", ".join(str(base / b) if b else str(base) for b in below)
    return DlbenchError(
        f"{name}: data not found in {places}. Expected the official files {', '.join(files)} "
        f"in one of them; {describe(base)}. Use dataset.download=true to fetch them, or point "
        "dataset.root at the folder that holds them."
    )


# torchvision's folder (its class's name) and class names; torchvision itself is imported only
# to download (its addresses and checksums), not to read the files: it costs seconds to import.
MNIST_CLASSES = {
    "MNIST": [
        f"{i} - {w}" for i, w in enumerate("zero one two three four five six seven eight nine".split())
    ],
    "FashionMNIST": "T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag".split()
    + ["Ankle boot"],
}
# torchvision's CIFAR folder and archive names (the archive, kept offline, is unpacked in place)
CIFAR_FOLDERS = {"CIFAR10": "cifar-10-batches-py", "CIFAR100": "cifar-100-python"}
CIFAR_ARCHIVES = {"CIFAR10": "cifar-10-python.tar.gz", "CIFAR100": "cifar-100-python.tar.gz"}


def read_idx(path: Path) -> torch.Tensor:
    """An idx file (already checked by check_idx) as a uint8 tensor of its shape."""
    raw = path.read_bytes()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy())


def _has_files(files: list[str]) -> Callable[[Path], bool]:
    return lambda folder: all((folder / f).is_file() for f in files)


def _mnist_family(name: str, source: str, root: str, download: bool, url: str | None):
    base = Path(root).expanduser()
    below = ["", "raw", f"{source}/raw"]  # the files, or torchvision's <root>/MNIST/raw/

    def unpackable(folder: Path) -> bool:  # each file there, unpacked or as served (.gz), one not unpacked
        there = [(folder / f).is_file() for f in MNIST_FILES]
        served = [(folder / f"{f}.gz").is_file() for f in MNIST_FILES]
        return not all(there) and all(t or s for t, s in zip(there, served, strict=True))

    if packed := first_fit(base, below, unpackable):  # (with some unpacked already: those are kept)
        for file in MNIST_FILES:
            if not (packed / file).is_file():
                extract(packed / f"{file}.gz", packed)
    folder = first_fit(base, below, _has_files(MNIST_FILES))
    if folder is None and download:
        from torchvision import datasets as tv

        cls = getattr(tv, source)
        folder = base / source / "raw"
        for file, md5 in cls.resources:
            if not (folder / file.removesuffix(".gz")).is_file():
                mirror = url or cls.mirrors[0]
                fetch(mirror.rstrip("/") + "/" + file, folder, md5 if url is None else None)
    if folder is None or not _has_files(MNIST_FILES)(folder):
        raise _missing(name, base, below, MNIST_FILES)
    splits, sizes = [], {}
    for p in ("train", "t10k"):
        images, labels = folder / f"{p}-images-idx3-ubyte", folder / f"{p}-labels-idx1-ubyte"
        check_idx(name, images, dims=3)
        check_idx(name, labels, dims=1)
        try:
            splits.append((read_idx(images), read_idx(labels)))
        except Exception as err:
            raise DlbenchError(f"{name}: the files in {folder} are not valid idx files ({err})") from err
        sizes[images.name] = "x".join(map(str, splits[-1][0].shape[1:]))  # height x width
        if len(splits[-1][0]) == 0:  # (a test split of none: trained, and tested on nothing)
            raise DlbenchError(f"{name}: {images} holds no images. Replace it with the official file")
        if 0 in splits[-1][0].shape[1:]:
            raise DlbenchError(
                f"{name}: {images} holds images of {sizes[images.name]}: they have no pixels. "
                "Replace it with the official file (its images are 28x28)"
            )
    for images, labels in splits:
        if len(images) != len(labels):
            raise DlbenchError(f"{name}: {folder} has {len(images)} images but {len(labels)} labels")
    if len(set(sizes.values())) > 1:  # a model trained on one size cannot test on another
        found = " but ".join(f"{file} holds images of {size}" for file, size in sizes.items())
        raise DlbenchError(
            f"{name}: in {folder}, {found}: the training and test images must be the same size "
            "(the official files' are 28x28)"
        )
    return [(images.unsqueeze(1), labels.long()) for images, labels in splits], list(MNIST_CLASSES[source])


def check_idx(name: str, path: Path, dims: int) -> None:
    """An idx file (MNIST's format: 0, 0, type 8 = unsigned bytes, the number of dimensions,
    each dimension as a big-endian int32, then the bytes) must hold what its header says."""
    with path.open("rb") as f:
        header = f.read(4 + 4 * dims)
    size = path.stat().st_size
    if header[:4] == bytes([0, 0, 8, dims]) and len(header) < 4 + 4 * dims:
        raise DlbenchError(f"{name}: {path} is cut short in its header: a download cut short?")
    if len(header) < 4 + 4 * dims or header[:4] != bytes([0, 0, 8, dims]):
        raise DlbenchError(
            f"{name}: {path} is not an idx file of unsigned bytes with {dims} dimension(s) "
            f"(its first bytes are {header[:4].hex(' ') or 'missing'}, expected 00 00 08 {dims:02x}); "
            "a download cut short, or another file under this name"
        )
    shape = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    expected = 4 + 4 * dims + math.prod(shape)
    if size != expected:
        raise DlbenchError(
            f"{name}: {path} is {size} bytes, but its header ({' x '.join(map(str, shape))}) "
            f"says {expected}: the file is {'cut short' if size < expected else 'longer than it should be'}"
        )


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what they hold (numpy arrays, lists, dicts)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # how protocol 5 stores an array (its own bytes)
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> dict:
    """A CIFAR file's dict (a batch, or the meta file of class names), its keys as text."""
    try:
        with path.open("rb") as f:
            batch = _CifarUnpickler(f, encoding="latin1").load()
    except Exception as err:
        raise DlbenchError(f"{path} is not a valid CIFAR batch file ({err})") from err
    if not isinstance(batch, dict):
        raise DlbenchError(
            f"{path} is not a CIFAR batch file: it holds a {type(batch).__name__}, not a dict. "
            "Replace it with the file from the official archive"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _what(batch: dict, key: str) -> str:
    """What a batch holds under `key`, in words, for a message."""
    if key not in batch:
        return f"missing (its keys: {reprlib.repr(list(batch))})"
    value = batch[key]
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of {' x '.join(map(str, value.shape))}"
    return f"a {type(value).__name__}"


def _is_class(label, classes: int) -> bool:
    """Whether a label is a whole number 0..classes-1 (an int or a numpy integer, not a bool)."""
    return isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < classes


def _batch_arrays(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR batch's images (N x 3 x 32 x 32) and labels (N), read from what the batch must
    be: a dict whose `data` is a uint8 array of N rows of 3072 bytes (a 32x32 image's red,
    green and blue planes) and whose `label_key` is a list of N labels 0..classes-1. Anything
    else is one message naming the file and what is wrong."""
    batch = _read_batch(path)
    data, labels = batch.get("data"), batch.get(label_key)
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
    ):
        problem = f"its 'data' is {_what(batch, 'data')}, not a uint8 array of N x 3072 (N images of 3x32x32)"
    elif not isinstance(labels, list):
        problem = f"its '{label_key}' is {_what(batch, label_key)}, not a list of N labels"
    elif len(labels) != len(data):
        problem = f"it has {len(data)} images but {len(labels)} labels"
    elif len(data) == 0:  # (a test batch of none: trained, tested on nothing, exit 0)
        problem = "it holds no images"
    elif bad := [label for label in labels if not _is_class(label, classes)]:
        problem = f"its '{label_key}' list holds {reprlib.repr(bad[0])}, not a class number 0..{classes - 1}"
    else:
        return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)
    raise DlbenchError(
        f"{path} is not a CIFAR batch file: {problem}. Replace it with the file from the official archive"
    )


def _cifar(name: str, hundred: bool, root: str, download: bool, url: str | None):
    source = "CIFAR100" if hundred else "CIFAR10"
    base = Path(root).expanduser()
    train_files = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    meta_file = "meta" if hundred else "batches.meta"
    files = [*train_files, "test", meta_file] if hundred else [*train_files, "test_batch", meta_file]
    below = ["", CIFAR_FOLDERS[source]]  # the batches, or the archive's top folder
    archive = base / CIFAR_ARCHIVES[source]
    if first_fit(base, below, _has_files(files)) is None and archive.is_file():
        extract(archive, base)
    if first_fit(base, below, _has_files(files)) is None and download:
        from torchvision import datasets as tv

        cls = getattr(tv, source)
        fetch(url or cls.url, base, cls.tgz_md5 if url is None else None)
    folder = first_fit(base, below, _has_files(files))
    if folder is None:
        raise _missing(name, base, below, files)
    names_key, label_key = ("fine_label_names", "fine_labels") if hundred else ("label_names", "labels")
    names = _read_batch(folder / meta_file).get(names_key)
    classes = 100 if hundred else 10  # (a meta file of 5,000 names made a model of 5,000 outputs)
    if not isinstance(names, list) or len(names) != classes:
        raise DlbenchError(
            f"{folder / meta_file} has no list of {classes} class names under '{names_key}'. "
            "Replace it with the file from the official archive"
        )

    def load(paths: list[str]):
        batches = [_batch_arrays(folder / p, label_key, len(names)) for p in paths]
        x, y = (np.concatenate(arrays) for arrays in zip(*batches, strict=True))
        return torch.from_numpy(x), torch.from_numpy(y)

    return [load(train_files), load(["test" if hundred else "test_batch"])], [str(n) for n in names]


def _vision_source(name, splits, class_names, image_size, normalize) -> DataSource:
    (x_train, y_train), (x_test, y_test) = splits
    stats = normalization(name, normalize, x_train.shape[1])
    for split, labels in (("train", y_train), ("test", y_test)):
        outside = labels[(labels < 0) | (labels >= len(class_names))]
        if len(outside):  # (which file, and the value: it said "labels outside 0..9 in the files")
            raise DlbenchError(
                f"{name}: the {split} split's labels hold {int(outside[0])}, outside "
                f"0..{len(class_names) - 1}: its label file is damaged or another data set's (replace "
                "it with the file from the official archive)"
            )
    return DataSource(
        train=TensorDataset(preprocess(x_train, image_size, stats), y_train),
        test=TensorDataset(preprocess(x_test, image_size, stats), y_test),
        num_classes=len(class_names),
        class_names=class_names,
        normalization=stats,
    )


def _register(name: str, read, description: str) -> None:
    """Register a data set whose `read(root, download, url)` gives (train, test) and class names."""

    def build(
        root: str = "data",
        download: bool = True,
        # a mirror of the official files (checksums are checked only for the official address)
        url: str | None = None,
        image_size: list[int] | None = None,  # e.g. [32, 32]: resize once when loading
        # dataset (its mean/std) | half (to [-1, 1]) | none | [[means], [stds]]
        normalize: str | list[list[float]] | None = "dataset",
    ) -> DataSource:
        splits, classes = read(root, download, url)
        return _vision_source(name, splits, classes, image_size, normalize)

    build.__doc__ = description
    DATASETS.add(name, build)


_register(
    "mnist",
    functools.partial(_mnist_family, "mnist", "MNIST"),
    "MNIST handwritten digits: 60k/10k grayscale 28x28, 10 classes.",
)
_register(
    "fashion_mnist",
    functools.partial(_mnist_family, "fashion_mnist", "FashionMNIST"),
    "Fashion-MNIST: 60k/10k grayscale 28x28 clothes, 10 classes.",
)
_register(
    "cifar10",
    functools.partial(_cifar, "cifar10", False),
    "CIFAR-10: 50k/10k colour 32x32 images, 10 classes.",
)
_register(
    "cifar100",
    functools.partial(_cifar, "cifar100", True),
    "CIFAR-100: 50k/10k colour 32x32 images, 100 classes.",
)


# Input shape and classes of the built-in image sets, known without reading them (`dlbench show`).
SHAPES = {"mnist": (1, 28, 28, 10), "fashion_mnist": (1, 28, 28, 10), "cifar10": (3, 32, 32, 10)}
SHAPES["cifar100"] = (3, 32, 32, 100)
SHAPES["caltech101"], SHAPES["imagenet"] = (3, 224, 224, 101), (3, 224, 224, 1000)


def known_shape(node: dict) -> tuple[list[int], int] | None:
    """(input shape, classes) of a built-in image set's config node, or None if not one."""
    if node.get("name") not in SHAPES:
        return None
    channels, height, width, classes = SHAPES[node["name"]]
    size = node.get("image_size") or [height, width]
    return [channels, *size], classes
