"""dlbench board [DIR] [--port N]: TensorBoard on the runs under DIR (default: outputs), each
named by its experiment and its overrides ("digits_mlp optimizer.lr=0.1 [08-30-12]"), not by
its folder (".../2026-11-24_08-30-12_ab12cd/tb"). Ctrl-C stops it."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import time
from pathlib import Path

from dlbench import terminal
from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, DlbenchError, StopRequested
from dlbench.files import read_yaml
from dlbench.terminal import inert

USAGE = "usage: dlbench board [DIR] [--port N] [--host HOST]  (DIR: a folder of runs; default outputs)"


def board_command(args: list[str]) -> int:
    parser = ArgumentParser(prog="dlbench board", usage_line=USAGE)
    parser.add_argument("folder", nargs="?", default="outputs", type=Path)
    parser.add_argument("--port", type=int, default=6006)
    parser.add_argument("--host", default="localhost")
    parsed = parser.parse_args(args)
    if not parsed.host.strip():  # (TensorBoard would serve every network interface)
        raise DlbenchError(
            f"--host {parsed.host!r}: name the host to serve on (localhost; 0.0.0.0 for every interface)"
        )
    if not 0 <= parsed.port <= 65535:
        raise DlbenchError(f"--port {parsed.port}: a port is 0 to 65535 (0: any free one)")
    if parsed.folder.expanduser().exists() and not parsed.folder.expanduser().is_dir():
        raise DlbenchError(f"{parsed.folder} is not a folder: name the folder of your runs (outputs)")
    runs = named_runs(parsed.folder)
    if not runs:
        raise DlbenchError(f"no runs with TensorBoard events under {parsed.folder} (train one: dlbench)")
    with tempfile.TemporaryDirectory(prefix="dlbench-board-") as links:
        return serve(without_commas(runs, Path(links)), parsed)


def serve(runs: dict[str, Path], parsed) -> int:
    """TensorBoard on `runs` (by name) until Ctrl-C."""
    from tensorboard import program

    board = program.TensorBoard()
    spec = ",".join(f"{name}:{path}" for name, path in runs.items())
    board.configure(argv=[None, "--logdir_spec", spec, "--port", str(parsed.port), "--host", parsed.host])
    said = io.StringIO()  # (werkzeug prints why it cannot serve, then exits: sys.exit(1))
    try:
        with contextlib.redirect_stderr(said):
            url = board.launch()
    except (Exception, SystemExit) as err:  # the port is taken, the host unknown: TensorBoard's own message
        why = " ".join(said.getvalue().split()) or str(err)
        raise DlbenchError(
            f"TensorBoard could not start on --host {parsed.host} --port {parsed.port}: {why}"
        ) from None
    terminal.write(said.getvalue(), stderr=True)
    console.print(
        f"TensorBoard: {url}  ({terminal.counted(len(runs), 'run')} under {parsed.folder}; Ctrl-C stops it)",
        soft_wrap=True,
    )
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, StopRequested):  # (Ctrl-C, or SIGTERM: a server's ordinary end, unsaid)
        return 0


def without_commas(runs: dict[str, Path], links: Path) -> dict[str, Path]:
    """TensorBoard splits --logdir_spec at its commas, and a lesson sweep's job folder has some
    (`optimizer=adam,trainer.epochs=2`): such a run is given as a link in `links`, whose path
    has none; TensorBoard reads the folder it leads to (it resolves every path it is given)."""
    given = {}
    for number, (name, path) in enumerate(runs.items()):
        if "," in str(path):
            link = links / str(number)
            link.symlink_to(path.resolve(), target_is_directory=True)
            path = link
        given[name] = path
    return given


def named_runs(folder: Path) -> dict[str, Path]:
    """Every run folder under `folder` with TensorBoard events (its tb folder), by a readable name."""
    names: dict[str, Path] = {}
    for tb in sorted(folder.expanduser().glob("**/tb")):
        run = tb.parent
        if tb.is_symlink() or not any(tb.glob("events.*")) or not utf8(str(run)):
            continue  # (a link leads elsewhere; a path that is not UTF-8 cannot be named to it)
        said = f"{experiment_of(run)} {overrides_of(run)}".strip()
        name = spec_name(f"{said} {tag}" if (tag := folder_tag(run.name)) else said)
        if name in names:  # (two sweeps' job 0 of one grid: the second hid the first)
            name = spec_name(f"{said} [{run.relative_to(folder.expanduser())}]")
        names[name] = run / "tb"
    return names


def folder_tag(name: str) -> str:
    """What a run's folder name adds to its name and overrides: a run's id (`[ab12cd]` of
    2026-11-24_08-30-12_ab12cd), a sweep job's number (`[0]`); nothing for a folder named by the
    overrides already shown (a lesson sweep's job, `optimizer=adam,trainer.epochs=2`)."""
    if stamped := re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_(\w+)", name):
        return f"[{stamped.group(1)}]"
    return f"[{name}]" if len(name) <= 12 and "=" not in name else ""


def spec_name(name: str) -> str:
    """A run's name as TensorBoard's --logdir_spec takes it (its separators replaced)."""
    return inert(name).replace(",", ";").replace(":", "=")


def experiment_of(run: Path) -> str:
    """The run's name (`name`, with the `${dataset.name}`-like keys it is made of filled in from
    the same saved config: plain values only, no resolver runs), else its folder's parent."""
    config = _read(run / ".hydra" / "config.yaml")
    name = config.get("name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        return run.parent.name

    def value(match: re.Match) -> str:
        node: object = config
        for key in match.group(1).split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return str(node) if isinstance(node, (str, int, float)) and "${" not in str(node) else match.group(0)

    filled = re.sub(r"\$\{([\w.]+)\}", value, name)
    return filled if "${" not in filled else run.parent.name


def overrides_of(run: Path) -> str:
    """What the run was started with, less where it was (resume=, hydra.*: paths)."""
    overrides = _read(run / ".hydra" / "overrides.yaml")
    if not isinstance(overrides, list):
        return ""
    shown = [o for o in overrides if isinstance(o, str) and not o.startswith(("resume=", "hydra."))]
    resumed = any(isinstance(o, str) and o.startswith("resume=") for o in overrides)
    return " ".join(shown) + (" (resumed)" if resumed else "")


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
