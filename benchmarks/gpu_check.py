"""The GPU check (issue 26): the one command a session that is lent a GPU runs first.

    python benchmarks/gpu_check.py --out DIR                       # on the GPU (about 5 minutes)
    python benchmarks/gpu_check.py --device cpu --quick --out DIR  # anywhere, in seconds

Each step is timed, and a step that fails is recorded with its error while the next one runs:

1. environment: Python, torch, CUDA, the GPU, the packages dlbench needs;
2. the CUDA tests (`pytest -m cuda`, tests/test_device.py), each test's outcome;
3. speed: images/s of one model trained three ways in this process, with the same batch,
   precision, optimizer (SGD, momentum 0.9) and data held on the device: dlbench, a plain
   PyTorch loop (the most that model can do on that device) and PyTorch Lightning (where it is
   installed), for LeNet-5 (MNIST-shaped), ResNet-18 (CIFAR stem) and airbench's network
   (CIFAR-shaped); the first epoch (cuDNN autotuning, compiling) is reported apart from the
   steady ones;
4. memory: the peak memory allocated on the GPU while training ResNet-18 at batch 512, dlbench
   against the plain loop (no figure without a GPU: "not measured: no GPU");
5. tiny steps (issue 29): step_overhead.py's iris_mlp, mlp_regression and name2lang_gru
   (1,000 epochs; 100 with --quick), dlbench against the plain loop on this device; on a GPU also
   with CUDA graphs (`trainer.compile_mode=reduce-overhead`).

It writes gpu_report.json and gpu_report.md in --out. Targets (issue 26): every CUDA test
passes; dlbench >= 0.95x the plain loop's images/s at steady state and >= 1.2x Lightning's; peak
memory <= 1.1x the plain loop's. `--quick` (the suite runs it on the CPU: tests/test_gpu_check.py)
runs every step on tiny sizes (narrower networks too), and two of the CUDA tests. docs/speed.md
gives the one-line command for the device tool.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dlbench from this tree (the device machine installs nothing)
sys.path.insert(1, str(ROOT / "tests"))  # the writers of the official file formats

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from formats import write_cifar, write_mnist  # noqa: E402

TARGETS = {"vs_plain": 0.95, "vs_lightning": 1.2, "memory_vs_plain": 1.1}
MODELS = {  # name -> overrides (the data set's files are written by prepare())
    "lenet5": ["experiment=lenet5_mnist"],
    "resnet18": ["model=resnet", "model.depth=18", "dataset=cifar10"],
    "airbench": ["model=airbench", "dataset=cifar10"],
}
QUICK = {"resnet18": ["model.width=8", "model.layers=[1,1,1,1]"], "airbench": ["model.widths=[8,16,16]"]}
SAME = ["optimizer=sgd", "optimizer.lr=0.01", "optimizer.momentum=0.9", "optimizer.weight_decay=0"]
SAME += ["scheduler=none", "dataset.val_fraction=0", "trainer.progress=none", "trainer.monitor=train/loss"]
SAME += ["dataset.download=false", "dataset.in_memory=true", "trainer.threads=1"]


class Report:
    """Every step's outcome and time, and the figures, as JSON and Markdown."""

    def __init__(self, out: Path, device: str, quick: bool):
        self.out, self.steps, self.figures = out, [], {"device": device, "quick": quick}

    def step(self, name: str):
        report = self

        class Step(contextlib.AbstractContextManager):
            def __enter__(self):
                self.started = time.perf_counter()
                return self

            def __exit__(self, kind, error, tb):
                entry = {
                    "step": name,
                    "seconds": round(time.perf_counter() - self.started, 1),
                    "ok": error is None,
                }
                if error is not None:
                    entry["error"] = "".join(traceback.format_exception(kind, error, tb))[-3000:]
                report.steps.append(entry)
                report.write()
                print(f"{name}: {'ok' if error is None else 'FAILED'} ({entry['seconds']} s)", flush=True)
                return True  # the next step runs

        return Step()

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = {"steps": self.steps, **self.figures}
        (self.out / "gpu_report.json").write_text(json.dumps(data, indent=2) + "\n")
        (self.out / "gpu_report.md").write_text(markdown(data))


