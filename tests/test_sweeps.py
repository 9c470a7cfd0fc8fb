"""Sweeps: the lesson presets, compare, fail-fast and resumed sweeps, joblib and Optuna."""

import csv
import os
import shlex
import subprocess

import pytest
from formats import write_mnist

from dlbench import compose
from dlbench.training import train


def test_lesson_sweep_names_jobs_by_overrides_and_compare_sorts_and_plots_them(cli, tmp_path, monkeypatch):
    result = cli("-m", "experiment=optimizers", "trainer.epochs=2", "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if (p / ".hydra").is_dir())
    assert jobs == [
        f"optimizer={o},trainer.epochs=2" for o in ("adam", "adamw", "rmsprop", "sgd", "sgd_momentum")
    ]
    assert all(list((tmp_path / "sweep" / j / "tb").glob("events.*")) for j in jobs)  # one TB run per job
    result = cli("compare", "sweep", "--sort", "test/acc", "--csv", "table.csv")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "table.csv") as f:
        rows = list(csv.DictReader(f))
    accs = [float(r["test/acc"]) for r in rows]
    assert accs == sorted(accs, reverse=True) and len(rows) == 5  # best first
    assert "\nshared: experiment=optimizers trainer.epochs=2" in result.stdout  # (a line of the title)
    globbed = cli("compare", *sorted(str(p) for p in (tmp_path / "sweep").iterdir()))  # (sweep/*)
    assert globbed.returncode == 0 and globbed.stdout.count(" ok ") == 5, (
        globbed.stderr
    )  # (its files passed over)
    result = cli("compare", "sweep", "--sort", "test/acc", "--ascending", "--md", "table.md")
    assert (tmp_path / "table.md").read_text().startswith("| job | overrides | status |")
    result = cli("compare", "sweep", "--sort", "test/acuracy")
    assert result.returncode == 2 and "Did you mean: test/acc" in result.stderr
    (tmp_path / "sweeps" / "older" / "0" / ".hydra").mkdir(parents=True)  # (a sweep run before)
    (tmp_path / "sweeps" / "older" / "multirun.yaml").write_text("{}\n")
    os.utime(tmp_path / "sweeps" / "older" / "multirun.yaml", (1, 1))
    (tmp_path / "sweep").rename(tmp_path / "sweeps" / "sweep")
    result = cli("compare", "sweeps")  # a folder of sweeps (outputs/multirun): the one run last
    assert result.returncode == 0 and "note: sweeps holds sweeps: using the one run last, sweeps/sweep" in (
        result.stderr
    )
    assert "5 runs" in result.stdout, result.stdout
    (tmp_path / "sweeps" / "sweep").rename(tmp_path / "sweep")
    for args, message in [  # (each was accepted and did nothing)
        (["--x", "step"], "--x is an option of the figure --plot METRIC draws: add --plot"),
        (["--metrics", ""], "--metrics names no metric: give them as --metrics val/acc,val/loss"),
        (["--csv", ""], "argument --csv: an empty name"),
    ]:
        result = cli("compare", "sweep", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    result = cli("compare", "sweep", "--csv=~/table.csv")  # (bash leaves this ~ to the program)
    assert result.returncode == 0 and (tmp_path / "home" / "table.csv").is_file(), result.stderr
    compare_plots_each_jobs_curve_labelled_by_what_differs(cli, tmp_path, monkeypatch)
    reports_of_the_sweep_and_of_a_job_open_in_a_browser(cli, tmp_path, rows)


def compare_plots_each_jobs_curve_labelled_by_what_differs(cli, tmp_path, monkeypatch):
    import json

    import matplotlib.image

    from dlbench import figures

    drawn = []
    curves_figure = figures.curves_figure
    monkeypatch.setattr(figures, "curves_figure", lambda *a: drawn.append(a) or curves_figure(*a))
    result = cli("compare", "sweep", "--plot", "val/acc", "--out", "acc.png")
    assert result.returncode == 0 and "wrote acc.png" in result.stdout, result.stderr
    ((curves, metric, x_label, title),) = drawn
    assert (metric, x_label) == ("val/acc", "epoch") and "experiment=optimizers trainer.epochs=2" in title
    assert sorted(label for label, _, _ in curves) == [
        f"optimizer={o}" for o in ("adam", "adamw", "rmsprop", "sgd", "sgd_momentum")
    ]
    for label, epochs, values in curves:
        job = tmp_path / "sweep" / f"{label},trainer.epochs=2"
        assert epochs == [1.0, 2.0]
        assert values[-1] == pytest.approx(
            json.loads((job / "metrics.json").read_text())["val/acc"], abs=1e-6
        )
    assert matplotlib.image.imread(tmp_path / "acc.png").shape[2] in (3, 4)  # a PNG that decodes
    assert (
        cli("compare", "sweep", "--plot", "train/loss_step", "--x", "step", "--out", "l.svg").returncode == 0
    )
    assert (tmp_path / "l.svg").read_text().startswith("<?xml")
    result = cli("compare", "sweep", "--plot", "val/accc")
    assert (
        result.returncode == 2 and "Unknown metric to plot 'val/accc'. Did you mean: val/acc" in result.stderr
    )
    result = cli("compare", "sweep", "--plot", "val/acc", "--out", "acc.jpg")
    assert result.returncode == 2 and "--out acc.jpg: name a .png or .svg file" in result.stderr
    # two sweeps of one grid: each label was there twice, the sweeps not told apart (a review)
    import shutil

    shutil.copytree(tmp_path / "sweep", tmp_path / "again")
    drawn.clear()
    assert cli("compare", "sweep", "again", "--plot", "val/acc", "--out", "both.png").returncode == 0
    labels = [label for label, _, _ in drawn[0][0]]
    assert len(set(labels)) == len(labels) == 10 and all(
        label.startswith(("sweep/", "again/")) for label in labels
    )


def reports_of_the_sweep_and_of_a_job_open_in_a_browser(cli, tmp_path, rows):
    """dlbench report: one page each, every picture decoding in Chromium, nothing blocked or
    logged in its console, nothing fetched (the page's policy allows embedded PNGs only)."""
    import json

    from browser import open_page

    from dlbench import report

    result = cli("report", "sweep", "--out", "sweep.html")
    assert result.returncode == 0 and "wrote sweep.html" in result.stdout, result.stderr
    page = (tmp_path / "sweep.html").read_text()
    shown, console = open_page(tmp_path / "sweep.html")
    assert console == [] and shown["title"] == "dlbench report: sweep"
    best = max(rows, key=lambda r: float(r["test/acc"]))["job"].split(",")[0]
    assert shown["headings"][:3] == ["sweep: 5 jobs", "Jobs, best test/acc first", "Curves"]
    assert shown["headings"][3] == f"Best job: {best},trainer.epochs=2 ({best})"
    pictures = {alt.split(" (step")[0]: width for alt, width, _ in shown["images"]}
    assert {
        "train/loss",
        "val/loss",
        "val/acc",
        "train/lr",
        "val/confusion_matrix",
        "test/confusion_matrix",
    } <= set(pictures)
    assert all(width > 0 for width in pictures.values()), pictures
    positions = [page.index(f"<td>{r['job'].split(',')[0]}</td>") for r in rows]
    accs = [acc for _, acc in sorted(zip(positions, (float(r["test/acc"]) for r in rows), strict=True))]
    assert accs == sorted(accs, reverse=True)  # best first
    assert f'content="{report.POLICY}"' in page and "<script" not in page and "://" not in page

    job = tmp_path / "sweep" / "optimizer=sgd,trainer.epochs=2"
    assert cli("report", str(job), "--out", "job.html").returncode == 0
    shown, console = open_page(tmp_path / "job.html")
    assert console == [] and shown["headings"] == [
        "sweep/optimizer=sgd,trainer.epochs=2 finished",
        "Final metrics",
        "Timings",
        "Curves",
        "Pictures",
        "Config",
    ]
    assert {alt.split(" (step")[0] for alt, _, _ in shown["images"]} == {
        "loss", "acc", "balanced_acc", "f1_macro", "lr", "val/confusion_matrix", "test/confusion_matrix"
    }  # fmt: skip
    assert all(width > 0 for _, width, _ in shown["images"])
    final = json.loads((job / "metrics.json").read_text())
    assert f"<td class=num>{final['test/acc']:.4g}</td>" in (tmp_path / "job.html").read_text()
    result = cli("report", "sweep", "--out", "r.pdf")
    assert result.returncode == 2 and "--out r.pdf: name a .html file" in result.stderr


def test_every_job_of_every_lesson_sweep_is_valid(tmp_path):
    """Each value the lesson sweeps set composes and passes the same checks as a typed override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dlbench.validation import validate

    sweeps = (
        "lr_schedulers",
        "activations",
        "optimizers",
        "norms",
        "augmentations",
        "cpu_vs_gpu",
        "regularizers",
    )
    for name in sweeps:
        cfg = compose.compose_with_hydra([f"experiment={name}"], "the test")
        for key, values in cfg.hydra.sweeper.params.items():  # (each key's values with the others' default)
            jobs = OverridesParser.create().parse_overrides([f"{key}={values}"])[0].sweep_string_iterator()
            jobs = list(jobs)
            assert len(jobs) >= 2, name
            for value in jobs:
                validate(compose.compose_config([f"experiment={name}", f"{key}={value}"]))


def test_grad_norms_are_logged_per_layer(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [
        "experiment=activations",
        "model.activation=sigmoid",
        "trainer.epochs=1",
        "trainer.progress=none",
    ]
    train(compose.compose_config(overrides), tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    norms = [t for t in events.Tags()["scalars"] if t.startswith("grad_norm/")]
    assert len(norms) == 5  # four hidden layers and the output layer, weights only


def test_fail_fast_then_resume_the_sweep(cli, tmp_path):
    args = ["-m", "dataset=mnist", "dataset.download=false", "model=linear", "trainer.epochs=1"]
    args.append("dataset.root=a,b")
    write_mnist(tmp_path / "b")
    result = cli(*args, "sweep.fail_fast=true", "hydra.sweep.dir=sweep")
    assert result.returncode == 1
    assert (tmp_path / "sweep" / "1" / "error.txt").read_text().startswith("skipped: job 0 failed")
    assert not (tmp_path / "sweep" / "1" / "metrics.json").exists()  # b was never trained
    write_mnist(tmp_path / "a")  # fix the cause, then finish the same sweep
    result = cli(*args, "sweep.resume=sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    assert all((tmp_path / "sweep" / j / "metrics.json").is_file() for j in ("0", "1"))
    (tmp_path / "sweep" / "1" / "metrics.json").unlink()  # as if job 1 had been killed after a checkpoint
    result = cli(*args, "sweep.resume=sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "job 0: finished before, skipped" in result.stdout
    assert "resumed at epoch 1" in (tmp_path / "sweep" / "1" / "train.log").read_text()
    # Slurm requeues a preempted job (submitit runs the same sweep again): it resumes too
    (tmp_path / "sweep" / "1" / "metrics.json").unlink()
    result = cli(*args, "hydra.sweep.dir=sweep", env={"SUBMITIT_EXECUTOR": "slurm"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "sweep" / "1" / "train.log").read_text().count("resumed at epoch 1") == 2
    # a job killed before its first checkpoint (its TensorBoard events and log written): it runs
    # again from its start, its unfinished attempt's files kept aside (it was refused, and the
    # 'resume=' it printed failed)
    job = tmp_path / "sweep" / "1"
    (job / "metrics.json").unlink()
    for saved in (job / "checkpoints").glob("*.pt"):
        saved.unlink()
    result = cli(*args, "sweep.resume=sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "job 1: no checkpoint to resume from, it runs again" in result.stdout
    assert (job / "metrics.json").is_file() and "resumed" not in (job / "train.log").read_text()
    aside = job / "unfinished-1"
    assert list((aside / "tb").glob("events.*")) and (aside / "train.log").is_file()


def test_joblib_runs_jobs_side_by_side_and_a_stop_signal_says_how_to_finish_them(cli, tmp_path):
    """SIGTERM to the command while joblib's workers ran the jobs said "stopped by SIGTERM while no
    run was in progress: nothing was left half written" (exit 143), and no way to finish the sweep."""
    import signal

    from conftest import signal_when

    args = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=mlp,linear", "trainer.epochs=20"]
    args += ["dataset.batch_size=4", "trainer.progress=none", "hydra.sweep.dir=sweep"]
    code, _, err = signal_when(args, tmp_path, "sweep/*/checkpoints/last.pt", signal.SIGTERM, settle_s=0.2)
    assert code == 75 and "Traceback" not in err, err[-3000:]
    printed = err.split("error: stopped by SIGTERM. Finish the sweep with: ", 1)[1].strip()
    assert printed == f"dlbench {' '.join(args[:-1])} sweep.resume={tmp_path / 'sweep'}", printed
    assert not any((tmp_path / "sweep" / j / "metrics.json").is_file() for j in ("0", "1"))
    result = cli(*shlex.split(printed)[1:])  # (pasted)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all((tmp_path / "sweep" / j / "metrics.json").is_file() for j in ("0", "1"))


def test_optuna_search_of_three_trials(cli, tmp_path):
    write_mnist(tmp_path / "data")
    search = ["experiment=mlp_mnist", "hparams_search=mlp_mnist", "hydra.sweeper.n_trials=3"]
    data = ["dataset.root=data", "dataset.download=false", "trainer.epochs=1"]
    result = cli("-m", *search, *data, "hydra.sweep.dir=sweep")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0", "1", "2"]
    assert "Best trial" in result.stdout
    assert (tmp_path / "sweep" / "optimization_results.yaml").is_file()
    pasted = result.stdout.split("Train it with: ", 1)[1].splitlines()[0]  # the best trial alone
    assert pasted.startswith("dlbench experiment=mlp_mnist hparams_search=mlp_mnist"), pasted
    done = subprocess.run(["bash", "-c", pasted], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "test/acc" in done.stdout, done.stderr[-2000:]
    # (a resumed search's words hold sweep.resume: pasted, the command was refused as a sweep's)
    from omegaconf import OmegaConf

    from dlbench.summary import best_trial_command

    resumed = OmegaConf.create(
        {"hydra": {"overrides": {"task": [*search[:2], "sweep.resume=sweep", "x.y=1"]}}}
    )
    assert best_trial_command(resumed, {"x.y": 2}) == f"dlbench {' '.join(search[:2])} x.y=2"


def test_a_sweep_preset_without_dash_m_says_so(cli, tmp_path):
    result = cli("experiment=optimizers", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert (
        "experiment=optimizers is a sweep; this runs one job. Run all: dlbench -m experiment=optimizers\n"
        in (result.stderr)
    )
    assert "is a sweep" not in cli("experiment=digits_mlp", "--cfg", "job").stderr
    # (an Optuna search's best trial, trained from the command its summary prints: it was
    # "experiment=digits_mlp is a sweep", with a command that searched again)
    searched = cli("experiment=digits_mlp", "hparams_search=mlp_mnist", "--cfg", "job").stderr
    assert (
        "note: hparams_search=mlp_mnist is a search (-m runs it); this trains one run with its settings"
        in searched
    )
    assert "experiment=digits_mlp is a sweep" not in searched
    # one of the user's own (./configs): `new` says to run it with -m, and so does the note
    made = cli("new", "experiment", "my_sweep", "--from", "optimizers")
    assert "run it with  dlbench -m experiment=my_sweep\n" in made.stdout, made.stdout
    header = (tmp_path / "configs" / "experiment" / "my_sweep.yaml").read_text().splitlines()[1]
    assert header == "# dlbench -m experiment=my_sweep"
    note = "note: experiment=my_sweep is a sweep; this runs one job. Run all: dlbench -m experiment=my_sweep "
    one = cli("experiment=my_sweep", "trainer.epochs=1", "trainer.progress=none", "hydra.run.dir=one")
    assert one.returncode == 0 and f"{note}trainer.epochs=1 " in one.stderr, one.stderr[-2000:]


def test_a_sweep_folder_that_holds_a_sweep_prints_the_command_that_finishes_it(tmp_path):
    """The hint is the user's own command with sweep.resume added (it was `dlbench -m ...`, which
    fails when pasted); pasted, it runs only the job not done."""
    import re

    from conftest import shell

    (tmp_path / "cfg").mkdir()  # (the user's config folder: the hint gives it back too)
    command = (
        "dlbench -m --config-dir cfg 'trainer.epochs=1,2' trainer.progress=none 'hydra.sweep.dir=my sweep'"
    )
    assert shell(command, tmp_path).returncode == 0
    (tmp_path / "my sweep" / "1" / "metrics.json").unlink()  # (job 1 not finished)
    again = shell(command, tmp_path)
    assert again.returncode == 2
    hint = re.search(r"If this command started that sweep, finish it with: (dlbench .*)$", again.stderr)
    hint = hint.group(1)
    assert (
        hint == "dlbench -m --config-dir cfg trainer.epochs=1,2 trainer.progress=none "
        f"'sweep.resume={tmp_path / 'my sweep'}'"
    )  # (sweep.resume names the folder)
    finished = shell(hint, tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (tmp_path / "my sweep" / "1" / "metrics.json").is_file()


STOPS_ITSELF = """
import signal, sys
from dlbench.engine.trainer import Trainer
optimize, calls = Trainer.optimize, []
def stopping(self, optimizations, name, loss):
    optimize(self, optimizations, name, loss)
    calls.append(1)
    if len(calls) == 3:  # (a cluster's SIGTERM during the first job)
        signal.raise_signal(signal.SIGTERM)
Trainer.optimize = stopping
sys.argv = ["dlbench", *sys.argv[1:]]
from dlbench.cli import entrypoint
entrypoint()
"""


def test_a_stopped_sweep_says_how_to_finish_it_and_its_jobs_keep_their_overrides(cli, tmp_path):
    """A stop signal in a sweep's job points at the sweep (it printed `resume=<sweep>/0`, which
    finishes that job alone), and `sweep.resume` is not recorded as a job's own override (it was
    in the summary, in compare and in the job's overrides.yaml)."""
    import subprocess
    import sys

    from conftest import user_env

    args = ["-m", "optimizer.lr=0.01,0.001", "trainer.epochs=1", "trainer.progress=none"]
    command = [sys.executable, "-c", STOPS_ITSELF, *args, "hydra.sweep.dir=sweep"]
    stopped = subprocess.run(command, cwd=tmp_path, env=user_env(), capture_output=True, text=True)
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    printed = stopped.stderr.split("Finish the sweep with: ", 1)[1].strip()
    assert printed == f"dlbench {' '.join(args)} sweep.resume={tmp_path / 'sweep'}", stopped.stderr[-2000:]
    result = cli(*shlex.split(printed)[1:])  # (the command, pasted)
    assert result.returncode == 0, result.stderr[-2000:]
    for job in ("0", "1"):
        recorded = (tmp_path / "sweep" / job / ".hydra" / "overrides.yaml").read_text()
        assert "optimizer.lr=" in recorded and "sweep." not in recorded, recorded
    rows = list(csv.DictReader((tmp_path / "sweep" / "summary.csv").open()))
    assert [r["overrides"].split()[0] for r in rows] == ["optimizer.lr=0.01", "optimizer.lr=0.001"]
    assert not any("sweep." in r["overrides"] for r in rows)


def test_a_lesson_sweep_refuses_a_value_that_would_split_its_job_folders(cli, tmp_path):
    """The lesson sweeps name each job's folder by its overrides: a / in a value (the docs' own
    trainer.monitor=val/acc) made two folders, the summary found no job, and a sweep whose jobs
    all failed exited 0 (a review). Refused before anything runs, with the way out."""
    result = cli("-m", "experiment=optimizers", "trainer.monitor=val/acc", "hydra.sweep.dir=s")
    assert result.returncode == 2, result.stderr
    assert "trainer.monitor=val/acc: this sweep names each job's folder by its overrides" in result.stderr
    assert "'hydra.sweep.subdir=${hydra.job.num}'" in result.stderr and not (tmp_path / "s").exists()


def test_a_sweep_configs_own_values_are_checked_with_the_command_lines_before_job_1(cli, tmp_path):
    """A preset's hydra.sweeper.params join the command line's overrides in every job, as
    Hydra's sweeper joins them: `optimizer.betas` is Adam's, not SGD's (experiment=optimizers'
    first job). It was Hydra's raw error from the launched job 0, with multirun.yaml left; now
    one message before anything is written. A key on the command line replaces the config's
    values, and an Optuna search's choice() values are checked as a grid's are."""
    from dlbench import preflight

    result = cli("-m", "experiment=optimizers", "optimizer.betas=[0.9,0.99]", "hydra.sweep.dir=s")
    assert result.returncode == 2, result.stderr
    assert (
        "Unknown key 'optimizer.betas'" in result.stderr and "in the job with optimizer=sgd:" in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "s").exists()
    names = [
        (c.optimizer.name, c.optimizer.get("momentum"))
        for c in preflight.check(["experiment=optimizers"], mode="multirun")
    ]
    assert names == [("sgd", 0.0), ("sgd", 0.9), ("adam", None), ("adamw", None), ("rmsprop", 0.0)]
    # (presets swept: Hydra composes the sweep's config without them, and runs neither's own sweep)
    assert len(preflight.check(["experiment=norms,linear_regression"], mode="multirun")) == 2
    mine = ["experiment=optimizers", "optimizer=adam,adamw", "optimizer.betas=[0.9,0.99]"]
    assert [c.optimizer.name for c in preflight.check(mine, mode="multirun")] == ["adam", "adamw"]
    searched = preflight.check(["hparams_search=mlp_mnist"], mode="multirun")
    assert {(tuple(c.model.hidden), c.dataset.batch_size) for c in searched} == {
        (h, b) for h in [(64,), (128,), (256,), (256, 128)] for b in (32, 64, 128)
    }


def test_a_sweep_with_a_job_resumed_alone_is_finished_by_the_command_printed_without_dash_m(cli, tmp_path):
    """`dlbench sweep.resume=DIR` (no -m) printed `dlbench -m sweep.resume=DIR`, which ran the
    jobs without the sweep's overrides and was refused; and a job resumed on its own, in place
    (with the resume= command dlbench prints for it), recorded resume= among its overrides, so
    the sweep's own command was refused for good (a review). The sweep's words come from its
    multirun.yaml, as the allow-list of a saved run's keeps them (plugins are the user's); they
    may be given in any order."""
    import re

    import yaml
    from conftest import shell

    started = (
        "dlbench -m 'model.hidden=[8],[16]' trainer.max_steps=2 trainer.progress=none hydra.sweep.dir=sw"
    )
    assert shell(started, tmp_path).returncode == 0
    (tmp_path / "sw" / "1" / "metrics.json").unlink()  # (job 1 not finished)
    assert cli("resume=sw/0", "trainer.progress=none").returncode == 0  # (job 0 resumed alone)
    saved = yaml.safe_load((tmp_path / "sw" / "multirun.yaml").read_text())
    saved["hydra"]["overrides"]["task"].append("plugins=[planted]")
    (tmp_path / "sw" / "multirun.yaml").write_text(yaml.safe_dump(saved))
    hint = cli("sweep.resume=sw")
    assert hint.returncode == 2, hint.stderr
    command = re.search(r"run it with -m, (dlbench .*)$", hint.stderr).group(1)
    assert (
        command
        == "dlbench -m 'model.hidden=[8],[16]' trainer.max_steps=2 trainer.progress=none sweep.resume=sw"
    )
    # (a sweep's word typed with another value: it was printed in place of the sweep's, and the
    # command printed was refused when pasted)
    other = cli("sweep.resume=sw", "trainer.max_steps=5")
    assert re.search(r"run it with -m, (dlbench .*)$", other.stderr).group(1) == command, other.stderr
    # (its words in another order, as a student retypes it: the same jobs; it was refused)
    retyped = "dlbench -m trainer.progress=none trainer.max_steps=2 'model.hidden=[8],[16]' sweep.resume=sw"
    finished = shell(retyped, tmp_path)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert (tmp_path / "sw" / "1" / "metrics.json").is_file()


def test_a_sweep_resume_with_other_overrides_is_refused_and_writes_in_no_job(cli, tmp_path):
    """A review: every job was refused, yet error.txt went into the finished jobs' folders and the
    command exited 0. Now the command exits 2 with the reason, and no job folder is written; nor
    the sweep's files (it printed the summary, and its multirun.yaml became the refused
    command's, which `compare outputs/multirun` then took for the newest sweep)."""
    sweep = ["-m", "trainer.seed=1,2", "trainer.epochs=1", "trainer.progress=none", "hydra.sweep.dir=s"]
    assert cli(*sweep, "trainer.checkpoint_budget=1").returncode == 0
    files = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    # (refused before Hydra starts, with the command that finishes it, where multirun.yaml tells)
    early = cli(*sweep, "sweep.resume=s")
    assert early.returncode == 2 and "Launching" not in early.stderr, early.stderr
    assert "sweep.resume=s finishes a sweep with the words that started it (trainer.seed=1,2 " in early.stderr
    assert early.stderr.strip().endswith(
        ": dlbench -m trainer.seed=1,2 trainer.epochs=1 trainer.progress=none trainer.checkpoint_budget=1 "
        "hydra.sweep.dir=s sweep.resume=s"
    )
    assert {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()} == files
    # (Hydra's words were not compared: a new subdir ran every job again beside the finished ones)
    other = "hydra.sweep.subdir=x${hydra.job.num}"
    subdir = cli(*sweep, "trainer.checkpoint_budget=1", "sweep.resume=s", other)
    said = "with the Hydra settings that chose its jobs and their folders as it started (none), not "
    assert subdir.returncode == 2 and said + other in subdir.stderr, subdir.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()} == files
    # (a multirun.yaml whose words do not pass the saved-run allow-list tells nothing: each job checks)
    import yaml

    saved = yaml.safe_load((tmp_path / "s" / "multirun.yaml").read_text())
    saved["hydra"]["overrides"]["task"].append("name=${oc.env:HOME}")
    (tmp_path / "s" / "multirun.yaml").write_text(yaml.safe_dump(saved))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "s").rglob("*") if p.is_file()}
    result = cli(*sweep, "sweep.resume=s")
    assert result.returncode == 2, result.stderr
    assert "sweep.resume finishes a sweep with the command that started it" in result.stderr
    assert "Sweep summary" not in result.stdout
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("[01]/**/*") if p.is_file()}
    assert after == {p: when for p, (when, _) in before.items() if p.parent.name != "s"}
    assert {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()} == {
        p: data for p, (_, data) in before.items()
    }
    # (the reason a killed command left behind is not this command's: it was obeyed, every job skipped)
    (tmp_path / "s" / ".refused").write_text("an old reason\n")
    again = cli(*sweep, "trainer.checkpoint_budget=1", "sweep.resume=s")
    assert again.returncode == 0 and "an old reason" not in again.stderr, again.stderr[-2000:]


