"""Every lecture preset runs on tiny files; the fast ones reach what their seed reported."""

import pytest
import torch
from conftest import read_metrics
from formats import draw_digit_png

from dlbench import compose
from dlbench.commands.listing import experiments
from dlbench.engine import checkpoint
from dlbench.training import train

QUIET = ["trainer.progress=none", "device=cpu"]
IMAGE_DATA = ("mnist", "fashion_mnist", "cifar10", "cifar100")
ZOO = [
    "alexnet_cifar10",
    "vgg16_cifar10",
    "googlenet_cifar10",
    "resnet_cifar10",
    "densenet_cifar10",
    "senet_cifar10",
    "gather_excite_cifar10",
    "cbam_cifar10",
]


# Narrower networks for the few-steps runs (the full sizes are checked in test_zoo.py).
SLIM = {
    "alexnet": ["model.hidden=256"],
    "vgg": ["model.width=0.25", "model.hidden=256"],
    "googlenet": ["model.width=0.25"],
    "resnet": ["model.width=16"],
    "densenet": ["model.growth_rate=4"],
}


def run(tmp_path, *overrides):
    return train(compose.compose_config([*QUIET, *overrides]), tmp_path / "run")


def test_every_preset_of_the_catalog_exists():
    names = set(experiments())
    assert {
        "linear_regression",
        "linear_regression_noisy",
        "mlp_regression",
        "logistic_regression_iris",
        "gd_polynomial",
        "iris_mlp",
        "mlp_mnist",
        "cnn_mnist",
        "lenet5_mnist",
        "cifar10_net",
        *ZOO,
        "name2lang_rnn",
        "name2lang_lstm",
        "name2lang_gru",
        "seq2seq",
        "seq2seq_attention",
        "rnn_timeseries",
        "lstm_timeseries",
        "gan_mnist",
        "dcgan_cifar10",
        "cgan_mnist",
        "pix2pix_facades",
        "cyclegan_horse2zebra",
        "mnist_fast",
        "airbench_cifar10",
        "cnn_mnist_mse",
        "resnet_caltech101",
        "resnet_imagenet",
        "vanishing_gradients",
    } <= names


@pytest.mark.parametrize("name", sorted(experiments()))
def test_preset_runs_a_few_steps(tmp_path, data_root, name):
    overrides = [f"experiment={name}", "trainer.max_steps=3", "trainer.epochs=2"]
    preset = compose.compose_config([f"experiment={name}"])
    dataset = preset.dataset.name
    if dataset in (*IMAGE_DATA, "names", "paired_images", "unpaired_images"):
        overrides += [f"dataset.root={data_root}", "dataset.download=false", "dataset.batch_size=8"]
    if dataset == "reverse_sequences":
        overrides.append("dataset.n_pairs=200")
    if dataset in ("paired_images", "unpaired_images"):
        overrides += ["dataset.image_size=[32,32]", "model.width=8", "dataset.batch_size=2"]
    if dataset in ("caltech101", "imagenet"):  # 224 px photos, scaled down to keep the test fast
        overrides += [f"dataset.root={data_root}", "dataset.image_size=[64,64]", "dataset.batch_size=4"]
        overrides += ["dataset.num_workers=0", "dataset.eval_batch_size=8"]
    if name in ZOO or name == "resnet_caltech101":  # the preset's wiring at a fraction of its width
        overrides += SLIM[preset.model.name]
    if dataset == "imagenet":
        # ResNet-50's bottlenecks at 1/16 of the channels; channels_last is slow on a CPU
        overrides += ["model.width=16", "trainer.channels_last=false"]
    metrics = run(tmp_path, *overrides)
    assert any(k.startswith("train/") for k in metrics)
    assert all(v == v for v in metrics.values())  # numbers, no NaN
    assert checkpoint.load(tmp_path / "run")["trainer"]["step"] >= 1


