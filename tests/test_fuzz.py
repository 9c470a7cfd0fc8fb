"""Issue 23, by construction: generated hostile values (Hypothesis) fed into every surface that
reads outside data. The properties hold for every value, not for a list of known attacks:

- the exit status is 0 or 2 (never 1: a user's file is never a crash), with no traceback;
- the canary never appears: no code was imported or called (planted.py, a hydra callback);
- nothing a surface only reads is changed (the run folder's files hash the same);
- no control character reaches the output (escapes are shown, not sent), line breaks aside.

Each test records how many cases it tried (`pytest -rA` lists them; the suite's summary prints
them: conftest.py). DLBENCH_FUZZ_SCALE=N runs N times as many."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml
from formats import write_names
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_trust import QUIET, controls, digest, dlbench

from dlbench import cli as dlbench_cli
from dlbench.commands import board
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError

SCALE = int(os.environ.get("DLBENCH_FUZZ_SCALE", "1"))  # more cases: DLBENCH_FUZZ_SCALE=50 pytest ...
FUZZ = {
    "deadline": None,
    "database": None,  # nothing written into the repository
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}

FAKE = "\nerror: FAKE"  # a line break and a line as dlbench prints one: never a line of its own

# pieces hostile text is made of: markup (rich's, HTML's), terminal escapes, interpolations, calls,
# paths, Hydra syntax
PIECES = [
    "[", "]", "[/x]", "[bold]", "[link=https://example.com]", ":smile:",
    "\x1b", "\x1b]0;title\x07", "\x1b[2J", "\x1b[1A", "\r", "\b", "\x07", "\x00", "\x9b", "\u202e",
    "\t", "\n", FAKE,
    "${", "}", "${oc.env:HOME}", "${oc.create:{_target_:os.system}}", "${oc.decode:x}", "${hydra:job.name}",
    "${hydra.run.dir}",
    "_target_", "_args_", "planted", "planted.py", "plugins", "experiment", "hydra.", "hydra/launcher",
    "@", "@_global_", "=", ",", "..", "/", "~", "+", "++", "'", '"', " ", ":", "\\",
    "$", "$x^{",
    "<", ">", "&amp;", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", '" onload="x', "</td>",
    "model.", "trainer.epochs", "optimizer.lr", "name", "mlp", "sgd", "1", "0.5", "null", "[1,2]", "{a:1}",
]  # fmt: skip
pieced = st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join)
hostile_text = st.one_of(pieced, st.text(max_size=24), st.sampled_from(PIECES))
keys = st.one_of(
    st.sampled_from(
        [
            "model",
            "optimizer",
            "experiment",
            "plugins",
            "name",
            "resume",
            "sweep.resume",
            "trainer.epochs",
            "trainer.checkpoint_budget",
            "optimizer.lr",
            "model.hidden",
            "dataset.root",
            "hydra.run.dir",
            "hydra.callbacks.x._target_",
            "hydra.job.env_set.PYTHONPATH",
            "hydra.job_logging.formatters.simple.format",
            "model._target_",
            "+model.x",
            "++trainer.epochs",
            "~trainer",
        ]
    ),  # fmt: skip
    pieced,
)
values = st.one_of(
    st.sampled_from(
        [
            "planted",
            "[planted]",
            "[planted.py]",
            "../../planted",
            "/tmp/planted",
            "mlp",
            "sgd",
            "2",
            "0.1",
            "[64,32]",
            "{a:1}",
            "null",
            "${model.name}",
            "${oc.env:HOME}",
            "${oc.create:{_target_:planted.x}}",
        ]
    ),  # fmt: skip
    hostile_text,
)
overrides = st.one_of(
    st.builds(lambda k, p, v: f"{k}{p}={v}", keys, st.sampled_from(["", "", "@x", "@_global_"]), values),
    hostile_text,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=6,
)
folder_names = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda name: name not in (".", "..") and len(name.encode()) < 200)


def count(request, surface: str) -> None:
    """Count a generated test's cases in its report (conftest.py prints them at the end)."""
    properties = request.node.user_properties
    for i, (name, value) in enumerate(properties):
        if name == "hypothesis_cases":
            properties[i] = (name, [surface, value[1] + 1])
            return
    properties.append(("hypothesis_cases", [surface, 1]))


