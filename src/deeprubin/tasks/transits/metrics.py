"""Thresholds at a false-positive rate, ROC/PR summaries and recall by injected property."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score


def threshold_at_fpr(negative_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold with at most ``target_fpr`` of ``negative_scores`` strictly above it.

    A score counts as a detection when ``score > threshold``. With few negatives the
    achievable FPR is coarse (steps of 1/n); the realised rate is reported alongside.
    """
    neg = np.sort(np.asarray(negative_scores, dtype=float))
    if neg.size == 0:
        raise ValueError("threshold_at_fpr: no negative scores (validation has no negatives)")
    n_allowed = int(np.floor(target_fpr * neg.size))
    return float(neg[neg.size - 1 - n_allowed])


def detection_summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """ROC-AUC, PR-AUC (average precision), prevalence, and recall/FPR/precision at ``threshold``."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    detected = scores > threshold
    out = {"n": int(labels.size), "n_positive": int(labels.sum()),
           "prevalence": float(labels.mean()) if labels.size else float("nan"), "threshold": float(threshold)}
    both = 0 < labels.sum() < labels.size
    out["roc_auc"] = float(roc_auc_score(labels, scores)) if both else float("nan")
    out["pr_auc"] = float(average_precision_score(labels, scores)) if both else float("nan")
    out["recall"] = float(detected[labels == 1].mean()) if labels.sum() else float("nan")
    out["fpr"] = float(detected[labels == 0].mean()) if (labels == 0).sum() else float("nan")
    out["precision"] = float(labels[detected].mean()) if detected.sum() else float("nan")
    return out


def recall_by_bins(values: np.ndarray, detected: np.ndarray, edges) -> pd.DataFrame:
    """Recall (fraction detected) of positives binned by ``values`` with its binomial error."""
    values = np.asarray(values, dtype=float)
    detected = np.asarray(detected, dtype=bool)
    edges = np.asarray(edges, dtype=float)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (values >= lo) & (values < hi)
        n = int(inside.sum())
        r = float(detected[inside].mean()) if n else float("nan")
        rows.append({"lo": lo, "hi": hi, "n": n, "recall": r,
                     "err": float(np.sqrt(r * (1 - r) / n)) if n else float("nan")})
    return pd.DataFrame(rows)


def log_edges(values: np.ndarray, n_bins: int) -> np.ndarray | list[float]:
    """``n_bins`` log-spaced bins over the range of positive ``values`` (the top edge just above
    the largest, so it falls inside); ``[0, 1]`` when there is nothing positive to bin."""
    v = np.asarray(values, dtype=float)
    return np.geomspace(v.min(), v.max() * 1.0001, int(n_bins) + 1) if v.size and v.min() > 0 else [0.0, 1.0]
