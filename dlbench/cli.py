"""dlbench's command line: argv -> subcommand (train is the default) -> Hydra."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict
from rich.markup import escape
from rich.table import Table

from dlbench import preflight, summary
from dlbench.engine import cluster, distributed
from dlbench.engine.logging import console
from dlbench.errors import DlbenchError, Preempted, unknown_name
from dlbench.registry import REGISTRIES

err_console = console.__class__(stderr=True)

EXAMPLES = """\
[bold]Usage[/bold]
  dlbench [OVERRIDES...]                 train (the default command)
  dlbench -m KEY=A,B [KEY2=C,D ...]      a sweep: one job per combination, then a summary
  dlbench list [KIND] [PATTERN]          registered components and experiments
  dlbench show [OVERRIDES...] [--depth N]  the model: layers, output shapes, params, MACs, memory
  dlbench compare DIR... [--sort METRIC] [--csv F] [--md F]  jobs of sweeps / runs side by side
  dlbench eval RUN [OVERRIDES...]        a saved model's metrics on the test split
  dlbench predict RUN INPUT... [--top-k K]  classify images or names, or translate, with a saved model
  dlbench predict RUN [IMAGE...] [--num N] [--out PATH]  GAN samples, or translated images
  dlbench --help | --hydra-help | --cfg job [OVERRIDES...]

[bold]Examples[/bold]
  dlbench                                          the default: an MLP on scikit-learn's digits, CPU
  dlbench model=linear optimizer=sgd optimizer.lr=0.1
  dlbench experiment=lenet5_mnist trainer.epochs=15
  dlbench -m optimizer.lr=0.1,0.01 model=mlp,linear
  dlbench -m experiment=optimizers                 a lesson sweep (also lr_schedulers, norms, ...)
  dlbench compare outputs/multirun/<sweep> --sort test/acc
  dlbench resume=outputs/digits_mlp/2026-01-01_12-00-00_ab12cd trainer.epochs=20
  dlbench list models
  dlbench show experiment=resnet_cifar10
  dlbench show model=resnet model.depth=50 model.stem=imagenet model.num_classes=1000
  dlbench eval outputs/cnn_mnist/<run> dataset=fashion_mnist
  dlbench predict outputs/cnn_mnist/<run> my_digit.png --top-k 3
  dlbench predict outputs/name2lang_rnn/<run> Choi Jane Daniel Chow Tanaka --top-k 5
  dlbench --cfg job model=linear                   print the composed config, train nothing
  tensorboard --logdir outputs

[bold]Common overrides[/bold]
  device=cpu|cuda|mps|auto   trainer.epochs=N  trainer.max_steps=N  trainer.seed=N
  trainer.precision=32|bf16|16|auto  trainer.channels_last=true  trainer.compile=true
  trainer.grad_clip=X  trainer.patience=N  trainer.monitor=val/acc
  dataset.batch_size=N  dataset.num_workers=N  dataset.val_fraction=F  optimizer.lr=X
  trainer.devices=N (DDP)  trainer.checkpoint_every_n_steps=N  trainer.nonfinite=stop|skip|off
  dataset.in_memory=auto|true|false  -m hydra/launcher=slurm|joblib
