"""The stream classifier: packets in, one classification per alert out, exactly once.

:func:`run_stream` drives a transport (:mod:`deeprubin.stream.transports`) and a state store
(:mod:`deeprubin.stream.state`). Per poll of up to ``batch_size`` messages:

1. decode and parse each packet (:mod:`deeprubin.stream.packets`); a malformed one becomes a
   dead letter (the reason, where it came from) and never stops the stream;
2. drop alerts already classified (re-delivered after a crash) and repeats within the poll;
3. in **one transaction**: add the packets' photometry to the objects' stored light curves,
   rebuild each alert's light curve (the object's observations up to the alert's time),
   refit the GPs and classify them all together (the predict path,
   :class:`deeprubin.tasks.transients.evaluation.inference.Predictor`, with its calibrator),
   store the classifications, the dead letters and the replay position;
4. acknowledge the messages to the broker, publish the results to the output topic if one is
   configured, append the dead letters to the dead-letter file.

Observations in bands the model was not trained on (ZTF i for a g/r model) are dropped from the
light curves; an alert whose new source is in such a band is a dead letter.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .packets import Alert, PacketError, decode_message, parse_alert
from .state import Classification, StateStore
from .transports import Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSettings:
    """How the loop runs (``stream.*`` of the config)."""

    survey: str = "ztf"
    rubin_schema: str = "latest"
    batch_size: int = 256
    poll_timeout_s: float = 1.0
    max_alerts: int | None = None        # stop after this many messages (None: until idle / forever)
    idle_stop_s: float | None = 0.0      # stop after this long without messages (None: never; 0: at once)
    progress_every_s: float = 10.0
    dead_letter: Path | None = None      # JSON-lines file of malformed packets


@dataclass
class StreamSummary:
    """Counts of one :func:`run_stream` call."""

    messages: int = 0
    classified: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)   # per classified alert: poll -> commit
    timings_s: dict = field(default_factory=lambda: {"parse": 0.0, "store": 0.0, "classify": 0.0})

    def as_dict(self) -> dict:
        lat = np.asarray(self.latencies_s, dtype=float)
        pct = (lambda q: float(np.percentile(lat, q)) if lat.size else math.nan)
        return {"messages": self.messages, "classified": self.classified, "duplicates": self.duplicates,
                "dead_letters": self.dead_letters, "batches": self.batches, "seconds": round(self.seconds, 3),
                "alerts_per_s": self.classified / self.seconds if self.seconds > 0 else math.nan,
                "latency_p50_s": pct(50), "latency_p99_s": pct(99),
                "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()}}


class Classifier:
    """What the loop needs of a model: its classes, bands, version and batched probabilities.

    Wraps a :class:`~deeprubin.tasks.transients.evaluation.inference.Predictor` (anything with
    ``classes``, ``bands`` and ``probabilities(lightcurves) -> (grid, p)``) and, optionally, the
    anomaly stage's :class:`~deeprubin.tasks.transients.anomaly.scorers.AnomalyModel`, whose
    chosen score (``default_score``) becomes each alert's ``anomaly_score``.
    """

    def __init__(self, predictor, model_version: str, anomaly=None):
        self.predictor = predictor
        self.classes = list(predictor.classes)
        self.bands = list(predictor.bands)
        self.model_version = model_version
        self.anomaly = anomaly

    def classify(self, lightcurves) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        if self.anomaly is None:
            grid, p = self.predictor.probabilities(lightcurves)
            return [str(o) for o in grid.object_ids], p, None
        out = self.predictor.outputs(lightcurves, representation=True, features=True)
        ids = [str(o) for o in out.grid.object_ids]
        features = out.features.set_index(out.features["object_id"].astype(str)).drop(columns="object_id").reindex(ids)
        scores = self.anomaly.score(features, out.representation, out.probabilities)
        return ids, out.probabilities, scores[self.anomaly.default_score].to_numpy(dtype=float)


def _parse(messages: Sequence[Message], settings: StreamSettings, bands: set[str]):
    alerts: list[tuple[Message, Alert]] = []
    dead: list[dict] = []
    for m in messages:
        try:
            if m.error is not None:
                raise PacketError(m.error)
            packet = m.packet if m.packet is not None else decode_message(
                m.body, settings.survey, m.where, rubin_version=settings.rubin_schema)
            alert = parse_alert(packet, settings.survey, m.where)
            kept = tuple(o for o in alert.observations if o.band in bands)
            new_band = next((o.band for o in alert.observations if o.time == alert.time and o.detected), None)
            if not any(o.detected and o.time == alert.time for o in kept):
                raise PacketError(f"{m.where}: alert {alert.alert_id}: its new source is in band {new_band!r}, "
                                  f"which the model was not trained on (bands {sorted(bands)})")
            alerts.append((m, replace(alert, observations=kept)))
        except PacketError as err:
            dead.append({"where": m.where, "reason": str(err), "received_at": time.time()})
    return alerts, dead


def process_batch(messages: Sequence[Message], store: StateStore, classifier: Classifier, transport,
                  settings: StreamSettings, timings: dict | None = None) -> tuple[list[Classification], list[dict], int]:
    """One poll's work (steps 1-3 of the module docstring); returns (results, dead letters, duplicates).
    ``timings`` (parse, store, classify; seconds) is added to when given."""
    timings = {"parse": 0.0, "store": 0.0, "classify": 0.0} if timings is None else timings
    clock = time.perf_counter()
    parsed, dead = _parse(messages, settings, set(classifier.bands))
    now = time.perf_counter()
    timings["parse"] += now - clock
    clock = now
    seen = store.classified(a.alert_id for _, a in parsed)
    fresh: dict[str, Alert] = {}
    for _, a in parsed:
        if a.alert_id not in seen and a.alert_id not in fresh:
            fresh[a.alert_id] = a
    duplicates = len(parsed) - len(fresh)
    results: list[Classification] = []
    with store.batch():
        store.add_observations(fresh.values())
        if fresh:
            lc = store.light_curves([(a.alert_id, a.object_id, a.time) for a in fresh.values()])
            n_points = lc.groupby("object_id").size()
            now = time.perf_counter()
            timings["store"] += now - clock
            clock = now
            ids, p, scores = classifier.classify(lc)
            now = time.perf_counter()
            timings["classify"] += now - clock
            clock = now
            for k, alert_id in enumerate(ids):
                a = fresh[alert_id]
                results.append(Classification(a.alert_id, a.object_id, a.time, int(n_points[alert_id]),
                                              classifier.classes[int(np.argmax(p[k]))], tuple(map(float, p[k])),
                                              None if scores is None else float(scores[k]), classifier.model_version))
            store.add_classifications(results)
        store.add_dead_letters(dead)
        position = transport.position(messages)
        if position is not None:
            store.set_position(transport.name, position)
    timings["store"] += time.perf_counter() - clock
    return results, dead, duplicates


def result_record(r: Classification, classes: Sequence[str]) -> dict:
    """A classification as the JSON the output topic carries."""
    return {"alert_id": r.alert_id, "object_id": r.object_id, "time_mjd": r.time, "n_points": r.n_points,
            "predicted": r.predicted, "probabilities": dict(zip(classes, r.probabilities)),
            "anomaly_score": r.anomaly_score, "model_version": r.model_version}


def run_stream(transport, store: StateStore, classifier: Classifier, settings: StreamSettings, *,
               output=None, progress: Callable[[str], None] | None = None) -> StreamSummary:
    """Consume ``transport`` until it is idle for ``idle_stop_s`` (or ``max_alerts``); see the module doc."""
    store.bind_model(classifier.model_version, classifier.classes)
    say = progress or log.info
    summary = StreamSummary()
    start = last_report = time.perf_counter()
    idle_since = None
    while settings.max_alerts is None or summary.messages < settings.max_alerts:
        want = settings.batch_size if settings.max_alerts is None else min(
            settings.batch_size, settings.max_alerts - summary.messages)
        messages = transport.poll(want, settings.poll_timeout_s)
        now = time.perf_counter()
        if not messages:
            idle_since = idle_since or now
            if settings.idle_stop_s is not None and now - idle_since >= settings.idle_stop_s:
                break
            continue
        idle_since = None
        results, dead, duplicates = process_batch(messages, store, classifier, transport, settings,
                                                  summary.timings_s)
        transport.commit(messages)
        done = time.perf_counter()
        if output is not None and results:
            output.send([result_record(r, classifier.classes) for r in results])
        if dead and settings.dead_letter is not None:
            append_dead_letters(settings.dead_letter, dead)
        summary.messages += len(messages)
        summary.classified += len(results)
        summary.duplicates += duplicates
        summary.dead_letters += len(dead)
        summary.batches += 1
        summary.latencies_s.extend([done - now] * len(results))
        if done - last_report >= settings.progress_every_s:
            last_report = done
            elapsed = done - start
            lag = transport.lag()
            say(f"stream: {summary.classified} alerts classified ({summary.classified / elapsed:.0f}/s), "
                f"lag {'?' if lag is None else lag}, dead letters {summary.dead_letters}, "
                f"duplicates skipped {summary.duplicates}")
    summary.seconds = time.perf_counter() - start
    return summary


def append_dead_letters(path: Path, dead: Sequence[Mapping]) -> None:
    """Append dead letters to a JSON-lines file (the store holds them too, exactly once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for d in dead:
            fh.write(json.dumps(dict(d), sort_keys=True) + "\n")
