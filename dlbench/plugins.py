"""The user's own code: modules that register models, data sets, tasks or losses.

A plugin is a module the user names, imported before anything is built:

- `plugins=[my_models,my_data]` on the command line, or `plugins: [...]` in one of the user's
  own config files (`./configs/experiment/flowers.yaml`): module names importable from the
  current directory, or paths to `.py` files;
- the modules installed packages declare under the entry-point group `dlbench.plugins`.

Trust stays with the user: a checkpoint or a run folder records the plugins its run needed, but
dlbench never imports a module because a saved run names it or chooses it. `eval`, `predict`,
`export` and `resume` import the plugins the user's own words name, check that the run's are
among them (and say which are missing), then import nothing more until the command ends
(`only_named`): whatever config a saved run's settings choose (an experiment preset in
./configs, any group's file) and whatever it names, no other module is imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from dlbench import errors, terminal
from dlbench.errors import DlbenchError, first_line

ENTRY_POINT_GROUP = "dlbench.plugins"
_imported: dict[str, str] = {}  # plugin as named -> where it was named
_entry_points_loaded = False
# (only_named) the saved run, the user's words, and whether these choose a config in ./configs
_saved_run: tuple[str, list[str] | str | Call | None, bool] | None = None


def load(names: list[str], where: str) -> None:
    """Import each plugin (once); a module that cannot be imported is one message naming it.
    While a command uses a saved run (`only_named`), one not imported yet is refused."""
    if _saved_run is not None and (chosen := [n for n in names if n not in _imported]):
        run, command, _ = _saved_run
        raise DlbenchError(
            f"{run}: a config this command reads names the plugins {', '.join(chosen)}, which your own "
            f"words do not name (the run's saved settings choose configs too), and dlbench imports no "
            f"code a saved run names or chooses. If you trust them, name them yourself: "
            f"{_name_them(chosen, command)}"
        )
    for name in names:
        if name in _imported:
            continue
        if not name.endswith(".py") and not all(part.isidentifier() for part in name.split(".")):
            raise DlbenchError(
                f"plugin '{name}' ({where}) is neither a module's name (my_models, my_pkg.models) nor a "
                ".py file (path/to/my_models.py)"
            )
        if not name.endswith(".py") and Path(name).is_file():  # (readme.md: read as module readme.md)
            raise DlbenchError(f"plugin '{name}' ({where}) is a file but not Python's: name a .py file")
        try:
            _import(name)
        except DlbenchError:
            raise
        except ModuleNotFoundError as err:
            itself = not name.endswith(".py") and err.name is not None and name.startswith(err.name)
            if not itself:
                raise DlbenchError(
                    f"plugin '{name}' ({where}) imports '{err.name}', which is not installed"
                ) from err
            raise DlbenchError(
                f"plugin '{name}' ({where}) cannot be found: run dlbench from the folder that holds "
                f"{name.replace('.', '/')}.py, or name the file by its path in plugins=[...]"
                + "".join(f"; this folder has {terminal.shell_word(found)}" for found in _files_named(name))
            ) from err
        except (Exception, SystemExit) as err:  # the user's module failed (or exited) while imported
            raise DlbenchError(f"plugin '{name}' ({where}) failed when imported: {_why(err)}") from err
        _imported[name] = where


def _why(err: BaseException) -> str:
    """What a plugin's failed import says (an exit called in it, e.g. sys.exit(3), says so)."""
    if isinstance(err, SystemExit):
        return f"it called sys.exit({err.code!r})"
    return first_line(err)


def _files_named(name: str) -> list[str]:
    """The plugin word for each file a module name may mean under the current folder, two
    folders deep at most (`plugins=[src/my_models.py]`), for a hint."""
    return [plugins_word([path]) for path in _paths_named(name)[:3]]


def _paths_named(name: str) -> list[str]:
    """The files a module name may mean under the current folder, two folders deep at most, none
    in a hidden folder (.cache, .git)."""
    stem = name.rsplit(".", 1)[-1]
    patterns = (f"{stem}.py", f"*/{stem}.py", f"*/*/{stem}.py")
    found = (path for pattern in patterns for path in Path().glob(pattern))
    return sorted(str(path) for path in found if not any(p.startswith(".") for p in path.parts[:-1]))


def _stem(name: str) -> str:
    """A plugin's module name: a file's stem (src/my_models.py: my_models), or the name itself."""
    return Path(name).stem if name.endswith(".py") else name


