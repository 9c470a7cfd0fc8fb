"""Check the command line's overrides against the config tree before Hydra starts any job.

Every combination a sweep would run is composed and validated here, so a typo stops the whole
command at once, with the closest valid names, instead of failing in job 7 of 12.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import functools
import itertools
import os
import re
from pathlib import Path

from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dlbench import plugins, rundir, safety, searchpath, terminal
from dlbench.compose import compose_config, compose_with_hydra, groups, parse, taken_by_others
from dlbench.config import monitor_mode
from dlbench.engine import cluster
from dlbench.errors import DlbenchError
from dlbench.validation import check_name, validate

MAX_COMBINATIONS = 64


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
    overrides: list[str],
    source: str = "the command line",
    config_name: str = "config",
    mode: str = "run",
    own: list[str] | None = None,
) -> list[DictConfig]:
    """Compose and validate every combination the command line asks for; return the configs.

    `mode` is what the command will do: `run` (one run: its folder must be one dlbench can
    write), `multirun` (a sweep: its folder must not hold another sweep or a run), `show`
    (nothing is written) or `print` (`--cfg`, `--help`: components' keys are not type-checked,
    which would import them and torch). `own`: the user's own words, where the overrides hold a
    saved run's too (eval's), for the messages to tell them apart."""
    return check_command(overrides, source, config_name, mode, own=own)[0]


def check_search_direction(cfg: DictConfig) -> None:
    """An Optuna search maximises or minimises its objective, the run's trainer.monitor: a
    direction the monitor does not go (val/loss maximised, as a val/acc preset's
    `direction: maximize` would with trainer.monitor=val/loss) chose the worst trial, unsaid."""
    direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None)
    direction = getattr(direction, "name", direction)  # (Optuna's default: Direction.minimize)
    trainer = cfg.get("trainer")
    if not isinstance(direction, str) or trainer is None:
        return
    if trainer.get("monitor") is None:  # (the task's own, unknown before it is built)
        raise DlbenchError(
            f"hydra.sweeper.direction={direction}: name the metric the search {direction}s, "
            "trainer.monitor=... (val/acc, val/loss): its direction follows it"
        )
    mode = monitor_mode(trainer)
    wanted = {"max": "maximize", "min": "minimize"}.get(mode)  # (another mode: validation refuses it)
    if wanted is not None and direction != wanted:
        said = f"trainer.monitor_mode={mode}" if trainer.get("monitor_mode") else f"{mode}imised, by its name"
        raise DlbenchError(
            f"hydra.sweeper.direction={direction} and trainer.monitor={trainer.monitor} ({said}) disagree: "
            f"the search would choose its worst trial. Add hydra.sweeper.direction={wanted}"
        )


def as_a_list(swept: Override, rest: list[str], config_name: str) -> tuple[str, str] | None:
    """For `model.hidden=64,32` (several values for a key that holds a list in the config the
    `rest` of the command composes): the word for the one list, `model.hidden=[64,32]`, and the
    sweep's of lists of one, `model.hidden=[64],[32]`; else None (a group's options, a sweep of
    lists, `range(...)`)."""
    key, text = swept.get_key_element(), swept.input_line.split("=", 1)[1]
    if is_group(swept) or (words := as_lists(key, text)) is None:
        return None
    try:
        held = OmegaConf.select(compose_config(rest, config_name=config_name), key)
    except DlbenchError:
        return None
    return words if OmegaConf.is_list(held) else None


def as_lists(key: str, text: str) -> tuple[str, str] | None:
    """Values `a,b` of a key as the one list, `key=[a,b]`, and as a sweep of lists of one,
    `key=[a],[b]`; None for values that are no plain ones (lists, range(...), quoted text)."""
    if any(c in text for c in "([{'\""):
        return None
    return f"{key}=[{text}]", f"{key}={','.join(f'[{value}]' for value in text.split(','))}"


def explicit_globs(overrides: list[str]) -> list[str]:
    """A glob(...) over a group's options written as the options it chooses (`glob_options`:
    the offered ones, as checked). Hydra expands a glob from its ConfigStore, which holds the
    hidden `_x` parts too: `optimizer=glob(*)` ran 27 jobs, each optimizer twice, 13 unchecked."""
    out = []
    for word, override in zip(overrides, parse(overrides), strict=True):
        if override.is_sweep_override() and override.value_type.name == "GLOB_CHOICE_SWEEP":
            word = f"{word.split('=', 1)[0]}={','.join(glob_options(override))}"
        out.append(word)
    return out


INTERVAL = (
    "interval() is a range that a sampling sweeper draws from (-m with hydra/sweeper=optuna, as the "
    "hparams_search= presets set it); a grid takes values (KEY=a,b,c, or range(...))"
)


def intervals(overrides: list[str]) -> list[str]:
    """The overrides that sweep an interval() (a sampling sweeper's, not a grid's)."""
    return [
        o.input_line
        for o in parse(overrides)
        if o.is_sweep_override() and o.value_type.name == "INTERVAL_SWEEP"
    ]


def check_command(
    overrides: list[str],
    source: str = "the command line",
    config_name: str = "config",
    mode: str = "run",
    said: list[str] | None = None,
    own: list[str] | None = None,
) -> tuple[list[DictConfig], Path | None, DictConfig | None]:
    """`check`, the folder the command will write (its run or sweep folder), and the first
    config as composed, `hydra` node included (a run is started from it). `said`: the user's
    own words (flags too), for a command a message prints (the overrides, if not given).

    A sweep's combinations that differ only in the values of swept keys are composed once:
    the others are that config with their values set as Hydra sets an override's value
    (`with_values`), which is what composing them would give, without reading the config tree
    again (0.3 s a combination; a 1,000-job grid starts in seconds, not minutes)."""
    check_plugins(overrides)
    parsed = parse(overrides)
    one = mode == "show" or (mode == "run" and said is not None)  # (a command that takes one config)
    if one and (several := [o for o in parsed if o.is_sweep_override()]):
        # (Hydra's own run refuses it as ambiguous; composing the first value was a silent choice)
        every = f"; to run each, sweep: {terminal.command('-m', *said)}" if said is not None else ""
        if several[0].value_type.name == "INTERVAL_SWEEP":
            every = f"; {INTERVAL}"
        rest = [o.input_line for o in parsed if not o.is_sweep_override()]
        if said is not None and (listed := as_a_list(several[0], rest, config_name)) is not None:
            one, each = ([w if w != several[0].input_line else word for w in said] for word in listed)
            every = (
                f"; {several[0].get_key_element()} takes a list: {terminal.command(*one)}; to run each "
                f"as a list of one, sweep: {terminal.command('-m', *each)}"
            )
        raise DlbenchError(
            f"{several[0].input_line} gives several values, and this command takes one (a list is [a,b], "
            f"a text with a comma 'a,b'){every}"
        )
    preset = preset_sweep(parsed, source, config_name) if mode == "multirun" else []
    if preset:
        overrides = [*preset, *overrides]
        parsed = parse(overrides)
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override() and not is_group(o)}
    configs, folder, hydra_node, composed = [], None, None, {}
    mine = own if own is not None else said if said is not None else overrides  # (the user's words)
    for combination in combinations(parsed):
        values = [c for c in combination if c.split("=", 1)[0] in swept]
        rest = tuple(c for c in combination if c.split("=", 1)[0] not in swept)
        try:
            if rest in composed:
                cfg = with_values(composed[rest], values, combination, source, config_name)
            else:
                cfg = compose_with_hydra(combination, source, config_name)
        except DlbenchError as err:
            err = with_preset_hint(err, combination, mine, saved=own is not None)
            raise with_swept_by_config(err, combination, preset) from err
        check_name(cfg)  # (it names the run's folder)
        if not configs:
            folder = check_output_folder(cfg, mode, overrides if said is None else said)
            hydra_node = cfg.copy()  # the whole config: hydra.run.dir names ${name}
        if mode == "multirun":
            check_job_folder_name(hydra_node, combination)
            check_search_direction(cfg)
        if "hydra" in cfg:
            cfg = cfg.copy()
            with open_dict(cfg):
                del cfg["hydra"]
        composed.setdefault(rest, cfg)
        check_resolves(cfg, source)
        try:
            validate(cfg, components=mode != "print")
        except DlbenchError as err:
            err = with_preset_hint(with_list_hint(err, parsed), combination, mine, saved=own is not None)
            err = with_other_options_hint(err, combination, cfg)
            raise with_swept_by_config(err, combination, preset) from err
        configs.append(cfg)
    if not configs:  # (Hydra's own error named an internal config it then looked for)
        empty = [o for o in parsed if o.is_sweep_override() and no_values(o)]
        said = " ".join(o.input_line for o in empty) or "this sweep"
        globs = [o.get_key_element().lstrip("+~") for o in empty if o.value_type.name == "GLOB_CHOICE_SWEEP"]
        offered = f" ({globs[0]}'s options: {', '.join(groups().get(globs[0], []))})" if globs else ""
        raise DlbenchError(f"{said}: no values, so the sweep has no jobs{offered}")
    return configs, folder, hydra_node


def preset_sweep(parsed: list[Override], source: str, config_name: str) -> list[str]:
    """What a sweep's config sweeps besides the command line (`hydra.sweeper.params`: a lesson
    preset's, `dlbench -m experiment=optimizers`), as overrides, less the keys the command line
    sets: Hydra's sweeper runs each job with both, a key on the command line in place of the
    config's. Read from the config the command's choices compose as Hydra composes a sweep's
    (without the swept ones: `experiment=a,b` gives neither preset's; if it does not compose,
    the checks that follow say why), so those jobs are checked too."""
    chosen = [
        o.input_line for o in parsed if not o.is_sweep_override() and (is_group(o) or o.is_hydra_override())
    ]
    try:
        params = OmegaConf.select(compose_with_hydra(chosen, source, config_name), "hydra.sweeper.params")
    except DlbenchError:
        return []
    given = {o.get_key_element() for o in parsed}
    words = [f"{key}={value}" for key, value in (params or {}).items()]
    return [word for word, o in zip(words, parse(words), strict=True) if o.get_key_element() not in given]


def with_swept_by_config(err: DlbenchError, combination: list[str], preset: list[str]) -> DlbenchError:
    """A job refused for a value the config's own sweep gave it (`preset_sweep`), said so."""
    keys = {terminal.key_of(word) for word in preset}
    if not (given := [word for word in combination if terminal.key_of(word) in keys]):
        return err
    return DlbenchError(
        *err.lines,
        f"(in the job with {' '.join(given)}: the config sweeps {'; '.join(preset)} (its "
        "hydra.sweeper.params); a key set on the command line replaces the config's values)",
    )


