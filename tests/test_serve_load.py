"""benchmarks/serve_load.py, the scoring service's load test (issue 25, point 5): its inputs and errors, and a
tiny run against a real server with the tiny pipeline's model (2 clients, 2 s, 50 batch objects).

The real run is `make bench-serve` (reports/benchmarks/serve.json); timings are never asserted here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT, tiny_env

from benchmarks import serve_load


def _split_rows() -> tuple[pd.DataFrame, pd.Series]:
    lc = pd.DataFrame({"object_id": ["a"] * 3 + ["b"] * 4, "time": np.arange(7.0), "band": "g",
                       "flux": np.arange(7.0) * 10, "flux_err": 1.0})
    return lc, pd.Series({"a": 0.1, "b": np.nan})


def test_replicated_objects_copy_the_split_under_new_ids():
    lc, z = _split_rows()
    table = serve_load.replicated(lc, z, 5)
    ids = pd.unique(table["object_id"]).tolist()
    assert ids == ["a_x0", "b_x0", "a_x1", "b_x1", "a_x2"] and len(table) == 3 * 3 + 2 * 4
    again = table[table["object_id"] == "b_x1"]
    np.testing.assert_array_equal(again["flux"].to_numpy(), lc.loc[lc["object_id"] == "b", "flux"].to_numpy())
    assert (table.loc[table["object_id"].str.startswith("a"), "redshift"] == 0.1).all()
    assert table.loc[table["object_id"].str.startswith("b"), "redshift"].isna().all()


def test_online_payloads_are_single_object_requests():
    lc, z = _split_rows()
    bodies = [json.loads(b) for b in serve_load.online_payloads(lc, z)]
    assert [b["objects"] for b in bodies] == [[{"object_id": "a", "redshift": 0.1}],
                                               [{"object_id": "b", "redshift": None}]]
    assert [len(b["lightcurves"]) for b in bodies] == [3, 4]


def test_no_model_says_to_run_the_pipeline(tmp_path):
    inputs = serve_load.Inputs(tmp_path / "model.ckpt", tmp_path / "lc.parquet", tmp_path / "obj.parquet",
                               tmp_path / "manifest.parquet", "test")
    with pytest.raises(serve_load.BenchmarkError, match=r"no model at .*model\.ckpt: run the pipeline first "
                                                        r"\(make run, i\.e\. dvc repro\)"):
        serve_load.check_inputs(inputs)


@pytest.mark.e2e
def test_a_server_that_does_not_start_shows_its_log(tmp_path):
    with pytest.raises(serve_load.BenchmarkError) as err:
        serve_load.start_server(tmp_path, tmp_path / "tokens.sqlite", tmp_path / "missing.ckpt", [], startup_s=120)
    message = str(err.value)
    assert "exited with status" in message and "missing.ckpt does not exist" in message, message


@pytest.mark.e2e
def test_a_tiny_load_test_writes_its_result(tiny_pipeline, tmp_path):
    cfg, _ = tiny_pipeline
    raw, out = Path(cfg.paths.raw), tmp_path / "serve.json"
    cmd = [sys.executable, "-m", "benchmarks.serve_load", "--clients", "2", "--seconds", "2", "--warmup", "2",
           "--batch-objects", "50", "--checkpoint", str(Path(cfg.paths.models) / "model.ckpt"),
           "--lightcurves", str(raw / "lightcurves.parquet"), "--objects", str(raw / "objects.parquet"),
           "--manifest", str(Path(cfg.paths.splits) / "manifest.parquet"), "--workdir", str(tmp_path / "work"),
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=tiny_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "online:" in proc.stderr and "batch endpoint:" in proc.stderr     # progress on stderr
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m benchmarks.serve_load --clients 2")
    assert result["code_hash"] and result["machine"]["cpu_count"] >= 1
    assert result["settings"]["clients"] == 2 and result["settings"]["model_version"].startswith("sha256:")

    online = result["online"]
    assert online["requests"] > 0 and online["errors"] == 0 and online["errors_by_status"] == {}
    assert online["status_counts"] == {"200": online["requests"]}
    assert set(online["latency_s"]) == {"p50", "p90", "p99", "max", "mean"}
    assert 0 < online["latency_s"]["p50"] <= online["latency_s"]["p99"] <= online["latency_s"]["max"]
    assert online["requests_per_s"] > 0

    batch = result["batch"]
    assert batch["job_status"] == "done" and batch["n_done"] == batch["n_objects"] == batch["objects"] == 50
    assert batch["matches_predict_path"] is True                 # the job's numbers are the predict path's
    assert batch["seconds_per_object"] > 0 and batch["lightcurves_per_s"] > 0
    assert batch["predict_path"]["seconds_per_object"] > 0 and batch["endpoint_vs_predict"] > 0

    assert set(result["targets"]) >= {"online_latency_p99_s", "batch_endpoint_vs_predict"}
    assert set(result["meets"]) == {"online_latency_p99_s", "online_errors", "batch_endpoint_vs_predict"}
    assert result["meets"]["online_errors"] is True
    assert result["at_target_settings"] == {"online": False, "batch": False}
