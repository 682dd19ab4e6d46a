"""MLflow tracking: where runs go, how they are named, tagged and nested, and what is logged.

One MLflow experiment per task (``cfg.mlflow.experiment``). A training run is named
``<model>-seed<seed>`` and tagged with the git commit (and whether the work tree was
dirty), the dataset hash, the DVC stage and the sweep id. Runs of one Hydra multirun
are children of one parent run per sweep, so the UI groups them.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

PARENT_TAG = "deeprubin.sweep_parent"


def tracking_uri(configured: str) -> str:
    """``MLFLOW_TRACKING_URI`` from the environment wins over the config.

    Queued DVC experiments run in temporary copies of the repository; pointing the
    variable at an absolute store collects all of them in one place.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def git_state(repo: str | Path = ".") -> tuple[str, bool]:
    """``(commit sha, work tree dirty?)``; ``("unknown", False)`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def flatten(prefix: str, node) -> dict[str, object]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` for MLflow params."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: node}


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def sweep_parent_run(client: MlflowClient, experiment_id: str, sweep_id: str, lock_dir: Path) -> str:
    """The id of the parent run of ``sweep_id``, created by the first job that asks.

    A file lock in the sweep folder serialises the look-up-or-create, so parallel
    jobs (joblib launcher) agree on one parent.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / ".mlflow_parent.lock")):
        found = client.search_runs([experiment_id],
                                   filter_string=f"tags.`{PARENT_TAG}` = '{sweep_id}'", max_results=1)
        if found:
            return found[0].info.run_id
        run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}",
                                tags={PARENT_TAG: sweep_id, "sweep_id": sweep_id})
        return run.info.run_id


def start_training_run(uri: str, experiment: str, *, run_name: str, tags: dict[str, str],
                       sweep_id: str | None = None, sweep_dir: Path | None = None) -> tuple[MlflowClient, str]:
    """Create the MLflow run of one training job (a child of the sweep's parent if in a sweep)."""
    client = MlflowClient(tracking_uri(uri))
    experiment_id = _experiment_id(client, experiment)
    all_tags = dict(tags)
    if sweep_id:
        all_tags["sweep_id"] = sweep_id
        if sweep_dir is not None:
            all_tags["mlflow.parentRunId"] = sweep_parent_run(client, experiment_id, sweep_id, sweep_dir)
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return client, run.info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Log many params in one request (values truncated to MLflow's length limit)."""
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=items[start:start + 100])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
