"""Where a run's values go besides the console: `logger.backends=[tensorboard,csv,mlflow,wandb]`,
any combination. Each backend is one small class with the same methods, which RunLogger calls
with the same values for every one of them:

    start(run)                      once every part is built: the composed config, the settings
    scalars(values, step, wall_time)    every logging step and every evaluation (wall_time: when
                                    the values were measured, time.time(); None: now)
    figure(tag, figure, step)       a matplotlib figure (confusion matrix, samples, ...)
    finish(settings, metrics, checkpoint)   the final metrics, and the checkpoint as an artifact
    flush(), close()

tensorboard (default) writes <run>/tb; csv writes <run>/metrics.csv (step,metric,value), which
costs nothing; mlflow and wandb are extras (`pip install 'dlbench[mlflow]'`, `[wandb]`),
imported only by a run that names them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlbench import terminal

log = logging.getLogger("dlbench")


@dataclass
class RunInfo:
    """What a backend is told when the run starts."""

    folder: Path
    config: str  # the composed config, as YAML
    overrides: list[str]
    experiment: str  # the run's name (the preset's): an MLflow experiment, a W&B project
    group: str | None = None  # the sweep a job belongs to (its folder), or None
    resumed_step: int | None = None  # the step a resumed run goes on from
    settings: dict[str, Any] = field(default_factory=dict)  # flat hyper-parameters
    options: dict[str, Any] = field(default_factory=dict)  # {backend: logger.<backend>'s settings}


def create(name: str) -> Any:
    """The backend of that name (config.LOGGER_BACKENDS; validation.check_backends checked it)."""
    return {"tensorboard": TensorBoard, "csv": Csv, "mlflow": MLflow, "wandb": WandB}[name]()


class TensorBoard:
    """<run>/tb: tensorboard --logdir outputs (dlbench board)."""

    def start(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from dlbench.checksums import use_c_checksums

        use_c_checksums()  # (each event's checksums in C, not in tensorboard's pure Python)
        folder = self.folder = run.folder / "tb"
        if run.resumed_step is not None:
            after_existing_event_files(folder)
        purge = run.resumed_step + 1 if run.resumed_step is not None else None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge)
        self.last_step = purge or 0  # (the HParams summary's, `finish`)
        texts = {"config": run.config, "overrides": "\n".join(run.overrides) or "(none)"}
        for tag, text in texts.items():
            block = "\n".join("    " + line for line in text.splitlines())  # Markdown: verbatim
            self.writer.add_text(tag, block, purge or 0)

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        """One event holding every value (add_scalar writes one event per value: on tiny steps
        each costs more than the step)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=t, simple_value=float(v)) for t, v in values.items()])
        self.writer._get_file_writer().add_summary(summary, step, wall_time)
        self.last_step = max(self.last_step, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self.writer.add_figure(tag, figure, step, close=False)  # (not pyplot's: figures.new_figure)

    def finish(self, settings: dict[str, Any], metrics: dict[str, float], checkpoint: Path | None) -> None:
        """The settings beside the final metrics (TensorBoard's HParams tab)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        exp, ssi, sei = hparams_summary(settings, metrics)
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):  # (at the last step: at 0, a resume's purged the first's, warned)
            file_writer.add_summary(summary, self.last_step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, outcome: str = "finished") -> None:
        self.writer.close()


class Csv:
    """<run>/metrics.csv: one row per value logged (step, metric, value), appended as it comes;
    a resumed run drops the rows after the step it resumes from."""

    HEADER = ["step", "metric", "value"]  # (logged.from_csv reads the file back)

    def start(self, run: RunInfo) -> None:
        from dlbench import files

        self.folder, self.path = run.folder, run.folder / "metrics.csv"
        if run.resumed_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                kept = [r for r in csv.reader(f) if r[:1] != ["step"] and int(r[0]) <= run.resumed_step]
            # (whole or not at all: a resume that fails here, a full disk, left it empty)
            text = io.StringIO()
            csv.writer(text).writerows([self.HEADER, *kept])
            files.write_text(self.path, text.getvalue())
            self.file = self.path.open("a", newline="")
            self.writer = csv.writer(self.file)
            return
        self.file = self.path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.HEADER)

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        self.writer.writerows([step, tag, repr(float(value))] for tag, value in values.items())

    def figure(self, tag: str, figure: Any, step: int) -> None:
        """(figures are TensorBoard's, MLflow's and W&B's)"""

    def finish(self, settings: dict[str, Any], metrics: dict[str, float], checkpoint: Path | None) -> None:
        """(the final metrics are metrics.json's)"""

    def flush(self) -> None:
        self.file.flush()

    def close(self, outcome: str = "finished") -> None:
        self.file.close()


class MLflow:
    """An MLflow run: by default in a SQLite store, outputs/mlflow.db (`mlflow ui
    --backend-store-uri sqlite:///outputs/mlflow.db`), or `logger.mlflow.tracking_uri` (a lab's
    server). The experiment is the run's name (the preset's), a sweep's jobs share it and carry
    the sweep's folder as a tag; the MLflow run is named after the run folder and tagged with
    its path. A resumed run continues its MLflow run (its id is kept in <run>/.mlflow_run_id)."""

    ID_FILE = ".mlflow_run_id"
    tracker = True  # a failure once started lets it go, not the run (RunLogger.let_go)

    @staticmethod
    def store(options: dict[str, Any]) -> str:
        """The tracking URI of logger.mlflow.* (`options`)."""
        return options.get("tracking_uri") or f"sqlite:///{(Path('outputs') / 'mlflow.db').absolute()}"

    @staticmethod
    def experiment(uri: str, name: str) -> tuple[Any, str]:
        """A client of the store, and the id of its experiment `name`, made if it is new (with a
        SQLite store: the store too, its artifacts beside its database)."""
        import mlflow

        # (dlbench says what fails, in one line: MLflow's own log printed a new store's INFO
        # lines, and a store gone mid-run as two tracebacks before that line)
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
        artifacts = None  # (a server's own; MLflow puts a SQLite store's in ./mlruns, wherever you are)
        if uri.startswith("sqlite:///"):
            store = Path(uri.removeprefix("sqlite:///"))
            store.parent.mkdir(parents=True, exist_ok=True)
            artifacts = (store.parent / "mlartifacts").absolute().as_uri()  # beside its database
        client = mlflow.MlflowClient(tracking_uri=uri)
        with tried_once():  # (a server that does not answer: one message now, not in four minutes)
            experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return client, experiment.experiment_id
        return client, client.create_experiment(name, artifact_location=artifacts)

    def start(self, run: RunInfo) -> None:
        uri = self.store(run.options["mlflow"])
        self.client, experiment_id = self.experiment(uri, run.experiment)
        id_file = run.folder / self.ID_FILE
        if run.resumed_step is not None and id_file.is_file():
            self.run_id = id_file.read_text().strip()
            if self.resumed(run):
                return
            # (its store is another: the default one is outputs/mlflow.db under the folder the
            # run started in; the resume's values went nowhere, the run saying so at its end)
            log.warning(
                f"logger mlflow: {uri} holds no active MLflow run {self.run_id[:40]}, which this run logged "
                "to (resume from the folder the run started in, or give its store: "
                "logger.mlflow.tracking_uri=...): the resume logs to a new MLflow run there"
            )
        self.create(run, experiment_id)

    def create(self, run: RunInfo, experiment_id: str) -> None:
        """A new MLflow run for `run`, named after its folder, its id kept in the folder."""
        from dlbench import files

        tags = {"dlbench.run_dir": str(run.folder.absolute()), "dlbench.overrides": " ".join(run.overrides)}
        if run.group:
            tags["dlbench.sweep"] = run.group
        if run.resumed_step is not None:
            tags["dlbench.resumed_at_step"] = str(run.resumed_step)
        # (a sweep's job by its sweep's folder too: every sweep of a preset shares one experiment)
        name = f"{Path(run.group).name}/{run.folder.name}" if run.group else run.folder.name
        created = self.client.create_run(experiment_id, run_name=name, tags=tags)
        self.run_id = created.info.run_id
        files.write_text(run.folder / self.ID_FILE, self.run_id + "\n")
        self.log_params(run.settings)
        self.client.log_text(self.run_id, run.config, "config.yaml")

    def log_params(self, settings: dict[str, Any]) -> None:
        import mlflow

        params = [mlflow.entities.Param(k, param_text(v)) for k, v in settings.items()]
        for i in range(0, len(params), 100):  # (MLflow takes at most 100 params a call)
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def resumed(self, run: RunInfo) -> bool:
        """The MLflow run a resume continues: RUNNING again (it was KILLED, or FAILED), with this
        command's settings: a setting the resume changed (`trainer.epochs=4`) as a tag
        `resumed.trainer.epochs` (MLflow keeps a param's first value), a new one as a param, and
        its config.yaml again (they said the run's first settings). False where the store holds
        no such run."""
        from mlflow.exceptions import MlflowException

        try:
            run_now = self.client.get_run(self.run_id)
            if run_now.info.lifecycle_stage != "active":  # (deleted in the store: taken as gone)
                return False
            logged = run_now.data.params
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # (or no run id)
                return False
            raise
        self.client.update_run(self.run_id, status="RUNNING")
        self.log_params({k: v for k, v in run.settings.items() if k not in logged})
        for key, value in run.settings.items():  # (a run logged before bools were `true`: `True`)
            if key in logged and logged[key] not in (param_text(value), str(value)[:6000]):
                self.client.set_tag(self.run_id, f"resumed.{key}", param_text(value)[:5000])
        self.client.log_text(self.run_id, run.config, "config.yaml")
        return True

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        from mlflow.entities import Metric

        now = int((wall_time or time.time()) * 1000)
        metrics = [Metric(tag, float(value), now, step) for tag, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        self.client.log_figure(self.run_id, figure, f"figures/{tag}/{step:09d}.png")

    def finish(self, settings: dict[str, Any], metrics: dict[str, float], checkpoint: Path | None) -> None:
        if checkpoint is not None and checkpoint.is_file():
            self.client.log_artifact(self.run_id, str(checkpoint), "checkpoints")

    def flush(self) -> None:
        """(each call is written when it is made)"""

    def close(self, outcome: str = "finished") -> None:
        """The MLflow run's status: FINISHED, FAILED (an error stopped the run), or KILLED (Ctrl-C,
        a signal: a run that saved its checkpoint to be resumed)."""
        self.client.set_terminated(self.run_id, status=outcome.upper())


def param_text(value: Any) -> str:
    """A setting as an MLflow param (text): as the command line writes it (`true`, not Python's
    `True`, so `params.trainer.compile = 'false'` finds the runs that set it), at most 6,000
    characters."""
    return terminal.written(value)[:6000]


def not_started(name: str, err: Exception) -> Exception:
    """A backend that could not start (a tracking server that does not answer, a bad URI): the
    setting's fault, one message."""
    from dlbench.errors import DlbenchError, first_line

    return DlbenchError(
        f"logger {name} could not start ({first_line(err)}); check logger.{name}.* or leave {name} out "
        "of logger.backends"
    )


def prepare_stores(configs: list[Any]) -> None:
    """Before a sweep's jobs start: each SQLite MLflow store they log to, made with their
    experiments, once (jobs that ran at once each made its tables: all but one failed, "table
    _alembic_tmp_experiments already exists"). A server makes its own, one request at a time."""
    from omegaconf import OmegaConf

    made = set()
    for cfg in configs:
        if "mlflow" not in cfg.logger.backends or OmegaConf.is_interpolation(
            cfg.logger.mlflow, "tracking_uri"
        ):
            continue  # (${hydra:sweep.dir}/m.db: known in each job, which makes it then)
        uri = MLflow.store({"tracking_uri": cfg.logger.mlflow.tracking_uri})
        if uri.startswith("sqlite:///") and (uri, str(cfg.name)) not in made:
            try:
                MLflow.experiment(uri, str(cfg.name))
            except Exception as err:  # (as when a run starts it)
                raise not_started("mlflow", err) from err
            made.add((uri, str(cfg.name)))


class WandB:
    """A W&B run, offline by default (WANDB_MODE=offline: no key, no network; `wandb sync
    <run>/wandb/offline-run-*` uploads it later); `logger.wandb.mode=online` and
    `logger.wandb.project` for a course's project. The project is the run's name unless set,
    a sweep's jobs share a group (the sweep's folder), and a resumed run continues its W&B run."""

    ID_FILE = ".wandb_run_id"
    tracker = True  # a failure once started lets it go, not the run (RunLogger.let_go)

    def start(self, run: RunInfo) -> None:
        import os

        import wandb

        from dlbench import files

        id_file = run.folder / self.ID_FILE
        resumed = run.resumed_step is not None and id_file.is_file()
        run_id = id_file.read_text().strip() if resumed else secrets.token_hex(4)
        mode = run.options["wandb"].get("mode") or os.environ.get("WANDB_MODE") or "offline"
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
        self.run = wandb.init(
            project=run.options["wandb"].get("project") or run.experiment, group=run.group,
            name=run.folder.name,
            id=run_id, resume="allow" if resumed else None, dir=str(run.folder), mode=mode,
            config=run.settings, settings=settings,
        )  # fmt: skip
        if not resumed:
            files.write_text(id_file, run_id + "\n")

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        self.run.log(dict(values), step=step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        import wandb

        picture = io.BytesIO()
        figure.savefig(picture, format="png")
        from PIL import Image

        picture.seek(0)
        self.run.log({tag: wandb.Image(Image.open(picture))}, step=step)

    def finish(self, settings: dict[str, Any], metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.run.summary.update(metrics)

    def flush(self) -> None:
        """(wandb writes in its own process)"""

    def close(self, outcome: str = "finished") -> None:
        """W&B marks a run that exits with a non-zero code as failed (crashed, killed)."""
        self.run.finish(exit_code=0 if outcome == "finished" else 1)


@contextlib.contextmanager
def tried_once() -> Iterator[None]:
    """MLflow's HTTP requests made inside are tried once, with a 10 s timeout, unless the user
    set MLFLOW_HTTP_REQUEST_MAX_RETRIES or MLFLOW_HTTP_REQUEST_TIMEOUT: MLflow's own defaults
    (7 retries, exponential back-off) report a tracking server that is down after ~4 minutes.
    Later requests (a run's values) keep MLflow's retries."""
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    set_here = {name: value for name, value in quick.items() if name not in os.environ}
    os.environ.update(set_here)
    try:
        yield
    finally:
        for name in set_here:
            os.environ.pop(name, None)


def after_existing_event_files(folder: Path) -> None:
    """TensorBoard reads a run's event files in the order of their names, which start with the
    second they were created: a resumed run's file must not share its second with the killed
    run's, or the two may be read in the wrong order. Wait for the next second if it would."""
    now = int(time.time())
    stamps = []  # (a name someone else wrote may say anything: only the next seconds matter)
    for path in folder.glob("events.out.tfevents.*"):
        part = path.name.split(".")[3]
        if part.isascii() and part.isdigit() and now <= int(part) <= now + 2:
            stamps.append(int(part))
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)
