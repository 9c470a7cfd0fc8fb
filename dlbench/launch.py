"""Setting one run up and seeing it through, the same for the command line, a sweep's job, a
torchrun process and `dlbench.train()`:

- `run_once`: a run that Hydra does not start (the command line's single run, the Python API):
  its folder, the job's environment (`hydra.job.env_set`) and its log file, as Hydra would;
- `job`: one run or one job of a sweep: the sweep's bookkeeping (fail-fast, `sweep.resume`,
  requeued Slurm jobs, machine sharing), then training.train, and any failure turned into one
  message (and error.txt in the run's folder) or, under the Python API, one DlbenchError; a
  stop signal ends in a checkpoint and exit status 75 (or submitit's requeue).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dlbench import errors, files, plugins, rundir, searchpath, summary, terminal
from dlbench.engine import cluster
from dlbench.engine.logging import FILES_ONLY, console, print_error
from dlbench.errors import DlbenchError, FolderInUse, Preempted, first_line


def run_once(
    cfg: DictConfig, hydra_node: DictConfig, overrides: list[str], raise_errors: bool = False
) -> dict[str, float] | None:
    """One run, started here rather than by Hydra: its config is the one the checks composed
    (composing it again in Hydra cost half a second of every run's start-up). What Hydra's
    run would set up is set up the same way: the run folder, the job's environment
    (hydra.job.env_set) and its log file (hydra.job_logging, hydra.verbose)."""
    import logging

    from hydra.core.utils import configure_log

    try:
        run_dir = Path(str(OmegaConf.select(hydra_node, "hydra.run.dir"))).absolute()
    except OmegaConfBaseException as err:  # (an interpolation the checks left to the job: it names no key)
        raise DlbenchError(f"hydra.run.dir: {first_line(err)}") from None
    made = rundir.new_folders(run_dir)  # (left as found on a refusal)
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
        return job(cfg, run_dir, overrides, hydra_node.hydra, multirun=False, raise_errors=raise_errors)
    except (SystemExit, DlbenchError) as refused:
        if getattr(refused, "code", 2) == 2:  # bad input: a run refused before it began leaves nothing
            remove_if_untouched(made, run_dir)
        raise
    finally:  # as before the run (the next command in this process starts clean)
        for handler in [h for h in root.handlers if h not in before]:  # the run's log file
            root.removeHandler(handler)
            # (its last lines on a full disk: the run's own error, already raised, says so)
            with contextlib.suppress(OSError):
                handler.close()
        for handler in before:  # (Hydra's logging config took a notebook's own away, and closed it)
            if isinstance(handler, logging.FileHandler) and handler.stream is None:
                handler.mode = "a"  # (a closed mode='w' file is never opened again: its lines were lost)
            root.addHandler(handler)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def remove_if_untouched(made: list[Path], run_dir: Path) -> None:
    """Remove the folders this run made (`made`, deepest first) when the run wrote nothing but
    the error.txt of its refusal (device=cuda without CUDA, data that cannot be fetched)."""
    if run_dir not in made or not set(os.listdir(run_dir)) <= {"error.txt"}:
        return
    (run_dir / "error.txt").unlink(missing_ok=True)
    rundir.remove_empty(made)


def verbose_loggers(verbose: Any) -> list[str]:
    """The loggers hydra.verbose names (true: the root's level, no name); anything else is refused."""
    if isinstance(verbose, bool):
        return []
    names = [verbose] if isinstance(verbose, str) else list(verbose) if OmegaConf.is_list(verbose) else None
    if names is None or not all(isinstance(name, str) for name in names):
        raise DlbenchError(f"hydra.verbose={verbose}: true, false, a logger's name, or a list of names")
    return names


def job(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    hydra_cfg: DictConfig,
    multirun: bool,
    raise_errors: bool = False,
) -> dict[str, float] | None:
    """One run or one job of a sweep: train, and turn any failure into a message (and
    error.txt in the run dir), or with `raise_errors` (the Python API) into a DlbenchError.
    Returns the final metrics (None: skipped or failed)."""
    from dlbench.training import train

    stop_file = Path(hydra_cfg.sweep.dir) / ".stop" if multirun else None
    if multirun:  # the job's own overrides (sweep.resume, sweep.fail_fast: the sweep's, not recorded)
        overrides = [o for o in overrides if not o.startswith("sweep.")]
        # A sweep.resume with other overrides than the sweep's is the command's error: said once,
        # in the sweep's folder (the command exits 2 with it), never in a job's, which may hold
        # a finished run; the other jobs are left as they are.
        refused = Path(hydra_cfg.sweep.dir) / rundir.REFUSED
        if refused.exists():
            return None
        try:
            record_job(run_dir, overrides, resuming=bool(cfg.sweep.resume) or cluster.in_job())
        except DlbenchError as err:
            files.write_text(refused, f"{err}\n")
            return None
    try:
        if stop_file is not None and stop_file.exists():  # sweep.fail_fast: an earlier job failed
            files.write_text(run_dir / "error.txt", f"skipped: {stop_file.read_text().strip()}\n")
            return None
        # A job Slurm requeued (through submitit, after a preemption or its time limit) continues
        # from the checkpoint it wrote when it was stopped, as does every job of `sweep.resume`.
        requeued = cluster.in_job()
        if multirun and (cfg.sweep.resume or requeued):
            if (metrics := summary.read_metrics(run_dir)) is not None:  # finished before: keep it
                console.print(f"job {run_dir.name}: finished before, skipped (sweep.resume)")
                return metrics
            (run_dir / "error.txt").unlink(missing_ok=True)
            if (run_dir / "checkpoints" / "last.pt").is_file():
                with open_dict(cfg):
                    cfg.resume = str(run_dir / "checkpoints" / "last.pt")
            elif rundir.holds_run(run_dir):  # stopped before its first checkpoint: it runs again
                aside = rundir.set_aside(run_dir)
                console.print(
                    f"job {run_dir.name}: no checkpoint to resume from, it runs again (its unfinished "
                    f"attempt's files are in {aside})"
                )
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
        stopped(stop, run_dir, cfg, Path(hydra_cfg.sweep.dir) if multirun else None)
        return None  # submitit did not requeue the job: error.txt says why
    except KeyboardInterrupt:  # Ctrl-C: a run with a checkpoint says how to go on from it
        from dlbench.engine import distributed

        if multirun or not (run_dir / "checkpoints" / "last.pt").is_file() or not distributed.is_main():
            raise
        go_on = resume_call(run_dir, cfg) if raise_errors else resume_command(run_dir, cfg)
        print_error(f"interrupted; checkpoints/last.pt is the run's latest. Continue with: {go_on}")
        if raise_errors:  # dlbench.train(): the caller's KeyboardInterrupt (SystemExit left Python's)
            raise
        raise SystemExit(130) from None
    except cluster.NotRequeued:  # the job's torchrun processes stopped; error.txt says why
        return None
    except Exception as err:
        record = multirun or not cfg.resume
        failed(err, run_dir, multirun, record, cfg.trainer.dist_timeout_s, raise_errors)
        if stop_file is not None and cfg.sweep.fail_fast:
            files.write_text(stop_file, f"job {run_dir.name} failed and sweep.fail_fast is set\n")
        return None
    return metrics


def record_job(run_dir: Path, overrides: list[str], resuming: bool) -> None:
    """A sweep job's overrides in its folder (so the summary lists it even if it fails early).
    `sweep.resume` (or Slurm's requeue: `resuming`) must run each job with the overrides it was
    started with (`sweep.*` aside); a new sweep's job finds no other job in its folder."""
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    if not saved_file.is_file():
        files.write_text(saved_file, yaml.safe_dump(overrides))
        return
    saved = files.read_yaml(saved_file) or []
    # (sweep.resume, sweep.fail_fast: not the job's; resume=: the job was resumed on its own, in
    # place; in any order: the same words compose the same config, retyped or pasted)
    job = in_order([o for o in saved if not o.startswith(("sweep.", "resume="))])
    if job == in_order(overrides):  # (`overrides`: the job's own, sweep.* left out by `job`)
        return
    if not resuming:
        raise DlbenchError(  # (it said "sweep.resume finishes a sweep ...", which no one had typed)
            f"job folder {run_dir.name} already holds another job ({' '.join(saved) or 'no overrides'}): "
            "one of an earlier sweep in this folder (give this one another hydra.sweep.dir), or "
            "hydra.sweep.subdir gives two jobs one folder (its default differs for each: "
            "'hydra.sweep.subdir=${hydra.job.num}')"
        )
    raise DlbenchError(
        f"job {run_dir.name} of this sweep ran with {' '.join(saved) or 'no overrides'}, not "
        f"{' '.join(overrides)}: sweep.resume finishes a sweep with the command that started it"
    )


def in_order(words: list[str]) -> list[str]:
    """A job's overrides as compared: sorted, where each key is set once (any order composes the
    same config); as given where one is set twice (the last one wins)."""
    return sorted(words) if len({terminal.key_of(w) for w in words}) == len(words) else words


def failed(
    err: Exception, run_dir: Path, multirun: bool, record: bool, timeout_s: float, raise_errors: bool = False
) -> None:
    """Report a job's failure: one message, and with `record`, error.txt in the run folder
    (never in a folder of another run, nor in the folder of a run that failed to resume). A bug
    (not a user error) keeps its traceback in error.txt and train.log. A single run exits with
    2 (a user error) or 1 (a bug); with `raise_errors` the error is raised instead."""
    lost = None
    if "dlbench.engine.distributed" in sys.modules:  # a peer of a distributed run died: each survivor says it
        lost = sys.modules["dlbench.engine.distributed"].lost_peer(err, timeout_s, run_dir)
    err = errors.as_user_error(lost or err)
    known = isinstance(err, DlbenchError)
    if not known and os.environ.get("DLBENCH_DEBUG"):
        raise err
    message = str(err) if known else f"{type(err).__name__}: {err}"
    from dlbench.engine import distributed

    if known and not lost and not distributed.is_main():  # the same bad input everywhere: rank 0 says it
        distributed.stopped_here(message, run_dir)  # (or one only it read: rank 0 says that too)
        raise SystemExit(2) from None
    details = "" if known else "\n" + "".join(traceback.format_exception(err))
    if not known and record:  # (a run that failed to resume keeps its log as it was)
        said = f"unexpected error: {first_line(err)}"  # (its traceback, all its lines, follows)
        logging.getLogger("dlbench").error(said, exc_info=err, extra=FILES_ONLY)
    # (rank 0's alone, as it writes the folder: another's "lost contact" took the place of the cause)
    if record and distributed.is_main() and not isinstance(err, FolderInUse) and run_dir.is_dir():
        try:
            files.write_text(run_dir / "error.txt", message + "\n" + details)
        except DlbenchError:
            pass  # the folder cannot be written (a full disk): the message below says why
    if raise_errors:
        raise err
    kept = f"; {run_dir / 'error.txt'} keeps it" if record and (run_dir / "error.txt").is_file() else ""
    if known:
        print_error(*err.lines)
    else:
        print_error(f"unexpected error (set DLBENCH_DEBUG=1 for the traceback{kept}): {first_line(err)}")
    if not multirun:
        raise SystemExit(2 if known else 1) from None


def resume_command(run_dir: Path, cfg: DictConfig) -> str:
    """The command that continues the run this command trained in `run_dir`: resume=, the words
    a resume reads only from the user (searchpath.continue_words), and the plugins this run was
    started with (the user's own words, from the config in memory)."""
    return terminal.command(
        terminal.override("resume", run_dir), *searchpath.continue_words(run_dir, plugins.words(cfg.plugins))
    )


def resume_call(run_dir: Path, cfg: DictConfig) -> str:
    """resume_command as dlbench.train() takes it (the config folders are DLBENCH_CONFIG_PATH's
    there, as they were for this call: no --config-dir)."""
    own = [*searchpath.chosen_here(run_dir), *plugins.words(cfg.plugins)]
    words = [terminal.override("resume", run_dir), *own]
    return f"dlbench.train({', '.join(map(repr, words))})"


def stopped(stop: Preempted, run_dir: Path, cfg: DictConfig, sweep_dir: Path | None = None) -> None:
    """After a stop signal and its checkpoint: say how to continue (a sweep's job: the sweep,
    with sweep.resume), hand the signal on to the handler that was there before (submitit's:
    requeue the Slurm job), else exit with 75. Returns only when submitit would not requeue the
    job (recorded in error.txt)."""
    from dlbench.engine import distributed

    name = signal.Signals(stop.signum).name
    if distributed.is_main():
        if not stop.saved:
            then = "trainer.checkpoint=false: nothing was saved to continue from"
        elif cluster.in_job():
            then = "submitit requeues the job (up to hydra.launcher.max_num_timeout times for time limits)"
        elif sweep_dir is not None:  # (the command prints how to finish it: its words are there)
            then = f"The sweep stops here (its folder: {sweep_dir})"
        else:
            then = f"Continue with: {resume_command(run_dir, cfg)}"
        written = "; checkpoints/last.pt is saved." if stop.saved else ";"
        print_error(f"stopped by {name} after step {stop.step}{written} {then}")
    try:
        cluster.hand_on(stop.signum, signal.getsignal(stop.signum), run_dir)
    except cluster.NotRequeued:
        return
    raise SystemExit(Preempted.EXIT_STATUS)


def check_joblib(cfg: DictConfig | None) -> None:
    """Hydra's joblib launcher runs its jobs in loky's processes whatever `backend` says: another
    backend (threading, multiprocessing) would be ignored, silently."""
    if cfg is None or "Joblib" not in str(OmegaConf.select(cfg, "hydra.launcher._target_")):
        return
    if (backend := OmegaConf.select(cfg, "hydra.launcher.backend")) not in (None, "loky"):
        raise DlbenchError(
            f"hydra.launcher.backend={backend}: Hydra's joblib launcher runs the jobs in loky's processes "
            "whatever this says (leave it out)"
        )


def share_machine(cfg: DictConfig, hydra_cfg) -> None:
    """Jobs running side by side (Hydra's joblib launcher): each takes its share of the CPU
    cores, and with several GPUs each job its own (job number modulo the GPU count)."""
    import torch

    n_jobs = (
        int(hydra_cfg.launcher.get("n_jobs") or 1)
        if "Joblib" in str(hydra_cfg.launcher.get("_target_"))
        else 1
    )
    if n_jobs < 0:  # (joblib's count from the cores: -1 all of them, -2 all but one, ...)
        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    if n_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_jobs))
        if str(cfg.device.type) == "cuda" and torch.cuda.device_count() > 1:
            with open_dict(cfg):
                cfg.device.type = f"cuda:{hydra_cfg.job.num % torch.cuda.device_count()}"
