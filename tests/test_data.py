import math

import pytest
import torch

from dlbench.config import DataConfig
from dlbench.data.base import DataModule
from dlbench.data.loaders import EpochSampler, TensorLoader
from dlbench.data.series import csv_series
from dlbench.data.splits import labels_of
from dlbench.data.tabular import csv_table, digits, iris
from dlbench.errors import DlbenchError


def test_digits_splits_are_stratified_disjoint_and_fixed_by_seed():
    data = DataModule(digits(), DataConfig(val_fraction=0.1, test_fraction=0.2, split_seed=0))
    sizes = {s: data.size(s) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 359 and sizes["val"] == 144
    assert data.input_shape == [1, 8, 8] and data.num_classes == 10 and data.num_outputs == 10
    counts = torch.bincount(labels_of(data.splits["test"]), minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified: ~36 of each digit
    again = DataModule(digits(), DataConfig(val_fraction=0.1, test_fraction=0.2, split_seed=0))
    assert torch.equal(again.splits["test"].tensors[0], data.splits["test"].tensors[0])
    other = DataModule(digits(), DataConfig(val_fraction=0.1, test_fraction=0.2, split_seed=1))
    assert not torch.equal(other.splits["test"].tensors[0], data.splits["test"].tensors[0])


def test_iris_feature_and_class_subsets():
    source = iris(features=[0, 1], classes=[0, 1])
    x, y = source.train.tensors
    assert x.shape == (100, 2) and set(y.tolist()) == {0, 1}
    assert source.class_names == ["setosa", "versicolor"]


def test_iris_is_standardized_with_its_train_splits_statistics_which_the_run_records():
    """dataset.standardize=true scaled by all 150 flowers, test ones too, and recorded nothing
    (an export's reader could not scale a flower): the train split's mean and std now, its
    data's normalization."""
    from dlbench import compose
    from dlbench.build import build_data

    data = build_data(compose.compose_config(["dataset=iris", "dataset.standardize=true"]))
    raw = iris()
    split = {name: torch.stack([x for x, _ in data.splits[name]]) for name in ("train", "test")}
    assert torch.allclose(split["train"].mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(split["train"].std(0), torch.ones(4), atol=1e-5)
    assert not torch.allclose(split["test"].mean(0), torch.zeros(4), atol=1e-3)  # (not its own statistics)
    mean, std = (torch.tensor(v) for v in data.info.normalization)
    restored = split["test"] * std + mean  # (the raw measurements, from the recorded normalization)
    everything = raw.train.tensors[0]
    assert all(any(torch.allclose(row, r, atol=1e-5) for r in everything) for row in restored)
    # (a train split of one flower has no spread: its std was nan, and so every scaled value)
    from torch.utils.data import TensorDataset

    from dlbench.data.tabular import standardized

    one, empty = TensorDataset(everything[:1], torch.zeros(1)), TensorDataset(everything[:0], torch.zeros(0))
    (train, _, test), facts = standardized(one, None, empty)
    assert not torch.isnan(train.tensors[0]).any() and len(test) == 0
    assert not any(map(math.isnan, facts["normalization"][1]))


def test_iris_classes_given_twice_are_refused():
    """[0, 0] trained one class under two names (accuracy 0, exit 0)."""
    for classes in ([0, 0], [2, 1, 2]):
        with pytest.raises(DlbenchError, match=rf"dataset.classes=.*: class {classes[0]} is given twice"):
            iris(classes=classes)


@pytest.mark.parametrize("read", [csv_table, csv_series])
@pytest.mark.parametrize("damage", ["a huge field", "a quote left open"])
def test_a_csv_field_over_the_csv_limit_is_one_message_naming_its_line(tmp_path, read, damage):
    """A field over 128 KiB (csv's limit) was '_csv.Error: field larger than field limit'."""
    table = tmp_path / "table.csv"
    rows = "".join(f"{i},{i % 2}\n" for i in range(6))
    broken = "1" * 200_000 + ",0\n" if damage == "a huge field" else '"7,1\n' + "8,0\n" * 40_000
    table.write_text("x,y\n" + rows + broken)
    with pytest.raises(DlbenchError, match=rf"{table} line 8 cannot be read as CSV \(field larger than"):
        read(path=str(table))


def test_tensor_loader_shuffles_by_seed_and_epoch():
    data = torch.utils.data.TensorDataset(torch.arange(10).float(), torch.arange(10))
    loader = TensorLoader(data, batch_size=4, sampler=EpochSampler(data, seed=3, epoch=0))
    assert len(loader) == 3
    order0 = torch.cat([b[1] for b in loader])
    assert sorted(order0.tolist()) == list(range(10))
    loader.sampler.set_epoch(1)
    order1 = torch.cat([b[1] for b in loader])
    assert not torch.equal(order0, order1)
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat([b[1] for b in loader]), order0)
    # resuming after one batch of the epoch: the remaining batches, in the same order
    resumed = TensorLoader(data, batch_size=4, sampler=EpochSampler(data, seed=3, epoch=0, skip=4))
    assert len(resumed) == 2 and torch.equal(torch.cat([b[1] for b in resumed]), order0[4:])
    # gathered some batches at a time (CHUNK), then sliced: each batch holds the samples its
    # indices name, whatever the chunk
    for chunk in (1, 2, 32):
        loader = TensorLoader(data, batch_size=4, sampler=EpochSampler(data, seed=5, epoch=2))
        loader.CHUNK = chunk
        order = loader.sampler.order()
        for i, (x, y) in enumerate(loader):
            picked = order[4 * i : 4 * i + 4]
            assert torch.equal(y, picked) and torch.equal(x, picked.float())
    # the loader takes the order as one tensor: the same permutation the sampler iterates
    for seed, epoch, skip in ((3, 0, 0), (777, 5, 4), (1, 9, 9)):
        sampler = EpochSampler(data, seed=seed, epoch=epoch, skip=skip)
        assert sampler.order().tolist() == list(sampler)


def test_the_in_memory_training_loader_is_reused_and_gives_each_epochs_own_batches():
    """DataModule.train_tensors: one loader for every epoch, moved to each (seed, epoch, skip);
    its batches are those a loader made for that epoch alone gives."""
    from dlbench import compose
    from dlbench.build import build_data

    data = build_data(compose.compose_config(["experiment=iris_mlp", "trainer.progress=none"]))
    dataset, size = data.splits["train"], data.batch_size("train")
    first = data.loader("train", epoch=0, seed=1)
    for seed, epoch, skip in ((1, 0, 0), (1, 7, 0), (2, 7, 1), (1, 3, 2), (1, 0, 0)):
        loader = data.loader("train", epoch=epoch, seed=seed, skip=skip)
        alone = TensorLoader(dataset, size, EpochSampler(dataset, seed, epoch, skip * size))
        assert loader is first and len(loader) == len(alone) == 3 - skip
        for reused, made in zip(loader, alone, strict=True):
            assert all(torch.equal(a, b) for a, b in zip(reused, made, strict=True)), (seed, epoch, skip)


def test_shuffle_once_keeps_one_order_every_epoch_and_each_epochs_augmentations():
    """Seed 002's name2lang shuffles its names once (random.shuffle) and takes them in that order
    every epoch: dataset.shuffle=once, in memory and through a DataLoader; an augmentation is
    still drawn anew each epoch."""
    from dlbench import compose
    from dlbench.build import build_data

    def epochs(*overrides):
        data = build_data(compose.compose_config(["trainer.progress=none", *overrides]))
        batches = [list(data.loader("train", epoch=e, seed=1)) for e in (0, 1, 4)]  # (one loader, reused)
        return [[torch.cat(parts) for parts in zip(*epoch, strict=True)] for epoch in batches]

    for kept in (["dataset.augment.noise_std=0.1"], ["dataset.in_memory=false"]):
        (x0, y0), (x1, y1), (_, y4) = epochs("dataset.shuffle=once", *kept)
        assert torch.equal(y0, y1) and torch.equal(y0, y4), kept
        assert not torch.equal(x0, x1) if kept[0].startswith("dataset.augment") else torch.equal(x0, x1)
        (_, y0), (_, y1), _ = epochs(*kept)
        assert not torch.equal(y0, y1), kept  # (the default: a new order every epoch)


def test_an_empty_csv_with_a_header_is_one_message(tmp_path):
    """dataset.header=true on an empty file read its first row: an IndexError ('unexpected error')."""
    (tmp_path / "e.csv").write_text("\n\n")
    for header in (True, None):
        with pytest.raises(DlbenchError, match=r"csv: .*e\.csv has no rows"):
            csv_table(path=str(tmp_path / "e.csv"), header=header)


def test_a_csv_target_of_numbers_with_one_that_is_not_finite_is_named(tmp_path):
    """A column of numbers with a nan became a classification of 4 classes ('nan' one of them)."""
    (tmp_path / "n.csv").write_text("a,b,y\n1,2,nan\n2,3,1.5\n3,4,0.5\n4,5,0.1\n")
    for target_type in ("auto", "value"):
        with pytest.raises(DlbenchError, match=r"n\.csv line 2, target y: 'nan' is not a finite number"):
            csv_table(path=str(tmp_path / "n.csv"), target_type=target_type)
    (tmp_path / "t.csv").write_text("a,y\n1,cat\n2,nan\n3,dog\n")  # (text: classes, nan one of them)
    assert csv_table(path=str(tmp_path / "t.csv")).num_classes == 3


def test_a_csv_target_with_an_empty_or_text_cell_among_numbers_is_named(tmp_path):
    """A helper's: one empty target, or an NA, among values to regress made every value a class
    (exit 0, test/acc 0); an empty class name became a class. Whole numbers with a word among them
    stay classes (as dataset.target_type=class reads any column), and a column of text too."""
    rows = "".join(f"{i},{i * 0.5 + 0.25}\n" for i in range(8))
    for cell, said in (("", "line 10, target y: the cell is empty"), ("NA", "line 10, target y: 'NA' is")):
        (tmp_path / "m.csv").write_text(f"a,y\n{rows}9,{cell}\n")
        with pytest.raises(DlbenchError, match=said):
            csv_table(path=str(tmp_path / "m.csv"))
    (tmp_path / "c.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,other\n")  # (whole numbers and a word: classes)
    assert csv_table(path=str(tmp_path / "c.csv"), target_type="class").num_classes == 3
    assert csv_table(path=str(tmp_path / "c.csv")).num_classes == 3
    with pytest.raises(DlbenchError, match="line 5, target y: 'other' is not a number"):
        csv_table(path=str(tmp_path / "c.csv"), target_type="value")
    (tmp_path / "t.csv").write_text("a,y\n1,cat\n2,3\n3,dog\n")  # (text, one number among it: classes)
    assert csv_table(path=str(tmp_path / "t.csv")).num_classes == 3


def test_a_csv_from_excel_with_blank_lines_and_labels_written_two_ways_reads_as_it_looks(tmp_path):
    """A helper's: Excel's "CSV UTF-8" starts with a byte-order mark, which became part of the
    first column's name (`Did you mean: \\ufeffkind?`, which no one can type); a line after blank
    lines was named by its place among the rows, not the file's; 0 and 0.0 were two classes."""
    (tmp_path / "x.csv").write_bytes(b"\xef\xbb\xbfkind,f1\r\na,1\r\nb,2\r\na,1.5\r\n")
    assert csv_table(path=str(tmp_path / "x.csv"), target="kind").class_names == ["a", "b"]
    (tmp_path / "b.csv").write_text("f1,kind\n1,a\n\n\n2,b\nx,a\n")
    with pytest.raises(DlbenchError, match=r"b\.csv line 6, column f1: 'x'"):
        csv_table(path=str(tmp_path / "b.csv"))
    (tmp_path / "w.csv").write_text("f1,kind\n1,0\n2,0.0\n3,1\n4,1.0\n5,1e0\n")
    assert csv_table(path=str(tmp_path / "w.csv")).class_names == ["0", "1"]
    (tmp_path / "s.csv").write_text("a\n1\n\n2\nx\n")  # (a series: its lines as the file's)
    with pytest.raises(DlbenchError, match=r"s\.csv line 3, column a: not a number"):
        csv_series(path=str(tmp_path / "s.csv"), column="a", window=1)


def test_csv_class_numbers_past_a_floats_precision_stay_apart(tmp_path):
    """A review: 0 and 0.0 were made one class through float(), which also made 2**53 and
    2**53 + 1 one class (an id column's)."""
    (tmp_path / "ids.csv").write_text("f,id\n1,9007199254740992\n2,9007199254740993\n3,9007199254740992\n")
    assert csv_table(path=str(tmp_path / "ids.csv")).class_names == ["9007199254740992", "9007199254740993"]
