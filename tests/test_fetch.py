"""The shared fetch layer: cache, failure registry, retries/backoff, rate limit, resume, manifest."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests
import responses

from deeprubin.sources.fetch import (
    EmptyResult, FetchError, FetchPolicy, Fetcher, NotFound, RateLimiter, classify_exception,
    parse_retry_after, safe_name, session_with_timeout,
)


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def make_fetcher(tmp_path, clock=None, **policy):
    clock = clock or FakeClock()
    policy = {"progress": False, "requests_per_second": None, **policy}
    return Fetcher(tmp_path / "cache", FetchPolicy(**policy), client="test", sleep=clock.sleep, clock=clock,
                   rng=random.Random(0)), clock


def http_error(status, retry_after=None):
    resp = requests.models.Response()
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = retry_after
    return requests.exceptions.HTTPError(f"{status} error", response=resp)


class Flaky:
    """Raises the queued exceptions one per call, then returns ``value``."""

    def __init__(self, errors, value="ok"):
        self.errors, self.value, self.calls = list(errors), value, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("exc, retryable, prefix", [
    (requests.exceptions.ReadTimeout("slow"), True, "timeout"),
    (requests.exceptions.ConnectTimeout("slow"), True, "timeout"),
    (requests.exceptions.ConnectionError("reset"), True, "connection_error"),
    (requests.exceptions.JSONDecodeError("Expecting value", "{", 1), True, "malformed_response"),
    (http_error(500), True, "http_500"),
    (http_error(503), True, "http_503"),
    (http_error(429), True, "http_429"),
    (http_error(404), False, "not_found"),
    (http_error(400), False, "http_400"),
    (ValueError("bad"), False, "error: ValueError"),
])
def test_classify_exception(exc, retryable, prefix):
    err = classify_exception(exc)
    assert err.retryable is retryable and err.reason.startswith(prefix)


def test_classify_alerce_api_errors():
    from alerce.exceptions import APIError, ObjectNotFoundError

    resp = requests.models.Response()
    resp.status_code = 429
    resp.headers["Retry-After"] = "12"
    err = classify_exception(APIError(message="slow down", code=429, response=resp))
    assert err.retryable and err.retry_after == 12.0
    assert isinstance(classify_exception(ObjectNotFoundError(code=404, message="gone")), NotFound)
    assert classify_exception(APIError(code=502, message="bad gateway")).retryable


def test_parse_retry_after_seconds_and_http_date():
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(90.0)
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), usegmt=True), now=now) == 0.0


# ---------------------------------------------------------------- retries, backoff, rate


def test_backoff_is_exponential_capped_and_jittered():
    policy = FetchPolicy(backoff_base=1.0, backoff_max=10.0, jitter=0.5)
    rng = random.Random(1)
    for attempt, base in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert base * 0.5 <= min(delays) and max(delays) <= base * 1.5
        assert max(delays) - min(delays) > 0.3 * base          # jitter spreads retries
    assert FetchPolicy(jitter=0.0).backoff(2, rng) == 4.0


def test_request_retries_transient_errors_then_succeeds(tmp_path):
    fetcher, clock = make_fetcher(tmp_path, max_retries=5, backoff_base=1.0, jitter=0.0)
    fn = Flaky([requests.exceptions.ReadTimeout("t"), requests.exceptions.ConnectionError("c"), http_error(500)])
    assert fetcher.request(fn) == "ok"
    assert fn.calls == 4 and clock.slept == [1.0, 2.0, 4.0]


def test_request_honours_retry_after_and_caps_it(tmp_path):
    fetcher, clock = make_fetcher(tmp_path, jitter=0.0, retry_after_max=60.0)
    fn = Flaky([http_error(429, "17"), http_error(503, "3600")])
    assert fetcher.request(fn) == "ok"
    assert clock.slept == [17.0, 60.0]          # waited what the server asked, capped at 60 s


def test_request_gives_up_after_max_retries(tmp_path):
    fetcher, clock = make_fetcher(tmp_path, max_retries=2)
    fn = Flaky([http_error(502)] * 10)
    with pytest.raises(FetchError, match="gave up after 3 attempts") as info:
        fetcher.request(fn)
    assert fn.calls == 3 and not info.value.retryable


def test_request_does_not_retry_permanent_errors(tmp_path):
    fetcher, clock = make_fetcher(tmp_path)
    fn = Flaky([http_error(404)])
    with pytest.raises(NotFound):
        fetcher.request(fn)
    assert fn.calls == 1 and clock.slept == []


def test_keyboard_interrupt_is_never_retried(tmp_path):
    fetcher, _ = make_fetcher(tmp_path)
    fn = Flaky([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        fetcher.request(fn)
    assert fn.calls == 1


def test_rate_limiter_spaces_requests():
    clock = FakeClock()
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(5):
        limiter.wait()
        starts.append(clock.now)
    assert [round(b - a, 9) for a, b in zip(starts, starts[1:])] == [0.25] * 4
    clock.now += 10.0                            # idle for a while: no wait needed
    limiter.wait()
    assert clock.slept == [0.25] * 4


def test_fetcher_rate_limits_every_request(tmp_path):
    fetcher, clock = make_fetcher(tmp_path, requests_per_second=2.0)
    for _ in range(3):
        fetcher.request(lambda: None)
    assert clock.slept == [0.5, 0.5]


def test_policy_rejects_bad_values():
    with pytest.raises(ValueError, match="jitter"):
        FetchPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="requests_per_second"):
        FetchPolicy(requests_per_second=0)
    policy = FetchPolicy.from_config({"backoff_base_s": 3, "timeout_s": 9, "cache_dir": "x"}, other_keys=["cache_dir"])
    assert policy.backoff_base == 3 and policy.timeout == 9
    with pytest.raises(ValueError, match="max_retry"):
        FetchPolicy.from_config({"max_retry": 3})


# ---------------------------------------------------------------- cache, registry, resume, manifest


def fetch_one_from(table):
    """fetch_one serving ``table[oid]``: a value, or an exception to raise (through request())."""
    calls = []

    def fetch_one(oid, fetcher):
        calls.append(oid)
        value = table[oid]
        if isinstance(value, BaseException) or (isinstance(value, type) and issubclass(value, BaseException)):
            return fetcher.request(Flaky([value] * 10))
        return fetcher.request(lambda: value)

    fetch_one.calls = calls
    return fetch_one


def test_fetch_all_caches_records_failures_and_writes_manifest(tmp_path):
    fetcher, _ = make_fetcher(tmp_path, max_retries=1)
    table = {"a": {"x": 1}, "b": EmptyResult(), "c": http_error(404), "d": http_error(500), "e/f": [1, 2]}
    fetch_one = fetch_one_from(table)
    result = fetcher.fetch_all(list(table), fetch_one, query={"q": 1})
    assert result.fetched == ["a", "e/f"] and sorted(result.failed) == ["b", "c", "d"]
    assert result.payloads == {"a": {"x": 1}, "e/f": [1, 2]}
    assert (tmp_path / "cache" / "objects" / "e_f.json").exists()     # ids made file-name safe
    failures = json.loads((tmp_path / "cache" / "failures.json").read_text())
    assert failures["b"]["reason"].startswith("empty")
    assert failures["c"]["reason"].startswith("not_found")
    assert failures["d"]["reason"].startswith("http_500") and failures["d"]["attempts"] == 2
    m = json.loads((tmp_path / "cache" / "fetch_manifest.json").read_text())
    assert m["status"] == "complete" and m["query"] == {"q": 1} and m["client"] == "test"
    assert m["counts"]["fetched"] == 2 and m["counts"]["failed"] == 3 and m["counts"]["requested"] == 5
    assert m["versions"]["python"] and m["versions"]["requests"] and m["started_utc"].endswith("+00:00")
    # Rerun: cached ones are read, failed ones are skipped, nothing is requested.
    fetch_one.calls.clear()
    result = fetcher.fetch_all(list(table), fetch_one)
    assert fetch_one.calls == [] and sorted(result.cached) == ["a", "e/f"]
    assert sorted(result.skipped_failed) == ["b", "c", "d"]
    # refetch_failed: only the failed ones are asked again; a success clears the record.
    table.update({"b": {"now": "there"}})
    retry, _ = make_fetcher(tmp_path, refetch_failed=True, max_retries=0)
    result = retry.fetch_all(list(table), fetch_one)
    assert sorted(fetch_one.calls) == ["b", "c", "d"] and "b" in result.fetched
    assert "b" not in json.loads((tmp_path / "cache" / "failures.json").read_text())


def test_kill_and_resume_fetches_only_missing(tmp_path):
    fetcher, _ = make_fetcher(tmp_path)
    ids = [f"obj{i}" for i in range(6)]
    seen = []

    def killed_at_4(oid, f):
        if oid == "obj4":
            raise KeyboardInterrupt
        seen.append(oid)
        return {"oid": oid}

    with pytest.raises(KeyboardInterrupt):
        fetcher.fetch_all(ids, killed_at_4)
    m = json.loads((tmp_path / "cache" / "fetch_manifest.json").read_text())
    assert m["status"] == "interrupted" and m["counts"]["fetched"] == 4
    assert not (tmp_path / "cache" / "failures.json").exists()
    seen.clear()
    result = fetcher.fetch_all(ids, lambda oid, f: seen.append(oid) or {"oid": oid})
    assert seen == ["obj4", "obj5"] and len(result.payloads) == 6 and len(result.cached) == 4


def test_write_killed_mid_file_leaves_no_payload(tmp_path):
    def write_then_die(path, payload):
        path.write_text('{"half": ')
        raise KeyboardInterrupt

    fetcher = Fetcher(tmp_path / "cache", FetchPolicy(progress=False, requests_per_second=None), client="t",
                      write=write_then_die, sleep=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        fetcher.fetch_all(["a"], lambda oid, f: {"a": 1})
    assert list((tmp_path / "cache" / "objects").iterdir()) == []   # temp file removed, nothing to trust


def test_refresh_ignores_cache(tmp_path):
    fetcher, _ = make_fetcher(tmp_path)
    fetcher.fetch_all(["a"], lambda oid, f: 1)
    result = fetcher.fetch_all(["a"], lambda oid, f: 2, refresh=True)
    assert result.payloads["a"] == 2 and fetcher.load("a") == 2


def test_corrupt_cache_file_is_named(tmp_path):
    fetcher, _ = make_fetcher(tmp_path)
    fetcher.fetch_all(["a"], lambda oid, f: 1)
    fetcher.path("a").write_text("{broken")
    with pytest.raises(ValueError, match="a.json"):
        fetcher.fetch_all(["a"], lambda oid, f: 1)


def test_progress_bar_runs(tmp_path, capsys):
    fetcher, _ = make_fetcher(tmp_path, progress=True)
    result = fetcher.fetch_all(["a", "b"], lambda oid, f: 1, desc="demo")
    assert result.counts()["fetched"] == 2


def test_safe_name():
    assert safe_name("TIC 25155310") == "TIC_25155310"
    assert safe_name("../etc/passwd") == ".._etc_passwd"


# ---------------------------------------------------------------- the HTTP boundary


def test_session_with_timeout_sets_default_timeout(monkeypatch):
    from requests.adapters import HTTPAdapter

    seen = {}

    def fake_send(self, request, **kwargs):
        seen.update(kwargs)
        resp = requests.models.Response()
        resp.status_code = 200
        resp._content = b"[]"
        resp.request = request
        return resp

    monkeypatch.setattr(HTTPAdapter, "send", fake_send)
    session = session_with_timeout(requests.Session(), 12.5)
    session.get("https://api.alerce.online/ztf/v1/objects/x/detections")
    assert seen["timeout"] == 12.5
    session.get("https://api.alerce.online/ztf/v1/objects/x/detections", timeout=3)
    assert seen["timeout"] == 3


@responses.activate
def test_real_alerce_client_errors_are_classified():
    from alerce.core import Alerce

    url = "https://api.alerce.online/ztf/v1/objects/ZTFx/detections"
    responses.add(responses.GET, url, status=429, headers={"Retry-After": "5"}, json={"detail": "slow"})
    responses.add(responses.GET, url, status=200, body="{not json")
    responses.add(responses.GET, url, status=404, json={"detail": "Object not found"})
    client = Alerce()
    for expected in ("http_429", "malformed_response", "not_found"):
        with pytest.raises(Exception) as info:
            client.query_detections("ZTFx", survey="ztf", format="json")
        assert classify_exception(info.value).reason.startswith(expected)
