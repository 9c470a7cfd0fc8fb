"""Issue 26: the GPU check runs on the CPU too (`--device cpu --quick`), so that it cannot rot
between the sessions that are lent a GPU: every step runs on tiny sizes (two of the CUDA tests:
the suite runs all of tests/test_device.py on the CPU), and it writes its report."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import user_env

ROOT = Path(__file__).parent.parent


def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)], cwd=tmp_path, env=user_env(OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    report = json.loads((tmp_path / "gpu_report.json").read_text())
    failed = [step for step in report["steps"] if not step["ok"]]
    assert done.returncode == 0 and not failed, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [step["step"] for step in report["steps"]]
    assert steps == [
        "environment", "CUDA tests", "data", "speed: lenet5", "speed: resnet18", "speed: airbench", "memory",
        "tiny steps",
    ]  # fmt: skip
    tests = report["cuda_tests"]
    assert len(tests) == 2 and set(tests.values()) == {"passed"}, tests  # (--quick: two of them)
    for model, sides in report["speed"].items():
        assert set(sides) == {"dlbench", "plain loop", "lightning"}, model
        assert all(side["images_per_s"] > 0 for side in sides.values())
    assert report["memory"] == "not measured: no GPU"
    tiny = report["tiny_steps"]  # (CUDA graphs only on a GPU)
    assert list(tiny) == ["eager"] and set(tiny["eager"]) == {"iris_mlp", "mlp_regression", "name2lang_gru"}
    assert all(row["dlbench/plain"] > 0 for row in tiny["eager"].values())
    text = (tmp_path / "gpu_report.md").read_text()
    assert "| lenet5 | dlbench |" in text and "CUDA tests: " in text
