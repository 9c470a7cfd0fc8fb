"""What dlbench costs over the notes' plain loop on the lessons made of tiny steps (issue 29).

Each workload is trained by dlbench (the preset, its defaults: checkpoints, TensorBoard, the NaN
guard, progress off) and by a plain PyTorch loop written here: randperm, slice, forward, loss,
zero_grad, backward, step, nothing else (for the names, one name per step over the batches
dlbench's loader makes, in a shuffled order). Same model (built by dlbench, fresh weights per
side), data, batch size, optimizer (as dlbench builds it: Adam fused; with --notes-optimizer,
torch's default, as the notes build it) and number of steps; one thread; the rounds interleave the
two sides, and each side's best round counts. dlbench's time is its `Trainer.fit` (training
and the epoch-end work the preset asks for: validation, logging, checkpoints), not its
start-up nor the test. Three columns: the whole fit; its training part, the fit less its
evaluations (validation and its figures, which the plain loop does not do), the part the
targets are set for: the loop with dlbench's defaults (checkpoints, TensorBoard scalars, the
NaN guard); and that less its checkpoint writes (the loop alone).

    python benchmarks/step_overhead.py [--rounds 2] [--only iris_mlp,digits_mlp] [--quick]
    python benchmarks/step_overhead.py --sweeps    # time to a grid's first job; per-job cost
    python benchmarks/step_overhead.py --alternate --rounds 40 [--parts]   # the loops, alternating
    python benchmarks/step_overhead.py --progress rich    # with a terminal's progress bar
    python benchmarks/step_overhead.py --notes-optimizer --only digits_mlp   # against the notes' Adam
    python benchmarks/step_overhead.py --device cuda [--compile-mode reduce-overhead]   # on a GPU

Targets (issue 29): <= 1.10x on iris_mlp, mlp_regression, name2lang_gru; <= 1.05x on
lenet5_mnist and digits_mlp.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' file writers
from formats import write_mnist, write_names  # noqa: E402

from dlbench import compose  # noqa: E402
from dlbench.build import build_data, build_task  # noqa: E402
from dlbench.engine.optim import build_optimizer  # noqa: E402
from dlbench.engine.trainer import Trainer  # noqa: E402
from dlbench.training import train  # noqa: E402

QUIET = ["trainer.progress=none", "device=cpu", "trainer.threads=1"]


@contextlib.contextmanager
def on_a_terminal():
    """dlbench's console made a terminal's (120 columns) that writes nowhere: what a user's
    `trainer.progress=rich` bar costs, drawn as on a screen."""
    from dlbench import terminal
    from dlbench.engine import logging as run_logging

    kept = run_logging.console
    run_logging.console = terminal.InertConsole(file=io.StringIO(), force_terminal=True, width=120)
    try:
        yield
    finally:
        run_logging.console = kept


def workloads(root: Path, quick: bool, many: int | None = None) -> dict[str, list[str]]:
    """Each workload's overrides (the preset and its data, written into `root`); `many`: the
    epochs of the two many-epoch workloads (iris_mlp, mlp_regression), 1,000 or 10,000 unless said."""
    write_mnist(root / "mnist", n_train=2000 if quick else 12000, n_test=100)
    syllables = [f"{a}{b}{c}".title() for a in "bdfgk" for b in "aeiou" for c in "lmnrst"]  # 150 names
    write_names(root / "names", {f"lang{i}": syllables[i::8] * 3 for i in range(8)})  # 450 in 8 languages
    many = many or (1000 if quick else 10000)
    return {
        "iris_mlp": ["experiment=iris_mlp", f"trainer.epochs={many}"],
        "mlp_regression": ["experiment=mlp_regression", f"trainer.epochs={many}"],
        "linear_regression": ["experiment=linear_regression"],
        "name2lang_gru": ["experiment=name2lang_gru", f"dataset.root={root / 'names'}",
                          "dataset.download=false", "trainer.epochs=1"],
        "lenet5_mnist": ["experiment=lenet5_mnist", f"dataset.root={root / 'mnist'}",
                         "dataset.download=false", "dataset.val_fraction=0", "trainer.epochs=1"],
        "digits_mlp": ["experiment=digits_mlp"],
    }  # fmt: skip


def plain_loop(model, batches, epochs: int, optimizer, loss_fn, device: torch.device) -> float:
    """The notes' loop; `batches(epoch)` yields an epoch's (x, y). Returns its wall time (on a
    GPU, up to the end of its last kernel)."""
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        for x, y in batches(epoch):
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def plain_parts(cfg, data, device: torch.device):
    """The plain loop's `batches(epoch)` over the run's data (held on its device, as dlbench
    holds it) and its loss function."""
    dataset, size = data.splits["train"], cfg.dataset.batch_size
    if hasattr(dataset, "tensors"):  # in memory: a slice of the shuffled order per step
        x, y = (t.to(device) for t in dataset.tensors)
        size = size or len(x)  # (null: the full batch)

        def batches(epoch):
            order = torch.randperm(len(x), device=device)
            return ((x[order[i : i + size]], y[order[i : i + size]]) for i in range(0, len(x), size))
    else:  # the names: dlbench's own collated batches, shuffled
        made = [[t.to(device) for t in batch] for batch in data.loader("train")]

        def batches(epoch):
            return (made[i] for i in torch.randperm(len(made)).tolist())

    classify = cfg.task.name == "classification"
    loss_fn = F.cross_entropy if classify else lambda out, y: F.mse_loss(out, y.view_as(out))
    return batches, loss_fn


def plain_side(cfg, notes_optimizer: bool = False) -> float:
    """The plain loop on the run's own model, data and optimizer settings, on its device: the
    optimizer as dlbench builds it (torch's fused kernel where it has one: engine/optim.py's
    build_optimizer), so the ratio is dlbench's own work; with `notes_optimizer`, torch's
    default implementation, as the notes' loops build it."""
    device = torch.device(cfg.device.type)
    data = build_data(cfg)
    model = build_task(cfg, data.info, data).model.to(device)
    batches, loss_fn = plain_parts(cfg, data, device)
    if notes_optimizer:
        kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[cfg.optimizer.name]
        optimizer = kind(model.parameters(), lr=cfg.optimizer.lr)
    else:
        optimizer = build_optimizer(cfg.optimizer, list(model.parameters()))
    return plain_loop(model, batches, cfg.trainer.epochs, optimizer, loss_fn, device)


