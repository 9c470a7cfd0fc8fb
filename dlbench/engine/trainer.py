"""The trainer: the epoch/step loop and everything that is the same for every task.

Device placement, validation, early stopping, checkpoints, resume and logging live here; the
update of a step (precision, the NaN check, gradient clipping, the optimizer's step) in
engine/step.py; what a step *means* lives in the task.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from dlbench.config import TrainerConfig
from dlbench.engine import checkpoint, distributed, training_state
from dlbench.engine.averaging import WeightAverage
from dlbench.engine.budget import TimeBudget
from dlbench.engine.device import to_device
from dlbench.engine.logging import RunLogger, format_metrics
from dlbench.engine.means import BatchMeans, RunningMeans
from dlbench.engine.optim import Optimization
from dlbench.engine.profiling import StepProfiler
from dlbench.engine.signals import StopSignals
from dlbench.engine.step import NOTHING, WHOLE, NonFinite, Stepper, Update
from dlbench.engine.training_state import TrainState
from dlbench.errors import DlbenchError, Preempted, did_you_mean, first_line

if TYPE_CHECKING:  # (types only: the engine sits below the data and the tasks)
    from dlbench.data.base import DataModule
    from dlbench.tasks.base import Task

log = logging.getLogger("dlbench")

FIRST_CHECKPOINT_S = 0.005  # (measured: 3-5 ms for the default MLP's last.pt and best.pt)


def unreported_monitor(monitor: str, names: list[str], listed: str) -> DlbenchError:
    """trainer.monitor names no metric of the run's (`names`, listed as `listed` says)."""
    return DlbenchError(
        f"trainer.monitor={monitor}: this run reports no such metric, so it cannot choose best.pt or "
        f"stop early.{did_you_mean(monitor, names)}",
        listed,
    )


