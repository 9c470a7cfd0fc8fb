"""Sweeps on a real Slurm: a one-node cluster on this machine (scripts/slurm_cluster.sh: munged,
slurmctld, slurmd), jobs submitted by Hydra's submitit launcher through dlbench's preset.

Preemption and time limits end to end: a job signalled mid-run writes last.pt, submitit
requeues it, the requeued job resumes from it and ends bitwise equal to an uninterrupted run.
Every job runs the real `dlbench -m hydra/launcher=slurm ...` command a user would type.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clusters import REPO, assert_like_one_process, epochs_logged, unavailable, wait_for
from conftest import user_env

from dlbench import compose
from dlbench.engine import checkpoint, cluster, rendezvous
from dlbench.errors import DlbenchError
from dlbench.training import train

SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
TRAIN = ["trainer.deterministic=true", "trainer.progress=plain"]


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """A running one-node Slurm cluster (started once; parallel workers share it); returns the
    environment its commands need."""
    if os.geteuid() != 0:
        unavailable("starting Slurm needs root")
    if shutil.which("slurmctld") is None:
        unavailable("Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)")
    started = subprocess.run(
        [REPO / "scripts" / "slurm_cluster.sh", "start"], capture_output=True, text=True, timeout=120
    )
    if started.returncode:
        unavailable(f"the Slurm cluster did not start: {started.stderr.strip()}")
    return {"SLURM_CONF": os.environ.get("DLBENCH_SLURM_DIR", "/tmp/dlbench-slurm") + "/slurm.conf"}


@pytest.fixture(scope="session")
def slurm_two_nodes() -> dict[str, str]:
    """A second cluster with two nodes, each in a network namespace of its own (so each has its
    own address, as separate machines would); stopped at the end, namespaces and all."""
    if os.geteuid() != 0:
        unavailable("starting Slurm needs root")
    if shutil.which("slurmctld") is None or shutil.which("nsenter") is None:
        unavailable("Slurm or nsenter is not installed (apt-get install slurmctld slurmd slurm-client munge)")
    where = {
        "DLBENCH_SLURM_DIR": "/tmp/dlbench-slurm-2n",
        "DLBENCH_SLURM_PORT": "16827",
        "DLBENCH_SLURM_NODES": "2",
    }
    script = [REPO / "scripts" / "slurm_cluster.sh"]
    started = subprocess.run(
        [*script, "start"], capture_output=True, text=True, timeout=120, env={**os.environ, **where}
    )
    if started.returncode:
        unavailable(f"the two-node Slurm cluster did not start: {started.stderr.strip()}")
    yield {"SLURM_CONF": where["DLBENCH_SLURM_DIR"] + "/slurm.conf"}
    subprocess.run([*script, "stop"], capture_output=True, env={**os.environ, **where})


def dlbench(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """`dlbench ARGS...` started in the background, as a user would type it."""
    return subprocess.Popen(
        [sys.executable, "-m", "dlbench", *args],
        cwd=cwd,
        env=user_env(**env, COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = process.communicate(timeout=timeout)
    return out


def slurm_job_id(sweep: Path) -> str:
    """The Slurm job id of a one-job sweep (the name of its .submitit folder)."""
    wait_for(
        lambda: any(p.name.isdigit() for p in (sweep / ".submitit").glob("*")), 60, "the job's submission"
    )
    return next(p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit())


def signal_job(job_id: str, env: dict[str, str], name: str = "USR2") -> None:
    """What Slurm sends before a preemption: `scancel --signal=USR2 JOB`."""
    subprocess.run(["scancel", f"--signal={name}", job_id], env={**os.environ, **env}, check=True)


def one_thread_reference(overrides: list[str], run_dir: Path) -> dict[str, float]:
    """The uninterrupted run, in this process, with the one CPU thread each job gets
    (cpus_per_task=1): the same float arithmetic, so the results can match bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(compose.compose_config([*overrides, "trainer.progress=none"]), run_dir)
    finally:
        torch.set_num_threads(threads)


