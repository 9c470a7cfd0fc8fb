"""dlbench predict RUN [INPUT...]: what a trained run says about image files, names or
sentences; GAN samples; translated images. The run is rebuilt from its checkpoint alone."""

from __future__ import annotations

from dlbench.commands.runs import require_plugins, saved_overrides
from dlbench.engine.logging import console, new_table
from dlbench.errors import ArgumentParser, at_least_one

USAGE = (
    "usage: dlbench predict <run dir or checkpoint> [INPUT...] [--top-k K] [--num N] [--out PATH] "
    "[plugins=[a,b]] (image files, names or sentences, as the run was trained on; nothing for a GAN)"
)


def predict_command(args: list[str]) -> int:
    from dlbench.build import task_from_checkpoint
    from dlbench.engine import checkpoint
    from dlbench.tasks.base import PredictOptions

    parser = ArgumentParser(prog="dlbench predict", usage_line=USAGE)
    parser.add_argument("run")
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--top-k", type=at_least_one, default=3)
    parser.add_argument("--num", type=at_least_one, default=64)  # GAN samples
    parser.add_argument("--out")  # where generated images go
    parsed = parser.parse_args(args)
    named = [i for i in parsed.inputs if i.lstrip("+").startswith("plugins=")]
    saved_overrides(parsed.run)  # (read as data, as every command that takes a run does)
    require_plugins(parsed.run, named, ["predict", *args])
    inputs = [i for i in parsed.inputs if i not in named]
    task, _, info = task_from_checkpoint(checkpoint.load(parsed.run), parsed.run)
    header, rows = task.predict_table(inputs, info, PredictOptions(parsed.top_k, parsed.num, parsed.out))
    table = new_table("Predictions", *header)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0
