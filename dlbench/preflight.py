"""Check the command line's overrides against the config tree before Hydra starts any job.

Every combination a sweep would run is composed and validated here, so a typo stops the whole
command at once, with the closest valid names, instead of failing in job 7 of 12.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from dlbench.config import validate
from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, TASKS

CONFIG_DIR = Path(__file__).parent / "configs"
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
    """Config groups and their options, read from the shipped config tree (files named _*
    are shared parts that options include, not options)."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_"))
        for d in sorted(CONFIG_DIR.iterdir())
        if d.is_dir()
        and not d.name.startswith(("_", "."))
        and d.name != "hydra"  # hydra/: Hydra's own groups
    }


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
        if o.is_hydra_override():
            continue
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


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose the run's config from the shipped tree; errors become one readable message."""
    check_group_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise _explain(err, overrides) from err


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
    choices_only = [o for o in overrides if "." not in o.split("=")[0]]
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


def check(overrides: list[str]) -> list[DictConfig]:
    """Compose and validate every combination the command line asks for; return the configs."""
    check_plugins(overrides)
    configs = [compose_config(combination) for combination in combinations(parse(overrides))]
    for cfg in configs:
        validate(cfg)
    return configs
