"""Where the machines of a multi-node run meet: torchrun's c10d rendezvous.

`trainer.nodes=N` runs one torchrun on each of N machines. They find each other at one
address, the rendezvous endpoint HOST:PORT, where the machine that owns HOST keeps a small
key-value store (the c10d store). The endpoint comes from, in this order:

- `DLBENCH_RDZV_ENDPOINT=HOST:PORT` (the same on every machine);
- `MASTER_ADDR` and `MASTER_PORT`, as set by many cluster scripts;
- inside a Slurm allocation: the allocation's first node (`scontrol show hostnames
  $SLURM_JOB_NODELIST`, then its NodeAddr), port 29400 + the job id modulo 1000 (or
  `DLBENCH_RDZV_PORT`); the rendezvous id is the job id.

Each machine also finds the address it reaches the endpoint from (the interface its route
to HOST leaves by). Its processes announce that address to the others, and gloo binds to
that interface, so a machine whose host name resolves to 127.0.0.1 still takes part.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import socket
import struct
import subprocess

from dlbench.errors import DlbenchError

SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address


def endpoint() -> tuple[str, int]:
    """The rendezvous endpoint (host, port) of a multi-node run."""
    if value := os.environ.get("DLBENCH_RDZV_ENDPOINT"):
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise DlbenchError(f"DLBENCH_RDZV_ENDPOINT={value}: expected HOST:PORT")
        return host, int(port)
    if os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT", "").isdigit():
        return os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    if os.environ.get("SLURM_JOB_NODELIST"):
        port = os.environ.get("DLBENCH_RDZV_PORT") or 29400 + int(os.environ.get("SLURM_JOB_ID", "0")) % 1000
        return first_slurm_host(os.environ["SLURM_JOB_NODELIST"]), int(port)
    raise DlbenchError(
        "trainer.nodes > 1: the machines need one address to meet at. Set DLBENCH_RDZV_ENDPOINT=HOST:PORT "
        "on every machine (HOST: the first machine's address, PORT: a free TCP port), or run inside a "
        "Slurm allocation (docs/slurm.md)"
    )


def run_id() -> str:
    """The rendezvous id, the same on every machine of the run: the Slurm job's, else fixed."""
    return os.environ.get("DLBENCH_RDZV_ID") or os.environ.get("SLURM_JOB_ID") or "dlbench"


def first_slurm_host(nodelist: str) -> str:
    """The address of the first node of a Slurm node list such as `gpu[03-05],cpu1`: its
    NodeAddr, which is its host name unless the cluster says otherwise."""
    first = scontrol("show", "hostnames", nodelist).split()[0]
    match = re.search(r"\bNodeAddr=(\S+)", scontrol("--oneliner", "show", "node", first))
    return match.group(1) if match else first


def scontrol(*args: str) -> str:
    try:
        return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise DlbenchError(f"scontrol {' '.join(args)} failed: {getattr(err, 'stderr', '') or err}") from err


def local_address(host: str, port: int) -> str:
    """The address of this machine on the route to host:port (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname(host), port))
            return probe.getsockname()[0]
    except OSError as err:
        raise DlbenchError(f"the rendezvous host {host} cannot be reached from this machine: {err}") from err


def is_local(address: str) -> bool:
    """Whether an address belongs to this machine (it can be bound to)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
        return True
    except OSError:
        return False


def interface_of(address: str) -> str | None:
    """The network interface that holds an IPv4 address, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on this interface
                continue
            if socket.inet_ntoa(packed[20:24]) == address:
                return name
    return None


def torchrun_args(nodes: int, timeout_s: float) -> list[str]:
    """torchrun's options for one machine of an N-machine run; also points gloo at the interface
    that reaches the others (unless GLOO_SOCKET_IFNAME is set)."""
    host, port = endpoint()
    address = local_address(host, port)
    conf = [f"join_timeout={int(timeout_s)}", f"read_timeout={int(timeout_s)}"]
    if not ipaddress.ip_address(address).is_loopback:
        # The machine that owns the endpoint's address keeps the store. torch guesses it from the
        # host name, which fails where that name resolves to another address: say it outright.
        conf.append(f"is_host={int(is_local(socket.gethostbyname(host)))}")
        if "GLOO_SOCKET_IFNAME" not in os.environ and (interface := interface_of(address)):
            os.environ["GLOO_SOCKET_IFNAME"] = interface
    return [
        f"--nnodes={nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={host}:{port}",
        f"--rdzv-id={run_id()}",
        f"--rdzv-conf={','.join(conf)}",
        f"--local-addr={address}",
    ]
