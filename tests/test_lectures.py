"""Issue 16: runs comparable with the lecture notes (their splits, logging and pictures), the
lessons that were missing, and transfer learning from torchvision's weights."""

import itertools

import pytest
import torch
import torchvision.models as tvm
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from dlbench.build import build_data, build_task
from dlbench.compose import compose_config, compose_with_hydra
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.figures import confusion_figure
from dlbench.models.pretrained import checkpoints_folder, weight_files
from dlbench.registry import MODELS
from dlbench.training import train
from dlbench.validation import validate

QUIET = ["trainer.progress=none", "device=cpu"]


def compose(*overrides):
    return compose_config([*QUIET, *overrides])


def events(run_dir):
    return EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()


# ---- the notes' splits ---------------------------------------------------------------------------
def test_presets_train_on_what_the_notes_trained_on(data_root):
    """lenet5 trains on every training image and validates on the test split; iris_mlp and
    logistic regression train on every row and validate on the training data; mlp_regression
    tests on fresh points."""
    mnist = [f"dataset.root={data_root}", "dataset.download=false"]
    lenet = build_data(compose("experiment=lenet5_mnist", *mnist))
    assert (lenet.size("train"), lenet.size("val"), lenet.size("test")) == (60, 20, 20)  # all 60 of 60
    assert lenet.splits["val"] is lenet.splits["test"]

    iris = build_data(compose("experiment=iris_mlp"))
    assert (iris.size("train"), iris.size("val"), iris.size("test")) == (150, 150, 0)
    assert iris.splits["val"] is iris.splits["train"]
    logistic = build_data(compose("experiment=logistic_regression_iris"))
    assert (logistic.size("train"), logistic.size("val")) == (100, 100)

    quadratic = build_data(compose("experiment=mlp_regression"))
    assert (quadratic.size("train"), quadratic.size("val"), quadratic.size("test")) == (1000, 0, 5)
    plain = build_data(
        compose("experiment=mlp_regression", "dataset.test_samples=0", "dataset.test_fraction=0")
    )
    x, fresh = quadratic.splits["train"].tensors[0], quadratic.splits["test"].tensors[0]
    assert torch.equal(plain.splits["train"].tensors[0], x)  # the test draw leaves training data as it was
    assert not any(torch.isclose(fresh, v).any() for v in x)  # fresh points


def test_validating_on_the_test_split_never_chooses_best_pt_by_it(tmp_path):
    """dataset.validate_on=test (imagenet's default) without trainer.monitor: best.pt follows
    train/loss, not the task's val/acc, which would be the test set's."""
    run = ["dataset.validate_on=test", "trainer.epochs=1", "logger=none"]
    train(compose(*run), tmp_path / "a")
    assert "monitor: train/loss" in checkpoint.load(tmp_path / "a")["config"]
    train(compose(*run, "trainer.monitor=val/acc"), tmp_path / "b")  # asked for: as asked
    assert "monitor: val/acc" in checkpoint.load(tmp_path / "b")["config"]


def test_validating_on_the_test_split_reads_it_once_at_the_end(tmp_path, monkeypatch):
    """The last epoch's validation on the test split was followed by the test, the same pass
    again (ImageNet's 50,000 images twice). Now the test takes that pass's figures: the same
    numbers, the per-class report, the test/ figures; with SWA, whose end changes the weights
    after it, the test is its own pass."""
    from dlbench.engine.trainer import Trainer

    passes = []
    evaluate = Trainer.evaluate
    counted = lambda self, *a, **k: passes.append(a[2]) or evaluate(self, *a, **k)  # noqa: E731
    monkeypatch.setattr(Trainer, "evaluate", counted)
    run = ["dataset.validate_on=test", "trainer.epochs=2", "logger.figures_budget=1"]
    metrics = train(compose(*run), tmp_path / "a")
    assert passes == ["val", "test"]
    assert metrics["val/acc"] == metrics["test/acc"] and metrics["test/loss"] == metrics["val/loss"]
    assert "time/val_samples_per_s" in metrics and "time/test_samples_per_s" in metrics
    assert "test/confusion_matrix" in events(tmp_path / "a").Tags()["images"]
    passes.clear()
    metrics = train(compose(*run, "trainer.swa_start=1"), tmp_path / "b")
    assert passes == ["val", "val", "val", "test"] and metrics["test/acc"] == metrics["val/acc"], passes


def test_validate_on_a_split_that_is_not_there_is_one_message():
    with pytest.raises(DlbenchError, match="validate_on=test: 'iris' has no test split here"):
        build_data(compose("dataset=iris", "dataset.validate_on=test", "dataset.test_fraction=0"))
    with pytest.raises(
        DlbenchError, match="dataset.validate_on=holdout is not allowed; choose one of: val|test|train"
    ):
        validate(compose("dataset=iris", "dataset.validate_on=holdout"))


