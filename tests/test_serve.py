"""The scoring service's parts (deeprubin.serve): settings, token store, rate limiter, metrics text, and the
application driven in-process over ASGI with a stand-in predictor (no model, no server; the real server
and model: tests/test_serve_e2e.py)."""
from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deeprubin.core.config import ConfigError, compose_params
from deeprubin.serve.metrics import Metrics, escape_label
from deeprubin.serve.ratelimit import RateLimiter, TokenBucket
from deeprubin.serve.settings import settings_from
from deeprubin.serve.tokens import TokenError, TokenStore, main as tokens_main, split_token

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- settings

@pytest.fixture(scope="module")
def default_cfg():
    return compose_params()


def test_default_settings_bind_loopback_and_serve_the_predict_checkpoint(default_cfg):
    s = settings_from(default_cfg)
    assert s.host == "127.0.0.1"
    assert str(s.models["transients"].checkpoint) == default_cfg.tasks.transients.predict.checkpoint
    assert s.models["transients"].calibration == "auto"
    assert s.tokens == Path("data/serve/tokens.sqlite")
    assert s.rate_per_s > 0 and s.burst >= 1 and s.max_body_bytes > 0 and s.max_objects > 0


@pytest.mark.parametrize("override,key", [
    ("serve.port=0", "serve.port"),
    ("serve.port=http", "serve.port"),
    ("+serve.limits.max_objcts=3", "serve.limits.max_objcts"),
    ("serve.rate_limit.per_s=0", "serve.rate_limit.per_s"),
    ("serve.validation.on_invalid=ignore", "serve.validation.on_invalid"),
    ("serve.latency_buckets_s=[1.0,0.5]", "serve.latency_buckets_s"),
    ("+serve.models.transits.checkpoint=x.ckpt", "serve.models.transits"),
])
def test_bad_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}")):
        settings_from(compose_params([override]))


# ---------------------------------------------------------------- tokens

def test_token_store_keeps_only_salted_hashes(tmp_path):
    store = TokenStore(tmp_path / "sub" / "tokens.sqlite")
    token = store.create("alice")
    key_id, secret = split_token(token)
    assert token.startswith("drb_") and len(secret) >= 40
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    raw = store.path.read_bytes()
    assert secret.encode() not in raw and token.encode() not in raw
    with sqlite3.connect(store.path) as conn:
        salt, digest = conn.execute("SELECT salt, digest FROM tokens WHERE name='alice'").fetchone()
    assert len(salt) == 16 and len(digest) == 32
    other = store.create("bob")
    with sqlite3.connect(store.path) as conn:
        salts = [r[0] for r in conn.execute("SELECT salt FROM tokens")]
    assert len(set(salts)) == 2                                   # a salt per token
    assert store.verify(token).name == "alice" and store.verify(other).name == "bob"
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None   # wrong secret
    assert store.verify(f"drb_{'0' * 12}_{secret}") is None       # unknown key id
    assert store.verify("not-a-token") is None and store.verify("") is None


def test_revoke_and_recreate(tmp_path):
    store = TokenStore(tmp_path / "tokens.sqlite")
    first = store.create("ci", unlimited=True)
    assert store.verify(first).unlimited
    with pytest.raises(TokenError, match="'ci'.*already has an active token"):
        store.create("ci")
    store.revoke("ci")
    assert store.verify(first) is None
    with pytest.raises(TokenError, match="no active token"):
        store.revoke("ci")
    second = store.create("ci")
    assert store.verify(second).name == "ci" and not store.verify(second).unlimited and store.verify(first) is None
    records = store.tokens()
    assert [(t.name, t.active) for t in records] == [("ci", False), ("ci", True)]
    with pytest.raises(TokenError, match="--name"):
        store.create("bad name; drop table")


