"""dlbench eval RUN [OVERRIDES...]: a saved model's metrics on the test split.

The run's own overrides are composed again (the command line's win, e.g. dataset=fashion_mnist)
and the data and task are built with training.py's builders, so eval measures what training did.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from dlbench import preflight
from dlbench.commands.runs import merge_overrides, require_plugins, saved_overrides
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.terminal import root_of


def eval_command(args: list[str]) -> int:
    usage = "usage: dlbench eval RUN [OVERRIDES...]  (RUN: a run's folder or checkpoint; dataset=...)"
    if not args or args[0].startswith("-"):
        raise DlbenchError(usage)
    if flags := [a for a in args[1:] if a.startswith("-")]:  # (Hydra's lexer would quote its grammar)
        raise DlbenchError(f"dlbench eval takes no option {flags[0]}: only overrides", usage)
    from dlbench.build import build_data, build_task, built_to_fit
    from dlbench.engine.device import resolve_device
    from dlbench.engine.logging import RunLogger, console, metrics_table, setup_console
    from dlbench.engine.trainer import Trainer

    changed = [a for a in args[1:] if root_of(a) in ("model", "task")]
    if changed:  # (a task of another kind read the outputs as something else: a crash, or a wrong figure)
        raise DlbenchError(
            f"eval measures the run's own model and task, which its weights were trained for: "
            f"{' '.join(changed)} would change them. Leave it out (another data set, dataset=..., is fine)"
        )
    ckpt, run_dir, saved = saved_overrides(args[0])
    run_dir = run_dir or ckpt.parent  # a checkpoint file on its own
    overrides = merge_overrides(saved, args[1:])
    require_plugins(args[0], ckpt, args[1:], ["eval", *args], composes=True)
    cfg = preflight.check(overrides, source=f"the run {run_dir}", mode="show")[0]
    setup_console("plain")
    data = build_data(cfg)
    if not data.size("test"):
        raise DlbenchError(f"dataset '{cfg.dataset.name}' has no test split here (dataset.test_fraction=0?)")
    task = built_to_fit(  # (a saved run's config: built on "meta" first, to fit its weights)
        lambda trial: build_task(cfg, data.info, judge=trial, trial=trial),
        checkpoint.load(ckpt)["task"],
        f"{ckpt} does not fit the model this config builds",
    )
    trainer = Trainer(
        OmegaConf.to_object(cfg.trainer),  # a TrainerConfig, as training.py gives it
        resolve_device(str(cfg.device.type)),
        run_dir,
        RunLogger(run_dir, "none", cfg.logger.figures_budget),
    )
    trainer.setup(task)
    metrics = trainer.evaluate(task, data, "test")
    console.print(metrics_table(metrics, title=f"Test metrics of {ckpt}"))
    if (report := task.report()) is not None:
        console.print_lines(report)
    return 0
