"""Reading image files: decoded whole (a file cut short is found, not half-read), 16-bit images
scaled to 8 bits (not clipped), decompression bombs refused, and one message naming the file."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from dlbench.errors import DlbenchError, first_line

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def checked_size(name: str, image_size: Any) -> list[int]:
    """dataset.image_size: [height, width], each at least 1 (0 was torch's resize error, at the
    first batch)."""
    size = list(image_size)
    if len(size) != 2 or not all(isinstance(n, int) and n >= 1 for n in size):
        raise DlbenchError(f"{name}: dataset.image_size={size}: give [height, width], each at least 1")
    return size


def open_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """An image file decoded into `mode` ("RGB" or "L"), or a DlbenchError naming the file."""
    if os.path.exists(path) and not os.path.isfile(path):  # (a FIFO would be waited on for ever)
        raise DlbenchError(f"{path} is not a file (a folder, a FIFO, a device): name an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return on_white(ImageOps.exif_transpose(to_8bit(image))).convert(mode)
    except FileNotFoundError as err:
        raise DlbenchError(f"No such file: {path}") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DlbenchError(f"{path} is refused: {err}") from err
    except Exception as err:  # PIL raises many types for a broken file
        raise DlbenchError(f"{path} is not a readable image ({first_line(err)})") from err


def to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (PNG) as 8-bit, its full range scaled (65535 -> 255); PIL's own
    convert("L") would clip every value above 255 to white. A float one (TIFF's "F") in [0, 1]
    is scaled to 255 (convert("L") made it 0 or 1: black)."""
    if image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        values = values * 255.0 if values.size and values.max() <= 1.0 else values
    elif image.mode in SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64) / 257.0
    else:
        return image
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def on_white(image: Image.Image) -> Image.Image:
    """An image with transparency laid on white (a drawing exported from a canvas: black
    strokes on transparent pixels stored as (0, 0, 0, 0), which convert() alone made black on
    black); an opaque one as it is."""
    if image.mode not in ("RGBA", "LA", "PA") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)


def check_image(path: str | Path, mode: str = "RGB") -> str | None:
    """None if the file decodes to the end and into `mode` (as `open_image`: PIL cannot turn a
    LAB image into "L"), else what is wrong with it. JPEGs are decoded at a reduced size (every
    byte is still read), which makes checking a large folder fast."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.draft(image.mode, (64, 64))
                image.load()
                if image.mode != mode:
                    to_8bit(image).convert(mode)
    except Exception as err:  # PIL raises many types for a broken file
        return first_line(err)
    return None


def bad_images(paths: Iterable[str | Path], mode: str = "RGB") -> dict[str, str]:
    """The files among `paths` that do not decode into `mode`, with the reason (decoded in
    threads: PIL releases the GIL while it decodes)."""
    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        problems = pool.map(functools.partial(check_image, mode=mode), paths, chunksize=64)
        return {path: problem for path, problem in zip(paths, problems, strict=True) if problem}


# The data sets whose images are light on a dark ground (white digits, clothes on black): a
# photo of a digit on white paper is inverted to match. No other data's images are.
LIGHT_ON_DARK = ("mnist", "fashion_mnist", "digits")


def image_input(path: str | Path, shape: list[int], normalization: list | None, light_on_dark: bool) -> Any:
    """An image file as the model's input, as seed 002's predict() prepares it: grayscale when
    the model takes one channel, inverted when the model was trained on light-on-dark images
    (`light_on_dark`: MNIST's digits are white on black) and the file's border is light,
    resized to the model's input size, normalised like the training data."""
    import torch
    from torchvision.transforms import v2

    channels, height, width = shape
    image = open_image(path, "L" if channels == 1 else "RGB")
    x = v2.functional.to_dtype(v2.functional.to_image(image), torch.float32, scale=True)
    if channels == 1 and light_on_dark:  # (any other grayscale data is taken as it is)
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)
        if border.mean() > 0.5:
            x = 1 - x
    x = v2.functional.resize(x, [height, width], antialias=True)
    if normalization:
        x = v2.functional.normalize(x, *normalization)
    return x
