"""Evaluate stage: test-set metrics, confusion matrices, predictions and report figures."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from .. import io
from ..config import require
from ..evaluation.compare import comparison_table, plot_comparison
from ..evaluation.metrics import classification_metrics, confusion_table, row_normalised, text_report
from ..evaluation.predict import predict_probabilities, prediction_table
from ..plots import plot_confusion_matrix, plot_sample_predictions, plot_training_curves
from ..preprocess.gp import load_gp_grid
from ..training.checkpoint import load_checkpoint
from ..training.data import grid_features, split_arrays
from ._entry import hydra_entry

log = logging.getLogger(__name__)


def _pick_examples(predictions: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Up to ``n`` test objects, each of a different true class where possible (seeded)."""
    rng = np.random.default_rng(seed)
    picks = [part.iloc[rng.integers(len(part))] for _, part in predictions.groupby("label", sort=True)]
    chosen = pd.DataFrame(picks)
    if len(chosen) > n:
        chosen = chosen.iloc[np.sort(rng.choice(len(chosen), size=n, replace=False))]
    return chosen


def run_evaluate(cfg: DictConfig) -> dict:
    """Score the trained model on the test split and write every report artefact."""
    n_examples = int(require(cfg, "evaluate.n_sample_predictions", at_least=1))
    model, meta = load_checkpoint(Path(cfg.paths.models) / "model.ckpt")
    classes = list(meta["classes"])
    processed = Path(cfg.paths.processed)
    grid = load_gp_grid(processed / "gp_grid.npz", processed / "gp_fits.parquet")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    test = split_arrays(grid.object_ids, grid_features(grid.mean, grid.std), manifest, classes).get("test")
    if test is None or len(test.y) == 0:
        raise ValueError(f"{cfg.paths.splits}/manifest.parquet: the 'test' split is empty")

    probabilities = predict_probabilities(model, test.x)
    true_labels = np.asarray(classes)[test.y]
    predictions = prediction_table(test.object_ids, probabilities, classes, true_labels)
    metrics = classification_metrics(true_labels, predictions["predicted"], classes)
    confusion = confusion_table(true_labels, predictions["predicted"], classes)

    out = Path(cfg.paths.reports)
    io.write_json(metrics, out / "metrics.json")
    io.write_text(text_report(true_labels, predictions["predicted"], classes), out / "classification_report.txt")
    io.write_text(predictions.to_csv(index=False, float_format="%.6f"), out / "predictions.csv")
    plots_data = pd.DataFrame({"actual": true_labels, "predicted": predictions["predicted"]})
    io.write_text(plots_data.to_csv(index=False), out / "plots" / "confusion.csv")
    io.write_text(confusion.to_csv(), out / "confusion_counts.csv")
    io.write_text(row_normalised(confusion).to_csv(float_format="%.4f"), out / "confusion_normalised.csv")

    figures = out / "figures"
    for normalize, name in ((False, "confusion_counts.png"), (True, "confusion_normalised.png")):
        io.save_figure(plot_confusion_matrix(true_labels, predictions["predicted"], classes, normalize=normalize),
                       figures / name)
    baseline_path = out / "baseline" / "metrics.json"
    if baseline_path.exists():  # the feature baseline, scored on the same test split
        table = comparison_table(metrics, io.read_json(baseline_path), deep_name=str(meta["model_config"]["name"]))
        io.write_text(table.to_csv(index=False, float_format="%.4f"), out / "comparison.csv")
        io.save_figure(plot_comparison(table), figures / "model_vs_baseline.png")
    history = pd.read_csv(Path(cfg.paths.models) / "history.csv")
    io.save_figure(plot_training_curves(history), figures / "training_curves.png")

    examples = _pick_examples(predictions, n_examples, int(cfg.seed))
    rows = np.array([np.flatnonzero(grid.object_ids == oid)[0] for oid in examples["object_id"]])
    lightcurves = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    io.save_figure(plot_sample_predictions(
        lightcurves[lightcurves["object_id"].isin(examples["object_id"])], grid.grid_time, grid.mean[rows],
        grid.std[rows], grid.flux_scale[rows], grid.t_ref[rows], list(grid.bands),
        examples["object_id"].to_numpy(), examples["label"].to_numpy(),
        examples[[f"prob_{c}" for c in classes]].to_numpy(), classes), figures / "sample_predictions.png")
    log.info("evaluate: accuracy %.3f, macro-F1 %.3f on %d test objects -> %s",
             metrics["accuracy"], metrics["macro_f1"], metrics["n_test"], out)
    return metrics


main = hydra_entry(run_evaluate)

if __name__ == "__main__":
    main()
