"""What every task shares: the canonical tables and their validation, io, config and its schema,
the stage entry helper and the numerics pinning, the grouped split, data-quality flags,
checkpoints, MLflow tracking, metrics and calibration, the figure style, and the
reproducibility tools (``make verify``, ``make deps``). See docs/layout.md."""
