"""The check of a composed config before any work: no key nothing reads, a run's name that is
one folder name, the choices and ranges of the fixed parts (config.py's schemas).

A component's own keys (`model.hidden`, `optimizer.momentum`, ...) are checked against the
constructor registered under its name.
"""

from __future__ import annotations

import dataclasses
import math
import re

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlbench import terminal
from dlbench.config import (
    CHOICES,
    LOGGER_BACKENDS,
    LOGGER_EXTRAS,
    MAX_COUNT,
    STRUCTURED,
    AugmentConfig,
    DataConfig,
    OptimizerConfig,
    RunConfig,
    SchedulerConfig,
    data_config,
    plain_dict,
    schema_hints,
)
from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.registry import DATASETS, LOSSES, MODEL_FACTS, MODELS, OPTIMIZERS, SCHEDULERS, TASKS
from dlbench.values import check_values


def _number(value: object) -> bool:
    """An int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


METRIC_PREFIXES = ("train/", "val/", "time/")  # (what a run's figures are named: Trainer._fit's)


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys that no part of dlbench reads, added with `+` (`+trainer.epocs=5`, `+foo=1`):
    they would be ignored without a word."""
    from dlbench.errors import did_you_mean

    for where, schema, node in [("", RunConfig, cfg), *((k, s, cfg.get(k)) for k, s in STRUCTURED.items())]:
        if not isinstance(node, DictConfig):
            continue
        known = {f.name for f in dataclasses.fields(schema)}
        for key in node.keys():
            if key not in known:
                full, place = (
                    (f"{where}.{key}", f"under {where}") if where else (str(key), "at the top level")
                )
                closest = did_you_mean(str(key), known, prefix=where and where + ".")
                raise DlbenchError(
                    f"Unknown key '{full}': nothing reads it.{closest}",
                    f"Valid keys {place}: {', '.join(sorted(known))}",
                )


# a run's name is the name of its folder under outputs/: one folder name, known before it starts
RUN_NAME = re.compile(r"[\w.+=,@-]{1,200}")


def one_folder_name(name: object) -> bool:
    """Whether `name` is one folder's name: RUN_NAME's letters, not . or .. (a run's name, its id)."""
    return isinstance(name, str) and bool(RUN_NAME.fullmatch(name)) and set(name) != {"."}


def check_name(cfg: DictConfig) -> None:
    """`name` (outputs/<name>/...) must resolve, without Hydra's runtime, to one folder name:
    letters, digits and . _ - + = , @ (not . or ..), so no run lands outside outputs/."""
    raw = cfg._get_node("name")._value() if "name" in cfg else None
    try:
        name = cfg.name
    except OmegaConfBaseException as err:
        raise DlbenchError(
            f"name={raw}: {str(err).splitlines()[0]}. A run's name is its folder's: it must be known "
            "before the run starts (use ${model.name}-like keys of the config, not Hydra's runtime)"
        ) from None
    if not one_folder_name(name):
        raise DlbenchError(
            f"name={name!r}: a run's name is one folder name under outputs/: letters, digits, . _ - + = , @"
        )


def check_backends(backends: list[str]) -> None:
    """logger.backends: known names, each once, and the package each needs installed (found,
    not imported: the check costs nothing)."""
    import importlib.util

    for name in backends:
        if name not in LOGGER_BACKENDS:
            raise unknown_name("logger backend", name, LOGGER_BACKENDS)
        if backends.count(name) > 1:
            raise DlbenchError(f"logger.backends names {name} twice")
        package = LOGGER_EXTRAS.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise DlbenchError(f"logger.backends=[...,{name}] needs {package}: pip install 'dlbench[{name}]'")


def validate(cfg: DictConfig, components: bool = True) -> None:
    """Refuse a composed config that cannot run, before any data is read. With `components`,
    each component's keys are checked against its constructor (which imports its module). A
    value that does not resolve (`trainer.epochs=${hydra.job.num}` outside a sweep) is one
    message too."""
    try:
        _validate(cfg, components)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise DlbenchError(f"{key + ': ' if key else ''}{str(err).splitlines()[0]}") from err


