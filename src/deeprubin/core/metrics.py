"""Classification metrics with scikit-learn, shaped for ``metrics.json`` and DVC plots."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support.

    Classes absent from both ``y_true`` and ``y_pred`` score 0 (``zero_division=0``)
    rather than raising, and their support of 0 says why.
    """
    classes = list(classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "n_test": int(len(y_true)),
        "per_class": {
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
    }


def confusion_table(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> pd.DataFrame:
    """Counts as a (C, C) frame: rows true class, columns predicted class."""
    counts = confusion_matrix(y_true, y_pred, labels=list(classes))
    return pd.DataFrame(counts, index=pd.Index(classes, name="true"), columns=pd.Index(classes, name="predicted"))


def row_normalised(confusion: pd.DataFrame) -> pd.DataFrame:
    """Each row divided by its total (rows with no objects stay 0)."""
    totals = confusion.sum(axis=1).to_numpy()[:, None]
    return pd.DataFrame(np.divide(confusion.to_numpy(), totals, out=np.zeros(confusion.shape), where=totals > 0),
                        index=confusion.index, columns=confusion.columns)


def text_report(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> str:
    """scikit-learn's classification report (plain text, 3 decimals)."""
    return classification_report(y_true, y_pred, labels=list(classes), digits=3, zero_division=0)


# ----------------------------------------------------------------------------- probabilistic scores
def plasticc_log_loss(labels: np.ndarray, probabilities: np.ndarray,
                      class_weights: Sequence[float] | None = None) -> float:
    """The PLAsTiCC weighted log-loss (Malz et al. 2019; the Kaggle PLAsTiCC metric).

    ``L = - sum_i w_i (1/N_i) sum_{j in class i} ln p_ij / sum_i w_i`` over the classes
    ``i`` present in ``labels``: every class counts by its weight ``w_i`` whatever its
    number of objects ``N_i``. scikit-learn's log-loss with per-object weights
    ``w_i / N_i`` is exactly this. Probabilities are clipped and renormalised by
    scikit-learn (as the Kaggle scorer clipped at 1e-15).

    Parameters
    ----------
    labels : numpy.ndarray, shape (n,)
        Class indices.
    probabilities : numpy.ndarray, shape (n, C)
    class_weights : sequence of float, optional
        One weight per class (default: all equal, the flat-weight version of the metric).
    """
    from sklearn.metrics import log_loss

    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype=float)
    n_classes = p.shape[1]
    w = np.ones(n_classes) if class_weights is None else np.asarray(class_weights, dtype=float)
    if w.shape != (n_classes,) or (w < 0).any() or not w.any():
        raise ValueError(f"plasticc_log_loss: need {n_classes} non-negative class weights, not all 0; got {w.tolist()}")
    counts = np.bincount(y, minlength=n_classes)
    return float(log_loss(y, p, labels=np.arange(n_classes), sample_weight=w[y] / counts[y]))


def subset_macro_f1(labels: np.ndarray, predicted: np.ndarray, subset: Sequence[int]) -> float:
    """Macro-F1 over the classes in ``subset`` only (class indices), each class's F1 computed against
    every object and every prediction (a transient called a variable star counts as a miss).
    A class with neither objects nor predictions scores 0."""
    return float(f1_score(np.asarray(labels), np.asarray(predicted), labels=list(subset), average="macro",
                          zero_division=0))


def headline_metrics(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str],
                     class_weights: Sequence[float] | None = None) -> dict[str, float]:
    """The scalar scores reported with confidence intervals.

    ``accuracy``, ``macro_f1``, ``weighted_f1``, ``mcc`` (Matthews correlation),
    ``roc_auc_macro`` (one-vs-rest ROC-AUC averaged over the classes present with both
    positives and negatives; NaN if none) and ``plasticc_log_loss``.
    """
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype=float)
    pred = p.argmax(axis=1)
    idx = np.arange(len(classes))
    aucs = [roc_auc_score(y == k, p[:, k]) for k in idx if 0 < (y == k).sum() < len(y)]
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=idx, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=idx, average="weighted", zero_division=0)),
        "mcc": float(matthews_corrcoef(y, pred)),
        "roc_auc_macro": float(np.mean(aucs)) if aucs else float("nan"),
        "plasticc_log_loss": plasticc_log_loss(y, p, class_weights),
    }