def with_list_hint(err: DlbenchError, parsed: list[Override]) -> DlbenchError:
    """A sweep of single values for a key that holds a list (`-m model.hidden=8,16`: "expected
    list of int, got 8"), said with the sweep of lists and the one list it may mean."""
    refused = re.match(r"(\S+): expected list", err.lines[0])
    key = refused.group(1) if refused else None
    swept = [o for o in parsed if o.is_sweep_override() and o.get_key_element() == key]
    if not swept or (words := as_lists(key, swept[0].input_line.split("=", 1)[1])) is None:
        return err
    one, each = map(terminal.shell_word, words)
    return DlbenchError(*err.lines, f"({key} takes a list: {each} sweeps lists of one; {one} is one run's)")


def with_other_options_hint(err: DlbenchError, words: tuple[str, ...] | list[str], cfg: DictConfig):
    """Where the command line set `GROUP.name=OPTION` (as `--cfg job` prints it) and the part's
    settings were refused, that `GROUP=OPTION` swaps the whole part; else, an unknown key of a
    part that another option of its group takes (a plugin's `optimizer.momentum` under adam:
    sgd's), said with those options."""
    chosen = {terminal.key_of(w): w.split("=", 1)[1] for w in words if "=" in w}
    for part in (p for p in groups() if chosen.get(f"{p}.name") in groups()[p]):
        if err.lines[0].startswith(f"Unknown key '{part}."):
            name = chosen[f"{part}.name"]
            return DlbenchError(
                *err.lines,
                f"({part}.name={name} renames the {part} and keeps its settings; {part}={name} swaps "
                f"the whole {part})",
            )
    unknown = re.match(r"Unknown key '(\w+)\.(\w+)'", err.lines[0])
    if unknown is None or "experiment" in chosen:  # (a preset's keys: with_preset_hint)
        return err
    group, key = unknown.groups()
    others = taken_by_others(group, key, OmegaConf.select(cfg, f"{group}.name", default=None))
    return DlbenchError(*err.lines, *others) if others else err


