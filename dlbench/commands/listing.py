"""dlbench list [KIND] [PATTERN]: registered components and experiment presets, and where each
comes from (dlbench, torch, the user's plugin, the user's config folder).

`dlbench list models resnet` (one name) prints that component's config keys: default, type and
what each means (the comments in its signature, paramdocs.py).
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from dlbench import plugins, preflight
from dlbench.engine.logging import console, new_table
from dlbench.errors import unknown_name
from dlbench.searchpath import SHIPPED, config_dirs

KINDS = ("models", "datasets", "tasks", "losses", "optimizers", "schedulers", "experiments")


def list_command(args: list[str]) -> int:
    from dlbench.registry import REGISTRIES

    named = [a for a in args if a.startswith(("plugins=", "+plugins="))]
    args = [a for a in args if a not in named]
    plugins.load_entry_points()
    plugins.load(plugins.named_in(named), "the command line")
    plugins.load(plugins.named_in_user_configs(), "your experiment presets")
    wanted = args[:1] or list(KINDS)
    pattern = args[1] if len(args) > 1 else "*"
    for kind in wanted:
        if kind not in KINDS:
            raise unknown_name("list kind", kind, KINDS)
        if kind == "experiments":
            console.print(experiments_table(pattern))
            continue
        registry = REGISTRIES[kind]
        names = registry.names(pattern)
        if len(names) == 1 and names[0] == pattern:
            console.print(component_table(registry, pattern))
            continue
        table = new_table(kind, "name", "from", "description", title_justify="left")
        for name in names:
            table.add_row(name, registry.origin(name), registry.description(name))
        console.print(table)
    console.print("(seed 000-004: the lecture notes a setting comes from; docs/presets.md names each course)")
    return 0


def component_table(registry, name: str) -> Table:
    """One component's config keys: the default its signature writes, its type, its meaning."""
    from dlbench.paramdocs import parameter_docs
    from dlbench.typecheck import describe, parameter_hints

    fn = registry.get(name)
    hints, docs = parameter_hints(fn), parameter_docs(fn)
    title = f"{registry.kind} {name} ({registry.origin(name)}): {registry.description(name)}"
    table = new_table(title, "key", "default", "type", "meaning", title_justify="left")
    for key, default in registry.config_node(name).items():
        if key == "name":
            continue
        meaning = "from the data" if key in registry.facts else docs.get(key, "")
        shown = "(required)" if default == "???" else "null" if default is None else str(default)
        table.add_row(f"{registry.group}.{key}", shown, describe(hints.get(key)), meaning)
    return table


def experiments_table(pattern: str = "*") -> Table:
    import fnmatch

    table = new_table("experiments", "name", "from", "description", title_justify="left")
    for name, (path, description) in experiments().items():
        if fnmatch.fnmatch(name, pattern):
            table.add_row(name, "dlbench" if path.is_relative_to(SHIPPED) else str(path), description)
    return table


def experiments() -> dict[str, tuple[Path, str]]:
    """Experiment presets (the first found of each name: the user's folders come first), the
    file each comes from and the first line of its header comment."""
    out = {}
    for name in preflight.groups().get("experiment", []):
        path = next(
            d / "experiment" / f"{name}.yaml"
            for d in config_dirs()
            if (d / "experiment" / f"{name}.yaml").is_file()
        )
        lines = [ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ")]
        lines = [ln for ln in lines if not ln.startswith("@package")]
        out[name] = (path, lines[0] if lines else "")
    return out
