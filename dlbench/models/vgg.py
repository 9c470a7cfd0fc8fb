"""VGG (seed 001): stacks of 3x3 convolutions and max-pooling, then three fully connected layers."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import nn

from dlbench.errors import DlbenchError
from dlbench.models.layers import check_fits, choose_stem, image_shape, init_cnn
from dlbench.models.pretrained import freeze_backbone, load_torchvision_weights
from dlbench.registry import MODELS

# Output channels of each 3x3 conv, "M" a 2x2 max-pool: configurations A, B, D, E of the paper.
LAYOUTS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


@MODELS.register("vgg")
def vgg(
    input_shape: list[int],
    num_outputs: int,
    depth: int = 16,  # 11 | 13 | 16 | 19
    batch_norm: bool = False,  # true: vgg16_bn
    width: float = 1.0,  # multiplies every conv's channels
    # cifar: 512-4096-4096-n classifier on 1x1 maps | imagenet: 7x7 maps (25088 inputs)
    stem: Literal["auto", "cifar", "imagenet"] = "auto",
    hidden: int = 4096,
    dropout: float = 0.5,  # the seed's CIFAR VGG-16 uses 0.65 (see experiment=vgg16_cifar10)
    pretrained: bool = False,  # torchvision's ImageNet weights from torch's hub cache (never downloaded)
    freeze: Literal["none", "backbone"] = "none",  # backbone: train only the last layer
) -> nn.Module:
    """VGG-11/13/16/19: 3x3 convs (+BatchNorm if batch_norm) in five pooled blocks, FC-FC-FC.

    stem=imagenet pools the last feature map to 7x7 before the classifier (torchvision's
    VGG, 25088 inputs to the first FC); stem=cifar pools it to 1x1, the seed's 512-4096-4096-n
    classifier for 32px images. width scales every conv's channels. pretrained=true loads
    torchvision's ImageNet weights (stem=imagenet); freeze=backbone trains only the last layer.
    """
    if depth not in LAYOUTS:
        raise DlbenchError(f"model.depth={depth}: VGG comes in depths {', '.join(map(str, LAYOUTS))}")
    channels, _, _ = image_shape(input_shape, "vgg")
    layers: list[nn.Module] = []
    for item in LAYOUTS[depth]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = max(1, round(item * width))
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    pool = 7 if choose_stem(stem, input_shape) == "imagenet" else 1
    classifier = nn.Sequential(
        nn.Linear(channels * pool * pool, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs),
    )
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*layers),
            pool=nn.AdaptiveAvgPool2d(pool),
            flatten=nn.Flatten(),
            classifier=classifier,
        )
    )
    init_cnn(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    if pretrained:
        arch = f"vgg{depth}{'_bn' if batch_norm else ''}"
        load_torchvision_weights(model, arch, "model.stem=imagenet, width=1, hidden=4096")
    freeze_backbone(model, freeze)
    return check_fits(model, input_shape, "vgg")