def test_ctrl_c_on_a_sweep_prints_the_command_that_finishes_it_and_it_pastes(tmp_path):
    """Ctrl-C on a local sweep said "interrupted" alone: now exit 130 and the sweep's command with
    sweep.resume=, which pasted resumes the interrupted job from its checkpoint and runs the rest."""
    import signal

    from conftest import shell, signal_when

    args = [
        "-m",
        "optimizer.lr=0.001,0.01",
        "trainer.epochs=20",
        "dataset.batch_size=4",
        "hydra.sweep.dir=sweep",
    ]
    code, _, err = signal_when(args, tmp_path, "sweep/0/checkpoints/last.pt", signal.SIGINT, settle_s=0.2)
    assert code == 130, err[-3000:]
    printed = err.split("interrupted. Finish the sweep with: ", 1)[1].strip()
    # (it names the folder, from the root: pasted in another folder, a relative one named nothing)
    assert printed == f"dlbench {' '.join(args[:-1])} sweep.resume={tmp_path / 'sweep'}", printed
    assert not (tmp_path / "sweep" / "1").exists() and "Traceback" not in err
    pasted = shell(printed, tmp_path)
    assert pasted.returncode == 0, pasted.stderr[-3000:]
    assert "resumed at epoch" in (tmp_path / "sweep" / "0" / "train.log").read_text()
    assert all((tmp_path / "sweep" / job / "metrics.json").is_file() for job in "01")


