"""A share of a run's time that optional work may take: an evaluation's figures
(logger.figures_budget), an epoch's checkpoints (trainer.checkpoint_budget).

The next piece is due while the pieces so far, and it (counted as costly as the last one), take
at most `share` of the time since the budget started. Long epochs get every piece; short ones
get one every so often; 1 means every piece, whatever it costs."""

from __future__ import annotations

import time


class TimeBudget:
    def __init__(self, share: float, first_cost: float = 0.0):
        self.share = share
        self.cost = first_cost  # what the next piece is counted as: the last one's, first a guess
        self.spent = 0.0  # seconds the pieces so far took
        self.started = time.perf_counter()

    def due(self) -> bool:
        if self.share >= 1:
            return True
        return self.spent + self.cost <= self.share * (time.perf_counter() - self.started)

    def restart(self) -> None:
        """The budget's time counts from now (a fit starts: building the run is not its time)."""
        self.started = time.perf_counter()

    def took(self, seconds: float, costs_the_next: bool = True) -> None:
        """A piece took `seconds`: it is counted, and the next is costed as it (unless
        `costs_the_next` is false: work that goes with the pieces but is not one of them)."""
        self.spent += seconds
        if costs_the_next:
            self.cost = seconds
