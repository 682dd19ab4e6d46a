"""How well probabilities are calibrated: reliability bins, ECE, Brier score and NLL.

Conventions
-----------
* ``probabilities``: ``(n, C)`` rows summing to one; ``labels``: ``(n,)`` class indices.
* Top-label ECE (Guo et al. 2017): the confidence is the largest probability of a row,
  "correct" means the arg-max is the true class;
  ``ECE = sum_b (n_b / n) |accuracy_b - confidence_b|``.
* Equal-width bins split [0, 1] into ``n_bins`` intervals (torchmetrics'
  ``multiclass_calibration_error`` computes that ECE); equal-mass bins hold the same
  number of objects each (consecutive runs of the sorted confidences), which keeps
  the estimate stable where a confident model leaves most width bins nearly empty.
* Class-wise (one-vs-rest) reliability uses ``p_k`` against ``[label == k]`` for every
  object; its ECE averaged over classes is the "class-wise ECE" (Kull et al. 2019).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

SCHEMES = ("width", "mass")


def _bin_index(confidence: np.ndarray, n_bins: int, scheme: str) -> np.ndarray:
    """Bin of each value: equal-width bins on [0, 1] (1.0 in the last), or equal-mass bins."""
    if scheme == "width":
        return np.clip(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1), confidence, side="right") - 1,
                       0, n_bins - 1)
    if scheme == "mass":
        order = np.argsort(confidence, kind="stable")
        index = np.empty(len(confidence), dtype=np.int64)
        for b, rows in enumerate(np.array_split(order, n_bins)):
            index[rows] = b
        return index
    raise ValueError(f"binning scheme must be one of {list(SCHEMES)}, got {scheme!r}")


def reliability_bins(confidence: np.ndarray, outcome: np.ndarray, n_bins: int = 15,
                     scheme: str = "width") -> pd.DataFrame:
    """Per-bin statistics of a reliability diagram.

    Parameters
    ----------
    confidence : numpy.ndarray, shape (n,)
        Predicted probability of the event (top-label confidence, or ``p_k``).
    outcome : numpy.ndarray, shape (n,)
        1 where the event happened (prediction correct, or label == k), else 0.
    n_bins : int
    scheme : {"width", "mass"}

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``bin``, ``lower``, ``upper`` (confidence range of
        the bin: nominal edges for width bins, min/max for mass bins), ``count``,
        ``confidence`` (mean predicted probability), ``accuracy`` (observed frequency).
    """
    confidence = np.asarray(confidence, dtype=float)
    outcome = np.asarray(outcome, dtype=float)
    if confidence.shape != outcome.shape or confidence.ndim != 1:
        raise ValueError(f"confidence {confidence.shape} and outcome {outcome.shape} must be equal 1-D shapes")
    if len(confidence) == 0:
        raise ValueError("reliability_bins: no objects")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    index = _bin_index(confidence, n_bins, scheme)
    frame = pd.DataFrame({"bin": index, "confidence": confidence, "accuracy": outcome})
    out = frame.groupby("bin").agg(count=("confidence", "size"), confidence=("confidence", "mean"),
                                   accuracy=("accuracy", "mean"), lower=("confidence", "min"),
                                   upper=("confidence", "max")).reset_index()
    if scheme == "width":
        out["lower"] = out["bin"] / n_bins
        out["upper"] = (out["bin"] + 1) / n_bins
    return out[["bin", "lower", "upper", "count", "confidence", "accuracy"]]


def ece_from_bins(bins: pd.DataFrame) -> float:
    """``sum_b (n_b / n) |accuracy_b - confidence_b|`` over a :func:`reliability_bins` table."""
    weights = bins["count"] / bins["count"].sum()
    return float((weights * (bins["accuracy"] - bins["confidence"]).abs()).sum())


def top_label(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of the arg-max prediction, each shape (n,)."""
    p = np.asarray(probabilities, dtype=float)
    return p.max(axis=1), (p.argmax(axis=1) == np.asarray(labels)).astype(float)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15,
                               scheme: str = "width") -> float:
    """Top-label ECE. ``scheme="width"`` is torchmetrics' ``multiclass_calibration_error`` (L1)."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels)
    if len(y) == 0:
        raise ValueError("expected_calibration_error: no objects")
    if scheme == "width":
        return float(multiclass_calibration_error(torch.as_tensor(p), torch.as_tensor(y, dtype=torch.long),
                                                  num_classes=p.shape[1], n_bins=n_bins, norm="l1"))
    return ece_from_bins(reliability_bins(*top_label(p, y), n_bins=n_bins, scheme=scheme))


def classwise_ece(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15, scheme: str = "width") -> float:
    """Mean over classes of the one-vs-rest ECE of ``p_k`` against ``[label == k]``."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels)
    return float(np.mean([ece_from_bins(reliability_bins(p[:, k], (y == k).astype(float), n_bins, scheme))
                          for k in range(p.shape[1])]))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over objects of ``sum_k (p_k - [y == k])**2`` (0 best, 2 worst)."""
    p = np.asarray(probabilities, dtype=float)
    # scale_by_half=False: the same sum-over-classes definition for two classes as for more
    # (scikit-learn's "auto" halves the binary case).
    return float(brier_score_loss(np.asarray(labels), p, labels=np.arange(p.shape[1]), scale_by_half=False))


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean ``-ln p_y`` (scikit-learn's log-loss; probabilities clipped at machine epsilon)."""
    p = np.asarray(probabilities, dtype=float)
    return float(log_loss(np.asarray(labels), p, labels=np.arange(p.shape[1])))


def calibration_summary(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Accuracy, ECE (equal-width and equal-mass), class-wise ECE, Brier and NLL of one set."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels)
    return {
        "n": int(len(y)),
        "accuracy": float((p.argmax(axis=1) == y).mean()),
        "ece_width": expected_calibration_error(p, y, n_bins, "width"),
        "ece_mass": expected_calibration_error(p, y, n_bins, "mass"),
        "classwise_ece_width": classwise_ece(p, y, n_bins, "width"),
        "brier": brier_score(p, y),
        "nll": negative_log_likelihood(p, y),
        "mean_confidence": float(p.max(axis=1).mean()),
    }


def ece_floor(probabilities: np.ndarray, n_bins: int = 15, scheme: str = "width", n_draws: int = 200,
              seed: int = 0) -> dict[str, float]:
    """ECE a *perfectly calibrated* model with these probabilities would score on this many objects.

    Labels are drawn from the probabilities themselves (so the model is calibrated by
    construction) ``n_draws`` times; the spread of the ECE is pure sampling noise of
    the finite set. A measured ECE inside this range cannot be told from perfect
    calibration; a target below its mean needs more objects.

    Returns
    -------
    dict
        ``mean``, ``p05``, ``p95`` of the simulated ECE.
    """
    p = np.asarray(probabilities, dtype=float)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(p, axis=1)
    values = []
    for _ in range(n_draws):
        labels = np.minimum((rng.uniform(size=(len(p), 1)) > cumulative).sum(axis=1), p.shape[1] - 1)
        values.append(expected_calibration_error(p, labels, n_bins, scheme))
    low, high = np.percentile(values, [5, 95])
    return {"mean": float(np.mean(values)), "p05": float(low), "p95": float(high)}
