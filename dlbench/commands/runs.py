"""Saved runs as the input of a new command: `resume=RUN`, `dlbench eval RUN`, `dlbench export RUN`.

A run's saved overrides are data: they are checked like a command line (safety.py), the new
command line's overrides win, and they never choose plugins (plugins.py).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from dlbench import plugins, safety
from dlbench.errors import DlbenchError


def saved_overrides(target: str) -> tuple[Path, Path, list[str]]:
    """A run's checkpoint, its directory and the overrides it was started with (less any
    `plugins=`: the user names plugins, a saved run does not)."""
    from dlbench.engine import checkpoint

    ckpt = checkpoint.find(target)
    run_dir = run_folder_of(ckpt)
    saved_file = run_dir / ".hydra" / "overrides.yaml" if run_dir else None
    if saved_file is not None and saved_file.is_file():
        saved = safety.check_saved_overrides(read_yaml(saved_file), str(saved_file))
    else:
        saved = safety.check_saved_overrides(checkpoint.load(ckpt).get("overrides"), str(ckpt))
    return ckpt, run_dir, [o for o in saved if key_of(o) != "plugins"]


def run_folder_of(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (<run>/checkpoints/<name>.pt), or None for a
    checkpoint file on its own (resuming it starts a new run folder)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


def saved_plugins(ckpt: Path, run_dir: Path | None) -> list[str]:
    """The plugins a run was trained with (its composed config's `plugins`)."""
    config_file = run_dir / ".hydra" / "config.yaml" if run_dir else None
    node = read_yaml(config_file) if config_file is not None and config_file.is_file() else None
    if not isinstance(node, dict):
        from dlbench.engine import checkpoint

        node = yaml.safe_load(checkpoint.load(ckpt).get("config") or "") or {}
    found = node.get("plugins") or []
    return [str(p) for p in found] if isinstance(found, list) else []


def require_plugins(target: str, overrides: list[str], command: str) -> None:
    """Import the plugins the user names for a saved run, and check they are all it needs."""
    from dlbench.engine import checkpoint

    ckpt = checkpoint.find(target)
    plugins.load_entry_points()
    plugins.load(plugins.named_in(overrides), "the command line")
    plugins.check_saved(saved_plugins(ckpt, run_folder_of(ckpt)), target, command)


def read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DlbenchError(f"{path} is not readable YAML ({err})") from err


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(saved: list[str], overrides: list[str]) -> list[str]:
    """The saved overrides, less those the new ones replace (and resume/run-dir ones), then the new.
    A saved run cannot choose where data is downloaded from: a `dataset.url` it names must be
    given again on the command line."""
    keys = {key_of(o) for o in overrides}
    kept = [o for o in saved if key_of(o) not in keys and not o.startswith(("resume=", "hydra.run.dir="))]
    for o in kept:
        if key_of(o) == "dataset.url" and override_value([o.lstrip("+~")], "dataset.url") is not None:
            raise DlbenchError(
                f"the saved run downloads its data from {o.split('=', 1)[1]}; dlbench downloads nothing "
                "from an address a saved run names. If you trust it, give it again: dataset.url=..."
            )
    return [*kept, *overrides]


def override_value(overrides: list[str], key: str) -> str | None:
    """The value `key=VALUE` sets on the command line; None when absent or null."""
    value = next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")), None)
    return None if value in ("null", "None", "") else value


def resume_overrides(overrides: list[str]) -> list[str]:
    """`resume=RUN` re-uses the run's own overrides (the command line's win) and its directory;
    the plugins it was trained with must be named on the command line (or in the user's configs)."""
    target = override_value(overrides, "resume")
    if target is None:
        return overrides
    ckpt, run_dir, saved = saved_overrides(target)
    new = [o for o in overrides if not o.startswith("resume=")]
    out = merge_overrides(saved, new) + [f"resume={ckpt}"]
    require_plugins(target, out, f"dlbench resume={target}")
    if run_dir is not None and not any(o.startswith("hydra.run.dir=") for o in overrides):
        out.append(f"hydra.run.dir={run_dir}")
    return out
