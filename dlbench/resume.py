"""What `resume=RUN` may change: the new command's config against the one the checkpoint saved.

A run folder records what ran, so each setting the new command changes is either applied or
refused before anything is written (the whole list of refused keys in one message):

- applied as they are: how long the run goes on (`trainer.epochs`, `max_steps`, `patience`),
  how it is shown, logged and checkpointed, where it runs (`device`, threads, data workers, the
  data's folder), and `name`;
- applied to the restored optimizer (`torch.optim` would otherwise bring back the saved values
  with its state): `lr`, `weight_decay`, `betas`, `eps`, and SGD's `momentum`, `dampening`,
  `nesterov` (settings that leave the optimizer's per-weight state as it is);
- refused: everything else. The model, the data and its order (batch size, splits, seed,
  augmentation), the loss, the task, the optimizer's kind, the scheduler, precision, the metric
  that chose best.pt: the steps taken so far were taken with the saved values, and a run that
  changed them would be two runs under one name. A scheduler (or lookahead) that was built for
  the run's length refuses a new length too, and a schedule refuses a new `lr`: it goes on from
  the one it started with.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from typing import Any

from dlbench.config import SCHEDULE_LENGTHS, STRUCTURED, AugmentConfig
from dlbench.errors import DlbenchError

# settings that change nothing the steps so far were taken with (patterns of flattened keys)
RESUMABLE = (
    "name",
    "resume",
    "plugins",
    "sweep.*",
    "logger.*",
    "device.*",
    "trainer.epochs",
    "trainer.max_steps",
    "trainer.patience",
    "trainer.grad_clip",
    "trainer.grad_clip_mode",
    "trainer.profile",
    "trainer.log_every_n_steps",
    "trainer.val_every_n_epochs",
    "trainer.progress",
    "trainer.checkpoint",
    "trainer.checkpoint_budget",
    "trainer.checkpoint_every_n_steps",
    "trainer.keep_last_k",
    "trainer.log_grad_norms",
    "trainer.running_loss_every",
    "trainer.log_activations",
    "trainer.nonfinite",
    "trainer.max_skipped_fraction",
    "trainer.dist_timeout_s",
    "trainer.threads",
    "trainer.compile",
    "trainer.cudnn_benchmark",
    "trainer.channels_last",
    "trainer.deterministic",
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "dataset.in_memory",
    "dataset.eval_batch_size",
)
OPTIMIZER_SETTINGS = ("lr", "weight_decay", "betas", "eps")  # no per-weight state depends on them
SGD_SETTINGS = ("momentum", "dampening", "nesterov")  # SGD makes its momentum buffer when it needs one
RUN_LENGTH = ("trainer.epochs", "trainer.max_steps")


def flatten(node: dict, prefix: str = "") -> dict[str, Any]:
    """A config as {dotted key: value}; lists are values."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


ABSENT = "(not set)"


def changes(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs, one config having it and the other not included (a key
    added with `+`, a null that became a dict): {key: (saved, new)}. An unset monitor in the
    new config means the task's own, which the saved one names."""
    old, now = flatten(augments_whole(saved)), flatten(augments_whole(new))
    out = {}
    for key in old.keys() | now.keys():
        before, after = old.get(key, default_of(key)), now.get(key, ABSENT)
        if key in ("trainer.monitor", "trainer.monitor_mode") and after is None:
            continue
        root, _, setting = key.partition(".")
        if root == "scheduler" and setting in SCHEDULE_LENGTHS and after in (None, ABSENT):
            continue  # (left to the run: the checkpoint's schedule holds the length it was built with)
        if before != after:
            out[key] = (before, after)
    return dict(sorted(out.items()))


def augments_whole(config: dict) -> dict:
    """A config whose dataset.augment names every augmentation (a run saved before each was in
    every dataset's node had null, or those it set: the rest were off)."""
    data = config.get("dataset")
    if not isinstance(data, dict) or not isinstance(data.get("augment") or {}, dict):
        return config
    whole = {**dataclasses.asdict(AugmentConfig()), **(data.get("augment") or {})}
    return {**config, "dataset": {**data, "augment": whole}}


def default_of(key: str) -> Any:
    """What a setting a checkpoint does not name was: its default, for a setting of a newer
    dlbench (`trainer.accumulate` in a run saved before it existed ran with 1); else ABSENT."""
    group, _, name = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(STRUCTURED[group])} if group in STRUCTURED else {}
    field = fields.get(name)
    if field is None or field.default is dataclasses.MISSING:
        return ABSENT
    return field.default


