"""The scoring service as a real uvicorn server (``python -m deeprubin.serve``) on a free loopback port,
with the tiny pipeline's model: scores equal the batch predict path's, and auth, limits and metrics;
batch jobs (upload, poll, download) score as the predict path does and survive a killed server."""
from __future__ import annotations

import http.client
import io as stdio
import json
import sqlite3
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
#: The test server's batch limits (small enough to reach).
BATCH_MAX_BYTES, BATCH_MAX_OBJECTS = 2_000_000, 30
#: Usable objects in the batch tests' file; jobs submitted before the server is killed (the first
#: runs, the others wait).
BATCH_N, RESTART_JOBS = 8, 3
#: How long a test waits for a batch job.
JOB_WAIT_S = 120


def tokens_cli(store: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "deeprubin.serve.tokens", "--store", str(store), *args],
                          capture_output=True, text=True, env=tiny_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def request(url: str, method: str = "GET", payload=None, token: str | None = None,
            content_type: str = "application/json"):
    """``(status, headers, body)``; the body parsed as JSON when it is JSON, text when it is text, else bytes."""
    data = None if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=STARTUP_S) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        status, hdrs, raw = err.code, dict(err.headers), err.read()
    kind = hdrs.get("content-type", "")
    body = json.loads(raw) if "json" in kind else raw.decode() if kind.startswith("text/") else raw
    return status, hdrs, body


