"""The transients task's ``calibrate`` step: temperature scaling and per-class isotonic calibrators
of the classifier, fitted on the validation split (see :mod:`deeprubin.tasks.transients.steps`;
the outputs are :func:`deeprubin.core.calibration_report.calibrate_and_report`'s)."""
from __future__ import annotations

from omegaconf import DictConfig

from ....core.calibration_report import calibrate_and_report, check_calibration_config
from ..evaluation.inputs import load_model_inputs
from ..evaluation.predict import predict_logits


def calibrate(cfg: DictConfig) -> dict:
    """Fit every calibrator on ``val``, score them on ``val`` and ``test``, write file, metrics, figures."""
    node = check_calibration_config(cfg)
    inputs = load_model_inputs(cfg)
    val, test = inputs.split("val"), inputs.split("test")
    logits = {"val": predict_logits(inputs.model, val.x), "test": predict_logits(inputs.model, test.x)}
    return calibrate_and_report(logits, {"val": val.y, "test": test.y}, inputs.classes, node, seed=int(cfg.seed),
                                checkpoint=inputs.checkpoint, models_dir=cfg.paths.models,
                                reports_dir=cfg.paths.reports)
