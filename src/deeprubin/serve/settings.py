"""The ``serve`` config node (``conf/serve/default.yaml``) -> checked :class:`ServeSettings`.

Every error is a :class:`~deeprubin.core.config.ConfigError` naming the key (``serve.<key>``),
raised before a model is loaded or a port bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from ..core.config import ConfigError, require
from ..core.config_schema import check_node

#: Tasks the service can score so far (the transients predict path; others: issue 25).
SERVED_TASKS = ("transients",)
#: Where a task's model comes from: the checkpoint file of the config, or the ``champion`` alias of the
#: MLflow model registry (followed while the server runs, :mod:`.reload`).
FILE, REGISTRY = "file", "registry"
MODEL_SOURCES = (FILE, REGISTRY)
#: Metrics of :func:`deeprubin.core.metrics.classification_metrics` a promotion may compare.
PROMOTION_METRICS = ("macro_f1", "accuracy")
ON_INVALID = ("drop", "raise")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: TCP ports a config may name.
PORT_RANGE = (1, 65535)


# Typed schema of the node (types only; the values live in conf/serve/default.yaml).
@dataclass
class ServeModelSchema:
    source: str = MISSING
    checkpoint: str = MISSING
    calibration: Optional[str] = MISSING
    registered_model: str = MISSING


@dataclass
class EvaluationSchema:
    split: str = MISSING
    manifest: str = MISSING
    lightcurves: str = MISSING
    objects: str = MISSING


@dataclass
class RegistrySchema:
    tracking_uri: str = MISSING
    cache: str = MISSING
    poll_s: float = MISSING
    metric: str = MISSING
    min_improvement: float = MISSING
    evaluation: Dict[str, EvaluationSchema] = field(default_factory=dict)


@dataclass
class RateLimitSchema:
    per_s: float = MISSING
    burst: int = MISSING


@dataclass
class LimitsSchema:
    max_body_bytes: int = MISSING
    max_objects: int = MISSING


@dataclass
class ValidationSchema:
    on_invalid: str = MISSING
    min_points: int = MISSING
    min_bands: int = MISSING


@dataclass
class BatchSchema:
    dir: str = MISSING
    store: str = MISSING
    data_root: Optional[str] = MISSING
    max_bytes: int = MISSING
    max_objects: int = MISSING
    chunk_objects: int = MISSING
    poll_s: float = MISSING
    max_restarts: int = MISSING
    stop_wait_s: float = MISSING


@dataclass
class ServeSchema:
    host: str = MISSING
    port: int = MISSING
    models: Dict[str, ServeModelSchema] = field(default_factory=dict)
    tokens: str = MISSING
    rate_limit: RateLimitSchema = field(default_factory=RateLimitSchema)
    limits: LimitsSchema = field(default_factory=LimitsSchema)
    validation: ValidationSchema = field(default_factory=ValidationSchema)
    batch: BatchSchema = field(default_factory=BatchSchema)
    registry: RegistrySchema = field(default_factory=RegistrySchema)
    latency_buckets_s: List[float] = field(default_factory=list)
    timeout_keep_alive_s: int = MISSING
    limit_concurrency: Optional[int] = MISSING
    log_level: str = MISSING


@dataclass(frozen=True)
class ModelSource:
    """Where a task's model comes from: its checkpoint and calibration (a path, ``auto`` or None) in
    ``file`` mode; in ``registry`` mode the ``champion`` of ``registered_model`` (the pair above is then
    only the default calibrator a promotion attaches, :mod:`.promotion`)."""

    checkpoint: Path
    calibration: str | None
    source: str = FILE
    registered_model: str | None = None


@dataclass(frozen=True)
class EvaluationSettings:
    """A task's fixed evaluation set (``serve.registry.evaluation.<task>``): the ``split`` objects of the
    split manifest, their rows of the raw light-curve table and of the objects table."""

    split: str
    manifest: Path
    lightcurves: Path
    objects: Path


@dataclass(frozen=True)
class RegistrySettings:
    """The model registry's settings (``serve.registry``)."""

    tracking_uri: str              # the MLflow store (MLFLOW_TRACKING_URI wins, as for training)
    cache: Path                    # downloaded versions, one folder each
    poll_s: float                  # how often the server looks at the champion alias
    metric: str                    # what a promotion compares (one of PROMOTION_METRICS)
    min_improvement: float         # a champion candidate must score >= champion + this
    evaluation: dict[str, EvaluationSettings]


