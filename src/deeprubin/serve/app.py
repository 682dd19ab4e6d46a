"""The FastAPI application: endpoints, and the ASGI layers that meter, authenticate and bound requests.

Layers, outermost first: :class:`MetricsMiddleware` (every request counted and timed, refused ones
included), :class:`GuardMiddleware` (on ``/v1/``: bearer token -> 401, rate limit -> 429 with
``Retry-After``, body size -> 413, all before the body is parsed; a batch upload is counted while
it is streamed to disk), then the routes. Errors are ``{"error": message}``; a 422 also lists
``errors`` (``field``, ``message``) and names the field. The batch worker (:mod:`.batch`) and, in
registry mode, the champion watcher (:mod:`.reload`) start and stop with the application (its lifespan).
Routes read ``service.models[task]`` once per request: a model swapped in meanwhile serves the next one.
"""
from __future__ import annotations

import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..core.schema import SchemaError
from ..tasks.transients.evaluation.inference import CheckpointMismatchError
from .batch import (FORMATS, JOBS_URL, MEDIA_TYPES, UPLOAD_TYPES, BatchInputError, BatchService, PathRefused,
                    TooLarge, job_view, read_capped, upload_format)
from .jobs import DONE, FAILED, Job
from .metrics import CONTENT_TYPE, Metrics
from .ratelimit import RateLimiter
from .reload import ChampionWatcher, publish
from .schemas import (BatchPathRequest, PredictRequest, PredictResponse, RequestTablesError, object_ids,
                      request_tables)
from .scoring import ServedModel, Validation, outcome_counts, score_tables
from .tokens import TokenStore

#: Paths under this prefix need a token (and count against its rate limit).
PROTECTED_PREFIX = "/v1/"
#: Paths whose body (a batch upload) the route streams to disk and counts itself.
BATCH_PREFIX = "/v1/batch/"
#: The scope key where the guard leaves the authenticated token's name.
TOKEN_KEY = "deeprubin.token"
_BODY_METHODS = {"POST", "PUT", "PATCH"}


@dataclass
class Service:
    """Everything the application uses, built once at startup (:func:`deeprubin.serve.service.build_service`)."""

    models: dict[str, ServedModel]
    tokens: TokenStore
    limiter: RateLimiter
    metrics: Metrics
    validation: Validation
    max_body_bytes: int
    max_objects: int
    batch: BatchService | None = None          # None: no batch endpoint (404)
    watcher: ChampionWatcher | None = None     # registry mode: follows the champion aliases


