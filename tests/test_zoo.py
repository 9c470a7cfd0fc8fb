"""The CNN zoo: exact parameter counts, forward/backward at both input scales, channels_last,
torch.compile, and `dlbench show`."""

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from dlbench.registry import MODELS
from dlbench.show import summarize, training_memory

CIFAR, IMAGENET = [3, 32, 32], [3, 224, 224]


def build(input_shape, num_outputs=10, **model):
    return MODELS.build({**model, "input_shape": input_shape, "num_outputs": num_outputs}, "model")


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (our config, torchvision's builder, the published count for 1000 classes)
REFERENCES = [
    ({"name": "alexnet"}, tvm.alexnet, 61_100_840),
    ({"name": "vgg", "depth": 16}, tvm.vgg16, 138_357_544),
    ({"name": "vgg", "depth": 16, "batch_norm": True}, tvm.vgg16_bn, 138_365_992),
    ({"name": "resnet", "depth": 18}, tvm.resnet18, 11_689_512),
    ({"name": "resnet", "depth": 34}, tvm.resnet34, 21_797_672),
    ({"name": "resnet", "depth": 50}, tvm.resnet50, 25_557_032),
    ({"name": "resnet", "depth": 101}, tvm.resnet101, 44_549_160),
    ({"name": "resnet", "depth": 152}, tvm.resnet152, 60_192_808),
    ({"name": "densenet", "depth": 121}, tvm.densenet121, 7_978_856),
    ({"name": "densenet", "depth": 169}, tvm.densenet169, 14_149_480),
    ({"name": "densenet", "depth": 201}, tvm.densenet201, 20_013_928),
]


@pytest.mark.parametrize("ours, reference, published", REFERENCES, ids=[r[1].__name__ for r in REFERENCES])
def test_imagenet_variant_matches_torchvision_parameter_count(ours, reference, published):
    with torch.device("meta"):  # shapes only: no memory, no compute
        model, theirs = build(IMAGENET, 1000, stem="imagenet", **ours), reference()
    assert count(model) == count(theirs) == published


def test_se_resnet50_has_the_published_parameter_count():
    assert count(build(IMAGENET, 1000, name="resnet", depth=50, attention="se", reduction=16)) == 28_088_024


def test_densenet_bc_100_12_is_the_small_cifar_densenet():
    model = build(CIFAR, name="densenet", depth=100, growth_rate=12, compression=0.5)
    assert 0.76e6 < count(model) < 0.78e6  # the paper: 0.8M


def test_googlenet_follows_the_seed_inception_table():
    model = build(IMAGENET, 1000, name="googlenet")
    outs = [m.out_channels for m in model.inception if hasattr(m, "out_channels")]
    assert outs == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert model(torch.zeros(1, *IMAGENET)).shape == (1, 1000)


def test_attention_adds_its_parameters_to_every_block():
    plain = count(build(CIFAR, name="resnet", depth=18))
    se = count(build(CIFAR, name="resnet", depth=18, attention="se", reduction=16))
    # one SE per block: 2 * C * C/16 weights + C/16 + C biases; two blocks each of C=64..512
    assert se - plain == sum(2 * (2 * c * c // 16 + c // 16 + c) for c in (64, 128, 256, 512))
    assert count(build(CIFAR, name="resnet", depth=18, attention="ge")) == plain  # GE-θ-: free
    assert count(build(CIFAR, name="resnet", depth=18, attention="ge", ge_parametric=True)) > plain
    assert count(build(CIFAR, name="resnet", depth=18, attention="cbam")) > se  # + 7x7 spatial conv


# The standard variant of each family (and each attention block), run at both input scales.
FAMILIES = [
    {"name": "alexnet"},
    {"name": "vgg", "depth": 16},
    {"name": "vgg", "depth": 11, "batch_norm": True},
    {"name": "googlenet", "batch_norm": True},
    {"name": "resnet", "depth": 18},
    {"name": "resnet", "depth": 50},
    {"name": "resnet", "depth": 18, "attention": "se"},
    {"name": "resnet", "depth": 18, "attention": "ge", "ge_extent": 4, "ge_parametric": True, "ge_mlp": True},
    {"name": "resnet", "depth": 18, "attention": "ge", "ge_parametric": True},
    {"name": "resnet", "depth": 18, "attention": "cbam"},
    {"name": "densenet", "depth": 121},
    {"name": "densenet", "depth": 100, "growth_rate": 12},
]
ids = ["-".join(str(v) for v in f.values()) for f in FAMILIES]
# The same code paths at a fraction of the depth, for the tests that trace or convert the model.
SMALL = [
    {"name": "alexnet", "hidden": 64},
    {"name": "vgg", "depth": 11, "batch_norm": True, "width": 0.125, "hidden": 32},
    {"name": "googlenet", "batch_norm": True, "width": 0.125},
    {"name": "resnet", "layers": [1, 1], "width": 16, "block": "basic"},
    {"name": "resnet", "layers": [1, 1], "width": 16, "block": "bottleneck"},
    {"name": "resnet", "layers": [1, 1], "width": 16, "attention": "se"},
    {
        "name": "resnet",
        "layers": [1, 1],
        "width": 16,
        "attention": "ge",
        "ge_extent": 4,
        "ge_parametric": True,
    },
    {
        "name": "resnet",
        "layers": [1, 1],
        "width": 16,
        "attention": "ge",
        "ge_parametric": True,
        "ge_mlp": True,
    },
    {"name": "resnet", "layers": [1, 1], "width": 16, "attention": "ge", "ge_extent": 2},
    {"name": "resnet", "layers": [1, 1], "width": 16, "attention": "cbam"},
    {"name": "densenet", "blocks": [2, 2], "growth_rate": 8},
]
small_ids = ["-".join(str(v) for v in f.values()) for f in SMALL]


# Every family at both sizes; VGG-16 only at 32 px (at 224 px it costs 10 s on CI's CPU, and
# VGG-11-BN runs the same code at that size).
SCALES = [
    pytest.param(family, shape, id=f"{name}-{scale}")
    for family, name in zip(FAMILIES, ids, strict=True)
    for shape, scale in ((CIFAR, "cifar"), (IMAGENET, "imagenet"))
    if not (shape == IMAGENET and family == {"name": "vgg", "depth": 16})
]


@pytest.mark.parametrize("family, shape", SCALES)
def test_forward_and_backward_at_both_scales(family, shape):
    model = build(shape, 7, **family)
    x = torch.randn(2, *shape)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("family", SMALL, ids=small_ids)
def test_channels_last_gives_the_same_outputs(family):
    torch.manual_seed(0)
    model = build([3, 32, 32], 5, **family).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", SMALL, ids=small_ids)
def test_torch_compile_traces_every_model(family):
    """Dynamo captures each model as one graph (fullgraph: no graph breaks); the eager backend
    skips code generation, which test_training_with_channels_last_and_compile covers."""
    torch._dynamo.reset()
    model = build([3, 32, 32], 5, **family)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    compiled(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_wrong_input_is_a_clear_error():
    from dlbench.errors import DlbenchError

    with pytest.raises(DlbenchError, match="needs images"):
        build([64], name="resnet")
    with pytest.raises(DlbenchError, match="cannot take inputs of shape"):
        build([1, 28, 28], name="vgg", stem="imagenet")  # five 2x2 pools of 28 pixels: 0
    # (a review: airbench on digits' 8x8 failed inside the first forward pass, with a traceback)
    with pytest.raises(DlbenchError, match=r"model=airbench cannot take inputs of shape \[1, 8, 8\].*25x25"):
        build([1, 8, 8], name="airbench", widths=[8, 8, 8])
    with pytest.raises(DlbenchError, match="model=airbench needs images"):
        build([64], name="airbench")
    with pytest.raises(DlbenchError, match="choose one of 18, 34, 50, 101, 152"):
        build(CIFAR, name="resnet", depth=20)
    with pytest.raises(DlbenchError, match="6n\\+4"):
        build(CIFAR, name="densenet", depth=99)


def test_resnet50_macs_match_torchvision():
    """torchvision's published _ops for ResNet-50 (GFLOPS, counted as multiply-adds)."""
    summary = summarize(build(IMAGENET, 1000, name="resnet", depth=50), IMAGENET, 2, _sgd(), "32", 1)
    assert summary.macs / 1e9 == pytest.approx(tvm.ResNet50_Weights.IMAGENET1K_V1.meta["_ops"], abs=0.01)


def _sgd():
    from omegaconf import OmegaConf

    return OmegaConf.create({"name": "sgd", "lr": 0.1, "momentum": 0.9})


def test_training_memory_counts_saved_activations_and_optimizer_state():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    memory = training_memory(model, [10], 8, _sgd(), "32")
    params = 4 * (10 * 20 + 20 + 20 * 5 + 5)
    assert memory["weights and buffers"] == memory["gradients"] == params
    assert memory["optimizer state (sgd)"] == params  # one momentum buffer per parameter
    # saved for backward: the input (8x10) and the ReLU output (8x20, shared with Linear 2)
    assert memory["activations saved for backward (batch 8)"] == 4 * 8 * (10 + 20)


def test_show_reports_the_resnet50_parameter_count(cli):
    args = ["model=resnet", "model.depth=50", "model.stem=imagenet", "model.num_outputs=1000"]
    result = cli("show", *args)
    assert result.returncode == 0, result.stderr
    assert "25,557,032 total, 25,557,032 trainable" in result.stdout
    assert "input 3x224x224" in result.stdout
    assert "2048x7x7" in result.stdout  # the last stage's output shape
    assert "multiply-accumulates: 4.09G" in result.stdout
    assert "activations saved for backward (batch 64)" in result.stdout


def test_show_uses_the_dataset_shape_without_the_data(cli):
    """CIFAR-10 is not on disk: its shape is known without reading it, so nothing downloads."""
    result = cli("show", "experiment=senet_cifar10", "dataset.download=false", "--depth", "1")
    assert result.returncode == 0, result.stderr
    assert "input 3x32x32 (dataset cifar10)" in result.stdout
    assert "batch 128" in result.stdout
    assert not (result.stdout.count("stage1"))  # --depth 1: only the top-level parts


def test_show_bad_input_is_one_message(cli):
    result = cli("show", "model=vgg", "dataset=mnist", "model.stem=imagenet")
    assert result.returncode == 2
    assert "cannot take inputs of shape [1, 28, 28]" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("show", "model=resnet", "model.attention=sqeeze")
    assert result.returncode == 2
    assert "model.attention" in result.stderr and "Traceback" not in result.stderr
    # (show fed numbers to an embedding: an unexpected error, exit 1)
    result = cli("show", "model=seq2seq", "model.vocab_size=10", "model.target_vocab_size=12")
    assert result.returncode == 2
    assert "model=seq2seq cannot take dataset=digits's inputs (numbers" in result.stderr


def test_show_builds_the_optimizer_with_dlbenchs_own_keys_aside(cli):
    """airbench's optimizer.norm_lr_scale is dlbench's (its parameter groups), not SGD's: show
    failed with "Unknown key 'optimizer.norm_lr_scale' for optimizer 'sgd'"."""
    result = cli("show", "experiment=airbench_cifar10", "dataset.download=false", "--depth", "1")
    assert result.returncode == 0 and "optimizer state (sgd)" in result.stdout, result.stderr


def test_list_models_describes_every_family(cli):
    result = cli("list", "models")
    assert result.returncode == 0
    for name in ("alexnet", "vgg", "googlenet", "resnet", "densenet"):
        assert f"│ {name} " in result.stdout


def test_training_with_channels_last_and_compile(cli):
    """The real path: trainer.compile=true (inductor) and channels_last through the CLI."""
    # (one stage: inductor compiles each kernel on a CI machine's empty cache, 60 s for two stages)
    args = ["model=resnet", "model.layers=[1]", "model.width=8", "model.attention=cbam", "trainer=debug"]
    result = cli(*args, "trainer.channels_last=true", "trainer.compile=true", "trainer.progress=none")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in result.stdout
