"""dlbench export RUN --out FILE [--format F] [--opset N]: the trained model in a format that
leaves dlbench, chosen by --format or by the file's suffix:

    state_dict   model.pt           torch.save(model.state_dict()): torch.load(weights_only=True)
                                    into your own class (as seed 002 does)
    safetensors  model.safetensors  the weights only, readable without pickle (safetensors)
    onnx         model.onnx         the graph and weights for onnxruntime and other runtimes; a
                                    dynamic batch axis, opset --opset (18), checked by onnx.checker
                                    and compared with PyTorch in onnxruntime before it is kept
    pt2          model.pt2          torch.export's program (torch.export.load), dynamic batch axis

Beside it, model.yaml: the model's config node and the data facts that size it (classes,
normalisation), so `dlbench.load_model("model.pt")` (or `.safetensors`) rebuilds the model. A
GAN's onnx and pt2 exports are its generator (noise, and a label when conditional, -> images).
Models whose input is not a fixed-shape float tensor (token ids of any length, a seq2seq
decoder's loop) are refused for onnx and pt2: their weights export as state_dict or safetensors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import OmegaConf

from dlbench import files, rundir, terminal
from dlbench.commands.runs import require_plugins, saved_overrides
from dlbench.engine import checkpoint
from dlbench.engine.logging import console
from dlbench.errors import ArgumentParser, DlbenchError, at_least_one, first_line, output_path

USAGE = (
    "usage: dlbench export RUN --out FILE [--format F] [--opset N] [plugins=[a,b]]  (RUN: a run's folder "
    "or checkpoint)"
)
SUFFIXES = {
    ".pt": "state_dict",
    ".pth": "state_dict",
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".pt2": "pt2",
}
FORMATS = ("state_dict", "safetensors", "onnx", "pt2")
EXTRAS = {
    "safetensors": ["safetensors"],
    "onnx": ["onnx", "onnxscript", "onnxruntime"],
}  # pip install 'dlbench[export]'
TOLERANCE = 1e-4  # onnxruntime against PyTorch, largest absolute difference


def export_command(args: list[str]) -> int:
    from dlbench.build import task_from_checkpoint

    parser = ArgumentParser(prog="dlbench export", usage_line=USAGE)
    parser.add_argument("run")
    parser.add_argument("named", nargs="*")
    parser.add_argument("--out", type=output_path, required=True)
    parser.add_argument("--format", choices=FORMATS)
    parser.add_argument("--opset", type=at_least_one)  # (ONNX only: 18)
    parsed = parser.parse_args(args)
    for word in parsed.named:  # (model.hidden=3, device=cuda: ignored, the export written all the same)
        if terminal.key_of(word) not in ("plugins", "experiment"):  # (a preset of yours names its plugins)
            raise DlbenchError(
                f"{word}: export writes the model its checkpoint holds, as it holds it; it takes no "
                "settings but plugins=[...] (or experiment=PRESET, for the plugins your preset names)"
            )
    ckpt = saved_overrides(parsed.run)[0]  # (read as data, as every command that takes a run does)
    require_plugins(parsed.run, ckpt, parsed.named, ["export", *args])
    out = parsed.out
    suffix = out.suffix.lower()  # (model.ONNX as model.onnx)
    kind = parsed.format or SUFFIXES.get(suffix)
    if kind is None or SUFFIXES.get(suffix) != kind:  # (a folder, `.` or '', has no suffix)
        wanted = [s for s, k in SUFFIXES.items() if k == kind] if kind else list(SUFFIXES)
        raise DlbenchError(f"--out {out}: name a {' or '.join(wanted)} file (its .yaml is written beside it)")
    if parsed.opset is not None and kind != "onnx":
        raise DlbenchError(f"--opset is ONNX's operator set: it does nothing for --format {kind}")
    rundir.check_output_file(out, "--out", (suffix,))  # (in a folder that exists)
    spec_file = out.with_suffix(".yaml")
    for path in (out, spec_file):
        if os.path.lexists(path):  # (a link, even one to nothing, is not followed)
            raise DlbenchError(  # (model.pt, then model.onnx: the second's model.yaml is the first's)
                f"{path} exists; dlbench export never writes over a file: name a new file with --out "
                "(each export has its .yaml beside it: --out "
                f"{terminal.shell_word(str(out.with_stem(out.stem + '_' + kind)))})"
            )
    for package in EXTRAS.get(kind, []):
        try:
            __import__(package)
        except ImportError:
            raise DlbenchError(f"--format {kind} needs {package}: pip install 'dlbench[export]'") from None
    state = checkpoint.load(ckpt)
    task, cfg, info = task_from_checkpoint(state, parsed.run)
    model = task.model.eval()
    spec = {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": info.to_dict(),
        "plugins": model_plugins(cfg.model.name, state.get("plugins") or []),
        "from": str(ckpt),
        "format": kind,
    }
    note = WRITERS[kind](model, info, out, parsed.opset or 18)
    load = loader(kind, out, spec["plugins"])
    try:
        files.write_text(spec_file, f"# dlbench export ({kind}): {load}\n" + yaml.safe_dump(spec))
    except DlbenchError:  # (a full disk: the model goes too, so the same --out works again)
        out.unlink(missing_ok=True)
        raise
    console.print(f"wrote {out} ({kind}{note}) and {spec_file}; load with {load}", soft_wrap=True)
    return 0


def loader(kind: str, out: Path, plugins: list[str]) -> str:
    """The Python line that loads an export (with the plugins its model needs named: a model
    file imports none by itself)."""
    if kind in checkpoint.EXPORT_READERS:
        return f"{checkpoint.EXPORT_READERS[kind]}({str(out)!r})" + (".module()" if kind == "pt2" else "")
    return f"dlbench.load_model({str(out)!r}{f', plugins={plugins!r}' if plugins else ''})"


def write_state_dict(model: torch.nn.Module, info: Any, out: Path, opset: int) -> str:
    files.write_bytes(out, lambda f: torch.save(model.state_dict(), f))
    return ""


def write_safetensors(model: torch.nn.Module, info: Any, out: Path, opset: int) -> str:
    from safetensors.torch import save_model

    via_file(out, lambda path: save_model(model, path))
    return ""


def write_onnx(model: torch.nn.Module, info: Any, out: Path, opset: int) -> str:
    import numpy as np
    import onnx
    import onnxruntime

    inputs, names = example_inputs(model, info, "onnx")
    dynamic = tuple({0: torch.export.Dim("batch")} for _ in inputs)
    try:
        # (an opset they cannot reach: the message below; an RNN's weights "assigned during export")
        with converters_quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # (the file is checked against PyTorch below)
            warnings.simplefilter("ignore", FutureWarning)  # (torch's own code: an LSTM's printed 10 lines)
            program = torch.onnx.export(
                model, inputs, dynamo=True, dynamic_shapes=dynamic, input_names=names,
                output_names=["output"], opset_version=opset, verbose=False,
            )  # fmt: skip
    except Exception as err:
        raise DlbenchError(f"ONNX cannot express this model: {first_line(err)}") from err
    via_file(out, program.save)
    try:
        written = onnx.load(str(out))
        onnx.checker.check_model(written, full_check=True)
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    except Exception as err:
        out.unlink(missing_ok=True)
        raise DlbenchError(f"the ONNX file did not check out, so it was not kept: {first_line(err)}") from err
    version = next((o.version for o in written.opset_import if o.domain in ("", "ai.onnx")), None)
    if version != opset:  # (torch's exporter falls back to its own opset where it cannot convert)
        out.unlink(missing_ok=True)
        raise DlbenchError(
            f"--opset {opset}: torch's ONNX exporter wrote opset {version} instead, so the file was "
            "not kept; leave --opset out for 18"
        )
    with torch.no_grad():
        want = model(*inputs).float().numpy()
    gap = float(np.abs(got - want).max())
    if gap > TOLERANCE:
        out.unlink(missing_ok=True)
        raise DlbenchError(
            f"onnxruntime's output differs from PyTorch's by {gap:.2g} (> {TOLERANCE}); not kept"
        )
    return f", opset {opset}, onnxruntime within {gap:.1g} of PyTorch"


@contextlib.contextmanager
def converters_quiet():
    """torch's ONNX exporter and onnxscript's version converter log their fallbacks, with a
    traceback, when an opset other than their own is asked for: the opset written is checked
    after (write_onnx), which says it in one line."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def write_pt2(model: torch.nn.Module, info: Any, out: Path, opset: int) -> str:
    inputs, _ = example_inputs(model, info, "pt2")
    dynamic = tuple({0: torch.export.Dim("batch")} for _ in inputs)
    try:
        with warnings.catch_warnings():  # (an RNN's weights "assigned during export": checked below)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.export(model, inputs, dynamic_shapes=dynamic)
    except Exception as err:
        raise DlbenchError(f"torch.export cannot capture this model: {first_line(err)}") from err
    with torch.no_grad():
        gap = float((program.module()(*inputs) - model(*inputs)).abs().max())
    if gap > TOLERANCE:
        raise DlbenchError(
            f"torch.export's program differs from PyTorch's output by {gap:.2g} (> {TOLERANCE})"
        )
    via_file(out, lambda path: torch.export.save(program, path))
    return f", within {gap:.1g} of PyTorch" if gap else ", as PyTorch's output"


