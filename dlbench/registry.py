"""One Registry class; a registry per kind of component; build(cfg) from a `name:` key.

A config node names its component with `name:` and passes the rest as keyword arguments:

    optimizer: {name: sgd, lr: 0.1, momentum: 0.9}   ->   torch.optim.SGD(params, lr=0.1, momentum=0.9)

Only names registered here can be built, so a config file or a command line can never import
and call an arbitrary object.

dlbench's own components are listed in `registry_index.json` (name, module, description, config
node), so `dlbench --help`, `list` and `--cfg` need no torch and no model family: `get(name)`
imports just the module that registers that name (MMEngine's rule: never "registered but not
imported"). `python -m dlbench.registry` rewrites the index; a test checks it against the real
registrations.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from dlbench.config import SCHEDULE_LENGTHS
from dlbench.errors import DlbenchError, as_user_error, unknown_name
from dlbench.torch_components import check_meaning, register_losses, register_optimizers, register_schedulers
from dlbench.typecheck import accepts_var_kwargs, parameter_hints
from dlbench.values import check_values


class Registry:
    """Named constructors of one kind (models, datasets, ...).

    `supplied` names the constructor arguments that dlbench passes itself (the parameters of an
    optimizer, the model of a task); they cannot be set from a config. `facts` names the
    arguments filled from the data (a model's `input_shape`, `num_outputs`, ...), or from the
    run (a schedule's length), unless the config sets them. `group` is the config group whose
    options these are (`model=resnet`).
    """

    def __init__(
        self,
        kind: str,
        group: str | None = None,
        modules: Iterable[str] = (),
        supplied: Iterable[str] = (),
        facts: Iterable[str] = (),
        from_torch: Callable[[Registry], None] | None = None,
    ):
        self.kind, self.group = kind, group or kind
        self.supplied = frozenset(supplied)
        self.facts = frozenset(facts)
        self.modules = list(modules)  # every module that registers into it (for the index)
        self._from_torch = from_torch  # registers torch's own classes, when first needed
        self._entries: dict[str, Callable[..., Any]] = {}
        self._new_modules_loaded = False

    def _indexed(self) -> dict[str, dict[str, Any]]:
        """dlbench's own names from the index, after importing any module the index does not
        know yet (a file just added: its names count before `python -m dlbench.registry`)."""
        if not self._new_modules_loaded:
            self._new_modules_loaded = True
            known = set(read_index().get("modules", {}).get(self.kind, []))
            for module in self.modules:
                if module not in known:
                    importlib.import_module(module)
        return read_index().get(self.kind, {})

    def register(self, name: str | None = None) -> Callable[[Callable], Callable]:
        """Decorator: `@MODELS.register("mlp")` (the function's name when none is given)."""

        def decorate(fn: Callable) -> Callable:
            self.add(name or fn.__name__, fn)
            return fn

        return decorate

    def add(self, name: str, fn: Callable[..., Any]) -> None:
        shipped = self._indexed().get(name)
        taken = self._entries.get(name)
        if taken is not None and same_definition(taken, fn):  # (a notebook's cell run again: the new one)
            taken = None
        if (taken is not None and taken is not fn) or (
            taken is None and shipped is not None and shipped["module"] != getattr(fn, "__module__", None)
        ):
            first = origin_of(taken) if taken is not None else shipped["module"]
            raise DlbenchError(
                f"{self.kind} '{name}' is registered twice: by {first} and by {origin_of(fn)}; "
                "register yours under another name"
            )
        self._entries[name] = fn

    def load_all(self) -> None:
        """Import every module that registers into this registry (torch's classes included)."""
        for module in self.modules:
            importlib.import_module(module)
        if self._from_torch is not None:
            self._from_torch(self)
            self._from_torch = None

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names (dlbench's from the index, and any registered since), sorted,
        filtered by a wildcard pattern such as '*resnet*'."""
        return sorted(n for n in {*self._indexed(), *self._entries} if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> Callable[..., Any]:
        """The constructor registered under `name`, importing the module that registers it."""
        if name not in self._entries and (shipped := self._indexed().get(name)) is not None:
            if shipped["origin"] == "torch" and self._from_torch is not None:
                self._from_torch(self)
                self._from_torch = None
            else:
                importlib.import_module(shipped["module"])
        if name not in self._entries:
            raise unknown_name(self.kind, name, self.names())
        return self._entries[name]

    def name_of(self, fn: Callable[..., Any]) -> str | None:
        """The name `fn` is registered under, of those imported so far (imports no module)."""
        return next((name for name, entry in self._entries.items() if entry is fn), None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._indexed()

    def description(self, name: str) -> str:
        """The first paragraph of the constructor's docstring, on one line."""
        if name not in self._entries and name in self._indexed():
            return self._indexed()[name]["doc"]
        fn = self.get(name)
        own = fn.__dict__.get("__doc__") if isinstance(fn, type) else fn.__doc__  # (not a base class's)
        doc = inspect.cleandoc(own or "")
        return " ".join(doc.split("\n\n")[0].split())

    def origin(self, name: str) -> str:
        """Where a component comes from: "dlbench", "torch", or the user's module."""
        if name not in self._entries and name in self._indexed():
            return self._indexed()[name]["origin"]
        return origin_of(self.get(name))

    def taking(self, key: str, but: object = None) -> list[str]:
        """The options whose constructors take `key` (`momentum`: sgd, rmsprop, ...), but `but`."""
        return [n for n in self.names() if n != but and key in self.config_node(n)]

    def config_node(self, name: str) -> dict[str, Any]:
        """The config node a registered constructor implies: its name and every keyword it takes,
        with the default written in its signature. A parameter without a default is `???`
        (Hydra's "must be set"); one the data fills in is null."""
        if name not in self._entries and name in self._indexed():
            return dict(self._indexed()[name]["node"])
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
        if taken := sorted(
            set(hints) & set(reserved or {})
        ):  # (dlbench's value went to the loader, its default to fn)
            raise DlbenchError(
                f"{self.kind} '{node['name']}' takes {', '.join(taken)}, which dlbench reads itself for "
                f"every {self.kind} ({', '.join(f'{where}.{k}' for k in taken)}): rename that parameter"
            )
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
        if origin_of(fn) == "torch":
            check_meaning(fn, known, where)

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
        signature = inspect.signature(fn)
        parameters = signature.parameters
        for key in self.facts & set(parameters):
            if kwargs.get(key) is None and facts is not None:
                kwargs[key] = getattr(facts, key)
        lacking = sorted(  # facts it must have that the data has not (a seq2seq model on digits)
            key
            for key in self.facts & set(parameters)
            if kwargs.get(key) is None and parameters[key].default is inspect.Parameter.empty
        )
        if lacking and facts is not None:
            data = getattr(facts, "name", None)
            raise DlbenchError(
                f"{where}={node['name']} needs the data's {' and '.join(lacking)}, which "
                f"{f'dataset={data}' if data else 'this data'} does not have: it is made for another "
                f"kind of data (dlbench list {self.kind}s {node['name']} shows what it takes)"
            )
        for key, value in kwargs.items():  # (Hydra reads `0` as an int: OneCycleLR refused pct_start=0)
            default = parameters[key].default if key in parameters else None
            if isinstance(default, float) and type(value) is int and origin_of(fn) == "torch":
                kwargs[key] = float(value) if abs(value) < 2**1023 else value  # (10**400: torch's message)
        try:
            signature.bind(**kwargs, **supplied)
        except TypeError as err:
            raise DlbenchError(f"{where} ({self.kind} '{node['name']}'): {err}") from err
        try:
            return fn(**kwargs, **supplied)
        except DlbenchError:
            raise
        except (TypeError, ValueError, RuntimeError, ArithmeticError, LookupError) as err:
            if isinstance(known := as_user_error(err), DlbenchError):  # out of memory
                raise known from err
            if origin_of(fn) != "torch" and not raised_in_torch(err):
                raise
            said = err.args[0] if isinstance(err, KeyError) and err.args else err  # (not its repr)
            raise DlbenchError(f"{where} ({self.kind} '{node['name']}'): {said}") from err


def same_definition(old: Callable, new: Callable) -> bool:
    """Whether `new` is `old` defined again where it was: a notebook's (or script's) cell run
    again, `__main__`'s function or class (renamed, or a class in place of a function: the
    session's own); not another module's component taking its name (two plugins' are refused)."""
    return getattr(old, "__module__", None) == getattr(new, "__module__", None) == "__main__"


def raised_in_torch(err: BaseException) -> bool:
    """Whether torch's own code raised `err` (its check of a value: a layer of -1 features),
    not dlbench's or a plugin's."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}torch{os.sep}" in tb.tb_frame.f_code.co_filename


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


MODEL_FACTS = ("input_shape", "num_outputs", "num_classes", "vocab_size", "target_vocab_size")


def family(package: str) -> list[str]:
    """Every module of one of dlbench's packages (`dlbench.models`: the model families), found on
    disk: a new file is a new family, with no list to update."""
    folder = Path(__file__).parent.joinpath(*package.split(".")[1:])
    return [f"{package}.{p.stem}" for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")]


MODELS = Registry("model", modules=family("dlbench.models"), facts=MODEL_FACTS)
DATASETS = Registry("dataset", modules=family("dlbench.data"))
TASKS = Registry("task", modules=family("dlbench.tasks"), supplied=["model", "loss", "data"])
LOSSES = Registry("loss", from_torch=register_losses)
OPTIMIZERS = Registry("optimizer", supplied=["params"], from_torch=register_optimizers)
SCHEDULERS = Registry(
    "scheduler",
    modules=["dlbench.engine.optim"],
    supplied=["optimizer"],
    facts=SCHEDULE_LENGTHS,  # (torch's own default, polynomial_lr's total_iters=5, ended every run at 5)
    from_torch=register_schedulers,
)

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "datasets": DATASETS,
    "tasks": TASKS,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
}


INDEX_FILE = Path(__file__).parent / "registry_index.json"
REBUILDING = []  # non-empty while write_index rebuilds it: the old one (a name moved) is not read


@cache
def read_index() -> dict[str, dict[str, dict[str, Any]]]:
    """dlbench's own components by kind: {name: {module, origin, doc, node}}."""
    if REBUILDING or not INDEX_FILE.is_file():
        return {}
    return json.loads(INDEX_FILE.read_text())


def build_index() -> dict[str, dict[str, dict[str, Any]]]:
    """The index, from the real registrations (every module imported)."""
    index: dict[str, dict[str, dict[str, Any]]] = {}
    for registry in REGISTRIES.values():
        registry.load_all()
        index[registry.kind] = {
            name: {
                "module": fn.__module__,
                "origin": origin_of(fn),
                "doc": registry.description(name),
                "node": registry.config_node(name),
            }
            for name, fn in sorted(registry._entries.items())
            if origin_of(fn) in ("dlbench", "torch")
        }
    index["modules"] = {registry.kind: registry.modules for registry in REGISTRIES.values()}
    return index


def write_index() -> None:
    REBUILDING.append(True)
    read_index.cache_clear()
    INDEX_FILE.write_text(json.dumps(build_index(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {INDEX_FILE}", file=sys.stderr)


if __name__ == "__main__":  # python -m dlbench.registry: rewrite the index after adding a component
    from dlbench import registry  # the module the components register into (this file runs as __main__)

    registry.write_index()