def _imported_as(name: str) -> bool:
    """Whether a saved run's plugin `name` is among those imported now: by its name, or (a name
    with no package) by a file or module of that name named from another folder (the run saved
    `my_model`; plugins=[nw/my_model.py] from the folder above: the hints went round in a loop)."""
    if name in _imported:
        return True
    return "." not in _stem(name) and any(_stem(n) == _stem(name) for n in _imported)


def _from_here(name: str, run: str) -> str:
    """How the current folder names a saved run's plugin, for the hint: as saved where that finds
    it from here (a module Python finds, ./name.py, a saved file that is here), else by the one
    file of its name under this folder, outside the run's own folder (a file planted in a shared
    run is not offered) and hidden ones; else as saved."""
    if Path(name).is_file():
        return name
    stem = _stem(name)
    if not name.endswith(".py"):
        try:  # (a name with no package: finding it imports nothing)
            if "." in name or Path(f"{name}.py").is_file() or Path(name).is_dir():
                return name
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            return name
    from dlbench.rundir import run_folder_of

    folder = Path(run).expanduser().resolve()
    folder = (run_folder_of(folder) or folder) if folder.is_file() else folder
    found = [p for p in _paths_named(stem) if not Path(p).resolve().is_relative_to(folder)]
    return found[0] if len(found) == 1 else name


