"""Load test of the scoring service (issue 25, point 5): a real server, closed-loop clients, a batch upload.

Starts ``python -m deeprubin.serve`` on a free 127.0.0.1 port with a temporary token store and job
store, serving the pipeline's model (``serve.models.transients``: ``models/transients/model.ckpt``
and its calibrator; ``--checkpoint`` another), and creates a load-test token with ``--unlimited``
(exempt from the rate limit). Loopback only, bounded in time and size. Then, one after the other:

1. **Online**: ``--clients`` closed-loop client threads (each sends a single-object
   ``POST /v1/predict/transients`` and waits for the reply before sending the next) for
   ``--seconds``, each object drawn at random (seed ``--seed``) from the light curves of the
   pipeline's test split (``serve.registry.evaluation.transients``: the split manifest, the ingested
   light curves, the objects table for the redshifts). A few warm-up requests go first, not counted.
   Records requests/s, objects/s, latency p50/p90/p99/max (send to last byte of the reply) and the
   replies by status (anything but 200, or no reply, is an error).
2. **Batch**: a parquet file of ``--batch-objects`` objects (the test split's objects replicated
   under new object_ids, with their redshift on every row) uploaded to ``POST /v1/batch/transients``
   and polled until done. Its cost is the wall time from the start of the upload to the job's
   ``finished_at`` (upload, reading, checks, scoring, results written). The server is then stopped
   and, in this process, the same file is read and checked as the job does (not timed), and
   :meth:`~deeprubin.tasks.transients.evaluation.inference.Predictor.probabilities` (GP + model +
   calibration: the batch predict path) is timed on the rows that reach the model, after a warm-up
   call on their first 512 objects (one forward pass). Both costs are per object of the file; their
   ratio is ``batch.endpoint_vs_predict``. The job's probabilities are compared with the in-process
   ones, bit for bit (``batch.matches_predict_path``).

Writes ``reports/benchmarks/serve.json`` (``--out``, atomically) with the command, the code hash,
the machine, the settings, both results, the issue's targets and ``meets``. Needs ``make run``
(``dvc repro``) first: the model and the test split. Progress goes to stderr::

    python -m benchmarks.serve_load                                   # 16 clients x 60 s, 100,000 objects
    python -m benchmarks.serve_load --clients 2 --seconds 3 --batch-objects 200 --out /tmp/serve.json

Trailing ``serve.<key>=<value>`` arguments go to the server (e.g. ``serve.log_level=warning``).
"""
from __future__ import annotations

from deeprubin.core import numerics

numerics.pin()  # before numpy and torch load: the in-process predict path computes as the server does

import argparse  # noqa: E402
import http.client  # noqa: E402
import io as stdio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deeprubin.core import io  # noqa: E402
from deeprubin.core.schema import LIGHTCURVE_OPTIONAL, LIGHTCURVE_REQUIRED  # noqa: E402

from .common import REPO_ROOT, RESULTS, provenance  # noqa: E402

log = logging.getLogger("benchmarks.serve_load")

#: Targets of issue 25 (reported beside the measurement, never asserted in tests).
TARGETS = {"online_latency_p99_s": 0.25, "online_clients": 16, "online_errors": 0,
           "batch_endpoint_vs_predict": 1.2, "batch_objects": 100_000}
TASK = "transients"
PREDICT_URL, BATCH_URL = f"/v1/predict/{TASK}", f"/v1/batch/{TASK}"
PARQUET = "application/vnd.apache.parquet"
#: Columns of an uploaded row: the canonical light-curve columns and the object's redshift.
ROW_COLUMNS = (*LIGHTCURVE_REQUIRED, *LIGHTCURVE_OPTIONAL)
#: Objects of the in-process warm-up call (not timed): one forward pass of the predict path (512), so that
#: the timed call pays no first-call costs the server had paid on its earlier requests.
WARMUP_OBJECTS = 512
LOG_TAIL = 4000
#: Seconds the upload may take: the reply comes once the server has read and checked the whole file.
UPLOAD_TIMEOUT_S = 3600.0


class BenchmarkError(RuntimeError):
    """A setup problem (no model, no data, a server that does not start): the message says what to do."""


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True)
class Inputs:
    checkpoint: Path
    lightcurves: Path
    objects: Path
    manifest: Path
    split: str


def server_config(overrides: list[str]):
    """The whole config as the server composes it (``conf/`` and the ``serve.*`` overrides)."""
    from deeprubin.core.config import compose_params

    return compose_params(overrides)


