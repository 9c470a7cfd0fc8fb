from dlbench.cli import entrypoint

entrypoint()
