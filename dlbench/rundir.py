"""A run folder: who may write in it, whether it already holds a run, and what it records.

- One live run per folder: `RunLock` holds an exclusive `flock` on `<run>/.lock` for the run's
  life. The kernel drops it when the process dies, however it dies, so a stale lock file left
  by a killed run never blocks the next one.
- A new run never replaces another: `check_new_run` refuses a folder that holds checkpoints,
  metrics or TensorBoard events, unless the run resumes from that same folder.
- Every file dlbench writes in it is written whole or not at all (files.py), and temporary
  files of writes that were killed are removed at start.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from dlbench import terminal
from dlbench.errors import DlbenchError, FolderInUse
from dlbench.files import file_error, write_text

LOCK = ".lock"


def holds_run(folder: Path) -> bool:
    """Whether a folder holds a run's results: checkpoints, final metrics or TensorBoard events."""
    return (
        (folder / "metrics.json").is_file()
        or any((folder / "checkpoints").glob("*.pt"))
        or any((folder / "tb").glob("events.*"))
    )


def holds_results(folder: Path) -> bool:
    """Whether a folder is a run's or a sweep's: someone's results (its record, .hydra/ or
    multirun.yaml, or what a run writes), not a project."""
    return (folder / ".hydra").is_dir() or (folder / "multirun.yaml").is_file() or holds_run(folder)


def set_aside(folder: Path) -> Path:
    """A sweep job's unfinished attempt (stopped before its first checkpoint: nothing to resume
    from): what it wrote (TensorBoard events, train.log, ...) moved, as it is, into
    <job>/unfinished-N/, so the job runs again from its start in its own folder and the
    attempt's files are kept. Returns that folder."""
    n = 1
    while (folder / f"unfinished-{n}").exists():
        n += 1
    aside = folder / f"unfinished-{n}"
    aside.mkdir()
    for entry in folder.iterdir():
        if entry.name not in (".hydra", LOCK) and not entry.name.startswith("unfinished-"):
            entry.rename(aside / entry.name)  # (a link is moved as a link)
    return aside


# a process's own error, left in the run folder for rank 0 to say (engine/distributed.py)
STOPPED_RANK = ".rank-{}-error"

RECORDS = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml")  # what a run records


def check_new_run(
    folder: Path,
    resume: str | None,
    records: tuple[str, ...] = RECORDS,
    again: Callable[[Path], tuple[str, ...]] = lambda folder: (),
) -> None:
    """Refuse to start in a folder that holds another run, or files named as those a run
    records (`records`) that dlbench did not write there; resuming that same run is fine. (A
    sweep's job folder is Hydra's, checked with its sweep: there only results count.) `again`:
    the words the command printed to continue the run gives, read from the folder only when
    it holds a run (searchpath.continue_words)."""
    if resume is not None:
        resumed = Path(resume).expanduser().resolve()  # a run folder, or a checkpoint in one
        in_run = resumed.parent.parent if resumed.parent.name == "checkpoints" else resumed
        if folder.resolve() == in_run:
            return
    if holds_run(folder):
        elsewhere = "start a new run elsewhere: leave out hydra.run.dir, or give it a new folder"
        if (folder / "checkpoints" / "last.pt").is_file():  # (what resume=FOLDER reads)
            resume = terminal.command(terminal.override("resume", folder), *again(folder))
            then = f"Continue it with: {resume}  (or {elsewhere})"
        else:  # (trainer.checkpoint=false, or stopped before its first checkpoint)
            then = f"It holds no checkpoint to continue from: {elsewhere}"
        raise FolderInUse(
            f"{folder} already holds a run (checkpoints, metrics or TensorBoard events), and dlbench "
            f"never writes over one. {then}"
        )
    if found := [name for name in records if (folder / name).exists()]:
        raise FolderInUse(
            f"{folder} holds {', '.join(found)} (no checkpoint or metrics: not a run dlbench can "
            "continue), and dlbench never writes over a file it did not make there. Start this run in "
            "another folder (leave out hydra.run.dir, or give it a new one)"
        )


