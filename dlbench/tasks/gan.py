"""Adversarial tasks: GAN (and DCGAN, conditional GAN); pix2pix and CycleGAN build on them
(tasks/image_to_image.py).

Each network has its own optimizer, named after it; a training step updates the
discriminator(s) and then the generator(s) by calling `optimize(name, loss)`, so the trainer
does zero_grad, backward, clipping and the step exactly as for a classifier.

Adversarial losses (`task.gan_loss`): vanilla (BCE with logits), lsgan (MSE) and hinge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from dlbench.data.info import DataInfo
from dlbench.engine.optim import Optimization, build_optimization
from dlbench.errors import DlbenchError, as_user_error, first_line
from dlbench.figures import new_figure
from dlbench.registry import TASKS
from dlbench.tasks.base import Optimize, PredictOptions, Rows, Task

LOSSES = ("vanilla", "lsgan", "hinge")

if TYPE_CHECKING:  # (a type only)
    from matplotlib.figure import Figure

    from dlbench.data.base import DataModule


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on its logits for real and generated samples."""
    real, fake = real.float(), fake.float()
    if kind == "vanilla":
        return (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        ) / 2
    if kind == "lsgan":
        return (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake))) / 2
    return (F.relu(1 - real).mean() + F.relu(1 + fake).mean()) / 2


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss: make the discriminator call its samples real."""
    fake = fake.float()
    if kind == "vanilla":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":
        return F.mse_loss(fake, torch.ones_like(fake))
    return -fake.mean()


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (for display, the judge, FID), on the images' device."""
    return (images.detach().float().clamp(-1, 1) + 1) / 2


