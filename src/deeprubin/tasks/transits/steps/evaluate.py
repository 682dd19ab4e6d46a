"""The transits task's ``evaluate`` step (see :mod:`deeprubin.tasks.transits.steps`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....core.checkpoint import load_checkpoint
from ....core.config import require
from ..evaluation import evaluate_transit_scores
from ..fit import read_split_segments
from ..module import predict_scores
from ..plots import plot_comparison, plot_injection_recovery, plot_roc_pr

log = logging.getLogger(__name__)


def _nan_to_none(node):
    """NaN (e.g. precision with no detection) -> null: strict JSON readers reject NaN."""
    if isinstance(node, dict):
        return {k: _nan_to_none(v) for k, v in node.items()}
    if isinstance(node, float) and np.isnan(node):
        return None
    return node


def evaluate(cfg: DictConfig) -> dict:
    """Write ``metrics.json``, the figures and, under ``evaluation/``, ``star_scores.csv``,
    ``segment_scores.csv``, ``comparison.csv`` and ``injection_recovery.csv`` (in ``paths.reports``)."""
    tc = cfg
    ev = tc.evaluate
    target_fpr = float(require(ev, "target_fpr", positive=True))
    snr_cut = float(require(ev, "snr_threshold", positive=True))
    objects = io.read_parquet(Path(tc.paths.raw) / "objects.parquet")
    ephemerides = io.read_parquet(Path(tc.paths.raw) / "ephemerides.parquet")
    bls_path = Path(tc.paths.baseline) / "bls_scores.csv"
    if not bls_path.exists():
        raise FileNotFoundError(f"{bls_path}: no such file; run transits_bls first")
    bls_sde = pd.read_csv(bls_path).set_index("object_id")["sde"]
    model, meta = load_checkpoint(Path(tc.paths.models) / "model.ckpt")
    x, parts = read_split_segments(tc.paths, ("val", "test"))
    for name in ("val", "test"):
        parts[name]["score"] = predict_scores(model, x[parts[name]["row"].to_numpy()])
    test = parts["test"]

    result = evaluate_transit_scores(parts["val"], test, objects, ephemerides[ephemerides["kind"] == "planet"],
                                     bls_sde, ev, ev.aggregate, bls_source=str(bls_path))
    metrics = {**result.metrics,
               "model": {k: meta["metadata"].get(k) for k in ("epochs_run", "val_roc_auc", "val_pr_auc")}}
    stars_test, thresholds = result.stars_test, result.thresholds
    out = Path(tc.paths.reports)
    tables = out / "evaluation"  # the step's tables: one folder, whatever the task writes
    io.write_json(_nan_to_none(metrics), Path(tc.paths.metrics))
    io.write_text(stars_test[["target_id", "mission", "num_segments", "star_score", "label"]]
                  .to_csv(index=False, float_format="%.6f"), tables / "star_scores.csv")
    io.write_text(test[["segment_id", "object_id", "target_id", "mission", "t_start", "t_end", "label", "snr",
                        "has_eclipse", "score"]].to_csv(index=False, float_format="%.6g"), tables / "segment_scores.csv")
    io.write_text(result.comparison.to_csv(index=False, float_format="%.4f"), tables / "comparison.csv")
    io.write_text(pd.concat({(series, var): table for series, tables in result.curves.items()
                             for var, table in tables.items()}, names=["threshold", "variable", "bin"]).reset_index()
                  .to_csv(index=False, float_format="%.6g"), tables / "injection_recovery.csv")
    figures = out / "figures"
    io.save_figure(plot_roc_pr(test, stars_test, thresholds), figures / "roc_pr.png",
                   caption="Transit detection on simulated test stars: segment and star-level ROC and "
                           "precision-recall curves (PR with the prevalence baseline)")
    io.save_figure(plot_injection_recovery(result.curves, snr_cut, target_fpr), figures / "injection_recovery.png",
                   caption=f"Injection-recovery: segment recall against injected SNR, period and depth at the "
                           f"threshold giving {100 * target_fpr:g}% validation false-positive rate "
                           f"(SNR {snr_cut:g} marked)")
    io.save_figure(plot_comparison(stars_test, list(ev.snr_bins), thresholds, snr_cut),
                   figures / "cnn_vs_bls.png",
                   caption="Star-level recall of the CNN and of the BoxLeastSquares baseline against SNR, "
                           "at equal false-positive rate")
    seg, star, bls = metrics["segment"], metrics["star"], metrics["bls"]
    log.info("evaluate transits: segment ROC-AUC %.3f, recall(SNR>=%.1f) %.3f at FPR %.3f; star ROC-AUC %.3f, "
             "recall %.3f vs BLS %.3f", seg["roc_auc"], snr_cut, seg["recall_snr_ge_threshold"],
             seg["fpr"], star["roc_auc"], star["recall"], bls["recall"])
    return metrics