def default_inputs(args: argparse.Namespace, cfg) -> Inputs:
    """The given paths, else the config's (``serve.models.transients``, ``serve.registry.evaluation.transients``),
    relative to the repository."""
    from omegaconf import OmegaConf

    serve = OmegaConf.to_container(cfg.serve, resolve=True)
    evaluation = serve["registry"]["evaluation"][TASK]

    def pick(value, default):
        return Path(value) if value is not None else (REPO_ROOT / default)
    return Inputs(pick(args.checkpoint, serve["models"][TASK]["checkpoint"]),
                  pick(args.lightcurves, evaluation["lightcurves"]), pick(args.objects, evaluation["objects"]),
                  pick(args.manifest, evaluation["manifest"]), args.split or evaluation["split"])


def check_inputs(inputs: Inputs) -> None:
    if not inputs.checkpoint.is_file():
        raise BenchmarkError(f"no model at {inputs.checkpoint}: run the pipeline first (make run, i.e. dvc repro), "
                             "or name a checkpoint with --checkpoint")
    for what, path in (("light curves", inputs.lightcurves), ("objects table", inputs.objects),
                       ("split manifest", inputs.manifest)):
        if not path.is_file():
            raise BenchmarkError(f"no {what} at {path}: run the pipeline first (make run, i.e. dvc repro), "
                                 "or name it with the matching option")


def split_objects(inputs: Inputs) -> tuple[pd.DataFrame, pd.Series]:
    """``(rows, redshift by object_id)`` of the split's objects (rows sorted by object_id, then time)."""
    manifest = io.read_parquet(inputs.manifest)
    ids = set(manifest.loc[manifest["split"].astype(str) == inputs.split, "object_id"].astype(str))
    lc = io.read_parquet(inputs.lightcurves)
    lc = lc[lc["object_id"].astype(str).isin(ids)]
    if not len(lc):
        raise BenchmarkError(f"no light curves of the '{inputs.split}' split of {inputs.manifest} in "
                             f"{inputs.lightcurves}: rerun the pipeline (dvc repro)")
    lc = lc[[c for c in ROW_COLUMNS if c in lc.columns]].assign(object_id=lambda t: t["object_id"].astype(str))
    lc = lc.sort_values(["object_id", "time"], kind="stable").reset_index(drop=True)
    objects = io.read_parquet(inputs.objects)
    z = objects.set_index(objects["object_id"].astype(str))["redshift"].astype(float) \
        if "redshift" in objects.columns else pd.Series(dtype=float)
    return lc, z.reindex(lc["object_id"].unique())


def _jsonable(value):
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value.item() if hasattr(value, "item") else value


def online_payloads(lc: pd.DataFrame, z: pd.Series) -> list[bytes]:
    """One ``/v1/predict`` body per object (its rows and redshift), serialised once."""
    out = []
    for oid, rows in lc.groupby("object_id", sort=True):
        body = {"lightcurves": [{k: _jsonable(v) for k, v in r.items()} for r in rows.to_dict(orient="records")],
                "objects": [{"object_id": oid, "redshift": _jsonable(z.get(oid, np.nan))}]}
        out.append(json.dumps(body, allow_nan=False).encode())
    return out


def replicated(lc: pd.DataFrame, z: pd.Series, n_objects: int) -> pd.DataFrame:
    """``n_objects`` objects: the split's objects in turn, each copy under a new id ``<id>_x<copy>``, with the
    object's redshift on every row. ``lc`` is sorted by object_id (as :func:`split_objects` gives it)."""
    ids = lc["object_id"].unique()
    starts = np.searchsorted(lc["object_id"].to_numpy(), ids, "left")
    sizes = np.diff(np.append(starts, len(lc)))
    source = np.arange(n_objects) % len(ids)
    copy = np.arange(n_objects) // len(ids)
    take = np.concatenate([np.arange(starts[s], starts[s] + sizes[s]) for s in source])
    new_ids = np.array([f"{ids[s]}_x{c}" for s, c in zip(source, copy)], dtype=object)
    table = lc.iloc[take].reset_index(drop=True)
    table["object_id"] = np.repeat(new_ids, sizes[source])
    table["redshift"] = np.repeat(z.reindex(ids).to_numpy(dtype=float)[source], sizes[source])
    return table


