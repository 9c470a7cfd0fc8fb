"""Models, one module per family; importing this package registers them all."""

from dlbench.models import mlp  # noqa: F401  (registers into MODELS)