@dataclass(frozen=True)
class BatchSettings:
    """The batch jobs' settings (``serve.batch``)."""

    dir: Path                      # a folder per job: its upload and its results
    store: Path                    # the SQLite job store
    data_root: Path | None         # server-side inputs ({"path": ...}) only under it; None: off
    max_bytes: int
    max_objects: int
    chunk_objects: int
    poll_s: float
    max_restarts: int
    stop_wait_s: float


@dataclass(frozen=True)
class ServeSettings:
    """What the service reads from ``serve.*`` (see ``conf/serve/default.yaml``)."""

    host: str
    port: int
    models: dict[str, ModelSource]
    tokens: Path
    rate_per_s: float
    burst: int
    max_body_bytes: int
    max_objects: int
    on_invalid: str
    min_points: int
    min_bands: int
    latency_buckets_s: tuple[float, ...]
    timeout_keep_alive_s: int
    limit_concurrency: int | None
    log_level: str
    batch: BatchSettings
    registry: RegistrySettings


def _req(node: DictConfig, key: str, **checks):
    """:func:`require` on the ``serve`` node, the error naming ``serve.<key>``."""
    try:
        return require(node, key, **checks)
    except ConfigError as err:
        raise ConfigError(str(err).replace(f"'{key}'", f"'serve.{key}'", 1)) from None


def _int(node: DictConfig, key: str, **checks) -> int:
    value = _req(node, key, **checks)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config key 'serve.{key}' must be an integer, got {value!r}")
    return value


def settings_from(cfg: DictConfig) -> ServeSettings:
    """Check ``cfg.serve`` (the whole config's node) and return it as :class:`ServeSettings`."""
    node = cfg.get("serve")
    if node is None:
        raise ConfigError("config key 'serve' is missing (conf/serve/default.yaml in the defaults list)")
    check_node("serve", ServeSchema, node)
    port = _int(node, "port")
    if not PORT_RANGE[0] <= port <= PORT_RANGE[1]:
        raise ConfigError(f"config key 'serve.port' must be in {list(PORT_RANGE)}, got {port}")
    models = {}
    for task, entry in (node.get("models") or {}).items():
        if task not in SERVED_TASKS:
            raise ConfigError(f"config key 'serve.models.{task}': the service scores only {list(SERVED_TASKS)} "
                              "so far")
        models[str(task)] = model_source(node, str(task))
    if not models:
        raise ConfigError(f"config key 'serve.models' names no model; give one of {list(SERVED_TASKS)}")
    buckets = [float(b) for b in _req(node, "latency_buckets_s")]
    if not buckets or any(b <= 0 for b in buckets) or buckets != sorted(set(buckets)):
        raise ConfigError(f"config key 'serve.latency_buckets_s' must be increasing positive seconds, got {buckets}")
    concurrency = node.get("limit_concurrency")
    if concurrency is not None and not concurrency > 0:
        raise ConfigError(f"config key 'serve.limit_concurrency' must be > 0 or null, got {concurrency!r}")
    return ServeSettings(
        host=str(_req(node, "host")), port=port, models=models, tokens=Path(str(_req(node, "tokens"))),
        rate_per_s=float(_req(node, "rate_limit.per_s", positive=True)),
        burst=_int(node, "rate_limit.burst", at_least=1),
        max_body_bytes=_int(node, "limits.max_body_bytes", positive=True),
        max_objects=_int(node, "limits.max_objects", positive=True),
        on_invalid=str(_req(node, "validation.on_invalid", choices=ON_INVALID)),
        min_points=_int(node, "validation.min_points", at_least=1),
        min_bands=_int(node, "validation.min_bands", at_least=1),
        latency_buckets_s=tuple(buckets),
        timeout_keep_alive_s=_int(node, "timeout_keep_alive_s", positive=True),
        limit_concurrency=None if concurrency is None else int(concurrency),
        log_level=str(_req(node, "log_level", choices=LOG_LEVELS)), batch=batch_settings(node),
        registry=registry_settings(node))


