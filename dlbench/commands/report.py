"""dlbench report RUN|SWEEP... [--out FILE.html]: one self-contained HTML page about a run, or
about a sweep's jobs (or several runs and sweeps, side by side as `compare` puts them), to open
in a browser, mail, or put beside a lesson (dlbench/report.py)."""

from __future__ import annotations

from pathlib import Path

from dlbench import files, rundir, summary
from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, output_path


def report_command(args: list[str]) -> int:
    usage = "usage: dlbench report RUN_OR_SWEEP... [--out FILE.html]  (folders of runs or of sweeps)"
    parser = ArgumentParser(prog="dlbench report", usage_line=usage)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--out", type=output_path, default=Path("report.html"))
    parsed = parser.parse_args(args)
    out = parsed.out
    paths = summary.chosen(parsed.paths)  # (a folder of sweeps: its newest, whose name titles the page)
    folders = summary.run_folders(paths)  # (a mistyped folder first: it was refused as report.html exists)
    rundir.check_output_file(out, "--out", (".html",))

    from dlbench import report

    if len(paths) == 1 and (paths[0] / ".hydra").is_dir():
        page = report.run_report(paths[0])
    else:
        title = paths[0].name if len(paths) == 1 else f"{len(paths)} folders"
        page = report.sweep_report(title, folders)
    files.write_text(out, page)
    console.print(f"wrote {out}  ({len(page) / 1e6:.1f} MB, self-contained: open it in a browser)")
    return 0
