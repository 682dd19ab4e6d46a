"""Reliability diagrams: observed frequency against predicted probability, before/after calibration."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .plot_style import NEUTRAL_COLOR, OKABE_ITO, figure_style, new_figure
from .reliability import ece_from_bins, reliability_bins, top_label

#: One colour per calibration state, the same in every reliability figure.
METHOD_COLORS = {"uncalibrated": OKABE_ITO["vermillion"], "temperature": OKABE_ITO["blue"],
                 "isotonic": OKABE_ITO["bluish_green"], "none": OKABE_ITO["black"]}


def _method_color(name: str, i: int) -> str:
    return METHOD_COLORS.get(name, list(OKABE_ITO.values())[(i + 4) % len(OKABE_ITO)])


def plot_reliability(probabilities: Mapping[str, np.ndarray], labels: np.ndarray, n_bins: int = 15,
                     scheme: str = "width") -> Figure:
    """Top-label reliability diagram of several probability sets on the same objects.

    Parameters
    ----------
    probabilities : mapping name -> (n, C) array
        E.g. ``{"uncalibrated": p, "temperature": p_T, "isotonic": p_iso}``.
    labels : numpy.ndarray, shape (n,)
        True class indices.
    n_bins, scheme :
        Binning (see :func:`deeprubin.core.reliability.reliability_bins`).

    The upper panel shows accuracy against mean confidence per bin (the diagonal is
    perfect calibration; the legend gives each set's ECE), the lower panel the number
    of objects per bin.
    """
    with figure_style():
        fig = new_figure((6.0, 6.4))
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.2])
        top.plot([0, 1], [0, 1], color=NEUTRAL_COLOR, linestyle="--", label="perfect calibration")
        for i, (name, p) in enumerate(probabilities.items()):
            bins = reliability_bins(*top_label(p, labels), n_bins=n_bins, scheme=scheme)
            color = _method_color(name, i)
            top.plot(bins["confidence"], bins["accuracy"], marker="o", color=color,
                     label=f"{name} (ECE {ece_from_bins(bins):.3f})")
            bottom.plot(bins["confidence"], bins["count"], marker="o", color=color, drawstyle="default")
        top.set_xlim(0, 1.02)
        top.set_ylim(0, 1.02)
        top.set_ylabel("Accuracy in bin")
        kind = "equal-width" if scheme == "width" else "equal-mass"
        top.set_title(f"Top-label reliability, test set ({n_bins} {kind} bins)")
        top.legend(loc="upper left")
        bottom.set_yscale("log")
        bottom.set_xlabel("Mean predicted probability of the predicted class (confidence)")
        bottom.set_ylabel("Objects")
    return fig


def plot_reliability_per_class(probabilities: Mapping[str, np.ndarray], labels: np.ndarray,
                               classes: Sequence[str], n_bins: int = 10) -> Figure:
    """One-vs-rest reliability of ``p_k`` against ``[label == k]``, one panel per class."""
    classes = [str(c) for c in classes]
    n_cols = min(3, len(classes))
    n_rows = int(np.ceil(len(classes) / n_cols))
    y = np.asarray(labels)
    with figure_style():
        fig = new_figure((3.6 * n_cols, 3.3 * n_rows + 0.6))
        axes = np.atleast_1d(fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False)).ravel()
        for k, (ax, c) in enumerate(zip(axes, classes)):
            ax.plot([0, 1], [0, 1], color=NEUTRAL_COLOR, linestyle="--")
            for i, (name, p) in enumerate(probabilities.items()):
                bins = reliability_bins(np.asarray(p)[:, k], (y == k).astype(float), n_bins=n_bins, scheme="width")
                ax.plot(bins["confidence"], bins["accuracy"], marker="o", markersize=4, color=_method_color(name, i),
                        label=f"{name} ({ece_from_bins(bins):.3f})")
            ax.set_title(f"{c} (n={int((y == k).sum())})")
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.02)
            ax.legend(loc="upper left", title="ECE", fontsize=10)
        for ax in axes[len(classes):]:
            ax.set_visible(False)
        fig.supxlabel("Predicted probability of the class")
        fig.supylabel("Observed fraction of the class")
        fig.suptitle(f"Per-class (one-vs-rest) reliability, test set ({n_bins} equal-width bins)")
    return fig
