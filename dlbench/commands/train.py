"""dlbench [OVERRIDES...] and dlbench -m ...: train one run, or a sweep of them, through Hydra.

Before Hydra starts, every combination the command line asks for is composed and checked
(preflight.py), plugins are imported, and `resume=` / `sweep.resume=` read their saved runs
(runs.py). Each job then trains (training.py) and turns any failure into one message, plus
error.txt in its folder; a stop signal ends in a checkpoint and exit status 75.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from rich.text import Text

from dlbench import errors, plugins, preflight, rundir, summary, terminal
from dlbench.commands.runs import check_saved_overrides, override_value, resume_overrides
from dlbench.config_store import new_run_id
from dlbench.engine import cluster
from dlbench.engine.logging import console, err_console, print_error
from dlbench.errors import DlbenchError, FolderInUse, Preempted
from dlbench.searchpath import ENV as CONFIG_PATH_ENV
from dlbench.searchpath import SHIPPED, add_config_dir


def train_command(argv: list[str]) -> int:
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.error = usage_error  # one message, printed as text (not argparse's raw print)
    args = parser.parse_args(argv)
    if args.multirun and args.cfg:
        raise DlbenchError("--cfg prints the config of one run: leave out -m")
    if args.experimental_rerun:
        raise DlbenchError(
            "--experimental-rerun is not supported: it unpickles a file (which can run code). "
            "To run a job again, use resume=<run dir> or sweep.resume=<sweep dir>"
        )
    if args.config_path:
        raise DlbenchError(
            "--config-path replaces dlbench's own configs: add yours with --config-dir DIR "
            "(or a configs/ folder in the current directory)"
        )
    saved_env = {key: os.environ.get(key) for key in (CONFIG_PATH_ENV, "DLBENCH_RUN_ID")}
    if args.config_dir:
        add_config_dir(args.config_dir)  # searched before the shipped tree, here and in every job
    if not saved_env["DLBENCH_RUN_ID"]:  # the checks and Hydra name the same folder
        os.environ["DLBENCH_RUN_ID"] = new_run_id()
    lock, started = None, False
    try:
        overrides = sweep_resume_overrides(resume_overrides(list(args.overrides)))
        one_run = not (args.multirun or args.cfg or args.help or args.hydra_help or args.info)
        checked, folder, hydra_node = [], None, None  # the composed configs, the folder written, hydra
        if not args.multirun and (sweep := sweep_preset(overrides)):
            err_console.print(
                f"note: experiment={sweep} is a sweep; this runs one job. Run all of them: dlbench -m ..."
            )
        if args.cfg:  # print the config composed for the checks (Hydra would compose it again)
            return print_config(overrides, args)
        if args.shell_completion:  # Hydra completes groups, options and keys: it needs the code's nodes
            preflight.store_config_nodes(preflight.file_options())
        else:
            mode = "multirun" if args.multirun else "run" if one_run else "print"
            checked, folder, hydra_node = preflight.check_command(
                overrides, config_name=args.config_name or "config", mode=mode
            )
            cluster.check(overrides, hydra_node)  # Slurm launcher settings that cannot work
            if hydra_node is not None:
                verbose_loggers(hydra_node.hydra.verbose)
        if args.multirun and folder is not None:  # one sweep at a time in a sweep folder
            lock = rundir.RunLock(folder, sweep=True).acquire()
            if override_value(overrides, "sweep.resume") is not None:  # a fail-fast stop of the last attempt
                (folder / ".stop").unlink(missing_ok=True)
        if one_run and checked and hydra_node is not None and not distributed_run(checked[0]):
            run_once(checked[0], hydra_node, list(hydra_node.hydra.overrides.task))
            return 0
        started = True
        return run_checked(argv, args, overrides, checked, one_run, folder if args.multirun else None)
    finally:
        if lock is not None:
            lock.release(wrote=started)
        for key, value in saved_env.items():  # as they were: the next command in this process starts clean
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def usage_error(message: str):
    raise DlbenchError(f"{message} (dlbench --help lists the commands and flags)")


def in_torchrun_group() -> bool:
    """A process torchrun started for a run of several (read without importing torch)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def distributed_run(cfg: DictConfig) -> bool:
    """A process of a torchrun group, or a run that starts one: Hydra starts those."""
    return in_torchrun_group() or cfg.trainer.devices > 1 or cfg.trainer.nodes > 1


