"""Models, one module per family; importing this package registers them all."""

from dlbench.models import cnn, mlp  # noqa: F401  (register into MODELS)