class ServeError(Exception):
    """An error response: status, message, headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def field_name(loc: tuple | list) -> str:
    """``("body", "lightcurves", 3, "flux")`` -> ``lightcurves[3].flux``."""
    parts = [p for p in loc if p != "body"] or list(loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class GuardMiddleware:
    """On :data:`PROTECTED_PREFIX`: 401 without a valid token, 429 past its rate limit, 413 for a body
    over ``max_body_bytes`` (by ``Content-Length``, or counted while buffering a chunked body)."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        token = bearer_token(headers.get("authorization"))
        info = None if token is None else await run_in_threadpool(self.service.tokens.verify, token)
        if info is None:
            why = "missing 'Authorization: Bearer <token>' header" if token is None else "invalid or revoked token"
            return await error_response(401, why, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if not info.unlimited:
            wait = self.service.limiter.check(info.name)
            if wait > 0:
                return await error_response(429, f"rate limit of token '{info.name}' exceeded; retry in {wait:.2f} s",
                                            {"Retry-After": str(max(1, math.ceil(wait)))})(scope, receive, send)
        limit, key, streamed = body_limit(self.service, scope["path"])
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return await error_response(400, f"header 'Content-Length' is not a number: {length!r}")(
                    scope, receive, send)
            if int(length) > limit:
                return await self._too_large(int(length), limit, key, scope, receive, send)
        elif scope["method"] in _BODY_METHODS and not streamed:
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                if size > limit:
                    return await self._too_large(size, limit, key, scope, receive, send, at_least=True)
                if not message.get("more_body", False):
                    break
            receive = _replay(b"".join(chunks), receive)
        scope[TOKEN_KEY] = info.name
        await self.app(scope, receive, send)

    @staticmethod
    async def _too_large(size: int, limit: int, key: str, scope, receive, send, at_least: bool = False):
        what = f"more than {size - 1}" if at_least else str(size)
        return await error_response(413, f"request body of {what} bytes exceeds {key} = {limit}")(
            scope, receive, send)


def body_limit(service: Service, path: str) -> tuple[int, str, bool]:
    """``(bytes, config key, streamed)``: the body limit of a path; a streamed body (a batch upload) is
    counted by its route while it is written to disk, not buffered by the guard."""
    if service.batch is not None and path.startswith(BATCH_PREFIX):
        return service.batch.settings.max_bytes, "serve.batch.max_bytes", True
    return service.max_body_bytes, "serve.limits.max_body_bytes", False


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by its route's path template."""

    def __init__(self, app, metrics: Metrics, routes: Callable[[], list]):
        self.app, self.metrics, self.routes = app, metrics, routes

    def endpoint(self, scope) -> str:
        route = scope.get("route")
        if route is not None and hasattr(route, "path"):
            return route.path
        for route in self.routes():
            if route.matches(scope)[0] == Match.FULL:
                return route.path
        return "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(self.endpoint(scope), scope["method"], status, time.perf_counter() - start)


def build_app(service: Service) -> FastAPI:
    """The application over a built :class:`Service`."""
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        if service.batch is not None:
            await run_in_threadpool(service.batch.start)
        if service.watcher is not None:
            service.watcher.start()
        try:
            yield
        finally:
            if service.watcher is not None:
                service.watcher.stop()
            if service.batch is not None:
                await run_in_threadpool(service.batch.stop)

    app = FastAPI(title="DeepRubin scoring service", version="1", lifespan=lifespan,
                  description="Calibrated class probabilities from the trained models (docs/serve.md).")
    bearer = HTTPBearer(auto_error=False, description="a token from `python -m deeprubin.serve.tokens create`")

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError):
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{"field": field_name(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return error_response(422, f"field '{first['field']}': {first['message']}{more}", errors=errors)

    @app.exception_handler(BatchInputError)
    @app.exception_handler(PathRefused)
    @app.exception_handler(TooLarge)
    async def _batch_error(request: Request, exc: Exception):
        status = 403 if isinstance(exc, PathRefused) else 413 if isinstance(exc, TooLarge) else 422
        return error_response(status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the models are loaded."""
        return {"status": "ok", "models": {task: m.version for task, m in service.models.items()}}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text format: requests, latency histogram, errors, objects, model version."""
        return PlainTextResponse(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", dependencies=[_doc(bearer)])
    def models() -> dict:
        """The model each task serves: checkpoint, sha256, name, classes, calibration."""
        return {"models": [m.describe() for m in service.models.values()]}

    @app.post("/v1/predict/{task}", response_model=PredictResponse, dependencies=[_doc(bearer)])
    def predict(task: str, body: PredictRequest) -> dict:
        """Calibrated class probabilities per object, through the batch predict path."""
        model = service.models.get(task)
        if model is None:
            raise ServeError(404, f"path parameter 'task': no model for {task!r}; served: {sorted(service.models)}")
        n = len(object_ids(body))
        if n > service.max_objects:
            raise ServeError(413, f"request has {n} objects; serve.limits.max_objects = {service.max_objects}")
        try:
            lightcurves, metadata = request_tables(body)
            results = score_tables(model, lightcurves, metadata, service.validation)
        except (RequestTablesError, SchemaError, CheckpointMismatchError) as err:
            raise ServeError(422, str(err)) from None
        for outcome, count in outcome_counts(results).items():
            service.metrics.count_objects(task, outcome, count)
        return {"task": task, "classes": list(model.predictor.classes), "results": results,
                "model": {"name": model.name, "version": model.version,
                          "calibration": str(getattr(model.predictor, "calibration", ""))}}

    @app.post("/v1/batch/{task}", status_code=202, dependencies=[_doc(bearer)], openapi_extra=_BATCH_BODY)
    async def batch_submit(task: str, request: Request) -> JSONResponse:
        """Score a file of light-curve rows as a background job; 202 with the job (``id``, ``url``).

        The body is the file itself (``Content-Type: text/csv`` or ``application/vnd.apache.parquet``),
        or JSON ``{"path": ..., "objects_path": ...}`` naming files under ``serve.batch.data_root``."""
        batch = _batch(service)
        if task not in service.models:
            raise ServeError(404, f"path parameter 'task': no model for {task!r}; served: {sorted(service.models)}")
        token = request.scope[TOKEN_KEY]
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == "application/json":
            body = await read_capped(request.stream(), service.max_body_bytes, "serve.limits.max_body_bytes")
            try:
                spec = BatchPathRequest.model_validate_json(body)
            except ValidationError as err:
                raise RequestValidationError(err.errors()) from None
            job = await run_in_threadpool(batch.submit_path, task, token, spec.path, spec.objects_path)
        else:
            fmt = upload_format(media)
            if fmt is None:
                raise ServeError(415, f"header 'Content-Type': {media or 'none'!r} is not accepted; send the file "
                                      f"as the body with one of {sorted(UPLOAD_TYPES)}, or application/json "
                                      '{"path": ...} for a file under serve.batch.data_root')
            job = await batch.submit_upload(task, token, fmt, request.stream())
        view = job_view(job)
        return JSONResponse(view, status_code=202, headers={"Location": view["url"]})

    @app.get(JOBS_URL + "/{job_id}", dependencies=[_doc(bearer)])
    def job_status(job_id: str, request: Request) -> dict:
        """A job of this token: status, progress (0..1), counts, error, times, result URLs when done."""
        return job_view(_own_job(service, job_id, request))

    @app.get(JOBS_URL + "/{job_id}/result", dependencies=[_doc(bearer)])
    def job_result(job_id: str, request: Request,
                   fmt: str = Query("csv", alias="format", description="csv or parquet")) -> FileResponse:
        """A done job's results: ``object_id``, ``predicted``, ``prob_<class>``, ``quality_flags``, ``warnings``."""
        job = _own_job(service, job_id, request)
        if fmt not in FORMATS:
            raise ServeError(422, f"query parameter 'format': must be one of {list(FORMATS)}, got {fmt!r}")
        if job.status != DONE:
            why = f": {job.error}" if job.status == FAILED else "; poll it until it is done"
            raise ServeError(409, f"job {job.id} is {job.status}{why}")
        path = Path(job.result_csv if fmt == "csv" else job.result_parquet)
        if not path.is_file():
            raise ServeError(410, f"job {job.id}: its {fmt} result is no longer on the server")
        return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=f"{job.id}.{fmt}")

    app.add_middleware(GuardMiddleware, service=service)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, routes=lambda: app.routes)
    for model in service.models.values():
        publish(service.metrics, model)
    return app


def _doc(bearer: HTTPBearer):
    """The bearer scheme in the OpenAPI docs (the guard layer does the checking)."""
    return Depends(bearer)


def _batch(service: Service) -> BatchService:
    if service.batch is None:
        raise ServeError(404, "batch jobs are off in this server")
    return service.batch


def _own_job(service: Service, job_id: str, request: Request) -> Job:
    """The job if this request's token submitted it; else 404, as for a job that does not exist."""
    job = _batch(service).store.get(job_id)
    if job is None or job.token != request.scope.get(TOKEN_KEY):
        raise ServeError(404, f"path parameter 'job_id': no job {job_id!r} of this token")
    return job


#: The batch endpoint's body in the OpenAPI docs (the route reads the raw body itself).
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string", "format": "binary"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["path"],
        "properties": {"path": {"type": "string", "description": "under serve.batch.data_root"},
                       "objects_path": {"type": "string", "description": "optional objects table"}}}}}}}