def assert_inert(code: int, out: str, err: str, allowed=(0, 2)) -> None:
    assert code in allowed, (code, err[-3000:])
    assert "Traceback" not in out + err and "unexpected error" not in err, err[-3000:]
    assert not controls(out + err), repr((out + err)[-2000:])
    assert FAKE not in out + err, repr((out + err)[-2000:])  # (printed as \x0aerror: FAKE)


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with a trained run and the canary module planted.py, as the current folder."""
    folder = tmp_path_factory.mktemp("fuzz")
    marker = folder / "PWNED"
    (folder / "planted.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nx = print\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        assert dlbench_cli.main([*QUIET, f"hydra.run.dir={folder / 'run'}"]) == 0
        yield folder, folder / "run", marker


def no_canary(marker: Path) -> None:
    assert not marker.exists(), "a saved run made dlbench run code"
    assert not {"planted", "dlbench_plugin_planted"} & set(sys.modules)


# ---- saved overrides: a run folder's and a loose checkpoint's ------------------------------------


@settings(max_examples=60 * SCALE, **FUZZ)
@given(saved=st.lists(overrides, min_size=1, max_size=4))
def test_saved_overrides_run_no_code_and_change_nothing(capsys, request, place, saved):
    folder, run, marker = place
    count(request, "saved overrides (run folder, checkpoint)")
    saved_file = run / ".hydra" / "overrides.yaml"
    original = saved_file.read_text()
    loose = folder / "loose.pt"
    state = checkpoint.load(run)
    state["overrides"] = saved
    torch.save(state, loose)
    saved_file.write_text(yaml.safe_dump(saved))
    try:
        before = digest(run)
        for command in (
            ["--cfg", "job", f"resume={run}"],
            ["predict", str(run)],
            ["--cfg", "job", f"resume={loose}"],
        ):
            assert_inert(*dlbench(capsys, *command))
            no_canary(marker)
            assert digest(run) == before
    finally:
        saved_file.write_text(original)


GROUPS = ("experiment", "model", "dataset", "optimizer", "scheduler", "loss", "logger")


@pytest.fixture(scope="module")
def results_folder(place, tmp_path_factory):
    """A folder that holds someone's run beside a configs/ folder whose files name the canary
    plugin (not itself a run's or a sweep's folder: its configs/ is read as the user's)."""
    folder, run, marker = place
    results = tmp_path_factory.mktemp("results")
    shutil.copytree(run, results / "run")
    shutil.copy(folder / "planted.py", results / "planted.py")
    for group in GROUPS:
        (results / "configs" / group).mkdir(parents=True)
        (results / "configs" / group / "pwn.yaml").write_text("# @package _global_\nplugins: [planted]\n")
        (results / "configs" / group / "file.yaml").write_text(
            f"# @package _global_\nplugins: [{folder / 'planted.py'}]\n"
        )
    (results / "configs" / "experiment" / "chain.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: pwn\n  - override /loss: file\n"
    )
    return results, results / "run", marker


choices = st.one_of(  # (chain is a preset's: experiment's alone)
    st.sampled_from(["experiment=chain"]),
    st.builds(lambda g, name: f"{g}={name}", st.sampled_from(GROUPS), st.sampled_from(["pwn", "file"])),
)


@settings(max_examples=30 * SCALE, **FUZZ)
@given(saved=st.tuples(st.lists(choices, min_size=1, max_size=3), st.lists(overrides, max_size=2)))
def test_no_config_a_saved_run_chooses_imports_code(capsys, request, results_folder, monkeypatch, saved):
    """Whatever configs a saved run's overrides choose in the folder that holds it (any group,
    a preset's defaults, a plugin by module or by file), a command that uses the run imports
    no plugin the user's own words do not name."""
    folder, run, marker = results_folder
    monkeypatch.chdir(folder)
    count(request, "configs a saved run chooses")
    saved_file = run / ".hydra" / "overrides.yaml"
    original = saved_file.read_text()
    saved_file.write_text(yaml.safe_dump([*saved[0], *saved[1]]))
    try:
        before = digest(run)
        for command in (["--cfg", "job", f"resume={run}"], ["eval", str(run)]):
            code, out, err = dlbench(capsys, *command)
            assert_inert(code, out, err)
            no_canary(marker)
            assert digest(run) == before
            if not saved[1]:  # (only choices of ./configs: refused before a file there is read)
                assert code == 2 and "this command would read" in err, err
    finally:
        saved_file.write_text(original)


nested_values = st.recursive(
    st.none() | st.integers() | st.sampled_from(["evil_store", "x", "/tmp/x", "http://h", "1"]),
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(
            st.sampled_from(["tracking_uri", "root", "a", "save_dir", "b.path", "name"]), inner, max_size=3
        )
    ),
    max_leaves=5,
)


@settings(max_examples=200 * SCALE, **FUZZ)
@given(
    key=st.sampled_from(
        [
            "logger.mlflow",
            "logger.wandb",
            "model.extra",
            "dataset.augment",
            "dataset.root",
            "task.judge",
            "x.y",
        ]
    ),
    value=nested_values,
)
@example(key="logger.mlflow", value={"tracking_uri": "evil_store", "log_checkpoint": True})
@example(key="dataset.root", value={"train": "data/train"})  # (a place key holding a dict: a review)
def test_a_saved_override_that_is_used_again_sets_no_place(request, key, value):
    """Whatever a saved override's value holds (dicts, lists, dotted keys), one that a resume or
    eval uses again sets no key whose name is a place's (PLACE_KEYS) to anything but null: read
    back as OmegaConf sets it, every key it sets is looked at (a review's dict set tracking_uri)."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from dlbench.commands.runs import PLACE_KEYS, PLACE_SUFFIXES, merge_overrides
    from dlbench.terminal import override

    count(request, "saved overrides' places (dicts, lists)")

    def hydra_text(v) -> str:  # the value as a saved override writes it
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {hydra_text(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(map(hydra_text, v)) + "]"
        return "null" if v is None else override("v", v).split("=", 1)[1]

    saved = f"{key}={hydra_text(value)}"
    try:
        kept = merge_overrides([saved], [])
    except (DlbenchError, HydraException):  # (refused: given again, or not an override at all)
        return
    from dlbench.commands.runs import parsed_value

    cfg = OmegaConf.create()
    OmegaConf.update(cfg, key, parsed_value(kept[0]), merge=True)

    def places(node, path=""):
        last = path.rsplit(".", 1)[-1]
        if node is not None and (last in PLACE_KEYS or last.endswith(PLACE_SUFFIXES)):
            yield path  # (a place key set to anything: a name, a list, a dict of folders)
        elif isinstance(node, dict):
            for k, v in node.items():
                yield from places(v, f"{path}.{k}")
        elif isinstance(node, list):
            for v in node:
                yield from places(v, path)

    assert not list(places(OmegaConf.to_container(cfg))), saved


@settings(max_examples=200 * SCALE, **FUZZ)
@given(name=st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,24}", fullmatch=True), hostile_text))
@example(name="CXX")  # (TorchInductor runs it: a review, past a list of the names known to load code)
@example(name="AWS_SECRET_ACCESS_KEY")  # (env_copy wrote it into the run folder's .hydra/hydra.yaml)
def test_hydra_job_env_set_and_env_copy_take_only_the_variables_of_their_allow_list(
    request, monkeypatch, name
):
    """Whatever its name, a variable hydra.job.env_set sets, or hydra.job.env_copy copies (into
    env_set, saved in the run folder), is refused unless it is on the allow-list (safety.ENV_SET),
    from a config file or the command line alike; set or not in the environment."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from dlbench import safety

    count(request, "hydra.job.env_set and env_copy names")
    if "\0" not in name and "=" not in name and name:
        monkeypatch.setenv(name, "x")  # (env_copy's other refusal: a variable that is not set)
    for job in ({"env_set": {name: "x"}}, {"env_copy": [name]}):
        try:
            cfg = OmegaConf.create({"hydra": {"job": job}})
        except OmegaConfBaseException:  # (a broken interpolation as a value: no config can hold it)
            continue
        if name in safety.ENV_SET:
            safety.check_config(cfg)
        else:
            with pytest.raises(DlbenchError, match="is refused"):  # (by this rule, or another: _target_)
                safety.check_config(cfg)


# ---- what compare, summary and board read: metrics, names, overrides, errors ----------------------


