"""From the ``stream`` config node to a running stream: transport, store, model, output.

The entry point (:mod:`deeprubin.stages.stream`, also ``python -m deeprubin.stream``) calls
:func:`simulate` or :func:`classify` with the task's config view; each raises
:class:`~deeprubin.core.config.ConfigError` naming the key for a bad setting, before any work.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.config import ConfigError, require
from .classifier import Classifier, StreamSettings, run_stream
from .packets import SURVEYS, ZTF_FID_BANDS
from .simulate import write_stream
from .state import StateStore
from .transports import KafkaOutput, KafkaTransport, RedisStreamOutput, RedisStreamTransport, ReplayTransport

log = logging.getLogger(__name__)

TRANSPORTS = ("replay", "redis", "kafka")
OUTPUTS = (None, "redis", "kafka")
#: The bands each survey's packets carry (Rubin: ugrizy).
SURVEY_BANDS = {"ztf": set(ZTF_FID_BANDS.values()), "rubin": set("ugrizy")}


def _require(node: DictConfig, key: str, **checks) -> object:
    """:func:`~deeprubin.core.config.require` on the ``stream`` node, the error naming ``stream.<key>``."""
    try:
        return require(node, key, **checks)
    except ConfigError as err:
        raise ConfigError(str(err).replace(f"'{key}'", f"'stream.{key}'", 1)) from None


def _choice(node: DictConfig, key: str, allowed) -> object:
    value = node.get(key)
    if value not in allowed:
        raise ConfigError(f"config key 'stream.{key}' must be one of {list(allowed)}, got {value!r}")
    return value


def settings_from(node: DictConfig) -> StreamSettings:
    """:class:`StreamSettings` from ``stream.*`` (checked)."""
    survey = _choice(node, "survey", SURVEYS)
    batch = int(_require(node, "batch_size", positive=True))
    max_alerts = node.get("max_alerts")
    if max_alerts is not None and not int(max_alerts) > 0:
        raise ConfigError(f"config key 'stream.max_alerts' must be > 0 or null, got {max_alerts!r}")
    idle = node.get("idle_stop_s")
    if idle is not None and not float(idle) >= 0:
        raise ConfigError(f"config key 'stream.idle_stop_s' must be >= 0 or null, got {idle!r}")
    dead = node.get("dead_letter")
    return StreamSettings(survey=str(survey), rubin_schema=str(node.get("rubin_schema", "latest")), batch_size=batch,
                          poll_timeout_s=float(node.get("poll_timeout_s", 1.0)),
                          max_alerts=None if max_alerts is None else int(max_alerts),
                          idle_stop_s=None if idle is None else float(idle),
                          progress_every_s=float(node.get("progress_every_s", 10.0)),
                          dead_letter=None if dead is None else Path(str(dead)))


def open_transport(node: DictConfig, store: StateStore):
    """The configured transport; the replay resumes after the position stored in ``store``."""
    kind = _choice(node, "transport", TRANSPORTS)
    if kind == "replay":
        return ReplayTransport(str(_require(node, "replay.path")),
                               start_after=store.position(ReplayTransport.name))
    if kind == "redis":
        r = node.redis
        return RedisStreamTransport(str(r.url), str(r.stream), str(r.group), str(r.consumer), field=str(r.field))
    k = node.kafka
    return KafkaTransport(OmegaConf.to_container(k.config, resolve=True), list(k.topics or []))


def open_output(node: DictConfig):
    """The configured output topic, or None."""
    out = node.get("output") or {}
    kind = out.get("kind")
    if kind not in OUTPUTS:
        raise ConfigError(f"config key 'stream.output.kind' must be one of {list(OUTPUTS)}, got {kind!r}")
    if kind == "redis":
        return RedisStreamOutput(str(node.redis.url), str(out.stream))
    if kind == "kafka":
        conf = {k: v for k, v in OmegaConf.to_container(node.kafka.config, resolve=True).items()
                if not k.startswith("group.") and not k.startswith("enable.auto") and k != "auto.offset.reset"}
        return KafkaOutput(conf, str(out.topic))
    return None


def load_classifier(node: DictConfig, survey: str) -> Classifier:
    """The checkpoint's predict path, its bands checked against the survey's packets."""
    from ..tasks.transients.evaluation.inference import Predictor

    checkpoint = Path(str(_require(node, "checkpoint")))
    if not checkpoint.exists():
        raise FileNotFoundError(f"stream.checkpoint: {checkpoint} does not exist (train a model: dvc repro)")
    predictor = Predictor(checkpoint, calibration=node.get("calibration"))
    missing = sorted(set(predictor.bands) - SURVEY_BANDS[survey])
    if missing:
        raise ConfigError(f"config key 'stream.survey': {survey} packets have no band {missing} that the model "
                          f"{checkpoint} needs (its bands {predictor.bands}); use a model trained on {survey}'s "
                          f"bands")
    anomaly = None
    if node.get("anomaly_model") is not None:
        from ..tasks.transients.anomaly.scorers import AnomalyModel

        anomaly = AnomalyModel.load(str(node.anomaly_model))
    return Classifier(predictor, model_version=f"sha256:{io.file_sha256(checkpoint)[:16]}", anomaly=anomaly)


def classify(cfg: DictConfig) -> dict:
    """``stream.mode=run``: consume the configured transport into the state store."""
    node = cfg.stream
    settings = settings_from(node)
    classifier = load_classifier(node, settings.survey)
    output = open_output(node)
    with StateStore(str(_require(node, "state")), durability=str(node.get("durability", "normal"))) \
            as store:
        transport = open_transport(node, store)
        try:
            summary = run_stream(transport, store, classifier, settings, output=output)
        finally:
            transport.close()
            if output is not None:
                output.close()
        counts = store.counts()
    result = {**summary.as_dict(), "store": str(store.path), "store_counts": counts,
              "model_version": classifier.model_version, "calibration": classifier.predictor.calibration}
    log.info("stream: %d alerts classified in %.1f s (%.0f/s), %d dead letters, %d duplicates skipped; store %s "
             "holds %s", summary.classified, summary.seconds, result["alerts_per_s"], summary.dead_letters,
             summary.duplicates, store.path, counts)
    return result


def simulate(cfg: DictConfig) -> dict:
    """``stream.mode=simulate``: the raw light curves of one split as a time-ordered alert stream."""
    node = cfg.stream
    if node.get("survey") != "ztf":
        raise ConfigError(f"config key 'stream.survey': simulate writes ZTF packets (the transients model's g/r "
                          f"bands), got {node.get('survey')!r}")
    sim = node.simulate
    split = str(sim.split)
    raw, splits = Path(str(cfg.paths.raw)), Path(str(cfg.paths.splits))
    lightcurves = io.read_parquet(raw / "lightcurves.parquet")
    objects = io.read_parquet(raw / "objects.parquet")
    manifest = io.read_parquet(splits / "manifest.parquet")
    if split not in set(manifest["split"]):
        raise ConfigError(f"config key 'stream.simulate.split' must be one of {sorted(set(manifest['split']))} "
                          f"({splits / 'manifest.parquet'}), got {split!r}")
    ids = set(manifest.loc[manifest["split"] == split, "object_id"].astype(str))
    lightcurves = lightcurves[lightcurves["object_id"].astype(str).isin(ids)]
    objects = objects[objects["object_id"].astype(str).isin(ids)]
    written = write_stream(lightcurves, objects, str(_require(node, "replay.path")),
                           history_days=float(sim.history_days), packets_per_file=int(sim.packets_per_file))
    return {"alerts": written.n_alerts, "objects": written.n_objects, "files": [str(f) for f in written.files],
            "truth": str(written.truth), "median_observations_per_packet": written.median_history}


def stream_main(cfg: DictConfig) -> dict:
    """Dispatch on ``stream.mode``."""
    mode = _choice(cfg.stream, "mode", ("run", "simulate"))
    return classify(cfg) if mode == "run" else simulate(cfg)


__all__ = ["SURVEY_BANDS", "classify", "load_classifier", "open_output", "open_transport", "settings_from",
           "simulate", "stream_main"]