"""


def print_help() -> None:
    console.print("[bold]dlbench[/bold]: config-driven deep-learning training\n")
    console.print(EXAMPLES, soft_wrap=True)
    console.print("[bold]Config groups[/bold] (choose one option with GROUP=OPTION)")
    groups = preflight.groups()
    width = max(map(len, groups)) + 1
    for group, options in groups.items():
        console.print(f"  {group:<{width}} {', '.join(options)}", soft_wrap=True)


def list_command(args: list[str]) -> int:
    """dlbench list [models|datasets|tasks|optimizers|schedulers|losses|experiments] [PATTERN]"""
    kinds = [*REGISTRIES, "experiments"]
    wanted = args[:1] or kinds
    pattern = args[1] if len(args) > 1 else "*"
    for kind in wanted:
        if kind not in kinds:
            raise unknown_name("list kind", kind, kinds)
        table = Table(title=kind, title_justify="left")
        table.add_column("name")
        table.add_column("description")
        if kind == "experiments":
            for name, description in experiments().items():
                table.add_row(name, description)
        else:
            registry = REGISTRIES[kind]
            for name in registry.names(pattern):
                table.add_row(name, registry.description(name))
        console.print(table)
    return 0


def experiments() -> dict[str, str]:
    """Experiment presets and the first line of each file's header comment."""
    out = {}
    for name in preflight.groups()["experiment"]:
        path = preflight.CONFIG_DIR / "experiment" / f"{name}.yaml"
        lines = [ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("# ")]
        lines = [ln for ln in lines if not ln.startswith("@package")]
        out[name] = lines[0] if lines else ""
    return out


def saved_overrides(target: str) -> tuple[Path, Path, list[str]]:
    """A run's checkpoint, its directory and the overrides it was started with."""
    from dlbench.engine import checkpoint

    ckpt = checkpoint.find(target)
    run_dir = ckpt.parent.parent
    saved_file = run_dir / ".hydra" / "overrides.yaml"
    saved = (
        yaml.safe_load(saved_file.read_text()) if saved_file.is_file() else checkpoint.load(ckpt)["overrides"]
    )
    return ckpt, run_dir, list(saved or [])


def merge_overrides(saved: list[str], overrides: list[str]) -> list[str]:
    """The saved overrides, less those the new ones replace (and resume/run-dir ones), then the new."""
    keys = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    kept = [
        o
        for o in saved
        if o.split("=", 1)[0].lstrip("+") not in keys and not o.startswith(("resume=", "hydra.run.dir="))
    ]
    return [*kept, *overrides]


def override_value(overrides: list[str], key: str) -> str | None:
    """The value `key=VALUE` sets on the command line; None when absent or null."""
    value = next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")), None)
    return None if value in ("null", "None", "") else value


def resume_overrides(overrides: list[str]) -> list[str]:
    """`resume=RUN` re-uses the run's own overrides (the command line's win) and its directory."""
    target = override_value(overrides, "resume")
    if target is None:
        return overrides
    ckpt, run_dir, saved = saved_overrides(target)
    out = merge_overrides(saved, [o for o in overrides if not o.startswith("resume=")]) + [f"resume={ckpt}"]
    if not any(o.startswith("hydra.run.dir=") for o in overrides):
        out.append(f"hydra.run.dir={run_dir}")
    return out


def eval_command(args: list[str]) -> int:
    """dlbench eval RUN [OVERRIDES...]: the saved model's metrics on the test split."""
    if not args or args[0].startswith("-"):
        raise DlbenchError(
            "usage: dlbench eval <run dir or checkpoint> [overrides, e.g. dataset=fashion_mnist]"
        )
    from dlbench.config import validate
    from dlbench.engine import checkpoint
    from dlbench.engine.device import resolve_device
    from dlbench.engine.logging import RunLogger, metrics_table, setup_console
    from dlbench.engine.trainer import Trainer
    from dlbench.train import build_data, build_task

    ckpt, run_dir, saved = saved_overrides(args[0])
    overrides = merge_overrides(saved, args[1:])
    cfg = preflight.compose_config(overrides)
    validate(cfg)
    setup_console("plain")
    data = build_data(cfg)
    if not data.size("test"):
        raise DlbenchError(f"dataset '{cfg.dataset.name}' has no test split here (dataset.test_fraction=0?)")
    task = build_task(cfg, data)
    try:
        task.load_state_dict(checkpoint.load(ckpt)["task"])
    except RuntimeError as err:
        raise DlbenchError(f"{ckpt} does not fit the model this config builds: {err}") from err
    trainer = Trainer(
        cfg.trainer, resolve_device(str(cfg.device.type)), run_dir, RunLogger(run_dir, False, "none")
    )
    trainer.setup(task)
    metrics = trainer.evaluate(task, data, "test")
    console.print(metrics_table(metrics, title=f"Test metrics of {ckpt}"))
    if (report := task.report()) is not None:
        console.print(report)
    return 0


