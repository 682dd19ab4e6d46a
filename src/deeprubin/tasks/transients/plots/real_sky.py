"""Figure of the real_sky stage: real labels against the simulation-trained model's classes."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from ....core.plot_style import MATRIX_CMAP, class_colors, figure_style, new_figure


def _skipped_panel(ax, title: str, reason: str) -> None:
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, f"No real data: skipped\n{reason}", ha="center", va="center", wrap=True,
            transform=ax.transAxes, fontsize=11)


def plot_real_sky(datasets: Mapping[str, dict], classes: list[str]) -> Figure:
    """Per dataset: row-normalised confusion (real label x predicted class) and predicted fractions.

    Parameters
    ----------
    datasets : mapping
        Dataset name -> its ``real_sky.json`` entry: either ``{"skipped": True, "reason": ...}``
        or a :func:`deeprubin.tasks.transients.evaluation.real_sky.score_real_sample` result (``confusion``,
        ``predicted_fractions``, ``unmapped_labels``, ``n_objects``).
    classes : list of str
        The model's classes (columns and bar order).

    A figure is produced even when every dataset was skipped (each panel says why), so the
    stage's figure output always exists.
    """
    names = list(datasets) or ["(no dataset configured)"]
    colors = class_colors(classes)
    n = len(names)
    with figure_style():
        fig = new_figure((12.0, 3.2 + 1.6 * n + 0.25 * n * max(len(classes), 4)))
        axes = fig.subplots(n, 2, squeeze=False, gridspec_kw={"width_ratios": [1.25, 1.0]})
        for (ax_cm, ax_bar), name in zip(axes, names):
            entry = datasets.get(name, {"skipped": True, "reason": "no dataset configured"})
            if entry.get("skipped"):
                _skipped_panel(ax_cm, name, str(entry.get("reason", "")))
                ax_bar.set_axis_off()
                continue
            conf = entry["confusion"]
            counts = np.asarray(conf["counts"], dtype=float)
            totals = counts.sum(axis=1, keepdims=True)
            frac = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
            image = ax_cm.imshow(frac, cmap=MATRIX_CMAP, vmin=0.0, vmax=1.0, aspect="auto",
                                 interpolation="nearest")
            cmap = image.get_cmap()
            for i in range(frac.shape[0]):
                for j in range(frac.shape[1]):
                    r, g, b, _ = cmap(image.norm(frac[i, j]))
                    dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
                    ax_cm.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=10,
                               color="white" if dark else "black")
            unmapped = set(entry.get("unmapped_labels", []))
            ax_cm.set_xticks(np.arange(len(conf["columns"])))
            ax_cm.set_xticklabels(conf["columns"], rotation=35, ha="right")
            ax_cm.set_yticks(np.arange(len(conf["rows"])))
            ax_cm.set_yticklabels([f"{r}{' (unmapped)' if r in unmapped else ''} (N={int(t)})"
                                   for r, t in zip(conf["rows"], totals[:, 0])])
            ax_cm.set_xlabel("Predicted class (simulation-trained model)")
            ax_cm.set_ylabel("Real label")
            ax_cm.set_title(f"{name}: counts, colour = row fraction")
            ax_cm.grid(False)
            fig.colorbar(image, ax=ax_cm, shrink=0.85).set_label("Fraction of real label")

            fractions = [float(entry["predicted_fractions"].get(c, 0.0)) for c in classes]
            y = np.arange(len(classes))
            ax_bar.barh(y, fractions, color=[colors[c] for c in classes])
            for yi, f in zip(y, fractions):
                ax_bar.text(min(f + 0.01, 0.9), yi, f"{f:.1%}", va="center", fontsize=10)
            ax_bar.set_yticks(y)
            ax_bar.set_yticklabels(classes)
            ax_bar.invert_yaxis()
            ax_bar.set_xlim(0.0, 1.0)
            ax_bar.set_xlabel("Fraction of objects predicted as class")
            ax_bar.set_title(f"{name}: predicted classes (N={entry['n_objects']})")
    return fig


__all__ = ["plot_real_sky"]
