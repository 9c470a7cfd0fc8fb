"""Issue 9: exact resume, stop signals, atomic checkpoints, NaN/Inf, bad data, concurrency."""

import errno
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import killed_before_step
from formats import write_image_folder, write_mnist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlbench import compose, logged, training
from dlbench.engine import checkpoint
from dlbench.engine.trainer import Trainer
from dlbench.errors import DlbenchError, Preempted
from dlbench.tasks.classification import Classification
from dlbench.training import train

QUIET = ["trainer.progress=none", "trainer.deterministic=true"]
TRAINER_OPTIMIZE = Trainer.optimize


def same(a, b, where="state"):
    """Every tensor equal bit for bit, every other value equal (nested dicts and lists)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def record_losses(monkeypatch, stop_at=None, signum=signal.SIGTERM):
    """Record each step's loss (per optimizer); raise `signum` during step `stop_at`."""
    losses = []
    optimize = TRAINER_OPTIMIZE

    def recording(self, optimizations, name, loss):
        losses.append((self.state.step + 1, name, float(loss.detach())))
        optimize(self, optimizations, name, loss)
        if stop_at is not None and self.state.step + 1 == stop_at:
            signal.raise_signal(signum)

    monkeypatch.setattr(Trainer, "optimize", recording)
    return losses


CASES = {
    # name: (overrides, step to stop at)
    "mid_epoch": (["trainer.epochs=2"], 7),
    "epoch_boundary": (["trainer.epochs=2"], 21),
    # stopped at trainer.max_steps's step, mid-epoch: the resume ended without that epoch's end work
    # (validation, best.pt, its figures); then, having run no batch, a per-step schedule's train/lr
    # was the next step's
    "max_steps_step": (["trainer.epochs=3", "trainer.max_steps=30", "scheduler=one_cycle_lr"], 30),
    "workers_augmented": (
        [
            "trainer.epochs=2",
            "dataset.in_memory=false",
            "dataset.num_workers=2",
            "+dataset.augment={rotation:10}",
        ],
        9,
    ),
    "gan": (
        ["experiment=gan_mnist", "dataset.download=false", "dataset.val_fraction=0.1", "trainer.epochs=2"],
        5,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_and_resumed_runs_end_bitwise_equal_with_the_same_losses(
    monkeypatch, tmp_path, data_root, case
):
    overrides, stop_at = CASES[case]
    overrides = [*QUIET, *overrides]
    if "experiment=gan_mnist" in overrides:
        overrides += [f"dataset.root={data_root}", "dataset.batch_size=8"]
    whole_losses = record_losses(monkeypatch)
    train(compose.compose_config(overrides), tmp_path / "whole")

    signum = signal.SIGUSR1 if case == "gan" else signal.SIGTERM
    cut_losses = record_losses(monkeypatch, stop_at, signum)
    with pytest.raises(Preempted):
        train(compose.compose_config(overrides), tmp_path / "cut")
    assert checkpoint.load(tmp_path / "cut")["trainer"]["step"] == stop_at
    resumed_losses = record_losses(monkeypatch)
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'cut'}"]), tmp_path / "cut")

    assert cut_losses + resumed_losses == whole_losses  # every step's loss, in order
    whole, cut = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "cut")
    for part in ("task", "optimizers", "schedulers", "scalers", "rng"):
        same(whole[part], cut[part], part)
    assert whole["trainer"]["step"] == cut["trainer"]["step"]
    figures = [{k: v for k, v in run["trainer"].pop("metrics").items() if not k.startswith("time/")}
               for run in (whole, cut)]  # fmt: skip
    assert figures[0] == figures[1] and whole["trainer"] == cut["trainer"]  # (epoch, best, cut_by_max_steps)
    same(checkpoint.load(tmp_path / "whole" / "checkpoints" / "best.pt")["task"],
         checkpoint.load(tmp_path / "cut" / "checkpoints" / "best.pt")["task"], "best.pt")  # fmt: skip


