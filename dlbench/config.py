"""Typed schemas of a run's config: its fixed parts, and the values some of their keys may take.

The fixed parts of a run (trainer, device, logger, the dataset keys every data set shares) are
dataclasses. `trainer`, `device` and `logger` are Hydra structured configs, so Hydra itself
refuses an unknown key or a value of the wrong type. validation.py checks a composed config
against them before any work.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# trainer.precision: float32 | bfloat16 autocast | float16 autocast (+ gradient scaler) | auto
PRECISIONS = ("32", "bf16", "16", "auto")
MAX_COUNT = 2**63  # a trainer count (epochs, steps, val_every_n_epochs, ...) is below it: torch's int64


@dataclass
class TrainerConfig:
    epochs: int = 10  # passes over the training split
    max_steps: int | None = None  # stop after this many optimizer steps, even mid-epoch
    seed: int = 0  # the initial weights, the batch order, dropout and augmentations
    precision: str = "32"  # 32 | bf16 | 16 (16 uses a gradient scaler) | auto (bf16 on a GPU, else 32)
    grad_clip: float | None = None  # clip the gradients to this value (null: no clipping) ...
    grad_clip_mode: str = "norm"  # ... by their global L2 norm (norm) or each element (value)
    # micro-batches per optimizer step (gradient accumulation): K batches of B step as one batch of
    # K*B would; an epoch's last, shorter group steps with the mean of its micro-batches
    accumulate: int = 1
    # an exponential moving average of the weights (and buffers) with this decay (e.g. 0.999),
    # updated every optimizer step: evaluation, best.pt, eval, predict, export take it
    ema: float | None = None
    # stochastic weight averaging: average the weights at the end of each epoch from this one
    # (1-based) on; BatchNorm statistics recomputed at the end; the average is tested and saved
    swa_start: int | None = None
    # profile N training batches after 3 (torch.profiler): <run>/profile/trace.json, ops.txt, phases.txt
    profile: int = 0
    swa_lr: float | None = None  # with swa_start: the constant lr SWA trains at (null: the schedule's)
    log_every_n_steps: int = 10  # log a step's values (train/loss_step, train/lr) every N steps
    val_every_n_epochs: int = 1  # validate, log and checkpoint every N epochs (and at the end)
    monitor: str | None = None  # metric that decides best.pt and early stopping (null: the task's)
    monitor_mode: str | None = None  # min | max (null: max for accuracy-like names, else min)
    patience: int | None = None  # early stopping: evaluations without improvement
    deterministic: bool = False  # torch.use_deterministic_algorithms
    compile: bool = False  # torch.compile the model(s) (off by default: slower on the CPU, warm-up)
    # torch.compile's mode: default | reduce-overhead (CUDA graphs: one launch for a whole
    # forward, for small models whose steps wait on kernel launches) | max-autotune
    compile_mode: str = "default"
    cudnn_benchmark: bool = True  # let cuDNN time its algorithms for each input shape (CUDA)
    channels_last: bool = False  # images in NHWC memory order (faster convolutions on a GPU)
    progress: str = "auto"  # auto (rich on a terminal, plain lines otherwise) | rich | plain | none
    checkpoint: bool = True  # write checkpoints/last.pt and best.pt
    # The share of a run's time that its epoch-end checkpoints may take (each ~2-5 ms for a small
    # model, half of a short epoch's training). An epoch's last.pt is written while those so
    # far took at most this share (the first costed at 5 ms until one is measured); the last
    # epoch's and a stop's always. A best epoch not written is kept in memory and written as
    # best.pt with the next last.pt. Long epochs get every epoch's; 1: every epoch's, whatever
    # it costs; 0: the run's end's only.
    checkpoint_budget: float = 0.05
    checkpoint_every_n_steps: int | None = None  # also write last.pt every N steps (mid-epoch)
    keep_last_k: int = 0  # with checkpoint_every_n_steps: keep the newest K step-N.pt as well
    log_grad_norms: bool = False  # log each weight's gradient L2 norm (grad_norm/<name>) when logging
    # print and log the mean training loss of every N optimizer steps (mini-batches, unless
    # trainer.accumulate groups them; seed 003 prints every 2000)
    running_loss_every: int | None = None
    log_activations: bool = False  # draw the model's activation functions and their derivatives once
    nonfinite: str = "stop"  # a NaN/Inf loss or gradient: stop (an error) | skip (the step) | off
    max_skipped_fraction: float = 0.1  # nonfinite=skip: stop when more of an epoch's steps were skipped
    devices: int = 1  # N > 1: data-parallel over N processes on this machine (torchrun, DDP)
    nodes: int = 1  # N > 1: one run over N machines, `devices` processes on each (torchrun's c10d rendezvous)
    dist_timeout_s: float = 600  # how long a process waits for the others (rendezvous, collectives)
    threads: Any = "auto"  # CPU threads: auto (time a few steps at 1 and at N, keep the faster) | N


@dataclass
class DeviceConfig:
    type: str = "cpu"  # auto | cpu | cuda | cuda:N | mps


LOGGER_BACKENDS = ("tensorboard", "csv", "mlflow", "wandb")  # engine/loggers.py
LOGGER_EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # a backend -> the package its extra installs


@dataclass
class MLflowConfig:
    tracking_uri: str | None = None  # null: sqlite:///outputs/mlflow.db; or a lab's server (http://...)
    log_checkpoint: bool = True  # the final checkpoint as an artifact of the MLflow run


@dataclass
class WandbConfig:
    project: str | None = None  # null: the run's name (the preset's)
    mode: str = "offline"  # offline (no key, no network; `wandb sync` later) | online


@dataclass
class LoggerConfig:
    # where the values go besides the console and metrics.json: tensorboard (<run>/tb), csv
    # (<run>/metrics.csv), mlflow, wandb; any combination, [] for none
    backends: list[str] = field(default_factory=lambda: ["tensorboard"])
    mlflow: MLflowConfig = field(default_factory=MLflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    # The share of a run's time that drawing its figures may take (confusion matrix, decision
    # regions, samples: 0.1-0.3 s each with matplotlib). An evaluation's are drawn while the
    # figures so far took at most this share; the last epoch's and the test split's always.
    # Long epochs get every evaluation's; 1: every evaluation's, whatever it costs.
    figures_budget: float = 0.1


@dataclass
class DataConfig:
    """Keys every dataset node has; the rest go to the dataset's registered constructor."""

    name: str = "digits"
    task: str = "auto"  # the task this data is for (task=auto follows it); auto: by the data's labels
    batch_size: int | None = 64  # null: the whole split in one batch
    eval_batch_size: int | None = None  # null: same as batch_size
    num_workers: int = 0  # DataLoader workers (data read sample by sample: folders, in_memory=false)
    in_memory: Any = "auto"  # auto | true | false: batches sliced from tensors on the training device
    val_fraction: float = 0.1  # carved from train where the set has no val split
    test_fraction: float = 0.2  # carved from the data where the set has no test split
    split_seed: int = 0  # which samples the carved val and test splits take
    # the split evaluated every epoch: val (shipped or carved) | test (nothing carved: the MNIST
    # notes' protocol) | train (the training data itself: seed 002's iris)
    validate_on: str = "val"
    # the training order: a new permutation every epoch | once, one drawn from the seed and kept
    # every epoch (seed 002's name2lang: random.shuffle once, then the same order each epoch)
    shuffle: str = "epoch"
    augment: dict[str, Any] | None = None  # image augmentations of the train split (data/transforms.py)
    # whole training batches mixed on the device, with soft labels (classification of images):
    mixup: float = 0.0  # mixup's Beta(alpha, alpha): blend two images and their labels (0: off)
    cutmix: float = 0.0  # cutmix's alpha: paste a box of another image, labels by area (0: off)