@settings(max_examples=40 * SCALE, **FUZZ)
@given(
    jobs=st.lists(
        st.tuples(
            folder_names, st.dictionaries(hostile_text, json_values, max_size=4), json_values, hostile_text
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda job: job[0],
    )
)
@example(jobs=[("a", {"val/acc": 10**400}, 10**400, "x")])  # (a review: report's float() overflowed)
def test_what_compare_summary_and_board_read_is_printed_as_text(capsys, request, tmp_path_factory, jobs):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from torch.utils.tensorboard import SummaryWriter

    from dlbench import summary

    count(request, "metrics, names, overrides, errors, pictures (compare, summary, board, --plot, report)")

    sweep = tmp_path_factory.mktemp("sweep")
    for name, metrics, acc, error in jobs:
        job = sweep / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.note={error}", name]))
        # (an epoch's length for --plot and report's curves: 10**400 epochs made it 0.0 steps)
        config = {"name": error, "trainer": {"val_every_n_epochs": acc}}
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (job / "tb").mkdir()
        (job / "tb" / "events.out.tfevents.1.x").write_bytes(b"")
        if isinstance(acc, list):  # some jobs failed: the first line of error.txt is shown
            (job / "error.txt").write_text(error)
        else:
            (job / "metrics.json").write_text(json.dumps({**metrics, "test/acc": acc}))
            with SummaryWriter(str(job / "tb")) as writer:  # a curve for --plot, labelled by the overrides
                writer.add_scalar("test/acc", acc if isinstance(acc, float) and acc == acc else 0.0, 1)
                writer.add_scalar("time/epoch_s", 0.5, 3)  # (an epoch's end: curves against epochs)
                picture = TINY_PNG if isinstance(acc, float) else str(error).encode()  # (and not a PNG)
                image = Summary.Image(height=1, width=1, colorspace=3, encoded_image_string=picture)
                writer._get_file_writer().add_summary(
                    Summary(value=[Summary.Value(tag=error, image=image)]), 1
                )
    for args in (
        ["--sort", "test/acc"],
        ["--metrics", "test/acc,test/loss"],
        ["--ascending", "--sort", "x/y"],
        ["--plot", "test/acc", "--out", str(sweep / "acc.png")],
        ["--plot", error, "--out", str(sweep / "e.svg")],
        ["--csv", str(sweep / "c.csv")],
    ):
        code, out, err = dlbench(capsys, "compare", str(sweep), *args)
        assert_inert(code, out, err)
    if (table := sweep / "c.csv").is_file():  # (a `cat` of it: no escape reaches the terminal)
        assert not controls(table.read_text().replace("\r\n", "")), table.read_text()
    for folder in (sweep, sweep / jobs[0][0]):  # the report: a page of text and PNGs only
        code, out, err = dlbench(capsys, "report", str(folder), "--out", str(sweep / "r.html"))
        assert_inert(code, out, err)
        if code == 0:
            assert_only_our_markup((sweep / "r.html").read_text())
    summary.SweepSummary().on_multirun_end(yaml_config(sweep))
    assert_inert(0, *capsys.readouterr())
    if (table := sweep / "summary.md").is_file():  # (a `|` in an override's value added a column)
        lines = table.read_text().splitlines()
        cells = {len(re.split(r"(?<!\\)(?:\\\\)*\|", line)) for line in lines}  # (a `|` not escaped)
        assert len(cells) == 1, table.read_text()
        assert not any(controls(line) for line in lines), table.read_text()
        from markdown_it import MarkdownIt  # (rich's own dependency) renders it: text, no markup

        html = MarkdownIt("commonmark").enable("table").render(table.read_text())
        assert set(re.findall(r"<([a-z]+)", html)) <= {"table", "thead", "tbody", "tr", "th", "td"}, html
    for name in board.named_runs(sweep):
        assert not controls(name) and "," not in name and ":" not in name
    shutil.rmtree(sweep)


TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201a5d9a4a40000000049454e44ae426082"
)