def with_preset_hint(
    err: DlbenchError, words: tuple[str, ...] | list[str], mine: list[str], saved: bool = False
) -> DlbenchError:
    """An unknown key that is not the user's own (`mine`: their words): a setting a saved run was
    trained with (a resume's, eval's: `saved`, or `resume=` among the words), or one a preset
    sets for its own part where the command swapped that part (`experiment=iris_mlp
    dataset=digits`: the preset's dataset.features), said so, with the way out that exists (a
    preset a saved run names cannot be left out)."""
    chosen = {terminal.key_of(w): w.split("=", 1)[1] for w in words if "=" in w}
    saved = saved or "resume" in chosen
    typed = {terminal.key_of(w) for w in mine}
    unknown = re.match(r"Unknown key '((\w+)\.[^']*)'", err.lines[0])
    key, group = unknown.groups() if unknown else (None, None)
    if key is None or key in typed:
        return err
    if key in chosen:  # (the run's own setting)
        part = f"{group}={chosen[group]}" if group in chosen else f"this {group}"
        return DlbenchError(
            *err.lines,
            f"({key}={chosen[key]} is a setting the run was trained with, which {part} does not take: a "
            "run keeps its own settings)",
        )
    if group not in chosen or "experiment" not in chosen:
        return err
    if "experiment" not in typed or saved:
        return DlbenchError(
            *err.lines,
            f"(the run was trained with experiment={chosen['experiment']}, which sets {group} keys for its "
            f"own {group}, which {group}={chosen[group]} does not take: a run keeps its own settings; "
            f"train a new run for {group}={chosen[group]})",
        )
    return DlbenchError(
        *err.lines,
        f"(experiment={chosen['experiment']} sets {group} keys for its own {group}, which "
        f"{group}={chosen[group]} does not take: choose a preset made for it, or leave out experiment=)",
    )


