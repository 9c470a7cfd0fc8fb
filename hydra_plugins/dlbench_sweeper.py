"""dlbench's sweeper, registered as a Hydra plugin (Hydra makes sweepers only from the
hydra_plugins package): Hydra's basic sweeper (a grid of every combination, run in batches by
the launcher), less its second composition of every job before the first starts.

Hydra's `validate_batch_is_legal` composes each job of a batch (all of them, by default) only
to see that it composes; a 1,000-job grid waited 200 s here before its first job. dlbench has
already composed and validated what those compositions would find before Hydra started
(preflight.check_command: every choice of config groups with every value of every swept key,
and the first 64 jobs whole), so the launcher composes each job once, when it runs it."""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class CheckedSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Checked before Hydra started (dlbench.preflight.check_command)."""
