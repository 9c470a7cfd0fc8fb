"""Image-to-image data: paired (pix2pix: A and B side by side in one file) and unpaired
(CycleGAN: trainA/ trainB/ testA/ testB/). Images are scaled to [-1, 1] (a tanh generator's range).

Both download their archive by name (`dataset.archive=facades`, `horse2zebra`, ...) from the authors' servers
into `root` on first use, or read the folder already there (`download=false`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dlbench.data.base import DataSource
from dlbench.data.download import extract, fetch
from dlbench.data.folders import check_distinct, describe, first_fit
from dlbench.data.images import checked_size, open_image
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/"  # + <archive>.tar.gz
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/"  # + <archive>.zip
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def image_files(folder: Path) -> list[Path]:
    """A folder's image files, each a different real file; hidden ones (`._x.jpg`) are no data."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")]
    return check_distinct(sorted(found), str(folder))


def read_image(path: Path) -> torch.Tensor:
    """An RGB file as a float tensor in [0, 1], or one clear error naming the file."""
    return v2.functional.to_dtype(v2.functional.to_image(open_image(path)), torch.float32, scale=True)


def locate(root: str, name: str, download: bool, url: str, marker: str) -> Path:
    """The folder holding `marker` (a split folder): root/name (root is the parent) or root itself
    (root is the data set's folder); else root/<name>.tar.gz or .zip unpacked if it is there, or
    url + name + suffix downloaded and unpacked, if asked."""
    base = Path(root).expanduser()
    fits = lambda folder: (folder / marker).is_dir()  # noqa: E731
    suffix = ".zip" if marker == "trainA" else ".tar.gz"  # how each project packs its sets
    folder = first_fit(base, [name, ""], fits)
    if folder is None and (base / (name + suffix)).is_file():  # the archive, kept offline
        extract(base / (name + suffix), base)
        folder = first_fit(base, [name, ""], fits)
    if folder is None and download:
        fetch(url.rstrip("/") + "/" + name + suffix, base)
        folder = first_fit(base, [name, ""], fits)
    if folder is None:
        raise DlbenchError(
            f"{name}: no {marker}/ folder: {describe(base)}. Expected {base / name / marker}/ or "
            f"{base / marker}/. Use dataset.download=true, or point dataset.root at the folder that "
            f"holds {marker}/"
        )
    return folder


def jitter(size: list[int]) -> v2.Compose:
    """pix2pix's random jitter: resize to 286/256 of the size, random crop back, random flip
    (the same crop and flip for every image passed in one call)."""
    big = [round(s * 286 / 256) for s in size]
    return v2.Compose([v2.Resize(big, antialias=True), v2.RandomCrop(size), v2.RandomHorizontalFlip()])


class PairedImages(Dataset):
    """Files holding A | B side by side -> (A, B) in [-1, 1], jittered alike when training."""

    def __init__(self, files: list[Path], size: list[int], direction: str, train: bool):
        self.files, self.size, self.direction = files, list(size), direction
        self.jitter = jitter(self.size) if train else None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_image(self.files[i])
        half = image.shape[-1] // 2
        if half == 0:  # (torch's "shape '[3, 256, 256]' is invalid for input of size 0")
            raise DlbenchError(f"{self.files[i]} is 1 pixel wide: a pair is A and B side by side")
        a, b = (
            v2.functional.resize(x, self.size, antialias=True) for x in (image[..., :half], image[..., half:])
        )
        if self.jitter is not None:
            a, b = self.jitter(v2.functional.to_image(a), v2.functional.to_image(b))
        a, b = a.as_subclass(torch.Tensor) * 2 - 1, b.as_subclass(torch.Tensor) * 2 - 1
        return (a, b) if self.direction == "AtoB" else (b, a)


# x * 2 - 1, the images' [0, 1] to the generators' [-1, 1] (tanh), as (mean, std) per channel: the
# run's data facts say it (export writes it for a model used elsewhere)
TO_PLUS_MINUS_ONE = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


class UnpairedImages(Dataset):
    """Images of domain A and of domain B, no correspondence: item i is the i-th A image
    (cycling) and a random B image; random crop and flip when training (CycleGAN)."""

    def __init__(self, a: list[Path], b: list[Path], size: list[int], train: bool):
        self.a, self.b, self.size = a, b, list(size)
        self.jitter = jitter(self.size) if train else None

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def load(self, path: Path) -> torch.Tensor:
        x = v2.functional.resize(read_image(path), self.size, antialias=True)
        if self.jitter is not None:
            x = self.jitter(v2.functional.to_image(x)).as_subclass(torch.Tensor)
        return x * 2 - 1

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = int(torch.randint(len(self.b), ())) if self.jitter is not None else i % len(self.b)
        return self.load(self.a[i % len(self.a)]), self.load(self.b[j])


@DATASETS.register("paired_images")
def paired_images(
    archive: str = "facades",
    root: str = "data",
    download: bool = True,
    url: str = PIX2PIX_URL,  # + <archive>.tar.gz
    image_size: list[int] = (256, 256),
    direction: str = "BtoA",  # facades: label map (B) -> photo (A)
) -> DataSource:
    """pix2pix data: root/<archive>/{train,val,test}/*.jpg (or root/{train,val,test}/ when root is
    the archive's folder), each file A and B side by side; direction AtoB or BtoA (facades: BtoA
    turns label maps into photos)."""
    if direction not in ("AtoB", "BtoA"):
        raise DlbenchError(f"dataset.direction={direction}: choose AtoB or BtoA")
    image_size = checked_size(archive, image_size)
    folder = locate(root, archive, download, url, "train")
    splits = {s: image_files(folder / s) for s in ("train", "val", "test")}
    if not splits["train"]:
        raise DlbenchError(
            f"{archive}: no images in {folder / 'train'}: {describe(folder / 'train')}; expected "
            "image files (.jpg, .png), each A and B side by side"
        )
    made = {s: PairedImages(f, image_size, direction, s == "train") if f else None for s, f in splits.items()}
    return DataSource(made["train"], made["val"], made["test"], normalization=TO_PLUS_MINUS_ONE)


@DATASETS.register("unpaired_images")
def unpaired_images(
    archive: str = "horse2zebra",
    root: str = "data",
    download: bool = True,
    url: str = CYCLEGAN_URL,  # + <archive>.zip
    image_size: list[int] = (256, 256),
) -> DataSource:
    """CycleGAN data: root/<archive>/{trainA,trainB,testA,testB}/ images of two domains (or
    root/trainA/ ... when root is the archive's folder)."""
    image_size = checked_size(archive, image_size)
    folder = locate(root, archive, download, url, "trainA")
    files = {s: image_files(folder / s) for s in ("trainA", "trainB", "testA", "testB")}
    for split in ("trainA", "trainB"):
        if not files[split]:
            raise DlbenchError(
                f"{archive}: no images in {folder / split}: {describe(folder / split)}; expected image "
                "files (.jpg, .png)"
            )
    test = None
    if files["testA"] and files["testB"]:
        test = UnpairedImages(files["testA"], files["testB"], image_size, train=False)
    train = UnpairedImages(files["trainA"], files["trainB"], image_size, train=True)
    return DataSource(train, test=test, normalization=TO_PLUS_MINUS_ONE)
