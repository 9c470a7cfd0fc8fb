"""The trainer in-process on tiny real data: precision, clipping, max steps, early stopping."""

import errno
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from dlbench import compose, files
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.training import train

FAST = ["trainer.progress=none", "logger=none"]


def run(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose.compose_config([*FAST, *overrides])
    return train(cfg, tmp_path)


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_on_cpu(tmp_path, precision):
    metrics = run(tmp_path, f"trainer.precision={precision}", "trainer.epochs=3", "optimizer.lr=0.01")
    assert metrics["test/acc"] > 0.8


def test_max_steps_stops_mid_epoch(tmp_path):
    run(tmp_path, "trainer.max_steps=5", "trainer.epochs=10")
    state = checkpoint.load(tmp_path)
    assert state["trainer"]["step"] == 5 and state["trainer"]["epoch"] == 1
    # that epoch was ended at step 5 (evaluated, its scheduler stepped): a larger max_steps cannot
    # continue it as if it had not been (a review's resume skipped the rest of the epoch)
    saved = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(DlbenchError, match="max_steps=8: this run stopped at trainer.max_steps, step 5"):
        run(tmp_path, "trainer.max_steps=8", "trainer.epochs=10", f"resume={tmp_path}")
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == saved


def test_grad_clip_and_scheduler(tmp_path):
    metrics = run(
        tmp_path, "trainer.grad_clip=0.5", "scheduler=step_lr", "scheduler.step_size=1", "trainer.epochs=2"
    )
    assert metrics["train/lr"] == pytest.approx(0.001 * 0.5)  # the LR used in epoch 2


def test_one_cycle_gets_its_length_from_the_trainer(tmp_path):
    metrics = run(tmp_path, "scheduler=one_cycle_lr", "trainer.epochs=2")
    assert metrics["train/lr"] < 0.001  # annealed to the end of the cycle


def test_early_stopping(tmp_path, caplog):
    settings = ["trainer.epochs=50", "optimizer.lr=5.0", "optimizer=sgd", f"resume={tmp_path}"]
    run(tmp_path, "trainer.patience=1", *settings[:-1])
    state = checkpoint.load(tmp_path)
    assert state["trainer"]["epoch"] < 50
    saved = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    run(tmp_path, "trainer.patience=1", *settings)  # a resume of a run that stopped early: it is over
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == saved
    assert "early stopping ended this run" in caplog.text
    run(tmp_path, "trainer.patience=3", *settings)  # more patience: it goes on
    assert checkpoint.load(tmp_path)["trainer"]["epoch"] > state["trainer"]["epoch"]


def test_a_run_ended_by_max_steps_resumed_with_more_epochs_says_it_trains_no_more(tmp_path, caplog):
    """It re-ran the test and exited 0 without a word (a review): max_steps is still reached."""
    run(tmp_path, "trainer.epochs=2", "trainer.max_steps=3")
    saved = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    run(tmp_path, "trainer.epochs=5", "trainer.max_steps=3", f"resume={tmp_path}")
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == saved
    said = "trainer.max_steps=3 ended this run at step 3: more epochs train nothing more (a new run goes on)"
    assert said in caplog.text and "resumed at epoch 1, step 3" in caplog.text  # (that epoch ended there)
    # a checkpoint written mid-epoch: the epoch it goes on in, as progress counts it (it said epoch 0)
    run(tmp_path / "a", "trainer.epochs=1", "trainer.checkpoint_every_n_steps=2", "trainer.keep_last_k=3")
    oldest = sorted((tmp_path / "a" / "checkpoints").glob("step-*.pt"))[0]  # (the epoch's last ones are kept)
    run(tmp_path / "b", "trainer.epochs=1", f"resume={oldest}")
    step = int(oldest.stem.split("-")[1])
    assert f"resumed in epoch 1 after {step} batches, step {step}" in caplog.text


def test_linear_regression_recovers_weights(tmp_path):
    metrics = run(
        tmp_path,
        "dataset=synthetic_linear",
        "model=linear",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "trainer.epochs=200",
    )
    state = checkpoint.load(tmp_path)
    weight, bias = state["task"]["model.1.weight"], state["task"]["model.1.bias"]
    assert torch.allclose(weight, torch.tensor([[1.0, 2.0, 3.0]]), atol=1e-3)
    assert torch.allclose(bias, torch.tensor([5.0]), atol=1e-3)
    assert metrics["train/loss"] < 1e-5


def test_binary_classification_on_iris(tmp_path):
    metrics = run(
        tmp_path,
        "dataset=iris",
        "dataset.classes=[0,1]",
        "task=binary_classification",
        "model=linear",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "trainer.epochs=30",
    )
    assert metrics["test/acc"] == 1.0
    bce = run(
        tmp_path / "bce",
        "dataset=iris",
        "dataset.classes=[0,1]",
        "task=binary_classification",
        "loss=bce",
        "model=linear",
        "optimizer=sgd",
        "optimizer.lr=0.1",
        "trainer.epochs=30",
    )
    assert bce["test/acc"] == 1.0


def test_binary_task_refuses_three_classes(tmp_path):
    with pytest.raises(DlbenchError, match="needs 2 classes"):
        run(tmp_path, "dataset=iris", "task=binary_classification")


def test_unavailable_device_is_an_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # the message is only for machines without it
    with pytest.raises(DlbenchError, match="CUDA is not available"):
        run(tmp_path, "device=cuda")


def test_hostile_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"task": {}, "config": "", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(DlbenchError, match="Refused to load"):
        checkpoint.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_dataloader_workers_see_the_same_batches_as_the_in_memory_loader(tmp_path):
    in_memory = run(tmp_path / "a", "trainer.epochs=2", "dataset.in_memory=auto")
    workers = run(tmp_path / "b", "trainer.epochs=2", "dataset.in_memory=false", "dataset.num_workers=2")
    drop = ("time/",)
    assert {k: v for k, v in in_memory.items() if not k.startswith(drop)} == {
        k: v for k, v in workers.items() if not k.startswith(drop)
    }


def test_throughput_is_reported_per_split(tmp_path):
    metrics = run(tmp_path, "trainer.epochs=1")
    train_samples = round(1797 * 0.8 * 0.9)  # digits less the test and val splits
    rate = metrics["time/train_samples_per_s"]
    # training is part of the epoch, so its rate is at least samples / epoch time
    assert rate >= train_samples / metrics["time/epoch_s"] * 0.99
    assert metrics["time/val_samples_per_s"] > 0 and metrics["time/test_samples_per_s"] > 0


def test_batch_augmentations_draw_per_image_randomness():
    from dlbench.data.transforms import BatchAugment, cutout, random_crop

    torch.manual_seed(0)
    x = torch.arange(2 * 5 * 5, dtype=torch.float32).reshape(1, 2, 5, 5).repeat(64, 1, 1, 1)
    flipped = BatchAugment(hflip=0.5, vflip=0, crop_padding=0, cutout=0, noise_std=0)(x)
    is_flipped = [torch.equal(f, x[0].flip(2)) for f in flipped]
    assert all(torch.equal(f, x[0]) or is_flipped[i] for i, f in enumerate(flipped))
    assert 16 < sum(is_flipped) < 48  # each image its own coin
    padded = torch.nn.functional.pad(x[0], (2,) * 4)
    windows = {(dy, dx): padded[:, dy : dy + 5, dx : dx + 5] for dy in range(5) for dx in range(5)}
    crops = random_crop(x, 2)
    offsets = [next(k for k, w in windows.items() if torch.equal(c, w)) for c in crops]  # each is a window
    assert len(set(offsets)) > 10
    cut = cutout(x + 1, 3)
    zeros = (cut == 0).all(dim=1).flatten(1).sum(1)  # pixels zeroed in every channel, per image
    assert zeros.max() == 9 and zeros.min() >= 2  # a 3x3 square, clipped at the border


def test_cpu_threads_are_measured_set_or_bounded_by_a_slurm_jobs_cpus(tmp_path, monkeypatch, caplog):
    """trainer.threads=auto times a training step at one thread and at one per core and keeps
    the faster; trainer.threads=N sets N; a Slurm job uses no more threads than its CPUs."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this machine has one core: there is no choice to measure")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.DEBUG, logger="dlbench"):
            run(tmp_path / "auto", "trainer.epochs=1", "trainer.threads=auto")
        line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("CPU threads: "))
        assert " on 1 thread," in line and " on 2 threads" in line, line
        assert torch.get_num_threads() == int(line.split()[2].rstrip(","))  # the one it chose

        torch.set_num_threads(2)
        run(tmp_path / "one", "trainer.epochs=1", "trainer.threads=1")
        assert torch.get_num_threads() == 1

        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")  # a job given one CPU on a larger node
        torch.set_num_threads(2)
        run(tmp_path / "slurm", "trainer.epochs=1", "trainer.threads=auto")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_figures_take_at_most_their_budget_of_the_run_but_the_last_are_always_drawn(tmp_path):
    """A confusion matrix costs ~0.2 s to draw, an epoch of digits ~0.02 s: logger.figures_budget
    decides which evaluations get figures. 1: each; 0: only the last epoch's and the test's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def confusion_steps(budget: str) -> tuple[list[int], list[int]]:
        cfg = compose.compose_config(
            ["trainer.progress=none", "trainer.epochs=4", f"logger.figures_budget={budget}"]
        )
        train(cfg, tmp_path / budget)
        events = EventAccumulator(str(tmp_path / budget / "tb"))
        events.Reload()
        steps = lambda tag: [image.step for image in events.Images(tag)]  # noqa: E731
        return steps("val/confusion_matrix"), steps("test/confusion_matrix")

    assert confusion_steps("1") == ([21, 42, 63, 84], [84])
    assert confusion_steps("0") == ([84], [84])
    with pytest.raises(DlbenchError, match=r"logger.figures_budget=2.0: must be in \[0, 1\]"):
        run(tmp_path / "bad", "logger.figures_budget=2")


def test_the_next_figures_are_drawn_only_if_their_cost_fits_the_budget(tmp_path):
    """Issue 29: the figures' budget counts the drawing about to happen (the last one's cost, a
    0.2 s guess before the first), so a run of a few short epochs does not draw the first one."""
    import time

    from dlbench.engine.logging import RunLogger

    logger = RunLogger(tmp_path, "none", figures_budget=0.1)
    assert not logger.figures_due()  # 0.2 s of figures in a run just started: over 10%
    logger.figures.started = time.perf_counter() - 10  # 10 s in: a 1 s budget
    assert logger.figures_due()
    logger.drew_figures(0.5)
    assert logger.figures_due()  # 0.5 s drawn, 0.5 s more: within 1 s
    logger.drew_figures(0.5)
    assert not logger.figures_due()  # 1 s drawn: the next would pass it
    assert RunLogger(tmp_path, "none", figures_budget=1).figures_due()  # 1: every evaluation's


def test_train_metrics_are_measured_only_in_the_epochs_that_report_them(tmp_path, monkeypatch):
    """Issue 29: an epoch that reports nothing (trainer.val_every_n_epochs) updates no train/
    metric; the epochs that report measure their own batches alone, as when every epoch reports."""
    from dlbench.tasks.metrics import Predictions

    updates: dict[int, int] = {}
    update = Predictions.update

    def counted(self, preds, target):
        updates[id(self)] = updates.get(id(self), 0) + 1
        return update(self, preds, target)

    monkeypatch.setattr(Predictions, "update", counted)
    every = run(tmp_path / "every", "trainer.epochs=5", "trainer.val_every_n_epochs=1")
    every_updates, updates = max(updates.values()), {}  # (the train split's: the most batches)
    some = run(tmp_path / "some", "trainer.epochs=5", "trainer.val_every_n_epochs=3")  # epochs 3 and 5
    assert max(updates.values()) * 5 == every_updates * 2
    measured = sorted(k for k in every if not k.startswith("time/"))
    assert "train/acc" in measured and sorted(k for k in some if not k.startswith("time/")) == measured
    assert {k: some[k] for k in measured} == {k: every[k] for k in measured}


def test_an_epochs_means_are_read_only_where_someone_reads_them(tmp_path, monkeypatch):
    """Issue 29: the means of an epoch's step outputs are read (a device sync, and work on 10,000
    one-step epochs) in the epochs that report, and in every epoch when a plateau scheduler
    reads a train/ monitor after each one."""
    from dlbench.engine.means import BatchMeans

    read: list[str] = []
    result = BatchMeans.result

    def counted(self, prefix):
        read.append(prefix)
        return result(self, prefix)

    monkeypatch.setattr(BatchMeans, "result", counted)
    five = ["trainer.epochs=5", "trainer.val_every_n_epochs=3", "dataset.test_fraction=0"]
    run(tmp_path / "reports", *five)  # epochs 3 and 5 report
    assert read.count("train") == 2 and read.count("val") == 2
    read.clear()
    plateau = ["scheduler=reduce_lr_on_plateau", "trainer.monitor=train/loss", "trainer.monitor_mode=min"]
    metrics = run(tmp_path / "plateau", *five, *plateau)
    assert read.count("train") == 5 and read.count("val") == 2
    assert metrics["train/loss"] > 0


def test_a_terminals_progress_bar_is_one_bar_for_the_whole_fit(tmp_path, monkeypatch):
    """Issue 29: on a terminal, the progress bar is one rich bar started once for the fit and
    redrawn at most every 0.1 s. A bar started and redrawn every epoch cost ~3.5 ms an epoch:
    `dlbench experiment=iris_mlp trainer.epochs=1000` took 9.5 s on a terminal against 5.8 s
    without a bar (now 5.4 s against 5.1 s)."""
    import io

    from rich.progress import Progress

    from dlbench import terminal
    from dlbench.engine import logging as run_logging

    started: list[Progress] = []
    start = Progress.start
    monkeypatch.setattr(Progress, "start", lambda self: (started.append(self), start(self))[-1])
    screen = io.StringIO()
    shown = terminal.InertConsole(file=screen, force_terminal=True, width=150)
    monkeypatch.setattr(run_logging, "console", shown)
    overrides = ["logger=none", "trainer.progress=rich", "trainer.epochs=5", "trainer.log_every_n_steps=1"]
    cfg = compose.compose_config(overrides)
    metrics = train(cfg, tmp_path)
    assert len(started) == 1 and not started[0].live.is_started  # one bar, taken off at the end
    assert "epoch 1/5" in screen.getvalue()  # (drawn at the first epoch's start; later ones when due)
    assert metrics["test/acc"] > 0


def test_an_epochs_checkpoints_are_serialised_once(tmp_path, monkeypatch):
    """Issue 29: an epoch that improves writes last.pt and best.pt from one capture and one
    torch.save: best.pt is a copy of last.pt's bytes, in a file of its own."""
    saved = []
    save = torch.save
    monkeypatch.setattr(torch, "save", lambda state, f, **kw: (saved.append(1), save(state, f, **kw))[-1])
    run(tmp_path, "trainer.epochs=3", "trainer.monitor=val/loss", "trainer.checkpoint_budget=1")
    folder = tmp_path / "checkpoints"
    last, best = folder / "last.pt", folder / "best.pt"
    assert len(saved) == 3  # one an epoch, whether or not it improved
    assert last.read_bytes() == best.read_bytes()  # (the val loss falls in each of these epochs)
    assert last.stat().st_ino != best.stat().st_ino


def test_a_checkpoint_written_while_training_goes_on_holds_its_saves_state(tmp_path, monkeypatch):
    """checkpoint.Writer (a run's checkpoints): `save` returns before the files land, and they
    hold the state as it was at the save, not as training changed it since; a save waits for
    the one before it; a write that fails is raised once, by the next wait, the previous file
    whole."""
    landed = threading.Event()
    write = checkpoint.write

    def held_back(data, *paths):  # (the disk is slow: the files land once the test says so)
        landed.wait(timeout=30)
        write(data, *paths)

    monkeypatch.setattr(checkpoint, "write", held_back)
    folder, weights = tmp_path / "checkpoints", torch.ones(3)
    writes = checkpoint.Writer()
    writes.save({"task": {"w": weights}, "config": "name: a"}, folder / "last.pt", folder / "best.pt")
    weights.add_(1)  # the next steps change the weights in place while the file is written
    assert not (folder / "last.pt").exists()
    landed.set()
    writes.save({"task": {"w": weights}, "config": "name: a"}, folder / "last.pt")
    weights.add_(1)
    writes.wait()
    assert checkpoint.load(folder / "best.pt")["task"]["w"].tolist() == [1, 1, 1]
    assert checkpoint.load(folder / "last.pt")["task"]["w"].tolist() == [2, 2, 2]

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    writes.save({"task": {"w": weights}, "config": "name: a"}, folder / "last.pt")  # (fails in its thread)
    with pytest.raises(DlbenchError, match="No space left on device writing .*last.pt"):
        writes.wait()
    writes.wait()  # (raised once)
    assert checkpoint.load(folder / "last.pt")["task"]["w"].tolist() == [2, 2, 2]
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]