def test_an_optuna_search_whose_every_trial_fails_lists_them_without_a_traceback(cli, tmp_path):
    """Optuna's study raised "No trials are completed yet." through Hydra, which printed its
    traceback (exit 1): now the failed trials are listed with the command that runs them again."""
    args = ["-m", "hparams_search=mlp_mnist", "dataset=digits", "model.input_shape=null", "optimizer=sgd"]
    args += ["optimizer.weight_decay=1e300", "hydra.sweeper.n_trials=2", "trainer.epochs=1"]
    args += ["hydra.sweep.dir=s"]
    result = cli(*args)  # (a weight decay that fails each trial's first steps, whatever the lr)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert "error: hydra/sweeper=optuna stopped the sweep: ValueError: No trials are completed yet." in (
        result.stderr
    )
    assert "2 jobs failed: 0, 1" in result.stderr and f" sweep.resume={tmp_path / 's'}\n" in result.stderr
    assert "SGD's step failed" in (tmp_path / "s" / "0" / "error.txt").read_text()  # (the trial's own error)
    # (Optuna's sweeper writes no multirun.yaml: compare took an older grid for the newest sweep,
    # and sweep.resume without -m printed `dlbench -m sweep.resume=s`, every word lost)
    assert (tmp_path / "s" / "multirun.yaml").is_file()
    hint = cli("sweep.resume=s")
    assert hint.returncode == 2 and "run it with -m, dlbench -m hparams_search=mlp_mnist dataset=digits" in (
        hint.stderr
    ), hint.stderr


