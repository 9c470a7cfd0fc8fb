"""dlbench [OVERRIDES...] and dlbench -m ...: train one run (launch.run_once, as Hydra would), or a
sweep of them through Hydra's launcher.

Before Hydra starts, every combination the command line asks for is composed and checked
(preflight.py), plugins are imported, and `resume=` / `sweep.resume=` read their saved runs
(runs.py). Each job then trains (training.py) and turns any failure into one message, plus
error.txt in its folder; a stop signal ends in a checkpoint and exit status 75.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from rich.text import Text

from dlbench import (
    compose,
    errors,
    files,
    launch,
    preflight,
    rundir,
    searchpath,
    summary,
    terminal,
    validation,
)
from dlbench.commands.runs import IGNORED_ROOTS, check_saved_overrides, override_value, resume_overrides
from dlbench.config_store import new_run_id
from dlbench.engine import cluster
from dlbench.engine.logging import err_console, print_error
from dlbench.errors import DlbenchError, Preempted, StopRequested
from dlbench.searchpath import ENV as CONFIG_PATH_ENV
from dlbench.searchpath import SHIPPED, add_config_dir

SHELLS = ("bash", "zsh", "fish")  # (Hydra's completion plugins)


def train_command(argv: list[str]) -> int:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.error = lambda message: usage_error(message, argv)  # one message, as text (not argparse's)
    args = parser.parse_intermixed_args(argv)  # (overrides after a flag too: a printed hint adds words last)
    if args.multirun and args.cfg:
        raise DlbenchError("--cfg prints the config of one run: leave out -m")
    named = {o.split("=", 1)[0] for o in args.overrides}
    if args.shell_completion and "query" in named and "COMP_LINE" not in os.environ:  # (Hydra's KeyError)
        raise DlbenchError(
            "--shell-completion query= is the shell's own call while it completes (dlbench completion bash)"
        )
    if args.shell_completion and not named & {"install", "uninstall", "query"}:
        raise DlbenchError(
            '--shell-completion takes install=bash (dlbench\'s own: eval "$(dlbench completion bash)")'
        )
    actions = [o for o in args.overrides if o.split("=", 1)[0] in ("install", "uninstall", "query")]
    if args.shell_completion and (odd := [o for o in actions if o.split("=", 1)[1] not in SHELLS]):
        # (Hydra's traceback: "No completion plugin for 'None' found")
        raise DlbenchError(f"--shell-completion {odd[0]}: the shells are bash, zsh and fish (install=bash)")
    if any(terminal.key_of(o) in ("resume", "sweep.resume") and o.endswith("=") for o in args.overrides):
        raise DlbenchError(  # (`resume=$RUN` with RUN unset: it trained a new run, silently)
            "resume= names nothing: give the run's folder or checkpoint (resume=outputs/NAME)"
        )
    if args.cfg and override_value(args.overrides, "sweep.resume") is not None:  # (-m and --cfg: refused)
        raise DlbenchError("sweep.resume finishes a sweep (-m); --cfg prints one run's config: leave one out")
    if not args.multirun and (target := override_value(args.overrides, "sweep.resume")) is not None:
        # the sweep's own words, then the user's others (a sweep's word typed again, with another
        # value, was printed in place of the sweep's: a command sweep.resume then refused)
        saved = sweep_saved(Path(target))
        started = started_sweep(saved, Path(target))  # (none where its multirun.yaml tells none: the user's)
        kept = [a for a in argv if not started or a not in args.overrides or not the_sweeps_own(a)]
        again = terminal.command("-m", *started, *kept)
        folders = sweeps_config_dirs(saved, args.config_dir)
        raise DlbenchError(  # (it ran one job)
            f"sweep.resume finishes a sweep: run it with -m, {again}{config_dirs_note(folders)}"
        )
    if args.experimental_rerun:
        raise DlbenchError(
            "--experimental-rerun is not supported: it unpickles a file (which can run code). "
            "To run a job again, use resume=RUN_DIR or sweep.resume=SWEEP_DIR"
        )
    if args.config_path:
        raise DlbenchError(
            "--config-path replaces dlbench's own configs: add yours with --config-dir DIR "
            "(or a configs/ folder in the current directory)"
        )
    saved_env = {key: os.environ.get(key) for key in (CONFIG_PATH_ENV, "DLBENCH_RUN_ID")}
    if args.config_dir is not None:  # (--config-dir= too: refused, not taken as no folder)
        add_config_dir(args.config_dir)  # searched before the shipped tree, here and in every job
    if not saved_env["DLBENCH_RUN_ID"]:  # the checks and Hydra name the same folder
        os.environ["DLBENCH_RUN_ID"] = new_run_id()
    elif not validation.one_folder_name(given := saved_env["DLBENCH_RUN_ID"]):
        raise DlbenchError(  # (it names the run's folder under outputs/NAME: ../../x put it elsewhere)
            f"DLBENCH_RUN_ID={given!r}: one folder name (letters, digits, . _ - + = , @), or leave it unset"
        )
    lock, started, made = None, False, []
    try:
        # the user's own words, as a printed hint gives them back (their config folder and name too)
        flags = [*(["--config-dir", args.config_dir] if args.config_dir else [])]
        flags += ["--config-name", args.config_name] if args.config_name else []
        said = [*flags, *args.overrides]
        overrides = sweep_resume_overrides(resume_overrides(list(args.overrides), argv), flags)
        one_run = not (args.multirun or args.cfg or args.help or args.hydra_help or args.info)
        checked, folder, hydra_node = [], None, None  # the composed configs, the folder written, hydra
        if args.cfg:  # print the config composed for the checks (Hydra would compose it again)
            return print_config(overrides, args, said)
        if args.shell_completion:  # Hydra completes groups, options and keys: it needs the code's nodes
            compose.store_config_nodes(compose.file_options())
        else:
            mode = "multirun" if args.multirun else "run" if one_run else "print"
            checked, folder, hydra_node = preflight.check_command(
                overrides, config_name=args.config_name or "config", mode=mode, said=said
            )
            cluster.check(overrides, hydra_node)  # Slurm launcher settings that cannot work
            launch.check_joblib(hydra_node)  # and joblib's
            if hydra_node is not None:
                launch.verbose_loggers(hydra_node.hydra.verbose)
                if one_run:
                    note_a_sweep(hydra_node, overrides, said)
        if args.multirun and folder is not None:  # one sweep at a time in a sweep folder
            made = rundir.new_folders(folder)  # (a launcher that starts no job leaves none of them)
            lock = rundir.RunLock(folder, sweep=True).acquire()
            # the folder checked and locked is the one Hydra writes: a `${now:...}` in it, read
            # again when Hydra composes, could name the next second's
            overrides = [o for o in overrides if terminal.key_of(o) != "hydra.sweep.dir"]
            overrides.append(terminal.override("hydra.sweep.dir", folder))
            if override_value(overrides, "sweep.resume") is not None:  # a fail-fast stop of the last attempt
                (folder / ".stop").unlink(missing_ok=True)
            (folder / rundir.REFUSED).unlink(missing_ok=True)  # (one a stopped command left: not this one's)
        if one_run and checked and hydra_node is not None and not distributed_run(checked[0]):
            launch.run_once(checked[0], hydra_node, list(hydra_node.hydra.overrides.task))
            return 0
        sweeper = hydra_node.hydra.runtime.choices.get("hydra/sweeper") if hydra_node is not None else None
        if args.multirun and sweeper == "basic" and (ranged := preflight.intervals(overrides)):
            raise DlbenchError(f"{ranged[0]}: {preflight.INTERVAL}")  # (it was BasicSweeper's traceback)
        if args.multirun:  # (the options checked: Hydra's expansion takes hidden parts too)
            overrides = preflight.explicit_globs(overrides)
        if args.multirun and sweeper == "basic":  # the same grid, its jobs composed once, not twice
            overrides = [*overrides, "hydra/sweeper=checked"]  # (hydra_plugins/dlbench_sweeper.py)
        if args.multirun and any("mlflow" in cfg.logger.backends for cfg in checked):
            from dlbench.engine.loggers import prepare_stores

            prepare_stores(checked)  # (jobs that start at once would each make a new store's tables)
        started = True
        sweep_dir = folder if args.multirun else None
        return run_checked(argv, args, overrides, checked, one_run, sweep_dir, said, sweeper)
    finally:
        if lock is not None:
            lock.release(wrote=started)
        rundir.remove_empty(made)
        for key, value in saved_env.items():  # as they were: the next command in this process starts clean
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def usage_error(message: str, argv: list[str]):
    """argparse's message; for flags that are no flags of dlbench's (`--epochs 3`, as other
    tools take settings), the command with the settings they would be: `dlbench trainer.epochs=3`."""
    said = f"{message} (dlbench --help lists the commands and flags)"
    unknown = (
        set(message.split(":", 1)[1].split()) if message.startswith("unrecognized arguments:") else set()
    )
    words, settings, i = [], [], 0
    while i < len(argv):
        word, i = argv[i], i + 1
        name, _, value = word[2:].partition("=")
        key = compose.key_named(name.replace("-", "_")) if word.startswith("--") and word in unknown else None
        if key is None:
            words.append(word)
            continue
        if (
            not value
            and i < len(argv)
            and "=" not in argv[i]
            and (not argv[i].startswith("-") or argv[i][1:].replace(".", "", 1).isdigit())
        ):
            value, i = argv[i], i + 1  # (`--epochs 3`, `--lr -0.1`)
        options = compose.groups().get(key, [])
        if value and value not in options and errors.SYNONYMS.get(value.lower()) in options:
            value = errors.SYNONYMS[value.lower()]  # (`--device gpu`: device=cuda)
        settings.append(f"{key}={value or 'VALUE'}")
        words.append(settings[-1])
    if not settings:
        raise DlbenchError(said)
    whole = (
        terminal.command(*words) if all(not s.endswith("=VALUE") for s in settings) else " ".join(settings)
    )
    raise DlbenchError(said, f"Settings are KEY=VALUE words, without dashes: {whole}")


def distributed_run(cfg: DictConfig) -> bool:
    """A process of a torchrun group, or a run that starts one: Hydra starts those."""
    return cluster.in_torchrun_group() or cfg.trainer.devices > 1 or cfg.trainer.nodes > 1


def run_checked(
    argv: list[str],
    args,
    overrides: list[str],
    checked: list[DictConfig],
    one_run: bool,
    sweep_dir: Path | None,
    said: list[str],
    sweeper: str | None = None,
) -> int:
    """Start what the checked command line asks for: torchrun, or Hydra (a run or a sweep, whose
    folder says which jobs failed: exit status 1)."""
    if cluster.in_torchrun_group():
        if args.multirun:
            raise DlbenchError("a sweep (-m) does not run under torchrun; give its jobs trainer.devices=N")
        overrides = join_process_group(
            overrides, checked[0] if checked else compose.compose_config(overrides)
        )
    elif one_run and checked and ((trainer := checked[0].trainer).devices > 1 or trainer.nodes > 1):
        from dlbench.engine import distributed

        distributed.check_processes(trainer.devices, str(checked[0].device.type))
        return distributed.launch(trainer.devices, argv, trainer.nodes, trainer.dist_timeout_s)
    # dlbench writes a run's .hydra/ itself, once the run is built (rundir.record_run)
    overrides = [*overrides, "hydra.output_subdir=null"]
    # (the overrides first: a flag that takes an optional value, --info, last takes none of them)
    sys.argv = ["dlbench", *overrides, *hydra_flags(argv, args.overrides)]
    if args.hydra_help:  # Hydra's own help, which no config changes (with overrides, Hydra failed)
        sys.argv = ["dlbench", "--hydra-help"]
    # a sweep.resume's folder's multirun.yaml, written again by Hydra, is put back if it is refused
    written = sweep_dir / "multirun.yaml" if sweep_dir is not None else None
    started_with = written.read_bytes() if written is not None and written.is_file() else None
    try:
        if args.shell_completion and "query" in {o.split("=", 1)[0] for o in args.overrides}:
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                hydra_entry()
            candidates = printed.getvalue().rstrip("\n").split(" ")
            print(" ".join(filter(offered, candidates)))
        elif args.help or args.hydra_help or args.info:  # Hydra prints these itself: as text, here too
            printed = io.StringIO()
            try:
                with contextlib.redirect_stdout(printed):
                    hydra_entry()  # (--hydra-help ends in sys.exit(0))
            finally:
                terminal.write(printed.getvalue().expandtabs(4))  # (Hydra indents --info with tabs)
        elif args.multirun and (plugin := sweep_plugin(overrides, sweeper)) is not None:
            # (not the basic launcher's: its jobs run here, and their errors are dlbench's own)
            with plugin_errors(plugin, sweep_dir):
                hydra_entry()
        else:
            hydra_entry()
    except KeyboardInterrupt:  # Ctrl-C on a sweep (a job's checkpoint is kept): how to finish it
        if sweep_dir is None or not sweep_dir.is_dir():
            raise
        print_error(f"interrupted. Finish the sweep with: {preflight.finish_sweep_command(said, sweep_dir)}")
        raise SystemExit(130) from None
    except StopRequested as stop:  # a stop signal to this process while a plugin ran the jobs (joblib's)
        if sweep_dir is None or not sweep_dir.is_dir():
            raise
        finish = preflight.finish_sweep_command(said, sweep_dir)
        print_error(f"stopped by {signal.Signals(stop.signum).name}. Finish the sweep with: {finish}")
        raise SystemExit(Preempted.EXIT_STATUS) from None
    except SystemExit as stop:  # a stop signal in a job (launch.stopped): how to finish the sweep
        if stop.code == Preempted.EXIT_STATUS and sweep_dir is not None and sweep_dir.is_dir():
            err_console.print(f"Finish the sweep with: {preflight.finish_sweep_command(said, sweep_dir)}")
        raise
    finally:
        if "dlbench.engine.distributed" in sys.modules:  # a run imported it (and torch)
            sys.modules["dlbench.engine.distributed"].close()
    if sweep_dir is not None and (refused := sweep_dir / rundir.REFUSED).is_file():
        why = refused.read_text().strip()
        refused.unlink()
        if started_with is not None:  # (Hydra wrote the refused command's over the sweep's)
            files.write_bytes(sweep_dir / "multirun.yaml", lambda f: f.write(started_with))
        raise DlbenchError(why)
    failed = summary.failed_jobs(sweep_dir) if sweep_dir is not None and sweep_dir.is_dir() else []
    if failed:
        failed_jobs = terminal.counted(len(failed), "job") + " failed"
        err_console.print(Text.assemble((failed_jobs, "red"), ": ", terminal.inert(", ".join(failed))))
        again = preflight.finish_sweep_command(said, sweep_dir)
        err_console.print(  # (sweep.resume runs the command that started the sweep: its values stay)
            "A job refused for a value of this command (its error names it) is refused again: give it "
            "another value in a new sweep. Other failures (data, disk, memory, a plugin's code), once "
            "fixed, run again with the jobs that finished skipped:"
        )
        err_console.print(again)
        return 1
    return 0


def offered(candidate: str) -> bool:
    """A completion candidate shown: a name from the config folders (a file's) with a control
    in it is left out, not sent to the terminal nor typed into the command line; and a shared
    part (`model=_mlp`, a file named _x) is no option."""
    return terminal.inert(candidate) == candidate and not candidate.partition("=")[2].startswith("_")


def sweep_plugin(overrides: list[str], sweeper: str | None) -> str | None:
    """The plugin a sweep runs in, if not dlbench's own code: a launcher (joblib, slurm) or a
    sweeper (Optuna), as the override that chooses it."""
    if (launcher := override_value(overrides, "hydra/launcher")) not in (None, "basic"):
        return f"hydra/launcher={launcher}"
    return f"hydra/sweeper={sweeper}" if sweeper not in (None, "basic") else None


@contextlib.contextmanager
def plugin_errors(plugin: str, sweep_dir: Path | None):
    """A sweep's plugin that fails (joblib's n_jobs=0, an sbatch that reaches no cluster,
    Optuna's study when every trial failed) raises in Hydra, which prints that as a traceback:
    with HYDRA_FULL_ERROR it raises it instead, and it is one message here. Where jobs failed
    before it, their failures are the news: the command goes on to list them (and how to run
    them again). (A job's own error never gets here: launch.job records it in its folder.)"""
    kept = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except DlbenchError:
        raise
    except Exception as err:
        why = errors.first_line(err)
        if sweep_dir is not None and sweep_dir.is_dir() and summary.failed_jobs(sweep_dir):
            print_error(f"{plugin} stopped the sweep: {why}")
            return
        if sweep_dir is not None and sweep_dir.is_dir():  # (what Hydra wrote of a sweep that never began)
            if {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml", rundir.LOCK}:
                (sweep_dir / "multirun.yaml").unlink(missing_ok=True)
        raise DlbenchError(f"{plugin} could not start the sweep's jobs: {why}") from err
    finally:
        if kept is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = kept


def print_config(overrides: list[str], args, said: list[str]) -> int:
    """--cfg job|hydra|all [--package P] [--resolve], as Hydra prints it."""
    if several := [o.input_line for o in compose.parse(overrides) if o.is_sweep_override()]:
        raise DlbenchError(  # (it said "Unknown model option 'ChoiceSweep(tags=set(), ...)'")
            f"{several[0]} gives several values, and --cfg prints the config of one run: give one"
        )
    cfg = compose.compose_with_hydra(overrides, "the command line", args.config_name or "config")
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    validation.check_known_keys(job)  # (a key nothing reads: +trainer.epochz=1 printed, exit 0; the
    # rest of a run's checks are left to the run: a config that does not resolve is printed to be read)
    note_a_sweep(cfg, overrides, said)
    if args.cfg == "job":
        with open_dict(cfg):
            del cfg["hydra"]
    elif args.cfg == "hydra":
        cfg = OmegaConf.create({"hydra": cfg.hydra})
    try:  # (a key OmegaConf cannot read, `[`, or a value that does not resolve)
        node = OmegaConf.select(cfg, args.package) if args.package else cfg
    except OmegaConfBaseException as err:
        raise DlbenchError(f"--package {args.package}: {str(err).splitlines()[0]}") from err
    if node is None:
        raise DlbenchError(f"--package {args.package}: no such key in the config")
    try:
        text = OmegaConf.to_yaml(node, resolve=args.resolve) if OmegaConf.is_config(node) else str(node)
    except OmegaConfBaseException as err:
        raise DlbenchError(f"--resolve: {str(err).splitlines()[0]}") from err
    terminal.write(text)
    return 0


def hydra_flags(argv: list[str], overrides: list[str]) -> list[str]:
    """The command line's flags for Hydra, less --config-dir (dlbench puts those folders on its
    own search path, before the shipped tree)."""
    flags, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--config-dir", "-cd"):
            skip = True
        elif not arg.startswith("--config-dir=") and arg not in overrides:
            flags.append(arg)
    return flags


def sweep_resume_overrides(overrides: list[str], flags: list[str]) -> list[str]:
    """`sweep.resume=DIR` runs the sweep again in DIR (the jobs keep their directories), with
    the words that started it (a hint names them, and the command's `flags`: --config-dir)."""
    target, sweep_dir = (
        override_value(overrides, "sweep.resume"),
        override_value(overrides, "hydra.sweep.dir"),
    )
    if target is None:
        return overrides
    if sweep_dir is not None and Path(sweep_dir).absolute() != Path(target).absolute():
        raise DlbenchError(  # (the jobs ran in hydra.sweep.dir, unchecked)
            f"sweep.resume={target} and hydra.sweep.dir={sweep_dir} name two folders: give sweep.resume alone"
        )
    if not Path(target).is_dir():
        raise DlbenchError(f"sweep.resume={target}: no such sweep directory")
    for saved_file in sorted(Path(target).glob("*/.hydra/overrides.yaml")):  # data, not trusted
        check_saved_overrides(files.read_yaml(saved_file), str(saved_file))
    saved = sweep_saved(Path(target))
    started = [w for w in started_sweep(saved, Path(target)) if the_sweeps_own(w)]
    given = [w for w in overrides if the_sweeps_own(w)]
    kept = [w for w in overrides if not the_sweeps_own(w)]  # (sweep.resume, plugins, hydra's)
    folders = sweeps_config_dirs(saved)
    if started and None not in (read := (as_read(started), as_read(given))) and read[0] != read[1]:
        instead = f"not {' '.join(given)}" if given else "which this command leaves out"
        raise DlbenchError(  # (found by the first job, after Hydra had started)
            f"sweep.resume={target} finishes a sweep with the words that started it ({' '.join(started)}), "
            f"{instead}: {terminal.command('-m', *flags, *started, *kept)}{config_dirs_note(folders)}"
        )
    check_same_shape(saved, overrides, target)
    # (its presets unknown, or shipped ones in place of the user's; a folder of their own given: theirs)
    if folders and "--config-dir" not in flags:
        raise DlbenchError(
            f"sweep.resume={target} finishes a sweep that read configs this command does not "
            f"read{config_dirs_note(folders)}"
        )
    return overrides if sweep_dir is not None else [*overrides, terminal.override("hydra.sweep.dir", target)]


# Hydra's settings that choose a sweep's jobs (a search's trials: hydra.sweeper.*) and their
# folders (hydra.sweep.subdir); the others (hydra.launcher.*: a longer time limit) may change
SHAPING = ("hydra.sweep.subdir", "hydra.sweeper.")


def check_same_shape(saved: dict, overrides: list[str], target: str) -> None:
    """A sweep.resume that gives a hydra.sweep.subdir or hydra.sweeper.* word other than the one
    that started the sweep (its multirun.yaml's) is refused: a new subdir ran every job again
    beside the finished ones. (One it leaves out is not: the commands dlbench prints hold the
    sweep's own words alone, never Hydra's from a file.)"""
    words = saved_at(saved, "hydra", "overrides", "hydra")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        return

    def shaping(given: list[str]) -> list[str]:
        return [w for w in given if terminal.key_of(w).lstrip("+~").startswith(SHAPING)]

    given = shaping(overrides)
    named = {terminal.key_of(w).lstrip("+~") for w in given}
    started = [w for w in shaping(words) if terminal.key_of(w).lstrip("+~") in named]
    if None not in (read := (as_read(started), as_read(given))) and read[0] != read[1]:
        raise DlbenchError(
            f"sweep.resume={target} finishes a sweep with the Hydra settings that chose its jobs and "
            f"their folders as it started ({' '.join(started) or 'none'}), not "
            f"{' '.join(given) or 'none'}: give the same (hydra.launcher.* may change)"
        )


def the_sweeps_own(word: str) -> bool:
    """Whether a word is one that made a sweep's jobs (not sweep.*, plugins, nor Hydra's own)."""
    return terminal.root_of(word) not in IGNORED_ROOTS and terminal.root_of(word).split("/")[0] != "hydra"


def as_read(words: list[str]) -> list[tuple] | None:
    """Words as Hydra reads them (`[64, 32]` is `[64,32]`; a sweep its values), in any order
    where each key is set once (launch.in_order); None where one cannot be read without a config
    (`glob(...)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, read = OverridesParser.create(), []
    try:
        for o in map(parser.parse_override, words):
            values = o.sweep_string_iterator() if o.is_sweep_override() else [o.get_value_element_as_str()]
            read.append((o.type.name, o.get_key_element(), tuple(values)))
    except HydraException:
        return None
    return sorted(read) if len({key for _, key, _ in read}) == len(read) else read


def sweeps_config_dirs(saved: dict, given: str | None = None) -> list[str]:
    """Each config folder of the user's a sweep searched (`saved`, its multirun.yaml:
    hydra.runtime.config_sources) that this command does not (`given`: its --config-dir, where
    it is not searched yet) and that is still there: its presets are unknown without it. The
    folders are data (the sweep may be someone else's): named as text, never searched unasked
    nor put in a printed command (a config folder can name plugins: code dlbench imports)."""
    sources = saved_at(saved, "hydra", "runtime", "config_sources")
    searched = {str(folder) for folder in searchpath.user_config_dirs()}
    searched |= {str(Path(given).expanduser().resolve())} if given else set()
    words: list[str] = []
    for source in sources if isinstance(sources, list) else []:
        if not isinstance(source, dict) or source.get("provider") != "dlbench-user":
            continue
        path = source.get("path")
        # (a folder moved away: not named; os.path.isdir is False for any path it cannot look at)
        if isinstance(path, str) and path not in searched and os.path.isdir(path):
            words.append(path)
    return words


def config_dirs_note(folders: list[str]) -> str:
    """What a command that finishes a sweep adds where the sweep read config folders this one
    does not (`sweeps_config_dirs`): their names as data, and the user's choice to give them."""
    if not folders:
        return ""
    named = ", ".join(map(terminal.shell_word, folders))
    return (
        f"; the sweep also read the configs in {named} (its multirun.yaml says): add --config-dir "
        "with your own config folder (a config folder can name plugins, code dlbench imports: "
        "dlbench does not put a folder a sweep names into a command for you)"
    )


def sweep_saved(sweep_dir: Path) -> dict:
    """The sweep's multirun.yaml in `sweep_dir`, as plain data (nothing in it is resolved); {}
    where there is none, or it cannot be read."""
    try:
        saved = files.read_yaml(sweep_dir / "multirun.yaml")
    except DlbenchError:
        return {}
    return saved if isinstance(saved, dict) else {}


def saved_at(saved: object, *keys: str) -> object:
    """The value at `keys` in saved YAML data, or None."""
    for key in keys:
        saved = saved.get(key) if isinstance(saved, dict) else None
    return saved


def started_sweep(saved: dict, sweep_dir: Path) -> list[str]:
    """The overrides that started the sweep in `sweep_dir` (`saved`: its multirun.yaml), for a command
    that finishes it, where every value they give passes the allow-list of a saved run's
    overrides (the folder is data, and a printed command is pasted); else none. Plugins are
    left out, as a saved run's are: naming code to import is the user's own word."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    words = saved_at(saved, "hydra", "overrides", "task")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        return []

    def values(o) -> list:
        if o.value_type is not None and o.value_type.name == "INTERVAL_SWEEP":  # (a search's: its bounds)
            return [o.value().start, o.value().end]
        return list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]

    try:
        each = [
            f"{o.get_key_element()}={value}"
            for o in OverridesParser.create().parse_overrides(list(words))
            for value in values(o)
        ]
        check_saved_overrides(each, str(sweep_dir / "multirun.yaml"))
    except (HydraException, DlbenchError):
        return []
    return [w for w in words if terminal.root_of(w) not in IGNORED_ROOTS]  # (plugins: the user's to name)


def join_process_group(overrides: list[str], cfg: DictConfig) -> list[str]:
    """Under torchrun: join the group and agree on the run directory; only rank 0 writes
    Hydra's files and the log file there."""
    from dlbench.engine import distributed
    from dlbench.engine.device import resolve_device

    distributed.init(resolve_device(str(cfg.device.type)).type == "cuda", cfg.trainer.dist_timeout_s)
    os.environ["DLBENCH_RUN_ID"] = distributed.agree_run_id()
    if distributed.is_main():
        return overrides
    return [*overrides, "hydra.output_subdir=null", "hydra.job_logging.root.handlers=[]"]


def note_a_sweep(cfg: DictConfig, overrides: list[str], said: list[str]) -> None:
    """A config that sets hydra.sweeper.params (a lesson's sweep preset, or one of ./configs or
    --config-dir) runs one job without -m: say so, with the command that runs them all. A
    launcher named without -m launches nothing: the run trains here."""
    launcher = OmegaConf.select(cfg, "hydra.runtime.choices")["hydra/launcher"]
    if any(terminal.key_of(o) == "hydra/launcher" for o in overrides) and launcher != "basic":
        err_console.print(
            terminal.inert(
                f"note: hydra/launcher={launcher} launches a sweep's jobs (-m); this run trains here"
            )
        )
    if not OmegaConf.select(cfg, "hydra.sweeper.params"):
        return
    search = override_value(overrides, "hparams_search")
    if search is not None:  # (Optuna's: a search, not a grid)
        err_console.print(
            f"note: hparams_search={search} is a search (-m runs it); this trains one run with its settings"
        )
        return
    name = override_value(overrides, "experiment")
    what = f"experiment={name}" if name is not None else "this config"
    every = terminal.command("-m", *said)  # (the same command, swept)
    err_console.print(f"note: {what} is a sweep; this runs one job. Run all: {every}")


@hydra.main(config_path=str(SHIPPED), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> float | None:
    """One job of a sweep (or one process of a torchrun group), as Hydra starts it."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir, overrides = Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
    metrics = launch.job(cfg, run_dir, overrides, hydra_cfg, multirun)
    return None if metrics is None else metrics.get(cfg.trainer.monitor)  # what Optuna optimises
