"""Issue 23: saved runs are data, printed text is inert, a failed resume changes nothing.

Each hole the issue found has an example test here, written as a hostile user would break the
promise; tests/test_fuzz.py feeds generated values into the same surfaces."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from conftest import user_env
from formats import write_image_folder, write_names

from dlbench import cli as dlbench_cli
from dlbench import compose, plugins
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.terminal import inert
from dlbench.training import train

QUIET = ["trainer.progress=none", "trainer.epochs=1"]
HOSTILE = [
    "[link=https://example.com]click[/link]",  # rich markup: a live hyperlink
    "[/x]",  # a closing tag: rich's MarkupError
    "\x1b]0;pwned\x07",  # OSC: sets the terminal's title
    "\x1b[2J\x1b[H",  # clears the screen
    "evil\r\x1b[1Aok",  # rewrites the line above
    "\u202eexe.txt",  # a right-to-left override
]


def dlbench(capsys, *args: str) -> tuple[int, str, str]:
    """dlbench's own entry point in this process: (exit status, stdout, stderr)."""
    try:
        code = dlbench_cli.main(list(args))
    except SystemExit as stop:  # a run's exit status
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def digest(folder: Path) -> dict[str, str]:
    """Every file of a folder, its log included, and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def controls(text: str) -> set[str]:
    """The control characters in printed text, but line breaks (terminal.inert's rule), and lone
    surrogates (a file name's non-UTF-8 bytes: written out, \\udc9b is the raw C1 byte 0x9b)."""
    return {
        c
        for c in text
        if c != "\n" and (c in "\x7f" or ord(c) < 32 or 0x80 <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000)
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished run of the default experiment, started from the command line (so it has
    its train.log); each test copies it."""
    folder = tmp_path_factory.mktemp("trusted") / "run"
    code = dlbench_cli.main([*QUIET, f"hydra.run.dir={folder}"])
    assert code == 0 and (folder / "train.log").is_file()
    return folder


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def planted(tmp_path, monkeypatch) -> Path:
    """A module `planted` (and the file planted.py) in the current folder whose import writes a
    file: the canary of code a saved run would make dlbench run."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    (tmp_path / "planted.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    yield marker
    sys.modules.pop("planted", None)
    sys.modules.pop("dlbench_plugin_planted", None)


# ---- 1, 2. a saved run names no code and no file -------------------------------------------------


def test_a_saved_run_that_declares_a_model_larger_than_its_weights_is_refused_before_it_is_built(
    capsys, run, tmp_path
):
    """Someone's run whose settings declare `model.hidden=[100000000000]` (25 TB of weights)
    beside weights of 128 units: eval, resume, predict, export and load_model built that model
    first and stopped on its allocation ("out of memory"), or took the few GB of one that fits.
    Now each finds it on the "meta" device, which takes no memory, and says it does not fit."""
    from dlbench import load_model

    huge = "model.hidden=[100000000000]"
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(yaml.safe_dump([*QUIET, huge]))
    state = checkpoint.load(run)
    config = yaml.safe_load(state["config"])
    config["model"]["hidden"] = [100000000000]
    state["config"] = yaml.safe_dump(config)
    torch.save(state, run / "checkpoints" / "last.pt")
    exported = tmp_path / "export"
    exported.mkdir()
    torch.save({k.removeprefix("model."): v for k, v in state["task"].items()}, exported / "m.pt")
    spec = {"model": config["model"], "data": state["data"], "plugins": [], "from": str(run), "format": "pt"}
    (exported / "m.yaml").write_text(yaml.safe_dump(spec))
    before = digest(run)
    for command in (
        ["eval", str(run)],
        [f"resume={run}", "trainer.epochs=2", huge],
        ["predict", str(run), "digit.png"],
        ["export", str(run), "--out", str(tmp_path / "model.pt")],
    ):
        code, out, err = dlbench(capsys, *command)
        assert code == 2 and "not fit" in err and "memory" not in err, (command, err)
        assert "[100000000000,64]" in err.replace(" ", ""), err  # (torch's size mismatch, named)
    for path in (run, exported / "m.pt"):
        with pytest.raises(DlbenchError, match="not fit") as refused:
            load_model(path)
        assert "memory" not in str(refused.value)
    assert digest(run) == before and not (tmp_path / "model.pt").exists()


class Planted:
    """A pickle that runs code when loaded (os.system through __reduce__)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_an_exported_model_that_holds_a_pickle_is_refused_and_the_api_takes_paths_only(run, tmp_path):
    """load_model on an export whose .pt holds a pickle said it "does not fit" the model, with
    torch's advice to load it with weights_only=False; load_model(None) and Run.open(5) were
    pathlib's TypeError."""
    from dlbench import Run, load_model

    assert dlbench_cli.main(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0
    marker = tmp_path / "PWNED"
    torch.save({"w": Planted(marker)}, tmp_path / "m.pt")
    with pytest.raises(DlbenchError, match="Refused to load .*could run code") as refused:
        load_model(tmp_path / "m.pt")
    assert "weights_only=False" not in str(refused.value) and not marker.exists()
    for value in (None, 5, b"/tmp", ""):
        for function in (load_model, Run.open):
            with pytest.raises(DlbenchError, match="takes a folder or file as a str or Path"):
                function(value)

    class Place:  # (a path-like object of another library's: read as its path)
        def __fspath__(self) -> str:
            return str(run)

    assert Run.open(Place()).folder == run.absolute() and load_model(Place()) is not None
    # (a folder of runs, as every command and load_model take it: "holds no finished run")
    runs = tmp_path / "outputs" / "name"
    shutil.copytree(run, runs / "older")
    newer = Path(shutil.copytree(run, runs / "newer"))
    os.utime(runs / "older" / "metrics.json", (1, 1))
    assert Run.open(runs).folder == newer.absolute()
    (runs / "multirun.yaml").write_text("{}\n")
    with pytest.raises(DlbenchError, match="name is a sweep: open one of its jobs"):
        Run.open(runs)


def test_a_saved_run_cannot_make_dlbench_import_code(capsys, run, planted, tmp_path):
    saved = run / ".hydra" / "overrides.yaml"
    loose = tmp_path / "loose.pt"
    for override in [
        f"plugins@x=[{tmp_path / 'planted.py'}]",  # a package override of plugins (the issue's)
        "plugins@x=[planted]",
        "+plugins@y=[planted]",
        "experiment=../../planted",  # a path, not an option
        "hydra.job.env_set.PYTHONSTARTUP=planted.py",
        "~trainer",
        "model.extra=${oc.env:HOME}",  # a resolver
    ]:
        saved.write_text(yaml.safe_dump([*QUIET, override]))
        before = digest(run)
        for command in (
            [f"resume={run}"],
            ["eval", str(run)],
            ["predict", str(run), "digit.png"],
            ["export", str(run), "--out", str(tmp_path / "model.pt")],
        ):
            code, out, err = dlbench(capsys, *command)
            assert code == 2, (override, command, err)
            assert f"{saved}: the saved override {override!r} is refused" in " ".join(err.split())
        assert digest(run) == before and not planted.exists() and not (tmp_path / "model.pt").exists()

        state = checkpoint.load(run)  # a checkpoint on its own: its own list of overrides
        state["overrides"] = [override]
        torch.save(state, loose)
        code, out, err = dlbench(capsys, f"resume={loose}")
        assert code == 2 and f"{loose}: the saved override" in err, err
        assert not planted.exists() and not (tmp_path / "outputs").exists()


def test_a_saved_experiment_is_one_of_the_users_presets_never_a_path(
    capsys, run, planted, tmp_path, monkeypatch
):
    code, out, err = dlbench(capsys, "new", "experiment", "mine")  # ./configs exists now
    assert code == 0, err
    (run / ".hydra" / "x.yaml").write_text("# @package _global_\nplugins: [planted]\n")
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(yaml.safe_dump(["experiment=../../run/.hydra/x", *QUIET]))
    for command in ([f"resume={run}"], ["eval", str(run)]):
        code, out, err = dlbench(capsys, *command)
        assert code == 2 and "the experiment is chosen by its name, never by a path" in err, err
    assert not planted.exists()
    saved.write_text(yaml.safe_dump(["experiment=mine", *QUIET]))  # a preset of ./configs: chosen again
    code, out, err = dlbench(capsys, "--cfg", "job", f"resume={run}")
    assert code == 2 and f"choose it yourself: dlbench --cfg job resume={run} experiment=mine" in err, err
    code, out, err = dlbench(capsys, "--cfg", "job", f"resume={run}", "experiment=mine")
    assert code == 0 and "name: mine" in out, err
    code, out, err = dlbench(capsys, "--cfg", "job", "--config-dir", "configs", f"resume={run}")
    assert code == 0 and "name: mine" in out, err  # (naming the folder makes its configs the user's)
    monkeypatch.setenv("DLBENCH_CONFIG_PATH", "configs")
    code, out, err = dlbench(capsys, "eval", str(run))
    assert code == 0 and "test/acc" in out, err


def test_a_sweep_folders_configs_are_not_read_as_the_users(capsys, run, planted, tmp_path, monkeypatch):
    """A review: in a sweep's folder (someone's results), its configs/ held a preset naming a
    plugin, and a job's saved experiment= chose it: `dlbench eval 0` imported the plugin."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    shutil.move(run, sweep / "0")
    (sweep / "configs" / "experiment").mkdir(parents=True)
    preset = "# @package _global_\ndefaults:\n  - digits_mlp\nplugins: [planted]\n"
    (sweep / "configs" / "experiment" / "pwn.yaml").write_text(preset)
    shutil.copy(tmp_path / "planted.py", sweep / "planted.py")
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=pwn", *QUIET]))
    monkeypatch.chdir(sweep)
    code, out, err = dlbench(capsys, "eval", "0")
    assert code == 2 and "experiment" in err and "pwn" in err, err
    assert not planted.exists()


def test_no_config_a_saved_run_chooses_makes_dlbench_import_code(capsys, run, planted, tmp_path, monkeypatch):
    """Two reviews: in a folder that holds someone's runs (not itself a run's or a sweep's), its
    configs/ named a plugin in a preset, and a run's saved experiment= chose it: eval, resume
    imported it; a preset so chosen set hydra.job_logging (a handler that wrote a shell line into
    ~/.bashrc) or hydra.job.env_set. Now a command that uses a saved run reads ./configs only
    where the user's own words choose a config there, and imports only the plugins they name,
    whatever group's file the saved settings choose and whatever it holds."""
    for group in ("experiment", "model", "optimizer"):
        (tmp_path / "configs" / group).mkdir(parents=True)
        (tmp_path / "configs" / group / "pwn.yaml").write_text("# @package _global_\nplugins: [planted]\n")
    written = tmp_path / "written.txt"
    (tmp_path / "configs" / "experiment" / "logs.yaml").write_text(
        "# @package _global_\nhydra:\n  job_logging:\n    handlers:\n      x:\n        class: "
        f"logging.FileHandler\n        filename: {written}\n    root:\n      handlers: [x]\n"
    )
    (tmp_path / "configs" / "experiment" / "mine.yaml").write_text("# @package _global_\nname: mine\n")
    saved = run / ".hydra" / "overrides.yaml"
    for override in ("experiment=pwn", "model=pwn", "optimizer=pwn", "experiment=logs"):
        saved.write_text(yaml.safe_dump([override, *QUIET]))
        before = digest(run)
        for command in (
            [f"resume={run}", "trainer.epochs=2"],
            ["--cfg", "job", f"resume={run}"],
            ["eval", str(run)],
            ["predict", str(run), "x.png"],
            ["export", str(run), "--out", "model.pt"],
        ):
            code, out, err = dlbench(capsys, *command)
            assert code in (0, 2) and not planted.exists() and not written.exists(), (override, command, err)
            if command[0] in ("eval", "--cfg") or command[0].startswith("resume="):
                said = " ".join(err.split())
                file = tmp_path / "configs" / override.replace("=", "/")
                assert code == 2 and f"this command would read {file}.yaml" in said, err
                hint = said.split("choose it yourself: ", 1)[1]  # (the user's command, the choice added)
                assert hint == f"dlbench {' '.join(command)} {override}", err
        assert digest(run) == before  # (export read the checkpoint's own config: model.pt, no plugin)
    # where the user's words choose a config there, a saved choice's plugins are still not theirs
    saved.write_text(yaml.safe_dump(["model=pwn", *QUIET]))
    code, out, err = dlbench(capsys, "--cfg", "job", f"resume={run}", "experiment=mine")
    said = " ".join(err.split())
    assert code == 2 and "a config this command reads names the plugins planted" in said, err
    assert said.endswith(f"dlbench --cfg job resume={run} experiment=mine 'plugins=[planted]'"), err
    # the user's own words choose the preset: theirs, imported (and forgotten after the test)
    monkeypatch.setattr(plugins, "_imported", dict(plugins._imported))
    code, out, err = dlbench(capsys, "--cfg", "job", f"resume={run}", "experiment=pwn")
    assert code == 0 and planted.exists(), err


def test_a_primary_config_in_configs_is_not_read_for_a_saved_run(capsys, run, planted, tmp_path):
    """A review: ./configs/config.yaml replaced the shipped one for every command, and its
    hydra.searchpath entry `pkg://planted` was imported while `eval` composed the run's config."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.yaml").write_text("hydra:\n  searchpath: [pkg://planted]\n")
    for command in (["eval", str(run)], ["--cfg", "job", f"resume={run}"]):
        code, out, err = dlbench(capsys, *command)
        assert code == 2 and "configs/config.yaml" in err and "another folder" in err, err
        assert not planted.exists()


def test_a_checkpoints_config_is_data_for_load_model(run, planted, tmp_path):
    import dlbench

    state = checkpoint.load(run)
    state["config"] = state["config"].replace("name: digits_mlp", "name: ${oc.env:HOME}")
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(DlbenchError, match="dlbench saves a run's config resolved"):
        dlbench.load_model(tmp_path / "edited.pt")
    state = checkpoint.load(run)
    state["plugins"] = ["planted"]
    torch.save(state, tmp_path / "planted.pt")
    with pytest.raises(DlbenchError, match="was trained with the plugins planted, and dlbench imports no"):
        dlbench.load_model(tmp_path / "planted.pt")
    assert not planted.exists()
    # (the error's text, which Python's traceback prints, held the name's escape as it was)
    state = checkpoint.load(run)
    state["config"] = state["config"].replace("name: mlp", 'name: "\\e[31mevil[bold red]x[/]"')
    torch.save(state, tmp_path / "named.pt")
    with pytest.raises(DlbenchError, match=r"\\x1b\[31mevil\[bold red\]x\[/\]") as refused:
        dlbench.load_model(tmp_path / "named.pt")
    assert not controls(str(refused.value))


# ---- 3, 4. a resume is checked whole before it writes; what it is given is applied or refused ---


def test_a_failed_resume_leaves_every_file_as_it_was(capsys, run):
    before = digest(run)  # train.log included
    for args, expected in [
        (["optimizer=sgd"], "optimizer.name: 'adam' -> 'sgd' (the optimizer's state was made by it)"),
        (["trainer.monitor=val/nope"], "trainer.monitor: 'val/loss' -> 'val/nope' (best.pt was chosen"),
        (["model=linear"], "model.name: 'mlp' -> 'linear' (the weights were made for it)"),
        (["dataset.batch_size=7", "trainer.seed=3"], "dataset.batch_size: 64 -> 7"),
    ]:
        code, out, err = dlbench(capsys, f"resume={run}", *args)
        assert code == 2 and "resume cannot change these settings" in err and expected in err, err
        assert digest(run) == before, args
    code, out, err = dlbench(
        capsys, f"resume={run}", "trainer.epochs=2", "trainer.checkpoint_budget=1"
    )  # it resumes
    assert code == 0, err
    assert checkpoint.load(run)["trainer"]["epoch"] == 2


def test_a_resume_from_a_checkpoint_behind_last_pt_never_writes_over_the_run(capsys, run):
    """A review: resume=RUN/checkpoints/best.pt (an earlier epoch) trained on in the run's own
    folder and wrote its shorter run over last.pt and metrics.json."""
    epoch_1 = (run / "checkpoints" / "last.pt").read_bytes()
    code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=2")
    assert code == 0, err
    (run / "checkpoints" / "best.pt").write_bytes(epoch_1)  # (as if epoch 1 had been the best)
    before = digest(run)
    best = run / "checkpoints" / "best.pt"
    code, out, err = dlbench(capsys, f"resume={best}", "trainer.epochs=3")
    said = " ".join(err.split())
    assert code == 2 and "the run's checkpoints/last.pt is further on" in said, err
    assert digest(run) == before
    hint = said.rsplit("in a new folder: add ", 1)[1]  # the word that trains on from it elsewhere
    code, out, err = dlbench(capsys, f"resume={best}", "trainer.epochs=3", *shlex.split(hint))
    assert code == 0 and digest(run) == before, err
    assert checkpoint.load(Path(f"{run}-from-best"))["trainer"]["epoch"] == 3


def test_compare_never_writes_over_a_runs_own_file(capsys, run):
    """A review: `compare RUN --csv RUN/metrics.csv` wrote its table over the run's own log
    (logger=csv's step,metric,value rows)."""
    (run / "metrics.csv").write_text("step,metric,value\n1,train/loss,0.5\n")
    before = digest(run)
    code, out, err = dlbench(capsys, "compare", str(run), "--csv", str(run / "metrics.csv"))
    assert (
        code == 2 and "metrics.csv exists, and dlbench never writes over it" in err and digest(run) == before
    ), err
    code, out, err = dlbench(capsys, "compare", str(run), "--csv", str(run / "table.csv"))
    assert code == 0 and (run / "table.csv").is_file(), err  # (a new file there is fine)
    mine = run.parent / "val_acc.png"  # (a file of the user's under the name --plot gives its figure)
    mine.write_text("mine\n")
    code, out, err = dlbench(capsys, "compare", str(run), "--plot", "val/acc", "--out", str(mine))
    assert code == 2 and "val_acc.png exists" in err and mine.read_text() == "mine\n", err
    code, out, err = dlbench(capsys, "compare", str(run), "--metrics", "test/accc")  # (an empty column)
    assert code == 2 and "no run has the metric 'test/accc'. Did you mean: test/acc" in err, err
    code, out, err = dlbench(capsys, "compare", str(run), "--metrics", "time/epoch_s,test/acc")
    assert code == 0 and "time/epoch_s" in out, err
    # (a run copied without its .hydra/: "not a run's folder", and the whole table refused)
    shutil.rmtree(run / ".hydra")
    code, out, err = dlbench(capsys, "compare", str(run), "--metrics", "test/acc")
    assert code == 0 and "test/acc" in out, err


def test_eval_measures_the_runs_own_model_and_task(capsys, run):
    """A review: `eval RUN task=regression` (or seq2seq, minimize) was an unexpected error."""
    before = digest(run)
    for override in ("task=regression", "task=seq2seq", "model.hidden=[3]", "+model.x=1"):
        code, out, err = dlbench(capsys, "eval", str(run), override)
        assert code == 2 and f"{override} would change them" in err, (override, err)
    code, out, err = dlbench(capsys, "eval", str(run), "dataset.batch_size=7")  # (what it may change)
    assert code == 0 and "test/acc" in out and digest(run) == before, err


def test_board_on_an_address_it_cannot_take_is_one_message(capsys, run):
    """A review: werkzeug printed a bare 'Cannot assign requested address' and exited 1."""
    code, out, err = dlbench(capsys, "board", str(run.parent), "--host", "8.8.8.8", "--port", "6006")
    assert code == 2 and "TensorBoard could not start on --host 8.8.8.8 --port 6006: Cannot assign" in err


def test_a_resume_applies_the_optimizer_settings_it_is_given(capsys, run):
    args = ["trainer.epochs=2", "optimizer.lr=0.5", "optimizer.weight_decay=0.3"]
    code, out, err = dlbench(capsys, f"resume={run}", *args)
    assert code == 0, err
    state = checkpoint.load(run)
    groups = state["optimizers"]["model"]["param_groups"]
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.5, 0.3)] * len(groups)
    assert state["trainer"]["metrics"]["train/lr"] == 0.5  # what the second epoch trained with
    recorded = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert recorded["optimizer"]["lr"] == 0.5 and recorded["optimizer"]["weight_decay"] == 0.3
    assert "optimizer.lr=0.5" in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())

    code, out, err = dlbench(capsys, f"resume={run}", "optimizer=adamw", "optimizer.weight_decay=0.3")
    assert code == 2 and "optimizer.name: 'adam' -> 'adamw'" in err, err


def test_a_schedule_refuses_a_new_length_or_lr_on_resume(capsys, tmp_path):
    folder = tmp_path / "cosine"
    assert dlbench_cli.main([*QUIET, "scheduler=cosine_annealing_lr", f"hydra.run.dir={folder}"]) == 0
    capsys.readouterr()
    before = digest(folder)
    for override, why in [
        ("trainer.epochs=3", "trainer.epochs: 1 -> 3 (scheduler=cosine_annealing_lr was built for the run's"),
        ("optimizer.lr=0.1", "optimizer.lr: 0.001 -> 0.1 (the schedule goes on from the lr it started with)"),
    ]:
        code, out, err = dlbench(capsys, f"resume={folder}", override)
        assert code == 2 and why in err, err
    assert digest(folder) == before


def test_held_log_lines_reach_the_file_only_when_the_run_is_built(tmp_path):
    import logging

    from dlbench.engine.logging import held_file_logs

    handler = logging.FileHandler(tmp_path / "train.log", delay=True)
    logging.getLogger().addHandler(handler)
    log = logging.getLogger("dlbench")
    try:
        with pytest.raises(RuntimeError), held_file_logs(tmp_path, keep_on_failure=False):
            log.warning("built half")
            raise RuntimeError("the resume failed")
        assert not (tmp_path / "train.log").exists()
        with held_file_logs(tmp_path) as release:
            log.warning("built")
            assert not (tmp_path / "train.log").exists()
            release()
            log.warning("training")
        handler.flush()
        assert (tmp_path / "train.log").read_text() == "built\ntraining\n"
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


# ---- 5. printed text is inert ---------------------------------------------------------------------


def test_compare_prints_values_names_and_overrides_as_text(capsys, run, tmp_path):
    sweep = tmp_path / "sweep"
    for i, value in enumerate([*HOSTILE, "text", None, [1, 2]]):
        job = sweep / f"{i}{HOSTILE[i % len(HOSTILE)][:12]}".replace("/", "|")  # a folder's name
        shutil.copytree(run / ".hydra", job / ".hydra")
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.note={value}"]))
        metrics = {"test/acc": value if i % 2 else 0.1 * i, "test/loss": 0.5, f"test/{value}": 1.0}
        (job / "metrics.json").write_text(json.dumps(metrics))
    code, out, err = dlbench(capsys, "compare", str(sweep), "--sort", "test/acc", "--metrics", "test/acc")
    assert code == 0, err
    assert not controls(out + err)
    for value in HOSTILE:
        assert inert(value) in out  # as text: the markup and the escapes readable
    rows = [line for line in out.splitlines() if line.startswith("│")]
    numbers = [
        float(cell) for line in rows if (cell := line.split("│")[-2].strip()).replace(".", "").isdigit()
    ]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) >= 5  # numbers first, best first


def test_class_names_labels_and_inputs_are_printed_as_text(capsys, tmp_path):
    languages = {"[bold]x": ["Smith", "Jones", "Brown"], "\x1b]0;t\x07": ["Kim", "Park", "Lee"]}
    write_names(tmp_path, {name: names * 4 for name, names in languages.items()})
    folder = tmp_path / "names_run"
    args = ["dataset=names", f"dataset.root={tmp_path}", "dataset.download=false", "model=rnn", *QUIET]
    code, out, err = dlbench(capsys, *args, f"hydra.run.dir={folder}")
    assert code == 0 and not (folder / "error.txt").exists(), err
    assert inert("\x1b]0;t\x07") in out and "[bold]x" in out and not controls(out + err)
    code, out, err = dlbench(capsys, "predict", str(folder), "[/x]", "Kim\x1b[2J", "--top-k", "2")
    assert code == 0, err
    assert "[/x]" in out and inert("Kim\x1b[2J") in out and not controls(out + err)
    code, out, err = dlbench(capsys, "predict", str(folder), "Kim", "--top-k", "-1")  # (was a RuntimeError)
    assert code == 2 and "argument --top-k: '-1' is not a whole number of at least 1" in err

    rows = ["x,y,label", *[f"{i % 3}.{i},{i % 2},{HOSTILE[i % 3]}" for i in range(60)]]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    csv_run = tmp_path / "csv_run"
    code, out, err = dlbench(
        capsys, "dataset=csv", f"dataset.path={tmp_path / 'table.csv'}", *QUIET, f"hydra.run.dir={csv_run}"
    )
    assert code == 0 and not (csv_run / "error.txt").exists(), err
    assert all(inert(label) in out for label in HOSTILE[:3]) and not controls(out + err)


def test_a_line_break_in_a_value_never_starts_a_line_dlbench_prints(capsys, run, tmp_path):
    """A folder, a file name or a metric name that holds a line break and a line as dlbench
    prints one: shown on its own line as \\x0a in the run's lines, the files it says it wrote,
    a comparison, and train.log (they printed the break: a fake `error:` line)."""
    fake = "q\nerror: FAKE"
    folder = tmp_path / fake
    code, out, err = dlbench(capsys, *QUIET, f"hydra.run.dir='{folder}'")
    assert code == 0, err
    code, more, err_more = dlbench(capsys, "export", str(folder), "--out", str(tmp_path / f"{fake}.pt"))
    assert code == 0, err_more
    (run / "metrics.json").write_text(json.dumps({"test/acc": 0.5, f"test/{fake}": 1.0}))
    code, compared, err_compare = dlbench(
        capsys, "compare", str(run), str(folder), "--csv", str(tmp_path / f"{fake}.csv")
    )
    assert code == 0, err_compare
    printed = out + err + more + err_more + compared + err_compare
    assert "Run directory:" in out and inert(str(folder)) in out and "wrote" in more
    assert not [line for line in printed.splitlines() if line.startswith("error: FAKE")], printed
    assert "\nerror: FAKE" not in (folder / "train.log").read_text()


def test_an_error_raised_in_a_data_loader_worker_keeps_its_lines_and_only_them():
    """torch passes a worker's error on as text: its lines are dlbench's, a line break inside
    one (a file's name) stays an escape (DlbenchError.__str__)."""
    from torch.utils.data import DataLoader, Dataset

    from dlbench.errors import DlbenchError, as_user_error

    class Unreadable(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int):
            raise DlbenchError("q\nerror: FAKE is not a readable image", "Its folder: x")

    with pytest.raises(DlbenchError) as raised:
        next(iter(DataLoader(Unreadable(), num_workers=1)))
    assert as_user_error(raised.value).lines == ("q\\x0aerror: FAKE is not a readable image", "Its folder: x")


def test_dlbenchs_own_text_is_printed_as_written(capsys, tmp_path, monkeypatch):
    code, out, err = dlbench(capsys, "--help")
    assert code == 0 and "dlbench 'plugins=[my_models]' model=tiny_net" in out
    monkeypatch.chdir(tmp_path)
    code, out, err = dlbench(capsys, "new", "model", "my_net")
    assert code == 0 and "dlbench 'plugins=[my_net]' model=my_net" in out, err


# ---- 6, 7. resource bombs and data that lies -----------------------------------------------------


def test_a_checkpoint_that_would_inflate_is_refused_before_it_is_read(capsys, tmp_path):
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\0" * (64 << 20))  # 64 MiB in about 64 KiB
        archive.writestr("bomb/version", "3\n")
    assert bomb.stat().st_size < 1 << 20
    code, out, err = dlbench(capsys, "eval", str(bomb))
    assert code == 2 and f"Refused to load {bomb}: its members declare 67,108,8" in err, err
    assert "bomb/data.pkl is compressed" in err


def test_yaml_whose_aliases_would_expand_is_refused(capsys, run, tmp_path):
    levels = [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    laughs = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]", *levels]) + "\n"  # 10**9 nodes
    state = checkpoint.load(run)
    state["config"] = laughs
    torch.save(state, tmp_path / "laughs.pt")
    code, out, err = dlbench(capsys, "eval", str(tmp_path / "laughs.pt"))
    assert code == 2 and "its 'config' is not the YAML text of a config" in err, err
    (run / ".hydra" / "overrides.yaml").write_text(laughs)
    for command in (["eval", str(run)], [f"resume={run}"]):
        code, out, err = dlbench(capsys, *command)
        assert code == 2 and "overrides.yaml is not readable YAML: an alias at line 2" in err, err
    code, out, err = dlbench(capsys, "compare", str(run))
    assert code == 0 and "(unreadable overrides.yaml)" in out, err


def test_an_image_folder_reads_each_real_file_once(tmp_path):
    images = tmp_path / "images"
    write_image_folder(images, per_class=4)
    args = ["dataset=image_folder", f"dataset.root={images}", *QUIET]
    dog = images / "train" / "dog"
    (dog / "loop").symlink_to(".", target_is_directory=True)  # dog/loop/loop/... forever
    with pytest.raises(DlbenchError, match=r"train/dog/loop leads back to .*train/dog \(a loop of symbolic"):
        train(compose.compose_config(args), tmp_path / "a")
    (dog / "loop").unlink()
    cat_image = sorted((images / "train" / "cat").iterdir())[0]
    (dog / "also_a_dog.png").symlink_to(cat_image)  # a cat's image, labelled dog too
    with pytest.raises(DlbenchError, match=r"cat/.*\.png and .*dog/also_a_dog.png are the same file"):
        train(compose.compose_config(args), tmp_path / "b")
    (dog / "also_a_dog.png").unlink()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(sorted(dog.iterdir())[0], outside / "linked.png")
    (dog / "linked").symlink_to(outside, target_is_directory=True)  # a linked folder, read once: fine
    metrics = train(compose.compose_config(args), tmp_path / "c")
    assert metrics["test/acc"] >= 0


# ---- 8. files dlbench did not make -----------------------------------------------------------------


def test_no_command_writes_over_a_file_dlbench_did_not_make(capsys, run, tmp_path):
    notes = tmp_path / "notes"
    (notes / ".hydra").mkdir(parents=True)
    (notes / ".hydra" / "config.yaml").write_text("my: notes\n")
    code, out, err = dlbench(capsys, *QUIET, f"hydra.run.dir={notes}")
    assert code == 2 and "dlbench never writes over a file it did not make there" in err, err
    assert (notes / ".hydra" / "config.yaml").read_text() == "my: notes\n"
    code, out, err = dlbench(capsys, "export", str(run), "--out", str(tmp_path / "same.yaml"))
    assert code == 2 and "name a .pt or .pth or .safetensors" in err and not (tmp_path / "same.yaml").exists()


# ---- 9. user mistakes exit 2, signals exit cleanly ---------------------------------------------------


def test_these_user_mistakes_exit_2_with_one_message(capsys, run, tmp_path, monkeypatch):
    out_dir = f"hydra.run.dir={tmp_path / 'out'}"
    for override, expected in [
        ("name=${hydra:job.name}", "run's name is its folder's: it must be known before the run starts"),
        ("name=${oc.select:hydra.runtime.cwd}", "run's name is"),
        ("name=../../..", "a run's name is one folder name under outputs/"),
        # (torch builds it; its step fails: it was an unexpected error, exit 1; then at step 1)
        ("+optimizer.differentiable=true", "a trial step before the run: Adam's step failed (its settings"),
    ]:
        code, out, err = dlbench(capsys, override, *QUIET, out_dir)
        assert code == 2 and expected in " ".join(err.split()) and "Traceback" not in err, err
    monkeypatch.chdir(tmp_path)
    for name, expected in [
        ("torch", "'torch' is the name of a Python module that exists"),
        ("dlbench", "'dlbench' is the name of a Python module that exists"),
        ("class", "'class' is a Python keyword"),
        ("mlp", "model 'mlp' exists already"),
    ]:
        code, out, err = dlbench(capsys, "new", "model", name)
        assert code == 2 and expected in err and not (tmp_path / f"{name}.py").exists(), err
    state = checkpoint.load(run)
    state["overrides"] = ["name=../../..", *QUIET]
    torch.save(state, tmp_path / "model.pt")
    code, out, err = dlbench(capsys, "resume=model.pt", "trainer.epochs=2")
    assert code == 2 and "the saved run names name=../../..:" in err, err
    assert not (tmp_path / "outputs").exists()


def caught_sigterm(pid: int) -> bool:
    """Whether a process has its own SIGTERM handler installed (/proc: SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def test_sigterm_before_the_run_is_built_is_a_clean_exit(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "dlbench", *QUIET, "hydra.run.dir=run"],
        cwd=tmp_path,
        env=user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not caught_sigterm(process.pid) and time.monotonic() < deadline:  # dlbench's handler is in
        time.sleep(0.002)
    process.send_signal(signal.SIGTERM)  # while torch and the config are still being loaded
    out, err = process.communicate(timeout=120)
    assert process.returncode in (128 + signal.SIGTERM, 75), err  # 75: it had begun the run
    assert "Traceback" not in err and "stopped by SIGTERM" in err
    if process.returncode == 128 + signal.SIGTERM:
        assert not (tmp_path / "run").exists() or not os.listdir(tmp_path / "run")


# ---- found by a red-team review of this change -----------------------------------------------------


def entries(folder: Path) -> dict[str, str]:
    """Every entry of a folder, without following links: a link's target, a file's hash."""
    out = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            out[name] = "-> " + os.readlink(path)
        elif path.is_file():
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[name] = "folder" if path.is_dir() else "other"
    return out


def test_links_fifos_and_odd_entries_in_a_shared_folder_are_refused(capsys, trained, tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("precious\n")
    elsewhere = tmp_path / "elsewhere"

    def replace(path: Path, make) -> None:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        make(path)

    for name, make in {
        ".lock": lambda p: p.symlink_to(victim),  # would be emptied and given a PID
        "train.log": lambda p: p.symlink_to(victim),  # would be appended to
        ".hydra": lambda p: (elsewhere.mkdir(), p.symlink_to(elsewhere)),  # rewritten there
        "tb": lambda p: p.write_text("not a folder"),
        "metrics.json": lambda p: os.mkfifo(p),  # a read would never end
    }.items():
        run = Path(shutil.copytree(trained, tmp_path / name.strip(".")))
        replace(run / name, make)
        before, log = entries(run), (run / "train.log").read_bytes() if name != "train.log" else b""
        code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=2")
        assert code == 2 and f"{run / name} is " in err and "never through what someone left" in err, err
        # (twice, in full runs, train.log differed here, in case tb: what was added is shown now)
        added = (run / "train.log").read_bytes()[len(log) :] if name != "train.log" else b""
        assert entries(run) == before and victim.read_text() == "precious\n", (name, added, err[-2000:])
        assert not elsewhere.exists() or not any(elsewhere.iterdir())
        assert dlbench(capsys, "compare", str(run))[0] == 0  # no file read through a FIFO (or a hang)

    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep / "0")
    (sweep / "0" / "metrics.json").unlink()
    (sweep / "multirun.yaml").symlink_to(victim)
    code, out, err = dlbench(capsys, "-m", *QUIET, f"sweep.resume={sweep}")
    assert code == 2 and f"{sweep / 'multirun.yaml'} is a symbolic link" in err, err
    (sweep / "multirun.yaml").unlink()
    shutil.move(sweep / "0", tmp_path / "outside_job")
    (sweep / "0").symlink_to(tmp_path / "outside_job")
    code, out, err = dlbench(capsys, "-m", *QUIET, f"sweep.resume={sweep}")
    assert code == 2 and f"{sweep / '0'} is a symbolic link" in err, err
    assert victim.read_text() == "precious\n" and not (tmp_path / "outside_job" / "metrics.json").exists()


def test_a_saved_run_chooses_no_data_folder_outside_and_unpacking_follows_no_link(capsys, run, tmp_path):
    import gzip

    from dlbench.data.download import extract

    saved = run / ".hydra" / "overrides.yaml"
    for place in (
        "dataset.root=/tmp/elsewhere",
        "dataset.root=data",  # relative, but a link in a shared folder can lead anywhere
        "dataset.root='/quoted'",
        "+dataset.archive=/tmp/evil",  # unpacked into the data folder
        "+dataset.path=/home/you/secrets.csv",  # read, and its columns printed
        "+task.judge=/tmp/other.pt",
        "logger.mlflow.tracking_uri=sqlite:////tmp/chosen/x.db",  # no place key: not a plain name
        "logger.mlflow.tracking_uri=http://203.0.113.9:5000",  # (the checkpoint would be uploaded)
        "logger.mlflow.tracking_uri=file:%2Ftmp%2Fevil",  # (MLflow decodes it to /tmp/evil)
        "logger.wandb.mode=online",  # (a resume uploaded the run, with the key of whoever resumed it)
    ):
        saved.write_text(yaml.safe_dump(["dataset=mnist", place]))
        code, out, err = dlbench(capsys, "eval", str(run))
        assert code == 2 and "dlbench takes no file, folder or address from a saved run" in err, err
        assert f"give it again: {place.replace(chr(39), '')}" in err, err  # (a + kept: Hydra needs it)
    # a place inside a value (a review's dict made MLflow write the checkpoint in a folder it chose)
    dicts = (
        "logger.mlflow={tracking_uri: evil_store, log_checkpoint: true}",
        "+model.x=[{data_dir: d}]",
        "logger.wandb={mode: online, project: p}",
    )
    for place in dicts:
        saved.write_text(yaml.safe_dump(["dataset=mnist", place]))
        code, out, err = dlbench(capsys, "eval", str(run))
        assert code == 2 and "dlbench takes no file, folder or address from a saved run" in err, err
        assert f"give it again: '{place}'" in err, err
    # a name dlbench takes is used again (a review's name=exp@2 was refused), as is a metric's
    saved.write_text(
        yaml.safe_dump(["name='exp@2,v=3'", "trainer.monitor=val/acc", "logger.wandb.mode=offline", *QUIET])
    )
    code, out, err = dlbench(capsys, "eval", str(run))
    assert code == 0, err
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.gz").write_bytes(gzip.compress(b"attacker's text\n"))
    (data / "labels").symlink_to(victim)
    with pytest.raises(DlbenchError, match="labels is a symbolic link"):
        extract(data / "labels.gz", data)
    assert victim.read_text() == "precious\n" and not list(data.glob(".unpacking-*"))


def test_a_resume_that_fails_late_or_on_odd_state_still_changes_nothing(capsys, run, tmp_path):
    leftover = (
        run / "checkpoints" / ".last.pt.x1y2z3.tmp"
    )  # a killed write's: removed by a run, not a refusal
    leftover.write_bytes(b"half")
    state = checkpoint.load(run)
    import copy

    # (an optimizer's settings of the wrong kind failed at the first step: after the run wrote)
    settings = [("lr", "x"), ("betas", None), ("eps", [1e-8]), ("maximize", "yes"), ("betas", (0.9,))]
    for damage in ("step", "scalers", *settings):
        edited = {**state, "trainer": {**state["trainer"], "step": 2**70}} if damage == "step" else state
        edited = {**edited, "scalers": [1, 2]} if damage == "scalers" else edited
        if isinstance(damage, tuple):
            edited = copy.deepcopy(state)
            edited["optimizers"]["model"]["param_groups"][0][damage[0]] = damage[1]
        torch.save(edited, run / "checkpoints" / "last.pt")
        before = digest(run)
        code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=2")
        assert code == 2 and "Traceback" not in err, err
        assert digest(run) == before
    for change, expected in [
        (["trainer.checkpoint=false"], "trainer.checkpoint: true -> false (its last.pt must go on holding"),
        (["+optimizer.amsgrad=true"], "optimizer.amsgrad: (not set) -> true"),
        (["dataset.augment.noise_std=0.5"], "dataset.augment.noise_std: 0.0 -> 0.5"),
    ]:
        code, out, err = dlbench(capsys, f"resume={run}", *change)
        assert code == 2 and expected in err, err
    torch.save(state, run / "checkpoints" / "last.pt")
    code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=2", "+optimizer.eps=0.1")
    assert code == 0, err
    assert checkpoint.load(run)["optimizers"]["model"]["param_groups"][0]["eps"] == 0.1
    assert not leftover.exists()


def test_more_odd_inputs_exit_2(capsys, run, tmp_path, monkeypatch):
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text("- " + "[" * 3000 + "]" * 3000 + "\n")  # nested 3,000 deep
    for command in (["eval", str(run)], ["compare", str(run)]):
        code, out, err = dlbench(capsys, *command)
        assert code in (0, 2) and "Traceback" not in err and "unexpected" not in err, err
    saved.write_text(yaml.safe_dump(QUIET))
    config = run / ".hydra" / "config.yaml"
    kept = config.read_text()
    config.write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")  # (board refused every run for it)
    code, out, err = dlbench(capsys, "report", str(run), "--out", str(tmp_path / "r.html"))
    assert code == 0 and (tmp_path / "r.html").is_file(), err
    config.write_text(kept)
    state = checkpoint.load(run)
    for key, value, expected in [
        ("data", {**state["data"], "input_shape": [-3]}, "the saved data facts are not a data set's"),
        ("config", state["config"].replace("task:\n", f"task:\n  judge: {tmp_path / 'self.pt'}\n", 1), None),
    ]:
        torch.save({**state, key: value}, tmp_path / "self.pt")
        code, out, err = dlbench(capsys, "predict", str(tmp_path / "self.pt"), "x.png")
        assert code == 2 and "unexpected" not in err and (expected is None or expected in err), err
    for override in ("model.hidden=[-1]", "trainer.epochs=${hydra.job.num}"):
        code, out, err = dlbench(capsys, override, *QUIET[:1], f"hydra.run.dir={tmp_path / 'new'}")
        assert code == 2 and "unexpected" not in err, err
    hostile = "trainer.monitor='val/\x1b]0;t\x07\u202eevil'"
    for flags in (["--help"], ["--info", "config"]):  # Hydra prints these itself
        code, out, err = dlbench(capsys, hostile, *flags)
        assert code == 0 and "\u202e" not in out + err and not controls(out + err), err
    saved.write_text(yaml.safe_dump([hostile]))  # saved, it is not a plain name: given again, or refused
    code, out, err = dlbench(capsys, f"resume={run}", "--help")
    assert code == 2 and "give it again: $'trainer.monitor=" in err and not controls(out + err), err
    shutil.copytree(run, tmp_path / "shared")
    evil = tmp_path / "shared" / "configs" / "experiment"  # a shared run folder with a preset in it
    evil.mkdir(parents=True)
    (evil / "evil.yaml").write_text("# @package _global_\nplugins: [planted]\n")
    (tmp_path / "shared" / "planted.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w')\n")
    (tmp_path / "shared" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=evil"]))
    monkeypatch.chdir(tmp_path / "shared")
    code, out, err = dlbench(capsys, "eval", ".")
    assert code == 2 and not (tmp_path / "PWNED").exists(), err
    sys.modules.pop("planted", None)


def test_more_of_a_shared_folder_is_refused_before_anything_is_written(capsys, trained, tmp_path):
    """The second red-team review: hard links, a linked run folder, a file where a sweep's job
    folder goes, a refusal that would remove files, TensorBoard file names that lie, an archive
    over your files, an --out that is a dangling link, YAML of megabytes, text that is not UTF-8."""
    notes = tmp_path / "notes.txt"
    notes.write_text("precious\n")
    run = Path(shutil.copytree(trained, tmp_path / "hard"))
    os.link(notes, run / ".lock")  # its contents are the notes'
    code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=2")
    assert code == 2 and "is a hard link" in err and notes.read_text() == "precious\n", err
    (run / ".lock").unlink()
    (run / ".lock").write_text("999999")  # a killed run's lock file: a refused resume leaves it there
    code, out, err = dlbench(capsys, f"resume={run}", "optimizer=sgd")
    assert code == 2 and (run / ".lock").is_file()
    (tmp_path / "link").symlink_to(run, target_is_directory=True)
    code, out, err = dlbench(capsys, f"resume={tmp_path / 'link'}", "trainer.epochs=2")
    assert code == 2 and "is a symbolic link" in err, err

    (run / "tb" / "events.out.tfevents.99999999999.host.1.0").write_bytes(b"")  # far in the future
    (run / "tb" / "events.out.tfevents.\u00b2.host").write_bytes(b"")  # a digit int() refuses
    code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=2")  # neither waits nor fails
    assert code == 0, err

    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep / "0")
    (sweep / "0" / "metrics.json").unlink()
    (sweep / "1").write_text("a file where a job's folder goes")
    (sweep / ".stop").write_text("job 0 failed")
    code, out, err = dlbench(capsys, "-m", *QUIET, f"sweep.resume={sweep}")
    assert code == 2 and f"{sweep / '1'} is a file where a job's folder goes" in err, err
    assert (sweep / ".stop").is_file()  # a refused sweep.resume removes nothing

    big = Path(shutil.copytree(trained, tmp_path / "big"))
    (big / ".hydra" / "overrides.yaml").write_text("- trainer.epochs=1\n" * 70_000)  # 1.3 MB
    code, out, err = dlbench(capsys, "eval", str(big))
    assert code == 2 and "more than a run's YAML" in err, err

    from dlbench.summary import collect, write

    odd = Path(shutil.copytree(trained, tmp_path / "odd"))
    (odd / "metrics.json").write_text(json.dumps({"test/acc": "\udcff", "test/loss": 0.5}))
    write(collect([odd]), tmp_path / "table.csv")  # a lone surrogate (bytes that are not UTF-8)
    assert "\\udcff" in (tmp_path / "table.csv").read_text()


def test_a_report_and_compare_read_no_file_through_a_link(capsys, run, trained, tmp_path):
    """A review: a shared run's .hydra/config.yaml linked to /proc/self/environ put the
    environment's secrets into the report's page, a page meant to be mailed."""
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-123: 1\n")
    (run / ".hydra" / "config.yaml").unlink()
    (run / ".hydra" / "config.yaml").symlink_to(secret)
    (run / "error.txt").symlink_to(secret)
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to(secret)
    code, out, err = dlbench(capsys, "report", str(run), "--out", str(tmp_path / "r.html"))
    assert code == 0 and "SECRET" not in (tmp_path / "r.html").read_text(), err
    code, out, err = dlbench(capsys, "compare", str(run))
    assert "SECRET" not in out + err
    # (a review: tb/ linked to another run's put its curves and pictures in the page; a sweep's
    # job folder linked to another run put that run's config in it)
    private = Path(shutil.copytree(trained, tmp_path / "private"))
    (private / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.00123456\n")
    shutil.rmtree(run / "tb")
    (run / "tb").symlink_to(private / "tb", target_is_directory=True)
    code, out, err = dlbench(capsys, "report", str(run), "--out", str(tmp_path / "t.html"))
    assert code == 0 and "<img" not in (tmp_path / "t.html").read_text(), err
    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep / "0")
    (sweep / "1").symlink_to(private, target_is_directory=True)
    code, out, err = dlbench(capsys, "compare", str(sweep))
    assert code == 0 and "0.00123456" not in out + err and "│ 0 " in out, out + err
    for events in (private / "tb").glob("*tfevents*"):  # (unreadable: it said "Available: (none)")
        events.write_bytes(b"\x00garbage")
    code, out, err = dlbench(
        capsys, "compare", str(private), "--plot", "val/acc", "--out", str(tmp_path / "p.png")
    )
    assert code == 2 and f"No curve could be read from {private / 'tb'}" in err, err


def test_no_output_file_is_written_through_a_link_and_no_archive_replaces_a_file(tmp_path):
    import tarfile

    from dlbench.data.download import extract
    from dlbench.tasks.gan import refuse_existing

    (tmp_path / "out.png").symlink_to(tmp_path / "nowhere" / "autostart.png")  # dangling
    with pytest.raises(DlbenchError, match="out.png exists; predict never writes over a file"):
        refuse_existing(tmp_path / "out.png")
    data = tmp_path / "data"
    (data / "src").mkdir(parents=True)
    (data / "src" / "my_models.py").write_text("print('theirs')\n")
    with tarfile.open(data / "evil.tar.gz", "w:gz") as tar:
        tar.add(data / "src" / "my_models.py", arcname="my_models.py")
    (data / "my_models.py").write_text("print('mine')\n")
    with pytest.raises(DlbenchError, match="my_models.py exists: dlbench unpacks an archive only into new"):
        extract(data / "evil.tar.gz", data)
    assert (data / "my_models.py").read_text() == "print('mine')\n"


def test_board_gives_tensorboard_each_runs_own_folder_whatever_its_name(tmp_path, trained):
    """A comma in a run's path split TensorBoard's list of runs (`x,leak:elsewhere` read as a
    second entry, a run named leak at ./elsewhere): such runs were skipped, and so was every
    job of a lesson sweep with an override (its folder `optimizer=adam,trainer.epochs=2`). Now
    given through a link whose path has no comma; TensorBoard's own reading of the list names
    exactly the runs' folders. A tb folder that is a link (to elsewhere) is not a run's."""
    from tensorboard.backend.event_processing.data_ingester import _parse_event_files_spec

    from dlbench.commands.board import named_runs, without_commas

    runs = tmp_path / "runs"
    shutil.copytree(trained, runs / "ok")
    shutil.copytree(trained, runs / "x,leak:elsewhere")
    (runs / "linked").mkdir()
    (runs / "linked" / "tb").symlink_to(trained / "tb", target_is_directory=True)
    named = named_runs(runs)
    assert sorted(named.values()) == [runs / "ok" / "tb", runs / "x,leak:elsewhere" / "tb"]
    (tmp_path / "links").mkdir()
    spec = ",".join(f"{name}:{path}" for name, path in without_commas(named, tmp_path / "links").items())
    assert _parse_event_files_spec(spec) == {str(path.resolve()): name for name, path in named.items()}


def test_an_override_with_no_key_is_a_user_error(capsys):
    """Found by the generated test: `+=x` reached an assertion inside Hydra (exit 1)."""
    for odd in ("+=planted", "=x", "+@pkg=x"):
        code, out, err = dlbench(capsys, odd)
        assert code == 2 and f"'{odd}' names no key" in err, (odd, err)


def test_a_checkpoints_schedule_that_cannot_step_is_refused_before_the_run_writes(capsys, tmp_path):
    """A crafted last.pt whose step_lr has step_size 0 (a number, of the right kind) failed at the
    epoch's end with an unexpected ZeroDivisionError, after the run had rewritten its folder."""
    run = tmp_path / "run"
    assert dlbench_cli.main([*QUIET, "scheduler=step_lr", f"hydra.run.dir={run}"]) == 0
    state = checkpoint.load(run)
    state["schedulers"]["model"]["step_size"] = 0
    torch.save(state, run / "checkpoints" / "last.pt")
    before = digest(run)
    code, out, err = dlbench(capsys, f"resume={run}", "trainer.epochs=3", "scheduler=step_lr")
    assert code == 2 and "does not fit" in err and "ZeroDivisionError" in err, err
    assert digest(run) == before


def test_a_resume_cannot_make_a_run_shorter_and_leaves_its_record(capsys, run):
    """A review: resume=RUN trainer.epochs=1 on a longer finished run exited 0 and rewrote its
    .hydra/config.yaml and metrics.json to say so, its last.pt still the longer run's."""
    done = checkpoint.load(run)["trainer"]
    before = digest(run)
    for shorter, said in (
        ([f"trainer.epochs={done['epoch'] - 1}"], f"the run has trained {done['epoch']} epochs"),
        ([f"trainer.max_steps={done['step'] - 1}"], f"the run has trained {done['step']} steps"),
    ):
        code, out, err = dlbench(capsys, f"resume={run}", *shorter)
        assert code == 2 and said in err and "cannot make a run shorter" in err, err
        assert digest(run) == before


def test_a_folder_of_runs_means_the_one_checkpointed_last_and_a_sweep_is_refused(capsys, trained, tmp_path):
    """`eval outputs/NAME` (checkpoint.find, the rule of every command on a run): the run whose
    last.pt was written last, whatever the names sort as, named on stderr, and said to be
    training while a run holds its lock; a sweep's folder is refused, naming a job (its jobs
    are not one run's attempts). Nothing in the folders changes."""
    from dlbench import rundir

    runs = tmp_path / "outputs" / "digits_mlp"
    for name, written in (("old", 1_000_000_000), ("new", 2_000_000_000)):  # ("old" sorts last)
        shutil.copytree(trained, runs / name)
        os.utime(runs / name / "checkpoints" / "last.pt", (written, written))
    sweep = tmp_path / "sweep"
    shutil.copytree(trained, sweep / "0")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    before = digest(tmp_path)
    code, out, err = dlbench(capsys, "eval", str(runs))
    assert code == 0 and "test/acc" in out, err
    assert f"holds runs: using the one checkpointed last, {runs / 'new'}\n" in err
    lock = rundir.RunLock(runs / "new").acquire()
    try:
        code, out, err = dlbench(capsys, "eval", str(runs))
    finally:
        lock.release(wrote=False)
    assert code == 0 and f"{runs / 'new'} (still training: its checkpoint so far)" in " ".join(err.split())
    code, out, err = dlbench(capsys, "eval", str(sweep))
    assert code == 2 and f"error: {sweep} is a sweep: name one of its jobs ({sweep / '0'}, ...)" in err
    assert digest(tmp_path) == before


def test_predict_refuses_an_input_that_is_not_a_file(trained, tmp_path):
    """A FIFO given as an image was waited on for ever (PIL's read of it never ends); a folder
    was PIL's IsADirectoryError. Both are one message now (the process is given a time limit:
    the old code would hang here)."""
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "folder.png").mkdir()
    for name in ("pipe.png", "folder.png"):
        result = subprocess.run(
            [sys.executable, "-m", "dlbench", "predict", str(trained), name],
            cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"error: {name} is not a file (a folder, a FIFO, a device)" in result.stderr


def test_a_run_folders_checkpoint_that_is_a_link_is_refused_by_name(capsys, run, tmp_path):
    """(A hunter's) a run's checkpoints/last.pt linked elsewhere: resume= went on from the link's
    target, as another run's, and refused the folder with "Continue it with: dlbench resume=RUN",
    the command just given."""
    elsewhere = tmp_path / "elsewhere.pt"
    (run / "checkpoints" / "last.pt").rename(elsewhere)
    (run / "checkpoints" / "last.pt").symlink_to(elsewhere)
    for command in ([f"resume={run}", "trainer.epochs=2"], ["eval", str(run)]):
        code, out, err = dlbench(capsys, *command)
        assert code == 2 and "checkpoints/last.pt is a link" in err and "Continue it with" not in err, err
    (run / "checkpoints" / "last.pt").unlink()  # the checkpoints folder itself linked: read through it
    elsewhere.rename(run / "checkpoints" / "last.pt")
    (run / "checkpoints").rename(tmp_path / "kept")
    (run / "checkpoints").symlink_to(tmp_path / "kept")
    for command in ([f"resume={run}", "trainer.epochs=2"], ["eval", str(run)]):
        code, out, err = dlbench(capsys, *command)
        assert code == 2 and "checkpoints is a link" in err and "Continue it with" not in err, err


def test_eval_measures_the_data_its_checkpoint_was_trained_with(capsys, run):
    """(A hunter's) a run folder's overrides.yaml edited to another split measured the model on
    other images (its own training ones among them), exit 0 and no word."""
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(saved.read_text() + "- dataset.split_seed=7\n- dataset.test_fraction=0.9\n")
    code, out, err = dlbench(capsys, "eval", str(run))
    assert code == 2 and "(dataset.split_seed: 0 -> 7, dataset.test_fraction: 0.2 -> 0.9" in err, err
    code, out, err = dlbench(capsys, "eval", str(run), "dataset.split_seed=7", "dataset.test_fraction=0.9")
    assert code == 0 and "test/acc" in out, err  # (asked for on the command line: measured)
