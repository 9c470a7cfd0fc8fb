"""Using a trained run: rebuild it from its checkpoint and predict on images, names or sentences."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision.transforms import v2

from dlbench.build import task_from_checkpoint
from dlbench.data.images import open_image
from dlbench.data.info import DataInfo
from dlbench.data.text import encode_names, encode_source, pad
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.tasks.base import Task
from dlbench.tasks.gan import GANTask, ImageToImage, to_unit


def load_image(path: str | Path, shape: list[int], normalization: list | None) -> torch.Tensor:
    """An image file as the model's input, as seed 002's predict() prepares it: grayscale when
    the model takes one channel, inverted when the background is white (MNIST digits are white
    on black), resized to the model's input size, normalised like the training data."""
    channels, height, width = shape
    image = open_image(path, "L" if channels == 1 else "RGB")
    x = v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)
    if channels == 1:
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
        if border.mean() > 0.5:
            x = 1 - x
    x = v2.functional.resize(x, [height, width], antialias=True)
    if normalization:
        x = v2.functional.normalize(x, *normalization)
    return x


def predict(
    run: str, inputs: list[str], top_k: int = 3, num: int = 64, out: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """What a trained run says about each input, as a table (header, rows): image files or
    names -> the top-k classes with probabilities; sentences (seq2seq) -> output; nothing
    (a GAN) -> a grid of `num` samples written to `out`; image files (pix2pix, CycleGAN) ->
    translated image files written into `out`."""
    state = checkpoint.load(run)
    task, cfg, info = task_from_checkpoint(state, run)
    if isinstance(task, GANTask):
        if inputs:
            raise DlbenchError("a GAN run takes no inputs: dlbench predict RUN --num 64 [--out samples.png]")
        return ["file", "what"], [[sample_grid(task, num, Path(out or "samples.png")), f"{num} samples"]]
    if isinstance(task, ImageToImage):
        return ["input", "output"], translate_images(task, info, inputs, Path(out or "translated"))
    if not inputs:
        raise DlbenchError("usage: dlbench predict RUN INPUT... (image files, names or sentences)")
    vocab = info.vocab or {}
    if "target" in vocab:
        return ["input", "output"], translate(task, info, inputs)
    if not hasattr(task, "probabilities"):
        raise DlbenchError(f"predict needs a classifier or a seq2seq run; this run is task={cfg.task.name}")
    if "input" in vocab:  # names: letters -> ids
        batch = encode_names(inputs)
    elif len(info.input_shape) == 3:
        batch = torch.stack([load_image(f, list(info.input_shape), info.normalization) for f in inputs])
    else:
        raise DlbenchError(f"predict takes image files or names; this run's data is {info.name}")
    with torch.no_grad():
        probs = task.probabilities(task.model(batch))
    names = list(info.class_names or range(probs.shape[1]))
    k = min(top_k, probs.shape[1])
    rows = []
    for text, p in zip(inputs, probs, strict=True):
        values, indices = p.topk(k)
        rows.append([text, *[f"{names[i]} ({float(v):.1%})" for v, i in zip(values, indices, strict=True)]])
    return ["input", *[f"#{i + 1}" for i in range(k)]], rows


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def refuse_existing(path: Path) -> None:
    if os.path.lexists(path):  # (a link, even one to nothing, is not followed)
        raise DlbenchError(f"{path} exists; predict never writes over a file (choose another --out)")


def translate(task: Task, info: DataInfo, sentences: list[str]) -> list[list[str]]:
    """Greedy decoding of each sentence, prepared like the run's source side."""
    ids = [encode_source(s, info) for s in sentences]
    if not all(ids):
        raise DlbenchError("predict: an input has no tokens this run knows")
    joiner = "" if info.tokens == "char" else " "
    return [
        [s, joiner.join(tokens)] for s, (tokens, _) in zip(sentences, task.translate(pad(ids)), strict=True)
    ]


def sample_grid(task, num: int, path: Path) -> str:
    """A PNG grid of `num` samples from fresh noise (conditional: classes in turn)."""
    from torchvision.utils import save_image

    if num < 1:
        raise DlbenchError(f"--num {num}: must be at least 1")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DlbenchError(f"--out {path}: name an image file ({', '.join(IMAGE_SUFFIXES)})")
    refuse_existing(path)
    labels = torch.arange(num) % max(1, task.num_classes)
    with torch.no_grad():
        images = task.generate(num, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_unit(images), path, nrow=task.num_classes or int(num**0.5))
    return str(path)


def translate_images(task, info: DataInfo, files: list[str], folder: Path) -> list[list[str]]:
    """Each image file through the run's generator (A -> B), written as <folder>/<name>.png."""
    from torchvision.utils import save_image

    from dlbench.data.translation_images import read_image

    if not files:
        raise DlbenchError("usage: dlbench predict RUN IMAGE... [--out folder]")
    channels, height, width = info.input_shape
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for file in files:
        if not Path(file).is_file():
            raise DlbenchError(f"No such file: {file}")
        x = v2.functional.resize(read_image(Path(file)), [height, width], antialias=True) * 2 - 1
        with torch.no_grad():
            y = task.translate(x[None])
        target = folder / f"{Path(file).stem}.png"
        refuse_existing(target)
        save_image(to_unit(y), target)
        rows.append([file, str(target)])
    return rows
