"""Issue 27: the training toolkit as options of the one trainer: gradient accumulation,
clipping by value, EMA and SWA of the weights, mixup/cutmix, the LR range test, the profiler."""

import csv
import signal

import pytest
import torch
from conftest import read_metrics

from dlbench import compose
from dlbench.config import TrainerConfig
from dlbench.engine import checkpoint
from dlbench.engine.optim import Optimization
from dlbench.engine.step import Stepper
from dlbench.engine.trainer import Trainer
from dlbench.errors import DlbenchError, Preempted
from dlbench.training import train

QUIET = ["trainer.progress=none", "trainer.threads=1", "logger=none"]
LINEAR = ["model=linear", "trainer.epochs=2", *QUIET]  # no BatchNorm, no dropout


def weights(run) -> dict[str, torch.Tensor]:
    return {k: v for k, v in checkpoint.load(run)["task"].items() if k.startswith("model.")}


@pytest.mark.parametrize("small", [16, 24])
def test_k_batches_of_b_accumulated_train_as_one_batch_of_k_times_b(tmp_path, small):
    # the digits' 1294 training images: 81 batches of 16 (the last of 14) in 21 groups of 4,
    # the last group one batch of 14, against 21 batches of 64 (the last of 14); and 54 batches
    # of 24 in 14 groups, the last of two batches, of 24 and 22 samples (weighted by their
    # samples: a mean of the two batches' means was 1.5e-3 off), against 14 batches of 96
    one = train(compose.compose_config([*LINEAR, f"dataset.batch_size={small * 4}"]), tmp_path / "one")
    acc = train(
        compose.compose_config([*LINEAR, f"dataset.batch_size={small}", "trainer.accumulate=4"]),
        tmp_path / "acc",
    )
    steps = checkpoint.load(tmp_path / "acc")["trainer"]["step"]
    assert steps == checkpoint.load(tmp_path / "one")["trainer"]["step"] == {16: 42, 24: 28}[small]
    big, small_batches = weights(tmp_path / "one"), weights(tmp_path / "acc")
    for name, value in big.items():
        assert (small_batches[name] - value).abs().max() < 1e-6, name
    assert acc["test/loss"] == pytest.approx(one["test/loss"], abs=1e-5)
    # the same batches without accumulation train differently: the test can tell them apart
    plain = train(compose.compose_config([*LINEAR, f"dataset.batch_size={small}"]), tmp_path / "plain")
    assert plain["test/loss"] != pytest.approx(one["test/loss"], abs=1e-3)


def test_a_stop_signal_inside_a_group_stops_after_it_and_the_resume_is_exact(monkeypatch, tmp_path):
    overrides = [*LINEAR, "dataset.batch_size=16", "trainer.accumulate=4", "trainer.deterministic=true"]
    train(compose.compose_config(overrides), tmp_path / "whole")
    optimize, calls = Trainer.optimize, []

    def optimize_and_signal(self, optimizations, name, loss):
        optimize(self, optimizations, name, loss)
        calls.append(1)
        if len(calls) == 6:  # the second micro-batch of the second group
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(Trainer, "optimize", optimize_and_signal)
    with pytest.raises(Preempted) as stop:
        train(compose.compose_config(overrides), tmp_path / "cut")
    assert stop.value.step == 2  # the group ended first
    saved = checkpoint.load(tmp_path / "cut")["trainer"]
    assert (saved["step"], saved["epoch_step"]) == (2, 8)
    monkeypatch.undo()
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'cut'}"]), tmp_path / "cut")
    whole, cut = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "cut")
    assert cut["trainer"]["step"] == whole["trainer"]["step"] == 42
    for name, value in whole["task"].items():
        assert torch.equal(cut["task"][name], value), name


@pytest.mark.parametrize("setting", [{"accumulate": 2}, {"ema": 0.9}, {"swa_start": 1}])
def test_accumulation_and_averages_are_refused_for_a_task_with_several_networks(tmp_path, setting):
    from dlbench.tasks.base import Task

    class TwoNetworks(Task):  # a GAN's shape: one optimizer per network on every batch
        def networks(self):
            return {"generator": self.model, "discriminator": self.loss}

    task = TwoNetworks(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    trainer = Trainer(TrainerConfig(**setting), torch.device("cpu"), tmp_path, logger=None)
    ((key, value),) = setting.items()
    with pytest.raises(DlbenchError, match=rf"trainer.{key}={value}: TwoNetworks trains several networks"):
        trainer.setup(task)


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_gradients_are_clipped_by_their_norm_or_by_each_value(mode):
    weight = torch.nn.Parameter(torch.zeros(4))
    optimization = Optimization(torch.optim.SGD([weight], lr=1.0))
    stepper = Stepper(TrainerConfig(grad_clip=0.5, grad_clip_mode=mode), torch.device("cpu"), None)
    loss = (weight * torch.tensor([3.0, -4.0, 0.1, 0.0])).sum()  # its gradient: these numbers
    stepper.optimize(optimization, "model", loss, step=1, epoch=1)
    gradient = torch.tensor([3.0, -4.0, 0.1, 0.0])
    clipped = gradient.clamp(-0.5, 0.5) if mode == "value" else gradient * 0.5 / gradient.norm()
    assert weight.detach().tolist() == pytest.approx((-clipped).tolist(), rel=1e-5)
    assert stepper.losses == []  # (the group's losses are let go after its step)


def test_progress_counts_an_accumulated_epochs_batches_up_to_max_steps(cli):
    """The plain progress line said `step 30/54` of micro-batches, and 54 for an epoch that
    max_steps ends after 21 (a review): it says batches, and the epoch's own."""
    run = ["trainer.accumulate=3", "dataset.batch_size=24", "trainer.epochs=2", "trainer.max_steps=25"]
    result = cli(*run, "trainer.progress=plain", "trainer.log_every_n_steps=5")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "  batch " in line]
    assert any(line.startswith("epoch 1/2  batch 15/54  loss ") for line in lines), lines
    assert any(line.startswith("epoch 2/2  batch 21/21  loss ") for line in lines), lines  # (18 + 7 steps)


