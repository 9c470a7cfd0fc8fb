"""Check a config value against a Python type hint, and describe the hint for a message."""

from __future__ import annotations

import collections.abc
import enum
import inspect
import types
import typing
from typing import Any

_ANY = object()


def describe(hint: Any) -> str:
    """A short human name for a type hint: 'float', 'list of int', 'one of a|b', ..."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is _ANY or hint is Any:
        return "any value"
    if origin is typing.Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return text + " (or null)" if type(None) in args else text
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        inner = [a for a in args if a is not Ellipsis]
        return "list of " + describe(inner[0]) if inner else "list"
    if origin in (dict, collections.abc.Mapping):
        return "mapping"
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return "one of " + "|".join(m.name for m in hint)
        return "tensor" if _is_tensor(hint) else "null" if hint is type(None) else hint.__name__
    return str(hint)


def matches(value: Any, hint: Any) -> bool:
    """True when a value composed by Hydra/OmegaConf fits the hint (ints count as floats)."""
    if hint is _ANY or hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return value in args or str(value) in [str(a) for a in args]
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        if not isinstance(value, (list, tuple)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(inner) > 1:
            return len(inner) == len(value) and all(matches(v, a) for v, a in zip(value, inner, strict=True))
        return not inner or all(matches(v, inner[0]) for v in value)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    if origin is not None:
        hint = origin
    if not isinstance(hint, type):
        return True  # a hint we cannot interpret (a TypeVar, a callable type): accept
    if value is None or hint is type(None):
        return value is None and hint is type(None)
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if _is_tensor(hint):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if issubclass(hint, enum.Enum):
        return value in hint.__members__ or value in [m.value for m in hint]
    if hint in (str, list, tuple, dict):
        return isinstance(value, hint)
    return True  # objects supplied by code (a module, an optimizer): not a config value


# the names a hint written as text may use without its module importing them at run time
TYPING_NAMES = {
    **{name: getattr(typing, name) for name in typing.__all__},
    **{name: getattr(collections.abc, name) for name in collections.abc.__all__},
}


def parameter_hints(fn: Any) -> dict[str, Any]:
    """The keyword parameters of a callable (a class means its __init__) with their hints.

    Where a hint cannot be resolved, the default value's type stands in for it.
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # (a name its module imports for type checkers alone: MultiStepLR's Iterable)
        try:
            # (the module's own names first: only those it lacks are typing's)
            hints = typing.get_type_hints(
                target, globalns={**TYPING_NAMES, **getattr(target, "__globals__", {})}
            )
        except Exception:
            hints = {}
    out: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(name, _ANY)
        if hint is _ANY and p.default not in (inspect.Parameter.empty, None):
            hint = type(p.default)
        out[name] = hint
    return out


def accepts_var_kwargs(fn: Any) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def _is_tensor(hint: Any) -> bool:
    """torch.Tensor, recognised without importing torch (a config check needs no torch)."""
    return getattr(hint, "__module__", "") == "torch" and getattr(hint, "__name__", "") == "Tensor"
