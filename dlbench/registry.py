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
    optimizer, the model of a task); they cannot be set from a config. `facts` names the
    arguments filled from the data (a model's `input_shape`, `num_outputs`, ...) unless the
    config sets them. `group` is the config group whose options these are (`model=resnet`).
    """

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        modules: Iterable[str] = (),
        supplied: Iterable[str] = (),
        facts: Iterable[str] = (),
    ):
        self.kind, self.group = kind, group or kind
        self.supplied = frozenset(supplied)
        self.facts = frozenset(facts)
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
            raise DlbenchError(
                f"{self.kind} '{name}' is registered twice: by {origin_of(self._entries[name])} and "
                f"by {origin_of(fn)}; register yours under another name"
            )
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

    def origin(self, name: str) -> str:
        """Where a component comes from: "dlbench", "torch", or the user's module."""
        return origin_of(self.get(name))

    def config_node(self, name: str) -> dict[str, Any]:
        """The config node a registered constructor implies: its name and every keyword it takes,
        with the default written in its signature. A parameter without a default is `???`
        (Hydra's "must be set"); one the data fills in is null."""
        node: dict[str, Any] = {"name": name}
        for key, parameter in inspect.signature(self.get(name)).parameters.items():
            if key in self.supplied or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if key in self.facts:
                node[key] = None
            elif parameter.default is inspect.Parameter.empty:
                node[key] = "???"
            elif (value := _plain_default(parameter.default)) is not _NOT_PLAIN:
                node[key] = value
        return node

    def check(self, node: Mapping[str, Any], where: str, reserved: Mapping[str, Any] | None = None) -> None:
        """Check a config node before anything is built.

        Every key must be a keyword of the registered constructor (or one of `reserved`, keys
        dlbench consumes itself, with their hints) and every value must fit its type hint.
        Values that are still interpolations (e.g. `${optimizer.lr}`) are checked later,
        when they are built; a fact left null comes from the data.
        """
        if "name" not in node or node["name"] is None:
            raise DlbenchError(f"{where}: no 'name' given; choose one of: {', '.join(self.names())}")
        fn = self.get(str(node["name"]))
        hints = {k: v for k, v in parameter_hints(fn).items() if k not in self.supplied}
        hints.update(reserved or {})
        for key, value in node.items():
            if value == "???":
                raise DlbenchError(f"{where}.{key} has no default: set it ({where}.{key}=...)")
        known = {
            k: v
            for k, v in node.items()
            if k != "name"
            and (k in hints or not accepts_var_kwargs(fn))
            and not (k in self.facts and v is None)
        }
        check_values(known, hints, where, f" for {self.kind} '{node['name']}'")

    def build(
        self,
        node: Mapping[str, Any],
        where: str,
        skip: Iterable[str] = (),
        facts: Any = None,
        **supplied: Any,
    ):
        """Check `node`, then call the registered constructor with its keys, the data's `facts`
        it asks for (an object with those attributes), and `supplied`.

        The arguments are bound to the signature first: a mismatch there is the config's fault
        (a user error); an error the constructor raises is its own, a user error only when it is
        a DlbenchError or one of torch's own checks of a value (a bug otherwise)."""
        if OmegaConf.is_config(node):
            node = OmegaConf.to_container(node, resolve=True)
        self.check(node, where, reserved={k: Any for k in skip})
        fn = self.get(node["name"])
        kwargs = {k: v for k, v in node.items() if k != "name" and k not in set(skip)}
        for key in self.facts & set(inspect.signature(fn).parameters):
            if kwargs.get(key) is None and facts is not None:
                kwargs[key] = getattr(facts, key)
        try:
            inspect.signature(fn).bind(**kwargs, **supplied)
        except TypeError as err:
            raise DlbenchError(f"{where} ({self.kind} '{node['name']}'): {err}") from err
        try:
            return fn(**kwargs, **supplied)
        except DlbenchError:
            raise
        except (TypeError, ValueError) as err:
            if origin_of(fn) != "torch":
                raise
            raise DlbenchError(f"{where} ({self.kind} '{node['name']}'): {err}") from err


def origin_of(fn: Callable) -> str:
    module = getattr(fn, "__module__", "") or ""
    top = module.split(".")[0]
    return top if top in ("dlbench", "torch") else module


_NOT_PLAIN = object()


def _plain_default(value: Any) -> Any:
    """A default as a config value (tuples become lists), or _NOT_PLAIN for an object."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain_default(v) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    if isinstance(value, dict):
        items = {k: _plain_default(v) for k, v in value.items()}
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items.values()) else items
    return _NOT_PLAIN


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


MODEL_FACTS = ("input_shape", "num_outputs", "num_classes", "vocab_size", "target_vocab_size")
MODELS = Registry("model", "model", modules=["dlbench.models"], facts=MODEL_FACTS)
DATASETS = Registry("dataset", "dataset", modules=["dlbench.data"])
TASKS = Registry("task", "task", modules=["dlbench.tasks"], supplied=["model", "loss", "data"])
LOSSES = Registry("loss", "loss")
OPTIMIZERS = Registry("optimizer", "optimizer", supplied=["params"])
SCHEDULERS = Registry("scheduler", "scheduler", modules=["dlbench.engine.optim"], supplied=["optimizer"])

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


def store_config_nodes(files: Mapping[str, Iterable[str]]) -> None:
    """Put every registered component's config node in Hydra's ConfigStore: as `<group>/_<name>`,
    the code's defaults a YAML file extends (`defaults: [_resnet, _self_]`) so it holds only what
    differs, and, unless a config file of that name exists (`files`: the options of each group
    found in the config folders), as the option `<group>/<name>` itself, so `model=tiny_net`
    needs no YAML file."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for registry in REGISTRIES.values():
        with_files = set(files.get(registry.group, ()))
        for name in registry.names():
            node = registry.config_node(name)
            if registry is DATASETS:
                node = {**node, **_dataset_common(), "name": name}
            store.store(group=registry.group, name=f"_{name}", node=node, provider="dlbench")
            if name not in with_files:
                store.store(group=registry.group, name=name, node=node, provider="dlbench")
            else:  # a file of this name is the option (a node of the same name would be its schema)
                store.repo.get(registry.group, {}).pop(f"{name}.yaml", None)


def _dataset_common() -> dict[str, Any]:
    from dlbench.config import DataConfig

    return {k: v for k, v in vars(DataConfig()).items()}
