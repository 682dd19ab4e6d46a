"""What every task shares: numerics pinning, reproducibility checks (more moves here with the
core/task redesign)."""
