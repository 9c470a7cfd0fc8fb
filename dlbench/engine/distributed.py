"""Data-parallel training over N processes (torchrun), through torch.distributed.

One run, N processes: every process holds the model, trains on its share of each global batch
(DistributedSampler) and DistributedDataParallel averages the gradients. Metrics are reduced
across processes (torchmetrics does it for its metrics; `all_reduce` for the loop's sums).
Only rank 0 writes: logs, TensorBoard, checkpoints, metrics.json.

`torchrun --nproc_per_node=N -m dlbench ...` sets the environment this module reads;
`dlbench trainer.devices=N ...` starts torchrun for you (cli.py), and `trainer.nodes=M` makes
this machine one of M that meet through torchrun's c10d rendezvous (engine/rendezvous.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from dlbench import terminal
from dlbench.errors import DlbenchError, Preempted, environ_number, first_line
from dlbench.rundir import STOPPED_RANK


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def local_world_size() -> int:
    """The processes of this run on this machine (torchrun's LOCAL_WORLD_SIZE)."""
    return environ_number("LOCAL_WORLD_SIZE", world_size())


def local_rank() -> int:
    return environ_number("LOCAL_RANK", 0)


def init(use_cuda: bool, timeout_s: float) -> None:
    """Join the process group torchrun set up: nccl between GPUs, gloo on the CPU. A process
    that waits longer than `timeout_s` for the others (a node died) fails instead of hanging."""
    if dist.is_initialized():
        return
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s))


def agree_run_id() -> str:
    """Rank 0 names the run (time stamp and a random tag); every rank gets the same name,
    so all of them resolve the same run directory."""
    name = [time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3) if is_main() else None]
    dist.broadcast_object_list(name, src=0)
    return name[0]


def stopped_here(message: str, run_dir: Path) -> None:
    """A process other than rank 0 that stops with an error of its own (a file only it read)
    leaves it for rank 0, which says it in place of "lost contact" (`lost_peer`). Where the folder
    is not shared (another machine's), nothing is left."""
    if run_dir.is_dir():
        with contextlib.suppress(OSError):
            (run_dir / STOPPED_RANK.format(rank())).write_text(message[:2000])


def lost_peer(err: Exception, timeout_s: float, run_dir: Path) -> DlbenchError | None:
    """A collective that failed because another process of the run died or stopped answering
    (a machine went down), as one message, led by the errors that stopped the others where they
    left them (`stopped_here`); None for any other error."""
    if world_size() == 1 or not isinstance(err, RuntimeError):  # torch's DistError is one too
        return None
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(err).strip())  # gloo's "[.../pair.cc:545] "
    if not re.search(r"connection (reset|closed|refused)|broken pipe|timed out|timeout", text, re.I):
        return None
    causes = []
    for left in sorted(run_dir.glob(STOPPED_RANK.format("*"))) if is_main() and run_dir.is_dir() else []:
        with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
            said = (left.read_text()[:2000].splitlines() or [""])[0]  # (its first line: data, from a file)
            causes.append(f"rank {left.name.split('-')[1]} of {world_size()} stopped: {said}")
            left.unlink()
    return DlbenchError(
        *causes,
        f"lost contact with the other processes of this run (this is rank {rank()} of {world_size()}): "
        f"{text.split('. ')[0].strip()}. A process or machine stopped, or did not answer within "
        f"trainer.dist_timeout_s={timeout_s:g} s. checkpoints/last.pt holds the last checkpoint: continue "
        f"with the same command and {terminal.shell_word(terminal.override('resume', run_dir))} on every "
        "machine",
    )


