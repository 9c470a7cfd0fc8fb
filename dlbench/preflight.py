"""Check the command line's overrides against the config tree before Hydra starts any job.

Every combination a sweep would run is composed and validated here, so a typo stops the whole
command at once, with the closest valid names, instead of failing in job 7 of 12.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from dlbench import rundir, safety
from dlbench.config import validate
from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, TASKS
from dlbench.searchpath import SHIPPED as CONFIG_DIR
from dlbench.searchpath import config_dirs

COMPONENTS = {
    "model": MODELS,
    "dataset": DATASETS,
    "task": TASKS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
}
MAX_COMBINATIONS = 64


def groups() -> dict[str, list[str]]:
    """Config groups and their options, read from the user's config folders and the shipped
    tree (files named _* are shared parts that options include, not options)."""
    found: dict[str, set[str]] = {}
    for root in config_dirs():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(("_", ".")) and d.name != "hydra":  # Hydra's own
                found.setdefault(d.name, set()).update(
                    p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")
                )
    return {name: sorted(found[name]) for name in sorted(found)}


def parse(overrides: list[str]) -> list[Override]:
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise DlbenchError(f"Cannot read the command line: {err}") from err
    for o in parsed:
        if "_target_" in o.key_or_group:
            raise DlbenchError(
                f"'{o.input_line}': _target_ cannot be set. dlbench builds only registered "
                "components, chosen by name (see `dlbench list`)."
            )
    return parsed


def combinations(parsed: list[Override]) -> list[list[str]]:
    """The override lists the sweep would run (each Hydra override, sweeps expanded)."""
    choices = []
    for o in parsed:
        if o.is_sweep_override() and o.is_discrete_sweep() and o.value_type.name != "GLOB_CHOICE_SWEEP":
            key = o.get_key_element()
            choices.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        elif not o.is_sweep_override():
            choices.append([o.input_line])
    return [list(c) for c in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]


def check_group_choices(overrides: list[str]) -> None:
    options = groups()
    for o in parse(overrides):
        group = o.key_or_group.lstrip("+~")
        if group in options and not o.is_delete():
            value = o.value()
            if value is not None and str(value) not in options[group]:
                raise unknown_name(f"{group} option", str(value), options[group])


def compose_config(
    overrides: list[str], source: str = "the command line", config_name: str = "config"
) -> DictConfig:
    """Compose the run's config as Hydra will (the user's config folders, then the shipped
    tree), refuse anything in it that would call an object (safety.py), and return it without
    its `hydra` node. Errors become one readable message."""
    cfg = compose_with_hydra(overrides, source, config_name)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_with_hydra(overrides: list[str], source: str, config_name: str = "config") -> DictConfig:
    check_group_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise _explain(err, overrides) from err
    safety.check_config(cfg, source)
    return cfg


def _explain(err: Exception, overrides: list[str]) -> DlbenchError:
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    if isinstance(cause, ConfigKeyError) and getattr(cause, "full_key", None):
        return _unknown_key(str(cause.full_key), overrides)
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        detail = str(cause.msg).splitlines()[0]
        return DlbenchError(f"{cause.full_key}: {detail}")
    match = re.search(r"Could not override '([^']+)'", str(err))
    if match:
        return _unknown_key(match.group(1), overrides)
    return DlbenchError(str(err).strip())


def _unknown_key(full_key: str, overrides: list[str]) -> DlbenchError:
    """'Unknown key model.depht' with the closest keys that node (or its constructor) takes."""
    parent, _, key = full_key.rpartition(".")
    options = groups()
    choices_only = [o for o in overrides if o.split("=")[0].lstrip("+~") in options]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        base = compose("config", overrides=choices_only)
    node = OmegaConf.select(base, parent) if parent else base
    valid = set(node.keys()) if isinstance(node, DictConfig) else set()
    hint = ""
    if parent in COMPONENTS and isinstance(node, DictConfig) and node.get("name") in COMPONENTS[parent]:
        from dlbench.typecheck import parameter_hints

        params = set(parameter_hints(COMPONENTS[parent].get(node["name"]))) - COMPONENTS[parent].supplied
        if key in params:
            return DlbenchError(
                f"'{full_key}' is a valid key of {parent} '{node['name']}' but its config file does "
                f"not list it: add it with +{full_key}=..."
            )
        valid |= params
    valid.discard("name")
    where = f"under {parent}" if parent else "at the top level"
    hint = f"\nValid keys {where}: {', '.join(sorted(valid))}" if valid else ""
    return DlbenchError(f"Unknown key '{full_key}'.{did_you_mean(key, valid)}{hint}")


# Hydra plugins a choice needs: (the plugin's module, the pip extra that installs it).
PLUGINS = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "sweep"),
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/launcher=submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
    "hparams_search": ("hydra_plugins.hydra_optuna_sweeper", "sweep"),
}


def installed(module: str) -> bool:
    """Whether a module can be imported (find_spec raises when its parent package is absent)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def check_plugins(overrides: list[str]) -> None:
    """A launcher or sweeper whose plugin is not installed: name the extra that installs it."""

    for override in overrides:
        choice = override.lstrip("+~")
        if choice.endswith("=null"):
            continue
        needs = PLUGINS.get(choice) or PLUGINS.get(choice.split("=", 1)[0])
        if needs and not installed(needs[0]):
            raise DlbenchError(
                f"{choice} needs a Hydra plugin that is not installed: pip install 'dlbench[{needs[1]}]'"
            )


def check(
    overrides: list[str], source: str = "the command line", config_name: str = "config", mode: str = "run"
) -> list[DictConfig]:
    """Compose and validate every combination the command line asks for; return the configs.

    `mode` is what the command will do: `run` (one run: its folder must be one dlbench can
    write), `multirun` (a sweep: its folder must not hold another sweep) or `show` (nothing
    is written)."""
    check_plugins(overrides)
    configs = []
    for combination in combinations(parse(overrides)):
        cfg = compose_with_hydra(combination, source, config_name)
        if not configs:
            check_output_folder(cfg, mode)
        with open_dict(cfg):
            del cfg["hydra"]
        validate(cfg)
        configs.append(cfg)
    return configs


def check_output_folder(cfg: DictConfig, mode: str) -> None:
    """The folder a run or a sweep will write: one that can be made here, and for a new sweep,
    not one that holds another sweep."""
    key = {"run": "hydra.run.dir", "multirun": "hydra.sweep.dir"}.get(mode)
    if key is None:
        return
    try:
        folder = Path(OmegaConf.select(cfg, key))
    except OmegaConfBaseException:
        return  # it names what only the job knows (hydra.job.*): Hydra's own checks apply
    rundir.check_writable(folder, key)
    if mode == "run":
        rundir.check_new_run(folder, cfg.resume)
    requeued = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"  # Slurm runs the same sweep again
    if mode == "multirun" and not cfg.sweep.resume and not requeued and folder.is_dir():
        jobs = [d for d in folder.iterdir() if d.is_dir() and rundir.holds_run(d)]
        if jobs:
            raise DlbenchError(
                f"{folder} already holds a sweep ({len(jobs)} jobs with results), and dlbench never "
                f"writes over one. Finish it with: dlbench -m ... sweep.resume={folder}  "
                "(or leave out hydra.sweep.dir for a new folder)"
            )
