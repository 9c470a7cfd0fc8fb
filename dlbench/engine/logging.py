"""What a run shows and records: console lines or a rich progress bar, and TensorBoard."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from dlbench import terminal
from dlbench.engine.budget import TimeBudget
from dlbench.errors import DlbenchError, first_line

if TYPE_CHECKING:  # (a type only: the backends are imported when a run opens them)
    from dlbench.engine.loggers import RunInfo

log = logging.getLogger("dlbench")
terminal.protect_logs()  # every log line inert: no control character from the data reaches a terminal

# dlbench's consoles: text is data, never markup (terminal.py)
console = terminal.console()
err_console = terminal.console(stderr=True)


def no_progress(samples: int, shown: tuple[str, Any] | None = None) -> None:
    """trainer.progress=none's advance(): nothing."""


def new_table(
    title: str | tuple[str, ...],
    *columns: str,
    right: tuple[str, ...] = (),
    gives_way: tuple[str, ...] = (),
    **options: Any,
) -> Table:
    """A table whose cells are never split over lines, and whose names and values are never cut
    (terminal.fit, when it is printed): only the columns in `gives_way` (free text, such as a
    description) are shortened, with an ellipsis, to fit the terminal. A title of several lines
    is given as a tuple of them (a line break inside one is shown as an escape)."""

    def whole(text: Any) -> Any:  # a title or caption never split over lines (terminal.fit)
        # (inert first: rich's Text drops BEL, BS, CR, VT, FF, so a name would be shown changed)
        if isinstance(text, tuple):
            return Text("\n".join(map(terminal.inert, text)), no_wrap=True, overflow="ignore")
        return Text(terminal.inert(text), no_wrap=True, overflow="ignore") if isinstance(text, str) else text

    table = Table(title=whole(title), caption=whole(options.pop("caption", None)), **options)
    for column in columns:
        table.add_column(
            column, justify="right" if column in right else "left", no_wrap=True, overflow="ellipsis"
        )
        table.columns[-1].gives_way = column in gives_way  # type: ignore[attr-defined]
    return table


def print_error(*lines: str) -> None:
    """An error on stderr: its lines (a DlbenchError's `lines`), each soft-wrapped (no line
    break of its own, so a path or value is never split) and text ("dlbench[slurm]" prints as
    written); a line break or other control inside a line is shown as an escape (`\\x0a`)."""
    text = "\n".join(terminal.inert(line) for line in lines)
    err_console.print(Text.assemble(("error:", "bold red"), " ", text), soft_wrap=True)


FILES_ONLY = {"files_only": True}  # a log record's `extra` that the console leaves out (a traceback)


def not_files_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "files_only", False)


def setup_console(mode: str = "auto", errors_only: bool = False) -> str:
    """Send dlbench's log lines to the console; returns the progress mode in effect.

    'auto' means a rich display on a terminal and plain lines otherwise (CI, files, pipes).
    `errors_only`: a process of a distributed run other than rank 0, whose warnings rank 0
    gives too (each process runs the same steps on its share: each was said once per process).
    """
    if mode == "auto":
        mode = "rich" if console.is_terminal else "plain"
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dlbench_console", False):
            root.removeHandler(handler)
    if mode == "rich":
        handler: logging.Handler = TerminalLines(console)
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler._dlbench_console = True  # type: ignore[attr-defined]
    handler.addFilter(not_files_only)  # (train.log keeps a bug's traceback; the error line says so)
    handler.setLevel(logging.ERROR if errors_only else logging.WARNING if mode == "none" else logging.INFO)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return mode


