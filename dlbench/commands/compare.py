"""dlbench compare DIR...: runs and the jobs of sweeps side by side, sorted by a metric,
written as CSV or Markdown, and with --plot METRIC each one's curve of that metric on one
figure (PNG or SVG), labelled by the overrides that differ."""

from __future__ import annotations

import io
from pathlib import Path

from dlbench import files, rundir, summary, terminal
from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, DlbenchError, did_you_mean, output_path


def compare_command(args: list[str]) -> int:
    """dlbench compare DIR... [--sort METRIC] [--ascending] [--metrics A,B] [--csv F] [--md F]
    [--plot METRIC [--x epoch|step] [--out F.png|.svg]]"""
    usage = (
        "usage: dlbench compare RUN_OR_SWEEP... [--sort METRIC] [--ascending] "
        "[--metrics A,B] [--csv FILE] [--md FILE] [--plot METRIC [--x epoch|step] [--out FILE.png|.svg]]"
    )
    parser = ArgumentParser(prog="dlbench compare", usage_line=usage)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--sort")
    parser.add_argument("--ascending", action="store_true", default=None)
    parser.add_argument("--metrics")
    parser.add_argument("--csv", type=output_path)
    parser.add_argument("--md", type=output_path)
    parser.add_argument("--plot")
    parser.add_argument("--x", choices=("epoch", "step"))
    parser.add_argument("--out", type=output_path)
    parsed = parser.parse_args(args)
    for flag in ("--out", "--x"):  # (options of the figure: without one, a silent no-op)
        if getattr(parsed, flag[2:]) is not None and parsed.plot is None:
            raise DlbenchError(f"{flag} is an option of the figure --plot METRIC draws: add --plot")
    if parsed.metrics is not None and not parsed.metrics.strip(","):
        raise DlbenchError("--metrics names no metric: give them as --metrics val/acc,val/loss")
    for flag in ("--sort", "--plot"):  # (--sort '': the rows unsorted, without a word)
        if getattr(parsed, flag[2:]) is not None and not getattr(parsed, flag[2:]).strip():
            raise DlbenchError(f"{flag} names no metric: give one, e.g. {flag} val/acc")
    plot_file = parsed.out or Path(f"{str(parsed.plot).replace('/', '_')}.png")
    if parsed.plot is not None:
        rundir.check_output_file(plot_file, "--out", (".png", ".svg"))
    for path, flag in ((parsed.csv, "--csv"), (parsed.md, "--md")):
        if path is not None:
            rundir.check_output_file(path, flag, (f".{flag[2:]}",))
    folders = summary.run_folders(summary.chosen(parsed.paths))
    rows = summary.rows_of(folders)
    if parsed.plot is not None:  # (labelled before the rows are sorted: they pair with the folders)
        curves = curves_of(folders, rows, parsed.plot, parsed.x or "epoch")
    if parsed.sort:
        rows = summary.sort_rows(rows, parsed.sort, parsed.ascending)
    metrics = [m for m in parsed.metrics.split(",") if m] if parsed.metrics else None
    known = {key for row in rows for key in row if "/" in key}  # (time/ and train/lr too)
    if missing := [m for m in metrics or [] if m not in known]:  # (a typo was an empty column)
        raise DlbenchError(
            f"--metrics: no run has the metric '{missing[0]}'.{did_you_mean(missing[0], known)}",
            f"Their metrics: {', '.join(summary.metric_columns(rows))} (and time/...)",
        )
    if metrics is None and parsed.sort:
        metrics = [parsed.sort, *[m for m in summary.HEADLINE if m != parsed.sort]][:4]
        metrics = [m for m in metrics if any(m in r for r in rows)]
    console.print(summary.table(rows, terminal.counted(len(rows), "run"), metrics=metrics))
    for path in (parsed.csv, parsed.md):
        if path is not None:
            summary.write(rows, path)
            console.print(f"wrote {path}")
    if parsed.plot is not None:
        plot(curves, parsed.plot, parsed.x or "epoch", plot_file)
        console.print(f"wrote {plot_file}")
    return 0


def curves_of(folders: list[tuple[str, Path]], rows: list[dict], metric: str, x: str) -> tuple:
    """Each run's logged curve of `metric` (TensorBoard's scalars) against epoch or step,
    labelled by the overrides that differ between the runs; and what they all share."""
    from dlbench import logged
    from dlbench.errors import unknown_name

    shared, labels = summary.varying_overrides(rows)
    # (runs of two sweeps with the same overrides: told apart by their names, as the table does)
    labels = [
        label if label and labels.count(label) == 1 else name
        for (name, _), label in zip(folders, labels, strict=True)
    ]
    curves, seen, unread = [], set(), []
    for (_, folder), label in zip(folders, labels, strict=True):
        scalars = logged.curves(folder)  # (none for a job that failed before its first log)
        seen |= set(scalars)
        unread += [] if scalars else [folder / "tb"]
        if x == "epoch":
            scalars = logged.in_epochs(folder, scalars) or scalars
        if metric in scalars:
            curves.append((label, *scalars[metric]))
    if not curves:
        refused = unknown_name("metric to plot", metric, sorted(seen))
        if not unread:
            raise refused
        named = ", ".join(map(str, unread[:3])) + (f" and {len(unread) - 3} more" if len(unread) > 3 else "")
        raise DlbenchError(  # (a corrupt events file said only "Available: (none)")
            *refused.lines, f"No curve could be read from {named}: no TensorBoard events there, or unreadable"
        )
    if unread:  # (left out of the figure without a word)
        from dlbench.engine.logging import err_console

        err_console.print(f"note: no curve read from {', '.join(map(str, unread))}: left out of the figure")
    return curves, shared


def plot(curves_and_shared: tuple, metric: str, x: str, out: Path) -> None:
    """The curves on one figure, written as a PNG or an SVG."""
    from dlbench.figures import curves_figure

    curves, shared = curves_and_shared
    title = f"{metric}" + (f"  ({' '.join(shared)})" if shared else "")
    figure = curves_figure(curves, metric, x, title)
    picture = io.BytesIO()
    figure.savefig(picture, format=out.suffix[1:].lower(), dpi=120)
    files.write_bytes(out, lambda f: f.write(picture.getvalue()))
