"""Compose a run's config as Hydra will, from the command line's overrides: the config groups
and their options, the choices checked against them, and Hydra's errors made one readable message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, ConfigTypeError, OmegaConfBaseException, ValidationError

from dlbench import errors, plugins, safety, terminal
from dlbench.config import OptimizerConfig, SchedulerConfig
from dlbench.config_store import store_config_nodes
from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.registry import DATASETS, LOSSES, MODELS, OPTIMIZERS, SCHEDULERS, TASKS
from dlbench.searchpath import SHIPPED as CONFIG_DIR
from dlbench.searchpath import (
    choice_path,
    config_dirs,
    found_here,
    read_user_yaml,
    user_config_dirs,
    user_file,
    user_file_behind,
)

COMPONENTS = {
    "model": MODELS,
    "dataset": DATASETS,
    "task": TASKS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "scheduler": SCHEDULERS,
}
# the keys dlbench reads itself in an optimizer's or a scheduler's node (config.py), beside its
# constructor's
OWN_KEYS = {
    group: [f.name for f in dataclasses.fields(schema) if f.name != "name"]
    for group, schema in (("optimizer", OptimizerConfig), ("scheduler", SchedulerConfig))
}


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
        raise errors.unreadable(err, overrides) from err
    for o in parsed:
        if not o.key_or_group.split("@")[0].strip():  # `+=x`: Hydra would fail on an assertion
            raise DlbenchError(f"'{o.input_line}' names no key: write KEY=VALUE or GROUP=OPTION")
        if "_target_" in o.key_or_group:
            raise DlbenchError(
                f"'{o.input_line}': _target_ cannot be set. dlbench builds only registered "
                "components, chosen by name (see `dlbench list`)."
            )
    return parsed


UNCHOSEN_GROUPS = ("experiment", "hparams_search")  # (null: chosen only where named)


def check_group_choices(overrides: list[str]) -> None:
    """Each group's choice is one of its options, and no setting is deleted: a run records
    `~model.hidden` among its overrides, and eval, resume and export refuse it there (a saved run
    holds single values). (`~model` failed on the run's name, `~scheduler` asked for a
    scheduler's name, `~trainer` was taken silently.)"""
    options = groups()
    for o in parse(overrides):
        group = o.key_or_group.lstrip("+~")
        if group in options and o.is_delete():
            if group in UNCHOSEN_GROUPS:
                raise DlbenchError(f"'{o.input_line}': no {group} is chosen unless named: leave it out")
            instead = f"; {group}=none leaves it out" if "none" in options[group] else ""
            raise DlbenchError(
                f"'{o.input_line}': a run needs its {group}, so it is not deleted: choose one instead "
                f"({group}=OPTION; `dlbench list` shows them){instead}"
            )
        if o.is_delete() and not group.startswith(("hydra.", "hydra/")):
            raise DlbenchError(  # (a run records its settings, which eval and resume read back)
                f"'{o.input_line}': a run records each setting as a value, and a deletion is none: set "
                f"it instead ({group}=VALUE)"
            )
        if group in options and not o.is_delete() and not o.is_sweep_override():  # (a sweep's: each)
            value = o.value()
            if value is not None and str(value) not in options[group]:
                raise unknown_name(f"{group} option", str(value), options[group])


def key_named(name: str) -> str | None:
    """The setting a bare word names (a flag of another tool's: `epochs`, `lr`, `device`): a
    config group, a key as written (`trainer.epochs`), or the default config's key of that last
    name (`epochs`: trainer.epochs), the word as given, then in lower case, then as dlbench's
    (SYNONYMS: `learning_rate`, lr); else None."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):  # (`..`, `x[0]`: no key's name)
        return None
    try:
        cfg = compose_config([])
    except DlbenchError:  # (a user's config folder that does not compose: no hint)
        return None

    def keys(node: Any, path: str) -> Iterator[str]:
        for key, value in node.items_ex(resolve=False):
            yield f"{path}{key}"
            if isinstance(value, DictConfig):
                yield from keys(value, f"{path}{key}.")

    known = list(keys(cfg, ""))
    for word in dict.fromkeys([name, name.lower(), errors.SYNONYMS.get(name.lower(), name)]):
        if word in groups() or word in known:
            return word
        if (key := next((k for k in known if k.rsplit(".", 1)[-1] == word), None)) is not None:
            return key
    return None


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
    # (the primary config and the choices named, before Hydra reads them: a primary config's
    # searchpath is imported, a preset's plugins are)
    check_found_here(chosen_configs(overrides, config_name))
    plugins.load(plugins.named_in(overrides), "the command line")
    cfg = _compose(overrides, source, config_name)
    check_found_here(f"{group}/{option}" for group, option in cfg.hydra.runtime.choices.items() if option)
    named = cfg.get("plugins") or []  # (a config.yaml of the user's, not dlbench's, may have none)
    if unloaded := [p for p in named if p not in plugins.imported()]:  # named in the user's configs
        plugins.load(unloaded, "your config files")
        cfg = _compose(overrides, source, config_name)
    return cfg


def chosen_configs(overrides: list[str], config_name: str) -> list[str]:
    """The configs a command line names: its primary config and the options it chooses."""
    return [config_name, *filter(None, map(choice_path, overrides))]


def check_found_here(paths: Iterable[str]) -> None:
    """A command that uses a saved run reads no config file of ./configs (found without the user
    naming it: a folder of someone's results may hold one) unless the user's own words choose a
    config there: a file there can set what a saved run may not (hydra.*, plugins), and the
    run's saved settings choose among them. An allow-list: whatever group or file, dlbench's
    own configs, the folders the user names, and code's nodes are read; ./configs is not."""
    if (saved := plugins.saved_run()) is None or saved[2]:
        return
    run, command, _ = saved
    for path in paths:
        if (file := found_here(path)) is not None:
            group, _, option = path.rpartition("/")
            how = (
                f"If it is yours, choose it yourself: {plugins.with_word(command, f'{group}={option}')}"
                if group
                else "Run the command from another folder"
            )
            raise DlbenchError(
                f"{run}: this command would read {file}, and a command that uses a saved run reads "
                f"./configs only where your own words choose a config there (the run's saved settings "
                f"choose configs too). {how}"
            )


def _compose(overrides: list[str], source: str, config_name: str) -> DictConfig:
    store_config_nodes(file_options())  # every registered component is an option: model=tiny_net
    check_group_choices(overrides)
    check_searchpath(overrides, config_name, source)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        # a file of the user's that Hydra cannot read
        if problem := user_file_behind(err, chosen_configs(overrides, config_name)):
            raise DlbenchError(problem) from err
        if not isinstance(err, ValueError):
            raise _explain(err, overrides) from err
        # Hydra's own check of an override's value (`~trainer=[x]`)
        raise DlbenchError(f"{source}: {str(err).split(' : Override(')[0].splitlines()[0][:300]}") from err
    except KeyError as err:  # Hydra copies hydra.job.env_copy from the environment
        raise DlbenchError(
            f"{source}: hydra.job.env_copy names {err.args[0]}, which is not set in this environment"
        ) from err
    except RecursionError:  # (it said "The input is nested too deeply to be read")
        raise DlbenchError(
            f"{source}: the config files it chooses include each other in a circle: a file's defaults "
            f"list leads back to it ({', '.join(map(str, user_config_dirs())) or 'your config folders'})"
        ) from None
    safety.check_config(cfg, with_files(cfg, source, config_name))
    return cfg


def check_searchpath(overrides: list[str], config_name: str, source: str) -> None:
    """`hydra.searchpath` (the command line's, or the primary config file's, which Hydra reads
    before anything is composed) names folders only: `pkg://MODULE` made Hydra import MODULE, a
    config folder's config.yaml running code before any check (structured://MODULE too). An
    allow-list: a folder's path, or file://, with no interpolation (Hydra resolves one)."""
    given = [(source, o.value()) for o in parse(overrides) if o.get_key_element() == "hydra.searchpath"]
    if (file := user_file(config_name)) is not None:
        primary = read_user_yaml(file)
        hydra_node = primary.get("hydra") if isinstance(primary, dict) else None
        given.append((str(file), hydra_node.get("searchpath") if isinstance(hydra_node, dict) else None))
    for where, listed in given:
        for value in listed if isinstance(listed, list) else [listed]:
            scheme, found, _ = str(value).partition("://")
            if value is not None and ((found and scheme != "file") or "${" in str(value)):
                raise DlbenchError(
                    f"{where}: hydra.searchpath {value} is refused: it names folders only (a path or "
                    "file://PATH, no ${...}; Hydra imports the module of pkg:// or structured://). "
                    "Name config folders with --config-dir DIR or DLBENCH_CONFIG_PATH"
                )
            folder = str(value).removeprefix("file://")
            if value is not None and not Path(folder).is_dir():  # (Hydra's own warning, and on it went)
                missing = "is not a folder" if Path(folder).exists() else "does not exist"
                raise DlbenchError(f"{where}: hydra.searchpath {value}: {folder} {missing}")


def with_files(cfg: DictConfig, source: str, config_name: str) -> str:
    """`source` and the user's config files the composition read, for a refusal of what came
    from one of them (a preset's hydra.callbacks was blamed on "the command line")."""
    paths = [
        config_name,
        *(f"{group}/{option}" for group, option in cfg.hydra.runtime.choices.items() if option),
    ]
    files = [str(file) for path in paths if (file := user_file(path)) is not None]
    return f"{source} or {', '.join(files)}" if files else source


def _explain(err: Exception, overrides: list[str]) -> DlbenchError:
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__
    if isinstance(cause, ConfigKeyError) and getattr(cause, "full_key", None):
        return _unknown_key(str(cause.full_key), overrides)
    if isinstance(cause, ConfigTypeError) and "does not support deletion" in str(cause.msg):
        key = str(getattr(cause, "full_key", "") or "the key")
        return DlbenchError(  # (Hydra's "Error merging override ~trainer.epochs" said no more)
            f"~{key}: a run reads every key of {key.rpartition('.')[0] or 'its config'}, so none is deleted: "
            f"set it instead ({key}=VALUE)"
        )
    if isinstance(cause, ValidationError) and getattr(cause, "full_key", None):
        detail = str(cause.msg).splitlines()[0]
        return DlbenchError(f"{cause.full_key}: {detail}")
    match = re.search(r"Could not override '([^']+)'", str(err))
    if match:
        return _unknown_key(match.group(1), overrides)
    # Hydra's own groups (hydra/launcher=nope): its message, options and search path, unhinted
    missing = re.search(
        r"Could not find '(hydra/[^'/]+)/([^']+)'\s+Available options in '\1':\n((?:\s+\S+\n?)*)", str(err)
    )
    if missing:
        group, name, listed = missing.groups()
        return errors.unknown_name(f"{group} option", name, listed.split())
    return DlbenchError(*errors.lines_of(str(err).strip(), overrides))


def _unknown_key(full_key: str, overrides: list[str]) -> DlbenchError:
    """'Unknown key model.depht' with the closest keys that node (or its constructor) takes."""
    parent, _, key = full_key.rpartition(".")
    options = groups()
    choices_only = [o for o in overrides if o.split("=")[0].lstrip("+~") in options]
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            base = compose("config", overrides=choices_only, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:  # a config file of the choices is wrong
        return DlbenchError(*errors.lines_of(str(err).strip(), overrides))
    choices = base.hydra.runtime.choices
    with open_dict(base):
        del base["hydra"]
    node = OmegaConf.select(base, parent) if parent else base
    valid = set(node.keys()) if isinstance(node, DictConfig) else set()
    if parent in COMPONENTS and isinstance(node, DictConfig) and node.get("name") in COMPONENTS[parent]:
        valid |= set(COMPONENTS[parent].config_node(node["name"]))  # what its constructor takes
    own = set(OWN_KEYS.get(parent, ())) if isinstance(node, DictConfig) else set()
    valid |= own  # (dlbench's keys of an optimizer or a scheduler: optimizer.norm_lr_scale)
    if parent:  # (a component's name is its group's choice; the run's own name is a key)
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
    given = next((o for o in overrides if terminal.key_of(o) == full_key), None)
    if key in valid and given is not None and "=" in given:  # its constructor's key, not in its YAML
        add = terminal.shell_word("+" + given.lstrip("+~"))
        reader = "dlbench reads" if key in own else "its constructor takes"
        return DlbenchError(
            f"'{full_key}' is not in {parent}={choices.get(parent)}'s config, though {reader} "
            f"it: add it with a +, {add}"
        )
    where = f"under {parent}" if parent else "at the top level"
    # (its constructor's keys its config leaves out are added with a +: `optimizer.fused=false` was
    # offered as valid, then refused)
    added = {k for k in valid if k not in node} if parent and isinstance(node, DictConfig) else set()
    hint = (
        [f"Valid keys {where}: {', '.join(('+' if k in added else '') + k for k in sorted(valid))}"]
        if valid
        else []
    )
    # the same key in another part (trainer.validate_on: dataset.validate_on), or at the top
    # (trainer.resume: resume), named first
    elsewhere = [
        f"{top}.{key}"
        for top, node in base.items()
        if top != parent and isinstance(node, DictConfig) and key in node and key != "name"
    ] + ([key] if parent and key in base and not isinstance(base[key], DictConfig) else [])
    closest = did_you_mean(key, valid, prefix=parent and parent + ".", first=elsewhere, added=added)
    preset = any(terminal.key_of(o) == "experiment" for o in overrides)  # (its keys: with_preset_hint)
    chosen = node.get("name") if isinstance(node, DictConfig) else None
    others = [] if preset else taken_by_others(parent, key, chosen)
    return DlbenchError(f"Unknown key '{full_key}'.{closest}", *hint, *others)


def taken_by_others(group: str, key: str, chosen: object) -> list[str]:
    """A line naming the other options of `group` whose constructors take `key` (`momentum`
    under optimizer=adam: sgd's, rmsprop's), where there are; else none."""
    registry = COMPONENTS.get(group)
    if registry is None:
        return []
    taking = registry.taking(key, but=chosen)
    if not taking:
        return []
    shown = ", ".join(f"{group}={n}" for n in taking[:4]) + (", ..." if len(taking) > 4 else "")
    return [f"({key} is a setting of {shown}, not of {group}={chosen})"]
