"""The batch jobs of the scoring service, kept in a SQLite file so that they survive a restart.

A job is ``queued`` when submitted, ``running`` while the worker scores it, then ``done`` (its
results written) or ``failed`` (with the error message). The worker claims the oldest queued job
(:meth:`JobStore.claim_next`); at startup :meth:`JobStore.recover` puts the jobs that a stopped
server left ``running`` back in the queue (they are scored again from the start: results are
written only at the end) unless they were already interrupted ``max_restarts`` times. The file
is created with its table on first use (mode 0600, as the token store); ``serve.batch.store``.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path

from .sqlite import connect

QUEUED, RUNNING, DONE, FAILED = STATUSES = ("queued", "running", "done", "failed")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
    progress REAL NOT NULL DEFAULT 0,
    n_objects INTEGER NOT NULL,
    n_done INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    input_name TEXT NOT NULL,
    input_path TEXT NOT NULL,
    input_format TEXT NOT NULL,
    objects_path TEXT,
    objects_format TEXT,
    folder TEXT NOT NULL,
    result_parquet TEXT,
    result_csv TEXT,
    restarts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, seq);
"""


class JobStoreError(ValueError):
    """The job store cannot be used (not a SQLite file, an unknown job); the message names it."""


@dataclass(frozen=True)
class Job:
    """One row of the job store."""

    id: str
    task: str
    token: str                     # name of the token that submitted it (the only one that sees it)
    status: str
    n_objects: int
    created_at: float
    input_name: str                # what messages call the input (an upload, or the path as given)
    input_path: str
    input_format: str              # csv | parquet
    folder: str                    # where its upload and results live
    objects_path: str | None = None
    objects_format: str | None = None
    progress: float = 0.0
    n_done: int = 0
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    result_parquet: str | None = None
    result_csv: str | None = None
    restarts: int = 0


_COLUMNS = tuple(f.name for f in fields(Job))


class JobStore:
    """The SQLite file of batch jobs; every method opens its own connection (thread-safe)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, _SCHEMA, JobStoreError, "job store")

    def _select(self, conn: sqlite3.Connection, where: str, args: tuple = ()) -> list[Job]:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {where}", args).fetchall()
        return [Job(**dict(zip(_COLUMNS, row))) for row in rows]

    def add(self, job: Job) -> Job:
        """Insert a new job (its id must be new)."""
        values = [getattr(job, c) for c in _COLUMNS]
        with closing(self._connect()) as conn:
            try:
                with conn:
                    conn.execute(f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                                 values)
            except sqlite3.IntegrityError as err:
                raise JobStoreError(f"{self.path}: job {job.id!r} cannot be added ({err})") from None
        return job

    def get(self, job_id: str) -> Job | None:
        with closing(self._connect()) as conn:
            found = self._select(conn, "WHERE id = ?", (job_id,))
        return found[0] if found else None

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        with closing(self._connect()) as conn:
            return self._select(conn, "ORDER BY seq")

    def claim_next(self, now: float | None = None) -> Job | None:
        """The oldest queued job, now ``running`` (progress reset); None when the queue is empty."""
        with closing(self._connect()) as conn:
            conn.isolation_level = None
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = self._select(conn, "WHERE status = ? ORDER BY seq LIMIT 1", (QUEUED,))
                if found:
                    conn.execute("UPDATE jobs SET status = ?, started_at = ?, progress = 0, n_done = 0, error = NULL "
                                 "WHERE id = ?", (RUNNING, _now(now), found[0].id))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return self.get(found[0].id) if found else None

    def _update(self, job_id: str, sql: str, args: tuple, *, only: str | None = None) -> None:
        where = "WHERE id = ?" + ("" if only is None else " AND status = ?")
        with closing(self._connect()) as conn, conn:
            done = conn.execute(f"UPDATE jobs SET {sql} {where}",
                                (*args, job_id, *(() if only is None else (only,)))).rowcount
        if not done and self.get(job_id) is None:
            raise JobStoreError(f"{self.path}: no job {job_id!r}")

    def set_progress(self, job_id: str, n_done: int, n_objects: int) -> None:
        """A running job has scored ``n_done`` of its ``n_objects`` objects (progress: their ratio)."""
        self._update(job_id, "n_done = ?, n_objects = ?, progress = ?",
                     (n_done, n_objects, n_done / n_objects if n_objects else 1.0), only=RUNNING)

    def finish(self, job_id: str, result_parquet: str, result_csv: str, now: float | None = None) -> None:
        """``done``: progress 1, its result files recorded."""
        self._update(job_id, "status = ?, progress = 1, n_done = n_objects, finished_at = ?, result_parquet = ?, "
                     "result_csv = ?, error = NULL", (DONE, _now(now), result_parquet, result_csv))

    def fail(self, job_id: str, message: str, now: float | None = None) -> None:
        """``failed`` with ``message``."""
        self._update(job_id, "status = ?, error = ?, finished_at = ?", (FAILED, message, _now(now)))

    def requeue(self, job_id: str) -> None:
        """A running job back to ``queued`` (the server is stopping): it is scored again from the start."""
        self._update(job_id, "status = ?, progress = 0, n_done = 0, started_at = NULL", (QUEUED,), only=RUNNING)

    def recover(self, max_restarts: int, now: float | None = None) -> dict[str, list[str]]:
        """At startup: every job left ``running`` (its server stopped mid-job) counts one more restart and
        goes back to ``queued``, or to ``failed`` past ``max_restarts``. Returns ``{status: [ids]}``."""
        out: dict[str, list[str]] = {QUEUED: [], FAILED: []}
        with closing(self._connect()) as conn, conn:
            for job in self._select(conn, "WHERE status = ? ORDER BY seq", (RUNNING,)):
                restarts = job.restarts + 1
                if restarts > max_restarts:
                    conn.execute("UPDATE jobs SET status = ?, restarts = ?, finished_at = ?, error = ? WHERE id = ?",
                                 (FAILED, restarts, _now(now),
                                  f"job {job.id}: interrupted by {restarts} server restart(s); "
                                  f"serve.batch.max_restarts = {max_restarts}", job.id))
                    out[FAILED].append(job.id)
                else:
                    conn.execute("UPDATE jobs SET status = ?, restarts = ?, progress = 0, n_done = 0, "
                                 "started_at = NULL WHERE id = ?", (QUEUED, restarts, job.id))
                    out[QUEUED].append(job.id)
        return out

    def counts(self) -> dict[str, int]:
        """Jobs by status (every status listed, from 0)."""
        with closing(self._connect()) as conn:
            rows = dict(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {s: int(rows.get(s, 0)) for s in STATUSES}


def _now(now: float | None) -> float:
    return time.time() if now is None else now