@dataclass
class AugmentConfig:
    """`dataset.augment`: the augmentations of the lecture on data augmentation (seed 004), each
    off at its default (0). data/transforms.Augment applies them."""

    hflip: float = 0.0  # probability of a horizontal flip
    vflip: float = 0.0  # probability of a vertical flip
    rotation: float = 0.0  # degrees: a random rotation in [-rotation, rotation]
    crop_padding: int = 0  # random crop back to size after padding by this many pixels
    resize_pad: float = 0.0  # shrink by up to this fraction and pad back (resize-and-pad)
    color_jitter: float = 0.0  # brightness, contrast and saturation strength
    blur_sigma: float = 0.0  # Gaussian blur with sigma up to this value
    noise_std: float = 0.0  # additive Gaussian noise
    cutout: int = 0  # zero a square of this many pixels at a random place (DeVries & Taylor, 2017)
    hflip_alternate: bool = False  # airbench: each image flipped on every other epoch (a fixed half first)
    crop_reflect: bool = False  # crop_padding pads by reflection instead of zeros


# a schedule's length: null in its config node, filled in from the run's (engine/optim.py), unless
# the config sets one (a warm-up's: linear_lr, constant_lr)
SCHEDULE_LENGTHS = ("total_steps", "T_max", "total_iters")


