"""Early stage: classification scores against days since the first detection.

For each cut in ``evaluate.early.days`` the *raw* test light curves are truncated at
first detection + cut (:mod:`deeprubin.tasks.transients.evaluation.early`), interpolated again by the
batched GP with the settings the model was trained with (read from the checkpoint's
resolved config), classified by the trained model and calibrated with the default
calibrator. Writes ``paths.reports/early_classification.json`` (per cut: objects,
accuracy, macro-F1, the macro-F1 over ``evaluate.early.transient_classes`` (each class's F1
against every prediction, averaged over those classes) and its ratio to the full-curve value,
PLAsTiCC log-loss, mean confidence; and the same scores on the full light curves of the same
objects) and ``paths.reports/early/figures/``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.calibration import apply_calibration, load_calibrator
from ..core.config import ConfigError, require
from ..core.entry import hydra_entry
from ..core.metrics import class_weight_vector, headline_metrics, subset_macro_f1
from ..tasks.transients.evaluation.early import first_detection_times, truncate_lightcurves
from ..tasks.transients.evaluation.inputs import load_model_inputs
from ..tasks.transients.evaluation.predict import predict_logits
from ..tasks.transients.plots.early import plot_early_classification
from ..tasks.transients.preprocess.gp import fit_gp_grid
from ..tasks.transients.preprocess.inputs import gp_input, gp_kwargs
from ..tasks.transients.training.inputs import checkpoint_feature_config, model_inputs, uses_features

log = logging.getLogger(__name__)


def _scores(y: np.ndarray, probabilities: np.ndarray, classes: list[str], weights, transient: list[int]) -> dict:
    m = headline_metrics(y, probabilities, classes, weights)
    return {"n_objects": int(len(y)), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "transient_macro_f1": subset_macro_f1(y, probabilities.argmax(axis=1), transient),
            "plasticc_log_loss": m["plasticc_log_loss"], "mean_confidence": float(probabilities.max(axis=1).mean())}


def transient_class_indices(cfg: DictConfig, classes: list[str]) -> list[int]:
    """Indices of ``evaluate.early.transient_classes`` in ``classes``; an unknown name is a ConfigError."""
    names = [str(c) for c in cfg.evaluate.early.get("transient_classes") or []]
    unknown = [c for c in names if c not in classes]
    if not names or unknown:
        raise ConfigError(f"config key 'evaluate.early.transient_classes' must name classes of the model "
                          f"{classes}, got {names}" + (f" ({unknown} unknown)" if unknown else ""))
    return [classes.index(c) for c in names]


def run_early(cfg: DictConfig) -> dict:
    """Score the trained model on test light curves cut at each configured epoch."""
    days = [float(d) for d in cfg.evaluate.early.days]
    if not days or any(not d >= 0 for d in days) or sorted(days) != days:
        raise ConfigError(f"config key 'evaluate.early.days' must be a non-empty increasing list of days >= 0, "
                          f"got {days}")
    snr = float(require(cfg, "evaluate.early.detection_snr", positive=True))
    inputs = load_model_inputs(cfg)
    classes = inputs.classes
    transient = transient_class_indices(cfg, classes)
    calibrator = load_calibrator(Path(cfg.paths.models) / "calibration.json", classes=classes,
                                 checkpoint=inputs.checkpoint)
    weights = class_weight_vector(cfg.evaluate.get("plasticc_weights"), classes)
    train_cfg = OmegaConf.create(inputs.meta["config"])  # the GP settings the model was trained on
    bands = dict(train_cfg.task.band_wavelengths)
    if list(bands) != list(inputs.meta.get("bands", bands)):
        raise ValueError(f"{cfg.paths.models}/model.ckpt: band order {inputs.meta['bands']} != its config's {list(bands)}")

    model_config = inputs.meta["model_config"]
    fusion = uses_features(model_config)   # features and folded views of the truncated curves, too
    features_cfg = checkpoint_feature_config(inputs.meta, str(inputs.checkpoint)) if fusion else None
    test = inputs.split("test")
    label_of = dict(zip(test.object_ids, test.y))
    lightcurves = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    lightcurves = lightcurves[lightcurves["object_id"].astype(str).isin(label_of)]
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")   # redshifts, for absolute magnitudes
    first = first_detection_times(lightcurves, snr)
    detected = np.array([o in first.index for o in test.object_ids])
    if not detected.any():
        raise ValueError(f"{cfg.paths.raw}/lightcurves.parquet: no test object has a detection "
                         f"(detected flag or flux/flux_err >= {snr})")

    # Reference: the full light curves (the preprocess stage's grid) of the same objects.
    full_p = apply_calibration(predict_logits(inputs.model, test.x[detected]), calibrator, kind="logits")
    full = _scores(test.y[detected], full_p, classes, weights, transient)
    epochs = []
    for d in days:
        cut = truncate_lightcurves(lightcurves, first, d)
        grid = fit_gp_grid(gp_input(cut, train_cfg), band_wavelengths=bands, progress=False, **gp_kwargs(train_cfg))
        ids = grid.object_ids.astype(str)
        y = np.array([label_of[o] for o in ids])
        x = model_inputs(model_config, grid, lightcurves=cut, feature_config=features_cfg, objects=objects) if fusion else \
            model_inputs(model_config, grid)
        p = apply_calibration(predict_logits(inputs.model, x), calibrator, kind="logits")
        n_points = cut.groupby("object_id").size()
        scores = _scores(y, p, classes, weights, transient)
        scores["transient_macro_f1_vs_full"] = (scores["transient_macro_f1"] / full["transient_macro_f1"]
                                                if full["transient_macro_f1"] > 0 else float("nan"))
        epochs.append({"days": d, **scores,
                       "median_points": float(n_points.median()), "n_gp_failed": int((~grid.diagnostics["fit_ok"]).sum())})
        log.info("early: +%g d: %d objects, median %d points, accuracy %.3f, macro-F1 %.3f, transient macro-F1 "
                 "%.3f (%.2f of full)", d, len(ids), n_points.median(), epochs[-1]["accuracy"],
                 epochs[-1]["macro_f1"], scores["transient_macro_f1"], scores["transient_macro_f1_vs_full"])

    report = {"days": days, "detection_snr": snr, "calibration": calibrator.method,
              "transient_classes": [classes[k] for k in transient],
              "n_test": int(len(test.y)), "n_never_detected": int((~detected).sum()),
              "epochs": epochs, "full_light_curve": full}
    out = Path(cfg.paths.reports)
    io.write_json(report, out / "early_classification.json")
    shown = ("accuracy", "macro_f1", "transient_macro_f1")
    fig = plot_early_classification(days, {m: [e[m] for e in epochs] for m in shown},
                                    {m: full[m] for m in shown}, [e["n_objects"] for e in epochs])
    io.save_figure(fig, out / "early" / "figures" / "early_classification.png",
                   caption="Test-set accuracy, macro-F1 and macro-F1 over the transient classes of the trained "
                           "classifier on light curves truncated a given number of days after the first detection "
                           "(GP refitted on the truncated data); dashed: full light curves.")
    return report


main = hydra_entry(run_early, task="transients")

if __name__ == "__main__":
    main()
