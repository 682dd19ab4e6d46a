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


#: ``evaluate.calibration.method``: one calibrator, or ``select`` (chosen on validation, :func:`select_method`).
SELECT = "select"


def check_calibration_config(cfg):
    """The task's ``evaluate.calibration`` node, checked; :class:`ConfigError` names the key."""
    node = cfg.evaluate.get("calibration")
    if node is None:
        raise ConfigError("config key 'evaluate.calibration' is missing")
    if node.method not in (*METHODS, SELECT):
        raise ConfigError(f"config key 'evaluate.calibration.method' must be one of {[*METHODS, SELECT]}, "
                          f"got {node.method!r}")
    if node.method == SELECT:
        require(cfg, "evaluate.calibration.select.folds", at_least=2)
        require(cfg, "evaluate.calibration.select.min_z", at_least=0)
    require(cfg, "evaluate.calibration.n_bins", at_least=1)
    require(cfg, "evaluate.calibration.per_class_bins", at_least=1)
    require(cfg, "evaluate.calibration.isotonic_floor", at_least=0)
    require(cfg, "evaluate.calibration.floor_draws", at_least=1)
    return node


def select_method(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], node, seed: int) -> dict:
    """Choose the default calibrator on the validation split by cross-validated log-loss.

    Each candidate (``none``, ``temperature``, ``isotonic``) is fitted on ``folds - 1`` stratified
    folds of the validation objects and scored on the held-out fold, so every object gets one
    held-out negative log-likelihood per candidate. A calibrator is chosen only if its mean gain
    over ``none`` exceeds ``min_z`` standard errors of the paired per-object gains (the best such
    one); otherwise ``none``. This resists the small validation split: an in-sample fit always
    "improves" the log-loss, and a gain within noise is not worth a calibrator that can make
    fresh data worse (the ``calibration_check`` stage measures that).

    Returns
    -------
    dict
        ``chosen``, ``rule`` and, per candidate, ``cv_nll`` and ``gain_z`` (its gain over none in
        standard errors).
    """
    from sklearn.model_selection import StratifiedKFold

    folds, min_z = int(node.select.folds), float(node.select.min_z)
    y = np.asarray(labels, dtype=np.int64)
    held = {m: np.zeros(len(y)) for m in METHODS}
    counts = np.bincount(y, minlength=len(classes))
    n_splits = int(min(folds, counts[counts > 0].min())) if counts.any() else 0
    if n_splits < 2:
        return {"chosen": "none", "rule": f"fewer than 2 validation objects in a class: no {folds}-fold selection",
                "candidates": {}}
    for fit_rows, out_rows in StratifiedKFold(n_splits, shuffle=True, random_state=int(seed)).split(logits, y):
        for method in METHODS:
            calibrator = make_calibrator(method, classes, float(node.isotonic_floor)).fit(logits[fit_rows], y[fit_rows])
            p = apply_calibration(logits[out_rows], calibrator, kind="logits")
            held[method][out_rows] = -np.log(np.maximum(p[np.arange(len(out_rows)), y[out_rows]], 1e-15))
    candidates = {}
    for method in METHODS:
        gain = held["none"] - held[method]
        se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if method != "none" else 0.0
        candidates[method] = {"cv_nll": float(held[method].mean()),
                              "gain_z": float(gain.mean() / se) if se > 0 else 0.0}
    passing = [m for m in METHODS if m != "none" and candidates[m]["gain_z"] > min_z]
    chosen = min(passing, key=lambda m: candidates[m]["cv_nll"]) if passing else "none"
    return {"chosen": chosen, "candidates": candidates, "folds": n_splits,
            "rule": f"lowest {n_splits}-fold cross-validated NLL on validation among the calibrators whose gain "
                    f"over none exceeds {min_z:g} standard errors; none if no calibrator does"}


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
    selection = None
    if not skipped and str(node.method) == SELECT:
        selection = select_method(logits["val"], val_y, classes, node, seed)
        log.info("calibrate: selected '%s' on validation (%s)", selection["chosen"], selection["candidates"])
    default = "none" if skipped else (selection["chosen"] if selection else str(node.method))
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
        **({"selection": selection} if selection else {}),
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
