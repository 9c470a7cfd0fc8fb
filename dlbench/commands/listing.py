"""dlbench list [KIND] [PATTERN]: registered components and experiment presets, and where each
comes from (dlbench, torch, the user's plugin, the user's config folder).

`dlbench list models resnet` (one name) prints that component's config keys: default, type and
what each means (the comments in its signature, paramdocs.py). A word that names none lists
those it is part of (`dlbench list experiments mnist`: as `'*mnist*'`).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from rich.table import Table

from dlbench import compose, plugins, terminal
from dlbench.engine.logging import console, new_table
from dlbench.errors import DlbenchError, unknown_name
from dlbench.searchpath import SHIPPED, preset_file

KINDS = ("models", "datasets", "tasks", "losses", "optimizers", "schedulers", "experiments")
SETTINGS = ("trainer", "logger", "device", "sweep")  # the run's own keys (config.py): `dlbench list trainer`
PLURAL = {"loss": "losses", **{kind[:-1]: kind for kind in KINDS if kind != "losses"}}  # (`list model`)


def list_command(args: list[str]) -> int:
    from dlbench.registry import REGISTRIES

    named = [a for a in args if a.startswith(("plugins=", "+plugins="))]
    args = [a for a in args if a not in named]
    plugins.load_entry_points()
    yours = plugins.named_in(named)
    plugins.load(yours, "the command line")  # (a preset's: only when your words name them)
    unnamed = unnamed_plugins(args, yours)
    if len(args) > 2:  # (ignored, silently)
        raise DlbenchError(f"dlbench list [KIND] [PATTERN] takes two words at most: {args[2]!r} is a third")
    wanted = [PLURAL.get(args[0], args[0])] if args else list(KINDS)
    pattern = args[1] if len(args) > 1 else "*"
    for kind in wanted:
        if kind in SETTINGS:
            console.print(settings_table(kind, pattern))
            continue
        if kind not in KINDS:
            raise unknown_name("list kind", kind, KINDS + SETTINGS)
        if kind == "experiments":
            console.print(experiments_table(pattern))
            continue
        registry = REGISTRIES[kind]
        names = registry.names(within(pattern, registry.names("*")))
        if not names:  # (it was an empty table, exit 0)
            raise DlbenchError(*no_match(registry.kind, pattern, registry.names("*")).lines, *unnamed)
        if len(names) == 1 and names[0] == pattern:
            table = component_table(registry, pattern)
            if table.row_count:
                console.print(table)
            else:  # (an empty table)
                console.print(table.title, "It has no keys of its own.", soft_wrap=True)
            if kind == "datasets":
                console.print(shared_table(pattern))
            continue
        rows = [(name, registry.origin(name), registry.description(name)) for name in names]
        table = listing_table(kind, rows)
        console.print(table)
    if set(wanted) - set(SETTINGS):  # (components and presets name their notes)
        console.print(
            "(seed 000-004: the lecture notes a setting comes from; docs/presets.md names each course)"
        )
    for line in unnamed:
        console.print(line)
    return 0


def unnamed_plugins(args: list[str], yours: list[str]) -> list[str]:
    """The plugins your presets name that this command does not import (a preset's are imported
    when your words choose it, docs/extending.md): a note with the command that lists their
    components too (`yours`: the plugins it names already), or nothing."""
    unnamed = [p for p in plugins.named_in_user_configs() if p not in plugins.imported()]
    unnamed = [p for p in unnamed if plugins.plugin_name(p)]  # (one that reads back as itself)
    if not unnamed:
        return []
    again = terminal.command("list", *args, plugins.plugins_word([*yours, *unnamed]))
    return [f"note: your presets name plugins, not imported here. With them: {again}"]


def component_table(registry, name: str) -> Table:
    """One component's config keys: the default its signature writes, its type, its meaning."""
    from dlbench.paramdocs import parameter_docs
    from dlbench.typecheck import describe, parameter_hints

    fn = registry.get(name)
    hints, docs = parameter_hints(fn), parameter_docs(fn)
    title = f"{registry.kind} {name} ({registry.origin(name)}): {registry.description(name)}"
    rows = []
    node = registry.config_node(name)
    shipped = SHIPPED / registry.group / f"{name}.yaml"
    if shipped.is_file():  # (its shipped option's own values: linear_lr's warm-up of 5 epochs)
        own = yaml.safe_load(shipped.read_text()) or {}
        node.update({k: v for k, v in own.items() if k in node})
    for key, default in node.items():
        if key == "name":
            continue
        filled = "from the run's length" if registry.kind == "scheduler" else "from the data"
        meaning = filled if key in registry.facts and default is None else docs.get(key, "")
        shown = "(required)" if default == "???" else "null" if default is None else str(default)
        rows.append((f"{registry.group}.{key}", shown, describe(hints.get(key)), meaning))
    table = new_table(
        title, "key", "default", "type", "meaning", gives_way=("meaning",), title_justify="left"
    )
    for row in rows:
        table.add_row(*row)
    return table