class TerminalLines(logging.Handler):
    """dlbench's log lines on a terminal: `[time] message`, warnings and errors named, an
    exception's traceback below, as text (a control character shown, not sent). rich's own
    RichHandler lays each line out as a table: 0.6 ms a line, and 1.2 ms under the progress
    bar (which a print draws again); here ~0.2 ms, and ~0.4 under the bar, whose lines are
    kept from its last redraw (`drawn_once`). One line an epoch of the default MLP's 8 ms cost
    it a seventh of its training."""

    STYLES = {logging.WARNING: "yellow", logging.ERROR: "bold red", logging.CRITICAL: "bold red"}

    def __init__(self, shown_on: Any) -> None:
        super().__init__()
        self.console = shown_on
        self.setFormatter(logging.Formatter("%(message)s"))  # (and the traceback, if any)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            when = time.strftime("[%X]", time.localtime(record.created))
            style = self.STYLES.get(record.levelno, "bold red")
            level = () if record.levelno < logging.WARNING else ((record.levelname, style), " ")
            # (shown before rich makes a Text of it: rich would drop a carriage return)
            message = terminal.inert(self.format(record), keep="\n\t")
            self.console.print(Text.assemble((when, "dim"), " ", *level, message))
        except Exception:  # (a message that cannot be formatted, a terminal gone: logging's report)  # noqa: BLE001
            self.handleError(record)