def test_tokens_command_line(tmp_path, capsys):
    db = tmp_path / "t.sqlite"
    assert tokens_main(["--store", str(db), "create", "--name", "lt", "--unlimited"]) == 0
    token = capsys.readouterr().out.strip()
    assert TokenStore(db).verify(token).unlimited
    assert tokens_main(["--store", str(db), "list"]) == 0
    listing = capsys.readouterr().out
    assert "lt\t" in listing and "true" in listing and split_token(token)[1] not in listing
    assert tokens_main(["--store", str(db), "revoke", "--name", "lt"]) == 0
    assert tokens_main(["--store", str(db), "revoke", "--name", "lt"]) == 1
    assert "no active token" in capsys.readouterr().err
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    assert tokens_main(["--store", str(tmp_path / "junk.sqlite"), "list"]) == 1
    assert "junk.sqlite: not a token store" in capsys.readouterr().err


def test_tokens_command_defaults_to_the_configured_store(monkeypatch):
    from deeprubin.serve.tokens import _default_store

    monkeypatch.chdir(ROOT)
    assert _default_store() == Path(str(compose_params().serve.tokens)) == Path("data/serve/tokens.sqlite")


# ---------------------------------------------------------------- rate limit

class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_limiter_bursts_then_refills_per_key():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a") == pytest.approx(0.5)        # one token in 1/rate s
    assert limiter.check("b") == 0.0                       # another key has its own bucket
    clock.t += 0.25
    assert limiter.check("a") == pytest.approx(0.25)       # half a token refilled: still refused
    clock.t += 0.25
    assert limiter.check("a") == 0.0 and limiter.check("a") > 0
    clock.t += 3600                                         # refill stops at the burst
    assert [limiter.check("a") for _ in range(4)].count(0.0) == 3


def test_token_bucket_rejects_bad_settings():
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1, 0.0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(1.0, 0)


# ---------------------------------------------------------------- metrics

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')


