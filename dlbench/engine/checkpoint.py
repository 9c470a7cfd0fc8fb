"""Checkpoints: written atomically, loaded with weights_only=True (no code runs on load)."""

from __future__ import annotations

import io
import os
import pickle
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from dlbench import files
from dlbench.errors import DlbenchError, first_line


def save(state: dict[str, Any], path: Path, *copies: Path) -> None:
    """Serialise `state` once, in memory; then write its bytes to `path` and to each of `copies`
    (last.pt beside a kept best.pt), each through a temporary file beside it, fsynced, then renamed over it.

    A crash or a full disk during a write leaves the previous file as it was. (One write of
    the bytes in place of torch.save's many small ones, and no copy read back from disk:
    last.pt and best.pt of digits_mlp in 1.43 ms instead of 1.52; the bytes are held in
    memory while they are written, as many as the checkpoint's.)
    """
    write(serialised(state), path, *copies)


def serialised(state: dict[str, Any]) -> memoryview:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


def write(data: memoryview, *paths: Path) -> None:
    for target in paths:
        files.write_bytes(target, lambda f: f.write(data))


class Writer:
    """A run's checkpoints, written while it trains on: `save` serialises the state at once
    (training changes it next) and a thread writes its files as `save` above does (atomic,
    fsynced), so the disk's time leaves the training loop (digits_mlp's last.pt and best.pt:
    ~3 ms of their ~6, the fsyncs, which release the GIL). One checkpoint is in flight at a
    time and they land in order: a save first finishes the one before it (so no more bytes are
    held than before), and `wait` finishes the one in flight and raises a failed write's error
    (a full disk: one message), at the next save or at the run's end (Trainer.finish_writes),
    before metrics.json says what last.pt holds. A process that ends without waiting still
    finishes the write (the thread is not a daemon); a SIGKILL during it leaves the previous
    file, as it does during `save`."""

    def __init__(self) -> None:
        self.landed: threading.Event | None = None  # set when the write in flight has ended
        self.error: BaseException | None = None

    def save(self, state: dict[str, Any], *paths: Path, then: Callable[[], None] | None = None) -> None:
        """`then`: work that needs the files in place (removing older ones), done after them."""
        self.wait()
        data, landed = serialised(state), threading.Event()

        def run() -> None:
            try:
                write(data, *paths)
                if then is not None:
                    then()
            except BaseException as err:  # (raised by `wait`, in the run's thread)
                self.error = err
            finally:
                landed.set()

        self.landed = landed
        threading.Thread(target=run, name="dlbench-checkpoint").start()

    def wait(self) -> None:
        """(An Event, not Thread.join: a join that Ctrl-C interrupted returns at once the next
        time, the thread still writing, in CPython 3.11.)"""
        if self.landed is not None:
            self.landed.wait()
            self.landed = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def find(path: str | Path) -> Path:
    """The checkpoint a path means, one rule for every command (resume, eval, predict, export,
    `dlbench.load_model`, a GAN's judge): a run folder means its checkpoints/last.pt, the
    weights its metrics.json's test figures were measured with and a resume continues from; a
    folder of runs (outputs/NAME) means the last.pt written last in it (`newest_run`), so a
    command written for "the run I just trained" pastes as it is; a file means itself (name
    RUN/checkpoints/best.pt to use the best epoch's weights). A sweep's folder is refused: its
    jobs are not one run's attempts."""
    path = given = Path(path).expanduser()
    if holds_runs(path):
        if (path / "multirun.yaml").is_file():
            job = min((run.name for run in path.iterdir() if is_run(run)), default="0")
            raise DlbenchError(f"{path} is a sweep: name one of its jobs ({path / job}, ...)")
        newest = newest_run(path)
        if newest is None:
            raise DlbenchError(
                f"No run in {path}: give a run directory, a folder of runs such as outputs/NAME, "
                "or a .pt file"
            )
        path = newest
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
        # (dlbench writes no link there: a resume went on from elsewhere, or looped)
        if link := next((p for p in (path, path.parent) if p.is_symlink()), None):
            raise DlbenchError(
                f"{link} is a link ({os.readlink(link)}): a run folder's checkpoint is a file of its own. "
                "Name the checkpoint file itself, or copy it into the run's folder"
            )
    if not path.is_file():
        raise DlbenchError(
            f"No checkpoint at {path} (give a run directory, a folder of runs such as outputs/NAME, "
            f"or a .pt file).{nearby(given) if not given.exists() else ''}"
        )
    return path


def nearby(path: Path) -> str:
    """' Did you mean: outputs/digits_mlp?' for a path that is not there: the same name under
    ./outputs (where runs are written), else the closest names beside it."""
    from dlbench.errors import did_you_mean

    if (Path("outputs") / path).exists() and not path.is_absolute():
        return f" Did you mean: {Path('outputs') / path}?"
    folder = path.parent
    if not folder.is_dir():
        return ""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return ""
    return did_you_mean(path.name, names, prefix="" if str(folder) == "." else f"{folder}/")