def assert_same_run(run_dir: Path, reference_dir: Path) -> None:
    """Every weight bitwise equal, the same step, the same final metrics."""
    run, reference = checkpoint.load(run_dir), checkpoint.load(reference_dir)
    assert run["trainer"]["step"] == reference["trainer"]["step"]
    for name, value in reference["task"].items():
        assert torch.equal(run["task"][name], value), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = json.loads((reference_dir / "metrics.json").read_text())
    for key in ("train/loss", "val/loss", "test/loss", "test/acc"):
        assert metrics[key] == expected[key], key


def job_logs(sweep: Path) -> str:
    """Everything the sweep's Slurm jobs printed (submitit's per-job logs)."""
    return "".join(p.read_text() for p in sorted(sweep.glob(".submitit/*/*_log.*")))


def test_a_sweep_runs_its_jobs_on_slurm_records_a_failing_one_and_sweep_resume_finishes_it(slurm, tmp_path):
    """Three Slurm jobs (an array job), one at a time; job 2's learning rate makes the loss NaN.
    Ctrl-C while job 1 trains cancels the sweep's Slurm jobs (job 1 writes last.pt on Slurm's
    SIGTERM). The same command with sweep.resume= submits jobs 1 and 2 only: job 1 resumes,
    job 2 fails and is recorded, and the summary shows all three. The user reads one line about
    job states, and no sacct warning."""
    args = ["-m", *SLURM, *TRAIN, "optimizer.lr=0.01,0.002,1e30", "trainer.epochs=60"]
    sweep = tmp_path / "sweep"
    process = dlbench(
        *args, "hydra.launcher.array_parallelism=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=slurm
    )
    wait_for(
        lambda: (sweep / "0" / "metrics.json").is_file() and epochs_logged(sweep / "1") >= 5,
        120,
        "job 1 to train",
    )
    process.send_signal(signal.SIGINT)
    out = finish(process, timeout=60)
    assert process.returncode == 130, out[-3000:]
    assert "cancelled Slurm job " in out and out.count("Finish the sweep with: ") == 1  # (said once)
    printed = out.split("interrupted. Finish the sweep with: ", 1)[1].splitlines()[0]
    expected = [*args, "hydra.launcher.array_parallelism=1", f"sweep.resume={sweep}"]
    assert shlex.split(printed) == ["dlbench", *expected], printed  # (its own folder: sweep.resume's)
    assert out.count("job states come from squeue (this cluster has no accounting storage)") == 1
    wait_for(lambda: (sweep / "1" / "checkpoints" / "last.pt").is_file(), 30, "job 1's checkpoint")
    assert not (sweep / "1" / "metrics.json").exists() and not (sweep / "2" / "metrics.json").exists()
    script = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-2%1" in script and "#SBATCH --cpus-per-task=1" in script

    out = finish(dlbench(*shlex.split(printed)[1:], cwd=tmp_path, env=slurm))  # (the command, pasted)
    assert "Sweep summary (3 jobs)" in out and "sacct" not in out, out[-3000:]
    assert "#0 : finished before, skipped (sweep.resume)" in out  # not submitted again
    assert re.search(r"resumed (at|in) epoch", (sweep / "1" / "train.log").read_text())  # (in: mid-epoch)
    with open(sweep / "summary.csv") as f:
        status = [row["status"] for row in csv.DictReader(f)]
    assert status[:2] == ["ok", "ok"] and status[2].startswith("failed: step"), status
    assert "the loss is nan" in (sweep / "2" / "error.txt").read_text()
    assert "1 job failed: 2" in out