def predict_command(args: list[str]) -> int:
    """dlbench predict RUN INPUT... [--top-k K]: image files, names or sentences, by the run."""
    import argparse

    from dlbench.inference import predict

    parser = argparse.ArgumentParser(prog="dlbench predict", add_help=False)
    parser.add_argument("run")
    parser.add_argument("inputs", nargs="*")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--num", type=int, default=64)  # GAN samples
    parser.add_argument("--out")  # where generated images go
    try:
        parsed = parser.parse_args(args)
    except SystemExit:
        raise DlbenchError(
            "usage: dlbench predict <run dir or checkpoint> [INPUT...] [--top-k K] [--num N] [--out PATH] "
            "(image files, names or sentences, as the run was trained on; nothing for a GAN)"
        ) from None
    header, rows = predict(parsed.run, parsed.inputs, parsed.top_k, parsed.num, parsed.out)
    table = Table(title="Predictions")
    for column in header:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


def sweep_resume_overrides(overrides: list[str]) -> list[str]:
    """`sweep.resume=DIR` runs the sweep again in DIR (the jobs keep their directories)."""
    target = override_value(overrides, "sweep.resume")
    if target is None or override_value(overrides, "hydra.sweep.dir") is not None:
        return overrides
    if not Path(target).is_dir():
        raise DlbenchError(f"sweep.resume={target}: no such sweep directory")
    (Path(target) / ".stop").unlink(missing_ok=True)  # a fail-fast stop of the last attempt
    return [*overrides, f"hydra.sweep.dir={target}"]


def join_process_group(overrides: list[str], cfg: DictConfig) -> list[str]:
    """Under torchrun: join the group and agree on the run directory; only rank 0 writes
    Hydra's files and the log file there."""
    from dlbench.engine.device import resolve_device

    distributed.init(resolve_device(str(cfg.device.type)).type == "cuda", cfg.trainer.dist_timeout_s)
    os.environ["DLBENCH_RUN_ID"] = distributed.agree_run_id()
    if distributed.is_main():
        return overrides
    return [*overrides, "hydra.output_subdir=null", "hydra.job_logging.root.handlers=[]"]


def sweep_preset(overrides: list[str]) -> str | None:
    """The experiment named on the command line, if it is a sweep (it sets hydra.sweeper.params)."""
    name = override_value(overrides, "experiment")
    path = preflight.CONFIG_DIR / "experiment" / f"{name}.yaml"
    if name is None or not path.is_file():
        return None
    node = yaml.safe_load(path.read_text()) or {}
    return name if (node.get("hydra") or {}).get("sweeper", {}).get("params") else None


def train_command(argv: list[str]) -> int:
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    if args.multirun and args.cfg:
        raise DlbenchError("--cfg prints the config of one run: leave out -m")
    overrides = sweep_resume_overrides(resume_overrides(list(args.overrides)))
    checked = []  # the composed config(s), when dlbench's own config tree is used
    if not (args.config_dir or args.config_name or args.hydra_help or args.info or args.shell_completion):
        checked = preflight.check(overrides)
        cluster.check(overrides)
    one_run = not (args.multirun or args.cfg or args.help or args.hydra_help or args.info)
    if distributed.launched():  # a process of a torchrun group
        if args.multirun:
            raise DlbenchError("a sweep (-m) does not run under torchrun; give its jobs trainer.devices=N")
        overrides = join_process_group(
            overrides, checked[0] if checked else preflight.compose_config(overrides)
        )
    elif one_run and checked and ((trainer := checked[0].trainer).devices > 1 or trainer.nodes > 1):
        return distributed.launch(trainer.devices, argv, trainer.nodes, trainer.dist_timeout_s)
    if not args.multirun and (sweep := sweep_preset(overrides)):
        err_console.print(
            f"note: experiment={sweep} is a sweep; this runs one job. Run all of them: dlbench -m ..."
        )
    flags = [a for a in argv if a not in args.overrides]
    sys.argv = ["dlbench", *flags, *overrides]
    summary.FAILED_JOBS.clear()
    try:
        hydra_entry()
    finally:
        distributed.close()
    if summary.FAILED_JOBS:
        err_console.print(
            f"[red]{len(summary.FAILED_JOBS)} job(s) failed[/red]: {', '.join(summary.FAILED_JOBS)}"
        )
        return 1
    return 0


