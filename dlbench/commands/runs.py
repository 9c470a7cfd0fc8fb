"""Saved runs as the input of a new command: `resume=RUN`, `dlbench eval RUN`, `predict`,
`export`, `sweep.resume=DIR`.

A run's saved overrides (`.hydra/overrides.yaml`, or a checkpoint's own list) are data that
someone else may have written. They pass an allow-list before anything else happens (before
any plugin is imported, any config composed): each is parsed with Hydra's own parser, and only
these shapes are kept:

- `GROUP=OPTION` for a config group, with an option that is a name (a shipped file's, one of
  your config folders' files', a registered component's): never a path;
- `KEY=VALUE` (or `+KEY=VALUE`) under the parts of a run a saved run may set (`model.*`,
  `dataset.*`, `trainer.*`, ... and `name`), with keys made of plain names and values that are
  numbers, text, lists or dicts; an interpolation may only point at another key (`${model.name}`);
- `plugins=[...]`, `resume=...` and `sweep.*` are recorded by every run and accepted, but never
  used: the user names the plugins and the run to continue, not a saved file.

Anything else (a package `@`, a deletion `~`, `++`, a sweep, `hydra.*`, an unknown part, a
resolver) refuses the whole file, naming it and the override. The new command line's overrides
win over the saved ones (`merge_overrides`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dlbench import plugins, rundir, terminal
from dlbench.errors import DlbenchError
from dlbench.files import load_yaml, read_yaml
from dlbench.terminal import key_of, root_of

# The parts of a run a saved KEY=VALUE may set (the run's config schema, less what chooses code
# or places: plugins, resume, sweep, hydra)
SAVED_ROOTS = (
    "name",
    "model",
    "dataset",
    "task",
    "loss",
    "optimizer",
    "scheduler",
    "device",
    "trainer",
    "logger",
)
IGNORED_ROOTS = ("plugins", "resume", "sweep")  # recorded by every run, decided by the new command
KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")  # a config file's or a registered component's name
REFERENCE = re.compile(r"\$\{[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*\}")


def saved_overrides(target: str) -> tuple[Path, Path | None, list[str]]:
    """A run's checkpoint, its directory and the overrides it was started with, as the
    allow-list keeps them (less plugins, resume and sweep settings)."""
    from dlbench.engine import checkpoint
    from dlbench.engine.logging import err_console

    ckpt = checkpoint.find(target)
    run_dir = rundir.run_folder_of(ckpt)
    given = Path(target).expanduser()
    if checkpoint.holds_runs(given):  # say which of its runs it means
        training = " (still training: its checkpoint so far)" if rundir.in_use(run_dir) else ""
        err_console.print(f"note: {given} holds runs: using the one checkpointed last, {run_dir}{training}")
    saved_file = run_dir / ".hydra" / "overrides.yaml" if run_dir else None
    if saved_file is not None and saved_file.is_file():
        saved = check_saved_overrides(read_yaml(saved_file), str(saved_file))
    else:
        saved = check_saved_overrides(checkpoint.load(ckpt).get("overrides"), str(ckpt))
    return ckpt, run_dir, [o for o in saved if root_of(o) not in IGNORED_ROOTS]


def check_saved_overrides(overrides: Any, source: str) -> list[str]:
    """The overrides a saved run records, if every one of them passes the allow-list (above);
    else one DlbenchError naming `source` and the first override refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    from dlbench.compose import groups

    if overrides is None:
        return []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise DlbenchError(f"{source}: the saved overrides are not a list of key=value strings")
    options = groups()
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
        except HydraException:
            raise refused(source, override, "it is not an override Hydra can read") from None
        key, value = parsed.key_or_group, parsed.value()
        if parsed.package is not None:
            raise refused(source, override, "it names a config package (@)")
        if parsed.type not in (OverrideType.CHANGE, OverrideType.ADD) or parsed.is_sweep_override():
            raise refused(source, override, "a run records single values (no ~, ++ or sweep)")
        if key in options:  # (a registered name may come from a plugin the user has yet to name)
            named = isinstance(value, str) and OPTION.fullmatch(value) and ".." not in value
            if value is not None and not named:
                raise refused(source, override, f"the {key} is chosen by its name, never by a path")
            continue
        if not KEY.fullmatch(key) or key.split(".")[0] not in (*SAVED_ROOTS, *IGNORED_ROOTS):
            raise refused(
                source, override, f"a saved run may set only {', '.join(SAVED_ROOTS)} and the config groups"
            )
        if (problem := value_problem(value)) is not None:
            raise refused(source, override, problem)
    return list(overrides)