def model_source(node: DictConfig, task: str) -> ModelSource:
    """``serve.models.<task>``: ``source`` (``file`` when absent), checkpoint, calibration and, in registry
    mode, the registered model's name."""
    entry = node.models[task]
    source = entry.get("source") or FILE
    if source not in MODEL_SOURCES:
        raise ConfigError(f"config key 'serve.models.{task}.source' must be one of {list(MODEL_SOURCES)}, "
                          f"got {source!r}")
    checkpoint = _req(node, f"models.{task}.checkpoint")
    calibration = entry.get("calibration")
    name = entry.get("registered_model")
    if source == REGISTRY and not name:
        raise ConfigError(f"config key 'serve.models.{task}.registered_model' is missing (the MLflow registered "
                          f"model whose champion is served, e.g. {task}-classifier)")
    return ModelSource(Path(str(checkpoint)), None if calibration is None else str(calibration), str(source),
                       None if name is None else str(name))


def registry_settings(node: DictConfig) -> RegistrySettings:
    """``serve.registry``, checked (the evaluation sets' files are checked when a promotion reads them)."""
    improvement = _req(node, "registry.min_improvement")
    if isinstance(improvement, bool) or not isinstance(improvement, (int, float)):
        raise ConfigError(f"config key 'serve.registry.min_improvement' must be a number, got {improvement!r}")
    evaluation = {}
    for task in (OmegaConf.select(node, "registry.evaluation") or {}):
        key = f"registry.evaluation.{task}"
        if task not in SERVED_TASKS:
            raise ConfigError(f"config key 'serve.{key}': the service scores only {list(SERVED_TASKS)} so far")
        evaluation[str(task)] = EvaluationSettings(
            split=str(_req(node, f"{key}.split")), manifest=Path(str(_req(node, f"{key}.manifest"))),
            lightcurves=Path(str(_req(node, f"{key}.lightcurves"))), objects=Path(str(_req(node, f"{key}.objects"))))
    return RegistrySettings(
        tracking_uri=str(_req(node, "registry.tracking_uri")), cache=Path(str(_req(node, "registry.cache"))),
        poll_s=float(_req(node, "registry.poll_s", positive=True)),
        metric=str(_req(node, "registry.metric", choices=PROMOTION_METRICS)),
        min_improvement=float(improvement), evaluation=evaluation)


def batch_settings(node: DictConfig) -> BatchSettings:
    """``serve.batch``, checked; ``data_root``, when given, must be an existing folder."""
    from .scoring import MODEL_BATCH   # the predict path's forward batch (imports the task's model code)

    root = OmegaConf.select(node, "batch.data_root")
    if root is not None and not Path(str(root)).is_dir():
        raise ConfigError(f"config key 'serve.batch.data_root': {root} is not a folder (null turns server-side "
                          "paths off)")
    chunk = _int(node, "batch.chunk_objects", positive=True)
    if chunk % MODEL_BATCH:
        raise ConfigError(f"config key 'serve.batch.chunk_objects' must be a multiple of {MODEL_BATCH} (objects per "
                          f"forward pass of the predict path, so a job scores as its whole file would), got {chunk}")
    return BatchSettings(
        dir=Path(str(_req(node, "batch.dir"))), store=Path(str(_req(node, "batch.store"))),
        data_root=None if root is None else Path(str(root)),
        max_bytes=_int(node, "batch.max_bytes", positive=True),
        max_objects=_int(node, "batch.max_objects", positive=True),
        chunk_objects=chunk,
        poll_s=float(_req(node, "batch.poll_s", positive=True)),
        max_restarts=_int(node, "batch.max_restarts", at_least=0),
        stop_wait_s=float(_req(node, "batch.stop_wait_s", at_least=0)))