PARTS = ("nan guard", "step logging", "train metrics")  # what --parts switches off, one at a time


@contextlib.contextmanager
def without(part: str | None, trainer: Trainer):
    """dlbench's loop with one of its default parts switched off (None: none), to measure
    what that part costs by difference."""
    if part is None:
        yield
    elif part == "nan guard":
        kept, trainer.stepper.cfg.nonfinite = trainer.stepper.cfg.nonfinite, "off"
        try:
            yield
        finally:
            trainer.stepper.cfg.nonfinite = kept
    elif part == "step logging":  # (the values of every trainer.log_every_n_steps-th step)
        with mock.patch.object(trainer.logger, "step_scalars", lambda values, step: None):
            yield
    elif part == "train metrics":  # (measured in the epochs that report them)
        with mock.patch.object(trainer, "reports", lambda epoch, steps: False):
            yield


def alternating(
    overrides: list[str], folder: Path, rounds: int, epochs: int, parts: tuple[str, ...] = ()
) -> dict[str, tuple[float, float]]:
    """In one process, on the model, data and optimizer dlbench builds for the run: `rounds`
    rounds of `epochs` plain-loop epochs then `epochs` of dlbench's `Trainer.train_epoch` (its
    loop with its defaults: logging, the NaN guard, train/ metrics in the epochs that report
    them; not the epoch-end work), then as many with each of `parts` switched off. Each round
    sees the same conditions, so the median of the paired ratios holds still where the best
    rounds of whole fits do not. Returns, for the plain loop, dlbench and dlbench without each
    part: the median microseconds a step and the median ratio to the plain loop's round."""
    cfg = compose.compose_config(overrides)
    arms = ["plain", "dlbench", *(f"dlbench without {part}" for part in parts)]
    timed, steps = {arm: [] for arm in arms}, []

    def instead_of_the_epochs(self, task, data, optimizations):  # (Trainer._fit's place)
        device = torch.device(cfg.device.type)
        model, optimizer = task.model, optimizations["model"].optimizer
        batches, loss_fn = plain_parts(cfg, data, device)
        steps.append(epochs * len(data.loader("train")))  # (a round's, for the time a step)
        done = 0  # epochs trained so far (train_epoch reports and measures as that epoch would)
        for _ in range(rounds):
            timed["plain"].append(plain_loop(model, batches, epochs, optimizer, loss_fn, device))
            for arm, part in zip(arms[1:], [None, *parts], strict=True):
                with without(part, self):
                    start = time.perf_counter()
                    for epoch in range(done, done + epochs):
                        self.train_epoch(task, data, optimizations, epoch)
                        self.state.epoch_step = 0
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    timed[arm].append(time.perf_counter() - start)
                done += epochs
        return {}

    kept = Trainer._fit
    Trainer._fit = instead_of_the_epochs
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train(compose.compose_config([*overrides, "trainer.epochs=1000000"]), folder)
    finally:
        Trainer._fit = kept
    return {
        arm: (
            statistics.median(times) / steps[0] * 1e6,
            statistics.median(t / p for p, t in zip(timed["plain"], times, strict=True)),
        )
        for arm, times in timed.items()
    }


