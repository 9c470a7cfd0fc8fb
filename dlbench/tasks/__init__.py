"""Tasks: what one step means, one module each, registering into TASKS when imported;
`base.py` has the Task interface."""
