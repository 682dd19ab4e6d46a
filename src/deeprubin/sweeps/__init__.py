"""Collecting sweep results (Hydra multirun / Optuna via MLflow, or DVC experiments) into reports."""