def _validate(cfg: DictConfig, components: bool) -> None:
    check_known_keys(cfg)
    check_name(cfg)
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value is not None and str(value) not in allowed:
            meant = did_you_mean(str(value), list(allowed), prefix=f"{key}=")  # (fp16: 16)
            raise DlbenchError(f"{key}={value} is not allowed; choose one of: {'|'.join(allowed)}.{meant}")
    device = str(cfg.device.type)
    if device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
        raise DlbenchError(f"device.type={device} is not allowed; choose one of: auto|cpu|cuda|mps")
    t = cfg.trainer
    for key, value, low in [
        ("epochs", t.epochs, 0),
        ("max_steps", t.max_steps, 1),
        ("accumulate", t.accumulate, 1),
        ("log_every_n_steps", t.log_every_n_steps, 1),
        ("val_every_n_epochs", t.val_every_n_epochs, 1),
        ("patience", t.patience, 1),
        ("devices", t.devices, 1),
        ("nodes", t.nodes, 1),
        ("dist_timeout_s", t.dist_timeout_s, 1),
        ("checkpoint_every_n_steps", t.checkpoint_every_n_steps, 1),
        ("keep_last_k", t.keep_last_k, 0),
        ("profile", t.profile, 0),
        ("running_loss_every", t.running_loss_every, 1),
        ("seed", t.seed, 0),
    ]:
        if value is not None and not value >= low:  # (not `< low`: nan passed)
            raise DlbenchError(f"trainer.{key}={value}: must be at least {low}")
        # (inf; epochs past int64 trained, with an ETA of 1e17 h; the seed has its own bound below)
        if value is not None and key != "seed" and value >= MAX_COUNT:
            raise DlbenchError(f"trainer.{key}={value}: must be below 2**63")
    if not t.seed < 2**32:
        raise DlbenchError(
            f"trainer.seed={t.seed}: must be below 2**32 (numpy's generators take no larger seed)"
        )
    if t.monitor is not None and not str(t.monitor).startswith(METRIC_PREFIXES):
        # (no run reports another name: a sweep's jobs each failed at their build, after job 1)
        meant = re.sub(r"^test/", "val/", re.sub(r"^(train|val|time|test)_", r"\1/", str(t.monitor)))
        meant = meant if meant.startswith(METRIC_PREFIXES) else f"val/{meant}"
        raise DlbenchError(
            f"trainer.monitor={t.monitor}: a run reports metrics named train/NAME, val/NAME or time/NAME "
            f"(the test split is measured once, after training). Did you mean: {meant}?"
        )
    if t.grad_clip is not None and not 0 < t.grad_clip < math.inf:
        raise DlbenchError(f"trainer.grad_clip={t.grad_clip}: must be a positive number (or null for none)")
    if t.ema is not None and not 0 < t.ema < 1:
        raise DlbenchError(f"trainer.ema={t.ema}: the decay must be in (0, 1), e.g. 0.999 (or null for none)")
    if t.ema is not None and t.swa_start is not None:
        raise DlbenchError("trainer.ema and trainer.swa_start average the weights two ways: choose one")
    if t.swa_start is not None and not 1 <= t.swa_start <= max(1, t.epochs):
        raise DlbenchError(f"trainer.swa_start={t.swa_start}: an epoch from 1 to trainer.epochs={t.epochs}")
    if t.swa_lr is not None and not 0 < t.swa_lr < math.inf:
        raise DlbenchError(f"trainer.swa_lr={t.swa_lr}: SWA's learning rate, a positive number")
    if t.compile_mode != "default" and not t.compile:
        raise DlbenchError(
            f"trainer.compile_mode={t.compile_mode}: the model is compiled only with trainer.compile=true"
        )
    if str(t.threads) != "auto" and not (isinstance(t.threads, int) and t.threads >= 1):
        raise DlbenchError(f"trainer.threads={t.threads}: auto, or a number of threads (1 or more)")
    check_backends(list(cfg.logger.backends))
    shares = {  # (of a run's steps or time)
        "trainer.max_skipped_fraction": t.max_skipped_fraction,
        "trainer.checkpoint_budget": t.checkpoint_budget,
        "logger.figures_budget": cfg.logger.figures_budget,
    }
    for key, share in shares.items():
        if not 0 <= share <= 1:
            raise DlbenchError(f"{key}={share}: must be in [0, 1]")

    dataset = plain_dict(cfg.dataset)
    common = schema_hints(DataConfig)
    check_values({k: v for k, v in dataset.items() if k in common}, common, "dataset")
    data = data_config(dataset)
    if str(data.in_memory).lower() not in ("auto", "true", "false"):
        raise DlbenchError(
            f"dataset.in_memory={data.in_memory} is not allowed; choose one of: auto|true|false"
        )
    if data.num_workers < 0:
        raise DlbenchError(
            f"dataset.num_workers={data.num_workers}: must be 0 (load in this process) or more"
        )
    if not 0 <= data.split_seed < 2**32:  # (torch's generator keeps 32 bits: 2**32 drew seed 0's split)
        raise DlbenchError(f"dataset.split_seed={data.split_seed}: must be from 0 to 2**32-1")
    for key in ("val_fraction", "test_fraction"):
        if not 0 <= getattr(data, key) < 1:
            raise DlbenchError(f"dataset.{key}={getattr(data, key)}: must be in [0, 1)")
    for key in ("batch_size", "eval_batch_size"):
        value = getattr(data, key)
        if value is not None and value < 1:
            raise DlbenchError(f"dataset.{key}={value}: must be at least 1 (or null)")
        if value is not None and value % (t.devices * t.nodes):
            raise DlbenchError(
                f"dataset.{key}={value} is the global batch, split over trainer.devices={t.devices} x "
                f"trainer.nodes={t.nodes} processes: it must be a multiple of {t.devices * t.nodes}"
            )
    if not components:
        return
    DATASETS.check(dataset, "dataset", reserved=schema_hints(DataConfig))
    if data.augment:
        check_values(data.augment, schema_hints(AugmentConfig), "dataset.augment")
        check_augment(data.augment)
    for key in ("mixup", "cutmix"):
        if not 0 <= getattr(data, key) < math.inf:
            raise DlbenchError(f"dataset.{key}={getattr(data, key)}: an alpha of 0 (off) or more, e.g. 0.2")
    MODELS.check(plain_dict(cfg.model), "model")
    for fact in MODEL_FACTS:  # (given by hand: `show model.num_outputs=0` drew a Linear -> 0)
        value = cfg.model.get(fact)
        sizes = value if fact == "input_shape" and isinstance(value, (list, ListConfig)) else [value]
        if value is not None and not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes
        ):
            raise DlbenchError(
                f"model.{fact}={value}: {'sizes' if fact == 'input_shape' else 'a size'} of 1 or more"
            )
    dropout = cfg.model.get("dropout")
    if _number(dropout) and not 0 <= dropout < 1:
        # (every model of dlbench's takes it as a probability: 1 zeroed every unit, so nothing
        # trained; a negative one was no dropout; each without a word)
        if MODELS.origin(str(cfg.model.name)) == "dlbench":
            raise DlbenchError(f"model.dropout={dropout}: a probability in [0, 1) (0: none)")
    if cfg.task.get("name") != "auto":  # auto: chosen when the data is built (build.task_name)
        TASKS.check(plain_dict(cfg.task), "task")
    OPTIMIZERS.check(plain_dict(cfg.optimizer), "optimizer", reserved=schema_hints(OptimizerConfig))
    every = cfg.optimizer.get("lookahead_every") or 0  # (-1 looked ahead at every step)
    if not isinstance(every, bool) and isinstance(every, int) and every < 0:
        raise DlbenchError(f"optimizer.lookahead_every={every}: every N steps, N from 1 (0: none)")
    scale, decay = cfg.optimizer.get("norm_lr_scale"), cfg.optimizer.get("lookahead_decay")
    # (0 was a ZeroDivisionError, exit 1; a negative one trained the norm layers uphill, unsaid)
    if _number(scale) and not scale > 0:
        raise DlbenchError(f"optimizer.norm_lr_scale={scale}: a factor above 0 (1: the same rate)")
    if _number(decay) and not 0 <= decay < 1:  # (5 trained at chance, unsaid)
        raise DlbenchError(f"optimizer.lookahead_decay={decay}: a decay in [0, 1)")
    if cfg.loss.get("name") == "auto" and (given := [str(k) for k in cfg.loss if k != "name"]):
        # (`+loss.label_smoothing=0.5`: kept in the run's config, and the task's loss built without it)
        taking = [f"loss={n}" for n in LOSSES.taking(given[0], but="auto")]
        named = f" ({', '.join(taking[:4])})" if taking else ""
        raise DlbenchError(
            f"loss.{given[0]}={cfg.loss[given[0]]}: loss=auto (the task's usual loss, chosen by the data) "
            f"takes no settings: choose the loss to set them{named}"
        )
    if cfg.loss.get("name") != "auto":
        LOSSES.check(plain_dict(cfg.loss), "loss")
        if cfg.task.get("name") != "auto":  # (task=auto: chosen when the data is built)
            TASKS.get(str(cfg.task.name)).check_loss(str(cfg.loss.name), str(cfg.task.name))
    if cfg.scheduler.get("name") != "none":
        SCHEDULERS.check(plain_dict(cfg.scheduler), "scheduler", reserved=schema_hints(SchedulerConfig))