def test_accumulate_and_clip_mode_refuse_impossible_values(cli):
    result = cli("trainer.accumulate=0")
    assert result.returncode == 2 and "trainer.accumulate=0: must be at least 1" in result.stderr
    result = cli("trainer.grad_clip_mode=elementwise")
    assert result.returncode == 2 and "choose one of: norm|value" in result.stderr
    # a setting that does nothing without another is said, not ignored (nor refused: a sweep's grid
    # may hold trainer.grad_clip=null beside grad_clip_mode=value)
    # (early stopping that cannot act, a val split asked of a run validated on train: a helper's)
    idle = ["trainer.patience=1", "dataset.validate_on=train", "dataset.val_fraction=0.3", "optimizer.lr=0"]
    idle.append("trainer.swa_lr=0.1")  # (it was refused as if 0.1 were wrong)
    idle += ["logger.wandb.project=lab", "hydra/launcher=joblib"]  # (a helper's: silently idle)
    result = cli("trainer.grad_clip_mode=value", "trainer.keep_last_k=3", "trainer.epochs=1", *idle)
    assert result.returncode == 0, result.stderr
    said = result.stdout + result.stderr
    assert "trainer.grad_clip_mode=value does nothing: trainer.grad_clip is not set" in said
    assert "trainer.keep_last_k=3 does nothing: trainer.checkpoint_every_n_steps is not set" in said
    assert "trainer.patience=1 does nothing: the run evaluates 1 time(s)" in said
    assert "dataset.val_fraction=0.3 does nothing: dataset.validate_on=train validates on the train" in said
    assert "optimizer.lr=0: no step moves the weights" in said
    assert "trainer.swa_lr=0.1 does nothing: trainer.swa_start (the epoch SWA starts at) is not set" in said
    assert "logger.wandb.project=lab does nothing: logger.backends=[tensorboard] logs nothing" in said
    assert "hydra/launcher=joblib launches a sweep's jobs (-m); this run trains here" in said
    result = cli("trainer.patience=1", "trainer.epochs=3")  # (it can act: nothing said)
    assert result.returncode == 0 and "does nothing" not in result.stdout + result.stderr
    # (one_cycle_lr sets its own lr, from max_lr: not a run that trains for nothing)
    result = cli("optimizer.lr=0", "scheduler=one_cycle_lr", "scheduler.max_lr=0.01", "trainer.epochs=1")
    assert result.returncode == 0 and "no step moves" not in result.stdout + result.stderr
    # (which is what it does with any optimizer.lr: said, as lr-find's command now sets max_lr)
    said = "optimizer.lr=0 does nothing: scheduler=one_cycle_lr sets the lr itself (from scheduler.max_lr)"
    assert said in result.stdout + result.stderr
    # (unless max_lr is left as one_cycle_lr's config has it, ${optimizer.lr}: then the lr is its peak)
    from dlbench.validation import idle_settings

    words = ["scheduler=one_cycle_lr", "optimizer.lr=0.05"]
    assert not [n for n in idle_settings(compose.compose_config(words), words) if "optimizer.lr" in n]


def test_compile_mode_is_torch_compiles_and_an_unknown_one_is_refused(cli, tmp_path, monkeypatch):
    """Issue 29: trainer.compile_mode=reduce-overhead (CUDA graphs, for launch-bound models on a
    GPU) reaches torch.compile; a mode torch does not have is one message."""
    modes = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **options: modes.append(options["mode"]))
    options = ["trainer.compile=true", "trainer.compile_mode=reduce-overhead", "trainer.max_steps=1"]
    train(compose.compose_config([*LINEAR, *options]), tmp_path / "run")
    assert modes == ["reduce-overhead"]
    result = cli("trainer.compile=true", "trainer.compile_mode=reduce_overhead")
    assert result.returncode == 2 and "reduce-overhead" in result.stderr and "Traceback" not in result.stderr
    result = cli("trainer.compile_mode=reduce-overhead")  # (without trainer.compile: nothing to compile)
    assert result.returncode == 2 and "only with trainer.compile=true" in result.stderr


def test_the_ema_is_what_evaluation_and_checkpoints_take_and_the_trained_weights_stay(tmp_path):
    overrides = [*LINEAR, "trainer.ema=0.5", "optimizer=sgd", "trainer.max_steps=2"]
    periodic = ["trainer.checkpoint_every_n_steps=1", "trainer.keep_last_k=2"]
    metrics = train(compose.compose_config([*overrides, *periodic]), tmp_path / "run")
    saved = tmp_path / "run" / "checkpoints"
    one, two = (checkpoint.load(saved / f"step-00000000{n}.pt") for n in (1, 2))
    for name in weights(saved / "last.pt"):
        w1, w2 = one["trained"][name], two["trained"][name]
        assert torch.equal(one["task"][name], w1), name  # the first step: the average is the weights
        assert torch.allclose(two["task"][name], 0.5 * w1 + 0.5 * w2, atol=1e-7), name  # then decays
        assert not torch.equal(two["task"][name], w2), name
    # what a user loads is the average, and the run's test figures are the average's
    from dlbench.api import Run

    loaded = Run.open(tmp_path / "run").load_model().state_dict()
    last = checkpoint.load(saved / "last.pt")
    assert all(torch.equal(value, last["task"][f"model.{name}"]) for name, value in loaded.items())
    assert "test/loss" in metrics


