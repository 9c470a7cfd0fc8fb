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
        """The facts a checkpoint (or an exported model's spec) saved: data someone else may
        have written, so each is checked to be what a data set could know."""
        from dlbench.errors import DlbenchError

        fields = dataclasses.fields(cls)
        needed = [f.name for f in fields if f.default is dataclasses.MISSING]
        if not isinstance(values, dict) or not set(needed) <= values.keys():
            raise DlbenchError(
                f"the saved data facts are not a data set's: not a mapping with {', '.join(needed)}"
            )
        info = cls(**{f.name: values[f.name] for f in fields if f.name in values})
        if problem := info.problem():
            raise DlbenchError(f"the saved data facts are not a data set's: {problem}")
        return info

    def problem(self) -> str | None:
        def sizes(value, low: int, most: int = 2**24) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= most

        def texts(value) -> bool:
            return isinstance(value, list) and all(isinstance(v, str) for v in value)

        def numbers(value) -> bool:
            return isinstance(value, list) and all(
                isinstance(v, (int, float)) or numbers(v) for v in value if not isinstance(v, bool)
            )

        def mean_and_std(value) -> bool:  # [[means], [stds]], each of 1 or a value per channel
            channels = self.input_shape[0] if isinstance(self.input_shape, list) and self.input_shape else 1
            return (
                isinstance(value, list)
                and len(value) == 2
                and all(isinstance(v, list) and numbers(v) and len(v) in (1, channels) for v in value)
                and all(not isinstance(s, list) and s != 0 for s in value[1])
            )

        checks = {
            "name": isinstance(self.name, str),
            "input_shape": isinstance(self.input_shape, list)
            and len(self.input_shape) <= 4
            and all(sizes(s, 1) for s in self.input_shape),
            "num_outputs": sizes(self.num_outputs, 0),
            "num_classes": self.num_classes is None or sizes(self.num_classes, 0),
            "class_names": self.class_names is None
            or (texts(self.class_names) and len(self.class_names) == self.num_classes),
            "normalization": self.normalization is None or mean_and_std(self.normalization),
            "vocab_size": self.vocab_size is None or sizes(self.vocab_size, 0),
            "target_vocab_size": self.target_vocab_size is None or sizes(self.target_vocab_size, 0),
            "vocab": self.vocab is None
            or (isinstance(self.vocab, dict) and all(texts(v) for v in self.vocab.values())),
            "tokens": self.tokens in (None, "word", "char"),
            "scale": self.scale is None or numbers(self.scale),
            "truth": self.truth is None or isinstance(self.truth, dict),
        }
        wrong = [key for key, fine in checks.items() if not fine]
        return (
            f"{', '.join(wrong)} ({', '.join(repr(getattr(self, k))[:60] for k in wrong)})" if wrong else None
        )