def grid_figure(images: torch.Tensor, rows: int, title: str = "") -> Figure:
    grid = make_grid(to_unit(images).cpu(), nrow=max(1, len(images) // rows), padding=2)
    fig, ax = new_figure(figsize=(6, 6 * rows / max(1, len(images) // rows)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if grid.shape[0] == 1 else None)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def refuse_existing(path: Path) -> None:
    """predict writes no file over another (nor through a link, even one to nothing), and into a
    folder that exists (as compare, report and export do: `--out nodir/x.png` made nodir/)."""
    if os.path.lexists(path):
        raise DlbenchError(f"{path} exists; predict never writes over a file (choose another --out)")
    if not path.parent.is_dir():
        raise DlbenchError(
            f"{path}: {path.parent} is no folder here (make the folder first, or write elsewhere)"
        )


class AdversarialTask(Task):
    """What the GAN tasks share: one optimizer per network, per-split loss means."""

    default_loss = None  # the adversarial losses come from task.gan_loss
    optimizer_groups: dict[str, tuple[str, ...]] = {}  # optimizer name -> the networks it updates

    def __init__(self, model: nn.Module, loss: nn.Module | None, gan_loss: str):
        super().__init__(model, loss)
        names = [n for nets in self.optimizer_groups.values() for n in nets]
        if not all(hasattr(model, "nets") and n in model.nets for n in names):
            raise DlbenchError(f"{type(self).__name__} needs a model with the networks {', '.join(names)}")
        if gan_loss not in LOSSES:
            raise DlbenchError(f"task.gan_loss={gan_loss}: choose one of {', '.join(LOSSES)}")
        self.gan_loss = gan_loss

    @staticmethod
    def output_size(data: DataModule) -> int:
        return 1

    def networks(self) -> dict[str, nn.Module]:
        return {n: self.model.nets[n] for nets in self.optimizer_groups.values() for n in nets}

    def configure_optimizers(
        self, optimizer_cfg: Mapping, scheduler_cfg: Mapping, total_steps: int, steps_per_epoch: int
    ) -> dict[str, Optimization]:
        """One optimizer (the configured kind and settings) per group of networks."""
        return {
            group: build_optimization(
                [p for n in nets for p in self.model.nets[n].parameters()],
                optimizer_cfg,
                scheduler_cfg,
                total_steps,
                steps_per_epoch,
            )
            for group, nets in self.optimizer_groups.items()
        }

    def compute_metrics(self, split: str) -> dict[str, float]:
        return {}


@TASKS.register("gan")
class GANTask(AdversarialTask):
    """GAN, DCGAN and the conditional GAN: noise (and a label) -> image; D tells real from fake.

    Logged: train/loss_d, train/loss_g, train/d_real and train/d_fake (D's mean output, as a
    probability for the vanilla loss) per step; a grid of samples from a fixed noise batch
    each epoch (one row per class when conditional). With a judge (the run directory of a
    dlbench classifier trained on the same data), each evaluation also logs how confidently
    the judge recognises samples (judge_score: an inception score over its classes) and, when
    conditional, how often it sees the class that was asked for (judge_acc).
    """

    trained_runs = ("judge",)  # task.judge: a classifier run, loaded by build.py
    optimizer_groups = {"discriminator": ("discriminator",), "generator": ("generator",)}

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None,
        data: DataInfo,
        gan_loss: str = "vanilla",  # vanilla (BCE with logits) | lsgan (MSE) | hinge
        samples: int = 64,  # the fixed-noise grid logged each epoch (one row per class when conditional)
        # run dir of a dlbench classifier on the same data: logs judge_score (and judge_acc)
        judge: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        judge_samples: int = 1000,
        # FID against the val split (needs the [fid] extra and the Inception weights on disk)
        fid: bool = False,
    ):
        super().__init__(model, loss, gan_loss)
        self.fid = frechet_inception_distance() if fid else None
        self.conditional = model.num_classes > 0
        self.num_classes = model.num_classes
        rows = self.num_classes if self.conditional else 8
        per_row = max(1, samples // rows)
        self.register_buffer("fixed_noise", torch.randn(rows * per_row, model.latent_dim))
        self.register_buffer(
            "fixed_labels", torch.arange(rows).repeat_interleave(per_row) % max(1, self.num_classes)
        )
        self.rows, self.judge_samples = rows, judge_samples
        if isinstance(judge, str):
            raise DlbenchError("task.judge: build the task with build.build_task, which loads the judge run")
        self.judge = judge  # loaded by build.build_task from the run directory the config names
        # best.pt: the samples the judge recognises best; without a judge, the generator's loss
        self.monitor = ("val/judge_score", "max") if self.judge is not None else ("val/loss_g", "min")
        self.last_samples: torch.Tensor | None = None

    PREDICT_OPTIONS = ("num", "out")

    def predict_table(self, inputs: list[str], info: DataInfo, options: PredictOptions) -> Rows:
        """A PNG grid of `options.num` samples from fresh noise (conditional: classes in turn)."""
        from torchvision.utils import save_image

        if inputs:
            raise DlbenchError("a GAN run takes no inputs: dlbench predict RUN --num 64 [--out samples.png]")
        num, path = options.num, Path(options.out or "samples.png")
        if num < 1:
            raise DlbenchError(f"--num {num}: must be at least 1")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DlbenchError(f"--out {path}: name an image file ({', '.join(IMAGE_SUFFIXES)})")
        refuse_existing(path)
        labels = torch.arange(num) % max(1, self.num_classes)
        try:
            with torch.no_grad():
                images = self.generate(num, labels)
        except (MemoryError, RuntimeError) as err:
            if not isinstance(as_user_error(err), DlbenchError):
                raise
            raise DlbenchError(f"Out of memory drawing {num} samples at once: give a smaller --num") from None
        save_image(to_unit(images), path, nrow=self.num_classes or int(num**0.5))
        return ["file", "what"], [[str(path), f"{num} samples"]]

    def generate(self, n: int | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Samples from fresh noise (n of them), or from the fixed noise batch (n=None)."""
        if n is None:
            z, labels = self.fixed_noise, self.fixed_labels
        else:
            z = torch.randn(n, self.model.latent_dim, device=self.fixed_noise.device)
            if labels is None:
                labels = torch.randint(max(1, self.num_classes), (n,), device=z.device)
        return self.g(z, labels)

    def g(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return self.model.generator(z, labels) if self.conditional else self.model.generator(z)

    def judge_d(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (
            self.model.discriminator(images, labels) if self.conditional else self.model.discriminator(images)
        )

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        real, labels = batch[0], batch[1] if self.conditional else None
        n = len(real)
        z = torch.randn(n, self.model.latent_dim, device=real.device)
        fake = self.g(z, labels)
        d_real, d_fake = self.judge_d(real, labels), self.judge_d(fake.detach(), labels)
        loss_d = d_loss(self.gan_loss, d_real, d_fake)
        optimize("discriminator", loss_d)
        loss_g = g_loss(self.gan_loss, self.judge_d(fake, labels))
        optimize("generator", loss_g)
        as_p = torch.sigmoid if self.gan_loss == "vanilla" else (lambda t: t)
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": as_p(d_real.detach().float()).mean(),
            "d_fake": as_p(d_fake.detach().float()).mean(),
        }

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        real, labels = batch[0], batch[1] if self.conditional else None
        fake = self.generate(len(real), labels)
        if self.fid is not None:
            for images, is_real in ((real, True), (fake, False)):
                self.fid.update(to_unit(images).expand(-1, 3, -1, -1), real=is_real)  # gray -> RGB
        d_real, d_fake = self.judge_d(real, labels), self.judge_d(fake, labels)
        return {"loss_d": d_loss(self.gan_loss, d_real, d_fake), "loss_g": g_loss(self.gan_loss, d_fake)}

    def compute_metrics(self, split: str) -> dict[str, float]:
        if split == "train":
            return {}
        with torch.no_grad():
            self.last_samples = self.generate()
            scores = self.judge_scores() if self.judge is not None else {}
        if self.fid is not None:
            scores["fid"] = float(self.fid.compute())
            self.fid.reset()
        return scores

    def judge_scores(self) -> dict[str, float]:
        labels = torch.arange(self.judge_samples, device=self.fixed_noise.device) % max(1, self.num_classes)
        images = self.generate(self.judge_samples, labels if self.conditional else None)
        probs = self.judge(images)
        marginal = probs.mean(dim=0, keepdim=True)
        kl = (probs * (probs.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(dim=1)
        scores = {
            "judge_score": float(kl.mean().exp()),
            "judge_confidence": float(probs.max(dim=1).values.mean()),
        }
        if self.conditional:
            scores["judge_acc"] = float((probs.argmax(dim=1) == labels).float().mean())
        return scores

    def figures(self, split: str) -> dict[str, Any]:
        if self.last_samples is None or split == "test":
            return {}
        samples, self.last_samples = self.last_samples, None
        title = "one row per class" if self.conditional else "fixed noise"
        return {f"{split}/samples": grid_figure(samples, self.rows, title)}


def frechet_inception_distance() -> nn.Module:
    """torchmetrics' FID, which needs torch-fidelity and the FID Inception weights on disk."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=2048, normalize=True, reset_real_features=True)
    except Exception as err:  # a missing package, or weights it could not download
        raise DlbenchError(
            "task.fid=true needs torchmetrics' FID: pip install 'dlbench[fid]' (torch-fidelity), and the "
            "FID Inception weights (weights-inception-2015-12-05-6726825d.pth) in torch's hub cache, "
            f"which is fetched on first use where there is a network ({first_line(err)})"
        ) from err
