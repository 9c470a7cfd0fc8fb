"""The Hydra config tree, shipped inside the package (read with pkg://dlbench.configs)."""
