"""What the Slurm and multi-node tests share: a real cluster or a clear reason why not."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def unavailable(reason: str) -> None:
    """Skip the test with the reason, or fail with it where the cluster is required (CI sets
    DLBENCH_REQUIRE_CLUSTER=1, so a machine that cannot run them does not pass silently)."""
    if os.environ.get("DLBENCH_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"DLBENCH_REQUIRE_CLUSTER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def assert_like_one_process(run_dir: Path, overrides: list[str], reference_dir: Path) -> dict[str, float]:
    """A run of several processes ends within 1e-4 of one process with the same global batch
    (trained here, in `reference_dir`): its losses and every weight. Returns the reference's
    metrics."""
    import torch

    from dlbench import compose
    from dlbench.engine import checkpoint
    from dlbench.training import train

    reference = train(compose.compose_config([*overrides, "trainer.progress=none"]), reference_dir)
    several = json.loads((run_dir / "metrics.json").read_text())
    for key in ("train/loss", "val/loss", "test/loss"):
        assert several[key] == pytest.approx(reference[key], abs=1e-4), key
    weights, ref_weights = checkpoint.load(run_dir)["task"], checkpoint.load(reference_dir)["task"]
    for name, value in ref_weights.items():
        torch.testing.assert_close(weights[name], value, atol=1e-4, rtol=0)
    # the logged steps' losses too (they were rank 0's share of each batch)
    for tag in ("train/loss_step", "train/running_loss"):  # (the second: with trainer.running_loss_every)
        steps, ref_steps = logged(run_dir, tag), logged(reference_dir, tag)
        assert steps.keys() == ref_steps.keys() and (ref_steps or tag != "train/loss_step"), tag
        for step, value in ref_steps.items():
            assert steps[step] == pytest.approx(value, abs=1e-4), (tag, step, steps[step], value)
    return reference


def logged(run_dir: Path, tag: str) -> dict[int, float]:
    """A run's values of `tag` in TensorBoard, by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return {}
    return {event.step: event.value for event in events.Scalars(tag)}


def epochs_logged(run_dir: Path) -> int:
    """How many epoch lines a run has written to its train.log."""
    log = run_dir / "train.log"
    return log.read_text().count("] epoch ") if log.is_file() else 0