def sum_across(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Sum tensors over every process (one collective for all of them)."""
    if world_size() == 1 or not values:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    flat = torch.stack([v.to(device).float().reshape(()) for v in values])
    dist.all_reduce(flat)
    return list(flat.unbind())


def mean_across(values: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """Each value's mean over every process, weighted by each process's `weight` (its samples):
    a step's values as one process of the whole batch would give them (one collective)."""
    if world_size() == 1:
        return values
    keys = list(values)
    weighted = [values[k].detach().float() * weight for k in keys]
    *sums, total = sum_across([*weighted, torch.tensor(float(weight))])
    return {key: value / total for key, value in zip(keys, sums, strict=True)}


def per_process(batch_size: int | None, name: str) -> int | None:
    """`dataset.batch_size` is the global batch: each of the N processes takes batch_size / N."""
    n = world_size()
    if batch_size is None or n == 1:
        return batch_size
    if batch_size % n:
        raise DlbenchError(
            f"{name}={batch_size} is the global batch, split over {n} processes: it must be a multiple of {n}"
        )
    return batch_size // n


def check_evaluated_splits(sizes: dict[str, int]) -> None:
    """Each of N processes evaluates every N-th sample of a split (data/base.py's loader), and
    they add up their sums once it is done: a split of fewer samples than processes would leave
    one with nothing to add while the others wait for it, for ever. Refused before the run.
    `sizes`: each split the run evaluates (by the name the user knows it by) and its samples."""
    n = world_size()
    carved_by = {"val": "dataset.val_fraction", "test": "dataset.test_fraction"}  # (the train split: none)
    for split, size in sizes.items():
        if 0 < size < n:
            where = f" ({carved_by[split]}, where the data has none of its own)" if split in carved_by else ""
            # Every process finds it (the same data): they meet, then the first says it and the
            # others wait for torchrun to stop them (SIGTERM, as by default: no run to save), so
            # no race loses the message to a SIGTERM.
            dist.barrier()
            if rank() > 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                time.sleep(60)
                raise SystemExit(2)
            raise DlbenchError(
                f"trainer.devices: the {split} split has {size} sample{'s' if size > 1 else ''}, fewer than "
                f"the {n} processes that share it (one would wait for ever for another with none): give it "
                f"at least {n}{where} or train with fewer processes (trainer.devices x trainer.nodes)"
            )


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model inside DistributedDataParallel (a no-op with one process)."""
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def check_processes(devices: int, device: str) -> None:
    """`devices` processes fit this machine: one GPU each, or on the CPU one core each (each
    process holds a copy of the model and the data: 64 on a 2-core machine filled its 24 GiB)."""
    kind = device.split(":")[0]
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cuda" and not (gpus := torch.cuda.device_count()):
        raise DlbenchError(f"trainer.devices={devices}: no CUDA GPU here (device=cpu runs them on the CPU)")
    if kind == "cuda" and devices > gpus:
        raise DlbenchError(
            f"trainer.devices={devices}: one process a GPU, and this machine has {gpus}: give at most {gpus}"
        )
    cores = os.cpu_count() or 1  # (the machine's: a job given fewer still runs, slower)
    if kind == "cpu" and devices > cores:
        raise DlbenchError(
            f"trainer.devices={devices}: on the CPU, one process a core, and this machine has "
            f"{cores}: give at most {cores}"
        )


def launch(devices: int, argv: list[str], nodes: int, timeout_s: float) -> int:
    """Run this same command under torchrun with `devices` processes on this machine, which is
    one of `nodes` machines (each runs this command; engine/rendezvous.py says where they meet).
    The exit status is the processes' (their own messages say what went wrong): the highest of
    those that failed on their own."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    from dlbench.engine import rendezvous

    os.environ.setdefault("OMP_NUM_THREADS", str(threads(devices)))
    # `-m dlbench` would put the current folder first on each process's sys.path, and Hydra's
    # plugin scan imports every ./hydra_plugins/*.py found there (a shared run folder's): its
    # processes find only installed modules, and the plugins the user names (plugins.py)
    os.environ["PYTHONSAFEPATH"] = "1"
    # The processes speak, in dlbench's messages: not torchrun's agent, nor c10d's C++ warnings
    # (a peer's address without a DNS name; a store gone with a lost machine).
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    where = ["--standalone"] if nodes == 1 else rendezvous.torchrun_args(nodes, timeout_s)
    args = parse_args([*where, f"--nproc_per_node={devices}", "--max-restarts=0", "-m", "dlbench", *argv])
    with MeetingWatch() as meeting:
        try:
            run(args)
        except SignalException as err:  # the signal reached torchrun's agent too (the group's
            # processes got it as well, and said what they did: SIGTERM saves last.pt)
            return Preempted.EXIT_STATUS if err.sigval == signal.SIGTERM else 128 + err.sigval
        except ChildFailedError as err:
            # a process torchrun stopped (SIGTERM) because another failed says less than the other
            statuses = [failure.exitcode for failure in err.failures.values()]
            stopped = (128 + signal.SIGTERM, -signal.SIGTERM)
            return max([s for s in statuses if s not in stopped] or statuses, default=1) or 1
        except RendezvousError as err:
            if meeting.met:  # the store went away mid-run: the processes have said what happened
                return 2
            raise DlbenchError(
                f"trainer.nodes={nodes}: the machines did not all meet at {args.rdzv_endpoint} within "
                f"trainer.dist_timeout_s={timeout_s:g} s ({first_line(err)}). Start the same "
                "command on every machine, with the same rendezvous endpoint"
            ) from None
    return 0


class MeetingWatch(logging.Handler):
    """Notes, printing nothing, when torchrun's agent has met the other machines (it logs
    "Rendezvous complete"): a rendezvous error after that is a machine lost mid-run."""

    LOGGER = "torch.distributed.elastic.agent.server.api"

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.met = False

    def emit(self, record: logging.LogRecord) -> None:
        self.met = self.met or "Rendezvous complete" in record.getMessage()

    def __enter__(self) -> MeetingWatch:
        agent_log = logging.getLogger(self.LOGGER)
        self.saved = agent_log.level, agent_log.propagate
        agent_log.setLevel(logging.INFO)
        agent_log.propagate = False  # its messages go to this handler alone
        agent_log.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        agent_log = logging.getLogger(self.LOGGER)
        agent_log.removeHandler(self)
        agent_log.setLevel(self.saved[0])
        agent_log.propagate = self.saved[1]


def threads(devices: int) -> int:
    """CPU threads per process, so N processes share the cores rather than fight over them."""
    return max(1, (os.cpu_count() or 1) // devices)


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
