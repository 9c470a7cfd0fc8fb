"""Text data: names by language (char-RNN) and sentence pairs (seq2seq), as padded token ids.

Token id 0 is padding in every text set, so a model finds each sequence's length from its
ids alone. The names and eng-fra files come from the PyTorch tutorials' archive, downloaded
into `root` on first use or read there (`download=false`).
"""

from __future__ import annotations

import random
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from dlbench.data.base import DataSource, check_count
from dlbench.data.download import extract, fetch
from dlbench.data.folders import check_distinct, describe
from dlbench.errors import DlbenchError
from dlbench.registry import DATASETS

TUTORIAL_DATA = "https://download.pytorch.org/tutorial/data.zip"  # data/names/*.txt, data/eng-fra.txt
LETTERS = string.ascii_letters + " .,;'"  # the seed's 57 characters
PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = [PAD, SOS, EOS, UNK]  # the first ids of every sentence-pair vocabulary
PAD_ID, SOS_ID, EOS_ID, UNK_ID = range(len(SPECIALS))
# The translation tutorial's filter: English sides that start like this.
ENGLISH_PREFIXES = [
    "i am ", "i m ", "he is", "he s ", "she is", "she s ",
    "you are", "you re ", "we are", "we re ", "they are", "they re ",
]  # fmt: skip


def to_ascii(text: str, letters: str = LETTERS) -> str:
    """Fold accents away and keep only `letters` (seed 002: 'Ślusàrski' -> 'Slusarski')."""
    return "".join(
        c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn" and c in letters
    )