def markdown(data: dict) -> str:
    env = data.get("environment", {})
    lines = [f"# GPU check ({data['device']}{', quick' if data['quick'] else ''})", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", "| step | ok | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {'yes' if s['ok'] else 'FAILED'} | {s['seconds']} |" for s in data["steps"]]
    tests = data.get("cuda_tests", {})
    if tests:
        failed = [name for name, outcome in tests.items() if outcome != "passed"]
        lines += ["", f"CUDA tests: {len(tests) - len(failed)} of {len(tests)} passed"]
        lines += [f"- {name}: {tests[name]}" for name in failed]
    speed = data.get("speed", {})
    if speed:
        lines += ["", "| model | side | first epoch s | steady images/s |", "|---|---|---|---|"]
        for model, sides in speed.items():
            for side, figures in sides.items():
                lines.append(f"| {model} | {side} | {figures['first_epoch_s']} | {figures['images_per_s']} |")
        for model, ratios in data.get("ratios", {}).items():
            lines.append(f"\n{model}: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    memory = data.get("memory")
    if memory:
        lines += ["", f"Memory (ResNet-18, batch 512): {memory}"]
    for variant, rows in data.get("tiny_steps", {}).items():
        epochs = "100" if data["quick"] else "1,000"
        lines += ["", f"Tiny steps, dlbench {variant} ({epochs} epochs, seconds of training):", ""]
        lines += ["| workload | plain loop | dlbench | ratio | training part | less ckpt | paired |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for name, row in rows.items():
            lines.append(f"| {name} | {row['plain_s']} | {row['dlbench_s']} | {row['dlbench/plain']} | "
                         f"{row['training/plain']} | {row['less ckpt/plain']} | "
                         f"{row['training/plain paired']} |")  # fmt: skip
    for step in data["steps"]:
        if not step["ok"]:
            lines += ["", f"## {step['step']} failed", "", "```", step["error"], "```"]
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict:
    import importlib.metadata as metadata

    versions = {}
    for package in ("torch", "torchvision", "hydra-core", "omegaconf", "torchmetrics", "lightning", "rich"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"python": platform.python_version(), "cuda": torch.version.cuda, "gpu": gpu, **versions}


def cuda_tests(device: str, quick: bool, out: Path) -> dict[str, str]:
    """pytest -m cuda, one process, each test's outcome from its JUnit report."""
    junit = out / "cuda_tests.xml"
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])  # this tree's dlbench
    env = {**os.environ, "DLBENCH_TEST_DEVICE": device, "PYTHONPATH": path}
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-n", "0", "-p", "no:cacheprovider"]
    command += ["--junitxml", str(junit), "tests/test_device.py"]
    if quick:  # (the suite runs every one of them on the CPU itself: this checks the step)
        command += ["-k", "mlp-32 or too_large"]
    subprocess.run(command, cwd=ROOT, env=env, timeout=900)
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcomes[case.get("name")] = "failed" if failed else "skipped" if skipped else "passed"
    if not outcomes or any(o != "passed" for o in outcomes.values()):
        raise AssertionError(f"CUDA tests not all passed: {outcomes}")
    return outcomes


def prepare(root: Path, n: int) -> None:
    write_mnist(root, n_train=n, n_test=16)
    write_cifar(root, per_batch=max(1, n // 5))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dtype_of(precision: str):
    return {"32": None, "bf16": torch.bfloat16, "16": torch.float16}[precision]


def plain_loop(model, x, y, batch: int, epochs: int, precision: str, device) -> list[float]:
    """The loop a notebook has: randperm, slice, autocast, forward, loss, backward, step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = dtype_of(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    model.train()
    per_epoch = []
    for _ in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x) - batch + 1, batch):  # full batches, as dlbench's sampler gives
            idx = order[i : i + batch]
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        synchronize(device)
        per_epoch.append((len(x) // batch) * batch / (time.perf_counter() - start))
    return per_epoch


def lightning_loop(model, x, y, batch: int, epochs: int, precision: str, device) -> list[float]:
    """Lightning as its users write it: a LightningModule, a DataLoader over the tensors."""
    import logging
    import warnings

    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # its banners and tips
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    per_epoch: list[float] = []

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, _):
            inputs, targets = batch
            return F.cross_entropy(self.model(inputs), targets)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    class Timer(L.Callback):
        def on_train_epoch_start(self, *_):
            synchronize(device)
            self.start = time.perf_counter()

        def on_train_epoch_end(self, *_):
            synchronize(device)
            per_epoch.append((len(x) // batch) * batch / (time.perf_counter() - self.start))

    loader = DataLoader(
        TensorDataset(x.cpu(), y.cpu()), batch_size=batch, shuffle=True, drop_last=True,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision={"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[precision],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Timer()],
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer.fit(Module(), loader)
    return per_epoch


def dlbench_loop(overrides: list[str], out: Path) -> list[float]:
    """dlbench's own run (its trainer, logging, checkpoints), images/s per epoch from its log."""
    from dlbench import compose
    from dlbench.api import Run
    from dlbench.training import train

    with contextlib.redirect_stdout(io.StringIO()):
        metrics = train(compose.compose_config(overrides), out)
    return Run(out, metrics).curve("time/train_samples_per_s")[1]


def speed(root: Path, device: torch.device, quick: bool, precision: str, report: Report) -> None:
    from dlbench import compose
    from dlbench.build import build_data, build_task

    epochs = 2 if quick else 4
    figures, ratios = report.figures.setdefault("speed", {}), report.figures.setdefault("ratios", {})
    for name, model_overrides in MODELS.items():
        batch = 32 if quick else 512
        overrides = [*model_overrides, *SAME, f"dataset.root={root}", f"device={device.type}"]
        overrides += QUICK.get(name, []) if quick else []
        overrides += [
            f"trainer.precision={precision}",
            f"dataset.batch_size={batch}",
            f"trainer.epochs={epochs}",
        ]
        with report.step(f"speed: {name}"):
            cfg = compose.compose_config(overrides)
            data = build_data(cfg)
            x, y = (t.to(device) for t in data.splits["train"].tensors)
            sides = {}
            torch.manual_seed(0)
            sides["plain loop"] = plain_loop(
                build_task(cfg, data.info, data).model.to(device), x, y, batch, epochs, precision, device
            )
            sides["dlbench"] = dlbench_loop(overrides, Path(tempfile.mkdtemp(dir=report.out)))
            try:
                torch.manual_seed(0)
                model = build_task(cfg, data.info, data).model
                sides["lightning"] = lightning_loop(model, x, y, batch, epochs, precision, device)
            except ImportError:
                pass  # (not installed: no figure)
            figures[name] = {
                side: {
                    "first_epoch_s": round((len(x) // batch) * batch / values[0], 3),
                    "images_per_s": round(statistics.median(values[1:]) if len(values) > 1 else values[0]),
                }
                for side, values in sides.items()
            }
            ours = figures[name]["dlbench"]["images_per_s"]
            ratios[name] = {
                f"dlbench/{side}": round(ours / max(f["images_per_s"], 1e-9), 3)
                for side, f in figures[name].items()
                if side != "dlbench"
            }


def memory(root: Path, device: torch.device, report: Report) -> None:
    """Peak GPU memory, ResNet-18 at batch 512: dlbench against the plain loop."""
    if device.type != "cuda":
        report.figures["memory"] = "not measured: no GPU"
        return
    from dlbench import compose
    from dlbench.build import build_data, build_task

    overrides = [*MODELS["resnet18"], *SAME, f"dataset.root={root}", "device=cuda", "trainer.precision=bf16"]
    overrides += ["dataset.batch_size=512", "trainer.epochs=1"]
    cfg = compose.compose_config(overrides)
    data = build_data(cfg)
    x, y = (t.to(device) for t in data.splits["train"].tensors)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    plain_loop(build_task(cfg, data.info, data).model.to(device), x, y, 512, 1, "bf16", device)
    plain = torch.cuda.max_memory_allocated()
    del x, y
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    dlbench_loop(overrides, Path(tempfile.mkdtemp(dir=report.out)))
    ours = torch.cuda.max_memory_allocated()
    report.figures["memory"] = {
        "plain_loop_mib": round(plain / 2**20),
        "dlbench_mib": round(ours / 2**20),
        "dlbench/plain": round(ours / plain, 3),
    }


def tiny_row(plain: float, ours: float, training: float, loop: float, paired: float) -> dict[str, float]:
    """One workload's seconds (plain loop, dlbench's fit, its training part: the fit less
    evaluations, and that less checkpoint writes) and dlbench's ratios to the plain loop (and
    the median of each round's training part to its plain loop)."""
    return {
        "plain_s": round(plain, 3),
        "dlbench_s": round(ours, 3),
        "dlbench/plain": round(ours / plain, 3),
        "training/plain": round(training / plain, 3),
        "less ckpt/plain": round(loop / plain, 3),
        "training/plain paired": round(paired, 3),
    }


def tiny_steps(root: Path, device: torch.device, quick: bool, report: Report) -> None:
    """Issue 29 on this device: the tiny-step workloads of benchmarks/step_overhead.py (1,000
    epochs), dlbench's fit against the plain loop; on a GPU also with dlbench's model in CUDA
    graphs (`trainer.compile=true trainer.compile_mode=reduce-overhead`; the two with fixed
    shapes: a GRU over names of every length would compile once per length)."""
    import step_overhead

    variants = {"eager": (None, ["iris_mlp", "mlp_regression", "name2lang_gru"])}
    if device.type == "cuda":
        variants["cuda graphs"] = ("reduce-overhead", ["iris_mlp", "mlp_regression"])
    figures = {}
    for label, (mode, only) in variants.items():
        results = step_overhead.compare(
            root / label.replace(" ", "_"), only, True, 1 if quick else 2, device.type, compile_mode=mode,
            many=100 if quick else None,  # (--quick: each side runs, in seconds; the figure needs 1,000)
        )  # fmt: skip
        figures[label] = {name: tiny_row(*seconds) for name, seconds in results.items()}
    report.figures["tiny_steps"] = figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the folder for gpu_report.{json,md}")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every step in seconds")
    parser.add_argument("--skip-tests", action="store_true", help="speed and memory only")
    args = parser.parse_args()
    report = Report(args.out, args.device, args.quick)
    device = torch.device(args.device)
    precision = "bf16" if args.device == "cuda" else "32"
    root = Path(tempfile.mkdtemp(prefix="gpu-check-data-"))
    with report.step("environment"):
        report.figures["environment"] = environment(args.device)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda: torch sees no GPU")
    if not args.skip_tests:
        with report.step("CUDA tests"):
            report.figures["cuda_tests"] = cuda_tests(args.device, args.quick, args.out)
    with report.step("data"):
        prepare(root, 160 if args.quick else 10_240)
    speed(root, device, args.quick, precision, report)
    with report.step("memory"):
        memory(root, device, report)
    with report.step("tiny steps"):
        tiny_steps(root / "tiny", device, args.quick, report)
    report.write()
    print((args.out / "gpu_report.md").read_text())
    return 0 if all(step["ok"] for step in report.steps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