def no_values(override) -> bool:
    """A swept override that gives no values (`range(5,1)`, a glob that matches no option)."""
    if override.value_type.name == "GLOB_CHOICE_SWEEP":
        return not glob_options(override)
    try:
        return not list(override.sweep_string_iterator())
    except Exception:  # (an interval: a sweeper's, not a list of values)
        return False


def check_job_folder_name(hydra_node: DictConfig, combination: list[str]) -> None:
    """A sweep whose job folders are named by their overrides (the lesson sweeps:
    hydra.sweep.subdir=${hydra.job.override_dirname}) needs each name to be one folder: a `/`
    in a value (trainer.monitor=val/acc) made two, and the summary, which reads the sweep's
    folders, found no job (a sweep whose jobs all failed said so nowhere, exit 0)."""
    subdir = str(hydra_node.hydra.sweep._get_node("subdir")._value())  # as written
    if "override_dirname" not in subdir:
        return
    excluded = set(hydra_node.hydra.job.config.override_dirname.exclude_keys or [])
    for override in combination:
        key = terminal.key_of(override)
        hydras = key.lstrip("+~").startswith(("hydra.", "hydra/"))  # (Hydra leaves its own out of the name)
        if key not in excluded and not hydras and "/" in override:
            raise DlbenchError(
                f"{override}: this sweep names each job's folder by its overrides "
                f"(hydra.sweep.subdir={subdir}), and a / would make it two folders. Give the value "
                "without a /, or name the folders by number: 'hydra.sweep.subdir=${hydra.job.num}'"
            )


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
            if "HydraConfig was not set" in str(err):  # (${hydra:...}: Hydra's resolver, set in the job)
                continue
            hint = ""
            if "'hydra." in str(err):  # (a job's config holds no hydra node)
                hint = ": a setting reads Hydra's with ${hydra:...} (${hydra:runtime.output_dir})"
            where = getattr(err, "full_key", None) or key
            raise DlbenchError(f"{source}: {where}: {str(err).splitlines()[0]}{hint}") from err