def test_a_checkpoint_wait_ctrl_c_cut_short_waits_again_the_next_time(tmp_path, monkeypatch, request):
    """Ctrl-C during a wait for the checkpoint in flight stops the wait; the next wait (the run's
    end) waits for it still (Thread.join, cut short once, returned at once the next time while
    the thread was still writing: the run ended before its last.pt)."""
    landed = threading.Event()
    write = checkpoint.write
    monkeypatch.setattr(checkpoint, "write", lambda data, *paths: (landed.wait(30), write(data, *paths)))
    writes = checkpoint.Writer()
    writes.save({"task": {"w": torch.ones(3)}, "config": "name: a"}, tmp_path / "last.pt")
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (Ctrl-C's KeyboardInterrupt)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    main = threading.main_thread().ident  # (Ctrl-C, as the main thread waits)
    threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        writes.wait()
    threading.Timer(0.3, landed.set).start()
    writes.wait()
    assert checkpoint.load(tmp_path / "last.pt")["task"]["w"].tolist() == [1, 1, 1]


def test_a_run_reports_after_its_last_checkpoint_has_landed(tmp_path, monkeypatch):
    """The last epoch's checkpoint is written while the test split is evaluated; metrics.json,
    whose test figures are last.pt's weights', is written once last.pt holds them."""
    write, write_text = checkpoint.write, files.write_text
    seen = []

    def slow(data, *paths):
        time.sleep(0.3)
        write(data, *paths)

    def recorded(path, text):
        if path.name == "metrics.json":
            seen.append(checkpoint.load(path.parent)["trainer"]["epoch"])
        write_text(path, text)

    monkeypatch.setattr(checkpoint, "write", slow)
    monkeypatch.setattr(files, "write_text", recorded)
    run(tmp_path, "trainer.epochs=2", "trainer.checkpoint_budget=0")
    assert seen == [2]


def test_checkpoints_keep_to_their_budget_and_best_pt_still_holds_the_best_epoch(tmp_path, monkeypatch):
    """Issue 29: trainer.checkpoint_budget. At 0, last.pt is written after the last epoch only;
    the best epoch (the fifth of six here) is kept in memory and written as best.pt before it.
    Both files hold what every epoch's checkpoints (1) leave."""
    written = []  # for each checkpoint the run writes: the epoch its state is of, the files
    save = checkpoint.Writer.save

    def recorded(self, state, *paths, **options):
        written.append((state["trainer"]["epoch"], [path.name for path in paths]))
        save(self, state, *paths, **options)

    monkeypatch.setattr(checkpoint.Writer, "save", recorded)
    overrides = ["trainer.epochs=6", "optimizer.lr=0.01", "trainer.threads=1"]  # (one arithmetic for both)
    for budget in ("0", "1"):
        run(tmp_path / budget, *overrides, f"trainer.checkpoint_budget={budget}")
    every_epoch = [(e, ["last.pt", "best.pt"]) for e in range(1, 6)] + [(6, ["last.pt"])]
    assert written == [(5, ["best.pt"]), (6, ["last.pt"]), *every_epoch]
    for name in ("last.pt", "best.pt"):
        kept, each = (checkpoint.load(tmp_path / budget / "checkpoints" / name) for budget in ("0", "1"))
        assert kept["trainer"]["epoch"] == each["trainer"]["epoch"] == {"last.pt": 6, "best.pt": 5}[name]
        assert kept["trainer"]["best"] == each["trainer"]["best"]
        for part in ("task", "optimizers"):
            torch.testing.assert_close(kept[part], each[part], rtol=0, atol=0)
        assert torch.equal(kept["rng"]["torch"], each["rng"]["torch"])
    with pytest.raises(DlbenchError, match=r"trainer.checkpoint_budget=-0.1: must be in \[0, 1\]"):
        run(tmp_path / "bad", "trainer.checkpoint_budget=-0.1")


def test_the_objects_a_run_starts_with_are_out_of_full_collections_while_it_trains(tmp_path, monkeypatch):
    """Issue 29: a full garbage collection over the ~250,000 objects of the built run took
    ~150 ms of an iris_mlp fit; frozen (gc.freeze), ~13 ms. They are unfrozen after the run."""
    import gc

    from dlbench.engine.trainer import Trainer

    frozen = []
    fit = Trainer.fit
    monkeypatch.setattr(
        Trainer, "fit", lambda self, *args: (frozen.append(gc.get_freeze_count()), fit(self, *args))[1]
    )
    run(tmp_path / "a", "trainer.epochs=1")
    assert frozen[0] > 100_000 and gc.get_freeze_count() == 0
    gc.freeze()  # a program that froze its own objects before calling dlbench keeps its freeze
    try:
        unfrozen = []
        monkeypatch.setattr(gc, "unfreeze", lambda: unfrozen.append(1))
        run(tmp_path / "b", "trainer.epochs=1")
        assert not unfrozen and gc.get_freeze_count() > 100_000
    finally:
        monkeypatch.undo()
        gc.unfreeze()


def test_a_kept_state_is_a_copy_of_the_same_types_on_the_cpu():
    """training_state.copied (a best epoch kept in memory): a state_dict stays an OrderedDict
    with its module versions (_metadata), a namedtuple stays one, and nothing is shared."""
    import collections

    from dlbench.engine.training_state import copied

    weights = torch.nn.BatchNorm1d(3).state_dict()
    Pair = collections.namedtuple("Pair", "tensor number")
    state = {"task": weights, "optimizers": {"model": [Pair(torch.ones(2), 3)]}, "trainer": {}, "rng": {}}
    kept = copied(state)
    assert type(kept["task"]) is type(weights) and kept["task"]._metadata == weights._metadata
    assert kept["optimizers"]["model"][0].number == 3 and isinstance(kept["optimizers"]["model"][0], Pair)
    kept["task"]["weight"] += 1
    assert torch.equal(weights["weight"], torch.ones(3))


def test_dlbench_trains_the_same_weights_as_the_notes_plain_loop(tmp_path):
    """Issue 29: what makes tiny steps cheap (train metrics only when reported, the fused NaN/Inf
    guard, the epoch means, the in-memory batches) changes no arithmetic: iris_mlp's weights after
    dlbench's 40 epochs equal, bit for bit, those of the notes' loop (randperm, slice, forward,
    loss, zero_grad, backward, step) from the same initial weights over the same batches."""
    import torch.nn.functional as F

    from dlbench.build import build_data, build_task
    from dlbench.engine.device import seed_everything

    overrides = [*FAST, "experiment=iris_mlp", "trainer.epochs=40", "trainer.val_every_n_epochs=7"]
    overrides += ["trainer.threads=1", "trainer.log_every_n_steps=5"]
    cfg = compose.compose_config(overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(cfg.trainer.seed)  # as the run does before it builds its parts
        data = build_data(cfg)
        model = build_task(cfg, data.info, data).model.train()
        x, y = data.splits["train"].tensors
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr)
        for epoch in range(cfg.trainer.epochs):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.trainer.seed + epoch))
            for start in range(0, len(x), cfg.dataset.batch_size):
                idx = order[start : start + cfg.dataset.batch_size]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        train(cfg, tmp_path)
    finally:
        torch.set_num_threads(threads)
    trained = checkpoint.load(tmp_path)["task"]
    plain = {f"model.{k}": v for k, v in model.state_dict().items()}
    assert trained.keys() == plain.keys()
    assert all(torch.equal(trained[k], plain[k]) for k in plain), "the weights differ"