@pytest.mark.parametrize(
    "setting, signal_at",
    [
        (["trainer.ema=0.9"], 6),
        (["trainer.swa_start=2", "trainer.swa_lr=0.05", "model=mlp", "model.norm=batch"], 30),
    ],
)
def test_a_resumed_run_with_an_average_ends_as_the_whole_run(monkeypatch, tmp_path, setting, signal_at):
    overrides = [*LINEAR, "trainer.epochs=3", "trainer.deterministic=true", *setting]
    train(compose.compose_config(overrides), tmp_path / "whole")
    optimize, calls = Trainer.optimize, []

    def optimize_and_signal(self, optimizations, name, loss):
        optimize(self, optimizations, name, loss)
        calls.append(1)
        if len(calls) == signal_at:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(Trainer, "optimize", optimize_and_signal)
    with pytest.raises(Preempted):
        train(compose.compose_config(overrides), tmp_path / "cut")
    monkeypatch.undo()
    train(compose.compose_config([*overrides, f"resume={tmp_path / 'cut'}"]), tmp_path / "cut")
    whole, cut = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "cut")
    for part in ("task", "trained"):
        for name, value in whole[part].items():
            assert torch.equal(cut[part][name], value), f"{part}.{name}"


def test_a_finished_swa_run_given_more_epochs_ends_as_the_longer_run(tmp_path):
    """A review's resume of a finished SWA run with more epochs validated them on the old average
    and never recomputed BatchNorm's statistics (test/loss 0.179 against 0.138); and with dropout,
    the first run's update_bn pass drew from the random stream the longer run had not (its
    checkpoint's RNG state then differed: weights up to 0.03 apart)."""
    overrides = [*LINEAR, "trainer.deterministic=true", "trainer.swa_start=2", "trainer.swa_lr=0.05"]
    overrides += ["model=mlp", "model.norm=batch", "model.dropout=0.3"]
    train(compose.compose_config([*overrides, "trainer.epochs=4"]), tmp_path / "whole")
    train(compose.compose_config([*overrides, "trainer.epochs=3"]), tmp_path / "short")
    longer = [*overrides, "trainer.epochs=4", f"resume={tmp_path / 'short'}"]
    metrics = train(compose.compose_config(longer), tmp_path / "short")
    figures = {k: v for k, v in read_metrics(tmp_path / "whole").items() if not k.startswith("time/")}
    assert {k: metrics[k] for k in figures} == figures
    for name in ("last.pt", "best.pt"):
        whole, extended = (
            checkpoint.load(tmp_path / run / "checkpoints" / name) for run in ("whole", "short")
        )
        for part in ("task", "trained"):
            for key, value in whole[part].items():
                assert torch.equal(extended[part][key], value), f"{name} {part}.{key}"
    saved = (tmp_path / "short" / "checkpoints" / "last.pt").read_bytes()
    train(compose.compose_config(longer), tmp_path / "short")  # at its end: nothing more (no update_bn)
    assert (tmp_path / "short" / "checkpoints" / "last.pt").read_bytes() == saved


def test_swa_averages_the_epochs_from_its_start_and_recomputes_batchnorm(tmp_path):
    overrides = [*LINEAR, "model=mlp", "model.norm=batch", "trainer.epochs=3", "trainer.swa_start=2"]
    periodic = ["trainer.checkpoint_every_n_steps=21", "trainer.keep_last_k=3"]  # each epoch's end
    metrics = train(compose.compose_config([*overrides, *periodic, "logger=csv"]), tmp_path / "run")
    # (the average's val/ figures are logged at the last step, after the last epoch's; its train/
    # and time/ figures were logged a second time there)
    rows = list(csv.reader((tmp_path / "run" / "metrics.csv").open()))[1:]
    logged = [(step, metric) for step, metric, _ in rows]
    twice = sorted({m for s, m in logged if logged.count((s, m)) > 1})
    assert twice == sorted(k for k in metrics if k.startswith(("val/", "time/val_"))), twice
    assert float([v for s, m, v in rows if m == "val/loss"][-1]) == pytest.approx(metrics["val/loss"])
    saved = tmp_path / "run" / "checkpoints"
    epoch_2, epoch_3 = (checkpoint.load(saved / f"step-0000000{n}.pt")["trained"] for n in (42, 63))
    final = checkpoint.load(saved / "best.pt")
    assert final["average"]["finished"] and checkpoint.load(saved / "last.pt")["average"]["finished"]
    for name, value in final["task"].items():
        if name.startswith("model.") and "running" not in name and "num_batches" not in name:
            assert torch.allclose(value, (epoch_2[name] + epoch_3[name]) / 2, atol=1e-6), name
    means = [k for k in final["task"] if k.endswith("running_mean")]
    assert means and all(not torch.equal(final["task"][k], final["trained"][k]) for k in means)


def test_an_swa_start_that_max_steps_never_reaches_is_said_when_the_run_starts():
    """SWA was announced, and only the run's end said "nothing averaged" (a review)."""
    from omegaconf import OmegaConf

    from dlbench.training import swa_out_of_reach

    def said(**settings):
        return swa_out_of_reach(OmegaConf.create({"swa_start": 3, "max_steps": None, **settings}), 21)

    assert said(max_steps=30) == (
        "trainer.swa_start=3 does nothing: trainer.max_steps=30 ends the run in epoch 2 (21 steps an epoch)"
    )
    assert said(max_steps=43) is None and said() is None and said(swa_start=None, max_steps=1) is None