def test_a_stop_signal_while_the_run_is_built_stops_it_before_its_first_step(monkeypatch, tmp_path):
    """A preemption that comes while the data are loaded (before the trainer exists) is caught,
    not fatal: last.pt at step 0, Preempted (exit 75), and the resumed run is the whole run."""
    overrides = [*QUIET, "trainer.epochs=2"]
    handler = signal.getsignal(signal.SIGTERM)
    whole_losses = record_losses(monkeypatch)
    train(compose.compose_config(overrides), tmp_path / "whole")

    build_data = training.build_data

    def build_data_and_get_preempted(cfg):
        signal.raise_signal(signal.SIGTERM)  # without a handler, this would end pytest's process
        return build_data(cfg)

    monkeypatch.setattr(training, "build_data", build_data_and_get_preempted)
    cut_losses = record_losses(monkeypatch)
    with pytest.raises(Preempted) as stop:
        train(compose.compose_config(overrides), tmp_path / "cut")
    assert (stop.value.signum, stop.value.step) == (signal.SIGTERM, 0) and cut_losses == []
    assert signal.getsignal(signal.SIGTERM) == handler  # the one before the run is put back
    assert checkpoint.load(tmp_path / "cut")["trainer"]["step"] == 0

    monkeypatch.setattr(training, "build_data", build_data)
    resumed_losses = record_losses(monkeypatch)
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'cut'}"]), tmp_path / "cut")
    assert resumed_losses == whole_losses
    same(checkpoint.load(tmp_path / "whole")["task"], checkpoint.load(tmp_path / "cut")["task"])


def test_sigterm_from_outside_exits_75_with_a_checkpoint_to_resume(tmp_path):
    command = [
        sys.executable,
        "-m",
        "dlbench",
        "trainer.epochs=500",
        "trainer.progress=plain",
        "hydra.run.dir=run",
    ]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    err = err.replace("\n", "")  # the console wraps long lines
    assert process.returncode == Preempted.EXIT_STATUS, err[-2000:]
    assert "stopped by SIGTERM after step" in err and "dlbench resume=" in err
    assert checkpoint.load(tmp_path / "run")["trainer"]["step"] >= 1