def test_joblib_jobs_side_by_side_share_the_cores_as_joblib_counts_its_workers(monkeypatch):
    """n_jobs=-2 is joblib's "every core but one": each job took every core (only -1 was read)."""
    import os

    import torch
    from omegaconf import OmegaConf

    from dlbench.launch import share_machine

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    cfg = OmegaConf.create({"device": {"type": "cpu"}})
    kept = torch.get_num_threads()
    try:
        for n_jobs, threads in ((-1, 1), (-5, 2), (2, 4), (-8, 8)):  # (-8: 1 job, left as it was)
            torch.set_num_threads(8)
            launcher = {"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", "n_jobs": n_jobs}
            share_machine(cfg, OmegaConf.create({"launcher": launcher, "job": {"num": 0}}))
            assert torch.get_num_threads() == threads, n_jobs
    finally:
        torch.set_num_threads(kept)


def test_a_lesson_sweeps_job_folder_names_leave_hydras_own_settings_out(tmp_path, monkeypatch):
    """Its "Run all:" hint gave back the user's hydra.run.dir, whose / the check of the job folders'
    names refused, though Hydra leaves its own settings out of those names."""
    from dlbench import preflight
    from dlbench.errors import DlbenchError

    monkeypatch.chdir(tmp_path)
    words = ["experiment=optimizers", "trainer.epochs=1", "hydra.run.dir=my runs/c d"]
    preflight.check_command(words, mode="multirun", said=["-m", *words])  # (it raised)
    with pytest.raises(DlbenchError, match="a / would make it two folders"):
        preflight.check_command([*words, "trainer.monitor=val/acc"], mode="multirun", said=["-m", *words])