def test_a_job_cancelled_by_hand_is_recorded_as_failed(slurm, tmp_path):
    """`scancel JOB` while the job waits to start (--begin=now+60): it ends without a result,
    which squeue shows; the sweep records it as failed instead of waiting or crashing. The
    sweep folder gets hydra.sweep.mode, as with Hydra's own launchers."""
    args = ["-m", *SLURM, "+hydra.launcher.additional_parameters.begin=now+60", "trainer.epochs=1"]
    sweep = tmp_path / "sweep"
    process = dlbench(*args, f"hydra.sweep.dir={sweep}", "+hydra.sweep.mode=750", cwd=tmp_path, env=slurm)
    subprocess.run(["scancel", slurm_job_id(sweep)], env={**os.environ, **slurm}, check=True)
    out = finish(process, timeout=120)
    assert process.returncode == 1 and "Sweep summary (1 job)" in out, out[-3000:]
    error = (sweep / "0" / "error.txt").read_text()
    assert error.startswith(f"Slurm job {slurm_job_id(sweep)} ended without a result (CANCELLED)"), error
    assert "trainer.epochs=1" in (sweep / "0" / ".hydra" / "overrides.yaml").read_text()
    assert stat.S_IMODE(sweep.stat().st_mode) == 0o750


class CpuQuota:
    """A cgroup that holds its processes to a fraction of one CPU (cgroup v2's cpu.max, or v1's
    cpu.cfs_quota_us). `create` returns None where the machine offers neither."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, name: str, fraction: float) -> CpuQuota | None:
        period = 100_000
        quota = int(period * fraction)
        root = Path("/sys/fs/cgroup")
        try:
            v2 = (root / "cgroup.controllers").is_file()
            if v2 and "cpu" in (root / "cgroup.controllers").read_text().split():
                (root / "cgroup.subtree_control").write_text("+cpu")
                (root / name).mkdir()
                (root / name / "cpu.max").write_text(f"{quota} {period}")
                return cls(root / name)
            if (root / "cpu" / "cpu.cfs_quota_us").is_file():  # v1
                (root / "cpu" / name).mkdir()
                (root / "cpu" / name / "cpu.cfs_period_us").write_text(str(period))
                (root / "cpu" / name / "cpu.cfs_quota_us").write_text(str(quota))
                return cls(root / "cpu" / name)
        except OSError:
            return None
        return None

    def hold(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it has ended
                (self.path / "cgroup.procs").write_text(str(pid))

    def release(self) -> None:
        """Hand its processes back to the root cgroup, and remove it."""
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # it has ended
                (self.path.parent / "cgroup.procs").write_text(pid)
        self.path.rmdir()


def job_processes(sweep: Path) -> list[int]:
    """The Python processes of the sweep's running Slurm jobs."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in args and any(str(sweep).encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