# ---- logging as the notes did ----------------------------------------------------------------------
def test_running_mean_loss_every_n_mini_batches(tmp_path, caplog):
    """Seed 003's print: the mean of the last N mini-batch losses, [epoch, mini-batch] first;
    logged to TensorBoard too. The windows count the run's steps across epochs."""
    overrides = ["trainer.running_loss_every=5", "trainer.log_every_n_steps=1", "trainer.epochs=2"]
    with caplog.at_level("INFO", logger="dlbench"):
        train(compose("dataset=iris", "dataset.batch_size=16", *overrides), tmp_path / "run")
    # 150 flowers: 30 test, 24 val, 96 train = 6 mini-batches per epoch, 12 steps in all
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert [line.split("]")[0] for line in lines] == ["[1,     5", "[2,     4"]
    run = events(tmp_path / "run")
    steps = {e.step: e.value for e in run.Scalars("train/loss_step")}
    running = {e.step: e.value for e in run.Scalars("train/running_loss")}
    assert sorted(running) == [5, 10]
    assert running[10] == pytest.approx(sum(steps[s] for s in range(6, 11)) / 5, rel=1e-5)
    assert lines[1] == f"[2,     4] loss: {running[10]:.3f}"


def test_confusion_matrix_rows_normalised_and_labels_readable():
    names = [f"Language{i}" for i in range(18)]
    matrix = torch.randint(0, 50, (18, 18))
    figure = confusion_figure(matrix, names, normalize=True, title="val")
    shown = torch.as_tensor(figure.axes[0].images[0].get_array())
    torch.testing.assert_close(shown.sum(dim=1), torch.ones(18, dtype=shown.dtype))
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == names
    assert figure.get_size_inches()[0] >= 0.45 * 18  # about half an inch per class
    counts = confusion_figure(matrix, names, normalize=False, title="val")
    assert torch.equal(torch.as_tensor(counts.axes[0].images[0].get_array()).long(), matrix)


def test_iris_mlp_logs_decision_regions_and_a_normalised_confusion_matrix(tmp_path):
    overrides = ["experiment=iris_mlp", "trainer.epochs=2", "trainer.val_every_n_epochs=1"]
    overrides += ["logger.figures_budget=1"]  # every evaluation's figures (the default: as they fit)
    metrics = train(compose(*overrides, "task.confusion_normalize=true"), tmp_path / "run")
    assert "val/acc" in metrics and "test/acc" not in metrics
    images = events(tmp_path / "run").Tags()["images"]
    assert {"val/decision_regions", "val/confusion_matrix"} <= set(images)
    assert len(events(tmp_path / "run").Images("val/decision_regions")) == 2  # each evaluation


