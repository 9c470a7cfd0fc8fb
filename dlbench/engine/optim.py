"""An optimizer with its scheduler, built from the `optimizer` and `scheduler` config nodes."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch

from dlbench.config import SCHEDULE_LENGTHS, OptimizerConfig
from dlbench.errors import DlbenchError, first_line
from dlbench.registry import OPTIMIZERS, SCHEDULERS, raised_in_torch

# Keys of the optimizer node that dlbench consumes (the rest go to the torch optimizer), and
# their defaults: config.OptimizerConfig
EXTRA_KEYS = tuple(f.name for f in dataclasses.fields(OptimizerConfig) if f.name != "name")
DEFAULTS = OptimizerConfig()


class Lookahead:
    """hlb-cifar10's and airbench's lookahead: every `every` steps the weights and BatchNorm
    statistics move towards an exponential average of themselves, which is copied back into
    the model. The decay grows as decay * (step / total)^3; after the last step the model takes
    the average."""

    def __init__(self, module: torch.nn.Module, every: int, decay: float, total_steps: int):
        self.module, self.every, self.decay, self.total = module, every, decay, max(1, total_steps)
        self.average = [t.detach().clone() for t in self._tensors()]

    def _tensors(self) -> list[torch.Tensor]:
        return [t for t in self.module.state_dict().values() if t.is_floating_point()]

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if step >= self.total:
            decay = 1.0  # the end: the model becomes the average
        elif step % self.every == 0:
            decay = self.decay * (step / self.total) ** 3
        else:
            return
        for average, tensor in zip(self.average, self._tensors(), strict=True):
            average.lerp_(tensor, 1 - decay)
            tensor.copy_(average)

    def state_dict(self) -> list[torch.Tensor]:
        return self.average

    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        for average, saved in zip(self.average, state, strict=True):
            average.copy_(saved)


@dataclass
class Optimization:
    """One optimizer, its optional LR scheduler, and when that scheduler steps."""

    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    interval: str = "epoch"  # epoch | step
    lookahead: Lookahead | None = None

    @property
    def acts_after_step(self) -> bool:
        """Whether `after_step` does anything: a step-interval scheduler or lookahead."""
        return (self.scheduler is not None and self.interval == "step") or self.lookahead is not None

    @property
    def reads_monitor(self) -> bool:
        """Whether its scheduler reads trainer.monitor after every epoch (ReduceLROnPlateau)."""
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def after_step(self, step: int) -> None:
        """After each training step: a step-interval scheduler, then the lookahead."""
        self.step_scheduler("step")
        if self.lookahead is not None:
            self.lookahead.after_step(step)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step_scheduler(self, interval: str, monitor_value: float | None = None) -> None:
        if self.scheduler is None or interval != self.interval:
            return
        try:
            if self.reads_monitor:
                if monitor_value is not None:
                    self.scheduler.step(monitor_value)
            else:
                self.scheduler.step()
        except (ArithmeticError, LookupError, TypeError, ValueError, RuntimeError) as err:
            if not raised_in_torch(err):  # (a plugin's scheduler: its own bug)
                raise
            # (a step check_steps did not try: polynomial_lr's power=-1 at a total_iters it set)
            raise DlbenchError(
                f"the schedule failed at its step {self.scheduler.last_epoch} (it steps every "
                f"{self.interval}): {first_line(err)} (check the scheduler's settings, scheduler.*)"
            ) from err
        check_lr(self.optimizer, "the schedule")


def check_lr(optimizer: torch.optim.Optimizer, where: str) -> None:
    """A learning rate is a number from 0: a schedule that makes it negative or not a number
    (step_lr's gamma=-1, one_cycle_lr's max_lr=-1) would train uphill, or not at all, without a
    word (torch checks only the lr an optimizer is made with)."""
    for group in optimizer.param_groups:
        if not float(group["lr"]) >= 0:
            raise DlbenchError(
                f"{where} set the learning rate to {float(group['lr']):g}: it must be a number from 0 "
                "(check the scheduler's settings, scheduler.*)"
            )


def triangle(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    start: float = 0.2,
    peak: float = 0.23,
    end: float = 0.07,
) -> torch.optim.lr_scheduler.LambdaLR:
    """airbench's triangular schedule: the lr factor rises linearly from `start` to 1 over the
    first `peak` fraction of the steps, then falls linearly to `end` at the last step."""
    if not 0 <= peak <= 1:  # (1.5: the lr never reached its peak; -0.5: it only fell)
        raise DlbenchError(f"scheduler.peak={peak}: the fraction of the steps where the lr peaks, in [0, 1]")
    up = int(total_steps * peak)

    def factor(step: int) -> float:
        if step < up:
            return start + (1 - start) * step / up
        return 1 + (end - 1) * (step - up) / max(1, total_steps - up)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


SCHEDULERS.add("triangle", triangle)


def param_groups(module: torch.nn.Module, norm_lr_scale: float, lr: float, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: those of normalisation layers get `norm_lr_scale`
    times the learning rate and 1/norm_lr_scale of the weight decay (so the decay per step is
    unchanged), as airbench does for its BatchNorm biases."""
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    in_norm = {id(p) for m in module.modules() if isinstance(m, norms) for p in m.parameters()}
    trainable = [p for p in module.parameters() if p.requires_grad]
    norm_params = [p for p in trainable if id(p) in in_norm]
    scaled = {"lr": lr * norm_lr_scale, "weight_decay": weight_decay / norm_lr_scale}
    return [{"params": [p for p in trainable if id(p) not in in_norm]}, {"params": norm_params, **scaled}]


