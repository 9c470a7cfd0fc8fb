"""Choosing the device, seeding every generator, moving batches."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dlbench.errors import DlbenchError


def resolve_device(name: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is an error, not a fallback."""
    kind = name.split(":")[0]
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DlbenchError(f"device={name}: CUDA is not available on this machine (use device=cpu or auto)")
    if kind == "cuda" and ":" in name and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise DlbenchError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DlbenchError(
            f"device={name}: Apple MPS is not available on this machine (use device=cpu or auto)"
        )
    return torch.device(name)


def indexed(device: torch.device) -> torch.device:
    """A GPU named with its index (`cuda` is the current one), as its tensors' device is: a batch
    already on it then compares equal and is not moved again. (Asking for the index starts CUDA,
    so a run asks once it knows its GPU, not while it only picks one.)"""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def set_threads(processes: int = 1) -> None:
    """At most one CPU thread per core this process may use (a container or a job may get fewer
    cores than the machine has, and torch counts the machine's; a Slurm job the CPUs it was
    given), shared among `processes`."""
    from dlbench.engine import cluster

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cores = min(cores, cluster.cpus() or cores)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores // processes)))


def fastest_threads(step, most: int, trials: int = 3) -> tuple[int, dict[int, float]]:
    """Time `step()` at one thread and at `most` (after a warm-up each), keep the faster:
    on a small model, one thread is often several times faster than two on a busy 2-core
    machine (the threads wait for each other), and never much slower."""
    import time

    seconds: dict[int, float] = {}
    for threads in sorted({1, most}):
        torch.set_num_threads(threads)
        step()
        start = time.perf_counter()
        for _ in range(trials):
            step()
        seconds[threads] = (time.perf_counter() - start) / trials
    best = min(seconds, key=seconds.get)
    torch.set_num_threads(best)
    return best, seconds


def trial_step(
    task: Any,
    loader: Any,
    device: torch.device,
    parts: str,
    channels_last: bool,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    reported: set[str] | None = None,
) -> Callable[[], None] | None:
    """One training step of a copy of the task (and of its `optimizers`, by name) on a batch of
    the training data, before the run writes anything: a model, a task and data that do not
    fit together (a shape, an input the model does not take, a size the data does not give),
    or an optimizer setting torch cannot step with (SGD's weight_decay=1e300), stop here with
    one message, not at the run's first step after its folder was written. Returns the step,
    to time it again (`choose_threads`), or None for data that streams (no batch to take
    without its workers). The random generators are put back as they were. `reported`, if
    given, gets the names of the train/ values the step gives and of the val/ metrics an
    evaluation of the copy reports (`evaluated_names`)."""
    import copy

    import torch._dynamo

    from dlbench.errors import as_user_error, first_line

    if isinstance(loader, torch.utils.data.DataLoader) and isinstance(
        loader.dataset, torch.utils.data.IterableDataset
    ):
        return None  # (no sample to take without starting its workers)
    drawn = rng_state()  # (augmentations draw too)
    try:
        if isinstance(loader, torch.utils.data.DataLoader):  # (files read by workers: a batch read here)
            count = min(2, loader.batch_size or 2, len(loader.dataset))
            batch = loader.collate_fn([loader.dataset[i] for i in range(count)])
        else:
            batch = next(iter(loader))
        # (an error reading the data above is the data's own message, as in the run)
        batch = to_device(batch, device, channels_last)
        probe, stepped = copy.deepcopy((task, optimizers or {}))  # (together: the copies' weights)
        probe.train()

        def optimize(name: str, loss: torch.Tensor) -> None:
            loss.backward()
            if (optimizer := stepped.get(name)) is not None:
                try:  # (its class's step: a scheduler wraps the instance's, around the optimizer copied)
                    type(optimizer).step(optimizer)
                except Exception as err:
                    from dlbench.engine.step import step_failed

                    raise step_failed(optimizer, err, "a trial step before the run") from err
                optimizer.zero_grad(set_to_none=True)

        outputs: list[str] = []  # (the step's values: an epoch's train/ means)

        def step() -> None:
            outputs[:] = probe.training_step(batch, optimize) or {}

        try:
            with torch._dynamo.config.patch(disable=True):  # (trainer.compile: eager, not compiled again)
                step()
        except Exception as err:
            if isinstance(known := as_user_error(err), DlbenchError):
                raise known from err
            raise DlbenchError(
                f"{parts} do not fit together: a training step on a batch of the data fails "
                f"({first_line(err)}). Choose a model for this data (dlbench list models; dlbench show "
                "model=NAME with the same dataset= lists its layers for it)"
            ) from err
        if reported is not None:
            reported.update([f"train/{name}" for name in outputs], evaluated_names(probe, batch))
            probe.train()  # (as trained: choose_threads times this step again)
    finally:
        set_rng_state(drawn)
    return step


def evaluated_names(task: Any, batch: Any) -> set[str]:
    """The val/ metrics an evaluation of `task` reports (its evaluation step's outputs, its
    metrics), from two evaluation steps on `batch` (R² takes two samples; a batch may be one);
    none where it fails (the run's own evaluation says why). The task is changed (its metrics,
    what it keeps for figures): give it a copy."""
    try:
        with torch.no_grad():
            task.eval()
            outputs = {**task.evaluation_step(batch, "val"), **task.evaluation_step(batch, "val")}
            computed = task.compute_metrics("val")
    except Exception:
        return set()
    return {f"val/{name}" for name in [*outputs, *computed]}


def choose_threads(settings: Any, step: Callable[[], None] | None, loader: Any) -> None:
    """The CPU thread count: trainer.threads=N, or auto: time `step` (a training step of a copy
    of the task: `trial_step`) at one thread and at one per core, and keep the faster. Where
    the measurement would cost more than it could save (a deterministic run, several
    processes, data read from files by a DataLoader, or a step over half a second), one thread
    per core stays."""
    import logging
    import time

    from dlbench.engine import distributed

    log = logging.getLogger("dlbench")
    if settings.threads != "auto":
        torch.set_num_threads(int(settings.threads))
        return
    most = torch.get_num_threads()
    timed = step is not None and not (
        settings.deterministic
        or distributed.world_size() > 1
        or isinstance(loader, torch.utils.data.DataLoader)
    )
    if most == 1 or not timed:
        log.debug(f"CPU threads: {most}")
        return
    drawn = rng_state()
    started = time.perf_counter()
    step()
    if time.perf_counter() - started > 0.5:
        set_rng_state(drawn)
        log.debug(f"CPU threads: {most}")
        return
    best, seconds = fastest_threads(step, most)
    set_rng_state(drawn)
    timings = ", ".join(f"{s * 1000:.1f} ms on {n} thread{'s' * (n > 1)}" for n, s in seconds.items())
    log.debug(f"CPU threads: {best}, the faster: one training step took {timings}")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move tensors (in lists, tuples and dicts) to the device; images to channels_last if asked."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        if not channels_last and all(isinstance(b, torch.Tensor) and b.device == device for b in batch):
            return batch  # (slices of data kept on the device: nothing to move, nothing to copy)
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def rng_state() -> dict[str, Any]:
    """Every random generator's state, in types that load with torch.load(weights_only=True)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        # (a process that has not used CUDA has no CUDA state to keep: asking would start CUDA)
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
