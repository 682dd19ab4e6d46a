"""Figures of the transits report (shared style of :mod:`deeprubin.core.plot_style`)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from ...core.plot_style import NEUTRAL_COLOR, OKABE_ITO, figure_style, new_figure

CNN_COLOR = OKABE_ITO["blue"]
BLS_COLOR = OKABE_ITO["vermillion"]


def _roc(ax, labels, scores, color, name, threshold=None):
    fpr, tpr, _ = roc_curve(labels, scores)
    ax.plot(fpr, tpr, color=color, label=name)
    if threshold is not None:
        det = np.asarray(scores) > threshold
        lab = np.asarray(labels).astype(bool)
        ax.plot([det[~lab].mean()], [det[lab].mean()], "o", color=color, ms=7, label=f"{name} operating point")
    ax.plot([0, 1], [0, 1], ls=":", color=NEUTRAL_COLOR, label="chance")
    ax.set_xlabel("False-positive rate")
    ax.set_ylabel("True-positive rate (recall)")


def _pr(ax, labels, scores, color, name):
    precision, recall, _ = precision_recall_curve(labels, scores)
    ax.plot(recall, precision, color=color, label=name)
    prevalence = float(np.mean(labels))
    ax.axhline(prevalence, ls=":", color=NEUTRAL_COLOR, label=f"prevalence {prevalence:.2f}")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_ylim(0, 1.02)


def plot_roc_pr(segments: pd.DataFrame, stars: pd.DataFrame, thresholds: Mapping[str, float]):
    """2 x 2: segment ROC and PR (CNN), star-level ROC and PR (CNN and BLS).

    ``segments``: label, score; ``stars``: label, star_score, bls_sde (test split).
    """
    with figure_style():
        fig = new_figure((10, 8.5))
        axes = fig.subplots(2, 2)
        _roc(axes[0, 0], segments["label"], segments["score"], CNN_COLOR, "CNN", thresholds.get("segment"))
        axes[0, 0].set_title("Test segments: ROC")
        _pr(axes[0, 1], segments["label"], segments["score"], CNN_COLOR, "CNN")
        axes[0, 1].set_title("Test segments: precision-recall")
        _roc(axes[1, 0], stars["label"], stars["star_score"], CNN_COLOR, "CNN (star score)", thresholds.get("star"))
        _roc(axes[1, 0], stars["label"], stars["bls_sde"], BLS_COLOR, "BLS (SDE)", thresholds.get("bls"))
        axes[1, 0].set_title("Test light curves: ROC")
        _pr(axes[1, 1], stars["label"], stars["star_score"], CNN_COLOR, "CNN (star score)")
        precision, recall, _ = precision_recall_curve(stars["label"], stars["bls_sde"])
        axes[1, 1].plot(recall, precision, color=BLS_COLOR, label="BLS (SDE)")
        axes[1, 1].set_title("Test light curves: precision-recall")
        for ax in axes.flat:
            handles, names = ax.get_legend_handles_labels()
            unique = dict(zip(names, handles))
            ax.legend(unique.values(), unique.keys(), loc="lower right" if ax in axes[:, 0] else "lower left")
    return fig


def plot_injection_recovery(curves: Mapping[str, Mapping[str, pd.DataFrame]], snr_threshold: float,
                            target_fpr: float, snr_label: str = "Injected in-segment SNR",
                            ylabel: str = "Recall of transit segments", colors: Sequence[str] | None = None):
    """Recall of positives vs injected SNR, period and depth (one panel each).

    ``curves[series][variable]``: columns lo, hi, n, recall, err (from
    :func:`deeprubin.tasks.transits.metrics.recall_by_bins`); variables ``snr``, ``period``,
    ``depth``; one line per series (e.g. the threshold set on all validation negatives,
    and on those without a binary eclipse; or one method each), at most three, coloured by
    ``colors`` when given.
    """
    labels = {"snr": snr_label, "period": "Orbital period (days)", "depth": "Transit depth (ppm)"}
    styles = [("o-", CNN_COLOR), ("s--", OKABE_ITO["bluish_green"]), ("^:", OKABE_ITO["orange"])]
    if colors is not None:
        styles = [(fmt, c) for (fmt, _), c in zip(styles, colors)]
    variables = list(next(iter(curves.values())))
    with figure_style():
        fig = new_figure((13, 4.4))
        axes = np.atleast_1d(fig.subplots(1, len(variables), sharey=True))
        for ax, name in zip(axes, variables):
            for (series, tables), (fmt, color) in zip(curves.items(), styles):
                t = tables[name][tables[name]["n"] > 0]
                centres = np.sqrt(np.clip(t["lo"], 1e-3, None) * t["hi"]) if name != "snr" else 0.5 * (
                    t["lo"] + np.minimum(t["hi"], 2 * t["lo"].clip(lower=1)))
                ax.errorbar(centres, t["recall"], yerr=t["err"], fmt=fmt, color=color,
                            label=f"{series} ({100 * target_fpr:g}% FPR)")
                if fmt == styles[0][0]:
                    for c, n in zip(centres, t["n"]):
                        ax.annotate(f"n={n}", (c, -0.02), textcoords="offset points", xytext=(0, 4), ha="center",
                                    fontsize=8)
            if name == "snr":
                ax.axvline(snr_threshold, ls="--", color=NEUTRAL_COLOR, label=f"SNR {snr_threshold:g}")
            ax.set_xscale("log")
            ax.set_xlabel(labels[name])
            ax.set_ylim(-0.05, 1.3)
            ax.legend(loc="upper left", fontsize=8)
        axes[0].set_ylabel(ylabel)
    return fig


def plot_comparison(stars: pd.DataFrame, edges, thresholds: Mapping[str, float], snr_threshold: float):
    """Star-level recall vs total planet SNR for the CNN and BLS at equal validation FPR.

    Solid: thresholds set on all validation negatives (``thresholds["star"]``,
    ``["bls"]``); dashed: on the validation negatives that are not eclipsing binaries
    (``["star_no_eb"]``, ``["bls_no_eb"]``, when given).
    """
    from .metrics import recall_by_bins

    pos = stars[stars["label"] == 1]
    with figure_style():
        fig = new_figure((7.5, 4.8))
        ax = fig.subplots()
        for name, col, color, key in (("CNN (star score)", "star_score", CNN_COLOR, "star"),
                                      ("BLS (SDE)", "bls_sde", BLS_COLOR, "bls")):
            for suffix, style, what in (("", "o-", "all negatives"), ("_no_eb", "s--", "non-EB negatives")):
                if key + suffix not in thresholds:
                    continue
                table = recall_by_bins(pos["snr_total"], pos[col] > thresholds[key + suffix], edges)
                t = table[table["n"] > 0]
                centres = 0.5 * (t["lo"] + np.minimum(t["hi"], 2 * t["lo"].clip(lower=1)))
                ax.errorbar(centres, t["recall"], yerr=t["err"], fmt=style, color=color,
                            label=f"{name}, threshold on {what}")
        ax.axvline(snr_threshold, ls=":", color=NEUTRAL_COLOR, label=f"SNR {snr_threshold:g}")
        ax.set_xscale("log")
        ax.set_xlabel("Total planet SNR of the light curve")
        ax.set_ylabel("Recall (test light curves)")
        ax.set_ylim(-0.02, 1.3)
        ax.set_title("CNN vs BLS at equal false-positive rate (set on validation)")
        ax.legend(loc="upper left", fontsize=9)
    return fig


def plot_top_segments(items, title: str):
    """Rows of the top-scoring segments of real stars: ``items`` is a list of dicts with
    ``name``, ``time`` (d), ``flux`` (relative), ``score``, ``rank``, ``in_transit`` (bool array)."""
    with figure_style():
        n = max(len(items), 1)
        fig = new_figure((10, 1.9 * n + 0.8))
        axes = np.atleast_1d(fig.subplots(n, 1))
        for ax, item in zip(axes, items):
            ax.plot(item["time"], item["flux"], ".", ms=2, color=NEUTRAL_COLOR if not item["in_transit"].any()
                    else CNN_COLOR, label="flattened flux")
            if item["in_transit"].any():
                ax.plot(item["time"][item["in_transit"]], item["flux"][item["in_transit"]], ".", ms=3,
                        color=OKABE_ITO["vermillion"], label="predicted transit")
            ax.set_title(f"{item['name']}: rank {item['rank']}, score {item['score']:.3f}", fontsize=10)
            ax.set_ylabel("Rel. flux")
            ax.legend(loc="lower right", fontsize=8)
        axes[-1].set_xlabel(items[0]["time_label"] if items else "Time (days)")
        fig.suptitle(title)
    return fig


VET_COLORS = {"vet": OKABE_ITO["bluish_green"], "bls_sde": BLS_COLOR, "bls_snr": OKABE_ITO["orange"],
              "segment": CNN_COLOR}


def plot_vetting(stars: pd.DataFrame, metrics: Mapping, edges):
    """Test stars: ROC of each method (dot: operating point at the validation 1 % FPR threshold)
    and recall against the planet's total SNR at that threshold.

    ``stars``: label, snr_total and one score column per method of ``metrics["methods"]``;
    ``edges``: the SNR bins (``evaluate.snr_bins``).
    """
    from .metrics import recall_by_bins

    methods = metrics["methods"]
    pos = stars[stars["label"] == 1]
    with figure_style():
        fig = new_figure((12, 5))
        ax_roc, ax_rec = fig.subplots(1, 2)
        for key, entry in methods.items():
            color = VET_COLORS.get(key, NEUTRAL_COLOR)
            auc = entry.get("roc_auc")
            _roc(ax_roc, stars["label"], stars[key], color, f"{entry['name']} (AUC {auc:.3f})", entry["threshold"])
            table = recall_by_bins(pos["snr_total"], pos[key] > entry["threshold"], list(edges))
            t = table[table["n"] > 0]
            centres = np.sqrt(np.maximum(t["lo"], t["hi"] / 3) * t["hi"])
            ax_rec.errorbar(centres, t["recall"], yerr=t["err"], fmt="o-", color=color, label=entry["name"])
        handles, names = ax_roc.get_legend_handles_labels()
        keep = {n: h for h, n in zip(handles, names) if "operating point" not in n}
        ax_roc.legend(list(keep.values()), list(keep), loc="lower right", fontsize=9)
        ax_roc.set_title("Test stars: ROC (dot: 1% validation FPR threshold)")
        ax_rec.axvline(float(metrics["snr_threshold"]), ls=":", color=NEUTRAL_COLOR,
                       label=f"SNR {float(metrics['snr_threshold']):g}")
        ax_rec.set_xscale("log")
        ax_rec.set_xlabel("Total SNR of the simulated planet")
        ax_rec.set_ylabel("Recall (test stars with a planet)")
        ax_rec.set_ylim(-0.02, 1.05)
        ax_rec.set_title(f"Recall at {100 * float(metrics['target_fpr']):g}% false-positive rate")
        ax_rec.legend(loc="lower right", fontsize=9)
    return fig
