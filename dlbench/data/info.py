"""What a data set knows about itself: one typed object, handed to the model and task builders
and saved in every checkpoint (so a run can be rebuilt without its data).

A model asks for a fact by naming it as a parameter: `def tiny_net(input_shape, num_outputs,
width=16)` gets the data's input shape and the number of outputs its task needs. A config that
sets such a parameter (`model.num_outputs=1000`) wins over the data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class DataInfo:
    name: str  # the data set's registered name
    input_shape: list[int]  # one input, without the batch dimension
    num_outputs: int  # values the model's last layer gives: classes, 1 (binary), targets, tokens
    num_classes: int | None = None  # classes of the labels (None: regression, generation)
    class_names: list[str] | None = None
    normalization: list[list[float]] | None = None  # [mean, std] per channel of image inputs
    vocab_size: int | None = None  # token inputs: ids 1..vocab_size-1, 0 pads
    target_vocab_size: int | None = None  # token outputs (seq2seq)
    vocab: dict[str, list[str]] | None = None  # the tokens of each side, by id
    tokens: str | None = None  # how text was split: word | char
    scale: list[float] | None = None  # [mean, std] a series was scaled with (train split only)
    truth: dict[str, Any] | None = None  # the parameters synthetic data was made with

    def to_dict(self) -> dict[str, Any]:
        """Plain values only, so a checkpoint holding it loads with weights_only=True."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
