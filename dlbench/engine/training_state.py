"""What a checkpoint holds of a run in training, and putting it back on resume: where training
stands (`TrainState`), the weights (the evaluated ones, and with an average the trained ones
too), every optimizer, scheduler, gradient scaler and lookahead, and the RNG streams.
`Trainer.save` writes it (with the run's config, engine/checkpoint.py); `Trainer.restore`
reads it back."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from dlbench import errors
from dlbench.engine.device import rng_state, set_rng_state
from dlbench.engine.optim import Optimization, check_steps, load_optimizer_state
from dlbench.errors import DlbenchError

if TYPE_CHECKING:  # (types only: the trainer imports this module; the tasks sit above the engine)
    from dlbench.engine.trainer import Trainer
    from dlbench.tasks.base import Task


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed (one per accumulation group of trainer.accumulate batches)
    best: float | None = None  # best value of the monitored metric so far
    bad_epochs: int = 0  # evaluations since the monitor last improved (early stopping, trainer.patience)
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's metrics
    epoch_step: int = 0  # batches done in the current epoch (a checkpoint written mid-epoch)
    swa_lr: bool = False  # the schedule gave way to trainer.swa_lr (SWA's SWALR)
    cut_by_max_steps: bool = False  # the last epoch ended before its last batch, at trainer.max_steps

    def saved(self) -> dict[str, Any]:
        """As a checkpoint holds it: a dict of its fields (dataclasses.asdict's result, without
        its deep copy of each value: ~30 us of every checkpoint)."""
        return {**vars(self), "metrics": dict(self.metrics)}


def capture(trainer: Trainer, task: Task, optimizations: dict[str, Optimization]) -> dict[str, Any]:
    """The training state of a checkpoint (the run's config is added by the trainer)."""
    with trainer.evaluated_weights(task):  # what eval, predict, export and load_model take
        used = task.state_dict()
    averaged = {}
    if trainer.average is not None:  # the trained weights too, and the average's own state
        averaged = {"trained": task.state_dict(), "average": trainer.average.state_dict()}
    return {
        "task": used,
        **averaged,
        "optimizers": {k: o.optimizer.state_dict() for k, o in optimizations.items()},
        "schedulers": {k: o.scheduler.state_dict() for k, o in optimizations.items() if o.scheduler},
        "scalers": {k: s.state_dict() for k, s in trainer.stepper.scalers.items()},
        "lookahead": {k: o.lookahead.state_dict() for k, o in optimizations.items() if o.lookahead},
        "trainer": trainer.state.saved(),
        "rng": rng_state(),
        "so_far": trainer.so_far(task),  # (sums in progress: the epoch's, the running loss's window)
    }


def checked_so_far(so_far: Any) -> dict[str, Any]:
    """A checkpoint's sums in progress (Trainer.so_far), if they have its shape: numbers by name,
    a list of step values and one of sizes per key, of one length (a checkpoint is data)."""

    def numbers(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
        return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)

    def named(value: Any, fits) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and fits(v) for k, v in value.items())

    fine = isinstance(so_far, dict) and set(so_far) <= {"epoch", "running", "rates"}
    if fine and "rates" in so_far:  # (train/lr of the epoch's last step, made before the stop)
        fine = named(so_far["rates"], lambda v: isinstance(v, float)) and bool(so_far["rates"])
    if fine and "running" in so_far:
        running = so_far["running"]
        fine = (
            isinstance(running, dict)
            and named(running.get("sums"), lambda v: isinstance(v, (int, float)))
            and isinstance(running.get("count"), int)
            and running["count"] >= 0
        )
    if fine and "epoch" in so_far:
        epoch = so_far["epoch"]
        means = epoch.get("means") if isinstance(epoch, dict) else None
        fine = (
            isinstance(means, dict)
            and named(means.get("values"), numbers)
            and named(means.get("sizes"), lambda v: numbers(v, int))
            and means["values"].keys() == means["sizes"].keys()
            and all(len(v) == len(means["sizes"][k]) for k, v in means["values"].items())
            and isinstance(means.get("count"), int)
            and (epoch.get("metrics") is None or isinstance(epoch["metrics"], dict))
        )
    if not fine:
        raise DlbenchError("The checkpoint's sums of the epoch so far are not what dlbench saves")
    return so_far


def copied(state: dict[str, Any]) -> dict[str, Any]:
    """A captured state, kept in memory while training goes on (a best epoch's, until it is
    written: engine/trainer.py's `keep_best`): the weights and the optimizers' states copied to
    the CPU (training changes them in place); the counters and RNG states `capture` made afresh
    are kept as they are (the RNG's are 600 numbers, slow to copy one by one)."""
    return {key: value if key in ("trainer", "rng") else _copied(value) for key, value in state.items()}