def test_a_warm_up_longer_than_the_run_is_said_when_the_run_starts():
    """scheduler=linear_lr's own 5 epochs in a run of 3: the rate never reached optimizer.lr, unsaid."""
    from omegaconf import OmegaConf

    from dlbench.training import warm_up_beyond_the_run

    def said(total_steps=30, **settings):  # (10 steps an epoch)
        node = OmegaConf.create({"name": "linear_lr", "interval": "epoch", "total_iters": 5, **settings})
        return warm_up_beyond_the_run(node, total_steps, 10)

    assert said() == (
        "scheduler=linear_lr: its warm-up lasts scheduler.total_iters=5 epochs and the run trains 3, so it "
        "ends before the warm-up does (scheduler.total_iters=null spreads it over the run)"
    )
    assert said(total_steps=50) is None and said(total_iters=None) is None and said(name="step_lr") is None
    assert "total_iters=40 steps and the run trains 30" in said(interval="step", total_iters=40)
    assert said(total_steps=21) is not None and said(total_steps=41) is None  # (a last, shorter epoch counts)


def test_averaging_settings_refuse_impossible_values(cli):
    for args, message in [
        (["trainer.ema=1.5"], "trainer.ema=1.5: the decay must be in (0, 1)"),
        (["trainer.ema=0.9", "trainer.swa_start=1"], "average the weights two ways: choose one"),
        (["trainer.swa_start=20", "trainer.epochs=5"], "trainer.swa_start=20: an epoch from 1 to"),
        (
            ["trainer.swa_lr=-1", "trainer.swa_start=1"],
            "trainer.swa_lr=-1.0: SWA's learning rate, a positive",
        ),
    ]:
        result = cli(*args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    result = cli("model=linear", "trainer.epochs=1", "trainer.ema=0.9", "trainer.progress=none")
    assert result.returncode == 0 and "val/ and test/ measured the EMA of the weights (trainer.ema=0.9)" in (
        result.stdout
    )


def test_mixup_and_cutmix_train_on_soft_labels_and_leave_evaluation_alone(tmp_path, monkeypatch):
    from dlbench.build import build_data
    from dlbench.tasks.classification import Classification

    cfg = compose.compose_config(["dataset.mixup=0.4", "dataset.cutmix=1.0", *QUIET])
    data = build_data(cfg)
    x, y = next(iter(data.loader("train")))
    torch.manual_seed(0)
    mixed_x, soft = data.mix((x, y))
    assert soft.shape == (len(y), 10) and torch.allclose(soft.sum(1), torch.ones(len(y)))
    assert not torch.equal(mixed_x, x) and (soft.max(1).values < 1).any()
    seen = []  # the labels each training and evaluation step gets
    training_step, evaluation_step = Classification.training_step, Classification.evaluation_step
    monkeypatch.setattr(
        Classification, "training_step", lambda s, b, o: seen.append(b[1].dtype) or training_step(s, b, o)
    )
    monkeypatch.setattr(
        Classification,
        "evaluation_step",
        lambda s, b, sp: seen.append(b[1].dtype) or evaluation_step(s, b, sp),
    )
    metrics = train(compose.compose_config(["dataset.mixup=0.4", "trainer.epochs=1", *QUIET]), tmp_path / "r")
    # (the trial step on a copy of the task before the run, and its trial evaluation: a batch as read)
    first = seen.index(torch.float32)  # (the run's first step: mixed)
    assert first >= 2 and set(seen[:first]) == {torch.int64} and seen[-1] == torch.int64
    assert 0 <= metrics["train/acc"] <= 1


def test_an_alpha_given_as_an_integer_mixes_as_the_same_float():
    """A review: dataset.mixup=1 (an integer) failed at the first step: torch draws Beta(alpha,
    alpha) from a tensor of alpha's dtype, and none from an integer one."""
    from dlbench.data.transforms import mixing

    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 4
    for mixup, cutmix in ((1, 0), (0, 1)):
        torch.manual_seed(0)
        _, soft = mixing(mixup, cutmix, 4, [1, 8, 8], "tiny")((x, y))
        torch.manual_seed(0)
        _, same = mixing(float(mixup), float(cutmix), 4, [1, 8, 8], "tiny")((x, y))
        assert torch.equal(soft, same)


def test_mixing_is_refused_where_there_is_nothing_to_mix(cli):
    result = cli("dataset=iris", "dataset.mixup=0.2")
    assert (
        result.returncode == 2
        and "dataset.mixup mixes images; dataset 'iris' gives inputs of shape [4]" in (result.stderr)
    )
    result = cli("dataset.cutmix=-1")
    assert result.returncode == 2 and "dataset.cutmix=-1: an alpha of 0 (off) or more" in result.stderr
    result = cli("dataset.mixup=0.2", "loss=nll")  # (it stopped at the first step: RuntimeError)
    assert result.returncode == 2 and "which loss=nll does not take (loss=cross_entropy does" in result.stderr


def test_loss_nll_is_the_negative_log_likelihood_of_the_outputs_softmax(tmp_path):
    """loss=nll took the model's logits as log-probabilities: its loss fell without end (each
    logit of the right class pushed up), exit 0. It is cross_entropy written as log_softmax +
    NLLLoss: the same steps, the same weights."""
    run = ["trainer.max_steps=4", "trainer.progress=none", "logger=none", "trainer.threads=1"]
    for loss in ("cross_entropy", "nll"):
        train(compose.compose_config([*run, f"loss={loss}"]), tmp_path / loss)
    weights = [checkpoint.load(tmp_path / loss)["task"] for loss in ("cross_entropy", "nll")]
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=1e-6)


