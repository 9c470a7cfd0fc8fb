"""Issue 15: a user's own project (a model plugin, a Dataset plugin, a CSV file, an experiment
preset in ./configs) trained, swept, resumed, evaluated, predicted and exported with dlbench, as
subprocesses from that folder; the plugins a saved run names are never imported on its say-so."""

import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import shell, user_env
from PIL import Image

from dlbench.errors import DlbenchError

QUIET = ["trainer.progress=none"]

MODELS_PY = '''
from pathlib import Path

from torch import nn

from dlbench import MODELS

Path("imported_my_models.txt").write_text("my_models was imported\\n")  # a visible side effect


@MODELS.register("tiny_net")
def tiny_net(
    input_shape: list[int],  # from the data
    num_outputs: int,  # from the data
    width: int = 16,  # hidden units
) -> nn.Module:
    """A tiny MLP of my own."""
    flat = 1
    for size in input_shape:
        flat *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(flat, width), nn.ReLU(), nn.Linear(width, num_outputs))
'''

DATA_PY = '''
import torch
from PIL import Image
from torch.utils.data import Dataset

from dlbench import DATASETS


@DATASETS.register("my_flowers")
class Flowers(Dataset):
    """Dark and bright 12x12 'flowers', as PIL images: my own Dataset."""

    classes = ["dark", "bright"]

    def __init__(self, n: int = 80, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.labels = (torch.rand(n, generator=g) > 0.5).long().tolist()
        self.noise = torch.rand(n, generator=g).tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        value = int(60 + 130 * self.labels[i] + 20 * self.noise[i])
        return Image.new("RGB", (12, 12), (value, value, value)), self.labels[i]
'''

