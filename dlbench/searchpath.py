"""Where configs come from: the user's config folders first, then dlbench's shipped tree.

A `configs/` folder in the current directory (unless that directory is a run's folder, which may
have come from someone else), the folders in DLBENCH_CONFIG_PATH (separated like PATH) and
`--config-dir DIR` are searched before the shipped tree, so a user's
`configs/experiment/flowers.yaml` is `experiment=flowers`, and a user's file with the name of a
shipped one replaces it. Hydra learns the order from a search-path plugin
(hydra_plugins/dlbench_searchpath), so Hydra's own composition and dlbench's checks see the
same files.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "DLBENCH_CONFIG_PATH"


def shipped_tree() -> Path:
    """dlbench's own config tree: `configs/` at the top of the repository, installed inside the
    package as `dlbench.configs` (pyproject.toml maps it); in a source checkout that is not
    installed, the folder beside the package."""
    import importlib.util

    spec = importlib.util.find_spec("dlbench.configs")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "configs"


SHIPPED = shipped_tree()


def user_config_dirs() -> list[Path]:
    """The user's config folders, first found first: DLBENCH_CONFIG_PATH (where --config-dir
    goes too), then ./configs."""
    from dlbench.rundir import holds_run

    dirs = [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    here = Path(".")
    if Path("configs").is_dir() and not ((here / ".hydra").is_dir() or holds_run(here)):
        dirs.append(Path("configs"))  # (a run folder is someone's results, not your project)
    out: list[Path] = []
    for folder in dirs:
        folder = folder.resolve()
        if folder not in out and folder != SHIPPED.resolve():
            out.append(folder)
    return out


def config_dirs() -> list[Path]:
    """Every config folder, in the order a config name is looked up."""
    return [*user_config_dirs(), SHIPPED]


def add_config_dir(folder: str) -> None:
    """`--config-dir DIR`: search DIR first (for this process and the ones it starts)."""
    from dlbench.errors import DlbenchError

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise DlbenchError(f"--config-dir {folder}: no such folder")
    os.environ[ENV] = os.pathsep.join(
        [str(path.resolve()), *filter(None, os.environ.get(ENV, "").split(os.pathsep))]
    )


def is_dlbench_path(path: str) -> bool:
    """Whether a Hydra search-path entry is dlbench's shipped tree."""
    return path in ("pkg://dlbench.configs", "pkg://dlbench/configs") or path.rstrip("/").endswith(
        str(SHIPPED.resolve())
    )
