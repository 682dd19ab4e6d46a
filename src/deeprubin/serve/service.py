"""From the whole config to a running server: settings, models, token store, application, uvicorn.

The entry point (``python -m deeprubin.serve``, :mod:`deeprubin.serve.__main__`) calls
:func:`serve_main`; a bad setting raises :class:`~deeprubin.core.config.ConfigError` naming the
key before a model is loaded or the port bound.
"""
from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from ..core import io
from .app import Service, build_app
from .batch import BatchService
from .jobs import JobStore
from .metrics import Metrics
from .ratelimit import RateLimiter
from .scoring import Validation, load_model
from .settings import ServeSettings, settings_from
from .tokens import TokenStore

log = logging.getLogger(__name__)
#: Hosts that keep the service on this machine.
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def build_service(cfg: DictConfig, settings: ServeSettings) -> Service:
    """Load each task's model once (quality flags from ``tasks.<task>.quality``), open the token store and the
    batch job store (the worker starts with the application)."""
    models = {}
    for task, source in settings.models.items():
        quality = OmegaConf.select(cfg, f"tasks.{task}.quality")
        quality = None if quality is None else OmegaConf.to_container(quality, resolve=True)
        models[task] = load_model(task, source, quality)
        log.info("serve: %s model %s %s (%s), calibration %s", task, models[task].name, models[task].version,
                 source.checkpoint, models[task].predictor.calibration)
    tokens = TokenStore(settings.tokens)
    active = [t for t in tokens.tokens() if t.active]
    if not active:
        log.warning("serve: %s holds no active token, every /v1/ request will get 401; create one with "
                    "python -m deeprubin.serve.tokens create --name NAME", settings.tokens)
    metrics = Metrics(settings.latency_buckets_s)
    validation = Validation(settings.on_invalid, settings.min_points, settings.min_bands)
    io.check_writable(settings.batch.dir, "batch job folder (serve.batch.dir)")
    jobs = JobStore(settings.batch.store)
    log.info("serve: batch jobs in %s (files under %s), %d queued; server-side paths %s", jobs.path,
             settings.batch.dir, jobs.counts()["queued"],
             "off" if settings.batch.data_root is None else f"under {settings.batch.data_root}")
    return Service(models=models, tokens=tokens, limiter=RateLimiter(settings.rate_per_s, settings.burst),
                   metrics=metrics, validation=validation,
                   max_body_bytes=settings.max_body_bytes, max_objects=settings.max_objects,
                   batch=BatchService(settings.batch, jobs, models, validation, metrics))


def serve_main(cfg: DictConfig) -> dict:
    """Build the service and run it on uvicorn until interrupted; returns where it listened."""
    import uvicorn

    settings = settings_from(cfg)
    app = build_app(build_service(cfg, settings))
    if settings.host not in LOOPBACK:
        log.warning("serve: listening on %s, not loopback: tokens cross the network in clear unless a TLS proxy "
                    "fronts the service", settings.host)
    log.info("serve: http://%s:%d (docs at /docs)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, log_level=settings.log_level,
                timeout_keep_alive=settings.timeout_keep_alive_s, limit_concurrency=settings.limit_concurrency,
                server_header=False)
    return {"host": settings.host, "port": settings.port}