def follow_monitor(trainer: Any, saved: dict) -> None:
    """An unset trainer.monitor (or monitor_mode) in a resumed run's config means the saved
    run's, the metric that chose its best.pt: filled in before the configs are compared, so a
    setting that follows it (reduce_lr_on_plateau's `mode: ${trainer.monitor_mode}`) resolves
    as it did in the saved run. (A saved value that is not a metric's name or min/max is left
    out: the comparison then refuses it.)"""
    kept = saved.get("trainer") if isinstance(saved, dict) else None
    kept = kept if isinstance(kept, dict) else {}
    if trainer.monitor is None and isinstance(kept.get("monitor"), str):
        trainer.monitor = kept["monitor"]
    if trainer.monitor_mode is None and kept.get("monitor_mode") in ("min", "max"):
        trainer.monitor_mode = kept["monitor_mode"]


def check(saved: dict, new: dict) -> list[str]:
    """Refuse what a resume cannot change (one DlbenchError naming every such key, its saved
    and its new value, and why); return the optimizer settings to apply to the restored
    optimizers (`apply`)."""
    found = changes(saved, new)
    optimizer = str(flatten(saved).get("optimizer.name"))
    scheduled = str(flatten(saved).get("scheduler.name", "none")) != "none"
    applied, refused = [], {}
    for key, values in found.items():
        root, _, setting = key.partition(".")
        if key == "trainer.checkpoint" and values[1] is False:  # (a later resume would inherit it)
            refused[key] = (*values, "its last.pt must go on holding the weights behind metrics.json")
            continue
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE):
            if key in RUN_LENGTH and (why := length_bound(saved)):
                refused[key] = (*values, why)
            continue
        allowed = OPTIMIZER_SETTINGS + (SGD_SETTINGS if optimizer == "sgd" else ())
        if root == "optimizer" and setting in allowed and "optimizer.name" not in found:
            if setting == "lr" and scheduled:
                refused[key] = (*values, "the schedule goes on from the lr it started with")
            else:
                applied.append(setting)
            continue
        refused[key] = (*values, reason(key))
    if refused:
        lines = [f"  {key}: {short(old)} -> {short(now)} ({why})" for key, (old, now, why) in refused.items()]
        raise DlbenchError(
            "resume cannot change these settings of the run it continues (the checkpoint's value -> "
            "this command's):",
            *lines,
            "Resume without them, or start a new run with them.",
        )
    return applied


def length_bound(saved: dict) -> str | None:
    """Why the run's length cannot change: a scheduler or the lookahead was built for it."""
    from dlbench.registry import SCHEDULERS

    scheduler = saved.get("scheduler") or {}
    name = scheduler.get("name", "none")
    if name not in (None, "none") and name in SCHEDULERS:
        import inspect

        accepted = inspect.signature(SCHEDULERS.get(name)).parameters
        if any(key in accepted and scheduler.get(key) is None for key in SCHEDULE_LENGTHS):
            return f"scheduler={name} was built for the run's length"
    if (saved.get("optimizer") or {}).get("lookahead_every"):
        return "the lookahead's decay was built for the run's length"
    return None


def reason(key: str) -> str:
    root, _, setting = key.partition(".")
    if key in ("trainer.monitor", "trainer.monitor_mode"):
        return "best.pt was chosen by the saved metric"
    if key == "trainer.precision":
        return "the steps so far were taken in it (and fp16's gradient scaler with them)"
    if key in ("trainer.seed", "trainer.devices", "trainer.nodes"):
        return "the data's order and the steps so far depend on it"
    return {
        "model": "the weights were made for it",
        "dataset": "the steps so far were taken on that data",
        "optimizer": "the optimizer's state was made by it",
        "scheduler": "the schedule's state was made by it",
        "loss": "the steps so far minimised it",
        "task": "the steps so far were taken by it",
    }.get(root, "the steps so far were taken with it")


def short(value: Any) -> str:
    """A setting's value as a config writes it (null, true, [1, 2]; text quoted), cut to 60."""
    if value is ABSENT or isinstance(value, str):
        text = value if value is ABSENT else repr(value)
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def fresh_groups(optimizations: dict) -> dict[str, list[dict]]:
    """Each optimizer's param-group settings as this command built them (before the restore
    brings back the saved ones)."""
    return {
        name: [{k: v for k, v in group.items() if k != "params"} for group in opt.optimizer.param_groups]
        for name, opt in optimizations.items()
    }


def apply(optimizations: dict, fresh: dict[str, list[dict]], settings: list[str]) -> None:
    """Put this command's optimizer settings (`check`'s list) into the restored optimizers,
    group by group (a normalisation layer's group keeps its own scaled lr)."""
    for name, opt in optimizations.items():
        for group, built in zip(opt.optimizer.param_groups, fresh[name], strict=True):
            for setting in settings:
                group[setting] = built[setting]
