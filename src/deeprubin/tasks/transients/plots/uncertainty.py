"""Monte Carlo dropout uncertainty: does it separate right from wrong predictions?"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

from ....core.plot_style import OKABE_ITO, figure_style, new_figure

CORRECT_COLOR, WRONG_COLOR = OKABE_ITO["blue"], OKABE_ITO["vermillion"]


def plot_uncertainty(uncertainties: Mapping[str, np.ndarray], correct: np.ndarray, aurocs: Mapping[str, float],
                     fractions: np.ndarray, curves: Mapping[str, np.ndarray]) -> Figure:
    """Histograms of each uncertainty for correct vs wrong predictions, and accuracy vs rejected fraction.

    Parameters
    ----------
    uncertainties : mapping name -> (n,) array
        E.g. predictive entropy and mutual information [nats].
    correct : (n,) bool
        Whether the MC-averaged prediction is right.
    aurocs : mapping name -> float
        Misclassification ROC-AUC of each uncertainty (shown in the panel titles).
    fractions : (m,) array
        Rejected fractions of the accuracy-rejection curves.
    curves : mapping name -> (m,) array
        Accuracy on the kept objects for each rejection order (incl. e.g. "random").
    """
    correct = np.asarray(correct, dtype=bool)
    names = list(uncertainties)
    with figure_style():
        fig = new_figure((4.2 * (len(names) + 1), 4.2))
        axes = fig.subplots(1, len(names) + 1)
        for ax, name in zip(axes, names):
            u = np.asarray(uncertainties[name], dtype=float)
            edges = np.linspace(0.0, max(float(u.max()), 1e-6), 26)
            ax.hist(u[correct], bins=edges, density=True, histtype="stepfilled", alpha=0.45, color=CORRECT_COLOR,
                    label=f"correct (n={int(correct.sum())})")
            ax.hist(u[~correct], bins=edges, density=True, histtype="step", linewidth=2, color=WRONG_COLOR,
                    label=f"wrong (n={int((~correct).sum())})")
            ax.set_xlabel(f"{name} [nats]")
            ax.set_ylabel("Density")
            ax.set_title(f"{name[:1].upper() + name[1:]} (error AUROC {aurocs[name]:.3f})")
            ax.legend(loc="upper right")
        ax = axes[-1]
        for i, (name, acc) in enumerate(curves.items()):
            ax.plot(100 * np.asarray(fractions), acc, marker="o", markersize=3,
                    color=list(OKABE_ITO.values())[(i + 5) % len(OKABE_ITO)] if name not in uncertainties else None,
                    linestyle="--" if name == "random" else "-",
                    label="random rejection (expected)" if name == "random" else f"reject by {name}")
        ax.set_xlabel("Rejected objects, most uncertain first [%]")
        ax.set_ylabel("Accuracy on kept objects")
        ax.set_title("Accuracy-rejection curve, test set")
        ax.legend(loc="upper left")
        fig.suptitle("Monte Carlo dropout uncertainty on the test set")
    return fig
