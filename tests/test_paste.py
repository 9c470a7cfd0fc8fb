"""Issue 25: what dlbench documents and prints works when it is pasted.

- Every line of every ```bash block in the README and docs/ means the same in bash and in zsh
  (macOS's shell stops at an unquoted `[...]` with "no matches found"): each is run in both
  shells with every program replaced by a stub that records its arguments.
- Every `dlbench` command among them is then checked as dlbench would run it: a training
  command or a sweep is composed and validated (every key, every option), `list`, `new` and
  `--help` run, `show`'s model config is checked; the plugins and the preset that
  docs/extending.md shows are written from its own code blocks. A command on a finished run
  (eval, predict, export, compare, report, board on `<run>`) is not run here: the README's tour runs
  eval, compare, report and board on a real run, and its "More:" commands (tests/test_readme.py),
  tests/test_export.py configuration.md's export block; a documented predict line is checked as
  shell words only.
- Every `$ dlbench ...` followed by `error: ...` in the docs prints that error.
- What dlbench prints for the user to paste (`new`, the plugins a saved run needs) runs.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shell, user_env

from dlbench.terminal import override

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = "2026-01-01_12-00-00_ab12cd"  # what a user pastes for <run>, <sweep>
PROGRAMS = ("dlbench", "pip", "pytest", "python", "torchrun", "tensorboard", "apt-get", "bash")
STUB = (  # a program that records its name and arguments (separated by \x1f) in $STUB_LOG
    '#!/bin/sh\n{ printf "%s" "${0##*/}"; for a in "$@"; do printf "\\037%s" "$a"; done; echo; }'
    ' >>"$STUB_LOG"\n'
)


def blocks(language: str) -> list[tuple[str, str]]:
    """(doc name, text) of every fenced block in `language` ("" for an unmarked one)."""
    return [
        (doc.name, text)
        for doc in DOCS
        for marked, text in re.findall(r"^```(\w*)\n(.*?)^```$", doc.read_text(), re.S | re.M)
        if marked == language
    ]


def documented_lines() -> list[tuple[str, str]]:
    """Every command line of the docs' bash blocks, and of `dlbench --help`'s examples."""
    from dlbench.cli import EXAMPLES

    examples = "\n".join(re.split(r"\s{2,}", line.strip())[0] for line in EXAMPLES.splitlines())
    lines = []
    for doc, text in [*blocks("bash"), ("--help", examples)]:
        for line in text.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append((doc, re.sub(r"<(run|sweep)>", RUN, line)))
    return lines


def stubbed_calls(line: str, program: str, folder: Path) -> tuple[int, list[list[str]], str]:
    """The programs `line` calls in `program` (bash or zsh), each as its argument list."""
    log = folder / f"{program}.log"
    log.unlink(missing_ok=True)
    env = {"PATH": str(folder / "bin"), "STUB_LOG": str(log), "HOME": str(folder)}
    done = subprocess.run(
        [shutil.which(program), "-c", line], cwd=folder, env=env, capture_output=True, text=True, timeout=30
    )
    calls = [entry.split("\x1f") for entry in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, calls, done.stderr


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stubs")
    for name in [*PROGRAMS, "scripts/slurm_cluster.sh"]:
        path = folder / ("bin" if "/" not in name else "") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(STUB)
        path.chmod(0o755)
    (folder / "outputs" / "multirun" / RUN).mkdir(parents=True)  # what `outputs/multirun/*` matches
    return folder


def test_every_documented_command_means_the_same_in_bash_and_zsh(stubs):
    lines = documented_lines()
    assert len(lines) > 60 and sum("'plugins=[" in line for _, line in lines) >= 3
    assert sum(doc == "--help" for doc, _ in lines) >= 15
    for doc, line in lines:
        code, calls, err = stubbed_calls(line, "bash", stubs)
        assert code == 0 and calls, f"{doc}: {line}\n{err}"
        code, zsh_calls, err = stubbed_calls(line, "zsh", stubs)
        assert code == 0 and zsh_calls == calls, f"{doc}: zsh reads it otherwise: {line}\n{err}"


SUBCOMMANDS_ON_RUNS = {"eval", "predict", "export", "compare", "report", "board"}  # the tour runs them


def documented_dlbench_calls(stubs: Path) -> list[list[str]]:
    calls = []
    for _, line in documented_lines():
        calls += [args[1:] for args in stubbed_calls(line, "bash", stubs)[1] if args[0] == "dlbench"]
    return [args for number, args in enumerate(calls) if args not in calls[:number]]


def write_extending_examples(folder: Path) -> None:
    """The plugin files and the preset docs/extending.md shows, from its own code blocks."""
    for _, text in blocks("python") + blocks("yaml"):
        named = re.search(r"^# ((configs/)?[\w/]+\.(py|yaml))", text, re.M)
        if named:
            (folder / named.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (folder / named.group(1)).write_text(text)
    (folder / "table.csv").write_text(
        "x,y,kind\n" + "".join(f"{i},{i % 3},{'ab'[i % 2]}\n" for i in range(40))
    )


CHECK = """
import json, os, shutil, sys, tempfile
from dlbench import cli, preflight
from dlbench.errors import DlbenchError
here = os.getcwd()
failed = []
for args in json.loads(sys.argv[1]):
    try:
        if args[:1] == ["new"]:  # in a folder of its own (two docs make `mine`), kept where new here
            os.chdir(tempfile.mkdtemp())
            code = cli.main(args)
            keep = lambda a, b: os.path.exists(b) or shutil.copy(a, b)  # noqa: E731
            shutil.copytree(".", here, dirs_exist_ok=True, copy_function=keep)
            os.chdir(here)
        elif args[:1] in (["list"], ["--help"]) or "--cfg" in args:
            code = cli.main(args)
        elif args[:1] in ({on_runs},):
            code = 0
        elif args[:1] == ["lr-find"]:  # its overrides (it is run by tests/test_toolkit.py)
            preflight.check_command([a for a in args[1:] if "=" in a and a[:1] != "-"], mode="print")
            code = 0
        else:  # a run, a sweep (each of its jobs, with a preset's own swept values), the model
            # `show` builds (it is tested on its own)
            overrides = [a for a in args if a not in ("-m", "--multirun", "show")]
            swept = "-m" in args or "--multirun" in args
            preflight.check_command(overrides, mode="multirun" if swept else "print")
            code = 0
        if code:
            failed.append((args, f"exit {{code}}"))
    except (DlbenchError, SystemExit) as err:
        failed.append((args, str(err)))
