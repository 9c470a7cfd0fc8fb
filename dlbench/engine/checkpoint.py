"""Checkpoints: written atomically, loaded with weights_only=True (no code runs on load)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from dlbench import rundir
from dlbench.errors import DlbenchError


def save(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash or a full disk during the write leaves the previous checkpoint as it was.
    """
    rundir.write_bytes(path, lambda f: torch.save(state, f))


def find(path: str | Path) -> Path:
    """A checkpoint file from a run directory (its checkpoints/last.pt) or a file path."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise DlbenchError(f"No checkpoint at {path} (give a run directory or a .pt file)")
    return path


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of tensors and plain values; refuse anything that would run code."""
    path = find(path)
    if not zipfile.is_zipfile(path):
        raise DlbenchError(
            f"{path} is not a checkpoint (not a PyTorch file: give a run directory or a .pt file)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise DlbenchError(
            f"Refused to load {path}: it holds objects other than tensors and plain values, "
            "which could run code. dlbench only loads checkpoints with weights_only=True."
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise DlbenchError(f"Could not read checkpoint {path}: {err}") from err
    if not isinstance(state, dict) or "task" not in state or "config" not in state:
        raise DlbenchError(f"{path} is not a dlbench checkpoint (no task weights or config in it)")
    return state
