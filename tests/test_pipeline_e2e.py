"""End to end: the real DVC pipeline on a tiny configuration, in a temporary copy of the repo."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO_ROOT, build_tiny_repo, run_in, tiny_env

pytestmark = pytest.mark.e2e

EXPECTED_FIGURES = [
    "reports/transients/figures/confusion_counts.png",
    "reports/transients/figures/confusion_normalised.png",
    "reports/transients/figures/sample_predictions.png",
    "reports/transients/figures/training_curves.png",
    "reports/transients/eda/class_distribution.png",
    "reports/transients/eda/mean_lightcurves.png",
    "reports/transients/eda/color_evolution.png",
    "reports/transients/figures/roc_pr.png",
    "reports/transients/calibration/figures/reliability_width.png",
    "reports/transients/calibration/figures/reliability_mass.png",
    "reports/transients/calibration/figures/reliability_per_class.png",
    "reports/transients/uncertainty/figures/uncertainty.png",
    "reports/transients/early/figures/early_classification.png",
]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.py"))


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return build_tiny_repo(tmp_path_factory.mktemp("e2e") / "repo")


def test_repro_writes_metrics_figures_and_no_leakage(tiny_repo):
    metrics = json.loads((tiny_repo / "reports/transients/metrics.json").read_text())
    assert {"accuracy", "macro_f1", "per_class"} <= set(metrics)
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert set(metrics["per_class"]) == {"SNIa", "SNII", "SNIbc", "SLSN", "QSO", "Cepheid", "RRLyrae", "EB"}
    # The tiny repository has no real data beside it: the sim-vs-real check records a skip.
    assert json.loads((tiny_repo / "reports/transients/sim_vs_real.json").read_text())["skipped"] is True
    for rel in EXPECTED_FIGURES:
        assert (tiny_repo / rel).stat().st_size > 10_000, rel
    manifest = pd.read_parquet(tiny_repo / "data/splits/transients/manifest.parquet")
    assert (manifest.groupby("group_id")["split"].nunique() == 1).all()
    split_report = json.loads((tiny_repo / "data/splits/transients/split_report.json").read_text())
    assert split_report["groups_in_more_than_one_split"] == 0
    assert (tiny_repo / "mlruns.db").exists()
    # No ../shared/data/real beside the temporary repo: real_sky records the skip, figure included.
    real_sky = json.loads((tiny_repo / "reports/transients/real_sky.json").read_text())
    assert real_sky["skipped"] is True and "input not found" in real_sky["reason"]
    assert (tiny_repo / "reports/transients/real_sky/real_sky.png").stat().st_size > 5_000
    assert not list(tiny_repo.glob("**/.*.tmp")), "temporary files left behind"


def test_evaluation_reports_calibration_uncertainty_and_early_scores(tiny_repo):
    reports = tiny_repo / "reports/transients"
    calibration = json.loads((reports / "calibration/metrics.json").read_text())
    for method in ("uncalibrated", "temperature", "isotonic"):
        assert {"ece_width", "ece_mass", "brier", "nll"} <= set(calibration["test"][method])
    saved = json.loads((tiny_repo / "models/transients/calibration.json").read_text())
    # the calibrator the validation-set selection chose (method: select) is the saved default
    assert saved["default"] == calibration["selection"]["chosen"] == calibration["default_method"]
    assert saved["fitted_on"]["split"] == "val"
    metrics = json.loads((reports / "metrics.json").read_text())
    assert {"weighted_f1", "mcc", "roc_auc_macro", "plasticc_log_loss"} <= set(metrics)
    ci = metrics["confidence_intervals"]["macro_f1"]
    assert ci["low"] <= ci["value"] <= ci["high"]
    uncertainty = json.loads((reports / "uncertainty/metrics.json").read_text())
    assert set(uncertainty["auroc_misclassification"]) == {"predictive_entropy", "mutual_information",
                                                           "1_minus_max_probability"}
    early = json.loads((reports / "early_classification.json").read_text())
    assert [e["days"] for e in early["epochs"]] == [5.0, 20.0]
    assert all(0 <= e["accuracy"] <= 1 for e in early["epochs"])


def test_index_lists_every_figure_as_png_and_pdf_with_caption(tiny_repo):
    index = (tiny_repo / "reports/index.md").read_text()
    collected = sorted((tiny_repo / "reports/figures").rglob("*.png"))
    assert len(collected) >= len(EXPECTED_FIGURES)
    for png in collected:
        assert png.with_suffix(".pdf").stat().st_size > 1000, png
        assert str(png.relative_to(tiny_repo / "reports")) in index, png
    assert "figures/calibrate@transients/reliability_width.png" in index
    assert "figures/early/early_classification.png" in index
    assert "(no PDF)" not in index and "| — | `" not in index, "a figure without caption or PDF"
    assert "reports/transients/metrics.json" in index and "`absent`" not in index   # every listed file exists


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_run_against_the_pipeline_outputs(tiny_repo, notebook):
    """The jupytext notebooks execute top to bottom on the tiny pipeline's outputs."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(notebook)
    assert all(not cell.get("outputs") for cell in nb.cells), "notebooks are stored without outputs"
    workdir = tiny_repo / "notebooks"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_second_repro_is_up_to_date(tiny_repo):
    out = run_in(["dvc", "repro"], tiny_repo)
    assert "up to date" in out.lower()