def test_a_stop_signal_after_the_last_step_stops_the_run_before_its_results(monkeypatch, tmp_path, caplog):
    """A SIGTERM during the last epoch's validation, or during the test, was noted and then
    forgotten: the run exited 0 with its results, as if no signal had come. It stops as one in
    training does (Preempted: exit 75, last.pt), and the resume, which has no step left, tests."""
    quick = [*QUIET, "trainer.epochs=1"]
    whole = train(compose.compose_config(quick), tmp_path / "whole")
    tested = {k: v for k, v in whole.items() if k.startswith("test/")}
    for name, when in (("validate", True), ("evaluate", "test")):  # (the last validation; the test)
        method, sent = getattr(Trainer, name), []

        def signalled(self, task, data, arg, *args, method=method, when=when, sent=sent, **kwargs):
            if arg == when and not sent:
                sent.append(signal.SIGTERM)
                signal.raise_signal(signal.SIGTERM)
            return method(self, task, data, arg, *args, **kwargs)

        monkeypatch.setattr(Trainer, name, signalled)
        with pytest.raises(Preempted) as stop:
            train(compose.compose_config(quick), tmp_path / name)
        monkeypatch.undo()
        assert (stop.value.signum, stop.value.step, stop.value.saved) == (signal.SIGTERM, 21, True)
        assert checkpoint.load(tmp_path / name)["trainer"]["epoch"] == 1
        assert not (tmp_path / name / "metrics.json").exists()
        resumed_losses = record_losses(monkeypatch)
        resumed = train(compose.compose_config([*quick, f"resume={tmp_path / name}"]), tmp_path / name)
        monkeypatch.undo()
        assert resumed_losses == [] and {k: v for k, v in resumed.items() if k.startswith("test/")} == tested
    # without checkpoints there is nothing to resume: the run finishes (it lost the trained run)
    evaluate = Trainer.evaluate

    def signalled_test(self, task, data, split, *args, **kwargs):
        if split == "test":
            signal.raise_signal(signal.SIGTERM)
        return evaluate(self, task, data, split, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", signalled_test)
    with caplog.at_level(logging.WARNING, logger="dlbench"):
        kept = train(compose.compose_config([*quick, "trainer.checkpoint=false"]), tmp_path / "unsaved")
    assert kept.keys() == whole.keys() and (tmp_path / "unsaved" / "metrics.json").is_file()
    assert "SIGTERM came as the run ended: its results are complete" in caplog.text


def test_a_written_file_has_the_mode_open_gives_and_a_failed_one_is_named_as_asked(tmp_path):
    """Checkpoints, exports and logs were 0600 (mkstemp's mode, kept by the rename), which a lab's
    shared folder or another tool's user cannot read; a folder that cannot hold the file was
    named by the temporary beside it (`Cannot write /proc/.x.onnx.griwzg0h.tmp`)."""
    from dlbench import files

    mask = os.umask(0o022)  # (read, and put back)
    os.umask(mask)
    files.write_text(tmp_path / "b.txt", "x")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    (tmp_path / "isdir").mkdir()  # (the rename's error named the temporary)
    with pytest.raises(DlbenchError, match=rf"^Cannot write {tmp_path / 'isdir'}: Is a directory"):
        files.write_text(tmp_path / "isdir", "x")
    with pytest.raises(DlbenchError, match=r"^Cannot write /proc/x\.onnx: "):
        files.write_text(type(tmp_path)("/proc/x.onnx"), "x")


def test_a_failed_checkpoint_write_keeps_the_previous_one(monkeypatch, tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    checkpoint.save({"task": {"w": torch.ones(3)}, "config": "name: a"}, path)

    real_fsync = os.fsync

    def disk_full(fd):  # the data did not fit: what a full disk reports at the latest
        os.write(fd, b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(DlbenchError, match="No space left on device writing .*last.pt"):
        checkpoint.save({"task": {"w": torch.zeros(3)}, "config": "name: b"}, path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no stray temporary file
    assert torch.equal(checkpoint.load(path)["task"]["w"], torch.ones(3))


def full_disk_for(monkeypatch, fails) -> None:
    """Checkpoint writes whose files `fails(path)` picks find the disk full (in the writer's thread)."""
    from dlbench import files

    write = checkpoint.write

    def written(data, *paths):
        for path in paths:
            if fails(path):
                raise files.file_error(OSError(errno.ENOSPC, "No space left on device"), path)
        write(data, *paths)

    monkeypatch.setattr(checkpoint, "write", written)


def test_a_stop_signal_whose_checkpoint_fails_is_that_error_not_a_stop(monkeypatch, tmp_path):
    """A stop signal's last.pt is written by the checkpoint thread; the run waits for it before it
    says "last.pt is saved" (exit 75: Slurm requeues the job). A write that failed is the run's
    error (exit 2), as when it was written in the loop."""
    optimize, sent = Trainer.optimize, []

    def signalled(self, *args, **kwargs):
        optimize(self, *args, **kwargs)
        if self.state.step == 5 and not sent:
            sent.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # (noted by the run's handler: it stops after the step)

    monkeypatch.setattr(Trainer, "optimize", signalled)
    full_disk_for(monkeypatch, lambda path: bool(sent))
    with pytest.raises(DlbenchError, match="No space left on device writing .*last.pt"):
        train(compose.compose_config([*QUIET, "trainer.epochs=2"]), tmp_path / "run")
    assert sent and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_keep_last_k_removes_an_older_step_checkpoint_only_once_the_new_one_has_landed(monkeypatch, tmp_path):
    full_disk_for(monkeypatch, lambda path: path.name == "step-000000010.pt")
    periodic = ["trainer.checkpoint_every_n_steps=5", "trainer.keep_last_k=1", "trainer.epochs=1"]
    with pytest.raises(DlbenchError, match="No space left on device writing .*step-000000010.pt"):
        train(compose.compose_config([*QUIET, *periodic]), tmp_path / "run")
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*.pt"))
    assert kept == ["step-000000005.pt"]  # (it was removed as step 10's write began)
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "step-000000005.pt")["trainer"]["step"] == 5


def poison(monkeypatch, step: int, where: str, value: float):
    """Make step `step`'s loss (or the gradient of the first layer) NaN or Inf. (Steps are counted
    by the task's loss calls in training mode: the trial step a run takes on a copy of its task
    before it starts, and trainer.threads=auto's timed ones, would be counted too: skipped.)"""
    monkeypatch.setattr(training, "choose_threads", lambda *args, **kwargs: None)
    monkeypatch.setattr(training, "trial_step", lambda *args, **kwargs: None)
    compute_loss = Classification.compute_loss
    steps = {"n": 0}

    def poisoned(self, output, y):
        loss = compute_loss(self, output, y)
        if self.training:
            steps["n"] += 1
            if steps["n"] == step:
                if where == "loss":
                    return loss * value
                first = next(self.model.parameters())
                first.register_hook(lambda g: torch.full_like(g, value) if steps["n"] == step else g)
        return loss

    monkeypatch.setattr(Classification, "compute_loss", poisoned)


@pytest.mark.parametrize(
    ("where", "value", "precision"),
    [("loss", float("nan"), "32"), ("grad", float("inf"), "32"), ("loss", float("nan"), "16")],
)
def test_a_non_finite_step_stops_the_run_and_saves_nothing_poisoned(
    monkeypatch, tmp_path, where, value, precision
):
    """Under fp16 too, a NaN loss stops the run (the gradient scaler only skips the steps whose
    scaled gradients overflow: a run whose loss is NaN went on to its end, exit 0)."""
    overrides = ["trainer.progress=none", "trainer.epochs=3", f"trainer.precision={precision}"]
    poison(monkeypatch, 25, where, value)  # epoch 2 (21 steps an epoch)
    with pytest.raises(
        DlbenchError, match=r"step 25 \(epoch 2\): the (loss is nan|gradient of model\.\S+ holds inf)"
    ):
        train(compose.compose_config(overrides), tmp_path / "run")
    for name in ("last.pt", "best.pt"):
        state = checkpoint.load(tmp_path / "run" / "checkpoints" / name)
        assert state["trainer"]["step"] == 21  # the last good epoch
        assert all(torch.isfinite(t).all() for t in state["task"].values() if t.is_floating_point())


def test_a_run_that_fails_writes_the_best_epoch_it_kept_in_memory(monkeypatch, tmp_path):
    """trainer.checkpoint_budget=0 writes no checkpoint until the last epoch; the best epoch (the
    fifth of six) is kept in memory. A NaN in the sixth writes it as best.pt and
    as last.pt (from last.pt's older best value, a resume would write a worse epoch over it);
    the resumed run ends with the same best.pt."""
    poison(monkeypatch, 110, "loss", float("nan"))  # epoch 6 (21 steps an epoch)
    overrides = [
        "trainer.progress=none",
        "trainer.epochs=6",
        "optimizer.lr=0.01",
        "trainer.checkpoint_budget=0",
        "trainer.threads=1",  # (the same arithmetic in the run and its resume)
    ]
    with pytest.raises(DlbenchError) as raised:
        train(compose.compose_config(overrides), tmp_path / "run")
    assert str(raised.value).startswith("step 110 (epoch 6): the loss is nan. Stopped before the update")
    assert "; checkpoints/last.pt and checkpoints/best.pt now hold epoch 5, the best before it. Lower" in str(
        raised.value
    )
    folder = tmp_path / "run" / "checkpoints"
    epoch = lambda name: checkpoint.load(folder / name)["trainer"]["epoch"]  # noqa: E731
    assert (epoch("last.pt"), epoch("best.pt")) == (5, 5)
    best = checkpoint.load(folder / "best.pt")["task"]
    monkeypatch.undo()
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'run'}"]), tmp_path / "run")
    assert (epoch("last.pt"), epoch("best.pt")) == (6, 5)
    torch.testing.assert_close(checkpoint.load(folder / "best.pt")["task"], best, rtol=0, atol=0)


def test_skip_leaves_the_non_finite_step_out(monkeypatch, tmp_path):
    poison(monkeypatch, 5, "loss", float("inf"))
    metrics = train(
        compose.compose_config(["trainer.progress=none", "trainer.epochs=1", "trainer.nonfinite=skip"]),
        tmp_path / "run",
    )
    assert metrics["train/skipped_steps"] == 1.0
    assert all(torch.isfinite(t).all() for t in checkpoint.load(tmp_path / "run")["task"].values())


def test_a_corrupt_image_gets_one_message_naming_the_file(cli, tmp_path):
    # fail names it (from the command line: one line, exit 2); skip leaves it out, up to a share
    write_image_folder(tmp_path / "images", per_class=10)
    (tmp_path / "images" / "train" / "cat" / "3.png").write_bytes(b"\x89PNG not really")
    data = ["dataset=image_folder", "dataset.root=images", "dataset.num_workers=0", "trainer.epochs=1"]
    result = cli(*data)
    assert result.returncode == 2
    assert "image_folder: images/train/cat/3.png is not a readable image" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    data = [*data, f"dataset.root={tmp_path / 'images'}", "trainer.progress=none", "dataset.bad_images=skip"]
    train(compose.compose_config([*data, "dataset.max_bad_fraction=0.1"]), tmp_path / "a")
    with pytest.raises(DlbenchError, match="1 of 20 files"):
        train(compose.compose_config([*data, "dataset.max_bad_fraction=0.01"]), tmp_path / "b")


def test_labels_outside_the_classes_are_refused_at_set_up(tmp_path):
    write_mnist(tmp_path)
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    raw = bytearray(labels.read_bytes())
    raw[8 + 5] = 12  # the sixth label: class 12 of 10
    labels.write_bytes(bytes(raw))
    overrides = ["dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false"]
    with pytest.raises(DlbenchError, match=r"mnist: the train split's labels hold 12, outside 0\.\.9"):
        train(compose.compose_config(overrides), tmp_path / "run")


def test_after_a_crash_and_a_resume_tensorboard_steps_stay_strictly_increasing(monkeypatch, tmp_path, caplog):
    # (two runs started in the same second: tests/test_cli.py)
    overrides = ["trainer.progress=none", "trainer.epochs=2", "trainer.log_every_n_steps=1"]
    poison(monkeypatch, 30, "loss", float("nan"))  # crashes at step 30; last.pt is from step 21
    with pytest.raises(DlbenchError):
        train(compose.compose_config(overrides), tmp_path / "run")
    monkeypatch.undo()
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'run'}"]), tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    steps = [e.step for e in events.Scalars("train/loss_step")]
    assert steps == list(range(1, 43))  # every step once, in order: 22..29 of the crash were dropped
    # read back as report and compare read it: the same steps, and TensorBoard's reader says
    # nothing of the steps it dropped (its "Purging expired events" warning was on their stderr)
    caplog.clear()  # (the read above warned)
    assert logged.curves(tmp_path / "run")["train/loss_step"][0] == steps
    warned = [r for r in caplog.records if r.name.startswith("tensorboard") and r.levelno >= logging.WARNING]
    assert not [r.getMessage() for r in warned]


def test_sigkill_after_a_periodic_checkpoint_then_resume_ends_as_if_never_killed(tmp_path):
    # The run kills itself before step 45 (its checkpoint is step 30's, steps 31-44 are lost):
    # polling for last.pt from outside raced the run, whose 81-step epochs take ~60 ms.
    args = ["trainer.epochs=4", "dataset.batch_size=16", "trainer.deterministic=true"]
    args += ["trainer.checkpoint_every_n_steps=30", "trainer.log_every_n_steps=1", "trainer.progress=none"]
    train(compose.compose_config(args), tmp_path / "whole")  # the same thread count as the CLI's
    killed_before_step(45, [*args, "hydra.run.dir=killed"], tmp_path)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    assert checkpoint.load(last)["trainer"]["step"] == 30  # a periodic checkpoint, mid-epoch
    train(compose.compose_config([*args, f"resume={tmp_path / 'killed'}"]), tmp_path / "killed")

    whole, resumed = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "killed")
    for part in ("task", "optimizers", "schedulers", "scalers", "rng"):
        same(whole[part], resumed[part], part)

    def losses(run):
        events = EventAccumulator(str(tmp_path / run / "tb"))
        events.Reload()
        return [(e.step, e.value) for e in events.Scalars("train/loss_step")]

    assert losses("killed") == losses("whole")  # every step once, the same values


def test_an_empty_class_folder_and_a_names_file_in_another_encoding(tmp_path):
    from formats import write_names

    write_image_folder(tmp_path / "images")
    (tmp_path / "images" / "train" / "bird").mkdir()
    folder = ["dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "dataset.num_workers=0"]
    with pytest.raises(DlbenchError, match=r"image_folder: .*train: .*no valid file for the classes bird"):
        train(compose.compose_config(folder), tmp_path / "a")

    names = write_names(tmp_path / "data")
    (names / "Czech.txt").write_bytes("Dvořák\n".encode("cp1250"))
    overrides = ["dataset=names", f"dataset.root={tmp_path / 'data'}", "dataset.download=false"]
    with pytest.raises(DlbenchError, match=r"names: .*Czech\.txt is not UTF-8 text"):
        train(compose.compose_config(overrides), tmp_path / "b")