print("FAILED", json.dumps(failed))
"""


def test_every_documented_dlbench_command_is_valid(stubs, tmp_path):
    calls = documented_dlbench_calls(stubs)
    assert len(calls) > 50
    write_extending_examples(tmp_path)
    script = CHECK.format(on_runs=", ".join(f"[{c!r}]" for c in sorted(SUBCOMMANDS_ON_RUNS)))
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(calls)],
        cwd=tmp_path, env=user_env(COLUMNS="120"), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert "FAILED" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    failed = json.loads(done.stdout.rsplit("FAILED", 1)[1])
    assert not failed, "\n".join(f"dlbench {shlex.join(a)}: {e}" for a, e in failed)


def documented_errors() -> list[tuple[str, list[str]]]:
    """(command, the lines of its error) of each `$ dlbench ...` a doc shows failing: its
    `error:` line and those below it up to the next command."""
    found = []
    for _, text in blocks(""):
        pattern = r"^\$ (dlbench .*?)\n(?:\s+.*\n)*?(error: .*(?:\n(?!\$ ).+)*)"
        for command, error in re.findall(pattern, text, re.M):
            found.append((command, error.splitlines()))
    for doc in DOCS:  # and in the prose: `dlbench ...` → `error: ...` (the README's said an older text)
        for command, error in re.findall(r"`(dlbench [^`]*)`\s*→\s*`(error: [^`]*)`", doc.read_text()):
            found.append((command, [error]))
    return found


def test_every_documented_error_is_what_dlbench_prints(tmp_path):
    """Every line as printed, the doc's line breaks aside (it may wrap a long line); `...`
    stands for the rest of a line. (A review: the doc's list of trainer's keys was an older
    one; only the first line was compared.)"""
    errors = documented_errors()
    assert len(errors) >= 3
    for command, lines in errors:
        result = shell(command, tmp_path)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        words = [r"[^\n]*" if w == "..." else re.escape(w) for w in " ".join(lines).split()]
        printed = result.stderr[result.stderr.index("error: ") :]
        assert re.match(r"\s+".join(words), printed), (command, lines, printed)


def test_what_new_prints_runs_when_pasted(tmp_path):
    made = shell("dlbench new model my_net && dlbench new experiment mine --from iris_mlp", tmp_path)
    hints = re.findall(r"(?:train|run) it with\s+(dlbench .*)$", made.stdout, re.M)
    assert hints == ["dlbench 'plugins=[my_net]' model=my_net", "dlbench experiment=mine"], made.stdout
    preset = (tmp_path / "configs" / "experiment" / "mine.yaml").read_text()
    assert preset.startswith("# @package _global_\n# dlbench experiment=mine") and "name: mine" in preset
    again = shell("dlbench new model my_net", tmp_path)
    assert again.returncode == 2 and "exists" in again.stderr  # nothing is written over
    mine = shell("dlbench new experiment mine", tmp_path)  # (one of the user's own: no command was given)
    assert mine.returncode == 2 and "(choose another name: dlbench new experiment my_mine --from mine)" in (
        mine.stderr
    )
    assert shell("dlbench new experiment my_mine --from mine", tmp_path).returncode == 0
    # (a preset's file that is a link to nothing: 'unexpected error: AttributeError', a review)
    (tmp_path / "configs" / "experiment" / "ghost.yaml").symlink_to(tmp_path / "nowhere.yaml")
    ghost = shell("dlbench new experiment my_ghost --from ghost", tmp_path)
    assert ghost.returncode == 2 and "Unknown experiment 'ghost'" in ghost.stderr, ghost.stderr
    shadow = shell("dlbench new experiment iris_mlp", tmp_path)  # (the digits template under a preset's name)
    start = shadow.stderr.split("Choose a name of your own: ", 1)[1].strip()
    assert shadow.returncode == 2 and start == "dlbench new experiment my_iris_mlp --from iris_mlp"
    other = shell("dlbench new experiment digits_mlp --from iris_mlp", tmp_path)  # (the default's name)
    assert other.returncode == 2 and "dlbench new experiment my_digits_mlp --from iris_mlp" in other.stderr
    made = {p.name for p in (tmp_path / "configs" / "experiment").iterdir()}
    assert not {"iris_mlp.yaml", "digits_mlp.yaml"} & made
    assert shell(start, tmp_path).returncode == 0
    assert "name: my_iris_mlp" in (tmp_path / "configs" / "experiment" / "my_iris_mlp.yaml").read_text()
    quiet = "trainer.epochs=1 trainer.progress=none"
    folders = ["run 0", "run,1"]  # (a comma: Hydra reads a list unless the value is quoted)
    for folder, hint in zip(folders, hints, strict=True):
        result = shell(f"{hint} {quiet} hydra.run.dir=\"'{folder}'\"", tmp_path, program="zsh")
        assert result.returncode == 0, (hint, result.stderr[-2000:])
        assert (tmp_path / folder / "metrics.json").is_file()
    again = shell(f"dlbench {quiet} hydra.run.dir='run 0'", tmp_path)  # a folder that holds a run
    hint = re.search(r"Continue it with: (dlbench .*?)  \(", again.stderr).group(1)
    assert hint == "dlbench 'resume=run 0'"  # (a path with a space, quoted)
    refused = shell(hint, tmp_path, program="zsh")  # run 0 needs my_net: the next hint names it
    hint = refused.stderr.split("name them yourself: ", 1)[1].strip()
    assert hint == "dlbench 'resume=run 0' 'plugins=[my_net]'", refused.stderr
    resumed = shell(f"{hint} trainer.epochs=2", tmp_path, program="zsh")
    assert resumed.returncode == 0 and "resumed at epoch 1" in (tmp_path / "run 0" / "train.log").read_text()
    again = shell(f"{hints[0]} {quiet} hydra.run.dir='run 0'", tmp_path)  # (the plugins typed: given back)
    assert "Continue it with: dlbench 'resume=run 0' 'plugins=[my_net]'  (" in again.stderr, again.stderr
    again = shell(f"dlbench experiment=mine {quiet} hydra.run.dir=\"'run,1'\"", tmp_path)
    hint = re.search(r"Continue it with: (dlbench .*?)  \(", again.stderr).group(1)
    resumed = shell(f"{hint} trainer.epochs=2", tmp_path, program="zsh")  # (it was Hydra's sweep error)
    assert resumed.returncode == 0, (hint, resumed.stderr[-2000:])
    assert "resumed at epoch 1" in (tmp_path / "run,1" / "train.log").read_text()
    # in a run's folder, whose configs/ dlbench does not read, its hint would fail: refused
    inside = shell("dlbench new experiment other", tmp_path / "run 0")
    assert inside.returncode == 2 and "make your preset in your project's folder" in inside.stderr
    assert not (tmp_path / "run 0" / "configs").exists()


def test_board_names_a_run_by_its_filled_name_and_overrides(tmp_path):
    from dlbench.commands.board import named_runs

    for folder, overrides in (
        ("digits_linear/2026-01-01_12-00-00_ab12cd", ["model=linear", "optimizer.lr=0.1"]),
        (
            "digits_linear/2026-01-01_13-00-00_cd34ef",
            [f"resume={tmp_path}/x/checkpoints/last.pt", "trainer.epochs=9"],
        ),
        ("digits_linear/with,comma", []),
        ("multirun/a/0", ["optimizer.lr=0.1"]),  # (two sweeps of one grid: one hid the other)
        ("multirun/b/0", ["optimizer.lr=0.1"]),
        (
            "multirun/c/optimizer=adam,trainer.epochs=2",
            ["optimizer=adam", "trainer.epochs=2"],
        ),  # (a lesson's)
    ):
        run = tmp_path / "outputs" / folder
        (run / ".hydra").mkdir(parents=True)
        (run / "tb").mkdir()
        (run / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
        config = {
            "name": "${dataset.name}_${model.name}",
            "dataset": {"name": "digits"},
            "model": {"name": "linear"},
        }
        (run / ".hydra" / "config.yaml").write_text(json.dumps(config))
        (run / ".hydra" / "overrides.yaml").write_text(json.dumps(overrides))
    named = named_runs(tmp_path / "outputs")
    assert sorted(named) == [
        "digits_linear [with;comma]",  # (TensorBoard's separators replaced: test_trust.py)
        "digits_linear model=linear optimizer.lr=0.1 [ab12cd]",
        "digits_linear optimizer.lr=0.1 [0]",
        "digits_linear optimizer.lr=0.1 [multirun/b/0]",
        "digits_linear optimizer=adam trainer.epochs=2",
        "digits_linear trainer.epochs=9 (resumed) [cd34ef]",
    ]


def test_a_run_refused_before_it_begins_leaves_nothing_and_an_offline_download_says_what_next(cli, tmp_path):
    result = cli("dataset=mnist", "model=linear", "dataset.url=http://127.0.0.1:9/", "trainer.epochs=1")
    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "Could not download http://127.0.0.1:9/train-images-idx3-ubyte.gz into data/MNIST/raw" in message
    assert "put it in data/MNIST/raw as train-images-idx3-ubyte.gz" in message
    assert "dataset.download=false" in message and "docs/data.md" in message
    assert not (tmp_path / "data").exists() and not (tmp_path / "outputs").exists()
    (tmp_path / "mine").mkdir()  # a folder the user named is kept, with what went wrong in it
    result = cli("device=mps", "hydra.run.dir=mine")  # (no Apple GPU on Linux)
    assert result.returncode == 2 and "not available" in result.stderr
    assert (tmp_path / "mine" / "error.txt").is_file() and not (tmp_path / "outputs").exists()
    # a folder with ${ in its path, as dlbench writes it for Hydra: refused in one line (Hydra's log
    # file name read it again as an interpolation: 'unexpected error')
    result = cli(override("hydra.run.dir", "runs/c${d}"), "trainer.epochs=1")
    assert result.returncode == 2 and "a folder whose path holds '${' cannot hold a run" in result.stderr
    assert not (tmp_path / "runs").exists()
    odd = tmp_path / "p${oc.env:HOME}"  # (a run's files went under $HOME, its log line an error)
    odd.mkdir()
    for sweep in ([], ["-m"]):  # (a sweep's job wrote its files in a folder elsewhere)
        result = cli(*sweep, "trainer.epochs=1", cwd=odd)
        assert result.returncode == 2 and "a folder whose path holds '${' cannot" in result.stderr
        assert not any(odd.iterdir())
    result = cli("hydra.run.dir=runs/${nothing}", "trainer.epochs=1")  # (it was 'unexpected error')
    assert result.returncode == 2 and "hydra.run.dir: InterpolationKeyError" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_tables_keep_every_name_and_value_whole_at_40_80_and_200_columns_and_in_a_pipe():
    """list (experiments, a component's keys), the final metrics and a sweep's summary (also
    what compare prints): at any terminal width, and off a terminal, every cell of a column
    that is not free text, and each line of the title, appears whole; a description gives way
    instead."""
    import io

    from dlbench import summary
    from dlbench.commands.listing import component_table, experiments_table
    from dlbench.engine.logging import metrics_table
    from dlbench.registry import MODELS
    from dlbench.terminal import InertConsole

    rows = [
        {"job": str(n), "overrides": f"optimizer={o} optimizer.lr={lr} model=mlp", "status": "ok",
         "words": [f"optimizer={o}", f"optimizer.lr={lr}", "model=mlp"],
         "test/acc": 0.912345 + n, "test/loss": 0.25 * n, "val/acc": 0.9, "val/loss": 1e-5}
        for n, (o, lr) in enumerate([("sgd", 0.1), ("adam", 0.001), ("rmsprop", 0.01)])
    ]  # fmt: skip
    metrics = {"train/loss": 0.123456, "time/train_samples_per_s": 31655.5, "test/balanced_acc": 0.7025}
    builders = [
        experiments_table,
        lambda: component_table(MODELS, "resnet"),
        lambda: metrics_table(
            metrics, title=f"Test metrics of outputs/flowers/{'2026-12-06_09-46-10_' * 3}/last.pt"
        ),
        lambda: summary.table(rows, "Sweep summary (3 jobs)"),
    ]
    for width, terminal in ((40, True), (80, True), (200, True), (100_000, False)):
        for build in builders:
            table, out = build(), io.StringIO()
            InertConsole(file=out, width=width, force_terminal=terminal, color_system=None).print(table)
            text = out.getvalue()
            for column in table.columns:
                if getattr(column, "gives_way", False):
                    continue
                for cell in column.cells:
                    assert str(getattr(cell, "plain", cell)) in text, (width, column.header, cell)
            for line in table.title.plain.splitlines():  # (a path in a title was split: a review)
                assert line in text, (width, line)
            if width == 80 and build is experiments_table:  # a list reads at 80 columns
                assert max(map(len, text.splitlines())) <= 80


def test_a_preset_cut_short_says_so_beside_its_figures(cli):
    result = cli("experiment=iris_mlp", "trainer.epochs=2", "trainer.progress=none")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "note: iris_mlp trained 2 of its 10,000 epochs" in " ".join(result.stdout.split())
    assert "threads" not in result.stdout  # (how many CPU threads: a debug line, not the user's concern)


def test_extendings_project_trains_and_its_run_commands_and_python_run_as_pasted(tmp_path):
    """docs/extending.md's own files (my_models.py, my_data.py, the flowers preset) train; its
    commands on a trained run run as written (outputs/flowers: its newest run), its Python block
    with `<run>` filled in. (A review: its
    my_data.py was a sketch, `...` bodies, that failed once trained; the Python block used
    torch without importing it.)"""
    from PIL import Image

    write_extending_examples(tmp_path)
    trained = shell("dlbench experiment=flowers trainer.progress=none", tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = (tmp_path / "outputs" / "flowers").iterdir()
    Image.new("RGB", (12, 12), (200, 200, 200)).save(tmp_path / "photo.png")
    extending = [text for doc, text in blocks("bash") if doc == "extending.md"]
    (on_run,) = [text for text in extending if "dlbench eval outputs/flowers " in text]
    lines = [line.split("  #")[0] for line in on_run.splitlines()]
    pasted = shell(" && ".join(lines) + " && ls model.yaml", tmp_path)
    assert pasted.returncode == 0 and "test/acc" in pasted.stdout, pasted.stderr[-2000:]
    assert f"holds runs: using the one checkpointed last, outputs/flowers/{run.name}" in pasted.stderr
    (python,) = [text for doc, text in blocks("python") if doc == "extending.md" and "dlbench.train(" in text]
    done = subprocess.run(
        [sys.executable, "-c", python.replace("<run>", run.name) + "\nprint('ran', sorted(state))"],
        cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "ran ['1.bias', '1.weight'" in done.stdout, done.stderr[-2000:]


TRAIN_RUNS = """
from dlbench import cli
quick = ["trainer.epochs=1", "trainer.progress=none"]
for args in ([], ["experiment=cnn_mnist"], ["experiment=name2lang_rnn"], ["-m", "optimizer.lr=0.1,0.01"]):
    assert cli.main([*args, *quick]) == 0, args
"""


def test_helps_examples_on_runs_run_as_printed(tmp_path):
    """`dlbench --help`'s examples that act on saved runs (compare, resume, eval, predict) run
    exactly as printed, once the runs they name exist: outputs/NAME means its newest run, so
    they hold no placeholder to fill in (they held `<run>`, which bash reads as a redirection).
    The data the presets download is written where they look (./data), as files a download
    leaves; the runs are trained for one epoch first."""
    import torch
    from formats import write_mnist, write_names
    from PIL import Image

    from dlbench.cli import EXAMPLES

    write_mnist(tmp_path / "data")
    write_mnist(tmp_path / "data", folder="FashionMNIST")
    write_names(tmp_path / "data")
    Image.new("L", (28, 28), 255).save(tmp_path / "my_digit.png")
    trained = subprocess.run(  # (in one process: the examples below are what is timed as pasted)
        [sys.executable, "-c", TRAIN_RUNS], cwd=tmp_path, env=user_env(), capture_output=True, text=True
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    printed = [re.split(r"\s{2,}", line.strip())[0] for line in EXAMPLES.splitlines()]
    on_runs = [line for line in printed if "outputs/" in line]
    assert len(on_runs) == 5 and not any("<" in line for line in printed)
    for line in on_runs:
        result = shell(line, tmp_path)
        assert result.returncode == 0, f"{line}\n{result.stdout[-1000:]}\n{result.stderr[-2000:]}"
        if "multirun" not in line:
            assert "holds runs: using the one checkpointed last, outputs/" in result.stderr, line
    (run,) = (tmp_path / "outputs" / "digits_mlp").iterdir()  # resumed in its own folder, to epoch 20
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["trainer"]["epoch"] == 20


def test_a_command_printed_on_a_narrow_terminal_is_one_line_and_pastes(tmp_path):
    """On a terminal, rich broke a long line at its width: the `Run all:` command (and the sweep
    hints, the notes) came out as three lines, and a paste of the first ran `dlbench -m` alone.
    Every line dlbench prints is now soft-wrapped (the terminal wraps it for the eye)."""
    import os
    import pty

    leader, follower = pty.openpty()
    args = ["experiment=optimizers", "trainer.epochs=1", "trainer.progress=none", "--cfg", "job"]
    env = user_env(COLUMNS="50", TERM="xterm")
    process = subprocess.Popen(
        [sys.executable, "-m", "dlbench", *args], cwd=tmp_path, env=env, stdout=follower, stderr=follower
    )
    os.close(follower)
    printed = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # (the process has closed the terminal)
            break
        if not chunk:
            break
        printed += chunk
    os.close(leader)
    assert process.wait(timeout=60) == 0
    lines = printed.decode().replace("\r\n", "\n").splitlines()
    note = next(line for line in lines if "is a sweep" in line)
    command = note.split("Run all: ", 1)[1]
    assert command == "dlbench -m " + " ".join(args[:3]), lines[:5]  # (whole: the sweep's pastes run it)


def test_a_value_hydra_cannot_read_unquoted_gets_the_word_quoted_and_it_pastes(tmp_path):
    """`name=abc_ü` was Hydra's lexer error alone (unquoted, a value is ASCII words): the message
    now gives the word in quotes, which pasted in its place reads as the text typed."""
    # (a=b: a second = wants quotes too; it's: its quote, in double quotes, which read as typed)
    for typed, value in [("abc_ü", "abc_ü"), ("a=b", "a=b"), ('"it\'s"', "it's")]:
        refused = shell(f"dlbench name={typed} --cfg job", tmp_path)
        assert refused.returncode == 2 and "Cannot read the command line" in refused.stderr
        word = refused.stderr.split(f"In quotes, name={value} reads as text: ", 1)[1].strip()
        pasted = shell(f"dlbench {word} --cfg job", tmp_path)
        assert pasted.returncode == 0 and f"name: {value}\n" in pasted.stdout, pasted.stderr[-2000:]


def test_a_config_dir_given_to_another_command_gets_the_command_that_names_it_and_it_pastes(tmp_path):
    """`--config-dir` is training's flag; `list`, `eval`, ... said "Unknown list kind" or their
    usage. They now give the command with the folder in DLBENCH_CONFIG_PATH, which lists it."""
    (tmp_path / "my confs" / "experiment").mkdir(parents=True)
    preset = "# @package _global_\ntrainer:\n  epochs: 1\n"
    (tmp_path / "my confs" / "experiment" / "mine.yaml").write_text(preset)
    refused = shell("dlbench list experiments --config-dir 'my confs'", tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert "mine" not in refused.stdout
    printed = refused.stderr.split("Name yours there: ", 1)[1].strip()
    pasted = shell(printed, tmp_path)
    assert pasted.returncode == 0 and "mine" in pasted.stdout, (printed, pasted.stderr)
    board = shell("dlbench board -cd x", tmp_path)
    assert board.returncode == 2 and "dlbench board reads no config folder" in board.stderr
    # (a review: an option's value, or no folder, gave a command that did not paste)
    new = shell("dlbench new experiment x --from -cd", tmp_path)
    assert new.returncode == 2 and "takes no -cd" not in new.stderr and "Unknown experiment" in new.stderr
    bare = shell("dlbench list -cd", tmp_path)
    assert "set DLBENCH_CONFIG_PATH to your config folder" in bare.stderr and "Name yours" not in bare.stderr
