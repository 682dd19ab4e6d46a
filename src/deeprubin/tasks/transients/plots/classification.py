"""Classifier figures: confusion matrix, example predictions and training curves.

Every function takes plain numpy / pandas inputs, does no file I/O and returns a
:class:`matplotlib.figure.Figure`; save it with :func:`deeprubin.core.io.save_figure`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import confusion_matrix

from ....core.plot_style import (HIGHLIGHT_COLOR, MATRIX_CMAP, NEUTRAL_COLOR, TRAIN_COLOR, VAL_COLOR, band_color,
                                 band_marker, figure_style, new_figure)

TIME_LABEL = "Time relative to peak [days]"
FLUX_LABEL = "Flux [µJy]"


def plot_confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str],
                          normalize: bool) -> Figure:
    """Annotated confusion matrix (rows: true class, columns: predicted class).

    ``normalize=True`` divides each row by its number of objects (rows without
    objects show 0); otherwise cells hold object counts. Row totals are shown in
    the y tick labels either way.
    """
    class_names = [str(c) for c in classes]
    y_true = np.asarray(y_true).astype(str)
    y_pred = np.asarray(y_pred).astype(str)
    cm = confusion_matrix(y_true, y_pred, labels=class_names)
    row_totals = cm.sum(axis=1)
    if normalize:
        values = np.divide(cm, row_totals[:, None], out=np.zeros(cm.shape, dtype=float),
                           where=row_totals[:, None] > 0)
        vmax = 1.0
        fmt = "{:.2f}"
        cbar_label = "Fraction of true class"
        title = "Confusion matrix (row-normalised)"
    else:
        values = cm.astype(float)
        vmax = max(float(cm.max()) if cm.size else 0.0, 1.0)
        fmt = "{:d}"
        cbar_label = "Objects"
        title = "Confusion matrix (counts)"

    n = len(class_names)
    side = max(4.5, 0.75 * n + 2.5)
    with figure_style():
        fig = new_figure((side + 1.3, side))
        ax = fig.add_subplot()
        image = ax.imshow(values, cmap=MATRIX_CMAP, vmin=0.0, vmax=vmax, aspect="equal",
                          interpolation="nearest")
        cmap = image.get_cmap()
        for i in range(n):
            for j in range(n):
                value = values[i, j]
                text = fmt.format(int(cm[i, j])) if not normalize else fmt.format(value)
                # Light text on dark cells: decide from the cell's actual luminance.
                r, g, b, _ = cmap(image.norm(value))
                dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=10,
                        color="white" if dark else "black")
        ax.set_xticks(np.arange(n))
        ax.set_yticks(np.arange(n))
        rotate = n > 4 or max((len(c) for c in class_names), default=0) > 6
        ax.set_xticklabels(class_names, rotation=35 if rotate else 0,
                           ha="right" if rotate else "center")
        ax.set_yticklabels([f"{c} (N={int(t)})" for c, t in zip(class_names, row_totals)])
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
        ax.set_title(title)
        ax.grid(False)
        # Thin white separators between cells.
        ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
        ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5, alpha=1.0)
        ax.tick_params(which="minor", length=0)
        ax.tick_params(which="major", length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        cbar = fig.colorbar(image, ax=ax, shrink=0.85)
        cbar.set_label(cbar_label)
    return fig


def plot_sample_predictions(observations: pd.DataFrame, grid_time: np.ndarray, mean: np.ndarray,
                            std: np.ndarray, flux_scale: np.ndarray, t_ref: np.ndarray,
                            bands: Sequence[str], object_ids: Sequence[str],
                            true_labels: Sequence[str], probabilities: np.ndarray,
                            classes: Sequence[str]) -> Figure:
    """Observed light curve with the GP fit, and predicted class probabilities, per object.

    Parameters
    ----------
    observations : DataFrame
        Canonical ``lightcurves`` table (``object_id``, ``time`` [MJD], ``band``,
        ``flux``, ``flux_err`` [µJy]); may hold other objects too.
    grid_time : (T,) array
        GP grid in days relative to ``t_ref``; only observations inside it are drawn.
    mean, std : (k, B, T) arrays
        GP posterior mean and standard deviation of the normalised flux, for the
        ``k`` objects in ``object_ids`` order; multiplied by ``flux_scale`` (k,)
        to give microjansky.
    t_ref : (k,) array
        Reference time (MJD of the brightest observation) of each object.
    bands : sequence of str
        Band names in the order of axis 1 of ``mean``.
    object_ids, true_labels : sequences of length k
    probabilities : (k, C) array
        Predicted class probabilities, columns in ``classes`` order.
    classes : sequence of str
    """
    grid_time = np.asarray(grid_time, dtype=float)
    mean = np.asarray(mean, dtype=float)
    std = np.asarray(std, dtype=float)
    scale = np.asarray(flux_scale, dtype=float).reshape(-1)
    t_ref = np.asarray(t_ref, dtype=float).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=float)
    object_ids = [str(o) for o in object_ids]
    true_labels = [str(t) for t in true_labels]
    class_names = [str(c) for c in classes]
    band_names = [str(b) for b in bands]
    k = len(object_ids)
    expected = (k, len(band_names), grid_time.shape[0])
    if mean.shape != expected or std.shape != expected:
        raise ValueError(f"mean/std must have shape {expected}, got {mean.shape} and {std.shape}")
    if probabilities.shape != (k, len(class_names)):
        raise ValueError(f"probabilities must have shape {(k, len(class_names))}, got {probabilities.shape}")
    if len(true_labels) != k or scale.shape[0] != k or t_ref.shape[0] != k:
        raise ValueError("object_ids, true_labels, flux_scale and t_ref must all have length k")

    obs = observations.copy()
    obs["object_id"] = obs["object_id"].astype(str)
    obs["band"] = obs["band"].astype(str)
    t_lo, t_hi = (grid_time.min(), grid_time.max()) if grid_time.size else (-np.inf, np.inf)
    y_pos = np.arange(len(class_names))

    with figure_style():
        row_height = max(2.9, 0.28 * len(class_names) + 0.7)
        fig = new_figure((11.0, row_height * max(k, 1) + 0.9))
        axes = fig.subplots(max(k, 1), 2, squeeze=False, sharex="col", width_ratios=[2.3, 1.0])
        for i, oid in enumerate(object_ids):
            ax_lc, ax_p = axes[i]
            rows = obs[obs["object_id"] == oid]
            dt = rows["time"].to_numpy(dtype=float) - t_ref[i]
            inside = (dt >= t_lo) & (dt <= t_hi)
            for j, band in enumerate(band_names):
                color = band_color(band, band_names)
                mu = mean[i, j] * scale[i]
                sigma = std[i, j] * scale[i]
                ax_lc.fill_between(grid_time, mu - sigma, mu + sigma, color=color, alpha=0.2,
                                   linewidth=0)
                ax_lc.plot(grid_time, mu, color=color, linewidth=1.5)
                sel = inside & (rows["band"].to_numpy() == band)
                if sel.any():
                    ax_lc.errorbar(dt[sel], rows["flux"].to_numpy(dtype=float)[sel],
                                   yerr=rows["flux_err"].to_numpy(dtype=float)[sel],
                                   fmt=band_marker(band, band_names), color=color, markersize=4.5,
                                   elinewidth=1.0, markeredgecolor="white",
                                   markeredgewidth=0.4, linestyle="none")
            ax_lc.axhline(0.0, color="0.5", linewidth=0.7, zorder=0)
            if grid_time.size:
                ax_lc.set_xlim(t_lo, t_hi)
            ax_lc.set_ylabel(FLUX_LABEL)
            ax_lc.set_title(f"{oid}: true class {true_labels[i]}", loc="left")

            probs = probabilities[i]
            is_true = np.array([c == true_labels[i] for c in class_names])
            ax_p.barh(y_pos, probs, color=np.where(is_true, HIGHLIGHT_COLOR, NEUTRAL_COLOR),
                      edgecolor=np.where(is_true, "black", "none"), linewidth=0.8, height=0.7)
            for y, p in zip(y_pos, probs):
                inside_bar = p > 0.8
                ax_p.text(p - 0.02 if inside_bar else p + 0.02, y, f"{p:.2f}",
                          va="center", ha="right" if inside_bar else "left", fontsize=10,
                          color="white" if inside_bar and is_true[y] else "black")
            ax_p.set_yticks(y_pos)
            ax_p.set_yticklabels(class_names)
            for tick, true in zip(ax_p.get_yticklabels(), is_true):
                if true:  # the true class also stands out in its tick label
                    tick.set_fontweight("bold")
                    tick.set_color(HIGHLIGHT_COLOR)
            ax_p.invert_yaxis()
            ax_p.set_xlim(0.0, 1.0)
            ax_p.grid(axis="y", visible=False)
            if class_names:
                pred = class_names[int(np.nanargmax(probs))] if np.isfinite(probs).any() else "?"
                verdict = "correct" if pred == true_labels[i] else "wrong"
                ax_p.set_title(f"predicted {pred} ({verdict})", loc="left")
        axes[-1, 0].set_xlabel(TIME_LABEL)
        axes[-1, 1].set_xlabel("Predicted probability")

        handles = [
            Line2D([], [], color=band_color(b, band_names), marker=band_marker(b, band_names),
                   linestyle="-", label=f"{b} band") for b in band_names
        ]
        handles.append(Patch(facecolor="0.6", alpha=0.4, label="GP mean ± 1σ"))
        handles.append(Patch(facecolor=HIGHLIGHT_COLOR, edgecolor="black", label="true class"))
        handles.append(Patch(facecolor=NEUTRAL_COLOR, label="other classes"))
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
        fig.get_layout_engine().set(h_pad=0.08)
    return fig


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Loss and accuracy per epoch for the training and validation sets.

    ``history`` has columns ``epoch``, ``train_loss``, ``val_loss``, ``train_acc``,
    ``val_acc``, and ``member`` for a deep ensemble (one curve per member); missing columns or
    NaN entries are skipped. For one network, the epoch of the lowest validation loss is marked in
    both panels.
    """
    hist = history.copy()
    if "epoch" not in hist.columns:
        hist["epoch"] = np.arange(len(hist))
    if "member" not in hist.columns:   # a deep ensemble's history has one block of epochs per member
        hist["member"] = 0
    hist = hist.sort_values(["member", "epoch"], kind="mergesort")
    members = list(pd.unique(hist["member"]))

    def series(name: str, member=None) -> tuple[np.ndarray, np.ndarray]:
        part = hist if member is None else hist[hist["member"] == member]
        epoch = part["epoch"].to_numpy(dtype=float)
        if name not in part.columns:
            return epoch[:0], epoch[:0]
        values = pd.to_numeric(part[name], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(values)
        return epoch[ok], values[ok]

    panels = (
        ("Cross-entropy loss", "Loss", ("train_loss", "val_loss")),
        ("Accuracy", "Accuracy", ("train_acc", "val_acc")),
    )
    styles = {
        "train": dict(color=TRAIN_COLOR, linestyle="-", marker="o", label="training"),
        "val": dict(color=VAL_COLOR, linestyle="--", marker="s", label="validation"),
    }
    val_ep, val_loss = series("val_loss", members[0] if members else None)
    best_epoch = val_ep[int(np.argmin(val_loss))] if val_loss.size and len(members) == 1 else None

    with figure_style():
        fig = new_figure((10.0, 4.0))
        axes = fig.subplots(1, 2, sharex=True)
        for ax, (ylabel, title, names) in zip(axes, panels):
            for name in names:
                for k, member in enumerate(members):
                    x, y = series(name, member)
                    if not x.size:
                        continue
                    style = dict(styles[name.split("_")[0]])
                    if x.size > 30 or len(members) > 1:
                        style.pop("marker")
                    if k:
                        style.pop("label")
                    elif len(members) > 1:
                        style["label"] += f" ({len(members)} ensemble members)"
                    ax.plot(x, y, markersize=4, alpha=1.0 if len(members) == 1 else 0.6, **style)
            if best_epoch is not None:
                ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1.2,
                           label=f"lowest val. loss (epoch {best_epoch:g})")
            if not ax.get_lines():
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                        color="0.4")
            ax.set_xlabel("Epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # One legend for both panels, above them, so it never covers a curve.
        handles, labels = axes[0].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[1].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside upper center", ncols=len(handles))
        if any(series(n)[0].size for n in ("train_acc", "val_acc")):
            lo, hi = axes[1].get_ylim()
            axes[1].set_ylim(max(lo, 0.0), min(hi, 1.02))
    return fig