class Markup(HTMLParser):
    """The elements, attributes and style text of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self.in_style = False

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        self.in_style = tag == "style"

    def handle_endtag(self, tag):
        self.in_style = False

    def handle_data(self, data):
        if self.in_style:
            self.styles.append(data)


def assert_only_our_markup(page: str) -> None:
    """A report holds dlbench's own elements and attributes only: whatever a run folder held is
    text or an embedded PNG (an allow-list: any other element or attribute fails)."""
    from dlbench import report

    markup = Markup()
    markup.feed(page)
    tags = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "div", "p", "code",
            "span", "table", "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption", "details",
            "summary", "pre"}  # fmt: skip
    attributes = {"lang", "charset", "http-equiv", "content", "name", "class", "alt", "src"}
    for tag, attrs in markup.elements:
        assert tag in tags and set(attrs) <= attributes, (tag, attrs)
        assert tag == "img" or "src" not in attrs
        assert "src" not in attrs or attrs["src"].startswith("data:image/png;base64,"), attrs
    policy = [a["content"] for t, a in markup.elements if a.get("http-equiv") == "Content-Security-Policy"]
    assert policy == [report.POLICY] and markup.styles == [report.STYLE]


def yaml_config(sweep: Path):
    from omegaconf import OmegaConf

    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})


# ---- labels, class names and the inputs of predict ----------------------------------------------


@pytest.fixture(scope="module")
def names_run(tmp_path_factory):
    """A names classifier whose class names (its files' names) are hostile."""
    root = tmp_path_factory.mktemp("names")
    write_names(
        root,
        {
            "[bold]x": ["Smith", "Jones"] * 4,
            "\x1b]0;t\x07": ["Kim", "Park"] * 4,
            "\u202eA": ["Ng"] * 8,
            "$x^{": ["Li"] * 8,
            "bad\udcff\udc9b31m": ["Wu"] * 8,  # (a file name's bytes that are not UTF-8)
        },
    )
    folder = root / "run"
    args = ["dataset=names", f"dataset.root={root}", "dataset.download=false", "model=rnn", *QUIET]
    assert dlbench_cli.main([*args, f"hydra.run.dir={folder}"]) == 0
    return folder


@settings(max_examples=60 * SCALE, **FUZZ)
@given(inputs=st.lists(hostile_text.filter(lambda t: not t.lstrip("+").startswith("plugins=")), max_size=3))
def test_predict_prints_any_input_and_class_name_as_text(capsys, request, names_run, inputs):
    count(request, "labels, class names, predict inputs")
    assert_inert(*dlbench(capsys, "predict", str(names_run), *inputs))


# ---- the command line -----------------------------------------------------------------------------


@settings(max_examples=60 * SCALE, **FUZZ)
@given(given_overrides=st.lists(overrides.filter(lambda o: "plugins" not in o), min_size=1, max_size=3))
def test_command_line_overrides_call_nothing_and_print_text(capsys, request, place, given_overrides):
    folder, run, marker = place
    count(request, "command-line overrides")
    payload = f"+hydra.callbacks.x={{_target_:pathlib.Path.touch,self:{marker}}}"
    for args in (["--cfg", "job", *given_overrides], ["--cfg", "job", *given_overrides, payload]):
        assert_inert(*dlbench(capsys, *args))
        no_canary(marker)


swept_values = st.one_of(
    values,
    st.sampled_from(
        [
            "glob(nope*)",
            "glob(*)",
            "glob(ad*,exclude=adam)",
            "range(5,1)",
            "range(2)",
            "1,2",
            "sgd,adam",
            "optimizers",
            "norms",
            "interval(0,1)",
            "choice(1,2)",
            "[8],[16]",
            "8,16",
        ]
    ),  # fmt: skip
)


@settings(max_examples=30 * SCALE, **FUZZ)
@given(
    words=st.lists(
        st.builds(lambda k, v: f"{k}={v}", keys, swept_values) | overrides, min_size=1, max_size=3
    ).filter(lambda words: not any("plugins" in w for w in words))
)
@example(words=["optimizer=glob(nope*)"])
@example(words=["experiment=optimizers", "optimizer.betas=[0.9,0.99]"])
def test_a_sweeps_every_job_is_checked_in_one_message_whatever_it_sweeps(request, place, words):
    """What `dlbench -m WORDS` checks before Hydra starts (every job, with a preset's own swept
    values: preflight.preset_sweep): the configs, or one DlbenchError; nothing run, nothing
    written. (An empty sweep was an IndexError once the preset's values were read.)"""
    from dlbench import preflight

    folder, run, marker = place
    count(request, "a sweep's command line")
    before = sorted(p.name for p in folder.iterdir())
    try:
        assert preflight.check(words, mode="multirun")
    except DlbenchError as err:
        assert str(err).strip()
    no_canary(marker)
    assert sorted(p.name for p in folder.iterdir()) == before


config_sources = st.lists(
    st.fixed_dictionaries(
        {"path": hostile_text | st.integers(), "provider": st.sampled_from(["dlbench-user", "main", 3])}
    )
    | hostile_text,
    max_size=2,
)


@settings(max_examples=25 * SCALE, **FUZZ)
@given(
    task=st.lists(st.builds(lambda k, v: f"{k}={v}", keys, swept_values) | overrides, max_size=4),
    sources=config_sources,
)
@example(task=["model.hidden=[8],[16]", "plugins=[planted]", "trainer.epochs=1"], sources=[])
@example(task=["trainer.epochs=1"], sources=[{"path": "my configs; rm -rf ~", "provider": "dlbench-user"}])
@example(task=["trainer.epochs=1"], sources=[{"path": "/", "provider": "dlbench-user"}])  # (a folder there)
@example(task=[], sources=[{"path": "x" * 5000, "provider": "dlbench-user"}])  # (too long a name to look at)
def test_a_sweeps_saved_words_reach_a_printed_command_only_as_the_allow_list_keeps_them(
    capsys, request, place, task, sources
):
    """`dlbench sweep.resume=DIR` without -m prints the command that finishes the sweep, with
    the words its multirun.yaml says started it (data: the folder may be someone else's, and
    the command is pasted): only where every value they give is one a saved run may set, and
    never a plugin (code the user names); the sweep's config folders never in that command
    (a config folder can name plugins), named beside it as text; exit 2, nothing written."""
    from dlbench.commands.runs import SAVED_ROOTS
    from dlbench.commands.train import started_sweep, sweep_saved
    from dlbench.compose import groups

    folder, run, marker = place
    count(request, "a sweep's multirun.yaml (the command that finishes it)")
    sweep = folder / "saved_sweep"
    sweep.mkdir(exist_ok=True)
    saved = {"hydra": {"overrides": {"task": task}, "runtime": {"config_sources": sources}}}
    (sweep / "multirun.yaml").write_text(yaml.safe_dump(saved))
    before = digest(sweep)
    code, out, err = dlbench(capsys, f"sweep.resume={sweep}")
    assert code == 2 and "run it with -m, dlbench -m " in err, err[-2000:]
    assert_inert(code, out, err)
    named = [s["path"] for s in sources if isinstance(s, dict) and s["provider"] == "dlbench-user"]
    command = err.split("run it with -m, ", 1)[1].split("; the sweep also read the configs in ", 1)
    assert "--config-dir" not in shlex.split(command[0]), err
    there = [p for p in named if isinstance(p, str) and os.path.isdir(p)]
    assert (len(command) == 2) == bool(there), err  # (each folder still there: named as text beside it)
    if len(there) == 1 and there[0].isprintable():  # (else in $'...' quotes), read back as that path
        assert shlex.split(command[1].split(" (its multirun.yaml says)", 1)[0]) == there, (err, there)
    for word in started_sweep(sweep_saved(sweep), sweep):
        assert word in task and not word.startswith(("plugins", "+plugins", "hydra", "~"))
        key = word.split("=", 1)[0].lstrip("+")
        assert re.fullmatch(r"[A-Za-z]\w*(\.[A-Za-z]\w*)*", key) and (
            key in groups() or key.split(".")[0] in SAVED_ROOTS
        )
    assert digest(sweep) == before
    no_canary(marker)


@settings(max_examples=40 * SCALE, **FUZZ)
@given(metrics=st.dictionaries(hostile_text, json_values | st.integers(min_value=10**300), max_size=4))
@example(metrics={"test/loss": 10**400})  # (`{:.4g}` of it raised OverflowError)
def test_a_runs_repr_shows_any_metrics_as_text(request, metrics):
    """dlbench.Run's repr (what a notebook shows) of whatever a metrics.json holds."""
    from dlbench.api import Run

    count(request, "a run's metrics (dlbench.Run's repr)")
    shown = repr(Run(Path("run"), metrics))
    assert shown.startswith("Run('") and not controls(shown), shown


cells = st.one_of(hostile_text, st.integers().map(str), st.floats().map(str), st.just("step"))


@settings(max_examples=40 * SCALE, **FUZZ)
@given(rows=st.lists(st.lists(cells, max_size=4), max_size=6))
@example(rows=[["step", "metric", "value"], ["3", "val/acc", "0.5"], ["4", "val/acc", "nan"]])
def test_a_runs_metrics_csv_is_read_as_curves_or_not_at_all(request, tmp_path_factory, rows):
    """A run logged without TensorBoard: compare --plot and report read its metrics.csv (data:
    any rows), curves of whole steps and numbers, or none."""
    import csv

    from dlbench import logged

    count(request, "a run's metrics.csv (curves without TensorBoard)")
    folder = tmp_path_factory.mktemp("csv_run")
    with open(folder / "metrics.csv", "w", newline="", errors="surrogateescape") as f:
        csv.writer(f).writerows(rows)
    for steps, values in logged.curves(folder).values():
        assert all(type(s) is int for s in steps) and all(type(v) is float for v in values)
        assert len(steps) == len(values)


@settings(max_examples=20 * SCALE, **FUZZ)
@given(before=hostile_text, after=hostile_text)
def test_an_errors_lines_are_dlbenchs_whatever_the_values_it_quotes(capsys, request, place, before, after):
    """An error's line breaks are dlbench's own (or Hydra's, where what it read holds none): a
    value it quotes that holds a line break and a line as dlbench prints one shows them as
    escapes, on its own line (a name, a metric, a key, an override Hydra cannot read)."""
    folder, run, marker = place
    count(request, "values an error quotes")
    value = before + FAKE + after
    for args in (
        ["list", "models", value],
        ["compare", str(run), "--metrics", value],
        [f"model={value}"],
        [f"trainer.monitr={value}"],
        [f"{value}=1"],
        ["show", f"model='{value}'"],
    ):
        code, out, err = dlbench(capsys, *args)
        assert code == 2 and "error: " in err, (args, err[-2000:])
        assert_inert(code, out, err)


@settings(max_examples=15 * SCALE, **FUZZ)
@given(
    options=st.lists(
        st.tuples(st.sampled_from(["--steps", "--min-lr", "--max-lr", "--out"]), hostile_text), max_size=2
    ),
    given_overrides=st.lists(overrides.filter(lambda o: "plugins" not in o), max_size=2),
)
@example(options=[("--min-lr", "1e-320")], given_overrides=[])  # (1e-320 to 10: trained at lr inf)
@example(options=[("--min-lr", "1"), ("--max-lr", "100")], given_overrides=[])  # (no lr to suggest)
def test_lr_find_takes_any_option_and_override_as_data(capsys, request, place, options, given_overrides):
    folder, run, marker = place
    count(request, "lr-find options and overrides")
    found = folder / "outputs" / "lr_find"
    before = set(found.iterdir()) if found.is_dir() else set()
    args = [word for pair in options for word in pair]
    code, out, err = dlbench(
        capsys, "lr-find", "--steps", "20", *args, *given_overrides, "trainer.progress=none"
    )
    assert_inert(code, out, err, allowed=(0, 1, 2))
    no_canary(marker)
    if code == 1:  # (a range over which the loss did not fall: its curve is written, no lr suggested)
        assert "error: no lr to suggest: the loss did not fall over the range" in err, err[-2000:]
    if code == 2:  # refused: nothing written
        assert (set(found.iterdir()) if found.is_dir() else set()) == before


# ---- a checkpoint's contents ---------------------------------------------------------------------


@settings(max_examples=40 * SCALE, **FUZZ)
@given(
    key=st.sampled_from(["config", "overrides", "plugins", "data", "trainer", "task", "rng", "name"]),
    value=st.one_of(
        json_values,
        st.builds(lambda v: f"name: {v}\nmodel: {{name: mlp}}\nplugins: [planted]\n", hostile_text),
        st.builds(lambda k, v: {"model.1.weight": v, k: torch.zeros(2)}, hostile_text, json_values),
    ),
)
@example(key="config", value="name: ${\\\nmodel: {name: mlp}\n")  # (OmegaConf's grammar refuses it)
def test_a_checkpoints_contents_are_data(capsys, request, place, key, value):
    import dlbench as api

    folder, run, marker = place
    count(request, "checkpoint contents (load_model, predict, resume, export)")
    state = checkpoint.load(run)
    state[key] = value
    edited = folder / "edited.pt"
    torch.save(state, edited)
    try:
        api.load_model(edited)
    except DlbenchError:
        pass
    no_canary(marker)
    assert_inert(*dlbench(capsys, "predict", str(edited), "x.png"))
    assert_inert(*dlbench(capsys, "--cfg", "job", f"resume={edited}"))
    exported = folder / "exported" / "model.pt"
    code, out, err = dlbench(capsys, "export", str(edited), "--out", str(exported))
    assert_inert(code, out, err)
    assert exported.is_file() == (code == 0) and (exported.parent / "model.yaml").is_file() == (code == 0)
    shutil.rmtree(exported.parent, ignore_errors=True)  # (refused: nothing was written)
    no_canary(marker)


@settings(max_examples=10 * SCALE, **FUZZ)
@given(names=st.one_of(json_values, st.lists(hostile_text, min_size=10, max_size=10)))
def test_the_class_names_a_checkpoint_holds_are_data_to_eval(capsys, request, place, names):
    """eval notes where a run's classes are not the data's: the run's are the checkpoint's, data
    (any value, as text, or the checkpoint refused)."""
    folder, run, marker = place
    count(request, "a checkpoint's class names (eval's note)")
    state = checkpoint.load(run)
    state["data"] = {**state["data"], "class_names": names}
    edited = folder / "named.pt"
    torch.save(state, edited)
    assert_inert(*dlbench(capsys, "eval", str(edited)))
    no_canary(marker)


@settings(max_examples=40 * SCALE, **FUZZ)
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_a_checkpoints_bytes_are_data(capsys, request, place, edits, cut):
    """A checkpoint damaged anywhere in its pickle (a torn copy, a flipped bit): one message, not
    a KeyError or a UnicodeDecodeError from inside torch's reader (a review flipped bytes 400
    times: a third escaped as 'unexpected error')."""
    import zipfile

    folder, run, marker = place
    count(request, "a checkpoint's bytes (predict, export)")
    with zipfile.ZipFile(run / "checkpoints" / "last.pt") as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    name = next(n for n in members if n.endswith("/data.pkl"))
    pickled = bytearray(members[name])
    for where, value in edits:
        pickled[int(where * len(pickled))] = value
    members[name] = bytes(pickled[: int(cut * len(pickled))] if cut is not None else pickled)
    damaged = folder / "damaged.pt"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_STORED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    assert_inert(*dlbench(capsys, "predict", str(damaged), "x.png"))
    exported = folder / "exported" / "model.pt"
    code, out, err = dlbench(capsys, "export", str(damaged), "--out", str(exported))
    assert_inert(code, out, err)
    shutil.rmtree(exported.parent, ignore_errors=True)
    no_canary(marker)


@settings(max_examples=30 * SCALE, **FUZZ)
@given(
    class_names=st.one_of(st.none(), st.lists(hostile_text, max_size=12)),
    normalization=st.one_of(
        st.none(), st.lists(st.lists(st.floats(allow_nan=False), max_size=3), max_size=3), json_values
    ),
    num_classes=st.one_of(st.none(), st.integers(-1, 12)),
)
def test_a_checkpoints_data_facts_are_data(capsys, request, place, class_names, normalization, num_classes):
    """The data facts a checkpoint keeps (what predict and export read instead of the data set)
    agree with each other: ten class names for ten classes, a mean and a std per channel (a
    review's `class_names: ['a']` and `normalization: [[0.5]]` crashed predict)."""
    from PIL import Image

    folder, run, marker = place
    count(request, "a checkpoint's data facts (predict, export)")
    Image.new("L", (8, 8)).save(folder / "digit.png")
    state = checkpoint.load(run)
    state["data"] = {**state["data"], "class_names": class_names, "normalization": normalization}
    if num_classes is not None:
        state["data"]["num_classes"] = num_classes
    edited = folder / "facts.pt"
    torch.save(state, edited)
    assert_inert(*dlbench(capsys, "predict", str(edited), str(folder / "digit.png"), "--top-k", "12"))
    no_canary(marker)


@settings(max_examples=20 * SCALE, **FUZZ)
@given(names=st.lists(hostile_text, min_size=2, max_size=4))
@example(names=["$\\foo$", "plain"])  # (a CSV's label the review found)
@example(names=["bad\udcff", "\udc9b31mRED"])  # (class folders named in bytes that are not UTF-8)
def test_every_figure_draws_any_class_name_as_text(request, names):
    """Class names and run names reach matplotlib as text: a `$` in a CSV's label stopped the
    decision-regions figure (matplotlib read it as a formula: an 'unexpected error')."""
    import io

    from dlbench import figures

    count(request, "class names in figures")
    n = len(names)
    x, y = torch.randn(4 * n, 2), torch.arange(4 * n) % n
    drawn = [
        figures.confusion_figure(torch.eye(n), names, True, "val split"),
        figures.decision_regions_figure(lambda t: (t[:, 0] > 0).long(), x, y, names, "val split", steps=20),
        figures.curves_figure([(name, [0, 1], [1.0, 0.5]) for name in names], names[0], "epoch", names[1]),
    ]
    for figure in drawn:
        figure.savefig(io.BytesIO(), format="png")


@settings(max_examples=25 * SCALE, **FUZZ)
@given(name=folder_names)
@example(name="a,b 'c' ${name}\t\\")
@example(name="null")
@example(name="bad\udcff\udc9b")  # (a folder named in bytes that are not UTF-8: printed, it crashed)
def test_a_printed_resume_command_pastes_back_to_its_folder(request, name):
    """`Continue with: dlbench resume=...` is pasted into bash or zsh, then read by Hydra and
    OmegaConf: whatever the folder's name (a comma, a quote, `${`, a tab), the run it names is
    that folder, and the printed line holds no control character."""
    import subprocess

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from dlbench import terminal
    from dlbench.commands.runs import override_value

    count(request, "printed commands (resume=, sweep.resume=)")
    folder = f"/tmp/runs/{name}"
    printed = terminal.command(terminal.override("resume", folder))
    assert not controls(printed)
    for program in ("bash", "zsh"):
        line = f"printf '%s\\0' {printed.removeprefix('dlbench ')}"
        bare = {"PATH": os.environ["PATH"]}  # (no locale: the shell's escapes must not need one)
        pasted = subprocess.run([program, "-c", line], capture_output=True, env=bare)  # (bytes: a \r stays)
        words = pasted.stdout.decode("utf-8", "surrogateescape").split("\0")[:-1]  # (as Python reads argv)
        assert len(words) == 1, (program, printed, pasted.stderr)
        value = OverridesParser.create().parse_override(words[0]).value()
        assert OmegaConf.create({"resume": value}).resume == folder, (program, printed)
        assert override_value(words, "resume") == folder, (program, printed)  # (dlbench's own reading)


@settings(max_examples=25 * SCALE, **FUZZ)
@given(names=st.lists(folder_names, min_size=1, max_size=3, unique=True), newest=st.booleans())
@example(names=["run", "x\nerror: FAKE"], newest=False)
def test_a_folder_of_runs_means_its_newest_whatever_its_folders_names(capsys, request, place, names, newest):
    """`resume=outputs/NAME` (and eval, predict, export: one rule, checkpoint.find) takes the
    folder's newest run, whatever the names of the folders in it: the real run (the first name)
    when its last.pt is the newest, else a folder whose last.pt is not a checkpoint, refused in
    one message. Either way nothing in the folder changes and what is printed is text."""
    import tempfile

    folder, run, marker = place
    count(request, "a folder of runs (outputs/NAME)")
    runs = Path(tempfile.mkdtemp(dir=folder))
    try:
        for number, name in enumerate(names):
            if number == 0:
                shutil.copytree(run, runs / name)
            else:
                (runs / name / "checkpoints").mkdir(parents=True)
                (runs / name / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
            written = 2_000_000_000 + (number if newest is False else -number)  # (seconds)
            os.utime(runs / name / "checkpoints" / "last.pt", (written, written))
        before = digest(runs)
        code, out, err = dlbench(capsys, "--cfg", "job", f"resume={runs}")
        assert_inert(code, out, err)
        no_canary(marker)
        assert digest(runs) == before
        chosen = names[0] if newest or len(names) == 1 else names[-1]
        assert code == (0 if chosen == names[0] else 2), err[-2000:]
        assert "holds runs: using the one checkpointed last" in err, err
        assert ("is not a checkpoint" in err) == (code == 2), err
    finally:
        shutil.rmtree(runs)


@settings(max_examples=20 * SCALE, **FUZZ)
@given(names=st.lists(folder_names, min_size=1, max_size=3, unique=True))
@example(names=["sweep", "x\nerror: FAKE"])
def test_a_folder_of_sweeps_means_its_newest_whatever_its_folders_names(capsys, request, place, names):
    """`compare outputs/multirun` takes the sweep run last (its multirun.yaml written last),
    whatever the names of the folders: the note names it as text, nothing in the folder changes."""
    import tempfile

    from dlbench.terminal import inert

    folder, run, marker = place
    count(request, "a folder of sweeps (compare outputs/multirun)")
    sweeps = Path(tempfile.mkdtemp(dir=folder))
    try:
        for number, name in enumerate(names):
            shutil.copytree(run, sweeps / name / "0")  # (a sweep of one job)
            (sweeps / name / "multirun.yaml").write_text("{}\n")
            written = 2_000_000_000 + number  # (seconds: the last name is the newest)
            os.utime(sweeps / name / "multirun.yaml", (written, written))
        before = digest(sweeps)
        code, out, err = dlbench(capsys, "compare", str(sweeps))
        assert_inert(code, out, err)
        no_canary(marker)
        assert digest(sweeps) == before
        assert code == 0 and "1 run" in out, err[-2000:]
        assert inert(f"holds sweeps: using the one run last, {sweeps / names[-1]}") in err, err  # (as text)
    finally:
        shutil.rmtree(sweeps)


so_far_values = st.one_of(
    json_values,
    st.fixed_dictionaries(  # what Trainer.so_far saves, each part of any shape
        {},
        optional={
            "running": st.fixed_dictionaries({"sums": json_values, "count": json_values}),
            "rates": json_values | st.dictionaries(st.text(max_size=12), st.floats() | json_values),
            "epoch": st.fixed_dictionaries(
                {
                    "means": st.fixed_dictionaries(
                        {"values": json_values, "sizes": json_values, "count": json_values}
                    ),
                    "metrics": st.one_of(
                        json_values,
                        st.fixed_dictionaries(
                            {
                                "counts": st.one_of(st.none(), st.builds(torch.ones, st.integers(0, 12))),
                                "samples": json_values,
                            }
                        ),
                    ),
                }
            ),
        },
    ),
)


@settings(max_examples=60 * SCALE, **FUZZ)
@given(so_far=so_far_values)
@example(so_far={"epoch": {"means": {"values": {"loss": [0.5]}, "sizes": {"loss": [2]}, "count": 2},
                           "metrics": {"counts": torch.ones(3), "samples": 2}}})  # fmt: skip
def test_a_checkpoints_sums_so_far_are_data(request, so_far):
    """A checkpoint written in the middle of an epoch keeps the epoch's sums so far (and the
    running loss's window): read back, they are the shape dlbench saves or one message, and what
    is carried sums without an error."""
    from dlbench.engine.means import BatchMeans, RunningMeans
    from dlbench.engine.training_state import checked_so_far
    from dlbench.tasks.metrics import Accuracy

    count(request, "a checkpoint's sums so far (resume)")
    try:
        carried = checked_so_far(so_far)
    except DlbenchError:
        return
    rates = carried.get("rates", {"train/lr": 0.1})  # (train/lr of the epoch's last step: floats by name)
    assert rates and all(isinstance(k, str) and isinstance(v, float) for k, v in rates.items())
    means, running, accuracy = BatchMeans("step"), RunningMeans(5), Accuracy(10)
    try:
        if "running" in carried:
            running.carry(carried["running"], torch.device("cpu"))
        if "epoch" in carried:
            means.carry(carried["epoch"]["means"])
            if carried["epoch"]["metrics"] is not None:
                accuracy.carry(carried["epoch"]["metrics"], torch.device("cpu"))
    except (ValueError, KeyError, TypeError):  # (Trainer.carry: one DlbenchError)
        return
    means.add({"loss": torch.tensor(0.5)}, 2)
    running.add({"loss": torch.tensor(0.5)}, 5)
    accuracy.update(torch.tensor([1, 2]), torch.tensor([1, 3]))
    means.result("train"), accuracy.compute()


optimizer_states = st.one_of(
    json_values,
    st.builds(  # a tensor of any small shape and dtype
        lambda shape, dtype: torch.zeros(shape, dtype=dtype),
        st.lists(st.integers(0, 130), max_size=3),
        st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.complex64]),
    ),
)


