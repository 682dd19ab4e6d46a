"""Real Kepler/K2/TESS light curves through the same segmenting and scoring path.

Readers return mission-time arrays (BKJD for Kepler/K2, BTJD for TESS, as the files
store them), binned to the cadence the model was trained on for that mission.
:func:`to_transit_tables` turns the canonical tables of a registry source (``lightkurve``,
``files``) into the task's raw tables, as its ingest step writes them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...core.schema import SchemaError
from ...sources.missions import MISSION_OFFSETS, MISSIONS, check_time_system, read_koi_catalog
from .ephemeris import EPHEMERIS_COLUMNS


#: Columns of a known-planets table (``ephemerides.path``): days, BJD_TDB.
KNOWN_EPHEMERIS_COLUMNS = ("target_id", "period", "t0_bjd", "duration")


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


def bin_to_cadence(time: np.ndarray, flux: np.ndarray, flux_err: np.ndarray, cadence_days: float):
    """``(time, flux, flux_err, cadence_days)``: binned to ``cadence_days`` when the light curve's own
    cadence is more than 1.5 times shorter (short cadence -> the model's cadence), else unchanged
    with its own median cadence."""
    native = float(np.median(np.diff(time))) if time.size > 1 else cadence_days
    if cadence_days > 1.5 * native:
        time, flux, flux_err = _bin(time, flux, flux_err, cadence_days)
        return time, flux, flux_err, cadence_days
    return time, flux, flux_err, native


def _fill_errors(flux: np.ndarray, flux_err: np.ndarray) -> np.ndarray:
    """Missing errors -> the light curve's median point-to-point difference."""
    fallback = np.nanmedian(np.abs(np.diff(flux))) if flux.size > 1 else np.nan
    return np.where(np.isfinite(flux_err) & (flux_err > 0), flux_err, fallback)


def to_transit_tables(lightcurves: pd.DataFrame, objects: pd.DataFrame, cadence_minutes: dict,
                      ephemerides: pd.DataFrame | None = None, *, where: str = "source"
                      ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Canonical (validated) tables of a space-photometry source -> the transits task's raw tables.

    Parameters
    ----------
    lightcurves, objects : pandas.DataFrame
        The canonical tables (:mod:`deeprubin.core.schema`) with ``band`` = mission in lower
        case (``kepler``, ``k2``, ``tess``), times in the mission's own system (BKJD, BTJD) and
        relative fluxes, as the ``lightkurve`` source (``time_format: native``) and the ``files``
        source with ``relative_flux: true`` write them. ``objects`` may carry ``target_id`` (else
        ``group_id`` is the star) and a catalogue ephemeris (``ephemeris_period``, ``ephemeris_t0``
        in the light curve's system, ``ephemeris_duration``; the ``lightkurve`` source's catalogue).
    cadence_minutes : dict
        Mission name -> the model's cadence; shorter cadences are binned to it.
    ephemerides : pandas.DataFrame, optional
        Known planets (``target_id``, ``period`` [d], ``t0_bjd``, ``duration`` [d]), matched to the
        objects by ``target_id``.

    Returns
    -------
    (lightcurves, objects, ephemerides)
        ``object_id, time, flux, flux_err, quality`` (quality 0: the sources drop flagged
        cadences); ``object_id, target_id, group_id, mission, time_system, cadence_days, label``;
        one ephemeris row per (object, planet) with ``kind`` = planet.

    Raises
    ------
    SchemaError
        Naming ``where``, the object and the field: a band that is no mission, a time system
        other than the mission's own, times outside the mission's range.
    """
    lc_by_object = dict(tuple(lightcurves.groupby("object_id", sort=False)))
    known = ephemerides if ephemerides is not None else pd.DataFrame(columns=list(KNOWN_EPHEMERIS_COLUMNS))
    lc_rows, obj_rows, eph_rows = [], [], []
    for obj in objects.sort_values("object_id", kind="mergesort").to_dict("records"):
        oid = str(obj["object_id"])
        lc = lc_by_object[oid].sort_values("time", kind="mergesort")
        bands = sorted(set(lc["band"].astype(str)))
        if len(bands) != 1 or bands[0] not in MISSIONS:
            raise SchemaError(f"{where}: object {oid!r}: column 'band' must be one mission of "
                              f"{sorted(MISSIONS)}, got {bands}")
        mission = MISSIONS[bands[0]]
        system = obj.get("time_system")
        if isinstance(system, str) and system != mission.time_system:
            raise SchemaError(f"{where}: object {oid!r}: field 'time_system' is {system!r}, the transits task "
                              f"works in {mission.name}'s own {mission.time_system} (lightkurve: "
                              "source.time_format=per_mission)")
        time = lc["time"].to_numpy(dtype=float)
        check_time_system(time, mission.name, f"{where}: object {oid!r}")
        flux = lc["flux"].to_numpy(dtype=float)
        flux_err = _fill_errors(flux, lc["flux_err"].to_numpy(dtype=float))
        time, flux, flux_err, cadence = bin_to_cadence(time, flux, flux_err,
                                                       float(cadence_minutes[mission.name]) / 1440.0)
        target = obj.get("target_id")
        target = str(target) if isinstance(target, str) and target else str(obj.get("group_id") or oid)
        lc_rows.append(pd.DataFrame({"object_id": oid, "time": time, "flux": flux, "flux_err": flux_err,
                                     "quality": np.zeros(time.size, dtype=np.int64)}))
        obj_rows.append({"object_id": oid, "target_id": target, "group_id": str(obj.get("group_id") or target),
                         "mission": mission.name, "time_system": mission.time_system, "cadence_days": cadence,
                         "label": str(obj["label"])})
        period = obj.get("ephemeris_period")
        if period is not None and np.isfinite(float(period)):
            eph_rows.append({"object_id": oid, "target_id": target, "mission": mission.name, "kind": "planet",
                             "period": float(period), "t0_bjd": float(obj["ephemeris_t0"]) + mission.bjd_offset,
                             "duration": float(obj["ephemeris_duration"])})
        for row in known[known["target_id"].astype(str) == target].itertuples(index=False):
            eph_rows.append({"object_id": oid, "target_id": target, "mission": mission.name, "kind": "planet",
                             "period": float(row.period), "t0_bjd": float(row.t0_bjd), "duration": float(row.duration)})
    eph = pd.DataFrame(eph_rows, columns=["object_id", "mission", *EPHEMERIS_COLUMNS])
    return (pd.concat(lc_rows, ignore_index=True), pd.DataFrame(obj_rows),
            eph.drop_duplicates(["object_id", "period", "t0_bjd"]).reset_index(drop=True))


def read_ephemerides(path: str | Path) -> pd.DataFrame:
    """A CSV of known planets (``target_id, period, t0_bjd, duration``; days, BJD_TDB).

    Raises
    ------
    SchemaError
        Naming the file, the column and the line of a missing column or a non-numeric value.
    """
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: no such ephemerides file (config key 'ephemerides.path')")
    table = pd.read_csv(path, dtype={"target_id": str})
    missing = [c for c in KNOWN_EPHEMERIS_COLUMNS if c not in table.columns]
    if missing:
        raise SchemaError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    for col in KNOWN_EPHEMERIS_COLUMNS[1:]:
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2   # header is line 1
            raise SchemaError(f"{path}: column '{col}', line {line}: not a number: {table[col].iloc[line - 2]!r}")
        table[col] = values.astype(float)
    return table[list(KNOWN_EPHEMERIS_COLUMNS)]


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


def vet_known_planet(candidates: list[dict], scores: np.ndarray, period: float, threshold: float,
                     tolerance: float) -> dict:
    """How the search and the vetter did on a real star with a known planet of ``period``.

    ``candidates``: the search's candidates in rank order; ``scores``: their vetting
    probabilities; ``threshold``: the vetter's threshold at the validation false-positive rate.
    The known planet is found when the top candidate's period is within ``tolerance``
    (relative) of ``period`` and its score passes the threshold.
    """
    rows = [{"rank": int(c["rank"]), "period": float(c["period"]), "t0": float(c["t0"]),
             "duration": float(c["duration"]), "depth": float(c["depth"]), "depth_snr": float(c["depth_snr"]),
             "sde": float(c["sde"]), "vetting_score": float(s)} for c, s in zip(candidates, scores)]
    match = next((r for r in rows if abs(r["period"] / period - 1.0) <= tolerance), None)
    top = rows[0] if rows else None
    return {"known_period": float(period), "period_tolerance": float(tolerance),
            "vetting_threshold": float(threshold), "candidates": rows,
            "top_candidate_period": top["period"] if top else None,
            "top_candidate_period_error": abs(top["period"] / period - 1.0) if top else None,
            "known_planet_rank": match["rank"] if match else None,
            "vetting_score": match["vetting_score"] if match else None,
            "passes_vetting": bool(match and match["vetting_score"] > threshold),
            "found": bool(match and match["rank"] == 1 and match["vetting_score"] > threshold)}
