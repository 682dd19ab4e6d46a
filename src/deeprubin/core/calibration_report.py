"""The calibrate step every task shares: fit the calibrators on validation logits, score them on
validation and test, write the calibration file, metrics and reliability figures.

A task's ``calibrate`` step computes its model's logits and labels on its validation and test
splits (class scores of the transients objects; transit / no transit of the transits segments)
and calls :func:`calibrate_and_report`. It writes ``calibration.json`` beside the checkpoint
(every fitted calibrator and the configured default, bound to the checkpoint by sha256;
:func:`deeprubin.core.calibration.load_calibrator` reads it back) and, under
``<reports>/calibration/``: ``metrics.json`` (accuracy, ECE with equal-width and equal-mass
bins, class-wise ECE, Brier, NLL on the validation and test splits, for the uncalibrated model
and each calibrator; ``test_ece_floor``: the ECE a perfectly calibrated model would score on a
test set of this size) and ``figures/`` (reliability diagrams overall, both bin schemes, and
per class, before and after calibration).

A validation split holding a single class (a one-class real sample such as
``source=files_bts_snia``) cannot be calibrated: nothing is fitted, only the identity
calibrator is saved as the default, and the reason is recorded under ``skipped`` in both files.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import io
from .calibration import METHODS, apply_calibration, make_calibrator, save_calibration, single_class_reason
from .config import ConfigError, require
from .plot_calibration import plot_reliability, plot_reliability_per_class
from .reliability import calibration_summary, ece_floor

log = logging.getLogger(__name__)


def check_calibration_config(cfg):
    """The task's ``evaluate.calibration`` node, checked; :class:`ConfigError` names the key."""
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


def calibrate_and_report(logits: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                         classes: Sequence[str], node, *, seed: int, checkpoint: str | Path,
                         models_dir: str | Path, reports_dir: str | Path, unit: str = "objects") -> dict:
    """Fit every calibrator on ``logits["val"]``, score them on ``val`` and ``test``, write the outputs.

    Parameters
    ----------
    logits, labels : mapping ``"val"``/``"test"`` -> array
        ``(n, C)`` logits and ``(n,)`` class indices of each split, columns in ``classes`` order.
    node : the task's ``evaluate.calibration`` config (:func:`check_calibration_config`)
    seed : the label draws of the ECE noise floor
    checkpoint : the model the calibrators belong to (bound by sha256)
    models_dir, reports_dir : ``calibration.json`` goes to the first, ``calibration/`` to the second
    unit : what one row is (``objects``, ``segments``), for the log

    Returns
    -------
    dict
        The metrics written to ``calibration/metrics.json``.
    """
    n_bins = int(node.n_bins)
    classes = list(classes)
    val_y, test_y = labels["val"], labels["test"]
    # A one-class validation split (a one-class real sample) has nothing to calibrate:
    # keep the raw probabilities, say why, and let the rest of the pipeline run.
    skipped = single_class_reason(val_y)
    if skipped:
        log.warning("calibrate: %s; no calibrator fitted, the default method is 'none'", skipped)
    default = "none" if skipped else str(node.method)
    calibrators = {m: make_calibrator(m, classes, float(node.isotonic_floor)).fit(logits["val"], val_y)
                   for m in ([] if skipped else ["temperature", "isotonic"])}
    probabilities = {split: {"uncalibrated": apply_calibration(z, make_calibrator("none", classes), kind="logits"),
                             **{m: apply_calibration(z, c, kind="logits") for m, c in calibrators.items()}}
                     for split, z in logits.items()}
    metrics = {
        "default_method": default,
        "temperature": calibrators["temperature"].temperature if "temperature" in calibrators else None,
        "n_bins": n_bins,
        **({"skipped": skipped, "configured_method": str(node.method)} if skipped else {}),
        **{split: {name: calibration_summary(p, labels[split], n_bins) for name, p in sets.items()}
           for split, sets in probabilities.items()},
    }
    # What a perfectly calibrated model would score on a test set of this size (sampling noise).
    default_test = probabilities["test"]["uncalibrated" if default == "none" else default]
    metrics["test_ece_floor"] = {scheme: ece_floor(default_test, n_bins, scheme, int(node.floor_draws), int(seed))
                                 for scheme in ("width", "mass")}
    calibrators["none"] = make_calibrator("none", classes)
    save_calibration(Path(models_dir) / "calibration.json", calibrators, default=default,
                     fitted_on={"split": "val", "n_objects": int(len(val_y)), **({"skipped": skipped} if skipped else {})},
                     checkpoint=checkpoint)

    out = Path(reports_dir) / "calibration"
    io.write_json(metrics, out / "metrics.json")
    figures = out / "figures"
    test_sets = probabilities["test"]
    for scheme in ("width", "mass"):
        io.save_figure(plot_reliability(test_sets, test_y, n_bins, scheme), figures / f"reliability_{scheme}.png",
                       caption=f"Top-label reliability diagram of the test set ({n_bins} equal-{scheme} bins) "
                               + (f"without calibration ({skipped})." if skipped else
                                  "before and after temperature scaling and isotonic calibration fitted on the "
                                  "validation split."))
    shown = {"uncalibrated": test_sets["uncalibrated"]}
    if default != "none":
        shown[default] = test_sets[default]
    io.save_figure(plot_reliability_per_class(shown, test_y, classes, int(node.per_class_bins)),
                   figures / "reliability_per_class.png",
                   caption=f"One-vs-rest reliability per class on the test set, before and after the default "
                           f"calibration ({default}).")
    t = metrics["test"]
    floor = metrics["test_ece_floor"]["width"]
    if skipped:
        log.info("calibrate: test ECE(width) %.4f, NLL %.4f uncalibrated; a perfectly calibrated model would score "
                 "ECE %.4f [%.4f, %.4f] on these %d %s", t["uncalibrated"]["ece_width"],
                 t["uncalibrated"]["nll"], floor["mean"], floor["p05"], floor["p95"], len(test_y), unit)
        return metrics
    log.info("calibrate: T=%.3f; test ECE(width) %.4f -> %.4f (temperature), %.4f (isotonic); NLL %.4f -> %.4f; "
             "a perfectly calibrated model would score ECE %.4f [%.4f, %.4f] on these %d %s",
             metrics["temperature"], t["uncalibrated"]["ece_width"], t["temperature"]["ece_width"],
             t["isotonic"]["ece_width"], t["uncalibrated"]["nll"], t["temperature"]["nll"], floor["mean"],
             floor["p05"], floor["p95"], len(test_y), unit)
    return metrics
