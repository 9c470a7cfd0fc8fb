"""`dlbench show`: a model's layers, output shapes, parameters, MACs and training memory.

Everything is measured on the model the config builds, not looked up: output shapes with
forward hooks, multiply-accumulates with torch's FlopCounterMode (convolutions and matrix
products; elementwise work is not counted), and memory by running one training step on a
batch of two inputs on the CPU: the tensors autograd saves for backward (scaled to the
configured batch size), the weights, their gradients and the optimizer's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlbench import compose, preflight, terminal
from dlbench.config import data_config
from dlbench.data.info import DataInfo
from dlbench.engine.logging import console, new_table
from dlbench.engine.optim import build_optimizer
from dlbench.engine.step import DTYPES
from dlbench.errors import ArgumentParser, DlbenchError, at_least_one, first_line
from dlbench.registry import MODELS
from dlbench.validation import validate


@dataclass
class Layer:
    name: str
    kind: str
    output: str = ""
    params: int = 0
    macs: int = 0


@dataclass
class Summary:
    layers: list[Layer] = field(default_factory=list)
    params: int = 0
    trainable: int = 0
    macs: int = 0  # per input
    memory: dict[str, int] = field(default_factory=dict)  # bytes, at the configured batch size


# what `dlbench show` calls each trainer.precision (config.PRECISIONS) when it estimates memory
PRECISION_NAMES = {"32": "float32", "bf16": "bfloat16 autocast", "16": "float16 autocast", "auto": "float32"}


def input_spec(cfg: DictConfig, overrides: list[str]) -> tuple[DataInfo, str]:
    """The data facts the model is sized for, and where they come from.

    `model.input_shape=[C,H,W]` (and `model.num_outputs=N`) on the command line win. A model
    with a `stem` and no dataset named (no dataset= or experiment=) gets the size its stem is
    for: 3x224x224 and 1000 classes for stem=imagenet, 3x32x32 and 10 classes otherwise.
    Otherwise the dataset says: the built-in image sets without reading them, any other set by
    loading it.
    """
    from dlbench.data.vision import known_shape

    keys = {terminal.key_of(o) for o in overrides}
    outputs = cfg.model.get("num_outputs")

    def info(shape: list[int], classes: int) -> DataInfo:
        return DataInfo(cfg.dataset.name, list(shape), outputs or classes, num_classes=outputs or classes)

    if cfg.model.get("input_shape") is not None:
        return info(cfg.model.input_shape, 10), "given"
    if "stem" in cfg.model and not keys & {"dataset", "dataset.name", "experiment"}:
        if cfg.model.stem == "imagenet":
            return info(*known_shape({"name": "imagenet"})), "ImageNet size (no dataset given)"
        cifar = known_shape({"name": "cifar10"})
        return info(*cifar), "CIFAR size (no dataset given; model.stem=imagenet for 224px)"
    if (known := known_shape(dict(cfg.dataset))) is not None:
        return info(*known), f"dataset {cfg.dataset.name}"
    from dlbench.build import build_data

    try:
        data = build_data(cfg)
    except DlbenchError as err:
        # (what the model takes: a hint of keys it does not have did not work, pasted)
        takes = MODELS.config_node(cfg.model.name) if cfg.model.name in MODELS.names("*") else {}
        given = [k for k in ("input_shape=[C,H,W]", "num_outputs=N") if k.split("=")[0] in takes]
        if given and "vocab_size" not in takes:  # (token ids: sized by the data's vocabulary)
            keys = " ".join(f"model.{k}" for k in given)
            raise DlbenchError(*err.lines, f"(or give the input: {keys})") from err
        raise
    return data.info, f"dataset {cfg.dataset.name}"


def example(n: int, input_shape: list[int], tokens: bool) -> torch.Tensor:
    """n inputs of the data's shape: zeros, or token id 1 everywhere for token data (0 pads)."""
    if tokens:
        return torch.ones(n, *input_shape, dtype=torch.long)
    return torch.zeros(n, *input_shape)


def summarize(
    model: nn.Module,
    input_shape: list[int],
    batch_size: int,
    optimizer: DictConfig,
    precision: str,
    depth: int,
    tokens: bool = False,
) -> Summary:
    out = Summary()
    out.params = sum(p.numel() for p in model.parameters())
    out.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    modules = {name: m for name, m in model.named_modules() if name.count(".") < depth}
    shapes: dict[str, str] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, name=name: shapes.__setitem__(name, describe(o)))
        for name, m in modules.items()
    ]
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(example(1, input_shape, tokens))
    for hook in hooks:
        hook.remove()
    flops = counter.get_flop_counts()
    root = type(model).__name__
    for name, m in modules.items():
        key = f"{root}.{name}" if name else root
        out.layers.append(
            Layer(
                name=name or "(model)",
                kind=type(m).__name__,
                output=shapes.get(name, ""),
                params=sum(p.numel() for p in m.parameters()),
                macs=sum(flops.get(key, {}).values()) // 2,
            )
        )
    out.macs = counter.get_total_flops() // 2
    out.memory = training_memory(model, input_shape, batch_size, optimizer, precision, tokens)
    return out


