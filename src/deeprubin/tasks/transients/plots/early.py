"""Early classification: scores against days since the first detection."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ....core.plot_style import OKABE_ITO, figure_style, new_figure

METRIC_COLORS = {"accuracy": OKABE_ITO["blue"], "macro_f1": OKABE_ITO["vermillion"],
                 "transient_macro_f1": OKABE_ITO["bluish_green"]}
METRIC_LABELS = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "transient_macro_f1": "Macro-F1, transients"}


def plot_early_classification(days: Sequence[float], curves: Mapping[str, Sequence[float]],
                              full: Mapping[str, float], n_objects: Sequence[int]) -> Figure:
    """Each metric against days after the first detection; dashed lines: full light curves.

    Parameters
    ----------
    days : (m,) days after the first detection at which the light curves were cut.
    curves : metric name -> (m,) values (e.g. ``accuracy``, ``macro_f1``).
    full : metric name -> value on the full light curves of the same objects.
    n_objects : (m,) objects classified at each epoch (detected by then).
    """
    days = np.asarray(days, dtype=float)
    with figure_style():
        fig = new_figure((7.0, 5.6))
        ax = fig.add_subplot()
        for i, (name, values) in enumerate(curves.items()):
            color = METRIC_COLORS.get(name, list(OKABE_ITO.values())[(i + 2) % len(OKABE_ITO)])
            label = METRIC_LABELS.get(name, name)
            ax.plot(days, values, marker="o", color=color, label=f"{label}, truncated")
            if name in full:
                ax.axhline(full[name], color=color, linestyle="--", linewidth=1.2,
                           label=f"{label}, full light curve ({full[name]:.3f})")
        ax.set_xscale("log")
        ax.set_xticks(days, [f"{d:g}" for d in days])
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Days since first detection")
        ax.set_ylabel("Test-set score")
        n = f"{min(n_objects)}" if min(n_objects) == max(n_objects) else f"{min(n_objects)}-{max(n_objects)}"
        ax.set_title(f"Early classification ({n} test objects)")
        # below the axes: the curves cross the whole range, so no corner inside is free
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small", frameon=False)
    return fig
