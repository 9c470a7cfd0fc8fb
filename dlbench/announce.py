"""What a run says about itself: its first log line (what trains on what, where), what the
logger backends are told when it starts, and what it prints when it ends (its metrics table,
or the one line a sweep's job ends with; a note when a preset was cut short)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from dlbench.data.base import DataModule
from dlbench.engine import distributed
from dlbench.engine.loggers import RunInfo
from dlbench.engine.logging import console, flat_settings, metrics_table
from dlbench.engine.trainer import Trainer
from dlbench.tasks.base import Task


def shortened_preset(overrides: list[str]) -> str | None:
    """`experiment=X trainer.epochs=N` where preset X trains for more epochs: a note beside the
    figures, which are not the ones the preset reports (docs/presets.md)."""
    from dlbench.searchpath import SHIPPED, preset_file

    given = dict(o.split("=", 1) for o in overrides if "=" in o)
    name, epochs = given.get("experiment"), given.get("trainer.epochs")
    path = preset_file(name) if name else None
    if path is None or not str(epochs).isdigit():
        return None
    try:
        node = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    full = ((node or {}).get("trainer") or {}).get("epochs") if isinstance(node, dict) else None
    if not isinstance(full, int) or int(epochs) >= full:
        return None
    note = f"note: {name} trained {epochs} of its {full:,} epochs (trainer.epochs={epochs})"
    if not path.resolve().is_relative_to(SHIPPED.resolve()):  # (a user's own preset: no figures there)
        return note
    return f"{note}; the figures its preset reports (docs/presets.md) come from all {full:,}"


def headline(metrics: dict[str, float]) -> str:
    """A finished run in a few words: its test (else validation, else training) figures and
    how long it took."""
    for split in ("test/", "val/", "train/"):
        keys = sorted((k for k in metrics if k.startswith(split)), key=lambda k: k.rsplit("/")[-1] != "acc")
        if shown := [f"{k} {metrics[k]:.4g}" for k in keys][:3]:
            break
    return f"{'  '.join(shown)}  ({metrics.get('time/total_s', 0):.1f} s)"


def describe_run(cfg: DictConfig, data: DataModule, device: torch.device, run_dir: Path) -> str:
    """The run's first log line: what trains on what, where."""
    processes = f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    val = f"{data.size('val')} val" if data.validate_on == "val" else f"validated on {data.validate_on}"
    return (
        f"{cfg.name}: {cfg.model.name} on {cfg.dataset.name} ({data.size('train')} train, {val}, "
        f"{data.size('test')} test), {device}{processes}, run dir {run_dir}"
    )


def run_info(
    cfg: DictConfig,
    run_dir: Path,
    composed: str,
    overrides: list[str],
    sweep_job: bool,
    resume_state: dict[str, Any] | None,
) -> RunInfo:
    """What the logger backends are told of the run (engine/loggers.py): its config, its name
    (an MLflow experiment, a W&B project), the sweep it is a job of, where it resumes."""
    return RunInfo(
        folder=run_dir,
        config=composed,
        overrides=overrides,
        experiment=str(cfg.name),
        group=run_dir.parent.name if sweep_job else None,
        resumed_step=resume_state["trainer"]["step"] if resume_state else None,
        settings=flat_settings(OmegaConf.to_container(cfg, resolve=True)),
        options={"mlflow": dict(cfg.logger.mlflow), "wandb": dict(cfg.logger.wandb)},
    )


def print_results(
    metrics: dict[str, float], run_dir: Path, overrides: list[str], trainer: Trainer, task: Task, quiet: bool
) -> None:
    """What a finished run prints: its metrics table, then what its averaging, task and
    profiler have to say, and where it is; a sweep's quiet job, one line."""
    if quiet:
        console.print(f"job {run_dir.name} done: {headline(metrics)}", soft_wrap=True)
        return
    console.print(metrics_table(metrics))
    if trainer.average is not None and trainer.average.in_use():
        console.print(f"val/ and test/ measured {trainer.average.describe()}", soft_wrap=True)
    if (text := task.report()) is not None:
        console.print_lines(text)
    if trainer.profiler is not None and trainer.profiler.report:
        console.print_lines(trainer.profiler.report, soft_wrap=True)
    if note := shortened_preset(overrides):
        console.print(note, soft_wrap=True)
    console.print(f"Run directory: {run_dir}")