FLOWERS_YAML = """\
# @package _global_
# My flowers, my tiny net.
#   dlbench experiment=flowers
defaults:
  - override /model: tiny_net
  - override /dataset: my_flowers
  - _self_

plugins: [my_models, my_data]
name: flowers
model:
  width: 8
dataset:
  batch_size: 16
optimizer:
  lr: 0.01
trainer:
  epochs: 2
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("myproject")
    (folder / "my_models.py").write_text(MODELS_PY)
    (folder / "my_data.py").write_text(DATA_PY)
    (folder / "configs" / "experiment").mkdir(parents=True)
    (folder / "configs" / "experiment" / "flowers.yaml").write_text(FLOWERS_YAML)
    rows = ["length,width,kind"] + [
        f"{i % 7 + 1}.{i % 3},{(i * 3) % 5 + 1}.5,{'big' if i % 2 else 'small'}" for i in range(60)
    ]
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    Image.new("RGB", (12, 12), (220, 220, 220)).save(folder / "bright.png")
    return folder


def dlbench(project: Path, *args: str, python: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", python] if python else [sys.executable, "-m", "dlbench", *args]
    env = user_env(COLUMNS="200")
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def runs(project: Path, name: str) -> list[Path]:
    return sorted(p for p in (project / "outputs" / name).iterdir() if (p / "metrics.json").is_file())


def test_a_users_project_trains_sweeps_resumes_evaluates_predicts_and_exports(project):
    # plugins named on the command line; a model with no YAML, a key from its signature
    out = ok(
        dlbench(
            project,
            "plugins=[my_models,my_data]",
            "model=tiny_net",
            "model.width=32",
            "dataset=my_flowers",
            "trainer.epochs=1",
            *QUIET,
        )
    )
    assert "outputs/my_flowers_tiny_net/" in out
    first = runs(project, "my_flowers_tiny_net")[0]
    saved = torch.load(first / "checkpoints" / "last.pt", weights_only=True)
    assert saved["plugins"] == ["my_models", "my_data"]
    assert saved["data"]["input_shape"] == [3, 12, 12] and saved["data"]["class_names"] == ["dark", "bright"]
    assert saved["task"]["model.1.weight"].shape == (32, 3 * 12 * 12)  # model.width=32 reached it

    # the preset in ./configs names its plugins itself
    ok(dlbench(project, "experiment=flowers", *QUIET))
    run = runs(project, "flowers")[0]
    assert json.loads((run / "metrics.json").read_text())["test/acc"] >= 0.5

    listing = ok(dlbench(project, "list", "models", "tiny*", "plugins=[my_models]"))  # (a preset's: named)
    assert "tiny_net" in listing and "my_models" in listing and "A tiny MLP of my own." in listing
    assert re.search(r"flowers\s+│ configs\s+│", ok(dlbench(project, "list", "experiments", "flow*")))
    assert "model.width" in ok(dlbench(project, "list", "models", "tiny_net", "plugins=[my_models]"))

    sweep = dlbench(
        project,
        "-m",
        "experiment=flowers",
        "optimizer.lr=0.1,0.01",
        "trainer.epochs=1",
        *QUIET,
        "hydra.sweep.dir=sweep",
    )
    assert "Sweep summary (2 jobs)" in ok(sweep)

    # a run's plugins are named again by the user's own words: its saved experiment= is not theirs
    refused = dlbench(project, "eval", str(run), "plugins=[my_models,my_data]")
    assert refused.returncode == 2 and f"{run}: this command would read" in refused.stderr
    hint = refused.stderr.split("choose it yourself: ")[1].split()
    assert hint == ["dlbench", "eval", str(run), "'plugins=[my_models,my_data]'", "experiment=flowers"]
    refused = dlbench(project, "eval", str(run))  # (both words at once: its preset, its plugins)
    hint = refused.stderr.split("name them yourself: ")[1].split()
    assert hint == ["dlbench", "eval", str(run), "experiment=flowers", "'plugins=[my_models,my_data]'"]
    assert "test/acc" in ok(shell(" ".join(hint), project))  # pasted, it runs
    named = "plugins=[my_models,my_data]"
    ok(dlbench(project, f"resume={run}", "experiment=flowers", "trainer.epochs=3", *QUIET))  # (its preset)
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["trainer"]["epoch"] == 3
    assert "test/acc" in ok(dlbench(project, "eval", str(run), "experiment=flowers"))  # (or both words)
    predicted = ok(dlbench(project, "predict", str(run), "bright.png", named, "--top-k", "1"))
    assert "bright" in predicted.split("bright.png", 1)[1]

    exported = ok(dlbench(project, "export", str(run), named, "--out", "model.pt"))
    assert "load with dlbench.load_model('model.pt', plugins=['my_models'])" in exported
    assert set(torch.load(project / "model.pt", weights_only=True)) == {
        "1.weight",
        "1.bias",
        "3.weight",
        "3.bias",
    }
    check = textwrap.dedent(f"""
        import dlbench, torch
        a = {exported.split("load with ", 1)[1].strip()}  # (as export prints it)
        b = dlbench.load_model("{run}", plugins=["my_models", "my_data"])
        x = torch.rand(2, 3, 12, 12)
        assert not a.training and torch.equal(a(x), b(x)), "the exported model is the run's best"
        print("same outputs", a(x).shape)
        # (a first call that was load_model's cached the trusted calls before Hydra's plugins
        # registered theirs: every later run was refused, 'BasicLauncher' is refused)
        dlbench.train("experiment=iris_mlp trainer.epochs=1 trainer.progress=none logger=none")
    """)
    assert "same outputs torch.Size([2, 2])" in ok(dlbench(project, python=check))


def test_a_saved_run_cannot_make_dlbench_import_its_plugins(project, tmp_path):
    ok(
        dlbench(
            project,
            "plugins=[my_models,my_data]",
            "model=tiny_net",
            "dataset=my_flowers",
            "trainer.epochs=1",
            *QUIET,
            f"hydra.run.dir={tmp_path / 'run'}",
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("my_models.py", "my_data.py"):
        (elsewhere / name).write_text((project / name).read_text())
    hints = []
    for command in (
        ["eval", str(tmp_path / "run")],
        ["predict", str(tmp_path / "run"), "x.png", "--top-k", "2"],  # (before its option: argparse)
        [f"resume={tmp_path / 'run'}", "trainer.epochs=2"],
        ["eval", str(tmp_path / "run"), "plugins=[my_data]"],  # (one named: the hint names both)
        ["--cfg", "job", "--config-dir", str(elsewhere), f"resume={tmp_path / 'run'}"],  # (flags kept)
        ["export", "--out", "m.pt", str(tmp_path / "run")],  # (an option before the run)
    ):
        result = dlbench(elsewhere, *command)
        assert result.returncode == 2, result.stderr
        assert "was trained with the plugins my_models" in result.stderr
        hints.append(result.stderr.split("name them yourself: ", 1)[1].strip())
        assert not (elsewhere / "imported_my_models.txt").exists()  # nothing was imported
    # each hint is the user's own command (inputs and overrides kept), the plugins added
    assert hints[0] == f"dlbench eval {tmp_path / 'run'} 'plugins=[my_models,my_data]'"
    assert hints[1] == f"dlbench predict {tmp_path / 'run'} x.png --top-k 2 'plugins=[my_models,my_data]'"
    assert hints[2] == f"dlbench resume={tmp_path / 'run'} trainer.epochs=2 'plugins=[my_models,my_data]'"
    assert hints[3] == f"dlbench eval {tmp_path / 'run'} 'plugins=[my_data,my_models]'"
    named = "'plugins=[my_models,my_data]'"
    assert hints[4] == f"dlbench --cfg job --config-dir {elsewhere} resume={tmp_path / 'run'} {named}"
    assert hints[5] == f"dlbench export --out m.pt {tmp_path / 'run'} {named}"
    assert "name: my_flowers" in ok(shell(hints[4], elsewhere))  # pasted, each runs (argparse takes them)
    ok(shell(hints[5], elsewhere))
    # from the folder above the plugins: the hint names them by their paths, which count for the
    # saved module names (it named my_models, not found from there, then asked for it again);
    # never a file inside the run's own folder or a hidden one (a shared run could plant them)
    (tmp_path / "run" / "my_models.py").write_text("raise SystemExit('planted')\n")
    (tmp_path / ".cache" / "x").mkdir(parents=True)
    (tmp_path / ".cache" / "x" / "my_data.py").write_text("raise SystemExit('planted')\n")
    above = dlbench(tmp_path, "eval", str(tmp_path / "run"))
    hint = above.stderr.split("name them yourself: ", 1)[1].strip()
    paths = "'plugins=[elsewhere/my_models.py,elsewhere/my_data.py]'"
    assert hint == f"dlbench eval {tmp_path / 'run'} {paths}", above.stderr
    ok(shell(hint, tmp_path))
    (tmp_path / "run" / "my_models.py").unlink()
    shutil.rmtree(tmp_path / ".cache")
    assert (elsewhere / "m.pt").is_file()
    # the hint, pasted into a shell, runs; it imports the plugins it names, and no other module of
    # the folder (a review: naming one left the folder on sys.path, and Hydra's plugin scan
    # imported a ./hydra_plugins/*.py that nobody named)
    (elsewhere / "hydra_plugins").mkdir()
    (elsewhere / "hydra_plugins" / "left_here.py").write_text(f"open({str(elsewhere / 'RAN')!r}, 'w')\n")
    assert "test/acc" in ok(shell(hints[0], elsewhere)) and not (elsewhere / "RAN").exists()
    # from Python: the call to make instead, run as printed
    call = textwrap.dedent(f"""
        import dlbench, re
        try:
            dlbench.train("resume={tmp_path / "run"}", "trainer.epochs=2 trainer.progress=none")
        except dlbench.DlbenchError as err:
            hint = str(err).split("name them yourself: ", 1)[1]
        acc = eval(hint).metrics["test/acc"]
        print("HINT", hint, "ACC", acc)
    """)
    hint, acc = ok(dlbench(elsewhere, python=call)).rsplit("HINT ", 1)[1].strip().split(" ACC ")
    words = f"'resume={tmp_path / 'run'}', 'trainer.epochs=2', 'trainer.progress=none'"
    assert hint == f"dlbench.train({words}, 'plugins=[my_models,my_data]')" and float(acc) >= 0

    missing = dlbench(project, "plugins=[my_modelz]", "trainer.epochs=1")
    assert missing.returncode == 2
    assert "plugin 'my_modelz' (the command line) cannot be found" in missing.stderr
    above = dlbench(tmp_path, "plugins=[my_models]", "model=tiny_net", "--cfg", "job")  # (one folder up)
    hint = above.stderr.split("this folder has ", 1)[1].split()[0]  # (a word, no placeholder)
    assert above.returncode == 2 and hint == "'plugins=[elsewhere/my_models.py]'", above.stderr
    assert "name: tiny_net" in ok(dlbench(tmp_path, "model=tiny_net", "--cfg", "job", eval(hint)))


def test_the_csv_data_set_and_the_python_api(project, monkeypatch):
    import dlbench as api

    out = ok(dlbench(project, "dataset=csv", "dataset.path=table.csv", "trainer.epochs=3", *QUIET))
    assert "outputs/csv_mlp/" in out
    monkeypatch.chdir(project)
    metrics = api.train(
        "dataset=csv",
        "dataset.path=table.csv",
        "dataset.target=kind",
        "trainer.epochs=2",
        *QUIET,
        "hydra.run.dir=api_run",
    )
    assert metrics["test/acc"] >= 0 and (project / "api_run" / "metrics.json").is_file()
    model = api.load_model(project / "api_run")
    assert not model.training and model(torch.zeros(1, 2)).shape == (1, 2)  # 2 features -> big, small
    config = yaml.safe_load((project / "api_run" / ".hydra" / "config.yaml").read_text())
    assert config["dataset"]["name"] == "csv"


def test_a_bug_in_a_constructor_is_a_bug_with_its_traceback_not_a_user_error(tmp_path):
    (tmp_path / "buggy.py").write_text(
        "from torch import nn\nfrom dlbench import MODELS\n\n\n"
        "@MODELS.register('buggy')\n"
        "def buggy(input_shape: list[int], num_outputs: int, width: int = 4) -> nn.Module:\n"
        "    return nn.Linear(width, int('not a number'))  # a bug: ValueError inside the constructor\n"
    )
    result = dlbench(tmp_path, "plugins=[buggy]", "model=buggy", *QUIET, "hydra.run.dir=run")
    assert result.returncode == 1, result.stderr  # a bug, not the user's config
    assert "unexpected error" in result.stderr and "ValueError" in result.stderr
    assert "run/error.txt keeps it" in result.stderr and "Traceback" not in result.stdout + result.stderr
    error = (tmp_path / "run" / "error.txt").read_text()
    assert "Traceback" in error and "buggy.py" in error and "int('not a number')" in error
    wrong = dlbench(tmp_path, "plugins=[buggy]", "model=buggy", "+model.depth=3", *QUIET)
    assert wrong.returncode == 2 and "Unknown key 'model.depth'" in wrong.stderr  # the config's fault


def test_a_users_yaml_for_their_component_starts_from_its_code_and_a_bad_one_is_named(tmp_path):
    """Issue 25: `configs/dataset/my_flowers.yaml` holding only `name` and `n` (one YAML per
    option, the Hydra habit) is merged over the code's node, as dlbench's own files are; a file
    Hydra cannot read is a user error that names the file and the line."""
    (tmp_path / "my_data.py").write_text(DATA_PY)
    (tmp_path / "configs" / "dataset").mkdir(parents=True)
    (tmp_path / "configs" / "dataset" / "my_flowers.yaml").write_text("name: my_flowers\nn: 30\n")
    cfg = ok(dlbench(tmp_path, "plugins=[my_data]", "dataset=my_flowers", "--cfg", "job"))
    dataset = yaml.safe_load(cfg)["dataset"]
    assert dataset["n"] == 30 and dataset["seed"] == 0 and dataset["task"] == "auto"  # n: the file's

    (tmp_path / "configs" / "experiment").mkdir()
    bad = tmp_path / "configs" / "experiment" / "bad.yaml"
    bad.write_text("# @package _global_            (first line: the file sets top-level keys)\nname: x\n")
    result = dlbench(tmp_path, "experiment=bad")
    assert result.returncode == 2 and f"{bad}, line 1: '# @package' takes one name" in result.stderr
    bad.write_text("# @package _global_\nname: [unclosed\n")
    result = dlbench(tmp_path, "experiment=bad")
    assert (
        result.returncode == 2
        and f"{bad}, line 3: not YAML" in result.stderr
        and "from line 2" in result.stderr
    )
    # a bare header in a file nobody chose was blamed for every other error ('' is in any text)
    bad.write_text("# @package\nname: x\n")
    result = dlbench(tmp_path, "trainer.epochz=1", "--cfg", "job")
    assert result.returncode == 2 and "Unknown key 'trainer.epochz'" in result.stderr, result.stderr
    for a, b in (("a", "b"), ("b", "a")):  # (it said "The input is nested too deeply to be read")
        (bad.parent / f"{a}.yaml").write_text(f"# @package _global_\ndefaults:\n  - /experiment/{b}\n")
    result = dlbench(tmp_path, "experiment=a", "--cfg", "job")
    assert result.returncode == 2 and "include each other in a circle" in result.stderr, result.stderr
    # (Hydra's "Key 'experiment' not in 'RunConfig'", the file not named)
    layouts = {
        "": "a preset's keys are the run's own",  # empty
        "# mine\n# @package _global_\nname: x\n": "its first line is '# @package _global_'",  # ignored
        # (a bad header below a plain comment, which Hydra never reads, was refused as a bad header)
        "# mine\n# @package _global_ x\nname: x\n": "its first line is '# @package _global_'",
        "# @package _global_\n- a\n- b\n": "holds a list, where a config file holds settings",
    }
    for text, said in layouts.items():
        bad.write_text(text)
        result = dlbench(tmp_path, "experiment=bad", "--cfg", "job")
        assert result.returncode == 2 and f"error: {bad}: " in result.stderr, (text, result.stderr)
        assert said in result.stderr, (text, result.stderr)
    (tmp_path / "configs" / "model").mkdir()
    (tmp_path / "configs" / "model" / "up.yaml").write_text("# @package ..\nname: mlp\n")
    result = dlbench(tmp_path, "model=up", "--cfg", "job")  # (Hydra's "Key '' not in 'RunConfig'")
    assert "up.yaml, line 1: '# @package' takes one name" in result.stderr, result.stderr


def test_list_imports_no_plugin_a_preset_names_and_says_how_to_list_them(tmp_path):
    """`dlbench list` imported every plugin the presets of ./configs name, chosen by no word of
    the user's (a folder of someone's results may hold one), and failed if one was missing."""
    (tmp_path / "my_models.py").write_text(MODELS_PY + f"\nopen({str(tmp_path / 'IMPORTED')!r}, 'w')\n")
    (tmp_path / "configs" / "experiment").mkdir(parents=True)
    preset = "# @package _global_\nplugins: [my_models]\nmodel:\n  name: tiny_net\n"
    (tmp_path / "configs" / "experiment" / "mine.yaml").write_text(preset)
    listed = ok(dlbench(tmp_path, "list", "models"))
    assert "tiny_net" not in listed and not (tmp_path / "IMPORTED").exists()
    hint = re.search(r"note: your presets name plugins, not imported here\. With them: (dlbench .*)", listed)
    assert hint and hint[1] == "dlbench list models 'plugins=[my_models]'", listed
    assert "tiny_net" in ok(dlbench(tmp_path, *shlex.split(hint[1])[1:]))  # (pasted)
    (tmp_path / "mine.py").write_text("")  # (a plugin of the user's own words: kept in the hint)
    listed = ok(dlbench(tmp_path, "list", "models", "plugins=[mine]"))
    assert "With them: dlbench list models 'plugins=[mine,my_models]'" in listed, listed


@pytest.mark.parametrize(
    "value, said", [("1.5", "as a float"), ("loss.repeat(3)", "as a tensor of shape [3]")]
)
def test_a_task_whose_step_returns_a_value_that_is_not_a_number_is_told_so(cli, tmp_path, value, said):
    """A task of one's own returns its step's values by name, each a 0-d tensor; a float or a
    vector is named in one line (it was an AttributeError or a TypeError deep in the sums)."""
    (tmp_path / "my_task.py").write_text(
        "from dlbench import TASKS\nfrom dlbench.tasks.classification import Classification\n\n\n"
        "@TASKS.register('with_extra')\n"
        "class WithExtra(Classification):\n"
        "    def training_step(self, batch, optimize):\n"
        "        values = super().training_step(batch, optimize)\n"
        "        loss = values['loss']\n"
        f"        return {{**values, 'extra': {value}}}\n"
    )
    result = cli("plugins=[my_task]", "task=with_extra", "trainer.epochs=1", *QUIET, "hydra.run.dir=run")
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"WithExtra.training_step returned 'extra' {said}: each value" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Traceback" not in (tmp_path / "run" / "error.txt").read_text()


def test_a_saved_runs_plugin_names_are_names_and_a_run_named_in_a_config_gets_the_word_to_add():
    """A run named inside a config (a GAN's task.judge) is told the word to add, not a predict
    command; whatever a saved name's characters (a user's folder may hold `+`, `~`, `,`), the
    printed plugins=[...] reads back to exactly the names (a review: a character list refused
    real plugin paths); an empty, padded or non-text name is refused."""
    from dlbench import plugins

    with pytest.raises(DlbenchError, match=r"name them yourself: add 'plugins=\[my_judge_net\]'$"):
        plugins.check_saved(["my_judge_net"], "runs/judge", None)
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser

    names = ["my dir/x.py", "~/p/x.py", "a+b/net.py", "a],x=[b", "mod.sub"]  # (read back only in quotes)
    with pytest.raises(DlbenchError) as refused:
        plugins.check_saved(names, "runs/r", ["eval", "runs/r"])
    word = shlex.split(str(refused.value).split("name them yourself: ", 1)[1])[-1]
    assert OverridesParser.create().parse_override(word).value() == names
    for hostile in ([" a"], [""], [3], "planted"):
        with pytest.raises(DlbenchError, match="is not a list of module names or .py files"):
            plugins.check_saved(hostile, "runs/judge", None)


def test_plugins_given_as_one_string_are_refused_not_imported_letter_by_letter(cli, tmp_path):
    """A review: a preset's `plugins: my_net` (a string) tried each letter as a module ('m');
    on the command line `plugins=my_net` imported it, then the config refused the string."""
    (tmp_path / "my_net.py").write_text("from pathlib import Path\nPath('imported.txt').write_text('')\n")
    (tmp_path / "configs" / "experiment").mkdir(parents=True)
    (tmp_path / "configs" / "experiment" / "mine.yaml").write_text("# @package _global_\nplugins: my_net\n")
    said = "plugins takes a list of module names or .py files ([my_net]), not 'my_net'"
    for args in (["experiment=mine"], ["list", "models"], ["plugins=my_net"]):
        result = cli(*args)
        assert result.returncode == 2 and said in result.stderr, result.stderr
    assert not (tmp_path / "imported.txt").exists()


def test_a_shortened_user_preset_is_noted_without_the_shipped_presets_figures(tmp_path, monkeypatch):
    """`new experiment mine`, trained for fewer epochs than it sets, pointed to docs/presets.md's
    figures, which list none of the user's presets (a helper's)."""
    from dlbench.announce import shortened_preset

    (tmp_path / "configs" / "experiment").mkdir(parents=True)
    (tmp_path / "configs" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntrainer:\n  epochs: 20\n"
    )
    monkeypatch.chdir(tmp_path)
    assert (
        shortened_preset(["experiment=mine", "trainer.epochs=2"])
        == "note: mine trained 2 of its 20 epochs (trainer.epochs=2)"
    )
    assert "docs/presets.md" in shortened_preset(["experiment=iris_mlp", "trainer.epochs=2"])


def test_the_python_api_in_a_notebook_redefines_a_component_and_leaves_the_process_as_it_found_it(
    tmp_path, monkeypatch, capsys
):
    """A review of the API as a notebook uses it: a cell that registers a model, run again after
    a fix, was refused ("registered twice: by __main__ and by __main__") and the old one kept
    training; load_model refused the Run train() returned; trainer.threads=1 kept every later
    run (and the notebook's torch) at one thread; a model function without its `return`, one
    list item holding several overrides, keyword arguments and a Dataset with text labels were
    raw TypeErrors or misleading; Run's repr failed on a text metric."""
    import dlbench
    from dlbench import DATASETS, MODELS
    from dlbench.api import Run
    from dlbench.engine.trainer import Trainer

    monkeypatch.chdir(tmp_path)
    quiet = "dataset=digits trainer.epochs=1 trainer.progress=none"

    def cell(width: int):  # (the same definition, run again: its module and name)
        def cell_net(input_shape: list[int], num_outputs: int) -> torch.nn.Module:
            return torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(64, width), torch.nn.Linear(width, num_outputs)
            )

        cell_net.__module__ = "__main__"  # (a notebook's cell)
        MODELS.register("api_cell_net")(cell_net)

    cell(5)
    renamed = type("CellNet", (torch.nn.Sequential,), {"__module__": "__main__"})  # (the cell, renamed:
    MODELS.register("api_cell_net")(renamed)  # "registered twice: by __main__ and by __main__")
    cell(7)  # (the fix: replaces the first)
    torch.set_num_threads(2)
    import logging

    # a notebook's logging.basicConfig(filename=..., filemode="w"): Hydra's config took it away and
    # closed it (a closed mode-w file was never opened again)
    own = logging.FileHandler(tmp_path / "notebook.log", mode="w")
    logging.getLogger().addHandler(own)
    generators = torch.get_rng_state()  # (seeded by the run: torch.rand drew the same after each)
    try:
        logging.getLogger().warning("before")
        run = dlbench.train(f"model=api_cell_net {quiet} trainer.threads=1 trainer.cudnn_benchmark=true")
        assert own in logging.getLogger().handlers and torch.equal(torch.get_rng_state(), generators)
        logging.getLogger().warning("after")
        own.flush()
        assert (tmp_path / "notebook.log").read_text().splitlines()[-2:] == ["before", "after"]
    finally:
        logging.getLogger().removeHandler(own)
        own.close()
    assert torch.get_num_threads() == 2 and not torch.backends.cudnn.benchmark  # (as the notebook had them)
    assert dlbench.load_model(run)[1].out_features == 7  # (a Run is its folder)
    # Ctrl-C: the caller's KeyboardInterrupt (a SystemExit(130) left Python's except Exception and
    # a notebook said "To exit: use 'exit'"), with the call that goes on
    optimize = Trainer.optimize

    def interrupted(self, optimizations, name, loss):
        if self.state.step == 7:
            raise KeyboardInterrupt
        optimize(self, optimizations, name, loss)

    monkeypatch.setattr(Trainer, "optimize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dlbench.train(f"{quiet} trainer.checkpoint_every_n_steps=5 hydra.run.dir=cut")
    assert "Continue with: dlbench.train('resume=" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    @MODELS.register("api_forgot_return")
    def forgot(input_shape: list[int], num_outputs: int):
        torch.nn.Linear(64, num_outputs)

    class TextLabels(torch.utils.data.Dataset):
        def __len__(self):
            return 50

        def __getitem__(self, index):
            return torch.randn(4), "cat"

    DATASETS.register("api_text_labels")(TextLabels)
    for call, said in [
        (lambda: dlbench.train(f"model=api_forgot_return {quiet}"), "gave NoneType, not a torch.nn.Module"),
        (
            lambda: dlbench.train(["model=linear trainer.epochs=1"]),
            "holds several overrides, and a list's item is one",
        ),
        (
            lambda: dlbench.train(experiment="digits_mlp"),
            "takes overrides as text: dlbench.train('experiment=digits_mlp')",
        ),
        # (Hydra's "LexerNoViableAltException: -m"; "holds no finished run" for a mistyped path)
        (lambda: dlbench.train("-m optimizer.lr=0.1,0.01"), "not the command line's flags (-m): a sweep"),
        (lambda: Run.open(tmp_path / "nowhere"), "nowhere: no such folder"),
        (lambda: Run.open(tmp_path / "notebook.log"), "notebook.log is a file: open its run's folder"),
        (
            lambda: dlbench.train("model=linear dataset=api_text_labels trainer.epochs=1"),
            "sample 0 of TextLabels is tuple",
        ),
    ]:
        with pytest.raises(DlbenchError, match=re.escape(said)):
            call()
    shown = repr(Run(tmp_path, {"test/acc": "n/a", "test/\x1b[31mx": 0.5}))
    assert "test/acc='n/a'" in shown and "\x1b" not in shown