@dataclass
class SchedulerConfig:
    """Keys of the scheduler node that dlbench consumes itself."""

    name: str = "none"
    interval: str = "epoch"  # step the scheduler every epoch | step


@dataclass
class OptimizerConfig:
    """Keys of the optimizer node that dlbench consumes itself (engine/optim.py)."""

    name: str = "adam"
    norm_lr_scale: float = 1.0  # lr x this (weight decay / this) for normalisation layers' parameters
    lookahead_every: int = 0  # > 0: lookahead (an average of the weights) every N steps
    lookahead_decay: float = 0.77  # its largest decay (airbench: 0.95^5), reached at the last step


@dataclass
class SweepConfig:
    fail_fast: bool = False  # a multirun stops starting jobs after the first failure
    resume: str | None = None  # a sweep directory to finish: done jobs skipped, others resumed


@dataclass
class RunConfig:
    name: str = "run"
    resume: str | None = None  # a run directory or a checkpoint to continue from
    plugins: list[str] = field(
        default_factory=list
    )  # the user's modules or .py files that register components
    task: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)
    scheduler: dict[str, Any] = field(default_factory=dict)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# a metric whose name holds one of these is better higher (val/acc, test/f1_macro); else lower
HIGHER_IS_BETTER = ("acc", "f1", "r2", "bleu", "exact", "score", "confidence")


def higher_is_better(metric: str) -> bool:
    """Whether a higher value of `metric` is better, by its name (its last part: val/acc)."""
    return any(word in metric.split("/")[-1] for word in HIGHER_IS_BETTER)


def monitor_mode(trainer: Any) -> str:
    """trainer.monitor_mode, or, where it is null, the mode trainer.monitor's name gives."""
    return trainer.monitor_mode or ("max" if higher_is_better(trainer.monitor) else "min")


CHOICES = {
    "trainer.precision": PRECISIONS,
    "trainer.monitor_mode": ("min", "max"),
    "trainer.nonfinite": ("stop", "skip", "off"),
    "trainer.grad_clip_mode": ("norm", "value"),
    "logger.wandb.mode": ("offline", "online"),
    "trainer.progress": ("auto", "rich", "plain", "none"),
    "trainer.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    "scheduler.interval": ("epoch", "step"),
    "dataset.validate_on": ("val", "test", "train"),
    "dataset.shuffle": ("epoch", "once"),
}


STRUCTURED = {"trainer": TrainerConfig, "device": DeviceConfig, "logger": LoggerConfig, "sweep": SweepConfig}


def schema_hints(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def data_config(node: DictConfig | dict) -> DataConfig:
    """The common dataset keys of a dataset node, with defaults for the ones it leaves out."""
    names = {f.name for f in dataclasses.fields(DataConfig)}
    return DataConfig(**{k: v for k, v in plain_dict(node).items() if k in names})


def plain_dict(node: Any) -> dict:
    """A node as a dict, resolved where it can be: a value that still points at metadata the
    data fills in later (e.g. `${dataset.num_classes}`) stays as its interpolation string."""
    if not isinstance(node, DictConfig):
        return dict(node)
    raw = OmegaConf.to_container(node, resolve=False)
    out = {}
    for key in raw:
        try:
            value = node[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        except OmegaConfBaseException:
            out[key] = raw[key]
        if out[key] is None and isinstance(raw[key], str):  # points at a value the run fills in
            out[key] = raw[key]  # (e.g. trainer.monitor_mode=null: the task's), checked when built
    return out
