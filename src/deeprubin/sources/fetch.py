"""Robust per-object fetching shared by the network sources (ALeRCE, MAST via lightkurve).

A :class:`Fetcher` downloads one payload per object into a cache folder::

    <cache_dir>/
      objects/<object_id>.<suffix>   one file per object, written atomically (deeprubin.core.io)
      failures.json                  object id -> {reason, attempts, time}: not refetched unless
                                     ``refetch_failed=True``
      fetch_manifest.json            provenance of the last run (query, UTC times, client and
                                     package versions, counts requested/fetched/cached/failed)

Guarantees
----------
* **Resumable.** An object's file appears only once its payload is complete (temporary file +
  rename), so a run killed at any point leaves either a whole file or none; a rerun skips every
  object whose file exists and fetches only what is missing.
* **Retries.** Each request goes through :meth:`Fetcher.request`: timeouts, connection errors,
  HTTP 5xx, HTTP 429 and malformed (undecodable) responses are retried with exponential
  backoff (``backoff_base * 2**attempt``, capped at ``backoff_max``) times a random jitter
  factor in ``[1 - jitter, 1 + jitter]``; a ``Retry-After`` header (seconds or HTTP date) is
  honoured (waited at least, capped at ``retry_after_max``). After ``max_retries`` retries the
  object is recorded as failed with the last reason.
* **Permanent failures** (HTTP 404 / other 4xx, empty results, a payload the source rejects)
  are recorded at once, with the reason, and not retried.
* **Rate limit.** At most ``requests_per_second`` requests are started per second (all
  requests, retries included).
* ``KeyboardInterrupt``/``SystemExit`` are never swallowed: the manifest is written with
  ``status: interrupted`` and the exception propagates.

Sleeping and the clock are injectable (``sleep=``, ``clock=``), so tests never wait.
"""
from __future__ import annotations

import email.utils
import importlib.metadata
import json
import logging
import platform
import random
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..core import io

log = logging.getLogger(__name__)

MANIFEST_NAME = "fetch_manifest.json"
FAILURES_NAME = "failures.json"

#: HTTP status codes worth retrying.
RETRY_STATUS = frozenset({429}) | frozenset(range(500, 600))


# --------------------------------------------------------------------------- errors