# ---- seed 001's MNIST CNN and its MSE loss -----------------------------------------------------------
def test_seed001_cnn_and_mse_on_one_hot_targets():
    model = MODELS.build({"name": "cnn_seed001", "input_shape": [1, 28, 28], "num_outputs": 10}, "model")
    convs = [(1, 16), (16, 32), (32, 64)]
    expected = sum(i * o * 25 + o for i, o in convs) + (64 * 3 * 3 * 100 + 100) + (100 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [type(m).__name__ for m in model[0]][:4] == ["Conv2d", "ReLU", "Conv2d", "MaxPool2d"]

    cfg = compose("dataset=digits", "task=classification", "loss=mse", "model=mlp")
    task = build_task(cfg, build_data(cfg).info)
    output, y = torch.randn(4, 10), torch.tensor([0, 3, 9, 3])
    target = torch.zeros(4, 10)
    target[torch.arange(4), y] = 1.0
    assert torch.equal(task.compute_loss(output, y), nn.functional.mse_loss(output, target))


# ---- architectures as the notes draw them ----------------------------------------------------------
def test_resnet_without_batchnorm_is_seed_001s_bottleneck_resnet():
    node = {"name": "resnet", "depth": 50, "norm": "none", "width": 16, "input_shape": [3, 64, 64]}
    torch.manual_seed(0)
    model = MODELS.build({**node, "num_outputs": 2}, "model")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    out = model(torch.randn(2, 3, 64, 64))
    assert torch.isfinite(out).all() and out.abs().max() < 1  # PyTorch's default init, as the seed's


def test_googlenet_seed_stem_and_dcgan_relu_discriminator():
    build = MODELS.build
    net = build(
        {"name": "googlenet", "stem": "seed", "input_shape": [3, 224, 224], "num_outputs": 2}, "model"
    )
    assert [type(m).__name__ for m in net.stem] == ["Conv2d", "MaxPool2d", "Conv2d", "MaxPool2d"]
    assert (net.stem[0].kernel_size, net.stem[0].stride, net.stem[2].out_channels) == ((7, 7), (2, 2), 192)
    gan = build({"name": "dcgan", "d_activation": "relu", "input_shape": [3, 32, 32]}, "model")
    kinds = {type(m) for m in gan.discriminator.modules()}
    assert nn.ReLU in kinds and nn.LeakyReLU not in kinds
    default = build({"name": "dcgan", "input_shape": [3, 32, 32]}, "model")
    assert nn.LeakyReLU in {type(m) for m in default.discriminator.modules()}


# ---- pictures: activations and vanishing gradients ----------------------------------------------------
HIDDEN = ("[32]", "[32,32]", "[32,32,32]", "[32,32,32,32]")


def test_vanishing_gradients_sweep_composes_and_shows_the_lesson(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose_with_hydra(["experiment=vanishing_gradients"], "the test")
    parser = OverridesParser.create()
    swept = [
        [f"{k}={v}" for v in parser.parse_overrides([f"{k}={values}"])[0].sweep_string_iterator()]
        for k, values in cfg.hydra.sweeper.params.items()
    ]
    jobs = list(itertools.product(*swept))
    assert len(jobs) == 8 and {job[0] for job in jobs} == {f"model.hidden={h}" for h in HIDDEN}
    for job in (jobs[0], jobs[-1]):
        validate(compose_config(["experiment=vanishing_gradients", *job]))

    norms = {}
    for activation in ("sigmoid", "relu"):
        run = tmp_path / activation
        overrides = ["model.hidden=[32,32,32,32]", f"model.activation={activation}", "trainer.max_steps=10"]
        overrides += ["task=classification", "task.confusion_matrix=false"]
        train(compose("experiment=vanishing_gradients", *overrides), run)
        logged = events(run)
        assert f"activations/{'Sigmoid' if activation == 'sigmoid' else 'ReLU'}" in logged.Tags()["images"]
        first, last = (logged.Scalars(f"grad_norm/model.{i}.weight")[0].value for i in (1, 9))
        norms[activation] = first / last
    assert norms["sigmoid"] < 0.01  # four sigmoids: the first layer's gradient has all but vanished
    assert norms["relu"] > 0.1


# ---- transfer learning ---------------------------------------------------------------------------------
@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """A hub cache of our own: torchvision's file names, random weights, nothing downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints_folder().mkdir(parents=True)
    return checkpoints_folder()


def randomised(model: nn.Module) -> nn.Module:
    """A torchvision model with random BatchNorm statistics too, so a mix-up of buffers shows."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_pretrained_resnet_reproduces_torchvisions_outputs(torch_home):
    reference = randomised(tvm.resnet18())
    torch.save(reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    node = {"name": "resnet", "depth": 18, "stem": "imagenet", "pretrained": True, "input_shape": [3, 64, 64]}
    ours = MODELS.build({**node, "num_outputs": 1000}, "model").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))

    frozen = MODELS.build({**node, "num_outputs": 5, "freeze": "backbone"}, "model")  # a new head
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(frozen.stem[0].weight, reference.conv1.weight)


def test_pretrained_densenet_reads_torchvisions_old_key_names(torch_home):
    reference = randomised(tvm.densenet121())
    old = {
        k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v for k, v in reference.state_dict().items()
    }
    assert any(".norm.1." in k for k in old)
    torch.save(old, torch_home / weight_files("densenet121")[0])
    node = {
        "name": "densenet",
        "depth": 121,
        "stem": "imagenet",
        "pretrained": True,
        "input_shape": [3, 64, 64],
    }
    ours = MODELS.build({**node, "num_outputs": 1000}, "model").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_pretrained_weights_missing_torn_or_not_fitting_are_one_message(torch_home):
    node = {"name": "resnet", "depth": 18, "stem": "imagenet", "pretrained": True, "input_shape": [3, 64, 64]}
    node["num_outputs"] = 10
    with pytest.raises(
        DlbenchError, match=r"no resnet18 weights in .*checkpoints \(expected resnet18-f37072fd.pth\)"
    ):
        MODELS.build(node, "model")
    (torch_home / "resnet18-f37072fd.pth").write_bytes(b"cut short")
    with pytest.raises(DlbenchError, match="resnet18-f37072fd.pth is not a weights file"):
        MODELS.build(node, "model")
    torch.save(tvm.resnet18().state_dict(), torch_home / "resnet18-f37072fd.pth")
    with pytest.raises(DlbenchError, match=r"stem.0.weight is \[64, 3, 3, 3\] here but conv1.weight"):
        MODELS.build({**node, "stem": "cifar"}, "model")
    with pytest.raises(DlbenchError, match="resnet18 has 122 tensors, this model 154"):
        MODELS.build({**node, "attention": "se"}, "model")


def test_pretrained_transfer_run_trains_only_the_new_head(tmp_path, torch_home):
    reference = tvm.resnet18()
    torch.save(reference.state_dict(), torch_home / "resnet18-f37072fd.pth")
    overrides = ["dataset=image_folder", f"dataset.root={tmp_path / 'imgs'}", "dataset.image_size=[32,32]"]
    overrides += ["model=resnet", "model.stem=imagenet", "model.pretrained=true", "model.freeze=backbone"]
    from formats import write_image_folder

    write_image_folder(tmp_path / "imgs", splits=("train",))
    train(compose(*overrides, "trainer.epochs=1", "dataset.num_workers=0"), tmp_path / "run")
    weights = checkpoint.load(tmp_path / "run")["task"]
    torch.testing.assert_close(weights["model.stem.0.weight"], reference.conv1.weight)  # frozen
    assert weights["model.fc.weight"].shape == (2, 512)
