"""Sequences: names (char-RNN), sentence pairs (seq2seq) and time series, on tiny real files."""

import csv
import shutil

import pytest
import torch
from conftest import read_metrics
from formats import NAMES, write_names, write_pairs, zip_folder
from omegaconf import OmegaConf

from dlbench.build import build_data, build_task
from dlbench.compose import compose_config
from dlbench.data.text import LETTERS, encode_names, normalize_sentence, to_ascii
from dlbench.engine import checkpoint
from dlbench.errors import DlbenchError
from dlbench.training import train

QUIET = ["trainer.progress=none", "device=cpu", "logger=none"]


def compose(*overrides):
    return compose_config([*QUIET, *overrides])


# ---- names ---------------------------------------------------------------------------------
def test_names_fold_to_the_seeds_57_letters(tmp_path):
    assert len(LETTERS) == 57
    assert to_ascii("Ślusàrski") == "Slusarski"
    ids = encode_names(["Choi", "Al-Amin"])
    assert ids[0, :4].tolist() == [LETTERS.index(c) + 1 for c in "Choi"] and ids[0, 4:].eq(0).all()
    assert ids[1].gt(0).sum() == 6  # the hyphen is not one of the 57 letters


def test_names_dataset_classes_splits_and_vocabulary(tmp_path):
    write_names(tmp_path)
    cfg = compose("dataset=names", f"dataset.root={tmp_path}", "dataset.download=false", "model=rnn")
    data = build_data(cfg)
    assert data.info.class_names == sorted(NAMES)  # the file names
    assert data.info.vocab_size == 58  # 57 letters and padding
    sizes = {s: data.size(s) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == sum(len(v) for v in NAMES.values()) and min(sizes.values()) >= 2
    labels = torch.cat([b[1] for b in data.loader("test")])
    assert len(set(labels.tolist())) == 3  # stratified: every language in the test split


def test_names_download_from_a_local_server(tmp_path, http_server):
    served, url = http_server
    write_names(tmp_path / "src")
    zip_folder(tmp_path / "src" / "names", served / "data.zip", "data")
    root = tmp_path / "root"
    cfg = compose("dataset=names", f"dataset.root={root}", f"dataset.url={url}/data.zip", "model=rnn")
    build_data(cfg)
    assert (root / "data" / "names" / "Korean.txt").is_file()
    # offline: the message's advice, followed (the archive put in place was not unpacked)
    offline, unreachable = tmp_path / "offline", "dataset.url=http://127.0.0.1:9/data.zip"
    with pytest.raises(DlbenchError, match=f"put it in {offline} as data.zip") as refused:
        build_data(compose("dataset=names", f"dataset.root={offline}", unreachable, "model=rnn"))
    assert "run again with dataset.download=false" in str(refused.value)
    offline.mkdir()
    shutil.copy(served / "data.zip", offline / "data.zip")
    offline_cfg = [f"dataset.root={offline}", unreachable, "dataset.download=false"]
    cfg = compose("dataset=names", *offline_cfg, "model=rnn")
    assert build_data(cfg).size("train") > 0 and (offline / "data" / "names" / "Korean.txt").is_file()


def test_missing_names_folder_is_one_message(tmp_path):
    cfg = compose("dataset=names", f"dataset.root={tmp_path}", "dataset.download=false", "model=rnn")
    with pytest.raises(DlbenchError, match="names not found: .* is empty; expected <Language>.txt files"):
        build_data(cfg)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_rnn_cells_bidirectional_and_embedding(tmp_path, cell):
    write_names(tmp_path)
    extra = ["model.bidirectional=true", "model.input=embedding"] if cell == "gru" else []
    cfg = compose("dataset=names", f"dataset.root={tmp_path}", "dataset.download=false", "model=rnn",
                  f"model.cell={cell}", "model.num_layers=2", "model.dropout=0.1", *extra)  # fmt: skip
    data = build_data(cfg)
    task = build_task(cfg, data.info)
    x, y = next(iter(data.loader("train")))
    out = task.model(x)
    assert out.shape == (len(x), 3)
    # padding changes nothing: the same names padded to twice the width give the same logits
    wide = torch.cat([x, torch.zeros_like(x)], dim=1)
    task.eval()
    torch.testing.assert_close(task.model(wide), task.model(x))


def test_name2lang_trains_and_predicts_from_the_command_line(cli, tmp_path):
    write_names(tmp_path / "data")
    common = ["dataset.root=data", "dataset.download=false", "trainer.epochs=30", "trainer.progress=none"]
    # one name per step as the notes train, a larger step: 26 names learnt in 30 epochs
    result = cli("experiment=name2lang_gru", *common, "optimizer.lr=0.1", "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_metrics(tmp_path / "run")["val/acc"] > 0.9  # validated on the training names
    result = cli("predict", "run", "Choi", "Smith", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "Choi" in line or "Smith" in line]
    assert "Korean" in rows[0].split("│")[2] and "English" in rows[1].split("│")[2]
    assert "%" in rows[0]
    said = cli("predict", "run", "Ch3oi", "Ślusàrski")  # (the digit was left out, unsaid; accents fold)
    assert said.returncode == 0 and "note: 'Ch3oi' is read as 'Choi': the model reads no '3'" in said.stderr
    assert "Ślusàrski" not in said.stderr
    for unread in ("", "   ", "日本"):  # (all padding: it answered "Korean (34.8%)")
        result = cli("predict", "run", "Choi", unread)
        assert result.returncode == 2 and f"{unread!r} has no letter the model reads" in result.stderr


# ---- sentence pairs --------------------------------------------------------------------------
def test_translation_pairs_normalise_filter_and_reverse(tmp_path):
    write_pairs(tmp_path / "eng-fra.txt")
    assert normalize_sentence("Je suis fatigué!") == "je suis fatigue !"
    cfg = compose("dataset=translation_pairs", f"dataset.root={tmp_path}", "dataset.download=false",
                  "model=seq2seq", "dataset.val_fraction=0", "dataset.test_fraction=0.3")  # fmt: skip
    data = build_data(cfg)
    assert data.size("train") + data.size("test") == 7  # "Go!" (no prefix) and the long one dropped
    vocab = OmegaConf.create(data.info.vocab)
    assert vocab.source[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    source, target = next(iter(data.loader("train")))
    assert target[0][target[0] != 0][-1] == 2  # every target ends with <eos>
    # vocabularies come from the train split only: a test-only word is <unk> (id 3)
    train_words = {vocab.source[i] for x in data.loader("train") for i in x[0].flatten().tolist()}
    test_ids = torch.cat([b[0].flatten() for b in data.loader("test")])
    assert set(vocab.source) == train_words | {"<sos>", "<eos>", "<unk>", "<pad>"}
    assert (test_ids == 3).any()
    assert "froid" in vocab.source or "froid" not in train_words  # French is the source (reverse)


def test_bad_pairs_file_is_one_message(tmp_path):
    (tmp_path / "eng-fra.txt").write_text("no tab on this line\n")
    cfg = compose(
        "dataset=translation_pairs", f"dataset.root={tmp_path}", "dataset.download=false", "model=seq2seq"
    )
    with pytest.raises(DlbenchError, match="line 1 has no tab"):
        build_data(cfg)


def _seq2seq_task(*overrides):
    cfg = compose("experiment=seq2seq", "dataset.n_pairs=200", "dataset.min_length=2", "dataset.max_length=4",
                  "dataset.alphabet=abcd", *overrides)  # fmt: skip
    data = build_data(cfg)
    return cfg, data, build_task(cfg, data.info)


class Spell(torch.nn.Module):
    """A stand-in model that outputs given token ids as one-hot logits."""

    def __init__(self, ids: torch.Tensor, vocab: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(ids, vocab).float() * 10

    def forward(self, source, target=None, teacher_forcing=0.0):
        return self.logits[:, : target.shape[1]], None


def test_seq2seq_metrics_token_accuracy_exact_match_and_bleu():
    cfg, data, task = _seq2seq_task()
    source, target = next(iter(data.loader("test")))
    width = int((target != 0).sum(1).max())
    target = target[:, :width]
    vocab = data.info.target_vocab_size
    task.model = Spell(target, vocab)
    task.evaluation_step((source, target), "test")
    metrics = task.compute_metrics("test")
    assert metrics == {"token_acc": 1.0, "exact_match": 1.0, "bleu": pytest.approx(1.0)}
    wrong = target.clone()
    wrong[0, 0] = 4 if target[0, 0] != 4 else 5  # one token of one sequence wrong
    task.model = Spell(wrong, vocab)
    task.evaluation_step((source, target), "test")
    metrics = task.compute_metrics("test")
    real = int((target != 0).sum())
    assert metrics["token_acc"] == pytest.approx(1 - 1 / real)
    assert metrics["exact_match"] == pytest.approx(1 - 1 / len(target))
    assert metrics["bleu"] < 1


@pytest.mark.parametrize("attention", ["none", "additive", "multiplicative", "dot"])
def test_seq2seq_learns_a_small_batch(attention):
    torch.manual_seed(0)
    cfg, data, task = _seq2seq_task(f"model.attention={attention}", "model.dropout=0", "model.cell=lstm")
    source, target = next(iter(data.loader("train")))
    source, target = source[:8], target[:8]
    task.teacher_forcing = 1.0
    optimizer = torch.optim.Adam(task.parameters(), lr=0.01)

    def optimize(name, loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(150):
        task.training_step((source, target), optimize)
    task.eval()
    with torch.no_grad():
        task.evaluation_step((source, target), "val")
    assert task.compute_metrics("val")["exact_match"] == 1.0  # greedy decoding, no teacher
    figures = task.figures("val")
    assert ("val/attention" in figures) == (attention != "none")


def test_seq2seq_attention_trains_and_translates_from_the_command_line(cli, tmp_path):
    args = [
        "experiment=seq2seq_attention",
        "dataset.n_pairs=300",
        "trainer.epochs=1",
        "trainer.progress=none",
    ]
    result = cli(*args, "hydra.run.dir=run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"test/bleu", "test/exact_match", "test/token_acc"} <= set(read_metrics(tmp_path / "run"))
    assert "Test examples (greedy decoding)" in result.stdout
    assert list((tmp_path / "run" / "tb").glob("events.*"))
    state = checkpoint.load(tmp_path / "run")
    assert "source" in state["data"]["vocab"]  # the vocabulary travels with the weights
    result = cli("predict", "run", "abcdef", "xyz")
    assert result.returncode == 0, result.stderr
    assert "abcdef" in result.stdout and "output" in result.stdout
    unknown = cli("predict", "run", "ÉÉÉ")  # (every character unknown: it was translated, exit 0)
    assert unknown.returncode == 2 and "predict: 'ÉÉÉ' has no token this run knows" in unknown.stderr


# ---- time series -----------------------------------------------------------------------------
def test_sine_windows_and_a_held_out_tail():
    cfg = compose("experiment=rnn_timeseries", "dataset.length=200", "dataset.window=10", "dataset.noise=0")
    data = build_data(cfg)
    assert data.info.input_shape == [10, 1]
    test_y = torch.cat([b[1] for b in data.loader("test")]).flatten()
    t = torch.arange(200 - len(test_y), 200, dtype=torch.float64)
    torch.testing.assert_close(test_y, torch.sin(2 * torch.pi * t / 50).float())  # the end of the series
    x, y = next(iter(data.loader("test")))
    torch.testing.assert_close(x[1:, -1, 0], y[:-1, 0])  # each window's last value is the previous target


def write_series(path, values, header=("day", "price")):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, v in enumerate(values):
            writer.writerow([i, v])
    return path


def test_csv_series_scales_with_the_train_part_and_reports_in_its_units(tmp_path):
    values = [1000.0 + 10 * ((i * 7) % 13) + i for i in range(120)]
    path = write_series(tmp_path / "prices.csv", values)
    cfg = compose("experiment=lstm_timeseries", "dataset=csv_series", f"dataset.path={path}",
                  "dataset.column=price", "dataset.window=5", "trainer.epochs=2")  # fmt: skip
    metrics = train(cfg, tmp_path / "run")
    # 115 windows: the last 23 are test, the 9 before them val, so train sees values[:83 + 5]
    train_part = torch.tensor(values[:88])
    assert checkpoint.load(tmp_path / "run")["data"]["scale"] == pytest.approx(
        [float(train_part.mean()), float(train_part.std())], rel=1e-5
    )
    assert metrics["test/mae"] > 1  # in prices, not in standardised units


def test_csv_series_errors_are_one_message(tmp_path):
    path = write_series(tmp_path / "s.csv", ["1", "2", "x", "4"] * 10)
    cfg = compose(
        "experiment=rnn_timeseries", "dataset=csv_series", f"dataset.path={path}", "dataset.column=price"
    )
    with pytest.raises(DlbenchError, match="line 4, column price: not a number"):
        build_data(cfg)
    cfg = compose(
        "experiment=rnn_timeseries", "dataset=csv_series", f"dataset.path={path}", "dataset.column=cost"
    )
    with pytest.raises(DlbenchError, match="no column 'cost'"):
        build_data(cfg)
    cfg = compose(
        "experiment=rnn_timeseries", "dataset=csv_series", f"dataset.path={path}", "dataset.column=-5"
    )
    with pytest.raises(DlbenchError, match="dataset.column=-5: a column's index counts from 0"):
        build_data(cfg)  # (it was an IndexError)


def test_forecast_resume_equals_the_uninterrupted_run(tmp_path, caplog):
    common = ["experiment=lstm_timeseries", "dataset.length=300"]
    full = train(compose(*common, "trainer.epochs=4"), tmp_path / "full")
    train(compose(*common, "trainer.epochs=2"), tmp_path / "part")
    part = train(compose(*common, "trainer.epochs=4", f"resume={tmp_path / 'part'}"), tmp_path / "part")
    assert "resumed at epoch 2" in caplog.text
    for key, value in full.items():
        if not key.startswith("time/"):
            assert part[key] == pytest.approx(value, rel=1e-6), key
