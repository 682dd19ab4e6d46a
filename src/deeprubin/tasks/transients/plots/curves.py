"""One-vs-rest ROC and precision-recall curves, one colour per class."""
from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure

from ....core.plot_style import NEUTRAL_COLOR, class_colors, figure_style, new_figure


def plot_roc_pr(curves: Mapping[str, dict], classes: Sequence[str]) -> Figure:
    """ROC (left) and precision-recall (right) curves from
    :func:`deeprubin.core.metrics.one_vs_rest_curves`; legends give AUC and AP."""
    colors = class_colors(classes)
    with figure_style():
        fig = new_figure((11.0, 4.8))
        roc, pr = fig.subplots(1, 2)
        roc.plot([0, 1], [0, 1], color=NEUTRAL_COLOR, linestyle="--", label="chance")
        for c, cv in curves.items():
            roc.plot(cv["fpr"], cv["tpr"], color=colors[c], label=f"{c} (AUC {cv['auc']:.3f})")
            pr.plot(cv["recall"], cv["precision"], color=colors[c], drawstyle="steps-post",
                    label=f"{c} (AP {cv['ap']:.3f})")
        roc.set_xlabel("False positive rate")
        roc.set_ylabel("True positive rate")
        roc.set_title("One-vs-rest ROC, test set")
        roc.legend(loc="lower right")
        pr.set_xlabel("Recall")
        pr.set_ylabel("Precision")
        pr.set_title("One-vs-rest precision-recall, test set")
        pr.set_xlim(0, 1.02)
        pr.set_ylim(0, 1.02)
        pr.legend(loc="lower left")
    return fig
