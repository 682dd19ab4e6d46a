"""Batch jobs: a CSV or parquet file of canonical light-curve rows, scored in the background.

``POST /v1/batch/{task}`` takes the file itself as the body (``Content-Type: text/csv`` or
``application/vnd.apache.parquet``) or, when ``serve.batch.data_root`` is set, JSON naming files
under that folder (``{"path": ..., "objects_path": ...}``). The input is read once at submission
(unreadable -> 422, too many objects -> 413), saved atomically under ``serve.batch.dir/<id>/``
(an upload) and recorded ``queued`` in the job store (:mod:`.jobs`). One worker thread scores the
queued jobs in order with the online path's steps (:mod:`.scoring`): the predict path's checks on
the whole file (:func:`~deeprubin.serve.scoring.prepare_tables`), then the objects that reach the
model ``serve.batch.chunk_objects`` at a time (:func:`~deeprubin.serve.scoring.classify`, under the
model's lock; a multiple of :data:`~deeprubin.serve.scoring.MODEL_BATCH`, so the probabilities
are those of scoring the whole file at once), and writes the results (``result.parquet``,
``result.csv``) atomically once the whole job is scored.

A row has the light-curve columns (``object_id``, ``time``, ``band``, ``flux``, ``flux_err``,
optional ``mag``, ``mag_err``, ``detected``) and, optionally, the object columns ``redshift``,
``ra``, ``dec``: one value per object, repeated on its rows. A server-side input may instead name
an objects table (``objects_path``: ``object_id`` and any of those columns; other columns are
ignored). Every error names the input (the upload or the path as given), the row or object and
the column. Nothing is unpickled: CSV through pandas' parser, parquet through pyarrow.
"""
from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator, Mapping

import numpy as np
import pandas as pd
from starlette.concurrency import run_in_threadpool

from ..core import io
from ..core.schema import LIGHTCURVE_OPTIONAL, LIGHTCURVE_REQUIRED
from .jobs import DONE, FAILED, QUEUED, Job, JobStore
from .metrics import Metrics
from .schemas import OBJECT_OPTIONAL
from .scoring import Prepared, ServedModel, Validation, assemble, classify, prepare_tables
from .settings import BatchSettings

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet")
#: Content-Type of an uploaded file -> its format.
UPLOAD_TYPES = {"text/csv": "csv", "application/csv": "csv",
                "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet"}
#: Media type of a downloaded result, by format.
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
TEXT_COLUMNS = ("object_id", "band")
NUMERIC_COLUMNS = ("time", "flux", "flux_err", "mag", "mag_err", *OBJECT_OPTIONAL)
ROW_COLUMNS = (*LIGHTCURVE_REQUIRED, *LIGHTCURVE_OPTIONAL, *OBJECT_OPTIONAL)
#: CSV cells read as missing in a numeric column (text columns are read as written).
NA_STRINGS = ("", "nan", "NaN", "NAN", "-nan", "NA", "N/A", "null", "NULL", "None")
#: How a CSV may spell ``detected`` (case-insensitive).
TRUE_STRINGS, FALSE_STRINGS = ("true", "1"), ("false", "0")
#: Bytes of randomness in a job id (not guessable: the id is in URLs).
JOB_ID_BYTES = 16
INPUT_STEM, RESULT_STEM = "input", "result"
JOBS_URL = "/v1/jobs"


class BatchInputError(ValueError):
    """An input that cannot be scored (unreadable, a missing or malformed column): 422."""


class PathRefused(PermissionError):
    """A server-side path that is off or outside ``serve.batch.data_root``: 403."""


class TooLarge(ValueError):
    """An upload over ``serve.batch.max_bytes`` or a job over ``serve.batch.max_objects``: 413."""


# ---------------------------------------------------------------- inputs

def upload_format(content_type: str | None) -> str | None:
    """``csv`` or ``parquet`` for an upload's ``Content-Type`` (parameters ignored), else None."""
    return UPLOAD_TYPES.get((content_type or "").split(";")[0].strip().lower())


