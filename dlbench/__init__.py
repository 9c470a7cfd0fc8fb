"""dlbench: config-driven deep-learning training for the classic lecture experiments."""

__version__ = "0.1.0"
