"""Issue 28: the values a run logs reach every backend named in logger.backends (TensorBoard,
metrics.csv, MLflow, W&B), each read back through the tool's own reader and compared with the
TensorBoard scalars; nothing reaches a network (MLflow: SQLite and a server on 127.0.0.1, W&B:
offline)."""

import csv
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from dlbench import compose
from dlbench.api import Run
from dlbench.engine.trainer import Trainer
from dlbench.errors import DlbenchError, Preempted
from dlbench.training import train

QUIET = ["trainer.progress=none", "trainer.threads=1", "trainer.epochs=2"]
ALL = "logger.backends=[tensorboard,csv,mlflow,wandb]"


def tensorboard(folder) -> dict[str, dict[int, float]]:
    return {tag: dict(zip(*curve, strict=True)) for tag, curve in Run(folder, {}).curves().items()}


def same(got: dict[str, dict[int, float]], want: dict[str, dict[int, float]], where: str) -> None:
    assert set(got) == set(want), (where, set(got) ^ set(want))
    for tag, points in want.items():
        assert set(got[tag]) == set(points), (where, tag)
        for step, value in points.items():
            assert got[tag][step] == pytest.approx(value, rel=1e-6, abs=1e-6), (where, tag, step)


def wandb_records(offline) -> list[dict]:
    """An offline W&B run folder's records, read by wandb's own reader (`wandb leet inspect`)."""
    done = subprocess.run(
        [shutil.which("wandb"), "leet", "inspect", "--json", str(offline)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def wandb_history(folder) -> dict[str, dict[int, float]]:
    """The offline run's history, from each offline folder it wrote (a resumed run writes a second)."""
    history = defaultdict(dict)
    for offline in sorted((folder / "wandb").glob("offline-run-*")):
        for record in wandb_records(offline):
            if record.get("type") == "history":
                item = record["history"]["item"]
                for tag, value in item.items():
                    if not tag.startswith("_") and isinstance(value, (int, float)):
                        history[tag][item["_step"]] = value
    return dict(history)


def test_every_backend_gets_tensorboards_values_and_a_resumed_run_continues_its_runs(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # (the store's tables, before the server)
    with socket.socket() as s:  # a real MLflow server on the same store, started now: it boots
        s.bind(("127.0.0.1", 0))  # while the run trains, and serves its history over REST after
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        check_every_backend(tmp_path, uri, port, monkeypatch)
    finally:
        server.terminate()
        server.wait(timeout=30)


def check_every_backend(tmp_path, uri: str, port: int, monkeypatch) -> None:
    """One run with every backend, stopped by SIGTERM in its second epoch and resumed: each
    backend then holds exactly TensorBoard's values, one run each (MLflow, W&B)."""
    import mlflow

    folder = tmp_path / "run"
    overrides = [*QUIET, ALL, f"logger.mlflow.tracking_uri={uri}"]
    optimize, calls = Trainer.optimize, []

    def optimize_and_signal(self, optimizations, name, loss):
        optimize(self, optimizations, name, loss)
        calls.append(1)
        if len(calls) == 30:  # in the second epoch
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(Trainer, "optimize", optimize_and_signal)
    with pytest.raises(Preempted):
        train(compose.compose_config(overrides), folder)
    client = mlflow.MlflowClient(tracking_uri=uri)
    (stopped,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert stopped.info.status == "KILLED"  # (a stopped run is not marked FINISHED; the resume runs it again)
    (offline,) = (folder / "wandb").glob("offline-run-*")
    assert [r["exit"]["exit_code"] for r in wandb_records(offline) if "exit" in r] == [1]
    monkeypatch.setattr(Trainer, "optimize", optimize)
    metrics = train(compose.compose_config([*overrides, f"resume={folder}"]), folder)
    scalars = tensorboard(folder)
    assert {"train/loss", "val/acc", "test/acc"} <= set(scalars)
    assert set(scalars["train/loss_step"]) == {10, 20, 30, 40}  # (each step once, across the stop)
    # (no event goes back in steps, file after file: the HParams summary at step 0 after the
    # resume's made TensorBoard warn "out of order event.step" and purge the first's)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = [
        e.step
        for file in sorted((folder / "tb").glob("events.*"))
        for e in EventFileLoader(str(file)).Load()
        if e.summary.value
    ]
    assert steps == sorted(steps), steps

    rows = defaultdict(dict)
    with open(folder / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows[row["metric"]][int(row["step"])] = float(row["value"])
    same(dict(rows), scalars, "metrics.csv")

    client = mlflow.MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "digits_mlp"]
    (run,) = client.search_runs([experiment.experiment_id])  # one run, continued by the resume
    assert run.info.run_name == "run" and run.data.tags["dlbench.run_dir"] == str(folder)
    assert run.data.params["optimizer.lr"] == "0.001" and run.info.status == "FINISHED"
    # (nulls were left out, lists were Python's text: as the command line writes them)
    assert run.data.params["trainer.ema"] == "null" and run.data.params["model.hidden"] == "[128]"
    # (bools were Python's True: a search for params.trainer.compile = 'false' found nothing)
    assert run.data.params["trainer.compile"] == "false" and "resumed.trainer.compile" not in run.data.tags
    # a run logged before (Python's True) and resumed now: the same setting, no resumed.* tag
    from dlbench.engine.loggers import MLflow, RunInfo

    older = client.create_run(experiment.experiment_id).info.run_id
    client.log_param(older, "trainer.compile", "True")
    tracker = MLflow()
    tracker.client, tracker.run_id = client, older
    settings = {"trainer.compile": True, "trainer.epochs": 3}
    tracker.resumed(RunInfo(folder, "name: x\n", [], "digits_mlp", settings=settings))
    continued = client.get_run(older).data
    assert "resumed.trainer.compile" not in continued.tags and continued.params["trainer.epochs"] == "3"
    history = {
        tag: {m.step: m.value for m in client.get_metric_history(run.info.run_id, tag)} for tag in scalars
    }
    same(history, scalars, "MLflow")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoints", "figures"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/last.pt"]
    assert metrics["test/acc"] == pytest.approx(scalars["test/acc"][max(scalars["test/acc"])], rel=1e-6)

    ids = {p.name.rsplit("-", 1)[1] for p in (folder / "wandb").glob("offline-run-*")}
    assert len(ids) == 1  # (two offline folders, one W&B run: `wandb sync` joins them)
    logged = wandb_history(folder)
    assert {"val/confusion_matrix.width", "test/confusion_matrix.width"} <= set(logged)  # the figures
    same({tag: logged[tag] for tag in logged if tag in scalars}, scalars, "W&B")

    # the same history through the MLflow server's REST API, on 127.0.0.1
    base = f"http://127.0.0.1:{port}"
    for _ in range(480):
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.25)
    query = f"run_id={run.info.run_id}&metric_key=val/loss&max_results=1000"
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/metrics/get-history?{query}", timeout=10) as answer:
        served = {m["step"]: m["value"] for m in json.load(answer)["metrics"]}
    same({"val/loss": served}, {"val/loss": scalars["val/loss"]}, "the MLflow server")


def test_a_run_stopped_by_an_error_is_marked_failed_in_mlflow_and_its_resume_running_again(
    tmp_path, monkeypatch
):
    """A NaN stops the run: its MLflow run is FAILED, not FINISHED; the resume continues that
    MLflow run (RUNNING while it trains) and marks it FINISHED."""
    import mlflow
    from test_reliability import poison

    monkeypatch.chdir(tmp_path)  # (the runs and their outputs/ in tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [*QUIET, "logger.backends=[mlflow]", f"logger.mlflow.tracking_uri={uri}"]
    with monkeypatch.context() as poisoned:
        poison(poisoned, 30, "loss", float("nan"))  # (in the second epoch: epoch 1 is saved)
        with pytest.raises(DlbenchError, match="the loss is nan"):
            train(compose.compose_config(overrides), tmp_path / "run")
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    (failed,) = client.search_runs(experiments)
    assert failed.info.status == "FAILED"
    statuses = []
    fit = Trainer.fit
    monkeypatch.setattr(
        Trainer,
        "fit",
        lambda self, *a: (statuses.append(client.get_run(failed.info.run_id).info.status), fit(self, *a))[1],
    )
    resume = [f"resume={tmp_path / 'run'}", "trainer.epochs=3"]  # (and longer: a setting it changes)
    train(compose.compose_config([*overrides, *resume]), tmp_path / "run")
    (finished,) = client.search_runs(experiments)
    assert statuses == ["RUNNING"] and finished.info.status == "FINISHED"
    assert finished.info.run_id == failed.info.run_id
    # (its params and config.yaml said epochs 2, the first command's: MLflow keeps a param's first value)
    assert (
        finished.data.params["trainer.epochs"] == "2" and finished.data.tags["resumed.trainer.epochs"] == "3"
    )
    config = mlflow.artifacts.load_text(f"{finished.info.artifact_uri}/config.yaml")
    assert "  epochs: 3\n" in config


def test_a_resume_in_another_store_logs_to_a_new_mlflow_run_and_one_refused_at_start_marks_it_failed(
    tmp_path, monkeypatch, caplog
):
    """A resume whose MLflow store does not hold the run's id (resumed from another folder: the
    default store is the current folder's outputs/mlflow.db) says so as it starts and logs to a
    new MLflow run there (it trained on without MLflow, the warning at its end); a resume stopped
    while its loggers start (W&B here) closes those already started: the MLflow run it had set
    RUNNING is FAILED, not left running."""
    import mlflow

    from dlbench.engine.loggers import WandB

    monkeypatch.chdir(tmp_path)  # (the runs and their outputs/ in tmp_path)
    first, other = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    run = [*QUIET, "trainer.epochs=1", "logger.backends=[mlflow]"]
    train(compose.compose_config([*run, f"logger.mlflow.tracking_uri={first}"]), tmp_path / "run")
    first_run_id = (tmp_path / "run" / ".mlflow_run_id").read_text()
    resumed = [*run, f"resume={tmp_path / 'run'}"]
    with caplog.at_level("WARNING"):
        train(
            compose.compose_config([*resumed, "trainer.epochs=2", f"logger.mlflow.tracking_uri={other}"]),
            tmp_path / "run",
        )
    assert f"logger mlflow: {other} holds no active MLflow run " in caplog.text
    assert "logger mlflow failed" not in caplog.text
    client = mlflow.MlflowClient(tracking_uri=other)
    (new,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert new.info.status == "FINISHED" and new.data.tags["dlbench.resumed_at_step"] == "21"
    assert [m.step for m in client.get_metric_history(new.info.run_id, "val/acc")] == [42]
    assert (tmp_path / "run" / ".mlflow_run_id").read_text().strip() == new.info.run_id
    # (a run deleted in its store: the resume stopped, "must be in the 'active' state")
    client.delete_run(new.info.run_id)
    with caplog.at_level("WARNING"):
        train(
            compose.compose_config([*resumed, "trainer.epochs=3", f"logger.mlflow.tracking_uri={other}"]),
            tmp_path / "run",
        )
    assert caplog.text.count(f"logger mlflow: {other} holds no active MLflow run ") == 2
    (tmp_path / "run" / ".mlflow_run_id").write_text(first_run_id)  # (the next resume: the first store's)

    def refused(self, run):
        raise RuntimeError("no W&B today")

    monkeypatch.setattr(WandB, "start", refused)
    both = ["trainer.epochs=3", "logger.backends=[mlflow,wandb]", f"logger.mlflow.tracking_uri={first}"]
    with pytest.raises(DlbenchError, match="logger wandb could not start"):
        train(compose.compose_config([*resumed, *both]), tmp_path / "run")
    client = mlflow.MlflowClient(tracking_uri=first)
    (kept,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert kept.info.status == "FAILED"


def test_a_resume_that_fails_as_its_loggers_start_keeps_metrics_csv_as_it_was(tmp_path, monkeypatch):
    """A review: metrics.csv was opened for writing (emptied) as the resume's loggers started; a
    full disk as TensorBoard started then stopped the resume, and the file was left empty: the
    run's rows before it lost. Now it is rewritten whole or not at all."""
    import errno

    from dlbench.engine.loggers import TensorBoard

    run = [*QUIET, "trainer.epochs=1", "logger.backends=[csv,tensorboard]"]
    train(compose.compose_config(run), tmp_path / "run")
    before = (tmp_path / "run" / "metrics.csv").read_bytes()

    seen = []

    def full(self, run):  # (what the disk holds then: a full one takes no buffered rows after it)
        seen.append((tmp_path / "run" / "metrics.csv").read_bytes())
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "tb"))

    monkeypatch.setattr(TensorBoard, "start", full)
    with pytest.raises(DlbenchError, match="No space left on device"):
        resumed = [*run, "trainer.epochs=2", f"resume={tmp_path / 'run'}"]
        train(compose.compose_config(resumed), tmp_path / "run")
    assert seen == [before] and (tmp_path / "run" / "metrics.csv").read_bytes() == before
    assert b"val/acc" in before


def test_every_logger_is_closed_and_a_failure_to_close_does_not_hide_the_runs_own_stop(caplog):
    """RunLogger.close closes every backend whatever the others do: a run stopped by Ctrl-C
    whose metrics.csv cannot be closed still marks its MLflow run KILLED and stops as Ctrl-C
    (the failure a warning); a run that ended well raises the failure once all are closed; a
    Ctrl-C while one closes closes the rest (marked killed) before it is raised."""
    from dlbench.engine.logging import RunLogger

    class Full:  # (the run folder's disk is full)
        name = "csv"

        def close(self, outcome):
            raise OSError(28, "No space left on device")

    class Tracker:
        name, tracker, outcomes = "mlflow", True, []

        def close(self, outcome):
            self.outcomes.append(outcome)

    for outcome in ("killed", "finished"):
        logger = RunLogger(Path("unused"), "none", 0.1)
        logger.backends = [Full(), Tracker()]
        if outcome == "killed":
            with caplog.at_level("WARNING"):
                logger.close(outcome)
            assert "a logger failed too" in caplog.text and "No space left on device" in caplog.text
        else:
            with pytest.raises(DlbenchError, match="No space left on device"):
                logger.close(outcome)
        assert logger.backends == []
    assert Tracker.outcomes == ["killed", "finished"]

    class Interrupted:  # (Ctrl-C while a backend closes: the others are still closed)
        name = "wandb"

        def close(self, outcome):
            raise KeyboardInterrupt

    logger = RunLogger(Path("unused"), "none", 0.1)
    logger.backends = [Interrupted(), Full(), Tracker()]
    with pytest.raises(KeyboardInterrupt):
        logger.close("finished")
    assert Tracker.outcomes[-1] == "killed" and logger.backends == []


def test_a_sweeps_jobs_share_an_experiment_and_its_resume_continues_their_runs(cli, tmp_path):
    """A real sweep: one MLflow experiment and one W&B group for its jobs; finished in a second
    go with sweep.resume, a job that had not finished continues its MLflow and W&B runs. Its
    jobs run at once (joblib), on a store that is new: each made its tables, and all but one
    failed ("table _alembic_tmp_experiments already exists"), until the sweep made it first."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = ["-m", "optimizer.lr=0.01,0.001", *QUIET[:2], "trainer.epochs=1", "hydra.sweep.dir=sweep",
             "logger.backends=[tensorboard,mlflow,wandb]", f"logger.mlflow.tracking_uri={uri}",
             "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # fmt: skip
    assert cli(*sweep).returncode == 0
    jobs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/.hydra"))
    (jobs[1] / "metrics.json").unlink()  # as if it had been stopped after its last checkpoint
    result = cli(*sweep, f"sweep.resume={tmp_path / 'sweep'}")
    assert result.returncode == 0 and "skipped (sweep.resume)" in result.stdout, result.stdout[-3000:]
    assert (jobs[1] / "metrics.json").is_file()

    client = mlflow.MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    assert experiment.name == "digits_mlp" and len(runs) == 2  # one per job, none duplicated
    assert sorted(r.info.run_name for r in runs) == ["sweep/0", "sweep/1"]  # (two sweeps' were 0, 1, 0, 1)
    # the artifacts beside the store, not in ./mlruns of the folder the sweep was started in
    assert not (tmp_path / "mlruns").exists() and list((tmp_path / "mlartifacts").rglob("config.yaml"))
    assert {r.data.tags["dlbench.run_dir"] for r in runs} == set(map(str, jobs))
    assert {r.data.tags["dlbench.sweep"] for r in runs} == {"sweep"} and {r.info.status for r in runs} == {
        "FINISHED"
    }
    for job, folders in zip(jobs, (1, 2), strict=True):  # (the resumed job: two offline folders, one run)
        offline = sorted((job / "wandb").glob("offline-run-*"))
        assert len(offline) == folders and len({p.name.rsplit("-", 1)[1] for p in offline}) == 1
        (run,) = [r["run"] for r in wandb_records(offline[0]) if r.get("type") == "run"]
        assert (run["project"], run["run_group"], run["display_name"]) == ("digits_mlp", "sweep", job.name)


def test_a_sweeps_store_named_by_hydras_own_settings_is_made_by_its_jobs():
    """(a review) `tracking_uri=sqlite:///${hydra:sweep.dir}/m.db` is known in each job only: the
    store made before the jobs start was an "unexpected error" there (HydraConfig was not set)."""
    from omegaconf import OmegaConf

    from dlbench.engine.loggers import prepare_stores

    cfg = compose.compose_config(
        ["logger.backends=[mlflow]", "logger.mlflow.tracking_uri=sqlite:///${hydra:sweep.dir}/m.db"]
    )
    prepare_stores([cfg])  # (nothing to make, and no error)
    assert OmegaConf.is_interpolation(cfg.logger.mlflow, "tracking_uri")


def test_a_backend_that_is_not_installed_or_not_known_is_one_message(cli, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a)
    )
    result = cli("logger=wandb")
    assert result.returncode == 2 and "needs wandb: pip install 'dlbench[wandb]'" in result.stderr
    result = cli("logger.backends=[tensorbord]")
    assert result.returncode == 2 and "Unknown logger backend 'tensorbord'. Did you mean: tensorboard?" in (
        result.stderr
    )
    result = cli("logger.backends=[csv,csv]")
    assert result.returncode == 2 and "logger.backends names csv twice" in result.stderr


def test_a_tracking_server_that_does_not_answer_is_one_message_at_once(cli, tmp_path):
    """MLflow's own retries (7, with exponential back-off) took ~4 minutes to say that
    logger.mlflow.tracking_uri names a server that is down, printing urllib3's retry lines;
    the first request is now tried once, so it is one message in seconds and the run keeps
    nothing but its log."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    uri = f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"
    result = cli("logger.backends=[tensorboard,mlflow]", uri, *QUIET[:2])
    assert result.returncode == 2 and time.perf_counter() - started < 120, result.stderr[-2000:]
    assert "error: logger mlflow could not start" in result.stderr and "Retrying" not in result.stderr
    run_dir = next((tmp_path / "outputs" / "digits_mlp").iterdir())
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()
    # (TensorBoard had started first: the events of a run that never trained, in `board`)
    assert not (run_dir / "tb").exists()


def test_a_tracking_server_that_goes_away_mid_run_lets_the_run_go_on(cli, tmp_path, monkeypatch):
    """A tracker that fails once the run has started (here MLflow's client raising what it
    raises when its server is gone, after its retries; the text is the server's, so it may say
    anything) costs the run that tracker alone: one warning, printed as text, and the run
    trains to the end with its own files complete."""
    import mlflow
    from mlflow.exceptions import MlflowException

    log_batch, sent = mlflow.MlflowClient.log_batch, []

    def gone_after_two(self, run_id, metrics=(), **kwargs):
        if metrics:
            if len(sent) == 2:
                raise MlflowException("API request to http://lab:5000 failed: [bold]Max retries\x1b[2J\nmore")
            sent.append(metrics)
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", gone_after_two)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*QUIET, "trainer.epochs=3", "logger.backends=[csv,mlflow]", f"logger.mlflow.tracking_uri={uri}"]
    result = cli(*args, "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-2000:]
    printed = result.stdout + result.stderr
    said = " ".join(printed.split())
    assert said.count("logger mlflow failed") == 1 and "is left out from here on" in said, said[-2000:]
    assert "[bold]Max retries" in said and "\x1b" not in printed  # (shown as text)
    rows = list(csv.reader((tmp_path / "run" / "metrics.csv").open()))
    assert {r[0] for r in rows if r[1] == "val/acc"} == {"21", "42", "63"}  # every epoch's
    assert "test/acc" in json.loads((tmp_path / "run" / "metrics.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id = (tmp_path / "run" / ".mlflow_run_id").read_text().strip()
    logged = {m.step for m in client.get_metric_history(run_id, "train/loss_step")}
    kept = {int(r[0]) for r in rows if r[1] == "train/loss_step"}
    assert logged and logged < kept and max(kept) == 60  # what it had before it failed, no more


def test_a_steps_values_are_read_and_written_later_as_one_event_at_their_own_time(tmp_path):
    """Issue 29: a logged step's values stay tensors in the loop (reading one waits for the
    device; a write costs more than a tiny step); when they are written (with the next
    evaluation, a checkpoint's flush, the close), each step reaches TensorBoard as one event
    holding all its values, stamped with the time it was logged."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    from dlbench.engine.logging import RunLogger

    written = []  # what a backend is given

    class Recorder:
        def scalars(self, *given):
            written.append(given)

        def flush(self):
            pass

    logger = RunLogger(tmp_path, "none", 0.1)
    logger.backends = [Recorder()]
    before = time.time()
    logger.step_scalars({"train/loss_step": torch.tensor(0.25), "train/lr": 0.1}, 10)
    assert written == []  # not read, not written inside the epoch
    time.sleep(0.05)
    logger.flush()  # (what a checkpoint does; an evaluation's values do the same)
    [(values, step, wall_time)] = written
    assert values == {"train/loss_step": 0.25, "train/lr": 0.1} and all(
        type(v) is float for v in values.values()
    )
    assert step == 10 and before <= wall_time < before + 0.05

    train(compose.compose_config([*QUIET, "trainer.log_every_n_steps=5"]), tmp_path / "run")
    events = [
        event
        for path in sorted((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
        for event in EventFileLoader(str(path)).Load()
    ]
    steps = [e for e in events if any(v.tag == "train/loss_step" for v in e.summary.value)]
    assert [e.step for e in steps] == list(range(5, 5 * len(steps) + 1, 5)) and len(steps) >= 8
    assert all({v.tag for v in e.summary.value} == {"train/loss_step", "train/lr"} for e in steps)
    stamps = [e.wall_time for e in steps]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # each its own time


def test_the_progress_bar_shows_a_tasks_value_names_as_text(tmp_path, monkeypatch):
    """A task names its step values (a plugin's too): on a terminal's bar the name is text, not
    rich markup, and a control character in it is shown, not sent."""
    import io

    from dlbench import terminal
    from dlbench.engine import logging as run_logging

    screen = io.StringIO()
    shown = terminal.InertConsole(file=screen, force_terminal=True, width=150)
    monkeypatch.setattr(run_logging, "console", shown)
    logger = run_logging.RunLogger(tmp_path, "rich", figures_budget=0.1)
    advance = logger.progress(3, "epoch 1/1", 3)
    logger.bar_shown = 0.0  # (a redraw is due, as 0.1 s after the last)
    advance(4, shown=("[bold]loss[/bold]\x1b[31m", torch.tensor(0.5)))
    logger.end_progress()
    assert "[bold]loss[/bold]\\x1b[31m 0.5" in screen.getvalue()


def test_step_values_are_written_in_bursts_with_the_next_evaluation_in_step_order(tmp_path, monkeypatch):
    """Issue 29: a logged step's values are kept until something is logged at a later step (an
    evaluation's values or figures), not written at each epoch's end: one-step epochs woke
    TensorBoard's writer thread for every step. Every step still reaches TensorBoard, and every
    write goes in step order (a tracker such as W&B drops a step older than one it has); the
    time their writing takes is no epoch's time/epoch_s."""
    from dlbench.engine import loggers

    trained, writes = [0], []
    optimize = Trainer.optimize
    monkeypatch.setattr(
        Trainer, "optimize", lambda *a: (trained.__setitem__(0, trained[0] + 1), optimize(*a))[1]
    )
    scalars = loggers.TensorBoard.scalars

    def recorded(self, values, step, *rest):
        writes.append((step, trained[0], "train/loss_step" in values))
        if "train/loss_step" in values:
            time.sleep(0.05)  # (a slow tracker: not an epoch's time)
        return scalars(self, values, step, *rest)

    monkeypatch.setattr(loggers.TensorBoard, "scalars", recorded)
    overrides = ["experiment=linear_regression", "trainer.epochs=20", "trainer.val_every_n_epochs=5"]
    metrics = train(compose.compose_config([*overrides, "trainer.progress=none"]), tmp_path / "run")
    assert metrics["time/epoch_s"] < 0.2  # (its evaluation wrote 5 steps' values: 0.25 s)
    steps = [step for step, _, _ in writes]
    assert steps == sorted(steps)  # (the evaluations' too; with figures: the test below)
    logged = [(step, trained_then) for step, trained_then, is_step in writes if is_step]
    assert [step for step, _ in logged] == list(range(1, 21))  # every step, once
    assert {trained_then for _, trained_then in logged} == {5, 10, 15, 20}  # with each evaluation


def test_figures_and_checkpoints_are_charged_their_own_time_not_the_kept_step_values(tmp_path, monkeypatch):
    """logger.figures_budget and trainer.checkpoint_budget count the time figures and checkpoints
    take: the step values kept until then are written before that time starts (a slow tracker
    writing 900 of them was charged to the figures, and an MLflow run drew them at 2 evaluations
    of 20; a reviewer's finding)."""
    from dlbench.engine import loggers
    from dlbench.engine.budget import TimeBudget

    charged, step_writes = [], []  # (start, end) of each budget's charge and each step write
    scalars = loggers.TensorBoard.scalars

    def timed_steps(self, values, step, *rest):
        started = time.perf_counter()
        try:
            return scalars(self, values, step, *rest)
        finally:
            order.append(step)
            if "train/loss_step" in values:
                step_writes.append((started, time.perf_counter()))

    figure, order = loggers.TensorBoard.figure, []

    def ordered_figure(self, tag, drawn, step):
        order.append(step)
        return figure(self, tag, drawn, step)

    def charge(self, seconds, *rest, _took=TimeBudget.took):
        charged.append((time.perf_counter() - seconds, time.perf_counter()))
        return _took(self, seconds, *rest)

    monkeypatch.setattr(loggers.TensorBoard, "scalars", timed_steps)
    monkeypatch.setattr(TimeBudget, "took", charge)
    monkeypatch.setattr(loggers.TensorBoard, "figure", ordered_figure)
    overrides = ["trainer.epochs=1", "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=5"]
    train(compose.compose_config([*overrides, "trainer.progress=none"]), tmp_path / "run")
    assert len(charged) >= 5 and len(step_writes) >= 20  # (4 periodic checkpoints, the last, figures)
    inside = [w for w in step_writes for c in charged if c[0] <= w[0] and w[1] <= c[1]]
    assert inside == []  # no step value was written while a budget's time ran
    assert order == sorted(order) and len(order) > len(step_writes)  # (figures too: in step order)


def test_an_epoch_reaches_richs_bar_only_when_the_bar_is_redrawn(tmp_path, monkeypatch):
    """Issue 29: rich's task is updated when the bar is redrawn (at most every 0.1 s), not at
    each epoch's start: 10,000 one-step epochs (mlp_regression) paid ~9 us each for it. An epoch
    drawn shows its own number, step and value, counted from its own start."""
    import io

    from dlbench import terminal
    from dlbench.engine import logging as run_logging

    screen = io.StringIO()
    monkeypatch.setattr(
        run_logging, "console", terminal.InertConsole(file=screen, force_terminal=True, width=150)
    )
    logger = run_logging.RunLogger(tmp_path, "rich", figures_budget=0.1)
    updates, bar = [], logger.bar()  # (the fit's one bar, started at its first epoch)
    update = bar.update
    monkeypatch.setattr(bar, "update", lambda *a, **k: (updates.append(k), update(*a, **k))[-1])
    for epoch in (1, 2, 3):
        logger.bar_shown = time.perf_counter()  # (just redrawn: the next redraw is not due)
        advance = logger.progress(4, f"epoch {epoch}/9", 4)
        advance(8)
        advance(8)
    assert updates == []  # three epochs, none drawn: rich's task untouched
    logger.bar_shown = 0.0  # (due)
    advance(8, shown=("loss", torch.tensor(0.25)))
    logger.bar_shown = 0.0
    logger.progress(4, "epoch 4/9", 4)  # (drawn at its start: no sample seen, no rate yet)
    logger.end_progress()
    assert [u.get("description") for u in updates] == ["epoch 3/9", None, "epoch 4/9", None]
    assert updates[1]["completed"] == 3 and updates[1]["info"] == "loss 0.25"
    assert updates[1]["rate"].endswith("samples/s") and updates[3]["rate"] == ""
    assert "epoch 3/9" in screen.getvalue() and "epoch 2/9" not in screen.getvalue()


def test_event_checksums_in_c_are_tensorboards_and_a_runs_events_pass_its_own_check(tmp_path):
    """dlbench/checksums.py: the C checksum is tensorboard's pure-Python masked CRC32C on any
    bytes, and a run's event file (scalars, texts, a confusion matrix's PNG), written with it,
    holds records whose checksums tensorboard's own function accepts."""
    import importlib.util
    import struct

    from hypothesis import given, settings
    from hypothesis import strategies as st
    from tensorboard.summary.writer import record_writer

    from dlbench.checksums import masked_crc32c

    # tensorboard's function, from a fresh copy of its module (a run replaces it in the loaded one)
    spec = importlib.util.find_spec("tensorboard.compat.tensorflow_stub.pywrap_tensorflow")
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    tensorboards = fresh.masked_crc32c

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def same(data):
        assert masked_crc32c(data) == masked_crc32c(memoryview(bytearray(data))) == tensorboards(data)

    same()
    train(compose.compose_config([*QUIET, "trainer.epochs=1"]), tmp_path)
    assert record_writer.masked_crc32c is masked_crc32c, "google-crc32c has no C implementation here"
    (events,) = (tmp_path / "tb").glob("events.out.tfevents.*")
    data, records = events.read_bytes(), 0
    while data:
        header, (header_crc,) = data[:8], struct.unpack("<I", data[8:12])
        (length,) = struct.unpack("<Q", header)
        body, (body_crc,) = data[12 : 12 + length], struct.unpack("<I", data[12 + length : 16 + length])
        assert (header_crc, body_crc) == (tensorboards(header), tensorboards(body))
        data, records = data[16 + length :], records + 1
    assert records > 5  # (the file version, texts, scalars, figures)


def test_every_final_figure_of_metrics_json_reaches_the_backends(tmp_path):
    """time/total_s, time/fit_and_test_s and the test's rate were in metrics.json alone; and
    each value is logged once a step (train/lr was twice where a logged step ended an epoch)."""
    every = ["trainer.epochs=1", "trainer.log_every_n_steps=7", "logger.backends=[tensorboard,csv]"]
    train(compose.compose_config([*QUIET, *every]), tmp_path)  # (21 steps: the last one logged)
    rows = [(row[0], row[1]) for row in csv.reader((tmp_path / "metrics.csv").open())]
    assert len(rows) == len(set(rows)) and ("21", "train/lr") in rows
    logged, final = {metric for _, metric in rows}, set(json.loads((tmp_path / "metrics.json").read_text()))
    assert final <= logged and final <= set(tensorboard(tmp_path)), final - logged
    # a run without TensorBoard: compare --plot and report read its metrics.csv (they had no curve)
    from dlbench.logged import from_csv

    points = {tag: dict(zip(*curve, strict=True)) for tag, curve in from_csv(tmp_path).items()}
    same(points, tensorboard(tmp_path), "metrics.csv read back")
    shutil.rmtree(tmp_path / "tb")
    assert set(Run(tmp_path, {}).curves()) == set(points)
