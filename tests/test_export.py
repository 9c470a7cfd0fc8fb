"""Issue 28: a trained model leaves dlbench as a state_dict, safetensors, ONNX or torch.export
program, each read back by its own library and compared with PyTorch on the test split."""

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch

from dlbench import compose
from dlbench.build import build_data

QUIET = ["trainer.progress=none", "trainer.threads=1", "logger=none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from dlbench.training import train

    folder = tmp_path_factory.mktemp("export")
    train(compose.compose_config(["trainer.epochs=1", *QUIET]), folder / "run")
    return folder / "run"


def first_test_batch() -> torch.Tensor:
    data = build_data(compose.compose_config(QUIET))
    return next(iter(data.loader("test")))[0]


def test_each_format_reads_back_in_its_own_library_and_matches_pytorch(cli, trained, tmp_path):
    import onnx
    import onnxruntime
    from safetensors.torch import load_file

    import dlbench

    model = dlbench.load_model(trained)
    x = first_test_batch()
    with torch.no_grad():
        want = model(x)
    # the export block of docs/configuration.md, pasted in order in one folder (its examples once
    # wrote model.yaml four times: the second export was refused)
    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    commands = [
        shlex.split(line, comments=True) for line in doc.splitlines() if line.startswith("dlbench export")
    ]
    assert [c[c.index("--out") + 1] for c in commands] == [
        "model.pt",
        "weights.safetensors",
        "net.onnx",
        "program.pt2",
    ]
    shutil.copytree(trained, tmp_path / "outputs" / "digits_mlp" / trained.name)  # (outputs/digits_mlp)
    for words in commands:
        result = cli(*words[1:])
        assert result.returncode == 0, (words, result.stderr)
        assert (tmp_path / words[words.index("--out") + 1]).with_suffix(".yaml").is_file()
    # (a second format under the first's name: its .yaml is the first's; the refusal names a file)
    again = cli("export", "outputs/digits_mlp", "--out", "model.safetensors")
    assert again.returncode == 2 and "model.yaml exists" in again.stderr, again.stderr
    named = again.stderr.split("beside it: ")[1].split(")")[0].split()
    assert named == ["--out", "model_safetensors.safetensors"]
    assert cli("export", "outputs/digits_mlp", *named).returncode == 0
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert (tmp_path / "weights.safetensors").read_bytes()[:2] not in (
        b"PK",
        b"\x80\x02",
    )  # no zip, no pickle
    weights = load_file(tmp_path / "weights.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert torch.equal(dlbench.load_model(tmp_path / "weights.safetensors")(x), want)
    onnx.checker.check_model(onnx.load(str(tmp_path / "net.onnx")), full_check=True)
    session = onnxruntime.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    ((batch_axis, *_),) = [i.shape for i in session.get_inputs()]
    assert isinstance(batch_axis, str)  # a dynamic batch axis: the test batch is not the export's 2
    (got,) = session.run(None, {"input": x.numpy()})
    assert float((torch.from_numpy(got) - want).abs().max()) < 1e-4
    program = torch.export.load(tmp_path / "program.pt2")
    assert float((program.module()(x) - want).abs().max()) < 1e-4
    # (a review: load_model said an .onnx or .pt2 export, or its .yaml, "could run code"; predict
    # called a .pt2 "corrupted")
    for name, said in [
        ("net.onnx", "is a --format onnx export, which onnxruntime.InferenceSession(...) reads"),
        ("program.pt2", "is a --format pt2 export, which torch.export.load(...) reads"),
        ("net.yaml", "describes an export: name the model file beside it"),
    ]:
        with pytest.raises(dlbench.DlbenchError, match=re.escape(said)):
            dlbench.load_model(tmp_path / name)
    predicted = cli("predict", "program.pt2", "x.png")
    assert predicted.returncode == 2 and "torch.export.load reads it" in predicted.stderr, predicted.stderr


def test_a_recurrent_models_export_prints_no_warning_of_torchs_own(cli, tmp_path):
    """An LSTM's ONNX export printed ten lines of torch's FutureWarning (_check_is_size) before
    its one line (a review): torch's code, not the user's."""
    run = ["experiment=lstm_timeseries", "trainer.max_steps=1", *QUIET, "hydra.run.dir=run"]
    assert cli(*run).returncode == 0
    result = cli("export", "run", "--out", "net.onnx", process=True)  # (as Python prints warnings)
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr[-2000:]
    assert result.stdout.startswith("wrote net.onnx (onnx, opset 18, onnxruntime within")


def test_a_gans_export_is_its_generator(cli, tmp_path):
    run = tmp_path / "gan"
    result = cli("task=gan", "model=gan_mlp", "trainer.max_steps=2", *QUIET, f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr
    assert cli("export", str(run), "--out", "g.pt2").returncode == 0
    import dlbench

    generator = dlbench.load_model(run)
    noise = torch.randn(5, generator.latent_dim)
    images = torch.export.load(tmp_path / "g.pt2").module()(noise)
    assert images.shape == (5, 1, 8, 8) and torch.allclose(images, generator(noise), atol=1e-5)


def test_an_export_whose_yaml_cannot_be_written_leaves_no_model_behind(cli, tmp_path, trained, monkeypatch):
    """A review: a full disk after the model was written left m.pt without m.yaml, and the same
    --out was then refused ("exists"): the model goes with its failed description."""
    import errno

    from dlbench import files

    written = files.write_text

    def full(path, text):
        if path.suffix == ".yaml":
            raise files.file_error(OSError(errno.ENOSPC, "No space left on device"), path)
        written(path, text)

    monkeypatch.setattr(files, "write_text", full)
    result = cli("export", str(trained), "--out", "m.pt")
    assert result.returncode == 2 and "No space left on device writing m.yaml" in result.stderr
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.yaml").exists()
    monkeypatch.setattr(files, "write_text", written)
    assert cli("export", str(trained), "--out", "m.pt").returncode == 0 and (tmp_path / "m.yaml").is_file()


def test_what_cannot_be_exported_is_refused_with_the_reason(cli, tmp_path, trained, monkeypatch):
    run = tmp_path / "s2s"
    args = [
        "experiment=seq2seq",
        "dataset.n_pairs=200",
        "trainer.max_steps=2",
        *QUIET,
        f"hydra.run.dir={run}",
    ]
    assert cli(*args).returncode == 0
    (tmp_path / "afile").write_text("")
    for out, extra, message in [
        ("s.onnx", [], "takes a model whose input is a float tensor of a fixed shape; this one reads"),
        ("s.pt2", [], "Export its weights with --format state_dict or safetensors"),
        ("s.onnx", ["--format", "pt2"], "--out s.onnx: name a .pt2 file"),
        ("s.bin", [], "--out s.bin: name a .pt or .pth or .safetensors or .onnx or .pt2 file"),
        ("", [], "argument --out: an empty name"),  # (no name: it was an unexpected error)
        (".", [], "--out .: name a .pt or .pth"),  # (a folder)
        ("s.pt", ["--opset", "12"], "--opset is ONNX's operator set: it does nothing for --format"),
        ("new/s.pt", [], "new/s.pt: new is no folder here (make the folder first, or write elsewhere)"),
        ("afile/s.pt", [], "afile/s.pt: afile is a file, not a folder"),  # (it said "no such folder")
        # (ignored: the checkpoint's model was written all the same, exit 0)
        ("s.pt", ["model.hidden=3"], "model.hidden=3: export writes the model its checkpoint holds"),
    ]:
        result = cli("export", str(run), "--out", out, *extra)
        assert result.returncode == 2 and message in result.stderr, (out, result.stderr)
    # an opset torch's exporter cannot convert to: it wrote its own (18) and the message said 7
    result = cli("export", str(trained), "--out", "m.onnx", "--opset", "7")
    assert result.returncode == 2, result.stderr
    assert "--opset 7: torch's ONNX exporter wrote opset 18 instead" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    result = cli("export", str(trained), "--out", "m.onnx", "--opset", "-1")
    assert result.returncode == 2 and "'-1' is not a whole number of at least 1" in result.stderr
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # (as if not installed)
    result = cli("export", str(trained), "--out", "m.onnx")
    assert result.returncode == 2 and "--format onnx needs onnxruntime: pip install 'dlbench[export]'" in (
        result.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "s2s"]  # nothing written by a refusal
    (tmp_path / "upper").mkdir()  # (a suffix in capitals: it was refused as no format's)
    result = cli("export", str(trained), "--out", str(tmp_path / "upper" / "M.PT"))
    assert result.returncode == 0 and (tmp_path / "upper" / "M.PT").is_file(), result.stderr
    assert cli("export", str(trained), "--out", str(tmp_path / "upper" / "W.SafeTensors")).returncode == 0
    import dlbench

    assert dlbench.load_model(tmp_path / "upper" / "W.SafeTensors") is not None  # (read as safetensors)


def test_load_model_reads_only_what_export_writes_and_takes_plugins_as_a_list(tmp_path):
    """A review: an exported .yaml whose data was `x` or whose model was null raised an
    AttributeError or a TypeError; plugins='my_net' was imported letter by letter ('m')."""
    import yaml

    import dlbench
    from dlbench.errors import DlbenchError
    from dlbench.registry import MODELS

    node = {"name": "mlp", "hidden": [4]}
    model = MODELS.build({**node, "input_shape": [3], "num_outputs": 2}, "model")
    torch.save(model.state_dict(), tmp_path / "m.pt")
    spec = {"model": node, "data": {"name": "tiny", "input_shape": [3], "num_outputs": 2}, "plugins": []}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    x = torch.rand(2, 3)
    assert torch.equal(dlbench.load_model(tmp_path / "m.pt")(x), model.eval()(x))
    for edit in ({"data": "x"}, {"model": None}, {"model": {"hidden": [4]}}, {"plugins": "p"}, {"note": 1}):
        (tmp_path / "m.yaml").write_text(yaml.safe_dump({**spec, **edit}))
        with pytest.raises(DlbenchError, match="m.yaml is not a file dlbench export wrote: that holds model"):
            dlbench.load_model(tmp_path / "m.pt")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({**spec, "data": {"name": "tiny"}}))
    with pytest.raises(DlbenchError, match="data facts are not a data set's: not a mapping with name, input"):
        dlbench.load_model(tmp_path / "m.pt")
    with pytest.raises(
        DlbenchError, match=r"takes a list of module names or \.py files \(plugins=\['my_net'\]\)"
    ):
        dlbench.load_model(tmp_path / "m.pt", plugins="my_net")
