"""dlbench's subcommands, one module each: train (the default), eval, predict, list, show,
compare, new, export. `dlbench.cli` reads argv and hands it to one of them."""