class Trainer:
    def __init__(
        self,
        cfg: TrainerConfig,
        device: torch.device,
        run_dir: Path,
        logger: RunLogger,
        checkpoint_extra: dict[str, Any] | None = None,
        stop: StopSignals | None = None,
    ):
        self.cfg = cfg
        self.device = device
        self.run_dir = run_dir
        self.logger = logger
        self.extra = checkpoint_extra or {}  # config, overrides, data facts, plugins: in each checkpoint
        self.state = TrainState()
        self.stepper = Stepper(cfg, device, logger)  # one optimizer update (engine/step.py)
        self.dtype = self.stepper.dtype
        self.ddp: torch.nn.Module | None = None  # the model inside DistributedDataParallel
        self.processes = distributed.world_size()  # (torchrun's)
        self.average: WeightAverage | None = None  # trainer.ema or trainer.swa_start (engine/averaging.py)
        self.profiler: StepProfiler | None = None  # trainer.profile (engine/profiling.py)
        self.stop = stop or StopSignals()  # a SIGTERM/SIGUSR1/SIGUSR2 (preemption) received
        self.running = RunningMeans(cfg.running_loss_every)  # seed 003's running loss, across epochs
        # trainer.checkpoint_budget (engine/budget.py), restarted with the fit; the first
        # checkpoint is costed as a small model's on a local disk, until one is measured
        self.checkpoints = TimeBudget(cfg.checkpoint_budget, first_cost=FIRST_CHECKPOINT_S)
        self.best_kept: dict[str, Any] | None = None  # a best epoch's state, not written yet
        self.writes = checkpoint.Writer()  # checkpoint files written while training goes on
        self.epoch_means: BatchMeans | None = None  # the epoch's means so far (a mid-epoch checkpoint's)
        self.carried: dict[str, Any] = {}  # a resumed epoch's step values so far (`carry`)
        # the learning rates at the epoch's last step, read before a per-step schedule moves them
        self.last_rates: dict[str, float] | None = None
        self.resumed_rates: dict[str, float] | None = None  # a resumed epoch's last rates (`carry`)
        self.tested: dict[str, float] | None = None  # the test split's figures, measured in `validate`

    # ---- set-up -------------------------------------------------------------------------
    def setup(self, task: Task) -> None:
        """Make the task ready to train: on the device (channels_last and torch.compile where
        configured), its parameters named for the gradient logs, the weight average of
        trainer.ema or trainer.swa_start built, DDP around it with several processes; and
        refuse what its networks cannot take (accumulation or an average with several)."""
        task.to(self.device)
        self.stepper.param_names = {p: name for name, p in task.named_parameters()}
        for net in task.networks().values():
            if self.cfg.channels_last:
                net.to(memory_format=torch.channels_last)
            if self.cfg.compile:
                net.compile(mode=self.cfg.compile_mode)
        several = {
            "accumulate": self.cfg.accumulate > 1,
            "ema": self.cfg.ema,
            "swa_start": self.cfg.swa_start,
        }
        for key, value in several.items():
            if value and len(task.networks()) > 1:
                raise DlbenchError(
                    f"trainer.{key}={getattr(self.cfg, key)}: {type(task).__name__} trains several networks, "
                    "each with its own optimizer on every batch; this setting is for a task with one model"
                )
        if self.cfg.ema is not None or self.cfg.swa_start is not None:
            self.average = WeightAverage(task.model, self.cfg)
            log.info(f"evaluation and checkpoints take {self.average.describe()}")
        if distributed.world_size() > 1:
            if task.networks() != {"model": task.model}:
                raise DlbenchError(
                    f"trainer.devices > 1 trains tasks with one network; {type(task).__name__} "
                    "has several (run it on one device)"
                )
            self.ddp = distributed.wrap(task.model, self.device)

    def data_parallel(self, task: Task) -> contextlib.AbstractContextManager:
        """During a training step the task's model is the DDP wrapper, which averages the
        gradients across processes (once per optimizer step: not on the micro-batches that
        only accumulate); outside it (evaluation, checkpoints) it is the model itself."""
        return NOTHING if self.ddp is None else self._wrapped_in_ddp(task)

    @contextlib.contextmanager
    def _wrapped_in_ddp(self, task: Task):
        synced = NOTHING if self.stepper.update.last else self.ddp.no_sync()
        with task.networks_replaced({"model": self.ddp}), synced:
            yield

    @contextlib.contextmanager
    def evaluated_weights(self, task: Task):
        """The weights evaluation and checkpoints take: the average (trainer.ema, or SWA's once
        it is finished) in place of the model, else the model."""
        if self.average is None or not self.average.in_use():
            yield
            return
        with task.networks_replaced({"model": self.average.module}):
            yield

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return NOTHING
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # ---- one step -------------------------------------------------------------------------
    def optimize(self, optimizations: dict[str, Optimization], name: str, loss: torch.Tensor) -> None:
        """The update of one optimizer, called by the task: (zero_grad), backward, and at the
        end of an accumulation group (check), (clip), step (engine/step.py)."""
        if name not in optimizations:
            raise DlbenchError(f"the task asked to step optimizer '{name}', which it did not configure")
        self.stepper.optimize(optimizations[name], name, loss, self.state.step + 1, self.state.epoch + 1)

    # ---- loops ----------------------------------------------------------------------------
    def optimizer_steps(self, batches: int) -> int:
        """The optimizer steps an epoch of `batches` micro-batches makes (trainer.accumulate)."""
        return -(-batches // self.cfg.accumulate)

    def total_steps(self, steps_per_epoch: int) -> int:
        total = self.cfg.epochs * steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def fit(self, task: Task, data: DataModule, optimizations: dict[str, Optimization]) -> dict[str, float]:
        """Train until `epochs` (or `max_steps`, or early stopping); validate every
        `val_every_n_epochs` and at the end."""
        cfg = self.cfg
        # a scheduler that reads the monitor after every epoch (ReduceLROnPlateau)
        self.plateau = any(o.reads_monitor for o in optimizations.values())
        self.checkpoints.restart()
        if cfg.profile and distributed.is_main():
            self.profiler = StepProfiler(cfg.profile, self.run_dir, self.device)
            self.stepper.phase = self.phase
        try:
            with self.stop.caught():
                return self._fit(task, data, optimizations)
        except BaseException as err:
            self.finish_writes(failing=True)  # (the checkpoint in flight lands before the kept best)
            kept = self.save_kept_best()  # a run that fails, or is interrupted, keeps its best epoch
            if isinstance(err, NonFinite):
                raise DlbenchError(f"{err}; {self.checkpoints_left(kept)}. {NonFinite.ADVICE}") from None
            raise
        finally:
            self.logger.end_progress()
            if self.profiler is not None:
                self.profiler.stop()

    def phase(self, name: str) -> contextlib.AbstractContextManager:
        """A labelled range of a training step while trainer.profile records, else nothing."""
        return self.profiler.phase(name) if self.profiler is not None else NOTHING

    def _stop_if_requested(self, task: Task, optimizations: dict[str, Optimization]) -> None:
        if self.stop.agreed(self.state.step, self.cfg.log_every_n_steps, self.device, self.processes):
            self.save(task, optimizations, "last.pt")
            self.finish_writes()  # (a stop says last.pt is saved: a failed write is the run's error)
            raise Preempted(self.stop.received, self.state.step, saved=bool(self.cfg.checkpoint))

    def stop_if_signalled(self) -> None:
        """After the fit (last.pt holds the trained run): a stop signal that came during the last
        epoch's evaluation and checkpoint, or the test, stops the run before it writes its results,
        as one in training does (Preempted: exit 75); its resume only tests. Without checkpoints
        (trainer.checkpoint=false) there is nothing to resume: the run finishes, and says so."""
        if self.cfg.checkpoint and self.stop.agreed(self.state.step, 1, self.device, self.processes):
            self.finish_writes()  # (the last epoch's last.pt, in flight: landed before it is named)
            raise Preempted(self.stop.received, self.state.step, saved=True)

    def _fit(self, task: Task, data: DataModule, optimizations: dict[str, Optimization]):
        cfg, monitor = self.cfg, self.cfg.monitor
        self._stop_if_requested(task, optimizations)  # a signal while the run was built
        if self._patience_spent():  # (a resumed run that stopped early: it is over, as at its last epoch)
            log.warning(
                f"early stopping ended this run: {monitor} had not improved for {cfg.patience} "
                "evaluations (a larger trainer.patience goes on)"
            )
        elif self._done() and self.state.epoch < cfg.epochs and not self.state.epoch_step:  # (more epochs)
            more = "a new run" if self.state.cut_by_max_steps else "a larger trainer.max_steps"
            log.warning(
                f"trainer.max_steps={cfg.max_steps} ended this run at step {self.state.step}: more "
                f"epochs train nothing more ({more} goes on)"
            )
        while self._goes_on():
            epoch = self.state.epoch
            start, written = time.perf_counter(), self.logger.step_writes_s
            if self.average is not None and self.average.swa_scheduler(epoch) and not self.state.swa_lr:
                self.start_swa_lr(optimizations)
            means = self.train_epoch(task, data, optimizations, epoch)
            if self.average is not None:
                self.average.after_epoch(task.model, epoch + 1)
            # Epoch-end work (validation, logging, checkpoints, early stopping) runs every
            # val_every_n_epochs and at the end, so 10,000 full-batch epochs stay cheap.
            last = self._ends(epoch) or task.should_stop()
            report = last or self.reports(epoch, 0)
            # the epoch's train/ figures are read (a device sync) only where someone reads them
            metrics = self.train_metrics(task, means, optimizations) if report or self.plateau else {}
            if report and data.size("val"):
                metrics.update(self.validate(task, data, last))
            # (less the writing of kept step values, which may be earlier epochs')
            metrics["time/epoch_s"] = time.perf_counter() - start - (self.logger.step_writes_s - written)
            for opt in optimizations.values():
                opt.step_scheduler("epoch", metrics.get(monitor))
            self.state.epoch = epoch + 1
            self.state.epoch_step = 0
            self.state.metrics = metrics
            if not report:
                continue
            if monitor not in metrics:  # (training.check_monitor's, before the run, where it can tell)
                shown = [k for k in metrics if not k.startswith("time/")]
                raise unreported_monitor(monitor, shown, f"Its metrics: {', '.join(shown)}")
            improved = self._track_best(metrics.get(monitor))
            logged = metrics  # (a step's learning rates are logged with its values: not twice at one step)
            if self.state.step % cfg.log_every_n_steps == 0:
                logged = {k: v for k, v in metrics.items() if not k.startswith("train/lr")}
            self.logger.scalars(logged, self.state.step)
            log.info(f"epoch {epoch + 1}/{cfg.epochs}  step {self.state.step}  {format_metrics(metrics)}")
            stopping = self._stops_early(task, epoch)
            self.save_epoch(task, optimizations, improved, final=last or stopping)
            if stopping:
                break
        if self.average is not None and self.average.kind == "swa" and not self.average.finished:
            self.finish_swa(task, data, optimizations)
        if cfg.epochs == 0 and self.state.step == 0:  # the untrained model, for eval, export, a resume
            self.save(task, optimizations, "last.pt")
        return dict(self.state.metrics)

    def start_swa_lr(self, optimizations: dict[str, Optimization]) -> None:
        """From trainer.swa_start on, the learning rate goes to trainer.swa_lr (SWALR) in place of
        the schedule."""
        model = optimizations["model"]
        model.scheduler, model.interval = self.average.new_swa_lr(model.optimizer), "epoch"
        self.state.swa_lr = True

    def finish_swa(self, task: Task, data: DataModule, optimizations: dict[str, Optimization]) -> None:
        """The SWA average becomes the model: BatchNorm's statistics from one pass over the
        training data, validated again, saved as last.pt and best.pt (what test, eval, predict,
        export and load_model take)."""
        if int(self.average.averaged.n_averaged) == 0:
            log.warning(f"trainer.swa_start={self.cfg.swa_start}: training ended before it; nothing averaged")
            return
        batches = (to_device(b, self.device, self.cfg.channels_last) for b in data.loader("train"))
        self.average.finish(batches, self.device)
        log.info(f"validated and saved from now on: {self.average.describe()}")
        if data.size("val"):  # (the average's val/ figures; the epoch's train/ ones were logged)
            averaged = self.evaluate(task, data, "val")
            self.state.metrics.update(averaged)
            self.logger.scalars(averaged, self.state.step)
        self.save(task, optimizations, "last.pt", "best.pt")

    def reports(self, epoch: int, steps: int) -> bool:
        """Whether epoch `epoch` (from 0), of `steps` optimizer steps, ends in the epoch-end work
        (validation, logs, checkpoints), as far as is known before it runs: every
        trainer.val_every_n_epochs, the last epoch, and the one that reaches trainer.max_steps
        (a task that converges ends its epoch unannounced: the minimizer, with no metrics)."""
        return self._ends(epoch, steps) or (epoch + 1) % self.cfg.val_every_n_epochs == 0

    def _ends(self, epoch: int, steps: int = 0) -> bool:
        """Whether epoch `epoch` is the run's last: trainer.epochs, or trainer.max_steps reached
        once its `steps` more optimizer steps are made (0: after it, as they were counted)."""
        return epoch + 1 == self.cfg.epochs or self._done(steps)

    def _done(self, steps: int = 0) -> bool:
        """trainer.max_steps is reached (once `steps` more optimizer steps are made)."""
        return self.cfg.max_steps is not None and self.state.step + steps >= self.cfg.max_steps

    def _goes_on(self) -> bool:
        """Whether training has epochs left: trainer.epochs, trainer.max_steps and trainer.patience
        are not reached (a resumed run may have reached them)."""
        # (stopped at trainer.max_steps's step, before its epoch's end work: that work is left)
        left = not self._done() or self.state.epoch_step > 0
        return self.state.epoch < self.cfg.epochs and left and not self._patience_spent()

    def _patience_spent(self) -> bool:
        """trainer.patience evaluations without improvement (a resumed run may have spent it)."""
        return self.cfg.patience is not None and self.state.bad_epochs >= self.cfg.patience

    def _stops_early(self, task: Task, epoch: int) -> bool:
        """Whether the run ends after epoch `epoch` before trainer.epochs: the task converged,
        or trainer.patience evaluations without improvement (early stopping)."""
        if task.should_stop():
            log.info(f"the task converged after epoch {epoch + 1}")
            return True
        if self._patience_spent():
            cfg = self.cfg
            log.info(f"early stopping: {cfg.monitor} has not improved for {cfg.patience} evaluations")
            return True
        return False

    def _track_best(self, value: float | None) -> bool:
        """Whether `value` of the monitor is the best so far; a NaN one is no improvement (for
        trainer.patience too: with trainer.nonfinite=off, a diverged run was never stopped)."""
        if value is None:
            return False
        if math.isnan(value):
            self.state.bad_epochs += 1
            return False
        best = self.state.best
        better = best is None or (value < best if self.cfg.monitor_mode == "min" else value > best)
        if better:
            self.state.best, self.state.bad_epochs = value, 0
        else:
            self.state.bad_epochs += 1
        return better

    def train_epoch(
        self, task: Task, data: DataModule, optimizations: dict[str, Optimization], epoch: int
    ) -> BatchMeans:
        """One pass over the training split: the task's step on each batch (the optimizer steps
        it asks for), and the work of a step (logs, checkpoints, the stop signals). Returns the
        means of the step outputs, read by `train_metrics` only if the epoch reports (or a
        plateau schedule reads the monitor every epoch)."""
        if not task.training:  # (after an evaluation; setting every module again costs 0.15 ms an epoch)
            task.train()
        cfg, state = self.cfg, self.state
        skipped_before, step_before = self.stepper.skipped_steps, state.step
        loader = data.loader("train", epoch=epoch, seed=cfg.seed, skip=state.epoch_step)
        left = len(loader)  # the epoch's batches still to train (all but a resume's skipped ones)
        # train/ metrics are measured in the epochs that report them or feed the monitor (a
        # scheduler reads it every epoch): elsewhere, their updates would only be thrown away
        read = self.plateau and self.cfg.monitor.startswith("train/")
        tracked = read or self.reports(epoch, self.optimizer_steps(left))
        if task.track_train_metrics != tracked:  # (setting a module's attribute costs more than reading it)
            task.track_train_metrics = tracked
        means = self.epoch_means = BatchMeans(f"{type(task).__name__}.training_step")
        if self.carried:  # a resume in the middle of this epoch: its step values so far
            carried, self.carried = self.carried, {}
            means.carry(carried["means"])
            if not tracked and hasattr(carried["metrics"], "reset"):  # (a resume that changed which
                carried["metrics"].reset()  # epochs report: none of this one's are read)
            elif tracked and not carried["whole"]:
                log.warning(
                    f"epoch {epoch + 1}'s train/ metrics count only its batches after the resume: "
                    "its checkpoint was written in an epoch that was not to report them (the resume "
                    "changed trainer.epochs or trainer.val_every_n_epochs); its train/ loss is whole"
                )
        optimize = lambda name, loss: self.optimize(optimizations, name, loss)  # noqa: E731
        batches = left + state.epoch_step  # the epoch's, the skipped ones (a resume) too
        steps_left = self.total_steps(self.optimizer_steps(batches)) - state.step
        # found once an epoch: which optimizers act after a step (a per-step scheduler,
        # lookahead), whether every micro-batch is a whole step
        after_step = [opt for opt in optimizations.values() if opt.acts_after_step]
        whole = cfg.accumulate == 1
        group: list[tuple[dict[str, torch.Tensor], int]] = []  # step values, samples: a group before its last
        # (a resume after the epoch's last step runs none: the rates it trained at, kept)
        self.last_rates, self.resumed_rates = self.resumed_rates, None
        self.stepper.update = WHOLE
        # A batch sliced from tensors on the device (data/loaders.TensorLoader) needs no move (but
        # the profiler times its "data" phase), and a float32 step by one process without the
        # profiler no context around it: on tiny steps, each would cost a few percent of the step.
        on_device = getattr(loader, "device", None) == self.device and not cfg.channels_last
        ready = on_device and data.mix is None and self.profiler is None
        bare = self.dtype is None and self.ddp is None and self.profiler is None
        title = f"epoch {epoch + 1}/{cfg.epochs}"
        # (its batches: trainer.max_steps may end it before its last; the run's batches left)
        advance = self.logger.progress(
            min(left, steps_left * cfg.accumulate), title, steps_left * cfg.accumulate
        )
        if self._done():  # (a resume stopped at trainer.max_steps's step: its epoch's end work only)
            state.cut_by_max_steps, loader = state.epoch_step < batches, ()
        profiling = self.profiler is not None and self.profiler.active
        self.stepper.profiling = profiling  # (once its steps are recorded, a step enters no range)
        for batch in self.profiler.batches_of(loader) if profiling else loader:
            if not whole:
                where = state.epoch_step, batches, cfg.accumulate, _batch_size(batch), self.stepper.update
                self.stepper.update = Update.of(*where)
            if not ready:
                with self.phase("data"):
                    batch = to_device(batch, self.device, cfg.channels_last)
                    if data.mix is not None:  # mixup/cutmix, on the device (data/transforms.mixing)
                        batch = data.mix(batch)
            if bare:
                out = task.training_step(batch, optimize)
            else:
                with self.autocast(), self.data_parallel(task), self.phase("step"):
                    out = task.training_step(batch, optimize)
                if self.profiler is not None:
                    self.profiler.step()
            samples = _batch_size(batch)
            means.add(out, samples)
            state.epoch_step += 1
            if not self.stepper.update.last:  # a micro-batch that only accumulates its gradient
                self.running.add(out, None)
                group.append((out, samples))
                advance(samples)
                continue
            state.step += 1  # steps count optimizer steps (as do schedulers, logs, checkpoints)
            if (window := self.running.add(out, state.step)) is not None:
                self.log_running_means(window, epoch)
            if state.step % cfg.log_every_n_steps == 0:
                self.log_step([*group, (out, samples)], optimizations, advance)
            else:
                advance(samples)
            group.clear()
            done = self._done()  # (trainer.max_steps reached: this step is the run's last)
            if after_step:
                if state.epoch_step == batches or done:  # (train/lr: the epoch's last step's)
                    self.last_rates = _learning_rates(optimizations)
                for opt in after_step:
                    opt.after_step(state.step)
            if self.average is not None:
                self.average.after_step(task.model)
            if cfg.checkpoint_every_n_steps and state.step % cfg.checkpoint_every_n_steps == 0:
                self.save_periodic(task, optimizations)
            self._stop_if_requested(task, optimizations)  # (only between optimizer steps)
            if done:
                state.cut_by_max_steps = state.epoch_step < batches
                break
        if self.profiler is not None and self._ends(epoch):  # (not the run's last validation and test)
            self.profiler.stop()
        if self.stepper.skipped_steps:
            self.check_skipped(epoch, self.stepper.skipped_steps - skipped_before, state.step - step_before)
        return means

    def log_step(
        self,
        parts: list[tuple[dict[str, torch.Tensor], int]],
        optimizations: dict[str, Optimization],
        advance: Callable[..., None],
    ) -> None:
        """A logged step's values (tensors: read when next written) and the learning rates it
        used, before a per-step schedule moves them; `parts`: its micro-batches' step outputs and
        samples (one, without trainer.accumulate), whose values are the mean over the samples
        (with several processes, over every process's)."""
        out, samples = parts[-1]
        step, total = out, sum(n for _, n in parts)
        if len(parts) > 1:
            step = {k: sum(o[k].float() * (n / total) for o, n in parts) for k in out}
        if self.processes > 1:  # (rank 0's share of the batch alone: every process's, by its samples)
            step = distributed.mean_across(step, total)
        step_values = {f"train/{k}_step": v for k, v in step.items()}
        step_values.update(_learning_rates(optimizations))
        self.logger.step_scalars(step_values, self.state.step)
        advance(samples, shown=next(iter(step.items()), ("loss", 0.0)))  # (the task's first value)

    def check_skipped(self, epoch: int, skipped: int, steps: int) -> None:
        """The NaN guard's limit: an epoch that skipped more than trainer.max_skipped_fraction of
        its `steps` optimizer steps (a NaN/Inf loss or gradient) ends the run."""
        limit = self.cfg.max_skipped_fraction
        if steps and skipped > limit * steps:
            raise DlbenchError(
                f"epoch {epoch + 1}: {skipped} of its {steps} steps had a NaN/Inf loss or gradient and "
                f"were skipped, more than trainer.max_skipped_fraction={limit}. "
                "The run is not learning: lower optimizer.lr or set trainer.grad_clip"
            )

    def train_metrics(
        self, task: Task, means: BatchMeans, optimizations: dict[str, Optimization]
    ) -> dict[str, float]:
        """An epoch's train/ figures: the means of its step outputs (reading them waits for the
        device), the task's train metrics where it measured them, the learning rates."""
        metrics = means.result("train")
        if self.stepper.skipped_steps:
            metrics["train/skipped_steps"] = float(self.stepper.skipped_steps)
        seen = means.count * self.processes  # (every process's: the sampler gives each an equal share)
        metrics["time/train_samples_per_s"] = seen / (time.perf_counter() - means.started)
        if task.track_train_metrics:
            metrics.update(_prefixed("train", task.compute_metrics("train")))
        metrics.update(self.last_rates or _learning_rates(optimizations))  # (the rates it trained at)
        return metrics

    def log_running_means(self, window: dict[str, float], epoch: int) -> None:
        """Seed 003's print, `[epoch, mini-batch] loss: mean of the last N mini-batches`, also
        in TensorBoard as train/running_<name>."""
        for name, value in window.items():
            log.info(f"[{epoch + 1}, {self.state.epoch_step:5d}] {name}: {value:.3f}")
        self.logger.step_scalars({f"train/running_{k}": v for k, v in window.items()}, self.state.step)

    def validate(self, task: Task, data: DataModule, last: bool) -> dict[str, float]:
        """An epoch's val/ figures. Where val/ is the test split (dataset.validate_on=test), the
        last epoch's pass is the test, whose figures the run's test then takes (`tested`): the
        weights it measures are the ones tested, as nothing after it changes them but SWA's end
        (ImageNet's 50,000 images read once, not twice; that epoch draws test/ figures, not val/)."""
        swa = self.average is not None and self.average.kind == "swa"
        if last and data.validate_on == "test" and not swa:
            self.tested = self.evaluate(task, data, "test")
            return {key.replace("test", "val", 1): value for key, value in self.tested.items()}
        return self.evaluate(task, data, "val", figures=last or self.logger.figures_due())

    @torch.no_grad()
    def evaluate(
        self, task: Task, data: DataModule, split: str, figures: bool = True, stoppable: bool = False
    ) -> dict[str, float]:
        """Average the task's evaluation step over a split, plus the split's metrics; and with
        `figures`, its figures in TensorBoard. `stoppable` (the run's test): a stop signal ends it
        at the next batch (`stop_if_signalled`; with several processes, which do not agree between
        batches, once it is done)."""
        means = BatchMeans(f"{type(task).__name__}.evaluation_step")
        stoppable = stoppable and self.processes == 1
        with self.evaluated_weights(task):
            task.eval()
            for batch in data.loader(split):
                if stoppable:
                    self.stop_if_signalled()
                batch = to_device(batch, self.device, self.cfg.channels_last)
                with self.autocast():
                    means.add(task.evaluation_step(batch, split), _batch_size(batch))
        metrics = {**means.result(split), **_prefixed(split, task.compute_metrics(split))}
        seen = means.count * self.processes  # (every process's: their shares differ by one at most)
        metrics[f"time/{split}_samples_per_s"] = seen / (time.perf_counter() - means.started)
        drawn = self.logger.active or distributed.world_size() > 1  # (by every process)
        if figures and drawn:
            self.logger.write_step_scalars()  # (before the figures' time is counted: not their cost)
            started = time.perf_counter()
            for tag, figure in task.figures(split).items():
                self.logger.figure(tag, figure, self.state.step)
            self.logger.drew_figures(time.perf_counter() - started)
        return metrics

    # ---- checkpoints ----------------------------------------------------------------------
    def save_epoch(
        self, task: Task, optimizations: dict[str, Optimization], improved: bool, final: bool
    ) -> None:
        """An epoch's checkpoints: last.pt, and best.pt if the epoch improved the monitor, when
        they fit trainer.checkpoint_budget (the first costed at FIRST_CHECKPOINT_S) or the run
        ends (`final`); else an improving epoch's state is kept in memory, and `save`
        writes it as best.pt with the next last.pt."""
        if final or self.checkpoints.due():
            self.save(task, optimizations, "last.pt", *(["best.pt"] if improved else []))
        elif improved and self.cfg.checkpoint and distributed.is_main():
            self.keep_best(task, optimizations)

    def keep_best(self, task: Task, optimizations: dict[str, Optimization]) -> None:
        """Keep a copy of the training state (on the CPU) to write as best.pt later (the config
        beside it does not change while the run trains: it is not copied)."""
        started = time.perf_counter()
        state = training_state.capture(self, task, optimizations)
        self.best_kept = {**training_state.copied(state), **self.extra}
        # (counted; the next write is still costed as the last one)
        self.checkpoints.took(time.perf_counter() - started, costs_the_next=False)

    def save_kept_best(self) -> int | None:
        """Where the run stops without a checkpoint (an error, a NaN, Ctrl-C), write a kept best
        epoch's state as best.pt and as last.pt: it is newer than last.pt, and a resume from an
        older last.pt, whose best value is older, would write a worse epoch over this best.pt.
        Returns that epoch, if it was written. A failure to write them is a warning beside the
        error the run stops with."""
        if self.best_kept is None:
            return None
        kept, self.best_kept = self.best_kept, None
        folder = self.run_dir / "checkpoints"
        try:
            checkpoint.save(kept, folder / "best.pt", folder / "last.pt")
        except Exception as err:
            log.warning(f"the best epoch ({kept['trainer']['epoch']}) was not written: {first_line(err)}")
            return None
        return kept["trainer"]["epoch"]

    def checkpoints_left(self, kept: int | None = None) -> str:
        """The checkpoints a stopped run leaves, for its message (`kept`: the best epoch that
        save_kept_best has just written as both)."""
        if kept is not None:
            return f"checkpoints/last.pt and checkpoints/best.pt now hold epoch {kept}, the best before it"
        folder = self.run_dir / "checkpoints"
        saved = [f"checkpoints/{n}" for n in ("last.pt", "best.pt") if (folder / n).is_file()]
        if not saved:
            return "no checkpoint had been written yet"
        return f"{' and '.join(saved)} {'were' if len(saved) > 1 else 'was'} written before it"

    def so_far(self, task: Task) -> dict[str, Any]:
        """What a checkpoint keeps of the sums in progress: in the middle of an epoch, its step
        values and its train metrics so far; the running loss's open window; after the epoch's last
        step, the learning rates it used (train/lr: a per-step schedule has moved on). A resumed run then
        reports the whole epoch, summed in the same order (`carry`), not the batches after the
        resume (which trainer.monitor=train/loss, its best.pt and a plateau schedule would read).
        With several processes, each holds its own sums and rank 0 alone writes: none are kept."""
        if self.processes > 1:
            return {}
        kept: dict[str, Any] = {}
        if self.state.epoch_step:  # (at an epoch's end, e.g. a kept best epoch: nothing to read)
            # (before the resumed epoch starts again, a stop signal while the run is built: its
            # sums are still the carried ones)
            means = self.epoch_means.saved() if self.epoch_means is not None else self.carried.get("means")
            if means is not None:
                metrics = getattr(task, "train_metrics", None) if task.track_train_metrics else None
                saved = metrics.saved() if hasattr(metrics, "saved") else None  # (a plugin's own: none)
                kept["epoch"] = {"means": means, "metrics": saved}
        if self.running.count:
            kept["running"] = self.running.saved()
        # (its last step made: the rates it used; a stop while a resumed run is built: the carried)
        if self.state.epoch_step and (rates := self.last_rates or self.resumed_rates):
            kept["rates"] = {tag: float(rate) for tag, rate in rates.items()}
        return kept

    def carry(self, task: Task, so_far: dict[str, Any]) -> None:
        """Start from the sums a resumed checkpoint kept (`so_far`): the running loss's window and
        the train metrics now (a checkpoint that does not fit is refused before the run writes
        anything), the epoch's step values when it starts again (`train_epoch`)."""
        if self.processes > 1:  # (none are saved then: a file that holds some was made elsewhere)
            if self.state.epoch_step and self.reports(self.state.epoch, 0):  # (its train/ figures: read)
                log.warning(
                    f"epoch {self.state.epoch + 1}'s train/ figures count only its batches after the "
                    "resume: with several processes, its sums so far are not kept"
                )
            return
        try:
            if "running" in so_far:
                self.running.carry(so_far["running"], self.device)
            if "rates" in so_far and self.state.epoch_step:
                self.resumed_rates = dict(so_far["rates"])
            if (epoch := so_far.get("epoch")) and self.state.epoch_step:
                metrics = getattr(task, "train_metrics", None)
                if epoch["metrics"] is not None and hasattr(metrics, "carry"):
                    metrics.carry(epoch["metrics"], self.device)
                # (whole: the epoch's train metrics so far were kept, or there are none to keep)
                whole = epoch["metrics"] is not None or getattr(metrics, "carry", None) is None
                self.carried = {"means": epoch["means"], "metrics": metrics, "whole": whole}
        except Exception as err:  # a checkpoint is data
            raise DlbenchError(f"The checkpoint's sums so far do not fit this run: {err}") from err

    def checkpoint_state(self, task: Task, optimizations: dict[str, Optimization]) -> dict[str, Any]:
        """What a checkpoint holds: the training state (engine/training_state.py), the config."""
        return {**training_state.capture(self, task, optimizations), **self.extra}

    def save(
        self,
        task: Task,
        optimizations: dict[str, Optimization],
        *names: str,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Write checkpoints/<name> for each name (only rank 0 writes), captured and serialised
        once; a best epoch's kept state first, as best.pt (last.pt holds its best value)."""
        if not self.cfg.checkpoint or not distributed.is_main():
            return
        self.logger.write_step_scalars()  # (before the checkpoint's time is counted: not its cost)
        started, folder = time.perf_counter(), self.run_dir / "checkpoints"
        if self.best_kept is not None and "best.pt" not in names:
            self.writes.save(self.best_kept, folder / "best.pt")
        self.best_kept = None
        self.logger.flush()  # the TensorBoard events up to this checkpoint survive a SIGKILL
        self.writes.save(
            self.checkpoint_state(task, optimizations), *(folder / name for name in names), then=then
        )
        self.checkpoints.took(time.perf_counter() - started)  # (its files are written while training goes on)

    def finish_writes(self, failing: bool = False) -> None:
        """Wait for the checkpoint files in flight (checkpoint.Writer) and raise a failed write's
        error; where the run stops with an error already (`failing`), that one is a warning."""
        try:
            self.writes.wait()
        except Exception as err:
            if not failing:
                raise
            log.warning(f"a checkpoint was not written: {first_line(err)}")

    def save_periodic(self, task: Task, optimizations: dict[str, Optimization]) -> None:
        """Every checkpoint_every_n_steps: last.pt, and step-N.pt of which the newest keep_last_k
        stay (the older ones removed once the new one has landed: a failed write leaves them)."""
        numbered = [f"step-{self.state.step:09d}.pt"] if self.cfg.keep_last_k else []
        folder, keep = self.run_dir / "checkpoints", self.cfg.keep_last_k

        def prune() -> None:
            for old in sorted(folder.glob("step-*.pt"))[:-keep]:
                old.unlink()

        self.save(task, optimizations, "last.pt", *numbered, then=prune if numbered else None)

    def restore(
        self,
        state: dict[str, Any],
        task: Task,
        optimizations: dict[str, Optimization],
        total_steps: int,
    ) -> None:
        """Continue from a checkpoint: weights, optimizers, schedulers, scalers, counters, RNG
        (`total_steps`: the run's, training_state.restore)."""
        training_state.restore(self, state, task, optimizations, total_steps)
        self.carry(task, training_state.checked_so_far(state.get("so_far") or {}))
        if self.resumed_rates is not None and set(self.resumed_rates) != set(lr_tags(list(optimizations))):
            raise DlbenchError("The checkpoint's learning rates so far do not fit this run's optimizers")
        if self.average is not None and self.average.finished and self._goes_on():
            self.average.finished = False  # a finished SWA run given more epochs: finished again at their end
        # A resume goes on; it cannot make a run shorter than it has trained (that rewrote the
        # run's record to say so, its last.pt and metrics.json still the longer run's).
        done, cfg = self.state, self.cfg
        if done.epoch > cfg.epochs:
            raise DlbenchError(
                f"trainer.epochs={cfg.epochs}: the run has trained {done.epoch} epochs; a resume goes on, "
                "it cannot make a run shorter (start a new run, or give more epochs)"
            )
        if cfg.max_steps and done.step > cfg.max_steps:
            raise DlbenchError(
                f"trainer.max_steps={cfg.max_steps}: the run has trained {done.step} steps; a resume goes "
                "on, it cannot make a run shorter (start a new run, or give more steps)"
            )
        if self.state.cut_by_max_steps and not self._done():
            raise DlbenchError(
                f"trainer.max_steps={self.cfg.max_steps}: this run stopped at trainer.max_steps, step "
                f"{self.state.step}, before the end of epoch {self.state.epoch}, and ended that epoch "
                "there (its evaluation, scheduler step and checkpoint): it cannot go on as if it had "
                "not. Start a new run with the larger trainer.max_steps"
            )


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in values.items()}


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values()))
    return first.shape[0] if isinstance(first, torch.Tensor) else len(first)  # (a tensor's len() costs more)


def _learning_rates(optimizations: dict[str, Optimization]) -> dict[str, float]:
    return dict(zip(lr_tags(list(optimizations)), (o.lr for o in optimizations.values()), strict=True))


def lr_tags(names: list[str]) -> list[str]:
    """The tags of the learning rates of optimizers `names`: train/lr for a task's one model."""
    return ["train/lr"] if names == ["model"] else [f"train/lr_{name}" for name in names]
