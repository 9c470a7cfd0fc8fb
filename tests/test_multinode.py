"""One run over two machines (trainer.nodes=2): two network namespaces on this machine, joined
by a veth pair, stand in for two machines. Each has its own address, which exists only inside
it (the host name still resolves to 127.0.0.1), and runs its own `dlbench trainer.nodes=2
trainer.devices=1 ...`; the two meet through torchrun's c10d rendezvous and train with gloo.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clusters import assert_like_one_process, unavailable, wait_for
from conftest import user_env

RUN = ["trainer.nodes=2", "trainer.devices=1", "trainer.progress=plain"]


class Machine:
    """A network namespace with one address on the link to the other."""

    def __init__(self, name: str, address: str):
        self.name, self.address = name, address

    def dlbench(self, *args: str, cwd: Path, endpoint: str) -> subprocess.Popen:
        """`dlbench ARGS...` on this machine, in a session of its own (to kill it whole)."""
        env = user_env(DLBENCH_RDZV_ENDPOINT=endpoint, COLUMNS="200", OMP_NUM_THREADS="1")
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, sys.executable, "-m", "dlbench", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def signal_all(self, signum: int) -> None:
        """Send a signal to every process on this machine (its namespace)."""
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        for pid in pids.split():
            try:
                os.kill(int(pid), signum)
            except ProcessLookupError:
                pass


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def machines() -> list[Machine]:
    """Two namespaces joined by a veth pair (names and subnet per test worker). Each also gets
    a hosts file naming both addresses, as a cluster's DNS would (/etc/netns/NAME/hosts)."""
    if os.geteuid() != 0:
        unavailable("network namespaces need root")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    names = [f"dlbench{worker}a", f"dlbench{worker}b"]
    made = [Machine(name, f"10.77.{worker}.{i + 1}") for i, name in enumerate(names)]
    hosts = Path("/etc/hosts").read_text() + "".join(
        f"{m.address} {m.name}\n::ffff:{m.address} {m.name}\n" for m in made
    )
    try:
        for m in made:
            ip("netns", "add", m.name)
            Path(f"/etc/netns/{m.name}").mkdir(parents=True, exist_ok=True)
            Path(f"/etc/netns/{m.name}/hosts").write_text(hosts)
        ip("link", "add", f"{names[0]}v", "type", "veth", "peer", "name", f"{names[1]}v")
        for m in made:
            ip("link", "set", f"{m.name}v", "netns", m.name)
            ip("-n", m.name, "addr", "add", f"{m.address}/24", "dev", f"{m.name}v")
            ip("-n", m.name, "link", "set", f"{m.name}v", "up")
            ip("-n", m.name, "link", "set", "lo", "up")
    except (OSError, subprocess.CalledProcessError) as err:
        cleanup(made)
        unavailable(f"cannot make network namespaces: {getattr(err, 'stderr', '') or err}")
    yield made
    cleanup(made)


def cleanup(made: list[Machine]) -> None:
    for m in made:
        m.signal_all(signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", m.name], capture_output=True)
        for path in (Path(f"/etc/netns/{m.name}/hosts"), Path(f"/etc/netns/{m.name}")):
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                path.rmdir()


def start_both(machines: list[Machine], args: list[str], cwd: Path, port: int) -> list[subprocess.Popen]:
    endpoint = f"{machines[0].address}:{port}"
    return [m.dlbench(*args, cwd=cwd, endpoint=endpoint) for m in machines]


def test_two_machines_train_the_same_model_as_one_process_with_the_same_global_batch(machines, tmp_path):
    """dataset.batch_size is the global batch: 2 machines x 32 see the batches 1 x 64 sees, and
    the run ends within 1e-4 of the one-process run. Rank 0 alone writes the run directory."""
    overrides = ["trainer.epochs=2", "dataset.batch_size=64"]
    nodes = start_both(machines, [*RUN, *overrides], tmp_path, port=29511)
    outs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert sum("x 2 processes" in out for out in outs) == 1  # rank 0 (on either machine) speaks
    runs = [p for p in tmp_path.glob("outputs/*/*") if (p / ".hydra").is_dir()]
    assert len(runs) == 1, runs  # both machines agreed on one run directory
    run_dir = runs[0]
    assert len(list((run_dir / "tb").glob("events.*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]

    assert_like_one_process(run_dir, overrides, tmp_path / "one")


@pytest.mark.parametrize("how", ["killed", "frozen"])
def test_a_machine_lost_mid_run_ends_the_other_with_one_message(machines, tmp_path, how):
    """Every process of machine b is killed (SIGKILL), or frozen (SIGSTOP: it holds its
    connections but never answers, as a machine that hangs). Machine a stops with one message
    naming what happened: at once when killed, after trainer.dist_timeout_s when frozen."""
    args = [*RUN, "trainer.epochs=1000", "trainer.dist_timeout_s=10"]
    nodes = start_both(machines, args, tmp_path, port=29512 if how == "killed" else 29513)
    wait_for(
        lambda: any("] epoch 3/" in p.read_text() for p in tmp_path.glob("outputs/*/*/train.log")),
        240,
        "training",
    )
    machines[1].signal_all(signal.SIGKILL if how == "killed" else signal.SIGSTOP)
    try:
        out = nodes[0].communicate(timeout=60)[0]
    finally:
        machines[1].signal_all(signal.SIGKILL)
    assert nodes[0].returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "lost contact with the other processes of this run" in errors[0], out[-3000:]
    (run,) = (p.parent for p in tmp_path.glob("outputs/*/*/train.log"))  # (named, to be pasted)
    assert errors[0].endswith(f"continue with the same command and resume={run} on every machine"), errors
    # a killed process closes its connections (at once); a frozen one is waited for (the timeout)
    assert ("Timed out" in out) == (how == "frozen"), out[-3000:]
    assert "Traceback" not in out