def pad(sequences: list[list[int]], length: int | None = None) -> torch.Tensor:
    """Token id lists -> one (N, length) tensor, padded with 0."""
    length = length or max((len(s) for s in sequences), default=1)
    out = torch.zeros(len(sequences), max(length, 1), dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.tensor(seq[:length], dtype=torch.long)
    return out


def encode_names(names: list[str], length: int | None = None) -> torch.Tensor:
    """Names -> letter ids (1..57; 0 pads)."""
    return pad([[LETTERS.index(c) + 1 for c in to_ascii(n)] for n in names], length)


def find(root: str, name: str, download: bool, url: str, fits: Callable[[Path], bool], expected: str) -> Path:
    """The tutorial data `name` (a file or folder) where `fits` says it is: root/name,
    root/data/name (the archive's top folder is data/) or root itself; downloaded if asked."""
    base = Path(root).expanduser()
    below = [name, f"data/{name}", ""]

    def look() -> Path | None:
        for candidate in (base / b if b else base for b in below):
            if candidate.exists() and fits(candidate):
                return candidate
        return None

    found = look()
    archive = base / url.rstrip("/").rsplit("/", 1)[-1]  # (the file a download writes)
    if found is None and not download and archive.is_file():  # the archive, kept offline
        extract(archive, base)
        found = look()
    if found is None and download:
        fetch(url, base)
        found = look()
    if found is None:
        raise DlbenchError(
            f"{name} not found: {describe(base)}; expected {expected} in {base}, {base / name} or "
            f"{base / 'data' / name}. Use dataset.download=true to fetch {url}, or point dataset.root "
            f"at the folder that holds {name}."
        )
    return found


def _language_files(folder: Path) -> bool:
    return folder.is_dir() and bool(language_files(folder))


def language_files(folder: Path) -> list[Path]:
    """The folder's <Language>.txt files, sorted; hidden ones (macOS's `._English.txt`) are no
    language."""
    return sorted(p for p in folder.glob("*.txt") if not p.name.startswith("."))


MAX_NAME = 100  # letters: a line of 200,000 made every name as long (N x 200,000 ids in memory)


@DATASETS.register("names")
def names(root: str = "data", download: bool = True, url: str = TUTORIAL_DATA) -> DataSource:
    """Surnames in 18 languages (the char-RNN tutorial's names/<Language>.txt), folded to ASCII
    over the seed's 57 letters; the class is the file name. root is the folder of the .txt
    files, or a folder above it (names/, data/names/)."""
    folder = find(root, "names", download, url, _language_files, "<Language>.txt files")
    files = check_distinct(language_files(folder), "names")
    texts, labels = [], []
    for label, file in enumerate(files):
        if not file.is_file():  # (a FIFO was waited on for ever, a stop signal with it)
            raise DlbenchError(f"names: {file} is not a file (a folder, a FIFO, a device)")
        try:
            lines = file.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as err:
            raise DlbenchError(f"names: {file} is not UTF-8 text ({err})") from err
        for number, line in enumerate(lines, 1):
            if len(to_ascii(line.strip())) > MAX_NAME:  # (every name is padded to the longest one)
                raise DlbenchError(
                    f"names: {file} line {number} is {len(line.strip()):,} characters long: a name has at "
                    f"most {MAX_NAME} letters"
                )
            if to_ascii(line.strip()):
                texts.append(line.strip())
                labels.append(label)
    for label, file in enumerate(files):
        if label not in labels:
            raise DlbenchError(
                f"names: {file} has no name left after keeping the seed's 57 letters (empty, or written "
                "in another alphabet): remove it, or add names to it"
            )
    if len(files) < 2:
        raise DlbenchError(f"names: {folder} needs names in at least two languages (only {files[0].name})")
    return DataSource(
        train=TensorDataset(encode_names(texts), torch.tensor(labels)),
        num_classes=len(files),
        class_names=[f.stem for f in files],
        meta={"vocab_size": len(LETTERS) + 1, "vocab": {"input": [PAD, *LETTERS]}},
    )


# ---- sentence pairs (seq2seq) --------------------------------------------------------------
def normalize_sentence(text: str) -> str:
    """The translation tutorial's normalisation: ASCII, lower case, punctuation split off,
    everything but letters and .!? removed."""
    text = to_ascii(text.lower().strip(), string.ascii_letters + string.punctuation + " ")
    text = re.sub(r"([.!?])", r" \1", text)
    return re.sub(r"[^a-zA-Z.!?]+", " ", text).strip()


def tokenize(text: str, tokens: str) -> list[str]:
    return list(text) if tokens == "char" else text.split()


class Pairs(Dataset):
    """(source text, target text) pairs, before a vocabulary turns them into ids."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str]:
        return self.pairs[i]


def pairs_encoder(tokens: str, min_count: int):
    """encode(train, val, test): vocabularies from the train split only, then every split as
    (source ids, target ids + <eos>) tensors. Unknown tokens become <unk>."""

    def vocabulary(texts) -> list[str]:
        counts = Counter(t for text in texts for t in tokenize(text, tokens))
        return SPECIALS + sorted(t for t, c in counts.items() if c >= min_count)

    def encode(train, val, test):
        rows = [train[i] for i in range(len(train))]
        source, target = vocabulary(r[0] for r in rows), vocabulary(r[1] for r in rows)
        index = [{t: i for i, t in enumerate(v)} for v in (source, target)]

        def ids(text: str, side: int) -> list[int]:
            return [index[side].get(t, UNK_ID) for t in tokenize(text, tokens)]

        def tensors(split):
            if split is None:
                return None
            rows = [split[i] for i in range(len(split))]
            return TensorDataset(
                pad([ids(s, 0) for s, _ in rows]), pad([[*ids(t, 1), EOS_ID] for _, t in rows])
            )

        meta = {
            "tokens": tokens,
            "vocab_size": len(source),
            "target_vocab_size": len(target),
            "vocab": {"source": source, "target": target},
        }
        return (tensors(train), tensors(val), tensors(test)), meta

    return encode


def _pairs_source(pairs: list[tuple[str, str]], tokens: str, min_count: int, where: str) -> DataSource:
    if len(pairs) < 3:
        raise DlbenchError(f"{where}: only {len(pairs)} sentence pairs left after filtering")
    return DataSource(train=Pairs(pairs), encode=pairs_encoder(tokens, min_count))


@DATASETS.register("translation_pairs")
def translation_pairs(
    root: str = "data",
    file: str = "eng-fra.txt",  # root/<file> or root/data/<file> (or give the file itself as root)
    download: bool = True,
    url: str = TUTORIAL_DATA,
    reverse: bool = True,  # translate the second column (French) into the first (English)
    max_length: int = 10,  # keep pairs with fewer words than this on both sides
    prefixes: list[str] | None = tuple(ENGLISH_PREFIXES),
    min_count: int = 1,  # rarer words become <unk>
) -> DataSource:
    """Tab-separated sentence pairs (the translation tutorial's eng-fra.txt), normalised and
    filtered as the tutorial does: fewer than max_length words, English side starting with one
    of `prefixes` (null: keep all); reverse=true translates the second column into the first."""
    path = find(root, file, download, url, Path.is_file, f"the file {file}")
    try:
        lines = path.read_text(encoding="utf-8").strip().split("\n")
    except UnicodeDecodeError as err:
        raise DlbenchError(f"translation_pairs: {path} is not UTF-8 text ({err})") from err
    pairs = []
    for number, line in enumerate(lines, 1):
        columns = line.split("\t")
        if len(columns) < 2:
            raise DlbenchError(f"translation_pairs: {path} line {number} has no tab: {line[:60]!r}")
        english, other = normalize_sentence(columns[0]), normalize_sentence(columns[1])
        if prefixes is not None and not english.startswith(tuple(prefixes)):
            continue
        if len(english.split()) < max_length and len(other.split()) < max_length:
            pairs.append((other, english) if reverse else (english, other))
    return _pairs_source(pairs, "word", min_count, "translation_pairs")


@DATASETS.register("reverse_sequences")
def reverse_sequences(
    n_pairs: int = 6000,
    min_length: int = 4,
    max_length: int = 24,
    alphabet: str = "abcdefghijklmnopqrstuvwxyz",
    seed: int = 0,
) -> DataSource:
    """Generated: random letter strings and their reversal, a task a seq2seq model without
    attention solves on short inputs and fails on long ones (the first output depends on the
    last input). Character tokens."""
    if not 1 <= min_length <= max_length:
        raise DlbenchError(f"dataset.min_length={min_length}, max_length={max_length}: need 1 <= min <= max")
    check_count("n_pairs", n_pairs)  # (it blamed the filtering, of which there is none)
    if not alphabet:  # (random.choice's IndexError, exit 1)
        raise DlbenchError("dataset.alphabet is empty: give the letters the strings are made of")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n_pairs):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(min_length, max_length)))
        pairs.append((text, text[::-1]))
    return _pairs_source(pairs, "char", 1, "reverse_sequences")


def encode_source(text: str, info) -> list[int]:
    """A sentence typed by a user, prepared like the run's source side (for `dlbench predict`);
    `info` is the run's DataInfo."""
    vocab = {t: i for i, t in enumerate(info.vocab["source"])}
    if info.name == "translation_pairs":
        return [vocab.get(t, UNK_ID) for t in normalize_sentence(text).split()]
    return [vocab.get(t, UNK_ID) for t in text]