def shared_table(name: str) -> Table:
    """The keys every dataset has (config.DataConfig), with the values dataset=NAME gives them."""
    from omegaconf import OmegaConf

    from dlbench.config import AugmentConfig, DataConfig, schema_hints
    from dlbench.paramdocs import field_docs
    from dlbench.typecheck import describe

    values = OmegaConf.to_container(compose.compose_config([f"dataset={name}"]).dataset, resolve=False)
    hints, docs = schema_hints(DataConfig), field_docs(DataConfig)
    table = new_table(
        f"keys every dataset has, as dataset={name} sets them",
        *("key", "value", "type", "meaning"),
        gives_way=("meaning",),
        title_justify="left",
    )
    for key in hints:
        if key == "augment":  # (each augmentation, as dataset.augment.KEY sets it)
            add_rows(table, AugmentConfig, values.get(key) or {}, "dataset.augment.", "*")
        elif key != "name":
            table.add_row(
                f"dataset.{key}", terminal.written(values.get(key)), describe(hints[key]), docs.get(key, "")
            )
    return table


def settings_table(group: str, pattern: str) -> Table:
    """The keys of one of the run's own settings (trainer, logger, device, sweep: config.py),
    with the values the default run gives them, their types and what each means; a pattern
    picks keys (`dlbench list trainer ema`)."""
    from omegaconf import OmegaConf

    from dlbench.config import STRUCTURED

    values = OmegaConf.to_container(compose.compose_config([])[group], resolve=False)
    table = new_table(
        f"{group} keys, as the default run sets them (dlbench {group}.KEY=VALUE)",
        *("key", "value", "type", "meaning"),
        gives_way=("meaning",),
        title_justify="left",
    )
    add_rows(table, STRUCTURED[group], values, f"{group}.", pattern)
    if not table.row_count:
        raise DlbenchError(f"No {group} key matches '{pattern}' (dlbench list {group} shows them all)")
    return table


def add_rows(table: Table, schema: type, values: dict, prefix: str, pattern: str) -> None:
    """A row for each field of a config dataclass whose key matches `pattern` (its nested
    dataclasses' fields under their own prefix: logger.mlflow.tracking_uri)."""
    import dataclasses
    import fnmatch

    from dlbench.config import schema_hints
    from dlbench.paramdocs import field_docs
    from dlbench.typecheck import describe

    wanted = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    docs = field_docs(schema)
    for key, hint in schema_hints(schema).items():
        value = values.get(key) if isinstance(values, dict) else None
        if dataclasses.is_dataclass(hint):
            add_rows(table, hint, value or {}, f"{prefix}{key}.", pattern)
        elif fnmatch.fnmatch(f"{prefix}{key}", wanted):
            table.add_row(f"{prefix}{key}", terminal.written(value), describe(hint), docs.get(key, ""))


def experiments_table(pattern: str = "*") -> Table:
    import fnmatch

    found = experiments()
    rows = [
        (name, shown_folder(path), description)
        for name, (path, description) in found.items()
        if fnmatch.fnmatch(name, within(pattern, found))
    ]
    if not rows:
        raise no_match("experiment", pattern, found)
    return listing_table("experiments", rows)


def within(pattern: str, names) -> str:
    """A word that is no name and no pattern is part of the names wanted (`list experiments
    mnist`: *mnist*, where it was refused as an unknown experiment)."""
    if pattern in names or any(c in pattern for c in "*?["):
        return pattern
    if pattern.lower() in names:  # (MLP: mlp)
        return pattern.lower()
    return f"*{pattern.lower()}*"


def no_match(kind: str, pattern: str, names) -> DlbenchError:
    """A name that is not one (a typo: the closest), or a pattern (*, ?, [...]) that matches none."""
    if not any(c in pattern for c in "*?["):
        return unknown_name(kind, pattern, names)
    return DlbenchError(f"No {kind} matches '{pattern}'", f"Available: {', '.join(sorted(names))}")


def listing_table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    """Names and where they come from, whole at any width; the descriptions give way."""
    table = new_table(title, "name", "from", "description", gives_way=("description",), title_justify="left")
    for row in rows:
        table.add_row(*row)
    return table


def shown_folder(path: Path) -> str:
    """Where a preset comes from: dlbench, or the user's config folder (relative to here)."""
    if path.is_relative_to(SHIPPED):
        return "dlbench"
    folder = path.parent.parent.resolve()
    return os.path.relpath(folder) if folder.is_relative_to(Path.cwd()) else str(folder)


def experiments() -> dict[str, tuple[Path, str]]:
    """Experiment presets (the first found of each name: the user's folders come first), the
    file each comes from and the first line of its header comment."""
    out = {}
    for name in compose.groups().get("experiment", []):
        path = preset_file(name)
        if path is None:  # (a name Hydra lists whose file is none: a link to nothing)
            continue
        lines = [ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ")]
        lines = [ln for ln in lines if not ln.startswith("@package")]
        out[name] = (path, lines[0] if lines else "")
    return out
