"""Ephemerides: validation, predicted transit times and in-transit masks.

An ephemeris is a period (days), a mid-transit epoch ``t0`` in BJD_TDB and a full
duration (first to fourth contact, days). It is converted to a light curve's own time
system (:mod:`deeprubin.sources.missions`) before use.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...sources.missions import bjd_to_mission

EPHEMERIS_COLUMNS = ("target_id", "kind", "period", "t0_bjd", "duration")


class EphemerisError(ValueError):
    """An ephemeris that cannot describe a periodic transit."""


def check_ephemerides(eph: pd.DataFrame, where: str) -> None:
    """Raise :class:`EphemerisError` naming ``where``, the target and the field on bad rows.

    Rules: columns present; period finite and > 0; duration finite, > 0 and < period.
    """
    missing = [c for c in EPHEMERIS_COLUMNS if c not in eph.columns]
    if missing:
        raise EphemerisError(f"{where}: missing column(s) {missing}")
    for row in eph.itertuples(index=False):
        if not (np.isfinite(row.period) and row.period > 0):
            raise EphemerisError(f"{where}: target {row.target_id!r}: field 'period' must be > 0, got {row.period}")
        if not (np.isfinite(row.duration) and row.duration > 0):
            raise EphemerisError(f"{where}: target {row.target_id!r}: field 'duration' must be > 0, "
                                 f"got {row.duration}")
        if row.duration >= row.period:
            raise EphemerisError(f"{where}: target {row.target_id!r}: field 'duration' ({row.duration} d) "
                                 f"is not shorter than the period ({row.period} d)")
        if not np.isfinite(row.t0_bjd):
            raise EphemerisError(f"{where}: target {row.target_id!r}: field 't0_bjd' is not finite")


def transit_phase(time: np.ndarray, period: float, t0: float) -> np.ndarray:
    """Time from the nearest mid-transit (days), in ``[-period/2, period/2)``; same system as ``t0``."""
    return (np.asarray(time) - t0 + 0.5 * period) % period - 0.5 * period


def in_transit(time: np.ndarray, period: float, t0_bjd: float, duration: float, mission: str) -> np.ndarray:
    """Boolean mask of cadences inside a predicted transit.

    Parameters
    ----------
    time : numpy.ndarray, shape (n,)
        Cadence times in the mission's system (BKJD or BTJD, days).
    period, duration : float
        Days. t0_bjd : float, BJD_TDB.
    """
    t0 = float(bjd_to_mission(t0_bjd, mission))
    return np.abs(transit_phase(time, period, t0)) < 0.5 * duration


def transit_epochs(t_start: float, t_end: float, period: float, t0: float) -> np.ndarray:
    """Mid-transit times in ``[t_start, t_end]`` (same system as ``t0``)."""
    first = np.ceil((t_start - t0) / period)
    last = np.floor((t_end - t0) / period)
    return t0 + period * np.arange(first, last + 1)