@settings(max_examples=15 * SCALE, **FUZZ)
@given(
    index=st.integers(0, 3),  # which of the MLP's four parameters
    key=st.one_of(st.sampled_from(["exp_avg", "exp_avg_sq", "step", "max_exp_avg_sq"]), hostile_text),
    value=optimizer_states,
    fused=st.sampled_from([True, None, "yes", [1]]),
)
@example(index=0, key="exp_avg", value=torch.zeros(4), fused=True)  # (fused: read past its end)
@example(index=0, key="step", value=torch.tensor(False), fused=None)  # (a generated case: it was a crash)
@example(index=1, key="step", value=torch.tensor(-3.0), fused=True)  # (bias correction 1 - 0.9**-2 < 0)
def test_a_checkpoints_optimizer_state_is_data_when_a_run_resumes_from_it(
    capsys, request, place, index, key, value, fused
):
    """A resume steps (fused) Adam from a checkpoint's optimizer state: any state, whatever its
    shapes, types or flags, trains or is refused in one message (the fused kernel checks no
    size: a short state tensor would be read and written past its end)."""
    folder, run, marker = place
    count(request, "a checkpoint's optimizer state (resume)")
    state = checkpoint.load(run)
    state["optimizers"]["model"]["state"][index][key] = value
    for group in state["optimizers"]["model"]["param_groups"]:
        group["fused"] = fused
    edited = folder / "edited-optimizer.pt"
    torch.save(state, edited)
    resumed = folder / "resumed"
    try:
        code, out, err = dlbench(
            capsys, *QUIET, f"resume={edited}", "trainer.epochs=2", f"hydra.run.dir={resumed}"
        )
        assert_inert(code, out, err)
        if code == 2:  # refused: nothing written
            assert not resumed.exists() or not any(resumed.rglob("*.pt"))
        else:
            assert torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["trainer"]["epoch"] == 2
    finally:
        shutil.rmtree(resumed, ignore_errors=True)
    no_canary(marker)


