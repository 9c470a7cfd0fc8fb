"""What dlbench's trainer costs over a minimal hand-written loop.

LeNet-5 (experiment=lenet5_mnist: 32x32 inputs, SGD, batch 32) on MNIST-shaped data generated
here (idx files, so it runs offline). Both sides train the same model on the same in-memory
tensors, with the same batch size and number of steps, in this one process; the hand loop is
randperm, slice, forward, cross-entropy, zero_grad, backward, step.

    python benchmarks/loop_overhead.py [--train 12000] [--epochs 3] [--rounds 2]

Prints the time per epoch of each side (the best of the last epochs over --rounds) and the ratio.
Target (issue 8): dlbench <= 1.10x the hand loop on a 2-core CPU.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the idx writer of the tests
from formats import write_mnist  # noqa: E402

from dlbench import compose  # noqa: E402
from dlbench.build import build_data, build_task  # noqa: E402
from dlbench.training import train  # noqa: E402


def hand_loop(model, x, y, batch_size: int, epochs: int, lr: float) -> float:
    """The loop a notebook would have; returns the time of its last epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        elapsed = time.perf_counter() - start
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=12000, help="training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="dlbench-bench-"))
    write_mnist(root, n_train=args.train, n_test=100)
    overrides = [
        "experiment=lenet5_mnist",
        f"dataset.root={root}",
        "dataset.download=false",
        "dataset.val_fraction=0",  # both sides only train
        f"trainer.epochs={args.epochs}",
        "trainer.progress=none",
        "trainer.monitor=train/loss",
        f"device={args.device}",
    ]
    cfg = compose.compose_config(overrides)
    data = build_data(cfg)
    device = torch.device(args.device)
    x, y = (t.to(device) for t in data.splits["train"].tensors)
    hand, ours = [], []
    for r in range(args.rounds):
        torch.manual_seed(0)
        model = build_task(cfg, data.info, data).model.to(device)
        hand.append(hand_loop(model, x, y, cfg.dataset.batch_size, args.epochs, cfg.optimizer.lr))
        with contextlib.redirect_stdout(io.StringIO()):  # dlbench's own tables
            metrics = train(compose.compose_config(overrides), root / f"run{r}")
        ours.append(metrics["time/epoch_s"])
        print(json.dumps({"round": r, "hand_epoch_s": hand[-1], "dlbench_epoch_s": ours[-1]}))
    ratio = min(ours) / min(hand)
    print(
        f"LeNet-5, {len(x)} images, batch {cfg.dataset.batch_size}, {torch.get_num_threads()} threads, "
        f"{device}: hand loop {min(hand):.3f} s/epoch, dlbench {min(ours):.3f} s/epoch, "
        f"ratio {ratio:.3f} (target <= 1.10)"
    )


if __name__ == "__main__":
    main()
