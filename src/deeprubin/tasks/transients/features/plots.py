"""Figure of the baseline report: the most important features of the forest."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ....core.plot_style import HIGHLIGHT_COLOR, figure_style, new_figure


def plot_feature_importances(importances: pd.DataFrame, top: int = 20,
                             title: str = "Balanced random forest: feature importance") -> Figure:
    """Horizontal bars of the ``top`` most important features, most important at the top.

    ``importances`` has columns ``feature``, ``importance`` and optionally
    ``importance_std`` (drawn as error bars: the spread over trees), as written by
    :func:`deeprubin.tasks.transients.features.baseline.importance_table`.
    """
    table = importances.sort_values("importance", ascending=False, kind="mergesort").head(top)
    n = len(table)
    y = np.arange(n)[::-1]
    with figure_style():
        fig = new_figure((7.5, max(3.0, 0.32 * n + 1.2)))
        ax = fig.add_subplot()
        err = table["importance_std"].to_numpy() if "importance_std" in table else None
        ax.barh(y, table["importance"].to_numpy(), xerr=err, color=HIGHLIGHT_COLOR,
                error_kw={"elinewidth": 0.8, "ecolor": "#555555"})
        ax.set_yticks(y)
        ax.set_yticklabels(table["feature"].astype(str).tolist())
        ax.set_xlabel("Mean decrease in Gini impurity (error bar: std over trees)")
        ax.set_ylabel("Feature")
        ax.set_xlim(left=0)
        ax.grid(axis="y", visible=False)
        ax.set_title(f"{title} (top {n})")
    return fig