def parse_metrics(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of a Prometheus text page, every line checked against the format."""
    assert text.endswith("\n")
    out = {}
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line), line
            continue
        assert SAMPLE.match(line), f"not a sample line: {line!r}"
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def test_metrics_text_format():
    m = Metrics([0.1, 1.0])
    m.observe("/v1/predict/{task}", "POST", 200, 0.05)
    m.observe("/v1/predict/{task}", "POST", 200, 0.5)
    m.observe("/v1/predict/{task}", "POST", 500, 5.0)
    m.observe("/healthz", "GET", 200, 0.1)                 # on a bound: in that bucket (le)
    m.count_objects("transients", "classified", 3)
    m.set_model("transients", "transients-classifier", 'sha256:ab"c')
    text = m.render()
    s = parse_metrics(text)
    p = 'deeprubin_serve_request_duration_seconds_bucket{endpoint="/v1/predict/{task}",le='
    assert [s[p + f'"{le}"}}'] for le in ("0.1", "1", "+Inf")] == [1, 2, 3]          # cumulative
    assert s['deeprubin_serve_request_duration_seconds_count{endpoint="/v1/predict/{task}"}'] == 3
    assert s['deeprubin_serve_request_duration_seconds_sum{endpoint="/v1/predict/{task}"}'] == pytest.approx(5.55)
    assert s['deeprubin_serve_request_duration_seconds_bucket{endpoint="/healthz",le="0.1"}'] == 1
    assert s['deeprubin_serve_requests_total{endpoint="/v1/predict/{task}",method="POST",status="200"}'] == 2
    assert s['deeprubin_serve_errors_total{endpoint="/v1/predict/{task}"}'] == 1
    assert s['deeprubin_serve_errors_total{endpoint="/healthz"}'] == 0
    assert s['deeprubin_serve_objects_total{task="transients",outcome="classified"}'] == 3
    assert s['deeprubin_serve_model_info{task="transients",model="transients-classifier",version="sha256:ab\\"c"}'] == 1
    assert "# TYPE deeprubin_serve_request_duration_seconds histogram" in text
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


# ---------------------------------------------------------------- the application, in-process

class FakePredictor:
    """Two classes, bands g and r; p(SNIa) rises with the object's number of rows."""

    classes = ["SNIa", "QSO"]
    bands = ["g", "r"]
    calibration = "fake calibrator"
    feature_config = None

    def __init__(self):
        self.calls = []

    def probabilities(self, lightcurves, *, objects=None):
        self.calls.append((lightcurves.copy(), objects.copy()))
        ids = np.array(sorted(set(lightcurves["object_id"])))
        n = lightcurves.groupby("object_id").size().reindex(ids).to_numpy()
        p = np.stack([n / (n + 10.0), 10.0 / (n + 10.0)], axis=1)
        return SimpleNamespace(object_ids=ids), p


def rows(object_id: str, n: int = 6, **extra) -> list[dict]:
    return [{"object_id": object_id, "time": 58000.0 + i, "band": "gr"[i % 2], "flux": 100.0 + i,
             "flux_err": 2.0, **extra} for i in range(n)]


@pytest.fixture
def service(tmp_path, default_cfg):
    from deeprubin.core.quality import check_quality_config
    from deeprubin.serve.app import Service
    from deeprubin.serve.scoring import ServedModel, Validation

    clock = Clock()
    model = ServedModel(task="transients", predictor=FakePredictor(), checkpoint=Path("model.ckpt"),
                        sha256="ab" * 32, calibration_file=None, name="transients-classifier", architecture="fake",
                        quality=check_quality_config(default_cfg.tasks.transients.quality))
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    svc = Service(models={"transients": model}, tokens=tokens, limiter=RateLimiter(1.0, 2, clock=clock),
                  metrics=Metrics([0.1, 1.0]), validation=Validation("drop", 3, 1), max_body_bytes=20_000,
                  max_objects=5)
    svc.token = tokens.create("tester", unlimited=True)
    svc.limited = tokens.create("limited")
    svc.clock = clock
    return svc


def call(app, method: str, path: str, body: bytes | None = None, token: str | None = None,
         headers: dict | None = None, chunked: bool = False, query: str = ""):
    """One HTTP request through the ASGI app: ``(status, headers, JSON or text)``."""
    hdrs = {"content-type": "application/json", **(headers or {})}
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    if body is not None and not chunked:
        hdrs["content-length"] = str(len(body))
    parts = [body or b""] if not chunked else [body[i:i + 1000] for i in range(0, len(body), 1000)]

    async def run():
        sent, queue = [], list(parts)

        async def receive():
            if queue:
                chunk = queue.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(queue)}
            await asyncio.sleep(0)
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
                 "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
        await app(scope, receive, send)
        return sent

    sent = asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers_out = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    kind = headers_out.get("content-type", "")
    if "json" in kind:
        return start["status"], headers_out, json.loads(content)
    return start["status"], headers_out, content.decode() if kind.startswith("text/") else content


@pytest.fixture
def app(service):
    from deeprubin.serve.app import build_app

    return build_app(service)


def predict(app, service, payload, token=None, **kw):
    return call(app, "POST", "/v1/predict/transients", json.dumps(payload).encode(),
                token=service.token if token is None else token, **kw)


def test_health_models_and_auth(app, service):
    status, _, body = call(app, "GET", "/healthz")
    assert status == 200 and body == {"status": "ok", "models": {"transients": "sha256:" + "ab" * 8}}
    status, headers, body = call(app, "GET", "/v1/models")
    assert status == 401 and headers["www-authenticate"] == "Bearer" and "Authorization" in body["error"]
    assert call(app, "GET", "/v1/models", token="drb_000000000000_nope")[0] == 401
    assert call(app, "GET", "/v1/models", headers={"authorization": f"Basic {service.token}"})[0] == 401
    status, _, body = call(app, "GET", "/v1/models", token=service.token)
    entry = body["models"][0]
    assert status == 200 and entry["task"] == "transients" and entry["sha256"] == "ab" * 32
    assert entry["classes"] == ["SNIa", "QSO"] and entry["calibration"]["description"] == "fake calibrator"
    service.tokens.revoke("tester")
    assert call(app, "GET", "/v1/models", token=service.token)[0] == 401     # revocation applies at once