@hydra.main(config_path="configs", config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> float | None:
    """One job: train, and turn any failure into a message (and error.txt in the run dir)."""
    from dlbench.train import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    stop_file = Path(hydra_cfg.sweep.dir) / ".stop" if multirun else None
    if stop_file is not None and stop_file.exists():  # sweep.fail_fast: an earlier job failed
        (run_dir / "error.txt").write_text(f"skipped: {stop_file.read_text().strip()}\n")
        return None
    # A job Slurm requeued (through submitit, after a preemption or its time limit) continues
    # from the checkpoint it wrote when it was stopped, as does every job of `sweep.resume`.
    requeued = cluster.in_job()
    if multirun and (cfg.sweep.resume or requeued):
        if (run_dir / "metrics.json").is_file():  # finished before: keep it
            print(f"job {run_dir.name}: finished before, skipped (sweep.resume)")
            return json.loads((run_dir / "metrics.json").read_text()).get(cfg.trainer.monitor)
        (run_dir / "error.txt").unlink(missing_ok=True)
        if (run_dir / "checkpoints" / "last.pt").is_file():
            with open_dict(cfg):
                cfg.resume = str(run_dir / "checkpoints" / "last.pt")
    if multirun:
        share_machine(cfg, hydra_cfg)
    try:
        if multirun and (cfg.trainer.devices > 1 or cfg.trainer.nodes > 1):
            if not cluster.in_job():
                raise DlbenchError(
                    "trainer.devices > 1 or trainer.nodes > 1 starts torchrun for one run: run it without "
                    "-m, or give each job its own torchrun on Slurm (hydra/launcher=slurm)"
                )
            metrics = cluster.torchrun_job(cfg, run_dir, list(hydra_cfg.overrides.task)) or {}
        else:
            metrics = train(cfg, run_dir, list(hydra_cfg.overrides.task))
    except Preempted as stop:
        stopped(stop, run_dir)
        return None  # submitit did not requeue the job: error.txt says why
    except Exception as err:
        lost = distributed.lost_peer(err, cfg.trainer.dist_timeout_s)  # each survivor says it
        err = lost or err
        known = isinstance(err, DlbenchError)
        if not known and os.environ.get("DLBENCH_DEBUG"):
            raise
        message = str(err) if known else f"{type(err).__name__}: {err}"
        if known and not lost and not distributed.is_main():  # the same bad input everywhere: rank 0 says it
            raise SystemExit(2) from None
        if run_dir.is_dir():  # (another machine's rank may see no run directory)
            (run_dir / "error.txt").write_text(message + "\n")
        print_error(
            message if known else f"unexpected error (set DLBENCH_DEBUG=1 for the traceback): {message}"
        )
        if not multirun:
            raise SystemExit(2 if known else 1) from None
        if cfg.sweep.fail_fast:
            stop_file.write_text(f"job {run_dir.name} failed and sweep.fail_fast is set\n")
        return None
    return metrics.get(cfg.trainer.monitor)


def stopped(stop: Preempted, run_dir: Path) -> None:
    """After a stop signal and its checkpoint: say how to continue, hand the signal on to the
    handler that was there before (submitit's: requeue the Slurm job), else exit with 75.
    Returns only when submitit would not requeue the job (recorded in error.txt)."""
    name = signal.Signals(stop.signum).name
    if distributed.is_main():
        then = (
            "submitit requeues the job (up to hydra.launcher.max_num_timeout times for time limits)"
            if cluster.in_job()
            else f"Continue with: dlbench resume={run_dir}"
        )
        print_error(f"stopped by {name} after step {stop.step}; checkpoints/last.pt is saved. {then}")
    try:
        cluster.hand_on(stop.signum, signal.getsignal(stop.signum), run_dir)
    except cluster.NotRequeued:
        return
    raise SystemExit(Preempted.EXIT_STATUS)


def share_machine(cfg: DictConfig, hydra_cfg) -> None:
    """Jobs running side by side (Hydra's joblib launcher): each takes its share of the CPU
    cores, and with several GPUs each job its own (job number modulo the GPU count)."""
    import torch

    n_jobs = (
        int(hydra_cfg.launcher.get("n_jobs") or 1)
        if "Joblib" in str(hydra_cfg.launcher.get("_target_"))
        else 1
    )
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if cluster.cpus():  # a Slurm job: the CPUs it was given, not the node's
        torch.set_num_threads(cluster.cpus())
    if n_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_jobs))
        if str(cfg.device.type) == "cuda" and torch.cuda.device_count() > 1:
            with open_dict(cfg):
                cfg.device.type = f"cuda:{hydra_cfg.job.num % torch.cuda.device_count()}"


