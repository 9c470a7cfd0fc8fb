"""Issue 26: the CUDA code paths, tested wherever a GPU is lent.

`benchmarks/gpu_check.py` runs these tests (`pytest -m cuda`) on the GPU. The suite runs them
on the CPU where there is none (CI), so that every path they take runs on every CI run, on
smaller sizes: the precisions are then CPU autocast (bf16; fp16 with torch's CPU gradient
scaler). DLBENCH_TEST_DEVICE=cuda|cpu chooses.

- every model family trains a few steps in fp32, bf16 and fp16 (with the gradient scaler);
- channels_last and torch.compile;
- exact resume: final weights equal after a SIGKILL (trainer.deterministic=true);
- data held on the device; device=auto choosing the accelerator;
- eval, predict, export and load_model of a run trained on the device, on the CPU;
- a batch that does not fit the device's memory ends with one message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import killed_before_step
from formats import write_mnist

from dlbench import compose
from dlbench.engine import checkpoint
from dlbench.training import train

pytestmark = pytest.mark.cuda
DEVICE = os.environ.get("DLBENCH_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
QUIET = ["trainer.progress=none", "logger=none", f"device={DEVICE}"]


@pytest.fixture(autouse=True)
def the_device_is_there():
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.fail("pytest -m cuda needs a GPU (DLBENCH_TEST_DEVICE=cpu runs these tests on the CPU)")


FAMILIES = {  # a few steps of each kind of model, on the data the tests write (data_root)
    "mlp": ["experiment=digits_mlp"],
    "cnn": ["experiment=lenet5_mnist", "dataset.root={root}", "dataset.download=false"],
    "resnet": ["model=resnet", "dataset=cifar10", "dataset.root={root}", "dataset.download=false"],
    "rnn": ["experiment=name2lang_rnn", "dataset.root={root}", "dataset.download=false"],
    "seq2seq": ["experiment=seq2seq_attention", "dataset.n_pairs=96"],
    "gan": ["experiment=gan_mnist", "dataset.root={root}", "dataset.download=false"],
}


# on the CPU (the check's own test) the same paths on smaller sizes: CPU autocast is slow
SMALL = ["dataset.batch_size=16"] if DEVICE == "cpu" else []
SMALLER_RESNET = ["model.width=8", "model.layers=[1,1,1,1]"] if DEVICE == "cpu" else []


def family(name: str, root: Path) -> list[str]:
    overrides = [o.format(root=root) for o in FAMILIES[name]] + SMALL
    return overrides + SMALLER_RESNET if name == "resnet" else overrides


def run(folder: Path, *overrides: str) -> dict[str, float]:
    return train(compose.compose_config([*QUIET, *overrides]), folder)


@pytest.mark.parametrize("precision", ["32", "bf16", "16"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_trains_in_each_precision(tmp_path, data_root, name, precision):
    metrics = run(tmp_path, *family(name, data_root), f"trainer.precision={precision}", "trainer.max_steps=3")
    assert metrics and all(v == v for v in metrics.values())  # no NaN reported
    state = checkpoint.load(tmp_path)
    assert state["trainer"]["step"] == 3
    if precision == "16" and name != "gan":  # the scaler's state is kept (and resumed)
        assert state["scalers"], state.keys()


@pytest.mark.parametrize(
    "options",
    [
        ["trainer.channels_last=true"],
        ["trainer.compile=true"],
        # CUDA graphs (issue 29: launch-bound small models); on the CPU, inductor alone
        ["trainer.compile=true", "trainer.compile_mode=reduce-overhead"],
    ],
)
def test_channels_last_and_compile(tmp_path, data_root, options):
    # (on the CPU, the MLP: compiling a ResNet or LeNet-5 there takes most of a minute)
    model = family("resnet" if DEVICE == "cuda" else "mlp", data_root)
    metrics = run(tmp_path, *model, *options, "trainer.max_steps=2")
    assert metrics["train/loss"] == metrics["train/loss"]


def test_data_is_held_on_the_device_and_auto_chooses_it(data_root):
    from dlbench.build import build_data
    from dlbench.engine.device import resolve_device

    data = build_data(compose.compose_config([*QUIET, *family("cnn", data_root), "dataset.in_memory=true"]))
    data.place(torch.device(DEVICE))  # what the run does before its first step
    images, labels = next(iter(data.loader("train")))
    assert images.device.type == DEVICE and labels.device.type == DEVICE
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_gpu_is_named_with_its_index_as_its_tensors_device_is(monkeypatch):
    """A run's `cuda` becomes cuda:N, the device a tensor on the GPU reports, so a batch already
    there compares equal and is neither moved nor copied (on the CPU: CUDA's answer stands in
    for a GPU's); other devices stay as they are."""
    from dlbench.engine.device import indexed

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert indexed(torch.device("cuda")) == torch.device("cuda", 1)
    for device in ("cuda:0", "cpu", "mps"):
        assert indexed(torch.device(device)) == torch.device(device)


def test_exact_resume_after_a_sigkill(tmp_path):
    args = [*QUIET, "trainer.epochs=3", "dataset.batch_size=32", "trainer.deterministic=true"]
    args += ["trainer.threads=1"]  # (on the CPU: both processes sum in the same order)
    args += ["trainer.checkpoint_every_n_steps=20"]
    train(compose.compose_config(args), tmp_path / "whole")
    killed_before_step(30, [*args, "hydra.run.dir=killed"], tmp_path)
    assert checkpoint.load(tmp_path / "killed")["trainer"]["step"] == 20  # (a periodic checkpoint)
    train(compose.compose_config([*args, f"resume={tmp_path / 'killed'}"]), tmp_path / "killed")
    whole, resumed = checkpoint.load(tmp_path / "whole"), checkpoint.load(tmp_path / "killed")
    for name, tensor in whole["task"].items():
        assert torch.equal(tensor, resumed["task"][name]), name


def test_a_run_trained_on_the_device_is_used_on_the_cpu(cli, tmp_path):
    write_mnist(tmp_path / "data", n_train=64, n_test=16)
    data = ["experiment=lenet5_mnist", "dataset.root=data", "dataset.download=false"]
    trained = cli(*QUIET, *data, "trainer.max_steps=3", "hydra.run.dir=run")
    assert trained.returncode == 0, trained.stderr[-2000:]
    evaluated = cli("eval", "run", "device=cpu", "dataset.root=data")  # (a saved run's place is given again)
    assert evaluated.returncode == 0 and "test/acc" in evaluated.stdout, evaluated.stderr[-2000:]
    from PIL import Image

    Image.new("L", (28, 28), 255).save(tmp_path / "digit.png")
    predicted = cli("predict", "run", "digit.png", "--top-k", "2")
    assert predicted.returncode == 0 and "digit.png" in predicted.stdout, predicted.stderr[-2000:]
    ignored = cli("predict", "run", "digit.png", "--num", "5")  # (a GAN's option: it was ignored)
    assert ignored.returncode == 2 and "--num does nothing for this run (Classification)" in ignored.stderr
    exported = cli("export", "run", "--out", "model.pt")
    assert exported.returncode == 0, exported.stderr[-2000:]
    import dlbench

    for source in (tmp_path / "run", tmp_path / "model.pt"):
        model = dlbench.load_model(source)
        assert {p.device.type for p in model.parameters()} == {"cpu"}
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_a_batch_too_large_for_the_devices_memory_is_one_message(cli):
    # on a GPU: 1,797 digits x 20M hidden units of activations (about 144 GB) do not fit, while
    # the model (6 GB) does; on the CPU, a layer too large to allocate at all
    hidden = "[20000000]" if DEVICE == "cuda" else "[200000000000]"
    result = cli(
        *QUIET, f"model.hidden={hidden}", "dataset.batch_size=2048", "trainer.max_steps=1", process=True
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Out of memory" in result.stderr and "Traceback" not in result.stderr


def test_a_non_finite_step_is_caught_on_the_device_before_its_update(tmp_path):
    """The NaN/Inf guard (one fused pass over the loss and the gradients, then one read) on
    the device: a learning rate that blows the weights up stops the run at the first step whose
    loss or gradient is not finite, before its update, with one message."""
    from dlbench.errors import DlbenchError

    overrides = ["experiment=digits_mlp", "optimizer=sgd", "optimizer.lr=1e38", "trainer.epochs=1"]
    with pytest.raises(DlbenchError, match=r"step \d+ \(epoch 1\): the (loss is|gradient of \S+ holds) "):
        run(tmp_path, *overrides)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()  # no checkpoint holds the blow-up
