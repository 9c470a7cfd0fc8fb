"""dlbench's Slurm launcher, registered as a Hydra plugin (Hydra makes launchers only from the
hydra_plugins package). The code is in dlbench/engine/slurm_launcher.py; without the `[slurm]`
extra (hydra-submitit-launcher) there is no launcher to extend, and this module defines none."""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
except ImportError:
    SubmititSlurmLauncher = None

if SubmititSlurmLauncher is not None:

    class SlurmLauncher(SubmititSlurmLauncher):
        """Hydra's submitit Slurm launcher with dlbench's changes: job states from squeue where
        the cluster keeps no accounting, a job that dies without a result recorded as failed,
        Ctrl-C cancelling the sweep's jobs, one node per machine of a trainer.nodes run."""

        def launch(self, job_overrides: Any, initial_job_idx: int) -> Any:
            from dlbench.engine import slurm_launcher

            return slurm_launcher.launch(self, job_overrides, initial_job_idx)
