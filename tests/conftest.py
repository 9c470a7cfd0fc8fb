"""Helpers shared by the tests: run the real CLI as a subprocess, compose configs in-process."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

# pytest-xdist runs one worker per core: give each worker its share of the cores, so the
# workers' torch threads do not fight over them (the CLI subprocesses get the same share).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, (os.cpu_count() or 1) // WORKERS)
torch.set_num_threads(THREADS)


@pytest.fixture
def cli(tmp_path: Path):
    """Run `dlbench ARGS...` in a fresh directory, as a user would; returns the finished process."""

    def run(
        *args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None
    ) -> subprocess.CompletedProcess:
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if k not in ("DLBENCH_DEBUG", "HYDRA_FULL_ERROR")}
        env.update(extra)
        env["COLUMNS"] = "200"
        env["OMP_NUM_THREADS"] = str(THREADS)
        return subprocess.run(
            [sys.executable, "-m", "dlbench", *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def only_run_dir(root: Path) -> Path:
    """The single run directory under outputs/<name>/."""
    runs = [p for p in root.glob("outputs/*/*") if (p / ".hydra").is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def http_server(tmp_path):
    """Serve a folder on 127.0.0.1; yields (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """One folder of tiny data sets in their official formats, written once per test process."""
    from formats import (
        write_caltech,
        write_cifar,
        write_imagenet,
        write_mnist,
        write_names,
        write_paired,
        write_unpaired,
    )

    root = tmp_path_factory.mktemp("data")
    for write in (
        write_mnist,
        write_cifar,
        write_names,
        write_paired,
        write_unpaired,
        write_caltech,
        write_imagenet,
    ):
        write(root)
    return root