# ---------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: bytes | None = None, token: str | None = None,
         content_type: str = "application/json", timeout: float = 60.0) -> tuple[int, bytes]:
    """``(status, body)`` of one request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    def tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return "(no log)"

    def peak_rss_mb(self) -> float | None:
        """The server's peak resident memory so far (Linux: VmHWM), None elsewhere."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError):
            pass
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def create_token(store: Path, work: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "deeprubin.serve.tokens", "--store", str(store), "create",
                           "--name", "loadtest", "--unlimited"], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise BenchmarkError(f"could not create the load-test token in {store}:\n{proc.stderr[-LOG_TAIL:]}")
    return proc.stdout.strip().splitlines()[-1]


def start_server(work: Path, store: Path, checkpoint: Path, overrides: list[str], startup_s: float) -> Server:
    """``python -m deeprubin.serve`` on a free loopback port (cwd: ``work``), once ``/healthz`` answers 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "deeprubin.serve", "serve.host=127.0.0.1", f"serve.port={port}",
           f"serve.tokens={store}", f"serve.models.{TASK}.source=file", f"serve.models.{TASK}.checkpoint={checkpoint}",
           f"serve.batch.dir={work / 'jobs'}", f"serve.batch.store={work / 'jobs.sqlite'}",
           "serve.batch.data_root=null", *overrides, f"hydra.run.dir={work / 'hydra'}"]
    log_path = work / "server.log"
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=work, stdout=fh, stderr=subprocess.STDOUT)
    server = Server(proc, port, log_path)
    deadline = time.monotonic() + startup_s
    while True:
        try:
            if call(port, "GET", "/healthz", timeout=5)[0] == 200:
                return server
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (f"exited with status {proc.returncode}" if proc.poll() is not None
                   else f"did not answer /healthz within {startup_s:.0f} s")
            server.stop()
            raise BenchmarkError(f"the server ({' '.join(cmd)}) {why}; its log ({log_path}) ends:\n{server.tail()}")
        time.sleep(0.5)


# ---------------------------------------------------------------- online

@dataclass
class Record:
    start: float
    end: float
    status: str                  # the HTTP status, or the exception's name when no reply came
    classified: int = 0
    not_classified: int = 0


@dataclass
class Client:
    """A closed-loop client: one keep-alive connection, the next request only after the reply."""

    port: int
    token: str
    payloads: list[bytes]
    seed: int
    timeout: float
    records: list[Record] = field(default_factory=list)

    def run(self, stop_at: float) -> None:
        rng = random.Random(self.seed)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        while time.perf_counter() < stop_at:
            body = self.payloads[rng.randrange(len(self.payloads))]
            start = time.perf_counter()
            try:
                conn.request("POST", PREDICT_URL, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                record = Record(start, time.perf_counter(), str(response.status))
                if response.status == 200:
                    done = [r["predicted"] is not None for r in json.loads(data)["results"]]
                    record.classified, record.not_classified = sum(done), len(done) - sum(done)
            except (OSError, http.client.HTTPException, ValueError) as err:
                record = Record(start, time.perf_counter(), type(err).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.records.append(record)
        conn.close()


def percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {k: None for k in ("p50", "p90", "p99", "max", "mean")}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(values.max()),
            "mean": float(values.mean())}


def run_online(port: int, token: str, payloads: list[bytes], clients: int, seconds: float, warmup: int, seed: int,
               timeout: float, server: Server) -> dict:
    for i in range(warmup):
        status, body = call(port, "POST", PREDICT_URL, payloads[i % len(payloads)], token, timeout=timeout)
        if status != 200:
            raise BenchmarkError(f"warm-up request {i + 1}: status {status}: {body[:500]!r}; the server log ends:\n"
                                 f"{server.tail()}")
    workers = [Client(port, token, payloads, seed + i, timeout) for i in range(clients)]
    start = time.perf_counter()
    stop_at = start + seconds
    threads = [threading.Thread(target=w.run, args=(stop_at,), name=f"load-client-{i}", daemon=True)
               for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    next_note = start + min(10.0, seconds / 2)
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if time.perf_counter() >= next_note:
            n = sum(len(w.records) for w in workers)
            log.info("online: %.0f s of %.0f, %d replies (%.1f/s)", time.perf_counter() - start, seconds, n,
                     n / (time.perf_counter() - start))
            next_note += 10.0
    records = [r for w in workers for r in w.records]
    elapsed = max((r.end for r in records), default=stop_at) - start
    latency = np.array([r.end - r.start for r in records])
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    errors = {s: n for s, n in statuses.items() if s != "200"}
    ok = statuses.get("200", 0)
    return {"requests": len(records), "objects": len(records), "seconds": elapsed,
            "requests_per_s": len(records) / elapsed if elapsed > 0 else None,
            "objects_per_s": ok / elapsed if elapsed > 0 else None,
            "latency_s": percentiles(latency), "status_counts": statuses, "errors": sum(errors.values()),
            "errors_by_status": errors, "objects_classified": sum(r.classified for r in records),
            "objects_not_classified": sum(r.not_classified for r in records), "warmup_requests": warmup}


# ---------------------------------------------------------------- batch

def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def run_batch_job(port: int, token: str, path: Path, n_objects: int, timeout: float, server: Server) -> dict:
    """Upload ``path``, poll the job until it ends; timings and the job's last view."""
    data = path.read_bytes()
    t0_wall, t0 = time.time(), time.perf_counter()
    status, body = call(port, "POST", BATCH_URL, data, token, PARQUET, timeout=UPLOAD_TIMEOUT_S)
    submitted_s = time.perf_counter() - t0
    del data
    if status != 202:
        raise BenchmarkError(f"batch upload: status {status}: {body[:1000]!r}; the server log ends:\n{server.tail()}")
    job = json.loads(body)
    log.info("batch: job %s queued (%d objects, upload + read %.1f s)", job["id"], job["n_objects"], submitted_s)
    next_note = time.perf_counter() + 10.0
    while True:
        wait = min(1.0, max(0.05, (time.perf_counter() - t0) / 200))
        time.sleep(wait)
        status, body = call(port, "GET", job["url"], token=token, timeout=timeout)
        if status != 200:
            raise BenchmarkError(f"batch job {job['id']}: GET {job['url']}: status {status}: {body[:1000]!r}")
        view = json.loads(body)
        if view["status"] in ("done", "failed"):
            break
        if server.proc.poll() is not None:
            raise BenchmarkError(f"the server stopped during the batch job; its log ends:\n{server.tail()}")
        if time.perf_counter() >= next_note:
            log.info("batch: %s, %d of %d objects (%.0f s)", view["status"], view["n_done"], view["n_objects"],
                     time.perf_counter() - t0)
            next_note += 10.0
    seen_s = time.perf_counter() - t0
    finished = _epoch(view["finished_at"])
    started = _epoch(view["started_at"])
    end_to_end = (finished - t0_wall) if finished is not None else seen_s
    out = {"job_status": view["status"], "job_error": view["error"], "n_objects": view["n_objects"],
           "n_done": view["n_done"], "upload_bytes": path.stat().st_size, "format": "parquet",
           "submit_s": submitted_s, "end_to_end_s": end_to_end, "seen_done_s": seen_s,
           "job_scoring_s": (finished - started) if finished is not None and started is not None else None,
           "seconds_per_object": end_to_end / n_objects, "lightcurves_per_s": n_objects / end_to_end}
    if view["status"] == "done":
        status, body = call(port, "GET", view["results"]["parquet"], token=token, timeout=timeout)
        if status != 200:
            raise BenchmarkError(f"batch job {job['id']}: result: status {status}: {body[:1000]!r}")
        out["results"] = pd.read_parquet(stdio.BytesIO(body))
    return out


