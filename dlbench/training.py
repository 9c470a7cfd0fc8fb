"""The train entrypoint, read top to bottom as the lecture notes train a model:

    data -> model, loss, task -> trainer -> optimizers -> fit -> test -> metrics

`train()` holds the run's folder while it runs (its lock, its held log, stop signals);
launch.py starts it for the command line, a sweep's job, a torchrun process and
`dlbench.train()`. One training step is `Task.training_step`: forward and loss in the task,
then `Trainer.optimize` (engine/trainer.py), whose `Stepper` (engine/step.py) does zero_grad,
backward, the NaN check, clipping and the optimizer's step."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import yaml
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from dlbench import files, plugins, resume, rundir, searchpath, terminal
from dlbench.announce import describe_run, print_results, run_info
from dlbench.build import (
    build_data,
    build_task,
    check_batch_norm_batches,
    check_cpu_half_precision,
    fits_unbuilt,
)
from dlbench.config import monitor_mode
from dlbench.data.base import DataModule
from dlbench.engine import checkpoint, cluster, distributed
from dlbench.engine.device import (
    choose_threads,
    indexed,
    resolve_device,
    seed_everything,
    set_threads,
    trial_step,
)
from dlbench.engine.logging import RunLogger, held_file_logs, setup_console
from dlbench.engine.optim import Optimization
from dlbench.engine.signals import StopSignals
from dlbench.engine.trainer import Trainer, lr_tags, unreported_monitor
from dlbench.errors import Preempted
from dlbench.figures import activation_figure, activations_of
from dlbench.tasks.base import Task
from dlbench.validation import METRIC_PREFIXES, idle_settings, validate

log = logging.getLogger("dlbench")


def train(
    cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None, hydra_cfg: DictConfig | None = None
) -> dict[str, float]:
    """Train and test one run in `run_dir`; return the final metrics (also in metrics.json).

    The run holds `run_dir`'s lock for its life, never starts in a folder that holds another
    run, and writes nothing there until every part is built (a resume that fails leaves the
    folder as it was)."""
    # the log lines bound for the folder's train.log are held from here (any thread's)
    with held_file_logs(run_dir, keep_on_failure=not cfg.resume) as release, contextlib.ExitStack() as held:
        lock, committed = None, []
        try:  # a run refused before it begins (its config, the lock, another run's results there)
            validate(cfg)
            # (a preemption while the run is built stops it too)
            stop = held.enter_context(StopSignals().caught())
            if distributed.is_main():  # the process that writes (the only one, unless under torchrun)
                lock = rundir.RunLock(run_dir).acquire()
                # a sweep's job folder, or a torchrun process's, was checked by the command that made
                # it (its sweep; the launching process): there the job's own records may be
                checked = distributed.world_size() > 1 or sweep_job(hydra_cfg)
                rundir.check_new_run(
                    run_dir,
                    cfg.resume,
                    () if checked else rundir.RECORDS,
                    lambda folder: searchpath.continue_words(folder, plugins.words(cfg.plugins)),
                )
        except BaseException:
            release(write=False)  # adds nothing to the folder's log
            if lock is not None:
                lock.release(wrote=False)
            raise

        def commit() -> None:  # every part is built: the run writes in its folder from now
            committed.append(True)
            release()

        try:
            return _train(cfg, run_dir, list(overrides or []), hydra_cfg, stop, commit)
        finally:
            if lock is not None:
                lock.release(wrote=bool(committed))


def sweep_job(hydra_cfg: DictConfig | None) -> bool:
    """Whether the run is a job of a sweep (Hydra's multirun)."""
    return hydra_cfg is not None and hydra_cfg.get("mode") == RunMode.MULTIRUN


def _train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    hydra_cfg: DictConfig | None,
    stop: StopSignals,
    commit: Callable[[], None],
) -> dict[str, float]:
    started = time.perf_counter()
    main = distributed.is_main()  # the process that writes and prints (the only one but under torchrun)
    composed = OmegaConf.to_yaml(cfg)  # as composed, before the data fills in what it knows
    # a sweep's job says one line when it ends (its log, tables and curves are in its folder),
    # unless trainer.progress asks for more
    quiet_job = sweep_job(hydra_cfg) and cfg.trainer.progress in ("auto", "none")
    progress = setup_console(cfg.trainer.progress if main and not quiet_job else "none", errors_only=not main)
    device = resolve_device(str(cfg.device.type))
    if device.type == "cuda" and distributed.world_size() > 1:
        device = torch.device("cuda", distributed.local_rank())
    device = indexed(device)
    resume_state, resumed_settings = None, []
    if cfg.resume:  # what this command changes is applied or refused before any work (resume.py)
        resume_state = checkpoint.load(cfg.resume)
        saved = files.load_yaml(resume_state["config"])  # (checked when loaded)
        resume.follow_monitor(cfg.trainer, saved)
        resumed_settings = resume.check(saved, OmegaConf.to_container(cfg, resolve=True))
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    torch.backends.cudnn.benchmark = cfg.trainer.cudnn_benchmark and not cfg.trainer.deterministic
    set_threads(distributed.local_world_size())  # this machine's (or Slurm job's) cores, among its processes

    # 1. data: the splits, their loaders, and the facts the model is sized from (data.info)
    built = time.perf_counter()
    data = build_data(cfg)
    data.place(device)
    # the splits evaluated: the test split, and the one validated on (dataset.validate_on)
    distributed.check_evaluated_splits({"test": data.size("test"), data.validate_on: data.size("val")})
    if (processes := distributed.world_size()) > 1 and (extra := -data.size("train") % processes):
        log.warning(  # (DistributedSampler's padding: the one-process run sees each sample once)
            f"the training split's {data.size('train')} samples are not a multiple of the {processes} "
            f"processes: each epoch repeats {terminal.counted(extra, 'sample')} to give each the same share"
        )
    log.debug(f"data built and placed in {time.perf_counter() - built:.2f} s")  # hydra.verbose=dlbench
    # 2. model, loss and the task that owns them (what one training and one evaluation step mean)
    if resume_state is not None:  # (its weights fit the model its settings build: found on "meta")
        fits_unbuilt(
            lambda trial: build_task(cfg, data.info, judge=False, trial=trial),
            resume_state.get("trained", resume_state["task"]),
            f"{cfg.resume}: the checkpoint does not fit the model this run's settings build",
        )
    task = build_task(cfg, data.info, data)  # the same initial weights in every process
    with open_dict(cfg):  # trainer.monitor=null: the task's own metric
        cfg.trainer.monitor, cfg.trainer.monitor_mode = monitor_of(cfg.trainer, task, data.validate_on)
    if distributed.rank() > 0:  # ... but each process its own dropout masks and augmentations
        seed_everything(cfg.trainer.seed + distributed.rank(), cfg.trainer.deterministic)
    # 3. the trainer: device, the loop, logs and checkpoints (engine/trainer.py). One step is
    #    Task.training_step (forward, loss) calling Trainer.optimize (engine/step.py: the update)
    logger = RunLogger(run_dir, progress, cfg.logger.figures_budget)  # TensorBoard opens once all is built
    saved_with = {
        "config": OmegaConf.to_yaml(cfg, resolve=True),
        "overrides": overrides,
        "data": data.info.to_dict(),  # what the data knew: predict, eval and export need no data set
        "plugins": list(cfg.plugins),
    }
    if not data.size("val") and cfg.trainer.monitor.startswith("val/"):  # (saved above: what was asked)
        # (the task's own where it is a train/ one: task=minimize reports train/f, no train/loss)
        instead = task.monitor if task.monitor[0].startswith("train/") else ("train/loss", "min")
        log.info(f"no validation split: monitoring {instead[0]} instead of {cfg.trainer.monitor}")
        with open_dict(cfg):  # (before the optimizers: a plateau schedule's mode follows it)
            cfg.trainer.monitor, cfg.trainer.monitor_mode = instead
    trainer = Trainer(OmegaConf.to_object(cfg.trainer), device, run_dir, logger, saved_with, stop)
    trainer.setup(task)
    # 4. optimizers and their schedulers (a GAN has one per network)
    steps_per_epoch = trainer.optimizer_steps(len(data.loader("train")))  # (trainer.accumulate)
    total_steps = trainer.total_steps(steps_per_epoch)
    optimizations = task.configure_optimizers(cfg.optimizer, cfg.scheduler, total_steps, steps_per_epoch)
    if resume_state is not None:  # weights, optimizers, counters, RNG; then this command's settings
        built_groups = resume.fresh_groups(optimizations)
        trainer.restore(resume_state, task, optimizations, total_steps)
        resume.apply(optimizations, built_groups, resumed_settings)
        state = trainer.state  # (epochs completed; mid-epoch, the epoch it goes on in, as progress counts it)
        batches = terminal.counted(state.epoch_step, "batch", "batches")
        at = f"in epoch {state.epoch + 1} after {batches}" if state.epoch_step else f"at epoch {state.epoch}"
        log.info(f"resumed {at}, step {state.step} from {cfg.resume}")
        if cluster.requeue_count():  # a Slurm job requeued after a preemption or its time limit
            log.info(cluster.requeue_message(trainer.state.step))
    check_before_writing(cfg, task, data, device, optimizations)
    # how the trackers mark their run (MLflow's status, W&B's exit code): any exception but a
    # stop that saved a checkpoint (Ctrl-C, a signal) fails it, SystemExit too
    outcome = "failed"
    try:
        if main:  # every part is built: only now does the run write in its folder
            commit()  # the log lines so far reach train.log now
            rundir.remove_stale_temporaries(run_dir)  # (of its own killed writes)
            hydra_text = OmegaConf.to_yaml({"hydra": hydra_cfg}) if hydra_cfg is not None else None
            rundir.record_run(run_dir, composed, yaml.safe_dump(overrides), hydra_text)
            told = run_info(cfg, run_dir, composed, overrides, sweep_job(hydra_cfg), resume_state)
            logger.open(list(cfg.logger.backends), told)
            if cfg.trainer.log_activations and resume_state is None:
                for name, module in activations_of(task.model).items():
                    logger.figure(f"activations/{name}", activation_figure(module, name), 0)
        log.info(describe_run(cfg, data, device, run_dir))
        for idle in idle_settings(cfg, overrides):
            log.warning(idle)
        if (note := short_average(cfg.trainer.ema, total_steps)) is not None:
            log.warning(note)
        if (note := swa_out_of_reach(cfg.trainer, steps_per_epoch)) is not None:
            log.warning(note)
        if (note := warm_up_beyond_the_run(cfg.scheduler, total_steps, steps_per_epoch)) is not None:
            log.warning(note)
        fit_started = time.perf_counter()
        with built_objects_frozen():
            # 5. fit: epochs of training steps, each evaluation logged and checkpointed
            metrics = trainer.fit(task, data, optimizations)
            # 6. test, once, with the final weights (measured already where it is the val split);
            #    a stop signal since the last step stops the run before its results (exit 75)
            trainer.stop_if_signalled()
            if data.size("test"):
                metrics.update(trainer.tested or trainer.evaluate(task, data, "test", stoppable=True))
            trainer.finish_writes()  # the last checkpoint, written while the test ran
        # 7. the final metrics: training and testing alone (the data loaded, the model built)
        metrics["time/fit_and_test_s"] = time.perf_counter() - fit_started
        metrics["time/total_s"] = time.perf_counter() - started
        # (the test's and the run's own figures, which no epoch logged: every backend has metrics.json's)
        final = ("test/", "time/test_", "time/fit_and_test_s", "time/total_s")
        logger.scalars({k: v for k, v in metrics.items() if k.startswith(final)}, trainer.state.step)
        figures = {k: v for k, v in metrics.items() if "/" in k and not k.startswith("time/")}
        saved = run_dir / "checkpoints" / "last.pt" if cfg.logger.mlflow.log_checkpoint else None
        logger.finish(figures, saved)
        outcome = "finished"
    except (KeyboardInterrupt, Preempted):
        outcome = "killed"
        raise
    finally:
        try:
            trainer.finish_writes(failing=outcome != "finished")  # (a stop after fit: its last.pt lands)
        finally:
            logger.close(outcome)
    if main:
        files.write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        print_results(metrics, run_dir, overrides, trainer, task, quiet_job)
        if stop.received:  # (once the test was done: the run finished, and says so)
            name = signal.Signals(stop.received).name
            log.warning(f"{name} came as the run ended: its results are complete, nothing stopped")
    return metrics


