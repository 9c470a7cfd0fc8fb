"""One table of finished jobs: printed at the end of a multirun and written beside it."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.table import Table
from rich.text import Text

from dlbench import files, terminal
from dlbench.config import higher_is_better
from dlbench.engine.logging import console, err_console, new_table, print_error
from dlbench.errors import DlbenchError, did_you_mean
from dlbench.rundir import REFUSED, SWEEP_FILES, holds_run


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """A run's final metrics, or None when it has none (unfinished, or a torn metrics.json,
    which dlbench's atomic writes never leave but another tool or a full disk might)."""
    path = run_dir / "metrics.json"
    try:
        readable = files.plain_file(path) and path.stat().st_size < 2**24  # (not a FIFO, link, gigabytes)
        metrics = json.loads(path.read_text()) if readable else None
    except (OSError, ValueError, RecursionError):
        return None
    return metrics if isinstance(metrics, dict) else None


def job_row(job_dir: Path) -> dict[str, Any]:
    """A job's overrides, status and final metrics, read from its run directory."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = files.read_yaml(overrides_file) if overrides_file.exists() else []
    except DlbenchError:
        overrides = ["(unreadable overrides.yaml)"]
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        overrides = ["(unreadable overrides.yaml)"]
    row: dict[str, Any] = {"job": job_dir.name, "overrides": " ".join(overrides), "words": overrides}
    error_file = job_dir / "error.txt"
    if (metrics := read_metrics(job_dir)) is not None:
        row["status"] = "ok"
        row.update({k: v for k, v in metrics.items() if "/" in k})  # metric names: never job, status
    elif files.plain_file(error_file):
        with error_file.open(errors="replace") as f:
            lines = f.read(4096).strip().splitlines()  # its first line is shown
        row["status"] = "failed: " + (lines[0] if lines else "")
    else:
        row["status"] = "incomplete"
    return row


def failed_jobs(sweep_dir: Path) -> list[str]:
    """The jobs of a sweep that did not finish (failed, skipped or incomplete)."""
    return [d.name for d in job_dirs(sweep_dir) if job_row(d)["status"] != "ok"]


def job_dirs(sweep_dir: Path) -> list[Path]:
    """A sweep's jobs, in the order Hydra launched them (a lesson's folders are named by their
    overrides: by name, `optimizer=sgd_momentum`, job 1, came last); by name where a folder
    does not say (0, 1, ..., 10 as numbers)."""
    return sorted(job_folders(sweep_dir), key=lambda p: (job_number(p), len(p.name), p.name))


def job_folders(sweep_dir: Path) -> list[Path]:
    """A sweep's jobs in no order: its own folders (a link to another run is not one of them)."""
    return [p for p in sweep_dir.iterdir() if p.is_dir() and not p.is_symlink() and (p / ".hydra").is_dir()]


def job_number(job: Path) -> float:
    """A sweep job's number, hydra.job.num in its .hydra/hydra.yaml (read as text: the file is
    data, and a sweep's thousand jobs are read quickly), else its folder's (Hydra names a job's
    folder by its number unless told otherwise: a job that failed before its config was written
    has only that); else infinity."""
    saved, text = job / ".hydra" / "hydra.yaml", ""
    try:
        if files.plain_file(saved):  # (not a link, nor a FIFO: its read would never end)
            with saved.open(errors="replace") as f:
                text = f.read(1 << 16)
    except OSError:
        pass
    found = re.search(r"^  job:\n(?:    .*\n)*?    num: (\d{1,9})$", text, re.M)
    if found:
        return int(found.group(1))
    return int(job.name) if job.name.isdigit() and job.name.isascii() and len(job.name) < 10 else math.inf


def metric_columns(rows: list[dict[str, Any]], every: bool = False) -> list[str]:
    """The jobs' metrics, test/ first: those a table shows (not time/ nor train/lr), or `every`
    one (summary.csv and .md, compare --csv and --md)."""
    keys = {k for row in rows for k in row if "/" in k and (every or not k.startswith(("time/", "train/lr")))}
    order = {"test": 0, "val": 1, "train": 2}
    return sorted(keys, key=lambda k: (order.get(k.split("/")[0], 3), k))


