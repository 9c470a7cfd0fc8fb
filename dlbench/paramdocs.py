"""What each parameter of a registered constructor means: the comment beside it (or the
comment lines just above it) in the signature, as dlbench's own code writes them:

    def resnet(
        input_shape: list[int],
        depth: int = 18,  # 18 | 34 (basic blocks) | 50 | 101 | 152 (bottleneck blocks)
        # blocks per stage, overrides depth: e.g. [3, 3, 3] with width 16 is ResNet-20
        layers: list[int] | None = None,
    )

`dlbench list models resnet` prints them beside each key's default and type; `field_docs` reads
a config dataclass's fields the same way (`dlbench list datasets digits`: the keys every dataset
has).
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import tokenize
from typing import Any


def parameter_docs(fn: Any) -> dict[str, str]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        lines, _ = inspect.getsourcelines(target)
    except (OSError, TypeError):  # built in, or defined where no source is kept
        return {}
    names = set(inspect.signature(fn).parameters)
    docs: dict[str, str] = {}
    above: list[str] = []
    depth, last = 0, None  # bracket depth in the signature; the parameter the line named last
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent("".join(lines))).readline))
    except (tokenize.TokenError, IndentationError):
        return {}
    start = next((i for i, t in enumerate(tokens) if t.type == tokenize.NAME and t.string == "def"), None)
    for tok in tokens[start or 0 :]:
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
            if depth == 0:
                break  # the end of the signature
        elif tok.type == tokenize.NAME and depth == 1 and tok.string in names and _is_parameter(tok):
            last = tok.string
            if above:
                docs[last] = " ".join(above)
                above = []
        elif tok.type == tokenize.COMMENT and depth >= 1:
            text = tok.string.lstrip("#").strip()
            if tok.line.strip().startswith("#"):
                above.append(text)  # a comment line: about the parameter below it
            elif last is not None and last not in docs:
                docs[last] = text
    return docs


def _is_parameter(tok: tokenize.TokenInfo) -> bool:
    """The name starts a parameter (`name:`, `name=`, `name,` or `name)`), not a default's value."""
    rest = tok.line[tok.end[1] :].lstrip()
    before = tok.line[: tok.start[1]].rstrip()
    return bool(re.match(r"[:=,)]", rest)) and (before.endswith(("(", ",")) or not before)


def field_docs(schema: type) -> dict[str, str]:
    """A dataclass's fields' comments: the comment lines just above each field, and the one
    beside it."""
    import ast

    lines = textwrap.dedent(inspect.getsource(schema)).splitlines()
    docs: dict[str, str] = {}
    for node in ast.parse("\n".join(lines)).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, row = [], node.lineno - 2  # (the line above the field's, 0-based)
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            _, hash_, beside = lines[node.end_lineno - 1][node.end_col_offset :].partition("#")
            docs[node.target.id] = " ".join([*above, beside.strip()] if hash_ else above)
    return docs
