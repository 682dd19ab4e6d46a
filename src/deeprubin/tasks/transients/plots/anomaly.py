"""Anomaly layer figures: ROC curves per held-out class, light curves of the top candidates."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc as area_under, roc_curve

from ....core.plot_style import band_color, band_marker, class_colors, figure_style, new_figure

SCORER_TITLES = {"iforest": "Isolation forest (features)", "knn": "k-NN (classifier representation)",
                 "msp": "1 - max probability", "combined": "Combined"}


def plot_novelty_roc(scores: pd.DataFrame, is_novel: np.ndarray, scorers: Sequence[str]) -> Figure:
    """One panel per scorer: the ROC curve of each novel class against the known test objects."""
    labels = scores["label"].to_numpy(dtype=str)
    novel_classes = sorted(set(labels[is_novel]))
    colors = class_colors(novel_classes)
    with figure_style():
        n = len(scorers)
        cols = min(n, 2)
        rows = int(np.ceil(n / cols))
        fig = new_figure((5.2 * cols, 4.6 * rows))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, s in zip(axes, scorers):
            v = scores[s].to_numpy()
            for c in novel_classes:
                sel = ~is_novel | (labels == c)
                fpr, tpr, _ = roc_curve((labels[sel] == c).astype(int), v[sel])
                auc = area_under(fpr, tpr)
                ax.plot(fpr, tpr, color=colors[c], label=f"{c} (AUROC {auc:.3f}, n={int((labels == c).sum())})")
            ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
            ax.set_xlabel("Known test objects flagged (false-positive rate)")
            ax.set_ylabel("Novel objects flagged (true-positive rate)")
            ax.set_title(SCORER_TITLES.get(s, s))
            ax.legend(loc="lower right", fontsize="small")
        for ax in axes[n:]:
            ax.set_visible(False)
        fig.suptitle(f"Anomaly scores on classes never seen in training ({int((~is_novel).sum())} known test objects)")
    return fig


def plot_candidate_curves(candidates: pd.DataFrame, sources: Mapping[str, pd.DataFrame]) -> Figure:
    """Flux against time of each candidate, per band, with its rank, sample and score."""
    n = max(len(candidates), 1)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    with figure_style():
        fig = new_figure((4.2 * cols, 3.4 * rows))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (_, c) in zip(axes, candidates.iterrows()):
            lc = sources.get(str(c["sample"]))
            rows_ = lc[lc["object_id"].astype(str) == str(c["object_id"])] if lc is not None else pd.DataFrame()
            bands = sorted(rows_["band"].astype(str).unique()) if len(rows_) else []
            for b in bands:
                r = rows_[rows_["band"].astype(str) == b]
                ax.errorbar(r["time"] - rows_["time"].min(), r["flux"], yerr=r["flux_err"], fmt=band_marker(b, bands),
                            color=band_color(b, bands), markersize=3, linewidth=0.8, label=b)
            label = "" if pd.isna(c.get("label")) else f", true {c['label']}"
            ax.set_title(f"#{int(c['rank'])} {c['object_id']}\n{c['sample']}{label}; score {c['score']:.3f}",
                         fontsize="small")
            ax.set_xlabel("Days since first observation")
            ax.set_ylabel("Flux (µJy)")
            if bands:
                ax.legend(fontsize="x-small", loc="best")
        for ax in axes[len(candidates):]:
            ax.set_visible(False)
    return fig