def test_predict_returns_calibrated_probabilities_and_warnings(app, service):
    payload = {"lightcurves": rows("b", 8) + rows("a", 6) + rows("short", 2),
               "objects": [{"object_id": "a", "redshift": 0.1}, {"object_id": "ghost"}]}
    status, _, body = predict(app, service, payload)
    assert status == 200, body
    assert body["model"] == {"name": "transients-classifier", "version": "sha256:" + "ab" * 8,
                             "calibration": "fake calibrator"}
    assert body["classes"] == ["SNIa", "QSO"]
    results = {r["object_id"]: r for r in body["results"]}
    assert [r["object_id"] for r in body["results"]] == ["b", "a", "short", "ghost"]       # request order
    assert results["a"]["probabilities"] == {"SNIa": 6 / 16, "QSO": 10 / 16} and results["a"]["predicted"] == "QSO"
    assert results["b"]["probabilities"] == {"SNIa": 8 / 18, "QSO": 10 / 18}
    assert results["a"]["warnings"] == [] and results["a"]["quality_flags"] == []
    assert results["short"]["predicted"] is None and "too_few_points" in results["short"]["warnings"][0]
    assert results["ghost"]["probabilities"] is None and "empty" in results["ghost"]["warnings"][0]
    lc, objects = service.models["transients"].predictor.calls[-1]
    assert sorted(set(lc["object_id"])) == ["a", "b"]                    # invalid objects never reach the model
    assert list(lc["object_id"]) == sorted(lc["object_id"])            # validated: sorted as the ingest does
    assert objects.set_index("object_id").loc["a", "redshift"] == 0.1
    assert np.isnan(objects.set_index("object_id").loc["b", "redshift"])
    assert set(objects["label"]) == {"unlabeled"}


def test_unusable_quality_flags_are_set_aside(app, service):
    faint = [{**r, "flux": 1.0, "flux_err": 2.0} for r in rows("faint")]   # no point at 5 sigma: no_detection
    status, _, body = predict(app, service, {"lightcurves": rows("ok") + faint})
    assert status == 200
    faint_result = body["results"][1]
    assert faint_result["predicted"] is None and faint_result["quality_flags"] == ["no_detection"]
    assert "quality.unusable" in faint_result["warnings"][0]
    status, _, body = predict(app, service, {"lightcurves": faint})        # nothing classifiable: still 200
    assert status == 200 and body["results"][0]["probabilities"] is None


@pytest.mark.parametrize("mutate,field", [
    (lambda p: p["lightcurves"][1].pop("flux"), "lightcurves[1].flux"),
    (lambda p: p["lightcurves"][0].update(flux="bright"), "lightcurves[0].flux"),
    (lambda p: p["lightcurves"][2].update(fluxerr=1.0), "lightcurves[2].fluxerr"),
    (lambda p: p["lightcurves"][0].update(object_id=7), "lightcurves[0].object_id"),
    (lambda p: p.update(objects=[{"object_id": "a", "redshift": "far"}]), "objects[0].redshift"),
    (lambda p: p.pop("lightcurves"), "lightcurves"),
])
def test_malformed_body_is_422_naming_the_field(app, service, mutate, field):
    payload = {"lightcurves": rows("a")}
    mutate(payload)
    status, _, body = predict(app, service, payload)
    assert status == 422 and f"field '{field}'" in body["error"], body
    assert body["errors"][0]["field"] == field
    assert service.models["transients"].predictor.calls == []


def test_non_finite_and_table_level_errors_are_422(app, service):
    status, _, body = call(app, "POST", "/v1/predict/transients",
                           json.dumps({"lightcurves": rows("a")}).replace("102.0", "NaN").encode(), token=service.token)
    assert status == 422 and "lightcurves[2].flux" in body["error"]
    status, _, body = predict(app, service, {"lightcurves": rows("a") + rows("b", detected=True)})
    assert status == 422 and "lightcurves[0].detected" in body["error"]
    status, _, body = predict(app, service, {"lightcurves": rows("a") + [{**rows("a")[0], "band": "z", "time": 1.0}]})
    assert status == 422 and "column 'band'" in body["error"] and "'a'" in body["error"]
    status, _, body = predict(app, service, {"lightcurves": rows("a"), "objects": [{"object_id": "a"}] * 2})
    assert status == 422 and "'a' is given more than once" in body["error"]
    service.validation = type(service.validation)("raise", 3, 1)
    status, _, body = predict(app, service, {"lightcurves": rows("a") + rows("short", 2)})
    assert status == 422 and "object 'short': too_few_points" in body["error"]