def is_run(folder: Path) -> bool:
    """A run's folder (its config or its checkpoints), even one with no checkpoint in it."""
    return (folder / ".hydra").is_dir() or (folder / "checkpoints").is_dir()


def holds_runs(path: Path) -> bool:
    """A folder that is not a run's own (outputs/NAME, a sweep's): what `find` reads as a folder
    of runs, and what the commands name the chosen run for."""
    return path.is_dir() and not is_run(path)


def newest_run(folder: Path) -> Path | None:
    """Of the runs directly in `folder`, the one whose checkpoints/last.pt was written last (a
    resumed run counts from its resume; one still training, from its latest checkpoint), or
    None if none has one. What cannot be read (a folder locked to others, a broken link) is
    passed over."""
    return files.newest_holding(folder, "checkpoints/last.pt", os.path.isfile)


def refused(path: Path) -> DlbenchError:
    """A file torch's weights_only reader refused (a pickle of other objects: it could run code)."""
    return DlbenchError(
        f"Refused to load {path}: it holds objects other than tensors and plain values, "
        "which could run code. dlbench only loads checkpoints with weights_only=True."
    )


# what reads the exports that are no checkpoint (`dlbench export --format onnx|pt2`)
EXPORT_READERS = {"onnx": "onnxruntime.InferenceSession", "pt2": "torch.export.load"}


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of tensors and plain values; refuse anything that would run code."""
    path = find(path)
    if not zipfile.is_zipfile(path):
        if path.parent.name == "checkpoints" and is_run(path.parent.parent):  # (a run's own, cut short)
            others = sorted(p.name for p in path.parent.glob("*.pt") if p != path and zipfile.is_zipfile(p))
            instead = f"; its other checkpoints: {', '.join(others)}" if others else ""
            raise DlbenchError(f"{path} is not a checkpoint: cut short or damaged (no PyTorch file){instead}")
        raise DlbenchError(
            f"{path} is not a checkpoint (not a PyTorch file: give a run directory or a .pt file)"
        )
    if not any(name.endswith("data.pkl") for name in check_declared_sizes(path)):  # (torch.save writes one)
        pt2 = path.suffix.lower() == ".pt2"
        made = f" (dlbench export --format pt2's: {EXPORT_READERS['pt2']} reads it)" if pt2 else ""
        raise DlbenchError(f"{path} is not a checkpoint: an archive torch.save did not write{made}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise refused(path) from err
    except Exception as err:  # a file cut short or damaged: torch's reader may fail in any way
        raise DlbenchError(f"Could not read checkpoint {path}: {first_line(err)}") from err
    if not isinstance(state, dict) or "task" not in state or "config" not in state:
        raise DlbenchError(f"{path} is not a dlbench checkpoint (no task weights or config in it)")
    problem = shape_problem(state)
    if problem:
        raise DlbenchError(f"{path} is not a dlbench checkpoint that can be used: {problem}")
    return state


def check_declared_sizes(path: Path) -> list[str]:
    """Refuse, before reading a byte of it, an archive whose members declare more contents
    than the file holds: torch.save stores its members uncompressed, so a checkpoint's
    contents fit in its file; a compressed member could inflate a few megabytes into
    gigabytes of memory (a zip bomb). (A file in torch's legacy format is not an archive.)
    Returns the names of its members."""
    if not zipfile.is_zipfile(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise DlbenchError(f"Could not read checkpoint {path}: {err}") from err
    declared, size = sum(m.file_size for m in members), path.stat().st_size
    compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if declared > size or compressed:
        raise DlbenchError(
            f"Refused to load {path}: its members declare {declared:,} bytes in a file of {size:,}"
            + (f" ({compressed[0]} is compressed)" if compressed else "")
            + ". torch.save writes checkpoints uncompressed: this file was made by something else."
        )
    return [m.filename for m in members]


def shape_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's layout (a file made or edited by something else)."""
    if not isinstance(state["task"], dict) or not all(isinstance(k, str) for k in state["task"]):
        return "'task' is not a set of named weights"
    try:
        config = files.load_yaml(state["config"]) if isinstance(state["config"], str) else None
    except yaml.YAMLError:
        config = None
    if not isinstance(config, dict):
        return "its 'config' is not the YAML text of a config"
    trainer = state.get("trainer")
    if trainer is not None:
        counters = ("epoch", "step", "epoch_step", "bad_epochs")
        if not isinstance(trainer, dict) or not all(
            isinstance(trainer.get(k, 0), int) and 0 <= trainer.get(k, 0) < 2**53 for k in counters
        ):
            return "its 'trainer' state does not hold whole-number counters (0 to 2**53)"
        if not isinstance(trainer.get("best"), (int, float, type(None))) or not isinstance(
            trainer.get("metrics", {}), dict
        ):
            return "its 'trainer' state has a best value or metrics of the wrong type"
        if trainer.get("best") != trainer.get("best"):  # (no value is better than NaN: best.pt froze)
            return "its 'trainer' state has a best value that is NaN (a run keeps none)"
    return None
