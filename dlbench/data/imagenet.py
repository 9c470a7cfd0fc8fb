"""Photo collections seed 001 names: Caltech101 (101 classes) and ImageNet (1000 classes).

Both are read from folders of image files (decoded sample by sample, in DataLoader workers:
`dataset.num_workers`), with the usual pipeline for 224 px networks: a training image is a
random crop of 8-100% of its area resized to the image size, flipped at random; an evaluated
image is resized to 256/224 of the size and centre-cropped. Inputs are normalised with
ImageNet's channel statistics, which is what torchvision's pretrained weights expect.
The random crops and flips of a sample depend only on (seed, epoch, index), so a resumed run
sees the same images.
"""

from __future__ import annotations

import functools
import io
import logging
import tarfile
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import datasets as tv
from torchvision.transforms import v2

from dlbench.data.base import DataSource
from dlbench.data.class_folders import ClassFolders
from dlbench.data.download import extract, fetch
from dlbench.data.folders import describe, first_fit, has_class_folders, has_images, is_image
from dlbench.data.image_folder import drop_bad_images
from dlbench.data.images import checked_size, open_image
from dlbench.data.transforms import Augmented, normalization
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS

log = logging.getLogger("dlbench")

CALTECH_FOLDER = "101_ObjectCategories"
CALTECH_ARCHIVE = CALTECH_FOLDER + ".tar.gz"
CALTECH_BACKGROUND = "BACKGROUND_Google"  # clutter, not a category: left out, as torchvision does
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DATA = "ILSVRC2012_devkit_t12/data"  # meta.mat and the val labels, inside the devkit


