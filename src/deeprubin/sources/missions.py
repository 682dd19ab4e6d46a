"""Kepler, K2 and TESS in one table: ids, time systems (through astropy), the KOI catalogue.

Every reader of space-photometry data uses this module: the ``lightkurve`` source (MAST or
local FITS), the transits task's simulator and its real-data check. Kepler and K2 times are
BKJD = BJD_TDB - 2454833; TESS times are BTJD = BJD_TDB - 2457000. Ephemerides are stored in
BJD_TDB and converted into a light curve's own system.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy.time import Time, TimeDelta

from ..core.schema import SchemaError


@dataclass(frozen=True)
class Mission:
    name: str              # lightkurve's / MAST's spelling
    id_prefix: str         # canonical object id prefix ("KIC 10666592")
    time_system: str       # the files' own day count
    bjd_offset: float      # BJD_TDB = time + bjd_offset
    time_range: tuple[float, float]   # plausible times in its own system (days)


#: Plausible ranges: Kepler prime mission 2009-2013, K2 2014-2018, TESS from 2018 (sector 1
#: starts at BTJD 1325). A time outside them means the wrong system (e.g. BJD, or BTJD for Kepler).
MISSIONS: dict[str, Mission] = {
    "kepler": Mission("Kepler", "KIC", "BKJD", 2454833.0, (100.0, 1600.0)),
    "k2": Mission("K2", "EPIC", "BKJD", 2454833.0, (1900.0, 3300.0)),
    "tess": Mission("TESS", "TIC", "BTJD", 2457000.0, (1300.0, 6000.0)),
}
#: Id prefixes (archive spellings included) -> mission key.
PREFIX_MISSION = {"KIC": "kepler", "KPLR": "kepler", "EPIC": "k2", "KTWO": "k2", "TIC": "tess"}
_BY_NAME = {m.name: m for m in MISSIONS.values()}
#: Views keyed by lightkurve's mission name (the transits tables' ``mission`` column).
MISSION_OFFSETS = {m.name: m.bjd_offset for m in MISSIONS.values()}
MISSION_SYSTEMS = {m.name: m.time_system for m in MISSIONS.values()}
MISSION_TIME_RANGES = {m.name: m.time_range for m in MISSIONS.values()}


class TimeSystemError(ValueError):
    """Times that do not belong to the stated mission's time system."""


def check_mission(mission: str) -> str:
    """``mission`` (``Kepler``, ``K2``, ``TESS``) if known, else :class:`TimeSystemError`."""
    if mission not in _BY_NAME:
        raise TimeSystemError(f"unknown mission {mission!r}; expected one of {sorted(_BY_NAME)}")
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


def read_koi_catalog(path: str | Path, columns: Sequence[str] | Mapping[str, str | None] = (),
                     where: str = "catalog") -> pd.DataFrame:
    """The Kepler KOI / planet-candidate table (``kepler_confirmed_planets.csv``: one row per
    planet candidate, ``kepid`` the star; ``koi_period`` d, ``koi_time0bk`` BKJD,
    ``duration(days)``, host parameters).

    ``columns``: the columns the caller needs; a list, or ``{config key: column}`` so that a
    missing column names the config key that chose it (``None`` entries are not needed).
    Raises ``FileNotFoundError`` naming ``where`` for an absent file and
    :class:`deeprubin.core.schema.SchemaError` naming the file and column for a missing column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{where}: catalogue file {path} does not exist")
    table = pd.read_csv(path)
    needed = columns.items() if isinstance(columns, Mapping) else ((None, c) for c in columns)
    for key, col in needed:
        if col and col not in table.columns:
            hint = f" (config '{key}')" if key else ""
            raise SchemaError(f"{path}: missing column '{col}'{hint}")
    return table
