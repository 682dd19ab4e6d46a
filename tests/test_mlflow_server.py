"""A training run lands in a real MLflow tracking server (started on a free loopback port)."""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from conftest import free_port
from test_stages import tiny_cfg

pytestmark = pytest.mark.e2e


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start on {url}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_training_run_lands_in_tracking_server(tmp_path, monkeypatch, mlflow_server):
    from deeprubin.stages.augment import run_augment
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split
    from deeprubin.stages.train import run_train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = tiny_cfg(tmp_path)
    cfg.mlflow.tracking_uri = mlflow_server
    run_ingest(cfg)
    run_preprocess(cfg)
    run_split(cfg)
    run_augment(cfg)
    summary = run_train(cfg)

    client = mlflow.tracking.MlflowClient(mlflow_server)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    # each ensemble member's curves under its own prefix (trainer.ensemble_members: 3)
    assert {"member0-train_loss", "member0-val_loss", "member2-val_loss", "val_macro_f1"} <= set(run.data.metrics)
    versions = client.search_model_versions("name='transients-classifier'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    assert summary["model_uri"] == f"models:/transients-classifier/{versions[0].version}"
