"""What a run says about itself on the terminal, beside its metrics table: its first log line
(what trains on what, where), the one line a sweep's job ends with, and a note when a preset
was cut short."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig

from dlbench.data.base import DataModule
from dlbench.engine import distributed


def shortened_preset(overrides: list[str]) -> str | None:
    """`experiment=X trainer.epochs=N` where preset X trains for more epochs: a note beside the
    figures, which are not the ones the preset reports (docs/presets.md)."""
    from dlbench.searchpath import preset_file

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
    return (
        f"note: {name} trained {epochs} of its {full:,} epochs (trainer.epochs={epochs}); the figures "
        f"its preset reports (docs/presets.md) come from all {full:,}"
    )


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
