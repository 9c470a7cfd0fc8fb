"""Data-parallel runs (torchrun, gloo on the CPU), stop signals, and the Slurm launcher preset."""

import signal
import subprocess
import sys

import pytest
import torch
from clusters import assert_like_one_process
from conftest import only_run_dir, read_metrics, signal_when, user_env

from dlbench import compose, launch, preflight
from dlbench.engine import checkpoint
from dlbench.engine.trainer import Trainer
from dlbench.errors import DlbenchError, Preempted
from dlbench.training import train


def test_two_processes_train_the_same_model_as_one_with_the_same_global_batch(cli, tmp_path):
    """dataset.batch_size is the global batch: 2 processes x 32 see the batches 1 x 64 sees, and
    DDP's averaged gradients are the one-process gradients up to float summation order."""
    overrides = ["trainer.epochs=2", "trainer.progress=plain", "dataset.batch_size=64"]
    overrides.append("trainer.running_loss_every=7")  # (its windows, like the logged steps, were rank 0's)
    result = cli(*overrides, "trainer.devices=2", timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "x 2 processes" in result.stdout
    run_dir = only_run_dir(tmp_path)  # every process agreed on one directory
    assert len(list((run_dir / "tb").glob("events.*"))) == 1  # rank 0 alone logs
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    reference = assert_like_one_process(run_dir, overrides, tmp_path / "one")
    two = read_metrics(run_dir)
    for key in ("train/acc", "val/acc", "test/acc"):  # an argmax may flip on a 1e-6 difference
        assert two[key] == pytest.approx(reference[key], abs=0.006), key


@pytest.mark.parametrize(
    "small, split",
    [
        ("dataset.val_fraction=0.0006", "val"),
        ("dataset.validate_on=test dataset.test_fraction=0.0006", "test"),
    ],
)
def test_an_evaluated_split_smaller_than_the_processes_is_refused_before_training(tmp_path, small, split):
    """Two processes share an evaluated split's samples; with one sample, the process given none
    would leave the other waiting in the sum of their metrics for ever (a hang, found by a
    reread). The run is refused at once, in one line naming the split as the user knows it
    (validating on the test split, the test split), before a checkpoint or a log is written."""
    # (a review: torchrun's `-m dlbench` put the current folder on each process's sys.path, and
    # Hydra's plugin scan imported a module left there, as a shared run folder may hold one; the
    # command runs as the `dlbench` script does, without the current folder on its own path)
    (tmp_path / "hydra_plugins").mkdir()
    (tmp_path / "hydra_plugins" / "left_here.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w')\n")
    command = [sys.executable, "-P", "-m", "dlbench", "trainer.devices=2", *small.split(), "trainer.epochs=1"]
    result = subprocess.run(command, cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=99)
    assert not (tmp_path / "RAN").exists()
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"the {split} split has 1 sample, fewer than the 2 processes" in result.stderr
    assert f"dataset.{split}_fraction" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    written = [p.relative_to(tmp_path).parts[-1] for p in tmp_path.glob("outputs/**/*") if p.is_file()]
    assert written == ["error.txt"]  # the failed run's record, and nothing else


def test_an_error_of_one_process_alone_is_said_by_rank_0_in_place_of_lost_contact(tmp_path, monkeypatch):
    """A review (a bad image that rank 1 alone read): rank 1 exited in silence (an error every
    process has, rank 0 says), and rank 0 said only "lost contact": the cause was never shown.
    Now rank 1 leaves its error in the run folder, and rank 0's message leads with it."""
    from dlbench import launch
    from dlbench.engine import distributed

    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    bad = DlbenchError("image_folder: train/cat/7.png is not a readable image")
    with pytest.raises(SystemExit) as stopped:
        launch.failed(bad, tmp_path, multirun=False, record=True, timeout_s=10)
    assert stopped.value.code == 2 and not (tmp_path / "error.txt").exists()  # (rank 0's to write)
    monkeypatch.setattr(distributed, "rank", lambda: 0)
    said = distributed.lost_peer(RuntimeError("[pair.cc:1] Connection closed by peer"), 10, tmp_path)
    assert said.lines[0] == "rank 1 of 2 stopped: image_folder: train/cat/7.png is not a readable image"
    assert said.lines[1].startswith("lost contact with the other processes of this run (this is rank 0 of 2)")
    assert not list(tmp_path.iterdir())  # (read once, then gone)


def test_a_sweep_job_cannot_ask_for_several_devices(cli, tmp_path):
    result = cli("-m", "trainer.devices=2", "trainer.epochs=1", "hydra.sweep.dir=sweep")
    assert result.returncode == 1
    assert "run it without -m" in (tmp_path / "sweep" / "0" / "error.txt").read_text()


def stop_at_step(monkeypatch, step: int, signum: int) -> None:
    """Send the process `signum` during training step `step` (as a cluster would)."""
    optimize = Trainer.optimize

    def optimize_and_signal(self, optimizations, name, loss):
        optimize(self, optimizations, name, loss)
        if self.state.step + 1 == step:
            signal.raise_signal(signum)

    monkeypatch.setattr(Trainer, "optimize", optimize_and_signal)


def signal_once_checkpointed(args: list[str], folder, signum: int) -> tuple[int, str]:
    """A run sent `signum` once its last.pt exists: its exit status and stderr."""
    checkpointed = "outputs/*/*/checkpoints/last.pt"
    code, _, err = signal_when([*args, "trainer.progress=none"], folder, checkpointed, signum)
    return code, err


def test_a_stop_signal_with_checkpoints_off_says_nothing_was_saved(cli, monkeypatch, tmp_path):
    """trainer.checkpoint=false: a SIGTERM stops the run (exit 75), and the message does not
    claim a last.pt nor print a resume command that would fail (a review found both)."""
    stop_at_step(monkeypatch, 3, signal.SIGTERM)
    result = cli("trainer.checkpoint=false", "trainer.epochs=2", "trainer.progress=none", "hydra.run.dir=run")
    assert result.returncode == Preempted.EXIT_STATUS, result.stderr
    assert "stopped by SIGTERM after step 3; trainer.checkpoint=false: nothing was saved" in result.stderr
    assert "resume=" not in result.stderr and not (tmp_path / "run" / "checkpoints").exists()
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "best.pt").write_bytes(b"")  # (resume=FOLDER reads last.pt)
    again = cli("trainer.checkpoint=false", "trainer.epochs=2", "trainer.progress=none", "hydra.run.dir=run")
    assert again.returncode == 2 and "It holds no checkpoint to continue from" in again.stderr


