"""Image-to-image translation: pix2pix (paired images) and CycleGAN (unpaired), adversarial
tasks like the GAN's (tasks/gan.py): one optimizer per network, the discriminators stepped
before the generators through `optimize(name, loss)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from dlbench.data.info import DataInfo
from dlbench.errors import DlbenchError
from dlbench.registry import TASKS
from dlbench.tasks.base import Optimize, PredictOptions, Rows
from dlbench.tasks.gan import (
    IMAGE_SUFFIXES,
    AdversarialTask,
    d_loss,
    g_loss,
    grid_figure,
    refuse_existing,
    to_unit,
)


class ImagePool(nn.Module):
    """The last `size` generated images; half the time D sees one of them instead of the newest
    (Shrivastava et al.), as in CycleGAN. Saved in the checkpoint (extra state) for resume."""

    def __init__(self, size: int = 50):
        super().__init__()
        self.size, self.images = size, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif float(torch.rand(())) < 0.5:
                i = int(torch.randint(self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def get_extra_state(self) -> dict:
        return {"images": [t.cpu() for t in self.images]}

    def set_extra_state(self, state: dict) -> None:
        device = self.images[0].device if self.images else None
        self.images = [t.to(device) if device else t for t in state["images"]]


class ImageToImage(AdversarialTask):
    """Shared by pix2pix and CycleGAN: L1 metrics on held-out pairs, example figures."""

    monitor = ("val/l1", "min")

    def __init__(self, model: nn.Module, loss: nn.Module | None, gan_loss: str, examples: int):
        super().__init__(model, loss, gan_loss)
        self.examples = examples
        self.l1 = nn.ModuleDict({split: MeanMetric() for split in ("val", "test")})
        self.shown: dict[str, list[list[torch.Tensor]]] = {}

    def keep_examples(self, split: str, *kinds: torch.Tensor) -> None:
        """The first few examples of an evaluation, one row per kind, for `figures`."""
        if split not in self.shown:
            self.shown[split] = [list(images[: self.examples]) for images in kinds]

    def compute_metrics(self, split: str) -> dict[str, float]:
        if split == "train":
            return {}
        value = float(self.l1[split].compute())
        self.l1[split].reset()
        return {"l1": value}

    PREDICT_OPTIONS = ("out",)

    def predict_table(self, inputs: list[str], info: DataInfo, options: PredictOptions) -> Rows:
        """Each image file through the generator (A -> B), written as <out>/<name>.png."""
        from torchvision.transforms import v2
        from torchvision.utils import save_image

        from dlbench.data.translation_images import read_image

        if not inputs:
            raise DlbenchError("usage: dlbench predict RUN IMAGE... [--out folder]")
        folder = Path(options.out or "translated")
        if folder.suffix.lower() in IMAGE_SUFFIXES or (folder.exists() and not folder.is_dir()):
            raise DlbenchError(  # (--out x.png made a folder x.png)
                f"--out {folder}: name a folder for the translated images (one <input's name>.png each)"
            )
        # every input read and every name free before anything is written (a second input of the
        # same name, or a missing one, stopped the command with the first's file written)
        if missing := [file for file in inputs if not Path(file).is_file()]:
            raise DlbenchError(f"No such file: {missing[0]}")
        targets = output_files(folder, inputs)
        for target in targets if folder.is_dir() else []:
            refuse_existing(target)
        channels, height, width = info.input_shape
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for file, target in zip(inputs, targets, strict=True):
            x = v2.functional.resize(read_image(Path(file)), [height, width], antialias=True) * 2 - 1
            with torch.no_grad():
                y = self.translate(x[None])
            save_image(to_unit(y), target)
            rows.append([file, str(target)])
        return ["input", "output"], rows

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def figures(self, split: str) -> dict[str, Any]:
        rows = self.shown.pop(split, None)
        if not rows:
            return {}
        images = torch.cat([torch.stack(r) for r in zip(*rows, strict=True)])  # one row per kind
        return {f"{split}/examples": grid_figure(images, len(rows), self.caption)}


def output_files(folder: Path, inputs: list[str]) -> list[Path]:
    """Where each input's translation goes: <folder>/<its name>.png, and <name>-2.png, -3, ...
    for a name an input before it took (a/x.png and b/x.jpg)."""
    taken: list[str] = []
    for file in inputs:
        stem, n, name = Path(file).stem, 1, f"{Path(file).stem}.png"
        while name in taken:
            n += 1
            name = f"{stem}-{n}.png"
        taken.append(name)
    return [folder / name for name in taken]


@TASKS.register("pix2pix")
class Pix2PixTask(ImageToImage):
    """pix2pix: G(A) should fool a PatchGAN that sees (A, B) pairs and be close to B in L1
    (λ = task.l1_weight, 100 in the paper). Figures: input | output | target."""

    optimizer_groups = {"discriminator": ("discriminator",), "generator": ("generator",)}
    caption = "rows: input, output, target"

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None,
        data: DataInfo,
        gan_loss: str = "vanilla",  # vanilla | lsgan | hinge
        l1_weight: float = 100.0,
        examples: int = 4,  # input | output | target triplets logged each evaluation
    ):
        super().__init__(model, loss, gan_loss, examples)
        self.l1_weight = l1_weight

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.generator(images)

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        a, b = batch
        fake = self.model.generator(a)
        d = self.model.discriminator
        loss_d = d_loss(self.gan_loss, d(torch.cat([a, b], 1)), d(torch.cat([a, fake.detach()], 1)))
        optimize("discriminator", loss_d)
        adversarial = g_loss(self.gan_loss, d(torch.cat([a, fake], 1)))
        l1 = F.l1_loss(fake.float(), b.float())
        optimize("generator", adversarial + self.l1_weight * l1)
        return {"loss_d": loss_d.detach(), "loss_g": adversarial.detach(), "l1": l1.detach()}

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        a, b = batch
        fake = self.model.generator(a)
        self.l1[split].update(F.l1_loss(fake.float(), b.float()), len(a))
        self.keep_examples(split, a, fake, b)
        return {"loss_g": g_loss(self.gan_loss, self.model.discriminator(torch.cat([a, fake], 1)))}


@TASKS.register("cyclegan")
class CycleGANTask(ImageToImage):
    """CycleGAN: G_AB and G_BA fool D_B and D_A (LSGAN), with the cycle loss
    |G_BA(G_AB(a)) - a| + |G_AB(G_BA(b)) - b| (λ = task.cycle_weight, 10) and the identity loss
    (λ_id = task.identity_weight x λ, 0.5); D sees past fakes from a pool of 50. Figures: A, A->B, A->B->A."""

    optimizer_groups = {
        "discriminator": ("discriminator_a", "discriminator_b"),
        "generator": ("generator_ab", "generator_ba"),
    }
    caption = "rows: A, A->B, A->B->A"

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None,
        data: DataInfo,
        gan_loss: str = "lsgan",  # vanilla | lsgan | hinge
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        examples: int = 4,  # A, A->B, A->B->A rows logged each evaluation
    ):
        super().__init__(model, loss, gan_loss, examples)
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)

    def translate(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.generator_ab(images)

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        a, b = batch
        m = self.model
        fake_b, fake_a = m.generator_ab(a), m.generator_ba(b)
        loss_d = d_loss(self.gan_loss, m.discriminator_b(b), m.discriminator_b(self.pool_b.query(fake_b)))
        loss_d = loss_d + d_loss(
            self.gan_loss, m.discriminator_a(a), m.discriminator_a(self.pool_a.query(fake_a))
        )
        optimize("discriminator", loss_d)
        adversarial = g_loss(self.gan_loss, m.discriminator_b(fake_b)) + g_loss(
            self.gan_loss, m.discriminator_a(fake_a)
        )
        cycle = F.l1_loss(m.generator_ba(fake_b).float(), a.float()) + F.l1_loss(
            m.generator_ab(fake_a).float(), b.float()
        )
        loss_g = adversarial + self.cycle_weight * cycle
        if self.identity_weight > 0:
            identity = F.l1_loss(m.generator_ab(b).float(), b.float()) + F.l1_loss(
                m.generator_ba(a).float(), a.float()
            )
            loss_g = loss_g + self.identity_weight * self.cycle_weight * identity
        optimize("generator", loss_g)
        return {"loss_d": loss_d.detach(), "loss_g": adversarial.detach(), "cycle": cycle.detach()}

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        a, b = batch
        fake_b = self.model.generator_ab(a)
        back = self.model.generator_ba(fake_b)
        self.l1[split].update(F.l1_loss(back.float(), a.float()), len(a))  # cycle consistency
        self.keep_examples(split, a, fake_b, back)
        return {"loss_g": g_loss(self.gan_loss, self.model.discriminator_b(fake_b))}