# epochs a round of --alternate takes, for each workload (a round: ~0.02-0.5 s a side)
ALTERNATE_EPOCHS = {
    "iris_mlp": 25,
    "mlp_regression": 50,
    "linear_regression": 50,
    "name2lang_gru": 1,
    "lenet5_mnist": 1,
    "digits_mlp": 3,
}


@contextlib.contextmanager
def collections_timed(spent: dict[str, float]):
    """Adds to spent["gc"] the seconds Python's garbage collector runs inside (gc.callbacks)."""
    started = []

    def callback(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            spent["gc"] += time.perf_counter() - started.pop()

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


def dlbench_side(
    overrides: list[str], folder: Path, progress: str = "none"
) -> tuple[float, float, float, float]:
    """dlbench's Trainer.fit on the same run, timed from inside this process: the whole fit, the
    part of it spent in evaluations (validation and its figures), which the plain loop does not
    do, the part spent on checkpoints (writing them, keeping a best epoch's state; a write still
    in flight when the test has run is waited for then: that wait counts as the fit's), and the part
    spent in Python's garbage collections (the run freezes the objects it starts with out of
    them: dlbench/training.py's `built_objects_frozen`)."""
    fit, evaluate, save, keep = Trainer.fit, Trainer.evaluate, Trainer.save, Trainer.keep_best
    finish = Trainer.finish_writes
    took, spent = [], {"evaluate": 0.0, "save": 0.0, "gc": 0.0, "finish": 0.0}

    def timed(method, part):
        def run(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - start

        return run

    def timed_fit(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            with collections_timed(spent):
                return fit(self, *args, **kwargs)
        finally:  # (before the test split's evaluation, after fit)
            took.extend([time.perf_counter() - start, spent["evaluate"], spent["save"], spent["gc"]])

    Trainer.fit, Trainer.evaluate = timed_fit, timed(evaluate, "evaluate")
    Trainer.save, Trainer.keep_best = timed(save, "save"), timed(keep, "save")
    Trainer.finish_writes = timed(finish, "finish")
    try:
        screen = on_a_terminal() if progress == "rich" else contextlib.nullcontext()
        with contextlib.redirect_stdout(io.StringIO()), screen:  # dlbench's own tables
            shown = [o for o in overrides if not o.startswith("trainer.progress=")]
            train(compose.compose_config([*shown, f"trainer.progress={progress}"]), folder)
    finally:
        Trainer.fit, Trainer.evaluate, Trainer.save, Trainer.keep_best = fit, evaluate, save, keep
        Trainer.finish_writes = finish
    waited = spent["finish"]  # (the last checkpoint's files, where the test took less time than they)
    return took[0] + waited, took[1], took[2] + waited, took[3]


def compare(
    root: Path,
    only: list[str] | None,
    quick: bool,
    rounds: int,
    device: str = "cpu",
    progress: str = "none",
    compile_mode: str | None = None,
    notes_optimizer: bool = False,
    many: int | None = None,
) -> dict[str, tuple[float, float, float, float, float]]:
    """Each workload (or those in `only`) trained by the plain loop and by dlbench in interleaved
    rounds; for each, the best round's seconds: plain, dlbench's whole fit, its training part
    (less evaluations), that less checkpoint writes, and the median over the rounds of each
    round's training part to its plain loop (paired: a drift of the machine's speed moves both).
    `compile_mode`: dlbench's model through torch.compile in that mode (the plain loop stays
    eager, as the notes'), e.g. reduce-overhead, CUDA graphs. `notes_optimizer`: the plain loop
    builds torch's default optimizer (dlbench's may be fused), not dlbench's. `many`: workloads'."""
    chosen = workloads(root, quick, many)
    settings = [*(o for o in QUIET if not o.startswith("device=")), f"device={device}"]
    compiled = ["trainer.compile=true", f"trainer.compile_mode={compile_mode}"] if compile_mode else []
    results = {}
    for name, overrides in chosen.items():
        if only and name not in only:
            continue
        overrides = [*overrides, *settings]
        cfg = compose.compose_config(overrides)
        plain, ours, training, steps = [], [], [], []
        for r in range(rounds):
            torch.manual_seed(cfg.trainer.seed)
            plain.append(plain_side(cfg, notes_optimizer))
            whole, evaluations, checkpoints, collections = dlbench_side(
                [*overrides, *compiled], root / "runs" / f"{name}-{r}", progress
            )
            ours.append(whole)
            training.append(whole - evaluations)
            steps.append(whole - evaluations - checkpoints)
            print(json.dumps({"workload": name, "round": r, "plain_s": plain[-1], "dlbench_fit_s": whole,
                              "evaluations_s": evaluations, "checkpoints_s": checkpoints,
                              "gc_s": collections}))  # fmt: skip
        paired = statistics.median(t / p for t, p in zip(training, plain, strict=True))
        results[name] = (min(plain), min(ours), min(training), min(steps), paired)
    return results


LRS = "optimizer.lr=0.1,0.05,0.02,0.01,0.005,0.002,0.001,0.0005,0.0002,0.0001"  # 10 values


def first_job_s(jobs: int, folder: Path) -> float:
    """Seconds from `dlbench -m` to the start of its first job (Hydra's `#0 :` line) on a grid
    of `jobs` one-step jobs (10 learning rates x jobs/10 seeds); the sweep is then stopped."""
    command = [sys.executable, "-m", "dlbench", "-m", LRS, f"trainer.seed=range({jobs // 10})",
               "trainer.max_steps=1", "trainer.epochs=1", *QUIET, f"hydra.sweep.dir={folder}"]  # fmt: skip
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            if "#0 :" in line:
                return time.perf_counter() - start
        raise RuntimeError(f"the sweep of {jobs} jobs ended before its first job ({process.wait()})")
    finally:
        process.kill()
        process.wait()


BARE_APP = """
import hydra, torch
@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    torch.set_num_threads(1)
    model = torch.nn.Linear(64, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.lr))
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(); loss.backward(); optimizer.step()
main()
"""


def per_job_s(folder: Path) -> tuple[float, float]:
    """Seconds per job of a 10-job one-step sweep: dlbench's, then a bare Hydra app's (the same
    basic launcher, one optimizer step of a linear model), each measured as (10 jobs - 1 job)/9."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bare.py").write_text(BARE_APP)

    def sweep(values: str, bare: bool) -> float:
        if bare:
            command = [sys.executable, str(folder / "bare.py"), "-m", f"+lr={values}",
                       f"hydra.sweep.dir={folder / 'bare'}"]  # fmt: skip
        else:
            command = [sys.executable, "-m", "dlbench", "-m", f"optimizer.lr={values}", "trainer.max_steps=1",
                       "trainer.epochs=1", *QUIET, f"hydra.sweep.dir={folder / 'dl'}"]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        shutil.rmtree(folder / ("bare" if bare else "dl"), ignore_errors=True)
        return time.perf_counter() - start

    ten = ",".join(str(0.1 / (i + 1)) for i in range(10))
    return tuple((sweep(ten, bare) - sweep("0.1", bare)) / 9 for bare in (False, True))


def sweeps(root: Path) -> None:
    for jobs in (10, 100, 1000):
        seconds = first_job_s(jobs, root / f"grid{jobs}")
        print(json.dumps({"grid_jobs": jobs, "first_job_s": round(seconds, 2)}))
    dlbench_job, bare_job = per_job_s(root / "per_job")
    print(json.dumps({"per_job_s": {"dlbench": round(dlbench_job, 2), "bare hydra app": round(bare_job, 2)}}))


def alternate_all(root: Path, only: list[str] | None, quick: bool, rounds: int, device: str, parts) -> None:
    settings = [*(o for o in QUIET if not o.startswith("device=")), f"device={device}"]
    print(f"{device}, one thread, {rounds} alternating rounds in one process: the plain loop's epochs, then")
    print("dlbench's Trainer.train_epoch (its loop and defaults, not the epoch-end work); same model, data")
    head = ("workload", "epochs a round", "", "us/step", "median ratio")
    print("{:<18} {:>14} {:<32} {:>9} {:>12}".format(*head))
    for name, overrides in workloads(root, quick).items():
        if only and name not in only:
            continue
        epochs = ALTERNATE_EPOCHS[name]
        arms = alternating([*overrides, *settings], root / "alternate" / name, rounds, epochs, parts)
        for arm, (per_step, ratio) in arms.items():
            print(f"{name:<18} {epochs:>14} {arm:<32} {per_step:>9.1f} {ratio:>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--quick", action="store_true", help="1,000 epochs, 2,000 images: a smoke run")
    parser.add_argument("--sweeps", action="store_true", help="only the sweeps' start and per-job times")
    alternate = (
        "dlbench's train_epoch and the plain loop alternating in one process (median of paired rounds)"
    )
    parser.add_argument("--alternate", action="store_true", help=alternate)
    parser.add_argument(
        "--parts", action="store_true", help=f"with --alternate: also without each of {PARTS}"
    )
    shown = "dlbench's progress display: none, or a terminal's rich bar (drawn to nowhere)"
    parser.add_argument("--progress", choices=["none", "rich"], default="none", help=shown)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile-mode", help="dlbench's model through torch.compile, e.g. reduce-overhead")
    notes = "the plain loop builds torch's default optimizer, as the notes do (dlbench's may be fused)"
    parser.add_argument("--notes-optimizer", action="store_true", help=notes)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="dlbench-steps-"))
    if args.sweeps:
        return sweeps(root)
    only = args.only.split(",") if args.only else None
    if args.alternate:
        return alternate_all(root, only, args.quick, args.rounds, args.device, PARTS if args.parts else ())
    options = {"device": args.device, "progress": args.progress, "compile_mode": args.compile_mode,
               "notes_optimizer": args.notes_optimizer}  # fmt: skip
    results = compare(root, only, args.quick, args.rounds, **options)
    compiled = f", dlbench's model compiled ({args.compile_mode})" if args.compile_mode else ""
    print(f"\n{args.device}, one thread, best of {args.rounds} interleaved rounds, "
          f"trainer.progress={args.progress}{compiled}, the plain loop's optimizer "
          f"{'torch default' if args.notes_optimizer else 'as dlbench builds it'}. "
          "dlbench: its whole Trainer.fit; its training part "
          "(the fit less its evaluations: validation, figures); that less its checkpoint writes; "
          "paired: the median of each round's training part to its plain loop")  # fmt: skip
    head = ("workload", "plain s", "fit s", "ratio", "training s", "ratio", "less ckpt s", "ratio", "paired")
    print("{:<18} {:>8} {:>8} {:>6} {:>10} {:>6} {:>11} {:>6} {:>6}".format(*head))
    for name, (plain, ours, training, steps, paired) in results.items():
        row = (name, plain, ours, ours / plain, training, training / plain, steps, steps / plain, paired)
        print("{:<18} {:>8.3f} {:>8.3f} {:>6.2f} {:>10.3f} {:>6.2f} {:>11.3f} {:>6.2f} {:>6.2f}".format(*row))


if __name__ == "__main__":
    main()
