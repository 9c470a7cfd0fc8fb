"""What a config may not hold: anything that makes Hydra (or Python's logging) import and call
an object of the config's choosing.

dlbench builds models, data and optimizers from registered names, so its own config tree needs
no `_target_` except for the Hydra plugins it chooses (launcher, sweeper, callbacks). A config
composed from the command line, a user's config folder, a checkpoint or a run folder is checked
as a whole, `hydra.*` included, before Hydra starts:

- `_target_`, `_args_`, `_partial_`, `_call_` keys are allowed only with the values that come
  with dlbench's shipped configs and the installed Hydra plugins' own configs;
- no string may build such a key through a resolver (`${oc.create:...}`, `${oc.decode:...}`);
- logging configs (`hydra.job_logging`, `hydra.hydra_logging`) may name only standard handler
  and formatter classes, never a `()` factory;
- `hydra.job.env_set` sets only the variables of an allow-list (threads, GPUs, diagnostics: none
  makes a process load code, as LD_PRELOAD, PYTHON* or CXX would), and `hydra.job.env_copy`
  copies only those (Hydra writes the copies into env_set, saved in the run folder);
- the Optuna sweeper's `custom_search_space` (a function it would import) must stay unset.

Overrides read back from a checkpoint or a run folder pass an allow-list first
(commands/runs.py): they never touch `hydra.*`, name a file or choose the plugins a run imports.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from dlbench.errors import DlbenchError
from dlbench.searchpath import SHIPPED

CALL_KEYS = ("_target_", "_args_", "_partial_", "_call_")
RESOLVERS_THAT_BUILD_NODES = ("oc.create", "oc.decode")
SWEPT = "hydra.sweeper.params"  # its values are overrides, read again in each job
LOGGING_NODES = ("hydra.job_logging", "hydra.hydra_logging")
LOGGING_CLASSES = {
    "logging.StreamHandler",
    "logging.FileHandler",
    "logging.NullHandler",
    "logging.Formatter",
    "logging.handlers.RotatingFileHandler",
    "logging.handlers.TimedRotatingFileHandler",
    "logging.handlers.WatchedFileHandler",
}
LOGGING_TEXT_KEYS = ("filename", "level")  # (the keys of a logging config that may be interpolated)
# a log line's own text, written before each message (to the terminal too): printable, as written
LOGGING_FORMATS = ("format", "datefmt")
# What hydra.job.env_set may set: an allow-list of variables that tune a run (threads, GPUs,
# NCCL's and torch's diagnostics), none of which makes a program load code; any other name
# (LD_PRELOAD, PYTHONSTARTUP, CXX: TorchInductor runs that compiler, ...) is set in the shell.
ENV_SET = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES", "CUDA_LAUNCH_BLOCKING", "CUBLAS_WORKSPACE_CONFIG", "PYTORCH_CUDA_ALLOC_CONF",
    "NCCL_DEBUG", "NCCL_DEBUG_SUBSYS", "NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_P2P_DISABLE",
    "TORCH_NCCL_BLOCKING_WAIT", "TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_DISTRIBUTED_DEBUG",
    "TORCH_CPP_LOG_LEVEL", "TORCH_SHOW_CPP_STACKTRACES", "TOKENIZERS_PARALLELISM", "HYDRA_FULL_ERROR",
)  # fmt: skip
SHIPPED_CONFIGS = SHIPPED


@functools.cache
def trusted_calls() -> frozenset[tuple[str, Any]]:
    """(key, value) pairs of every `_target_`-like key in dlbench's shipped config files and
    in the configs the installed Hydra plugins registered (launchers, sweepers, samplers)."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # (imports Hydra's plugins, which register their configs: cached before, a
    # first call from load_model left out the basic launcher, and every later run was refused)
    pairs: set[tuple[str, Any]] = set()
    for path in SHIPPED_CONFIGS.rglob("*.yaml"):
        text = path.read_text()
        if any(key in text for key in CALL_KEYS):  # parse only the few files that have one
            pairs.update(_call_pairs(yaml.safe_load(text)))

    def walk(repo: dict) -> None:
        for entry in repo.values():
            if isinstance(entry, dict):
                walk(entry)
            else:
                pairs.update(_call_pairs(OmegaConf.to_container(OmegaConf.create(entry.node))))

    walk(ConfigStore.instance().repo.get("hydra", {}))
    return frozenset(pairs)


