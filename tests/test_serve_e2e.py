"""The scoring service as a real uvicorn server (``python -m deeprubin.serve``) on a free loopback port,
with the tiny pipeline's model: scores equal the batch predict path's, and auth, limits and metrics."""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import free_port, tiny_env
from deeprubin.core import io
from test_serve import parse_metrics

pytestmark = pytest.mark.e2e

#: Settings of the test server: a rate limit the test can exceed quickly, limits it can reach.
RATE = ("serve.rate_limit.per_s=0.2", "serve.rate_limit.burst=2")
MAX_BODY = 1_000_000
STARTUP_S = 120


def tokens_cli(store: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "deeprubin.serve.tokens", "--store", str(store), *args],
                          capture_output=True, text=True, env=tiny_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def request(url: str, method: str = "GET", payload=None, token: str | None = None):
    """``(status, headers, body)``; the body parsed as JSON when it is JSON."""
    data = None if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=STARTUP_S) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        status, hdrs, raw = err.code, dict(err.headers), err.read()
    body = json.loads(raw) if "json" in hdrs.get("content-type", "") else raw.decode()
    return status, hdrs, body


@pytest.fixture(scope="module")
def server(tiny_pipeline, tmp_path_factory):
    cfg, _ = tiny_pipeline
    root = tmp_path_factory.mktemp("serve_e2e")
    store, checkpoint = root / "tokens.sqlite", Path(cfg.paths.models) / "model.ckpt"
    tokens = {"scorer": tokens_cli(store, "create", "--name", "scorer", "--unlimited"),
              "limited": tokens_cli(store, "create", "--name", "limited"),
              "leaver": tokens_cli(store, "create", "--name", "leaver")}
    port = free_port()
    cmd = [sys.executable, "-m", "deeprubin.serve", f"serve.port={port}", f"serve.tokens={store}",
           f"serve.models.transients.checkpoint={checkpoint}", *RATE, f"serve.limits.max_body_bytes={MAX_BODY}",
           "serve.limits.max_objects=20", f"hydra.run.dir={root / 'hydra'}"]
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(cmd, cwd=root, env=tiny_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                if request(f"{url}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the service did not start on {url}:\n{(root / 'server.log').read_text()[-4000:]}")
            time.sleep(0.5)
        yield SimpleNamespace(url=url, tokens=tokens, store=store, cfg=cfg, checkpoint=checkpoint)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _json_rows(table: pd.DataFrame) -> list[dict]:
    """Table rows as JSON objects: NaN -> null, numpy scalars -> Python ones (exact float64)."""
    out = []
    for row in table.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v.item() if hasattr(v, "item") else v)
                    for k, v in row.items()})
    return out


def test_scores_equal_the_batch_predict_path(server, monkeypatch):
    """The service's probabilities are the predict path's, bit for bit (JSON floats round-trip exactly:
    both sides write the shortest repr that reads back as the same float64)."""
    from deeprubin.core import numerics
    from deeprubin.core.quality import check_quality_config, quality_table, unusable_mask
    from deeprubin.core.schema import validate_tables
    from deeprubin.sources import SOURCES
    from deeprubin.tasks.transients.evaluation.inference import UNLABELED, Predictor, predict_source_detailed

    cfg = server.cfg
    raw_lc = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    raw_obj = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    quality = check_quality_config(cfg.quality)
    flagged = quality_table(raw_lc, quality, raw_obj)
    usable = flagged.loc[~unusable_mask(flagged, quality["unusable"]), "object_id"].astype(str)
    ids = usable.tolist()[:5]      # objects the predict path classifies (the others are set aside)
    lc = raw_lc[raw_lc["object_id"].isin(ids)].reset_index(drop=True)
    lc = pd.concat([lc, lc[lc["object_id"] == ids[0]].head(2).assign(object_id="two_points")], ignore_index=True)
    meta = raw_obj.loc[raw_obj["object_id"].isin(ids), ["object_id", "redshift"]].reset_index(drop=True)
    payload = {"lightcurves": _json_rows(lc), "objects": _json_rows(meta)}
    status, _, body = request(f"{server.url}/v1/predict/transients", "POST", payload, server.tokens["scorer"])
    assert status == 200, body
    results = {r["object_id"]: r for r in body["results"]}
    assert results["two_points"]["predicted"] is None and "too_few_points" in results["two_points"]["warnings"][0]
    classes = body["classes"]
    served = np.array([[results[o]["probabilities"][c] for c in classes] for o in ids])

    # the batch predict path (predict_source_detailed) over the same rows, given as a source
    objects = pd.DataFrame({"object_id": lc["object_id"].unique()}).merge(meta, on="object_id", how="left")
    objects = objects.assign(group_id=objects["object_id"], source="rows")
    monkeypatch.setitem(SOURCES, "rows", lambda _cfg: (lc.copy(), objects.copy()))
    numerics.apply_threads()
    batch = predict_source_detailed(server.checkpoint, {"name": "rows", "validation": {"on_invalid": "drop"}},
                                    calibration="auto", quality=cfg.quality)
    table = batch.predictions.set_index("object_id").loc[ids]
    assert classes == batch.classes
    np.testing.assert_array_equal(served, table[[f"prob_{c}" for c in classes]].to_numpy())
    assert [results[o]["predicted"] for o in ids] == table["predicted"].tolist()

    # and Predictor.probabilities on the validated rows
    v_lc, v_obj, _ = validate_tables(lc, objects.assign(label=UNLABELED), classes=[*classes, UNLABELED],
                                     on_invalid="drop")
    v_lc, v_obj = v_lc[v_lc["object_id"].isin(ids)], v_obj[v_obj["object_id"].isin(ids)]
    grid, p = Predictor(server.checkpoint, calibration="auto").probabilities(v_lc, objects=v_obj)
    order = [list(grid.object_ids.astype(str)).index(o) for o in ids]
    np.testing.assert_array_equal(served, p[order])
    assert body["model"]["version"].startswith("sha256:") and "from" in body["model"]["calibration"]