def print_error(message: str) -> None:
    # the message is text, not markup: "dlbench[slurm]" or "[[mean], [std]]" must print as written
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, markup=True)


def compare_command(args: list[str]) -> int:
    """dlbench compare DIR... [--sort METRIC] [--ascending] [--metrics A,B] [--csv F] [--md F]"""
    import argparse

    parser = argparse.ArgumentParser(prog="dlbench compare", add_help=False)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--sort")
    parser.add_argument("--ascending", action="store_true", default=None)
    parser.add_argument("--metrics")
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--md", type=Path)
    try:
        parsed = parser.parse_args(args)
    except SystemExit:
        raise DlbenchError(
            "usage: dlbench compare <sweep dir or run dirs...> [--sort METRIC] [--ascending] "
            "[--metrics A,B] [--csv FILE] [--md FILE]"
        ) from None
    rows = summary.collect(parsed.paths)
    if parsed.sort:
        rows = summary.sort_rows(rows, parsed.sort, parsed.ascending)
    metrics = parsed.metrics.split(",") if parsed.metrics else None
    if metrics is None and parsed.sort:
        metrics = [parsed.sort, *[m for m in summary.HEADLINE if m != parsed.sort]][:4]
        metrics = [m for m in metrics if any(m in r for r in rows)]
    console.print(summary.table(rows, f"{len(rows)} runs", metrics=metrics))
    for path in (parsed.csv, parsed.md):
        if path is not None:
            summary.write(rows, path)
            console.print(f"wrote {path}")
    return 0


def show_command(args: list[str]) -> int:
    """dlbench show [OVERRIDES...] [--depth N]: the composed config's model, layer by layer."""
    from dlbench.show import show_command as show

    return show(args)


COMMANDS = {
    "list": list_command,
    "show": show_command,
    "compare": compare_command,
    "train": train_command,
    "eval": eval_command,
    "predict": predict_command,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] in (["-h"], ["--help"]):
            print_help()
            return 0
        if argv and argv[0] in COMMANDS:
            return COMMANDS[argv[0]](argv[1:])
        return train_command(argv)
    except DlbenchError as err:
        print_error(str(err))
        return 2
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Exception as err:  # a bug, not a user error: say so, keep the traceback for DLBENCH_DEBUG
        if os.environ.get("DLBENCH_DEBUG"):
            traceback.print_exc()
        print_error(f"unexpected error (set DLBENCH_DEBUG=1 for the traceback): {type(err).__name__}: {err}")
        return 1


def entrypoint() -> None:
    sys.exit(main())