def check_before_writing(
    cfg: DictConfig,
    task: Task,
    data: DataModule,
    device: torch.device,
    optimizations: dict[str, Optimization],
) -> None:
    """A model, task and data that do not fit together: one message now, before the run writes
    (with several processes each has the same parts: the single process's check covers them).
    One training step on a copy (engine/device.py's trial_step) finds most; on the CPU,
    trainer.threads=auto times it to choose the threads."""
    parts = parts_of(cfg, task)
    step = None
    check_batch_norm_batches(task, data, cfg.dataset.batch_size, distributed.world_size())
    check_cpu_half_precision(task, device, cfg.trainer.precision)
    if distributed.world_size() == 1:
        optimizers = {name: o.optimizer for name, o in optimizations.items()}
        reported: set[str] = set()  # (what the trial copy reports: its train/ values, val/ metrics)
        step = trial_step(
            task, data.loader("train"), device, parts, cfg.trainer.channels_last, optimizers, reported
        )
        check_monitor(cfg.trainer.monitor, reported | set(lr_tags(list(optimizers))), bool(data.size("val")))
    if device.type == "cpu":
        choose_threads(cfg.trainer, step, data.loader("train"))


@contextlib.contextmanager
def built_objects_frozen() -> Iterator[None]:
    """While the run trains, the objects that exist when it starts (the imported modules, the
    config, the model, the data: ~250,000 of them) are left out of Python's full garbage
    collections (`gc.freeze`): one such pass over them took ~130 ms of an iris_mlp fit, 2% of
    it. They are put back after, so garbage among them is still collected (a sweep's next job).
    A program that froze objects itself before calling dlbench keeps its own freeze as it was."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def short_average(decay: float | None, steps: int) -> str | None:
    """A note where trainer.ema's average would still be mostly the weights after its first
    step when the run ends (0.999 over the default run's 210 steps: 81%; its test/acc fell from
    0.94 to 0.59), with a decay that suits the run."""
    if decay is None or steps < 1 or decay**steps <= 0.5:
        return None
    return (
        f"trainer.ema={decay}: an average over ~{1 / (1 - decay):.0f} steps, and this run takes {steps}, so "
        f"{decay**steps:.0%} of the average it evaluates and saves is the weights after its first step "
        f"(a decay for this run: trainer.ema={1 - 10 / steps:.3g})"
        if steps > 10
        else f"trainer.ema={decay}: this run takes {steps} steps, too few to average"
    )


def swa_out_of_reach(t: DictConfig, steps_per_epoch: int) -> str | None:
    """A note where trainer.max_steps ends the run before trainer.swa_start's epoch (SWA was
    announced, and the run's end said "nothing averaged")."""
    if t.swa_start is None or t.max_steps is None or (t.swa_start - 1) * steps_per_epoch < t.max_steps:
        return None
    last = -(-t.max_steps // steps_per_epoch)
    return (
        f"trainer.swa_start={t.swa_start} does nothing: trainer.max_steps={t.max_steps} ends the run in "
        f"epoch {last} ({steps_per_epoch} steps an epoch)"
    )


WARM_UPS = ("linear_lr", "constant_lr")  # (their total_iters is their own length, not the run's)


def warm_up_beyond_the_run(s: DictConfig, total_steps: int, steps_per_epoch: int) -> str | None:
    """A note where a warm-up's total_iters outlasts the run (linear_lr's 5 epochs in a run of 3):
    its learning rate never reaches the factor it ends at, and the run said nothing."""
    iters, interval = s.get("total_iters"), s.get("interval", "epoch")
    length = total_steps if interval == "step" else -(-total_steps // max(1, steps_per_epoch))
    if s.get("name") not in WARM_UPS or not isinstance(iters, int) or iters <= length:
        return None
    return (
        f"scheduler={s.name}: its warm-up lasts scheduler.total_iters={iters} {interval}s and the run "
        f"trains {length}, so it ends before the warm-up does (scheduler.total_iters=null spreads it over "
        "the run)"
    )


def parts_of(cfg: DictConfig, task: Task) -> str:
    """The parts a trial step tries together, as its message names them."""
    from dlbench.registry import TASKS

    named = TASKS.name_of(type(task)) or cfg.task.name  # (task=auto's, as it is pasted back)
    return f"model={cfg.model.name}, task={named} and dataset={cfg.dataset.name}"


def check_monitor(monitor: str, reported: set[str], validated: bool) -> None:
    """A trainer.monitor no evaluation of the run can report, refused before the run writes
    anything where a trial step ran (Trainer._fit refuses the others at the first evaluation, an
    epoch in): a val/ name the trial evaluation did not report (`reported`: the trial step's
    train/ values, its learning rates and the val/ metrics; no val/ one where it could not
    evaluate), or a name of no part of the run's figures (train/, val/, time/)."""
    evaluated = sorted(n for n in reported if n.startswith("val/"))
    missing = monitor.startswith("val/") and validated and evaluated and monitor not in reported
    if missing or not monitor.startswith(METRIC_PREFIXES):  # (a saved run's, followed after validation)
        trained = sorted(n for n in reported if n.startswith("train/"))
        raise unreported_monitor(
            monitor,
            [*evaluated, *trained],
            f"Its val/ metrics: {', '.join(evaluated) or '(none)'}; its train/ ones include "
            f"{', '.join(trained)} (and the train/ metrics of the task's own)",
        )


def monitor_of(settings: DictConfig, task: Task, validate_on: str) -> tuple[str, str]:
    """The metric that decides best.pt and early stopping, and whether higher is better. When
    val/ is the test split (dataset.validate_on=test), the task's own val/ metric would choose
    best.pt by the test set: the training loss decides, unless trainer.monitor is set."""
    if settings.monitor is None:
        monitor, mode = task.monitor
        if validate_on == "test" and monitor.startswith("val/"):
            log.info(f"val/ is the test split: best.pt follows train/loss, not {monitor} (trainer.monitor)")
            return "train/loss", settings.monitor_mode or "min"
        return monitor, settings.monitor_mode or mode
    return settings.monitor, monitor_mode(settings)