def start_server(root: Path, store: Path, checkpoint: Path, *overrides: str, log_name: str = "server.log"):
    """``(process, url)`` of ``python -m deeprubin.serve`` on a free loopback port, once ``/healthz`` answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "deeprubin.serve", f"serve.port={port}", f"serve.tokens={store}",
           f"serve.models.transients.checkpoint={checkpoint}", *overrides, f"hydra.run.dir={root / 'hydra'}"]
    with open(root / log_name, "w") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=tiny_env(), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            if request(f"{url}/healthz")[0] == 200:
                return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the service did not start on {url}:\n{(root / log_name).read_text()[-4000:]}")
        time.sleep(0.5)


def batch_overrides(root: Path, *extra: str) -> tuple[str, ...]:
    """``serve.batch.*`` under ``root``: job folders, job store, a data root (created)."""
    (root / "data_root").mkdir(exist_ok=True)
    return (f"serve.batch.dir={root / 'jobs'}", f"serve.batch.store={root / 'jobs.sqlite'}",
            f"serve.batch.data_root={root / 'data_root'}", *extra)


@pytest.fixture(scope="module")
def server(tiny_pipeline, tmp_path_factory):
    cfg, _ = tiny_pipeline
    root = tmp_path_factory.mktemp("serve_e2e")
    store, checkpoint = root / "tokens.sqlite", Path(cfg.paths.models) / "model.ckpt"
    tokens = {"scorer": tokens_cli(store, "create", "--name", "scorer", "--unlimited"),
              "other": tokens_cli(store, "create", "--name", "other", "--unlimited"),
              "limited": tokens_cli(store, "create", "--name", "limited"),
              "leaver": tokens_cli(store, "create", "--name", "leaver")}
    proc, url = start_server(root, store, checkpoint, *RATE, f"serve.limits.max_body_bytes={MAX_BODY}",
                             "serve.limits.max_objects=20",
                             *batch_overrides(root, f"serve.batch.max_bytes={BATCH_MAX_BYTES}",
                                              f"serve.batch.max_objects={BATCH_MAX_OBJECTS}"))
    try:
        yield SimpleNamespace(url=url, tokens=tokens, store=store, cfg=cfg, checkpoint=checkpoint, root=root)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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


# ---------------------------------------------------------------- batch jobs

@pytest.fixture(scope="module")
def batch_case(server):
    """Rows of usable tiny-pipeline objects (redshift on every row) plus a two-point object, as CSV, and
    what :meth:`Predictor.probabilities` gives the usable ones (validated as the predict path does)."""
    from deeprubin.core import numerics
    from deeprubin.core.quality import check_quality_config, quality_table, unusable_mask
    from deeprubin.core.schema import validate_tables
    from deeprubin.tasks.transients.evaluation.inference import UNLABELED, Predictor

    cfg = server.cfg
    raw_lc = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    raw_obj = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    quality = check_quality_config(cfg.quality)
    flagged = quality_table(raw_lc, quality, raw_obj)
    ids = flagged.loc[~unusable_mask(flagged, quality["unusable"]), "object_id"].astype(str).tolist()[:BATCH_N]
    lc = raw_lc[raw_lc["object_id"].isin(ids)].reset_index(drop=True)
    lc = pd.concat([lc, lc[lc["object_id"] == ids[0]].head(2).assign(object_id="two_points")], ignore_index=True)
    z = raw_obj.set_index("object_id")["redshift"]
    rows = lc.assign(redshift=lc["object_id"].map(z).astype(float))
    objects = pd.DataFrame({"object_id": ids, "label": UNLABELED, "group_id": ids, "source": "rows",
                            "redshift": z.loc[ids].to_numpy()})
    v_lc, v_obj, _ = validate_tables(lc[lc["object_id"].isin(ids)], objects, classes=[*cfg.task.classes, UNLABELED],
                                     on_invalid="drop")
    numerics.apply_threads()
    predictor = Predictor(server.checkpoint, calibration="auto")

    def expected(subset: list[str]) -> pd.DataFrame:
        """Predictor.probabilities of a file holding only ``subset`` (an object's last bits depend on which
        objects share its forward pass, as in the predict path)."""
        grid, p = predictor.probabilities(v_lc[v_lc["object_id"].isin(subset)].reset_index(drop=True),
                                          objects=v_obj[v_obj["object_id"].isin(subset)].reset_index(drop=True))
        table = pd.DataFrame(p, index=grid.object_ids.astype(str), columns=[f"prob_{c}" for c in predictor.classes])
        return table.loc[subset]
    return SimpleNamespace(ids=ids, rows=rows, csv=rows.to_csv(index=False).encode(), expected=expected(ids),
                           expected_for=expected)


def wait_for_job(url: str, job_id: str, token: str) -> dict:
    """Poll ``GET /v1/jobs/{id}`` until the job is done or failed; its last view."""
    deadline, seen = time.monotonic() + JOB_WAIT_S, []
    while True:
        status, _, view = request(f"{url}/v1/jobs/{job_id}", token=token)
        assert status == 200, view
        seen.append(view["progress"])
        assert seen == sorted(seen), seen                           # progress only moves forward
        if view["status"] in ("done", "failed"):
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.2)


def job_results(url: str, view: dict, token: str) -> list[pd.DataFrame]:
    """A done job's results, downloaded as parquet and as CSV (floats read back exactly)."""
    status, headers, parquet = request(url + view["results"]["parquet"], token=token)
    assert status == 200 and headers["content-type"] == "application/vnd.apache.parquet"
    status, headers, text = request(url + view["results"]["csv"], token=token)
    assert status == 200 and headers["content-type"].startswith("text/csv")
    csv = pd.read_csv(stdio.StringIO(text), dtype={"object_id": str}, float_precision="round_trip")
    return [pd.read_parquet(stdio.BytesIO(parquet)), csv]


def assert_equal_to_the_predict_path(tables: list[pd.DataFrame], case, ids=None) -> None:
    ids = case.ids if ids is None else ids
    expected = case.expected if ids == case.ids else case.expected_for(ids)
    for table in tables:
        table = table.set_index("object_id")
        np.testing.assert_array_equal(table.loc[ids, expected.columns].to_numpy(), expected.to_numpy())
        classes = [c.removeprefix("prob_") for c in expected.columns]
        assert table.loc[ids, "predicted"].tolist() == [classes[i] for i in expected.to_numpy().argmax(axis=1)]