class FetchError(Exception):
    """A request or payload problem, classified as retryable or permanent."""

    def __init__(self, reason: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after


class EmptyResult(FetchError):
    """The service answered, but with nothing for this object (permanent)."""

    def __init__(self, reason: str = "empty: the service returned no rows"):
        super().__init__(reason, retryable=False)


class NotFound(FetchError):
    """The object does not exist (any more) at the service (permanent)."""

    def __init__(self, reason: str = "not_found: HTTP 404"):
        super().__init__(reason, retryable=False)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` header (delta-seconds or HTTP date) -> seconds to wait, or None."""
    if value is None:
        return None
    value = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _status_and_headers(exc: BaseException) -> tuple[int | None, Mapping[str, str]]:
    """HTTP status and headers carried by a requests/alerce exception, if any."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        code = getattr(exc, "code", None)
        status = code if isinstance(code, int) and code >= 100 else None
    headers = getattr(response, "headers", None) or {}
    return status, headers


def classify_exception(exc: BaseException) -> FetchError:
    """Map an exception raised by a request into a :class:`FetchError`.

    Retryable: timeouts, connection errors, HTTP 429 and 5xx, malformed JSON (a truncated or
    garbled body is usually a transient proxy/server fault). Permanent: 404 (``not_found``),
    other 4xx, anything else.
    """
    import requests

    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, requests.exceptions.Timeout):
        return FetchError(f"timeout: {exc}", retryable=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return FetchError(f"connection_error: {exc}", retryable=True)
    if isinstance(exc, (requests.exceptions.JSONDecodeError, json.JSONDecodeError)):
        return FetchError(f"malformed_response: {exc}", retryable=True)
    status, headers = _status_and_headers(exc)
    if status is not None:
        if status == 404:
            return NotFound(f"not_found: HTTP 404 ({_short(exc)})")
        if status in RETRY_STATUS:
            return FetchError(f"http_{status}: {_short(exc)}", retryable=True,
                              retry_after=parse_retry_after(headers.get("Retry-After")))
        return FetchError(f"http_{status}: {_short(exc)}", retryable=False)
    if isinstance(exc, requests.exceptions.RequestException):
        return FetchError(f"request_error: {type(exc).__name__}: {exc}", retryable=True)
    return FetchError(f"error: {type(exc).__name__}: {_short(exc)}", retryable=False)


def _short(exc: BaseException, n: int = 200) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= n else text[:n] + "..."


# --------------------------------------------------------------------------- policy


@dataclass
class FetchPolicy:
    """Retry, backoff and rate settings (``source.fetch`` in the configs)."""

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    jitter: float = 0.5
    retry_after_max: float = 600.0
    requests_per_second: float | None = 2.0
    timeout: float = 30.0
    refetch_failed: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"fetch.max_retries must be >= 0, got {self.max_retries}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"fetch.jitter must be in [0, 1), got {self.jitter}")
        if self.requests_per_second is not None and self.requests_per_second <= 0:
            raise ValueError(f"fetch.requests_per_second must be > 0 or null, got {self.requests_per_second}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("fetch.backoff_base_s and fetch.backoff_max_s must be >= 0")

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None, other_keys: Sequence[str] = ()) -> "FetchPolicy":
        """Build from a config node with the documented keys (``*_s`` suffixes for seconds).

        Keys in ``other_keys`` belong to the caller (e.g. ``cache_dir``); any other unknown key
        is a typo and raises ``ValueError`` naming it.
        """
        node = dict(node or {})
        names = {"max_retries": "max_retries", "backoff_base_s": "backoff_base",
                 "backoff_max_s": "backoff_max", "jitter": "jitter", "retry_after_max_s": "retry_after_max",
                 "requests_per_second": "requests_per_second", "timeout_s": "timeout",
                 "refetch_failed": "refetch_failed", "progress": "progress"}
        unknown = sorted(set(node) - set(names) - set(other_keys))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; known: {sorted(set(names) | set(other_keys))}")
        kwargs = {names[k]: v for k, v in node.items() if k in names}
        return cls(**kwargs)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number ``attempt`` (0-based), jittered."""
        base = min(self.backoff_max, self.backoff_base * (2.0 ** attempt))
        return base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart."""

    def __init__(self, rate: float | None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 0.0 if not rate else 1.0 / float(rate)
        self.clock, self.sleep = clock, sleep
        self._next = -float("inf")

    def wait(self) -> None:
        if self.interval <= 0:
            return
        now = self.clock()
        if now < self._next:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


# --------------------------------------------------------------------------- cache


def safe_name(object_id: str) -> str:
    """A file-name-safe form of an object id (ids like ``TIC 25155310`` or ``a/b``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(object_id).strip())


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, allow_nan=True))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def package_versions(names: Iterable[str]) -> dict[str, str | None]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class FetchResult:
    """Outcome of :meth:`Fetcher.fetch_all`."""

    payloads: dict[str, Any] = field(default_factory=dict)   # object id -> payload (fetched + cached)
    fetched: list[str] = field(default_factory=list)          # downloaded in this run
    cached: list[str] = field(default_factory=list)           # already in the cache
    failed: dict[str, str] = field(default_factory=dict)      # failed in this run: id -> reason
    skipped_failed: dict[str, str] = field(default_factory=dict)  # failed before, not retried
    n_requests: int = 0
    n_retries: int = 0

    def counts(self) -> dict[str, int]:
        return {"requested": len(self.fetched) + len(self.cached) + len(self.failed) + len(self.skipped_failed),
                "fetched": len(self.fetched), "cached": len(self.cached), "failed": len(self.failed),
                "skipped_failed": len(self.skipped_failed), "available": len(self.payloads),
                "requests": self.n_requests, "retries": self.n_retries}


class Fetcher:
    """Cache + failure registry + retries + rate limit + manifest around a per-object fetch.

    Parameters
    ----------
    cache_dir : path
        Root of the cache (created).
    policy : FetchPolicy
    client : str
        Name of the service/client, recorded in the manifest (e.g. ``"alerce"``).
    packages : sequence of str
        Distributions whose versions go into the manifest.
    suffix, write, read : optional
        Payload file suffix and (tmp path, payload) writer / path reader; JSON by default.
    sleep, clock, rng : optional
        Injectable ``time.sleep``, ``time.monotonic`` and ``random.Random`` (tests).
    """

    def __init__(self, cache_dir: str | Path, policy: FetchPolicy | None = None, *, client: str,
                 packages: Sequence[str] = (), suffix: str = ".json",
                 write: Callable[[Path, Any], None] = _write_json,
                 read: Callable[[Path], Any] = _read_json,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None):
        self.root = Path(cache_dir)
        self.objects_dir = self.root / "objects"
        self.policy = policy or FetchPolicy()
        self.client = client
        self.packages = tuple(packages)
        self.suffix, self._write, self._read = suffix, write, read
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.limiter = RateLimiter(self.policy.requests_per_second, clock=clock, sleep=self._sleep)
        self._result: FetchResult | None = None
        self.sleeps: list[float] = []   # every wait (backoff or rate limit) this fetcher asked for

    # ----------------------------------------------------------------- paths and registry

    def path(self, object_id: str) -> Path:
        return self.objects_dir / f"{safe_name(object_id)}{self.suffix}"

    def is_cached(self, object_id: str) -> bool:
        return self.path(object_id).exists()

    def load(self, object_id: str) -> Any:
        path = self.path(object_id)
        try:
            return self._read(path)
        except Exception as exc:  # a corrupt cache file must name itself
            raise ValueError(f"{path}: unreadable cached payload for object '{object_id}' "
                             f"({type(exc).__name__}: {exc}); delete it to refetch") from exc

    def failures(self) -> dict[str, dict]:
        path = self.root / FAILURES_NAME
        return io.read_json(path) if path.exists() else {}

    def _record_failure(self, object_id: str, reason: str, attempts: int) -> None:
        failures = self.failures()
        failures[str(object_id)] = {"reason": reason, "attempts": attempts,
                                    "time_utc": _utc_now()}
        io.write_json(failures, self.root / FAILURES_NAME)

    def _clear_failure(self, object_id: str) -> None:
        failures = self.failures()
        if str(object_id) in failures:
            del failures[str(object_id)]
            io.write_json(failures, self.root / FAILURES_NAME)

    # ----------------------------------------------------------------- requests

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self.sleep(seconds)

    def request(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """Call ``fn(*args, **kwargs)`` under the rate limit, retrying transient failures.

        Raises :class:`FetchError` (classified) once retries are exhausted or the failure is
        permanent.
        """
        attempt = 0
        while True:
            self.limiter.wait()
            if self._result is not None:
                self._result.n_requests += 1
            try:
                return fn(*args, **kwargs)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - classified below
                err = classify_exception(exc)
                if not err.retryable or attempt >= self.policy.max_retries:
                    if err.retryable:
                        err = FetchError(f"{err.reason} (gave up after {attempt + 1} attempts)",
                                         retryable=False)
                    err.attempts = attempt + 1  # type: ignore[attr-defined]
                    raise err from exc
                delay = self.policy.backoff(attempt, self.rng)
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, self.policy.retry_after_max))
                log.info("retry %d/%d in %.1fs: %s", attempt + 1, self.policy.max_retries, delay, err.reason)
                if self._result is not None:
                    self._result.n_retries += 1
                self._sleep(delay)
                attempt += 1

    # ----------------------------------------------------------------- main loop

    def fetch_all(self, object_ids: Sequence[str], fetch_one: Callable[[str, "Fetcher"], Any], *,
                  query: Mapping[str, Any] | None = None, desc: str | None = None,
                  refresh: bool = False) -> FetchResult:
        """Fetch every object not cached yet; return all available payloads.

        ``fetch_one(object_id, fetcher)`` downloads one object, making each HTTP call through
        ``fetcher.request(fn, ...)``, and returns a payload (``write``-able); it raises
        :class:`EmptyResult`/:class:`NotFound`/:class:`FetchError` for a bad object. Objects in
        the failure registry are skipped unless ``policy.refetch_failed``; ``refresh=True``
        ignores (and overwrites) the cache.
        """
        from tqdm.auto import tqdm

        ids = list(dict.fromkeys(str(o) for o in object_ids))
        result = FetchResult()
        self._result = result
        started = _utc_now()
        status = "interrupted"
        failures = self.failures()
        bar = tqdm(total=len(ids), desc=desc or f"fetch {self.client}", unit="obj",
                   disable=not self.policy.progress, leave=False)
        try:
            for oid in ids:
                if not refresh and self.is_cached(oid):
                    result.payloads[oid] = self.load(oid)
                    result.cached.append(oid)
                elif oid in failures and not self.policy.refetch_failed and not refresh:
                    result.skipped_failed[oid] = failures[oid].get("reason", "unknown")
                else:
                    self._fetch_one(oid, fetch_one, result)
                bar.update(1)
                bar.set_postfix(fetched=len(result.fetched), cached=len(result.cached),
                                failed=len(result.failed) + len(result.skipped_failed))
            status = "complete"
        finally:
            bar.close()
            self._result = None
            self.write_manifest(result, query=query, started=started, status=status)
        if result.failed or result.skipped_failed:
            log.warning("%s: %d object(s) failed this run, %d skipped as failed before (see %s)",
                        self.client, len(result.failed), len(result.skipped_failed),
                        self.root / FAILURES_NAME)
        return result

    def _fetch_one(self, oid: str, fetch_one: Callable[[str, "Fetcher"], Any], result: FetchResult) -> None:
        try:
            payload = fetch_one(oid, self)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            err = classify_exception(exc)
            attempts = getattr(err, "attempts", 1)
            self._record_failure(oid, err.reason, attempts)
            result.failed[oid] = err.reason
            log.info("%s: object '%s' failed: %s", self.client, oid, err.reason)
            return
        with io.atomic_path(self.path(oid)) as tmp:
            self._write(tmp, payload)
        self._clear_failure(oid)
        result.payloads[oid] = payload
        result.fetched.append(oid)

    def write_manifest(self, result: FetchResult, *, query: Mapping[str, Any] | None, started: str,
                       status: str) -> Path:
        manifest = {
            "client": self.client,
            "status": status,
            "query": dict(query or {}),
            "started_utc": started,
            "finished_utc": _utc_now(),
            "counts": result.counts(),
            "failed": dict(sorted(result.failed.items())),
            "skipped_failed": dict(sorted(result.skipped_failed.items())),
            "cache_dir": str(self.root),
            "policy": asdict(self.policy),
            "versions": {"python": platform.python_version(),
                         **package_versions(("deeprubin", "requests", "pandas", "numpy",
                                             *self.packages))},
        }
        return io.write_json(manifest, self.root / MANIFEST_NAME)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


__all__ = [
    "EmptyResult", "FetchError", "FetchPolicy", "FetchResult", "Fetcher", "NotFound", "RateLimiter",
    "classify_exception", "parse_retry_after", "safe_name", "session_with_timeout",
]


def session_with_timeout(session, timeout: float):
    """Give every request of a ``requests.Session`` a default timeout (in place; returned).

    Clients such as ``alerce`` call ``session.request(method, url, params=...)`` without a
    timeout, so a stalled connection would hang forever. Mounting this adapter makes such a
    request raise ``requests.Timeout`` instead, which the fetcher retries.
    """
    from requests.adapters import HTTPAdapter

    class _TimeoutAdapter(HTTPAdapter):
        def send(self, request, **kwargs):
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().send(request, **kwargs)

    adapter = _TimeoutAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
