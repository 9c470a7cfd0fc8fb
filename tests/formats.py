"""Tiny data sets written in the official formats, for the loaders to read for real."""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

MNIST_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_images(images: np.ndarray) -> bytes:
    """An idx file of N x height x width images (MNIST's train-images-idx3-ubyte format)."""
    n, h, w = images.shape
    return struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is readable (a bright bar whose row is the label), so a model can learn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 30, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def write_mnist(
    root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20, gz: bool = False
) -> Path:
    """root/<folder>/raw/ with the four idx files (or their .gz, as the download serves them)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = mnist_arrays(n, seed)
        for name, payload in zip(MNIST_NAMES[split], (idx_images(images), _idx_labels(labels)), strict=True):
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (raw / name).write_bytes(payload)
    return raw


def write_cifar(root: Path, hundred: bool = False, per_batch: int = 20) -> Path:
    """root/cifar-10-batches-py (or cifar-100-python) with pickled batches, as the archive has."""
    classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(n: int) -> dict:
        labels = [int(i % classes) for i in range(n)]
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        key = "fine_labels" if hundred else "labels"
        return {"data": data, key: labels, "batch_label": "tiny", "filenames": [f"{i}.png" for i in range(n)]}

    if hundred:
        files = {"train": batch(per_batch * 5), "test": batch(per_batch)}
        meta = {"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": ["c"] * 20}
        files["meta"] = meta
    else:
        files = {f"data_batch_{i}": batch(per_batch) for i in range(1, 6)}
        files["test_batch"] = batch(per_batch)
        files["batches.meta"] = {
            "label_names": [f"class{i}" for i in range(10)],
            "num_cases_per_batch": per_batch,
        }
    for name, content in files.items():
        with (folder / name).open("wb") as f:
            pickle.dump(content, f, protocol=2)
    return folder


def tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def write_image_folder(
    root: Path, splits=("train", "test"), classes=("cat", "dog"), per_class: int = 6
) -> Path:
    """root/<split>/<class>/*.png: dark images for the first class, bright for the second."""
    for split in splits:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                value = 40 + 160 * c + i
                Image.new("RGB", (20, 16), (value, value, value)).save(folder / f"{i}.png")
    return root


def draw_digit_png(path: Path, size: int = 90) -> Path:
    """A black bar on white paper, the way a user draws a digit for seed 002's predict()."""
    image = Image.new("L", (size, size), 255)
    pixels = image.load()
    for y in range(int(size * 0.4), int(size * 0.5)):
        for x in range(int(size * 0.15), int(size * 0.85)):
            pixels[x, y] = 0
    image.save(path)
    return path


NAMES = {  # a few real surnames per language, as in the char-RNN tutorial's files
    "English": [
        "Smith",
        "Jones",
        "Taylor",
        "Brown",
        "Williams",
        "Wilson",
        "Johnson",
        "Davies",
        "Jane",
        "Daniel",
    ],
    "Korean": ["Choi", "Kim", "Park", "Lee", "Chung", "Kang", "Cho", "Yoon", "Jang", "Chow"],
    "Polish": [
        "Ślusàrski",
        "Kowalski",
        "Nowak",
        "Wójcik",
        "Lewandowski",
        "Zieliński",
        "Szymański",
        "Woźniak",
    ],
}


def write_names(root: Path, names: dict[str, list[str]] = NAMES) -> Path:
    """root/names/<Language>.txt, UTF-8, one name per line (the tutorial's layout)."""
    folder = root / "names"
    folder.mkdir(parents=True, exist_ok=True)
    for language, items in names.items():
        (folder / f"{language}.txt").write_text("\n".join(items) + "\n", encoding="utf-8")
    return folder


def zip_folder(folder: Path, archive: Path, arcroot: str) -> Path:
    """A zip holding folder's files under arcroot/ (the tutorial's data.zip has data/names/)."""
    import zipfile

    with zipfile.ZipFile(archive, "w") as z:
        for file in sorted(folder.rglob("*")):
            z.write(file, f"{arcroot}/{file.relative_to(folder.parent)}")
    return archive


PAIRS = [
    ("I am cold.", "J'ai froid."),
    ("I am tired.", "Je suis fatigué."),
    ("He is tall.", "Il est grand."),
    ("She is happy.", "Elle est heureuse."),
    ("You are late.", "Vous êtes en retard."),
    ("We are here.", "Nous sommes ici."),
    ("They are old.", "Ils sont vieux."),
    ("Go!", "Va !"),  # no English prefix: filtered out
    ("I am very very very very very very tired.", "Je suis très très très très très très fatigué."),
]


def write_pairs(path: Path, pairs=PAIRS) -> Path:
    """English<TAB>French lines, the translation tutorial's eng-fra.txt format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{a}\t{b}\n" for a, b in pairs), encoding="utf-8")
    return path


def write_paired(root: Path, archive: str = "facades", size: int = 32, per_split: int = 4) -> Path:
    """root/<archive>/{train,val,test}/*.jpg: A (left) and B (right) side by side, as pix2pix's."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        folder = root / archive / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_split):
            a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            b = 255 - a  # B is the negative of A: a mapping a generator can learn
            Image.fromarray(np.concatenate([a, b], axis=1)).save(folder / f"{i}.png")
    return root / archive


def write_unpaired(root: Path, archive: str = "horse2zebra", size: int = 32, per_split: int = 4) -> Path:
    """root/<archive>/{trainA,trainB,testA,testB}/*.png: dark images in A, bright ones in B."""
    rng = np.random.default_rng(1)
    for split in ("trainA", "trainB", "testA", "testB"):
        folder = root / archive / split
        folder.mkdir(parents=True, exist_ok=True)
        low, high = (0, 120) if split.endswith("A") else (130, 255)
        for i in range(per_split):
            Image.fromarray(rng.integers(low, high, (size, size, 3), dtype=np.uint8)).save(
                folder / f"{i}.png"
            )
    return root / archive


def _jpegs(folder: Path, n: int, shade: int, size=(40, 30), start: int = 0, prefix: str = "image_") -> None:
    """n small JPEG photos of one shade (a class a model can tell apart), named as the sets name them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shade)
    for i in range(start, start + n):
        pixels = np.clip(rng.normal(shade, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{prefix}{i + 1:04d}.jpg")


CALTECH_CLASSES = ("Faces_easy", "accordion", "airplanes")


def write_caltech(root: Path, per_class: int = 10) -> Path:
    """root/caltech101/101_ObjectCategories/<class>/image_NNNN.jpg (torchvision's layout), with
    the BACKGROUND_Google clutter folder that is not a class."""
    folder = root / "caltech101" / "101_ObjectCategories"
    for c, name in enumerate((*CALTECH_CLASSES, "BACKGROUND_Google")):
        _jpegs(folder / name, per_class, 40 + 60 * c)
    return folder


IMAGENET_WNIDS = ("n01440764", "n01443537", "n01484850")  # tench, goldfish, great white shark
IMAGENET_WORDS = ("tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark, white shark")


def write_imagenet(root: Path, per_class: int = 6, val_per_class: int = 2, flat_val: bool = False) -> Path:
    """root/imagenet/train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (the standard layout); with
    flat_val, val/ is one folder of ILSVRC2012_val_NNNNNNNN.JPEG files as the archive unpacks,
    labelled by a tiny devkit (ILSVRC2012_devkit_t12.tar.gz: data/meta.mat and the val ground
    truth) beside train/."""
    base = root / "imagenet"
    for c, wnid in enumerate(IMAGENET_WNIDS):
        _jpegs(base / "train" / wnid, per_class, 40 + 80 * c, prefix=f"{wnid}_")
    if not flat_val:
        for c, wnid in enumerate(IMAGENET_WNIDS):
            _jpegs(base / "val" / wnid, val_per_class, 40 + 80 * c, prefix="ILSVRC2012_val_")
        return base
    labels = [c for c in range(len(IMAGENET_WNIDS)) for _ in range(val_per_class)]
    for i, c in enumerate(labels):
        _jpegs(base / "val", 1, 40 + 80 * c, start=i, prefix="ILSVRC2012_val_0000")
    write_devkit(base, [c + 1 for c in labels])
    return base


def write_devkit(folder: Path, val_ids: list[int]) -> Path:
    """ILSVRC2012_devkit_t12.tar.gz: meta.mat (synsets: the leaf classes, and one parent with
    children that is not a class) and the val images' 1-based class ids."""
    import io

    from scipy.io import savemat

    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    rows = [
        (i + 1, w, words, "", 0)
        for i, (w, words) in enumerate(zip(IMAGENET_WNIDS, IMAGENET_WORDS, strict=True))
    ]
    rows.append((1001, "n00000001", "fish", "", 3))  # an inner node of the hierarchy
    synsets = np.array(rows, dtype=fields)
    meta, truth = io.BytesIO(), "\n".join(map(str, val_ids)).encode() + b"\n"
    savemat(meta, {"synsets": synsets})
    archive = folder / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, payload in (
            ("meta.mat", meta.getvalue()),
            ("ILSVRC2012_validation_ground_truth.txt", truth),
        ):
            info = tarfile.TarInfo(f"ILSVRC2012_devkit_t12/data/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive
