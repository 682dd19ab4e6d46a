"""The stream's state and output store: one SQLite database on disk.

Tables
------
``observations``   every object's photometry, one row per (object, epoch): what the GP refits on.
``classifications`` one row per classified alert (``alert_id`` is the primary key): object, time
                   [MJD], predicted class, class probabilities (JSON, the model's class order),
                   anomaly score, model version, processing time [unix s].
``dead_letters``   malformed packets: where they came from and why they were refused.
``positions``      the consumer position of transports that keep it here (the replay).
``meta``           the model version and classes the store was written with.

Exactly once
------------
:meth:`StateStore.commit_batch` writes a batch's observations, classifications and position in
**one transaction**: after a crash (SIGKILL included) either all of a batch is there or none of
it. Transports whose position lives in a broker (Redis Streams, Kafka) acknowledge *after* that
commit, so a crash between the two re-delivers alerts that are already classified;
:meth:`StateStore.classified` lets the consumer skip them (idempotence by alert id, and the
primary key would refuse a second row anyway). WAL journaling with ``synchronous=NORMAL``
survives a killed process; ``durability: full`` (``synchronous=FULL``) also survives power loss.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .packets import Alert

_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    object_id TEXT NOT NULL, epoch INTEGER NOT NULL, time REAL NOT NULL, band TEXT NOT NULL,
    flux REAL NOT NULL, flux_err REAL NOT NULL, detected INTEGER NOT NULL,
    PRIMARY KEY (object_id, epoch)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS classifications (
    alert_id TEXT PRIMARY KEY, object_id TEXT NOT NULL, time REAL NOT NULL, n_points INTEGER NOT NULL,
    predicted TEXT NOT NULL, probabilities TEXT NOT NULL, anomaly_score REAL,
    model_version TEXT NOT NULL, processed_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS classifications_object ON classifications (object_id, time);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, location TEXT NOT NULL, reason TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS positions (transport TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

DURABILITY = {"normal": "NORMAL", "full": "FULL"}


class StoreMismatchError(ValueError):
    """The store was written by another model (classes or version); named with the file."""


@dataclass(frozen=True)
class Classification:
    """One alert's result, as stored."""

    alert_id: str
    object_id: str
    time: float
    n_points: int
    predicted: str
    probabilities: tuple[float, ...]
    anomaly_score: float | None
    model_version: str


