"""dlbench from Python (a notebook, a script): the same runs as the command line.

import dlbench
metrics = dlbench.train("experiment=lenet5_mnist", "trainer.epochs=2")
model = dlbench.load_model("outputs/lenet5_mnist/<run>")     # an nn.Module, in eval mode
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import open_dict

from dlbench import plugins as plugin_loader
from dlbench import preflight
from dlbench.errors import DlbenchError


def train(*overrides: str) -> dict[str, float]:
    """Train one run, as `dlbench OVERRIDES...` does (the same checks, run folder, files),
    and return its final metrics. Errors are raised as DlbenchError."""
    from dlbench.commands.runs import resume_overrides
    from dlbench.config import validate
    from dlbench.training import train as train_run

    overrides = resume_overrides(list(overrides))
    cfg = preflight.compose_with_hydra(overrides, "dlbench.train()")
    preflight.check_output_folder(cfg, "run")
    run_dir = Path(cfg.hydra.run.dir)
    with open_dict(cfg):
        del cfg["hydra"]
    validate(cfg)
    if cfg.trainer.devices > 1:
        raise DlbenchError("trainer.devices > 1 runs several processes: start it from the command line")
    log_file = logging.FileHandler(rundir_log(run_dir))
    log_file.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(log_file)
    try:
        return train_run(cfg, run_dir, [o for o in overrides if not o.startswith("hydra.")])  # as Hydra
    finally:
        logging.getLogger().removeHandler(log_file)
        log_file.close()


def rundir_log(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / "train.log"


def load_model(run: str | Path, plugins: list[str] | None = None) -> torch.nn.Module:
    """The trained model of a run folder (its checkpoints/last.pt: checkpoint.find), a
    checkpoint file, or a file `dlbench export` wrote, rebuilt and in eval mode. `plugins`:
    the modules the run needs (dlbench imports none because a saved run names it)."""
    from dlbench.build import task_from_checkpoint
    from dlbench.engine import checkpoint

    plugin_loader.load_entry_points()
    plugin_loader.load(list(plugins or []), "load_model(plugins=...)")
    path = Path(run).expanduser()
    if path.is_file() and path.with_suffix(".yaml").is_file() and not _is_checkpoint(path):
        return load_exported(path)
    state = checkpoint.load(path)
    plugin_loader.check_saved(state.get("plugins"), str(run), f"dlbench.load_model({str(run)!r}, plugins=")
    task, _, _ = task_from_checkpoint(state, str(run))
    return task.model.eval()


def _is_checkpoint(path: Path) -> bool:
    from dlbench.engine import checkpoint

    try:
        return "task" in checkpoint.load(path)
    except DlbenchError:
        return False


def load_exported(path: Path) -> torch.nn.Module:
    """A model `dlbench export` wrote: model.pt (a plain state_dict) beside model.yaml."""
    from dlbench.data.info import DataInfo
    from dlbench.registry import MODELS
    from dlbench.rundir import read_yaml

    spec = read_yaml(path.with_suffix(".yaml")) or {}
    if not isinstance(spec, dict) or "model" not in spec or "data" not in spec:
        raise DlbenchError(
            f"{path.with_suffix('.yaml')} is not a file dlbench export wrote (no model or data)"
        )
    plugin_loader.check_saved(spec.get("plugins"), str(path), f"dlbench.load_model({str(path)!r}, plugins=")
    model = MODELS.build(spec["model"], "model", facts=DataInfo.from_dict(spec["data"]))
    from dlbench.engine.checkpoint import check_declared_sizes

    check_declared_sizes(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as err:
        raise DlbenchError(
            f"{path} does not fit the model {path.with_suffix('.yaml')} describes: {err}"
        ) from err
    return model.eval()