def one_vs_rest_curves(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[str]) -> dict:
    """Per class: ROC curve (fpr, tpr, auc) and precision-recall curve (precision, recall, AP).

    Classes without positives or without negatives in ``labels`` are left out (their
    curves are undefined).
    """
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype=float)
    curves = {}
    for k, c in enumerate(classes):
        positive = y == k
        if not 0 < positive.sum() < len(y):
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, k])
        precision, recall, _ = precision_recall_curve(positive, p[:, k])
        curves[str(c)] = {"fpr": fpr, "tpr": tpr, "auc": float(auc(fpr, tpr)), "precision": precision,
                          "recall": recall, "ap": float(average_precision_score(positive, p[:, k])),
                          "prevalence": float(positive.mean())}
    return curves


def class_weight_vector(weights: dict | None, classes: Sequence[str]) -> np.ndarray | None:
    """Config ``{class: weight}`` (missing classes weigh 1) -> vector in class order; None stays None."""
    if weights is None:
        return None
    unknown = sorted(set(map(str, weights)) - set(map(str, classes)))
    if unknown:
        raise ValueError(f"evaluate.plasticc_weights: unknown class(es) {unknown}; classes are {list(classes)}")
    return np.array([float(weights.get(c, 1.0)) for c in classes])


def bootstrap_intervals(labels: np.ndarray, probabilities: np.ndarray, groups: Sequence[str],
                        score, n_boot: int, seed: int, confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Percentile bootstrap confidence intervals, resampling whole groups with replacement.

    Objects of one group (an object and its duplicates / siblings, ``group_id``) are
    not independent, so the unit of resampling is the group, as in the split.

    Parameters
    ----------
    labels, probabilities : arrays of shape (n,), (n, C)
    groups : sequence of str, shape (n,)
        Group of each object.
    score : callable
        ``score(labels, probabilities) -> {name: float}``, e.g. :func:`headline_metrics`.
    n_boot : int
        Number of bootstrap replicates.
    seed : int
    confidence : float
        Central interval mass (0.95: the 2.5 and 97.5 percentiles).

    Returns
    -------
    dict
        ``{name: {"value", "low", "high", "std"}}``; ``value`` is the score on the full set.
        Replicates where a score is NaN (e.g. a class missing) are ignored for it.
    """
    if n_boot < 1 or not 0 < confidence < 1:
        raise ValueError(f"bootstrap: need n_boot >= 1 and 0 < confidence < 1, got {n_boot}, {confidence}")
    y = np.asarray(labels)
    p = np.asarray(probabilities)
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups).astype(str)))
    members = [np.flatnonzero(codes == g) for g in range(len(uniques))]
    rng = np.random.default_rng(seed)
    full = score(y, p)  # with scikit-learn's checks of the inputs, once
    samples: dict[str, list[float]] = {k: [] for k in full}
    # The replicates are rows of the checked inputs: scikit-learn's per-call parameter and
    # finiteness validation (most of the time of a thousand small scores) is skipped; the
    # scores are computed by the same code, so the values do not change.
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        for _ in range(n_boot):
            rows = np.concatenate([members[g] for g in rng.integers(len(members), size=len(members))])
            for k, v in score(y[rows], p[rows]).items():
                samples[k].append(v)
    alpha = (1 - confidence) / 2
    out = {}
    for k, values in samples.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        low, high = (np.quantile(v, [alpha, 1 - alpha]) if len(v) else (np.nan, np.nan))
        out[k] = {"value": float(full[k]), "low": float(low), "high": float(high),
                  "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan")}
    return out