class StateStore:
    """SQLite state + output store at ``path`` (created with its tables when absent)."""

    def __init__(self, path: str | Path, *, durability: str = "normal"):
        if durability not in DURABILITY:
            raise ValueError(f"stream state durability must be one of {sorted(DURABILITY)}, got {durability!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path}: not a usable stream state database ({err})") from err

    # -- model binding ---------------------------------------------------------------------------
    def bind_model(self, model_version: str, classes: Sequence[str]) -> None:
        """Record the model and classes, or check them against those already recorded.

        A store holds one model's classifications (their probability vectors follow its class
        order); continuing it with another model raises :class:`StoreMismatchError`.
        """
        stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        want = {"model_version": model_version, "classes": json.dumps(list(classes))}
        if not stored:
            with self._transaction():
                self.db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(want.items()))
            return
        for key, value in want.items():
            if stored.get(key) != value:
                raise StoreMismatchError(
                    f"{self.path}: written with {key} {stored.get(key)}, the stream now runs {value}; "
                    f"use a new stream.state path for a new model")

    def classes(self) -> list[str]:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'classes'").fetchone()
        return [] if row is None else json.loads(row[0])

    # -- reads ------------------------------------------------------------------------------------
    def position(self, transport: str) -> str | None:
        row = self.db.execute("SELECT position FROM positions WHERE transport = ?", (transport,)).fetchone()
        return None if row is None else row[0]

    def classified(self, alert_ids: Iterable[str]) -> set[str]:
        """Those of ``alert_ids`` that already have a classification."""
        ids = list(dict.fromkeys(str(a) for a in alert_ids))
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT alert_id FROM classifications WHERE alert_id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self.db.execute(q, chunk))
        return found

    def light_curves(self, requests: Sequence[tuple[str, str, float]]) -> pd.DataFrame:
        """Canonical ``lightcurves`` rows for each ``(key, object_id, until)``: the object's
        observations with ``time <= until``, under ``object_id = key``."""
        frames = []
        for key, object_id, until in requests:
            rows = self.db.execute("SELECT time, band, flux, flux_err, detected FROM observations "
                                   "WHERE object_id = ? AND time <= ? ORDER BY time, epoch",
                                   (object_id, float(until))).fetchall()
            if rows:
                arr = np.array([r[:1] + r[2:] for r in rows], dtype=float)
                frames.append(pd.DataFrame({"object_id": key, "time": arr[:, 0], "band": [r[1] for r in rows],
                                            "flux": arr[:, 1], "flux_err": arr[:, 2],
                                            "detected": arr[:, 3].astype(bool)}))
        if not frames:
            return pd.DataFrame({"object_id": [], "time": [], "band": [], "flux": [], "flux_err": [],
                                 "detected": np.array([], dtype=bool)})
        return pd.concat(frames, ignore_index=True)

    def classifications(self) -> pd.DataFrame:
        """Every stored classification, one row per alert, ``prob_<class>`` columns expanded."""
        table = pd.read_sql_query("SELECT * FROM classifications ORDER BY time, alert_id", self.db)
        classes = self.classes()
        probs = np.array([json.loads(p) for p in table.pop("probabilities")], dtype=float).reshape(len(table), -1)
        for j, c in enumerate(classes):
            table[f"prob_{c}"] = probs[:, j] if len(table) else []
        return table

    def counts(self) -> dict:
        n_obj, n_rows = self.db.execute("SELECT COUNT(DISTINCT object_id), COUNT(*) FROM observations").fetchone()
        (n_cls,) = self.db.execute("SELECT COUNT(*) FROM classifications").fetchone()
        (n_dead,) = self.db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()
        return {"objects": int(n_obj), "observations": int(n_rows), "classifications": int(n_cls),
                "dead_letters": int(n_dead)}

    # -- writes -----------------------------------------------------------------------------------
    def add_observations(self, alerts: Iterable[Alert]) -> None:
        """Upsert the photometry of ``alerts`` (inside the caller's transaction, see :meth:`batch`)."""
        rows = [(a.object_id, o.epoch, o.time, o.band, o.flux, o.flux_err, int(o.detected))
                for a in alerts for o in a.observations]
        # an epoch seen again keeps its flux; a detection seen later marks it detected
        self.db.executemany(
            "INSERT INTO observations VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (object_id, epoch) DO UPDATE SET "
            "detected = MAX(detected, excluded.detected)", rows)

    def add_classifications(self, results: Iterable[Classification]) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT OR IGNORE INTO classifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.alert_id, r.object_id, r.time, r.n_points, r.predicted,
              json.dumps([round(float(p), 9) for p in r.probabilities]),
              None if r.anomaly_score is None else float(r.anomaly_score), r.model_version, now) for r in results])

    def add_dead_letters(self, dead: Iterable[dict]) -> None:
        self.db.executemany("INSERT INTO dead_letters (location, reason, received_at) VALUES (?, ?, ?)",
                            [(d["where"], d["reason"], float(d["received_at"])) for d in dead])

    def dead_letters(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT location, reason, received_at FROM dead_letters ORDER BY id", self.db)

    def set_position(self, transport: str, position: str) -> None:
        self.db.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (transport) DO UPDATE SET "
                        "position = excluded.position", (transport, position))

    def batch(self):
        """Context manager: one transaction (committed on success, rolled back on any error)."""
        return self._transaction()

    def _transaction(self):
        store = self

        class _Tx:
            def __enter__(self):
                store.db.execute("BEGIN IMMEDIATE")
                return store

            def __exit__(self, exc_type, exc, tb):
                store.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
                return False

        return _Tx()

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
