"""Data-quality flags per object: photometry that passes the schema but that no model should trust.

The schema (:mod:`deeprubin.core.schema`) rejects what is malformed (NaN, negative errors, unknown
bands). Some light curves are well-formed and still implausible: every magnitude at a
"no measurement" sentinel, no detection at all (e.g. a flipped flux sign), times of one
object half in JD and half in MJD, fluxes no survey target can have. :func:`quality_table`
flags them, per object, with counts; thresholds come from the ``quality`` config node:

==================== ==================================================================
flag                 meaning
==================== ==================================================================
``sentinel_mag``     every magnitude of the object at or above ``sentinel_mag`` (e.g. 99.99)
``no_detection``     no point with flux / flux_err >= ``detection_snr`` (or ``detected``)
``mixed_time_system`` JD-sized (>= ``jd_min``) and MJD-sized (< ``mjd_max``) times together
``implausible_flux`` some |flux| above ``max_abs_flux_ujy`` (microjansky)
``conflicting_duplicates`` an epoch given twice or more whose fluxes disagree by more than
                     ``duplicate_conflict_sigma`` (the source merged them; see below)
==================== ==================================================================

Repeated epochs are merged by the source (``source.duplicates``); the files source records
per object, in the objects table, how many epochs were repeated (``n_duplicate_epochs``), how
many rows were merged away (``n_duplicate_rows``) and the largest disagreement
(``duplicate_spread_sigma``: (max - min flux) / (sqrt(2) x rms error)). Sources without
repeated epochs (the simulator, ALeRCE's API) have no such columns: zero.

The ingest stage records the flags and counts in its report; the predict path does not
classify objects whose flags are in ``quality.unusable``: it lists them, with their flags.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .config import ConfigError

FLAGS = ("sentinel_mag", "no_detection", "mixed_time_system", "implausible_flux", "conflicting_duplicates")
THRESHOLDS = ("detection_snr", "sentinel_mag", "jd_min", "mjd_max", "max_abs_flux_ujy", "duplicate_conflict_sigma")
#: Objects-table columns written by sources that merge repeated epochs (deeprubin.sources.files).
DUPLICATE_COLUMNS = ("n_duplicate_epochs", "n_duplicate_rows", "duplicate_spread_sigma")


def check_quality_config(node: Mapping[str, Any] | None, key: str = "quality") -> dict:
    """The ``quality`` node as a plain dict, every threshold a positive number and every flag known.

    Raises
    ------
    ConfigError
        Naming the key: missing node or threshold, non-positive or non-numeric value, unknown flag.
    """
    if node is None:
        raise ConfigError(f"config key '{key}' is missing (data-quality thresholds, conf/quality/default.yaml)")
    out = {}
    for name in THRESHOLDS:
        value = node.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"config key '{key}.{name}' must be a positive number, got {value!r}")
        out[name] = float(value)
    if not out["mjd_max"] < out["jd_min"]:
        raise ConfigError(f"config key '{key}.mjd_max' ({out['mjd_max']}) must be below '{key}.jd_min' "
                          f"({out['jd_min']})")
    unusable = list(node.get("unusable") or [])
    unknown = sorted(set(map(str, unusable)) - set(FLAGS))
    if unknown:
        raise ConfigError(f"config key '{key}.unusable' has unknown flag(s) {unknown}; known: {list(FLAGS)}")
    out["unusable"] = [str(f) for f in unusable]
    return out


def quality_table(lightcurves: pd.DataFrame, quality: Mapping[str, Any],
                  objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per object: ``quality_flags`` (``;``-joined, empty when none) and the counts behind them.

    Columns: ``object_id``, ``quality_flags``, ``n_points``, ``n_detections``,
    ``n_sentinel_mag``, ``n_jd_times``, ``n_mjd_times``, ``n_implausible_flux`` and the
    :data:`DUPLICATE_COLUMNS`, taken from ``objects`` where it has them (else zero).
    """
    q = check_quality_config(quality)
    lc = lightcurves
    oid = lc["object_id"].astype(str).to_numpy()
    flux = lc["flux"].to_numpy(dtype=float)
    err = lc["flux_err"].to_numpy(dtype=float)
    time = lc["time"].to_numpy(dtype=float)
    if "detected" in lc.columns:
        detected = lc["detected"].fillna(False).astype(bool).to_numpy()
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            detected = flux / err >= q["detection_snr"]
    has_mag = "mag" in lc.columns
    mag = lc["mag"].to_numpy(dtype=float) if has_mag else np.full(len(lc), np.nan)
    per_row = pd.DataFrame({
        "object_id": oid,
        "n_points": 1,
        "n_detections": detected.astype(int),
        "n_mag": np.isfinite(mag).astype(int),
        "n_sentinel_mag": (mag >= q["sentinel_mag"]).astype(int),
        "n_jd_times": (time >= q["jd_min"]).astype(int),
        "n_mjd_times": (time < q["mjd_max"]).astype(int),
        "n_implausible_flux": (np.abs(flux) > q["max_abs_flux_ujy"]).astype(int),
    })
    table = per_row.groupby("object_id", sort=True).sum().reset_index()
    dup = (objects.assign(object_id=objects["object_id"].astype(str)).set_index("object_id")
           if objects is not None else pd.DataFrame(index=pd.Index([], name="object_id")))
    for col in DUPLICATE_COLUMNS:
        values = dup[col] if col in dup.columns else pd.Series(dtype=float)
        table[col] = table["object_id"].map(values).fillna(0).to_numpy()
        table[col] = table[col].astype(float if col == "duplicate_spread_sigma" else int)
    flags = {
        "sentinel_mag": (table["n_mag"] > 0) & (table["n_sentinel_mag"] == table["n_mag"]),
        "no_detection": table["n_detections"] == 0,
        "mixed_time_system": (table["n_jd_times"] > 0) & (table["n_mjd_times"] > 0),
        "implausible_flux": table["n_implausible_flux"] > 0,
        "conflicting_duplicates": table["duplicate_spread_sigma"] > q["duplicate_conflict_sigma"],
    }
    names = np.array(FLAGS, dtype=object)
    matrix = np.column_stack([flags[f].to_numpy() for f in FLAGS])
    table.insert(1, "quality_flags", [";".join(names[row]) for row in matrix])
    return table.drop(columns="n_mag")


def unusable_mask(table: pd.DataFrame, unusable: list[str]) -> np.ndarray:
    """True for objects of :func:`quality_table` carrying any flag in ``unusable``."""
    wanted = set(unusable)
    return np.array([bool(wanted & set(filter(None, str(f).split(";")))) for f in table["quality_flags"]])


def summary(table: pd.DataFrame, unusable: list[str]) -> dict:
    """Counts per flag, the flagged objects and the unusable ones, for reports."""
    flagged = table.loc[table["quality_flags"] != ""]
    return {
        "n_objects": int(len(table)),
        "n_flagged": int(len(flagged)),
        "by_flag": {f: int(sum(f in str(x).split(";") for x in table["quality_flags"])) for f in FLAGS},
        "unusable_flags": list(unusable),
        "n_unusable": int(unusable_mask(table, unusable).sum()),
        "n_duplicate_epochs": int(table["n_duplicate_epochs"].sum()) if "n_duplicate_epochs" in table else 0,
        "max_duplicate_spread_sigma": (round(float(table["duplicate_spread_sigma"].max()), 3)
                                       if "duplicate_spread_sigma" in table and len(table) else 0.0),
        "flagged_objects": dict(zip(flagged["object_id"].astype(str), flagged["quality_flags"].astype(str))),
    }
