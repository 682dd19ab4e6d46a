"""The transients task's ``predict`` step: a trained checkpoint applied to any source, one row per object.

::

    python -m deeprubin.stages.predict checkpoint=models/transients/model.ckpt \
        source=files_bts_snia predict.output=predictions/bts_snia.csv

Composes ``conf/`` like every stage (any ``source=`` group choice and ``source.*`` override
works); ``checkpoint=X`` is shorthand for ``predict.checkpoint=X``. Preprocessing follows the
checkpoint's saved config, not the current one (:mod:`deeprubin.tasks.transients.evaluation.inference`).
Run by the generic predict entry point (:mod:`deeprubin.stages.predict`), not a DVC stage: the
``real_sky`` stage is its pipeline use.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....core.config import require
from ..evaluation.inference import predict_source_detailed

log = logging.getLogger(__name__)


def predict(cfg: DictConfig) -> dict:
    """Classify every object of ``cfg.source`` with ``cfg.predict.checkpoint``; write ``predict.output``.

    Returns a summary: number of objects, predicted class counts, output path.
    """
    checkpoint = Path(str(require(cfg, "predict.checkpoint")))
    output = Path(str(require(cfg, "predict.output")))  # checked by the entry point (stages.predict)
    result = predict_source_detailed(checkpoint, cfg.source, label_classes=list(cfg.predict.get("label_classes") or []),
                                     progress=bool(cfg.predict.get("progress_bar", False)),
                                     calibration=cfg.predict.get("calibration"), quality=cfg.get("quality"))
    # objects not classified (data quality) are listed with no prediction, after the classified ones
    table = pd.concat([result.predictions, result.unusable], ignore_index=True)
    table["calibration"] = result.calibration  # which calibrator, on every row
    path = io.write_table(table, output)
    counts = result.predictions["predicted"].value_counts().reindex(result.classes, fill_value=0)
    summary = {"n_objects": int(len(result.predictions)), "predicted": {c: int(n) for c, n in counts.items()},
               "output": str(path), "validation": result.validation, "calibration": result.calibration,
               "n_unusable": int(len(result.unusable))}
    log.info("predict: %d objects -> %s; predicted %s; calibration %s", summary["n_objects"], path,
             summary["predicted"], result.calibration)
    return summary

