"""MLflow tracking: where runs go and what is logged besides Lightning's metrics."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger


def tracking_uri(configured: str) -> str:
    """``MLFLOW_TRACKING_URI`` from the environment wins over the config.

    Queued DVC experiments run in temporary copies of the repository; pointing the
    variable at an absolute store collects all of them in one place.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def git_commit(repo: str | Path = ".") -> str:
    """Current git commit (with ``-dirty`` if the work tree has changes), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(prefix: str, node) -> dict[str, object]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` for MLflow params."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: node}


def make_logger(uri: str, experiment: str, run_name: str | None = None) -> MLFlowLogger:
    """A Lightning MLflow logger (per-epoch metrics); the model is logged as an artefact later."""
    return MLFlowLogger(experiment_name=experiment, tracking_uri=tracking_uri(uri), run_name=run_name,
                        log_model=False)
