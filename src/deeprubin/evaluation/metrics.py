"""Classification metrics with scikit-learn, shaped for ``metrics.json`` and DVC plots."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, \
    precision_recall_fscore_support


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
