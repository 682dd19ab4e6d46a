"""Box Least Squares baseline (astropy) on flattened light curves.

The detection statistic is the signal detection efficiency, ``SDE = (max P - mean P) /
std P`` over the period grid (Kovacs et al. 2002), of the power ``P`` (astropy's ``snr``
or ``likelihood`` objective); thresholds are set on validation negatives.
"""
from __future__ import annotations

import numpy as np
from astropy.timeseries import BoxLeastSquares


def bls_search(time: np.ndarray, flux: np.ndarray, cfg) -> dict:
    """Run BLS on one flattened light curve.

    Parameters
    ----------
    time, flux : numpy.ndarray, shape (n,)
        Days and relative flux (1 out of transit).
    cfg : DictConfig
        ``transits.evaluate.bls``: min_period_days, max_period_fraction, n_periods,
        durations_hours, objective.

    Returns
    -------
    dict
        ``sde``, ``period``, ``t0``, ``duration``, ``depth``, ``power_max``.
    """
    time = np.asarray(time, dtype=float)
    flux = np.asarray(flux, dtype=float)
    span = float(time.max() - time.min())
    durations = np.asarray(cfg.durations_hours, dtype=float) / 24.0
    p_min = max(float(cfg.min_period_days), 2.0 * durations.max())
    p_max = max(float(cfg.max_period_fraction) * span, p_min * 1.01)
    periods = np.exp(np.linspace(np.log(p_min), np.log(p_max), int(cfg.n_periods)))
    scatter = 1.4826 * np.median(np.abs(flux - np.median(flux)))
    model = BoxLeastSquares(time, flux, dy=np.full(flux.size, scatter if scatter > 0 else 1.0))
    result = model.power(periods, durations, objective=str(cfg.objective))
    power = np.asarray(result.power, dtype=float)
    finite = np.isfinite(power)
    best = int(np.nanargmax(power))
    sde = float((power[best] - power[finite].mean()) / power[finite].std()) if finite.sum() > 1 else 0.0
    return {"sde": sde, "period": float(result.period[best]), "t0": float(result.transit_time[best]),
            "duration": float(result.duration[best]), "depth": float(result.depth[best]),
            "power_max": float(power[best])}
