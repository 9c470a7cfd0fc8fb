"""Where configs come from: the user's config folders first, then dlbench's shipped tree.

A `configs/` folder in the current directory (unless that directory is a run's folder, which may
have come from someone else), the folders in DLBENCH_CONFIG_PATH (separated like PATH) and
`--config-dir DIR` are searched before the shipped tree, so a user's
`configs/experiment/flowers.yaml` is `experiment=flowers`, and a user's file with the name of a
shipped one replaces it. Hydra learns the order from a search-path plugin
(hydra_plugins/dlbench_searchpath), so Hydra's own composition and dlbench's checks see the
same files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ENV = "DLBENCH_CONFIG_PATH"


def shipped_tree() -> Path:
    """dlbench's own config tree: `configs/` at the top of the repository, installed inside the
    package as `dlbench.configs` (pyproject.toml maps it); in a source checkout that is not
    installed, the folder beside the package."""
    import importlib.util

    spec = importlib.util.find_spec("dlbench.configs")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "configs"


SHIPPED = shipped_tree()


def user_config_dirs() -> list[Path]:
    """The user's config folders, first found first: DLBENCH_CONFIG_PATH (where --config-dir
    goes too), then ./configs, unless the current folder is a run's or a sweep's."""
    dirs = named_dirs()
    if Path("configs").is_dir() and not results_here():
        dirs.append(Path("configs"))
    out: list[Path] = []
    for folder in dirs:
        folder = folder.resolve()
        if folder not in out and folder != SHIPPED.resolve():
            out.append(folder)
    return out


def results_here() -> bool:
    """Whether the current folder is a run's or a sweep's: someone's results, not a project, so
    its ./configs is not read."""
    from dlbench.rundir import holds_results

    return holds_results(Path("."))


def named_dirs() -> list[Path]:
    """The config folders the user names: DLBENCH_CONFIG_PATH, where --config-dir goes too."""
    return [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p]


def found_here(path: str) -> Path | None:
    """The file of config `path` ("experiment/flowers", "config") that Hydra reads from
    ./configs, the folder found without the user naming it (DLBENCH_CONFIG_PATH and
    --config-dir are named, ./configs too when they name it), if it is there, no folder
    searched before it holds one, and it is not a copy of dlbench's own file of that name."""
    here = Path("configs").resolve()
    if here in (folder.resolve() for folder in named_dirs()):  # (`--config-dir configs`: named)
        return None
    file = user_file(path)
    return file if file == here / f"{path}.yaml" else None


def user_file(path: str) -> Path | None:
    """The user's file Hydra reads for config `path`: the first of their folders' that has one,
    unless it is a copy of dlbench's own file of that name (a source checkout's configs/)."""
    for folder in user_config_dirs():
        if (file := folder / f"{path}.yaml").is_file():
            shipped = SHIPPED / f"{path}.yaml"
            same = shipped.is_file() and shipped.read_bytes() == file.read_bytes()
            return None if same else file
    return None


def choice_path(override: str) -> str | None:
    """The config an override chooses (`model=mine`: "model/mine"), or None (a key's value)."""
    import re

    key, _, value = override.partition("=")
    group = key.lstrip("+~")
    name = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
    if "." in group or not re.fullmatch(name, value) or not re.fullmatch(f"{name}(/{name})*", group):
        return None
    return f"{group}/{value}"


def chosen_here(folder: Path) -> tuple[str, ...]:
    """A run folder's saved choices of a config in ./configs (`experiment=mine`): a resume reads
    ./configs only where the user's own words choose a config there (compose.check_found_here),
    so the command printed to continue the run gives them (rundir.check_new_run)."""
    from dlbench import files
    from dlbench.errors import DlbenchError

    try:
        saved = files.read_yaml(folder / ".hydra" / "overrides.yaml")
    except DlbenchError:  # (none, or not readable: the resume says what is wrong)
        return ()
    return tuple(choices_here(saved)) if isinstance(saved, list) else ()


def continue_words(folder: Path, plugins: tuple[str, ...] = ()) -> tuple[str, ...]:
    """What a command printed to continue the run in `folder` gives besides resume=: the
    config folders this command named (--config-dir), the run's choices of ./configs, and the
    words of the plugins this command was given (`plugins`: plugins.words), which a resume reads
    only where the user's own words name them (rundir.check_new_run, launch.resume_command).
    Plugins are not read from the folder: a folder may be someone else's, and the resume then
    asks the user to name them."""
    named = [word for path in named_dirs() for word in ("--config-dir", str(path))]
    return (*named, *chosen_here(folder), *plugins)


def choices_here(overrides: list) -> list[str]:
    """The overrides that choose a config of ./configs (`model=mine`: configs/model/mine.yaml)."""
    return [o for o in overrides if isinstance(o, str) and (path := choice_path(o)) and found_here(path)]


def config_dirs() -> list[Path]:
    """Every config folder, in the order a config name is looked up."""
    return [*user_config_dirs(), SHIPPED]


