"""experiment=airbench_cifar10 over several seeds: mean test accuracy and training time.

    python benchmarks/airbench_seeds.py --seeds 10 [--root data] [--device cuda]

A first run of one epoch warms cuDNN up. The time printed is each run's time/fit_and_test_s:
training and the test-time-augmented test, with the data already on the device, as airbench
times itself (airbench also counts its whitening init, a fraction of a second, which dlbench
does while building the model). Target (issue 8): mean
test accuracy >= 94.0% over 10 seeds, in <= 1.5x airbench94's time on the same GPU (airbench94's
own script, run beside this one, gives that reference).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
from pathlib import Path

from dlbench import compose
from dlbench.training import train


def run(overrides: list[str], out: Path) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return train(compose.compose_config(overrides), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--root", default="data")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="dlbench-airbench-"))
    base = [
        "experiment=airbench_cifar10",
        f"dataset.root={args.root}",
        f"device={args.device}",
        "trainer.progress=none",
        "trainer.checkpoint=false",
        "logger=none",
    ]
    run([*base, "trainer.max_steps=49", "trainer.epochs=1"], out / "warmup")
    accs, times = [], []
    for seed in range(args.seeds):
        metrics = run([*base, f"trainer.seed={seed}"], out / str(seed))
        accs.append(metrics["test/acc"])
        times.append(metrics["time/fit_and_test_s"])
        print(f"seed {seed}: test acc {accs[-1]:.4f}, {times[-1]:.2f} s")
    print(
        f"airbench_cifar10 on {args.device}, {args.seeds} seeds: mean test acc {statistics.mean(accs):.4f} "
        f"(std {statistics.pstdev(accs):.4f}), mean time {statistics.mean(times):.2f} s"
    )


if __name__ == "__main__":
    main()
