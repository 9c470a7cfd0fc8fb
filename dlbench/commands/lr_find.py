"""dlbench lr-find [--steps N] [--min-lr X] [--max-lr X] [--out DIR] [OVERRIDES...]: the
learning-rate range test (Smith, 2017; Lightning's and fastai's lr_find).

The run the overrides describe (its model, data and optimizer) trains for N steps with the
learning rate growing exponentially from --min-lr to --max-lr, through the one trainer (an
exponential schedule, `trainer.max_steps=N`, every step's loss recorded). The loss, smoothed
by an exponential moving average, falls, flattens and then blows up; the suggestion is the lr
where it falls fastest, before its minimum (Lightning's "steepest" suggestion). Written to --out (default
outputs/lr_find/<time>): lr_find.png (loss against lr), lr_find.csv, and tb/ (the curve and
the picture in TensorBoard). No checkpoint, config or metrics.json: nothing there is a run
that could be resumed or compared, and no run is touched.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

from dlbench import files, preflight, rundir
from dlbench.engine.logging import RunLogger, print_error
from dlbench.errors import ArgumentParser, DlbenchError, Preempted, output_path
from dlbench.terminal import command, key_of

SMOOTHING = 0.9  # the loss's moving average (fastai and Lightning take 0.98 over 100 steps, which lags)
DIVERGED = 4.0  # the curve ends where the smoothed loss rises above its lowest by (this - 1) times its size


USAGE = "usage: dlbench lr-find [OVERRIDES...] [--steps N] [--min-lr X] [--max-lr X] [--out DIR]"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="dlbench lr-find", usage_line=USAGE)
    p.add_argument("--steps", type=int, default=200, help="training steps of the sweep (default 200)")
    p.add_argument("--min-lr", type=float, default=1e-7, help="the first step's lr (default 1e-7)")
    p.add_argument("--max-lr", type=float, default=10.0, help="the last step's lr (default 10)")
    folder = "folder for lr_find.png, .csv and tb/ (default outputs/lr_find/<time>)"
    p.add_argument("--out", type=output_path, help=folder)
    return p


def lr_find_command(args: list[str]) -> int:
    if args[:1] in (["-h"], ["--help"]):
        from dlbench.engine.logging import console

        console.print_lines(USAGE + "\n\n" + __doc__.split("\n\n", 1)[1], soft_wrap=True)
        return 0
    options, overrides = parser().parse_known_args(args)
    if bad := [a for a in overrides if a.startswith("-")]:
        raise DlbenchError(
            f"dlbench lr-find: unknown option {bad[0]} (options: --steps --min-lr --max-lr --out)"
        )
    if options.steps < 20:
        raise DlbenchError(f"--steps={options.steps}: the sweep needs at least 20 steps")
    # (read by nothing here, and given back in the hint it prints)
    preflight.refuse_run_settings(overrides, "lr-find starts a new model and writes into --out")
    low, high = options.min_lr, options.max_lr
    if not (0 < low < high < math.inf and math.isfinite(high / low)):  # (1e-320 to 1e308: an overflow)
        raise DlbenchError(
            f"--min-lr={low} --max-lr={high}: need 0 < min < max, and max/min a number (not an overflow)"
        )
    cfg = preflight.check(overrides, mode="show")[0]  # (a sweep's combinations: the first one)
    if cfg.task.name == "minimize":  # (it said trainer.monitor=train/loss reports nothing)
        kept = [o for o in overrides if key_of(o) != "optimizer.lr"]
        raise DlbenchError(
            "lr-find sweeps a training loss, and task=minimize has none (it minimises f itself, logged as "
            f"train/f): compare learning rates with a sweep, {command('-m', *kept, 'optimizer.lr=0.1,0.01')}"
        )
    from dlbench.config_store import new_run_id

    out = Path(options.out) if options.out else Path("outputs") / "lr_find" / new_run_id()
    made: list[Path] = []  # (a folder it cannot write, or one with files in it: refused now)
    try:
        made = rundir.new_folders(out)
        out.mkdir(parents=True, exist_ok=True)
        if any(out.iterdir()):
            raise DlbenchError(f"--out {out}: the folder is not empty (lr-find writes into a new one)")
    except (OSError, ValueError) as err:
        rundir.remove_empty(made)
        raise DlbenchError(f"--out {out}: cannot write there ({err})") from err
    except DlbenchError:
        rundir.remove_empty(made)
        raise
    try:
        lrs, losses = sweep(cfg, options.steps, options.min_lr, options.max_lr, out)
    except Preempted as stop:  # SIGTERM (a cluster's time limit), SIGUSR1/2: the sweep cut short
        rundir.remove_empty(made)
        name = signal.Signals(stop.signum).name
        print_error(f"stopped by {name} after step {stop.step} of {options.steps}: no lr is suggested")
        return 128 + stop.signum
    except BaseException:
        rundir.remove_empty(made)  # (a run refused as it is built leaves no folder)
        raise
    smoothed = smooth(losses)
    suggested = suggest(lrs, smoothed)
    write(out, lrs, losses, smoothed, suggested)

    from dlbench.engine.logging import console

    console.print(f"The loss against the lr over {len(losses)} steps: {out / 'lr_find.png'}", soft_wrap=True)
    if suggested is None:
        print_error(
            f"no lr to suggest: the loss did not fall over the range ({retry(options, lrs, smoothed)})"
        )
        return 1
    # (a schedule that sets its own peak lr, one_cycle_lr's and cyclic_lr's max_lr, ignores optimizer.lr)
    key = "scheduler.max_lr" if "max_lr" in cfg.scheduler else "optimizer.lr"
    console.print(
        f"Suggested lr: {suggested:.3g} (where the smoothed loss falls fastest). Train with it"
        f"{f' as the schedule peak, {key}' if key != 'optimizer.lr' else ''}:",
        soft_wrap=True,
    )
    kept = [o for o in overrides if key_of(o) != key]  # (replaced)
    console.print("  " + command(*kept, f"{key}={suggested:.3g}"), soft_wrap=True)
    return 0


def sweep(cfg, steps: int, min_lr: float, max_lr: float, out: Path) -> tuple[list[float], list[float]]:
    """Train `steps` steps with the lr growing from min_lr to max_lr; every step's (lr, loss)."""
    import torch
    from omegaconf import OmegaConf

    from dlbench.build import build_data, build_task, check_batch_norm_batches
    from dlbench.engine.device import resolve_device, seed_everything, trial_step
    from dlbench.engine.logging import setup_console
    from dlbench.engine.optim import lr_ratios
    from dlbench.engine.trainer import Trainer
    from dlbench.training import check_monitor, parts_of

    # the mode in effect (auto: a bar on a terminal); in plain mode no line per step: lr-find
    # logs every one of its steps, and a line each would be hundreds of lines
    shown = setup_console(cfg.trainer.progress)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    data = build_data(cfg)
    device = resolve_device(str(cfg.device.type))
    data.place(device)
    task = build_task(cfg, data.info, data)
    check_batch_norm_batches(task, data, cfg.dataset.batch_size)
    reported: set[str] = set()  # (the command it prints trains with trainer.monitor: checked now)
    trial_step(
        task, data.loader("train"), device, parts_of(cfg, task), cfg.trainer.channels_last, None, reported
    )
    if cfg.trainer.monitor is not None:  # (lr-find's one optimizer is the model's)
        check_monitor(cfg.trainer.monitor, reported | {"train/lr"}, bool(data.size("val")))
    settings = OmegaConf.to_object(cfg.trainer)  # the one trainer: every step's loss, nothing kept
    settings.checkpoint, settings.log_every_n_steps, settings.nonfinite = False, 1, "off"
    settings.monitor, settings.monitor_mode, settings.patience = "train/loss", "min", None
    settings.ema = settings.swa_start = settings.swa_lr = None
    settings.profile = 0
    recorder = LossRecorder(out, "rich" if shown == "rich" else "none", cfg.logger.figures_budget)
    trainer = Trainer(settings, device, out, recorder)
    trainer.setup(task)
    steps_per_epoch = trainer.optimizer_steps(len(data.loader("train")))  # (trainer.accumulate)
    settings.epochs, settings.max_steps = -(-steps // steps_per_epoch), steps  # (the trainer's own cfg)
    settings.val_every_n_epochs = settings.epochs  # (one evaluation, at the end)
    optimizations = task.configure_optimizers(cfg.optimizer, {"name": "none"}, steps, steps_per_epoch)
    if list(optimizations) != ["model"]:
        raise DlbenchError(f"lr-find sweeps one optimizer; task={cfg.task.name} has {len(optimizations)}")
    optimization = optimizations["model"]
    growth = (max_lr / min_lr) ** (1 / (steps - 1))
    # (every group from min_lr times its ratio: a normalisation layer's, optimizer.norm_lr_scale)
    groups = optimization.optimizer.param_groups
    for group, ratio in zip(groups, lr_ratios(optimization.optimizer), strict=True):
        group["lr"] = min_lr * ratio
    optimization.scheduler = torch.optim.lr_scheduler.ExponentialLR(optimization.optimizer, growth)
    optimization.interval = "step"
    trainer.fit(task, data, optimizations)
    recorder.write_step_scalars()  # (the steps' losses not yet written)
    taken = sorted(recorder.losses)  # step s trained at min_lr * growth^(s - 1)
    return [min_lr * growth ** (s - 1) for s in taken], [recorder.losses[s] for s in taken]


def smooth(losses: list[float]) -> list[float]:
    """The losses' moving average (bias-corrected), up to where the loss is no longer finite or
    rises above its lowest so far by DIVERGED - 1 times that lowest's size: four times it, for a
    loss above 0; a negative one's lowest (poisson_nll's) passed 4 times itself as it still fell."""
    smoothed, average, lowest = [], 0.0, math.inf
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            break
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        value = average / (1 - SMOOTHING ** (i + 1))
        if value - lowest > (DIVERGED - 1) * abs(lowest):
            break
        smoothed.append(value)
        lowest = min(lowest, value)
    return smoothed


def retry(options, lrs: list[float], smoothed: list[float]) -> str:
    """What to try where no lr was suggested (`suggest`): a range that ends below where the loss
    diverged; one that starts lower where it fell at once (its fastest fall is before the range)
    or rose; one that ends higher where it hardly moved; and more steps where each decade of lr
    had few (`--max-lr 1e6`: 5 a decade, too fast to read)."""
    per_decade = options.steps / math.log10(options.max_lr / options.min_lr)
    first = abs(smoothed[0]) if smoothed else 0.0
    fell = bool(smoothed) and smoothed[0] - min(smoothed) >= 0.05 * first  # (then at once: no suggestion)
    rose = bool(smoothed) and smoothed[-1] - smoothed[0] > 0.05 * first
    if len(smoothed) < len(lrs):  # (`smooth` stops where the loss diverged)
        at = lrs[len(smoothed)]
        lower = "a lower --min-lr and " if at < 10 * options.min_lr or fell else ""
        tries = [f"{lower}a --max-lr below {at:.3g}, where the loss diverged"]
    elif fell:
        tries = ["a lower --min-lr: the loss fell at the range's start"]
    elif rose:
        tries = ["a lower --min-lr: the loss rose over the range"]
    else:
        tries = ["a higher --max-lr: the loss hardly moved"]
    if per_decade < 10:
        tries.append(f"more --steps: {per_decade:.0f} a decade of lr now")
    return "; ".join(tries)


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """The lr where the smoothed loss falls fastest against log(lr) before its minimum
    (Lightning's "steepest" suggestion), each slope taken across a window of a twentieth of
    the steps so a noisy loss does not decide it. None when the loss hardly fell."""
    if not smoothed:
        return None
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    fell = smoothed[0] - smoothed[lowest]
    w = max(2, len(smoothed) // 20)
    if lowest < 2 * w or fell < 0.05 * abs(smoothed[0]):
        return None
    x = [math.log(lr) for lr in lrs]

    def slope(i: int) -> float:
        a, b = i - w, min(i + w, lowest)
        return (smoothed[b] - smoothed[a]) / (x[b] - x[a])

    return float(lrs[min(range(w, lowest), key=slope)])


def write(out: Path, lrs: list[float], losses: list[float], smoothed: list[float], suggested) -> None:
    """lr_find.png, lr_find.csv, and tb/ (the curves and the picture, for TensorBoard)."""
    from torch.utils.tensorboard import SummaryWriter

    from dlbench.figures import new_figure

    out.mkdir(parents=True, exist_ok=True)
    kept = [*smoothed, *[None] * (len(losses) - len(smoothed))]  # (none past the divergence)
    rows = [
        f"{lr:.6g},{loss:.6g},{'' if s is None else f'{s:.6g}'}"
        for lr, loss, s in zip(lrs, losses, kept, strict=True)
    ]
    files.write_text(out / "lr_find.csv", "lr,loss,smoothed_loss\n" + "\n".join(rows) + "\n")
    figure, ax = new_figure(figsize=(6, 4), layout="constrained")
    ax.plot(lrs, losses, color="0.8", linewidth=1, label="loss")
    ax.plot(lrs[: len(smoothed)], smoothed, linewidth=2, label="smoothed")
    if suggested is not None:
        ax.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested {suggested:.3g}")
    shown = [*smoothed, *(v for v in losses[: len(smoothed)] if math.isfinite(v))]
    if shown:  # from the lowest loss to a little above where it started (not the blow-up)
        low, high = min(shown), max(smoothed[0], min(shown))
        ax.set_ylim(low - 0.05 * (high - low), high + 0.3 * (high - low) + 1e-12)
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title="Learning-rate range test")
    ax.legend()
    files.write_bytes(out / "lr_find.png", lambda f: figure.savefig(f, format="png", dpi=120))
    writer = SummaryWriter(log_dir=str(out / "tb"))
    for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True), start=1):
        writer.add_scalar("lr_find/lr", lr, step)
        writer.add_scalar("lr_find/loss", loss, step)
        if step <= len(smoothed):
            writer.add_scalar("lr_find/smoothed_loss", smoothed[step - 1], step)
    writer.add_figure("lr_find/loss_against_lr", figure, close=False)
    writer.close()


class LossRecorder(RunLogger):
    """The trainer's logger for lr-find: each step's training loss, kept in memory."""

    def __init__(self, folder: Path, progress: str, figures_budget: float):
        super().__init__(folder, progress, figures_budget)
        self.losses: dict[int, float] = {}

    def write(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        if "train/loss_step" in values:
            self.losses[step] = values["train/loss_step"]