def test_batch_upload_scores_equal_the_predict_path(server, batch_case):
    url, scorer = server.url, server.tokens["scorer"]
    key = 'deeprubin_serve_batch_objects_total{task="transients",outcome="classified"}'
    before = parse_metrics(request(f"{url}/metrics")[2]).get(key, 0)
    status, headers, job = request(f"{url}/v1/batch/transients", "POST", batch_case.csv, scorer, "text/csv")
    assert status == 202, job
    assert headers["location"] == job["url"] and job["n_objects"] == BATCH_N + 1
    view = wait_for_job(url, job["id"], scorer)
    assert view["status"] == "done" and view["progress"] == 1.0 and view["n_done"] == BATCH_N + 1, view
    tables = job_results(url, view, scorer)
    assert_equal_to_the_predict_path(tables, batch_case)
    for table in tables:
        short = table.set_index("object_id").loc["two_points"]
        assert pd.isna(short["predicted"]) and "too_few_points" in short["warnings"]
    assert tables[0]["object_id"].tolist() == [*batch_case.ids, "two_points"]          # file order
    for path in (view["url"], view["results"]["csv"]):                                  # another token sees nothing
        status, _, body = request(url + path, token=server.tokens["other"])
        assert status == 404 and "no job" in body["error"]
    after = parse_metrics(request(f"{url}/metrics")[2])
    assert after[key] - before == BATCH_N and after['deeprubin_serve_jobs{status="done"}'] >= 1


def test_batch_limits_and_server_side_paths(server, batch_case):
    url, scorer = server.url, server.tokens["scorer"]
    # 413 on the declared size, before the upload is sent
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30)
    conn.putrequest("POST", "/v1/batch/transients")
    for key, value in (("Authorization", f"Bearer {scorer}"), ("Content-Type", "text/csv"),
                       ("Content-Length", str(BATCH_MAX_BYTES + 1))):
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and "serve.batch.max_bytes" in json.loads(response.read())["error"]
    conn.close()
    # 413 past max_objects
    many = pd.concat([batch_case.rows.head(3).assign(object_id=f"o{i}") for i in range(BATCH_MAX_OBJECTS + 1)])
    status, _, body = request(f"{url}/v1/batch/transients", "POST", many.to_csv(index=False).encode(), scorer,
                              "text/csv")
    assert status == 413 and "serve.batch.max_objects" in body["error"]
    # server-side paths: 403 outside the data root (.., a symlink out), 202 inside
    data_root = server.root / "data_root"
    (data_root / "out.csv").symlink_to(server.root / "server.log")
    for given in ("../tokens.sqlite", "out.csv", str(server.root / "jobs.sqlite")):
        status, _, body = request(f"{url}/v1/batch/transients", "POST", {"path": given}, scorer)
        assert status == 403 and body["error"].startswith("field 'path'"), (given, body)
    ids = batch_case.ids[-2:]
    batch_case.rows[batch_case.rows["object_id"].isin(ids)].to_parquet(data_root / "two.parquet")
    status, _, job = request(f"{url}/v1/batch/transients", "POST", {"path": "sub/../two.parquet"}, scorer)
    assert status == 202 and job["input"] == "path 'sub/../two.parquet'", job
    view = wait_for_job(url, job["id"], scorer)
    assert view["status"] == "done", view
    assert_equal_to_the_predict_path(job_results(url, view, scorer), batch_case, ids)


def test_a_batch_job_survives_a_killed_server(server, batch_case, tmp_path):
    """Jobs queued or running when the server is killed (SIGKILL) are scored by the next server on the
    same job store, from the start, with the same results."""
    scorer = server.tokens["scorer"]
    overrides = batch_overrides(tmp_path)
    proc, url = start_server(tmp_path, server.store, server.checkpoint, *overrides, log_name="first.log")
    try:
        ids = []
        for _ in range(RESTART_JOBS):
            status, _, job = request(f"{url}/v1/batch/transients", "POST", batch_case.csv, scorer, "text/csv")
            assert status == 202, job
            ids.append(job["id"])
    finally:
        proc.kill()                                                  # SIGKILL: no shutdown, no requeue
        proc.wait(timeout=30)
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        cut = dict(conn.execute("SELECT id, status FROM jobs").fetchall())
    assert sorted(cut) == sorted(ids) and {"queued", "running"} & set(cut.values()), cut
    proc, url = start_server(tmp_path, server.store, server.checkpoint, *overrides, log_name="second.log")
    try:
        for job_id in ids:
            view = wait_for_job(url, job_id, scorer)
            assert view["status"] == "done", view
            assert_equal_to_the_predict_path(job_results(url, view, scorer), batch_case)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with sqlite3.connect(tmp_path / "jobs.sqlite") as conn:
        restarts = dict(conn.execute("SELECT id, restarts FROM jobs").fetchall())
    assert {i: restarts[i] for i in ids} == {i: int(cut[i] == "running") for i in ids}
