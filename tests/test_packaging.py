"""Issue 24: the config tree sits at the repository's top (configs/) and ships inside the wheel
as dlbench.configs: a real wheel, installed into a fresh virtual environment, runs the default
experiment from a folder that has nothing of the repository."""

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import user_env

ROOT = Path(__file__).parent.parent


def test_a_wheel_installed_in_a_fresh_venv_finds_its_configs_from_any_folder(tmp_path):
    # with setuptools at hand the build needs no network; without, pip fetches it from the registry
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)]
    built = subprocess.run([*build, *offline], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("dlbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"dlbench/configs/config.yaml", "dlbench/configs/experiment/lenet5_mnist.yaml"} <= names
    assert "dlbench/registry_index.json" in names and not any(n.startswith("configs/") for n in names)

    venv = tmp_path / "venv"  # its own site-packages first; torch and the rest from this Python's
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300
    )
    # --ignore-installed: a dlbench already in this Python's site-packages (CI installs one) would
    # otherwise count as "already satisfied" and the venv would run that one, not the wheel
    install = [
        str(venv / "bin" / "pip"),
        "install",
        "-q",
        "--ignore-installed",
        "--no-deps",
        "--no-index",
        str(wheel),
    ]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import dlbench.searchpath as s; print(s.SHIPPED)"],
        cwd=elsewhere, capture_output=True, text=True, env=user_env(), timeout=300,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    run = subprocess.run(
        [str(venv / "bin" / "dlbench"), "trainer.epochs=1", "trainer.progress=none", "experiment=iris_mlp"],
        cwd=elsewhere, capture_output=True, text=True, env=user_env(), timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Run directory: {elsewhere / 'outputs' / 'iris_mlp'}/" in run.stdout
