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
from .reload import ChampionWatcher, load_champion
from .scoring import ServedModel, Validation, load_model
from .settings import REGISTRY, ServeSettings, settings_from
from .tokens import TokenStore
from .versions import CHAMPION, registry_client

log = logging.getLogger(__name__)
#: Hosts that keep the service on this machine.
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def task_quality(cfg: DictConfig, task: str) -> dict | None:
    """``tasks.<task>.quality`` as a plain dict (None when the task has none)."""
    quality = OmegaConf.select(cfg, f"tasks.{task}.quality")
    return None if quality is None else OmegaConf.to_container(quality, resolve=True)


def load_models(cfg: DictConfig, settings: ServeSettings,
                metrics: Metrics) -> tuple[dict[str, ServedModel], ChampionWatcher | None]:
    """Each task's model, loaded once: its checkpoint file, or in registry mode its champion (and the watcher
    that follows the alias, started with the application)."""
    quality = {task: task_quality(cfg, task) for task in settings.models}
    followed = {task: source for task, source in settings.models.items() if source.source == REGISTRY}
    client = registry_client(settings.registry.tracking_uri) if followed else None
    models = {}
    for task, source in settings.models.items():
        if task in followed:
            models[task] = load_champion(client, task, source, settings.registry, quality[task])
            where = f"{models[task].registry['uri']} ({CHAMPION}, polled every {settings.registry.poll_s} s)"
        else:
            models[task], where = load_model(task, source, quality[task]), str(source.checkpoint)
        log.info("serve: %s model %s %s (%s), calibration %s", task, models[task].name, models[task].version,
                 where, models[task].predictor.calibration)
    watcher = None if not followed else ChampionWatcher(client, models, followed, settings.registry, quality, metrics)
    return models, watcher


def build_service(cfg: DictConfig, settings: ServeSettings) -> Service:
    """Load each task's model once (quality flags from ``tasks.<task>.quality``), open the token store and the
    batch job store (the worker and the champion watcher start with the application)."""
    metrics = Metrics(settings.latency_buckets_s)
    models, watcher = load_models(cfg, settings, metrics)
    tokens = TokenStore(settings.tokens)
    active = [t for t in tokens.tokens() if t.active]
    if not active:
        log.warning("serve: %s holds no active token, every /v1/ request will get 401; create one with "
                    "python -m deeprubin.serve.tokens create --name NAME", settings.tokens)
    validation = Validation(settings.on_invalid, settings.min_points, settings.min_bands)
    io.check_writable(settings.batch.dir, "batch job folder (serve.batch.dir)")
    jobs = JobStore(settings.batch.store)
    log.info("serve: batch jobs in %s (files under %s), %d queued; server-side paths %s", jobs.path,
             settings.batch.dir, jobs.counts()["queued"],
             "off" if settings.batch.data_root is None else f"under {settings.batch.data_root}")
    return Service(models=models, tokens=tokens, limiter=RateLimiter(settings.rate_per_s, settings.burst),
                   metrics=metrics, validation=validation,
                   max_body_bytes=settings.max_body_bytes, max_objects=settings.max_objects,
                   batch=BatchService(settings.batch, jobs, models, validation, metrics), watcher=watcher)


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
