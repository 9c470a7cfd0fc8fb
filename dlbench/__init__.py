"""dlbench: config-driven deep-learning training for the classic lecture experiments.

From Python: `dlbench.train(*overrides)` (a Run), `dlbench.load_model(run)`, `dlbench.Run.open(folder)`.
For your own components,
the registries: `from dlbench import MODELS, DATASETS, TASKS, LOSSES` (docs/extending.md).
Importing dlbench imports nothing heavy; each name loads what it needs when first used.
"""

__version__ = "0.2.0"

_EXPORTS = {
    "MODELS": "dlbench.registry",
    "DATASETS": "dlbench.registry",
    "TASKS": "dlbench.registry",
    "LOSSES": "dlbench.registry",
    "OPTIMIZERS": "dlbench.registry",
    "SCHEDULERS": "dlbench.registry",
    "DataSource": "dlbench.data.base",
    "DataInfo": "dlbench.data.info",
    "Task": "dlbench.tasks.base",
    "DlbenchError": "dlbench.errors",
    "train": "dlbench.api",
    "load_model": "dlbench.api",
    "Run": "dlbench.api",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dlbench' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
