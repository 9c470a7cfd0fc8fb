"""The single train entrypoint: config -> build every part -> fit -> test -> metrics."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from dlbench import resume, rundir
from dlbench.build import build_data, build_task
from dlbench.config import validate
from dlbench.data.base import DataModule
from dlbench.engine import checkpoint, cluster, distributed
from dlbench.engine.device import resolve_device, seed_everything, set_threads
from dlbench.engine.logging import RunLogger, console, held_file_logs, metrics_table, setup_console
from dlbench.engine.trainer import StopSignals, Trainer
from dlbench.figures import activation_figure, activations_of
from dlbench.summary import HIGHER_IS_BETTER
from dlbench.tasks.base import Task

log = logging.getLogger("dlbench")


def train(
    cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None, hydra_cfg: DictConfig | None = None
) -> dict[str, float]:
    """Train and test one run in `run_dir`; return the final metrics (also in metrics.json).

    The run holds `run_dir`'s lock for its life, never starts in a folder that holds another
    run, and writes nothing there until every part is built (a resume that fails leaves the
    folder as it was)."""
    validate(cfg)
    with StopSignals().caught() as stop:  # a preemption while the run is built stops it too
        lock, committed = None, []
        if distributed.is_main():  # the process that writes (the only one, unless under torchrun)
            lock = rundir.RunLock(run_dir).acquire()
        try:
            if lock is not None:
                # a sweep's job folder, or a torchrun process's, was checked by the command that made
                # it (its sweep; the launching process): there the job's own records may be
                checked = distributed.world_size() > 1 or (
                    hydra_cfg is not None and hydra_cfg.get("mode") == RunMode.MULTIRUN
                )
                rundir.check_new_run(run_dir, cfg.resume, records=() if checked else rundir.RECORDS)
            with held_file_logs(run_dir, keep_on_failure=not cfg.resume) as release:

                def commit() -> None:  # every part is built: the run writes in its folder from now
                    committed.append(True)
                    release()

                return _train(cfg, run_dir, list(overrides or []), hydra_cfg, stop, commit)
        finally:
            if lock is not None:
                lock.release(wrote=bool(committed))


def _train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    hydra_cfg: DictConfig | None,
    stop: StopSignals,
    commit: Callable[[], None],
):
    started = time.perf_counter()
    main = distributed.is_main()
    composed = OmegaConf.to_yaml(cfg)  # as composed, before the data fills in what it knows
    progress = setup_console(cfg.trainer.progress if main else "none")
    device = resolve_device(str(cfg.device.type))
    if device.type == "cuda" and distributed.world_size() > 1:
        device = torch.device("cuda", distributed.local_rank())
    resume_state, resumed_settings = None, []
    if cfg.resume:  # what this command changes is applied or refused before any work (resume.py)
        resume_state = checkpoint.load(cfg.resume)
        saved = rundir.load_yaml(resume_state["config"])  # (checked when loaded)
        resumed_settings = resume.check(saved, OmegaConf.to_container(cfg, resolve=True))
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    torch.backends.cudnn.benchmark = cfg.trainer.cudnn_benchmark and not cfg.trainer.deterministic
    set_threads(distributed.local_world_size())  # this machine's (or Slurm job's) cores, among its processes

    built = time.perf_counter()
    data = build_data(cfg)
    data.place(device)
    log.debug(f"data built and placed in {time.perf_counter() - built:.2f} s")  # hydra.verbose=dlbench
    built = time.perf_counter()
    task = build_task(cfg, data.info, data)  # the same initial weights in every process
    log.debug(f"task and model built in {time.perf_counter() - built:.2f} s")
    with open_dict(cfg):  # trainer.monitor=null: the task's own metric
        cfg.trainer.monitor, cfg.trainer.monitor_mode = monitor_of(cfg.trainer, task, data.validate_on)
    if distributed.rank() > 0:  # ... but each process its own dropout masks and augmentations
        seed_everything(cfg.trainer.seed + distributed.rank(), cfg.trainer.deterministic)
    logger = RunLogger(run_dir, progress, cfg.logger.figures_budget)  # TensorBoard opens once all is built
    extra = {
        "config": OmegaConf.to_yaml(cfg, resolve=True),
        "overrides": overrides,
        "data": data.info.to_dict(),  # what the data knew: predict, eval and export need no data set
        "plugins": list(cfg.plugins),
    }
    trainer = Trainer(OmegaConf.to_object(cfg.trainer), device, run_dir, logger, extra, stop)
    trainer.setup(task)
    steps_per_epoch = len(data.loader("train"))
    optimizations = task.configure_optimizers(
        cfg.optimizer, cfg.scheduler, trainer.total_steps(steps_per_epoch), steps_per_epoch
    )
    if resume_state is not None:
        built_groups = resume.fresh_groups(optimizations)
        trainer.restore(resume_state, task, optimizations)
        resume.apply(optimizations, built_groups, resumed_settings)
        log.info(f"resumed at epoch {trainer.state.epoch}, step {trainer.state.step} from {cfg.resume}")
        if cluster.requeue_count():  # a Slurm job requeued after a preemption or its time limit
            log.info(cluster.requeue_message(trainer.state.step))
    if device.type == "cpu":
        choose_threads(cfg.trainer, task, data, device)
    if main:  # every part is built: only now does the run write in its folder
        commit()  # the log lines so far reach train.log now
        rundir.remove_stale_temporaries(run_dir)  # (of its own killed writes)
        record_run(run_dir, composed, overrides, hydra_cfg)
        if cfg.logger.tensorboard:
            logger.open_tensorboard(
                purge_step=resume_state["trainer"]["step"] + 1 if resume_state else None,
                texts={"config": composed, "overrides": "\n".join(overrides) or "(none)"},
            )
        if cfg.trainer.log_activations and resume_state is None:
            for name, module in activations_of(task.model).items():
                logger.figure(f"activations/{name}", activation_figure(module, name), 0)

    processes = f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    val = f"{data.size('val')} val" if data.validate_on == "val" else f"validated on {data.validate_on}"
    log.info(
        f"{cfg.name}: {cfg.model.name} on {cfg.dataset.name} ({data.size('train')} train, {val}, "
        f"{data.size('test')} test), {device}{processes}, run dir {run_dir}"
    )
    try:
        fit_started = time.perf_counter()
        metrics = trainer.fit(task, data, optimizations)
        if data.size("test"):
            metrics.update(trainer.evaluate(task, data, "test"))
        # training and testing alone (the data already loaded and placed, the model built)
        metrics["time/fit_and_test_s"] = time.perf_counter() - fit_started
        metrics["time/total_s"] = time.perf_counter() - started
        logger.scalars({k: v for k, v in metrics.items() if k.startswith("test/")}, trainer.state.step)
        logger.hparams(
            hparams(cfg), {k: v for k, v in metrics.items() if "/" in k and not k.startswith("time/")}
        )
    finally:
        logger.close()
    if not main:
        return metrics
    rundir.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    console.print(metrics_table(metrics))
    if (text := task.report()) is not None:
        console.print(text)
    console.print(f"Run directory: {run_dir}")
    return metrics


def monitor_of(trainer: DictConfig, task: Task, validate_on: str = "val") -> tuple[str, str]:
    """The metric that decides best.pt and early stopping, and whether higher is better. When
    val/ is the test split (dataset.validate_on=test), the task's own val/ metric would choose
    best.pt by the test set: the training loss decides, unless trainer.monitor is set."""
    if trainer.monitor is None:
        monitor, mode = task.monitor
        if validate_on == "test" and monitor.startswith("val/"):
            log.info(f"val/ is the test split: best.pt follows train/loss, not {monitor} (trainer.monitor)")
            return "train/loss", trainer.monitor_mode or "min"
        return monitor, trainer.monitor_mode or mode
    higher = any(word in trainer.monitor.split("/")[-1] for word in HIGHER_IS_BETTER)
    return trainer.monitor, trainer.monitor_mode or ("max" if higher else "min")


def choose_threads(trainer: DictConfig, task: Task, data: DataModule, device: torch.device) -> None:
    """The CPU thread count: trainer.threads=N, or auto: time a few training steps of a copy
    of the task at one thread and at one per core, and keep the faster. (Skipped, keeping one
    per core, for a deterministic run, several processes, data read from files, or a step that
    takes over half a second: there the measurement would cost more than it could save.)"""
    from dlbench.data.base import TensorLoader
    from dlbench.engine.device import fastest_threads, to_device

    if trainer.threads != "auto":
        torch.set_num_threads(int(trainer.threads))
        return
    most = torch.get_num_threads()
    loader = data.loader("train")
    if (
        most == 1
        or trainer.deterministic
        or distributed.world_size() > 1
        or not isinstance(loader, TensorLoader)
    ):
        log.info(f"threads: {most}")
        return
    batch = to_device(next(iter(loader)), device)
    probe, rng = copy.deepcopy(task).train(), torch.get_rng_state()

    def step() -> None:
        probe.training_step(batch, lambda name, loss: loss.backward())

    started = time.perf_counter()
    step()
    if time.perf_counter() - started > 0.5:
        torch.set_rng_state(rng)
        log.info(f"threads: {most}")
        return
    best, seconds = fastest_threads(step, most)
    torch.set_rng_state(rng)
    timings = ", ".join(f"{n} thread{'s' * (n > 1)} {s * 1000:.1f} ms" for n, s in seconds.items())
    log.info(f"threads: {best} (measured, a training step: {timings})")


def record_run(run_dir: Path, composed: str, overrides: list[str], hydra_cfg: DictConfig | None) -> None:
    """What the run is, in its folder's .hydra/ (as Hydra writes it): the composed config, the
    overrides it was started with, and Hydra's own settings when Hydra started it."""
    rundir.write_text(run_dir / ".hydra" / "config.yaml", composed)
    rundir.write_text(run_dir / ".hydra" / "overrides.yaml", yaml.safe_dump(overrides))
    if hydra_cfg is not None:
        rundir.write_text(run_dir / ".hydra" / "hydra.yaml", OmegaConf.to_yaml({"hydra": hydra_cfg}))


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings as flat scalars for TensorBoard's HParams tab."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float, str, bool)):
                flat[f"{prefix}{key}"] = value
            elif isinstance(value, list) and len(value) <= 20:  # not a vocabulary
                flat[f"{prefix}{key}"] = str(value)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
