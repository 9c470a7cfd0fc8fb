"""torchvision's ImageNet weights for dlbench's own ResNet, VGG, AlexNet and DenseNet (transfer
learning, which seed 002 mentions), and freezing all but the last layer.

The weights are read from torch's hub cache, `$TORCH_HOME/hub/checkpoints/` (by default
`~/.cache/torch/hub/checkpoints/`), where torchvision keeps what it downloads, under
torchvision's own file names (e.g. `resnet18-f37072fd.pth`). dlbench never downloads them.

dlbench's models have torchvision's layers in torchvision's order, under other names (named
Sequentials: `stem`, `stages`, `fc`, ...). So torchvision's tensors are copied in their order,
each onto the tensor at the same place in ours, and every shape is checked. The last layer
(the classifier's weight and bias) is copied only when the number of classes is the same;
otherwise it stays newly initialised: a new head for the new data.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from dlbench.errors import DlbenchError

log = logging.getLogger("dlbench")

# torchvision's DenseNet files still use the old names `norm.1`, `conv.2` (torchvision renames
# them the same way when it loads one).
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def weight_files(arch: str) -> list[str]:
    """torchvision's file names of `arch`'s ImageNet classification weights, its default first."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch)
    except ValueError as err:
        raise DlbenchError(f"model.pretrained=true: torchvision has no weights for '{arch}'") from err
    ordered = [weights.DEFAULT, *(w for w in weights if w is not weights.DEFAULT)]
    return [w.url.rsplit("/", 1)[-1] for w in ordered if w.meta.get("categories")]


def checkpoints_folder() -> Path:
    """Where torch's hub keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def read_weights(arch: str) -> dict[str, torch.Tensor]:
    """The state dict of `arch`'s ImageNet weights, from the hub cache, or one clear error."""
    folder, files = checkpoints_folder(), weight_files(arch)
    found = [folder / f for f in files if (folder / f).is_file()]
    if not found:
        raise DlbenchError(
            f"model.pretrained=true: no {arch} weights in {folder} (expected {' or '.join(files)}). "
            "dlbench does not download weights: copy the file there, let torchvision fetch it once "
            f"(python -c \"import torchvision; torchvision.models.{arch}(weights='DEFAULT')\"), or set "
            "TORCH_HOME to the folder that holds hub/checkpoints/"
        )
    from dlbench.engine.checkpoint import check_declared_sizes

    check_declared_sizes(found[0])
    try:
        state = torch.load(found[0], map_location="cpu", weights_only=True)
    except Exception as err:  # a torn download, or not a state dict
        raise DlbenchError(
            f"model.pretrained=true: {found[0]} is not a weights file torch can read ({type(err).__name__}): "
            "a download cut short, or another file under this name"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DlbenchError(f"model.pretrained=true: {found[0]} does not hold a state dict of tensors")
    return {_OLD_DENSENET_KEY.sub(r"\1\2", k): v for k, v in state.items()}


def load_torchvision_weights(model: nn.Module, arch: str, layout: str) -> None:
    """Copy torchvision's `arch` ImageNet weights into `model`, tensor by tensor in torchvision's
    order. `layout` says which settings give torchvision's layout (for the error message)."""
    import torchvision.models as tvm

    with torch.device("meta"):  # names and shapes only: no memory, no compute
        reference = tvm.get_model(arch).state_dict()
    state = read_weights(arch)
    # files saved before torch counted BatchNorm's batches lack num_batches_tracked: keep ours
    missing = [k for k in reference if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise DlbenchError(f"model.pretrained=true: the {arch} weights file lacks {missing[0]}")
    ours = model.state_dict()
    if len(ours) != len(reference):
        raise DlbenchError(
            f"model.pretrained=true: torchvision's {arch} has {len(reference)} tensors, this model "
            f"{len(ours)}; the weights fit only torchvision's layout ({layout})"
        )
    loaded, head = {}, list(ours)[-2:]  # the last layer's weight and bias
    for (name, mine), key in zip(ours.items(), reference, strict=True):
        theirs = state.get(key, mine)
        if theirs.shape != mine.shape:
            if name in head:
                continue  # another number of classes: the head stays new
            raise DlbenchError(
                f"model.pretrained=true: {name} is {list(mine.shape)} here but {key} is "
                f"{list(theirs.shape)} in torchvision's {arch}; the weights fit only torchvision's "
                f"layout ({layout})"
            )
        loaded[name] = theirs.to(mine.dtype)
    model.load_state_dict({**ours, **loaded})
    new_head = [name for name in head if name not in loaded]
    suffix = f"; {' and '.join(new_head)} new, for {ours[head[0]].shape[0]} outputs" if new_head else ""
    log.info(f"loaded torchvision's {arch} ImageNet weights{suffix}")


def freeze_backbone(model: nn.Module, freeze: str) -> None:
    """freeze=backbone: only the last linear layer (the classifier) trains; every other weight
    keeps its value. BatchNorm layers still update their running statistics in training mode."""
    if freeze == "none":
        return
    if freeze != "backbone":
        raise DlbenchError(f"model.freeze={freeze}: choose none or backbone")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise DlbenchError("model.freeze=backbone: this model has no linear last layer to train")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in linears[-1].parameters():
        parameter.requires_grad_(True)
