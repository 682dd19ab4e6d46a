"""Batch jobs of the scoring service (deeprubin.serve.batch, .jobs): the SQLite job store's states and
restart recovery, server-side paths under the data root, reading uploaded files, and the endpoints
driven in-process with the stand-in predictor of tests/test_serve.py (the real server, model and
restart: tests/test_serve_e2e.py)."""
from __future__ import annotations

import io as stdio
import json
import os
import re
import sqlite3
import stat
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deeprubin.core.config import ConfigError, compose_params
from deeprubin.serve.batch import (BatchInputError, PathRefused, load_input, model_slices, resolve_under,
                                   results_table, server_file)
from deeprubin.serve.jobs import DONE, FAILED, QUEUED, RUNNING, Job, JobStore, JobStoreError
from deeprubin.serve.settings import settings_from
from test_serve import Clock, FakePredictor, call, parse_metrics, rows


# ---------------------------------------------------------------- the job store

def job(job_id: str, **kw) -> Job:
    base = dict(id=job_id, task="transients", token="alice", status=QUEUED, n_objects=3, created_at=1.0,
                input_name="uploaded csv file", input_path=f"/jobs/{job_id}/input.csv", input_format="csv",
                folder=f"/jobs/{job_id}")
    return Job(**{**base, **kw})