def format_of(path: Path, field: str) -> str:
    """A server-side file's format by its suffix."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise BatchInputError(f"field '{field}': {path.name!r} is not a {' or '.join('.' + f for f in FORMATS)} file")
    return fmt


def resolve_under(given: str, root: Path | None, field: str) -> Path:
    """``given`` (relative to ``root``, or absolute) resolved, symlinks and ``..`` included; refused
    (:class:`PathRefused`) when there is no root or it resolves outside it, whether or not it exists."""
    if root is None:
        raise PathRefused(f"field '{field}': server-side paths are off (serve.batch.data_root is null)")
    if not given or "\0" in given:
        raise BatchInputError(f"field '{field}': not a file name: {given!r}")
    base = root.resolve()
    try:
        path = (base / given).resolve()
    except (OSError, RuntimeError) as err:          # a symlink loop
        raise BatchInputError(f"field '{field}': {given!r} cannot be resolved ({err})") from None
    if not path.is_relative_to(base):
        raise PathRefused(f"field '{field}': {given!r} resolves outside serve.batch.data_root")
    return path


def server_file(given: str, root: Path | None, field: str) -> tuple[Path, str]:
    """``(resolved path, format)`` of an existing server-side file under ``root``."""
    path = resolve_under(given, root, field)
    if not path.is_file():
        raise BatchInputError(f"field '{field}': {given!r}: no such file under serve.batch.data_root")
    return path, format_of(path, field)


def inside(path: Path, root: Path | None) -> bool:
    """Whether ``path`` still resolves inside ``root`` (checked again when a job runs)."""
    return root is not None and Path(path).resolve().is_relative_to(root.resolve())


def read_table(path: Path, fmt: str, what: str) -> pd.DataFrame:
    """A CSV (floats parsed to round-trip exactly; text columns as written) or parquet file."""
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False,
                           na_values={c: list(NA_STRINGS) for c in NUMERIC_COLUMNS}, float_precision="round_trip")
    except (OSError, ValueError) as err:      # parser errors, pyarrow's ArrowInvalid, a bad encoding
        first = (str(err).strip().splitlines() or [""])[0]
        raise BatchInputError(f"{what}: cannot read it as {fmt} ({type(err).__name__}: {first})") from None


def _where(i: int, fmt: str) -> str:
    """A data row as the user sees it: a CSV line (after the header), a parquet row index."""
    return f"line {i + 2}" if fmt == "csv" else f"row {i}"


def _text(values: pd.Series, column: str, what: str, fmt: str) -> pd.Series:
    bad = values.isna().to_numpy() | (values.astype(str).str.len() == 0).to_numpy()
    if bad.any():
        raise BatchInputError(f"{what}: {_where(int(np.argmax(bad)), fmt)}: column '{column}' is empty")
    return values.astype(str).reset_index(drop=True)


def _numeric(values: pd.Series, column: str, what: str, fmt: str) -> np.ndarray:
    converted = pd.to_numeric(values, errors="coerce")
    bad = (converted.isna() & values.notna()).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise BatchInputError(f"{what}: {_where(i, fmt)}: column '{column}' is not a number: {values.iloc[i]!r}")
    return converted.to_numpy(dtype=np.float64)


def _detected(values: pd.Series, what: str, fmt: str) -> np.ndarray:
    text = values.astype(str).str.strip().str.lower()
    true, false = text.isin(TRUE_STRINGS).to_numpy(), text.isin(FALSE_STRINGS).to_numpy()
    bad = ~(true | false) | values.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise BatchInputError(f"{what}: {_where(i, fmt)}: column 'detected' is {values.iloc[i]!r}, not true or "
                              "false (give it on every row or leave the column out)")
    return true


def rows_tables(raw: pd.DataFrame, what: str, fmt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(lightcurves, metadata)`` of a table of rows: the canonical light-curve columns, and one row per
    object with the object columns the rows carry (``object_id`` only when none)."""
    columns = [str(c) for c in raw.columns]
    unknown = [c for c in columns if c not in ROW_COLUMNS]
    if unknown:
        raise BatchInputError(f"{what}: unknown column(s) {unknown}; a row has {list(ROW_COLUMNS)}")
    missing = [c for c in LIGHTCURVE_REQUIRED if c not in columns]
    if missing:
        raise BatchInputError(f"{what}: missing column(s) {missing}; found {columns}")
    if not len(raw):
        raise BatchInputError(f"{what}: no rows")
    raw = raw.reset_index(drop=True)
    lc = pd.DataFrame({c: _text(raw[c], c, what, fmt) for c in TEXT_COLUMNS})
    for column in (*LIGHTCURVE_REQUIRED, *LIGHTCURVE_OPTIONAL):
        if column in columns and column not in TEXT_COLUMNS:
            lc[column] = (_detected(raw[column], what, fmt) if column == "detected"
                          else _numeric(raw[column], column, what, fmt))
    lc = lc[[c for c in (*LIGHTCURVE_REQUIRED, *LIGHTCURVE_OPTIONAL) if c in lc.columns]]
    meta = pd.DataFrame({"object_id": lc["object_id"]})
    for column in (c for c in OBJECT_OPTIONAL if c in columns):
        meta[column] = _numeric(raw[column], column, what, fmt)
        differs = meta.groupby("object_id", sort=False)[column].nunique(dropna=False) > 1
        if differs.any():
            raise BatchInputError(f"{what}: object '{differs.index[differs.to_numpy()][0]}': column '{column}' "
                                  "differs between its rows (one value per object)")
    return lc, meta.drop_duplicates("object_id").reset_index(drop=True)