def predict_path(checkpoint: Path, calibration: str | None, path: Path, quality: dict | None,
                 validation: dict) -> dict:
    """The batch predict path in this process on the rows of ``path`` that reach the model: the file read and
    checked as a batch job does (timed apart), then :meth:`Predictor.probabilities` timed after a warm-up."""
    from deeprubin.serve.batch import load_input
    from deeprubin.serve.scoring import Validation, prepare_tables, served_model

    numerics.apply_threads()
    model = served_model(TASK, checkpoint, None if calibration is None else Path(calibration), quality)
    t0 = time.perf_counter()
    data = load_input(path, "parquet", "load-test file")
    prepared = prepare_tables(model, data.lightcurves, data.metadata, Validation(**validation), table="load-test file")
    prepare_s = time.perf_counter() - t0
    del data
    lc, objects = prepared.lightcurves, prepared.objects
    if not len(objects):
        raise BenchmarkError(f"no object of {path} reaches the model (all fail validation or carry an unusable "
                             "data-quality flag): nothing to time")
    first = set(objects["object_id"].iloc[:WARMUP_OBJECTS])
    model.predictor.probabilities(lc[lc["object_id"].isin(first)].reset_index(drop=True),
                                  objects=objects.iloc[:WARMUP_OBJECTS].reset_index(drop=True))
    model.predictor.timings = dict.fromkeys(model.predictor.timings, 0.0)
    log.info("predict path: Predictor.probabilities on %d objects (%d rows) ...", len(objects), len(lc))
    t0 = time.perf_counter()
    grid, p = model.predictor.probabilities(lc, objects=objects)
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(p, index=np.asarray(grid.object_ids).astype(str),
                         columns=[f"prob_{c}" for c in model.predictor.classes])
    return {"seconds": seconds, "prepare_s": prepare_s, "objects_to_model": int(len(objects)),
            "rows_to_model": int(len(lc)), "time_breakdown_s": dict(model.predictor.timings),
            "probabilities": table}


