"""Helpers shared by the tests: run the real CLI as a subprocess, compose configs in-process."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import signal
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


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a dlbench process a test starts: this one's, less the developer's
    switches (DLBENCH_DEBUG turns messages into tracebacks, a config path adds configs), with
    this worker's share of the cores; `extra` on top."""
    drop = ("DLBENCH_DEBUG", "HYDRA_FULL_ERROR", "DLBENCH_CONFIG_PATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "OMP_NUM_THREADS": str(THREADS), **extra}


def shell(command: str, cwd: Path, timeout: int = 300, program: str = "bash") -> subprocess.CompletedProcess:
    """A command line as a user pastes it into `program` (bash, or zsh), with this Python's
    `dlbench` first on the PATH; stops at the first command that fails."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [program, "-c", f"set -e; {command}"],
        cwd=cwd,
        env=user_env(PATH=path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def signal_when(args: list[str], folder: Path, ready: str, signum: int, settle_s: float = 0.0):
    """`dlbench ARGS` in its own process in `folder`, sent `signum` (a cluster's stop signal, a
    user's Ctrl-C) once a file matching `ready` (a glob in `folder`) exists and `settle_s` more
    seconds have passed: its exit status, stdout and stderr."""
    import time

    piped = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    process = subprocess.Popen([sys.executable, "-m", "dlbench", *args], cwd=folder, env=user_env(), **piped)
    deadline = time.monotonic() + 180
    while not any(folder.glob(ready)) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(settle_s)
    process.send_signal(signum)
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


KILL_ITSELF = """
import os, signal, sys
from dlbench.engine.trainer import Trainer
optimize, at = Trainer.optimize, int(sys.argv[1])
def killing(self, optimizations, name, loss):
    if self.state.step + 1 == at:
        self.writes.wait()  # (a checkpoint in flight lands first: a kill during it keeps the one before)
        os.kill(os.getpid(), signal.SIGKILL)
    optimize(self, optimizations, name, loss)
Trainer.optimize = killing
sys.argv = ["dlbench", *sys.argv[2:]]
from dlbench.cli import entrypoint
entrypoint()
"""


def killed_before_step(step: int, args: list[str], cwd: Path) -> None:
    """`dlbench *args` in a process that SIGKILLs itself as step `step` begins: no handler runs,
    nothing is flushed. (Killing it from outside once last.pt appears raced the run: a tiny
    preset's epoch takes ~60 ms, so the kill could land after the end-of-epoch checkpoint.)"""
    command = [sys.executable, "-c", KILL_ITSELF, str(step), *args]
    process = subprocess.run(command, cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]


# What only a process of its own can do: sweeps (Hydra's launchers, joblib), torchrun, plugins
# (imported modules and registrations would outlive the test), a user's config folders (they
# may name plugins), TensorBoard's server, and anything that sets the environment.
NEEDS_A_PROCESS = (
    "-m",
    "--multirun",
    "plugins",
    "trainer.devices=",
    "trainer.nodes=",
    "board",
    "--config-dir",
)


def in_process(args: tuple[str, ...], cwd: Path, env: dict | None) -> bool:
    if env or (cwd / "configs").exists() or os.environ.get("DLBENCH_CLI_SUBPROCESS") == "1":
        return False
    return not any(a.lstrip("+~").startswith(flag) for a in args for flag in NEEDS_A_PROCESS)


@pytest.fixture(autouse=True)
def no_saved_run_limit():
    """A test that calls a saved-run helper on its own (resume_overrides) leaves no limit on
    plugins (plugins.only_named) to the next test in its process."""
    yield
    from dlbench import plugins

    plugins.end_only_named()


@pytest.fixture(autouse=True)
def no_hydra_config_left():
    """Hydra's own flags (--info, --help) run in this process leave its HydraConfig set, which
    the next test's `${hydra:...}` would then resolve (in a command of its own it is not set)."""
    yield
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().cfg = None


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    """Run `dlbench ARGS...` in a directory, as a user would; returns the finished process.

    A command runs as `dlbench.cli.main(ARGS)` in this process (what `python -m dlbench` calls,
    with the same stdout, stderr and exit status) unless it needs a process of its own (above),
    or `process=True` asks for one because the process boundary is what the test checks (a
    real exit, output on the file descriptors). Starting Python and torch for each command
    cost most of the suite's time. DLBENCH_CLI_SUBPROCESS=1 runs every command in a process."""

    def run(
        *args: str,
        cwd: Path | None = None,
        timeout: int = 300,
        env: dict | None = None,
        process: bool = False,
    ) -> subprocess.CompletedProcess:
        where = cwd or tmp_path
        if not process and in_process(args, Path(where), env):
            return run_here(args, Path(where), monkeypatch)
        return subprocess.run(
            [sys.executable, "-m", "dlbench", *args],
            cwd=where,
            env=user_env(**{"COLUMNS": "200", **(env or {})}),  # the test's own env wins
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def run_here(args: tuple[str, ...], cwd: Path, monkeypatch) -> subprocess.CompletedProcess:
    from dlbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with monkeypatch.context() as patch:
        patch.chdir(cwd)
        patch.delenv("DLBENCH_DEBUG", raising=False)
        patch.delenv("HYDRA_FULL_ERROR", raising=False)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit:  # argparse's usage errors
                code = exit.code if isinstance(exit.code, int) else 1
    torch.set_num_threads(THREADS)  # as the next test expects, whatever the run chose
    torch.use_deterministic_algorithms(False)
    return subprocess.CompletedProcess(["dlbench", *args], code, out.getvalue(), err.getvalue())


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


def pytest_terminal_summary(terminalreporter):
    """How many cases each generated (Hypothesis) test tried: tests/test_fuzz.py records them."""
    lines = [
        f"{value[0]}: {value[1]} cases ({report.nodeid.split('::')[-1]})"
        for kind in ("passed", "failed")
        for report in terminalreporter.stats.get(kind, [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == "hypothesis_cases"
    ]
    if lines:
        terminalreporter.write_sep("-", "generated cases per surface")
        for line in lines:
            terminalreporter.write_line(line)


# The modules whose tests take 20 s to a minute each (a cluster, a fresh process per command):
# run first, so the two workers end together on short tests instead of one waiting for the other
# (with `--dist worksteal`, pyproject.toml: a worker that runs out takes from the other's queue).
SLOW_FIRST = (
    "test_slurm", "test_readme", "test_extending", "test_gpu_check", "test_multinode", "test_loggers"
)  # fmt: skip


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: getattr(item.module, "__name__", "") not in SLOW_FIRST)
