"""A sweep's jobs on Slurm: the settings checked before submitting, and what a job does.

The launcher itself is engine/slurm_launcher.py. Here:

- `check`: Slurm launcher settings that cannot work stop the command before anything is
  submitted; the preset's warning-signal lead time fits the time limit (`auto_signal_delay`).
- In a job: `hand_on` passes a stop signal to submitit, which requeues the job (or says why
  not: the job is then recorded as failed); `requeue_note` says which requeue this is;
  `torchrun_job` runs a job with trainer.devices > 1 or trainer.nodes > 1 (one torchrun per node).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlbench import files, terminal
from dlbench.engine.signals import STOP_SIGNALS
from dlbench.errors import DlbenchError, environ_number

SLURM_CHECK_S = 30  # slurmctld checks time limits every 30 s: the warning may come this much early
MIN_WORK_S = 10  # a job must be able to start before the warning can come


def in_torchrun_group() -> bool:
    """A process torchrun started for a run of several (read without importing torch)."""
    return environ_number("WORLD_SIZE", 1) > 1


# ---- the warning signal ----------------------------------------------------------------------
def auto_signal_delay(timeout_min: int) -> int:
    """The preset's lead time of the warning signal: 15 s per minute of the limit, at most 120 s.

    Slurm sends it between signal_delay_s and signal_delay_s + 30 s before the limit, so a
    1-minute job is signalled between 15 and 45 s after it starts.
    """
    return min(120, 15 * int(timeout_min))


OmegaConf.register_new_resolver("dlbench_signal_delay", auto_signal_delay, replace=True)


def check(overrides: list[str], cfg: DictConfig) -> None:
    """Refuse Slurm launcher settings that cannot work, before anything is submitted. `cfg` is
    the first job's config as the checks composed it, `hydra` node included."""
    if not any(o.lstrip("+").startswith("hydra/launcher=slurm") for o in overrides):
        return
    launcher, trainer = cfg.hydra.launcher, cfg.trainer
    mode = OmegaConf.select(cfg, "hydra.sweep.mode")
    if mode is not None and not re.fullmatch(r"[0-7]{3,4}", str(mode)):
        raise DlbenchError(f"hydra.sweep.mode={mode}: an octal file mode, such as 750")
    limit_s = int(launcher.timeout_min) * 60
    delay = int(launcher.signal_delay_s)
    if limit_s - delay - SLURM_CHECK_S < MIN_WORK_S:
        raise DlbenchError(
            f"hydra.launcher.signal_delay_s={delay} leaves a job of timeout_min={launcher.timeout_min} "
            f"no time to train: Slurm may send the warning signal up to {delay + SLURM_CHECK_S} s before "
            f"the limit. Use signal_delay_s <= {max(0, limit_s - SLURM_CHECK_S - MIN_WORK_S)}, or leave "
            f"it out (the preset then uses {auto_signal_delay(launcher.timeout_min)})"
        )
    if trainer.nodes > 1 and launcher.nodes not in (1, trainer.nodes):
        raise DlbenchError(
            f"trainer.nodes={trainer.nodes} but hydra.launcher.nodes={launcher.nodes}: leave the "
            "launcher's out (dlbench sets it) or make them equal"
        )
    if (trainer.nodes > 1 or trainer.devices > 1) and launcher.tasks_per_node != 1:
        raise DlbenchError(
            f"hydra.launcher.tasks_per_node={launcher.tasks_per_node}: dlbench starts trainer.devices "
            "processes on each node itself (torchrun), so each node runs one task; leave it at 1"
        )


