"""What a run shows and records: console lines or a rich progress bar, and TensorBoard."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are rendered to images for TensorBoard; no display needed

from rich.console import Console  # noqa: E402
from rich.logging import RichHandler  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

log = logging.getLogger("dlbench")
console = Console()


def setup_console(mode: str = "auto") -> str:
    """Send dlbench's log lines to the console; returns the progress mode in effect.

    'auto' means a rich display on a terminal and plain lines otherwise (CI, files, pipes).
    """
    if mode == "auto":
        mode = "rich" if console.is_terminal else "plain"
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dlbench_console", False):
            root.removeHandler(handler)
    if mode == "rich":
        handler: logging.Handler = RichHandler(console=console, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler._dlbench_console = True  # type: ignore[attr-defined]
    handler.setLevel(logging.WARNING if mode == "none" else logging.INFO)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return mode


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def metrics_table(metrics: dict[str, float], title: str = "Final metrics") -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    return table


class RunLogger:
    """Console progress and TensorBoard writes for one run.

    `purge_step` (the step a resumed run starts from) drops events a killed run wrote after
    its last checkpoint, so a run's TensorBoard steps stay strictly increasing.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, progress: str, purge_step: int | None = None):
        self.progress_mode = progress
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, figure, step, close=True)
        else:
            import matplotlib.pyplot as plt

            plt.close(figure)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Record the run's settings beside its final metrics (TensorBoard's HParams tab)."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        exp, ssi, sei = hparams_summary(hparams, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Any]:
        """A context giving `advance(**fields)`: a rich bar on a terminal, nothing otherwise."""
        if self.progress_mode != "rich":
            yield lambda **_: None
            return
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(description, total=total, info="")

            def advance(**fields: Any) -> None:
                info = format_metrics(fields) if fields else None
                bar.update(task, advance=1, **({"info": info} if info else {}))

            yield advance

    def flush(self) -> None:
        """Put the events written so far on disk (with each checkpoint: a killed run keeps them)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
