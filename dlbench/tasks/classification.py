"""Classification: multi-class (logits, cross-entropy) and binary (one logit, BCE)."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

import torch
from rich.table import Table
from torch import nn

from dlbench import terminal
from dlbench.data.info import DataInfo
from dlbench.engine.logging import err_console, new_table
from dlbench.errors import DlbenchError
from dlbench.figures import confusion_figure, decision_regions_figure
from dlbench.registry import TASKS
from dlbench.tasks.base import Optimize, PredictOptions, Rows, Task
from dlbench.tasks.metrics import Accuracy, ConfusionMatrix, per_class, scores

TTA = ("none", "flip", "flip_translate")
# Losses that compare vectors: a class label becomes a one-hot vector for them (seed 001's MSELoss).
REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
# the losses that take class probabilities as targets (a mixed batch's labels: dataset.mixup)
SOFT_LOSSES = (nn.CrossEntropyLoss, nn.BCEWithLogitsLoss, nn.BCELoss, *REGRESSION_LOSSES)

if TYPE_CHECKING:  # (a type only)
    from dlbench.data.base import DataModule


@TASKS.register("classification")
class Classification(Task):
    """Multi-class classification: the model gives one logit per class."""

    default_loss = "cross_entropy"
    # class indices as targets, or one-hot vectors (the regression losses: seed 001's MSELoss)
    losses = ("cross_entropy", "nll", "multi_margin", "mse", "l1", "smooth_l1", "huber")
    soft_targets = True  # a mixed batch's labels: class probabilities (cross-entropy takes them)

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        data: DataInfo,
        confusion_matrix: bool = True,  # drawn for val and test (as logger.figures_budget allows)
        # rows sum to 1: each true class's share of predictions (seed 002's name2lang plot)
        confusion_normalize: bool = False,
        tta: str = "none",  # test-time augmentation in val/test: none | flip | flip_translate (airbench's)
        # inputs of 2 (or more) features: draw the class regions over the first two with the
        # evaluations' figures (seed 002's iris picture); other features at their mean
        decision_regions: bool = False,
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
        self.one_hot = isinstance(loss, REGRESSION_LOSSES)  # seed 001's MSELoss: one-hot targets
        self.train_metrics = Accuracy(self.num_classes)  # train/acc
        for split in ("val", "test"):  # accuracy, balanced accuracy and macro F1, the matrix's figure
            setattr(self, f"{split}_metrics", ConfusionMatrix(self.num_classes))
        # the confusion matrix is given the class scores themselves when the predictions are their
        # argmax (it takes it for many batches at once), else the predictions (binary's sign)
        self.counts_scores = type(self).predict is Classification.predict
        self.confusion_matrix = confusion_matrix
        self.confusion_normalize = confusion_normalize
        self.decision_regions = decision_regions
        self.seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # inputs for the regions
        self.evaluated: dict[str, Any] = {}  # the last evaluation's matrix and samples, for figures()
        self.per_class_result: dict[str, torch.Tensor] | None = None
        self.check(data, loss)

    def check(self, data: DataInfo, loss: nn.Module) -> None:
        """What this task needs of its data and loss beyond a classifier's (a variant's checks)."""

    @staticmethod
    def takes_soft_labels(loss: nn.Module) -> bool:
        """Whether `loss` takes a mixed batch's class probabilities: torch's that do; a loss of
        one's own (a plugin's, e.g. a soft-target cross-entropy) unless it says `soft_targets = False`."""
        if hasattr(loss, "soft_targets"):
            return loss.soft_targets is True
        return isinstance(loss, SOFT_LOSSES) or not type(loss).__module__.startswith(("torch.", "dlbench."))

    @staticmethod
    def output_size(data: DataModule) -> int:
        return data.num_classes

    PREDICT_OPTIONS = ("top_k",)

    def predict_table(self, inputs: list[str], info: DataInfo, options: PredictOptions) -> Rows:
        """The top-k classes of each image file or name, with their probabilities (the
        SEOULTECH tutorial's predict(): seed 002)."""
        from dlbench.data.images import LIGHT_ON_DARK, image_input
        from dlbench.data.text import encode_names, to_ascii

        if not inputs:
            raise DlbenchError("usage: dlbench predict RUN INPUT... (image files or names)")
        if "input" in (info.vocab or {}):  # names: letters -> ids
            if unread := [name for name in inputs if not any(c.isalpha() for c in to_ascii(name))]:
                raise DlbenchError(  # (encoded as padding alone, it got a confident answer)
                    f"{unread[0]!r} has no letter the model reads (a-z and A-Z, accents folded away: "
                    "'Ślusàrski' is read as Slusarski)"
                )
            batch = encode_names(inputs)
            for name in inputs:  # (Ta3naka was read as Tanaka, unsaid; accents are folded, as trained)
                folded = unicodedata.normalize("NFD", name)
                if left := sorted({c for c in folded if unicodedata.category(c) != "Mn" and not to_ascii(c)}):
                    err_console.print(
                        terminal.inert(
                            f"note: {name!r} is read as {to_ascii(name)!r}: the model reads no "
                            f"{' '.join(map(repr, left))} (letters a-z and A-Z, space and . , ; ')"
                        )
                    )
        elif len(info.input_shape) == 3:
            dark = info.name in LIGHT_ON_DARK  # (a photo of a digit on white paper: inverted)
            shape = list(info.input_shape)
            batch = torch.stack([image_input(f, shape, info.normalization, dark) for f in inputs])
        else:
            raise DlbenchError(f"predict takes image files or names; this run's data is {info.name}")
        with torch.no_grad():
            probs = self.probabilities(self.model(batch))
        names = list(info.class_names or [])  # (a model of more outputs than names: the index)
        k = min(options.top_k, probs.shape[1])
        rows = []
        for text, p in zip(inputs, probs, strict=True):
            values, indices = p.topk(k)
            shown = [names[i] if i < len(names) else i for i in indices.tolist()]
            rows.append([text, *[f"{name} ({float(v):.1%})" for name, v in zip(shown, values, strict=True)]])
        return ["input", *[f"#{i + 1}" for i in range(k)]], rows

    def trial_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(2, self.num_classes), torch.tensor([0, 1])

    def loss_of(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.compute_loss(output, y)

    # The three methods a variant (binary) changes: loss on the model's output, and predictions.
    def compute_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if output.dim() > 1 and output.shape[1] != self.num_classes:  # (more trained: classes 10, 11, 12)
            raise DlbenchError(
                f"the model gives {output.shape[1]} outputs a sample for {self.num_classes} classes: a "
                "classifier's last layer has one per class (model.num_outputs, which the data sets: "
                "leave out a model.num_outputs of your own)"
            )
        soft = y.is_floating_point()  # a mixed batch's class probabilities
        if isinstance(self.loss, nn.NLLLoss):  # (on the logits, it pushed them up without end)
            output = nn.functional.log_softmax(output, dim=1)  # (a model's own log-probs: the same)
        if self.one_hot and not soft:
            y = nn.functional.one_hot(y, self.num_classes).to(output.dtype)
        return self.loss(output, y.to(output.dtype) if soft else y)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        """Class indices from the model's output."""
        return output.argmax(dim=1)

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        return output.float().softmax(dim=1)

    def counted(self, output: torch.Tensor) -> torch.Tensor:
        """What the confusion matrix is given of a batch's output: the scores, or the predictions."""
        return output if self.counts_scores else self.predict(output)

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        x, y = batch
        output = self.model(x)
        loss = self.compute_loss(output, y)
        optimize("model", loss)
        if self.track_train_metrics:  # (an epoch that reports train/acc: the trainer says)
            # mixed labels (dataset.mixup/cutmix): train/acc counts their argmax, the larger share
            self.metrics("train").update(
                self.counted(output.detach()), y.argmax(1) if y.is_floating_point() else y
            )
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
        self.metrics(split).update(self.counted(output), y)
        if self.decision_regions and x.dim() == 2:
            self.seen.setdefault(split, []).append((x.detach(), y.detach()))
        return {"loss": self.compute_loss(output, y)}

    def compute_metrics(self, split: str) -> dict[str, float]:
        counts = self.metrics(split)
        if split == "train":  # accuracy alone
            values = counts.compute()
            counts.reset()
            return values
        matrix = counts.matrix()  # summed over the processes once, for every figure below
        values = scores(matrix)
        if split == "test":  # for the report
            self.per_class_result = {k: v.cpu() for k, v in per_class(matrix).items()}
        if self.confusion_matrix and split in ("val", "test"):  # for figures(split)
            self.evaluated[f"{split}/confusion"] = matrix.cpu()
        if self.seen.get(split):
            inputs, labels = zip(*self.seen.pop(split), strict=True)
            self.evaluated[f"{split}/samples"] = [torch.cat(inputs).cpu(), torch.cat(labels).cpu()]
        counts.reset()
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
        """The confusion matrix of the split (val or test) and, with decision_regions, the class
        regions over its samples."""
        figures = {}
        if (matrix := self.evaluated.pop(f"{split}/confusion", None)) is not None:
            title = f"{split} split" + (", each row normalised" if self.confusion_normalize else "")
            figures[f"{split}/confusion_matrix"] = confusion_figure(
                matrix, self.class_names, self.confusion_normalize, title
            )
        if (samples := self.evaluated.pop(f"{split}/samples", None)) is not None:
            figures[f"{split}/decision_regions"] = decision_regions_figure(
                self.predict_inputs, *samples, self.class_names, f"{split} split: decision regions"
            )
        return figures

    @torch.no_grad()
    def predict_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Classes for inputs on the CPU (a grid of points), through the model on its device."""
        device = next(self.model.parameters()).device
        return self.predict(self.model(x.to(device)))


@TASKS.register("binary_classification")
class BinaryClassification(Classification):
    """Two classes, one logit per sample: BCE with logits, or BCE on a sigmoid (`loss=bce`)."""

    default_loss = "bce_with_logits"
    losses = ("bce_with_logits", "bce")

    def check(self, data: DataInfo, loss: nn.Module) -> None:
        if self.num_classes != 2:
            raise DlbenchError(
                f"task=binary_classification needs 2 classes; dataset '{data.name}' has "
                f"{self.num_classes} (use task=classification)"
            )

    @staticmethod
    def output_size(data: DataModule) -> int:
        return 1

    def trial_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(2, 1), torch.tensor([0, 1])

    def compute_loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y[:, 1] if y.is_floating_point() and y.dim() == 2 else y  # mixed: the chance of class 1
        logit, target = output.reshape(-1), y.to(output.dtype).reshape(-1)
        if isinstance(self.loss, nn.BCELoss):  # seed 001's variant: sigmoid, then BCE
            return self.loss(torch.sigmoid(logit), target)
        return self.loss(logit, target)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return (output.reshape(-1) > 0).long()

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(output.float().reshape(-1, 1))
        return torch.cat([1 - p, p], dim=1)
