"""Image transforms from config: preprocessing applied once, augmentations applied per sample."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision.transforms import v2

from dlbench.config import AugmentConfig
from dlbench.errors import DlbenchError

# Per-dataset channel statistics (torchvision's references and common practice).
STATS = {
    "mnist": ([0.1307], [0.3081]),
    "fashion_mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    # ImageNet's statistics: what torchvision's pretrained weights expect
    "caltech101": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def normalization(dataset: str, normalize: str | list[list[float]] | None, channels: int):
    """(mean, std) for `normalize`: 'dataset' (its statistics), 'half' (0.5: to [-1, 1]),
    'none', or [[means...], [stds...]]."""
    if normalize in (None, "none"):
        return None
    if normalize == "dataset":
        if dataset not in STATS:
            raise DlbenchError(
                f"dataset.normalize=dataset: no statistics for '{dataset}' (give [[mean], [std]])"
            )
        return STATS[dataset]
    if normalize == "half":
        return [0.5] * channels, [0.5] * channels
    if isinstance(normalize, (list, tuple)) and len(normalize) == 2:
        return list(normalize[0]), list(normalize[1])
    raise DlbenchError(f"dataset.normalize={normalize}: use dataset, half, none or [[means], [stds]]")


def preprocess(images: torch.Tensor, size: list[int] | None, stats) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1], resized, normalised: done once for the whole set."""
    x = images.float().div_(255)
    if size is not None and list(x.shape[-2:]) != list(size):  # as torchvision's resize does it
        x = torch.nn.functional.interpolate(
            x, size=list(size), mode="bilinear", antialias=True, align_corners=False
        )
    if stats is not None:
        mean, std = (torch.tensor(v, dtype=x.dtype).view(1, -1, 1, 1) for v in stats)
        x = (x - mean) / std
    return x


class AddNoise(torch.nn.Module):
    """Additive Gaussian noise (seed 004's noise augmentation)."""

    def __init__(self, std: float):
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x)


class Augment(AugmentConfig):
    """`dataset.augment` (config.AugmentConfig, its keys), applied: to a whole batch where every
    augmentation asked for has a batch version, else to each sample."""

    def check_images(self, input_shape: list[int], name: str) -> None:
        """Refuse augmentations asked of samples that are not images (channels, height, width), as
        `mixing` refuses a mix: a flip of a table's last dimension was an IndexError after the
        run's folder was made."""
        asked = {k: v for k, v in dataclasses.asdict(self).items() if v}
        if asked and len(input_shape) != 3:
            raise DlbenchError(
                f"{', '.join(f'dataset.augment.{k}={v}' for k, v in asked.items())}: augmentations of "
                f"images, and '{name}' gives samples of shape {input_shape}, not images (channels, "
                "height, width)"
            )
        widest = max(input_shape[1:]) if asked else 0
        if asked and self.cutout > widest:  # (1000 on 8x8 digits: every image blank, unsaid)
            raise DlbenchError(
                f"dataset.augment.cutout={self.cutout}: a square wider than '{name}''s images "
                f"({input_shape[1]}x{input_shape[2]}) blanks most of each; give at most {widest}"
            )
        narrowest = min(input_shape[1:]) if asked else 0
        if asked and self.crop_padding >= narrowest:  # (100 on 8x8: most crops held no pixel of the image)
            raise DlbenchError(
                f"dataset.augment.crop_padding={self.crop_padding}: a padding as wide as '{name}''s "
                f"images ({input_shape[1]}x{input_shape[2]}) makes crops of the padding alone; give at "
                f"most {narrowest - 1}"
            )

    def batchable(self) -> bool:
        """Whether every augmentation asked for has a whole-batch version (BatchAugment)."""
        return not (self.rotation or self.resize_pad or self.color_jitter or self.blur_sigma)

    def batch(self) -> BatchAugment | None:
        """The augmentations as one function of a batch, or None when there are none."""
        if not (self.hflip or self.vflip or self.crop_padding or self.cutout or self.noise_std):
            if not self.hflip_alternate:
                return None
        return BatchAugment(
            self.hflip,
            self.vflip,
            self.crop_padding,
            self.cutout,
            self.noise_std,
            self.hflip_alternate,
            "reflect" if self.crop_reflect else "constant",
        )

    def build(self, size: list[int]) -> v2.Compose | None:
        from torchvision.transforms import v2  # torchvision is imported when it is used

        if self.hflip_alternate or self.crop_reflect:
            raise DlbenchError(
                "dataset.augment.hflip_alternate and crop_reflect exist only as whole-batch augmentations: "
                "they need in-memory data and no rotation, resize_pad, color_jitter or blur_sigma"
            )
        steps: list[torch.nn.Module] = []
        if self.hflip:
            steps.append(v2.RandomHorizontalFlip(self.hflip))
        if self.vflip:
            steps.append(v2.RandomVerticalFlip(self.vflip))
        if self.rotation:
            steps.append(v2.RandomRotation(self.rotation))
        if self.crop_padding:
            steps.append(v2.RandomCrop(size, padding=self.crop_padding))
        if self.resize_pad:
            steps += [
                v2.RandomZoomOut(side_range=(1.0, 1.0 + self.resize_pad)),
                v2.Resize(size, antialias=True),
            ]
        if self.color_jitter:
            s = self.color_jitter
            steps.append(v2.ColorJitter(brightness=s, contrast=s, saturation=s))
        if self.blur_sigma:
            steps.append(v2.GaussianBlur(kernel_size=5, sigma=(0.1, self.blur_sigma)))
        if self.noise_std:
            steps.append(AddNoise(self.noise_std))
        if self.cutout:
            steps.append(Cutout(self.cutout))
        return v2.Compose(steps) if steps else None


