"""What Hydra's ConfigStore holds for dlbench, registered when this module is imported (by
compose.py, before any compose): the run's schema (`dlbench_schema`, config.RunConfig), every
registered component's config node (`store_config_nodes`), and the `${run_id:}` resolver that
names a run's folder."""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from hydra.core.config_store import ConfigNode, ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from dlbench.config import AugmentConfig, DataConfig, RunConfig
from dlbench.registry import DATASETS, REGISTRIES


class LazyNode(ConfigNode):
    """A ConfigStore entry that keeps its plain dict until Hydra loads it. `ConfigStore.store`
    makes a DictConfig of each node at once, and each compose deep-copies the whole store: for
    ~150 component nodes that cost about 0.1 s of every `--cfg` and run start, for the few
    nodes a run chooses."""

    @property
    def node(self) -> DictConfig:
        if not isinstance(self._node, DictConfig):
            self._node = OmegaConf.create(self._node)
        return self._node

    @node.setter
    def node(self, value: Any) -> None:
        self._node = value


def store_config_nodes(files: Mapping[str, Iterable[str]]) -> None:
    """Put every registered component's config node in Hydra's ConfigStore: as `<group>/_<name>`,
    the code's defaults a YAML file extends (`defaults: [_resnet, _self_]`) so it holds only what
    differs, and, unless a config file of that name exists (`files`: the options of each group
    found in the config folders), as the option `<group>/<name>` itself, so `model=tiny_net`
    needs no YAML file."""
    repo = ConfigStore.instance().repo
    # the keys every dataset node has; its augmentations each off, so `dataset.augment.hflip=0.5`
    # sets one on any data (a null took none: `Unknown key`)
    common = {**vars(DataConfig()), "augment": dataclasses.asdict(AugmentConfig())}
    for registry in REGISTRIES.values():
        folder = repo.setdefault(registry.group, {})
        with_files = set(files.get(registry.group, ()))
        for name in registry.names():
            node = registry.config_node(name)
            if registry is DATASETS:
                node = {**node, **common, "name": name}
            # a file of this name is the option (a node of the same name would be its schema)
            names = [f"_{name}"] if name in with_files else [f"_{name}", name]
            for option in names:
                folder[f"{option}.yaml"] = LazyNode(f"{option}.yaml", node, registry.group, None, "dlbench")
            if name in with_files:
                folder.pop(f"{name}.yaml", None)


# the groups whose files start from the code's node (dlbench's own do: `defaults: [_resnet]`); an
# optimizer's or a scheduler's file names only what it sets, and dlbench fills in the rest
# (a scheduler's total_steps) when it builds it
WITH_CODE_DEFAULTS = ("dataset", "model", "task")


def with_code_defaults(config_path: str, config: Any) -> Any:
    """A user's file for a registered component (`configs/dataset/blobs.yaml` holding `name:
    blobs` and `n: 600`, the Hydra habit of one file per option) starts from the code's node:
    `_blobs` goes first in its defaults list, as in dlbench's own files, unless it is there
    already. The component is the file's `name:`, else the file's own name; anything else
    (an experiment preset, a file of no registered component) is read as it is."""
    group, _, file = config_path.partition("/")
    if not OmegaConf.is_dict(config) or group not in WITH_CODE_DEFAULTS:
        return config
    raw = OmegaConf.to_container(config, resolve=False)  # (`name: ${dataset.task}` stays as written)
    named = raw.get("name") if isinstance(raw, dict) else None
    name = named if isinstance(named, str) and "${" not in named else file.removesuffix(".yaml")
    defaults = config.get("defaults")
    if f"_{name}.yaml" not in ConfigStore.instance().repo.get(group, {}):
        return config
    if defaults is not None and not OmegaConf.is_list(defaults):
        return config  # Hydra says what is wrong with it
    listed = [str(d) for d in defaults or []]
    if f"_{name}" not in listed:
        with open_dict(config):
            config.defaults = [f"_{name}", *(defaults or [])]
    return config


def run_id() -> str:
    """A run directory's name: the time it started and a random tag, so two runs started in
    the same second stay apart. One command's checks and Hydra's job agree on it through
    DLBENCH_RUN_ID, as do the processes of one distributed run (engine/distributed.py)."""
    return os.environ.get("DLBENCH_RUN_ID") or new_run_id()


def new_run_id() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S") + "_" + secrets.token_hex(3)


ConfigStore.instance().store(name="dlbench_schema", node=RunConfig)
# cached per config, so a sweep's directory resolves to the same name everywhere it is used
OmegaConf.register_new_resolver("run_id", run_id, use_cache=True, replace=True)
