"""Regression and uncertainty metrics of the stellar parameters, with grouped bootstrap intervals.

Every metric is computed on finite truths and predictions only; the count used is returned
beside it (``n``). Intervals resample **stars**, not spectra (a star's spectra are not
independent draws), with the project's group bootstrap
(:func:`deeprubin.core.metrics.bootstrap_intervals`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score

from ...core.metrics import bootstrap_intervals

#: Two-sided probability mass within 1 and 2 standard deviations of a Gaussian.
GAUSS_1SIGMA = 0.6826894921370859
GAUSS_2SIGMA = 0.9544997361036416


def regression_metrics(truth: np.ndarray, pred: np.ndarray, sigma: np.ndarray | None = None) -> dict:
    """MAE, RMSE, bias (mean of pred - truth), R^2, median absolute error and, with ``sigma``
    (the predicted 1-sigma), the fraction of truths within 1 and 2 sigma and the median sigma.

    Raises
    ------
    ValueError
        Arrays of different shapes, or no finite pair.
    """
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    if truth.shape != pred.shape or (sigma is not None and np.shape(sigma) != truth.shape):
        raise ValueError(f"regression_metrics: truth {truth.shape}, prediction {pred.shape} and sigma "
                         f"{None if sigma is None else np.shape(sigma)} must have one shape")
    ok = np.isfinite(truth) & np.isfinite(pred)
    if sigma is not None:
        sigma = np.asarray(sigma, float)
        ok &= np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        raise ValueError("regression_metrics: no finite (truth, prediction) pair")
    t, p = truth[ok], pred[ok]
    residual = p - t
    spread = float(np.sum((t - t.mean()) ** 2))
    out = {"n": int(ok.sum()), "mae": float(np.mean(np.abs(residual))),
           "rmse": float(np.sqrt(np.mean(residual ** 2))), "bias": float(np.mean(residual)),
           "median_abs": float(np.median(np.abs(residual))),
           "r2": float(1.0 - np.sum(residual ** 2) / spread) if spread > 0 else float("nan")}
    if sigma is not None:
        z = np.abs(residual) / sigma[ok]
        out.update(coverage_1sigma=float(np.mean(z <= 1.0)), coverage_2sigma=float(np.mean(z <= 2.0)),
                   median_sigma=float(np.median(sigma[ok])))
    return out


def sigma_scale(truth: np.ndarray, pred: np.ndarray, sigma: np.ndarray) -> float:
    """The factor ``s`` by which ``sigma`` must be multiplied for 68.27 % of ``|pred - truth| / (s
    sigma)`` to be at most 1: the median-free quantile of the normalised residuals (fitted on the
    validation split, applied to test; 1 for already calibrated sigmas)."""
    truth, pred, sigma = (np.asarray(a, float) for a in (truth, pred, sigma))
    ok = np.isfinite(truth) & np.isfinite(pred) & np.isfinite(sigma) & (sigma > 0)
    if not ok.any():
        raise ValueError("sigma_scale: no finite (truth, prediction, sigma) triple")
    return float(np.quantile(np.abs(pred[ok] - truth[ok]) / sigma[ok], GAUSS_1SIGMA))


def bootstrap_mae(truth: np.ndarray, pred: np.ndarray, groups: Sequence[str], n_boot: int, seed: int,
                  level: float = 0.95) -> dict:
    """The MAE of the finite pairs and its percentile interval over ``n_boot`` resamples of the groups
    (stars), by the project's group bootstrap (:func:`deeprubin.core.metrics.bootstrap_intervals`)."""
    truth, pred = np.asarray(truth, float), np.asarray(pred, float)
    ok = np.isfinite(truth) & np.isfinite(pred)
    interval = bootstrap_intervals(truth[ok], pred[ok], np.asarray(groups).astype(str)[ok],
                                   lambda t, p: {"mae": float(np.mean(np.abs(p - t)))}, int(n_boot), seed, level)["mae"]
    return {"mae": interval["value"], "low": interval["low"], "high": interval["high"], "level": level,
            "n_boot": int(n_boot)}


def bootstrap_macro_f1(labels: np.ndarray, predicted: np.ndarray, groups: Sequence[str], n_classes: int,
                       n_boot: int, seed: int, level: float = 0.95) -> dict:
    """Macro-F1 over ``n_classes`` and its percentile interval over resamples of the groups (stars),
    by :func:`deeprubin.core.metrics.bootstrap_intervals`."""
    classes = list(range(n_classes))

    def score(y, p):
        return {"macro_f1": float(f1_score(y, p, labels=classes, average="macro", zero_division=0))}

    interval = bootstrap_intervals(np.asarray(labels, int), np.asarray(predicted, int), groups, score,
                                   int(n_boot), seed, level)["macro_f1"]
    return {"macro_f1": interval["value"], "low": interval["low"], "high": interval["high"], "level": level,
            "n_boot": int(n_boot)}


def parameter_block(truth: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray],
                    sigma: Mapping[str, np.ndarray] | None, groups: Sequence[str], names: Sequence[str],
                    n_boot: int, seed: int) -> dict:
    """``{name: regression_metrics + mae interval}`` for each parameter ``name``."""
    out = {}
    for k, name in enumerate(names):
        block = regression_metrics(truth[name], pred[name], None if sigma is None else sigma[name])
        interval = bootstrap_mae(truth[name], pred[name], groups, n_boot, seed + k)
        block["mae_interval"] = [interval["low"], interval["high"]]
        out[name] = block
    return out


def score_block(truth: Mapping[str, np.ndarray], mean: Mapping[str, np.ndarray], sigma: Mapping[str, np.ndarray],
                labels: np.ndarray | None, proba: np.ndarray | None, groups: Sequence[str], n_classes: int,
                n_boot: int, seed: int, targets: Sequence[str]) -> dict:
    """Per-parameter metrics (with MAE intervals over groups) and, with ``proba``, accuracy and
    macro-F1 with its interval."""
    block = {"n": int(len(groups)), "parameters": parameter_block(truth, mean, sigma, groups, targets, n_boot, seed)}
    if proba is not None:
        predicted = proba.argmax(1)
        f1 = bootstrap_macro_f1(labels, predicted, groups, n_classes, n_boot, seed)
        block.update(accuracy=float(np.mean(predicted == labels)), macro_f1=f1["macro_f1"],
                     macro_f1_interval=[f1["low"], f1["high"]])
    return block
