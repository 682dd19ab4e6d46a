"""Calibrate stage: fit temperature scaling and isotonic calibrators on the validation split.

Writes ``paths.models/calibration.json`` (every fitted calibrator and the configured
default, read back by :func:`deeprubin.evaluation.calibration.load_calibrator`), and
under ``paths.reports/calibration/``: ``metrics.json`` (accuracy, ECE with equal-width
and equal-mass bins, class-wise ECE, Brier, NLL on the validation and test splits, for
the uncalibrated model and each calibrator; ``test_ece_floor``: the ECE a perfectly
calibrated model would score on a test set of this size) and ``figures/`` (reliability diagrams
overall, both bin schemes, and per class, before and after calibration).
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from .. import io
from ..config import ConfigError, require
from ..evaluation.calibration import METHODS, apply_calibration, make_calibrator, save_calibration
from ..evaluation.inputs import load_model_inputs
from ..evaluation.predict import predict_logits
from ..evaluation.reliability import calibration_summary, ece_floor
from ..plots.calibration import plot_reliability, plot_reliability_per_class
from ._entry import hydra_entry

log = logging.getLogger(__name__)


def check_calibration_config(cfg: DictConfig) -> DictConfig:
    node = cfg.evaluate.get("calibration")
    if node is None:
        raise ConfigError("config key 'evaluate.calibration' is missing")
    if node.method not in METHODS:
        raise ConfigError(f"config key 'evaluate.calibration.method' must be one of {list(METHODS)}, "
                          f"got {node.method!r}")
    require(cfg, "evaluate.calibration.n_bins", at_least=1)
    require(cfg, "evaluate.calibration.per_class_bins", at_least=1)
    require(cfg, "evaluate.calibration.isotonic_floor", at_least=0)
    require(cfg, "evaluate.calibration.floor_draws", at_least=1)
    return node


def run_calibrate(cfg: DictConfig) -> dict:
    """Fit every calibrator on ``val``, score them on ``val`` and ``test``, write file, metrics, figures."""
    node = check_calibration_config(cfg)
    n_bins = int(node.n_bins)
    inputs = load_model_inputs(cfg)
    classes = inputs.classes
    val, test = inputs.split("val"), inputs.split("test")
    logits = {"val": predict_logits(inputs.model, val.x), "test": predict_logits(inputs.model, test.x)}
    labels = {"val": val.y, "test": test.y}

    calibrators = {m: make_calibrator(m, classes, float(node.isotonic_floor)).fit(logits["val"], val.y)
                   for m in ("temperature", "isotonic")}
    probabilities = {split: {"uncalibrated": apply_calibration(z, make_calibrator("none", classes), kind="logits"),
                             **{m: apply_calibration(z, c, kind="logits") for m, c in calibrators.items()}}
                     for split, z in logits.items()}
    metrics = {
        "default_method": str(node.method),
        "temperature": calibrators["temperature"].temperature,
        "n_bins": n_bins,
        **{split: {name: calibration_summary(p, labels[split], n_bins) for name, p in sets.items()}
           for split, sets in probabilities.items()},
    }
    # What a perfectly calibrated model would score on a test set of this size (sampling noise).
    default_test = probabilities["test"]["uncalibrated" if node.method == "none" else str(node.method)]
    metrics["test_ece_floor"] = {scheme: ece_floor(default_test, n_bins, scheme, int(node.floor_draws), int(cfg.seed))
                                 for scheme in ("width", "mass")}
    calibrators["none"] = make_calibrator("none", classes)
    save_calibration(Path(cfg.paths.models) / "calibration.json", calibrators, default=str(node.method),
                     fitted_on={"split": "val", "n_objects": int(len(val.y))})

    out = Path(cfg.paths.reports) / "calibration"
    io.write_json(metrics, out / "metrics.json")
    figures = out / "figures"
    test_sets = probabilities["test"]
    for scheme in ("width", "mass"):
        io.save_figure(plot_reliability(test_sets, test.y, n_bins, scheme), figures / f"reliability_{scheme}.png",
                       caption=f"Top-label reliability diagram of the test set ({n_bins} equal-{scheme} bins) "
                               "before and after temperature scaling and isotonic calibration fitted on the "
                               "validation split.")
    shown = {"uncalibrated": test_sets["uncalibrated"]}
    if node.method != "none":
        shown[str(node.method)] = test_sets[str(node.method)]
    io.save_figure(plot_reliability_per_class(shown, test.y, classes, int(node.per_class_bins)),
                   figures / "reliability_per_class.png",
                   caption=f"One-vs-rest reliability per class on the test set, before and after the default "
                           f"calibration ({node.method}).")
    t = metrics["test"]
    floor = metrics["test_ece_floor"]["width"]
    log.info("calibrate: T=%.3f; test ECE(width) %.4f -> %.4f (temperature), %.4f (isotonic); NLL %.4f -> %.4f; "
             "a perfectly calibrated model would score ECE %.4f [%.4f, %.4f] on these %d objects",
             metrics["temperature"], t["uncalibrated"]["ece_width"], t["temperature"]["ece_width"],
             t["isotonic"]["ece_width"], t["uncalibrated"]["nll"], t["temperature"]["nll"], floor["mean"],
             floor["p05"], floor["p95"], len(test.y))
    return metrics


main = hydra_entry(run_calibrate)

if __name__ == "__main__":
    main()
