"""One Registry class; a registry per kind of component; build(cfg) from a `name:` key.

A config node names its component with `name:` and passes the rest as keyword arguments:

    optimizer: {name: sgd, lr: 0.1, momentum: 0.9}   ->   torch.optim.SGD(params, lr=0.1, momentum=0.9)

Only names registered here can be built, so a config file or a command line can never import
and call an arbitrary object. Each registry imports the modules that fill it the first time it
is used, so a component is never "registered but not imported".
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from omegaconf import OmegaConf

from dlbench.errors import DlbenchError, did_you_mean, unknown_name
from dlbench.typecheck import accepts_var_kwargs, describe, matches, parameter_hints


class Registry:
    """Named constructors of one kind (models, datasets, ...).

    `supplied` names the constructor arguments that dlbench passes itself (the parameters of an
    optimizer, the model of a task); they cannot be set from a config.
    """

    def __init__(self, kind: str, modules: Iterable[str] = (), supplied: Iterable[str] = ()):
        self.kind = kind
        self.supplied = frozenset(supplied)
        self._modules = list(modules)
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable], Callable]:
        """Decorator: `@MODELS.register("mlp")` (the function's name when none is given)."""

        def decorate(fn: Callable) -> Callable:
            self.add(name or fn.__name__, fn)
            return fn

        return decorate

    def add(self, name: str, fn: Callable[..., Any]) -> None:
        if name in self._entries and self._entries[name] is not fn:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = fn

    def _load(self) -> None:
        while self._modules:
            importlib.import_module(self._modules.pop(0))

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names, sorted, filtered by a wildcard pattern such as '*resnet*'."""
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> Callable[..., Any]:
        self._load()
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def description(self, name: str) -> str:
        """The first paragraph of the constructor's docstring, on one line."""
        doc = (inspect.getdoc(self.get(name)) or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    def check(self, node: Mapping[str, Any], where: str, reserved: Mapping[str, Any] | None = None) -> None:
        """Check a config node before anything is built.

        Every key must be a keyword of the registered constructor (or one of `reserved`, keys
        dlbench consumes itself, with their hints) and every value must fit its type hint.
        Values that are still interpolations (e.g. `${dataset.num_classes}`) are checked later,
        when they are built.
        """
        if "name" not in node or node["name"] is None:
            raise DlbenchError(f"{where}: no 'name' given; choose one of: {', '.join(self.names())}")
        fn = self.get(str(node["name"]))
        hints = {k: v for k, v in parameter_hints(fn).items() if k not in self.supplied}
        hints.update(reserved or {})
        known = {k: v for k, v in node.items() if k != "name" and (k in hints or not accepts_var_kwargs(fn))}
        check_values(known, hints, where, f" for {self.kind} '{node['name']}'")

    def build(self, node: Mapping[str, Any], where: str, skip: Iterable[str] = (), **supplied: Any):
        """Check `node`, then call the registered constructor with its keys and `supplied`."""
        if OmegaConf.is_config(node):
            node = OmegaConf.to_container(node, resolve=True)
        self.check(node, where, reserved={k: Any for k in skip})
        kwargs = {k: v for k, v in node.items() if k != "name" and k not in set(skip)}
        try:
            return self.get(node["name"])(**kwargs, **supplied)
        except DlbenchError:
            raise
        except (TypeError, ValueError) as err:
            raise DlbenchError(f"{where} ({self.kind} '{node['name']}'): {err}") from err


def check_values(node: Mapping[str, Any], hints: Mapping[str, Any], where: str, owner: str = "") -> None:
    """Every key of `node` must be one of `hints` (else: the closest ones) and every value must
    fit its hint. Interpolations (`${dataset.num_classes}`) are left for when they resolve."""
    for key, value in node.items():
        if key not in hints:
            raise DlbenchError(
                f"Unknown key '{where}.{key}'{owner}.{did_you_mean(key, hints)}\n"
                f"Valid keys: {', '.join(sorted(hints))}"
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


def snake_case(name: str) -> str:
    """CrossEntropyLoss -> cross_entropy_loss, StepLR -> step_lr, BCEWithLogits -> bce_with_logits."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _register_torch(
    registry: Registry, module: Any, base: type, naming: Callable[[str], str], skip=()
) -> None:
    for attr in dir(module):
        obj = getattr(module, attr)
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
            if not attr.startswith("_") and attr not in skip:
                registry.add(naming(attr), obj)


MODELS = Registry("model", modules=["dlbench.models"])
DATASETS = Registry("dataset", modules=["dlbench.data"])
TASKS = Registry("task", modules=["dlbench.tasks"], supplied=["model", "loss", "data"])
LOSSES = Registry("loss")
OPTIMIZERS = Registry("optimizer", supplied=["params"])
SCHEDULERS = Registry("scheduler", modules=["dlbench.engine.optim"], supplied=["optimizer"])

# torch's own optimizers (sgd, adam, adamw, rmsprop, ...), schedulers (step_lr, one_cycle_lr, ...)
# and losses (cross_entropy, mse, bce_with_logits, ...), registered from torch itself.
_register_torch(OPTIMIZERS, torch.optim, torch.optim.Optimizer, str.lower)
# Schedulers that take Python callables or other schedulers cannot come from a config file.
_register_torch(
    SCHEDULERS,
    torch.optim.lr_scheduler,
    torch.optim.lr_scheduler.LRScheduler,
    snake_case,
    skip=("LambdaLR", "MultiplicativeLR", "ChainedScheduler", "SequentialLR"),
)
_register_torch(
    LOSSES,
    torch.nn.modules.loss,
    torch.nn.modules.loss._Loss,
    lambda n: snake_case(n.removesuffix("Loss")),
    skip=("NLLLoss2d",),
)

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "datasets": DATASETS,
    "tasks": TASKS,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
}
