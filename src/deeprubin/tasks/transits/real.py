"""Real Kepler/K2/TESS light curves through the same segmenting and scoring path.

Readers return mission-time arrays (BKJD for Kepler/K2, BTJD for TESS, as the files
store them), binned to the cadence the model was trained on for that mission.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...sources.lightkurve_source import read_local
from ...sources.missions import MISSION_OFFSETS, check_time_system, read_koi_catalog


class RealDataError(ValueError):
    """A real light-curve file or target entry that cannot be used."""


def _bin(time: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, cadence_days: float):
    """Mean flux in bins of ``cadence_days`` (empty bins dropped); errors add in quadrature."""
    edges = np.arange(time.min(), time.max() + cadence_days, cadence_days)
    idx = np.digitize(time, edges) - 1
    df = pd.DataFrame({"i": idx, "t": time, "f": flux, "e2": flux_err ** 2})
    g = df.groupby("i")
    n = g.size()
    return (g["t"].mean().to_numpy(), g["f"].mean().to_numpy(), (np.sqrt(g["e2"].sum()) / n).to_numpy())


def read_real_lightcurve(path: Path, fmt: str, mission: str, cadence_days: float) -> dict:
    """Read one file -> ``{"time", "flux", "flux_err", "quality"}`` in the mission's time system.

    ``fmt``: ``fits`` (MAST light-curve file, read by the ``lightkurve`` source's
    :func:`~deeprubin.sources.lightkurve_source.read_local`: PDCSAP flux, default quality mask) or ``k2_csv`` (two columns, no header: time BKJD, normalised flux).
    """
    if not path.exists():
        raise RealDataError(f"{path}: no such file")
    if fmt == "fits":
        lc = read_local(path)[0]
        time = np.asarray(lc.time.value, dtype=float)
        flux = np.asarray(lc.flux.value, dtype=float)
        flux_err = np.asarray(lc.flux_err.value, dtype=float)
    elif fmt == "k2_csv":
        table = pd.read_csv(path, header=None)
        if table.shape[1] < 2:
            raise RealDataError(f"{path}: expected two columns (time BKJD, flux), found {table.shape[1]}")
        time = pd.to_numeric(table.iloc[:, 0], errors="coerce").to_numpy(dtype=float)
        flux = pd.to_numeric(table.iloc[:, 1], errors="coerce").to_numpy(dtype=float)
        flux_err = np.full(time.size, np.nan)
    else:
        raise RealDataError(f"{path}: unknown format {fmt!r}; use 'fits' or 'k2_csv'")
    check_time_system(time, mission, str(path))
    ok = np.isfinite(time) & np.isfinite(flux)
    time, flux, flux_err = time[ok], flux[ok], flux_err[ok]
    if time.size == 0:
        raise RealDataError(f"{path}: no finite (time, flux) pair")
    flux_err = np.where(np.isfinite(flux_err), flux_err, np.nanmedian(np.abs(np.diff(flux))))
    native = float(np.median(np.diff(time)))
    if cadence_days > 1.5 * native:  # bin short cadence to the training cadence of this mission
        time, flux, flux_err = _bin(time, flux, flux_err, cadence_days)
    return {"time": time, "flux": flux, "flux_err": flux_err, "quality": np.zeros(time.size, int)}


def real_ephemeris(target, catalog_path: Path | None) -> pd.DataFrame:
    """One-row ephemeris table (kind planet, period d, t0_bjd, duration d) of a real target.

    From the KOI catalogue when the entry has ``from_catalog: <kepid>`` (koi_period,
    koi_time0bk + 2454833, duration(days)), else from the entry's literature values.
    """
    name = str(target.name)
    if target.get("from_catalog") is not None:
        if catalog_path is None or not catalog_path.exists():
            raise RealDataError(f"real target {name}: catalogue {catalog_path} absent")
        cat = read_koi_catalog(catalog_path, ["kepid", "koi_tce_plnt_num", "koi_period", "koi_time0bk",
                                              "duration(days)"], where=f"real target {name}")
        rows = cat[cat["kepid"] == int(target.from_catalog)].sort_values("koi_tce_plnt_num")
        if rows.empty:
            raise RealDataError(f"{catalog_path}: no row with kepid {target.from_catalog} (target {name})")
        row = rows.iloc[0]
        period, t0, duration = float(row["koi_period"]), float(row["koi_time0bk"]) + MISSION_OFFSETS["Kepler"], \
            float(row["duration(days)"])
    else:
        period, t0, duration = float(target.period_days), float(target.t0_bjd), float(target.duration_hours) / 24
    return pd.DataFrame([{"object_id": name, "target_id": str(target.target_id), "mission": str(target.mission),
                          "kind": "planet", "period": period, "t0_bjd": t0, "duration": duration,
                          "snr_transit": np.nan}])


def rank_true_segments(table: pd.DataFrame) -> dict:
    """Ranks (1 = highest score) of the segments that hold a predicted transit among all
    segments of ``table`` (label 1 = holds a transit; controls have label 0), and the
    ROC-AUC of transit against transit-free segments."""
    from sklearn.metrics import roc_auc_score

    order = table.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    ranks = (np.flatnonzero(order["label"].to_numpy() == 1) + 1).tolist()
    n = len(order)
    both = 0 < len(ranks) < n
    return {"n_segments": int(n), "n_transit_segments": int(len(ranks)), "transit_segment_ranks": ranks,
            "roc_auc_transit_vs_no_transit": float(roc_auc_score(order["label"], order["score"])) if both else None,
            "best_transit_rank": int(min(ranks)) if ranks else None,
            "top_segment_has_transit": bool(ranks and ranks[0] == 1),
            "mean_score_transit": float(order.loc[order["label"] == 1, "score"].mean()) if ranks else None,
            "mean_score_other": float(order.loc[order["label"] == 0, "score"].mean()) if n > len(ranks) else None}