def test_a_job_at_its_time_limit_is_requeued_then_a_preemption_past_max_num_timeout_is_recorded(
    slurm, tmp_path
):
    """A job's life on a cluster, bitwise equal in the end to an uninterrupted run.

    1. A real time limit: timeout_min=1 and the preset's lead time for it (15 s), so Slurm sends
       SIGUSR2 15 to 45 s after the job starts. The job writes last.pt, submitit requeues it,
       and the requeued job says "resumed at step N (requeue 1)". To be still training when
       the warning comes, the job's first run is held to 10% of a CPU once it trains (a cgroup
       quota: as if its model were ten times larger), until the warning comes; meanwhile this
       test runs the uninterrupted reference (1,000 epochs of ~0.006 s at full speed: at 10% of
       a CPU, one takes ~0.06-0.09 s, so the job outlasts the warning's 45 s; at 300 epochs, as
       the epoch got faster, a job reached its end before the warning in a CI run). Where the
       machine has no CPU quota, the run is long enough by itself (3,000 epochs).
    2. `scancel --signal=USR2` (what Slurm sends before a preemption) while the requeued job
       trains: max_num_timeout=1 is used up (submitit counts a signal in a short job as a
       time-out), so the job is not requeued; the summary says why.
    3. The same command with sweep.resume= (and a longer limit) finishes it from last.pt.
    """
    quota = CpuQuota.create(f"dlbench-test-{os.getpid()}", 0.1)
    overrides = [*TRAIN, f"trainer.epochs={1000 if quota else 3000}"]
    args = ["-m", *SLURM, "hydra.launcher.max_num_timeout=1", *overrides]
    sweep, run_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    process = dlbench(
        *args, "hydra.launcher.timeout_min=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=slurm
    )
    job = slurm_job_id(sweep)
    wait_for(lambda: epochs_logged(run_dir) >= 2, 120, "the job to train")
    if quota:  # the uninterrupted run, while the held job waits for Slurm's warning
        quota.hold(job_processes(sweep))
        one_thread_reference(overrides, tmp_path / "reference")
    log = lambda: (run_dir / "train.log").read_text()  # noqa: E731
    wait_for(lambda: "Caught signal SIGUSR2" in log(), 120, "Slurm's warning")
    if quota:  # once warned, the job checkpoints and exits at full speed
        quota.release()
    wait_for(lambda: "(requeue 1)" in log(), 120, "the requeued job to resume")
    if quota:  # held again, so that it is still training when it is signalled (not finished)
        quota = CpuQuota.create(f"dlbench-test-{os.getpid()}-2", 0.1)
        quota.hold(job_processes(sweep))
    resumed_at = epochs_logged(run_dir)
    wait_for(lambda: epochs_logged(run_dir) >= resumed_at + 3, 60, "the requeued job to train")
    signal_job(job, slurm)
    if quota:
        quota.release()
    out = finish(process)
    assert process.returncode == 1, out[-3000:]
    script = next(sweep.glob(".submitit/*/*_submission.sh")).read_text()
    assert "#SBATCH --time=1\n" in script and "#SBATCH --signal=USR2@15\n" in script
    assert "this job is timed-out" in log() and "resumed at step " in log() and "(requeue 1), " in log()
    assert "stopped by SIGUSR2 after step" in job_logs(sweep)
    error = (run_dir / "error.txt").read_text()
    assert error.startswith("stopped by SIGUSR2 and not requeued: timed-out too many times"), error
    assert "job 0 failed: stopped by SIGUSR2 and not requeued" in out
    assert not (run_dir / "metrics.json").exists()
    if not quota:  # not while the requeued job runs: it could finish before it is signalled
        one_thread_reference(overrides, tmp_path / "reference")

    out = finish(
        dlbench(*args, "hydra.launcher.timeout_min=5", f"sweep.resume={sweep}", cwd=tmp_path, env=slurm)
    )
    assert "Sweep summary (1 job)" in out and "failed" not in out, out[-3000:]
    assert_same_run(run_dir, tmp_path / "reference")