def lr_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each parameter group's learning rate over the first group's, as built (a scheduler keeps
    the built one as initial_lr): optimizer.norm_lr_scale's ratio, which a learning rate set
    for the whole optimizer (SWA's swa_lr, lr-find's sweep) keeps too."""
    built = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
    return [lr / built[0] if built[0] > 0 else 1.0 for lr in built]


FUSED = (torch.optim.Adam, torch.optim.AdamW)  # built with torch's fused kernel (build_optimizer)


def build_optimizer(optimizer_cfg: Mapping[str, Any], params: list) -> torch.optim.Optimizer:
    """The torch optimizer over `params` (parameters, or groups of them). Adam and AdamW are
    built with torch's fused kernel where the config chooses neither `fused` nor `foreach` and
    every parameter is a float tensor on the CPU or a GPU: one call updates every parameter,
    where torch's default on a CPU makes a few small operations per parameter (digits_mlp's
    Adam epochs take ~25% less time on a CPU). The same arithmetic, its floating-point
    operations in another order: the weights differ from the default's in their last bits, and
    drift apart from there as any two orders do. (Not SGD or Adagrad, which torch also fuses: their fused
    kernels refuse the sparse gradients the plain ones take, and only at the first step.)
    `+optimizer.fused=false` builds torch's default."""
    fn = OPTIMIZERS.get(optimizer_cfg["name"])
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fusable = all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
    if fn in FUSED and fusable and not {"fused", "foreach"} & set(optimizer_cfg):
        try:
            return OPTIMIZERS.build(
                optimizer_cfg, "optimizer", skip=list(EXTRA_KEYS), params=params, fused=True
            )
        except DlbenchError:
            pass  # (a setting the fused kernel does not take, `differentiable`: torch's default)
    return OPTIMIZERS.build(optimizer_cfg, "optimizer", skip=list(EXTRA_KEYS), params=params)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer state into `optimizer`, made to fit how this run steps it.
    Adam's state must be Adam's (`check_adam_state`). Each state tensor shaped like its
    parameter takes the parameter's memory layout: torch's fused CPU kernel reads both in
    memory order as if they had one, so after a resume that changes `trainer.channels_last` it
    would pair the wrong numbers, without an error. And the groups' own `fused` (the saved one:
    a checkpoint written before dlbench fused Adam says None) decides whether the step does
    fp16's unscaling itself, which torch had set from the implementation this optimizer was
    built with."""
    optimizer.load_state_dict(saved)
    if type(optimizer) in FUSED:  # (not a plugin's subclass: its state may differ)
        check_adam_state(optimizer)
        # (torch's flag for GradScaler: the fused step unscales)
        optimizer._step_supports_amp_scaling = all(group.get("fused") for group in optimizer.param_groups)
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in list(state.items()):
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)  # (its layout)


def check_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """A checkpoint is data: Adam's loaded state is what Adam makes, or a ValueError (the resume
    says the checkpoint does not fit). Each parameter's state holds exactly `step` (one number)
    and `exp_avg`, `exp_avg_sq` (and with amsgrad `max_exp_avg_sq`) shaped like it; a fused
    group is neither foreach nor differentiable. Torch's fused kernel reads as many numbers
    from each state tensor as its parameter has and checks nothing: a shorter one would be
    read, and written, past its end."""
    for group in optimizer.param_groups:
        if group.get("fused") and (group.get("foreach") or group.get("differentiable")):
            raise ValueError("a fused Adam group that is also foreach or differentiable")
        kept = {"exp_avg", "exp_avg_sq", *(["max_exp_avg_sq"] if group.get("amsgrad") else [])}
        names = {"step", *kept}
        for param in group["params"]:
            state = optimizer.state.get(param)
            if not state:
                continue
            if set(state) != names:  # (its names are not shown: they are the file's)
                raise ValueError(
                    f"Adam's state of a parameter holds other entries than {', '.join(sorted(names))}"
                )
            if not whole_count(state["step"]):
                raise ValueError(f"Adam's step count is not a whole number of steps: {state['step']!r:.60}")
            for key in kept:
                value = state[key]
                if not torch.is_tensor(value) or not value.is_floating_point() or value.shape != param.shape:
                    tensor = torch.is_tensor(value)
                    shape = f"{tuple(value.shape)} {value.dtype}" if tensor else type(value).__name__
                    raise ValueError(f"Adam's {key} is {shape}, its parameter {tuple(param.shape)}")


def whole_count(step: Any) -> bool:
    """Whether an optimizer's saved step count is one: a whole number from 0 to 2**53 (a Python
    number or a one-number tensor of a real dtype; not a bool, NaN, negative or a list)."""
    if torch.is_tensor(step):
        if step.numel() != 1 or step.dtype == torch.bool or step.is_complex():
            return False
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return False
    return 0 <= step < 2**53 and step == int(step)


def build_optimization(
    params: Iterable[torch.nn.Parameter] | torch.nn.Module,
    optimizer_cfg: Mapping[str, Any],
    scheduler_cfg: Mapping[str, Any],
    total_steps: int,
    steps_per_epoch: int,
) -> Optimization:
    """Build an optimizer over `params` (a module's, or a list) and its scheduler.

    Schedulers that need the length of training (`total_steps` of OneCycleLR, `T_max`,
    `total_iters`) get it from the trainer when the config leaves it out or null, counted in
    the scheduler's interval (epochs or steps).
    """
    module = params if isinstance(params, torch.nn.Module) else None
    if module is not None:
        scale = float(optimizer_cfg.get("norm_lr_scale", DEFAULTS.norm_lr_scale))
        if scale != 1.0:
            lr, decay = float(optimizer_cfg["lr"]), float(optimizer_cfg.get("weight_decay", 0.0))
            params = param_groups(module, scale, lr, decay)
        else:
            params = [p for p in module.parameters() if p.requires_grad]
    optimizer = build_optimizer(optimizer_cfg, list(params))
    lookahead = None
    if optimizer_cfg.get("lookahead_every"):
        if module is None:
            raise DlbenchError("optimizer.lookahead_every: this task's optimizers do not own one model")
        every, decay = (
            int(optimizer_cfg["lookahead_every"]),
            float(optimizer_cfg.get("lookahead_decay", DEFAULTS.lookahead_decay)),
        )
        lookahead = Lookahead(module, every, decay, total_steps)
    name = scheduler_cfg.get("name", "none")
    if name in (None, "none"):
        return Optimization(optimizer, lookahead=lookahead)
    interval = scheduler_cfg.get("interval", "epoch")
    # in epochs: every epoch the run trains, the last one too if trainer.max_steps ends it early
    length = total_steps if interval == "step" else max(1, -(-total_steps // max(1, steps_per_epoch)))
    lengths = SimpleNamespace(**dict.fromkeys(SCHEDULE_LENGTHS, length))  # (each one left null)
    scheduler = SCHEDULERS.build(
        scheduler_cfg, "scheduler", skip=["interval"], facts=lengths, optimizer=optimizer
    )
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if interval != "epoch":
            raise DlbenchError(
                f"scheduler.interval={interval}: {name} reads trainer.monitor, measured once an epoch "
                "(its evaluation): it steps every epoch (leave out scheduler.interval)"
            )
    elif isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        check_steps(scheduler, length, f"scheduler={name} (it steps every {interval}, {length} in all)")
    return Optimization(optimizer, scheduler, interval, lookahead)


def check_steps(scheduler: torch.optim.lr_scheduler.LRScheduler, length: int, where: str) -> None:
    """Step a throwaway copy of a new scheduler as the run's first and last steps will: arguments
    torch takes but cannot step with (step_lr's step_size=0, a one_cycle_lr total_steps shorter
    than the run) are refused now, not in the middle of the run."""
    params = {id(p): p for group in scheduler.optimizer.param_groups for p in group["params"]}
    trial = copy.deepcopy(scheduler, params)  # (its own optimizer, over the same parameters)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (torch's: a scheduler stepped before its optimizer)
            check_lr(trial.optimizer, f"{where}, made,")
            trial.step()
            check_lr(trial.optimizer, f"{where}, at its first step,")
            if length > 1:
                trial.last_epoch = length - 1
                trial.step()
                check_lr(trial.optimizer, f"{where}, at its last step,")
    except (ArithmeticError, LookupError, TypeError, ValueError, RuntimeError) as err:
        if not raised_in_torch(err):  # (a plugin's scheduler: its own bug)
            raise
        raise DlbenchError(f"{where} fails at a step of this run: {first_line(err)}") from err