def check_writable(folder: Path, setting: str) -> None:
    """Refuse a folder that cannot be made or written: a path through a file, a read-only place,
    or one that starts at ~ (Hydra does not expand it: the run went to a folder named ~ here)."""
    if str(folder).startswith("~"):
        raise DlbenchError(
            f"{setting}={folder}: Hydra does not expand ~ (it would make a folder named ~ here): "
            "write the path from / or from the current folder: "
            f"{terminal.shell_word(terminal.override(setting, folder.expanduser()))}"
        )
    existing = folder.expanduser().absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DlbenchError(f"{setting}={folder}: {existing} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dlbench-probe-", dir=existing))
    except OSError as err:
        raise DlbenchError(f"{setting}={folder}: cannot write in {existing} ({err.strerror})") from err


def run_folder_of(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (<run>/checkpoints/<name>.pt), or None for a
    checkpoint file on its own (resuming it starts a new run folder)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def check_output_file(path: Path, flag: str, suffixes: tuple[str, ...]) -> None:
    """A file a command writes (`--out report.html`, or its default name): one of `suffixes`, in
    a folder that exists, and a new name: nothing already there is written over (a user's own
    report.html or val_acc.png in the folder they ran `report` or `compare --plot` in was
    replaced). Checked before anything is written."""
    if path.suffix.lower() not in suffixes:  # (report.HTML as report.html)
        raise DlbenchError(f"{flag} {path}: name a {' or '.join(suffixes)} file")
    if not path.parent.is_dir():
        what = "is a file, not a folder" if path.parent.exists() else "is no folder here"
        raise DlbenchError(f"{path}: {path.parent} {what} (make the folder first, or write elsewhere)")
    if os.path.lexists(path):  # (a file, a folder, a FIFO, a link: a run's metrics.csv too)
        raise DlbenchError(f"{path} exists, and dlbench never writes over it: name a new file with {flag}")


# What dlbench (and Hydra) write in a run's folder and in a sweep's, as files (False) or folders
RUN_ENTRIES = {LOCK: False, "train.log": False, "metrics.json": False, "error.txt": False}
RUN_ENTRIES |= {".hydra": True, "checkpoints": True, "tb": True}
REFUSED = ".refused"  # in a sweep's folder: why this command ran none of its jobs (launch.record_job)
SWEEP_FILES = (
    LOCK,
    ".stop",
    REFUSED,
    "multirun.yaml",
    "summary.csv",
    "summary.md",
    "optimization_results.yaml",
)


def check_own_entries(folder: Path, sweep: bool = False) -> None:
    """Refuse a run folder (or a sweep folder and its jobs) where a file or folder dlbench writes
    is a symbolic link, a FIFO or a device, or a file where a folder belongs: a folder someone
    else made could send dlbench's writes elsewhere (a `.lock` linked to your notes) or hang it.
    Other entries of the folder are not dlbench's and stay as they are."""

    def refuse(path: Path, what: str) -> DlbenchError:
        return DlbenchError(
            f"{path} is {what}: dlbench writes a run's files only into real files and folders of its "
            "own, never through what someone left there. Remove it, or use another folder"
        )

    def check(path: Path, folder_expected: bool) -> None:
        if path.is_symlink():
            raise refuse(path, f"a symbolic link (to {os.readlink(path)})")
        if not path.exists():
            return
        if not (path.is_dir() or path.is_file()):
            raise refuse(path, "not a regular file (a FIFO, a socket or a device)")
        if folder_expected != path.is_dir():
            raise refuse(path, "a file where dlbench keeps a folder" if folder_expected else "a folder")
        if path.is_file() and path.stat().st_nlink > 1:
            raise refuse(path, "a hard link (its contents are another file's too)")
        if folder_expected:
            for child in path.iterdir():
                check(child, child.is_dir() and not child.is_symlink())

    if folder.is_symlink():
        raise refuse(folder, f"a symbolic link (to {os.readlink(folder)})")
    if not folder.is_dir():
        return
    if sweep:  # the folder is dlbench's: its files, and a folder for each job
        for entry in folder.iterdir():
            if entry.name in SWEEP_FILES:
                check(entry, False)
            elif entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink():
                continue  # another tool's (submitit's .submitit/): dlbench writes nothing there
            elif entry.is_symlink():
                raise refuse(entry, f"a symbolic link (to {os.readlink(entry)})")
            elif not entry.is_dir():
                raise refuse(entry, "a file where a job's folder goes")
            else:
                check_own_entries(entry)
        return
    for name, folder_expected in RUN_ENTRIES.items():
        check(folder / name, folder_expected)


HELD_LOCKS: set[int] = set()  # the lock files' descriptors this process holds (RunLock)


def _let_go_in_child() -> None:
    """In a forked process (a DataLoader's worker), close the lock descriptors it inherited: a
    flock lasts while any copy is open, and the workers of a killed run held its folder, so an
    immediate resume was refused ("in use by another dlbench run")."""
    for fd in HELD_LOCKS:
        try:
            os.close(fd)
        except OSError:
            pass
    HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_let_go_in_child)


