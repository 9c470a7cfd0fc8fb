"""dlbench predict RUN [INPUT...]: what a trained run says about image files, names or
sentences; GAN samples; translated images. The run is rebuilt from its checkpoint alone."""

from __future__ import annotations

from dlbench.commands.runs import require_plugins, saved_overrides
from dlbench.engine.logging import console, new_table
from dlbench.errors import ArgumentParser, DlbenchError, at_least_one, output_path

USAGE = (
    "usage: dlbench predict RUN [INPUT...] [--top-k K] [--num N] [--out PATH] "
    "[plugins=[a,b]] (image files, names or sentences, as the run was trained on; nothing for a GAN)"
)


def predict_command(args: list[str]) -> int:
    from dlbench.build import task_from_checkpoint
    from dlbench.engine import checkpoint
    from dlbench.tasks.base import PredictOptions, Task

    parser = ArgumentParser(prog="dlbench predict", usage_line=USAGE)
    parser.add_argument("run")
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--top-k", type=at_least_one)  # a classifier's classes shown (3)
    parser.add_argument("--num", type=at_least_one)  # GAN samples (64)
    parser.add_argument("--out", type=output_path)  # where generated images go
    parsed = parser.parse_args(args)
    named = [i for i in parsed.inputs if i.lstrip("+").startswith("plugins=")]
    ckpt = saved_overrides(parsed.run)[0]  # (read as data, as every command that takes a run does)
    require_plugins(parsed.run, ckpt, named, ["predict", *args])
    inputs = [i for i in parsed.inputs if i not in named]
    task, _, info = task_from_checkpoint(checkpoint.load(ckpt), parsed.run)
    given = {k: v for k, v in vars(parsed).items() if k in ("top_k", "num", "out") and v is not None}
    if "out" in given:  # (a task reads it as text)
        given["out"] = str(given["out"])
    unused = [f"--{name.replace('_', '-')}" for name in given if name not in task.PREDICT_OPTIONS]
    if unused and type(task).predict_table is not Task.predict_table:  # (else: it predicts nothing)
        takes = ", ".join(f"--{name.replace('_', '-')}" for name in task.PREDICT_OPTIONS) or "no option"
        raise DlbenchError(f"{unused[0]} does nothing for this run ({type(task).__name__}): it takes {takes}")
    header, rows = task.predict_table(inputs, info, PredictOptions(**given))
    table = new_table("Predictions", *header)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0