def check_output_folder(cfg: DictConfig, mode: str, said: list[str] = ()) -> Path | None:
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
    # a literal ${ in the path (escaped in the value, or the current folder's name): Hydra's log
    # file name would read it again as an interpolation
    if "${" in str(folder.absolute()):
        raise DlbenchError(
            f"{key}: {terminal.shell_word(str(folder.absolute()))}: a folder whose path holds '${{' "
            "cannot hold a run (Hydra reads it as an interpolation in its log file's name): run "
            "from another folder, or give another folder"
        )
    rundir.check_writable(folder, key)
    if mode == "run":
        # (a torchrun process: its launcher checked)
        records = () if cluster.in_torchrun_group() else rundir.RECORDS
        again = functools.partial(searchpath.continue_words, plugins=plugins.words(cfg.plugins))
        rundir.check_new_run(folder, cfg.resume, records, again)
    if mode == "multirun":
        subdir = str(cfg.hydra.sweep._get_node("subdir")._value())  # as written: ${hydra.job.num} is fine
        if "${" not in subdir:  # (one name: every job in one folder, the second refused mid-sweep)
            raise DlbenchError(
                f"hydra.sweep.subdir={subdir}: each job needs its own folder inside the sweep's: make it "
                "differ for each job (its default: 'hydra.sweep.subdir=${hydra.job.num}')"
            )
        if rundir.holds_run(folder):
            raise DlbenchError(
                f"hydra.sweep.dir={folder} holds a run, not a sweep: give the sweep its own folder"
            )
    requeued = os.environ.get("SUBMITIT_EXECUTOR") == "slurm"  # Slurm runs the same sweep again
    if mode == "multirun" and not cfg.sweep.resume and not requeued and folder.is_dir():
        jobs = [d for d in folder.iterdir() if d.is_dir() and rundir.holds_run(d)]
        if jobs:
            finish, held = finish_sweep_command(said, folder), terminal.counted(len(jobs), "job")
            raise DlbenchError(  # (the command given may be another sweep's: then the hint is not it)
                f"{folder} already holds a sweep ({held} with results), and dlbench never "
                "writes over one: give this sweep another hydra.sweep.dir, or leave it out for a new "
                f"folder. If this command started that sweep, finish it with: {finish}"
            )
    return folder


def refuse_run_settings(overrides: list[str], does: str) -> None:
    """The settings of a run's folder and start (resume=, sweep.resume=, hydra.*) for a command
    that starts no run (show, lr-find: `does` says what it does): refused, not ignored."""
    for word in overrides:
        key = terminal.key_of(word)
        if key in ("resume", "sweep.resume") or key.startswith("hydra."):
            raise DlbenchError(f"{word}: {does}; it takes no {key.split('.')[0]} settings (a run's)")


def finish_sweep_command(said: list[str], sweep_dir: Path) -> str:
    """The user's sweep command (`said`: their words) with sweep.resume=sweep_dir: it runs the
    jobs of that sweep that have not finished, and skips the others. (sweep.resume sets the
    sweep's folder: a hydra.sweep.dir of theirs, `${now:...}` say, would name another; from the
    root, as a run's "Continue with": pasted in another folder, a relative one named nothing.)"""
    words = [w for w in said if terminal.key_of(w) not in ("sweep.resume", "hydra.sweep.dir")]
    return terminal.command("-m", *words, terminal.override("sweep.resume", sweep_dir.absolute()))
