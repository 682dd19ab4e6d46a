"""Periodic transit search: threshold-crossing events (candidates) per light curve.

As Kepler's TPS and TESS's SPOC do before any classifier, each flattened light curve is
searched for periodic box-shaped dips (astropy's :class:`~astropy.timeseries.BoxLeastSquares`);
the best peak becomes a candidate, its in-transit cadences are masked, and the search runs
again, up to ``search.max_candidates`` times. The first candidate of every light curve is
kept whatever its strength (so every light curve gets a search score); later ones only
while their depth signal-to-noise reaches ``search.min_snr``.

Each candidate carries the BLS vetting statistics astropy computes
(:meth:`~astropy.timeseries.BoxLeastSquares.compute_stats`): odd and even transit depths,
the depth at phase 0.5 (a secondary eclipse), the sinusoid-vs-box likelihood difference.
"""
from __future__ import annotations

import numpy as np
from astropy.timeseries import BoxLeastSquares

from ...core.config import ConfigError, require
from .ephemeris import transit_phase

#: Columns of one candidate (:func:`search_lightcurve`), in order.
CANDIDATE_COLUMNS = ("rank", "period", "t0", "duration", "depth", "depth_snr", "sde", "n_transits",
                     "depth_odd", "depth_odd_err", "depth_even", "depth_even_err", "depth_secondary",
                     "depth_secondary_err", "harmonic_dll")


def check_search_config(cfg) -> None:
    """Raise :class:`ConfigError` naming the first invalid ``transits.search`` key."""
    require(cfg, "n_periods", at_least=10)
    require(cfg, "min_period_days", positive=True)
    frac = require(cfg, "max_period_fraction", positive=True)
    if frac > 1:
        raise ConfigError(f"config key 'max_period_fraction' must be <= 1, got {frac}")
    require(cfg, "objective", choices=("snr", "likelihood"))
    require(cfg, "max_candidates", at_least=1)
    require(cfg, "min_snr", at_least=0)
    require(cfg, "mask_factor", positive=True)
    require(cfg, "refine_points", at_least=0)
    durations = require(cfg, "durations_hours")
    if not len(durations) or any(float(d) <= 0 for d in durations):
        raise ConfigError(f"config key 'durations_hours' must list positive durations, got {list(durations)}")


def period_grid(span_days: float, cfg) -> np.ndarray:
    """Log-spaced trial periods from ``min_period_days`` (at least twice the longest duration)
    to ``max_period_fraction`` x the light curve's span."""
    durations = np.asarray(cfg.durations_hours, dtype=float) / 24.0
    p_min = max(float(cfg.min_period_days), 2.0 * durations.max())
    p_max = max(float(cfg.max_period_fraction) * span_days, p_min * 1.01)
    return np.exp(np.linspace(np.log(p_min), np.log(p_max), int(cfg.n_periods)))


