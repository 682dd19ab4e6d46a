"""Deep model against the feature baseline on the same test split: one table."""
from __future__ import annotations

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


def plot_comparison(table: pd.DataFrame):
    """Grouped bars of per-class F1 and macro-F1, one colour per model in ``table``."""
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
            ax.bar(x + (i - (len(table) - 1) / 2) * width, row[f1_cols].astype(float), width, label=row["model"])
        ax.set_xticks(x, labels)
        ax.set_ylim(0, 1)
        ax.set_xlabel("Class")
        ax.set_ylabel("Test-set F1 score")
        ax.set_title("Deep model vs feature baseline (same test split)")
        ax.legend(loc="lower right")
    return fig
