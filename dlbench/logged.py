"""What a run folder logged to TensorBoard, read back: its scalars as curves (against the step,
or the epoch) and its last picture of each figure (a confusion matrix, a grid of samples); for a
run logged without TensorBoard, its metrics.csv's curves.

Run folders may come from someone else: only regular files are read (a FIFO named like an
event file would never end), not links nor in a linked tb/ (another run's curves, or a file
elsewhere, in a report meant to be mailed), and a picture is kept only if it is a PNG of at most MAX_PICTURE
bytes, which is what TensorBoard's `add_figure` writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dlbench import files

PNG = b"\x89PNG\r\n\x1a\n"
MAX_PICTURE = 1 << 23  # 8 MiB: a 700x700 confusion matrix is ~40 kB
MAX_CSV = 1 << 28  # 256 MiB: 10,000 epochs of 20 metrics are ~6 MB

Curves = dict[str, tuple[list[float], list[float]]]


def read(folder: Path) -> tuple[Curves, dict[str, tuple[int, bytes]]]:
    """The run's curves (tag -> (steps, values), plain lists) and the last picture logged under
    each tag (tag -> (step, PNG bytes)), from one reading of its event files; nothing when it
    has none that can be read."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlbench.checksums import use_c_checksums

    use_c_checksums()  # (the records' checksums checked in C, not in tensorboard's pure Python)
    tb = folder / "tb"
    if not tb.is_dir() or tb.is_symlink():  # (the events of the run itself: a link leads elsewhere)
        return from_csv(folder), {}
    if not all(files.plain_file(p) for p in tb.iterdir() if "tfevents" in p.name):
        return {}, {}
    # every scalar; one picture a tag, which TensorBoard's reservoir keeps as the last one logged
    guidance = {"scalars": 0, "images": 1, "tensors": 1, "histograms": 1}
    try:
        with quiet_tensorboard():
            events = EventAccumulator(str(tb), size_guidance=guidance).Reload()
    except Exception:  # (a truncated or foreign file: tensorboard's own DataLossError, ...)  # noqa: BLE001
        return {}, {}
    tags = events.Tags()
    curves = {
        tag: ([e.step for e in events.Scalars(tag)], [e.value for e in events.Scalars(tag)])
        for tag in tags["scalars"]
    }
    pictures = {}
    for tag in tags["images"]:
        last = events.Images(tag)[-1]
        if last.encoded_image_string.startswith(PNG) and len(last.encoded_image_string) <= MAX_PICTURE:
            pictures[tag] = (last.step, last.encoded_image_string)
    return curves, pictures


def from_csv(folder: Path) -> Curves:
    """The curves of a run logged without TensorBoard (`logger.backends=[csv]`, `[mlflow]` with
    csv): its metrics.csv's rows, `step,metric,value`; nothing where the file is not one dlbench
    writes (a link, larger than MAX_CSV, a row that is not a step and a number)."""
    import csv

    from dlbench.engine.loggers import Csv

    path = folder / "metrics.csv"
    if not files.plain_file(path) or path.stat().st_size > MAX_CSV:
        return {}
    curves: Curves = {}
    try:
        with path.open(newline="", errors="replace") as f:
            for row in csv.reader(f):
                if row == Csv.HEADER:
                    continue
                step, metric, value = row  # (a row of another shape: the file is not metrics.csv)
                steps, values = curves.setdefault(metric, ([], []))
                steps.append(int(step))
                values.append(float(value))
    except (ValueError, OSError, csv.Error):
        return {}
    return curves


@contextmanager
def quiet_tensorboard() -> Iterator[None]:
    """TensorBoard's reader says nothing: a resumed run's events start again at its checkpoint's
    step (engine/loggers.py's purge_step), and the reader dropping the stopped attempt's later
    ones, as it should, is a warning on stderr ("Detected out of order event.step ... Purging")."""
    reader = logging.getLogger("tensorboard")
    level = reader.level
    reader.setLevel(logging.ERROR)
    try:
        yield
    finally:
        reader.setLevel(level)


def curves(folder: Path) -> Curves:
    """Every scalar the run logged: tag -> (steps, values), plain lists."""
    return read(folder)[0]


def in_epochs(folder: Path, logged: Curves) -> Curves | None:
    """The curves against the (fractional) epoch, or None where the run recorded no epoch's
    length: an epoch's steps are the step of the first evaluation's record (time/epoch_s) over
    the epochs it closed (the run's trainer.val_every_n_epochs)."""
    from dlbench import files
    from dlbench.config import MAX_COUNT
    from dlbench.errors import DlbenchError

    epoch_ends = logged.get("time/epoch_s", ([], []))[0]
    try:
        config = files.read_yaml(folder / ".hydra" / "config.yaml")
    except DlbenchError:
        config = None
    trainer = (config.get("trainer") if isinstance(config, dict) else None) or {}
    every = trainer.get("val_every_n_epochs", 1) if isinstance(trainer, dict) else 1
    # (a count a run can have: the folder is data, and 10**400 epochs made an epoch 0.0 steps)
    if not epoch_ends or not isinstance(every, int) or not 1 <= every < MAX_COUNT or epoch_ends[0] < 1:
        return None
    per_epoch = epoch_ends[0] / every
    return {tag: ([s / per_epoch for s in steps], values) for tag, (steps, values) in logged.items()}
