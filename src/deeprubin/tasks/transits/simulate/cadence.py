"""Observing windows: Kepler quarters with downlink gaps, TESS sectors with an orbit gap."""
from __future__ import annotations

import numpy as np


def kepler_times(cfg) -> np.ndarray:
    """Cadence times (BKJD, days) of ``n_quarters`` Kepler-like quarters.

    Quarters of ``quarter_days`` separated by ``quarter_gap_days``; inside a quarter a
    ``downlink_gap_days`` gap every ``downlink_every_days`` (monthly data downlinks).
    """
    step = float(cfg.cadence_minutes) / 1440.0
    times = []
    start = float(cfg.start_bkjd)
    for _ in range(int(cfg.n_quarters)):
        t = start + np.arange(0.0, float(cfg.quarter_days), step)
        since = t - start
        in_gap = np.zeros(t.size, bool)
        every = float(cfg.downlink_every_days)
        for k in range(1, int(cfg.quarter_days // every) + 1):
            in_gap |= (since >= k * every) & (since < k * every + float(cfg.downlink_gap_days))
        times.append(t[~in_gap])
        start += float(cfg.quarter_days) + float(cfg.quarter_gap_days)
    return np.concatenate(times)


def tess_times(cfg, sector: int) -> np.ndarray:
    """Cadence times (BTJD, days) of one TESS-like sector (two orbits and a mid-sector gap)."""
    step = float(cfg.cadence_minutes) / 1440.0
    start = float(cfg.first_sector_btjd) + (sector - 1) * float(cfg.sector_days)
    t = start + np.arange(0.0, float(cfg.sector_days), step)
    mid = start + 0.5 * float(cfg.sector_days)
    half_gap = 0.5 * float(cfg.orbit_gap_days)
    return t[np.abs(t - mid) >= half_gap]
