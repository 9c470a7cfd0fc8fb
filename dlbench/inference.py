"""Using a trained run: rebuild it from its checkpoint and predict on images, names or sentences."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.transforms import v2

from dlbench.data.images import open_image
from dlbench.data.text import encode_names, encode_source, pad
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.tasks.base import Task
from dlbench.tasks.gan import GANTask, ImageToImage, to_unit
from dlbench.train import build_task

META_KEYS = ("vocab", "tokens", "vocab_size", "target_vocab_size", "scale")  # what data.meta can hold


def task_from_checkpoint(state: dict) -> tuple[Task, DictConfig]:
    """Rebuild a run's task from its checkpoint alone (its config holds the data's metadata)."""
    cfg = OmegaConf.create(state["config"])
    data = SimpleNamespace(
        num_classes=cfg.dataset.get("num_classes"),
        class_names=cfg.dataset.get("class_names"),
        num_outputs=cfg.dataset.get("num_outputs"),
        truth=None,
        cfg=SimpleNamespace(name=cfg.dataset.name),
        meta={k: v for k, v in OmegaConf.to_container(cfg.dataset).items() if k in META_KEYS},
    )
    task = build_task(cfg, data)
    try:
        task.load_state_dict(state["task"])
    except RuntimeError as err:
        raise DlbenchError(f"The checkpoint's weights do not fit its own model: {err}") from err
    return task.eval(), cfg


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
    task, cfg = task_from_checkpoint(state)
    if isinstance(task, GANTask):
        if inputs:
            raise DlbenchError("a GAN run takes no inputs: dlbench predict RUN --num 64 [--out samples.png]")
        return ["file", "what"], [[sample_grid(task, num, Path(out or "samples.png")), f"{num} samples"]]
    if isinstance(task, ImageToImage):
        return ["input", "output"], translate_images(task, cfg, inputs, Path(out or "translated"))
    if not inputs:
        raise DlbenchError("usage: dlbench predict RUN INPUT... (image files, names or sentences)")
    vocab = cfg.dataset.get("vocab") or {}
    if "target" in vocab:
        return ["input", "output"], translate(task, cfg, inputs)
    if not hasattr(task, "probabilities"):
        raise DlbenchError(f"predict needs a classifier or a seq2seq run; this run is task={cfg.task.name}")
    if "input" in vocab:  # names: letters -> ids
        batch = encode_names(inputs)
    elif len(cfg.dataset.input_shape) == 3:
        normalization = cfg.dataset.get("normalization")
        batch = torch.stack([load_image(f, list(cfg.dataset.input_shape), normalization) for f in inputs])
    else:
        raise DlbenchError(f"predict takes image files or names; this run's data is {cfg.dataset.name}")
    with torch.no_grad():
        probs = task.probabilities(task.model(batch))
    names = list(cfg.dataset.get("class_names") or range(probs.shape[1]))
    k = min(top_k, probs.shape[1])
    rows = []
    for text, p in zip(inputs, probs, strict=True):
        values, indices = p.topk(k)
        rows.append([text, *[f"{names[i]} ({float(v):.1%})" for v, i in zip(values, indices, strict=True)]])
    return ["input", *[f"#{i + 1}" for i in range(k)]], rows


def translate(task: Task, cfg: DictConfig, sentences: list[str]) -> list[list[str]]:
    """Greedy decoding of each sentence, prepared like the run's source side."""
    dataset = OmegaConf.to_container(cfg.dataset)
    ids = [encode_source(s, dataset) for s in sentences]
    if not all(ids):
        raise DlbenchError("predict: an input has no tokens this run knows")
    joiner = "" if dataset.get("tokens") == "char" else " "
    return [
        [s, joiner.join(tokens)] for s, (tokens, _) in zip(sentences, task.translate(pad(ids)), strict=True)
    ]


def sample_grid(task, num: int, path: Path) -> str:
    """A PNG grid of `num` samples from fresh noise (conditional: classes in turn)."""
    from torchvision.utils import save_image

    if num < 1:
        raise DlbenchError(f"--num {num}: must be at least 1")
    labels = torch.arange(num) % max(1, task.num_classes)
    with torch.no_grad():
        images = task.generate(num, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(to_unit(images), path, nrow=task.num_classes or int(num**0.5))
    return str(path)


def translate_images(task, cfg: DictConfig, files: list[str], folder: Path) -> list[list[str]]:
    """Each image file through the run's generator (A -> B), written as <folder>/<name>.png."""
    from torchvision.utils import save_image

    from dlbench.data.translation_images import read_image

    if not files:
        raise DlbenchError("usage: dlbench predict RUN IMAGE... [--out folder]")
    channels, height, width = cfg.dataset.input_shape
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for file in files:
        if not Path(file).is_file():
            raise DlbenchError(f"No such file: {file}")
        x = v2.functional.resize(read_image(Path(file)), [height, width], antialias=True) * 2 - 1
        with torch.no_grad():
            y = task.translate(x[None])
        target = folder / f"{Path(file).stem}.png"
        save_image(to_unit(y), target)
        rows.append([file, str(target)])
    return rows