def test_the_steps_zero_grad_sets_the_gradients_to_none_and_keeps_an_optimizers_own():
    """engine/step.zero_grad: torch's zero_grad(set_to_none=True) without its profiler range; an
    optimizer class with a zero_grad of its own still has it called."""
    from dlbench.engine.step import zero_grad

    class Counting(torch.optim.SGD):
        calls = 0

        def zero_grad(self, set_to_none: bool = True) -> None:
            Counting.calls += 1
            super().zero_grad(set_to_none)

    model = torch.nn.Linear(3, 2)
    for optimizer in (torch.optim.SGD(model.parameters(), lr=0.1), Counting(model.parameters(), lr=0.1)):
        model(torch.ones(4, 3)).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        zero_grad(optimizer)
        assert all(p.grad is None for p in model.parameters())
    assert Counting.calls == 1


def test_the_steps_optimizer_step_leaves_out_only_torchs_profiler_range(monkeypatch):
    """engine/step.optimizer_step: the same update as optimizer.step(), without the profiler
    range torch's wrapper opens (where nothing else needs the wrapper); the optimizer's step
    hooks, every optimizer's hooks, an LR scheduler's count of the steps and a recording
    profiler still get theirs."""
    import functools
    import warnings

    from torch.optim import optimizer as torch_optimizer

    from dlbench.engine.step import TORCH_STEP_WRAPPER, optimizer_step

    ranges = []
    record_function = torch.autograd.profiler.record_function

    def counted(name, *args):
        ranges.append(name)
        return record_function(name, *args)

    monkeypatch.setattr(torch.autograd.profiler, "record_function", counted)

    def model_and_optimizer(kind):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        model(torch.randn(8, 3)).pow(2).sum().backward()
        return model, kind(model.parameters(), lr=0.1)

    for kind in (torch.optim.SGD, torch.optim.Adam):  # the same arithmetic, bit for bit
        ours, theirs = model_and_optimizer(kind), model_and_optimizer(kind)
        optimizer_step(ours[1])
        assert ranges == []  # (nothing registered: the step itself)
        theirs[1].step()
        assert ranges == [f"Optimizer.step#{kind.__name__}.step"]
        pairs = zip(ours[0].parameters(), theirs[0].parameters(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
        ranges.clear()

    calls = []
    model, optimizer = model_and_optimizer(torch.optim.SGD)
    registers = [
        optimizer.register_step_pre_hook,
        optimizer.register_step_post_hook,
        torch_optimizer.register_optimizer_step_pre_hook,
        torch_optimizer.register_optimizer_step_post_hook,
    ]
    for register in registers:  # each alone
        handle = register(lambda *a, name=register.__name__: calls.append(name))
        try:
            optimizer_step(optimizer)
        finally:
            handle.remove()
    assert calls == [register.__name__ for register in registers]

    class Marked(torch.optim.SGD):  # a step marked so that torch does not wrap it
        def step(self, closure=None):
            calls.append("marked")
            return super().step(closure)

    Marked.step.hooked = True

    def decorated(step):  # a decorator that copies the attributes of torch's wrapper
        @functools.wraps(step)
        def run(self, *args, **kwargs):
            calls.append("decorated")
            return step(self, *args, **kwargs)

        return run

    class Decorated(torch.optim.SGD):
        step = decorated(torch.optim.SGD.step)  # (SGD's step is torch's wrapper by now)

    calls.clear()
    for kind in (Marked, Decorated):
        optimizer_step(model_and_optimizer(kind)[1])
    assert calls == ["marked", "decorated"]
    # what the wrapper does, pinned: a torch that adds to it fails here, not silently
    known = {
        "cast", "Optimizer", "isinstance", "tuple", "len", "__class__", "__name__", "torch", "autograd",
        "profiler", "record_function", "chain", "values", "RuntimeError", "_optimizer_step_code",
        "_global_optimizer_pre_hooks", "_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
        "_global_optimizer_post_hooks",
    }  # fmt: skip
    new = set(TORCH_STEP_WRAPPER.co_names) - known
    assert not new, (
        f"torch's optimizer step wrapper changed ({new}): check what engine/step.optimizer_step skips"
    )

    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ("Detected call of lr_scheduler.step() before optimizer.step()")
        optimizer_step(optimizer)
        scheduler.step()

    ranges.clear()
    model, optimizer = model_and_optimizer(torch.optim.SGD)
    optimizer_step(optimizer, profiling=True)  # (trainer.profile's recording)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        optimizer_step(optimizer)  # (a profiler of the user's own)
    assert ranges == ["Optimizer.step#SGD.step"] * 2


def test_a_terminals_log_lines_are_one_line_of_text_each_in_order_under_the_bar(tmp_path, monkeypatch):
    """Issue 29: on a terminal (trainer.progress=rich) a log line is `[time] message` printed at
    once, under the progress bar too, in the order logged; a warning is named, an exception's
    traceback follows its line, and a control character in a message is shown, not sent."""
    import io
    import logging

    from dlbench import terminal
    from dlbench.engine import logging as run_logging
    from dlbench.engine.logging import RunLogger, setup_console

    screen = io.StringIO()
    shown_on = terminal.InertConsole(file=screen, force_terminal=True, width=150)
    monkeypatch.setattr(run_logging, "console", shown_on)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # (put back as they were)
    setup_console("rich")
    log = logging.getLogger("elsewhere")  # (not dlbench's: its own filter makes its lines inert)
    logger = RunLogger(tmp_path, "rich", 1.0)
    logger.progress(10, "epoch 1/2", 10)  # (the bar is shown)
    log.info("first line \r[bold]")
    assert "first line \\x0d[bold]" in screen.getvalue()  # at once, as text
    log.warning("a warning")
    try:
        raise ValueError("what went wrong")
    except ValueError:
        log.exception("a failure")
    logger.end_progress()
    log.info("last line")
    shown = screen.getvalue()
    at = [shown.index(text) for text in ("first line", "WARNING", "a warning", "ERROR", "a failure")]
    at += [shown.index(text) for text in ("Traceback", "ValueError: what went wrong", "last line")]
    assert at == sorted(at)


def test_the_bar_is_laid_out_once_per_redraw_and_shows_as_richs_own(monkeypatch):
    """Issue 29: a line printed under the terminal's progress bar shows the lines the bar's last
    redraw drew, rather than laying its table out again (~0.55 ms a line): the screen is byte for
    byte the one rich's own Progress draws, a narrower terminal's too, and the table is laid out
    once per redraw (and once more for the new width)."""
    import io

    import rich.table
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dlbench import terminal
    from dlbench.engine.logging import drawn_once

    def screen(kind: type) -> tuple[str, int]:
        out = io.StringIO()
        shown_on = terminal.InertConsole(file=out, force_terminal=True, width=90)
        laid_out, render = [], rich.table.Table.__rich_console__
        monkeypatch.setattr(
            rich.table.Table, "__rich_console__", lambda *a: (laid_out.append(1), render(*a))[1]
        )
        columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn()]
        bar = kind(*columns, console=shown_on, transient=True, auto_refresh=False)
        task = bar.add_task("epoch 1/2", total=10)
        bar.start()
        for step in range(1, 4):
            bar.update(task, completed=step)
            bar.refresh()
            for line in range(3):
                if (step, line) == (2, 1):
                    shown_on.width = 50  # (a narrower terminal: the bar is laid out again for it)
                shown_on.print(f"line {line} after step {step}")
        bar.stop()
        monkeypatch.undo()
        return out.getvalue(), len(laid_out)

    ours, laid_out = screen(drawn_once(Progress))
    richs, laid_out_by_rich = screen(Progress)
    assert ours == richs and "line 2 after step 3" in ours
    # (start, 3 redraws, the new width, stop; rich's: each of the 9 prints too)
    assert laid_out <= 6 and laid_out_by_rich >= laid_out + 8, (laid_out, laid_out_by_rich)


def test_adam_is_fused_where_torch_has_the_kernel_and_the_config_chooses_no_implementation():
    """engine/optim.build_optimizer: Adam and AdamW on the CPU get torch's fused kernel (one
    call for every parameter); `+optimizer.fused=false`, an `optimizer.foreach`, a parameter the
    kernel refuses at its first step (complex, on the meta device), SGD (whose fused kernel
    refuses sparse gradients) and RMSprop (none) keep torch's default. Fused Adam trains as the
    default does, its floats added in another order."""
    from dlbench.engine.optim import build_optimizer

    def built(*overrides, param=None):
        cfg = compose.compose_config([*FAST, *overrides])
        groups = [{"params": [param if param is not None else torch.nn.Parameter(torch.ones(3))]}]
        return build_optimizer(cfg.optimizer, groups).defaults

    assert built("optimizer=adam")["fused"] is True and built("optimizer=adamw")["fused"] is True
    assert not built("optimizer=adam", "+optimizer.fused=false")["fused"]
    assert built("optimizer=adam", "+optimizer.foreach=true")["fused"] is None
    assert built("optimizer=sgd")["fused"] is None and "fused" not in built("optimizer=rmsprop")
    for param in (torch.ones(3, dtype=torch.complex64), torch.ones(3, device="meta")):
        assert built("optimizer=adam", param=torch.nn.Parameter(param))["fused"] is None

    def trained(fused):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=fused)
        x, y = torch.randn(64, 8), torch.randn(64, 1)
        for _ in range(50):
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item(), torch.cat([p.flatten() for p in model.parameters()])

    (fused_loss, fused), (loss, default) = trained(True), trained(None)
    assert fused_loss == pytest.approx(loss, rel=1e-3) and torch.allclose(fused, default, atol=1e-4)


