"""Tasks: what one step means; importing this package registers them all."""

from dlbench.tasks import classification, forecast, gan, minimize, regression, seq2seq  # noqa: F401  (register into TASKS)
from dlbench.tasks.base import Task

__all__ = ["Task"]
