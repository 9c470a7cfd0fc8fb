"""Building a run's parts, the same way for training and for using a trained run: the data
(its splits and the facts it knows), then the task (model sized from those facts, loss, and
the task that owns them), from a config or from a checkpoint alone.

    data = build_data(cfg)                 # DataModule: splits, loaders, data.info
    task = build_task(cfg, data.info)      # Task: model + loss (+ metrics)
    task, cfg, info = task_from_checkpoint(checkpoint.load(run), run)   # no data set read
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import TensorDataset

from dlbench import errors, files, plugins, safety, terminal
from dlbench.config import data_config
from dlbench.data.base import DataModule, as_source
from dlbench.data.info import DataInfo
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError, first_line
from dlbench.registry import DATASETS, LOSSES, MODELS, TASKS
from dlbench.tasks.base import Task


def build_data(cfg: DictConfig) -> DataModule:
    """Build the dataset: its splits, loaders, and what it knows about itself (`data.info`)."""
    common = data_config(cfg.dataset)
    built = DATASETS.build(cfg.dataset, "dataset", skip=list(common.__dataclass_fields__))
    data = DataModule(as_source(built, common.name), common)
    task_cls = TASKS.get(task_name(cfg, data.num_classes))
    data.info = DataInfo(
        name=common.name,
        input_shape=list(data.input_shape),
        num_outputs=task_cls.output_size(data),
        num_classes=data.num_classes,
        class_names=[str(c) for c in data.class_names] if data.class_names else None,
        normalization=[list(map(float, s)) for s in data.normalization] if data.normalization else None,
        truth=data.truth,
        **data.meta,  # a vocabulary, a scale: learned from the train split
    )
    return data


def task_name(cfg: DictConfig, num_classes: int | None) -> str:
    """The task to run: `task=auto` (with a data set that names none) is classification for
    data with classes, regression otherwise."""
    name = str(cfg.task.name)
    if name == "auto":
        return "classification" if num_classes else "regression"
    return name


def build_task(
    cfg: DictConfig, info: DataInfo, data: DataModule | None = None, judge: bool = True, trial: bool = True
) -> Task:
    """Model (sized from the data's facts), loss, then the task that owns them. With `data`,
    a model that initialises itself from data (airbench's whitening) sees the first inputs.
    Without `judge`, a GAN's judge (another run) is not loaded: using a trained run needs none.
    Without `trial`, the loss is not tried on a batch (`built_to_fit`'s build on "meta")."""
    name = task_name(cfg, info.num_classes)
    task_cls = TASKS.get(name)
    if cfg.loss.name != "auto":  # (validation checked it unless task=auto: chosen here)
        task_cls.check_loss(str(cfg.loss.name), name)
    model = MODELS.build(cfg.model, "model", facts=info)
    if not isinstance(model, torch.nn.Module):  # (a function that forgot its `return`: None)
        raise DlbenchError(
            f"model={cfg.model.name} ({MODELS.origin(str(cfg.model.name))}) gave {type(model).__name__}, "
            "not a torch.nn.Module: its function must return the network"
        )
    if data is not None and callable(getattr(model, "init_from_data", None)):
        model.init_from_data(first_images(data, 5000))
    loss = None
    if task_cls.default_loss is not None:
        loss = LOSSES.build({"name": task_cls.default_loss} if cfg.loss.name == "auto" else cfg.loss, "loss")
    # (the settings given, named: "dataset.mixup and dataset.cutmix" when only cutmix was set)
    mixing = " and ".join(f"dataset.{k}={cfg.dataset[k]}" for k in ("mixup", "cutmix") if cfg.dataset.get(k))
    if data is not None and data.mix is not None and not task_cls.soft_targets:
        raise DlbenchError(
            f"{mixing} gives soft class labels, which task={name} does not take (a classification task does)"
        )
    if data is not None and data.mix is not None and not task_cls.takes_soft_labels(loss):
        raise DlbenchError(
            f"{mixing} gives soft class labels, which loss={cfg.loss.name} does not take (loss=cross_entropy "
            "does; a loss of your own that does says so with a `soft_targets = True` attribute)"
        )
    node = {**OmegaConf.to_container(cfg.task, resolve=True), "name": name}
    for key in task_cls.trained_runs:  # a GAN's judge: a classifier run, loaded here
        if isinstance(node.get(key), str):
            node[key] = load_judge(node[key], info, key) if judge else None
    task = TASKS.build(node, "task", model=model, loss=loss, data=info)
    if trial:
        task.check_loss_settings()
    return task


def check_batch_norm_batches(
    task: Task, data: DataModule, batch_size: int | None, processes: int = 1
) -> None:
    """A BatchNorm layer cannot train on one value a channel (no variance: torch's error at that
    batch, an epoch in). Where a process's training data leaves a last batch of one sample (or
    every batch is one), a forward pass of two samples on a copy of the model finds the layers
    that would see one value a channel from it (a convolution's map of one pixel, a BatchNorm1d
    after a Linear; not a map of 4x4), and the run is refused before it starts, with batch sizes
    that fit. Inputs other than one tensor of info.input_shape (names, sentences) are not tried."""
    samples = -(-data.size("train") // processes)  # (a process's share: the sampler's)
    size = (batch_size or data.size("train")) // processes
    if samples < 2 or (size > 1 and samples % size != 1):
        return
    layers = [m for m in task.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    shape = data.info.input_shape
    if not layers or not isinstance(shape, list):
        return
    per_sample: list[int] = []
    hooks = [m.register_forward_pre_hook(lambda m, x: per_sample.append(x[0][0].numel() // x[0].shape[1]))
             for m in layers]  # fmt: skip
    try:
        with torch.no_grad():
            copy.deepcopy(task.model).cpu().train()(torch.zeros(2, *shape))
    except Exception:  # (an input it does not take: the trial step says so)
        return
    finally:
        for hook in hooks:
            hook.remove()
    if 1 not in per_sample:
        return
    fits = [b for b in range(2, min(samples, size + 64) + 1) if samples % b != 1]
    closest = sorted(b * processes for b in sorted(fits, key=lambda b: abs(b - size))[:2])
    left = "every batch is one sample" if size == 1 else f"its {samples} samples leave a last batch of one"
    left += " on each process" if processes > 1 else ""
    raise DlbenchError(
        f"dataset.batch_size={batch_size}: {left}, and a BatchNorm "
        "layer of the model cannot train on one value a channel. Choose a batch size that leaves none, or "
        f"two or more, over: {' or '.join(f'dataset.batch_size={b}' for b in closest)}"
    )


def check_cpu_half_precision(task: Task, device: torch.device, precision: str) -> None:
    """torch's CPU LSTM has no float16 kernel (oneDNN: "could not create a primitive descriptor",
    at the first step); GRU and RNN have, and bfloat16 LSTM too."""
    if (
        device.type == "cpu"
        and str(precision) == "16"
        and any(isinstance(m, torch.nn.LSTM) for m in task.modules())
    ):
        raise DlbenchError(
            "trainer.precision=16 on the CPU: torch's CPU LSTM takes no float16 (it fails at the first "
            "step); use trainer.precision=bf16, or 32"
        )


def built_to_fit(build: Callable[[bool], torch.nn.Module], weights: dict, what: str) -> torch.nn.Module:
    """What `build` builds from a saved run's config (a checkpoint's, an export's .yaml), its saved
    `weights` loaded, once `fits_unbuilt` has found they fit."""
    fits_unbuilt(build, weights, what)
    model = build(True)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise errors.does_not_fit(what, err, weights) from err
    return model


def fits_unbuilt(build: Callable[[bool], torch.nn.Module], weights: dict, what: str) -> None:
    """Whether a saved run's `weights` fit what `build` builds from its config, found before
    that takes any memory: built on the "meta" device, which holds shapes and no data, a config
    that declares more than the weights hold (someone's `model.hidden=[100000000000]`: 25 TB) is
    refused as any that does not fit them. (`build(False)`: the build on "meta", which tries
    nothing on a batch; one that fails there is built as it is, and checked after.)"""
    try:
        with torch.device("meta"):  # (its initial weights are drawn from no generator)
            shaped = build(False)
    except Exception:  # noqa: BLE001  (the build for real says what is wrong, if anything is)
        return
    # (a copy: torch notes `assign` in the dict's own _metadata, and a later load of the same
    # dict, a resume's, would then put its tensors in place of the run's, which its optimizer holds)
    shapes = type(weights)(weights)
    if hasattr(weights, "_metadata"):
        shapes._metadata = copy.deepcopy(weights._metadata)
    try:
        shaped.load_state_dict(shapes, assign=True)  # (assigned to "meta": nothing is copied)
    except RuntimeError as err:
        raise errors.does_not_fit(what, err, weights) from err


def first_images(data: DataModule, n: int) -> torch.Tensor:
    """The first n training inputs, stacked (for a model that initialises itself from data)."""
    train = data.splits["train"]
    if isinstance(train, TensorDataset):
        return train.tensors[0][:n]
    return torch.stack([torch.as_tensor(train[i][0]) for i in range(min(n, len(train)))])


def task_from_checkpoint(state: dict, run: str = "the run") -> tuple[Task, DictConfig, DataInfo]:
    """Rebuild a run's task from its checkpoint alone: its config, and the facts its data set
    knew (saved as `data`), so no data set is read. The plugins it was trained with must have
    been named by the user (plugins.py)."""
    plugins.check_saved(state.get("plugins"), run, None)  # (commands check first, with their words)
    try:  # (read as someone else's YAML: no aliases, a size limit; then OmegaConf's)
        config = files.load_yaml(state["config"]) if isinstance(state["config"], str) else None
        if not isinstance(config, dict):
            raise DlbenchError(f"{run}: the checkpoint's config is no config: not a mapping of settings")
        cfg = OmegaConf.create(config)
    except yaml.YAMLError as err:  # (a key twice)
        line, what = files.yaml_problem(err)
        raise DlbenchError(f"{run}: the checkpoint's config is no config: line {line}: {what}") from None
    except OmegaConfBaseException as err:  # (an interpolation OmegaConf cannot read: `${\`)
        raise DlbenchError(f"{run}: the checkpoint's config is no config: {first_line(err)}") from None
    safety.check_saved_config(cfg, f"{run}: the checkpoint's config")
    try:  # what a checkpoint holds is data: one that cannot rebuild a model is the file's fault
        info = DataInfo.from_dict(state.get("data"))
        task = built_to_fit(  # (a file a checkpoint names is never read: no judge)
            lambda trial: build_task(cfg, info, judge=False, trial=trial),
            state["task"],
            "The checkpoint's weights do not fit its own model",
        )
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OmegaConfBaseException) as err:
        raise DlbenchError(
            f"{run}: the checkpoint's config and data facts rebuild no model ({first_line(err)})"
        ) from err
    return task.eval(), cfg, info


def load_judge(run: str, info: DataInfo, key: str = "judge"):
    """A trained dlbench classifier as a function: images in [-1, 1] -> class probabilities
    (a GAN task's judge, `task.judge=<run dir>`: a parameter named in its `trained_runs`)."""
    folder = Path(run).expanduser()
    if checkpoint.holds_runs(folder) and (newest := checkpoint.newest_run(folder)):
        named = terminal.shell_word(terminal.override(f"task.{key}", newest))
        raise DlbenchError(
            f"task.{key}={run} holds runs: name the one that judges, so that this run records which "
            f"(the one checkpointed last: {named})"
        )
    try:
        state = checkpoint.load(run)
        task_node = (files.load_yaml(state["config"]) or {}).get("task")
        if isinstance(task_node, dict) and task_node.get("judge"):  # (a judge of itself: no end)
            raise DlbenchError("it is not a classifier run: its config names a judge of its own")
        task, cfg, judge_info = task_from_checkpoint(state, run)
    except DlbenchError as err:
        raise DlbenchError(f"task.{key}={run}: {err.lines[0]}", *err.lines[1:]) from err
    if not hasattr(task, "probabilities"):
        raise DlbenchError(f"task.{key}={run} is not a classifier (task={cfg.task.name})")
    shape, normalization = list(judge_info.input_shape), judge_info.normalization

    from dlbench.tasks.gan import to_unit  # the GAN task's imports (torchmetrics) only for a GAN

    def judge(images: torch.Tensor) -> torch.Tensor:
        x = to_unit(images)
        if list(x.shape[1:]) != shape:
            if x.shape[1] != shape[0]:
                raise DlbenchError(
                    f"task.{key} takes {shape} images; the generator makes {list(x.shape[1:])}"
                )
            x = F.interpolate(x, size=shape[1:], mode="bilinear", antialias=True)
        if normalization:
            mean, std = (torch.tensor(v, device=x.device).view(1, -1, 1, 1) for v in normalization)
            x = (x - mean) / std
        task.to(x.device)
        with torch.no_grad():
            return task.probabilities(task.model(x))

    return judge