def _import(name: str) -> None:
    if name.endswith(".py"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise DlbenchError(f"plugin '{name}': no such file")
        module_name = f"dlbench_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return
    # A module name is found in the current folder, for its import alone: left on sys.path, the
    # folder's other modules would be found by whatever imports next (Hydra's plugin scan
    # imports every ./hydra_plugins/*.py), though nobody named them.
    here = str(Path.cwd())
    added = "" not in sys.path and here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(name)
    finally:
        if added and here in sys.path:
            sys.path.remove(here)
    if getattr(module, "__file__", None) is None:  # (a folder without __init__.py: nothing of it runs)
        raise DlbenchError(
            f"plugin '{name}' is a folder with no __init__.py: name one of its modules "
            f"({name}.my_models) or a .py file in it"
        )


def only_named(run: str, command: list[str] | str | Call | None, chose_here: bool = False) -> None:
    """From now until the command ends (`end_only_named`), import no plugin but those imported
    already: the user's own words have named theirs (commands/runs.py's `require_plugins`), and
    the rest of the command reads a saved run (`run`), whose settings may choose a config that
    names others. `command`: the user's words, for the command to give instead; `chose_here`:
    whether they choose a config of ./configs (compose.py's `check_found_here` reads it)."""
    global _saved_run
    _saved_run = (run, command, chose_here)


def saved_run() -> tuple[str, list[str] | str | Call | None, bool] | None:
    """The saved run the command uses (`only_named`), or None."""
    return _saved_run


def with_word(command: list[str] | str | Call | None, word: str) -> str:
    """The user's command (or Python call) with `word` added last (every command takes words
    after its options); None: a run named inside a config, the word alone."""
    if isinstance(command, Call):
        return f"{command.function}({', '.join(map(repr, [*command.words, word]))})"
    if isinstance(command, list):
        return terminal.command(*command, word)
    return f"add {terminal.shell_word(word)}"


def end_only_named() -> None:
    """No command is using a saved run (called as cli.main and dlbench.train start and end):
    this one may import the plugins its own config names."""
    global _saved_run
    _saved_run = None


def load_entry_points() -> None:
    """Import the plugins installed packages declare (entry-point group `dlbench.plugins`):
    installing a package is trusting it."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except (Exception, SystemExit) as err:
            package = entry.dist.name if entry.dist else "an installed package"
            raise DlbenchError(
                f"the plugin '{entry.name}' ({entry.value}) that {package} installs failed when "
                f"imported: {_why(err)}"
            ) from err
        _imported[entry.value] = f"installed by the entry point {entry.name}"
    _entry_points_loaded = True


def imported() -> set[str]:
    return set(_imported)


def named_in(overrides: list[str]) -> list[str]:
    """The plugins a command line names: `plugins=[a,b]`, and the `plugins` of the experiment
    presets it chooses from the user's own config folders."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from dlbench.searchpath import read_user_yaml, user_config_dirs

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise errors.unreadable(err, overrides) from err
    names: list[str] = []
    for override in parsed:
        key = override.key_or_group.lstrip("+~")
        if key == "plugins" and not override.is_delete():
            names += listed(override.value(), f"'{override.input_line}'")
        elif key == "experiment" and isinstance(override.value(), str):
            for folder in user_config_dirs():
                path = folder / "experiment" / f"{override.value()}.yaml"
                if path.is_file():
                    node = read_user_yaml(path)
                    names += listed(node.get("plugins") if isinstance(node, dict) else None, str(path))
                    break
    return names


def named_in_user_configs() -> list[str]:
    """Every plugin the user's own experiment presets name (`dlbench list` says which it has not
    imported, and how to list them)."""
    from dlbench.searchpath import read_user_yaml, user_config_dirs

    names: list[str] = []
    for folder in user_config_dirs():
        for path in sorted((folder / "experiment").glob("*.yaml")):
            node = read_user_yaml(path)
            found = listed(node.get("plugins") if isinstance(node, dict) else None, str(path))
            names += [name for name in found if name not in names]
    return names


def listed(value: object, where: str) -> list[str]:
    """A config's `plugins`: a list of module names or .py files (None: none). A string is
    refused, not read as the list of its letters."""
    if value is None:
        return []
    if not (isinstance(value, list) and all(isinstance(name, str) for name in value)):
        like = f" ([{value}])" if isinstance(value, str) else ""
        raise DlbenchError(f"{where}: plugins takes a list of module names or .py files{like}, not {value!r}")
    return value


def plugin_name(name: object) -> bool:
    """Whether a saved plugin name can be named again: a module's dotted name or a .py file's
    path that the printed `plugins=[...]` word (`check_saved`) reads back as itself, whatever
    its characters (`a+b/net.py`, `~/x.py`, a space); not one that would read as something else
    there (`a],x=[b`, `a,b`), nor an empty or padded one."""
    if not isinstance(name, str) or not name or name.strip() != name:
        return False
    try:
        return _read_back([name]) == [name]
    except Exception:  # (Hydra's grammar does not read it back at all)
        return False


def plugins_word(names: list[str]) -> str:
    """`plugins=[a,b]`, each name as Hydra reads it back (`~/x.py` in quotes)."""
    return f"plugins=[{','.join(terminal.override('x', n).split('=', 1)[1] for n in names)}]"


def words(names: list[str]) -> tuple[str, ...]:
    """The command-line word that names these plugins, if any (a printed command's)."""
    return (plugins_word(list(names)),) if names else ()


def _read_back(names: list[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(plugins_word(names)).value()


def check_saved(needed: list[str] | None, run: str, command: list[str] | str | Call | None) -> None:
    """A saved run's plugins must be among those the user named (imported now): dlbench does
    not import code because a checkpoint or a run folder names it. `command` is how the user
    names them: the words the user gave after `dlbench` (their own `plugins=` word is replaced
    by one naming theirs and the missing ones), a Python call ending in `plugins=`, or None (a
    run named inside a config: the word to add)."""
    if needed is not None and not (isinstance(needed, list) and all(map(plugin_name, needed))):
        raise DlbenchError(f"{run}: its list of plugins is not a list of module names or .py files")
    missing = [name for name in needed or [] if not _imported_as(name)]
    if missing:
        named = _name_them([_from_here(name, run) for name in missing], command)
        raise DlbenchError(
            f"{run} was trained with the plugins {', '.join(missing)}, and dlbench imports no code a "
            f"saved run names. If you trust them, name them yourself: {named}"
        )


@dataclass(frozen=True)
class Call:
    """A Python call the user made with the words of a command line (`dlbench.train("resume=r")`),
    for the call to make instead."""

    function: str
    words: list[str]


def _name_them(missing: list[str], command: list[str] | str | Call | None) -> str:
    """How the user names the `missing` plugins: their own command (`check_saved`'s `command`)
    or Python call with one plugins= word naming theirs and the missing ones, or the end of a
    Python call that takes a list."""
    if isinstance(command, str):
        return f"{command}[{', '.join(map(repr, missing))}])"
    given = command.words if isinstance(command, Call) else command or []
    words = [w for w in given if not w.lstrip("+").startswith("plugins=")]
    named = named_in([w for w in given if w not in words])
    word = plugins_word(list(dict.fromkeys([*named, *missing])))
    if command is None:  # (a run named inside a config: the word alone)
        return with_word(None, word)
    return with_word(Call(command.function, words) if isinstance(command, Call) else words, word)
