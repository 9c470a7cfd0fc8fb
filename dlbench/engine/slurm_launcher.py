"""dlbench's Slurm launcher: Hydra's submitit launcher (the `[slurm]` extra) with four changes.

- On a cluster without accounting storage, sacct fails at every poll: submitit would print
  "Bypassing sacct error" three times a poll and would never see a job that died without a
  result. Job states come from squeue instead, and the user reads one line saying so.
- A job that ends without a result (cancelled, killed, out of memory) is recorded as failed
  in its directory, so the summary shows it and the other jobs finish.
- Ctrl-C cancels the sweep's Slurm jobs; `sweep.resume=DIR` finishes the sweep later,
  submitting only the jobs that have not finished.
- A sweep with `trainer.nodes=N` asks Slurm for N nodes per job (one task on each); a sweep
  over `trainer.nodes=1,2` submits one array job per node count.

`hydra/launcher=slurm` (configs/hydra/launcher/slurm.yaml) names the Hydra plugin
hydra_plugins/dlbench_submitit_launcher.py, whose `launch` is the one here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import submitit
import yaml
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf, open_dict
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

from dlbench import files
from dlbench.engine import cluster  # noqa: F401  (registers the preset's signal-delay resolver)
from dlbench.errors import StopRequested

log = logging.getLogger("dlbench")


def launch(launcher: Any, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
    """Submit the sweep's jobs as one Slurm array job and wait for their results. `launcher` is
    the Hydra plugin (hydra_plugins/dlbench_submitit_launcher.py): the function each Slurm job
    runs, with its parameters. With sweep.resume, jobs that finished before are not submitted."""
    quiet_submitit()
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in launcher.config.hydra.sweep:  # as Hydra's submitit launcher: hydra.sweep.mode=750
        os.chmod(sweep_dir, mode=int(str(launcher.config.hydra.sweep.mode), 8))
    log.info(f"Slurm: {len(job_overrides)} job(s), sweep directory {sweep_dir}")
    returns, by_nodes, folders = {}, {}, {}  # the calls of each node count: one array job each
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        cfg = job_config(launcher, list(overrides), idx)
        folders[idx] = job_dir(cfg)
        if (done := finished_before(cfg, list(overrides))) is not None:
            log.info(f"\t#{idx} : finished before, skipped (sweep.resume)")
            returns[idx] = done
            continue
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        call = (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
        by_nodes.setdefault(int(cfg.trainer.nodes), []).append(call)
    jobs, calls = [], []
    for nodes, group in by_nodes.items():
        jobs += executor(launcher, nodes).map_array(launcher, *zip(*group, strict=True))
        calls += group
    try:
        for job, call in zip(jobs, calls, strict=True):
            returns[call[2]] = result(job, call[0], folders[call[2]])
    except (KeyboardInterrupt, StopRequested):  # Ctrl-C, or a stop signal to this process
        for job in jobs:
            job.cancel(check=False)
        arrays = sorted({job.job_id.split("_")[0] for job in jobs})
        log.warning(f"cancelled Slurm job {', '.join(arrays)} (the sweep's jobs)")
        raise  # (the command prints how to finish the sweep: commands/train.py's run_checked)
    return [returns[idx] for idx in sorted(returns)]


def executor(launcher: Any, nodes: int) -> submitit.AutoExecutor:
    """submitit's executor with the launcher's parameters (as the plugin sets them up); a run
    with trainer.nodes=N asks for N nodes, one task on each (cluster.torchrun_job)."""
    params = dict(launcher.params)
    if nodes > 1:
        params["nodes"] = nodes
    out = submitit.AutoExecutor(
        cluster="slurm",
        folder=params.pop("submitit_folder"),
        slurm_max_num_timeout=params.pop("max_num_timeout"),
    )
    base_keys = set(OmegaConf.structured(BaseQueueConf).keys())
    out.update_parameters(**{k if k in base_keys else f"slurm_{k}": v for k, v in params.items()})
    return out


def job_config(launcher: Any, overrides: list[str], idx: int) -> DictConfig:
    """Job number idx's config, as its Slurm job will compose it."""
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(cfg):
        cfg.hydra.job.num = idx
    return cfg


