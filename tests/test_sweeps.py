"""Sweeps at tiny size: Optuna (with a failing trial), joblib multirun, and the summary."""
from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from conftest import build_tiny_repo, run_in

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return build_tiny_repo(tmp_path_factory.mktemp("sweeps") / "repo")


def _runs(repo: Path, sweep_id: str):
    client = mlflow.tracking.MlflowClient(f"sqlite:///{repo / 'mlruns.db'}")
    exp = client.get_experiment_by_name("deeprubin-transients")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.sweep_id = '{sweep_id}'")


def test_optuna_sweep_records_failed_trial_and_goes_on(repo):
    run_in([sys.executable, "-m", "deeprubin.stages.train", "+sweep=optuna", "experiment=tiny",
            "hydra.sweeper.n_trials=4", "model.kernel_size=choice(1,3)", "hydra.sweep.dir=multirun/optuna-tiny"],
           repo)
    results = yaml.safe_load((repo / "multirun/optuna-tiny/optimization_results.yaml").read_text())
    assert results["best_params"]["tasks.transients.model.kernel_size"] == 3  # the short key, made full
    runs = _runs(repo, "optuna-tiny")
    statuses = [r.info.status for r in runs if "deeprubin.sweep_parent" not in r.data.tags]
    assert "FAILED" in statuses and "FINISHED" in statuses  # kernel_size=1 is invalid for the TCN
    parents = [r for r in runs if "deeprubin.sweep_parent" in r.data.tags]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 4


def test_joblib_multirun_and_summary(repo):
    run_in([sys.executable, "-m", "deeprubin.stages.train", "+sweep=models_seeds", "experiment=tiny",
            "model=tcn,gru", "seed=0,1", "hydra.sweep.dir=multirun/ms-tiny"], repo)
    out = run_in([sys.executable, "-m", "deeprubin.sweeps.summary", "--sweep-id", "ms-tiny"], repo)
    assert "reports/sweeps/ms-tiny" in out
    summary = pd.read_csv(repo / "reports/sweeps/ms-tiny/summary.csv")
    assert len(summary) == 4 and set(summary["status"]) == {"FINISHED"}
    table = pd.read_csv(repo / "reports/sweeps/ms-tiny/model_comparison.csv")
    assert set(table["model"]) >= {"tcn", "gru"}
    assert (table.loc[table["model"].isin(["tcn", "gru"]), "val_macro_f1_count"] == 2).all()
    figures = {p.name for p in (repo / "reports/sweeps/ms-tiny").glob("*.png")}
    assert "model_comparison_val_macro_f1.png" in figures
    assert "val_macro_f1_vs_seed.png" in figures


def test_summary_from_dvc_experiments(repo):
    run_in(["dvc", "exp", "run", "-S", "experiment=tiny", "-S", "tasks.transients.model.channels=4"], repo)
    run_in([sys.executable, "-m", "deeprubin.sweeps.summary", "--from", "dvc", "--name", "dvc-tiny"], repo)
    summary = pd.read_csv(repo / "reports/sweeps/dvc-tiny/summary.csv")
    assert len(summary) >= 2 and summary["test_macro_f1"].notna().all()


def test_model_comparison_ignores_params_that_follow_the_seed():
    from deeprubin.sweeps.collect import varying_params
    from deeprubin.sweeps.summary import model_comparison

    runs = pd.DataFrame({
        "status": ["FINISHED"] * 4,
        "param.seed": ["0", "1", "0", "1"],
        "param.augment.seed": ["0", "1", "0", "1"],  # interpolated ${seed}: part of the seed
        "param.model.name": ["tcn", "tcn", "gru", "gru"],
        "val_macro_f1": [0.5, 0.7, 0.4, 0.6],
    })
    assert varying_params(runs) == ["param.seed", "param.model.name"]  # no figure against augment.seed either
    table = model_comparison(runs, ["val_macro_f1"]).set_index("model")
    assert set(table.index) == {"tcn", "gru"}
    assert table["val_macro_f1_count"].tolist() == [2, 2]
    assert table.loc["tcn", "val_macro_f1_mean"] == pytest.approx(0.6)
    runs["param.augment.seed"] = ["0", "1", "1", "0"]  # varied independently: a setting to compare
    assert len(model_comparison(runs, ["val_macro_f1"])) == 4
