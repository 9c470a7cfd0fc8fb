"""AlexNet (seed 001; torchvision's layout, so the ImageNet variant matches it exactly)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import nn

from dlbench.models.layers import check_fits, choose_stem, image_shape
from dlbench.models.pretrained import freeze_backbone, load_torchvision_weights
from dlbench.registry import MODELS


@MODELS.register("alexnet")
def alexnet(
    input_shape: list[int],
    num_outputs: int,
    # auto | cifar (3x3 stride-1 first conv) | imagenet (11x11 stride 4); auto: imagenet from 128px
    stem: Literal["auto", "cifar", "imagenet"] = "auto",
    dropout: float = 0.5,
    hidden: int = 4096,  # width of the two hidden FC layers
    pool_size: int = 6,  # the adaptive average pool before the classifier (6x6 in the paper)
    pretrained: bool = False,  # torchvision's ImageNet weights from torch's hub cache (never downloaded)
    freeze: Literal["none", "backbone"] = "none",  # backbone: train only the last layer
) -> nn.Module:
    """AlexNet: five ReLU convs with max-pooling, adaptive average pool, dropout-FC-FC-FC.

    stem=imagenet: the 11x11 stride-4 first conv of the paper (224px inputs).
    stem=cifar: a 3x3 stride-1 first conv, so 32px images keep enough resolution; everything
    after it is the same, and the adaptive pool makes any input size fit the classifier.
    pretrained=true loads torchvision's ImageNet weights (stem=imagenet); freeze=backbone trains
    only the last layer.
    """
    channels, _, _ = image_shape(input_shape, "alexnet")
    if choose_stem(stem, input_shape) == "imagenet":
        first = nn.Conv2d(channels, 64, kernel_size=11, stride=4, padding=2)
    else:
        first = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1)
    features = nn.Sequential(
        first,
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    classifier = nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(256 * pool_size * pool_size, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_outputs),
    )
    model = nn.Sequential(
        OrderedDict(
            features=features,
            pool=nn.AdaptiveAvgPool2d(pool_size),
            flatten=nn.Flatten(),
            classifier=classifier,
        )
    )
    if pretrained:
        load_torchvision_weights(model, "alexnet", "model.stem=imagenet, hidden=4096, pool_size=6")
    freeze_backbone(model, freeze)
    return check_fits(model, input_shape, "alexnet")
