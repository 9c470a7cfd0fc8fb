"""Fetching a data set's archive: one place that turns any download failure into one message,
and extracts archives safely: no member lands outside the data folder (no absolute paths, no
`..`, no links out of it), and nothing is written through a link already in that folder (an
archive is unpacked into a new folder, whose entries are then moved into place)."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from dlbench import rundir
from dlbench.errors import DlbenchError


def fetch(url: str, folder: Path, md5: str | None = None) -> None:
    """Download `url` into `folder` and extract it there (md5 checked when given)."""
    from torchvision.datasets.utils import download_url

    name = url.rstrip("/").rsplit("/", 1)[-1]
    if (folder / name).is_symlink():
        raise DlbenchError(f"{folder / name} is a symbolic link: dlbench downloads only into real files")
    made = rundir.new_folders(folder)  # to leave no empty folders
    had_file = (folder / name).exists()
    try:
        download_url(url, str(folder), filename=name, md5=md5)
    except Exception as err:  # network errors come in many types; say which file, where, and what next
        if not had_file:
            (folder / name).unlink(missing_ok=True)  # a partial file
        rundir.remove_empty(made)
        raise DlbenchError(
            f"Could not download {url} into {folder}: {err}. Without a network: fetch that file on a "
            f"machine that has one, put it in {folder} as {name} (dlbench unpacks it there), and run "
            "again with dataset.download=false (and dataset.root=FOLDER if it is elsewhere). "
            "docs/data.md lists the files and the layout each data set reads."
        ) from err
    try:
        extract(folder / name, folder)
    except NotAnArchive as err:
        if had_file:  # (not downloaded again: torchvision keeps a file that is there, unchecked)
            raise
        (folder / name).unlink(missing_ok=True)  # (a download cut short stayed, and every run refused)
        rundir.remove_empty(made)
        raise DlbenchError(
            f"{err.problem}: the download from {url} was cut short or is not the archive; it was "
            "removed: run again"
        ) from None


class NotAnArchive(DlbenchError):
    """A file to unpack that is not an archive dlbench can extract (`problem`: which, and why)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


def extract(archive: Path, folder: Path) -> None:
    """Unpack a .tar(.gz|.bz2|.xz)/.tgz, .zip or single .gz file into `folder`."""
    unpacked = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=folder))
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                safe_extract(tar, unpacked)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(unpacked)  # zipfile drops absolute paths and ".." itself
        elif archive.suffix == ".gz":
            with gzip.open(archive) as src, open(unpacked / archive.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:  # (a damaged zip is none of them: it was left as it was, and the data "not found")
            raise tarfile.ReadError("not a tar, zip or .gz archive")
        move_into(unpacked, folder)
    # what the file holds (an encrypted zip member is a RuntimeError, an unknown compression
    # NotImplementedError); not the disk's errors (full, not writable): those keep the file
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        gzip.BadGzipFile,
        EOFError,
        zlib.error,
        RuntimeError,
        NotImplementedError,
    ) as err:
        problem = f"{archive} is not an archive that can be extracted ({err})"
        raise NotAnArchive(f"{problem}: a download cut short? Remove it and run again", problem) from err
    except OSError as err:
        raise DlbenchError(f"Could not unpack {archive} into {folder}: {err}") from err
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def move_into(source: Path, folder: Path) -> None:
    """Move what `source` holds into `folder`, merging folders; never through a link there, and
    never over a file that is there (an archive does not replace your files)."""
    for entry in source.iterdir():
        target = folder / entry.name
        if target.is_symlink():
            raise DlbenchError(f"{target} is a symbolic link: dlbench unpacks data only into real folders")
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            move_into(entry, target)
        elif os.path.lexists(target):
            raise DlbenchError(f"{target} exists: dlbench unpacks an archive only into new files")
        else:
            os.rename(entry, target)


def safe_extract(tar: tarfile.TarFile, folder: Path) -> None:
    """tarfile's "data" filter where Python has it (3.10.12+, 3.11.4+); else the same checks."""
    if hasattr(tarfile, "data_filter"):
        try:
            tar.extractall(folder, filter="data")
        except tarfile.FilterError as err:
            raise DlbenchError(f"refused to extract {tar.name}: {err}") from err
        return
    root = folder.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        link = (target.parent / member.linkname).resolve() if member.issym() or member.islnk() else target
        if not (target.is_relative_to(root) and link.is_relative_to(root)) or member.isdev():
            raise DlbenchError(
                f"refused to extract {tar.name}: member {member.name} would land outside {folder}"
            )
    tar.extractall(folder)