def test_a_sweeps_jobs_are_listed_in_the_order_hydra_launched_them(tmp_path):
    """A lesson's job folders are named by their overrides: sorted by name, experiment=optimizers'
    job 1 (sgd_momentum) came last and activations' sigmoid fourth (a review). Numbered folders
    by number; a folder whose hydra.yaml says nothing after the others."""
    from dlbench.summary import job_dirs

    launched = ["optimizer=sgd", "optimizer=sgd_momentum", "optimizer=adam", "optimizer=adamw"]
    for number, name in enumerate(launched):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        hydra = f"hydra:\n  job:\n    name: train\n    override_dirname: {name}\n    num: {number}\n"
        hydra += "  launcher:\n    num: 99\n"  # (another node's num)
        (tmp_path / name / ".hydra" / "hydra.yaml").write_text(hydra)
    (tmp_path / "odd" / ".hydra").mkdir(parents=True)  # (no hydra.yaml)
    (tmp_path / "2" / ".hydra").mkdir(parents=True)  # (a job that failed before its hydra.yaml: its folder's)
    (tmp_path / "7" / ".hydra").mkdir(parents=True)  # (a link is not read: a FIFO's read never ends)
    (tmp_path / "7" / ".hydra" / "hydra.yaml").symlink_to(tmp_path / launched[0] / ".hydra" / "hydra.yaml")
    assert [p.name for p in job_dirs(tmp_path)] == [*launched[:2], "2", *launched[2:], "7", "odd"]
    # (sweep.resume compares a job's words in any order, but where a key is given twice, the last wins)
    from dlbench.launch import in_order

    assert in_order(["b=1", "a=2"]) == in_order(["a=2", "b=1"])
    assert in_order(["a=1", "a=2"]) != in_order(["a=2", "a=1"])