def run_checked(
    argv: list[str],
    args,
    overrides: list[str],
    checked: list[DictConfig],
    one_run: bool,
    sweep_dir: Path | None,
) -> int:
    """Start what the checked command line asks for: torchrun, or Hydra (a run or a sweep, whose
    folder says which jobs failed: exit status 1)."""
    if in_torchrun_group():
        if args.multirun:
            raise DlbenchError("a sweep (-m) does not run under torchrun; give its jobs trainer.devices=N")
        overrides = join_process_group(
            overrides, checked[0] if checked else preflight.compose_config(overrides)
        )
    elif one_run and checked and ((trainer := checked[0].trainer).devices > 1 or trainer.nodes > 1):
        from dlbench.engine import distributed

        return distributed.launch(trainer.devices, argv, trainer.nodes, trainer.dist_timeout_s)
    # dlbench writes a run's .hydra/ itself, once the run is built (training.record_run)
    overrides = [*overrides, "hydra.output_subdir=null"]
    sys.argv = ["dlbench", *hydra_flags(argv, args.overrides), *overrides]
    try:
        if args.help or args.hydra_help or args.info:  # Hydra prints these itself: as text, here too
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                hydra_entry()
            terminal.write(printed.getvalue())
        else:
            hydra_entry()
    finally:
        if "dlbench.engine.distributed" in sys.modules:  # a run imported it (and torch)
            sys.modules["dlbench.engine.distributed"].close()
    failed = summary.failed_jobs(sweep_dir) if sweep_dir is not None and sweep_dir.is_dir() else []
    if failed:
        err_console.print(Text.assemble((f"{len(failed)} job(s) failed", "red"), ": ", ", ".join(failed)))
        return 1
    return 0


def print_config(overrides: list[str], args) -> int:
    """--cfg job|hydra|all [--package P] [--resolve], as Hydra prints it."""
    cfg = preflight.compose_with_hydra(overrides, "the command line", args.config_name or "config")
    if args.cfg == "job":
        with open_dict(cfg):
            del cfg["hydra"]
    elif args.cfg == "hydra":
        cfg = OmegaConf.create({"hydra": cfg.hydra})
    node = OmegaConf.select(cfg, args.package) if args.package else cfg
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


def sweep_resume_overrides(overrides: list[str]) -> list[str]:
    """`sweep.resume=DIR` runs the sweep again in DIR (the jobs keep their directories)."""
    target = override_value(overrides, "sweep.resume")
    if target is None or override_value(overrides, "hydra.sweep.dir") is not None:
        return overrides
    if not Path(target).is_dir():
        raise DlbenchError(f"sweep.resume={target}: no such sweep directory")
    for saved_file in sorted(Path(target).glob("*/.hydra/overrides.yaml")):  # data, not trusted
        check_saved_overrides(rundir.read_yaml(saved_file), str(saved_file))
    return [*overrides, f"hydra.sweep.dir={target}"]


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


def sweep_preset(overrides: list[str]) -> str | None:
    """The experiment named on the command line, if it is a sweep (it sets hydra.sweeper.params)."""
    name = override_value(overrides, "experiment")
    path = preflight.CONFIG_DIR / "experiment" / f"{name}.yaml"
    if name is None or not path.is_file():
        return None
    node = yaml.safe_load(path.read_text()) or {}
    return name if (node.get("hydra") or {}).get("sweeper", {}).get("params") else None