def test_a_resumed_optimizer_state_is_stepped_as_this_run_steps_it(tmp_path):
    """engine/optim.load_optimizer_state: an fp16 run saved before Adam was fused (its groups
    say fused None) resumes, its steps unfused, fp16's scaler unscaling for them; a state that
    is not Adam's (a short exp_avg, which the fused kernel would read past its end) is refused,
    the checkpoint unchanged; and Adam's state saved in one memory layout steps right in the
    other (a resume that changes trainer.channels_last), where torch's fused CPU kernel would
    pair the wrong numbers."""
    from dlbench.engine.optim import build_optimizer, load_optimizer_state

    fp16 = ["trainer.precision=16", "trainer.epochs=1", "dataset.test_fraction=0"]
    run(tmp_path / "old", *fp16)
    saved = tmp_path / "old" / "checkpoints" / "last.pt"
    state = torch.load(saved, weights_only=True)
    assert all(group["fused"] for group in state["optimizers"]["model"]["param_groups"])
    for group in state["optimizers"]["model"]["param_groups"]:
        group["fused"] = None  # (as a checkpoint written before)
    torch.save(state, saved)
    run(tmp_path / "old", *fp16, "trainer.epochs=2", f"resume={tmp_path / 'old'}")
    resumed = torch.load(saved, weights_only=True)
    assert resumed["trainer"]["epoch"] == 2
    assert all(group["fused"] is None for group in resumed["optimizers"]["model"]["param_groups"])
    resumed["optimizers"]["model"]["state"][0]["exp_avg"] = torch.zeros(4)  # (a hostile file's)
    torch.save(resumed, saved)
    written = saved.read_bytes()
    with pytest.raises(DlbenchError, match="does not fit.*exp_avg is \\(4,\\)"):
        run(tmp_path / "old", *fp16, "trainer.epochs=3", f"resume={tmp_path / 'old'}")
    assert saved.read_bytes() == written

    import copy

    cfg = compose.compose_config([*FAST, "optimizer=adam", "optimizer.lr=0.1"])
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(4, 3, 8, 8)

    def stepped(module, optimizer, times):
        for _ in range(times):
            optimizer.zero_grad()
            module(x.contiguous(memory_format=torch.channels_last)).square().mean().backward()
            optimizer.step()

    before = build_optimizer(cfg.optimizer, list(conv.parameters()))  # (fused, contiguous)
    stepped(conv, before, 3)
    results = []
    for fused in (True, None):  # (the groups' own `fused` says which implementation steps)
        twin = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
        twin.load_state_dict(conv.state_dict())
        saved = copy.deepcopy(before.state_dict())  # (as read from a checkpoint: tensors of its own)
        for group in saved["param_groups"]:
            group["fused"] = fused
        after = torch.optim.Adam(twin.parameters(), lr=0.1, fused=True)
        load_optimizer_state(after, saved)
        stepped(twin, after, 3)
        results.append(twin.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)