def random_crop(x: torch.Tensor, padding: int, mode: str = "constant") -> torch.Tensor:
    """Pad a batch by `padding` (zeros, or by reflection) and crop each image back to its size
    at its own offset."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4, mode=mode)
    dy, dx = (torch.randint(0, 2 * padding + 1, (n, 1), device=x.device) for _ in range(2))
    rows = dy + torch.arange(h, device=x.device)  # (n, h): the rows each image keeps
    cols = dx + torch.arange(w, device=x.device)
    picked = padded.permute(0, 2, 3, 1)[
        torch.arange(n, device=x.device)[:, None, None], rows[:, :, None], cols[:, None, :]
    ]
    return picked.permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a size x size square (clipped at the border) centred at a random pixel of each image."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), device=x.device)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None] - cy + size // 2
    cols = torch.arange(w, device=x.device)[None, None, :] - cx + size // 2
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    return x * ~inside[:, None]


class Cutout(torch.nn.Module):
    """cutout() for one image (the per-sample path)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cutout(x[None], self.size)[0]


class BatchAugment:
    """Flips, random crops, cutout and noise applied to a whole batch on its device, each
    image drawing its own randomness (so no per-sample Python and no DataLoader)."""

    def __init__(
        self,
        hflip: float,
        vflip: float,
        crop_padding: int,
        cutout: int,
        noise_std: float,
        hflip_alternate: bool = False,
        crop_mode: str = "constant",
    ):
        self.hflip, self.vflip, self.crop_padding = hflip, vflip, crop_padding
        self.cutout, self.noise_std = cutout, noise_std
        self.hflip_alternate, self.crop_mode = hflip_alternate, crop_mode

    def __call__(self, x: torch.Tensor, index: torch.Tensor | None = None, epoch: int = 0) -> torch.Tensor:
        """Augment a batch; `index` (the samples' positions in the split) and `epoch` serve the
        alternating flip, which flips a fixed half of the images on even epochs and the other
        half on odd ones, so every image is seen both ways within two epochs."""
        for p, dim in ((self.hflip, 3), (self.vflip, 2)):
            if p:
                flip = torch.rand(len(x), 1, 1, 1, device=x.device) < p
                x = torch.where(flip, x.flip(dim), x)
        if self.hflip_alternate and index is not None:
            half = (index.to(x.device) * 2654435761 % 2**32) >> 31  # a fixed pseudo-random bit per image
            flip = (half ^ (epoch % 2)).bool().view(-1, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.crop_mode)
        if self.cutout:
            x = cutout(x, self.cutout)
        if self.noise_std:
            x = x + self.noise_std * torch.randn_like(x)
        return x


class Augmented(torch.utils.data.Dataset):
    """A dataset whose samples pass through random augmentations each time they are read.

    Each sample's randomness is drawn from (seed, epoch, index) alone, so it is the same in any
    worker process and after a resume part-way through an epoch (DataModule sets the epoch).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, transform: v2.Compose, seed: int = 0):
        self.dataset, self.transform = dataset, transform
        self.seed, self.epoch = seed, 0
        if (targets := getattr(dataset, "targets", None)) is not None:
            self.targets = targets  # the labels, for stratified splits

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, index)) % 2**63)
            return self.transform(x), y


def mixing(mixup: float, cutmix: float, num_classes: int | None, input_shape: list[int], name: str):
    """`dataset.mixup` / `dataset.cutmix`: a function that mixes a whole (images, labels) batch on
    the device into (mixed images, soft labels): torchvision's MixUp and CutMix, one of the two
    chosen at random for each batch when both are on (timm's switch). None when both are 0."""
    if not (mixup or cutmix):
        return None
    what = "dataset.mixup/cutmix" if mixup and cutmix else f"dataset.{'mixup' if mixup else 'cutmix'}"
    if not num_classes:
        raise DlbenchError(f"{what} mixes class labels; dataset '{name}' has no classes")
    if len(input_shape) != 3:
        raise DlbenchError(f"{what} mixes images; dataset '{name}' gives inputs of shape {input_shape}")
    from torchvision.transforms import v2  # (only for a run that mixes)

    # (an alpha given as an integer, dataset.mixup=1, as a float: torch samples Beta(alpha, alpha)
    # from a tensor of alpha's dtype, and draws from no integer one)
    mixup, cutmix = float(mixup), float(cutmix)
    chosen = [v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup else []
    chosen += [v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix else []
    transform = chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)

    def mix(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        return tuple(transform(images, labels))

    return mix