HEADLINE = ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss", "test/mse", "val/mse")


def table(
    rows: list[dict[str, Any]], title: str, max_metrics: int = 4, metrics: list[str] | None = None
) -> Table:
    """The printed summary: the headline metrics (or `metrics`); summary.csv has them all.
    The overrides column shows what differs between the jobs (what every job shares is in
    the title)."""
    available = metric_columns(rows)
    columns = metrics or ([c for c in HEADLINE if c in available] or available)[:max_metrics]
    shared, own = varying_overrides(rows)
    names = ("job", "overrides", "status", *columns)
    lines = (title, f"shared: {' '.join(shared)}") if shared else title
    out = new_table(lines, *names, right=tuple(columns))
    for row, varying in zip(rows, own, strict=True):
        status = "failed" if row["status"].startswith("failed") else row["status"]
        out.add_row(row["job"], varying, status, *[_fmt(row.get(c, "")) for c in columns])
    return out


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Rows for run directories, and for every job of each sweep directory given."""
    return rows_of(run_folders(chosen(paths)))


def rows_of(folders: list[tuple[str, Path]]) -> list[dict[str, Any]]:
    """A row (job_row) for each (name, folder) of run_folders."""
    return [{**job_row(folder), "job": name} for name, folder in folders]


def chosen(paths: list[Path]) -> list[Path]:
    """The folders given, a folder of sweeps (outputs/multirun) replaced by the sweep run last
    in it, which a note names."""
    found = []
    for path in paths:
        if path.is_dir() and not (path / ".hydra").is_dir() and not holds_run(path) and not job_folders(path):
            if (sweep := newest_sweep(path)) is not None:
                err_console.print(f"note: {path} holds sweeps: using the one run last, {sweep}")
                path = sweep
        found.append(path)
    return found


def run_folders(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name, folder) of each run directory given and of every job of each sweep directory
    (`chosen` replaces a folder of sweeps by its newest first)."""
    found = []
    for path in paths:
        if len(paths) > 1 and path.name in SWEEP_FILES and path.is_file():
            continue  # (SWEEP/* names the sweep's own files beside its jobs: multirun.yaml, summary.csv)
        if (path / ".hydra").is_dir() or holds_run(path):  # (a run copied without its .hydra/: its results)
            found.append((str(path), path))
        elif path.is_dir() and (jobs := job_dirs(path)):
            found += [(f"{path.name}/{d.name}" if len(paths) > 1 else d.name, d) for d in jobs]
        else:
            raise DlbenchError(
                f"{path} is not a run's folder, a sweep's, nor a folder of sweeps (no .hydra/, metrics.json, "
                "checkpoints or tb/ in it or its folders)"
            )
    return found


def newest_sweep(folder: Path) -> Path | None:
    """Of the sweeps directly in `folder`, the one whose multirun.yaml was written last (at its
    start, or at its sweep.resume), or None if none has jobs. What cannot be read is passed over."""
    return files.newest_holding(
        folder, "multirun.yaml", lambda f: files.plain_file(f) and bool(job_folders(f.parent))
    )