def check_augment(augment: dict) -> None:
    """dataset.augment's numbers in their ranges: the flips' probabilities in [0, 1], the other
    sizes and strengths 0 (off) or more (hflip=1.5 flipped every image, a negative crop_padding
    cropped nothing, without a word)."""
    for key, value in augment.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        high = 1 if key in ("hflip", "vflip") else math.inf
        if not 0 <= value <= high:
            within = "a probability in [0, 1]" if high == 1 else "0 (off) or more"
            raise DlbenchError(f"dataset.augment.{key}={value}: must be {within}")


def idle_settings(cfg: DictConfig, given: list[str]) -> list[str]:
    """Settings that do nothing without another, said when the run starts (not refused: a
    sweep's grid may hold trainer.grad_clip=null beside trainer.grad_clip_mode=value). `given`:
    the run's overrides (a preset's own defaults are not the user's to hear about)."""
    t, idle = cfg.trainer, []
    if t.grad_clip_mode != "norm" and t.grad_clip is None:
        idle.append(f"trainer.grad_clip_mode={t.grad_clip_mode} does nothing: trainer.grad_clip is not set")
    if t.swa_lr is not None and t.swa_start is None:  # (refused, it read as if the value were wrong)
        idle.append(
            f"trainer.swa_lr={t.swa_lr} does nothing: trainer.swa_start (the epoch SWA starts at) is not set"
        )
    if t.keep_last_k and not t.checkpoint_every_n_steps:
        idle.append(
            f"trainer.keep_last_k={t.keep_last_k} does nothing: trainer.checkpoint_every_n_steps is not set"
        )
    evaluations = -(-t.epochs // t.val_every_n_epochs)  # (every val_every_n_epochs, and the last)
    if t.patience is not None and evaluations <= t.patience + 1:
        idle.append(
            f"trainer.patience={t.patience} does nothing: the run evaluates {evaluations} time(s) "
            f"(trainer.epochs={t.epochs}, trainer.val_every_n_epochs={t.val_every_n_epochs}), and early "
            f"stopping ends it only after {t.patience} evaluations that do not improve on the best"
        )
    # (the run trained for nothing: the same figures each epoch; a schedule may set its own lr,
    # as one_cycle_lr's max_lr does)
    if cfg.optimizer.get("lr") == 0 and cfg.scheduler.get("name", "none") == "none":
        idle.append("optimizer.lr=0: no step moves the weights, and the run measures its untrained model")
    said = {terminal.key_of(o) for o in given}
    # (OneCycleLR, CyclicLR: the lr from their own max_lr, where it is set: one_cycle_lr's is
    # ${optimizer.lr} unless given)
    own = "max_lr" in cfg.scheduler and not OmegaConf.is_interpolation(cfg.scheduler, "max_lr")
    if "optimizer.lr" in said and own:
        idle.append(
            f"optimizer.lr={cfg.optimizer.lr} does nothing: scheduler={cfg.scheduler.name} sets the lr "
            "itself (from scheduler.max_lr)"
        )
    backends = list(cfg.logger.backends)
    for backend in ("mlflow", "wandb"):  # (a project or a server given, and nothing logged there)
        keys = sorted(k for k in said if k.startswith(f"logger.{backend}."))
        if keys and backend not in backends:
            idle.append(
                f"{keys[0]}={OmegaConf.select(cfg, keys[0])} does nothing: "
                f"logger.backends={terminal.written(backends)} "
                f"logs nothing to {backend} (logger={backend}, or add it to logger.backends)"
            )
    validate_on = cfg.dataset.get("validate_on", "val")
    if validate_on != "val" and "dataset.val_fraction" in said:
        idle.append(
            f"dataset.val_fraction={cfg.dataset.val_fraction} does nothing: dataset.validate_on="
            f"{validate_on} validates on the {validate_on} split (dataset.validate_on=val carves one)"
        )
    return idle
