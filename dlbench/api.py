"""dlbench from Python (a notebook, a script): the same runs as the command line.

import dlbench
metrics = dlbench.train("experiment=lenet5_mnist", "trainer.epochs=2")
model = dlbench.load_model("outputs/lenet5_mnist/<run>")     # an nn.Module, in eval mode
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dlbench import plugins as plugin_loader
from dlbench import preflight
from dlbench.errors import DlbenchError


def train(*overrides: str) -> dict[str, float]:
    """Train one run, as `dlbench OVERRIDES...` does: the same checks, the same run setup
    (launch.run_once: folder, log file, environment), the same files. Returns its final
    metrics; errors are raised as DlbenchError."""
    from dlbench import launch
    from dlbench.commands.runs import resume_overrides
    from dlbench.config_store import new_run_id

    before = os.environ.get("DLBENCH_RUN_ID")
    os.environ["DLBENCH_RUN_ID"] = new_run_id()  # the checks and the run name the same folder
    try:
        overrides = resume_overrides(list(overrides))
        checked, _, hydra_node = preflight.check_command(overrides, "dlbench.train()", mode="run")
        if len(checked) > 1:
            raise DlbenchError(
                "dlbench.train() trains one run; a sweep is the command line's: dlbench -m ..."
            )
        if checked[0].trainer.devices > 1 or checked[0].trainer.nodes > 1:
            raise DlbenchError("trainer.devices > 1 runs several processes: start it from the command line")
        task_overrides = list(hydra_node.hydra.overrides.task)
        return launch.run_once(checked[0], hydra_node, task_overrides, raise_errors=True) or {}
    finally:
        if before is None:
            os.environ.pop("DLBENCH_RUN_ID", None)
        else:
            os.environ["DLBENCH_RUN_ID"] = before


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
