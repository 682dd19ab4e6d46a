"""Planet and host parameters: drawn from the Kepler KOI catalogue, or a built-in fallback.

The catalogue (``kepler_confirmed_planets.csv``) supplies periods, transit durations,
stellar radii and masses, Kepler magnitudes and quadratic limb-darkening coefficients,
so the simulated signal-to-noise distribution follows real Kepler hosts. It has no
planet radii: those come from ``simulate.planet_radius_earth`` (log-uniform).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ....sources.missions import read_koi_catalog

log = logging.getLogger(__name__)

#: Catalogue column -> host/planet parameter name.
CATALOG_COLUMNS = {
    "koi_period": "period",
    "duration(days)": "duration",
    "radius": "stellar_radius",
    "mass": "stellar_mass",
    "koi_kepmag": "kepmag",
    "koi_ldm_coeff1": "u1",
    "koi_ldm_coeff2": "u2",
}


def load_catalog(path: str | Path) -> tuple[pd.DataFrame, int]:
    """Read the KOI table; keep rows whose parameters are all finite and physical.

    Returns
    -------
    (pandas.DataFrame, int)
        Rows with columns ``period`` (d), ``duration`` (d), ``stellar_radius`` (R_sun),
        ``stellar_mass`` (M_sun), ``kepmag``, ``u1``, ``u2``; and the number of rows dropped.
    """
    table = read_koi_catalog(path, list(CATALOG_COLUMNS), where="transits.simulate.catalog")
    cat = table[list(CATALOG_COLUMNS)].rename(columns=CATALOG_COLUMNS).apply(pd.to_numeric, errors="coerce")
    ok = cat.notna().all(axis=1) & (cat["period"] > 0) & (cat["duration"] > 0) \
        & (cat["duration"] < 0.25 * cat["period"]) & (cat["stellar_radius"] > 0) & (cat["stellar_mass"] > 0)
    return cat[ok].reset_index(drop=True), int((~ok).sum())


def fallback_catalog(cfg, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` host/planet rows from the built-in distribution (``simulate.fallback``)."""
    fb = cfg.fallback
    period = np.exp(rng.uniform(*np.log(list(fb.period_days)), n))
    duration = rng.uniform(*fb.duration_hours, n) / 24.0
    return pd.DataFrame({
        "period": period,
        "duration": np.minimum(duration, 0.2 * period),
        "stellar_radius": rng.uniform(*fb.stellar_radius, n),
        "stellar_mass": rng.uniform(*fb.stellar_mass, n),
        "kepmag": rng.uniform(*cfg.noise.kepmag_range, n),
        "u1": np.full(n, float(fb.limb_darkening[0])),
        "u2": np.full(n, float(fb.limb_darkening[1])),
    })


def host_table(cfg, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """``n`` rows of host/planet parameters and a report of where they came from."""
    path = Path(str(cfg.catalog)) if cfg.get("catalog") else None
    if path is not None and path.exists():
        cat, dropped = load_catalog(path)
        if len(cat):
            rows = cat.iloc[rng.integers(0, len(cat), n)].reset_index(drop=True)
            return rows, {"source": str(path), "catalog_rows": int(len(cat)), "catalog_rows_dropped": dropped}
    log.warning("transits simulate: catalogue %s absent; using the built-in parameter distribution", path)
    return fallback_catalog(cfg, n, rng), {"source": "fallback", "catalog_rows": 0, "catalog_rows_dropped": 0}
