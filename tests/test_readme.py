"""The README's tour runs as written, in a fresh folder, on the data that ships with dlbench; its
quickstart is what CI runs; it fits on a screen; and piped output never splits a value."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import shell

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def tour() -> list[str]:
    block = README.split("## A tour in ten commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.strip().splitlines()]


def more() -> list[str]:
    """The commands of the README's "More:" list."""
    return re.findall(r"`(dlbench [^`]+)`", README.split("- **More:**", 1)[1].split("\n- **", 1)[0])


def test_the_readme_fits_on_a_screen_and_its_quickstart_is_what_ci_runs():
    assert len(README.splitlines()) <= 150
    quickstart = (
        README.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    )
    assert quickstart == ["pip install . && dlbench", "pip install '.[dev]' && pytest"]
    assert "pip install '.[dev]' && pytest" in (ROOT / ".ci" / "run").read_text()
    assert len(tour()) == 10


def test_every_command_of_the_tour_runs(tmp_path):
    for command in tour():
        if command == "dlbench board":
            board_shows_runs_by_name(tmp_path)
            continue
        result = shell(command, tmp_path)  # (as written: outputs/digits_linear is its newest run)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        names_a_run = "outputs/digits_linear " in command + " "
        assert "<" not in command and (not names_a_run or "checkpointed last" in result.stderr), result.stderr
    assert (tmp_path / "configs" / "experiment" / "mine.yaml").is_file() and (
        tmp_path / "my_net.py"
    ).is_file()
    # the "More:" list, on a run of the tour (RUN), each command as written
    from PIL import Image

    Image.new("L", (28, 28), 255).save(tmp_path / "image.png")
    run = sorted((tmp_path / "outputs" / "digits_linear").iterdir())[0].relative_to(tmp_path)
    commands = more()
    assert len(commands) >= 6 and any(" RUN " in c for c in commands)
    for command in commands:
        result = shell(re.sub(r"\bRUN\b", str(run), command), tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert {"report.html", "run.html", "model.onnx"} <= {p.name for p in tmp_path.iterdir()}


def board_shows_runs_by_name(folder: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(
        ["dlbench", "board", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://\S+", line).group(0)
        for _ in range(100):  # TensorBoard reads the event files in the background
            runs = json.loads(urllib.request.urlopen(url.rstrip("/") + "/data/runs", timeout=10).read())
            if len(runs) >= 5:
                break
            time.sleep(0.3)
        assert any("optimizer=sgd optimizer.lr=0.1" in r for r in runs), runs
        assert not any(r.endswith("/tb") or r == "tb" or "${" in r for r in runs), runs
        assert any(r.startswith("digits_linear model=linear optimizer=sgd") for r in runs), runs
    finally:
        process.terminate()
        _, said = process.communicate(timeout=30)
    # (SIGTERM, a server's ordinary end: "error: stopped by SIGTERM while no run was in progress", 143)
    assert process.returncode == 0 and "stopped by" not in said, said


def test_piped_output_never_splits_a_value_or_a_path(cli, tmp_path):
    """Off a terminal (a pipe, a log file) nothing is wrapped at 80 columns, however narrow
    COLUMNS says the terminal is."""
    long_dir = tmp_path / ("a_folder_name_long_enough_to_be_wrapped_" * 2)
    result = cli("-m", "optimizer.lr=0.001,0.0001", "trainer.epochs=1", "trainer.progress=none",
                 f"hydra.sweep.dir={long_dir}", env={"COLUMNS": "40"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "optimizer.lr=0.001" in result.stdout and "optimizer.lr=0.0001" in result.stdout
    # each job says one line (its tables are in its folder), then the sweep's table
    assert "job 0 done: test/acc " in result.stdout and "Final metrics" not in result.stdout
    assert f"Sweep directory: {long_dir}" in result.stdout
    compared = cli("compare", str(long_dir), "--sort", "test/acc", env={"COLUMNS": "40"})
    assert "optimizer.lr=0.001" in compared.stdout and "test/acc" in compared.stdout
    error = cli(f"hydra.run.dir={long_dir / 'x' / 'y'}", "model=mlpp", env={"COLUMNS": "40"})
    assert "Unknown model option 'mlpp'" in error.stderr