def value_problem(value: Any) -> str | None:
    """What a saved value may not hold: a key that is not a plain name, an interpolation that
    runs a resolver (anything but a reference to another key)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not (isinstance(key, str) and KEY.fullmatch(key)):
                return f"its key {key!r} is not a plain name"
            if (problem := value_problem(item)) is not None:
                return problem
    elif isinstance(value, list):
        for item in value:
            if (problem := value_problem(item)) is not None:
                return problem
    elif isinstance(value, str) and "${" in REFERENCE.sub("", value):
        return "an interpolation in a saved run may only name another key (no resolvers)"
    elif not isinstance(value, (str, int, float, bool, type(None))):
        return "its value is not a number, text, list or dict"
    return None


def refused(source: str, override: str, why: str) -> DlbenchError:
    return DlbenchError(
        f"{source}: the saved override {override!r} is refused: {why}. A saved run is data: dlbench "
        "never saves such an override, so something else wrote this file, and it cannot add code or "
        "choose files for a run."
    )


def saved_plugins(ckpt: Path, run_dir: Path | None) -> list[str]:
    """The plugins a run was trained with (its composed config's `plugins`)."""
    config_file = run_dir / ".hydra" / "config.yaml" if run_dir else None
    node = read_yaml(config_file) if config_file is not None and config_file.is_file() else None
    if not isinstance(node, dict):
        from dlbench.engine import checkpoint

        node = load_yaml(checkpoint.load(ckpt).get("config") or "") or {}
    found = node.get("plugins") or []
    return [p for p in found if isinstance(p, str)] if isinstance(found, list) else []


def require_plugins(
    target: str, ckpt: Path, words: list[str], command: list[str] | plugins.Call, composes: bool = False
) -> None:
    """Import the plugins the user's own words name (`words`: their overrides: plugins=[...],
    an experiment= preset of theirs), check they are all the saved run needs, and import no
    other until the command ends: the run's saved settings choose configs too, and what those
    name is not the user's (`command`: the words the user gave after `dlbench`, for the one to
    give instead; `composes`: the command composes the run's config again, eval and resume;
    `ckpt`: the checkpoint `target` means, found once by `saved_overrides`)."""
    from dlbench.searchpath import choices_here, chosen_here

    plugins.load_entry_points()
    plugins.load(plugins.named_in(words), "the command line")
    # (the command to give instead also chooses again the run's configs of ./configs, which a
    # command that composes its config needs: one paste, not two)
    run_dir = rundir.run_folder_of(ckpt)
    again = [o for o in chosen_here(run_dir or ckpt.parent) if o not in words] if composes else []
    instead = (
        plugins.Call(command.function, [*command.words, *again])
        if isinstance(command, plugins.Call)
        else [*command, *again]
    )
    plugins.check_saved(saved_plugins(ckpt, run_dir), target, instead)
    plugins.only_named(target, command, chose_here=bool(choices_here(words)))


# settings that name a file, a folder or an address (dataset.root, dataset.path, dataset.file,
# dataset.archive, dataset.url, task.judge, ...): dlbench reads, downloads or unpacks there
PLACE_KEYS = ("root", "path", "file", "archive", "judge", "url", "uri", "dir", "folder", "weights")
PLACE_SUFFIXES = tuple(f"_{key}" for key in PLACE_KEYS)
# what a saved text value may be to be used again: a plain name (`relu`, `bf16`, `cuda:1`,
# `val/acc`, `résumé`, `exp@2`, `my run`): letters, digits and these marks, from a letter, digit
# or _; a path that starts at / or ~, climbs (..), an address (http://, sqlite:///), text with
# quotes, % escapes (file:%2Ftmp) or control characters is not, whatever its key's name
PLAIN_MARKS = frozenset("_.+-/:,@= ")


def plain(value: Any) -> bool:
    """Whether a saved value may be used again as it is: numbers, booleans, null, plain names,
    a reference to another key, and lists or dicts of them."""
    if isinstance(value, dict):
        return all(plain(v) for v in value.values())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    if isinstance(value, str):
        named = value == "" or (
            (value[0].isalnum() or value[0] == "_")
            and all(c.isalnum() or c in PLAIN_MARKS for c in value)
            and not any(part in value for part in ("..", "//", ":/"))
        )
        return bool(named or REFERENCE.fullmatch(value))
    return True


# settings whose other values send the run over the network (W&B's online mode: a saved run
# chose to upload itself, with the key of whoever resumed it)
LOCAL_ONLY = {"logger.wandb.mode": ("offline", "disabled")}


def names_place(key: str, value: Any) -> bool:
    """Whether `key=value` sets a file, folder or address (PLACE_KEYS): its key's last part is a
    place's, or a key inside its value is (`logger.mlflow={tracking_uri: x}` sets one too); or
    sends the run elsewhere (LOCAL_ONLY)."""
    setting = key.rsplit(".", 1)[-1]
    if value is not None and (setting in PLACE_KEYS or setting.endswith(PLACE_SUFFIXES)):
        return True  # (whatever it holds: dataset.root={train: data/train} names folders too)
    if key.lstrip("+") in LOCAL_ONLY and value not in LOCAL_ONLY[key.lstrip("+")]:
        return True
    if isinstance(value, dict):
        return any(names_place(f"{key}.{k}", v) for k, v in value.items())
    if isinstance(value, list):
        return any(names_place(key, v) for v in value)
    return False


def merge_overrides(saved: list[str], overrides: list[str]) -> list[str]:
    """The saved overrides, less those the new ones replace (and resume/run-dir ones), then the
    new. A saved run chooses no place: a setting that names a file, a folder or an address
    (PLACE_KEYS), or a value that is not a plain name (`plain`), must be given again on the
    command line, or it is refused."""
    keys = {key_of(o) for o in overrides}
    kept = [o for o in saved if key_of(o) not in keys and not o.startswith(("resume=", "hydra.run.dir="))]
    for o in kept:
        value = parsed_value(o)
        if value is not None and (names_place(key_of(o), value) or not plain(value)):
            written = o.split("=", 1)[0]  # (with its +: a key the config does not have is added)
            again = terminal.shell_word(terminal.override(written, value) if isinstance(value, str) else o)
            raise DlbenchError(
                f"the saved run names {key_of(o)}={value}: dlbench takes no file, folder or address from "
                "a saved run, and of its text only plain names (it would read, download, unpack or send "
                f"there; a link in a shared folder can lead anywhere). If you trust it, give it again: "
                f"{again}"
            )
    return [*kept, *overrides]


def parsed_value(override: str):
    """An override's value as Hydra reads it (quotes removed)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(override).value()


def override_value(overrides: list[str], key: str) -> str | None:
    """The value `key=VALUE` sets on the command line, as the run's config will hold it: read by
    Hydra (a quoted path without its quotes), then by OmegaConf (`\\${` is a literal `${`, as
    `terminal.override` writes it); None when absent, null or empty."""
    from omegaconf import OmegaConf

    found = next((o for o in overrides if "=" in o and o.lstrip("+").split("=", 1)[0] == key), None)
    if found is None:
        return None
    written = found.split("=", 1)[1]
    try:
        value = parsed_value(found)
        if isinstance(value, str):
            value = OmegaConf.create({"value": value}).value
    except Exception:  # (Hydra refuses it later, in its own words)
        value = written
    if value is not None and not isinstance(value, str):  # (a sweep's list, a number: as written)
        value = written
    return value or None


def resume_overrides(overrides: list[str], said: list[str] | plugins.Call | None = None) -> list[str]:
    """`resume=RUN` re-uses the run's own overrides (the command line's win) and its directory;
    the plugins it was trained with must be named by the user's own words (`require_plugins`;
    `said`: the words the user gave, options included, for the command to give instead)."""
    target = override_value(overrides, "resume")
    if target is None:
        return overrides
    ckpt, run_dir, saved = saved_overrides(target)
    new = [o for o in overrides if not o.startswith("resume=")]
    out = merge_overrides(saved, new) + [terminal.override("resume", ckpt)]
    require_plugins(target, ckpt, new, overrides if said is None else said, composes=True)
    if run_dir is not None and not any(o.startswith("hydra.run.dir=") for o in overrides):
        check_not_behind(ckpt, run_dir)
        out.append(terminal.override("hydra.run.dir", run_dir))
    return out


def check_not_behind(ckpt: Path, run_dir: Path) -> None:
    """A resume in the run's own folder continues it from its last.pt; another of its
    checkpoints (best.pt, step-N.pt) that is not the same is behind it, and training on from
    it there would write over last.pt and metrics.json with a shorter run."""
    import filecmp

    last = run_dir / "checkpoints" / "last.pt"
    if ckpt.name == "last.pt" or not last.is_file() or filecmp.cmp(ckpt, last, shallow=False):
        return
    elsewhere = terminal.shell_word(terminal.override("hydra.run.dir", f"{run_dir}-from-{ckpt.stem}"))
    raise DlbenchError(
        f"resume={ckpt}: the run's checkpoints/last.pt is further on, and a resume in the run's folder "
        f"would write over it (and metrics.json) from an earlier point. Continue the run with "
        f"{terminal.shell_word(terminal.override('resume', run_dir))}, or train on from {ckpt.name} in a "
        f"new folder: add {elsewhere}"
    )