def test_size_and_object_limits_are_413(app, service):
    big = {"lightcurves": rows("a", 300)}                      # ~26 kB > max_body_bytes
    status, _, body = predict(app, service, big)
    assert status == 413 and "serve.limits.max_body_bytes" in body["error"]
    status, _, body = predict(app, service, big, chunked=True)   # no Content-Length: counted while read
    assert status == 413 and "max_body_bytes" in body["error"]
    many = {"lightcurves": rows("a"), "objects": [{"object_id": f"o{i}"} for i in range(6)]}
    status, _, body = predict(app, service, many)
    assert status == 413 and "7 objects" in body["error"] and "max_objects = 5" in body["error"]
    status, _, body = predict(app, service, {"lightcurves": rows("a")}, chunked=True)
    assert status == 200
    assert call(app, "POST", "/v1/predict/transits", json.dumps({"lightcurves": rows("a")}).encode(),
                token=service.token)[0] == 404
    assert service.models["transients"].predictor.calls[-1][0]["object_id"].unique().tolist() == ["a"]


def test_rate_limit_is_429_with_retry_after_and_unlimited_tokens_are_exempt(app, service):
    assert [call(app, "GET", "/v1/models", token=service.limited)[0] for _ in range(2)] == [200, 200]
    status, headers, body = call(app, "GET", "/v1/models", token=service.limited)
    assert status == 429 and headers["retry-after"] == "1" and "'limited'" in body["error"]
    assert all(call(app, "GET", "/v1/models", token=service.token)[0] == 200 for _ in range(5))
    service.clock.t += 1.0
    assert call(app, "GET", "/v1/models", token=service.limited)[0] == 200


def test_metrics_endpoint_counts_requests(app, service):
    call(app, "GET", "/v1/models")
    predict(app, service, {"lightcurves": rows("a")})
    predict(app, service, {"lightcurves": [{"object_id": "a"}]})
    status, headers, text = call(app, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    s = parse_metrics(text)
    assert s['deeprubin_serve_requests_total{endpoint="/v1/models",method="GET",status="401"}'] == 1
    assert s['deeprubin_serve_requests_total{endpoint="/v1/predict/{task}",method="POST",status="200"}'] == 1
    assert s['deeprubin_serve_requests_total{endpoint="/v1/predict/{task}",method="POST",status="422"}'] == 1
    assert s['deeprubin_serve_objects_total{task="transients",outcome="classified"}'] == 1
    assert s['deeprubin_serve_model_info{task="transients",model="transients-classifier",'
             f'version="sha256:{"ab" * 8}"}}'] == 1
    assert s['deeprubin_serve_errors_total{endpoint="/v1/predict/{task}"}'] == 0


def test_openapi_documents_the_bearer_scheme(app):
    status, _, spec = call(app, "GET", "/openapi.json")
    assert status == 200 and "HTTPBearer" in json.dumps(spec["components"]["securitySchemes"])
    assert {"/v1/predict/{task}", "/v1/models", "/healthz", "/metrics"} <= set(spec["paths"])


def test_field_names_and_bearer_parsing():
    from deeprubin.serve.app import bearer_token, field_name

    assert field_name(("body", "lightcurves", 3, "flux")) == "lightcurves[3].flux"
    assert field_name(("body",)) == "body"
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None


def test_the_service_unpickles_nothing():
    for path in sorted((ROOT / "src" / "deeprubin" / "serve").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"\bimport pickle\b|\bpickle\.|joblib|torch\.load|dill", text), path
