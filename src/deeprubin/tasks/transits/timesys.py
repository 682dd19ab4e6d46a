"""Mission time systems, through astropy.

Kepler and K2 times are BKJD = BJD_TDB - 2454833; TESS times are BTJD = BJD_TDB - 2457000.
Ephemerides are stored in BJD_TDB and converted into a light curve's own system.
"""
from __future__ import annotations

import numpy as np
from astropy.time import Time, TimeDelta

#: Zero point (BJD_TDB) of each mission's time system.
MISSION_OFFSETS = {"Kepler": 2454833.0, "K2": 2454833.0, "TESS": 2457000.0}
#: Name of each mission's time system.
MISSION_SYSTEMS = {"Kepler": "BKJD", "K2": "BKJD", "TESS": "BTJD"}
#: Plausible range of each mission's times in its own system (days): Kepler prime
#: mission 2009-2013, K2 2014-2018, TESS from 2018 (sector 1 starts at BTJD 1325).
#: A time outside it means the wrong system (e.g. BJD, or BTJD given for Kepler).
MISSION_TIME_RANGES = {"Kepler": (100.0, 1600.0), "K2": (1900.0, 3300.0), "TESS": (1300.0, 6000.0)}


class TimeSystemError(ValueError):
    """Times that do not belong to the stated mission's time system."""


def check_mission(mission: str) -> str:
    if mission not in MISSION_OFFSETS:
        raise TimeSystemError(f"unknown mission {mission!r}; expected one of {sorted(MISSION_OFFSETS)}")
    return mission


def mission_to_bjd(time: np.ndarray, mission: str) -> Time:
    """Mission times (days, BKJD or BTJD) -> :class:`astropy.time.Time` in BJD_TDB.

    The offset is kept in the second double (``val2``), so sub-second precision survives.
    """
    offset = MISSION_OFFSETS[check_mission(mission)]
    return Time(np.full(np.shape(time), offset), np.asarray(time, dtype=float), format="jd", scale="tdb")


def bjd_to_mission(bjd: Time | np.ndarray | float, mission: str) -> np.ndarray:
    """BJD_TDB (a Time or plain days) -> days in the mission's system (BKJD or BTJD)."""
    offset = MISSION_OFFSETS[check_mission(mission)]
    t = bjd if isinstance(bjd, Time) else Time(np.asarray(bjd, dtype=float), format="jd", scale="tdb")
    delta: TimeDelta = t - Time(offset, format="jd", scale="tdb")
    return np.asarray(delta.to_value("day"), dtype=float)


def check_time_system(time: np.ndarray, mission: str, where: str) -> None:
    """Raise :class:`TimeSystemError` if finite ``time`` values lie outside the mission's range.

    ``where`` names the file/object in the message.
    """
    lo, hi = MISSION_TIME_RANGES[check_mission(mission)]
    finite = np.asarray(time, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return
    if finite.min() < lo or finite.max() > hi:
        raise TimeSystemError(
            f"{where}: field 'time' spans {finite.min():.3f}..{finite.max():.3f} d, outside the "
            f"{mission} range {lo:g}..{hi:g} of {MISSION_SYSTEMS[mission]} (BJD - {MISSION_OFFSETS[mission]:.0f}); "
            "wrong time system?")