# ---- what a tracking server answers -------------------------------------------------------------


class FailingTracker:
    """A tracker (MLflow, W&B) whose every call fails with `text`: a server's answer, any text."""

    tracker, name = True, "mlflow"

    def __init__(self, text: str):
        self.text = text

    def scalars(self, *args) -> None:
        raise RuntimeError(self.text)

    flush = close = scalars


class Kept:
    """A backend of the run's own files (TensorBoard, metrics.csv): keeps what it is given."""

    def __init__(self):
        self.steps = []

    def scalars(self, values, step, wall_time=None) -> None:
        self.steps.append(step)

    def flush(self) -> None:
        pass

    def close(self, outcome: str = "finished") -> None:
        pass


@settings(max_examples=30 * SCALE, **FUZZ)
@given(text=st.one_of(hostile_text, hostile_text.map(lambda t: t * 20_000)))  # (and one of 20,000 times)
@example(text="a\tb")  # (a tab inside the first line: it reached the warning as a tab)
@example(text="\U0002ebe1" * 20_000)  # (a generated case: a character this Python does not name, \U-escaped)
def test_a_tracker_that_fails_is_one_warning_as_text_and_the_run_goes_on(request, text):
    import logging

    from dlbench.engine.logging import RunLogger, log

    count(request, "a tracking server's errors (MLflow, W&B)")
    records = []  # (a handler of the test's own: a CLI run before it may have set propagate off)
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    log.addHandler(handler)
    try:
        logger = RunLogger(Path("unused"), "none", 0.1)
        tracker, kept = FailingTracker(text), Kept()
        logger.backends = [tracker, kept]
        for step in (1, 2):
            logger.scalars({"train/loss": 0.5}, step)
        assert kept.steps == [1, 2] and logger.backends == [kept]  # every value kept; the tracker let go
        logger.flush()
        logger.close()
    finally:
        log.removeHandler(handler)
    warned = [r.getMessage() for r in records if "logger mlflow failed" in r.getMessage()]
    assert len(warned) == 1 and not controls(warned[0]) and "Traceback" not in warned[0]
    assert len(warned[0]) < 5500  # (its text cut after 500 characters, each escape at most 10: \U0002ebe1)