def test_job_store_states_in_a_real_sqlite_file(tmp_path):
    store = JobStore(tmp_path / "sub" / "jobs.sqlite")
    assert store.claim_next() is None                                   # empty queue
    for name in ("a", "b", "c"):
        store.add(job(name))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    with sqlite3.connect(store.path) as conn:                           # a real SQLite file, one row per job
        assert [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY seq")] == ["a", "b", "c"]
    with pytest.raises(JobStoreError, match="'a' cannot be added"):
        store.add(job("a"))
    first = store.claim_next(now=10.0)
    assert (first.id, first.status, first.started_at) == ("a", RUNNING, 10.0)       # oldest first
    store.set_progress("a", 2, 4)
    assert (store.get("a").n_done, store.get("a").n_objects, store.get("a").progress) == (2, 4, 0.5)
    store.finish("a", "/r.parquet", "/r.csv", now=11.0)
    done = store.get("a")
    assert (done.status, done.progress, done.n_done, done.finished_at, done.result_csv) == (DONE, 1.0, 4, 11.0,
                                                                                           "/r.csv")
    store.set_progress("a", 1, 4)                                       # only a running job moves
    assert store.get("a").progress == 1.0
    assert store.claim_next().id == "b"
    store.fail("b", "uploaded csv file: line 3: column 'flux' is not a number: 'x'")
    assert store.get("b").status == FAILED and "line 3" in store.get("b").error
    assert store.counts() == {QUEUED: 1, RUNNING: 0, DONE: 1, FAILED: 1}
    assert store.claim_next().id == "c"
    store.requeue("c")
    assert store.get("c").status == QUEUED and store.get("c").started_at is None
    assert store.get("nope") is None
    with pytest.raises(JobStoreError, match="no job 'nope'"):
        store.fail("nope", "x")
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    with pytest.raises(JobStoreError, match="junk.sqlite: not a job store"):
        JobStore(tmp_path / "junk.sqlite").counts()


def test_recover_requeues_running_jobs_until_max_restarts(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    for name in ("run", "queued", "done"):
        store.add(job(name))
    store.claim_next()                                                  # "run" is running...
    store.set_progress("run", 2, 3)
    store.claim_next()
    store.finish("queued", "p", "c")                                    # ("queued" ran and finished)
    store.add(job("later"))
    assert store.recover(max_restarts=2) == {QUEUED: ["run"], FAILED: []}     # ...when the server died
    again = store.get("run")
    assert (again.status, again.progress, again.n_done, again.started_at, again.restarts) == (QUEUED, 0, 0, None, 1)
    assert store.get("done").status == QUEUED and store.get("queued").status == DONE
    assert store.claim_next().id == "run"                               # still first in the queue
    assert store.recover(max_restarts=2)[QUEUED] == ["run"]
    store.claim_next()
    assert store.recover(max_restarts=2) == {QUEUED: [], FAILED: ["run"]}
    failed = store.get("run")
    assert failed.status == FAILED and "3 server restart(s)" in failed.error and "max_restarts = 2" in failed.error
    assert store.recover(max_restarts=2) == {QUEUED: [], FAILED: []}


# ---------------------------------------------------------------- server-side paths

def test_paths_must_resolve_inside_the_data_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "lc.csv").write_text("x")
    (outside / "secret.csv").write_text("x")
    (root / "link_out.csv").symlink_to(outside / "secret.csv")          # a file symlink leaving the root
    (root / "dir_out").symlink_to(outside)                               # a folder symlink leaving the root
    (root / "link_in.csv").symlink_to(root / "sub" / "lc.csv")
    assert resolve_under("sub/lc.csv", root, "path") == (root / "sub" / "lc.csv").resolve()
    assert resolve_under("sub/../sub/lc.csv", root, "path") == (root / "sub" / "lc.csv").resolve()
    assert server_file("link_in.csv", root, "path") == ((root / "sub" / "lc.csv").resolve(), "csv")
    assert resolve_under(str(root / "sub" / "lc.csv"), root, "path") == (root / "sub" / "lc.csv").resolve()
    for given in ("../outside/secret.csv", "sub/../../outside/secret.csv", str(outside / "secret.csv"),
                  "link_out.csv", "dir_out/secret.csv", "dir_out/../../outside/secret.csv",
                  "../outside/missing.csv", "/etc/passwd"):
        with pytest.raises(PathRefused, match="field 'path': .* resolves outside serve.batch.data_root"):
            server_file(given, root, "path")
    with pytest.raises(PathRefused, match="field 'objects_path': server-side paths are off"):
        server_file("sub/lc.csv", None, "objects_path")
    with pytest.raises(BatchInputError, match="field 'path': 'sub/none.csv': no such file"):
        server_file("sub/none.csv", root, "path")
    (root / "sub.txt").write_text("x")
    with pytest.raises(BatchInputError, match=r"field 'path': 'sub.txt' is not a .csv or .parquet file"):
        server_file("sub.txt", root, "path")
    with pytest.raises(BatchInputError, match="not a file name"):
        resolve_under("a\0b", root, "path")
    # the root itself may be reached through a symlink
    (tmp_path / "root_link").symlink_to(root)
    assert server_file("sub/lc.csv", tmp_path / "root_link", "path")[0] == (root / "sub" / "lc.csv").resolve()


# ---------------------------------------------------------------- reading inputs

def frame(n_objects: int = 3, n: int = 6, **columns) -> pd.DataFrame:
    return pd.DataFrame([r for i in range(n_objects) for r in rows(f"o{i}", n)]).assign(**columns)


def read_csv_text(text: str, tmp_path: Path, what: str = "uploaded csv file"):
    path = tmp_path / "in.csv"
    path.write_text(text)
    return load_input(path, "csv", what)


def test_csv_rows_read_back_exactly_with_text_ids_kept(tmp_path):
    lc = frame()
    lc["flux"] = lc["flux"] + np.array([0.1 + 0.2, 1 / 3, 1e-300, 2 ** -40, 123456.789012345678, 7.0] * 3)
    lc.loc[lc["object_id"] == "o1", "object_id"] = "NA"                   # an id that reads as missing by default
    lc.loc[lc["object_id"] == "o2", "object_id"] = "007"                  # and one that reads as a number
    data = read_csv_text(lc.to_csv(index=False), tmp_path)
    assert data.object_ids == ["o0", "NA", "007"]
    np.testing.assert_array_equal(data.lightcurves["flux"].to_numpy(), lc["flux"].to_numpy())
    assert list(data.lightcurves.columns) == ["object_id", "time", "band", "flux", "flux_err"]
    assert list(data.metadata.columns) == ["object_id"]
    path = tmp_path / "in.parquet"
    lc.to_parquet(path)
    parquet = load_input(path, "parquet", "x")
    pd.testing.assert_frame_equal(parquet.lightcurves, data.lightcurves)


def test_object_columns_on_the_rows_give_the_metadata(tmp_path):
    lc = frame(redshift=np.nan)
    lc.loc[lc["object_id"] == "o1", "redshift"] = 0.05
    lc["detected"] = ["true", "False", "1", "0", "TRUE", "false"] * 3
    data = read_csv_text(lc.to_csv(index=False), tmp_path)
    assert data.lightcurves["detected"].dtype == bool and data.lightcurves["detected"].tolist()[:4] == [True, False,
                                                                                                        True, False]
    assert data.metadata["object_id"].tolist() == ["o0", "o1", "o2"]
    assert data.metadata["redshift"].tolist()[1] == 0.05 and np.isnan(data.metadata["redshift"][0])
    assert "redshift" not in data.lightcurves.columns


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.assign(fluxx=1.0), r"unknown column\(s\) \['fluxx'\]"),
    (lambda d: d.drop(columns="flux_err"), r"missing column\(s\) \['flux_err'\]"),
    (lambda d: d.astype({"flux": object}).assign(flux=lambda x: x["flux"].where(x.index != 4, "bright")),
     "line 6: column 'flux' is not a number: 'bright'"),
    (lambda d: d.assign(object_id=d["object_id"].where(d.index != 2, "")), "line 4: column 'object_id' is empty"),
    (lambda d: d.assign(detected=["true"] * 17 + ["maybe"]), "line 19: column 'detected' is 'maybe'"),
    (lambda d: d.assign(redshift=np.arange(len(d)) * 0.01), "object 'o0': column 'redshift' differs between its rows"),
    (lambda d: d.iloc[:0], "no rows"),
])
def test_malformed_files_name_the_file_row_and_column(tmp_path, mutate, message):
    with pytest.raises(BatchInputError, match=f"^uploaded csv file: .*{message}"):
        read_csv_text(mutate(frame()).to_csv(index=False), tmp_path)


