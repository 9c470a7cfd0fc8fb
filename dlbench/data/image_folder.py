"""The image_folder data set: any tree of image files, one folder per class (with or without
train/, val/, test/ folders), read through ClassFolders (class_folders.py), its unreadable files
found when the run starts."""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import torch

from dlbench.data.base import DataSource
from dlbench.data.folders import describe, has_class_folders, only_subfolder
from dlbench.data.images import bad_images, checked_size, open_image
from dlbench.data.transforms import normalization
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS
from dlbench.terminal import counted

log = logging.getLogger("dlbench")


@DATASETS.register("image_folder")
def image_folder(
    root: str = "data/images",
    image_size: list[int] = (64, 64),
    grayscale: bool = False,
    normalize: str | list[list[float]] | None = "half",
    # a file that is not a readable image: fail (stop, naming it) | skip (leave it out)
    bad_images: str = "fail",
    # with skip: more unreadable files than this share of a split is still an error
    max_bad_fraction: float = 0.01,
    # decode every file at start (false: a bad file stops the run when a batch meets it)
    check_images: bool = True,
) -> DataSource:
    """Any root/<split>/<class>/*.jpg|png tree (torchvision ImageFolder): train/, and val/ and
    test/ when present (carved from train/ otherwise); or root/<class>/*.jpg, one folder per
    class, from which train, val and test are carved (stratified). root may also be the folder
    that holds either of these (an archive's single top folder).

    Every file is decoded when the run starts (`check_images`). A file that does not decode (cut
    short, not an image) stops the run with its name (`bad_images=fail`), or is left out
    (`bad_images=skip`, counted; more than `max_bad_fraction` of a split is still an error).
    With check_images=false a bad file stops the run, named, when a batch meets it."""
    from torchvision.transforms import v2

    image_size = checked_size("image_folder", image_size)
    base, split_folders = image_root(Path(root).expanduser(), "image_folder")
    channels = 1 if grayscale else 3
    stats = normalization("image_folder", normalize, channels)
    steps = [v2.Grayscale(1)] if grayscale else [v2.RGB()]
    steps += [
        v2.ToImage(),
        v2.Resize(list(image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
    ]
    if stats is not None:
        steps.append(v2.Normalize(*stats))
    transform = v2.Compose(steps)

    if bad_images not in ("fail", "skip"):
        raise DlbenchError(f"dataset.bad_images={bad_images}: choose fail or skip")

    def load(split: str):
        folder = base / split if split_folders else base
        if not folder.is_dir():
            return None
        loader = functools.partial(open_image, mode="L" if grayscale else "RGB")
        try:
            from dlbench.data.class_folders import ClassFolders

            images = ClassFolders(folder, transform=transform, loader=loader)
        except (FileNotFoundError, RuntimeError) as err:
            raise DlbenchError(f"image_folder: {folder}: {err}") from err
        if not check_images:
            return images
        return drop_bad_images(images, bad_images, max_bad_fraction, "L" if grayscale else "RGB")

    train = load("train")
    val, test = (load("val"), load("test")) if split_folders else (None, None)
    for split in (val, test):
        if split is not None and split.classes != train.classes:
            raise DlbenchError(
                f"image_folder: {split.root} has classes {split.classes}, train/ has {train.classes}"
            )
    return DataSource(
        train, val, test, num_classes=len(train.classes), class_names=list(train.classes), normalization=stats
    )


def image_root(base: Path, name: str) -> tuple[Path, bool]:
    """Where an image tree is, and whether it has split folders: base/train/<class>/ (True) or
    base/<class>/ (False), in base or in its single subfolder (an archive's top folder)."""
    inner = only_subfolder(base)
    for folder in (base, *([base / inner] if inner else [])):
        if (folder / "train").is_dir():
            return folder, True
        if has_class_folders(folder):
            return folder, False
    raise DlbenchError(
        f"{name}: {describe(base)}; expected {base}/train/<class>/<images> (with val/ and test/ "
        f"if you have them) or one folder of images per class, {base}/<class>/<images>"
    )


def drop_bad_images(folder, policy: str, max_fraction: float, mode: str = "RGB"):
    """Decode every image file of an ImageFolder (into `mode`, as its loader will); fail on a
    bad one, or leave them out (and then every class must still have a file)."""
    bad = bad_images((path for path, _ in folder.samples), mode)
    if not bad:
        return folder
    first = min(bad)
    if policy == "fail":
        share = math.ceil(len(bad) * 100 / len(folder.samples)) / 100  # (the skip alone was over its limit)
        over = len(bad) / len(folder.samples) > max_fraction
        allowed = f" dataset.max_bad_fraction={share}" if over else ""
        more = f" (and {counted(len(bad) - 1, 'other file')})" if len(bad) > 1 else ""
        raise DlbenchError(
            f"image_folder: {first} is not a readable image ({bad[first]}){more}. "
            f"Remove it, or leave such files out with dataset.bad_images=skip{allowed}"
        )
    if len(bad) / len(folder.samples) > max_fraction:  # (as the hint above computes it: 29 of 50 is 0.58)
        raise DlbenchError(
            f"image_folder: {len(bad)} of {len(folder.samples)} files in {folder.root} are not readable "
            f"images (more than dataset.max_bad_fraction={max_fraction}); the first: {first}"
        )
    log.warning(f"image_folder: left out {len(bad)} unreadable file(s) in {folder.root}, e.g. {first}")
    folder.samples = folder.imgs = [(p, label) for p, label in folder.samples if p not in bad]
    folder.targets = [label for _, label in folder.samples]
    for label, name in enumerate(folder.classes):
        if label not in folder.targets:
            raise DlbenchError(
                f"image_folder: {Path(folder.root) / name} has no readable image left "
                "(every file in it was left out as unreadable)"
            )
    return folder