def test_the_profiler_writes_a_trace_the_top_operators_and_each_phase_share(cli, tmp_path):
    import json

    result = cli(
        "trainer.epochs=1", "trainer.profile=4", "trainer.progress=none", "hydra.run.dir=run", process=True
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "run" / "profile"
    trace = json.loads((folder / "trace.json").read_text())
    steps = {e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#3", "ProfilerStep#4", "ProfilerStep#5", "ProfilerStep#6"}  # after 3
    assert "aten::addmm" in (folder / "ops.txt").read_text()
    shares = dict(line.split("\t") for line in (folder / "phases.txt").read_text().splitlines())
    assert list(shares) == ["data", "forward", "backward", "optimizer"]
    assert sum(map(float, shares.values())) == pytest.approx(1.0, abs=1e-3)
    assert all(float(v) > 0 for v in shares.values()), shares
    assert "Profile of 4 training batches" in result.stdout and "a step's time: data" in result.stdout
    assert "gpuGetDeviceCount" not in result.stderr  # (kineto's false alarm on a machine with no GPU)
    # more batches than the run has (21): those it has are recorded, not the run's last validation
    # and test (a review's last profiled step held them: 97.6% of the time)
    cut = ["trainer.epochs=1", "trainer.profile=25", "trainer.progress=none", "hydra.run.dir=cut"]
    result = cli(*cut, process=True)
    assert "Profile of 18 training batches (the run ended before trainer.profile=25)" in result.stdout
    trace = json.loads((tmp_path / "cut" / "profile" / "trace.json").read_text())
    steps = [e["dur"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")]
    assert max(steps) < sum(steps) - max(steps), steps  # (no step holds the end of the run)
    few = ["experiment=logistic_regression_iris", "trainer.epochs=3", "trainer.profile=2"]
    result = cli(*few, "trainer.progress=none", "hydra.run.dir=few")  # 3 batches: skipped or warm-up
    assert "the run had 3 training batches" in result.stdout and "nothing was recorded" in result.stdout
    assert not (tmp_path / "few" / "profile").exists()


def test_lr_find_suggests_an_lr_inside_the_known_good_range_and_its_command_trains(cli, tmp_path):
    import shlex

    # logistic regression on two iris classes, full batch, SGD: the notes train it at 0.1; a
    # rate of 0.01-1 converges in 100 epochs, 1e-4 barely moves and 10 overshoots
    iris = ["experiment=logistic_regression_iris", "optimizer.lr=0.5"]  # (an lr given: replaced)
    result = cli("lr-find", *iris, "trainer.progress=none")
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[-1].strip()
    words = shlex.split(line)
    assert words[:2] == ["dlbench", "experiment=logistic_regression_iris"], line
    assert [w for w in words if w.startswith("optimizer.lr=")] == [words[-1]]  # (the user's replaced)
    suggested = float(words[-1].removeprefix("optimizer.lr="))
    assert 0.01 <= suggested <= 1.0, suggested
    (folder,) = (tmp_path / "outputs" / "lr_find").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["lr_find.csv", "lr_find.png", "tb"]
    rows = (folder / "lr_find.csv").read_text().splitlines()
    assert rows[0] == "lr,loss,smoothed_loss" and len(rows) == 201
    assert float(rows[1].split(",")[0]) == pytest.approx(1e-7) and float(
        rows[-1].split(",")[0]
    ) == pytest.approx(10)
    # the printed command, pasted, trains to a low loss (the first word is the program)
    trained = cli(*words[1:], "trainer.progress=none", "hydra.run.dir=run")
    assert trained.returncode == 0, trained.stderr
    import json

    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train/loss"] < 0.2


def test_lr_find_under_a_schedule_that_sets_its_own_peak_suggests_that_peak(cli, tmp_path):
    """one_cycle_lr takes its lr from scheduler.max_lr and ignores optimizer.lr: the printed
    command set optimizer.lr, and the run it trained was the one without it (a review)."""
    import shlex

    result = cli(
        "lr-find", "--steps", "40", "scheduler=one_cycle_lr", "scheduler.max_lr=0.01", "trainer.progress=none"
    )
    assert result.returncode == 0, result.stderr
    words = shlex.split(result.stdout.splitlines()[-1])
    assert words[:2] == ["dlbench", "scheduler=one_cycle_lr"] and words[-1].startswith("scheduler.max_lr=")
    assert sum(w.startswith("scheduler.max_lr=") for w in words) == 1 and "optimizer.lr" not in result.stdout
    shown = cli(*words[1:], "--cfg", "job")
    assert f"max_lr: {words[-1].split('=')[1]}" in shown.stdout, shown.stdout[-2000:]


def test_lr_finds_curve_ends_where_a_negative_loss_rises_not_where_it_still_falls():
    """A loss below 0 (poisson_nll's) passed 4 times its lowest as it fell: the curve ended, the
    plot stopped and a loss that starts below 0 got no suggestion. A constant added to a loss
    moves neither its fall nor where it diverges."""
    from dlbench.commands.lr_find import smooth

    losses = [2.0 - 0.01 * i for i in range(100)] + [1.0 + 2.0**i for i in range(12)]  # (falls, explodes)
    kept = len(smooth(losses))
    assert 100 < kept < len(losses)
    assert len(smooth([loss - 3 for loss in losses])) >= 100  # (all of its fall, which went below 0)


def test_lr_find_without_a_suggestion_says_which_way_to_move_the_range(cli):
    """It said "widen --min-lr/--max-lr" for a range already too wide to read (a review)."""
    for args, said in [
        (["--min-lr", "1", "--max-lr", "100"], "(a lower --min-lr and a --max-lr below "),
        (["--min-lr", "1e-9", "--max-lr", "1e-8"], "(a higher --max-lr: the loss hardly moved)"),
        (["--max-lr", "1e6"], "; more --steps: 2 a decade of lr now)"),  # (20 steps over 13 decades)
    ]:
        result = cli("lr-find", "--steps", "20", *args, "trainer.progress=none")
        assert result.returncode == 1 and "no lr to suggest" in result.stderr and said in result.stderr, (
            args,
            result.stderr[-1000:],
        )
    # (a loss that fell 75% at once, its fastest fall before the range: "hardly moved", a review)
    import math
    from types import SimpleNamespace

    from dlbench.commands.lr_find import retry

    fell = [2.3 * math.exp(-i) + 0.5 + 0.01 * i for i in range(40)]
    range_ = SimpleNamespace(steps=40, min_lr=1e-3, max_lr=10)
    assert retry(range_, [0.0] * 40, fell) == "a lower --min-lr: the loss fell at the range's start"


def test_lr_find_refuses_bad_options_and_writes_nothing(cli, tmp_path):
    for args, message in [
        (["--steps", "5"], "--steps=5: the sweep needs at least 20 steps"),
        (["--min-lr", "1", "--max-lr", "0.1"], "need 0 < min < max"),
        (["--max-lr", "1e308"], "and max/min a number (not an overflow)"),  # (it trained at lr inf)
        (["--stpes", "50"], "lr-find: unknown option --stpes"),
        (["model=mlpp"], "Unknown model option 'mlpp'"),
    ]:
        result = cli("lr-find", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert not (tmp_path / "outputs").exists()


def test_lr_find_stopped_by_sigterm_says_so_and_exits_as_the_signal_did(tmp_path):
    """SIGTERM (a cluster's time limit) during lr-find's sweep: one line and 128 + 15, as for
    a command the signal stopped (it was 'unexpected error: Preempted', a bug's message)."""
    from conftest import signal_when

    # (lr-find writes nothing while it sweeps: the signal comes 5 s after its folder is made,
    # the sweep built and training by then; its tb/ appears only at the end)
    args = ["lr-find", "--steps", "10000000", "trainer.progress=none"]
    code, out, err = signal_when(args, tmp_path, "outputs/lr_find/*", signal.SIGTERM, settle_s=5)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "error: stopped by SIGTERM after step " in err and "of 10000000: no lr is suggested" in err, err
    assert "Traceback" not in out + err and "unexpected" not in err


def test_lr_find_refuses_an_out_folder_it_cannot_use_before_training(cli, tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    for out, message in [
        ("afile", "--out afile: cannot write there"),
        ("full", "--out full: the folder is not empty"),
        ("a\x00b", "cannot write there"),
    ]:
        result = cli("lr-find", "--out", out)
        assert result.returncode == 2 and message in result.stderr, (out, result.stderr)
        assert "epoch" not in result.stderr + result.stdout  # (refused before it trained)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "full"]
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["mine.txt"]


def test_under_ddp_only_a_groups_last_micro_batch_synchronises_gradients(tmp_path):
    import contextlib

    from dlbench.engine.step import Update
    from dlbench.tasks.base import Task

    class Wrapper(torch.nn.Module):  # DistributedDataParallel's shape: .module and no_sync()
        def __init__(self, module):
            super().__init__()
            self.module, self.unsynced = module, 0

        @contextlib.contextmanager
        def no_sync(self):
            self.unsynced += 1
            yield

    model = torch.nn.Linear(2, 2)
    task = Task(model, None)
    trainer = Trainer(TrainerConfig(accumulate=3), torch.device("cpu"), tmp_path, logger=None)
    trainer.ddp = Wrapper(model)
    for index in range(7):  # an epoch of 7 batches: groups of 3, 3 and 1
        trainer.stepper.update = Update.of(index, 7, trainer.cfg.accumulate, 4, trainer.stepper.update)
        with trainer.data_parallel(task):
            assert task.model is trainer.ddp
        assert task.model is model
    assert trainer.ddp.unsynced == 4  # batches 0, 1, 3, 4; 2, 5 and 6 end their groups
    last = Update.of(6, 7, trainer.cfg.accumulate, 2, trainer.stepper.update)
    assert (last.first, last.last, last.size, last.grouped, last.nominal) == (True, True, 1, 2, 6)


@pytest.mark.parametrize("terminal_shown", [True, False])
def test_lr_find_shows_the_bar_on_a_terminal_and_no_line_per_step_elsewhere(
    tmp_path, monkeypatch, terminal_shown
):
    """trainer.progress=auto (the default) is resolved before lr-find's trainer gets it: a
    terminal shows the sweep's progress bar (it had been given 'auto' and showed nothing); a
    pipe gets no line for each of the sweep's steps, every one of which is logged."""
    import io
    import logging

    from dlbench import terminal
    from dlbench.commands.lr_find import sweep
    from dlbench.engine import logging as run_logging

    screen = io.StringIO()
    monkeypatch.setattr(
        run_logging, "console", terminal.InertConsole(file=screen, force_terminal=terminal_shown, width=120)
    )
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    monkeypatch.setattr(run_logging.RunLogger, "redraw_due", lambda self: True)  # (each step drawn)
    printed = io.StringIO()
    monkeypatch.setattr("sys.stdout", printed)  # (plain mode's lines)
    cfg = compose.compose_config(["experiment=logistic_regression_iris", "trainer.progress=auto"])
    lrs, losses = sweep(cfg, 20, 1e-3, 1.0, tmp_path / "out")
    assert len(lrs) == len(losses) == 20
    if terminal_shown:
        assert " samples/s" in screen.getvalue(), screen.getvalue()[-500:]  # (the bar's rate)
    else:
        shown = printed.getvalue() + screen.getvalue()
        assert "step 1/1" not in shown and shown.count("\n") <= 2, shown[-500:]  # (the one epoch line)


def test_schedules_count_every_epoch_the_run_trains_and_log_the_rate_each_step_used(tmp_path):
    """A review: with trainer.max_steps=30 (21 steps an epoch) a cosine schedule per epoch was
    built for 1 epoch, so the second trained at lr 0; a per-step schedule's logged train/lr was
    the next step's; a plateau schedule per step never stepped (now refused)."""
    from dlbench.engine.optim import build_optimization

    model = torch.nn.Linear(2, 2)
    adam = {"name": "adam", "lr": 0.1}
    cosine = build_optimization(model, adam, {"name": "cosine_annealing_lr"}, 30, 21).scheduler
    assert cosine.T_max == 2
    # (torch's own default, total_iters=5, was written into the config: 8 epochs of polynomial_lr
    # ended at lr 0 from the sixth, without a word); a warm-up keeps its own length, as does a
    # length the config sets
    for name, length in (("polynomial_lr", 8), ("linear_lr", 5), ("constant_lr", 5)):
        composed = compose.compose_config([f"scheduler={name}", "trainer.epochs=8"]).scheduler
        built = build_optimization(model, adam, composed, 8 * 21, 21).scheduler
        assert built.total_iters == length, name
    told = build_optimization(model, adam, {"name": "polynomial_lr", "total_iters": 3}, 8 * 21, 21)
    assert told.scheduler.total_iters == 3
    # a run saved with torch's 5 in its config (before) resumes: its schedule's state holds its length
    from dlbench import resume

    saved = {"scheduler": {"name": "polynomial_lr", "total_iters": 5}, "trainer": {"epochs": 3}}
    assert resume.check(saved, {**saved, "scheduler": {"name": "polynomial_lr", "total_iters": None}}) == []
    with pytest.raises(DlbenchError, match="scheduler.total_iters: 5 -> 3"):
        resume.check(saved, {**saved, "scheduler": {"name": "polynomial_lr", "total_iters": 3}})
    with pytest.raises(DlbenchError, match="scheduler.interval=step: reduce_lr_on_plateau reads"):
        build_optimization(model, adam, {"name": "reduce_lr_on_plateau", "interval": "step"}, 30, 21)

    overrides = [*LINEAR[:-1], "logger=csv", "trainer.epochs=1", "trainer.log_every_n_steps=1"]
    overrides += ["scheduler=one_cycle_lr", "optimizer=sgd", "optimizer.lr=0.1", "scheduler.interval=step"]
    metrics = train(compose.compose_config(overrides), tmp_path / "run")
    logged = read_step_values(tmp_path / "run", "train/lr")  # (step 21's once: its own is the epoch's)
    reference = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.1, total_steps=21)
    used = []
    for _ in range(21):
        used.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    assert sorted(logged) == list(range(1, 22))
    for step, values in logged.items():
        assert values == pytest.approx([used[step - 1]] * len(values), rel=1e-9), step
    assert len(logged[21]) == 1 and metrics["train/lr"] == pytest.approx(used[-1], rel=1e-9)


def test_a_schedule_that_cannot_step_through_the_run_is_refused_when_it_is_built():
    """A review: scheduler=step_lr scheduler.step_size=0 was built, then divided by zero at the
    first step (exit 1); a one_cycle_lr shorter than the run failed at its end. A throwaway copy
    is stepped as the run's first and last steps will step it."""
    from dlbench.engine.optim import build_optimization

    model = torch.nn.Linear(2, 2)
    sgd = {"name": "sgd", "lr": 0.1}
    # (step_size=0 is now refused by its range, torch_components.MEANINGS, before the trial steps)
    with pytest.raises(DlbenchError, match="scheduler.step_size=0: StepLR's step_size must be a whole"):
        build_optimization(model, sgd, {"name": "step_lr", "step_size": 0}, 30, 10)
    short = {"name": "one_cycle_lr", "max_lr": 0.1, "total_steps": 20, "interval": "step"}
    with pytest.raises(
        DlbenchError, match="Tried to step 30 times. The specified number of total steps is 20"
    ):
        build_optimization(model, sgd, short, 30, 10)
    fine = build_optimization(model, sgd, {**short, "total_steps": 30}, 30, 10)
    assert fine.scheduler.last_epoch == 0 and fine.lr == pytest.approx(0.1 / 25)  # (its copy stepped)


def read_step_values(run, key: str) -> dict[int, list[float]]:
    """The values of `key` a run logged at each step, from its CSV log (logger=csv)."""
    import csv

    values: dict[int, list[float]] = {}
    for row in csv.DictReader((run / "metrics.csv").open()):
        if row["metric"] == key:
            values.setdefault(int(row["step"]), []).append(float(row["value"]))
    return values


def test_a_plateau_schedule_follows_the_monitor_a_run_without_validation_falls_back_to(tmp_path):
    """dataset.val_fraction=0 with trainer.monitor=val/acc: the run monitors train/loss (min), and
    its plateau schedule now does too (it kept mode max: each better, lower loss was 'worse',
    the rate halved every epoch)."""
    overrides = [*LINEAR, "trainer.epochs=4", "dataset.val_fraction=0", "trainer.monitor=val/acc"]
    overrides += ["scheduler=reduce_lr_on_plateau", "scheduler.patience=0", "optimizer.lr=0.01"]
    metrics = train(compose.compose_config(overrides), tmp_path / "run")
    saved = checkpoint.load(tmp_path / "run")
    assert saved["schedulers"]["model"]["mode"] == "min" and metrics["train/lr"] == 0.01
    assert saved["trainer"]["best"] == metrics["train/loss"]  # (it fell every epoch)


def test_an_accumulated_steps_logged_loss_is_the_mean_of_its_group(tmp_path, monkeypatch):
    """train/loss_step under trainer.accumulate=4 is the mean over the group's samples of its
    micro-batch losses (what the step's gradient is of), not its last one's (a review); an
    epoch's last group, whose last batch is shorter, weighs each by its samples."""
    from dlbench.tasks.classification import Classification

    losses: list[float] = []
    compute_loss = Classification.compute_loss

    def recorded(self, output, y):
        loss = compute_loss(self, output, y)
        if self.training:
            losses.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(Classification, "compute_loss", recorded)
    overrides = [*LINEAR[:-1], "logger=csv", "trainer.epochs=1", "trainer.log_every_n_steps=1"]
    # 54 batches of 24, the last of 22: 13 groups of 4, 1 of 2
    overrides += ["dataset.batch_size=24", "trainer.accumulate=4"]
    train(compose.compose_config(overrides), tmp_path / "run")
    del losses[0]  # (the trial step on a copy of the task, before the run: training.trial_step)
    logged = read_step_values(tmp_path / "run", "train/loss_step")
    sizes = [24] * 53 + [22]
    groups = [list(zip(losses[i : i + 4], sizes[i : i + 4], strict=True)) for i in range(0, 54, 4)]
    assert len(logged) == len(groups) == 14
    for step, group in enumerate(groups, start=1):
        mean = sum(loss * n for loss, n in group) / sum(n for _, n in group)
        assert logged[step] == pytest.approx([mean], rel=1e-5), step
    assert logged[14] != pytest.approx([sum(loss for loss, _ in group) / 2], rel=1e-5)


def test_a_schedule_that_makes_the_lr_negative_mid_run_stops_the_run():
    """A review: step_lr's gamma=-1 trained uphill without a word (torch checks only the lr an
    optimizer is made with). The first and last steps are tried before the run; every step of
    the run checks what the schedule set."""
    from dlbench.engine.optim import Optimization

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 if step < 2 else -1.0)
    opt = Optimization(optimizer, schedule, "step")
    opt.after_step(1)  # (step 1: 0.1)
    with pytest.raises(DlbenchError, match="the schedule set the learning rate to -0.1: it must be a number"):
        opt.after_step(2)
    # a step the trial before the run did not take fails in torch: one message (it was "unexpected
    # error": polynomial_lr's power=-1 at the total_iters the config set, shorter than the run)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=2, power=-1.0)
    opt = Optimization(optimizer, schedule, "epoch")
    opt.step_scheduler("epoch")
    with pytest.raises(DlbenchError, match="the schedule failed at its step 2 .it steps every epoch.: Zero"):
        opt.step_scheduler("epoch")


def test_an_ema_too_slow_for_the_run_is_said_with_a_decay_that_suits_it():
    """A review: the documented `trainer.ema=0.999` on the default run (210 steps) tested at
    0.59 against 0.94 without it, without a word: 81% of its average was the first step's."""
    from dlbench.training import short_average

    note = short_average(0.999, 210)
    assert "81% of the average" in note and "trainer.ema=0.952" in note
    assert short_average(0.98, 210) is None and short_average(None, 210) is None
    assert "too few to average" in short_average(0.9, 3)


def test_a_nan_monitor_is_an_evaluation_without_improvement_for_patience():
    """With trainer.nonfinite=off a diverged run's val/loss is nan: it was no evaluation at all,
    and trainer.patience never ran out."""
    from types import SimpleNamespace

    state, cfg = SimpleNamespace(best=1.0, bad_epochs=0), SimpleNamespace(monitor_mode="min")
    trainer = SimpleNamespace(state=state, cfg=cfg)
    assert not Trainer._track_best(trainer, float("nan")) and trainer.state.bad_epochs == 1
    assert Trainer._track_best(trainer, 0.5) and trainer.state.bad_epochs == 0
    assert not Trainer._track_best(trainer, None) and trainer.state.bad_epochs == 0


def test_a_one_cycle_run_saved_at_its_last_step_resumes(cli, tmp_path):
    """A helper's: OneCycleLR takes no step past its last, and the restored schedule's trial
    step refused the checkpoint ("does not fit ... Tried to step 22 times"): a finished run, or
    one killed during its last validation or test, could never be resumed."""
    run = ["scheduler=one_cycle_lr", "model=linear", "trainer.epochs=1", "trainer.progress=none"]
    assert cli(*run, "hydra.run.dir=r").returncode == 0
    again = cli(*run, "resume=r")
    assert again.returncode == 0 and "test/acc" in read_metrics(tmp_path / "r"), again.stderr


def test_a_learning_rate_set_for_the_whole_optimizer_keeps_norm_lr_scale_and_the_ema_keeps_counts(
    tmp_path, monkeypatch
):
    """optimizer.norm_lr_scale=64 gives normalisation layers 64 times the learning rate: SWA's
    swa_lr and lr-find's sweep set one rate for every group (its command then trained those
    layers at a rate the sweep never tried); the EMA averaged BatchNorm's num_batches_tracked
    (8 after 12 steps). A review checked each against torch by hand."""
    from dlbench.commands.lr_find import lr_find_command
    from dlbench.engine.averaging import WeightAverage
    from dlbench.engine.optim import param_groups

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(param_groups(model, 64.0, 0.01, 0.0), lr=0.01)
    swa = WeightAverage(model, TrainerConfig(swa_start=1, swa_lr=0.005)).new_swa_lr(optimizer)
    swa.step()  # (one epoch: the annealing's end)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.005, 0.32])
    ema = WeightAverage(model, TrainerConfig(ema=0.8))
    for _ in range(3):
        model(torch.randn(5, 4))
        ema.after_step(model)
    assert int(ema.module[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 3

    swept = []
    after_step = Optimization.after_step

    def recorded(self, step):
        swept.append([g["lr"] for g in self.optimizer.param_groups])
        after_step(self, step)

    monkeypatch.setattr(Optimization, "after_step", recorded)
    args = ["dataset=iris", "model=mlp", "model.norm=batch", "+optimizer.norm_lr_scale=64", "--steps", "20"]
    assert lr_find_command([*args, "--out", str(tmp_path / "lr"), "trainer.progress=none"]) == 0
    assert len(swept) == 20 and all(norm == pytest.approx(64 * lr) for lr, norm in swept), swept
