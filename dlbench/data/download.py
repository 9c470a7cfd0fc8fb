"""Fetching a data set's archive: one place that turns any download failure into one message."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive

from dlbench.errors import DlbenchError


def fetch(url: str, folder: Path, md5: str | None = None) -> None:
    """Download `url` into `folder` and extract it there (md5 checked when given)."""
    try:
        download_and_extract_archive(url, str(folder), md5=md5)
    except Exception as err:  # network errors come in many types; say which file and where
        raise DlbenchError(f"Could not download {url} into {folder}: {err}") from err
