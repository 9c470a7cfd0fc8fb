"""Everything dlbench prints is inert: no text is read as rich markup, and no control character
reaches the terminal.

Most of what dlbench prints was not written by dlbench: class names, metric values, folder
names, overrides, a model's inputs, error messages that quote them. Rather than escaping each
string where it is printed (and missing the next one), the rule is kept in two places:

- `InertConsole`: a rich Console that never parses markup, emoji codes or highlights, and
  that shows every control character (ESC, BEL, CR, backspace, DEL, C1 codes, bidirectional
  overrides) as a visible escape such as `\\x1b`, whatever renderable carries it (a string, a
  Text, a table cell, a log record). dlbench's own styles are given as styles
  (`Text.assemble(("error:", "bold red"), ...)`, `style=`), never as markup in a string.
- `protect_logs`: every log record the process makes, from any logger (dlbench's, Hydra's,
  Optuna's), is made inert the same way (logging's record factory), for the console lines,
  `train.log` and Hydra's own lines.

`write(text)` prints text that is not a rich renderable (YAML, a shell script) the same way.

A command dlbench prints for the user to paste is built by `command(...)`: each word quoted as
a POSIX shell needs it (`'plugins=[my_net]'`: bash, and zsh, which stops at an unquoted `[`
with "no matches found"), so what is printed is what runs.
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import unicodedata
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment

# bidirectional controls reorder what is shown (a "Trojan source" name); Unicode calls them
# format characters (Cf), not controls (Cc), so they are listed
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(text: str, keep: str = "") -> str:
    """`text` with every character that is not printable text (but those in `keep`) shown as an
    escape: controls (`\\x1b`), bidi overrides, lone surrogates (a file name's bytes that are not
    UTF-8: `\\udcff`), unassigned and private code points, line separators. Spaces of every
    kind and the other format characters (a joiner inside a word) stay."""
    if text.isprintable() and not BIDI.intersection(text):
        return text
    return "".join(_visible(c) if c not in keep and not _text(c) else c for c in text)


def _text(char: str) -> bool:
    """Whether a character is printed as it is: printable, a space, or a format character that
    is not a bidi control (`inert`)."""
    return char not in BIDI and (char.isprintable() or unicodedata.category(char) in ("Zs", "Cf"))


class InertConsole(Console):
    """A rich Console for text that is data: no markup, no emoji codes, no highlighting, and
    control characters shown, not sent, a line break in a string too (`\\x0a`: a value, a path
    cannot print a line of its own). dlbench's own text of several lines (help, a report) is
    printed with `print_lines`. Tables are `fit`. A line is never broken by rich (soft wrap):
    the terminal wraps it for the eye, and a copy of it is the line, a command pasted whole."""

    def __init__(self, **options) -> None:
        super().__init__(markup=False, emoji=False, highlight=False, **options)

    def print(self, *objects, **options) -> None:
        from rich.table import Table

        if len(objects) == 1 and isinstance(objects[0], Table):
            needed, detected = fit(objects[0], self.width), self._width
            if needed > self.width:  # (rich prints no wider than the console: widened for this table)
                self.width = needed
            try:
                super().print(*objects, **options)
            finally:
                self._width = detected
            return
        options.setdefault("soft_wrap", True)
        super().print(*objects, **options)

    def print_lines(self, text: Any, **options) -> None:
        """dlbench's own text of several lines, each printed as a line (a renderable, such as a
        task's report table, as it is)."""
        if not isinstance(text, str):
            self.print(text, **options)
            return
        self.print(*text.split("\n"), sep="\n", **options)

    def render_str(self, text: str, **options):
        # before rich makes a Text of it: rich drops some controls (BEL, CR) silently; shown here
        return super().render_str(inert(text), **options)

    def render(self, renderable, options=None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and not segment.text.isprintable() and segment.text != "\n":
                yield Segment(inert(segment.text, keep="\n"), segment.style)
            else:
                yield segment


def fit(table, width: int) -> int:
    """The width to print `table` at: no name or value (a cell of a column that does not wrap,
    the title, the caption) is ever cut. Columns marked `gives_way` (a description) share what
    the terminal's width leaves them (8 characters at least, cut with an ellipsis); where even
    that does not fit, the table is printed wider than the terminal, which wraps its lines."""
    from rich.cells import cell_len
    from rich.text import Text

    def shown(text) -> int:  # its widest line as shown: control characters as their escapes
        plain = text.plain if isinstance(text, Text) else str(text)
        return max(map(cell_len, inert(plain).splitlines() or [""]))

    def widest(column) -> int:
        return max(shown(c) for c in [column.header, *column.cells])

    whole = [c for c in table.columns if c.no_wrap and not getattr(c, "gives_way", False)]
    for column in whole:
        column.min_width = widest(column)
    giving = [c for c in table.columns if getattr(c, "gives_way", False)]
    left = width - sum(c.min_width for c in whole) - 3 * len(table.columns) - 1  # padding, borders
    for column in giving:
        column.max_width = min(widest(column), max(8, left // len(giving)))
    needed = sum(c.min_width for c in whole) + sum(c.max_width for c in giving) + 3 * len(table.columns) + 1
    for note in (table.title, table.caption):  # (whole on their lines too: a path in a title)
        if note:
            needed = max(needed, shown(note))
    return max(width, needed)


def command(*words: object) -> str:
    """`dlbench WORDS...` as it is pasted into a shell: each word quoted where bash or zsh would
    read it otherwise (brackets, spaces, `*`, `$`, quotes). A word with a control character (a
    tab in a folder's name) is written in bash's and zsh's $'...' quotes, its control characters
    as escapes the shell turns back into them: printed inert, pasted as it was."""
    return " ".join(map(shell_word, ["dlbench", *map(str, words)]))


def shell_word(word: str) -> str:
    """One word as bash and zsh read it back (`command`). A word with a single quote and nothing
    double quotes change (`$`, a backquote, `\\`, `!`) is in double quotes: `"name=\\"it's\\""`,
    not shlex's `'name="it'"'"'s"'`."""
    if inert(word) == word and "'" in word and not set(word) & set("$`\\!"):
        return '"' + word.replace('"', '\\"') + '"'
    if inert(word) == word:
        return shlex.quote(word)
    escaped = (_escape(c) if inert(c) != c else "\\" + c if c in "\\'" else c for c in word)
    return "$'" + "".join(escaped) + "'"


def _escape(char: str) -> str:
    """A control character as $'...' writes it: its UTF-8 bytes, each as \\xHH (the shell
    writes the bytes whatever its locale; its \\uHHHH needs a UTF-8 one). A file name's byte that
    is not UTF-8 (a lone surrogate) is that byte again."""
    return "".join(f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape"))


def key_of(override: str) -> str:
    """An override's key as the config names it (`+model.x=1`: model.x)."""
    return override.split("=", 1)[0].lstrip("+~")


def root_of(override: str) -> str:
    """The config group or top-level key an override sets (`model.hidden=[8]`: model)."""
    return key_of(override).split(".")[0].split("@")[0]


def override(key: str, value: object) -> str:
    """`key=value` as Hydra reads it back to `value`: as it is where Hydra's grammar reads it so
    (a plain path), else in quotes (a comma would make a sweep, a quote or a space a syntax
    error, `true` a bool), with `${` escaped (OmegaConf would read an interpolation)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Quote, QuotedString

    text = str(value)
    if "${" not in text and "\\" not in text:
        try:
            if OverridesParser.create().parse_override(f"{key}={text}").value() == text:
                return f"{key}={text}"
        except Exception:  # (Hydra's grammar does not read it as it is)
            pass
    literal = omegaconf_literal(text)
    quote = Quote.double if "'" in text and '"' not in text else Quote.single  # (it's: "it's")
    quoted = QuotedString(literal, quote).with_quotes()
    return f"{key}={quoted}"


def omegaconf_literal(text: str) -> str:
    """`text` as an OmegaConf string value that reads back as `text`: each `${` escaped (it
    would be read as an interpolation), and the backslashes before it doubled."""
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)


def quoted_instead(overrides: list[str]) -> list[str]:
    """The first override Hydra's grammar cannot read, if it is for want of quotes (`name=abc_ü`:
    unquoted, a value is ASCII words; `name=a=b`; not `[1,` half a list), as a message's line
    giving it quoted, to paste in its place."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for word in overrides:
        try:
            parser.parse_override(word)
            continue
        except Exception:  # (this one: quoted, does it read?)
            key, equals, value = word.partition("=")
            # (name=a=b: the second = wants quotes too; name=it's, its quote)
            plain = value.isascii() and not set(value) & set("='\"")
            if not equals or not key or plain or value[:1] in ("'", '"', "[", "{"):
                return []  # (a list's or a dict's items would need quotes of their own)
            quoted = override(key, value)
            try:
                parser.parse_override(quoted)
            except Exception:
                return []
            return [f"In quotes, {word} reads as text: {shell_word(quoted)}"]
    return []


def console(stderr: bool = False) -> InertConsole:
    """On a terminal, rich's own width; anywhere else (a pipe, a file, CI) no width at all, so a
    table cell, a path or a value is never broken across lines. In Jupyter too: rich would
    show its tables there as HTML beside a copy full of colour codes (what a plain-text view,
    nbconvert or a log shows); dlbench's output is plain text in the cell's stream instead
    (ipykernel's stream may say it is a terminal: it is not one)."""
    plain = {
        "force_jupyter": False,
        "force_terminal": False if type(sys.stdout).__module__.startswith("ipykernel") else None,
    }
    terminal = InertConsole(stderr=stderr, **plain)
    return terminal if terminal.is_terminal else InertConsole(stderr=stderr, width=100_000, **plain)


def write(text: str, stderr: bool = False) -> None:
    """Print plain text (not a rich renderable) as it is, its control characters shown."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(inert(text, keep="\n"))
    stream.flush()


def inert_record(record: logging.LogRecord) -> logging.LogRecord:
    """A log record whose message, traceback and stack are inert. A message is one line: a line
    break in it (a value it quotes) is shown as `\\x0a`, as in an error (errors.DlbenchError), so
    no value makes a log line of its own; a traceback and a stack keep theirs (and tabs), to
    stay readable."""
    try:
        message = record.getMessage()
    except Exception:  # (arguments that do not fit the message: logging reports it as it writes)
        return record
    if not message.isprintable():
        # (Hydra's --info prints a config in one record, as YAML, whose values' breaks are escapes:
        # its lines kept; its launchers quote the overrides, whose breaks are not)
        own_lines = record.name == "hydra._internal.hydra"
        record.msg, record.args = inert(message, keep="\n\t" if own_lines else "\t"), None
    if record.exc_info and not record.exc_text:  # (the text a formatter would write, made once)
        record.exc_text = inert(logging.Formatter().formatException(record.exc_info), keep="\n\t")
    if record.stack_info:
        record.stack_info = inert(record.stack_info, keep="\n\t")
    return record


def protect_logs() -> None:
    """Every log record this process makes, whatever logger makes it (dlbench's, Hydra's
    launchers, Optuna's, a plugin's), is inert from its making, before any handler (the
    console, train.log, Hydra's own) writes it: logging's record factory."""
    made = logging.getLogRecordFactory()
    if getattr(made, "inert", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        return inert_record(made(*args, **kwargs))

    factory.inert = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def written(value: object) -> str:
    """A config value as the command line writes it: null, true, [128,64]."""
    if isinstance(value, list):
        return f"[{','.join(map(written, value))}]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def counted(number: int, thing: str, things: str | None = None) -> str:
    """`1 run`, `2 runs` (`things`: a plural of another form, `batches`): as English says it."""
    return f"{number} {thing if number == 1 else things or thing + 's'}"