def objects_file_table(raw: pd.DataFrame, what: str, fmt: str) -> pd.DataFrame:
    """``object_id`` and the object columns (``redshift``, ``ra``, ``dec``) of an objects table."""
    if "object_id" not in raw.columns:
        raise BatchInputError(f"{what}: missing column 'object_id'; found {[str(c) for c in raw.columns]}")
    raw = raw.reset_index(drop=True)
    meta = pd.DataFrame({"object_id": _text(raw["object_id"], "object_id", what, fmt)})
    for column in (c for c in OBJECT_OPTIONAL if c in raw.columns):
        meta[column] = _numeric(raw[column], column, what, fmt)
    twice = meta["object_id"].duplicated()
    if twice.any():
        raise BatchInputError(f"{what}: object '{meta.loc[twice, 'object_id'].iloc[0]}': column 'object_id' is "
                              "given more than once")
    return meta


@dataclass
class BatchInput:
    """A job's tables: light curves, object metadata, and the object ids in order of first appearance."""

    lightcurves: pd.DataFrame
    metadata: pd.DataFrame
    object_ids: list[str]


def load_input(path: Path, fmt: str, what: str, objects_path: Path | None = None, objects_format: str | None = None,
               objects_what: str = "objects_path") -> BatchInput:
    """Read a job's input; :class:`BatchInputError` names the file, row or object, and column."""
    lc, meta = rows_tables(read_table(path, fmt, what), what, fmt)
    if objects_path is not None:
        if len(meta.columns) > 1:
            raise BatchInputError(f"{what}: columns {list(meta.columns[1:])}: give the object columns either on "
                                  f"the rows or in {objects_what}, not both")
        meta = objects_file_table(read_table(objects_path, str(objects_format), objects_what), objects_what,
                                  str(objects_format))
    return BatchInput(lc, meta, [str(o) for o in pd.unique(lc["object_id"])])