CPU = torch.device("cpu")  # (a device object: `.to("cpu")` parses its string on every call)


def _copied(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to(CPU, copy=True)
    if isinstance(value, dict):  # (of its type, with its attributes: a state_dict's _metadata)
        result = value.copy() if type(value) is dict else copy.copy(value)
        for key, item in value.items():
            result[key] = _copied(item)
        return result
    if isinstance(value, (list, tuple)):
        items = [_copied(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # (a namedtuple)
    return value


def restore(
    trainer: Trainer,
    state: dict[str, Any],
    task: Task,
    optimizations: dict[str, Optimization],
    total_steps: int,
) -> None:
    """Put a checkpoint's training state back: weights, optimizers, schedulers, scalers,
    counters, RNG. A checkpoint is data: one that does not fit is refused in one message. A
    restored schedule is stepped once in trial where the run has steps left (`total_steps`:
    the run's; a one_cycle_lr saved at its last step takes none more, and goes on to its test)."""
    counters = state.get("trainer")  # (a checkpoint's: checked when restored, below)
    saved_step = counters.get("step") if isinstance(counters, dict) else None
    stepping = not isinstance(saved_step, int) or saved_step < total_steps
    missing = [k for k in ("trainer", "optimizers", "rng") if k not in state]
    if missing:
        raise DlbenchError(
            f"The checkpoint holds no {', '.join(missing)} state: it can be evaluated, not resumed"
        )
    try:
        # (with an average, "trained" holds the weights as trained and "task" the average: capture)
        task.load_state_dict(state.get("trained", state["task"]))
        if trainer.average is not None:
            trainer.average.load_state_dict(state["average"])
        if state["trainer"].get("swa_lr"):  # (before the optimizer's state, which SWALR changes)
            trainer.start_swa_lr(optimizations)
        for name, opt in optimizations.items():
            saved, built = state["optimizers"][name], opt.optimizer.state_dict()
            settings_fit("its optimizer's settings", built["param_groups"], saved["param_groups"])
            load_optimizer_state(opt.optimizer, saved)  # (made to fit this run)
            if opt.scheduler is not None and name in state["schedulers"]:
                settings_fit("its scheduler's state", opt.scheduler.state_dict(), state["schedulers"][name])
                opt.scheduler.load_state_dict(state["schedulers"][name])
                if not opt.reads_monitor and stepping:  # (numbers of the right kind that cannot step)
                    check_steps(opt.scheduler, 1, "its scheduler's state")
            if opt.lookahead is not None and name in state.get("lookahead", {}):
                opt.lookahead.load_state_dict(state["lookahead"][name])
    except Exception as err:  # a checkpoint is data: one that does not fit is the file's fault
        quoted = [state.get(k) for k in ("task", "trained", "optimizers")]  # (the keys torch names)
        what = "The checkpoint does not fit this run's model or optimizer"
        raise errors.does_not_fit(what, err, quoted) from err
    try:
        for name, scaler_state in state.get("scalers", {}).items():
            trainer.stepper.scaler(name).load_state_dict(scaler_state)
        trainer.state = TrainState(**state["trainer"])
        set_rng_state(state["rng"])
    except Exception as err:
        raise DlbenchError(f"The checkpoint's training state cannot be restored: {err}") from err


def settings_fit(what: str, built: Any, saved: Any) -> None:
    """A checkpoint's settings (an optimizer's groups, a scheduler's state) are of the kinds the
    run's own are, value by value: numbers where it has numbers, flags where flags, text where
    text, lists as long (a key only one of them has is left to torch: another torch version's);
    else a ValueError (the resume says the checkpoint does not fit). Torch loads them as they
    are, and a learning rate of "x" would fail at the first step, after the run had started."""
    if isinstance(built, dict) and isinstance(saved, dict):
        for key in built.keys() & saved.keys():
            if key != "params":
                settings_fit(what, built[key], saved[key])
    elif isinstance(built, (list, tuple)) and isinstance(saved, (list, tuple)) and len(built) == len(saved):
        for b, v in zip(built, saved, strict=True):
            settings_fit(what, b, v)
    elif kind(built) != kind(saved) or isinstance(built, (list, tuple, dict)):  # (lists of other lengths)
        raise ValueError(f"{what} are not of the kinds this run's are (numbers, flags, text)")


def kind(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "flag"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__