def test_exp_run_set_param_changes_metrics(tiny_repo):
    """`dvc exp run -S` recomposes conf/ into params.yaml; a model group choice changes the metrics."""
    run_in(["dvc", "exp", "run", "-S", "experiment=tiny", "-S", "model=gru"], tiny_repo)
    params = (tiny_repo / "params.yaml").read_text()
    assert "GRUClassifier" in params
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=tiny_repo, env=tiny_env(),
                                      capture_output=True, text=True, check=True).stdout)
    f1s = set()
    for commit in shown:
        for exp in [commit] + [e for group in commit.get("experiments") or [] for e in group.get("revs", [])]:
            data = (exp.get("data") or {})
            m = (data.get("metrics") or {}).get("reports/transients/metrics.json", {}).get("data", {})
            if "macro_f1" in m:
                f1s.add((exp.get("name") or exp.get("rev"), m["accuracy"], m["macro_f1"]))
    assert len({(a, f) for _, a, f in f1s}) >= 2, f"expected different metrics in dvc exp show, got {f1s}"


def test_hydra_multirun_logs_each_job_to_mlflow(tiny_repo):
    """A stage run by hand with `-m` sweeps, each job in its own folder and MLflow run."""
    import mlflow

    run_in([sys.executable, "-m", "deeprubin.stages.train", "-m", "experiment=tiny", "model.channels=4,8",
          "trainer.max_epochs=1", "hydra.sweep.dir=multirun/test"], tiny_repo)
    checkpoints = sorted((tiny_repo / "multirun/test").glob("*/model/model.ckpt"))
    assert len(checkpoints) == 2
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tiny_repo / 'mlruns.db'}")
    exp = client.get_experiment_by_name("deeprubin-transients")
    channels = {r.data.params.get("model.channels") for r in client.search_runs([exp.experiment_id])}
    assert {"4", "8"} <= channels


def test_dvc_push_pull_round_trips_raw_data(tiny_repo, tmp_path):
    """The raw data survive `dvc push` to a (temporary) remote and `dvc pull` back."""
    raw = tiny_repo / "data/raw/transients/lightcurves.parquet"
    before = raw.read_bytes()
    run_in(["dvc", "remote", "add", "-f", "-d", "--local", "testremote", str(tmp_path / "remote")], tiny_repo)
    run_in(["dvc", "push"], tiny_repo)
    raw.unlink()
    shutil.rmtree(tiny_repo / ".dvc" / "cache")
    run_in(["dvc", "pull", "ingest"], tiny_repo)
    assert raw.read_bytes() == before
