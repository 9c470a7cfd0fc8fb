"""The classification and regression metrics (tasks/metrics.py) against torchmetrics, their
reference: the same values on the same predictions, absent classes and several outputs included."""

import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

from dlbench.tasks.metrics import Accuracy, ConfusionMatrix, Predictions, RegressionSums


@pytest.mark.parametrize(("classes", "given"), [(2, "scores"), (5, "predictions"), (12, "both")])
def test_classification_metrics_equal_torchmetrics(classes, given, monkeypatch):
    """The matrix is given a batch's class scores (it takes their argmax, for many batches at
    once) or its predictions, or some of each."""
    g = torch.Generator().manual_seed(classes)
    if given == "scores":  # (counted after two batches, then one; else all three at once)
        monkeypatch.setattr(Predictions, "KEEP_AT_MOST", 120)
    ours, accuracy = ConfusionMatrix(classes), Accuracy(classes)  # (the train split's: acc alone)
    theirs = {
        "acc": MulticlassAccuracy(classes, average="micro"),
        "balanced_acc": MulticlassRecall(classes, average="macro"),
        "f1_macro": MulticlassF1Score(classes, average="macro"),
    }
    per_class = {
        "precision": MulticlassPrecision(classes, average=None),
        "recall": MulticlassRecall(classes, average=None),
        "f1": MulticlassF1Score(classes, average=None),
    }
    matrix = MulticlassConfusionMatrix(classes)
    for i in range(3):  # several batches; the last class never appears in targets or predictions
        target = torch.randint(classes - 1, (50,), generator=g)
        preds = torch.where(
            torch.rand(50, generator=g) < 0.6, target, torch.randint(classes - 1, (50,), generator=g)
        )
        logits = torch.randn(50, classes, generator=g) + 10 * torch.nn.functional.one_hot(preds, classes)
        scores = given == "scores" or (given == "both" and i != 1)
        ours.update(logits if scores else preds, target)
        accuracy.update(logits if scores else preds, target)
        for metric in [*theirs.values(), *per_class.values(), matrix]:
            metric.update(preds, target)
    values = ours.compute()
    assert accuracy.compute() == {"acc": values["acc"]}
    for name, metric in theirs.items():
        assert values[name] == pytest.approx(float(metric.compute()), abs=1e-6), name
    for name, metric in per_class.items():
        torch.testing.assert_close(
            ours.per_class()[name].float(), metric.compute().float(), atol=1e-6, rtol=0
        )
    assert torch.equal(ours.matrix(), matrix.compute())


@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_equal_torchmetrics(outputs):
    g = torch.Generator().manual_seed(outputs)
    ours = RegressionSums()
    mse, mae, r2 = MeanSquaredError(), MeanAbsoluteError(), R2Score(multioutput="uniform_average")
    for _ in range(4):
        target = torch.randn(40, outputs, generator=g)
        output = target + 0.3 * torch.randn(40, outputs, generator=g)
        ours.update(output, target)
        mse.update(output, target)
        mae.update(output, target)
        r2.update(output.squeeze(-1), target.squeeze(-1))
    values = ours.compute()
    assert values["mse"] == pytest.approx(float(mse.compute()), rel=1e-5)
    assert values["mae"] == pytest.approx(float(mae.compute()), rel=1e-5)
    assert values["r2"] == pytest.approx(float(r2.compute()), rel=1e-5)


def test_scores_off_the_cpu_are_predicted_at_once():
    """On a GPU the matrix takes a batch's argmax when it is given (a CUDA-graphed model writes
    its next output over the last one); the meta device stands in for one here."""
    ours = ConfusionMatrix(3)
    ours.update(torch.empty(4, 3, device="meta"), torch.empty(4, dtype=torch.long, device="meta"))
    ours.update(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))  # (on the CPU: kept as scores)
    (_, kept_off), (_, kept_on) = ours.pending
    assert not kept_off.is_floating_point() and kept_off.shape == (4,) and kept_on.is_floating_point()


def test_the_counted_prediction_is_argmax_ties_and_nan_included():
    """The matrix predicts with max's indices (half argmax's time on the CPU): the same index,
    the first of tied scores and a NaN's, as argmax gives."""
    from dlbench.tasks.metrics import _argmax

    nan, inf = float("nan"), float("inf")
    rows = torch.tensor([[1.0, 3.0, 3.0, 0.0], [nan, 1.0, nan, 2.0], [0.0] * 4, [-inf, -inf, -1.0, inf]])
    rounded = torch.randn(500, 7, generator=torch.Generator().manual_seed(0)).round()  # (many ties)
    for scores in (rows, rounded):
        assert torch.equal(_argmax(scores), scores.argmax(dim=1))


def test_an_epochs_step_values_carried_over_a_resume_give_its_means_in_the_same_order():
    """Trainer.so_far / carry: a checkpoint in the middle of an epoch keeps its step values; the
    resumed epoch's means are the whole epoch's, also when no step comes after the resume (a
    checkpoint at the epoch's last step: the values were dropped)."""
    from dlbench.engine.means import BatchMeans

    values = [torch.tensor(v) for v in (0.1, 0.7, 0.2, 0.3)]
    whole = BatchMeans("step")
    for value in values:
        whole.add({"loss": value}, 3)
    for cut in (2, 4):
        first, resumed = BatchMeans("step"), BatchMeans("step")
        for value in values[:cut]:
            first.add({"loss": value}, 3)
        resumed.carry(first.saved())
        for value in values[cut:]:
            resumed.add({"loss": value}, 3)
        assert resumed.result("train") == whole.result("train"), cut
