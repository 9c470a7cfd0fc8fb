"""The stop signals of a run: SIGTERM, SIGUSR1, SIGUSR2 (a cluster's preemption or time-limit
warning). A run latches the first one (`StopSignals`) and stops at the end of the current
optimizer step with checkpoints/last.pt (engine/trainer.py); on Slurm the signal is then handed
on to submitit, which requeues the job (engine/cluster.py)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)  # preemption, time limits


class StopSignals:
    """SIGTERM, SIGUSR1 and SIGUSR2 (a cluster's preemption or time-limit warning), latched: a
    handler notes the first one, and the training loop stops at the end of the current step,
    writes last.pt and raises Preempted. `training.train` catches them for the whole run, so one
    that arrives while the data and the model are built stops the run before its first step."""

    def __init__(self) -> None:
        self.received: int | None = None

    @contextlib.contextmanager
    def caught(self):
        """Catch them while inside; the handlers that were there before are put back after."""
        if threading.current_thread() is not threading.main_thread():  # only it can set handlers
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

        def note(signum: int, frame: Any) -> None:
            self.received = self.received or signum

        for sig in STOP_SIGNALS:
            signal.signal(sig, note)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def agreed(self, step: int, every: int, device: Any, processes: int = 1) -> bool:
        """Whether to stop now: a stop signal arrived, in this process or, under torchrun, in
        any of the `processes` (they stop at the same step; agreeing costs a collective, so
        only every `every` steps)."""
        if processes == 1:
            return self.received is not None
        if step % every:
            return False
        import torch

        from dlbench.engine import distributed

        flag = torch.tensor(float(self.received or 0), device=device)
        (total,) = distributed.sum_across([flag])
        if total > 0 and self.received is None:
            self.received = int(signal.SIGTERM)
        return bool(total > 0)
