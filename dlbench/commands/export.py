"""dlbench export RUN --out model.pt: the trained model as a plain state_dict (loadable with
torch.load(..., weights_only=True) into your own class, as seed 002 does) and, beside it,
model.yaml: the model's config node and the data facts that size it, so
`dlbench.load_model("model.pt")` rebuilds it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from dlbench import rundir
from dlbench.commands.runs import require_plugins, saved_overrides
from dlbench.engine import checkpoint
from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, DlbenchError

USAGE = "usage: dlbench export <run dir or checkpoint> --out model.pt [plugins=[a,b]]"


def export_command(args: list[str]) -> int:
    from dlbench.build import task_from_checkpoint

    parser = ArgumentParser(prog="dlbench export", usage_line=USAGE)
    parser.add_argument("run")
    parser.add_argument("named", nargs="*")
    parser.add_argument("--out", type=Path, required=True)
    parsed = parser.parse_args(args)
    _, _, saved = saved_overrides(parsed.run)  # its experiment= may be one of the user's presets
    require_plugins(parsed.run, [*saved, *parsed.named], ["export", parsed.run, "--out", parsed.out])
    out, spec_file = parsed.out, parsed.out.with_suffix(".yaml")
    if out.suffix not in (".pt", ".pth"):
        raise DlbenchError(f"--out {out}: name a .pt file (the model's spec is written beside it, as .yaml)")
    for path in (out, spec_file):
        if os.path.lexists(path):  # (a link, even one to nothing, is not followed)
            raise DlbenchError(f"{path} exists; dlbench export never writes over a file")
    source = Path(parsed.run)
    state = checkpoint.load(source)
    task, cfg, info = task_from_checkpoint(state, parsed.run)
    spec = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": info.to_dict(),
        "plugins": model_plugins(cfg.model.name, state.get("plugins") or []),
        "from": str(checkpoint.find(source)),
    }
    rundir.write_bytes(out, lambda f: torch.save(task.model.state_dict(), f))
    header = f"# dlbench export: load with dlbench.load_model({str(out)!r})\n"
    rundir.write_text(spec_file, header + yaml.safe_dump(spec))
    console.print(
        f"wrote {out} (state_dict) and {spec_file}; load with dlbench.load_model({str(out)!r})",
        soft_wrap=True,
    )
    return 0


def model_plugins(model: str, run_plugins: list[str]) -> list[str]:
    """The one of a run's plugins that registered its model (none for a shipped model)."""
    from dlbench.registry import MODELS

    module = MODELS.get(model).__module__
    return [p for p in run_plugins if p == module or module == f"dlbench_plugin_{Path(p).stem}"]