def test_settings_that_cannot_work_stop_the_command_before_anything_is_submitted(capsys, monkeypatch):
    """No cluster needed: these are refused while the command line is checked."""
    from dlbench.cli import main

    assert main(["-m", *SLURM, "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=120"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # as one line (rich wraps it)
    assert "signal_delay_s=120 leaves a job of timeout_min=1 no time to train" in err
    assert "Use signal_delay_s <= 20" in err and "Traceback" not in err
    for overrides, message in [
        ([*SLURM, "trainer.nodes=2", "hydra.launcher.nodes=3"], "trainer.nodes=2 but hydra.launcher.nodes=3"),
        (
            [*SLURM, "trainer.devices=2", "hydra.launcher.tasks_per_node=2"],
            "tasks_per_node=2: dlbench starts trainer.devices processes",
        ),
    ]:
        with pytest.raises(DlbenchError, match=message):
            cluster.check(overrides, compose.compose_with_hydra(overrides, "the test"))
    assert main(["-m", *SLURM, "+hydra.sweep.mode=abc"]) == 2
    assert "hydra.sweep.mode=abc: an octal file mode, such as 750" in capsys.readouterr().err
    assert main(["-m", *SLURM, "hydra.launcher.timeout_mins=5"]) == 2  # a misspelt launcher key
    assert "Unknown key 'hydra.launcher.timeout_mins'" in capsys.readouterr().err
    for name in ("DLBENCH_RDZV_ENDPOINT", "MASTER_ADDR", "SLURM_JOB_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DlbenchError, match="Set DLBENCH_RDZV_ENDPOINT=HOST:PORT on every machine"):
        rendezvous.endpoint()


def test_the_preset_warns_a_short_job_early_enough_to_train_first():
    """Slurm may send the warning up to 30 s before signal_delay_s: the preset's lead time is
    15 s per minute of the limit (a 1-minute job is warned 15 to 45 s after it starts), at
    most 120 s."""
    delays = {}
    for minutes in (1, 4, 240):
        cfg = compose.compose_with_hydra([*SLURM, f"hydra.launcher.timeout_min={minutes}"], "the test")
        delays[minutes] = cfg.hydra.launcher.signal_delay_s
    assert delays == {1: 15, 4: 60, 240: 120}


def test_a_job_with_two_processes_runs_torchrun_in_its_slurm_job_and_survives_a_preemption(slurm, tmp_path):
    """trainer.devices=2 in a sweep job: the job's Slurm task starts torchrun, as each node of a
    trainer.nodes=N job does. SIGUSR2 reaches both processes from Slurm; they stop at the same
    step and rank 0 writes last.pt; then the task hands the signal to submitit, which requeues
    the job, and the requeued torchrun resumes. The result is bitwise that of an uninterrupted
    two-process run (each process with one thread, as in the job)."""
    overrides = ["trainer.devices=2", "trainer.epochs=20", "trainer.progress=plain", "dataset.batch_size=64"]
    launcher = [*SLURM, "hydra.launcher.cpus_per_task=2", "hydra.launcher.timeout_min=5"]
    sweep, run_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    one_thread = {**slurm, "OMP_NUM_THREADS": "1"}
    process = dlbench("-m", *launcher, *overrides, f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=one_thread)
    job = slurm_job_id(sweep)
    wait_for(lambda: epochs_logged(run_dir) >= 3, 180, "the job to train")
    signal_job(job, slurm)
    reference = finish(dlbench(*overrides, "hydra.run.dir=whole", cwd=tmp_path, env=one_thread))
    assert "Run directory" in reference, reference[-3000:]
    out = finish(process)
    assert process.returncode == 0, out[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "cpu x 2 processes" in log and "(requeue 1), " in log
    assert "stopped by SIGUSR2 after step" in job_logs(sweep)
    assert_same_run(run_dir, tmp_path / "whole")


def test_a_two_node_job_runs_one_torchrun_per_node_and_matches_one_process(slurm_two_nodes, tmp_path):
    """trainer.nodes=2 on a Slurm launcher: the job asks for 2 nodes and one task on each (srun);
    each task starts torchrun, and they meet at the allocation's first node. The nodes are two
    network namespaces, each with its own address. The run ends within 1e-4 of one process with
    the same global batch. A sweep over trainer.nodes=2,1 submits one array job per node count."""
    overrides = ["trainer.epochs=2", "trainer.progress=plain", "dataset.batch_size=64"]
    args = ["-m", *SLURM, "trainer.nodes=2,1", *overrides, "hydra.sweep.dir=sweep"]
    out = finish(dlbench(*args, cwd=tmp_path, env=slurm_two_nodes))
    assert "Sweep summary (2 jobs)" in out and "failed" not in out, out[-3000:]
    sweep, run_dir = tmp_path / "sweep", tmp_path / "sweep" / "0"
    scripts = sorted(p.read_text() for p in sweep.glob(".submitit/*/*_submission.sh"))
    assert len(scripts) == 2 and sum("#SBATCH --nodes=2\n" in script for script in scripts) == 1
    assert all("#SBATCH --ntasks-per-node=1\n" in script for script in scripts)
    assert "x 2 processes" not in (sweep / "1" / "train.log").read_text()  # one node, one process
    tasks = job_logs(sweep)
    assert "node=0(2), global_rank=0(2)" in tasks and "node=1(2), global_rank=1(2)" in tasks
    assert "cpu x 2 processes" in (run_dir / "train.log").read_text()
    assert_like_one_process(run_dir, overrides, tmp_path / "one")
