"""Using a trained run: rebuild it from its checkpoint and predict on images, names or sentences."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException
from torchvision.transforms import v2

from dlbench import plugins, rundir, safety
from dlbench.data.images import open_image
from dlbench.data.info import DataInfo
from dlbench.data.text import encode_names, encode_source, pad
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.tasks.base import Task
from dlbench.tasks.gan import GANTask, ImageToImage, to_unit
from dlbench.training import build_task


def task_from_checkpoint(state: dict, run: str = "the run") -> tuple[Task, DictConfig, DataInfo]:
    """Rebuild a run's task from its checkpoint alone: its config, and the facts its data set
    knew (saved as `data`), so no data set is read. The plugins it was trained with must have
    been named by the user (plugins.py)."""
    plugins.check_saved(state.get("plugins"), run, f"dlbench predict {run}")
    cfg = OmegaConf.create(state["config"])
    safety.check_saved_config(cfg, f"{run}: the checkpoint's config")
    try:  # what a checkpoint holds is data: one that cannot rebuild a model is the file's fault
        info = saved_info(state, cfg)
        task = build_task(cfg, info)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OmegaConfBaseException) as err:
        raise DlbenchError(
            f"{run}: the checkpoint's config and data facts rebuild no model ({type(err).__name__}: {err})"
        ) from err
    try:
        task.load_state_dict(state["task"])
    except RuntimeError as err:
        raise DlbenchError(f"The checkpoint's weights do not fit its own model: {err}") from err
    return task.eval(), cfg, info


def saved_info(state: dict, cfg: DictConfig) -> DataInfo:
    """The data facts a checkpoint saved; a checkpoint of dlbench 0.1 kept them in its config."""
    if isinstance(state.get("data"), dict):
        return DataInfo.from_dict(state["data"])
    old = OmegaConf.to_container(cfg.dataset)
    with open_dict(cfg):  # its model node named the facts in_shape and num_classes/out_features
        for old_key in ("in_shape", "out_features", "num_classes"):
            if old_key in cfg.model and not (old_key == "num_classes" and cfg.model.name == "cgan"):
                del cfg.model[old_key]
    return DataInfo.from_dict({**old, "name": old["name"], "num_outputs": old.get("num_outputs") or 0})


def load_judge(run: str, info: DataInfo):
    """A trained dlbench classifier as a function: images in [-1, 1] -> class probabilities
    (a GAN task's judge, `task.judge=<run dir>`)."""
    try:
        state = checkpoint.load(run)
        task_node = (rundir.load_yaml(state["config"]) or {}).get("task")
        if isinstance(task_node, dict) and task_node.get("judge"):  # (a judge of itself: no end)
            raise DlbenchError("it is not a classifier run: its config names a judge of its own")
        task, cfg, judge_info = task_from_checkpoint(state, run)
    except DlbenchError as err:
        raise DlbenchError(f"task.judge={run}: {err}") from err
    if not hasattr(task, "probabilities"):
        raise DlbenchError(f"task.judge={run} is not a classifier (task={cfg.task.name})")
    shape, normalization = list(judge_info.input_shape), judge_info.normalization

    def judge(images: torch.Tensor) -> torch.Tensor:
        x = to_unit(images)
        if list(x.shape[1:]) != shape:
            if x.shape[1] != shape[0]:
                raise DlbenchError(
                    f"task.judge takes {shape} images; the generator makes {list(x.shape[1:])}"
                )
            x = F.interpolate(x, size=shape[1:], mode="bilinear", antialias=True)
        if normalization:
            mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in normalization)
            x = (x - mean) / std
        task.to(x.device)
        with torch.no_grad():
            return task.probabilities(task.model(x))

    return judge


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
    if path.exists():
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