def model_slices(prepared: Prepared, size: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """``(lightcurves, objects)`` of ``size`` consecutive objects at a time of those that reach the model, in
    the order the whole file's forward passes take them (sorted by object_id)."""
    ids = prepared.objects["object_id"].astype(str).to_numpy()
    rows = prepared.lightcurves["object_id"].astype(str).to_numpy()
    for start in range(0, len(ids), size):
        part = ids[start:start + size]
        lo, hi = np.searchsorted(rows, part[0], "left"), np.searchsorted(rows, part[-1], "right")
        yield (prepared.lightcurves.iloc[lo:hi].reset_index(drop=True),
               prepared.objects.iloc[start:start + size].reset_index(drop=True))


def results_table(results: list[Mapping], classes: list[str]) -> pd.DataFrame:
    """One row per object: ``object_id``, ``predicted`` (empty when not classified), ``prob_<class>``,
    ``quality_flags`` (joined with ';') and ``warnings`` (joined with '; ')."""
    table = pd.DataFrame({"object_id": pd.Series([str(r["object_id"]) for r in results], dtype=object),
                          "predicted": pd.Series([r["predicted"] for r in results], dtype=object)})
    for c in classes:
        table[f"prob_{c}"] = np.array([np.nan if r["probabilities"] is None else r["probabilities"][c]
                                       for r in results], dtype=np.float64)
    table["quality_flags"] = pd.Series([";".join(r["quality_flags"]) for r in results], dtype=object)
    table["warnings"] = pd.Series(["; ".join(r["warnings"]) for r in results], dtype=object)
    return table


def write_results(table: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """``{format: path}``: the results as parquet and CSV (floats written to read back exactly), each atomically."""
    out = {"parquet": io.write_parquet(table, folder / f"{RESULT_STEM}.parquet")}
    with io.atomic_path(folder / f"{RESULT_STEM}.csv") as tmp:
        table.to_csv(tmp, index=False)
    out["csv"] = folder / f"{RESULT_STEM}.csv"
    return out


async def save_upload(body: AsyncIterator[bytes], path: Path, limit: int) -> int:
    """Stream a request body into ``path`` atomically, refusing (:class:`TooLarge`) past ``limit`` bytes."""
    size = 0
    with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"upload of more than {limit} bytes exceeds serve.batch.max_bytes = {limit}")
            fh.write(chunk)
    return size


async def read_capped(body: AsyncIterator[bytes], limit: int, key: str) -> bytes:
    """A request body in memory, refusing (:class:`TooLarge`) past ``limit`` bytes (config key ``key``)."""
    parts, size = [], 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body of more than {limit} bytes exceeds {key} = {limit}")
        parts.append(chunk)
    return b"".join(parts)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def job_view(job: Job) -> dict:
    """A job as ``GET /v1/jobs/{id}`` shows it (no server paths)."""
    url = f"{JOBS_URL}/{job.id}"
    return {"id": job.id, "task": job.task, "status": job.status, "progress": job.progress,
            "n_objects": job.n_objects, "n_done": job.n_done, "error": job.error, "input": job.input_name,
            "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at), "url": url,
            "results": ({f: f"{url}/result?format={f}" for f in FORMATS} if job.status == DONE else None)}


# ---------------------------------------------------------------- the service's side

class BatchService:
    """Submission, the job store and the worker thread of the batch endpoint."""

    def __init__(self, settings: BatchSettings, store: JobStore, models: Mapping[str, ServedModel],
                 validation: Validation, metrics: Metrics, clock: Callable[[], float] = time.time):
        self.settings, self.store, self.models = settings, store, models
        self.validation, self.metrics, self.clock = validation, metrics, clock
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # submission
    def _new_folder(self) -> tuple[str, Path]:
        job_id = secrets.token_hex(JOB_ID_BYTES)
        folder = (self.settings.dir / job_id).resolve()
        folder.mkdir(parents=True)
        return job_id, folder

    def _check_size(self, data: BatchInput, what: str) -> None:
        n = len(data.object_ids)
        if n > self.settings.max_objects:
            raise TooLarge(f"{what} has {n} objects; serve.batch.max_objects = {self.settings.max_objects}")

    def submit(self, job: Job) -> Job:
        """Read the job's input (422 when it cannot be scored, 413 past ``max_objects``), then record it
        ``queued`` with its object count and wake the worker."""
        data = self.load(job)
        self._check_size(data, job.input_name)
        job = self.store.add(replace(job, n_objects=len(data.object_ids)))
        self._jobs_changed()
        self._wake.set()
        return job

    def _job(self, job_id: str, folder: Path, task: str, token: str, name: str, path: Path, fmt: str,
             objects: tuple[Path, str] | None = None) -> Job:
        return Job(id=job_id, task=task, token=token, status=QUEUED, n_objects=0, created_at=self.clock(),
                   input_name=name, input_path=str(path), input_format=fmt, folder=str(folder),
                   objects_path=None if objects is None else str(objects[0]),
                   objects_format=None if objects is None else objects[1])

    async def submit_upload(self, task: str, token: str, fmt: str, body: AsyncIterator[bytes]) -> Job:
        """Save an uploaded file under ``serve.batch.dir/<id>/`` and submit it (nothing is kept on error)."""
        job_id, folder = self._new_folder()
        try:
            path = folder / f"{INPUT_STEM}.{fmt}"
            await save_upload(body, path, self.settings.max_bytes)
            job = self._job(job_id, folder, task, token, f"uploaded {fmt} file", path, fmt)
            return await run_in_threadpool(self.submit, job)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def submit_path(self, task: str, token: str, path: str, objects_path: str | None = None) -> Job:
        """Submit server-side files under ``serve.batch.data_root`` (403 when off or outside it)."""
        root = self.settings.data_root
        source = server_file(path, root, "path")
        objects = None if objects_path is None else server_file(objects_path, root, "objects_path")
        job_id, folder = self._new_folder()
        try:
            return self.submit(self._job(job_id, folder, task, token, f"path {path!r}", *source, objects))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def load(self, job: Job) -> BatchInput:
        """The job's tables; a server-side file must still resolve inside ``serve.batch.data_root``."""
        for field, path in (("path", job.input_path), ("objects_path", job.objects_path)):
            server_side = path is not None and Path(path).parent != Path(job.folder)
            if server_side and not inside(Path(path), self.settings.data_root):
                raise PathRefused(f"job {job.id}: field '{field}' of {job.input_name}: no longer inside "
                                  "serve.batch.data_root")
        objects_what = "objects_path" if job.objects_path is None else f"objects_path of {job.input_name}"
        return load_input(Path(job.input_path), job.input_format, job.input_name,
                          None if job.objects_path is None else Path(job.objects_path), job.objects_format,
                          objects_what)

    # the worker
    def start(self) -> None:
        """Put the jobs a stopped server left running back in the queue, then start the worker thread."""
        recovered = self.store.recover(self.settings.max_restarts, self.clock())
        if recovered[QUEUED] or recovered[FAILED]:
            log.warning("serve: batch jobs interrupted by a restart: %d queued again %s, %d failed %s",
                        len(recovered[QUEUED]), recovered[QUEUED], len(recovered[FAILED]), recovered[FAILED])
        self._jobs_changed()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="deeprubin-batch-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the worker to stop after its chunk (the job goes back to the queue) and wait for it a while."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(self.settings.stop_wait_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                job = self.run_next()
            except Exception:                       # the store itself failed: keep the worker alive
                log.exception("serve: batch worker: the job store %s failed; retrying", self.store.path)
                job = None
            if job is None and not self._stop.is_set():
                self._wake.wait(self.settings.poll_s)

    def run_next(self) -> Job | None:
        """Claim the oldest queued job and score it; the job as it ended, or None when none was queued."""
        job = self.store.claim_next(self.clock())
        if job is None:
            return None
        self._jobs_changed()
        try:
            self.run(job)
        finally:
            self._jobs_changed()
        return self.store.get(job.id)

    def run(self, job: Job) -> None:
        """Score a claimed job: the predict path's checks on the whole file, then the objects that reach the
        model ``chunk_objects`` at a time (progress after each), then the results, written at the end. Any
        error fails the job (with the message), never the worker; a stop between chunks requeues it."""
        try:
            model = self.models.get(job.task)
            if model is None:
                raise BatchInputError(f"job {job.id}: no model serves task {job.task!r}")
            data = self.load(job)
            self._check_size(data, job.input_name)
            prepared = prepare_tables(model, data.lightcurves, data.metadata, self.validation, table=job.input_name)
            n_objects, n_aside = len(prepared.order), len(prepared.order) - len(prepared.objects)
            self.metrics.count_batch_objects(job.task, "not_classified", n_aside)
            n_done = n_aside                                  # objects set aside have their result already
            self.store.set_progress(job.id, n_done, n_objects)
            predictions: dict[str, dict] = {}
            for lightcurves, objects in model_slices(prepared, self.settings.chunk_objects):
                if self._stop.is_set():
                    self.store.requeue(job.id)
                    log.info("serve: batch job %s stopped after %d of %d objects; queued again", job.id, n_done,
                             n_objects)
                    return
                scored = classify(model, prepared, lightcurves, objects)
                predictions.update(scored)
                self.metrics.count_batch_objects(job.task, "classified", len(scored))
                self.metrics.count_batch_objects(job.task, "not_classified", len(objects) - len(scored))
                n_done += len(objects)
                self.store.set_progress(job.id, n_done, n_objects)
            table = results_table(assemble(prepared, predictions), list(model.predictor.classes))
            files = write_results(table, Path(job.folder))
            self.store.finish(job.id, str(files["parquet"]), str(files["csv"]), self.clock())
            log.info("serve: batch job %s done: %d objects of %s", job.id, n_objects, job.input_name)
        except Exception as err:
            message = str(err) if job.input_name in str(err) else f"{job.input_name}: {type(err).__name__}: {err}"
            log.warning("serve: batch job %s failed: %s", job.id, message)
            self.store.fail(job.id, message, self.clock())

    def _jobs_changed(self) -> None:
        self.metrics.set_jobs(self.store.counts())
