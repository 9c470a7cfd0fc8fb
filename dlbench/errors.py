"""The one error type a user can cause, and how to suggest the name they meant."""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Iterable
from pathlib import Path


class DlbenchError(Exception):
    """A problem with the user's config, data, files or device.

    The CLI prints its message (no traceback) and exits with status 2. A message of several
    lines is given as several arguments, one a line: the line breaks are dlbench's, and a line
    break inside a line (in a value it quotes: a saved override, a file name, a checkpoint's
    key) is printed as `\\x0a`, so no value can print a line of its own (a fake command).
    """

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(str(line) for line in self.args) or ("",)

    def __str__(self) -> str:
        """Its lines, each inert (terminal.inert): a line break inside a line, an escape, as the
        escapes it prints as. The text keeps which breaks are lines (a DataLoader worker's error,
        which torch passes on), and a traceback of the Python API (`dlbench.load_model` of a
        checkpoint naming a model `\x1b[31m...`) sends no control to the terminal."""
        from dlbench.terminal import inert

        return "\n".join(inert(line) for line in self.lines)


class FolderInUse(DlbenchError):
    """The run folder holds another run, or another process is running in it: dlbench writes
    nothing there (not even error.txt)."""


class Preempted(Exception):
    """The run was asked to stop (SIGTERM, SIGUSR1, SIGUSR2) and saved a checkpoint to resume from.

    The CLI exits with status 75 (EX_TEMPFAIL: try again), or hands the signal on to the
    handler that was there before (Slurm's requeue through submitit).
    """

    EXIT_STATUS = 75

    def __init__(self, signum: int, step: int, saved: bool = True):
        self.signum, self.step, self.saved = signum, step, saved  # saved: False with trainer.checkpoint=false
        super().__init__(f"stopped by signal {signum} after step {step}")


class StopRequested(BaseException):
    """A stop signal (SIGTERM, SIGUSR1, SIGUSR2) that came while no run was being built or
    trained (those stop at a step's end, with a checkpoint: Preempted). A BaseException, like
    KeyboardInterrupt, so no `except Exception` takes it for an error of its own. The CLI exits
    with 128 + the signal's number, as a shell reports a process the signal stopped."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by signal {signum}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for dlbench's commands: a usage error is a DlbenchError (one message, printed
    as text by the CLI, exit status 2), not argparse's own print of the raw arguments."""

    def __init__(self, *args, usage_line: str = "", **kwargs):
        super().__init__(*args, add_help=False, **kwargs)
        self.usage_line = usage_line

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):  # (`--srt`: Did you mean: --sort?)
            flag = next((w for w in message.split(":", 1)[1].split() if w.startswith("--")), "")
            options = [o for o in self._option_string_actions if o.startswith("--")]
            message += f".{hint}" if flag and (hint := did_you_mean(flag.split("=")[0], options)) else ""
        raise DlbenchError(message, self.usage_line) if self.usage_line else DlbenchError(message)

    def parse_args(self, args=None, namespace=None):
        """Positional words may follow options too (`export --out m.pt RUN 'plugins=[x]'`): a
        command dlbench prints for the user to paste adds its words at the end."""
        return self.parse_intermixed_args(args, namespace)


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count: --top-k, --num, --opset)."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return number


def output_path(text: str) -> Path:
    """An argparse type: a file or folder a command writes (`--out`, `--csv`). `~` is the home
    folder, as bash reads it where it expands it (it does not in `--out=~/x.csv`)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name")
    return Path(os.path.expanduser(text))


FIRST_LINE_AT_MOST = 500  # characters of someone else's error text that a message of ours shows


def first_line(err: BaseException) -> str:
    """An error in one line for a message of ours: its type and the first line of its text, any
    control character in it shown (`\\t`), not sent, and cut after FIRST_LINE_AT_MOST
    characters: the text is often someone else's (a tracking server's answer, a library's, a
    run folder's file quoted back), and the line must stay one line of text."""
    from dlbench.terminal import inert

    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    if len(line) > FIRST_LINE_AT_MOST:
        line = f"{line[:FIRST_LINE_AT_MOST]}... ({len(line) - FIRST_LINE_AT_MOST:,} more characters)"
    return inert(f"{type(err).__name__}: {line}")


def did_you_mean(
    name: str,
    choices: Iterable[str],
    n: int = 3,
    prefix: str = "",
    first: Iterable[str] = (),
    rough: bool = True,
    added: Iterable[str] = (),
) -> str:
    """Return ' Did you mean: a, b?' for the closest choices (after `first`, named as they are),
    or '' when there are none. A key's are named whole, as they are typed (`prefix`: its node,
    `trainer.`), with a + for those `added` (a key its node leaves out). `rough=False` leaves out
    rough spellings (`closest`)."""
    found = closest(str(name), sorted(set(map(str, choices))), n, rough)
    plus = set(added)
    named = [*first, *(("+" if c in plus else "") + prefix + c for c in found)]
    return f" Did you mean: {', '.join(named[:4])}?" if named else ""


# Words users bring from other tools, for dlbench's word (`device=gpu` was offered cpu)
SYNONYMS = {
    "gpu": "cuda", "learning_rate": "lr", "wd": "weight_decay", "tb": "tensorboard",
    "ce": "cross_entropy", "bn": "batch", "he": "kaiming",
    "fp16": "16", "float16": "16", "half": "16", "fp32": "32", "float32": "32", "bfloat16": "bf16",
}  # fmt: skip


