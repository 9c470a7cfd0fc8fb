"""Finding a data set where users keep it.

`dataset.root` may name the folder that holds the data, its parent, or the top folder an
archive unpacks to; each data set lists the places its files can be below the root and takes
the first that has them. When none has, the message says what the root holds and what was
expected there.

Folders are walked following symbolic links (users link their photos in), each real folder and
file once: a link that leads back into the folder being walked (a loop) or a file reached by two
paths stops the run, naming both, instead of counting the same images many times.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from dlbench.errors import DlbenchError

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
    """An image file that is data: not hidden (macOS's `._x.jpg` beside each image)."""
    return not path.name.startswith(".") and path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def has_images(folder: Path) -> bool:
    """Whether a folder holds an image file directly."""
    return any(is_image(p) for p in folder.iterdir())


def class_folders(folder: Path) -> list[Path]:
    """The subfolders of `folder` that hold images directly: the classes of an ImageFolder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir() and has_images(p))


def has_class_folders(folder: Path) -> bool:
    return bool(class_folders(folder))


def only_subfolder(folder: Path) -> str | None:
    """The name of the single folder inside `folder` (an archive's top folder), or None."""
    if not folder.is_dir():
        return None
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return entries[0].name if len(entries) == 1 and entries[0].is_dir() else None


def walk_files(folder: Path, what: str, seen_files: dict[str, Path] | None = None) -> list[Path]:
    """Every file below `folder`, sorted, following links to folders: each real folder and
    each real file once (a loop, or a file reached twice, is one DlbenchError naming both).
    `seen_files` (real path -> path) carries on across several walks (the classes of a split).
    Hidden entries (`.ipynb_checkpoints/`, macOS's `._x.jpg`) are not data: passed over."""
    files: list[Path] = []
    seen_files = {} if seen_files is None else seen_files

    def walk(current: Path, ancestors: dict[str, Path]) -> None:
        for entry in sorted(os.scandir(current), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            real = os.path.realpath(path)
            if entry.is_dir():  # (follows a link)
                if real in ancestors:
                    raise DlbenchError(
                        f"{what}: {path} leads back to {ancestors[real]} (a loop of symbolic links): "
                        "each image is read once; remove the link"
                    )
                walk(path, {**ancestors, real: path})
            elif entry.is_file():
                if real in seen_files:
                    raise DlbenchError(
                        f"{what}: {seen_files[real]} and {path} are the same file ({real}): each image "
                        "is read once, under one class; remove one of them"
                    )
                seen_files[real] = path
                files.append(path)

    walk(folder, {os.path.realpath(folder): folder})
    return files


def check_distinct(files: list[Path], what: str) -> list[Path]:
    """A flat list of files (one folder's), each a different real file."""
    seen: dict[str, Path] = {}
    for path in files:
        real = os.path.realpath(path)
        if real in seen:
            raise DlbenchError(
                f"{what}: {seen[real]} and {path} are the same file ({real}): each is read once; remove one"
            )
        seen[real] = path
    return files
