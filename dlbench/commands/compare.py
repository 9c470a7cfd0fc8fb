"""dlbench compare DIR...: runs and the jobs of sweeps side by side, sorted by a metric,
written as CSV or Markdown."""

from __future__ import annotations

from pathlib import Path

from dlbench import summary
from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, DlbenchError


def compare_command(args: list[str]) -> int:
    """dlbench compare DIR... [--sort METRIC] [--ascending] [--metrics A,B] [--csv F] [--md F]"""
    usage = (
        "usage: dlbench compare <sweep dir or run dirs...> [--sort METRIC] [--ascending] "
        "[--metrics A,B] [--csv FILE] [--md FILE]"
    )
    parser = ArgumentParser(prog="dlbench compare", usage_line=usage)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--sort")
    parser.add_argument("--ascending", action="store_true", default=None)
    parser.add_argument("--metrics")
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--md", type=Path)
    parsed = parser.parse_args(args)
    for path, suffix in ((parsed.csv, ".csv"), (parsed.md, ".md")):
        if path is None:
            continue
        if path.suffix != suffix:
            raise DlbenchError(
                f"--{suffix[1:]} {path}: name a {suffix} file (it is written over if it exists)"
            )
        if not path.parent.is_dir():
            raise DlbenchError(f"{path}: no such folder {path.parent} (make it first, or write elsewhere)")
    rows = summary.collect(parsed.paths)
    if parsed.sort:
        rows = summary.sort_rows(rows, parsed.sort, parsed.ascending)
    metrics = parsed.metrics.split(",") if parsed.metrics else None
    if metrics is None and parsed.sort:
        metrics = [parsed.sort, *[m for m in summary.HEADLINE if m != parsed.sort]][:4]
        metrics = [m for m in metrics if any(m in r for r in rows)]
    console.print(summary.table(rows, f"{len(rows)} runs", metrics=metrics))
    for path in (parsed.csv, parsed.md):
        if path is not None:
            summary.write(rows, path)
            console.print(f"wrote {path}")
    return 0