def robust_scatter(flux: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (1.0 when that is 0: a constant light curve)."""
    scatter = 1.4826 * float(np.median(np.abs(flux - np.median(flux))))
    return scatter if scatter > 0 else 1.0


def bls_peak(time: np.ndarray, flux: np.ndarray, cfg) -> tuple[BoxLeastSquares, dict]:
    """One BLS periodogram of a flattened light curve and its highest peak.

    Returns ``(model, peak)`` with peak keys ``period``, ``t0``, ``duration``, ``depth``,
    ``depth_snr``, ``sde`` (signal detection efficiency, ``(max P - mean P) / std P`` over
    the period grid; Kovacs et al. 2002) and ``power_max``. With ``refine_points`` > 0 the peak
    is refined on that many periods spanning +-2 steps of the grid around it.
    """
    time = np.asarray(time, dtype=float)
    flux = np.asarray(flux, dtype=float)
    durations = np.asarray(cfg.durations_hours, dtype=float) / 24.0
    periods = period_grid(float(time.max() - time.min()), cfg)
    model = BoxLeastSquares(time, flux, dy=np.full(flux.size, robust_scatter(flux)))
    result = model.power(periods, durations, objective=str(cfg.objective))
    power = np.asarray(result.power, dtype=float)
    finite = np.isfinite(power)
    best = int(np.nanargmax(power))
    sde = float((power[best] - power[finite].mean()) / power[finite].std()) if finite.sum() > 1 else 0.0
    n_refine = int(cfg.get("refine_points", 0))
    if n_refine > 0 and periods.size > 1:
        # The peak on a finer grid, +-2 coarse steps around it: a period good to a fraction of a
        # step keeps every transit in phase (the SDE stays that of the coarse grid).
        step = float(np.log(periods[1] / periods[0]))
        fine = periods[best] * np.exp(np.linspace(-2 * step, 2 * step, n_refine))
        refined = model.power(fine, durations, objective=str(cfg.objective))
        fine_power = np.asarray(refined.power, dtype=float)
        if np.isfinite(fine_power).any() and np.nanmax(fine_power) >= power[best]:
            result, best, power = refined, int(np.nanargmax(fine_power)), fine_power
    return model, {"period": float(result.period[best]), "t0": float(result.transit_time[best]),
                   "duration": float(result.duration[best]), "depth": float(result.depth[best]),
                   "depth_snr": float(result.depth_snr[best]), "sde": sde, "power_max": float(power[best])}


def _stats(model: BoxLeastSquares, peak: dict) -> dict:
    stats = model.compute_stats(peak["period"], peak["duration"], peak["t0"])
    counts = np.asarray(stats["per_transit_count"])
    return {"n_transits": int((counts > 0).sum()),
            "depth_odd": float(stats["depth_odd"][0]), "depth_odd_err": float(stats["depth_odd"][1]),
            "depth_even": float(stats["depth_even"][0]), "depth_even_err": float(stats["depth_even"][1]),
            "depth_secondary": float(stats["depth_phased"][0]),
            "depth_secondary_err": float(stats["depth_phased"][1]),
            "harmonic_dll": float(stats["harmonic_delta_log_likelihood"])}


def search_lightcurve(time: np.ndarray, flux: np.ndarray, cfg) -> list[dict]:
    """Candidates of one flattened light curve, strongest first (:data:`CANDIDATE_COLUMNS`).

    Parameters
    ----------
    time, flux : numpy.ndarray, shape (n,)
        Days (one time system) and detrended relative flux (1 out of transit).
    cfg : DictConfig
        ``transits.search``: the BLS grid (n_periods, min_period_days, max_period_fraction,
        durations_hours, objective), ``max_candidates``, ``min_snr`` (depth SNR a second or
        later candidate needs) and ``mask_factor`` (x duration masked around each found transit).
    """
    time = np.asarray(time, dtype=float)
    flux = np.asarray(flux, dtype=float)
    keep = np.isfinite(time) & np.isfinite(flux)
    durations = np.asarray(cfg.durations_hours, dtype=float) / 24.0
    found: list[dict] = []
    for rank in range(1, int(cfg.max_candidates) + 1):
        t, f = time[keep], flux[keep]
        # Enough points left for a period search over at least two transits of the longest box.
        if t.size < 10 or (t.max() - t.min()) < 4.0 * durations.max():
            break
        model, peak = bls_peak(t, f, cfg)
        if rank > 1 and not peak["depth_snr"] >= float(cfg.min_snr):
            break
        found.append({"rank": rank, **{k: peak[k] for k in ("period", "t0", "duration", "depth", "depth_snr", "sde")},
                      **_stats(model, peak)})
        keep &= mask_found(time, [peak], float(cfg.mask_factor))
    return [{c: cand[c] for c in CANDIDATE_COLUMNS} for cand in found]


def mask_found(time: np.ndarray, candidates: list[dict], mask_factor: float) -> np.ndarray:
    """Cadences kept after masking the transits of ``candidates`` (``mask_factor`` x duration each):
    the light curve the next candidate was found in, and the one its views are folded from."""
    keep = np.ones(np.asarray(time).size, dtype=bool)
    for cand in candidates:
        keep &= np.abs(transit_phase(time, cand["period"], cand["t0"])) >= 0.5 * float(mask_factor) * cand["duration"]
    return keep
