"""The single train entrypoint: config -> build every part -> fit -> test -> metrics."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import TensorDataset

from dlbench.config import data_config, validate
from dlbench.data import DataModule
from dlbench.engine import checkpoint, cluster, distributed
from dlbench.engine.device import resolve_device, seed_everything, set_threads
from dlbench.engine.logging import RunLogger, console, metrics_table, setup_console
from dlbench.engine.trainer import Trainer
from dlbench.registry import DATASETS, LOSSES, MODELS, TASKS
from dlbench.tasks.base import Task

log = logging.getLogger("dlbench")


def build_data(cfg: DictConfig) -> DataModule:
    """Build the dataset and write what it knows (shape, classes) into cfg.dataset."""
    common = data_config(cfg.dataset)
    source = DATASETS.build(cfg.dataset, "dataset", skip=list(common.__dataclass_fields__))
    data = DataModule(source, common)
    task_cls = TASKS.get(cfg.task.name)
    with open_dict(cfg):
        cfg.dataset.input_shape = data.input_shape
        cfg.dataset.num_classes = data.num_classes
        cfg.dataset.num_outputs = task_cls.output_size(data)
        cfg.dataset.class_names = [str(c) for c in data.class_names] if data.class_names else None
        cfg.dataset.normalization = [list(s) for s in data.normalization] if data.normalization else None
        cfg.dataset.vocab_size = None  # token data sets say how many tokens (models size from it)
        for key, value in data.meta.items():  # a vocabulary, a scale: saved with the checkpoint
            cfg.dataset[key] = value
    return data


def build_task(cfg: DictConfig, data: DataModule) -> Task:
    """Model (sized from the data by interpolation), loss, then the task that owns them."""
    task_cls = TASKS.get(cfg.task.name)
    model = MODELS.build(cfg.model, "model")
    if callable(getattr(model, "init_from_data", None)):  # data-dependent init (airbench's whitening)
        model.init_from_data(first_images(data, 5000))
    loss = LOSSES.build({"name": task_cls.default_loss} if cfg.loss.name == "auto" else cfg.loss, "loss")
    return TASKS.build(cfg.task, "task", model=model, loss=loss, data=data)


def first_images(data: DataModule, n: int) -> torch.Tensor:
    """The first n training inputs, stacked (for a model that initialises itself from data)."""
    train = data.splits["train"]
    if isinstance(train, TensorDataset):
        return train.tensors[0][:n]
    return torch.stack([torch.as_tensor(train[i][0]) for i in range(min(n, len(train)))])


def train(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> dict[str, float]:
    """Train and test one run in `run_dir`; return the final metrics (also in metrics.json)."""
    started = time.perf_counter()
    validate(cfg)
    main = distributed.is_main()  # the process that writes (the only one, unless under torchrun)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    progress = setup_console(cfg.trainer.progress if main else "none")
    device = resolve_device(str(cfg.device.type))
    if device.type == "cuda" and distributed.world_size() > 1:
        device = torch.device("cuda", distributed.local_rank())
    resume_state = checkpoint.load(cfg.resume) if cfg.resume else None
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    torch.backends.cudnn.benchmark = cfg.trainer.cudnn_benchmark and not cfg.trainer.deterministic
    if device.type == "cpu":
        set_threads(distributed.world_size())

    data = build_data(cfg)
    data.place(device)
    task = build_task(cfg, data)  # the same initial weights in every process
    if distributed.rank() > 0:  # ... but each process its own dropout masks and augmentations
        seed_everything(cfg.trainer.seed + distributed.rank(), cfg.trainer.deterministic)
    logger = RunLogger(
        run_dir,
        tensorboard=cfg.logger.tensorboard and main,
        progress=progress,
        purge_step=resume_state["trainer"]["step"] + 1 if resume_state else None,
    )
    extra = {"config": OmegaConf.to_yaml(cfg, resolve=True), "overrides": list(overrides or [])}
    trainer = Trainer(OmegaConf.to_object(cfg.trainer), device, run_dir, logger, checkpoint_extra=extra)
    trainer.setup(task)
    steps_per_epoch = len(data.loader("train"))
    optimizations = task.configure_optimizers(
        cfg.optimizer, cfg.scheduler, trainer.total_steps(steps_per_epoch), steps_per_epoch
    )
    if resume_state is not None:
        trainer.restore(resume_state, task, optimizations)
        log.info(f"resumed at epoch {trainer.state.epoch}, step {trainer.state.step} from {cfg.resume}")
        if cluster.requeue_count():  # a Slurm job requeued after a preemption or its time limit
            log.info(cluster.requeue_message(trainer.state.step))

    processes = f" x {distributed.world_size()} processes" if distributed.world_size() > 1 else ""
    log.info(
        f"{cfg.name}: {cfg.model.name} on {cfg.dataset.name} ({data.size('train')} train, "
        f"{data.size('val')} val, {data.size('test')} test), {device}{processes}, run dir {run_dir}"
    )
    try:
        fit_started = time.perf_counter()
        metrics = trainer.fit(task, data, optimizations)
        if data.size("test"):
            metrics.update(trainer.evaluate(task, data, "test"))
        # training and testing alone (the data already loaded and placed, the model built)
        metrics["time/fit_and_test_s"] = time.perf_counter() - fit_started
        metrics["time/total_s"] = time.perf_counter() - started
        logger.scalars({k: v for k, v in metrics.items() if k.startswith("test/")}, trainer.state.step)
        logger.hparams(
            hparams(cfg), {k: v for k, v in metrics.items() if "/" in k and not k.startswith("time/")}
        )
    finally:
        logger.close()
    if not main:
        return metrics
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    console.print(metrics_table(metrics))
    if (text := task.report()) is not None:
        console.print(text)
    console.print(f"Run directory: {run_dir}")
    return metrics


def hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's settings as flat scalars for TensorBoard's HParams tab."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float, str, bool)):
                flat[f"{prefix}{key}"] = value
            elif isinstance(value, list) and len(value) <= 20:  # not a vocabulary
                flat[f"{prefix}{key}"] = str(value)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
