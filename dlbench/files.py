"""Write a file whole or not at all, and read YAML someone else may have written.

- Every file dlbench writes is written whole or not at all (`write_text`, `write_bytes`: a
  temporary file, fsync, rename); a write that fails is one message (`file_error`).
- YAML files (a run folder's, a checkpoint's config) are read as data someone else may have
  written: `load_yaml` refuses aliases, which dlbench never writes and which let a few hundred
  bytes expand into billions of nodes once OmegaConf or a printer walks them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dlbench.errors import DlbenchError

UMASK = os.umask(0o022)  # the process's file-mode mask, read (and put back at once)
os.umask(UMASK)


def write_bytes(path: Path, write) -> None:
    """Write a file whole or not at all: `write(f)` fills a temporary file beside `path`, which
    is fsynced and renamed over it. On any failure the old file stays and the temporary goes."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise file_error(err, path) from err
    try:
        with contextlib.suppress(OSError):  # (mkstemp's is 0600: the mode open() would give; a file
            os.fchmod(fd, 0o666 & ~UMASK)  # system that keeps its own modes refuses it)
        with os.fdopen(fd, "wb") as f:
            recorder = _WriteErrors(f)
            try:
                write(recorder)
            except RuntimeError:  # torch.save turns the OSError of a failed write into this
                if recorder.error is None:
                    raise
                raise recorder.error from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise file_error(err, path) from err
        raise


class _WriteErrors:
    """A binary file that remembers the OSError of a failed write (torch.save reports it only as
    'unexpected pos ...'), so a full disk is named as one."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


def write_text(path: Path, text: str) -> None:
    """(Text that is not UTF-8, a folder name's undecodable bytes, is written escaped.)"""
    write_bytes(path, lambda f: f.write(text.encode(errors="backslashreplace")))


def file_error(err: OSError, path: Path) -> DlbenchError:
    """One message for a file that cannot be written: the file and the reason."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return DlbenchError(f"No space left on device writing {path}")
    if err.errno == errno.EFBIG:
        return DlbenchError(f"File too large (the file-size limit) writing {path}")
    named = os.fsdecode(err.filename) if err.filename is not None else None  # (TensorBoard's: bytes)
    if named is None or Path(named).name.startswith(f".{path.name}."):  # (not write_bytes' temporary)
        named = path
    return DlbenchError(f"Cannot write {named}: {err.strerror or err}")


class _NoAliases(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (`*name`)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(
                f"an alias at line {mark.line + 1}, column {mark.column + 1}: dlbench writes none"
            )
        return super().compose_node(parent, index)


MAX_YAML = 1 << 20  # a run's YAML files are a few kilobytes; parsing 1 MB of YAML takes seconds


def load_yaml(text: str) -> Any:
    """YAML that someone else may have written: plain data, no aliases, at most 1 MiB
    (yaml.YAMLError)."""
    if len(text) > MAX_YAML:
        raise yaml.YAMLError(f"{len(text):,} characters: more than a run's YAML ({MAX_YAML:,})")
    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 (a safe loader)
    except RecursionError:  # (PyYAML composes nested lists by recursion: `[[[...]]]` 3,000 deep)
        raise yaml.YAMLError("nested too deeply for a run's YAML") from None


def plain_file(path: Path) -> bool:
    """Whether a run folder's file is a regular file there, read as such: not a FIFO (its read
    would never end), not a link, nor in a linked folder (`.hydra/config.yaml` linked to
    /proc/self/environ put the environment's secrets into a report meant to be mailed)."""
    return path.is_file() and not path.is_symlink() and not path.parent.is_symlink()


def read_yaml(path: Path) -> Any:
    """A YAML file of a run folder (load_yaml); one that cannot be read is one DlbenchError."""
    if not plain_file(path):
        raise DlbenchError(f"{path} is not a regular file (a link is not followed)")
    if path.stat().st_size > MAX_YAML:
        raise DlbenchError(f"{path} is {path.stat().st_size:,} bytes: more than a run's YAML ({MAX_YAML:,})")
    try:
        return load_yaml(path.read_text())
    except yaml.YAMLError as err:
        line, what = yaml_problem(err)
        raise DlbenchError(f"{path} is not readable YAML: {f'line {line}: ' if line else ''}{what}") from err
    except (UnicodeDecodeError, OSError) as err:
        raise DlbenchError(f"{path} is not readable YAML ({err})") from err


def yaml_problem(err: yaml.YAMLError) -> tuple[int | None, str]:
    """The line of a YAML text where reading it failed, and why, in one line (PyYAML's message
    spans several and quotes the text)."""
    mark, start = getattr(err, "problem_mark", None), getattr(err, "context_mark", None)
    what = getattr(err, "problem", None) or (str(err).splitlines() or [""])[0]
    if start is not None and getattr(err, "context", None):  # "while parsing a flow sequence"
        what = f"{err.context} (from line {start.line + 1}): {what}"
    return (mark.line + 1 if mark is not None else None), what


def newest_holding(folder: Path, name: str, counts: Callable[[Path], bool]) -> Path | None:
    """Of the folders directly in `folder`, the one whose file `name` (a path inside each) was
    written last, of those where `counts(that file)`; None if none. What cannot be read (a
    folder locked to others, a broken link) is passed over."""
    written = []
    for entry in folder.iterdir():
        marker = entry / name
        with contextlib.suppress(OSError):
            if counts(marker):
                written.append((marker.stat().st_mtime_ns, entry.name, entry))
    return max(written)[2] if written else None