def _call_pairs(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CALL_KEYS and isinstance(value, (str, bool)):
                yield key, value
            yield from _call_pairs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _call_pairs(value)


def check_config(cfg: DictConfig, source: str = "the config") -> None:
    """Refuse a composed config (the `hydra` node included) that would import or call an
    object that did not come with dlbench or an installed Hydra plugin."""
    trusted = trusted_calls()
    # (first: Hydra copies each into hydra.job.env_set, which is saved in the run folder's
    # .hydra/hydra.yaml; a config from someone else would write your API keys into a folder you share)
    copied = OmegaConf.select(cfg, "hydra.job.env_copy", default=None)
    for name in OmegaConf.to_container(copied, resolve=False) if isinstance(copied, ListConfig) else []:
        if name not in ENV_SET:  # (an interpolation too: its name unseen)
            raise DlbenchError(
                f"{source}: 'hydra.job.env_copy: {name}' is refused: it copies into hydra.job.env_set, "
                f"which sets only {', '.join(ENV_SET)}"
            )
        if name not in os.environ:
            raise DlbenchError(
                f"{source}: hydra.job.env_copy names {name}, which is not set in this environment"
            )
    for path, key, value in _items(cfg, ""):
        where = f"{path}.{key}" if path else str(key)
        if key in CALL_KEYS and (key, value) not in trusted:
            raise refused(where, value, source)
        # an interpolation that could build a node, or a sweep's value (an override's text, which
        # becomes a node in each job); other text is text: a folder named x_target_y
        # (hydra.runtime.cwd) refused every run started in it
        read = "${" in str(value) or path.startswith(SWEPT)
        if (
            isinstance(value, str)
            and read
            and (any(k in value for k in CALL_KEYS) or any(r in value for r in RESOLVERS_THAT_BUILD_NODES))
        ):
            raise refused(where, value, source)
        if path == SWEPT and str(key).lstrip("+~").startswith("hydra"):  # (Hydra's own, per job)
            raise DlbenchError(
                f"{source}: '{where}' is refused: a sweep varies the run's settings, not Hydra's "
                "(its logging config would be built from it in each job)"
            )
        if path.startswith(LOGGING_NODES):
            if key == "()" or (key == "class" and value not in LOGGING_CLASSES):
                raise DlbenchError(
                    f"{source}: '{where}: {value}' is refused: a logging config may name only the "
                    f"standard handlers and formatters ({', '.join(sorted(LOGGING_CLASSES))})"
                )
            written = isinstance(value, str) and "${" not in value and value.isprintable()
            if key in LOGGING_FORMATS and isinstance(value, str) and not written:
                raise DlbenchError(
                    f"{source}: '{where}' is refused: a log line's format is printable text as written "
                    "(no control character or line break, no interpolation): it is written before "
                    "every line, to the terminal too"
                )
            if isinstance(value, str) and "${" in value and key not in LOGGING_TEXT_KEYS:
                raise DlbenchError(
                    f"{source}: '{where}: {value}' is refused: in a logging config, only "
                    f"{', '.join(LOGGING_TEXT_KEYS)} may be interpolated (a node built elsewhere "
                    "escapes these checks)"
                )
        if path == "hydra.job.env_set" and key not in ENV_SET:
            raise DlbenchError(
                f"{source}: '{where}' is refused: hydra.job.env_set sets only variables that make no "
                f"program load code ({', '.join(ENV_SET)}); set {key} in your shell"
            )
    job = OmegaConf.select(cfg, "hydra.job", default=None)
    if isinstance(job, DictConfig) and OmegaConf.is_interpolation(job, "env_set"):  # (its names unseen)
        raise DlbenchError(
            f"{source}: 'hydra.job.env_set: {job._get_node('env_set')._value()}' is refused: name its "
            "variables themselves (hydra.job.env_set.NAME=VALUE), from the allow-list"
        )
    search_space = OmegaConf.select(cfg, "hydra.sweeper.custom_search_space", default=None)
    if search_space is not None:
        raise refused("hydra.sweeper.custom_search_space", search_space, source)


def check_saved_config(cfg: DictConfig, source: str) -> None:
    """A config read back from a checkpoint: dlbench saves it resolved, so it holds no
    interpolation at all (one would run a resolver when the config is read), and nothing
    check_config refuses."""
    for path, key, value in _items(cfg, ""):
        if isinstance(value, str) and "${" in value:
            where = f"{path}.{key}" if path else str(key)
            raise DlbenchError(
                f"{source}: '{where}: {value}' is refused: dlbench saves a run's config resolved, so "
                "something else wrote this interpolation"
            )
    check_config(cfg, source)


def refused(where: str, value: Any, source: str) -> DlbenchError:
    return DlbenchError(
        f"{source}: '{where}: {value}' is refused: a config cannot make dlbench import or call an "
        "object. dlbench builds only registered components, chosen by name (see `dlbench list`); "
        "your own code comes in as a plugin (docs/extending.md)."
    )


def _items(node: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """(path of the parent, key, value) for every entry of a config, without resolving
    interpolations (a value is checked as it is written, so no resolver runs here)."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            child = node._get_node(key)
            value = child if isinstance(child, (DictConfig, ListConfig)) else child._value()
            yield path, key, value if not isinstance(value, (DictConfig, ListConfig)) else None
            yield from _items(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for index in range(len(node)):
            child = node._get_node(index)
            value = child if isinstance(child, (DictConfig, ListConfig)) else child._value()
            yield path, index, value if not isinstance(value, (DictConfig, ListConfig)) else None
            yield from _items(value, f"{path}[{index}]")
