"""Check a config node's keys and values against type hints: an unknown key with the closest
known ones, a value that does not fit its hint, a number that is not finite."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dlbench.errors import DlbenchError, did_you_mean
from dlbench.typecheck import describe, matches


def check_values(node: Mapping[str, Any], hints: Mapping[str, Any], where: str, owner: str = "") -> None:
    """Every key of `node` must be one of `hints` (else: the closest ones) and every value must
    fit its hint. Interpolations (`${dataset.num_classes}`) are left for when they resolve."""
    for key, value in node.items():
        if key not in hints:
            raise DlbenchError(
                f"Unknown key '{where}.{key}'{owner}.{did_you_mean(key, hints, prefix=where + '.')}",
                f"Valid keys: {', '.join(sorted(hints))}",
            )
        if not _is_interpolation(value) and not matches(value, hints[key]):
            raise DlbenchError(f"{where}.{key}: expected {describe(hints[key])}, got {value!r}")
        if _has_nonfinite(value):
            raise DlbenchError(f"{where}.{key}={value}: must be a finite number (not nan or inf)")


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_has_nonfinite(v) for v in value)
    return False


def _is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and "${" in value