def served_model_entry(port: int, token: str) -> dict:
    """The task's ``/v1/models`` entry: name, version, calibration (description and file)."""
    status, body = call(port, "GET", "/v1/models", token=token)
    if status != 200:
        raise BenchmarkError(f"GET /v1/models: status {status}: {body[:500]!r}")
    return next(m for m in json.loads(body)["models"] if m["task"] == TASK)


def scoring_settings(cfg) -> tuple[dict | None, dict]:
    """``tasks.transients.quality`` and ``serve.validation`` as the server reads them (its ``build_service``)."""
    from deeprubin.serve.service import task_quality
    from deeprubin.serve.settings import settings_from

    settings = settings_from(cfg)
    return task_quality(cfg, TASK), {"on_invalid": settings.on_invalid, "min_points": settings.min_points,
                                     "min_bands": settings.min_bands}


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve_load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="closed-loop online clients (threads)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the online clients send requests")
    parser.add_argument("--warmup", type=int, default=20, help="online warm-up requests (one at a time), not counted")
    parser.add_argument("--batch-objects", type=int, default=100_000, help="objects in the batch upload (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="the clients' draws")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="the model (default serve.models.transients.checkpoint: models/transients/model.ckpt; "
                             "its calibration: auto, beside it)")
    parser.add_argument("--lightcurves", type=Path, default=None,
                        help="ingested light curves (default: the pipeline's)")
    parser.add_argument("--objects", type=Path, default=None,
                        help="objects table, for redshifts (default: the pipeline's)")
    parser.add_argument("--manifest", type=Path, default=None, help="split manifest (default: the pipeline's)")
    parser.add_argument("--split", default=None, help="the split whose objects are sent (default: test)")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds a client waits for a reply")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds the server may take to start")
    parser.add_argument("--workdir", type=Path, default=None, help="token store, job store, server log, upload "
                        "(default: a temporary folder, removed at the end)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    parser.add_argument("overrides", nargs="*", help="serve.<key>=<value> settings for the server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    bad = [o for o in args.overrides if not o.startswith("serve.") or "=" not in o]
    if bad:
        parser.error(f"server settings must be serve.<key>=<value>: {bad}")
    if args.clients < 1 or args.seconds <= 0 or args.batch_objects < 0:
        parser.error("--clients >= 1, --seconds > 0 and --batch-objects >= 0")
    try:
        return run(args, argv)
    except BenchmarkError as err:
        log.error("serve load test: %s", err)
        raise SystemExit(1) from None


def run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    overrides = [f"serve.batch.max_objects={max(100_000, args.batch_objects)}",
                 f"serve.limit_concurrency={max(64, 2 * args.clients)}", *args.overrides]
    cfg = server_config(overrides)
    inputs = default_inputs(args, cfg)
    check_inputs(inputs)
    lc, z = split_objects(inputs)
    payloads = online_payloads(lc, z)
    log.info("%d objects of the '%s' split (%d rows); %d clients x %.0f s, then a batch of %d objects",
             len(payloads), inputs.split, len(lc), args.clients, args.seconds, args.batch_objects)
    keep = args.workdir is not None
    work = (args.workdir or Path(tempfile.mkdtemp(prefix="deeprubin_serve_load_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    upload = work / "batch.parquet"
    server = None
    try:
        n_rows = 0
        if args.batch_objects:
            table = replicated(lc, z, args.batch_objects)
            n_rows = len(table)
            io.write_parquet(table, upload)
            del table
            overrides.insert(0, f"serve.batch.max_bytes={max(1 << 30, upload.stat().st_size + (1 << 20))}")
            log.info("batch file: %d objects, %d rows, %.1f MB", args.batch_objects, n_rows,
                     upload.stat().st_size / 2 ** 20)
        store = work / "tokens.sqlite"
        token = create_token(store, work)
        log.info("starting the server (%s)", inputs.checkpoint)
        server = start_server(work, store, inputs.checkpoint.resolve(), overrides, args.startup_timeout)
        model = served_model_entry(server.port, token)
        log.info("server on 127.0.0.1:%d: %s %s, calibration %s", server.port, model["name"], model["version"],
                 model["calibration"]["description"])
        online = run_online(server.port, token, payloads, args.clients, args.seconds, args.warmup, args.seed,
                            args.request_timeout, server)
        log.info("online: %.1f requests/s, latency p50 %.3f s, p99 %.3f s, max %.3f s, %d errors",
                 online["requests_per_s"] or 0, online["latency_s"]["p50"] or 0, online["latency_s"]["p99"] or 0,
                 online["latency_s"]["max"] or 0, online["errors"])
        batch = None
        if args.batch_objects:
            batch = run_batch_job(server.port, token, upload, args.batch_objects, args.request_timeout, server)
            log.info("batch endpoint: %s in %.1f s (%.4f s/object, %.1f light curves/s)", batch["job_status"],
                     batch["end_to_end_s"], batch["seconds_per_object"], batch["lightcurves_per_s"])
        server_rss = server.peak_rss_mb()
        server.stop()
        if batch is not None:
            served = batch.pop("results", None)
            quality, validation = scoring_settings(cfg)
            ref = predict_path(inputs.checkpoint.resolve(), model["calibration"]["file"], upload, quality, validation)
            expected = ref.pop("probabilities")
            per_object = ref["seconds"] / args.batch_objects
            ref.update(seconds_per_object=per_object, lightcurves_per_s=args.batch_objects / ref["seconds"])
            batch.update(objects=args.batch_objects, rows=n_rows, predict_path=ref,
                         endpoint_vs_predict=batch["seconds_per_object"] / per_object,
                         matches_predict_path=_same(served, expected))
            log.info("predict path: %.1f s (%.4f s/object, %.1f light curves/s); endpoint / predict path = %.2f",
                     ref["seconds"], per_object, ref["lightcurves_per_s"], batch["endpoint_vs_predict"])
    except BaseException:
        if server is not None:
            server.stop()
        raise
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)

    p99 = online["latency_s"]["p99"]
    meets = {"online_latency_p99_s": p99 is not None and p99 <= TARGETS["online_latency_p99_s"],
             "online_errors": online["errors"] == TARGETS["online_errors"],
             "batch_endpoint_vs_predict": (batch is not None and batch["job_status"] == "done"
                                           and batch["endpoint_vs_predict"] <= TARGETS["batch_endpoint_vs_predict"])}
    result = {
        **provenance("serve_load", argv),
        "settings": {"clients": args.clients, "seconds": args.seconds, "warmup_requests": args.warmup,
                     "batch_objects": args.batch_objects, "seed": args.seed, "split": inputs.split,
                     "split_objects": len(payloads), "split_rows": int(len(lc)),
                     "checkpoint": str(inputs.checkpoint), "model_version": model["version"],
                     "calibration": model["calibration"]["description"], "server_overrides": overrides,
                     "host": "127.0.0.1"},
        "online": online, "batch": batch,
        "server_peak_rss_mb": server_rss,
        "client_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "targets": TARGETS,
        # the targets are stated for 16 clients and a 100,000-object upload: a smaller run is a smoke run
        "at_target_settings": {"online": args.clients == TARGETS["online_clients"],
                               "batch": args.batch_objects >= TARGETS["batch_objects"]},
        "meets": meets,
    }
    io.write_json(result, args.out)
    log.info("-> %s (meets: %s)", args.out, meets)
    return result


def _same(served: pd.DataFrame | None, expected: pd.DataFrame) -> bool:
    """Whether the job's probabilities are the in-process predict path's, bit for bit."""
    if served is None:
        return False
    served = served.set_index(served["object_id"].astype(str))
    if not set(expected.index) <= set(served.index):
        return False
    return bool(np.array_equal(served.loc[expected.index, expected.columns].to_numpy(), expected.to_numpy()))


if __name__ == "__main__":
    main()