def test_linear_regression_recovers_w_and_b_to_four_decimals(tmp_path, capsys):
    run(tmp_path, "experiment=linear_regression")
    weights = checkpoint.load(tmp_path / "run")["task"]
    assert torch.allclose(weights["model.1.weight"], torch.tensor([[1.0, 2.0, 3.0]]), atol=5e-5)
    assert torch.allclose(weights["model.1.bias"], torch.tensor([5.0]), atol=5e-5)
    out = capsys.readouterr().out
    assert "learned weight [1.0000, 2.0000, 3.0000]  bias [5.0000]" in out
    assert "true    weight [1.0000, 2.0000, 3.0000]  bias [5.0000]" in out


def test_gd_polynomial_converges_to_the_local_minimum(tmp_path):
    metrics = run(tmp_path, "experiment=gd_polynomial", "logger=none")
    x = checkpoint.load(tmp_path / "run")["task"]["model.x"]
    assert abs(float(x) - 6.147) < 1e-3
    assert checkpoint.load(tmp_path / "run")["trainer"]["step"] < 100  # stopped at the tolerance
    assert abs(metrics["train/grad"]) < 1e-4


@pytest.mark.parametrize("loss", ["bce_with_logits", "bce"])
def test_logistic_regression_separates_setosa_from_versicolor(tmp_path, loss):
    metrics = run(tmp_path, "experiment=logistic_regression_iris", f"loss={loss}", "logger=none")
    assert metrics["val/acc"] == 1.0  # on the 100 training rows, the notes' protocol
    assert "test/acc" not in metrics  # nothing held out


def test_lenet5_then_eval_and_predict_from_the_command_line(cli, tmp_path, data_root):
    args = ["experiment=lenet5_mnist", f"dataset.root={data_root}", "dataset.download=false", "device=cpu"]
    trained = cli(*args, "trainer.epochs=2", "hydra.run.dir=lenet")
    assert trained.returncode == 0, trained.stderr
    run_dir = tmp_path / "lenet"
    assert read_metrics(run_dir)["test/acc"] >= 0

    refused = cli("eval", "lenet")  # a saved run names no data folder outside this one: given again
    assert refused.returncode == 2 and f"give it again: dataset.root={data_root}" in refused.stderr
    evaluated = cli("eval", "lenet", f"dataset.root={data_root}")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "test/acc" in evaluated.stdout
    assert f"{read_metrics(run_dir)['test/acc']:.6g}" in evaluated.stdout  # the same figure
    assert "Test split, per class" in evaluated.stdout
    # (images prepared otherwise than the run's: its figures, unsaid; the run's own setting: no note)
    prepared = cli("eval", "lenet", f"dataset.root={data_root}", "dataset.normalize=dataset")
    said = "note: dataset.normalize=dataset: the model is measured on images prepared otherwise"
    assert prepared.returncode == 0 and said in prepared.stderr, prepared.stderr
    same = cli("eval", "lenet", f"dataset.root={data_root}", "dataset.normalize=none")
    assert same.returncode == 0 and "prepared otherwise" not in same.stderr, same.stderr

    png = draw_digit_png(tmp_path / "digit.png")
    predicted = cli("predict", "lenet", str(png), "--top-k", "2")
    assert predicted.returncode == 0, predicted.stderr
    assert "digit.png" in predicted.stdout and "%" in predicted.stdout and "#2" in predicted.stdout

    missing = cli("predict", "lenet", "nothere.png")
    assert missing.returncode == 2 and "No such file: nothere.png" in missing.stderr


def test_missing_data_root_from_the_command_line(cli, tmp_path):
    result = cli("experiment=mlp_mnist", "dataset.root=empty", "dataset.download=false", "device=cpu")
    assert result.returncode == 2
    assert "empty/MNIST/raw" in result.stderr and "train-images-idx3-ubyte" in result.stderr
    assert "Traceback" not in result.stderr
