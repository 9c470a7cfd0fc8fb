"""One optimizer update, as a task asks for it with `optimize(name, loss)`:

    zero_grad (on the first micro-batch of a group)
    backward (scaled for fp16; the loss weighted by its share of the group's samples)
    ... then, on the last micro-batch of a group:
    check for NaN/Inf -> log gradient norms -> clip -> optimizer step

With `trainer.accumulate=K` the gradients of K micro-batches add up before one step, so K
batches of B train as one batch of K*B would (the loss of each is a mean over its B samples;
each is weighted by its share of the group's samples, B/(K*B) = 1/K, so they sum to the mean
over K*B). The trainer says where a micro-batch stands in its group (`Update`): an epoch's last
group may hold fewer micro-batches and its last one fewer samples, so the gradient is rescaled,
at the group's end, to the mean over the samples the group held.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim import optimizer as torch_optimizer

from dlbench.config import TrainerConfig
from dlbench.engine.logging import RunLogger
from dlbench.engine.optim import Optimization
from dlbench.errors import DlbenchError

log = logging.getLogger("dlbench")

NOTHING = contextlib.nullcontext()  # (reusable: one for every step that needs no context)
DTYPES = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


class NonFinite(DlbenchError):
    """A NaN/Inf loss or gradient stopped the run (trainer.nonfinite=stop); the trainer adds
    which checkpoints it leaves (`Trainer.fit`)."""

    ADVICE = "Lower optimizer.lr, set trainer.grad_clip, or skip such steps with trainer.nonfinite=skip"


@dataclass(frozen=True)
class Update:
    """Where the current micro-batch stands in its accumulation group."""

    first: bool = True  # the gradients are zeroed before this micro-batch's backward
    last: bool = True  # the optimizer steps after this micro-batch's backward
    size: int = 1  # micro-batches in this group (trainer.accumulate, fewer at an epoch's end)
    share: float = 1.0  # this micro-batch's weight in the group's mean: its samples / `nominal`
    grouped: int = 0  # samples in the group so far, this micro-batch's included
    nominal: int = 0  # trainer.accumulate times the samples of the group's first micro-batch

    @classmethod
    def of(cls, index: int, batches: int, accumulate: int, samples: int, before: Update) -> Update:
        """Where micro-batch `index` (of the epoch's `batches`), of `samples` samples, stands in
        its accumulation group (`before`: the previous micro-batch's): groups of
        trainer.accumulate, the last one of an epoch possibly shorter."""
        if accumulate == 1:  # every micro-batch is a whole step (one object for all of them)
            return WHOLE
        start = index - index % accumulate
        size = min(accumulate, batches - start)
        first = index == start
        nominal = samples * accumulate if first else before.nominal  # (every batch but an epoch's last has B)
        grouped = samples if first else before.grouped + samples
        return cls(first, index == start + size - 1, size, samples / nominal, grouped, nominal)


WHOLE = Update()  # a micro-batch that is a whole step: first and last of its group of one


class Stepper:
    """The gradient scalers, the NaN/Inf check, clipping and the step of each optimizer."""

    def __init__(self, cfg: TrainerConfig, device: torch.device, logger: RunLogger):
        self.cfg, self.device, self.logger = cfg, device, logger
        self.dtype = resolve_precision(str(cfg.precision), device)
        if self.dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DlbenchError("trainer.precision=bf16: this GPU does not support bfloat16 (use 16)")
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.param_names: dict[torch.nn.Parameter, str] = {}  # for messages and grad_norm/<name>
        self.skipped_steps = 0  # steps left out for a NaN/Inf (trainer.nonfinite=skip)
        self.update = WHOLE
        self.losses: list[torch.Tensor] = []  # the group's losses so far (for the NaN/Inf check)
        self.found, self.one = torch.zeros(1, device=device), torch.ones((), device=device)  # (NaN/Inf)
        self.loss_copy = torch.zeros((), device=device)  # what the NaN/Inf check reads of a loss
        # a labelled range while trainer.profile records (engine/profiling.py), else nothing
        self.phase: Callable[[str], contextlib.AbstractContextManager] = lambda name: NOTHING
        self.profiling = False  # (the trainer sets both; without it, a step enters no range)

    def scaler(self, name: str) -> torch.amp.GradScaler:
        """fp16 needs a gradient scaler (one per optimizer); bf16 and fp32 do not."""
        if name not in self.scalers:
            self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)
        return self.scalers[name]

    def optimize(
        self, optimization: Optimization, name: str, loss: torch.Tensor, step: int, epoch: int
    ) -> None:
        """(zero_grad), backward; on a group's last micro-batch also (check), (clip), step.
        `step` and `epoch` number the optimizer step this group makes (messages and logs)."""
        optimizer = optimization.optimizer
        scaler = self.scaler(name) if self.dtype is torch.float16 else None  # (fp16's alone)
        if self.update.first:  # (a GAN's generator loss also left gradients in the discriminator)
            zero_grad(optimizer)
        share = loss * self.update.share if self.cfg.accumulate > 1 else loss  # (of the group's mean)
        if self.dtype is None and not self.profiling:  # float32: no autocast to leave, no range to label
            share.backward()
        else:
            with self.outside_autocast(), self.phase("backward"):
                (share if scaler is None else scaler.scale(share)).backward()
        self.losses.append(loss.detach())
        if not self.update.last:
            return
        losses, self.losses = self.losses, []
        if self.update.grouped != self.update.nominal:  # fewer samples than K*B: the mean over them
            for p in params_of(optimizer):
                if p.grad is not None:
                    p.grad.mul_(self.update.nominal / self.update.grouped)
        if self.cfg.nonfinite != "off" and self.nonfinite(optimizer, losses, step, epoch, scaler is None):
            optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            return  # skip: the weights and the optimizer's state stay as they were
        if self.cfg.log_grad_norms and step % self.cfg.log_every_n_steps == 0:
            self.log_grad_norms(optimizer, 1.0 if scaler is None else scaler.get_scale(), step)
        with self.phase("optimizer"):
            if self.cfg.grad_clip is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if self.cfg.grad_clip_mode == "value":
                    torch.nn.utils.clip_grad_value_(params_of(optimizer), self.cfg.grad_clip)
                else:
                    torch.nn.utils.clip_grad_norm_(params_of(optimizer), self.cfg.grad_clip)
            try:
                if scaler is None:
                    optimizer_step(optimizer, self.profiling)
                else:
                    scaler.step(optimizer)
                    scaler.update()
            except (RuntimeError, ValueError, TypeError) as err:
                raise step_failed(optimizer, err, f"step {step} (epoch {epoch})") from err

    def outside_autocast(self) -> contextlib.AbstractContextManager:
        """Backward runs outside the forward's autocast (there is none in float32: nothing to leave)."""
        if self.dtype is None:
            return NOTHING
        return torch.autocast(device_type=self.device.type, enabled=False)

    def nonfinite(
        self,
        optimizer: torch.optim.Optimizer,
        losses: list[torch.Tensor],
        step: int,
        epoch: int,
        gradients: bool = True,
    ) -> bool:
        """Whether this step's loss or a gradient is NaN or Inf (one scalar read per step). With
        trainer.nonfinite=stop that is an error naming the step and the value; with skip, the
        step is left out. Under fp16 (`gradients` false) the loss alone: the gradient scaler
        skips the steps whose scaled gradients overflow, and lowers its scale, as it should."""
        # One fused pass over the group's losses and every gradient (the kernel fp16's gradient
        # scaler uses to find an overflow; its factor 1 leaves them as they are), then one read.
        # The losses are copied first (the kernel writes back what it checks), into a tensor
        # kept for it: on tiny steps, a new tensor costs more than the check.
        loss = self.loss_copy.copy_(losses[0]) if len(losses) == 1 else torch.stack(losses)
        grads = (
            [
                g._values() if g.is_sparse else g
                for group in optimizer.param_groups
                for p in group["params"]
                if (g := p.grad) is not None
            ]
            if gradients
            else []
        )
        # `found` stays zero between checks (it is reset only after one that found something)
        torch._amp_foreach_non_finite_check_and_unscale_([loss, *grads], self.found, self.one)
        if not self.found.item():
            return False
        self.found.zero_()
        if not torch.isfinite(loss).all():
            what = f"the loss is {float(loss.reshape(-1)[~torch.isfinite(loss.reshape(-1))][0])}"
        else:
            params = [p for p in params_of(optimizer) if p.grad is not None]
            bad = next(p for p in params if not torch.isfinite(p.grad).all())
            value = float(bad.grad[~torch.isfinite(bad.grad)][0])
            what = f"the gradient of {self.param_names.get(bad, 'a parameter')} holds {value}"
        if self.cfg.nonfinite == "skip":
            log.warning(f"step {step}: {what}; step skipped (trainer.nonfinite=skip)")
            return True
        where = f"step {step} (epoch {epoch})"
        raise NonFinite(f"{where}: {what}. Stopped before the update, so no checkpoint holds it")

    def log_grad_norms(self, optimizer: torch.optim.Optimizer, scale: float, step: int) -> None:
        """The L2 norm of each weight's gradient (before clipping), one curve per layer."""
        norms = {  # (tensors, read with the other step values when they are written)
            f"grad_norm/{self.param_names.get(p, 'param')}": p.grad.detach().norm() / scale
            for p in params_of(optimizer)
            if p.grad is not None and p.dim() > 1
        }
        self.logger.step_scalars(norms, step)


def step_failed(optimizer: torch.optim.Optimizer, err: Exception, where: str) -> Exception:
    """What a failed optimizer step is: memory that ran out (errors.as_user_error), or settings
    torch took when it built the optimizer but cannot step with (`+optimizer.differentiable=true`
    in a loop that steps under no_grad) or a state a checkpoint gave it: one message naming
    them (the run stops as after any error: its checkpoints are those written before)."""
    from dlbench.errors import as_user_error, first_line

    if isinstance(known := as_user_error(err), DlbenchError):
        return known
    return DlbenchError(
        f"{where}: {type(optimizer).__name__}'s step failed (its settings, optimizer.*, or the state a "
        f"checkpoint gave it): {first_line(err)}"
    )


def zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.zero_grad(set_to_none=True): each of its parameters' gradient set to None.
    torch's method does just that inside a profiler range that costs ~7 us a call on the CPU,
    3-4% of a tiny step (iris_mlp's); an optimizer class with its own zero_grad keeps it."""
    if type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad:
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


# torch's registries of step hooks for every optimizer (None where a torch version moved them)
GLOBAL_STEP_HOOKS = tuple(
    getattr(torch_optimizer, name, None)
    for name in ("_global_optimizer_pre_hooks", "_global_optimizer_post_hooks")
)
# the code of the wrapper torch puts around every optimizer class's step (one for all of them:
# a function of that code is torch's wrapper, not another that copied its attributes)
TORCH_STEP_WRAPPER = torch.optim.Optimizer.profile_hook_step(lambda self: None).__code__


def optimizer_step(optimizer: torch.optim.Optimizer, profiling: bool = False) -> None:
    """optimizer.step(). torch wraps every optimizer class's step in a profiler range and the
    calls of its step hooks: ~8 us a call timed alone, ~20 us of a 187-us iris_mlp step in a
    plain loop (SGD; measured by alternating the two). The step inside is called where that
    wrapper would only open the range: the class's step is torch's wrapper itself, no step hook
    is registered (on this optimizer or on every one), no torch.profiler records
    (trainer.profile or the user's own), and nothing replaced this optimizer's step (an LR
    scheduler does, to count its calls). Anywhere else, optimizer.step() as written."""
    hooked = type(optimizer).step
    if (
        profiling
        or getattr(hooked, "__code__", None) is not TORCH_STEP_WRAPPER
        or "step" in optimizer.__dict__
        or getattr(optimizer, "_optimizer_step_pre_hooks", True)
        or getattr(optimizer, "_optimizer_step_post_hooks", True)
        or any(hooks is None or hooks for hooks in GLOBAL_STEP_HOOKS)
        or torch.autograd._profiler_enabled()
    ):
        optimizer.step()
        return
    hooked.__wrapped__(optimizer)


def params_of(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None: float32). `auto` is bf16 on a GPU that has it, else float32
    (bf16 autocast on a CPU is slower than float32 for these models)."""
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    return DTYPES[precision]
