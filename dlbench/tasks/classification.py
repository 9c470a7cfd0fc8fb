"""Classification: multi-class (logits, cross-entropy) and binary (one logit, BCE)."""

from __future__ import annotations

from typing import Any

import torch
from rich.table import Table
from torch import nn

from dlbench.engine.logging import new_table
from dlbench.errors import DlbenchError
from dlbench.registry import TASKS
from dlbench.tasks.base import SPLITS, Optimize, Task
from dlbench.tasks.metrics import ConfusionMatrix

TTA = ("none", "flip", "flip_translate")


@TASKS.register("classification")
class Classification(Task):
    """Multi-class classification: the model gives one logit per class."""

    default_loss = "cross_entropy"

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        data: Any,
        confusion_matrix: bool = True,
        tta: str = "none",  # test-time augmentation in val/test: none | flip | flip_translate (airbench's)
    ):
        super().__init__(model, loss)
        if tta not in TTA:
            raise DlbenchError(f"task.tta={tta}: choose one of {'|'.join(TTA)}")
        self.tta = tta
        if data.num_classes is None:
            raise DlbenchError(f"dataset '{data.name}' has no classes: use task=regression")
        if data.num_classes < 2:
            names = f" ({', '.join(map(str, data.class_names))})" if data.class_names else ""
            raise DlbenchError(
                f"dataset '{data.name}' has {data.num_classes} class{names}: a classifier needs at least two"
            )
        self.num_classes = data.num_classes
        self.class_names = data.class_names or [str(i) for i in range(self.num_classes)]
        for split in SPLITS:  # accuracy; on val and test also balanced accuracy and macro F1
            setattr(self, f"{split}_metrics", ConfusionMatrix(self.num_classes))
        self.confusion_matrix = confusion_matrix
        self.per_class_result: dict[str, torch.Tensor] | None = None
        self.test_matrix: torch.Tensor | None = None

    @staticmethod
    def output_size(data: Any) -> int:
        return data.num_classes

    # The three methods a variant (binary) changes: loss on the model's output, and predictions.
    def compute_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(output, y)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Class indices from the model's output."""
        return output.argmax(dim=1)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        return output.float().softmax(dim=1)

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        x, y = batch
        output = self.model(x)
        loss = self.compute_loss(output, y)
        optimize("model", loss)
        self.metrics("train").update(self.predict(output.detach()), y)
        return {"loss": loss.detach()}

    def evaluate_images(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output, averaged over test-time augmentations of the images (task.tta):
        flip, the mirror image; flip_translate, also two copies shifted by one pixel diagonally
        (reflection-padded), each with its mirror (airbench's multi-crop TTA)."""
        if self.tta == "none" or x.dim() != 4:
            return self.model(x)
        output = 0.5 * (self.model(x) + self.model(x.flip(-1)))
        if self.tta == "flip":
            return output
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x, (1,) * 4, mode="reflect")
        shifted = [padded[..., :h, :w], padded[..., 2 : 2 + h, 2 : 2 + w]]
        translated = sum(0.5 * (self.model(s) + self.model(s.flip(-1))) for s in shifted) / 2
        return 0.5 * output + 0.5 * translated

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        x, y = batch
        output = self.evaluate_images(x)
        self.metrics(split).update(self.predict(output), y)
        return {"loss": self.compute_loss(output, y)}

    def compute_metrics(self, split: str) -> dict[str, float]:
        matrix = self.metrics(split)
        values = matrix.compute(averages=split != "train")
        if split == "test":  # for the report and the figure
            self.per_class_result = {k: v.cpu() for k, v in matrix.per_class().items()}
            self.test_matrix = matrix.matrix().cpu()
        matrix.reset()
        return values

    def report(self) -> Table | None:
        """Per-class precision, recall and F1 on the test split (seed 004: look past accuracy)."""
        if self.per_class_result is None:
            return None
        table = new_table(
            "Test split, per class", "class", "precision", "recall", "f1", right=("precision", "recall", "f1")
        )
        result = self.per_class_result
        rows = zip(self.class_names, result["precision"], result["recall"], result["f1"], strict=True)
        for name, precision, recall, f1 in rows:
            table.add_row(str(name), f"{precision:.3f}", f"{recall:.3f}", f"{f1:.3f}")
        return table

    def figures(self, split: str) -> dict[str, Any]:
        if split != "test" or not self.confusion_matrix or self.test_matrix is None:
            return {}
        matrix, self.test_matrix = self.test_matrix, None
        return {"test/confusion_matrix": confusion_figure(matrix, self.class_names)}


def confusion_figure(matrix: torch.Tensor, names: list[str]) -> Any:
    """The test split's confusion matrix: true classes down, predicted across, counts in the cells."""
    import matplotlib.pyplot as plt

    n = len(names)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(n), names, rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        top = float(matrix.max()) or 1.0
        for (i, j), count in zip(
            ((i, j) for i in range(n) for j in range(n)), matrix.flatten().tolist(), strict=True
        ):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    fig.tight_layout()
    return fig


@TASKS.register("binary_classification")
class BinaryClassification(Classification):
    """Two classes, one logit per sample: BCE with logits, or BCE on a sigmoid (`loss=bce`)."""

    default_loss = "bce_with_logits"

    def __init__(
        self, model: nn.Module, loss: nn.Module, data: Any, confusion_matrix: bool = True, tta: str = "none"
    ):
        super().__init__(model, loss, data, confusion_matrix, tta)
        if self.num_classes != 2:
            raise DlbenchError(
                f"task=binary_classification needs 2 classes; dataset '{data.name}' has "
                f"{self.num_classes} (use task=classification)"
            )
        if not isinstance(loss, (nn.BCEWithLogitsLoss, nn.BCELoss)):
            raise DlbenchError("task=binary_classification takes loss=bce_with_logits or loss=bce")

    @staticmethod
    def output_size(data: Any) -> int:
        return 1

    def compute_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logit, target = output.reshape(-1), y.to(output.dtype).reshape(-1)
        if isinstance(self.loss, nn.BCELoss):  # seed 001's variant: sigmoid, then BCE
            return self.loss(torch.sigmoid(logit), target)
        return self.loss(logit, target)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return (output.reshape(-1) > 0).long()

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(output.float().reshape(-1, 1))
        return torch.cat([1 - p, p], dim=1)
