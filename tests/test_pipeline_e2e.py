"""End to end: the real DVC pipeline on a tiny configuration, in a temporary copy of the repo."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deeprubin.config import write_params

from conftest import REPO_ROOT

pytestmark = pytest.mark.e2e

EXPECTED_FIGURES = [
    "reports/transients/figures/confusion_counts.png",
    "reports/transients/figures/confusion_normalised.png",
    "reports/transients/figures/sample_predictions.png",
    "reports/transients/figures/training_curves.png",
    "reports/transients/eda/class_distribution.png",
    "reports/transients/eda/mean_lightcurves.png",
    "reports/transients/eda/color_evolution.png",
]


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="t@example.org", MPLBACKEND="Agg")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    """A git+DVC copy of the project's tracked files with params.yaml composed for experiment=tiny."""
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = REPO_ROOT / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "reports/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    write_params(repo / "params.yaml", ["experiment=tiny"], conf_dir=repo / "conf")
    _run(["git", "init", "-q"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-q", "-m", "tiny"], repo)
    _run(["dvc", "repro"], repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-q", "-m", "tiny baseline results"], repo)
    return repo


def test_repro_writes_metrics_figures_and_no_leakage(tiny_repo):
    metrics = json.loads((tiny_repo / "reports/transients/metrics.json").read_text())
    assert {"accuracy", "macro_f1", "per_class"} <= set(metrics)
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert set(metrics["per_class"]) == {"SNIa", "SNII", "SNIbc", "QSO", "Cepheid", "RRLyrae"}
    for rel in EXPECTED_FIGURES:
        assert (tiny_repo / rel).stat().st_size > 10_000, rel
    manifest = pd.read_parquet(tiny_repo / "data/splits/transients/manifest.parquet")
    assert (manifest.groupby("group_id")["split"].nunique() == 1).all()
    split_report = json.loads((tiny_repo / "data/splits/transients/split_report.json").read_text())
    assert split_report["groups_in_more_than_one_split"] == 0
    assert (tiny_repo / "mlruns.db").exists()
    assert not list(tiny_repo.glob("**/.*.tmp")), "temporary files left behind"


def test_second_repro_is_up_to_date(tiny_repo):
    out = _run(["dvc", "repro"], tiny_repo)
    assert "up to date" in out.lower()


def test_exp_run_set_param_changes_metrics(tiny_repo):
    """`dvc exp run -S` recomposes conf/ into params.yaml; a model group choice changes the metrics."""
    _run(["dvc", "exp", "run", "-S", "experiment=tiny", "-S", "model=gru"], tiny_repo)
    params = (tiny_repo / "params.yaml").read_text()
    assert "GRUClassifier" in params
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=tiny_repo, env=_env(),
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

    _run([sys.executable, "-m", "deeprubin.stages.train", "-m", "experiment=tiny", "model.channels=4,8",
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
    _run(["dvc", "remote", "add", "-f", "-d", "--local", "testremote", str(tmp_path / "remote")], tiny_repo)
    _run(["dvc", "push"], tiny_repo)
    raw.unlink()
    shutil.rmtree(tiny_repo / ".dvc" / "cache")
    _run(["dvc", "pull", "ingest"], tiny_repo)
    assert raw.read_bytes() == before
