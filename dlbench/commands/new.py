"""dlbench new experiment NAME [--from PRESET] | dlbench new model NAME: start your own.

`new experiment` copies a preset (shipped or yours) into ./configs/experiment/NAME.yaml with the
command that runs it in its header (torchtune's `tune cp`); `new model` writes a plugin file
that registers a model, commented, to start from. Nothing is ever written over.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from dlbench import files
from dlbench.commands.runs import parsed_value
from dlbench.engine.logging import console
from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.searchpath import results_here
from dlbench.terminal import command

USAGE = "usage: dlbench new experiment NAME [--from PRESET] | dlbench new model NAME"

MODEL_TEMPLATE = '''"""{name}: my own model for dlbench. Train it with:

    dlbench 'plugins=[{name}]' model={name}
    dlbench 'plugins=[{name}]' model={name} model.width=64 dataset=cifar10

dlbench imports this file (a plugin) when a command names it, so the decorator below registers
the model. Its config node comes from the signature: every keyword with a default is a key
you can set (`model.width=64`); `input_shape` and `num_outputs` come from the data set.
"""

from torch import nn

from dlbench import MODELS


@MODELS.register("{name}")
def {name}(
    input_shape: list[int],  # one input's shape, e.g. [3, 32, 32] (from the data)
    num_outputs: int,  # classes for a classifier, values for regression (from the data)
    width: int = 32,  # channels of the first layer
    dropout: float = 0.0,  # before the last layer
) -> nn.Module:
    """A small CNN for images (an MLP for flat inputs): replace it with yours."""
    if len(input_shape) != 3:  # flat inputs (tables, digits as vectors)
        flat = 1
        for size in input_shape:
            flat *= size
        layers = [nn.Flatten(), nn.Linear(flat, width), nn.ReLU(), nn.Dropout(dropout)]
        return nn.Sequential(*layers, nn.Linear(width, num_outputs))
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(2 * width, num_outputs),
    )
'''


def new_command(args: list[str]) -> int:
    if args and args[0] not in ("experiment", "model"):  # (`new experment x`: the usage alone)
        closest = did_you_mean(args[0], ["experiment", "model"])
        raise DlbenchError(f"dlbench new {args[0]!r}: it makes an experiment or a model.{closest}", USAGE)
    if len(args) < 2:
        raise DlbenchError(USAGE)
    kind, name, rest = args[0], args[1], args[2:]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise DlbenchError(f"{name!r} cannot be a name: use letters, digits and _ (a Python identifier)")
    if not isinstance(parsed_value(f"{kind}={name}"), str):  # (null, true, nan, inf: the hint would fail)
        raise DlbenchError(f"'{name}' cannot be a name: the command line reads it as a value, not a name")
    if kind == "model":
        if rest:
            raise DlbenchError(USAGE)
        target = Path(f"{name}.py")
        refuse_existing(target)
        check_model_name(name)
        files.write_text(target, MODEL_TEMPLATE.format(name=name))
        console.print(
            f"wrote {target}: train it with  {command(f'plugins=[{name}]', f'model={name}')}", soft_wrap=True
        )
        return 0
    source = None
    if rest[:1] == ["--from"] and len(rest) == 2:
        source = rest[1]
    elif rest:
        raise DlbenchError(USAGE)
    if name.startswith("_"):  # (a file named _x is a shared part that presets include, not a preset)
        raise DlbenchError(f"'{name}': a preset's name cannot start with _ (such files are shared parts)")
    target = Path("configs") / "experiment" / f"{name}.yaml"
    if results_here():  # (dlbench would not read it there)
        raise DlbenchError(
            "This folder holds a run's or a sweep's results, whose configs/ dlbench does not read as "
            "yours: make your preset in your project's folder (where you run dlbench)"
        )
    # (under a name of their own, from the preset of that name, or their --from's)
    start = command("new", "experiment", f"my_{name}", "--from", source or name)
    refuse_existing(target, start)
    from dlbench.commands.listing import experiments  # (Hydra's config search: not for `new model`)

    presets = experiments()
    if (found := presets.get(name)) is not None:  # (the new file would be used in its place)
        raise DlbenchError(
            f"experiment={name} exists ({found[0]}): a preset under its name would be used in its "
            f"place here. Choose a name of your own: {start}"
        )
    text = experiment_text(name, source, presets)
    files.write_text(target, text)
    run = command(*(["-m"] if sweeps(text) else []), f"experiment={name}")
    console.print(f"wrote {target}: run it with  {run}", soft_wrap=True)
    return 0


def check_model_name(name: str) -> None:
    """A new model's name is its plugin module's and its registry name: it must be a name
    Python can import as a module of its own (not a keyword, not a module that already exists:
    `torch.py` here would hide torch from every program run in this folder) and one no model
    has yet."""
    import importlib.util
    import keyword
    import sys

    from dlbench.registry import MODELS

    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise DlbenchError(f"'{name}' is a Python keyword: a plugin module cannot be named so")
    if name in sys.builtin_module_names or name in sys.stdlib_module_names or importlib.util.find_spec(name):
        raise DlbenchError(
            f"'{name}' is the name of a Python module that exists ({name}): {name}.py here would hide it "
            f"from every program started in this folder. Choose another name (e.g. my_{name})"
        )
    if name in MODELS:
        raise DlbenchError(f"model '{name}' exists already (dlbench list models): choose another name")


def refuse_existing(path: Path, instead: str | None = None) -> None:
    """`instead`: the command that makes it under a name of the user's own."""
    if os.path.lexists(path):  # (a link, even one to nothing, is not followed)
        other = f": {instead}" if instead else ""
        said = f"{path} exists; dlbench new never writes over a file"
        raise DlbenchError(f"{said} (choose another name{other})")


def experiment_text(name: str, source: str | None, presets: dict[str, tuple[Path, str]]) -> str:
    """A preset's text under a new name (`presets`: listing.experiments()), its header saying
    how to run it."""

    header = [
        "# @package _global_",
        f"# dlbench experiment={name}",
        f"#   dlbench -m experiment={name} optimizer.lr=0.1,0.01",
    ]
    if source is None:
        return "\n".join(
            [
                *header,
                "defaults:",
                "  - override /model: mlp",
                "  - override /dataset: digits",
                "  - _self_",
                "",
                "name: " + name,
                "trainer:",
                "  epochs: 10",
                "optimizer:",
                "  lr: 0.001",
                "",
            ]
        )
    if source not in presets:
        raise unknown_name("experiment", source, presets)
    path, _ = presets[source]
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("# @package")]
    if sweeps(path.read_text()):  # (its jobs are run with -m)
        header[1:] = [f"# dlbench -m experiment={name}"]
    text = "\n".join([*header, f"# copied from experiment={source} ({path})", *lines]) + "\n"
    return re.sub(r"(?m)^name: .*$", f"name: {name}", text, count=1)


def sweeps(text: str) -> bool:
    """A preset's text sets hydra.sweeper.params: it is a sweep, run with -m."""
    try:
        node = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    hydra_node = node.get("hydra") if isinstance(node, dict) else None
    sweeper = hydra_node.get("sweeper") if isinstance(hydra_node, dict) else None
    return isinstance(sweeper, dict) and bool(sweeper.get("params"))
