"""Exploratory figures: class balance, mean light curves and colour evolution.

Every function takes plain numpy / pandas inputs, does no file I/O and returns a
:class:`matplotlib.figure.Figure`; save it with :func:`deeprubin.core.io.save_figure`.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ....core.plot_style import class_colors, figure_style, new_figure, split_color

#: Split order on the x axis / in legends; other split names follow, sorted.
SPLIT_ORDER = ("train", "val", "test")

TIME_LABEL = "Time relative to peak [days]"


def _class_summary(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and 16th/84th percentiles over axis 0, NaN-aware, without warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(values, axis=0)
        lo, hi = np.nanpercentile(values, [16.0, 84.0], axis=0)
    return med, lo, hi


def _empty_handle(label: str) -> Line2D:
    return Line2D([], [], color="#999999", linestyle=":", label=label)


def plot_class_distribution(labels_by_split: pd.DataFrame, classes: Sequence[str]) -> Figure:
    """Grouped bar chart of the number of objects per class in each split.

    Parameters
    ----------
    labels_by_split : DataFrame
        Columns ``label`` and ``split`` (``"train"``, ``"val"``, ``"test"``), one row
        per object.
    classes : sequence of str
        Class order on the x axis. Labels outside it are appended (sorted) so no
        object is hidden; classes without objects show as empty groups.
    """
    df = labels_by_split.loc[:, ["label", "split"]].astype(str)
    class_order = [str(c) for c in classes]
    class_order += sorted(set(df["label"]) - set(class_order))
    present = set(df["split"])
    splits = [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))
    if not splits:
        splits = list(SPLIT_ORDER)
    counts = (
        pd.crosstab(df["label"], df["split"])
        .reindex(index=class_order, columns=splits, fill_value=0)
        .fillna(0)
        .astype(int)
    )

    n_cls, n_split = len(class_order), len(splits)
    width = 0.8 / n_split
    x = np.arange(n_cls)
    long_names = max((len(c) for c in class_order), default=0) > 8 or n_cls > 6
    annotate = n_cls * n_split <= 30
    with figure_style():
        fig = new_figure((min(max(6.0, (0.35 * n_split + 0.3) * n_cls + 2.5), 14.0), 4.5))
        ax = fig.add_subplot()
        for j, split in enumerate(splits):
            offset = (j - (n_split - 1) / 2) * width
            total = int(counts[split].sum())
            bars = ax.bar(
                x + offset, counts[split].to_numpy(), width=width * 0.95,
                color=split_color(split, j), label=f"{split} (N={total})",
            )
            if annotate:
                ax.bar_label(bars, padding=2, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(class_order, rotation=30 if long_names else 0,
                           ha="right" if long_names else "center")
        ax.set_xlabel("Class")
        ax.set_ylabel("Number of objects")
        ax.set_title("Objects per class and data split")
        ax.grid(axis="x", visible=False)
        ymax = max(int(counts.to_numpy().max()) if counts.size else 0, 1)
        ax.set_ylim(0, ymax * 1.15)
        fig.legend(title="Split", loc="outside right upper")
    return fig


def _check_grid(grid_time: np.ndarray, mean: np.ndarray, bands: Sequence[str],
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    grid_time = np.asarray(grid_time, dtype=float)
    mean = np.asarray(mean, dtype=float)
    labels = np.asarray(labels).astype(str)
    if mean.ndim != 3:
        raise ValueError(f"mean must have shape (N, B, T), got {mean.shape}")
    n, b, t = mean.shape
    if b != len(bands) or t != grid_time.shape[0] or labels.shape[0] != n:
        raise ValueError(
            f"shape mismatch: mean {mean.shape}, bands {len(bands)}, "
            f"grid_time {grid_time.shape}, labels {labels.shape}"
        )
    return grid_time, mean, labels


def plot_mean_lightcurves(grid_time: np.ndarray, mean: np.ndarray, bands: Sequence[str],
                          labels: np.ndarray, classes: Sequence[str]) -> Figure:
    """Per-class median GP light curve in each band, with the 16-84 percentile range.

    Parameters
    ----------
    grid_time : (T,) array
        Days relative to the brightest observation.
    mean : (N, B, T) array
        GP posterior mean of the peak-normalised (dimensionless) flux.
    bands : sequence of str
        Band names, in the order of axis 1 of ``mean``; one panel per band.
    labels : (N,) array of str
        Class of each object.
    classes : sequence of str
        Classes to show, in legend / colour order.
    """
    grid_time, mean, labels = _check_grid(grid_time, mean, bands, labels)
    colors = class_colors(classes)
    n_bands = max(len(bands), 1)
    with figure_style():
        fig = new_figure((4.2 * n_bands + 1.8, 4.2))
        axes = fig.subplots(1, n_bands, sharex=True, sharey=True, squeeze=False)[0]
        handles = []
        for c in classes:
            c = str(c)
            sel = labels == c
            n_obj = int(sel.sum())
            label = f"{c} (N={n_obj})"
            if n_obj == 0:
                handles.append(_empty_handle(f"{c} (N=0)"))
                continue
            for j, ax in enumerate(axes):
                med, lo, hi = _class_summary(mean[sel, j, :])
                (line,) = ax.plot(grid_time, med, color=colors[c], label=label)
                ax.fill_between(grid_time, lo, hi, color=colors[c], alpha=0.18, linewidth=0)
            handles.append(line)
        for j, ax in enumerate(axes):
            ax.axvline(0.0, color="0.4", linestyle="--", linewidth=0.9, zorder=0)
            ax.set_title(f"{bands[j]} band")
            ax.set_xlabel(TIME_LABEL)
            if grid_time.size:
                ax.set_xlim(grid_time.min(), grid_time.max())
        axes[0].set_ylabel("Normalised flux (GP mean)")
        for ax in axes[1:]:
            ax.tick_params(labelleft=True)
        fig.suptitle("Median GP light curve per class (shaded: 16th-84th percentile)")
        fig.legend(handles=handles, title="Class", loc="outside right upper")
    return fig


def plot_color_evolution(grid_time: np.ndarray, mean: np.ndarray, flux_scale: np.ndarray,
                         bands: Sequence[str], labels: np.ndarray, classes: Sequence[str],
                         blue: str = "g", red: str = "r") -> Figure:
    """Per-class median colour (``blue - red`` in AB mag) versus time.

    The flux in microjansky is ``mean * flux_scale[:, None, None]``; the colour
    ``-2.5 log10(f_blue / f_red)`` is defined only where both fluxes are positive
    (NaN elsewhere) and summarised per class by the NaN-median with the 16-84
    percentile range. Classes without any valid point appear in the legend only.
    """
    grid_time, mean, labels = _check_grid(grid_time, mean, bands, labels)
    band_names = [str(b) for b in bands]
    for name in (blue, red):
        if name not in band_names:
            raise ValueError(f"band {name!r} not in bands {band_names}")
    scale = np.asarray(flux_scale, dtype=float).reshape(-1)
    if scale.shape[0] != mean.shape[0]:
        raise ValueError(f"flux_scale has {scale.shape[0]} entries, mean has {mean.shape[0]} objects")
    f_blue = mean[:, band_names.index(blue), :] * scale[:, None]
    f_red = mean[:, band_names.index(red), :] * scale[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = np.isfinite(f_blue) & np.isfinite(f_red) & (f_blue > 0) & (f_red > 0)
        ratio = np.divide(f_blue, f_red, out=np.ones_like(f_blue), where=valid)
    color = np.where(valid, -2.5 * np.log10(ratio), np.nan)

    colors = class_colors(classes)
    with figure_style():
        fig = new_figure((7.8, 4.5))
        ax = fig.add_subplot()
        handles = []
        for c in classes:
            c = str(c)
            sel = labels == c
            n_obj = int(sel.sum())
            n_valid = int(valid[sel].any(axis=1).sum()) if n_obj else 0
            if n_valid == 0:
                note = "N=0" if n_obj == 0 else f"N={n_obj}, no valid colour"
                handles.append(_empty_handle(f"{c} ({note})"))
                continue
            med, lo, hi = _class_summary(color[sel])
            (line,) = ax.plot(grid_time, med, color=colors[c], label=f"{c} (N={n_valid})")
            ax.fill_between(grid_time, lo, hi, color=colors[c], alpha=0.18, linewidth=0)
            handles.append(line)
        ax.axvline(0.0, color="0.4", linestyle="--", linewidth=0.9, zorder=0)
        if grid_time.size:
            ax.set_xlim(grid_time.min(), grid_time.max())
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(f"{blue} - {red} [mag]")
        ax.set_title(f"{blue} - {red} colour evolution per class (shaded: 16th-84th percentile)")
        fig.legend(handles=handles, title="Class", loc="outside right upper")
    return fig