def add_config_dir(folder: str) -> None:
    """`--config-dir DIR`: search DIR first (for this process and the ones it starts)."""
    from dlbench.errors import DlbenchError

    if not folder or os.pathsep in folder:  # (the folders travel in DLBENCH_CONFIG_PATH, split on it)
        raise DlbenchError(
            f"--config-dir {folder!r}: name one folder, whose name holds no {os.pathsep!r} (rename it, or "
            "link it under another name)"
        )
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise DlbenchError(f"--config-dir {folder}: no such folder")
    os.environ[ENV] = os.pathsep.join(
        [str(path.resolve()), *filter(None, os.environ.get(ENV, "").split(os.pathsep))]
    )


def is_dlbench_path(path: str) -> bool:
    """Whether a Hydra search-path entry is dlbench's shipped tree."""
    return path in ("pkg://dlbench.configs", "pkg://dlbench/configs") or path.rstrip("/").endswith(
        str(SHIPPED.resolve())
    )


def preset_file(name: str) -> Path | None:
    """The file of experiment preset `name`: the first found (the user's folders come first)."""
    found = (folder / "experiment" / f"{name}.yaml" for folder in config_dirs())
    return next((path for path in found if path.is_file()), None)


HEADER = r"#\s*@package\b(.*)$"


def header_lines(text: str) -> Iterator[tuple[int, str]]:
    """A config file's header as Hydra reads it, numbered: its `# @...` lines at the top (blank
    lines between them skipped), up to any other line, a plain comment too."""
    import re

    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if not re.match(r"\s*#\s*@", line):
            return
        yield number, line.strip()


def bad_header(text: str) -> tuple[int, str] | None:
    """The `# @package` line of a config file's header that Hydra would reject (more than a
    name after it), with its number."""
    import re

    for number, line in header_lines(text):
        header = re.match(HEADER, line)
        if header and not re.fullmatch(r"\s*\w+(\.\w+)*\s*", header.group(1)):  # (not `..`)
            return number, line
    return None


def read_user_yaml(path: Path) -> Any:
    """One of the user's config files, read as Hydra will read it; a file Hydra would reject is
    one message that names the file and the line: a `# @package` header with more than a name
    after it, or text that is not YAML."""
    import yaml

    from dlbench import files
    from dlbench.errors import DlbenchError

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DlbenchError(f"{path}: cannot be read: {err}") from None
    if bad := bad_header(text):
        raise DlbenchError(
            f"{path}, line {bad[0]}: '# @package' takes one name (_global_, _group_ or a key) and "
            f"nothing else on its line, not {bad[1]!r}"
        )
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        line, what = files.yaml_problem(err)
        where = f", line {line}" if line else ""
        raise DlbenchError(f"{path}{where}: not YAML that can be read: {what}") from None


def layout_problem(file: Path, path: str, node: Any) -> str | None:
    """What is wrong with the layout of a user's config file that reads as YAML (`path`: the
    config it is, experiment/mine): settings that are not KEY: VALUE lines, or a preset whose
    keys would land under `experiment.` (without its `# @package _global_` line)."""
    if node is not None and not isinstance(node, dict):
        return f"{file}: holds a {type(node).__name__}, where a config file holds settings (KEY: VALUE lines)"
    if path.split("/")[0] == "experiment" and package(file.read_text()) != "_global_":
        return (
            f"{file}: a preset's keys are the run's own (trainer.epochs, model, ...): its first line is "
            "'# @package _global_', as every preset's is (Hydra reads the header only above any other line)"
        )
    return None


def package(text: str) -> str | None:
    """A config file's `# @package` as Hydra reads it from its header (`header_lines`): the last
    one counts."""
    import re

    found = None
    for _, line in header_lines(text):
        if header := re.match(HEADER, line):
            found = header.group(1).strip()
    return found


def user_file_behind(error: BaseException, chosen: Iterable[str] = ()) -> str | None:
    """When Hydra fails on a file of the user's: that file's own message (read_user_yaml,
    layout_problem), so the user learns which file and which line; None when the error is not
    one of theirs. The file is the config Hydra names ("In 'experiment/mine'") or one of the
    configs the command `chosen` (experiment/mine: Hydra may name the code's node it merged in
    the file's package), the one a YAML error names (or whose text it holds), or the one whose
    bad `# @package` line Hydra quotes."""
    import re

    from dlbench.errors import DlbenchError

    named_config = re.match(r"In '([^']+)'", str(error))  # (Hydra names the config it was reading)
    for path in [*(named_config.groups() if named_config else ()), *chosen]:
        if (file := user_file(path)) is not None:
            try:
                node = read_user_yaml(file)
            except DlbenchError as problem:
                return str(problem)
            if (problem := layout_problem(file, path, node)) is not None:
                return problem
    mark = getattr(error, "problem_mark", None)
    name, buffer = getattr(mark, "name", None), str(getattr(mark, "buffer", "") or "").rstrip("\0")
    for folder in user_config_dirs():
        for path in sorted(folder.rglob("*.yaml")):
            try:
                text = path.read_text(errors="replace")
            except OSError:  # (read_user_yaml says why, if it is the file)
                text = ""
            bad = bad_header(text)
            named = re.match(HEADER, bad[1]).group(1).strip() if bad is not None else ""
            quoted = bool(named) and named in str(error)  # (a bare `# @package` names nothing)
            if name == str(path) or (buffer and buffer == text) or quoted:
                try:
                    read_user_yaml(path)
                except DlbenchError as problem:
                    return str(problem)
    return None
