"""The transients task's ``evaluate`` step (see :mod:`deeprubin.tasks.transients.steps`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....core.calibration import apply_calibration, load_calibrator
from ....core.config import require
from ....core.metrics import (
    bootstrap_intervals,
    class_weight_vector,
    classification_metrics,
    confusion_table,
    headline_metrics,
    one_vs_rest_curves,
    row_normalised,
    text_report,
)
from ..evaluation.compare import BASELINE_NAME, comparison_table, paired_bootstrap, plot_comparison
from ..evaluation.inputs import load_model_inputs
from ..evaluation.predict import predict_logits, prediction_table
from ..plots import plot_confusion_matrix, plot_sample_predictions, plot_training_curves
from ..plots.curves import plot_roc_pr

log = logging.getLogger(__name__)


def _pick_examples(predictions: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to ``n`` test objects, each of a different true class where possible (seeded)."""
    rng = np.random.default_rng(seed)
    picks = [part.iloc[rng.integers(len(part))] for _, part in predictions.groupby("label", sort=True)]
    chosen = pd.DataFrame(picks)
    if len(chosen) > n:
        chosen = chosen.iloc[np.sort(rng.choice(len(chosen), size=n, replace=False))]
    return chosen


def _validation_scores(model, val, calibrator, classes: list[str]) -> dict:
    """Macro-F1 and accuracy on the validation split: what model selection compares (the test
    split stays for the final report)."""
    probabilities = apply_calibration(predict_logits(model, val.x), calibrator, kind="logits")
    scores = classification_metrics(np.asarray(classes)[val.y], np.asarray(classes)[probabilities.argmax(1)], classes)
    return {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"], "n": int(len(val.y))}


def _baseline_predictions(path: Path, object_ids: np.ndarray, classes: list[str]) -> np.ndarray:
    """The baseline's predicted class index for each of ``object_ids`` (its ``predictions.csv``);
    a ValueError names the file when it does not cover exactly these test objects."""
    table = pd.read_csv(path, dtype={"object_id": str, "predicted": str})
    missing = sorted(set(map(str, object_ids)) - set(table["object_id"]))
    extra = sorted(set(table["object_id"]) - set(map(str, object_ids)))
    if missing or extra:
        raise ValueError(f"{path}: the baseline was not scored on this test split ({len(missing)} test object(s) "
                         f"missing, e.g. {missing[:3]}; {len(extra)} other(s), e.g. {extra[:3]}); rerun the baseline "
                         "stage")
    unknown = sorted(set(table["predicted"]) - set(classes))
    if unknown:
        raise ValueError(f"{path}: column 'predicted' has class(es) {unknown} not in the model's {classes}")
    return table.set_index("object_id").loc[list(map(str, object_ids)), "predicted"].map(
        {c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)


def evaluate(cfg: DictConfig) -> dict:
    """Score the trained model on the test split and write every report artefact."""
    n_examples = int(require(cfg, "evaluate.n_sample_predictions", at_least=1))
    n_boot = int(require(cfg, "evaluate.bootstrap.n_boot", at_least=1))
    inputs = load_model_inputs(cfg)
    model, meta, classes, grid = inputs.model, inputs.meta, inputs.classes, inputs.grid
    test = inputs.split("test")
    calibrator = load_calibrator(Path(cfg.paths.models) / "calibration.json", classes=classes,
                                 checkpoint=inputs.checkpoint)
    probabilities = apply_calibration(predict_logits(model, test.x), calibrator, kind="logits")
    true_labels = np.asarray(classes)[test.y]
    predictions = prediction_table(test.object_ids, probabilities, classes, true_labels)
    metrics = classification_metrics(true_labels, predictions["predicted"], classes)
    confusion = confusion_table(true_labels, predictions["predicted"], classes)
    weights = class_weight_vector(cfg.evaluate.get("plasticc_weights"), classes)
    metrics.update(headline_metrics(test.y, probabilities, classes, weights))
    metrics["calibration"] = calibrator.method
    metrics["validation"] = _validation_scores(model, inputs.split("val"), calibrator, classes)
    curves = one_vs_rest_curves(test.y, probabilities, classes)
    for c, cv in curves.items():
        metrics["per_class"][c].update(roc_auc=cv["auc"], average_precision=cv["ap"])
    metrics["confidence_intervals"] = bootstrap_intervals(
        test.y, probabilities, inputs.groups(test.object_ids),
        lambda y, p: headline_metrics(y, p, classes, weights), n_boot=n_boot,
        seed=int(cfg.evaluate.bootstrap.seed), confidence=float(cfg.evaluate.bootstrap.confidence))
    metrics["confidence_intervals"]["n_boot"] = n_boot

    baseline_path = Path(cfg.paths.baseline) / "metrics.json"
    comparison = None
    if baseline_path.exists():  # the feature baseline, scored on the same test split
        deep_name = str(meta["model_config"]["name"])
        table = comparison_table(metrics, io.read_json(baseline_path), deep_name=deep_name)
        baseline_predicted = _baseline_predictions(Path(cfg.paths.baseline) / "predictions.csv", test.object_ids,
                                                   classes)
        intervals = paired_bootstrap(test.y, {deep_name: probabilities.argmax(1), BASELINE_NAME: baseline_predicted},
                                     inputs.groups(test.object_ids), classes, n_boot=n_boot,
                                     seed=int(cfg.evaluate.bootstrap.seed),
                                     confidence=float(cfg.evaluate.bootstrap.confidence))
        difference = intervals[intervals["model"] == f"{deep_name} minus {BASELINE_NAME}"].set_index("score")
        metrics["vs_baseline"] = {f"{score}_difference": {k: float(difference.at[score, k]) for k in
                                                          ("value", "low", "high")} for score in ("macro_f1", "accuracy")}
        comparison = table, intervals

    out = Path(cfg.paths.reports)
    tables = out / "evaluation"  # the step's tables: one folder, whatever the task writes
    io.write_json(metrics, Path(cfg.paths.metrics))
    io.write_text(text_report(true_labels, predictions["predicted"], classes), tables / "classification_report.txt")
    io.write_text(predictions.to_csv(index=False, float_format="%.6f"), tables / "predictions.csv")
    plots_data = pd.DataFrame({"actual": true_labels, "predicted": predictions["predicted"]})
    io.write_text(plots_data.to_csv(index=False), tables / "confusion.csv")
    io.write_text(confusion.to_csv(), tables / "confusion_counts.csv")
    io.write_text(row_normalised(confusion).to_csv(float_format="%.4f"), tables / "confusion_normalised.csv")

    figures = out / "figures"
    for normalize, name, what in ((False, "confusion_counts.png", "object counts"),
                                  (True, "confusion_normalised.png", "fractions of each true class")):
        io.save_figure(plot_confusion_matrix(true_labels, predictions["predicted"], classes, normalize=normalize),
                       figures / name, caption=f"Test-set confusion matrix of the deep classifier ({what}).")
    io.save_figure(plot_roc_pr(curves, classes), figures / "roc_pr.png",
                   caption="One-vs-rest ROC and precision-recall curves per class on the test set "
                           f"({calibrator.method}-calibrated probabilities).")
    if comparison is not None:
        table, intervals = comparison
        io.write_text(table.to_csv(index=False, float_format="%.4f"), tables / "comparison.csv")
        io.write_text(intervals.to_csv(index=False, float_format="%.4f"), tables / "comparison_intervals.csv")
        io.save_figure(plot_comparison(table, intervals), figures / "model_vs_baseline.png",
                       caption="Per-class and macro F1 of the deep model and the feature + balanced random forest "
                               "baseline on the same test split, with paired 95% group-bootstrap intervals.")
    history = pd.read_csv(Path(cfg.paths.models) / "history.csv")
    io.save_figure(plot_training_curves(history), figures / "training_curves.png",
                   caption="Training and validation loss and accuracy per epoch.")

    examples = _pick_examples(predictions, n_examples, int(cfg.seed))
    rows = np.array([np.flatnonzero(grid.object_ids == oid)[0] for oid in examples["object_id"]])
    lightcurves = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    io.save_figure(plot_sample_predictions(
        lightcurves[lightcurves["object_id"].isin(examples["object_id"])], grid.grid_time, grid.mean[rows],
        grid.std[rows], grid.flux_scale[rows], grid.t_ref[rows], list(grid.bands),
        examples["object_id"].to_numpy(), examples["label"].to_numpy(),
        examples[[f"prob_{c}" for c in classes]].to_numpy(), classes), figures / "sample_predictions.png",
        caption="Example test light curves (one per class) with their GP interpolation and the classifier's "
                "class probabilities.")
    ci = metrics["confidence_intervals"]
    log.info("evaluate: accuracy %.3f [%.3f, %.3f], macro-F1 %.3f [%.3f, %.3f], MCC %.3f, PLAsTiCC log-loss %.3f "
             "on %d test objects -> %s", metrics["accuracy"], ci["accuracy"]["low"], ci["accuracy"]["high"],
             metrics["macro_f1"], ci["macro_f1"]["low"], ci["macro_f1"]["high"], metrics["mcc"],
             metrics["plasticc_log_loss"], metrics["n_test"], out)
    return metrics