# ---- inside a job ----------------------------------------------------------------------------
def in_job() -> bool:
    """True in a job that Hydra's submitit launcher started on Slurm."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm"


def requeue_count() -> int:
    """How many times Slurm has requeued this job (0 outside Slurm)."""
    return environ_number("SLURM_RESTART_COUNT", 0)


def requeue_note() -> str:
    """' (requeue K)' in a job Slurm requeued, else ''."""
    return f" (requeue {requeue_count()})" if requeue_count() else ""


def requeue_message(step: int) -> str:
    """'resumed at step N (requeue K), S s after the job's process started': how much of its time
    slot a requeued job spends starting up."""
    message = f"resumed at step {step}{requeue_note()}"
    started = seconds_since_start()
    return message if started is None else f"{message}, {started:.1f} s after the job's process started"


def seconds_since_start() -> float | None:
    """How long this process has run (from /proc; None where there is none)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: the start time
    except (OSError, ValueError, IndexError):
        return None


def cpus() -> int | None:
    """The CPUs Slurm gave this job's task (cpus_per_task), or None outside Slurm."""
    value = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(value) if value and value.isdigit() else None


def hand_on(signum: int, handler: Callable | int | None, run_dir: Path) -> None:
    """Pass a stop signal on to the handler that was there before. In a Slurm job that is
    submitit's, which requeues the job and exits; when it will not requeue (the job reached
    its time limit more than hydra.launcher.max_num_timeout times), the job is recorded as
    failed in error.txt, to be finished with sweep.resume."""
    if not callable(handler) or getattr(handler, "dlbench_own", False):  # (the CLI's own: nothing to do)
        return
    if not type(getattr(handler, "__self__", None)).__module__.startswith("submitit"):
        handler(signum, None)
        return
    try:
        handler(signum, None)  # requeues, then exits (SystemExit)
    except Exception as err:  # submitit's "Job not requeued because: ..."
        reason = str(err).strip().rstrip(".").removeprefix("Job not requeued because: ")
        files.write_text(
            run_dir / "error.txt",
            f"stopped by {signal.Signals(signum).name} and not requeued: {reason} "
            "(hydra.launcher.max_num_timeout); checkpoints/last.pt is saved, finish it with sweep.resume\n",
        )
        raise NotRequeued(reason) from None


class NotRequeued(Exception):
    """submitit did not requeue the job; its error.txt says why."""


def torchrun_job(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict[str, float] | None:
    """A sweep job with trainer.devices > 1 or trainer.nodes > 1, on Slurm: this task (one per
    node) runs torchrun, whose processes train the job in its directory. A stop signal reaches
    those processes from Slurm; this task passes it to submitit once they have saved last.pt."""
    from dlbench.engine import distributed
    from dlbench.errors import Preempted

    nodes = environ_number("SLURM_JOB_NUM_NODES", 1)
    if nodes != cfg.trainer.nodes:
        raise DlbenchError(f"trainer.nodes={cfg.trainer.nodes}, but this Slurm job has {nodes} node(s)")
    argv = [*overrides, terminal.override("hydra.run.dir", run_dir), "hydra.output_subdir=null"]
    if cfg.resume:
        argv.append(terminal.override("resume", cfg.resume))
    received: list[tuple[int, float]] = []  # (signal, when)
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append((signum, time.time())))
        for sig in STOP_SIGNALS
    }
    try:
        status = distributed.launch(cfg.trainer.devices, argv, cfg.trainer.nodes, cfg.trainer.dist_timeout_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status and received and stopped_with_checkpoint(status, run_dir, received[0][1]):
        hand_on(received[0][0], previous[received[0][0]], run_dir)
        raise SystemExit(Preempted.EXIT_STATUS)
    if status:
        raise DlbenchError(
            f"the job's torchrun processes failed (exit status {status}); see {run_dir}/train.log"
        )
    metrics = run_dir / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.is_file() else None


def stopped_with_checkpoint(status: int, run_dir: Path, signalled_at: float) -> bool:
    """Whether torchrun's processes stopped for a stop signal, having saved last.pt: they exit
    with 75, but a process that another one's exit takes down may report a signal or an abort
    instead; last.pt written after the signal says the stop was orderly."""
    from dlbench.errors import Preempted

    last = run_dir / "checkpoints" / "last.pt"
    return status == Preempted.EXIT_STATUS or (last.is_file() and last.stat().st_mtime >= signalled_at)