def test_what_jobs_share_keeps_each_override_whole(tmp_path):
    """A plugin's path with a space was two words of the `shared:` line (the overrides were
    split on spaces)."""
    from dlbench import summary

    for job, seed in (("0", 0), ("1", 1)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        words = f"- plugins=[my dir/net.py]\n- trainer.seed={seed}\n"
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(words)
    shared, own = summary.varying_overrides(summary.collect([tmp_path]))
    assert shared == ["plugins=[my dir/net.py]"] and own == ["trainer.seed=0", "trainer.seed=1"]


def test_a_long_curve_label_is_wrapped_below_the_axis_and_the_plot_keeps_its_size():
    """A review: a resumed run's label (its `resume=PATH` override) in the legend squeezed the
    curves of `report` and `compare --plot` into a strip, with matplotlib's raw warning."""
    import warnings

    from dlbench.figures import curves_figure
    from dlbench.report import png

    long = "resume=outputs/digits_linear/2026-12-07_09-23-31_908445/checkpoints/last.pt " * 4
    curves = [(long, [1, 2, 3], [1.0, 0.5, 0.3]), ("_a", [1, 2, 3], [0.9, 0.6, 0.2])]  # (_: left out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (constrained_layout's "axes sizes collapsed to zero")
        figure = curves_figure(
            curves, "val/loss", "epoch", f"val/loss: {long}"
        )  # (compare's: what is shared)
        png(figure)
    (axis,) = figure.axes
    assert axis.get_position().width > 0.7 and axis.get_position().height > 0.4
    # the title wrapped too (it ran off the figure), and the epochs whole (ticks said 1.2, 1.4)
    assert all(len(line) <= 80 for line in axis.get_title().splitlines()) and len(axis.get_title()) > 80
    assert all(tick == int(tick) for tick in axis.get_xticks())
    (legend,) = figure.legends
    assert [len(t.get_text().splitlines()) for t in legend.get_texts()] == [3, 1]
