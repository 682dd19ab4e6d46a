"""The stellar task's ``calibrate`` step: the spectral network's class probabilities, calibrated
on the validation stars (see :mod:`deeprubin.tasks.stellar.steps`). The parameters' sigmas are
checked for coverage, and rescaled on validation, by the evaluate step."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ....core.calibration_report import calibrate_and_report, check_calibration_config
from ....core.checkpoint import load_checkpoint
from ..dataset import class_index, read_split_tables
from ..evaluation import checkpoint_scaler, network_outputs


def calibrate(cfg: DictConfig) -> dict:
    """Fit every calibrator on the validation spectra, score them on validation and test, write
    ``calibration.json``, ``calibration/metrics.json`` and the reliability figures."""
    node = check_calibration_config(cfg)
    x, parts = read_split_tables(cfg.paths, ("val", "test"))
    checkpoint = Path(cfg.paths.models) / "model.ckpt"
    model, meta = load_checkpoint(checkpoint)
    classes = list(meta["classes"])
    scaler, targets = checkpoint_scaler(meta, checkpoint)
    logits = {name: network_outputs(model, x[parts[name]["row"].to_numpy()], len(classes), scaler, targets).logits
              for name in ("val", "test")}
    labels = {name: class_index(parts[name]["label"], classes, f"{cfg.paths.raw}/objects.parquet")
              for name in ("val", "test")}
    return calibrate_and_report(logits, labels, classes, node, seed=int(cfg.seed), checkpoint=checkpoint,
                                models_dir=cfg.paths.models, reports_dir=cfg.paths.reports, unit="spectra")
