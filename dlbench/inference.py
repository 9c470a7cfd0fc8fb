"""Using a trained run: evaluate it on a test split, or classify files with it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.tasks.base import Task
from dlbench.train import build_task


def task_from_checkpoint(state: dict) -> tuple[Task, DictConfig]:
    """Rebuild a run's task from its checkpoint alone (its config holds the data's metadata)."""
    cfg = OmegaConf.create(state["config"])
    data = SimpleNamespace(
        num_classes=cfg.dataset.get("num_classes"),
        class_names=cfg.dataset.get("class_names"),
        num_outputs=cfg.dataset.get("num_outputs"),
        truth=None,
        cfg=SimpleNamespace(name=cfg.dataset.name),
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
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            x = v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)
    except FileNotFoundError as err:
        raise DlbenchError(f"No such file: {path}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DlbenchError(f"{path} is not an image that can be read ({err})") from err
    if channels == 1:
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
        if border.mean() > 0.5:
            x = 1 - x
    x = v2.functional.resize(x, [height, width], antialias=True)
    if normalization:
        x = v2.functional.normalize(x, *normalization)
    return x


def predict_images(run: str, files: list[str], top_k: int = 3) -> list[tuple[str, list[tuple[str, float]]]]:
    """The top-k classes, with probabilities, for each image file."""
    state = checkpoint.load(run)
    task, cfg = task_from_checkpoint(state)
    shape = list(cfg.dataset.input_shape)
    if not hasattr(task, "probabilities") or len(shape) != 3:
        raise DlbenchError(f"predict on files needs an image classifier; this run is task={cfg.task.name}")
    normalization = cfg.dataset.get("normalization")
    batch = torch.stack([load_image(f, shape, normalization) for f in files])
    with torch.no_grad():
        probs = task.probabilities(task.model(batch))
    names = list(cfg.dataset.get("class_names") or range(probs.shape[1]))
    k = min(top_k, probs.shape[1])
    out = []
    for file, p in zip(files, probs, strict=True):
        values, indices = p.topk(k)
        out.append((file, [(str(names[i]), float(v)) for v, i in zip(values, indices, strict=True)]))
    return out
