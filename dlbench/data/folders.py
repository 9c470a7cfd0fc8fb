"""Finding a data set where users keep it.

`dataset.root` may name the folder that holds the data, its parent, or the top folder an
archive unpacks to; each data set lists the places its files can be below the root and takes
the first that has them. When none has, the message says what the root holds and what was
expected there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def first_fit(root: Path, below: Iterable[str], fits: Callable[[Path], bool]) -> Path | None:
    """The first of root/<b> for each b in `below` ("" is the root itself) that `fits`."""
    for sub in below:
        folder = root / sub if sub else root
        if folder.is_dir() and fits(folder):
            return folder
    return None


def describe(folder: Path, limit: int = 8) -> str:
    """What a folder holds, in a few words for an error message."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    entries = sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name))
    if not entries:
        return f"{folder} is empty"
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:limit]]
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return f"{folder} holds {', '.join(names)}{more}"


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def has_images(folder: Path) -> bool:
    """Whether a folder holds an image file directly."""
    return any(is_image(p) for p in folder.iterdir())


def class_folders(folder: Path) -> list[Path]:
    """The subfolders of `folder` that hold images directly: the classes of an ImageFolder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and has_images(p))


def has_class_folders(folder: Path) -> bool:
    return bool(class_folders(folder))


def only_subfolder(folder: Path) -> str | None:
    """The name of the single folder inside `folder` (an archive's top folder), or None."""
    if not folder.is_dir():
        return None
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0].name if len(entries) == 1 and entries[0].is_dir() else None
