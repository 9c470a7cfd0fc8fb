"""A user's own Dataset (data/base.py `as_source`) and what a task makes of its samples: each
was a silent wrong result that a review of docs/extending.md found."""

import dataclasses
import logging

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from dlbench import compose, resume
from dlbench.config import AugmentConfig, DataConfig
from dlbench.data.base import DataModule, as_source
from dlbench.data.splits import labels_of
from dlbench.data.tabular import iris
from dlbench.errors import DlbenchError
from dlbench.tasks.classification import Classification
from dlbench.tasks.regression import Regression


class Labelled(Dataset):
    """Samples with int labels and no `targets` list (a `classes` list where given)."""

    def __init__(self, labels, classes=None):
        self.labels = labels
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.full((3,), float(i)), self.labels[i]


def test_a_float_target_of_one_value_is_a_column_as_the_model_gives_it():
    """A (N,) float target made [B] batches against the model's [B, 1]: MSE broadcast them to
    [B, B] with torch's warning only, and a linear fit reached r2 0.05 on an exact line."""
    x = torch.randn(20, 3)
    source = as_source(TensorDataset(x, x.sum(1)), "line")
    assert source.train[0][1].shape == (1,) and source.train[0][1].dtype == torch.float32
    assert as_source(Labelled([0, 1] * 5), "two").train[0][1] == 0  # (a class stays a number)
    task = Regression(nn.Linear(3, 2), nn.MSELoss(), DataModule(source, DataConfig()))
    with pytest.raises(DlbenchError, match=r"output for a sample has shape \[2\], its target \[1\]"):
        task.training_step((x[:4], x[:4].sum(1, keepdim=True)), lambda name, loss: None)


def test_a_classifier_with_more_outputs_than_classes_is_refused():
    """It trained, and predict named classes 10, 11 and 12 of a data set of ten."""
    data = DataModule(as_source(Labelled([0, 1, 2] * 10), "three"), DataConfig())
    task = Classification(nn.Linear(3, 5), nn.CrossEntropyLoss(), data)
    with pytest.raises(DlbenchError, match="the model gives 5 outputs a sample for 3 classes"):
        task.training_step((torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])), lambda name, loss: None)


def test_labels_without_a_targets_list_are_read_once_for_stratified_splits_and_checked(caplog):
    """The docs promise splits stratified by labels read once: they were read to count the
    classes only (a test split of 6 and 10 of 40/40), not at all with a `classes` list, whose
    labels outside it then failed in the model's step as the model's fault."""
    for seed in range(3):
        data = DataModule(as_source(Labelled([0, 1] * 40), "f"), DataConfig(split_seed=seed))
        assert torch.bincount(labels_of(data.splits["test"])).tolist() == [8, 8]
    with pytest.raises(DlbenchError, match=r"train split has labels outside 0..1 \(found 0..2\)"):
        DataModule(as_source(Labelled([0, 1, 2] * 10, classes=["a", "b"]), "short"), DataConfig())
    with caplog.at_level(logging.WARNING, logger="dlbench"):
        assert as_source(Labelled([1, 2, 3, 9] * 5), "gaps").num_classes == 10
    assert "its labels run to 9, and 6 classes below that have no sample (0, 4, 5, 6, 7, ...)" in caplog.text


def test_every_datas_augmentations_are_set_by_key_and_refused_where_samples_are_not_images():
    """`dataset.augment.hflip=0.5` (docs/data.md's for Caltech101, extending.md's for your own
    data) was `Unknown key` wherever a dataset's node had no augment of its own; on a table a
    flip was an IndexError after the run's folder was written. A run saved with augment: null
    (before every node named each augmentation, off) resumes as it was."""
    for data in ("caltech101", "digits", "iris"):
        assert (
            compose.compose_config([f"dataset={data}", "dataset.augment.hflip=0.5"]).dataset.augment.hflip
            == 0.5
        )
    with pytest.raises(
        DlbenchError, match=r"hflip=0.5: augmentations of images, and 'iris' gives samples of shape \[4\]"
    ):
        DataModule(iris(), DataConfig(name="iris", augment={"hflip": 0.5}))
    off = dataclasses.asdict(AugmentConfig())
    assert resume.changes({"dataset": {"augment": None}}, {"dataset": {"augment": off}}) == {}
    partial, whole = {"crop_padding": 2}, {**off, "crop_padding": 2}
    assert resume.changes({"dataset": {"augment": partial}}, {"dataset": {"augment": whole}}) == {}
    flipped = resume.changes({"dataset": {"augment": None}}, {"dataset": {"augment": {**off, "hflip": 0.5}}})
    assert flipped == {"dataset.augment.hflip": (0.0, 0.5)}


def test_a_stream_is_refused_with_what_dlbench_needs_of_a_dataset():
    """An IterableDataset was len()'s TypeError: 'unexpected error', exit 1."""

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield torch.zeros(3), 0

    with pytest.raises(DlbenchError, match="Stream is an IterableDataset, a stream with no length"):
        as_source(Stream(), "stream")


def test_a_datasets_parameter_that_dlbench_reads_for_every_dataset_is_refused(monkeypatch):
    """`def data(batch_size=5)`: dataset.batch_size=9 went to the loader and 5 to the constructor,
    and `dlbench list datasets` showed 5 where --cfg job showed 64."""
    from dlbench.config import schema_hints
    from dlbench.registry import DATASETS

    def clash(batch_size: int = 5, n: int = 40):
        return TensorDataset(torch.zeros(n, 3), torch.zeros(n, dtype=torch.long))

    monkeypatch.setitem(DATASETS._entries, "clash", clash)
    node = {"name": "clash", "batch_size": 9, "n": 40}
    with pytest.raises(DlbenchError, match=r"dataset 'clash' takes batch_size, which dlbench reads itself"):
        DATASETS.check(node, "dataset", reserved=schema_hints(DataConfig))