def test_a_resume_that_makes_a_stopped_epoch_report_says_its_train_metrics_are_partial(
    monkeypatch, tmp_path, caplog
):
    """An epoch stopped mid-way in a run that was not to report it kept no train metrics (none
    were measured); a resume that now reports it (val_every_n_epochs 2 -> 1) says that its
    train/acc counts only the batches after the resume. A resume that changes nothing does not."""
    overrides = ["trainer.epochs=2", "trainer.progress=none", "trainer.val_every_n_epochs=2"]
    for folder in ("a", "b"):
        stop_at_step(monkeypatch, 10, signal.SIGTERM)  # (epoch 1 of 2: 21 steps)
        with pytest.raises(Preempted):
            train(compose.compose_config(overrides), tmp_path / folder)
        monkeypatch.undo()
        assert checkpoint.load(tmp_path / folder)["so_far"]["epoch"]["metrics"] is None
    said = "epoch 1's train/ metrics count only its batches after the resume"
    caplog.clear()
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'a'}"]), tmp_path / "a")
    assert said not in caplog.text
    changed = [*overrides[:-1], "trainer.val_every_n_epochs=1", f"resume={tmp_path / 'b'}"]
    train(compose.compose_config(changed), tmp_path / "b")
    assert said in caplog.text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2])