def photo_transform(size: list[int], stats, train: bool) -> v2.Compose:
    """A PIL image -> a normalised tensor: random-resized crop and flip for training, resize to
    256/224 of the size and centre crop for evaluation."""
    if train:
        steps = [v2.RandomResizedCrop(list(size), antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [v2.Resize(round(min(size) * 256 / 224), antialias=True), v2.CenterCrop(list(size))]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if stats is not None:
        steps.append(v2.Normalize(*stats))
    return v2.Compose(steps)


def read_folder(folder: Path, name: str, check_images: bool, bad_images: str, max_bad: float, **kwargs):
    """An ImageFolder over `folder`, every file decoded first with check_images."""
    if bad_images not in ("fail", "skip"):
        raise DlbenchError(f"dataset.bad_images={bad_images}: choose fail or skip")
    try:
        images = ClassFolders(folder, what=name, loader=open_image, **kwargs)
    except (FileNotFoundError, RuntimeError) as err:
        raise DlbenchError(f"{name}: {folder}: {err}") from err
    return drop_bad_images(images, bad_images, max_bad) if check_images else images


# ---- Caltech101 --------------------------------------------------------------------------------
def find_caltech(base: Path) -> Path | None:
    """The folder of Caltech's class folders: root/101_ObjectCategories (also below caltech101/,
    torchvision's folder, or caltech-101/, the archive's), or root itself. The tar.gz of the
    categories, found in one of those places, is unpacked first."""
    below = [CALTECH_FOLDER, f"caltech101/{CALTECH_FOLDER}", f"caltech-101/{CALTECH_FOLDER}"]
    for folder in (base, base / "caltech101", base / "caltech-101"):
        if (folder / CALTECH_ARCHIVE).is_file() and not (folder / CALTECH_FOLDER).is_dir():
            extract(folder / CALTECH_ARCHIVE, folder)
    return first_fit(base, [*below, ""], has_class_folders)


@DATASETS.register("caltech101")
def caltech101(
    root: str = "data",
    download: bool = True,
    # an archive holding 101_ObjectCategories/ (null: torchvision's download, from Google Drive)
    url: str | None = None,
    image_size: list[int] = (224, 224),
    normalize: str | list[list[float]] | None = "dataset",  # dataset: ImageNet's statistics
    bad_images: str = "fail",  # a file that does not decode: fail (naming it) | skip (leave it out)
    max_bad_fraction: float = 0.01,  # with skip: more unreadable files than this share is an error
    check_images: bool = True,  # decode every file at start (9,144 files: seconds)
) -> DataSource:
    """Caltech101: 9,144 photos of 101 object categories in torchvision's layout,
    root/caltech101/101_ObjectCategories/<class>/*.jpg (root may also be 101_ObjectCategories
    itself or the folder above it). BACKGROUND_Google is left out, as torchvision does. It ships
    no splits: train, val and test are carved, stratified by class (dataset.test_fraction,
    dataset.val_fraction). Images are resized and centre-cropped to image_size; add random
    flips with dataset.augment.hflip=0.5."""
    image_size = checked_size("caltech101", image_size)
    base = Path(root).expanduser()
    folder = find_caltech(base)
    if folder is None and download:
        if url is not None:
            fetch(url, base)
            find_caltech(base)  # a zip holding the categories' tar.gz: unpack that too
        else:
            try:
                tv.Caltech101(str(base), target_type="category", download=True)
            except Exception as err:  # Google Drive refuses, gdown missing, no network
                raise DlbenchError(
                    f"caltech101: torchvision could not download it into {base / 'caltech101'} ({err}). "
                    f"Download {CALTECH_ARCHIVE} yourself and put it there, or give an address with "
                    "dataset.url"
                ) from err
        folder = find_caltech(base)
    if folder is None:
        raise DlbenchError(
            f"caltech101: {describe(base)}; expected {base}/caltech101/{CALTECH_FOLDER}/<class>/<images> "
            f"(or {CALTECH_FOLDER}/ itself, or {CALTECH_ARCHIVE}). Use dataset.download=true, or point "
            "dataset.root at the folder that holds it"
        )
    stats = normalization("caltech101", normalize, 3)
    images = read_folder(
        folder,
        "caltech101",
        check_images,
        bad_images,
        max_bad_fraction,
        leave_out=(CALTECH_BACKGROUND,),
        transform=photo_transform(list(image_size), stats, train=False),
    )
    classes = list(images.classes)
    return DataSource(images, num_classes=len(classes), class_names=classes, normalization=stats)


# ---- ImageNet ----------------------------------------------------------------------------------
class LabelledFiles(Dataset):
    """Image files with their labels given apart (ImageNet's val/ as one flat folder)."""

    def __init__(self, files: list[Path], labels: list[int], transform):
        self.files, self.targets, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(open_image(self.files[i])), self.targets[i]


def read_devkit(folder: Path) -> tuple[dict[str, str], list[str]] | None:
    """ImageNet's class names by wnid and the wnids of the val images in file order, from
    torchvision's meta.bin or from the devkit archive itself; None when neither is there."""
    if (folder / "meta.bin").is_file():  # what torchvision.datasets.ImageNet writes
        from dlbench.engine.checkpoint import check_declared_sizes

        check_declared_sizes(folder / "meta.bin")
        try:
            wnid_to_classes, val_wnids = torch.load(folder / "meta.bin", weights_only=True)
        except Exception as err:
            raise DlbenchError(
                f"imagenet: {folder / 'meta.bin'} is not torchvision's meta file ({err})"
            ) from err
        names = {w: c[0] if isinstance(c, (tuple, list)) else str(c) for w, c in wnid_to_classes.items()}
        return names, list(val_wnids)
    if not (folder / DEVKIT).is_file():
        return None
    from scipy.io import loadmat

    try:
        with tarfile.open(folder / DEVKIT) as tar:
            meta = tar.extractfile(f"{DEVKIT_DATA}/meta.mat").read()
            truth = tar.extractfile(f"{DEVKIT_DATA}/ILSVRC2012_validation_ground_truth.txt").read()
        synsets = loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    except (tarfile.TarError, KeyError, OSError, ValueError, AttributeError) as err:
        raise DlbenchError(f"imagenet: {folder / DEVKIT} is not ImageNet's devkit ({err})") from err
    leaves = [s for s in synsets if int(s["num_children"]) == 0]  # the 1000 classes
    ids = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
    names = {str(s["WNID"]): str(s["words"]).split(", ")[0] for s in leaves}
    return names, [ids[int(line)] for line in truth.decode().split()]


def read_synset_mapping(folder: Path) -> dict[str, str] | None:
    """Kaggle's LOC_synset_mapping.txt: `n01440764 tench, Tinca tinca` per line."""
    path = folder / "LOC_synset_mapping.txt"
    if not path.is_file():
        return None
    lines = [line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {wnid: words.split(", ")[0] for wnid, words in lines}


@DATASETS.register("imagenet")
def imagenet(
    root: str = "data/imagenet",
    image_size: list[int] = (224, 224),
    normalize: str | list[list[float]] | None = "dataset",  # dataset: ImageNet's statistics
    bad_images: str = "fail",  # a file that does not decode: fail (naming it) | skip (leave it out)
    max_bad_fraction: float = 0.01,  # with skip: more unreadable files than this share is an error
    check_images: bool = False,  # decode all 1.3M files at start first (slow): else when met
) -> DataSource:
    """ImageNet (ILSVRC 2012) in the standard layout: root/train/<wnid>/*.JPEG and
    root/val/<wnid>/*.JPEG (root may be the folder above). val/ may also be one flat folder, as
    the archive unpacks, when the devkit (ILSVRC2012_devkit_t12.tar.gz, or torchvision's
    meta.bin) lies beside train/ to label it. Class names come from the devkit or Kaggle's
    LOC_synset_mapping.txt when present, else they are the wnids. val/ is the test split (its
    labels are public; ImageNet's test labels are not): evaluate on it each epoch with
    dataset.validate_on=test. dlbench does not download ImageNet (it needs a registration)."""
    image_size = checked_size("imagenet", image_size)
    base = Path(root).expanduser()
    folder = first_fit(base, ["", "imagenet"], lambda f: (f / "train").is_dir())
    if folder is None:
        raise DlbenchError(
            f"imagenet: {describe(base)}; expected {base}/train/<wnid>/<images> and {base}/val/... "
            "(the ILSVRC2012 archives unpacked: torchvision.datasets.ImageNet(root, split='train') does it)"
        )
    stats = normalization("imagenet", normalize, 3)
    read = functools.partial(read_folder, name="imagenet", check_images=check_images, bad_images=bad_images)
    # the train split's random crops run through Augmented: drawn from (seed, epoch, index)
    train_images = read(folder / "train", max_bad=max_bad_fraction)
    train = Augmented(train_images, photo_transform(list(image_size), stats, train=True))
    wnids = list(train_images.classes)
    devkit = read_devkit(folder)
    evaluate = photo_transform(list(image_size), stats, train=False)
    test = None
    if (folder / "val").is_dir() and has_class_folders(folder / "val"):
        test = read(folder / "val", max_bad=max_bad_fraction, transform=evaluate)
        if test.classes != wnids:
            raise DlbenchError(
                f"imagenet: {folder / 'val'} has {len(test.classes)} class folders that differ from "
                f"train/'s {len(wnids)}"
            )
    elif (folder / "val").is_dir() and has_images(folder / "val"):
        files = sorted(p for p in (folder / "val").iterdir() if is_image(p))
        if devkit is None or len(devkit[1]) != len(files):
            found = "no devkit" if devkit is None else f"a devkit labelling {len(devkit[1])} images"
            raise DlbenchError(
                f"imagenet: {folder / 'val'} holds {len(files)} images and no class folders, and there "
                f"is {found}; expected val/<wnid>/<images>, or {DEVKIT} (or meta.bin) beside train/ "
                "to label the flat val/ folder"
            )
        index = {w: i for i, w in enumerate(wnids)}
        unknown = sorted(set(devkit[1]) - set(index))
        if unknown:
            raise DlbenchError(f"imagenet: the devkit labels val images {unknown[0]}, which train/ lacks")
        test = LabelledFiles(files, [index[w] for w in devkit[1]], evaluate)
    names = (devkit[0] if devkit else None) or read_synset_mapping(folder) or {}
    class_names = [names.get(w, w) for w in wnids]
    log.info(f"imagenet: {len(train_images)} training images of {len(wnids)} classes in {folder}")
    return DataSource(train, test=test, num_classes=len(wnids), class_names=class_names, normalization=stats)
