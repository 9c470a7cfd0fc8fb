"""What a run folder logged to TensorBoard, read back: its scalars as curves (against the step,
or the epoch) and its last picture of each figure (a confusion matrix, a grid of samples).

Run folders may come from someone else: only regular files are read (a FIFO named like an
event file would never end), and a picture is kept only if it is a PNG of at most MAX_PICTURE
bytes, which is what TensorBoard's `add_figure` writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PNG = b"\x89PNG\r\n\x1a\n"
MAX_PICTURE = 1 << 23  # 8 MiB: a 700x700 confusion matrix is ~40 kB


def events(folder: Path, pictures: bool = False) -> Any:
    """The run's TensorBoard events (every scalar kept; every picture too if `pictures`), or
    None when it has none that can be read."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = folder / "tb"
    if not tb.is_dir() or not all(p.is_file() for p in tb.iterdir() if "tfevents" in p.name):
        return None
    guidance = {"scalars": 0, "images": 0 if pictures else 1, "tensors": 1, "histograms": 1}
    try:
        return EventAccumulator(str(tb), size_guidance=guidance).Reload()
    except Exception:  # (a truncated or foreign file: tensorboard's own DataLossError, ...)  # noqa: BLE001
        return None


def curves(folder: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Every scalar the run logged: tag -> (steps, values), plain lists."""
    logged = events(folder)
    if logged is None:
        return {}
    return {
        tag: ([e.step for e in logged.Scalars(tag)], [e.value for e in logged.Scalars(tag)])
        for tag in logged.Tags()["scalars"]
    }


def pictures(folder: Path) -> dict[str, tuple[int, bytes]]:
    """The last picture logged under each tag: tag -> (step, PNG bytes)."""
    logged = events(folder, pictures=True)
    found = {}
    for tag in logged.Tags()["images"] if logged is not None else []:
        last = logged.Images(tag)[-1]
        png = last.encoded_image_string
        if png.startswith(PNG) and len(png) <= MAX_PICTURE:
            found[tag] = (last.step, png)
    return found


def as_epochs(folder: Path, steps: list[int], epoch_ends: list[int]) -> list[float]:
    """Steps as (fractional) epochs: an epoch's steps are the step of the first evaluation's
    record (time/epoch_s) over the epochs it closed (trainer.val_every_n_epochs)."""
    from dlbench import rundir
    from dlbench.errors import DlbenchError

    try:
        config = rundir.read_yaml(folder / ".hydra" / "config.yaml")
    except DlbenchError:
        config = None
    trainer = (config.get("trainer") if isinstance(config, dict) else None) or {}
    every = trainer.get("val_every_n_epochs", 1) if isinstance(trainer, dict) else 1
    if not epoch_ends or not isinstance(every, int) or every < 1 or epoch_ends[0] < 1:
        return steps
    per_epoch = epoch_ends[0] / every
    return [s / per_epoch for s in steps]


def against(folder: Path, logged: dict, tag: str, x: str) -> tuple[list[float], list[float]]:
    """One of `curves(folder)` against "epoch" or "step"."""
    steps, values = logged[tag]
    if x == "epoch":
        steps = as_epochs(folder, steps, logged.get("time/epoch_s", ([], []))[0])
    return steps, values