def closest(name: str, choices: list[str], n: int, rough: bool = True) -> list[str]:
    """The `n` choices closest to `name`: those it begins (`cosine`: cosine_annealing_lr), any
    case; then close spellings (`lenet5_mnsit`: lenet5_mnist; `irs`: iris); then those it is
    part of (`plateau`: reduce_lr_on_plateau; `irs` is part of translation_pairs, after iris);
    then rougher spellings, unless not `rough` (a dozen commands: `lesson` read as completion).
    A word of another tool's is read as dlbench's (SYNONYMS: `gpu`,
    cuda). (difflib alone offered `none` for `cosine`.)"""
    folded = SYNONYMS.get(name.lower(), name.lower())
    begun = [c for c in choices if len(folded) >= 2 and c.lower().startswith(folded)]
    holding = [c for c in choices if len(folded) >= 3 and folded in c.lower()]
    cased = {c.lower(): c for c in choices}  # (difflib on the folded names: `T0` finds T_0)
    spelled = [cased[c] for c in difflib.get_close_matches(folded, list(cased), n=n, cutoff=0.5)]
    close = [c for c in spelled if difflib.SequenceMatcher(None, folded, c.lower()).ratio() >= 0.75]
    rougher = spelled if rough and not begun + holding else []
    return list(dict.fromkeys(begun + close + holding + rougher))[:n]


def unreadable(err: Exception, overrides: Iterable[str]) -> DlbenchError:
    """A command line Hydra's grammar cannot read: its message (`lines_of`), and the word
    that would read quoted, quoted (terminal.quoted_instead)."""
    from dlbench.terminal import quoted_instead

    overrides = list(overrides)
    message = f"Cannot read the command line: {_pointed(str(err))}"
    return DlbenchError(*lines_of(message, overrides), *quoted_instead(overrides))


LEXER = "LexerNoViableAltException: "  # (ANTLR's: a character the grammar has no token for)


def _pointed(text: str) -> str:
    """Hydra's lexer error ('LexerNoViableAltException: name=a;b' over a caret under ';', which
    the line's new start moved) as the character, then the word with the caret under it."""
    first, _, rest = text.partition("\n")
    caret, _, after = rest.partition("\n")
    word, at = first.removeprefix(LEXER), caret.find("^") - len(LEXER)
    if not first.startswith(LEXER) or caret.strip() != "^" or not 0 <= at < len(word):
        return text
    return f"Hydra's grammar takes no {word[at]!r} outside quotes:\n  {word}\n  {' ' * at}^\n{after}".rstrip()


def lines_of(text: str, given: Iterable[str]) -> tuple[str, ...]:
    """Another library's message (Hydra's), which quotes what it was `given`, as a DlbenchError's
    lines: its line breaks are its own where nothing given holds one; else it is one line (its
    breaks printed as escapes: which are the library's cannot be told)."""
    if any(not str(value).isprintable() for value in given):
        return (text,)
    return tuple(line.expandtabs(4) for line in text.splitlines()) or ("",)


def does_not_fit(what: str, err: BaseException, state: object) -> DlbenchError:
    """'`what`: torch's error', for a state (a checkpoint's) that does not load: torch's lines
    (a missing key, a size mismatch) each a line of the message where every text in `state`
    is printable (`lines_of`: a key name could hold a line break)."""
    first, *rest = lines_of(str(err), texts_in(state))
    return DlbenchError(f"{what}: {first}", *(f"  {line.strip()}" for line in rest))


def texts_in(value: object) -> Iterable[str]:
    """Every text in a structure of dicts, lists and tuples (its keys too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from texts_in(key)
            yield from texts_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from texts_in(item)


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> DlbenchError:
    """An error for a name that is not one of `choices`, with suggestions and the full list."""
    choices = sorted(set(choices))
    return DlbenchError(
        f"Unknown {kind} '{name}'.{did_you_mean(name, choices)}",
        f"Available: {', '.join(choices) if choices else '(none)'}",
    )


OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "not enough memory", "DefaultCPUAllocator")


def as_user_error(err: BaseException) -> BaseException:
    """The user error behind an exception, where there is one (else `err` itself): a file
    that cannot be read or written, memory that runs out, or a DlbenchError raised in a
    DataLoader worker (which torch re-raises with the worker's traceback in its message)."""
    if isinstance(err, DlbenchError):
        text = "\n".join(err.lines)  # (torch's text, as it made it: one argument)
        if "DataLoader worker" in text and "DlbenchError: " in text:
            return type(err)(*text.rsplit("DlbenchError: ", 1)[1].strip().split("\n"))  # (its lines: __str__)
        return err
    if isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and any(s in str(err) for s in OUT_OF_MEMORY)
    ):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return DlbenchError(
            f"Out of memory: {first[:300]}. Make the model smaller, or lower dataset.batch_size"
        )
    if isinstance(err, ValueError) and "Expected more than 1 value per channel when training" in str(err):
        return DlbenchError(  # (a batch the check before the run could not foresee: build.py's)
            f"A BatchNorm layer got one value a channel ({first_line(err)}): a batch of one sample. "
            "Choose a dataset.batch_size that leaves no last batch of one"
        )
    if isinstance(err, RecursionError):  # a file or a value nested thousands deep
        return DlbenchError(f"The input is nested too deeply to be read ({err})")
    if isinstance(err, OSError) and err.filename is not None:
        return DlbenchError(f"{err.filename}: {err.strerror or err}")
    return err


def environ_number(name: str, default: int) -> int:
    """A whole number a launcher puts in the environment (torchrun's WORLD_SIZE, Slurm's
    SLURM_RESTART_COUNT): one message where it is not one (it was "unexpected error", exit 1)."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise DlbenchError(
            f"{name}={value!r} in the environment is not a whole number: torchrun and Slurm set it; "
            "unset it to run on your own"
        ) from None
