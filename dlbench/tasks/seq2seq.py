"""Sequence to sequence: train with teacher forcing, evaluate by greedy decoding.

Metrics on held-out pairs: token accuracy (target positions predicted right), exact match
(whole target right, up to and including <eos>) and BLEU (torchmetrics). Attention maps of a
few examples go to TensorBoard; a few decoded examples are printed at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from rich.table import Table
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.text import BLEUScore

from dlbench.data.info import DataInfo
from dlbench.data.text import EOS_ID, PAD_ID
from dlbench.errors import DlbenchError
from dlbench.figures import new_figure
from dlbench.registry import TASKS
from dlbench.tasks.base import SPLITS, Optimize, PredictOptions, Rows, Task

if TYPE_CHECKING:  # (a type only)
    from dlbench.data.base import DataModule


def trim(ids: torch.Tensor) -> torch.Tensor:
    """Drop the padding columns every row of a batch has."""
    return ids[:, : max(int((ids != PAD_ID).sum(dim=1).max()), 1)]


@TASKS.register("seq2seq")
class Seq2SeqTask(Task):
    """Translate source token sequences into target token sequences."""

    default_loss = "cross_entropy"
    losses = ("cross_entropy", "nll", "multi_margin")  # (each target token: a class index)

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module,
        data: DataInfo,
        teacher_forcing: float = 0.5,  # chance a step feeds the true previous token, not the prediction
        examples: int = 4,  # examples shown at the end and drawn as attention maps
    ):
        super().__init__(model, loss)
        vocab = data.vocab or {}
        if "target" not in vocab:
            raise DlbenchError(
                "task=seq2seq needs sentence pairs (dataset=translation_pairs or reverse_sequences)"
            )
        if not 0 <= teacher_forcing <= 1:
            raise DlbenchError(f"task.teacher_forcing={teacher_forcing}: must be in [0, 1]")
        self.source_vocab, self.target_vocab = list(vocab["source"]), list(vocab["target"])
        self.joiner = "" if data.tokens == "char" else " "  # how tokens print
        self.teacher_forcing, self.examples = teacher_forcing, examples
        for split in SPLITS:
            metrics = {"token_acc": MeanMetric()}
            if split != "train":
                metrics.update(exact_match=MeanMetric(), bleu=BLEUScore(n_gram=4, smooth=True))
            setattr(self, f"{split}_metrics", MetricCollection(metrics))
        # split -> (source, prediction, target, attention) of the first few examples: being
        # collected (samples), and of the last finished evaluation (finished)
        self.samples: dict[str, tuple] = {}
        self.finished: dict[str, tuple] = {}

    @staticmethod
    def output_size(data: DataModule) -> int:
        if "target_vocab_size" not in data.meta:  # (a KeyError, exit 1, after the run's folder was made)
            raise DlbenchError(
                f"task=seq2seq takes pairs of token sequences (dataset=translation_pairs, "
                f"reverse_sequences), and dataset '{data.cfg.name}' gives none"
            )
        return data.meta["target_vocab_size"]

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        real = target != PAD_ID
        logits = logits[real].float()
        if isinstance(self.loss, nn.NLLLoss):  # (on the logits, it pushed them up without end)
            logits = nn.functional.log_softmax(logits, dim=-1)
        return self.loss(logits, target[real])

    def training_step(self, batch: Any, optimize: Optimize) -> dict[str, torch.Tensor]:
        source, target = trim(batch[0]), trim(batch[1])
        logits, _ = self.model(source, target, self.teacher_forcing)
        loss = self.compute_loss(logits, target)
        optimize("model", loss)
        self.update_token_acc("train", logits.detach().argmax(-1), target)
        return {"loss": loss.detach()}

    def update_token_acc(self, split: str, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        real = target != PAD_ID
        correct = (predicted == target) & real
        self.metrics(split)["token_acc"].update(correct.sum() / real.sum(), real.sum())
        return correct.sum(dim=1) == real.sum(dim=1)  # whole sequence right

    def evaluation_step(self, batch: Any, split: str) -> dict[str, torch.Tensor]:
        source, target = trim(batch[0]), trim(batch[1])
        logits, attention = self.model(source, target, 0.0)  # greedy: fed its own predictions
        predicted = logits.argmax(-1)
        exact = self.update_token_acc(split, predicted, target)
        metrics = self.metrics(split)
        metrics["exact_match"].update(exact.float())
        metrics["bleu"].update(
            [self.text(p, self.target_vocab) for p in predicted],
            [[self.text(t, self.target_vocab)] for t in target],
        )
        if split not in self.samples:
            n = self.examples
            maps = None if attention is None else attention[:n].float().cpu()
            self.samples[split] = (source[:n].cpu(), predicted[:n].cpu(), target[:n].cpu(), maps)
        return {"loss": self.compute_loss(logits, target)}

    @staticmethod
    def tokens(ids: torch.Tensor, vocab: list[str]) -> list[str]:
        """Ids up to (not including) <eos>, padding dropped, as tokens."""
        out = []
        for i in ids.tolist():
            if i == EOS_ID:
                break
            if i != PAD_ID:
                out.append(vocab[i])
        return out

    def text(self, ids: torch.Tensor, vocab: list[str], joiner: str = " ") -> str:
        """Tokens joined by spaces (what BLEU reads), or by `joiner` for display."""
        return joiner.join(self.tokens(ids, vocab))

    def predict_table(self, inputs: list[str], info: DataInfo, options: PredictOptions) -> Rows:
        """Each sentence, prepared like the run's source side, greedily decoded."""
        from dlbench.data.text import SPECIALS, UNK_ID, encode_source, pad

        if not inputs:
            raise DlbenchError("usage: dlbench predict RUN SENTENCE...")
        ids = [encode_source(s, info) for s in inputs]
        for text, tokens in zip(inputs, ids, strict=True):  # (all unknown: it was translated, exit 0)
            if all(token == UNK_ID for token in tokens):
                chars = info.vocab["source"][len(SPECIALS) :] if info.tokens == "char" else []
                known = "".join(chars[:40]) + ("..." if len(chars) > 40 else "")
                raise DlbenchError(
                    f"predict: {text!r} has no token this run knows"
                    + (f" (its characters: {known})" if known else " (no word of its vocabulary)")
                )
        joiner = "" if info.tokens == "char" else " "
        decoded = self.translate(pad(ids))
        return ["input", "output"], [
            [s, joiner.join(tokens)] for s, (tokens, _) in zip(inputs, decoded, strict=True)
        ]

    def translate(self, source: torch.Tensor) -> list[tuple[list[str], torch.Tensor | None]]:
        """Greedy decoding of source ids (B, S): the output tokens and attention of each."""
        with torch.no_grad():
            logits, attention = self.model(source)
        out = []
        for i, ids in enumerate(logits.argmax(-1)):
            tokens = self.tokens(ids, self.target_vocab)
            out.append((tokens, None if attention is None else attention[i, : len(tokens) + 1]))
        return out

    def figures(self, split: str) -> dict[str, Any]:
        sample = self.finished.get(split)
        if sample is None or sample[3] is None:
            return {}
        source, predicted, _, maps = sample
        fig, axes = new_figure(1, len(source), figsize=(4 * len(source), 4), squeeze=False)
        for ax, src, pred, weights in zip(axes[0], source, predicted, maps, strict=True):
            src_tokens, out_tokens = self.tokens(src, self.source_vocab), self.tokens(pred, self.target_vocab)
            rows = len(out_tokens) + 1  # and the step that emitted <eos>
            ax.imshow(weights[:rows, : len(src_tokens)].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=90, fontsize=7)
            ax.set_yticks(range(rows), [*out_tokens, "<eos>"], fontsize=7)
        fig.tight_layout()
        return {f"{split}/attention": fig}

    def compute_metrics(self, split: str) -> dict[str, float]:
        if split in self.samples:
            self.finished[split] = self.samples.pop(split)
        return super().compute_metrics(split)

    def report(self) -> Table | None:
        if "test" not in self.finished:
            return None
        source, predicted, target, _ = self.finished["test"]
        table = Table(title="Test examples (greedy decoding)")  # text: wraps on a narrow terminal
        for column in ("source", "target", "predicted"):
            table.add_column(column)
        for s, t, p in zip(source, target, predicted, strict=True):
            table.add_row(
                self.text(s, self.source_vocab, self.joiner),
                self.text(t, self.target_vocab, self.joiner),
                self.text(p, self.target_vocab, self.joiner),
            )
        return table
