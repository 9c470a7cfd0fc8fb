"""Encoder-decoder (seq2seq) with GRU or LSTM, optionally with attention (seed 000).

The encoder reads the source ids; the decoder starts from its final state and emits one
target token per step, fed its own previous prediction (or, with teacher forcing, the true
previous token). With attention, each step looks back over every encoder output: the
previous decoder state scores each source position (additive: Bahdanau; multiplicative:
Luong's "general"; dot: a plain dot product), the softmax of the scores weights the encoder
outputs into a context vector that is fed to the decoder and to the output layer.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dlbench.data.text import PAD_ID, SOS_ID
from dlbench.registry import MODELS

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class Attention(nn.Module):
    def __init__(self, kind: str, hidden: int):
        super().__init__()
        self.kind = kind
        if kind == "additive":
            self.query = nn.Linear(hidden, hidden, bias=False)
            self.key = nn.Linear(hidden, hidden)
            self.score = nn.Linear(hidden, 1, bias=False)
        elif kind == "multiplicative":
            self.weight = nn.Linear(hidden, hidden, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor):
        """query (B, H), keys (B, S, H), mask (B, S) true on real tokens -> context, weights."""
        if self.kind == "additive":
            scores = self.score(torch.tanh(self.query(query)[:, None] + self.key(keys))).squeeze(-1)
        else:
            q = self.weight(query) if self.kind == "multiplicative" else query
            scores = (keys @ q[:, :, None]).squeeze(-1)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return (weights[:, None] @ keys).squeeze(1), weights


class Seq2Seq(nn.Module):
    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        cell: str,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        attention: str,
        max_length: int,
    ):
        super().__init__()
        rnn = CELLS[cell]
        layer_dropout = dropout if num_layers > 1 else 0.0
        self.max_length = max_length
        self.source_embedding = nn.Embedding(source_vocab, embedding_dim, padding_idx=PAD_ID)
        self.target_embedding = nn.Embedding(target_vocab, embedding_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.encoder = rnn(embedding_dim, hidden_size, num_layers, batch_first=True, dropout=layer_dropout)
        self.attention = Attention(attention, hidden_size) if attention != "none" else None
        context = hidden_size if self.attention is not None else 0
        self.decoder = rnn(
            embedding_dim + context, hidden_size, num_layers, batch_first=True, dropout=layer_dropout
        )
        self.out = nn.Linear(hidden_size + context, target_vocab)

    def encode(self, source: torch.Tensor):
        lengths = (source != PAD_ID).sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(
            self.dropout(self.source_embedding(source)), lengths, batch_first=True, enforce_sorted=False
        )
        outputs, state = self.encoder(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=source.shape[1])
        return outputs, state

    def forward(
        self, source: torch.Tensor, target: torch.Tensor | None = None, teacher_forcing: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, target vocab) and attention weights (B, T, S) or None. T is the
        target's length when a target is given, else max_length (greedy decoding)."""
        keys, state = self.encode(source)
        mask = source != PAD_ID
        steps = target.shape[1] if target is not None else self.max_length
        token = torch.full((source.shape[0],), SOS_ID, dtype=torch.long, device=source.device)
        logits, maps = [], []
        for t in range(steps):
            inputs = self.dropout(self.target_embedding(token))[:, None]
            if self.attention is not None:
                query = (state[0] if isinstance(state, tuple) else state)[-1]
                context, weights = self.attention(query, keys, mask)
                inputs = torch.cat([inputs, context[:, None]], dim=-1)
                maps.append(weights)
            output, state = self.decoder(inputs, state)
            output = output[:, 0]
            if self.attention is not None:
                output = torch.cat([output, context], dim=-1)
            logit = self.out(output)
            logits.append(logit)
            forced = target is not None and teacher_forcing > 0 and float(torch.rand(())) < teacher_forcing
            token = target[:, t] if forced else logit.argmax(dim=-1)
        return torch.stack(logits, dim=1), torch.stack(maps, dim=1) if maps else None


@MODELS.register("seq2seq")
def seq2seq(
    vocab_size: int,
    target_vocab_size: int,
    cell: Literal["gru", "lstm"] = "gru",  # gru | lstm
    embedding_dim: int = 64,
    hidden_size: int = 128,
    num_layers: int = 1,
    dropout: float = 0.1,
    # none | additive (Bahdanau) | multiplicative (Luong) | dot
    attention: Literal["none", "additive", "multiplicative", "dot"] = "none",
    max_length: int = 30,  # longest output greedy decoding writes (dlbench predict)
) -> nn.Module:
    """GRU/LSTM encoder-decoder, greedy decoding; attention none|additive|multiplicative|dot.

    max_length: how many tokens greedy decoding emits when no target is given (`predict`).
    """
    return Seq2Seq(
        vocab_size,
        target_vocab_size,
        cell,
        embedding_dim,
        hidden_size,
        num_layers,
        dropout,
        attention,
        max_length,
    )
