"""What the Slurm and multi-node tests share: a real cluster or a clear reason why not."""

from __future__ import annotations

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


def epochs_logged(run_dir: Path) -> int:
    """How many epoch lines a run has written to its train.log."""
    log = run_dir / "train.log"
    return log.read_text().count("] epoch ") if log.is_file() else 0