@hydra.main(config_path=str(SHIPPED), config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> float | None:
    """One job of a sweep (or one process of a torchrun group), as Hydra starts it."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    return job(cfg, Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task), hydra_cfg, multirun)


def run_once(cfg: DictConfig, hydra_node: DictConfig, overrides: list[str]) -> None:
    """One run, started here rather than by Hydra: its config is the one the checks composed
    (composing it again in Hydra cost half a second of every run's start-up). What Hydra's
    run would set up is set up the same way: the run folder, the job's environment
    (hydra.job.env_set) and its log file (hydra.job_logging, hydra.verbose)."""
    import logging

    from hydra.core.utils import configure_log

    run_dir = Path(str(OmegaConf.select(hydra_node, "hydra.run.dir"))).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(hydra_node):
        hydra_node.hydra.runtime.output_dir = str(run_dir.absolute())
        hydra_node.hydra.runtime.cwd = os.getcwd()
    os.environ.update({str(k): str(v) for k, v in (hydra_node.hydra.job.env_set or {}).items()})
    root = logging.getLogger()
    loggers = [root, *map(logging.getLogger, verbose_loggers(hydra_node.hydra.verbose))]
    before, levels = list(root.handlers), [logger.level for logger in loggers]
    configure_log(hydra_node.hydra.job_logging, hydra_node.hydra.verbose)
    try:
        job(cfg, run_dir, overrides, hydra_node.hydra, multirun=False)
    finally:  # as before the run (the next command in this process starts clean)
        for handler in [h for h in root.handlers if h not in before]:  # the run's log file
            root.removeHandler(handler)
            handler.close()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def verbose_loggers(verbose: Any) -> list[str]:
    """The loggers hydra.verbose names (true: the root's level, no name); anything else is refused."""
    if isinstance(verbose, bool):
        return []
    names = [verbose] if isinstance(verbose, str) else list(verbose) if OmegaConf.is_list(verbose) else None
    if names is None or not all(isinstance(name, str) for name in names):
        raise DlbenchError(f"hydra.verbose={verbose}: true, false, a logger's name, or a list of names")
    return names


def job(
    cfg: DictConfig, run_dir: Path, overrides: list[str], hydra_cfg: DictConfig, multirun: bool
) -> float | None:
    """One run or one job of a sweep: train, and turn any failure into a message (and
    error.txt in the run dir). Returns the monitored metric (what an Optuna search optimises)."""
    from dlbench.training import train

    stop_file = Path(hydra_cfg.sweep.dir) / ".stop" if multirun else None
    try:
        if multirun:
            record_job(run_dir, overrides)
        if stop_file is not None and stop_file.exists():  # sweep.fail_fast: an earlier job failed
            rundir.write_text(run_dir / "error.txt", f"skipped: {stop_file.read_text().strip()}\n")
            return None
        # A job Slurm requeued (through submitit, after a preemption or its time limit) continues
        # from the checkpoint it wrote when it was stopped, as does every job of `sweep.resume`.
        requeued = cluster.in_job()
        if multirun and (cfg.sweep.resume or requeued):
            if (metrics := summary.read_metrics(run_dir)) is not None:  # finished before: keep it
                console.print(f"job {run_dir.name}: finished before, skipped (sweep.resume)")
                return metrics.get(cfg.trainer.monitor)
            (run_dir / "error.txt").unlink(missing_ok=True)
            if (run_dir / "checkpoints" / "last.pt").is_file():
                with open_dict(cfg):
                    cfg.resume = str(run_dir / "checkpoints" / "last.pt")
        plugins.load_entry_points()  # in a sweep's worker process too (joblib, Slurm)
        plugins.load(list(cfg.plugins), "the run's config")
        if multirun:
            share_machine(cfg, hydra_cfg)
        if multirun and (cfg.trainer.devices > 1 or cfg.trainer.nodes > 1):
            if not cluster.in_job():
                raise DlbenchError(
                    "trainer.devices > 1 or trainer.nodes > 1 starts torchrun for one run: run it without "
                    "-m, or give each job its own torchrun on Slurm (hydra/launcher=slurm)"
                )
            metrics = cluster.torchrun_job(cfg, run_dir, overrides) or {}
        else:
            metrics = train(cfg, run_dir, overrides, hydra_cfg)
    except Preempted as stop:
        stopped(stop, run_dir)
        return None  # submitit did not requeue the job: error.txt says why
    except cluster.NotRequeued:  # the job's torchrun processes stopped; error.txt says why
        return None
    except Exception as err:
        failed(
            err, run_dir, multirun, record=multirun or not cfg.resume, timeout_s=cfg.trainer.dist_timeout_s
        )
        if stop_file is not None and cfg.sweep.fail_fast:
            rundir.write_text(stop_file, f"job {run_dir.name} failed and sweep.fail_fast is set\n")
        return None
    return metrics.get(cfg.trainer.monitor)


def record_job(run_dir: Path, overrides: list[str]) -> None:
    """A sweep job's overrides in its folder (so the summary lists it even if it fails early).
    `sweep.resume` must run each job with the overrides it was started with (`sweep.*` aside)."""
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        rundir.write_text(saved_file, yaml.safe_dump(overrides))
        return
    saved = rundir.read_yaml(saved_file) or []
    job = [o for o in saved if not o.startswith("sweep.")]  # sweep.resume, sweep.fail_fast: not the job's
    if job != [o for o in overrides if not o.startswith("sweep.")]:
        raise DlbenchError(
            f"job {run_dir.name} of this sweep ran with {' '.join(saved) or 'no overrides'}, not "
            f"{' '.join(overrides)}: sweep.resume finishes a sweep with the command that started it"
        )


def failed(err: Exception, run_dir: Path, multirun: bool, record: bool, timeout_s: float) -> None:
    """Report a job's failure: one message, and with `record`, error.txt in the run folder
    (never in a folder of another run, nor in the folder of a run that failed to resume). A bug
    (not a user error) keeps its traceback in error.txt and train.log. A single run exits with
    2 (a user error) or 1 (a bug)."""
    lost = None
    if "dlbench.engine.distributed" in sys.modules:  # a peer of a distributed run died: each survivor says it
        lost = sys.modules["dlbench.engine.distributed"].lost_peer(err, timeout_s)
    err = errors.as_user_error(lost or err)
    known = isinstance(err, DlbenchError)
    if not known and os.environ.get("DLBENCH_DEBUG"):
        raise err
    message = str(err) if known else f"{type(err).__name__}: {err}"
    from dlbench.engine import distributed

    if known and not lost and not distributed.is_main():  # the same bad input everywhere: rank 0 says it
        raise SystemExit(2) from None
    details = "" if known else "\n" + "".join(traceback.format_exception(err))
    if not known and record:  # (a run that failed to resume keeps its log as it was)
        logging.getLogger("dlbench").error(f"unexpected error: {message}{details}")
    if record and not isinstance(err, FolderInUse) and run_dir.is_dir():  # (another machine's rank: none)
        try:
            rundir.write_text(run_dir / "error.txt", message + "\n" + details)
        except DlbenchError:
            pass  # the folder cannot be written (a full disk): the message below says why
    print_error(message if known else f"unexpected error (set DLBENCH_DEBUG=1 for the traceback): {message}")
    if not multirun:
        raise SystemExit(2 if known else 1) from None


def stopped(stop: Preempted, run_dir: Path) -> None:
    """After a stop signal and its checkpoint: say how to continue, hand the signal on to the
    handler that was there before (submitit's: requeue the Slurm job), else exit with 75.
    Returns only when submitit would not requeue the job (recorded in error.txt)."""
    from dlbench.engine import distributed

    name = signal.Signals(stop.signum).name
    if distributed.is_main():
        then = (
            "submitit requeues the job (up to hydra.launcher.max_num_timeout times for time limits)"
            if cluster.in_job()
            else f"Continue with: dlbench resume={run_dir}"
        )
        print_error(f"stopped by {name} after step {stop.step}; checkpoints/last.pt is saved. {then}")
    try:
        cluster.hand_on(stop.signum, signal.getsignal(stop.signum), run_dir)
    except cluster.NotRequeued:
        return
    raise SystemExit(Preempted.EXIT_STATUS)


def share_machine(cfg: DictConfig, hydra_cfg) -> None:
    """Jobs running side by side (Hydra's joblib launcher): each takes its share of the CPU
    cores, and with several GPUs each job its own (job number modulo the GPU count)."""
    import torch

    n_jobs = (
        int(hydra_cfg.launcher.get("n_jobs") or 1)
        if "Joblib" in str(hydra_cfg.launcher.get("_target_"))
        else 1
    )
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if n_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_jobs))
        if str(cfg.device.type) == "cuda" and torch.cuda.device_count() > 1:
            with open_dict(cfg):
                cfg.device.type = f"cuda:{hydra_cfg.job.num % torch.cuda.device_count()}"
