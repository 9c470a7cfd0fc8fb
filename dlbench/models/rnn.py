"""Recurrent models over sequences: a classifier or regressor on the last hidden state."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dlbench.errors import DlbenchError
from dlbench.registry import MODELS

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceRNN(nn.Module):
    """Token ids (B, T; 0 pads) or values (B, T, F) -> RNN -> last hidden state -> Linear.

    Token inputs are one-hot vectors over the vocabulary (seed 002's 57 letters) or learned
    embeddings; padded batches are packed, so each sequence ends at its own last token.
    """

    def __init__(
        self,
        in_features: int,
        outputs: int,
        vocab_size: int | None,
        cell: str,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        bidirectional: bool,
        input: str,
        embedding_dim: int,
    ):
        super().__init__()
        self.vocab_size, self.input = vocab_size, input
        self.embedding = None
        if vocab_size is not None and input == "embedding":
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
            in_features = embedding_dim
        elif vocab_size is not None:
            in_features = vocab_size - 1  # one-hot without the padding id
        self.rnn = CELLS[cell](
            in_features,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
            batch_first=True,
        )
        self.fc = nn.Linear(hidden_size * (2 if bidirectional else 1), outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.vocab_size is None:  # real values: every sequence is full length
            _, hidden = self.rnn(x)
        else:
            lengths = (x != 0).sum(dim=1).clamp(min=1).cpu()
            if self.embedding is not None:
                inputs = self.embedding(x)
            else:
                inputs = F.one_hot(x, self.vocab_size)[..., 1:].float()
            _, hidden = self.rnn(
                pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
            )
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        last = torch.cat([hidden[-2], hidden[-1]], dim=1) if self.rnn.bidirectional else hidden[-1]
        return self.fc(last)


@MODELS.register("rnn")
def rnn(
    input_shape: list[int],
    num_outputs: int,
    vocab_size: int | None = None,
    cell: Literal["rnn", "lstm", "gru"] = "rnn",  # rnn | lstm | gru
    hidden_size: int = 128,
    num_layers: int = 1,
    dropout: float = 0.0,  # between stacked layers
    bidirectional: bool = False,
    input: Literal["onehot", "embedding"] = "onehot",  # onehot (the seed's) | embedding
    embedding_dim: int = 32,
) -> nn.Module:
    """RNN, LSTM or GRU over a sequence; a Linear layer on the last hidden state (seed 002's MyRNN).

    Token data (names): one-hot or embedded ids, packed by length. Real-valued data (time
    series windows of shape window x features): the values themselves.
    """
    if cell not in CELLS:
        raise DlbenchError(f"model.cell={cell}: choose one of {', '.join(CELLS)}")
    if vocab_size is None and len(input_shape) != 2:
        raise DlbenchError(
            f"model=rnn takes token sequences or (time, features) windows; this dataset's inputs "
            f"have shape {list(input_shape)}"
        )
    features = input_shape[-1] if vocab_size is None else 0
    return SequenceRNN(
        features,
        num_outputs,
        vocab_size,
        cell,
        hidden_size,
        num_layers,
        dropout,
        bidirectional,
        input,
        embedding_dim,
    )
