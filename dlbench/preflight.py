"""Check the command line's overrides against the config tree before Hydra starts any job.

Every combination a sweep would run is composed and validated here, so a typo stops the whole
command at once, with the closest valid names, instead of failing in job 7 of 12.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import itertools
import os
import re
import shlex
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from dlbench import plugins, rundir, safety
from dlbench.config import check_name, validate
from dlbench.config_store import store_config_nodes
from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, TASKS
from dlbench.searchpath import SHIPPED as CONFIG_DIR
from dlbench.searchpath import config_dirs, user_file_behind

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
    """Config groups and their options: the files in the user's config folders and the shipped
    tree, and every registered component (its node comes from its signature)."""
    from dlbench.registry import REGISTRIES

    found: dict[str, set[str]] = {r.group: set(r.names()) for r in REGISTRIES.values()}
    for group, options in file_options().items():
        found.setdefault(group, set()).update(options)
    return {name: sorted(found[name]) for name in sorted(found)}


def file_options() -> dict[str, set[str]]:
    """The options each config group has as files (files named _* are shared parts that
    options include, not options; hydra/ holds Hydra's own groups)."""
    found: dict[str, set[str]] = {}
    for root in config_dirs():
        for d in root.iterdir():
            if d.is_dir() and not d.name.startswith(("_", ".")) and d.name != "hydra":
                found.setdefault(d.name, set()).update(
                    p.stem for p in d.glob("*.yaml") if not p.stem.startswith("_")
                )
    return found


def parse(overrides: list[str]) -> list[Override]:
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise DlbenchError(f"Cannot read the command line: {err}") from err
    for o in parsed:
        if not o.key_or_group.split("@")[0].strip():  # `+=x`: Hydra would fail on an assertion
            raise DlbenchError(f"'{o.input_line}' names no key: write KEY=VALUE or GROUP=OPTION")
        if "_target_" in o.key_or_group:
            raise DlbenchError(
                f"'{o.input_line}': _target_ cannot be set. dlbench builds only registered "
                "components, chosen by name (see `dlbench list`)."
            )
    return parsed


def combinations(parsed: list[Override]) -> list[list[str]]:
    """The override lists to compose and check before a sweep starts: the first
    MAX_COMBINATIONS jobs (a typo stops the sweep before job 1), and with each distinct choice
    of config groups (up to MAX_COMBINATIONS of them) every value of every other swept key (so
    nothing any job composes escapes the checks, however many jobs there are). Globs over a
    group's options are expanded; Hydra's own settings are not swept."""
    choices, of_groups = [], []
    for o in parsed:
        if o.is_sweep_override() and o.is_hydra_override():
            raise DlbenchError(f"'{o.input_line}': dlbench does not sweep Hydra's own settings (hydra.*)")
        if o.is_sweep_override() and o.value_type.name == "GLOB_CHOICE_SWEEP":
            choices.append([f"{o.get_key_element()}={v}" for v in glob_options(o)])
        elif o.is_sweep_override() and o.is_discrete_sweep():
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        elif not o.is_sweep_override():
            choices.append([o.input_line])
        else:
            continue
        of_groups.append(is_group(o))
    jobs = [list(c) for c in itertools.islice(itertools.product(*choices), MAX_COMBINATIONS)]
    seen = {tuple(job) for job in jobs}
    group_choices = [c if grouped else c[:1] for c, grouped in zip(choices, of_groups, strict=True)]
    for base in itertools.islice(itertools.product(*group_choices), MAX_COMBINATIONS):
        for i, values in enumerate(choices):
            for value in values[1:] if not of_groups[i] else []:
                job = list(base)
                job[i] = value
                if tuple(job) not in seen:
                    seen.add(tuple(job))
                    jobs.append(job)
    return jobs


def is_group(override: Override) -> bool:
    """A choice of a config group's option (`model=mlp`, `hydra/launcher=joblib`), not a value."""
    group = override.key_or_group.split("@")[0]
    return "/" in group or group in groups()


def glob_options(override: Override) -> list[str]:
    """The options of a config group a `glob(...)` sweep chooses, as Hydra expands it."""
    glob = override.value()
    options = groups().get(override.get_key_element().lstrip("+~"), [])
    chosen = [o for o in options if any(fnmatch.fnmatch(o, p) for p in glob.include)]
    return [o for o in chosen if not any(fnmatch.fnmatch(o, p) for p in glob.exclude)]


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
    """The composed config with its `hydra` node, checked (safety.py). The plugins the command
    line names (or the user's experiment presets it chooses) are imported first, so their
    components are options like any other."""
    plugins.load_entry_points()
    plugins.load(plugins.named_in(overrides), "the command line")
    cfg = _compose(overrides, source, config_name)
    if unloaded := [p for p in cfg.plugins if p not in plugins.imported()]:  # named in the user's configs
        plugins.load(unloaded, "your config files")
        cfg = _compose(overrides, source, config_name)
    return cfg


def _compose(overrides: list[str], source: str, config_name: str) -> DictConfig:
    store_config_nodes(file_options())  # every registered component is an option: model=tiny_net
    check_group_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        if problem := user_file_behind(err):  # a file of the user's that Hydra cannot read
            raise DlbenchError(problem) from err
        if not isinstance(err, ValueError):
            raise _explain(err, overrides) from err
        # Hydra's own check of an override's value (`~trainer=[x]`)
        raise DlbenchError(f"{source}: {str(err).split(' : Override(')[0].splitlines()[0][:300]}") from err
    except KeyError as err:  # Hydra copies hydra.job.env_copy from the environment
        raise DlbenchError(
            f"{source}: hydra.job.env_copy names {err.args[0]}, which is not set in this environment"
        ) from err
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
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            base = compose("config", overrides=choices_only, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:  # a config file of the choices is wrong
        return DlbenchError(str(err).strip())
    choices = base.hydra.runtime.choices
    with open_dict(base):
        del base["hydra"]
    node = OmegaConf.select(base, parent) if parent else base
    valid = set(node.keys()) if isinstance(node, DictConfig) else set()
    if parent in COMPONENTS and isinstance(node, DictConfig) and node.get("name") in COMPONENTS[parent]:
        valid |= set(COMPONENTS[parent].config_node(node["name"]))  # what its constructor takes
    valid.discard("name")
    chosen_by_data = (
        isinstance(node, DictConfig) and "name" in node and OmegaConf.is_interpolation(node, "name")
    )
    if key in valid and chosen_by_data:
        name = node.get("name")
        return DlbenchError(
            f"Cannot set '{full_key}' with {parent}={choices.get(parent)} ({parent} {name}, chosen by "
            f"the data). Name it to set its keys: {parent}={name} {full_key}=..."
        )
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
    write), `multirun` (a sweep: its folder must not hold another sweep or a run), `show`
    (nothing is written) or `print` (`--cfg`, `--help`: components' keys are not type-checked,
    which would import them and torch)."""
    return check_command(overrides, source, config_name, mode)[0]


def check_command(
    overrides: list[str], source: str = "the command line", config_name: str = "config", mode: str = "run"
) -> tuple[list[DictConfig], Path | None, DictConfig | None]:
    """`check`, the folder the command will write (its run or sweep folder), and the first
    config as composed, `hydra` node included (a run is started from it).

    A sweep's combinations that differ only in the values of swept keys are composed once:
    the others are that config with their values set as Hydra sets an override's value
    (`with_values`), which is what composing them would give, without reading the config tree
    again (0.3 s a combination; a 1,000-job grid starts in seconds, not minutes)."""
    check_plugins(overrides)
    parsed = parse(overrides)
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override() and not is_group(o)}
    configs, folder, hydra_node, composed = [], None, None, {}
    for combination in combinations(parsed):
        values = [c for c in combination if c.split("=", 1)[0] in swept]
        rest = tuple(c for c in combination if c.split("=", 1)[0] not in swept)
        if rest in composed:
            cfg = with_values(composed[rest], values, combination, source, config_name)
        else:
            cfg = compose_with_hydra(combination, source, config_name)
        check_name(cfg)  # (it names the run's folder)
        if not configs:
            folder = check_output_folder(cfg, mode)
            hydra_node = cfg.copy()  # the whole config: hydra.run.dir names ${name}
        if "hydra" in cfg:
            cfg = cfg.copy()
            with open_dict(cfg):
                del cfg["hydra"]
        composed.setdefault(rest, cfg)
        check_resolves(cfg, source)
        validate(cfg, components=mode != "print")
        configs.append(cfg)
    return configs, folder, hydra_node


def with_values(
    composed: DictConfig, values: list[str], combination: list[str], source: str, config_name: str
) -> DictConfig:
    """`composed` (a combination composed with the same group choices and other overrides, its
    `hydra` node left out) with the swept keys set to `values`, as Hydra's composition sets a
    KEY=VALUE override; one that Hydra would refuse is composed instead, for Hydra's own message."""
    cfg = copy.deepcopy(composed)
    try:
        for o in parse(values):
            if o.is_delete() or o.package is not None:
                raise ValueError(o.input_line)  # (not a plain value: Hydra composes it)
            with open_dict(cfg) if o.is_add() or o.is_force_add() else contextlib.nullcontext():
                OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    except (OmegaConfBaseException, ValueError):
        return compose_with_hydra(combination, source, config_name)
    safety.check_config(cfg, source)
    return cfg


def check_resolves(cfg: DictConfig, source: str) -> None:
    """Every interpolation of the run's config resolves (`${oc.env:NAME}` of an unset variable
    is one message now, not a traceback in the job); Hydra's own (`${hydra:...}`) resolve later."""
    for key in cfg:
        try:
            OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        except OmegaConfBaseException as err:
            if "hydra" in str(err).lower():
                continue
            raise DlbenchError(f"{source}: {key}: {str(err).splitlines()[0]}") from err


def check_output_folder(cfg: DictConfig, mode: str) -> Path | None:
    """The folder a run or a sweep will write: one that can be made here, not one that holds
    another run, and for a new sweep, not one that holds another sweep."""
    key = {"run": "hydra.run.dir", "multirun": "hydra.sweep.dir"}.get(mode)
    if key is None:
        return None
    try:
        value = str(OmegaConf.select(cfg, key))
    except OmegaConfBaseException:
        return None  # it names what only the job knows (hydra.job.*): Hydra's own checks apply
    if not value.strip():
        raise DlbenchError(f"{key} is empty: give a folder, or leave it out for a new one under outputs/")
    folder = Path(value)
    rundir.check_writable(folder, key)
    if mode == "run":
        launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # a torchrun process: its launcher checked
        rundir.check_new_run(folder, cfg.resume, records=() if launched else rundir.RECORDS)
    if mode == "multirun":
        subdir = str(cfg.hydra.sweep._get_node("subdir")._value())  # as written: ${hydra.job.num} is fine
        if "${" not in subdir and (
            subdir.strip() in ("", ".") or ".." in Path(subdir).parts or Path(subdir).is_absolute()
        ):
            raise DlbenchError(
                f"hydra.sweep.subdir={subdir}: each job needs its own folder inside the sweep's"
            )
        if rundir.holds_run(folder):
            raise DlbenchError(
                f"hydra.sweep.dir={folder} holds a run, not a sweep: give the sweep its own folder"
            )
    requeued = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"  # Slurm runs the same sweep again
    if mode == "multirun" and not cfg.sweep.resume and not requeued and folder.is_dir():
        jobs = [d for d in folder.iterdir() if d.is_dir() and rundir.holds_run(d)]
        if jobs:
            raise DlbenchError(
                f"{folder} already holds a sweep ({len(jobs)} jobs with results), and dlbench never "
                f"writes over one. Finish it with: dlbench -m ... {shlex.quote(f'sweep.resume={folder}')}  "
                "(or leave out hydra.sweep.dir for a new folder)"
            )
    return folder