class RunLock:
    """An exclusive lock on a run folder (or a sweep's), held from `acquire()` to `release()`
    by this process alone (not its forked children). The folder's own entries are checked
    first (check_own_entries)."""

    def __init__(self, folder: Path, sweep: bool = False):
        self.folder, self.sweep = folder, sweep
        self.fd: int | None = None
        self.created = False  # the lock file is this lock's (a killed run's stays where it was)

    def acquire(self) -> RunLock:
        path = self.folder / LOCK
        check_own_entries(self.folder, self.sweep)
        self.created = self.created or not path.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise file_error(err, self.folder) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FolderInUse(
                f"{self.folder} is in use by another dlbench run (process {owner}); wait for it to "
                "end, or start this run in another folder"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and removed) it between our open and our lock: again
            os.close(fd)
            return self.acquire()
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as err:  # (a full disk: one message naming the file)
            os.close(fd)
            raise file_error(err, path) from err
        self.fd = fd
        HELD_LOCKS.add(fd)
        return self

    def release(self, wrote: bool = True) -> None:
        """Unlock; the lock file goes if this lock made it, or if the command `wrote` in the
        folder (a killed run's lock file stays after a command that was refused)."""
        if self.fd is None:
            return
        if self.created or wrote:
            (self.folder / LOCK).unlink(missing_ok=True)
        HELD_LOCKS.discard(self.fd)
        os.close(self.fd)
        self.fd = None


def in_use(folder: Path) -> bool:
    """Whether a dlbench run holds the folder's lock now (RunLock: a run still training). The
    lock file is only read, never made."""
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


OWN_FILES = {
    ".": ("metrics.json", "error.txt"),
    ".hydra": ("config.yaml", "overrides.yaml", "hydra.yaml"),
    "checkpoints": ("*.pt",),
}


def new_folders(folder: Path) -> list[Path]:
    """The folders `folder.mkdir(parents=True)` would make, deepest first."""
    return [p for p in [folder, *folder.parents] if not p.exists()]


def remove_empty(made: list[Path]) -> None:
    """Remove folders a step made (`new_folders`), deepest first, as long as they are empty:
    a step that failed leaves no empty folder behind."""
    for folder in made:
        try:
            folder.rmdir()
        except (OSError, ValueError):  # (not empty, or a name no folder can have)
            return


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files of dlbench's own writes that were killed half way
    (`.<file>.<random>.tmp` beside a file dlbench writes); call it while holding the folder's
    lock, when no other process writes there. Other programs' files are never touched."""
    removed = 0
    for sub, names in OWN_FILES.items():
        for name in names:
            for tmp in (folder / sub).glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
                removed += 1
    # (an earlier attempt's process errors, left for its rank 0: not this run's to say)
    for left in folder.glob(STOPPED_RANK.format("*")):
        left.unlink(missing_ok=True)
        removed += 1
    return removed


def record_run(folder: Path, config: str, overrides: str, hydra: str | None) -> None:
    """What a run is, in its folder's .hydra/ (as Hydra writes it): the composed config, the
    overrides it was started with, and Hydra's own settings when Hydra started it."""
    write_text(folder / ".hydra" / "config.yaml", config)
    write_text(folder / ".hydra" / "overrides.yaml", overrides)
    if hydra is not None:
        write_text(folder / ".hydra" / "hydra.yaml", hydra)
