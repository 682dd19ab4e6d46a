"""The service's metrics in the Prometheus text exposition format (0.0.4), written by hand.

Families (prefix ``deeprubin_serve_``): ``requests_total`` (counter; endpoint, method, status),
``request_duration_seconds`` (histogram; endpoint), ``errors_total`` (counter; endpoint: responses
with status >= 500, unhandled exceptions included), ``objects_total`` (counter; task, outcome:
classified | not_classified), ``model_info`` (gauge, 1; task, model, version), for the batch jobs
``jobs`` (gauge; status: jobs in the job store) and ``batch_objects_total`` (counter; task, outcome), and
for a model served from the registry ``model_registry_version`` (gauge: the version number; task, model,
alias) and ``model_reloads_total`` (counter; task, outcome: loaded | failed).
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from typing import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "deeprubin_serve"
#: Status codes from this one up count as errors.
ERROR_STATUS = 500


def escape_label(value: object) -> str:
    """A label value as the text format needs it (backslash, double quote and newline escaped)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}" if labels else ""


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


class Metrics:
    """Counters, the latency histogram and the model gauge of one server process (thread-safe)."""

    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._errors: dict[str, int] = defaultdict(int)
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._objects: dict[tuple[str, str], int] = defaultdict(int)
        self._models: dict[str, tuple[str, str]] = {}
        self._jobs: dict[str, int] = {}
        self._batch_objects: dict[tuple[str, str], int] = defaultdict(int)
        self._registry: dict[str, tuple[str, str, int]] = {}
        self._reloads: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """One finished request."""
        with self._lock:
            self._requests[(endpoint, method, str(status))] += 1
            self._errors[endpoint] += int(status >= ERROR_STATUS)   # every endpoint listed, from 0
            counts = self._hist.setdefault(endpoint, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self._sum[endpoint] += seconds

    def count_objects(self, task: str, outcome: str, n: int) -> None:
        with self._lock:
            self._objects[(task, outcome)] += n

    def set_model(self, task: str, model: str, version: str) -> None:
        with self._lock:
            self._models[task] = (model, version)

    def set_registry_version(self, task: str, model: str, alias: str, version: int) -> None:
        """The registry version a task serves (registry mode)."""
        with self._lock:
            self._registry[task] = (model, alias, int(version))

    def count_reload(self, task: str, outcome: str) -> None:
        """A new registry version swapped in (``loaded``) or one that could not be (``failed``)."""
        with self._lock:
            self._reloads[(task, outcome)] += 1

    def set_jobs(self, counts: dict[str, int]) -> None:
        """Jobs in the job store by status (the whole count, replacing the last one)."""
        with self._lock:
            self._jobs = dict(counts)

    def count_batch_objects(self, task: str, outcome: str, n: int) -> None:
        with self._lock:
            self._batch_objects[(task, outcome)] += n

    def render(self) -> str:
        """The exposition text (ends with a newline)."""
        p = PREFIX
        with self._lock:
            lines = _family(f"{p}_requests_total", "counter", "Requests by endpoint, method and status code.",
                            ((dict(endpoint=e, method=m, status=s), n)
                             for (e, m, s), n in sorted(self._requests.items())))
            lines += [f"# HELP {p}_request_duration_seconds Request latency (receipt to last byte sent).",
                      f"# TYPE {p}_request_duration_seconds histogram"]
            for endpoint, counts in sorted(self._hist.items()):
                total = 0
                for bound, n in zip((*self.buckets, math.inf), counts):
                    total += n
                    lines.append(f"{p}_request_duration_seconds_bucket{_labels(endpoint=endpoint, le=_number(bound))} "
                                 f"{total}")
                lines.append(f"{p}_request_duration_seconds_sum{_labels(endpoint=endpoint)} "
                             f"{repr(float(self._sum[endpoint]))}")
                lines.append(f"{p}_request_duration_seconds_count{_labels(endpoint=endpoint)} {total}")
            lines += _family(f"{p}_errors_total", "counter", f"Responses with status >= {ERROR_STATUS}, by endpoint.",
                             ((dict(endpoint=e), n) for e, n in sorted(self._errors.items())))
            lines += _family(f"{p}_objects_total", "counter", "Objects received for scoring, by task and outcome.",
                             ((dict(task=t, outcome=o), n) for (t, o), n in sorted(self._objects.items())))
            lines += _family(f"{p}_model_info", "gauge", "The model each task serves (value 1).",
                             ((dict(task=t, model=m, version=v), 1) for t, (m, v) in sorted(self._models.items())))
            lines += _family(f"{p}_jobs", "gauge", "Batch jobs in the job store, by status.",
                             ((dict(status=s), n) for s, n in self._jobs.items()))
            lines += _family(f"{p}_batch_objects_total", "counter", "Objects scored by batch jobs, by task and outcome.",
                             ((dict(task=t, outcome=o), n) for (t, o), n in sorted(self._batch_objects.items())))
            lines += _family(f"{p}_model_registry_version", "gauge",
                             "The registry version each task serves (registry mode).",
                             ((dict(task=t, model=m, alias=a), v) for t, (m, a, v) in sorted(self._registry.items())))
            lines += _family(f"{p}_model_reloads_total", "counter",
                             "Registry versions swapped in (loaded) or refused (failed).",
                             ((dict(task=t, outcome=o), n) for (t, o), n in sorted(self._reloads.items())))
        return "\n".join(lines) + "\n"


def _family(name: str, kind: str, help_text: str, samples) -> list[str]:
    """One metric family's lines: HELP, TYPE, then a line per ``(labels, value)`` sample."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}",
            *(f"{name}{_labels(**labels)} {value}" for labels, value in samples)]