def test_batch_norm_is_refused_a_batch_of_one_only_where_it_would_see_one_value_a_channel():
    """A last batch of one sample: torch's error an epoch in (exit 1) where a BatchNorm layer sees
    one value a channel (a 1x1 map, a BatchNorm1d); a map of 4x4 trains on it, and is not refused."""
    import dataclasses

    from dlbench.build import build_data, build_task, check_batch_norm_batches

    cfg = compose.compose_config(["model=resnet", "trainer.progress=none"])
    data = build_data(cfg)
    task = build_task(cfg, data.info, data)
    with pytest.raises(
        DlbenchError, match="dataset.batch_size=431: its 1294 samples leave a last batch of one"
    ):
        check_batch_norm_batches(task, data, 431)  # (8x8 digits: ResNet's last maps are 1x1)
    check_batch_norm_batches(task, data, 430)  # (a last batch of 4)
    with pytest.raises(DlbenchError, match="its 647 samples leave a last batch of one on each process"):
        check_batch_norm_batches(task, data, 4, processes=2)  # (two per process: 647 = 323 x 2 + 1)
    data.info = dataclasses.replace(data.info, input_shape=[1, 32, 32])  # (its last maps: 4x4)
    check_batch_norm_batches(task, data, 431)


def test_every_evaluation_runs_without_gradients(tmp_path, monkeypatch):
    """(A method put between `evaluate` and its @torch.no_grad took it away: every validation
    and test kept its graph, and seq2seq's figures failed.) Each evaluation step, and the figures
    drawn after it, run with gradients off."""
    from dlbench.tasks.classification import Classification

    seen = []
    step, figures = Classification.evaluation_step, Classification.figures
    monkeypatch.setattr(
        Classification,
        "evaluation_step",
        lambda self, *a: seen.append(torch.is_grad_enabled()) or step(self, *a),
    )
    monkeypatch.setattr(
        Classification, "figures", lambda self, *a: seen.append(torch.is_grad_enabled()) or figures(self, *a)
    )
    train(compose.compose_config(["trainer.epochs=1", "trainer.progress=none"]), tmp_path / "run")
    assert seen and not any(seen), seen


def test_trainer_epochs_0_tests_and_saves_the_untrained_model(tmp_path):
    """trainer.epochs=0 measures the untrained model (what a lecture compares against) and saves
    it: it left no checkpoint, so eval and export said "No checkpoint"; a resume trains it on."""
    from dlbench.engine import checkpoint

    untrained = run(tmp_path, "model=linear", "trainer.epochs=0")
    saved = checkpoint.load(tmp_path)
    assert (saved["trainer"]["epoch"], saved["trainer"]["step"]) == (0, 0)
    assert untrained["test/acc"] < 0.5
    trained = run(tmp_path, "model=linear", "trainer.epochs=1", f"resume={tmp_path}")
    assert checkpoint.load(tmp_path)["trainer"]["epoch"] == 1 and trained["test/acc"] > untrained["test/acc"]
