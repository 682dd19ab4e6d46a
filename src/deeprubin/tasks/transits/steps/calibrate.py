"""The transits task's ``calibrate`` step: the segments' transit probability, calibrated on the
validation split (see :mod:`deeprubin.tasks.transits.steps`).

The segment classifier's sigmoid is one logit ``z``; as the two classes ``no_transit`` and
``transit`` with logits ``[0, z]`` it goes through the calibrators every task shares
(temperature scaling, isotonic) and :func:`deeprubin.core.calibration_report.calibrate_and_report`
writes ``calibration.json`` beside the checkpoint, ``calibration/metrics.json`` and the
reliability figures. Star scores rank stars and their thresholds are set at a validation
false-positive rate (the evaluate step), so they stay uncalibrated; the predict step reports
the calibrated segment probability beside them.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ....core.calibration_report import calibrate_and_report, check_calibration_config
from ....core.checkpoint import load_checkpoint
from ..fit import read_split_segments
from ..module import SEGMENT_CLASSES, class_logits


def calibrate(cfg: DictConfig) -> dict:
    """Fit every calibrator on the validation segments, score them on validation and test, write
    file, metrics and figures."""
    node = check_calibration_config(cfg)
    x, parts = read_split_segments(cfg.paths, ("val", "test"))
    checkpoint = Path(cfg.paths.models) / "model.ckpt"
    model, _ = load_checkpoint(checkpoint)
    logits = {name: class_logits(model, x[parts[name]["row"].to_numpy()]) for name in ("val", "test")}
    labels = {name: parts[name]["label"].to_numpy(dtype="int64") for name in ("val", "test")}
    return calibrate_and_report(logits, labels, SEGMENT_CLASSES, node, seed=int(cfg.seed), checkpoint=checkpoint,
                                models_dir=cfg.paths.models, reports_dir=cfg.paths.reports, unit="segments")