def varying_overrides(rows: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """What every job shares, and each job's own overrides (what differs): a label for each."""
    split = [r["words"] for r in rows]  # (job_row's, one an override: a plugin's path may hold a space)
    shared = set.intersection(*map(set, split)) if len(rows) > 1 else set()
    return sorted(shared), [" ".join(o for o in own if o not in shared) for own in split]


def sort_rows(rows: list[dict[str, Any]], metric: str, ascending: bool | None = None) -> list[dict[str, Any]]:
    """Jobs by a metric, best first (highest for accuracy-like names, else lowest); jobs
    without it (or whose value is not a number) last."""
    if not any(metric in r for r in rows):
        raise DlbenchError(f"no job has the metric '{metric}'.{did_you_mean(metric, metric_columns(rows))}")
    if ascending is None:
        ascending = not higher_is_better(metric)
    have = sorted(
        (r for r in rows if is_number(r.get(metric))), key=lambda r: r[metric], reverse=not ascending
    )
    return have + [r for r in rows if not is_number(r.get(metric))]


def is_number(value: Any) -> bool:
    """A value a job can be ranked by and shown as a number (a metrics.json may hold text, null
    or a list, NaN, or a whole number too large for a float: `{:.4g}` of it raised)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return float(value) == float(value)
    except OverflowError:
        return False


def _inert(value: Any) -> Any:
    """A CSV cell: text inert (`terminal.inert`), a number as it is."""
    return terminal.inert(value) if isinstance(value, str) else value


def write(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the rows, every metric, as CSV (`.csv`) or a Markdown table (`.md`), their text inert."""
    columns = ["job", "overrides", "status", *metric_columns(rows, every=True)]
    if path.suffix == ".csv":  # (its text inert too: a `cat` of it sends no escape to the terminal)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(map(_inert, columns))
        writer.writerows([_inert(row.get(column, "")) for column in columns] for row in rows)
        files.write_text(path, text.getvalue())
        return
    lines = ["| " + " | ".join(map(_cell, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    files.write_text(path, "\n".join(lines) + "\n")


MARKDOWN = set("\\`*_[]<>|&~")  # what starts Markdown's inline syntax (and a table's `|`)


def _cell(value: Any) -> str:
    """A Markdown table's cell, shown as it is: its Markdown characters escaped (an override's
    `|` gave its row another column; `data/*/x*.csv` rendered in italics, `<none>` as HTML), a
    line break or a tab shown as an escape (`terminal.inert`)."""
    return "".join(f"\\{c}" if c in MARKDOWN else c for c in terminal.inert(_fmt(value)))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class SweepSummary(Callback):
    """Hydra callback: after a multirun, print the summary and write summary.csv/.md."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A sampling sweeper's sweep (Optuna's) gets the multirun.yaml Hydra's basic sweeper
        writes as it starts: the command that started it, which compare and report (the newest
        sweep of a folder) and sweep.resume (its words) read. Without it, a search was passed
        over for an older grid, and its sweep.resume hint lost every word."""
        if config.hydra.sweeper.get("_target_", "").endswith(("BasicSweeper", "CheckedSweeper")):
            return  # (it writes its own; dlbench's CheckedSweeper is one)
        files.write_text(Path(config.hydra.sweep.dir) / "multirun.yaml", OmegaConf.to_yaml(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir() or (sweep_dir / REFUSED).is_file():  # (a refused sweep.resume: as it was)
            return
        rows = [job_row(d) for d in job_dirs(sweep_dir)]
        try:
            write(rows, sweep_dir / "summary.csv")
            write(rows, sweep_dir / "summary.md")
        except DlbenchError as err:  # (the table is printed all the same)
            print_error(*err.lines)
        console.print(table(rows, f"Sweep summary ({terminal.counted(len(rows), 'job')})"))
        console.print(f"Sweep directory: {sweep_dir}  (summary.csv, summary.md: every metric)")
        for row in rows:
            if row["status"].startswith("failed"):
                console.print(f"job {row['job']} {row['status']}")
        best = sweep_dir / "optimization_results.yaml"  # written by the Optuna sweeper
        try:
            result = files.read_yaml(best) if best.is_file() else None
        except DlbenchError:
            result = None
        if isinstance(result, dict) and isinstance(result.get("best_params") or {}, dict):
            console.print(
                Text.assemble(("Best trial", "bold"), terminal.inert(f": {result.get('best_value')}"))
            )
            console.print(f"Train it with: {best_trial_command(config, result.get('best_params') or {})}")


def best_trial_command(config: DictConfig, params: dict[str, Any]) -> str:
    """The command that trains an Optuna search's best trial alone: the sweep's own words (less
    the keys searched, and the sweep's settings: a resumed search's sweep.resume) with the best
    values (as the sweeper wrote them: Hydra's override text)."""
    searched = {str(key) for key in params}
    words = [
        w
        for w in config.hydra.overrides.task
        if terminal.key_of(w) not in searched and terminal.root_of(w) != "sweep"
    ]
    return terminal.command(*words, *(f"{key}={value}" for key, value in params.items()))