def test_models_and_health(server):
    status, _, body = request(f"{server.url}/v1/models", token=server.tokens["scorer"])
    (entry,) = body["models"]
    assert status == 200 and entry["checkpoint"] == str(server.checkpoint)
    assert entry["sha256"] == io.file_sha256(server.checkpoint)
    assert entry["classes"] == list(server.cfg.task.classes)
    assert entry["calibration"]["file"] == str(server.checkpoint.parent / "calibration.json")
    assert request(f"{server.url}/healthz")[2] == {"status": "ok", "models": {"transients": entry["version"]}}


def test_auth_validation_and_limits(server):
    url, scorer = f"{server.url}/v1/predict/transients", server.tokens["scorer"]
    rows = [{"object_id": "a", "time": 58000.0 + i, "band": "g", "flux": 10.0, "flux_err": 1.0} for i in range(4)]
    # 401: no token, a wrong one, a revoked one (revoked while the server runs)
    assert request(url, "POST", {"lightcurves": rows})[0] == 401
    assert request(url, "POST", {"lightcurves": rows}, "drb_0123456789ab_wrong")[0] == 401
    assert request(f"{server.url}/v1/models", token=server.tokens["leaver"])[0] == 200
    tokens_cli(server.store, "revoke", "--name", "leaver")
    status, headers, body = request(f"{server.url}/v1/models", token=server.tokens["leaver"])
    assert status == 401 and headers["www-authenticate"] == "Bearer" and "revoked" in body["error"]
    # 422 naming the field
    status, _, body = request(url, "POST", {"lightcurves": [{k: v for k, v in rows[0].items() if k != "flux"}]},
                              scorer)
    assert status == 422 and "'lightcurves[0].flux'" in body["error"], body
    # 413 on the declared size, before the body is sent
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    conn.putrequest("POST", "/v1/predict/transients")
    for key, value in (("Authorization", f"Bearer {scorer}"), ("Content-Type", "application/json"),
                       ("Content-Length", str(MAX_BODY + 1))):
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "max_body_bytes" in json.loads(response.read())["error"]
    conn.close()
    # 413 past max_objects
    many = {"lightcurves": rows, "objects": [{"object_id": f"o{i}"} for i in range(21)]}
    status, _, body = request(url, "POST", many, scorer)
    assert status == 413 and "max_objects" in body["error"]
    # 429 past the rate limit (burst 2), with Retry-After; the unlimited token is never limited
    statuses = [request(f"{server.url}/v1/models", token=server.tokens["limited"]) for _ in range(3)]
    assert [s[0] for s in statuses] == [200, 200, 429]
    assert int(statuses[2][1]["retry-after"]) >= 1
    assert all(request(f"{server.url}/v1/models", token=scorer)[0] == 200 for _ in range(6))


def test_metrics_count_the_requests(server):
    url, scorer = f"{server.url}/v1/predict/transients", server.tokens["scorer"]
    key = 'deeprubin_serve_requests_total{{endpoint="{}",method="{}",status="{}"}}'
    watched = [key.format("/v1/predict/{task}", "POST", s) for s in (401, 422)] + \
        [key.format("/v1/models", "GET", 200), 'deeprubin_serve_request_duration_seconds_count{endpoint="/v1/models"}']
    status, headers, text = request(f"{server.url}/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    before = parse_metrics(text)
    assert request(url, "POST", {"lightcurves": []})[0] == 401
    assert request(url, "POST", {"lightcurves": []}, scorer)[0] == 422
    assert request(f"{server.url}/v1/models", token=scorer)[0] == 200
    after = parse_metrics(request(f"{server.url}/metrics")[2])
    assert [after[k] - before.get(k, 0) for k in watched] == [1, 1, 1, 1]
    assert after[key.format("/metrics", "GET", 200)] == before.get(key.format("/metrics", "GET", 200), 0) + 1
    assert after['deeprubin_serve_errors_total{endpoint="/v1/predict/{task}"}'] == 0
    version = request(f"{server.url}/healthz")[2]["models"]["transients"]
    info = f'deeprubin_serve_model_info{{task="transients",model="transients-classifier",version="{version}"}}'
    assert after[info] == 1
