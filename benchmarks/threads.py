"""One CPU thread or one per core for a small model: what trainer.threads=auto chooses, and why.

    python benchmarks/threads.py [--steps 200]

Times LeNet-5 training steps (batch 32, 32x32 inputs) at 1 and at N threads (N: the cores this
process may use), first on an idle machine, then beside a busy process (one core spinning, as a
second job or a notebook would), and prints what `auto` measured and chose in each case
(dlbench.engine.device.fastest_threads, the function a run calls).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import torch
from torch import nn

from dlbench.engine.device import fastest_threads


def lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10),
    )  # fmt: skip


def spin(stop) -> None:
    while not stop.is_set():
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    steps = parser.parse_args().steps
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    model, optimizer = lenet5(), None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    x, y = torch.randn(32, 1, 32, 32), torch.randint(10, (32,))

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    def per_step(threads: int) -> float:
        torch.set_num_threads(threads)
        step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - start) / steps * 1000

    print(f"LeNet-5 training step, batch 32, {steps} steps, {cores} cores, torch {torch.__version__}")
    for label in ("idle machine", "one busy neighbour process"):
        stop = multiprocessing.Event()
        neighbour = multiprocessing.Process(target=spin, args=(stop,)) if "busy" in label else None
        if neighbour is not None:
            neighbour.start()
        try:
            one, many = per_step(1), per_step(cores)
            chosen, seconds = fastest_threads(step, cores)
        finally:
            if neighbour is not None:
                stop.set()
                neighbour.join()
        measured = ", ".join(f"{n}: {s * 1000:.2f} ms" for n, s in seconds.items())
        print(
            f"{label:<28} 1 thread {one:6.2f} ms/step   {cores} threads {many:6.2f} ms/step   "
            f"ratio {many / one:5.2f}   auto measured {measured} -> chose {chosen}"
        )


if __name__ == "__main__":
    main()
