"""dlbench's Hydra config tree. It lives at the top of the repository and is installed inside
the package as `dlbench.configs` (pyproject.toml's package-dir), so it ships in the wheel."""