def test_a_stop_signal_checkpoints_mid_epoch_and_the_resumed_run_ends_identical(
    monkeypatch, tmp_path, signum
):
    # (a running loss of 5 steps: its window is open at the stop; logger.backends=[csv]: every
    # value logged can be compared)
    overrides = ["trainer.epochs=2", "trainer.progress=none", "trainer.running_loss_every=5", "logger=csv"]
    reference = train(compose.compose_config(overrides), tmp_path / "whole")

    calls = []
    previous = signal.signal(signum, lambda s, f: calls.append(s))  # stands in for submitit's handler
    try:
        stop_at_step(monkeypatch, 28, signum)  # an epoch of the digits has 21 steps
        with pytest.raises(Preempted) as stop:
            train(compose.compose_config(overrides), tmp_path / "cut")
        assert stop.value.step == 28 and calls == []  # the trainer's handler took the signal...
        assert signal.getsignal(signum) is not None and signal.getsignal(signum).__name__ == "<lambda>"
        with pytest.raises(SystemExit) as exit_:
            launch.stopped(stop.value, tmp_path / "cut", compose.compose_config(overrides))  # ... hands it on
        assert exit_.value.code == Preempted.EXIT_STATUS and calls == [signum]
    finally:
        signal.signal(signum, previous)
    saved = checkpoint.load(tmp_path / "cut")
    assert (saved["trainer"]["step"], saved["trainer"]["epoch"], saved["trainer"]["epoch_step"]) == (28, 1, 7)

    monkeypatch.undo()
    # stopped again while the resumed run is built (a requeued job preempted once more): its
    # last.pt keeps the sums it was given
    from dlbench import training

    build_data = training.build_data

    def build_data_and_get_stopped(cfg):
        signal.raise_signal(signum)
        return build_data(cfg)

    monkeypatch.setattr(training, "build_data", build_data_and_get_stopped)
    with pytest.raises(Preempted):
        train(compose.compose_config([*overrides, f"resume={tmp_path / 'cut'}"]), tmp_path / "cut")
    assert checkpoint.load(tmp_path / "cut")["so_far"]["epoch"] == saved["so_far"]["epoch"]
    monkeypatch.undo()
    resumed = train(compose.compose_config([*overrides, f"resume={tmp_path / 'cut'}"]), tmp_path / "cut")
    whole, cut = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "cut")
    assert cut["trainer"]["step"] == whole["trainer"]["step"] == 42
    for name, value in whole["task"].items():
        assert torch.equal(cut["task"][name], value), name
    assert resumed["test/loss"] == reference["test/loss"]
    # the stopped epoch's figures are the whole epoch's (they were the 14 batches after the resume:
    # trainer.monitor=train/loss, its best.pt and a plateau schedule read them), and the running
    # loss's window goes on over the resume
    figures = [k for k in reference if not k.startswith("time/")]
    assert {k: resumed[k] for k in figures} == {k: reference[k] for k in figures}
    logged = [(tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("whole", "cut")]
    values = [{line for line in lines if "time/" not in line} for lines in logged]
    assert values[0] == values[1] and any("train/running_loss" in line for line in values[0])


def test_periodic_checkpoints_keep_the_newest_k(tmp_path):
    overrides = ["trainer.epochs=1", "trainer.progress=none", "trainer.checkpoint_every_n_steps=5"]
    train(compose.compose_config([*overrides, "trainer.keep_last_k=2"]), tmp_path / "run")
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["best.pt", "last.pt", "step-000000015.pt", "step-000000020.pt"]
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "step-000000015.pt")["trainer"]["step"] == 15


def test_the_slurm_preset_is_hydras_submitit_launcher_with_our_defaults():
    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=9"]
    cfg = compose.compose_with_hydra(overrides, "the test")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 9, 1)
    assert launcher.max_num_timeout > 0  # a job that reaches its time limit is requeued


def test_a_launcher_whose_plugin_is_missing_names_the_extra(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: None if name.startswith("hydra_plugins") else find_spec(name),
    )
    with pytest.raises(DlbenchError, match=r"pip install 'dlbench\[slurm\]'"):
        preflight.check(["hydra/launcher=slurm"])
    with pytest.raises(DlbenchError, match=r"pip install 'dlbench\[sweep\]'"):
        preflight.check(["hparams_search=mlp_mnist"])
    preflight.check_plugins(["hparams_search=null"])  # no search: no plugin needed

    def no_hydra_plugins_package(name):  # no plugin at all: find_spec fails on the parent package
        if name.startswith("hydra_plugins"):
            raise ModuleNotFoundError(f"No module named '{name.split('.')[0]}'")
        return find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", no_hydra_plugins_package)
    with pytest.raises(DlbenchError, match=r"pip install 'dlbench\[slurm\]'"):
        preflight.check(["hydra/launcher=slurm"])