def job_dir(cfg: DictConfig) -> Path:
    return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)


def finished_before(cfg: DictConfig, overrides: list[str]) -> JobReturn | None:
    """With sweep.resume: the result of a job (its config) that finished in an earlier attempt."""
    if not cfg.sweep.resume:
        return None
    metrics = job_dir(cfg) / "metrics.json"
    if not metrics.is_file():
        return None
    value = json.loads(metrics.read_text()).get(cfg.trainer.monitor)
    return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=value)


def result(job: SlurmJob, overrides: list[str], where: Path) -> JobReturn:
    """The job's own JobReturn. A job that ended without one, or failed outside dlbench's own
    error handling, is recorded as failed in its directory (the summary shows it;
    sweep.resume runs it again)."""
    try:
        return job.results()[0]
    except UncompletedJobError:  # no result at all: killed, cancelled, its node lost
        reason = f"ended without a result ({job.state})"
    except FailedJobError as err:  # an error outside dlbench's own handling (submitit, Hydra)
        lines = [line for line in str(err).splitlines() if line.strip() and not line.startswith("-")]
        reason = f"failed: {lines[-1].strip() if lines else err}"
    (where / ".hydra").mkdir(parents=True, exist_ok=True)
    if not (where / ".hydra" / "overrides.yaml").is_file():  # it never started
        files.write_text(where / ".hydra" / "overrides.yaml", yaml.safe_dump(overrides))
    if not (where / "error.txt").is_file():
        files.write_text(
            where / "error.txt", f"Slurm job {job.job_id} {reason}; its log: {job.paths.stderr}\n"
        )
    return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)


def quiet_submitit() -> None:
    """Job states from squeue where the cluster keeps no accounting (said in one line), and at
    most one line about sacct failing where it does."""
    submitit_log = logging.getLogger("submitit")
    if not any(isinstance(f, OneSacctWarning) for f in submitit_log.filters):
        submitit_log.addFilter(OneSacctWarning())
    if not isinstance(SlurmJob.watcher, SqueueWatcher) and not accounting_enabled():
        SlurmJob.watcher = SqueueWatcher(delay_s=10)  # squeue is cheap: at least every 10 s
        log.info("job states come from squeue (this cluster has no accounting storage)")


def accounting_enabled() -> bool:
    """Whether the cluster keeps job accounting, which sacct reads."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return True  # leave submitit as it is
    return "accounting_storage/none" not in out.stdout


class OneSacctWarning(logging.Filter):
    """submitit warns at every poll that sacct failed: keep the first warning, as one line."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        if self.said:
            return False
        self.said = True
        record.msg, record.args = "sacct fails on this cluster, so job states may lag (said once)", ()
        return True


class SqueueWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher, asking squeue instead of sacct. A job that squeue no longer
    lists has ended: Slurm forgets a finished job MinJobAge seconds after it ends."""

    FINAL = {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
    }
    GONE = "ENDED (no longer in squeue)"

    def _make_command(self) -> list[str] | None:
        ids = sorted({job.split("_")[0] for job in self._registered - self._finished})
        if not ids:
            return None
        return [
            "squeue",
            "--noheader",
            "--array",
            "--states=all",
            "--format=%i|%T",
            f"--jobs={','.join(ids)}",
        ]

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return  # ask again at the next poll
        if done.returncode and "Invalid job id" not in done.stderr:
            return  # the controller did not answer: ask again at the next poll
        states = dict(line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)
        for job_id in self._registered - self._finished:
            self._info_dict[job_id] = {"JobID": job_id, "State": states.get(job_id, self.GONE)}
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)
        self._last_status_check = time.time()

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        state = self.get_state(job_id, mode=mode)
        return state in self.FINAL or state == self.GONE
