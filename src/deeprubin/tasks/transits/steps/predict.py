"""The transits task's ``predict`` step: the trained segment classifier applied to any source of
the task, one row per light curve (see :mod:`deeprubin.tasks.transits.steps`).

::

    python -m deeprubin.stages.predict task_name=transits \\
        tasks/transits/source=lightkurve 'source.local.paths=[../shared/data/real/kepler_tess_fits]' \\
        source.catalog.path=null source.labels.label=planet predict.output=predictions/hosts.csv

The source's light curves go through the task's source path (:mod:`..source`: validated, binned
to the model's cadence) and the model's own segmenting (both from the config saved in the
checkpoint, ``task.cadence_minutes`` and ``preprocess``, never from the current one), and each
light curve gets:

- ``star_score``: its segments' scores aggregated as the evaluate step does (``evaluate.aggregate``),
  a rank score whose thresholds the evaluate report sets at a validation false-positive rate;
- ``max_transit_probability``: the highest calibrated segment probability (``predict.calibration``:
  the calibrate step's ``calibration.json`` beside the checkpoint by default) and the time span of
  that segment (``best_t_start``, ``best_t_end``, mission time system);
- ``n_known_transit_segments``: segments holding a transit of a known ephemeris (the source's or
  ``ephemerides.path``), so a known planet's recovery can be read off.

Light curves that cannot be segmented are listed after the scored ones with the reason and no score.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ....core import io
from ....core.calibration import apply_calibration, load_calibrator, resolve_calibration
from ....core.checkpoint import load_checkpoint
from ....core.config import ConfigError, require
from ..aggregate import star_scores
from ..module import SEGMENT_CLASSES, class_logits, predict_scores
from ..dataset import preprocess_tables
from ..source import load_source_tables

log = logging.getLogger(__name__)

#: Columns of the prediction table, in order.
COLUMNS = ("object_id", "target_id", "mission", "label", "num_segments", "star_score", "max_transit_probability",
           "best_t_start", "best_t_end", "n_known_transit_segments", "skipped", "calibration")


def trained_config(meta: dict, checkpoint: Path) -> DictConfig:
    """The task config saved in the checkpoint: the segmenting and cadences it was trained with."""
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ConfigError(f"{checkpoint}: field 'config' is missing; not a checkpoint of the train step")
    trained = OmegaConf.create(config)
    for key in ("preprocess", "task.cadence_minutes"):
        if OmegaConf.select(trained, key) is None:
            raise ConfigError(f"{checkpoint}: field 'config.{key}' is missing; not a transits checkpoint")
    return trained


def predict(cfg: DictConfig) -> dict:
    """Score every light curve of ``cfg.source`` with ``cfg.predict.checkpoint``; write ``predict.output``.

    Returns a summary: light curves scored and skipped, calibration, output path.
    """
    checkpoint = Path(str(require(cfg, "predict.checkpoint")))
    output = Path(str(require(cfg, "predict.output")))  # checked by the entry point (stages.predict)
    model, meta = load_checkpoint(checkpoint)
    trained = trained_config(meta, checkpoint)
    source_cfg = OmegaConf.merge(cfg, {"task": {"cadence_minutes": trained.task.cadence_minutes}})  # the model's
    lightcurves, objects, ephemerides, source_report = load_source_tables(source_cfg)
    name = str(cfg.source.name)
    x, segments, _, report = preprocess_tables(lightcurves, objects, ephemerides, trained.preprocess,
                                               raw_dir=f"source '{name}'")
    path = resolve_calibration(cfg.predict.get("calibration"), checkpoint)
    calibrator = load_calibrator(path, classes=SEGMENT_CLASSES, checkpoint=checkpoint) if path else None
    calibration = "none (raw sigmoid)" if calibrator is None else f"{calibrator.method} from {path}"
    segments = segments.assign(score=predict_scores(model, x))
    segments["probability"] = (segments["score"].to_numpy(dtype=float) if calibrator is None else
                               apply_calibration(class_logits(model, x), calibrator, kind="logits")[:, 1])
    agg = cfg.evaluate.aggregate
    stars = star_scores(segments, str(agg.method), int(agg.k)).set_index("object_id")
    best = segments.sort_values(["object_id", "probability"], ascending=[True, False], kind="mergesort") \
        .groupby("object_id", sort=True).head(1).set_index("object_id")
    stars["max_transit_probability"] = best["probability"]
    stars["best_t_start"], stars["best_t_end"] = best["t_start"], best["t_end"]
    stars["n_known_transit_segments"] = segments.groupby("object_id")["label"].sum().astype(int)
    labels = objects.set_index("object_id")["label"]
    scored = stars.reset_index().assign(label=lambda t: t["object_id"].map(labels), skipped="")
    unusable = pd.DataFrame([{"object_id": s["object_id"], "skipped": s["message"]} for s in report["skipped_objects"]])
    if not unusable.empty:
        info = objects.set_index("object_id")
        unusable = unusable.assign(target_id=lambda t: t["object_id"].map(info["target_id"]),
                                   mission=lambda t: t["object_id"].map(info["mission"]),
                                   label=lambda t: t["object_id"].map(labels), num_segments=0)
    table = pd.concat([scored, unusable], ignore_index=True).assign(calibration=calibration)
    table = table.reindex(columns=list(COLUMNS))
    for column in ("num_segments", "n_known_transit_segments"):   # counts stay integers beside skipped rows
        table[column] = table[column].astype("Int64")
    written = io.write_table(table, output)
    summary = {"source": name, "n_scored": int(len(scored)), "n_skipped": int(len(unusable)),
               "n_segments": int(len(segments)), "calibration": calibration, "output": str(written),
               "validation": source_report.get("validation")}
    log.info("predict transits: %d light curves (%d segments) from source '%s' -> %s; %d skipped; calibration %s",
             summary["n_scored"], summary["n_segments"], name, written, summary["n_skipped"], calibration)
    if len(scored):
        top = scored.sort_values("star_score", ascending=False).iloc[0]
        log.info("predict transits: highest star score %.3f (%s)", float(top["star_score"]), top["object_id"])
    return summary
