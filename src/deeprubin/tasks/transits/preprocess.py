"""Cleaning and detrending of one light curve: quality mask, bad chunks, flattening, clipping.

Used for simulated and real light curves alike (the same code path). Problems with one
light curve are raised as :class:`SkipLightCurve` with a reason; the stage counts them in
its report and goes on with the others.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ...core.config import ConfigError, require


class SkipLightCurve(Exception):
    """A light curve that cannot be used; ``reason`` is a short key counted in the report."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class CleanLightCurve:
    """A flattened light curve.

    Attributes
    ----------
    time : numpy.ndarray, shape (n,)
        Mission time (BKJD or BTJD, days), increasing.
    flux : numpy.ndarray, shape (n,)
        Detrended relative flux (1 = out of transit).
    trend : numpy.ndarray, shape (n,)
        The removed trend (relative flux).
    chunk : numpy.ndarray, shape (n,), int
        Index of the contiguous stretch (split at gaps longer than ``gap_days``).
    counts : dict
        Cadences removed per cause and chunks dropped.
    """

    time: np.ndarray
    flux: np.ndarray
    trend: np.ndarray
    chunk: np.ndarray
    counts: dict = field(default_factory=dict)


def check_preprocess_config(cfg) -> None:
    """Raise :class:`ConfigError` naming the first invalid ``transits.preprocess`` key."""
    require(cfg, "segment_length", at_least=8)
    require(cfg, "stride", positive=True)
    for key in ("sigma_upper", "flatten_window_factor", "max_duration_hours", "gap_days", "clip_value"):
        require(cfg, key, positive=True)
    require(cfg, "min_in_transit_points", at_least=1)
    channels = require(cfg, "channels")
    if not len(channels) or any(c not in ("robust_z", "relative") for c in channels):
        raise ConfigError(f"config key 'channels' must list 'robust_z' and/or 'relative', got {list(channels)}")
    require(cfg, "relative_scale", positive=True)
    require(cfg, "quality_mask", choices=("nonzero", "none"))
    frac = require(cfg, "max_nan_fraction", positive=True)
    if frac > 1:
        raise ConfigError(f"config key 'max_nan_fraction' must be <= 1, got {frac}")


def chunk_ids(time: np.ndarray, gap_days: float) -> np.ndarray:
    """Index of contiguous stretches: a new chunk starts after each gap longer than ``gap_days``."""
    if time.size == 0:
        return np.zeros(0, dtype=int)
    return np.concatenate([[0], np.cumsum(np.diff(time) > gap_days)]).astype(int)


def flatten_window(cfg, cadence_days: float) -> int:
    """Odd Savitzky-Golay window (cadences) covering ``flatten_window_factor`` x the longest duration.

    A window three times the longest transit keeps the transit out of the trend's scale
    (the trend then follows only slower variability).
    """
    n = int(np.ceil(float(cfg.flatten_window_factor) * float(cfg.max_duration_hours) / 24.0 / cadence_days))
    return max(n + (n + 1) % 2, int(cfg.flatten_polyorder) + 2 + (int(cfg.flatten_polyorder) + 1) % 2)


def clean_lightcurve(time, flux, flux_err, quality, cfg, cadence_days: float, where: str) -> CleanLightCurve:
    """Quality mask, drop mostly-NaN chunks, flatten (lightkurve), clip upper outliers.

    Parameters
    ----------
    time, flux, flux_err, quality : array-like, shape (n,)
        Mission time (days), flux (any positive scale), its error, quality flags (0 = good).
    cfg : DictConfig
        The ``transits.preprocess`` node.
    cadence_days : float
        Nominal cadence (sets the flattening window in cadences).
    where : str
        Names the light curve in messages.

    Raises
    ------
    SkipLightCurve
        ``no_valid_points`` / ``all_nan_chunks`` / ``shorter_than_segment``.
    """
    import lightkurve as lk

    time = np.asarray(time, dtype=float)
    flux = np.asarray(flux, dtype=float)
    flux_err = np.asarray(flux_err, dtype=float)
    quality = np.zeros(time.size, int) if quality is None else np.asarray(quality)
    counts = {"cadences_in": int(time.size)}
    keep = np.isfinite(time)
    if str(cfg.quality_mask) == "nonzero":
        counts["quality_flagged"] = int((keep & (quality != 0)).sum())
        keep &= quality == 0
    order = np.argsort(time[keep], kind="mergesort")
    time, flux, flux_err = time[keep][order], flux[keep][order], flux_err[keep][order]
    if time.size == 0:
        raise SkipLightCurve("no_valid_points", f"{where}: no cadence with finite time and good quality")
    # Whole quarters/orbits of NaN (e.g. a lost quarter) are dropped as chunks, and counted.
    chunk = chunk_ids(time, float(cfg.gap_days))
    bad_chunks = [c for c in np.unique(chunk)
                  if np.mean(~np.isfinite(flux[chunk == c])) > float(cfg.max_nan_fraction)]
    counts["nan_chunks_dropped"] = len(bad_chunks)
    good = ~np.isin(chunk, bad_chunks) & np.isfinite(flux)
    counts["nan_cadences"] = int((~np.isfinite(flux)).sum())
    time, flux, flux_err = time[good], flux[good], flux_err[good]
    if time.size == 0:
        raise SkipLightCurve("all_nan_chunks", f"{where}: every quarter/sector chunk is NaN")
    if time.size < int(cfg.segment_length):
        raise SkipLightCurve("shorter_than_segment",
                             f"{where}: {time.size} valid cadences, fewer than one segment "
                             f"({int(cfg.segment_length)})")
    median = np.nanmedian(flux)
    if not median > 0:
        raise SkipLightCurve("non_positive_flux", f"{where}: median flux {median} is not positive")
    flux_err = np.where(np.isfinite(flux_err), flux_err, np.nanmedian(np.abs(np.diff(flux))))
    lc = lk.LightCurve(time=time, flux=flux / median, flux_err=flux_err / median)
    window = flatten_window(cfg, cadence_days)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lightkurve warns on short breaks; handled by chunks below
        flat, trend = lc.flatten(window_length=window, polyorder=int(cfg.flatten_polyorder), return_trend=True,
                                 break_tolerance=max(int(np.ceil(float(cfg.gap_days) / cadence_days)), 5))
    f = np.asarray(flat.flux.value, dtype=float)
    tr = np.asarray(trend.flux.value, dtype=float)
    # Upper outliers only (flares, cosmic rays): a transit is a dip and must stay.
    resid = f - np.nanmedian(f)
    scale = 1.4826 * np.nanmedian(np.abs(resid))
    keep = np.isfinite(f) & (resid < float(cfg.sigma_upper) * scale)
    counts["upper_outliers_clipped"] = int((np.isfinite(f) & ~keep).sum())
    time, f, tr = time[keep], f[keep], tr[keep]
    counts["cadences_out"] = int(time.size)
    if time.size < int(cfg.segment_length):
        raise SkipLightCurve("shorter_than_segment",
                             f"{where}: {time.size} cadences left after cleaning, fewer than one segment")
    return CleanLightCurve(time, f, tr, chunk_ids(time, float(cfg.gap_days)), counts)