def test_unreadable_files_and_objects_tables(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(BatchInputError, match="^upload: cannot read it as parquet"):
        load_input(bad, "parquet", "upload")
    lc_path, objects_path = tmp_path / "lc.csv", tmp_path / "objects.parquet"
    frame().to_csv(lc_path, index=False)
    objects = pd.DataFrame({"object_id": ["o2", "o0", "other"], "redshift": [0.2, 0.1, 0.3],
                            "label": ["SNIa", "QSO", "x"]})                       # other columns: ignored
    objects.to_parquet(objects_path)
    data = load_input(lc_path, "csv", "path 'lc.csv'", objects_path, "parquet")
    assert data.metadata.to_dict(orient="list") == {"object_id": ["o2", "o0", "other"], "redshift": [0.2, 0.1, 0.3]}
    pd.concat([objects, objects.head(1)]).to_parquet(objects_path)
    with pytest.raises(BatchInputError, match="objects_path: object 'o2': column 'object_id' is given more than once"):
        load_input(lc_path, "csv", "path 'lc.csv'", objects_path, "parquet")
    frame(redshift=0.1).to_csv(lc_path, index=False)
    with pytest.raises(BatchInputError, match="either on the rows or in objects_path"):
        load_input(lc_path, "csv", "path 'lc.csv'", objects_path, "parquet")


def test_model_slices_cover_the_model_bound_objects_in_sorted_order():
    from deeprubin.serve.scoring import Prepared

    lc = frame(7, 4).sort_values(["object_id", "time"]).reset_index(drop=True)
    ids = sorted(set(lc["object_id"]))
    objects = pd.DataFrame({"object_id": ids, "redshift": np.arange(7) * 0.1})
    parts = list(model_slices(Prepared(lc, objects, ids, {}, {}), 3))
    assert [o["object_id"].tolist() for _, o in parts] == [ids[:3], ids[3:6], ids[6:]]
    assert [sorted(set(rows["object_id"])) for rows, _ in parts] == [ids[:3], ids[3:6], ids[6:]]
    pd.testing.assert_frame_equal(pd.concat([rows for rows, _ in parts], ignore_index=True), lc)


def test_chunks_are_multiples_of_the_predict_paths_forward_batch():
    import inspect

    from deeprubin.serve.scoring import MODEL_BATCH
    from deeprubin.tasks.transients.evaluation.predict import class_probabilities

    assert MODEL_BATCH == inspect.signature(class_probabilities).parameters["batch_size"].default
    assert settings_from(compose_params()).batch.chunk_objects % MODEL_BATCH == 0
    with pytest.raises(ConfigError, match=f"'serve.batch.chunk_objects' must be a multiple of {MODEL_BATCH}"):
        settings_from(compose_params([f"serve.batch.chunk_objects={MODEL_BATCH + 1}"]))


def test_results_table_columns():
    results = [{"object_id": "a", "predicted": "QSO", "probabilities": {"SNIa": 0.25, "QSO": 0.75},
                "quality_flags": ["few_points", "gap"], "warnings": ["w1", "w2"]},
               {"object_id": "b", "predicted": None, "probabilities": None, "quality_flags": [], "warnings": []}]
    table = results_table(results, ["SNIa", "QSO"])
    assert list(table.columns) == ["object_id", "predicted", "prob_SNIa", "prob_QSO", "quality_flags", "warnings"]
    assert table.loc[0, "quality_flags"] == "few_points;gap" and table.loc[0, "warnings"] == "w1; w2"
    assert table.loc[1, "predicted"] is None and np.isnan(table.loc[1, "prob_QSO"])


# ---------------------------------------------------------------- settings

def test_batch_settings(tmp_path):
    s = settings_from(compose_params()).batch
    assert s.store == Path("data/serve/jobs.sqlite") and s.dir == Path("data/serve/jobs") and s.data_root is None
    assert s.max_bytes > compose_params().serve.limits.max_body_bytes and s.chunk_objects >= 1
    assert settings_from(compose_params([f"serve.batch.data_root={tmp_path}"])).batch.data_root == tmp_path
    for override, key in ((f"serve.batch.data_root={tmp_path / 'none'}", "serve.batch.data_root"),
                          ("serve.batch.chunk_objects=0", "serve.batch.chunk_objects"),
                          ("serve.batch.max_restarts=-1", "serve.batch.max_restarts"),
                          ("+serve.batch.max_byte=3", "serve.batch.max_byte")):
        with pytest.raises(ConfigError, match=re.escape(f"'{key}")):
            settings_from(compose_params([override]))


# ---------------------------------------------------------------- the endpoints, in-process

@pytest.fixture
def batch_app(tmp_path):
    from deeprubin.core.quality import check_quality_config
    from deeprubin.serve.app import Service, build_app
    from deeprubin.serve.batch import BatchService
    from deeprubin.serve.metrics import Metrics
    from deeprubin.serve.ratelimit import RateLimiter
    from deeprubin.serve.scoring import ServedModel, Validation
    from deeprubin.serve.settings import BatchSettings
    from deeprubin.serve.tokens import TokenStore

    quality = check_quality_config(compose_params().tasks.transients.quality)
    model = ServedModel(task="transients", predictor=FakePredictor(), checkpoint=Path("model.ckpt"),
                        sha256="ab" * 32, calibration_file=None, name="transients-classifier", architecture="fake",
                        quality=quality)
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    settings = BatchSettings(dir=tmp_path / "jobs", store=tmp_path / "jobs.sqlite", data_root=tmp_path / "root",
                             max_bytes=20_000, max_objects=8, chunk_objects=2, poll_s=0.05, max_restarts=1,
                             stop_wait_s=5.0)
    metrics, validation, tokens = Metrics([0.1]), Validation("drop", 3, 1), TokenStore(tmp_path / "tokens.sqlite")
    batch = BatchService(settings, JobStore(settings.store), {"transients": model}, validation, metrics,
                         clock=Clock())
    service = Service(models={"transients": model}, tokens=tokens, limiter=RateLimiter(1.0, 2), metrics=metrics,
                      validation=validation, max_body_bytes=1000, max_objects=5, batch=batch)
    app = build_app(service)
    app.state.tokens = {"alice": tokens.create("alice", unlimited=True), "bob": tokens.create("bob", unlimited=True)}
    app.state.service, app.state.root = service, tmp_path / "root"
    return app


def upload(app, body: bytes, content_type: str = "text/csv", who: str = "alice", **kw):
    return call(app, "POST", "/v1/batch/transients", body, token=app.state.tokens[who],
                headers={"content-type": content_type}, **kw)


def get(app, url: str, who: str = "alice"):
    """GET ``url`` (a path with an optional query) with a token."""
    path, _, query = url.partition("?")
    return call(app, "GET", path, token=app.state.tokens[who], query=query)


def csv_bytes(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


def test_upload_poll_and_download_equal_scoring_the_whole_file(batch_app):
    table = pd.concat([frame(4, 6), pd.DataFrame(rows("short", 2))], ignore_index=True).assign(redshift=0.1)
    status, headers, body = upload(batch_app, csv_bytes(table))
    assert status == 202, body
    assert body["status"] == QUEUED and body["n_objects"] == 5 and body["results"] is None
    assert headers["location"] == body["url"] == f"/v1/jobs/{body['id']}" and len(body["id"]) == 32
    assert body["input"] == "uploaded csv file"
    status, _, early = get(batch_app, f"{body['url']}/result")
    assert status == 409 and "queued" in early["error"]
    service = batch_app.state.service
    predictor = service.models["transients"].predictor
    ended = service.batch.run_next()
    assert ended.status == DONE and service.batch.run_next() is None
    assert len(predictor.calls) == 2                      # 4 scorable objects in chunks of 2 ("short": not scored)
    status, _, view = get(batch_app, body["url"])
    assert status == 200 and view["status"] == DONE and view["progress"] == 1.0 and view["n_done"] == 5
    assert view["results"] == {f: f"{body['url']}/result?format={f}" for f in ("csv", "parquet")}
    assert view["finished_at"].endswith("+00:00") and view["error"] is None
    status, headers, text = get(batch_app, view["results"]["csv"])
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert f'filename="{body["id"]}.csv"' in headers["content-disposition"]
    served = pd.read_csv(stdio.StringIO(text), float_precision="round_trip", keep_default_na=False,
                         na_values={"prob_SNIa": [""], "prob_QSO": [""]})
    whole = {r["object_id"]: r for r in json.loads(json.dumps(score_whole(service, table)))}
    assert served["object_id"].tolist() == ["o0", "o1", "o2", "o3", "short"]
    for row in served.to_dict(orient="records"):
        expected = whole[row["object_id"]]
        if expected["probabilities"] is None:
            assert row["predicted"] == "" and np.isnan(row["prob_SNIa"]) and "too_few_points" in row["warnings"]
        else:
            assert [row["prob_SNIa"], row["prob_QSO"]] == [expected["probabilities"][c] for c in ("SNIa", "QSO")]
            assert row["predicted"] == expected["predicted"]
    status, headers, parquet = get(batch_app, f"{body['url']}/result?format=parquet")
    assert status == 200 and headers["content-type"] == "application/vnd.apache.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(stdio.BytesIO(parquet)).drop(columns="predicted"),
                                  served.drop(columns="predicted").replace({"quality_flags": {np.nan: ""}}),
                                  check_dtype=False)
    assert get(batch_app, f"{body['url']}/result?format=xlsx")[0] == 422
    metrics = parse_metrics(call(batch_app, "GET", "/metrics")[2])
    assert metrics['deeprubin_serve_jobs{status="done"}'] == 1 and metrics['deeprubin_serve_jobs{status="queued"}'] == 0
    assert metrics['deeprubin_serve_batch_objects_total{task="transients",outcome="classified"}'] == 4
    assert metrics['deeprubin_serve_batch_objects_total{task="transients",outcome="not_classified"}'] == 1


def score_whole(service, table: pd.DataFrame) -> list[dict]:
    from deeprubin.serve.scoring import score_tables

    lc = table.drop(columns="redshift")
    meta = table[["object_id", "redshift"]].drop_duplicates("object_id").reset_index(drop=True)
    return score_tables(service.models["transients"], lc, meta, service.validation)


def test_jobs_are_private_to_their_token(batch_app):
    _, _, body = upload(batch_app, csv_bytes(frame(1)))
    batch_app.state.service.batch.run_next()
    for path in (body["url"], f"{body['url']}/result", "/v1/jobs/0123"):
        status, _, other = get(batch_app, path, who="bob")
        assert status == 404 and "no job" in other["error"]
    assert get(batch_app, f"{body['url']}/result")[0] == 200
    assert call(batch_app, "GET", body["url"])[0] == 401


def test_upload_limits_types_and_bad_files(batch_app):
    service = batch_app.state.service
    big = csv_bytes(frame(8, 150))
    assert len(big) > service.batch.settings.max_bytes
    status, _, body = upload(batch_app, big)
    assert status == 413 and "serve.batch.max_bytes = 20000" in body["error"]
    status, _, body = upload(batch_app, big, chunked=True)                  # counted while streamed to disk
    assert status == 413 and "serve.batch.max_bytes" in body["error"]
    status, _, body = upload(batch_app, csv_bytes(frame(9, 3)))
    assert status == 413 and "9 objects; serve.batch.max_objects = 8" in body["error"]
    status, _, body = upload(batch_app, csv_bytes(frame(1).drop(columns="band")))
    assert status == 422 and "uploaded csv file: missing column(s) ['band']" in body["error"]
    status, _, body = upload(batch_app, b"--x\r\n", content_type="multipart/form-data; boundary=x")
    assert status == 415 and "header 'Content-Type'" in body["error"]
    assert list(service.batch.settings.dir.iterdir()) == []                   # nothing kept of refused uploads
    assert service.batch.store.jobs() == []
    buffer = stdio.BytesIO()
    frame(2).to_parquet(buffer)
    status, _, body = upload(batch_app, buffer.getvalue(), content_type="application/vnd.apache.parquet",
                             chunked=True)
    assert status == 202 and body["n_objects"] == 2
    assert list(service.batch.settings.dir.iterdir()) == [service.batch.settings.dir / body["id"]]
    assert [p.name for p in (service.batch.settings.dir / body["id"]).iterdir()] == ["input.parquet"]
    assert call(batch_app, "POST", "/v1/batch/transits", b"x", token=batch_app.state.tokens["alice"],
                headers={"content-type": "text/csv"})[0] == 404


def test_server_side_paths(batch_app, tmp_path):
    root, service = batch_app.state.root, batch_app.state.service
    frame(2).to_csv(root / "sub" / "lc.csv", index=False)
    frame(1).to_csv(tmp_path / "outside" / "lc.csv", index=False)
    (root / "escape.csv").symlink_to(tmp_path / "outside" / "lc.csv")

    def submit(payload):
        return call(batch_app, "POST", "/v1/batch/transients", json.dumps(payload).encode(),
                    token=batch_app.state.tokens["alice"])
    for given in ("../outside/lc.csv", "escape.csv", str(tmp_path / "outside" / "lc.csv"), "sub/../../outside/lc.csv"):
        status, _, body = submit({"path": given})
        assert status == 403 and body["error"].startswith("field 'path'") and "outside" in body["error"], given
    status, _, body = submit({"path": "sub/lc.csv", "objects_path": "../outside/lc.csv"})
    assert status == 403 and "field 'objects_path'" in body["error"]
    status, _, body = submit({"path": "sub/lc.csv", "extra": 1})
    assert status == 422 and "field 'extra'" in body["error"]
    status, _, body = call(batch_app, "POST", "/v1/batch/transients", b'{"path": "' + b"x" * 2000 + b'"}',
                           token=batch_app.state.tokens["alice"], chunked=True)
    assert status == 413 and "serve.limits.max_body_bytes" in body["error"]     # a JSON body: the JSON limit
    status, _, body = submit({"path": "sub/missing.csv"})
    assert status == 422 and "no such file" in body["error"]
    status, _, body = submit({"path": "sub/lc.csv"})
    assert status == 202 and body["input"] == "path 'sub/lc.csv'" and body["n_objects"] == 2
    assert service.batch.run_next().status == DONE
    job_folder = service.batch.settings.dir / body["id"]
    assert sorted(p.name for p in job_folder.iterdir()) == ["result.csv", "result.parquet"]   # the input stays put
    # a path that leaves the root after submission is refused when the job runs
    status, _, body = submit({"path": "sub/lc.csv"})
    (root / "sub" / "lc.csv").unlink()
    (root / "sub" / "lc.csv").symlink_to(tmp_path / "outside" / "lc.csv")
    assert service.batch.run_next().status == FAILED
    assert "no longer inside serve.batch.data_root" in get(batch_app, body["url"])[2]["error"]
    service.batch.settings = replace(service.batch.settings, data_root=None)
    status, _, body = submit({"path": "sub/lc.csv"})
    assert status == 403 and "server-side paths are off" in body["error"]


def test_a_failing_job_is_failed_and_the_worker_goes_on(batch_app):
    service = batch_app.state.service
    predictor = service.models["transients"].predictor
    _, _, bad = upload(batch_app, csv_bytes(pd.DataFrame(rows("a") + [{**rows("a")[0], "band": "z", "time": 1.0}])))
    _, _, good = upload(batch_app, csv_bytes(frame(2)))
    original = predictor.probabilities
    assert service.batch.run_next().status == FAILED
    status, _, view = get(batch_app, bad["url"])
    assert view["status"] == FAILED and "uploaded csv file" in view["error"] and "column 'band'" in view["error"]
    assert view["finished_at"] is not None and view["results"] is None
    status, _, body = get(batch_app, f"{bad['url']}/result")
    assert status == 409 and "failed: uploaded csv file" in body["error"]
    assert service.batch.run_next().status == DONE
    _, _, third = upload(batch_app, csv_bytes(frame(1)))

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")
    predictor.probabilities = broken
    assert service.batch.run_next().status == FAILED
    assert get(batch_app, third["url"])[2]["error"] == "uploaded csv file: RuntimeError: out of memory"
    predictor.probabilities = original


def test_the_worker_thread_recovers_interrupted_jobs_at_start(batch_app):
    service = batch_app.state.service
    batch, store = service.batch, service.batch.store
    ids = [upload(batch_app, csv_bytes(frame(3)))[2]["id"] for _ in range(2)]
    store.claim_next()                                                  # the first was running when the server died
    store.set_progress(ids[0], 2, 3)
    batch.start()
    try:
        for _ in range(200):
            if all(store.get(i).status == DONE for i in ids):
                break
            time.sleep(0.05)
        assert [store.get(i).status for i in ids] == [DONE, DONE]
        assert store.get(ids[0]).restarts == 1 and store.get(ids[1]).restarts == 0
        late = upload(batch_app, csv_bytes(frame(1)))[2]["id"]              # a submission wakes the worker
        for _ in range(200):
            if store.get(late).status == DONE:
                break
            time.sleep(0.05)
        assert store.get(late).status == DONE
    finally:
        batch.stop()
    assert not batch._thread.is_alive()
    assert os.path.exists(store.get(ids[0]).result_parquet)


def test_openapi_documents_the_batch_endpoints(batch_app):
    status, _, spec = call(batch_app, "GET", "/openapi.json")
    assert status == 200 and {"/v1/batch/{task}", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result"} <= set(spec["paths"])
    body = spec["paths"]["/v1/batch/{task}"]["post"]["requestBody"]["content"]
    assert {"text/csv", "application/vnd.apache.parquet", "application/json"} == set(body)
