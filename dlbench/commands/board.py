"""dlbench board [DIR] [--port N]: TensorBoard on the runs under DIR (default: outputs), each
named by its experiment and its overrides ("digits_mlp optimizer.lr=0.1 [08-30-12]"), not by
its folder (".../2026-11-24_08-30-12_ab12cd/tb"). Ctrl-C stops it."""

from __future__ import annotations

import time
from pathlib import Path

from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, DlbenchError
from dlbench.rundir import read_yaml
from dlbench.terminal import inert

USAGE = "usage: dlbench board [DIR] [--port N] [--host HOST]  (DIR: a folder of runs; default outputs)"


def board_command(args: list[str]) -> int:
    parser = ArgumentParser(prog="dlbench board", usage_line=USAGE)
    parser.add_argument("folder", nargs="?", default="outputs", type=Path)
    parser.add_argument("--port", type=int, default=6006)
    parser.add_argument("--host", default="localhost")
    parsed = parser.parse_args(args)
    runs = named_runs(parsed.folder)
    if not runs:
        raise DlbenchError(f"no runs with TensorBoard events under {parsed.folder} (train one: dlbench)")
    from tensorboard import program

    board = program.TensorBoard()
    spec = ",".join(f"{name}:{path}" for name, path in runs.items())
    board.configure(argv=[None, "--logdir_spec", spec, "--port", str(parsed.port), "--host", parsed.host])
    try:
        url = board.launch()
    except Exception as err:  # the port is taken, the host unknown: TensorBoard's own message
        raise DlbenchError(f"TensorBoard could not start: {err}") from err
    console.print(
        f"TensorBoard: {url}  ({len(runs)} runs under {parsed.folder}; Ctrl-C stops it)", soft_wrap=True
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def named_runs(folder: Path) -> dict[str, Path]:
    """Every run folder under `folder` with TensorBoard events, by a readable name."""
    names: dict[str, Path] = {}
    for tb in sorted(folder.expanduser().glob("**/tb")):
        run = tb.parent
        if tb.is_symlink() or not any(tb.glob("events.*")) or not utf8(str(run)) or set(",:") & set(str(tb)):
            continue  # (a link leads elsewhere; a path with , or : would be read as two in TensorBoard's
            # spec, and one that is not UTF-8 cannot be named to it)
        name = f"{experiment_of(run)} {overrides_of(run)}".strip()
        name = f"{name} [{run.name[-6:] if len(run.name) > 12 else run.name}]"  # its tag or job number
        names[inert(name).replace(",", ";").replace(":", "=")] = run / "tb"  # the spec's separators
    return names


def experiment_of(run: Path) -> str:
    config = _read(run / ".hydra" / "config.yaml")
    return str(config.get("name")) if isinstance(config, dict) and config.get("name") else run.parent.name


def overrides_of(run: Path) -> str:
    overrides = _read(run / ".hydra" / "overrides.yaml")
    return " ".join(o for o in overrides if isinstance(o, str)) if isinstance(overrides, list) else ""


def _read(path: Path):
    try:
        return read_yaml(path)
    except DlbenchError:
        return None


def utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name (surrogate escapes)
        return False
    return True
