"""Issue 14: no code from configs, checkpoints or run folders; no run overwritten; every user
error one clear message with exit status 2. Each test tries a promise the way a hostile or
careless user would break it."""

import hashlib
import io
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import user_env
from formats import write_image_folder, write_mnist, write_names
from PIL import Image

from dlbench import cli as dlbench_cli
from dlbench import compose, rundir
from dlbench.commands.runs import resume_overrides
from dlbench.data.images import open_image
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.training import train

QUIET = ["trainer.progress=none", "trainer.epochs=1"]


def run_main(capsys, *args: str) -> tuple[int, str]:
    """dlbench's own entry point, in this process: (exit status, what it printed on stderr)."""
    code = dlbench_cli.main(list(args))
    return code, capsys.readouterr().err


def payload(marker: Path) -> str:
    """The issue's payload: a Hydra callback that writes a file when Hydra instantiates it."""
    return (
        "+hydra.callbacks={x:{_target_:pathlib.Path.write_text,"
        f"_args_:[{{_target_:pathlib.Path,_args_:['{marker}']}},'x']}}}}"
    )


def digest(folder: Path) -> dict[str, str]:
    """Every file of a folder (but its log) and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "train.log"
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished run of the default experiment (copied by each test that changes it)."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    overrides = [*QUIET]
    train(compose.compose_config(overrides), folder, overrides)
    return folder


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


# ---- 1. nothing in a config can import and call an object -------------------------------------


@pytest.mark.parametrize(
    "vector",
    [
        "payload",
        "+model.extra={_target_:os.system,_args_:['touch MARKER']}",
        "hydra.job_logging.handlers.file.class=subprocess.Popen",
        "+hydra.job.env_set.LD_PRELOAD=/tmp/evil.so",
        "+hydra.job.env_set.CXX=/tmp/evil.sh",  # (TorchInductor runs it, with trainer.compile=true)
        "+model.extra='${oc.decode:${oc.env:EVIL}}'",
    ],
)
def test_the_command_line_cannot_make_dlbench_call_an_object(capsys, tmp_path, vector):
    marker = tmp_path / "PWNED"
    override = payload(marker) if vector == "payload" else vector.replace("MARKER", str(marker))
    code, err = run_main(capsys, override, *QUIET, f"hydra.run.dir={tmp_path / 'out'}")
    assert code == 2, err
    assert "is refused" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_run_folders_saved_overrides_are_data(capsys, run, tmp_path):
    marker = tmp_path / "PWNED"
    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(yaml.safe_dump([*QUIET, payload(marker)]))
    before = digest(run)
    for command in (["resume=" + str(run)], ["eval", str(run)]):
        code, err = run_main(capsys, *command)
        assert code == 2, err
        assert f"{saved}: the saved override" in err and "is refused" in err
    saved.write_text(yaml.safe_dump([*QUIET, "+model.x={_target_:os.system}"]))  # no hydra.* at all
    code, err = run_main(capsys, "resume=" + str(run))
    assert code == 2 and "is refused" in err
    assert not marker.exists()
    assert {k: v for k, v in digest(run).items() if k != ".hydra/overrides.yaml"} == {
        k: v for k, v in before.items() if k != ".hydra/overrides.yaml"
    }


def test_a_checkpoints_saved_overrides_are_data(capsys, run, tmp_path):
    marker = tmp_path / "PWNED"
    (run / ".hydra" / "overrides.yaml").unlink()  # the checkpoint's own list is used then
    state = checkpoint.load(run)
    state["overrides"] = [*QUIET, payload(marker)]
    torch.save(state, run / "checkpoints" / "last.pt")  # still loads with weights_only=True
    code, err = run_main(capsys, "resume=" + str(run))
    assert code == 2, err
    assert "last.pt: the saved override" in err and "is refused" in err and not marker.exists()


def test_a_sweep_folders_jobs_are_data(capsys, run, tmp_path):
    marker = tmp_path / "PWNED"
    sweep = tmp_path / "sweep"
    job = Path(shutil.copytree(run, sweep / "0"))
    (job / "metrics.json").unlink()
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([payload(marker)]))
    code, err = run_main(capsys, "-m", *QUIET, f"sweep.resume={sweep}")
    assert code == 2, err
    assert "0/.hydra/overrides.yaml: the saved override" in err and not marker.exists()


def test_a_sweeps_config_folder_is_named_as_text_never_searched_nor_put_in_a_command(capsys, tmp_path):
    """A sweep started with --config-dir DIR: sweep.resume without it was a sweep whose presets
    were unknown (or shipped configs in place of the user's). The folder's multirun.yaml is data
    (the sweep may be someone else's, and a config folder can name plugins: code dlbench imports):
    DIR is named as text, never searched unasked, and never put in a printed command (pasted, a
    command with a folder the sweep chose imported its plugins)."""
    mine = tmp_path / "my configs"
    (mine / "experiment").mkdir(parents=True)
    (mine / "experiment" / "mine.yaml").write_text("# @package _global_\nplugins: [planted]\n")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    source = {"path": str(mine), "schema": "dlbench-user", "provider": "dlbench-user"}
    saved = {"hydra": {"overrides": {"task": ["experiment=mine"]}, "runtime": {"config_sources": [source]}}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(saved))
    before = digest(sweep)
    code, err = run_main(capsys, "-m", "experiment=mine", f"sweep.resume={sweep}")
    named = f"the sweep also read the configs in '{mine}' (its multirun.yaml says): add --config-dir"
    assert code == 2 and "a sweep that read configs this command does not read" in err and named in err, err
    code, err = run_main(capsys, f"sweep.resume={sweep}")  # (without -m: the command with -m)
    printed = err.split("run it with -m, ", 1)[1].split("; the sweep also read", 1)[0]
    assert code == 2 and shlex.split(printed) == ["dlbench", "-m", "experiment=mine", f"sweep.resume={sweep}"]
    assert named in err and digest(sweep) == before and "Unknown" not in err
    # a folder moved away (a project renamed, a sweep copied off a cluster): not named, not required
    source["path"] = str(tmp_path / "moved")
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(saved))
    code, err = run_main(capsys, "-m", "experiment=mine", f"sweep.resume={sweep}")
    assert code == 2 and "Unknown experiment option 'mine'" in err and "--config-dir" not in err, err


def test_a_user_config_folder_cannot_name_an_object_either(capsys, tmp_path, monkeypatch):
    marker = tmp_path / "PWNED"
    folder = tmp_path / "myconfigs" / "experiment"
    folder.mkdir(parents=True)
    (folder / "evil.yaml").write_text(
        "# @package _global_\n"
        f"hydra:\n  callbacks:\n    x:\n      _target_: pathlib.Path.touch\n      self: {marker}\n"
    )
    (folder / "logs.yaml").write_text(
        "# @package _global_\nhydra:\n  job_logging:\n    formatters:\n      simple:\n        (): os.system\n"
    )
    code, err = run_main(capsys, "--config-dir", str(tmp_path / "myconfigs"), "experiment=evil", *QUIET)
    assert code == 2, err
    assert "hydra.callbacks.x._target_: pathlib.Path.touch' is refused" in err and not marker.exists()
    assert f"error: the command line or {folder / 'evil.yaml'}: 'hydra" in err  # (the command line alone)
    code, err = run_main(capsys, "--config-dir", str(tmp_path / "myconfigs"), "experiment=logs", *QUIET)
    assert code == 2 and "hydra.job_logging.formatters.simple.(): os.system' is refused" in err, err
    # (a format's own text went to the terminal as written: a link around every line, a forged one)
    (folder / "fmt.yaml").write_text(
        "# @package _global_\nhydra:\n  job_logging:\n    formatters:\n      simple:\n        format: "
        '"\\e]8;;http://x\\e\\\\%(message)s\\nFAKE: line"\n'
    )
    code, err = run_main(capsys, "--config-dir", str(tmp_path / "myconfigs"), "experiment=fmt", *QUIET)
    assert code == 2 and "simple.format' is refused: a log line's format is printable text" in err, err
    # a sweep's values are overrides, which become nodes in each job (a review: once text alone
    # was read only in an interpolation, this one reached job 0)
    swept = "# @package _global_\nhydra:\n  sweeper:\n    params:\n"
    (folder / "sw.yaml").write_text(swept + "      +model.x: '{_target_:builtins.print,_args_:[PWNED]}'\n")
    (folder / "sl.yaml").write_text(swept + "      hydra.job_logging.handlers.console.class: builtins.dict\n")
    for preset, said in (
        ("sw", "'hydra.sweeper.params.+model.x: {_target_"),
        ("sl", "a sweep varies the run's"),
    ):
        code, err = run_main(
            capsys, "--config-dir", str(tmp_path / "myconfigs"), "-m", f"experiment={preset}"
        )
        assert code == 2 and said in err, err
    # (a primary config's hydra.searchpath, which Hydra reads before anything is composed:
    # pkg://MODULE imported MODULE, before any check)
    (tmp_path / "plantedpkg").mkdir()
    (tmp_path / "plantedpkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "myconfigs" / "config.yaml").write_text("hydra:\n  searchpath: [pkg://plantedpkg]\n")
    code, err = run_main(capsys, "--config-dir", str(tmp_path / "myconfigs"), "--cfg", "job")
    assert code == 2 and "config.yaml: hydra.searchpath pkg://plantedpkg is refused" in err, err
    (tmp_path / "myconfigs" / "config.yaml").unlink()
    # (a review: structured:// imports its module too; an interpolation is resolved by Hydra)
    for listed in ("[pkg://plantedpkg]", "[structured://plantedpkg]", "['${oc.env:SP}']"):
        monkeypatch.setenv("SP", "pkg://plantedpkg")
        code, err = run_main(capsys, f"hydra.searchpath={listed}", *QUIET)
        assert code == 2 and "the command line: hydra.searchpath" in err and "is refused" in err, err
    # (a review: env_set made an interpolation of a node whose names the allow-list never saw)
    via = ["+dataset.extra.LD_PRELOAD=/tmp/evil.so", "hydra.job.env_set=${dataset.extra}"]
    code, err = run_main(capsys, *via, *QUIET)
    assert code == 2 and "'hydra.job.env_set: ${dataset.extra}' is refused" in err, err
    assert not marker.exists()


class WritesAFile:
    """A pickled object whose unpickling would call Path.touch(marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_and_other_files_are_not_checkpoints(
    capsys, run, tmp_path
):
    marker = tmp_path / "PWNED"
    torch.save({"task": WritesAFile(marker), "config": ""}, run / "checkpoints" / "last.pt")
    code, err = run_main(capsys, "eval", str(run))
    assert code == 2 and "could run code" in err and not marker.exists()

    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    (tmp_path / "notes.txt").write_text("not a model\n")
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    for name in ("random.pt", "notes.txt", "table.csv"):
        code, err = run_main(capsys, "eval", str(tmp_path / name))
        assert code == 2, err
        assert f"{tmp_path / name} is not a checkpoint" in err
    # (a run's own last.pt cut short: "give a run directory or a .pt file", to one who had)
    last = run / "checkpoints" / "last.pt"
    shutil.copy(last, run / "checkpoints" / "best.pt")
    last.write_bytes(b"PK\x03\x04 cut")
    code, err = run_main(capsys, "eval", str(run))
    assert code == 2 and "last.pt is not a checkpoint: cut short or damaged" in err, err
    assert "its other checkpoints: best.pt" in err and "give a run directory" not in err, err


# ---- 2. a run folder is never overwritten; one live run per folder -----------------------------


def test_a_new_run_never_writes_over_a_finished_one(capsys, run):
    before = digest(run)
    code, err = run_main(capsys, *QUIET, f"hydra.run.dir={run}")
    assert code == 2, err
    assert "already holds a run" in err and f"dlbench resume={run}" in err
    assert digest(run) == before
    with pytest.raises(DlbenchError, match="already holds a run"):  # the Python entry point too
        train(compose.compose_config(QUIET), run)
    assert digest(run) == before


def test_two_live_runs_cannot_share_a_folder_and_a_dead_runs_lock_is_no_obstacle(cli, tmp_path):
    env = user_env()
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlbench",
            "trainer.epochs=100000",
            "trainer.progress=none",
            "hydra.run.dir=shared",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not (tmp_path / "shared" / ".lock").exists() and first.poll() is None:
            time.sleep(0.05)
        second = cli(*QUIET, "hydra.run.dir=shared")
        assert second.returncode == 2, second.stderr
        err = " ".join(second.stderr.split())
        assert any(
            m in err for m in ("is in use by another dlbench run", "already holds a run", "never writes over")
        )
    finally:
        first.send_signal(signal.SIGTERM)  # caught from before .lock exists, even before training
        first.wait(timeout=60)
    assert first.returncode == 75  # the first run went on until it was stopped

    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / ".lock").write_text("999999")  # left by a killed run: no process holds it
    train(compose.compose_config(QUIET), stale)
    assert (stale / "metrics.json").is_file() and not (stale / ".lock").exists()


# ---- 3. a failed resume changes nothing ----------------------------------------------------------


def test_a_failed_resume_leaves_the_run_as_it_was(cli, run):
    before = digest(run)
    failed = cli(f"resume={run}", "model=linear")
    assert failed.returncode == 2 and "model.name: 'mlp' -> 'linear'" in failed.stderr, failed.stderr[-2000:]
    assert digest(run) == before  # .hydra/overrides.yaml included
    resumed = resume_overrides([f"resume={run}", "trainer.epochs=2"])
    metrics = train(compose.compose_config(resumed), run, resumed)
    assert metrics["train/loss"] > 0 and checkpoint.load(run)["trainer"]["epoch"] == 2


# ---- 4. corrupt and 16-bit images ----------------------------------------------------------------


def test_a_jpeg_cut_short_is_found_by_decoding_and_named(cli, tmp_path):
    write_image_folder(tmp_path / "images", per_class=10)
    noise = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    cut = tmp_path / "images" / "train" / "dog" / "cut.jpg"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    data = ["dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "dataset.num_workers=2", *QUIET]
    result = cli(*data)
    err = " ".join(result.stderr.split())
    assert result.returncode == 2, err
    assert f"image_folder: {cut} is not a readable image (OSError: image file is truncated" in err
    # (the words it gives, which alone were over max_bad_fraction's default 0.01 for 1 file of 21)
    given = "leave such files out with dataset.bad_images=skip dataset.max_bad_fraction=0.05"
    assert err.endswith(given), err
    skip = [*data, *given.split()[-2:]]
    metrics = train(compose.compose_config(skip), tmp_path / "b")
    assert metrics["test/acc"] >= 0  # trained on the 20 good train images
    # without the check at start, the batch that meets the file stops the run, naming it
    late = [*data, "dataset.check_images=false"]
    with pytest.raises(DlbenchError) as raised:
        try:
            train(compose.compose_config(late), tmp_path / "c")
        except Exception as err:  # a DataLoader worker's error, as the CLI reports it
            from dlbench.errors import as_user_error

            raise as_user_error(err) from err
    assert str(raised.value).startswith(f"{cut} is not a readable image")

    # every file of a class left out: the class folder is named
    for path in (tmp_path / "images" / "train" / "cat").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(DlbenchError, match=r"images/train/cat has no readable image left"):
        train(compose.compose_config([*skip, "dataset.max_bad_fraction=1"]), tmp_path / "d")


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert np.asarray(open_image(tmp_path / "deep.png", "L")).tolist() == [[0, 1, 128, 255]]


def test_a_decompression_bomb_is_refused_by_predict(capsys, tmp_path, data_root):
    overrides = ["experiment=lenet5_mnist", f"dataset.root={data_root}", "dataset.download=false", *QUIET]
    train(compose.compose_config(overrides), tmp_path / "lenet")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 megapixels in a few kilobytes
    code, err = run_main(capsys, "predict", str(tmp_path / "lenet"), str(bomb))
    assert code == 2, err
    assert f"{bomb} is refused" in err and "decompression bomb" in err


# ---- 5. a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: a real file system that fills up."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill the disk but `leave` bytes."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


@pytest.mark.parametrize("writer", ["checkpoint", "tensorboard"])
def test_a_full_disk_stops_the_run_with_one_message_and_keeps_the_last_checkpoint(cli, small_disk, writer):
    run = small_disk / "run"
    first = ["trainer.progress=none", "trainer.epochs=1", "model.hidden=[32]"]
    train(compose.compose_config(first), run, first)
    assert (run / "checkpoints" / "last.pt").stat().st_size > 16384
    fill(small_disk, leave=16384)  # room for the run's small files, not for a checkpoint
    more = ["trainer.epochs=30", "trainer.log_every_n_steps=1"]
    # (TensorBoard's: no checkpoint due before the run's end; a resume may not turn them off)
    more.append("logger=none" if writer == "checkpoint" else "trainer.checkpoint_budget=0")
    result = cli(f"resume={run}", *more, process=True)  # the writer thread's stderr is the process's
    err = " ".join(result.stderr.split())
    assert result.returncode == 2, err
    where = run / ("checkpoints" if writer == "checkpoint" else "tb")
    assert f"No space left on device writing {where}" in err
    assert "Traceback" not in err and "Exception in thread" not in err
    assert checkpoint.load(run)["trainer"]["epoch"] == 1  # the previous checkpoint, whole
    assert not list((run / "checkpoints").glob(".*.tmp"))


def test_a_disk_full_as_a_run_starts_is_one_message(cli, small_disk, tmp_path):
    """A review: the run's lock file could not take its process id (no file named), and train.log
    then failed to close over the first message: 'unexpected error' twice, exit 1. A write error
    of TensorBoard's names its file in bytes: a TypeError in place of the message."""
    import errno

    from dlbench import files

    fill(small_disk, leave=0)
    result = cli("trainer.epochs=1", "logger=none", f"hydra.run.dir={small_disk / 'run'}", process=True)
    err = " ".join(result.stderr.split())
    assert result.returncode == 2 and "No space left on device writing" in err, err
    assert "unexpected error" not in err and "Traceback" not in err and err.count("error:") == 1
    failed = files.file_error(OSError(errno.EIO, "Input/output error", b"/x/tb/events"), tmp_path / "tb")
    assert str(failed) == "Cannot write /x/tb/events: Input/output error"


# ---- 6. leftovers and torn files -----------------------------------------------------------------


def test_temporary_files_of_killed_writes_are_removed_at_start(run):
    leftover = run / "checkpoints" / ".last.pt.x1y2z3.tmp"
    leftover.write_bytes(b"half a checkpoint")
    resumed = resume_overrides([f"resume={run}", "trainer.epochs=2", "trainer.progress=none"])
    train(compose.compose_config(resumed), run, resumed)
    assert not leftover.exists()


def test_a_torn_metrics_file_is_an_unfinished_job(cli, capsys, run, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "0")
    (sweep / "0" / "metrics.json").write_text('{"test/acc": 0.9')  # cut short by another tool
    code, out = cli_main_stdout(capsys, "compare", str(sweep))
    assert code == 0 and "incomplete" in out
    finished = cli("-m", *QUIET, f"sweep.resume={sweep}", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "test/acc" in yaml.safe_load((sweep / "0" / "metrics.json").read_text())


def cli_main_stdout(capsys, *args: str) -> tuple[int, str]:
    code = dlbench_cli.main(list(args))
    return code, capsys.readouterr().out


# ---- 7. silent misconfiguration ------------------------------------------------------------------


def test_an_unknown_monitor_and_unknown_added_keys_are_refused(capsys, tmp_path):
    """The monitor before the run writes anything (a trial evaluation of the trial step's copy
    names the val/ metrics): it was refused after the first epoch had trained."""
    with pytest.raises(DlbenchError, match=r"trainer.monitor=val/accuracy: .*Did you mean: .*val/acc"):
        train(compose.compose_config([*QUIET, "trainer.monitor=val/accuracy"]), tmp_path / "a")
    assert not any((tmp_path / "a").rglob("*"))  # (no train.log, no events: no epoch trained)
    code, err = run_main(capsys, "lr-find", "trainer.monitor=val/accuracy", "--out", str(tmp_path / "l"))
    assert code == 2 and "trainer.monitor=val/accuracy: this run reports no such metric" in err, err
    assert "Did you mean: val/acc" in err and not (tmp_path / "l").exists()  # (lr-find printed it, exit 0)
    # (a review: R² takes two samples, and a trial batch of one left val/r2 out: a false refusal)
    one = [*QUIET, "experiment=mlp_regression", "dataset.val_fraction=0.2", "dataset.batch_size=1"]
    metrics = train(
        compose.compose_config([*one, "trainer.monitor=val/r2", "trainer.epochs=1"]), tmp_path / "c"
    )
    assert "val/r2" in metrics
    # (no val split: a val/ monitor falls back to the task's own train/ one, task=minimize's train/f:
    # train/loss, which it does not report, stopped the run)
    cfg = compose.compose_config(
        [*QUIET, "experiment=gd_polynomial", "trainer.monitor=val/f", "trainer.epochs=3"]
    )
    assert "train/f" in train(cfg, tmp_path / "d")
    for override, expected in [
        ("+trainer.epocs=5", "Unknown key 'trainer.epocs': nothing reads it. Did you mean: trainer.epochs"),
        ("+foo=bar", "Unknown key 'foo': nothing reads it."),
        ("foo=bar", "Unknown key 'foo'."),
    ]:
        code, err = run_main(capsys, override, *QUIET, f"hydra.run.dir={tmp_path / 'b'}")
        assert code == 2 and expected in err, err


def test_a_gan_monitors_its_own_metric_and_writes_best_pt(tmp_path, data_root):
    overrides = ["experiment=gan_mnist", f"dataset.root={data_root}", "dataset.download=false", *QUIET]
    cfg = compose.compose_config(overrides)
    metrics = train(cfg, tmp_path / "gan")
    assert cfg.trainer.monitor == "val/loss_g" and cfg.trainer.monitor in metrics
    assert (tmp_path / "gan" / "checkpoints" / "best.pt").is_file()


# ---- 8. every user error: exit status 2 and a message naming the problem -------------------------


def test_user_errors_exit_2_with_a_message_naming_the_problem(capsys, run, tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = [
        ([f"hydra.run.dir={tmp_path / 'afile' / 'run'}"], f"{tmp_path / 'afile'} is a file, not a folder"),
        (["dataset.num_workers=-1"], "dataset.num_workers=-1: must be 0"),
        (["trainer.seed=18446744073709551617"], "trainer.seed=18446744073709551617: must be below 2**32"),
        (["optimizer.lr=inf"], "optimizer.lr=inf: must be a finite number"),
        (["compare", str(run), "--csv", str(tmp_path / "missing" / "s.csv")], "missing is no folder here"),
    ]
    for args, expected in cases:
        if args[0] != "compare":
            args = [*args, *QUIET]
        code, err = run_main(capsys, *args)
        assert code == 2 and expected in err, (args, err)


def test_a_read_only_run_folder_is_one_message(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i (a folder even root cannot write) is not available on this file system")
    try:
        code, err = run_main(capsys, *QUIET, f"hydra.run.dir={locked / 'run'}")
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert code == 2 and f"cannot write in {locked} (Operation not permitted)" in err, err


def test_a_model_too_large_for_memory_is_a_user_error(cli, tmp_path):
    result = cli(*QUIET, "model.hidden=[200000000000]", process=True)  # never in pytest's own memory
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Out of memory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("damage", ["truncated", "magic"])
def test_a_broken_idx_file_is_named_with_what_was_expected(tmp_path, damage):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw = images.read_bytes()
    images.write_bytes(raw[: len(raw) - 100] if damage == "truncated" else b"\x1f\x8b" + raw[2:])
    expected = (
        rf"{images} is {len(raw) - 100} bytes, but its header .* says {len(raw)}: the file is cut short"
        if damage == "truncated"
        else rf"{images} is not an idx file .* first bytes are 1f 8b 08 03, expected 00 00 08 03"
    )
    overrides = ["dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false", *QUIET]
    with pytest.raises(DlbenchError, match=expected):
        train(compose.compose_config(overrides), tmp_path / "run")


# ---- 9. numerics -----------------------------------------------------------------------------------


def test_inf_in_a_csv_series_is_refused_with_its_line(tmp_path):
    from dlbench.data.series import csv_series

    series = tmp_path / "series.csv"
    series.write_text("value\n" + "".join(f"{i}\n" for i in range(40)) + "inf\n")
    with pytest.raises(DlbenchError, match=r"series.csv line 42, column 0: inf is not a finite number"):
        csv_series(path=str(series))


def test_the_non_finite_message_names_only_checkpoints_that_exist_and_skipping_has_a_limit(
    monkeypatch, tmp_path
):
    from test_reliability import poison

    poison(monkeypatch, 5, "loss", float("nan"))  # in the first epoch: nothing saved yet
    with pytest.raises(DlbenchError, match="no checkpoint had been written yet") as raised:
        train(compose.compose_config(QUIET), tmp_path / "a")
    assert "last.pt" not in str(raised.value)
    monkeypatch.undo()
    poison(monkeypatch, 5, "loss", float("nan"))
    skip = [*QUIET, "trainer.nonfinite=skip", "trainer.max_skipped_fraction=0.01"]
    with pytest.raises(DlbenchError, match=r"epoch 1: 1 of its 21 steps .* were skipped"):
        train(compose.compose_config(skip), tmp_path / "b")


# ---- 10. data that cannot train ------------------------------------------------------------------


def test_data_that_cannot_train_is_named(tmp_path):
    write_image_folder(tmp_path / "one", classes=("cat",))
    one = ["dataset=image_folder", f"dataset.root={tmp_path / 'one'}", *QUIET]
    with pytest.raises(DlbenchError, match=r"dataset 'image_folder' has 1 class \(cat\): a classifier needs"):
        train(compose.compose_config(one), tmp_path / "a")

    names = write_names(tmp_path / "data")
    (names / "Greek.txt").write_text("Αλέξανδρος\nΝίκος\n")  # nothing left of the seed's 57 letters
    overrides = ["dataset=names", f"dataset.root={tmp_path / 'data'}", "dataset.download=false", *QUIET]
    with pytest.raises(DlbenchError, match=r"Greek.txt has no name left after keeping the seed's 57 letters"):
        train(compose.compose_config(overrides), tmp_path / "b")


# ---- found by a red-team review of the first version ---------------------------------------------


def test_hydra_flags_and_sweeps_cannot_smuggle_code_past_the_checks(capsys, tmp_path, monkeypatch):
    import pickle

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "PWNED"
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps(WritesAFile(marker)))
    code, err = run_main(capsys, "--experimental-rerun", "evil.pickle")
    assert code == 2 and "--experimental-rerun is not supported" in err and not marker.exists()

    # a logging handler built by interpolation from a node the logging checks do not see
    env = ["+dataset.extra.class=zipfile.ZipFile", f"+dataset.extra.file={tmp_path / 'x.zip'}"]
    code, err = run_main(capsys, *env, "+hydra.job_logging.handlers.pwn=${dataset.extra}", *QUIET)
    assert code == 2 and "only filename, level may be interpolated" in err
    assert not (tmp_path / "x.zip").exists()

    # every value of a sweep is checked, however many jobs: a glob, and a 65th combination
    evil = tmp_path / "configs" / "experiment"
    evil.mkdir(parents=True)
    (evil / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: os.system\n"
    )
    (evil / "safe.yaml").write_text("# @package _global_\ntrainer:\n  epochs: 1\n")
    for sweep in (["experiment=glob(ev*)"], ["experiment=safe,evil", "trainer.seed=range(0,64)"]):
        code, err = run_main(capsys, "-m", *sweep, "hydra.sweep.dir=sweep", *QUIET)
        assert code == 2 and "_target_: os.system' is refused" in err, err
        assert not (tmp_path / "sweep").exists()  # refused before any job
    code, err = run_main(capsys, "-m", "hydra.job.chdir=true,false", *QUIET)
    assert code == 2 and "does not sweep Hydra's own settings" in err
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    for args, expected in [
        (["name=${oc.env:NOPE_NOT_SET}"], "Environment variable 'NOPE_NOT_SET' not found"),
        (["hydra.job.env_copy=[NOPE_NOT_SET]"], "env_copy names NOPE_NOT_SET, which is not set"),
    ]:
        code, err = run_main(capsys, *args, *QUIET)
        assert code == 2 and expected in err, err


def test_an_archive_cannot_write_outside_the_data_folder_and_a_saved_run_cannot_choose_a_url(
    capsys, http_server, run, tmp_path
):
    import tarfile

    from dlbench.data.download import fetch

    folder, url = http_server
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(folder / "evil.tar.gz", "w:gz") as tar:
        tar.add(payload, arcname="../escaped.txt")
    data = tmp_path / "data" / "inner"
    data.mkdir(parents=True)
    with pytest.raises(DlbenchError, match="refused to extract"):
        fetch(f"{url}/evil.tar.gz", data)
    assert not (tmp_path / "data" / "escaped.txt").exists()

    saved = run / ".hydra" / "overrides.yaml"
    saved.write_text(yaml.safe_dump(["dataset=cifar10", f"dataset.url={url}/cifar.tar.gz", *QUIET]))
    code, err = run_main(capsys, "eval", str(run))
    assert code == 2 and "dlbench takes no file, folder or address from a saved run" in err


def test_a_loose_checkpoint_resumes_into_a_new_folder_and_other_programs_files_stay(cli, run, tmp_path):
    home = tmp_path / "home"
    (home / "Downloads").mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "last.pt", home / "Downloads" / "model.pt")
    (home / "metrics.json").write_text("my own notes\n")
    (home / ".notes.txt.tmp").write_text("an editor's file")
    result = cli("resume=home/Downloads/model.pt", "trainer.epochs=2", *QUIET)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (home / "metrics.json").read_text() == "my own notes\n" and (home / ".notes.txt.tmp").exists()
    assert not (home / ".hydra").exists() and list((tmp_path / "outputs").glob("*/*/metrics.json"))
    here = tmp_path / "here"
    here.mkdir()
    (here / ".important.tmp").write_text("keep me")
    assert cli(*QUIET, "hydra.run.dir=.", cwd=here).returncode == 0
    assert (here / ".important.tmp").read_text() == "keep me"
    assert cli(*QUIET, "hydra.run.dir=").returncode == 2


def test_outputs_never_land_on_a_run_or_an_existing_file(capsys, run, tmp_path):
    before = digest(run)
    code, err = run_main(capsys, "compare", str(run), "--csv", str(run / "metrics.json"))
    assert code == 2 and "name a .csv file" in err
    code, err = run_main(capsys, "-m", "trainer.epochs=1,2", f"hydra.sweep.dir={run}", "hydra.sweep.subdir=.")
    assert code == 2, err
    # (one name for every job: job 0 trained, job 1 was refused as a sweep.resume no one typed)
    same = tmp_path / "same"
    shared = ["trainer.epochs=1,2", f"hydra.sweep.dir={same}", "trainer.progress=none"]
    code, err = run_main(capsys, "-m", *shared, "hydra.sweep.subdir=x")
    assert code == 2 and "hydra.sweep.subdir=x: each job needs its own folder" in err and not same.exists()
    # (the same for both, known only in the jobs: found when job 1 starts)
    code, err = run_main(capsys, "-m", *shared, "hydra.sweep.subdir=${trainer.seed}")
    assert code == 2 and "job folder 0 already holds another job (trainer.epochs=1 " in err, err
    code, err = run_main(capsys, "-m", "trainer.epochs=1,2", f"hydra.sweep.dir={run}")
    assert code == 2 and "holds a run, not a sweep" in err
    assert digest(run) == before

    busy = tmp_path / "busy"
    lock = rundir.RunLock(busy).acquire()  # another sweep is running in it
    try:
        code, err = run_main(capsys, "-m", "trainer.epochs=1,2", f"hydra.sweep.dir={busy}", *QUIET)
    finally:
        lock.release()
    assert code == 2 and "is in use by another dlbench run" in err


def test_a_forked_child_does_not_hold_its_parents_run_lock(tmp_path):
    """A run killed with DataLoader workers (forked) left them holding its folder's lock for
    seconds: an immediate resume was refused, naming the killed process."""
    lock = rundir.RunLock(tmp_path / "run").acquire()
    child = os.fork()
    if child == 0:  # (a worker: lives on after its parent)
        time.sleep(30)
        os._exit(0)
    try:
        os.close(lock.fd)  # the parent's copy gone, as when it is killed
        rundir.HELD_LOCKS.discard(lock.fd)  # (held no more)
        waited = time.monotonic()  # (the child lets go as it starts: a moment after the fork returns)
        while rundir.in_use(tmp_path / "run") and time.monotonic() - waited < 10:
            time.sleep(0.05)
        assert not rundir.in_use(tmp_path / "run")
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_predict_never_writes_over_a_file(capsys, tmp_path, data_root):
    overrides = ["experiment=gan_mnist", f"dataset.root={data_root}", "dataset.download=false", *QUIET]
    train(compose.compose_config(overrides), tmp_path / "gan")
    Image.new("RGB", (30, 20)).save(tmp_path / "holiday.png")
    code, err = run_main(
        capsys, "predict", str(tmp_path / "gan"), "--num", "4", "--out", str(tmp_path / "holiday.png")
    )
    assert code == 2 and "exists; predict never writes over a file" in err
    assert Image.open(tmp_path / "holiday.png").size == (30, 20)
    code, err = run_main(
        capsys, "predict", str(tmp_path / "gan"), "--num", "4", "--out", str(tmp_path / "x.tex")
    )
    assert code == 2 and "name an image file" in err


@pytest.mark.parametrize(
    "damage", ["no trainer", "trainer.epoch is text", "best is NaN", "config is a number"]
)
def test_a_damaged_checkpoint_is_one_message_and_changes_nothing(cli, run, damage):
    state = checkpoint.load(run)
    if damage == "no trainer":
        del state["trainer"]
    elif damage == "trainer.epoch is text":
        state["trainer"]["epoch"] = "x"
    elif damage == "best is NaN":  # (resumed, exit 0: no epoch was better, best.pt never written again)
        state["trainer"]["best"] = float("nan")
    else:
        state["config"] = "3"
    torch.save(state, run / "checkpoints" / "last.pt")
    before = digest(run)
    result = cli(f"resume={run}", "trainer.epochs=2")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert digest(run) == before and not (run / "train.log").exists()


def test_text_that_holds_a_call_key_is_text(cli, tmp_path):
    """A folder named x_target_y refused every run started in it (hydra.runtime.cwd holds the
    word): only an interpolation, which could build a node, is read for one."""
    folder = tmp_path / "x_target_y"
    folder.mkdir()
    result = cli("--cfg", "job", "name=my_args_run", cwd=folder)
    assert result.returncode == 0 and "name: my_args_run" in result.stdout, result.stderr
    refused = cli("--cfg", "job", "+model.x={_target_:os.system}", cwd=folder)
    assert refused.returncode == 2 and "model.x._target_: os.system' is refused" in refused.stderr
