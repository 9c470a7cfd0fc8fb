"""What every task shares: the loop, devices, precision, checkpoints, logging."""
