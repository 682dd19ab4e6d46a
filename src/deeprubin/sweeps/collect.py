"""Read the runs of one sweep into a table: one row per run, params and metrics as columns."""
from __future__ import annotations

import json
import subprocess
from typing import Iterable

import pandas as pd
from mlflow.tracking import MlflowClient

from ..core.tracking import PARENT_TAG, flatten, tracking_uri

METRICS = ("val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy")


def runs_from_mlflow(uri: str, experiment: str, sweep_id: str) -> pd.DataFrame:
    """Child runs tagged ``sweep_id`` (parents excluded): run id, name, status, params, metrics."""
    client = MlflowClient(tracking_uri(uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"MLflow store {tracking_uri(uri)}: no experiment named '{experiment}'")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.sweep_id = '{sweep_id}'",
                              max_results=10_000)
    rows = []
    for run in runs:
        if PARENT_TAG in run.data.tags:
            continue
        row = {"run_id": run.info.run_id, "run_name": run.info.run_name, "status": run.info.status}
        row.update({f"param.{k}": v for k, v in run.data.params.items()})
        row.update({m: run.data.metrics.get(m) for m in METRICS})
        rows.append(row)
    if not rows:
        raise ValueError(f"MLflow experiment '{experiment}': no runs tagged sweep_id='{sweep_id}'")
    return pd.DataFrame(rows)


def runs_from_dvc(metrics_file: str = "reports/transients/metrics.json", repo: str = ".") -> pd.DataFrame:
    """DVC experiments of the workspace's baseline (``dvc exp show --json``): params and test metrics."""
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True,
                                      check=True).stdout)
    rows = []
    for commit in shown:
        for exp in _experiments(commit):
            data = exp.get("data") or {}
            params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
            metrics = (data.get("metrics") or {}).get(metrics_file, {}).get("data", {})
            if not metrics:
                continue
            row = {"run_id": data.get("rev") or exp.get("rev"), "run_name": exp.get("name") or data.get("rev"),
                   "status": "FINISHED"}
            row.update({f"param.{k}": v for k, v in flatten("", params).items()})
            row.update({"test_macro_f1": metrics.get("macro_f1"), "test_accuracy": metrics.get("accuracy")})
            rows.append(row)
    if not rows:
        raise ValueError("dvc exp show: no experiments with metrics; run `dvc exp run` first")
    return pd.DataFrame(rows).drop_duplicates("run_id")


def _experiments(commit: dict) -> Iterable[dict]:
    yield commit
    for group in commit.get("experiments") or []:
        yield from group.get("revs", [])


def varying_params(runs: pd.DataFrame) -> list[str]:
    """The swept params: columns with more than one value among the runs that have them.

    A model-specific param (e.g. ``model.n_heads``) that is merely absent for the other
    models is not swept, and ``model._target_`` says nothing ``model.name`` does not.
    Nor does a param equal to the seed in every run (``augment.seed: ${seed}``): it
    varies in a seed sweep only because it is interpolated from the seed.
    """
    cols = [c for c in runs.columns if c.startswith("param.") and c != "param.model._target_"]
    return [c for c in cols if runs[c].dropna().astype(str).nunique() > 1 and not _follows_seed(runs, c)]


def _follows_seed(runs: pd.DataFrame, param: str) -> bool:
    """Whether ``param`` (not the seed itself) equals ``param.seed`` in every run."""
    if param == "param.seed" or "param.seed" not in runs:
        return False
    return bool((runs[param].astype(str) == runs["param.seed"].astype(str)).all())
