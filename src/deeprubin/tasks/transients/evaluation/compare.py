"""Deep model against the feature baseline on the same test split: a table, paired intervals, a figure."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

BASELINE_NAME = "baseline (features + balanced RF)"


def comparison_table(deep_metrics: dict, baseline_metrics: dict, deep_name: str,
                     baseline_name: str = BASELINE_NAME) -> pd.DataFrame:
    """One row per model: ``model``, ``accuracy``, ``macro_f1``, ``n_test``, ``f1_<class>``.

    Both inputs have the structure of ``metrics.json``
    (:func:`deeprubin.core.metrics.classification_metrics`). Class columns follow
    the deep model's class order, then any class only the baseline has; a class a
    model does not report is NaN. Raises ``ValueError`` when the two were scored on
    different numbers of test objects (then they are not the same test split).
    """
    n_deep, n_base = deep_metrics.get("n_test"), baseline_metrics.get("n_test")
    if n_deep is not None and n_base is not None and int(n_deep) != int(n_base):
        raise ValueError(f"comparison_table: the deep model was scored on {n_deep} test objects and the "
                         f"baseline on {n_base}; they must share the test split")
    classes = list(deep_metrics.get("per_class", {}))
    classes += [c for c in baseline_metrics.get("per_class", {}) if c not in classes]
    rows = []
    for name, metrics in ((deep_name, deep_metrics), (baseline_name, baseline_metrics)):
        row = {"model": name, "accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"]),
               "n_test": metrics.get("n_test")}
        per_class = metrics.get("per_class", {})
        for c in classes:
            row[f"f1_{c}"] = float(per_class[c]["f1"]) if c in per_class else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows, columns=["model", "accuracy", "macro_f1", "n_test"] + [f"f1_{c}" for c in classes])
    table["n_test"] = table["n_test"].astype("Int64")
    return table


def _f1_scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class F1 (0 where a class has neither objects nor predictions, as scikit-learn's
    ``zero_division=0``) then accuracy, from one confusion matrix."""
    confusion = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(float)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    return np.append(f1, tp.sum() / max(len(y), 1))


def paired_bootstrap(labels: np.ndarray, predicted: Mapping[str, np.ndarray], groups: Sequence[str],
                     classes: Sequence[str], n_boot: int, seed: int, confidence: float = 0.95) -> pd.DataFrame:
    """Macro-F1, accuracy and per-class F1 of each model, and of the first model minus the second,
    with percentile intervals from one group bootstrap shared by the models (paired: every
    replicate draws the same groups for both, so the difference's interval is not the two
    intervals' overlap).

    ``labels`` and each ``predicted[name]`` are class indices of the same objects, in the same
    order; ``groups`` their ``group_id`` (the resampling unit, as in the split). Returns a long
    table: ``model``, ``score`` (``macro_f1``, ``accuracy``, ``f1_<class>``), ``value`` (full set),
    ``low``, ``high``.
    """
    names = list(predicted)
    if len(names) != 2:
        raise ValueError(f"paired_bootstrap: needs two models, got {names}")
    y = np.asarray(labels, dtype=np.int64)
    preds = [np.asarray(predicted[n], dtype=np.int64) for n in names]
    if any(p.shape != y.shape for p in preds) or len(groups) != len(y):
        raise ValueError("paired_bootstrap: labels, predictions and groups must have one entry per object")
    k = len(classes)
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups).astype(str)))
    members = [np.flatnonzero(codes == g) for g in range(len(uniques))]
    rng = np.random.default_rng(seed)

    def scores(rows):
        per_model = [_f1_scores(y[rows], p[rows], k) for p in preds]
        per_model = [np.append(s, s[:k].mean()) for s in per_model]    # + macro-F1
        return np.stack([*per_model, per_model[0] - per_model[1]])

    full = scores(np.arange(len(y)))
    reps = np.stack([scores(np.concatenate([members[g] for g in rng.integers(len(members), size=len(members))]))
                     for _ in range(n_boot)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(reps, alpha, axis=0), np.quantile(reps, 1 - alpha, axis=0)
    score_names = [f"f1_{c}" for c in classes] + ["accuracy", "macro_f1"]   # the columns of scores()
    shown = ["macro_f1", "accuracy", *score_names[:k]]
    rows = [{"model": model, "score": score, "value": full[m, score_names.index(score)],
             "low": low[m, score_names.index(score)], "high": high[m, score_names.index(score)]}
            for m, model in enumerate([*names, f"{names[0]} minus {names[1]}"]) for score in shown]
    return pd.DataFrame(rows)


def plot_comparison(table: pd.DataFrame, intervals: pd.DataFrame | None = None):
    """Grouped bars of per-class F1 and macro-F1, one colour per model in ``table``; error bars from
    ``intervals`` (:func:`paired_bootstrap`) where it has the model's scores."""
    import numpy as np

    from ....core.plot_style import figure_style, new_figure

    f1_cols = [c for c in table.columns if c.startswith("f1_")] + ["macro_f1"]
    labels = [c.removeprefix("f1_") for c in f1_cols[:-1]] + ["macro-F1"]
    with figure_style():
        fig = new_figure((max(6.0, 1.1 * len(f1_cols) + 2), 4))
        ax = fig.add_subplot()
        width = 0.8 / len(table)
        x = np.arange(len(f1_cols))
        for i, (_, row) in enumerate(table.iterrows()):
            values = row[f1_cols].astype(float).to_numpy()
            yerr = None
            if intervals is not None and (intervals["model"] == row["model"]).any():
                ci = intervals[intervals["model"] == row["model"]].set_index("score").reindex(f1_cols)
                yerr = np.vstack([values - ci["low"].to_numpy(), ci["high"].to_numpy() - values]).clip(min=0)
            ax.bar(x + (i - (len(table) - 1) / 2) * width, values, width, label=row["model"], yerr=yerr,
                   capsize=2, error_kw={"elinewidth": 0.8})
        ax.set_xticks(x, labels)
        ax.set_ylim(0, 1.18)                      # room for the legend above the bars
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_xlabel("Class")
        ax.set_ylabel("Test-set F1 score")
        ax.set_title("Deep model vs feature baseline (same test split"
                     + (", 95% group-bootstrap intervals)" if intervals is not None else ")"))
        ax.legend(loc="upper center", ncol=len(table), frameon=False)
    return fig
