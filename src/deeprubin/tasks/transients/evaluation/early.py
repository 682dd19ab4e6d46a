"""Early classification: cut raw light curves a few days after their first detection.

On a live alert stream a classifier sees only what has been observed so far, so the
truncation happens on the *raw* table, before the GP interpolation (which then places
the reference time at the brightest significant point seen so far, as it would live).
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def first_detection_times(lightcurves: pd.DataFrame, detection_snr: float) -> pd.Series:
    """MJD of each object's first detection.

    A detection is a row with ``detected == True`` when the table has that column
    (alert-style sources), else a row with ``flux / flux_err >= detection_snr``.
    Objects never detected are absent from the result.

    Returns
    -------
    pandas.Series
        Index ``object_id`` (str), values first detection time [MJD].
    """
    missing = [c for c in ("object_id", "time", "flux", "flux_err") if c not in lightcurves.columns]
    if missing:
        raise ValueError(f"lightcurves: missing required column(s) {missing}")
    if "detected" in lightcurves.columns:
        detected = lightcurves["detected"].fillna(False).astype(bool).to_numpy()
    else:
        detected = (lightcurves["flux"] / lightcurves["flux_err"] >= detection_snr).to_numpy()
    rows = lightcurves.loc[detected, ["object_id", "time"]]
    first = rows.groupby(rows["object_id"].astype(str))["time"].min()
    first.index.name = "object_id"
    return first


def truncate_lightcurves(lightcurves: pd.DataFrame, first_detection: pd.Series, days: float) -> pd.DataFrame:
    """Rows observed no later than ``first_detection + days`` (objects without a detection dropped).

    Parameters
    ----------
    lightcurves : pandas.DataFrame
        Canonical long table (``object_id``, ``time`` [MJD], ...).
    first_detection : pandas.Series
        From :func:`first_detection_times`.
    days : float
        Days after the first detection kept (>= 0); earlier (non-detection) rows are kept too.
    """
    if not days >= 0:
        raise ValueError(f"truncate_lightcurves: days must be >= 0, got {days!r}")
    cutoff = lightcurves["object_id"].astype(str).map(first_detection).to_numpy(dtype=float)
    keep = np.isfinite(cutoff) & (lightcurves["time"].to_numpy(dtype=float) <= cutoff + days)
    return lightcurves.loc[keep].reset_index(drop=True)
