"""Issue 8's parts: the airbench recipe from registry parts, device-resident data, precision."""

import pytest
import torch
from torch import nn

from dlbench import compose
from dlbench.data.transforms import BatchAugment
from dlbench.engine import checkpoint
from dlbench.engine.optim import Lookahead, build_optimization, triangle
from dlbench.errors import DlbenchError
from dlbench.models.airbench import airbench
from dlbench.training import train


def test_whitening_init_decorrelates_the_image_patches():
    torch.manual_seed(0)
    mixing = torch.randn(12, 12)  # correlated patches
    images = (torch.randn(4000, 12) @ mixing).reshape(4000, 3, 2, 2)
    net = airbench([3, 32, 32], 10, widths=[8, 8, 8])  # (whitened: 2x2 patches of any image)
    net.init_from_data(images, eps=1e-8)
    out = net.whiten(images)[:, :12].flatten(1) - net.whiten.bias[:12]  # one output per patch
    covariance = out.T @ out / len(out)
    torch.testing.assert_close(covariance, torch.eye(12), atol=0.02, rtol=0)
    torch.testing.assert_close(net.whiten(images)[:, 12:], -net.whiten(images)[:, :12])


def test_norm_layers_get_a_scaled_learning_rate_and_the_same_decay_per_step():
    net = airbench([3, 32, 32], 10, widths=[8, 8, 8])
    cfg = {"name": "sgd", "lr": 0.5, "weight_decay": 0.01, "norm_lr_scale": 64.0}
    optimizer = build_optimization(net, cfg, {"name": "none"}, 10, 10).optimizer
    plain, norm = optimizer.param_groups
    assert norm["lr"] == 32.0 and norm["lr"] * norm["weight_decay"] == pytest.approx(0.5 * 0.01)
    norm_biases = {id(m.bias) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in norm["params"]} == norm_biases  # BN scales are frozen at 1
    assert id(net.whiten.weight) not in {id(p) for p in plain["params"]}  # fixed by the whitening


def test_triangle_schedule_and_lookahead():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = triangle(optimizer, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(0.2) and max(lrs) == pytest.approx(1.0) and lrs.index(1.0) == 23
    assert lrs[-1] == pytest.approx(1 - 0.93 * 76 / 77)  # reaches 0.07 at step 100

    net = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(net.weight)
    lookahead = Lookahead(net, every=5, decay=0.5, total_steps=10)
    with torch.no_grad():
        net.weight.fill_(1.0)
    lookahead.after_step(5)  # decay 0.5 * (5/10)^3 = 0.0625: the average moves most of the way
    assert net.weight.item() == pytest.approx(1 - 0.0625) and lookahead.average[0].item() == net.weight.item()
    with torch.no_grad():
        net.weight.fill_(5.0)
    lookahead.after_step(10)  # the last step: the model takes the average, unchanged
    assert net.weight.item() == pytest.approx(1 - 0.0625)


def test_alternating_flip_flips_each_image_on_every_other_epoch():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)
    augment = BatchAugment(0, 0, 0, 0, 0, hflip_alternate=True)
    index = torch.arange(8)
    even, odd = augment(x, index, epoch=0), augment(x, index, epoch=1)
    flipped_even = [torch.equal(e, x[0].flip(2)) for e in even]
    assert 0 < sum(flipped_even) < 8
    assert all(torch.equal(o, x[0] if f else x[0].flip(2)) for o, f in zip(odd, flipped_even, strict=True))
    with pytest.raises(DlbenchError, match="whole-batch"):
        from dlbench.data.transforms import Augment

        Augment(hflip_alternate=True, rotation=10).build([4, 4])


def test_airbench_preset_trains_on_a_small_cifar_subset(tmp_path, data_root):
    overrides = [
        "experiment=airbench_cifar10",
        f"dataset.root={data_root}",
        "dataset.download=false",
        "dataset.batch_size=16",
        "model.widths=[16,32,32]",
        "trainer.max_steps=12",
        "trainer.epochs=3",
        "trainer.progress=none",
        "device=cpu",
    ]
    cfg = compose.compose_config(overrides)
    metrics = train(cfg, tmp_path / "run")
    assert 0 <= metrics["test/acc"] <= 1 and metrics["train/loss"] == metrics["train/loss"]
    state = checkpoint.load(tmp_path / "run")
    assert state["trainer"]["step"] == 12
    assert "model" in state["lookahead"]  # the average is saved, so a resumed run continues it
    assert state["schedulers"]["model"]["last_epoch"] == 12  # the triangle steps every batch


def test_the_step_overhead_benchmark_runs_and_prints_its_three_ratios():
    """benchmarks/step_overhead.py (issue 29) is a command users and sessions run for figures:
    a change that breaks it (an import, a renamed function) fails here, on its smallest
    workload, not on the day of a measurement."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "step_overhead.py"
    command = [sys.executable, str(script), "--rounds", "1", "--quick", "--only", "linear_regression"]
    done = subprocess.run([*command, "--notes-optimizer"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the plain loop's optimizer torch default" in done.stdout  # (the default run: gpu_check's test)
    row = done.stdout.strip().splitlines()[-1].split()
    assert row[0] == "linear_regression" and len(row) == 9, done.stdout[-500:]
    plain, ours, ratio, training, training_ratio, loop, loop_ratio, paired = map(float, row[1:])
    assert 0 < plain and 0 < loop <= training <= ours  # (as printed: rounded)
    assert 0 < loop_ratio <= training_ratio <= ratio
    assert paired == pytest.approx(training_ratio, abs=0.01)  # (one round: its only pair)

    command = [*command[:2], "--alternate", "--parts", "--rounds", "2", "--quick", "--only", "iris_mlp"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {}  # arm: (us a step, median ratio to the plain loop's round)
    for line in done.stdout.splitlines()[-5:]:
        name, epochs, *arm, per_step, ratio = line.split()
        assert (name, epochs) == ("iris_mlp", "25"), done.stdout[-2000:]
        rows[" ".join(arm)] = float(per_step), float(ratio)
    parts = ["dlbench without nan guard", "dlbench without step logging", "dlbench without train metrics"]
    assert list(rows) == ["plain", "dlbench", *parts] and rows["plain"][1] == 1.0
    # (a median of paired ratios, near the ratio of the medians)
    assert rows["dlbench"][1] == pytest.approx(rows["dlbench"][0] / rows["plain"][0], rel=0.5)
