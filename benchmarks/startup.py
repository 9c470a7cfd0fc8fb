"""How fast dlbench answers, against the floor of this machine, in one command (issue 17).

    python benchmarks/startup.py [--repeat 3]

Every figure is the median wall time of `--repeat` runs of a fresh process, one torch thread
(OMP_NUM_THREADS=1). Two kinds of ratio:

- a command that needs no torch (`--help`, a typo's error, `--cfg job`) and `list`, against
  `python -c "import torch"`: targets 0.3x and 1.2x;
- the start-up of a training run (its wall time minus its training and testing, which the run
  measures itself: `time/fit_and_test_s`), against a plain script that does the same work the way
  the notes do (the data, the model, one epoch, a test): target 1.2x. Two runs: the default
  (an MLP on scikit-learn's digits) and `lenet5_mnist` on local idx files (4,000 generated
  MNIST-shaped images: tests/formats.py writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from formats import write_mnist  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
ENV.pop("DLBENCH_DEBUG", None)

DIGITS_SCRIPT = """
import time, torch, torch.nn as nn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
torch.set_num_threads(1)
d = load_digits()
x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16
y = torch.tensor(d.target)
train, test = train_test_split(range(len(y)), test_size=0.2, random_state=0, stratify=d.target)
model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=0.001)
loss_fn = nn.CrossEntropyLoss()
start = time.perf_counter()
perm = torch.tensor(train)[torch.randperm(len(train))]
for i in range(0, len(perm), 64):
    idx = perm[i:i + 64]
    opt.zero_grad(); loss = loss_fn(model(x[idx]), y[idx]); loss.backward(); opt.step()
with torch.no_grad():
    acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
print("FIT", time.perf_counter() - start)
"""

LENET_SCRIPT = """
import time, torch, torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
torch.set_num_threads(1)
t = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
train = datasets.MNIST(ROOT, train=True, download=False, transform=t)
test = datasets.MNIST(ROOT, train=False, download=False, transform=t)
train_loader = DataLoader(train, batch_size=32, shuffle=True)
test_loader = DataLoader(test, batch_size=32)
model = nn.Sequential(
    nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
    nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.001)
loss_fn = nn.CrossEntropyLoss()
start = time.perf_counter()
for x, y in train_loader:
    opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
correct = 0
with torch.no_grad():
    for x, y in test_loader:
        correct += (model(x).argmax(1) == y).sum().item()
print("FIT", time.perf_counter() - start)
"""


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return elapsed, result.stdout


def median(command: list[str], cwd: Path, repeat: int) -> float:
    return statistics.median(timed(command, cwd)[0] for _ in range(repeat))


def startup_of_run(args: list[str], cwd: Path, repeat: int) -> float:
    """A dlbench run's wall time minus the training and testing it timed itself."""
    values = []
    for i in range(repeat):
        run_dir = cwd / f"run{time.time_ns()}_{i}"
        wall, _ = timed([sys.executable, "-m", "dlbench", *args, f"hydra.run.dir={run_dir}"], cwd)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        values.append(wall - metrics["time/fit_and_test_s"])
    return statistics.median(values)


def startup_of_script(script: str, cwd: Path, repeat: int) -> float:
    values = []
    for _ in range(repeat):
        wall, out = timed([sys.executable, "-c", script], cwd)
        values.append(wall - float(out.split("FIT", 1)[1].split()[0]))
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        write_mnist(cwd / "data", n_train=4000, n_test=1000)
        floor = median([sys.executable, "-c", "import torch"], cwd, repeat)
        rows = [("python -c 'import torch' (the floor)", floor, None, None)]
        for label, args, target in [
            ("dlbench --help", ["--help"], 0.3),
            ("dlbench model=mlpp (a typo's message)", ["model=mlpp"], 0.3),
            ("dlbench --cfg job experiment=lenet5_mnist", ["--cfg", "job", "experiment=lenet5_mnist"], 0.3),
            ("dlbench list", ["list"], 1.2),
        ]:
            seconds = median([sys.executable, "-m", "dlbench", *args], cwd, repeat)
            rows.append((label, seconds, seconds / floor, target))

        quiet = ["trainer.epochs=1", "trainer.progress=none"]
        mnist = ["experiment=lenet5_mnist", f"dataset.root={cwd / 'data'}", "dataset.download=false", *quiet]
        for label, args, script in [
            ("default run (digits MLP)", quiet, DIGITS_SCRIPT),
            (
                "lenet5_mnist, 4,000 local images",
                mnist,
                LENET_SCRIPT.replace("ROOT", repr(str(cwd / "data"))),
            ),
        ]:
            ours = startup_of_run(args, cwd, repeat)
            plain = startup_of_script(textwrap.dedent(script), cwd, repeat)
            rows.append((f"start-up: plain script, {label}", plain, None, None))
            rows.append((f"start-up: dlbench, {label}", ours, ours / plain, 1.2))

    print(f"one torch thread, median of {repeat} fresh processes each; ratios: commands against the floor,")
    print("a dlbench start-up against the plain script in the row above it")
    print(f"{'what':<58} {'seconds':>8} {'ratio':>7} {'target':>7}")
    for label, seconds, ratio, target in rows:
        mark = "" if target is None else ("  ok" if ratio <= target else "  MISSED")
        ratio_text = "" if ratio is None else f"{ratio:.2f}"
        target_text = "" if target is None else f"<={target}"
        print(f"{label:<58} {seconds:>8.2f} {ratio_text:>7} {target_text:>7}{mark}")


if __name__ == "__main__":
    main()