class _Held(logging.Filter):
    """Keeps the records a handler is given instead of letting it write them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextmanager
def held_file_logs(folder: Path, keep_on_failure: bool = True) -> Iterator[Any]:
    """Hold the log lines bound for files in `folder` (its train.log) until the run calls the
    `release()` this yields: a run writes nothing in its folder, its log included, before every
    part of it is built. On leaving without a release (a failure), the held lines are written
    with `keep_on_failure` (a new run's log says what happened) or dropped (a resume that
    failed leaves the run's log as it was; the console showed them)."""
    held: list[tuple[logging.Handler, _Held]] = []
    for handler in logging.getLogger().handlers:
        filename = getattr(handler, "baseFilename", None)
        if filename and Path(filename).parent.resolve() == folder.resolve():
            hold = _Held()
            handler.addFilter(hold)
            held.append((handler, hold))

    def release(write: bool = True) -> None:
        for handler, hold in held:
            handler.removeFilter(hold)
            for record in hold.records if write else []:
                handler.handle(record)
        held.clear()

    try:
        yield release
    finally:
        release(write=keep_on_failure)


def flat_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as flat scalars for TensorBoard's HParams tab, MLflow's params and W&B's
    config, written as the command line writes them (`model.hidden`: "[128,64]"; an unset
    `trainer.ema`: "null", so a sweep's job without it can be picked out too)."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float, str, bool)):
                flat[f"{prefix}{key}"] = value
            elif value is None or (isinstance(value, list) and len(value) <= 20):  # (not a vocabulary)
                flat[f"{prefix}{key}"] = terminal.written(value)

    walk(config, "")
    return flat


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def metrics_table(metrics: dict[str, float], title: str = "Final metrics") -> Table:
    table = new_table(title, "metric", "value", right=("value",))
    for key, value in metrics.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    return table


def _quiet_writer_thread_errors(args: threading.ExceptHookArgs) -> None:
    """TensorBoard's writer thread prints the traceback of a failed write (a full disk) and
    keeps the error for the next write, where RunLogger reports it as one message."""
    if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
        return
    _default_thread_hook(args)


_default_thread_hook = threading.excepthook
threading.excepthook = _quiet_writer_thread_errors


class RunLogger:
    """Console progress and TensorBoard writes for one run.

    `purge_step` (the step a resumed run starts from) drops events a killed run wrote after
    its last checkpoint, so a run's TensorBoard steps stay strictly increasing. A write that
    fails (a full disk) stops the run with one message naming the folder.
    """

    def __init__(self, run_dir: Path, progress: str, figures_budget: float):
        self.progress_mode = progress
        self.backends: list[Any] = []  # logger.backends, started by open()
        self.run: RunInfo | None = None  # what open() was told of the run
        self.folder = run_dir
        self.live_bar: Any = None  # the training's rich progress bar, while it is shown
        self.bar_shown = 0.0  # when it was last redrawn
        # logger.figures_budget: an evaluation's figures cost ~0.2 s to draw (the first guess)
        self.figures = TimeBudget(figures_budget, first_cost=0.2)
        self.pending: list[tuple[dict[str, Any], int, float]] = []  # step_scalars not yet written
        self.step_writes_s = 0.0  # seconds spent writing them (not an epoch's: time/epoch_s)

    def figures_due(self) -> bool:
        """Whether an evaluation's figures fit logger.figures_budget (engine/budget.py; a run of
        a few short epochs skips the first epoch's)."""
        return self.figures.due()

    def drew_figures(self, seconds: float) -> None:
        """An evaluation's figures took `seconds` to draw and log."""
        self.figures.took(seconds)

    def open(self, backends: list[str], run: RunInfo) -> None:
        """Start each of logger.backends (engine/loggers.py) once every part of the run is built:
        the trackers (MLflow, W&B) first, so one that cannot start (a wrong address, Ctrl-C
        while it connects) stops the run before TensorBoard's files make its folder a run's."""
        from dlbench.engine.loggers import create, not_started

        created = [create(name) for name in backends]
        for name, backend in sorted(
            zip(backends, created, strict=True), key=lambda pair: not getattr(pair[1], "tracker", False)
        ):
            backend.name = name
            try:
                with self.writing(backend, starting=True):
                    backend.start(run)
            except DlbenchError:
                raise
            except Exception as err:  # a tracking server that does not answer, a bad URI: the setting's fault
                raise not_started(name, err) from err
            self.backends.append(backend)
        self.backends.sort(key=created.index)  # (in the order given)
        self.run = run

    @property
    def active(self) -> bool:
        """Whether any backend takes the values (figures are drawn only then)."""
        return bool(self.backends)

    @contextmanager
    def writing(self, backend: Any = None, starting: bool = False) -> Iterator[None]:
        """Turn a failed write (TensorBoard's, metrics.csv's) into one message naming the folder.
        A tracker (MLflow, W&B) that fails once it has started is let go instead (`let_go`)."""
        from dlbench.files import file_error

        try:
            yield
        except Exception as err:
            if getattr(backend, "tracker", False) and not starting:
                self.let_go(backend, err)
            elif isinstance(err, OSError):
                raise file_error(err, getattr(backend, "folder", self.folder)) from err
            else:
                raise

    def let_go(self, backend: Any, err: Exception) -> None:
        """A tracker that failed mid-run (a tracking server gone, after MLflow's own retries):
        one warning, and the run goes on without it (not closed: closing would wait on the
        same server, so an MLflow run stays marked running). Its values so far stay where it
        sent them. The run's own files are another matter: a failed write there stops the run
        (`writing`)."""
        if backend in self.backends:  # (not in them while they are closed: `close`)
            self.backends.remove(backend)  # (each loop over them goes over a copy)
        log.warning(
            f"logger {backend.name} failed ({first_line(err)}) and is left out from here on; the "
            "run folder keeps the rest (train.log, metrics.json, and TensorBoard or metrics.csv "
            "where they log)"
        )

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        """An evaluation's values (an epoch's, the test's), after the step values kept so far."""
        self.write_step_scalars()
        self.write(values, step, wall_time)

    def write(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        """Values to every backend, as they are."""
        for backend in tuple(self.backends):
            with self.writing(backend):
                backend.scalars(values, step, wall_time)

    def step_scalars(self, values: dict[str, Any], step: int) -> None:
        """A training step's values (tensors on the device, or floats), kept and written with
        whatever is logged next at a later step (an evaluation's values or figures: a tracker such
        as W&B drops a step older than one it has), a checkpoint's flush or the close, or sooner
        once 10 s have passed or 1,000 entries are kept (a logged step's values, its gradient norms,
        a running mean: one entry each): reading a tensor waits for the device, and a write costs
        more than a tiny step. (Written at each epoch's end, linear_regression's one-step epochs
        paid ~110 us each for it, nearly doubling them: TensorBoard's writer thread woken for each
        event.)
        A tensor is kept detached: its graph is not kept with it."""
        now = time.time()
        values = {k: v.detach() if getattr(v, "requires_grad", False) else v for k, v in values.items()}
        self.pending.append((values, step, now))
        if len(self.pending) >= 1000 or now - self.pending[0][2] >= 10:  # (long epochs: seen as they go)
            self.write_step_scalars()

    def write_step_scalars(self) -> None:
        """Write the kept step values, each with the time it was measured."""
        if not self.pending:
            return
        started, (pending, self.pending) = time.perf_counter(), (self.pending, [])
        try:
            for values, step, wall_time in pending:
                self.write({tag: float(value) for tag, value in values.items()}, step, wall_time)
        finally:
            self.step_writes_s += time.perf_counter() - started

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self.write_step_scalars()
        for backend in tuple(self.backends):
            with self.writing(backend):
                backend.figure(tag, figure, step)

    def finish(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        """The run's settings (as open() was given them) beside its final metrics (TensorBoard's
        HParams tab, W&B's summary), and its checkpoint where the backend keeps artifacts (MLflow)."""
        self.write_step_scalars()
        for backend in tuple(self.backends):
            with self.writing(backend):
                backend.finish(self.run.settings, metrics, checkpoint)

    def progress(self, total: int, description: str, run_steps_left: int) -> Callable[..., None]:
        """An epoch's `advance(samples, shown=None)`, called once per training step (with
        `shown`, (name, value) of the step's first value, the loss, on the steps that log it; the
        value may be a tensor, read only when drawn). On a terminal: a rich bar with the epoch, its steps,
        samples/s, the loss and the epoch's time left, redrawn at most every 0.1 s (rich's own
        rate, here without its drawing thread). In plain mode (a pipe, a log file): one line per
        logged step with the same figures and the whole run's time left. With
        trainer.progress=none, one function that does nothing serves every epoch."""
        if self.progress_mode == "none":
            return no_progress
        started, seen, step = time.perf_counter(), 0, 0
        bar = self.bar() if self.progress_mode == "rich" else None
        task = bar.task_ids[0] if bar is not None else None
        last: tuple[str, Any] | None = None  # the last logged step's (name, value)
        drawn = False  # whether the bar shows this epoch yet

        from dlbench.engine import distributed  # (a run's: torch is loaded by then)

        processes = distributed.world_size()  # (every process's samples: each takes the same share)

        def rate() -> str:
            elapsed = time.perf_counter() - started
            return f"{seen * processes / elapsed:,.0f} samples/s" if elapsed > 0 else ""

        def draw() -> None:
            """The bar with this epoch's figures, drawn. The epoch is given to rich only here: an
            update of rich's task at each epoch's start cost ~9 us an epoch (2% of mlp_regression's
            10,000 one-step epochs), and most of those epochs are never drawn."""
            nonlocal drawn
            if not drawn:  # (the task starts again; rich's reset would also redraw it)
                bar.update(task, total=total, completed=0, description=description, info="", rate="")
                bar.tasks[0].finished_time = None
                drawn = True
            # (escapes shown before rich sizes the column: shown after, they would push the value out)
            info = terminal.inert(f"{last[0]} {float(last[1]):.4g}") if last is not None else ""
            bar.update(task, completed=step, rate=rate() if seen else "", info=info)
            self.redraw(bar)

        if bar is not None and self.redraw_due():  # (after an evaluation, the new epoch is shown at once)
            draw()

        def advance(samples: int, shown: tuple[str, Any] | None = None) -> None:
            nonlocal seen, step, last
            seen, step = seen + samples, step + 1
            if bar is not None:
                last = shown or last
                if self.redraw_due():
                    draw()
            elif shown is not None and self.progress_mode == "plain":
                left = (time.perf_counter() - started) / step * max(0, run_steps_left - step)
                value = f"{shown[0]} {float(shown[1]):.4g}"
                # (batches: with trainer.accumulate, several make an optimizer step)
                log.info(f"{description}  batch {step}/{total}  {value}  {rate()}  ETA {_clock(left)}")

        return advance

    def bar(self) -> Any:
        """The rich progress bar of the training, started at its first epoch and shown until
        `end_progress`. One for the whole fit: a bar started and drawn each epoch cost ~3.5 ms an
        epoch, several times what one of iris_mlp's epochs takes to train."""
        if self.live_bar is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = [  # (text, not markup: a task names its values, `[bold]loss` shows as written)
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}", markup=False),
                TextColumn("{task.fields[info]}", markup=False),
                TextColumn("ETA", markup=False),
                TimeRemainingColumn(),
            ]
            self.live_bar = drawn_once(Progress)(
                *columns, console=console, transient=True, auto_refresh=False
            )
            self.live_bar.add_task("", total=1, info="", rate="")
            self.live_bar.start()
        return self.live_bar

    def redraw_due(self) -> bool:
        """Whether the bar was last drawn 0.1 s ago or more: it is drawn at most ten times a
        second, rich's own rate (its drawing thread is off: a redraw costs more than a tiny step)."""
        return time.perf_counter() - self.bar_shown >= 0.1

    def redraw(self, bar: Any) -> None:
        bar.refresh()
        self.bar_shown = time.perf_counter()

    def end_progress(self) -> None:
        """Take the training's progress bar off the terminal (at the end of fit)."""
        if self.live_bar is not None:
            self.live_bar.stop()
            self.live_bar = None

    def flush(self) -> None:
        """Put what was written so far on disk (with each checkpoint: a killed run keeps it)."""
        self.write_step_scalars()
        for backend in tuple(self.backends):
            with self.writing(backend):
                backend.flush()

    def close(self, outcome: str = "finished") -> None:
        """Close every backend, each whatever the others do (Ctrl-C included: it is raised once
        all are closed, which mark their run killed); `outcome` (finished, failed: an error
        stopped the run, killed: Ctrl-C or a signal) is what a tracker marks its run with. A
        failure is raised once all are closed (any other one a warning); where the run already
        stopped on its own error (`outcome` is not finished), each is a warning beside that
        error, which it does not hide."""
        failures: list[BaseException] = []
        ended_well = outcome == "finished"
        backends = self.backends
        try:
            self.write_step_scalars()
        except BaseException as err:
            failures.append(err)
            if isinstance(err, KeyboardInterrupt):
                outcome = "killed"
            elif ended_well:  # (its last values did not reach the trackers)
                outcome = "failed"
        self.backends = []
        for backend in backends:
            try:
                with self.writing(backend):
                    backend.close(outcome)
            except BaseException as err:
                failures.append(err)
                if isinstance(err, KeyboardInterrupt):
                    outcome = "killed"
        stop = next((err for err in failures if not isinstance(err, Exception)), None)
        if stop is None and failures and ended_well:
            stop = failures[0]
        for err in failures:
            if err is not stop:
                log.warning(f"while the run stopped, a logger failed too: {first_line(err)}")
        if stop is not None:
            raise stop


def drawn_once(progress: type) -> type:
    """rich's Progress (given: rich is imported only where a bar is shown) whose table is laid out
    once per redraw. rich draws its bar again under every line printed while it is shown, and
    laid the table out again each time (~0.55 ms a log line under the bar); here the lines of a
    redraw's table are kept, and shown again as they are while the console's options (its width)
    stay the same."""

    class DrawnOnce(progress):
        def get_renderable(self) -> Any:
            return LaidOutOnce(super().get_renderable())

    return DrawnOnce


class LaidOutOnce:
    """A renderable laid out once for each set of console options it is shown with."""

    def __init__(self, renderable: Any) -> None:
        self.renderable, self.options, self.lines = renderable, None, []

    def __rich_console__(self, console: Any, options: Any) -> Any:
        if options != self.options:
            self.lines, self.options = list(console.render(self.renderable, options)), options
        yield from self.lines


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"