def test_sigterm_to_a_two_process_run_stops_it_as_one_run_stops(tmp_path):
    """SIGTERM to the command of a run with trainer.devices=2 (a cluster's time limit): torchrun's
    agent gets it too; its processes save last.pt and say how to continue, and the command exits
    75 (it was "unexpected error: SignalException", exit 1)."""
    args = ["trainer.devices=2", "trainer.epochs=500", "dataset.val_fraction=0.12"]  # (1,265 to train)
    code, err = signal_once_checkpointed(args, tmp_path, signal.SIGTERM)
    assert code == Preempted.EXIT_STATUS, err[-3000:]
    (log,) = tmp_path.glob("outputs/digits_mlp/*/train.log")
    assert "samples are not a multiple of the 2 processes: each epoch repeats 1 sample" in log.read_text()
    # resumed in the middle of an epoch: its train/ figures count what follows, and it says so
    # (one process keeps the sums so far; several do not, and it was silent)
    stopped_at = checkpoint.load(log.parent)["trainer"]["step"]  # (where the signal landed: 40, 50, ...)
    go_on = [sys.executable, "-m", "dlbench", f"resume={log.parent}", f"trainer.max_steps={stopped_at + 3}"]
    resumed = subprocess.run(go_on, cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "train/ figures count only its batches after the resume: with several processes" in log.read_text()
    said = resumed.stdout + resumed.stderr  # (once: each process said it, a review)
    assert said.count("train/ figures count only its batches after the resume") == 1, said[-3000:]
    assert "stopped by SIGTERM after step" in err and "Continue with: dlbench resume=" in err, err[-3000:]
    assert "unexpected" not in err and "Traceback" not in err, err[-3000:]


STOP_NET = """
import math
import torch.nn as nn
from dlbench.registry import MODELS

@MODELS.register("stop_net")
def stop_net(input_shape, num_outputs, hidden: int = 8):
    layers = [nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_outputs)]
    return nn.Sequential(nn.Flatten(), *layers)
"""


def test_a_stopped_runs_continue_command_gives_its_config_folder_and_plugins_and_pastes(tmp_path):
    """The `Continue with:` a stop signal prints names what a resume reads only from the user's
    own words: the --config-dir the run's preset is in, the plugins it was trained with (it
    printed resume= alone, and the pasted command was refused, naming what to add)."""

    from conftest import shell

    (tmp_path / "stop_net.py").write_text(STOP_NET)
    (tmp_path / "my cfg" / "experiment").mkdir(parents=True)
    (tmp_path / "my cfg" / "experiment" / "stopper.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: stop_net\nname: stopper\n"
    )
    words = ["--config-dir", "my cfg", "experiment=stopper", "plugins=[stop_net]", "trainer.epochs=1000"]
    code, err = signal_once_checkpointed([*words, "dataset.batch_size=4"], tmp_path, signal.SIGTERM)
    assert code == Preempted.EXIT_STATUS, err[-3000:]
    printed = err.split("Continue with: ", 1)[1].strip()
    assert f"--config-dir '{tmp_path}/my cfg'" in printed and "'plugins=[stop_net]'" in printed, printed
    pasted = shell(f"{printed} --cfg job", tmp_path)  # (the resume's config, composed and checked)
    assert pasted.returncode == 0 and "name: stopper" in pasted.stdout, pasted.stderr[-3000:]


def test_ctrl_c_on_a_run_with_a_checkpoint_says_how_to_go_on(tmp_path):
    """Ctrl-C (SIGINT) once a run has a checkpoint: exit 130 and the command that continues it
    from last.pt (it said "interrupted" alone), which pastes."""

    from conftest import shell

    args = ["trainer.epochs=1000", "dataset.batch_size=4"]
    code, err = signal_once_checkpointed(args, tmp_path, signal.SIGINT)
    assert code == 130, err[-3000:]
    assert "error: interrupted; checkpoints/last.pt is the run's latest. Continue with: dlbench " in err
    printed = err.split("Continue with: ", 1)[1].strip()
    pasted = shell(f"{printed} --cfg job", tmp_path)
    assert pasted.returncode == 0 and "/checkpoints/last.pt\n" in pasted.stdout, pasted.stderr[-3000:]
