"""`trainer.profile=N`: torch.profiler over N training batches, after one skipped and two of
warm-up, written to the run folder:

    profile/trace.json   a Chrome trace (chrome://tracing, https://ui.perfetto.dev, or TensorBoard)
    profile/ops.txt      the operators that took the most time of their own
    profile/phases.txt   the share of a step spent in data, forward, backward and the optimizer

The phases are labelled ranges (`phase(name)`) the trainer and the stepper open only while
profiling: "data" (the next batch, onto the device, mixed), "step" (the task's training step,
which holds "backward" and "optimizer"); forward is the step less those two. On a GPU the
device's time of each range is used, on the CPU the processor's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from dlbench import files

SKIPPED, WARMUP = 1, 2  # the first batch (lazy set-up, cold caches), then warm-up
PHASES = ("data", "forward", "backward", "optimizer")


class StepProfiler:
    def __init__(self, batches: int, run_dir: Path, device: torch.device):
        self.batches, self.folder, self.device = batches, run_dir / "profile", device
        # kineto's log: without this, a CUDA build of torch on a machine with no GPU prints
        # "ERROR: gpuGetDeviceCount failed" for a CPU profile (its USDT start/stop lines remain)
        os.environ.setdefault("KINETO_LOG_LEVEL", "5")
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.profiler: Any = profile(
            activities=activities,
            schedule=schedule(wait=SKIPPED, warmup=WARMUP, active=batches, repeat=1),
            on_trace_ready=self.write,
        )
        self.report: str | None = None  # what is printed at the end of the run
        self.seen = 0  # training batches since the start
        self.profiler.start()

    @property
    def active(self) -> bool:
        return self.profiler is not None

    def phase(self, name: str) -> contextlib.AbstractContextManager:
        return record_function(f"dlbench/{name}") if self.active else contextlib.nullcontext()

    def batches_of(self, loader: Iterable) -> Iterator[Any]:
        """The loader's batches, each fetch in the "data" range while profiling."""
        batches = iter(loader)
        while True:
            with self.phase("data"):
                batch = next(batches, StopIteration)
            if batch is StopIteration:
                return
            yield batch

    def step(self) -> None:
        """After each training batch; the profiler stops once its batches are recorded."""
        if self.active:
            self.seen += 1
            self.profiler.step()

    def stop(self) -> None:
        """After the last epoch's batches (the run's last validation and test are no training
        batch's), also when the run had fewer batches than asked for."""
        if self.active:
            profiler, self.profiler = self.profiler, None
            profiler.stop()
            if self.report is None:  # (torch wrote nothing: stopped before recording)
                self.report = self.nothing_recorded()

    def nothing_recorded(self) -> str:
        return (
            f"trainer.profile={self.batches}: the run had {self.seen} training batches, and the "
            f"profiler records after the first {SKIPPED + WARMUP}: nothing was recorded"
        )

    def write(self, profiler: Any) -> None:
        self.profiler = None  # (recorded: the rest of the run goes unprofiled)
        recorded = min(self.batches, self.seen - SKIPPED - WARMUP)
        if recorded < 1:  # (stopped as recording began: no batch in it)
            self.report = self.nothing_recorded()
            return
        trace = self.folder / "trace.json"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            profiler.export_chrome_trace(str(trace))
            if not trace.is_file():  # (torch says nothing of a write that failed: a full disk)
                raise OSError(f"torch wrote no {trace.name} (a full disk, or the file-size limit?)")
        except (OSError, RuntimeError) as err:  # (its half-written file goes)
            for left in (trace, trace.with_name("trace.json.tmp")):
                left.unlink(missing_ok=True)
            raise files.file_error(err if isinstance(err, OSError) else OSError(str(err)), trace) from err
        averages = profiler.key_averages()
        cuda = self.device.type == "cuda"
        ops = averages.table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=15)
        files.write_text(self.folder / "ops.txt", ops + "\n")
        shares = phase_shares(averages, cuda)
        phases = "  ".join(f"{name} {share:.0%}" for name, share in shares.items())
        table = "".join(f"{name}\t{share:.4f}\n" for name, share in shares.items())
        files.write_text(self.folder / "phases.txt", table)
        cut = f" (the run ended before trainer.profile={self.batches})" if recorded < self.batches else ""
        self.report = (
            f"Profile of {recorded} training batches{cut}, in {self.folder}:\n"
            f"  a step's time: {phases}\n{ops}"
        )


def phase_shares(averages: Any, cuda: bool) -> dict[str, float]:
    """The share of the profiled steps' time in each phase (forward: the step less backward and
    the optimizer)."""
    time = {}
    for event in averages:
        if event.key.startswith("dlbench/"):
            device_time = getattr(event, "device_time_total", 0) if cuda else 0
            time[event.key.removeprefix("dlbench/")] = device_time or event.cpu_time_total
    step = time.get("step", 0.0)
    spent = {
        "data": time.get("data", 0.0),
        "forward": max(0.0, step - time.get("backward", 0.0) - time.get("optimizer", 0.0)),
        "backward": time.get("backward", 0.0),
        "optimizer": time.get("optimizer", 0.0),
    }
    total = sum(spent.values()) or 1.0
    return {name: spent[name] / total for name in PHASES}