WRITERS = {
    "state_dict": write_state_dict,
    "safetensors": write_safetensors,
    "onnx": write_onnx,
    "pt2": write_pt2,
}


def example_inputs(
    model: torch.nn.Module, info: Any, kind: str
) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """A batch of two inputs of the shape the model takes (two: torch.export makes a batch of 1
    a constant), and their names. A GAN: its generator's noise (and labels)."""
    from dlbench.models.gan import GAN

    torch.manual_seed(0)
    if isinstance(model, GAN) and model.latent_dim:
        noise = torch.randn(2, model.latent_dim)
        if model.num_classes:
            return (noise, torch.arange(2) % model.num_classes), ["noise", "label"]
        return (noise,), ["noise"]
    if info.vocab or len(info.input_shape) == 0 or getattr(model, "decodes", False):
        raise DlbenchError(
            f"--format {kind} takes a model whose input is a float tensor of a fixed shape; this one reads "
            "sequences of token ids of any length (its loop over them is Python's). Export its weights "
            "with --format state_dict or safetensors"
        )
    return (torch.randn(2, *info.input_shape),), ["input"]


def via_file(out: Path, save) -> None:
    """For a library that writes to a path: `save(path)` into a scratch folder, then the bytes
    to `out` whole or not at all (files.write_bytes)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / (out.stem + out.suffix.lower())  # (torch's .pt2 check: M.PT2 said so)
        save(str(path))
        files.write_bytes(out, lambda f: f.write(path.read_bytes()))


def model_plugins(model: str, run_plugins: list[str]) -> list[str]:
    """The one of a run's plugins that registered its model (none for a shipped model)."""
    from dlbench.registry import MODELS

    module = MODELS.get(model).__module__
    return [p for p in run_plugins if p == module or module == f"dlbench_plugin_{Path(p).stem}"]
