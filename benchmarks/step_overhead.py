"""What dlbench costs over the notes' plain loop on the lessons made of tiny steps (issue 29).

Each workload is trained by dlbench (the preset, its defaults: checkpoints, TensorBoard, the NaN
guard, progress off) and by a plain PyTorch loop written here: randperm, slice, forward, loss,
zero_grad, backward, step, nothing else (for the names, one name per step over the batches
dlbench's loader makes, in a shuffled order). Same model (built by dlbench, fresh weights per
side), data, batch size, optimizer and number of steps; one thread; the rounds interleave the
two sides, and each side's best round counts. dlbench's time is its `Trainer.fit` (training
and the epoch-end work the preset asks for: validation, logging, checkpoints), not its
start-up nor the test.

    python benchmarks/step_overhead.py [--rounds 2] [--only iris_mlp,digits_mlp] [--quick]

Targets (issue 29): <= 1.10x on iris_mlp, mlp_regression, name2lang_gru; <= 1.05x on
lenet5_mnist and digits_mlp.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' file writers
from formats import write_mnist, write_names  # noqa: E402

from dlbench import preflight  # noqa: E402
from dlbench.build import build_data, build_task  # noqa: E402
from dlbench.engine.trainer import Trainer  # noqa: E402
from dlbench.training import train  # noqa: E402

QUIET = ["trainer.progress=none", "device=cpu", "trainer.threads=1"]


def workloads(root: Path, quick: bool) -> dict[str, list[str]]:
    """Each workload's overrides (the preset and its data, written into `root`)."""
    write_mnist(root / "mnist", n_train=2000 if quick else 12000, n_test=100)
    names = {f"lang{i}": [f"{a}{b}{c}" for a in "bdfgk" for b in "aeiou" for c in "lmnrst"][i::8] for i in range(8)}
    write_names(root / "names", {k: [n.title() for n in v] * 3 for k, v in names.items()})
    many = 1000 if quick else 10000
    return {
        "iris_mlp": ["experiment=iris_mlp", f"trainer.epochs={many}"],
        "mlp_regression": ["experiment=mlp_regression", f"trainer.epochs={many}"],
        "linear_regression": ["experiment=linear_regression"],
        "name2lang_gru": ["experiment=name2lang_gru", f"dataset.root={root / 'names'}", "dataset.download=false",
                          "trainer.epochs=1"],
        "lenet5_mnist": ["experiment=lenet5_mnist", f"dataset.root={root / 'mnist'}", "dataset.download=false",
                         "dataset.val_fraction=0", "trainer.epochs=1"],
        "digits_mlp": ["experiment=digits_mlp"],
    }  # fmt: skip


def plain_loop(model, batches, epochs: int, optimizer, loss_fn) -> float:
    """The notes' loop; `batches(epoch)` yields an epoch's (x, y). Returns its wall time."""
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        for x, y in batches(epoch):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def plain_side(cfg) -> float:
    """The plain loop on the run's own model, data and optimizer settings."""
    data = build_data(cfg)
    task = build_task(cfg, data.info, data)
    model, dataset, size = task.model, data.splits["train"], cfg.dataset.batch_size
    if hasattr(dataset, "tensors"):  # in memory: a slice of the shuffled order per step
        x, y = dataset.tensors

        def batches(epoch):
            order = torch.randperm(len(x))
            return ((x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(x), size))
    else:  # the names: dlbench's own collated batches, shuffled
        made = list(data.loader("train"))

        def batches(epoch):
            return (made[i] for i in torch.randperm(len(made)).tolist())

    kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[cfg.optimizer.name]
    optimizer = kind(model.parameters(), lr=cfg.optimizer.lr)
    classify = cfg.task.name == "classification"
    loss_fn = F.cross_entropy if classify else lambda out, y: F.mse_loss(out, y.view_as(out))
    return plain_loop(model, batches, cfg.trainer.epochs, optimizer, loss_fn)


def dlbench_side(overrides: list[str], folder: Path) -> float:
    """dlbench's Trainer.fit on the same run, timed from inside this process."""
    fit, took = Trainer.fit, []

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fit(self, *args, **kwargs)
        finally:
            took.append(time.perf_counter() - start)

    Trainer.fit = timed
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # dlbench's own tables
            train(preflight.compose_config(overrides), folder)
    finally:
        Trainer.fit = fit
    return took[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--quick", action="store_true", help="1,000 epochs, 2,000 images: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="dlbench-steps-"))
    chosen = workloads(root, args.quick)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    results = {}
    for name, overrides in chosen.items():
        overrides = [*overrides, *QUIET]
        cfg = preflight.compose_config(overrides)
        plain, ours = [], []
        for r in range(args.rounds):
            torch.manual_seed(cfg.trainer.seed)
            plain.append(plain_side(cfg))
            ours.append(dlbench_side(overrides, root / "runs" / f"{name}-{r}"))
            print(json.dumps({"workload": name, "round": r, "plain_s": plain[-1], "dlbench_s": ours[-1]}))
        results[name] = (min(plain), min(ours))
    print(f"\none thread, best of {args.rounds} interleaved rounds, training time (dlbench: Trainer.fit)")
    print(f"{'workload':<18} {'plain loop s':>12} {'dlbench s':>10} {'ratio':>6}")
    for name, (plain, ours) in results.items():
        print(f"{name:<18} {plain:>12.3f} {ours:>10.3f} {ours / plain:>6.2f}")


if __name__ == "__main__":
    main()
