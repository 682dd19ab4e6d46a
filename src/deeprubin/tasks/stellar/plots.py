"""Figures of the stellar report (shared style of :mod:`deeprubin.core.plot_style`)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from ...core import io
from ...core.plot_style import NEUTRAL_COLOR, OKABE_ITO, figure_style, new_figure

NET_COLOR = OKABE_ITO["blue"]
GBM_COLOR = OKABE_ITO["vermillion"]
#: Axis labels of the parameters, with units.
LABELS = {"teff": r"$T_\mathrm{eff}$ [K]", "logg": r"$\log g$ [dex, cgs]", "feh": "[Fe/H] [dex]"}


def plot_pred_vs_truth(truth: Mapping[str, np.ndarray], models: Mapping[str, Mapping[str, np.ndarray]],
                       title: str, truth_label: str, path: Path) -> Path:
    """Predicted against true (or catalogue) Teff, logg and [Fe/H], one colour per model, with
    each model's MAE in the legend."""
    colors = (GBM_COLOR, NET_COLOR, OKABE_ITO["bluish_green"])
    with figure_style():
        fig = new_figure((14, 4.6))
        axes = fig.subplots(1, 3)
        for ax, t in zip(axes, ("teff", "logg", "feh")):
            for color, (name, pred) in zip(colors, models.items()):
                mae = float(np.nanmean(np.abs(pred[t] - truth[t])))
                ax.scatter(truth[t], pred[t], s=6, alpha=0.5, color=color, label=f"{name}: MAE {mae:.3g}")
            lo, hi = np.nanmin(truth[t]), np.nanmax(truth[t])
            ax.plot([lo, hi], [lo, hi], ls=":", color=NEUTRAL_COLOR, label="one to one")
            ax.set_xlabel(f"{truth_label} {LABELS[t]}")
            ax.set_ylabel(f"Predicted {LABELS[t]}")
            ax.legend(loc="upper left", fontsize="small", markerscale=2)
        fig.suptitle(title)
    return io.save_figure(fig, path)


def plot_residuals(truth: Mapping[str, np.ndarray], models: Mapping[str, Mapping[str, np.ndarray]],
                   teff: np.ndarray, path: Path) -> Path:
    """Residual (prediction - truth) of each parameter against the true Teff, per model."""
    colors = (NET_COLOR, GBM_COLOR, OKABE_ITO["bluish_green"])
    with figure_style():
        fig = new_figure((14, 4.6))
        axes = fig.subplots(1, 3)
        for ax, t in zip(axes, ("teff", "logg", "feh")):
            for color, (name, pred) in zip(colors, models.items()):
                ax.scatter(teff, pred[t] - truth[t], s=5, alpha=0.45, color=color, label=name)
            ax.axhline(0.0, ls=":", color=NEUTRAL_COLOR)
            ax.set_xscale("log")
            ax.set_xlabel(r"True $T_\mathrm{eff}$ [K]")
            ax.set_ylabel(f"Residual {LABELS[t]}")
            ax.legend(loc="upper right", fontsize="small", markerscale=3)
        fig.suptitle("Simulated test spectra: residuals against effective temperature")
    return io.save_figure(fig, path)


def plot_snr(table: pd.DataFrame, path: Path) -> Path:
    """MAE of each parameter per S/N bin, with its interval, per model (``table``: model, target,
    snr_low, snr_high, mae, low, high)."""
    colors = {name: c for name, c in zip(table["model"].unique(), (NET_COLOR, GBM_COLOR, OKABE_ITO["bluish_green"]))}
    with figure_style():
        fig = new_figure((14, 4.6))
        axes = fig.subplots(1, 3)
        for ax, t in zip(axes, ("teff", "logg", "feh")):
            for name, part in table[table["target"] == t].groupby("model", sort=False):
                centre = np.sqrt(part["snr_low"] * part["snr_high"])
                ax.errorbar(centre, part["mae"], yerr=[part["mae"] - part["low"], part["high"] - part["mae"]],
                            marker="o", capsize=3, color=colors[name], label=name)
            ax.set_xscale("log")
            ax.set_xlabel("S/N per pixel")
            ax.set_ylabel(f"MAE of {LABELS[t]}")
            ax.legend(loc="upper right", fontsize="small")
        fig.suptitle("Simulated test spectra: error against signal-to-noise (95 % intervals over stars)")
    return io.save_figure(fig, path)


def plot_coverage(z: Mapping[str, np.ndarray], path: Path) -> Path:
    """Fraction of |residual| / sigma within k against k, per parameter, and the Gaussian expectation."""
    from scipy.special import erf

    k = np.linspace(0.0, 3.0, 61)
    colors = (NET_COLOR, GBM_COLOR, OKABE_ITO["bluish_green"])
    with figure_style():
        fig = new_figure((6.5, 5))
        ax = fig.add_subplot()
        for color, (name, values) in zip(colors, z.items()):
            ax.plot(k, [(np.abs(values) <= kk).mean() for kk in k], color=color, label=name)
        ax.plot(k, erf(k / np.sqrt(2.0)), ls="--", color="black", label="Gaussian expectation")
        ax.set_xlabel(r"$k$ (|prediction - truth| $\leq k\,\sigma$)")
        ax.set_ylabel("Fraction of test spectra")
        ax.set_title("Coverage of the network's predicted sigmas (test)")
        ax.legend(loc="lower right")
    return io.save_figure(fig, path)


def plot_confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix of the MK classes."""
    cm = confusion_matrix(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str), labels=list(classes))
    rows = cm.sum(1, keepdims=True)
    values = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    with figure_style():
        fig = new_figure((6.5, 5.5))
        ax = fig.add_subplot()
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center",
                        color="white" if values[i, j] > 0.5 else "black", fontsize="small")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), [f"{c} ({n})" for c, n in zip(classes, rows[:, 0])])
        ax.set_xlabel("Predicted MK class")
        ax.set_ylabel("True MK class (test spectra)")
        ax.set_title("Spectral network: confusion matrix (row-normalised)")
        fig.colorbar(image, ax=ax, label="Fraction of true class")
    return io.save_figure(fig, path)