@settings(max_examples=30 * SCALE, **FUZZ)
@given(text=hostile_text)
def test_a_terminals_log_lines_print_any_message_as_text(request, text):
    """trainer.progress=rich's log lines (engine/logging.py's TerminalLines): a message is
    shown as written, nothing in it sent to the terminal as a control or read as markup."""
    import io
    import logging

    from dlbench import terminal
    from dlbench.engine.logging import TerminalLines

    count(request, "a terminal's log lines (trainer.progress=rich)")
    screen = io.StringIO()
    lines = TerminalLines(terminal.InertConsole(file=screen, width=10_000, color_system=None))
    for level in (logging.INFO, logging.WARNING):
        lines.handle(logging.LogRecord("dlbench", level, __file__, 1, text, None, None))
    shown = screen.getvalue()
    assert not controls(shown), repr(shown)
    visible = terminal.inert(text, keep="\n\t").rstrip()
    if "\t" not in visible:  # (rich shows a tab as spaces)
        assert shown.count(visible) >= 2 if visible else shown.count("\n") >= 2


LAUNCHER_LOG = "hydra._internal.core_plugins.basic_launcher"  # (its `#0 : OVERRIDES` lines)


@settings(max_examples=30 * SCALE, **FUZZ)
@given(text=hostile_text, name=st.sampled_from(["dlbench", "hydra.core", LAUNCHER_LOG, "optuna", ""]))
@example(text="a\nFAKE: x", name=LAUNCHER_LOG)
def test_any_loggers_lines_are_text_whoever_writes_them(request, text, name):
    """A review: Hydra's launcher lines (`#0 : trainer.monitor=<ESC>...`, a sweep's folder name)
    and Optuna's were printed raw; the filter sat on dlbench's logger alone. Every record the
    process makes is inert from its making (terminal.protect_logs): its message, its arguments,
    its traceback, written by any handler."""
    import io
    import logging

    import dlbench.engine.logging  # noqa: F401  (what installs it, as every command imports it)

    count(request, "any logger's lines (Hydra's, Optuna's, a plugin's)")
    screen = io.StringIO()
    handler = logging.StreamHandler(screen)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        logger.warning(text)
        logger.warning("%s : %s", text, [text])
        # (one line each: a line break in a value forged a line of its own, Hydra's launcher's `#0 : ...`)
        assert screen.getvalue().count("\n") == 2, repr(screen.getvalue())
        try:
            raise ValueError(text)
        except ValueError:
            logger.exception("failed: %s", text)
    finally:
        logger.removeHandler(handler)
    shown = screen.getvalue()
    assert not controls(shown.replace("\n", "").replace("\t", "")), repr(shown)
    assert "ValueError" in shown and "Traceback" in shown  # (the traceback is kept, as text)


@settings(max_examples=30 * SCALE, **FUZZ)
@given(text=hostile_text)
def test_a_tables_title_shows_every_character_of_a_name(request, text):
    """A review: a table's title (eval's `Test metrics of <run>`) lost the BEL, BS and CR of a
    folder's name (rich's Text drops them): shown, like every other control, as an escape."""
    import io

    from dlbench import terminal
    from dlbench.engine.logging import new_table

    count(request, "a table's title")
    screen = io.StringIO()
    table = new_table(f"Test metrics of {text}", "metric", "value")
    table.add_row("test/acc", "0.5")
    terminal.InertConsole(file=screen, width=100_000, color_system=None).print(table)
    shown = screen.getvalue()
    assert not controls(shown) and terminal.inert(f"Test metrics of {text}").split("\n")[0] in shown