def describe(output) -> str:
    if isinstance(output, torch.Tensor):
        return "x".join(str(s) for s in output.shape[1:]) or "scalar"
    if isinstance(output, (list, tuple)):
        return ", ".join(describe(o) for o in output)
    return type(output).__name__


def training_memory(
    model: nn.Module,
    input_shape: list[int],
    batch_size: int,
    optimizer: DictConfig,
    precision: str,
    tokens: bool = False,
) -> dict[str, int]:
    """Bytes of one training step at `batch_size`, from a real step on a batch of two."""
    saved: dict[int, int] = {}  # storage address -> bytes; a tensor saved twice counts once
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:  # weights are counted once, below
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(optimizer, params)  # (as the run builds it: norm_lr_scale is dlbench's)
    dtype = DTYPES.get(str(precision))  # auto: estimated as float32
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            output = model(example(2, input_shape, tokens))
    output = output[0] if isinstance(output, tuple) else output  # seq2seq: (logits, attention)
    output.float().sum().backward()
    opt.step()
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    state = [v for s in opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    memory = {
        "weights and buffers": nbytes(model.parameters()) + nbytes(model.buffers()),
        "gradients": nbytes(params),
        f"optimizer state ({optimizer['name']})": nbytes(state),
        f"activations saved for backward (batch {batch_size})": sum(saved.values()) * batch_size // 2,
    }
    memory["total"] = sum(memory.values())
    return memory


def human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or suffix == "T":
            return f"{n:.3g}{suffix}{unit}" if suffix else f"{n:.0f}{unit}"
        n /= 1000
    return str(n)


def size_text(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def show_command(args: list[str]) -> int:
    """dlbench show [OVERRIDES...] [--depth N]: the model the config builds, layer by layer."""
    parser = ArgumentParser(prog="dlbench show", usage_line="usage: dlbench show [OVERRIDES...] [--depth N]")
    parser.add_argument("--depth", type=at_least_one, default=2)
    parsed, overrides = parser.parse_known_args(args)
    if bad := [o for o in overrides if "=" not in o]:
        raise DlbenchError(f"dlbench show takes overrides KEY=VALUE, not {' '.join(bad)}")
    preflight.refuse_run_settings(overrides, "show draws the model a config builds, and writes nothing")
    preflight.check(overrides, mode="show")
    cfg = compose.compose_config(overrides)
    validate(cfg)
    facts, source = input_spec(cfg, overrides)
    model = MODELS.build(cfg.model, "model", facts=facts)
    batch = data_config(cfg.dataset).batch_size or 1
    tokens = facts.vocab_size is not None
    input_shape = facts.input_shape
    if getattr(model, "latent_dim", 0):  # a GAN: its generator, from noise
        input_shape, source = [model.latent_dim], f"noise for the generator; images {source}"
    try:
        summary = summarize(
            model, input_shape, batch, cfg.optimizer, cfg.trainer.precision, parsed.depth, tokens
        )
    except (RuntimeError, TypeError, ValueError, IndexError) as err:  # (a seq2seq model on images)
        given = f"{'token ids' if tokens else 'numbers'} of shape {list(input_shape)}"
        parts = f"model={cfg.model.name} cannot take dataset={cfg.dataset.name}'s inputs"
        raise DlbenchError(f"{parts} ({given}): {first_line(err)}") from err
    print_summary(cfg, summary, input_shape, source, batch)
    return 0


def print_summary(cfg: DictConfig, s: Summary, input_shape: list[int], source: str, batch: int) -> None:
    shape = "x".join(map(str, input_shape))
    title = f"model={cfg.model.name}: input {shape} ({source})"
    table = new_table(title, "layer", "type", "output", "params", "MACs", right=("output", "params", "MACs"))
    table.title_justify = "left"
    for layer in s.layers:
        indent = "  " * layer.name.count(".") if layer.name != "(model)" else ""
        table.add_row(
            indent + layer.name.rsplit(".", 1)[-1],
            layer.kind,
            layer.output,
            f"{layer.params:,}",
            human(layer.macs),
        )
    console.print(table)
    console.print(f"parameters: {s.params:,} total, {s.trainable:,} trainable")
    console.print(f"multiply-accumulates: {human(s.macs)} per input of {shape}")
    precision = PRECISION_NAMES[str(cfg.trainer.precision)]
    console.print(f"training memory at batch {batch} ({precision}, estimated from a step on 2 inputs):")
    for key, value in s.memory.items():
        console.print(f"  {key:<48} {size_text(value):>14}")
