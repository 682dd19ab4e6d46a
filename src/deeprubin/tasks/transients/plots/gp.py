"""Figures of the GP preprocessing: fits of a few objects and fit diagnostics."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ....core.plot_style import HIGHLIGHT_COLOR, band_color, band_marker, figure_style, new_figure
from .classification import FLUX_LABEL, TIME_LABEL


def plot_gp_fits(observations: pd.DataFrame, grid, object_ids: Sequence[str],
                 labels: Sequence[str] | None = None) -> Figure:
    """Observed fluxes and the GP posterior (mean ± 1 std) of each band, one panel per object.

    Parameters
    ----------
    observations : DataFrame
        Canonical ``lightcurves`` table (``object_id``, ``time`` [MJD], ``band``, ``flux``,
        ``flux_err`` [µJy]); may hold other objects.
    grid : deeprubin.tasks.transients.preprocess.gp.GPGrid
        The preprocess stage's grid (``load_gp_grid``).
    object_ids : sequence of str
        Objects to show (each must be in ``grid``).
    labels : sequence of str, optional
        Class of each object, for the panel titles.
    """
    ids = [str(o) for o in object_ids]
    row_of = {str(o): i for i, o in enumerate(grid.object_ids)}
    missing = [o for o in ids if o not in row_of]
    if missing:
        raise ValueError(f"plot_gp_fits: object(s) {missing} not in the GP grid")
    bands = [str(b) for b in grid.bands]
    n_cols = min(2, len(ids))
    n_rows = int(np.ceil(len(ids) / n_cols))
    with figure_style():
        fig = new_figure((5.6 * n_cols, 3.4 * n_rows + 0.4))
        axes = np.atleast_1d(fig.subplots(n_rows, n_cols, squeeze=False)).ravel()
        for k, (ax, oid) in enumerate(zip(axes, ids)):
            i = row_of[oid]
            obs = observations[observations["object_id"].astype(str) == oid]
            rel = obs["time"].to_numpy(float) - grid.t_ref[i]
            inside = (rel >= grid.grid_time.min()) & (rel <= grid.grid_time.max())
            for j, b in enumerate(bands):
                color = band_color(b, bands)
                mu = grid.mean[i, j] * grid.flux_scale[i]
                sd = grid.std[i, j] * grid.flux_scale[i]
                ax.plot(grid.grid_time, mu, color=color, label=f"{b} GP mean")
                ax.fill_between(grid.grid_time, mu - sd, mu + sd, color=color, alpha=0.2, linewidth=0)
                sel = inside & (obs["band"].astype(str).to_numpy() == b)
                ax.errorbar(rel[sel], obs["flux"].to_numpy(float)[sel], obs["flux_err"].to_numpy(float)[sel],
                            fmt=band_marker(b, bands), color=color, markersize=4, linestyle="none",
                            label=f"{b} observed")
            title = oid if labels is None else f"{oid} ({labels[k]})"
            ax.set_title(title)
            ax.set_xlabel(TIME_LABEL)
            ax.set_ylabel(FLUX_LABEL)
            ax.legend(loc="upper right", fontsize=10)
        for ax in axes[len(ids):]:
            ax.set_visible(False)
        fig.suptitle("GP interpolation (mean ± 1 std) of example light curves")
    return fig


def plot_gp_diagnostics(diagnostics: pd.DataFrame) -> Figure:
    """Histograms of points per fit, fitted time length scale and optimiser iterations.

    ``diagnostics``: the ``gp_fits.parquet`` table (``GPGrid.diagnostics``); the title
    gives the number of failed fits.
    """
    d = diagnostics
    ok = d["fit_ok"].astype(bool)
    panels = [("n_points", "Points used in the fit", False),
              ("length_scale_time_days", "Time length scale [days]", True),
              ("n_iter", "Optimiser iterations", False)]
    with figure_style():
        fig = new_figure((13.0, 3.8))
        axes = fig.subplots(1, len(panels))
        for ax, (col, label, log) in zip(axes, panels):
            values = d.loc[ok, col].to_numpy(float)
            values = values[np.isfinite(values)]
            if log and len(values) and (values > 0).all():
                bins = np.geomspace(values.min(), values.max() * 1.001, 25)
                ax.set_xscale("log")
            else:
                bins = 25
            ax.hist(values, bins=bins, color=HIGHLIGHT_COLOR)
            ax.set_xlabel(label)
            ax.set_ylabel("Objects")
        fig.suptitle(f"GP fit diagnostics: {int(ok.sum())} fits, {int((~ok).sum())} failed")
    return fig
