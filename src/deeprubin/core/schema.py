"""The two canonical tables every light curve passes through, and their validation.

``lightcurves`` is a long table, one row per observation:

=========== ======= =====================================================
column      dtype   meaning
=========== ======= =====================================================
object_id   str     identifier, unique per object
time        float64 observation time in days (MJD for ZTF-like data)
band        str     passband name, e.g. ``"g"``, ``"r"``
flux        float64 flux density in microjansky (AB zero point 23.9 mag)
flux_err    float64 1-sigma flux uncertainty, same unit, strictly > 0
mag         float64 optional AB magnitude
mag_err     float64 optional magnitude uncertainty
detected    bool    optional: True where flux/flux_err >= 5 (alert-style)
=========== ======= =====================================================

``objects`` is one row per object: ``object_id``, ``label``, ``group_id`` (the unit
that must never straddle splits), ``source`` and optional metadata (``ra``, ``dec``,
``redshift``, ...) plus ``truth_*`` columns for simulated objects.

Validation happens where data enters the pipeline (the ingest stage). Every error
names the object and the column so a user can find the bad row.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Zero point that turns AB magnitudes into microjansky: f = 10**(-0.4 (m - 23.9)).
AB_ZEROPOINT_UJY = 23.9

LIGHTCURVE_REQUIRED = ("object_id", "time", "band", "flux", "flux_err")
LIGHTCURVE_OPTIONAL = ("mag", "mag_err", "detected")
OBJECT_REQUIRED = ("object_id", "label", "group_id", "source")

_FLOAT_COLUMNS = ("time", "flux", "flux_err")


class SchemaError(ValueError):
    """Input that does not follow the canonical schema.

    The message always names the table (or file), the object and the column.
    """


@dataclass
class ValidationReport:
    """What validation changed: objects dropped (with the reason) and rows re-sorted."""

    n_objects_in: int = 0
    n_objects_out: int = 0
    dropped: dict[str, str] = field(default_factory=dict)
    resorted_objects: int = 0

    def as_dict(self) -> dict:
        reasons: dict[str, int] = {}
        for reason in self.dropped.values():
            key = reason.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {
            "n_objects_in": self.n_objects_in,
            "n_objects_out": self.n_objects_out,
            "n_dropped": len(self.dropped),
            "dropped_by_reason": reasons,
            "dropped_objects": dict(sorted(self.dropped.items())),
            "resorted_objects": self.resorted_objects,
        }


def mag_to_flux(mag, mag_err=None):
    """AB magnitude -> flux density in microjansky (and its 1-sigma error)."""
    flux = 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - AB_ZEROPOINT_UJY))
    if mag_err is None:
        return flux
    return flux, flux * np.log(10.0) / 2.5 * np.asarray(mag_err, dtype=float)


def flux_to_mag(flux, flux_err=None):
    """Flux density in microjansky -> AB magnitude (NaN where flux <= 0)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, AB_ZEROPOINT_UJY - 2.5 * np.log10(flux), np.nan)
        if flux_err is None:
            return mag
        mag_err = np.where(flux > 0, 2.5 / np.log(10.0) * np.asarray(flux_err) / flux, np.nan)
    return mag, mag_err


def _require_columns(df: pd.DataFrame, required, table: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{table}: missing required column(s) {missing}; found {list(df.columns)}"
        )


def _first_bad_object(df: pd.DataFrame, mask: np.ndarray) -> str:
    return str(df.loc[mask, "object_id"].iloc[0])


def _object_problems(lc: pd.DataFrame, bands: list[str] | None, min_points: int,
                     min_bands: int) -> dict[str, str]:
    """Map object_id -> first problem found, for every malformed object."""
    problems: dict[str, str] = {}

    def flag(mask, reason_fn):
        for oid in pd.unique(lc.loc[mask, "object_id"]):
            problems.setdefault(str(oid), reason_fn(oid))

    for col in _FLOAT_COLUMNS:
        values = lc[col].to_numpy(dtype=float)
        flag(~np.isfinite(values), lambda oid, c=col: f"non_finite: column '{c}' has NaN or infinite values")
    err = lc["flux_err"].to_numpy(dtype=float)
    flag(np.isfinite(err) & (err <= 0), lambda oid: "non_positive_error: column 'flux_err' <= 0")
    if bands is not None:
        flag(~lc["band"].isin(bands).to_numpy(),
             lambda oid: f"unknown_band: column 'band' has values outside {list(bands)}")
    dup = lc.duplicated(subset=["object_id", "band", "time"], keep=False).to_numpy()
    flag(dup, lambda oid: "duplicate_time: repeated (band, time) in column 'time'")
    counts = lc.groupby("object_id", sort=False).size()
    for oid, n in counts.items():
        if n < min_points:
            problems.setdefault(str(oid), f"too_few_points: {n} < min_points={min_points}")
    nb = lc.groupby("object_id", sort=False)["band"].nunique()
    for oid, n in nb.items():
        if n < min_bands:
            problems.setdefault(str(oid), f"too_few_bands: {n} < min_bands={min_bands}")
    return problems


def validate_tables(
    lightcurves: pd.DataFrame,
    objects: pd.DataFrame,
    *,
    classes: list[str] | None = None,
    bands: list[str] | None = None,
    min_points: int = 3,
    min_bands: int = 1,
    on_invalid: str = "raise",
    table: str = "lightcurves",
) -> tuple[pd.DataFrame, pd.DataFrame, ValidationReport]:
    """Check both tables against the schema and return clean, sorted copies.

    Parameters
    ----------
    lightcurves, objects : pandas.DataFrame
        The two canonical tables (see module docstring).
    classes : list of str, optional
        Allowed labels; an unknown label is always an error (a typo in a label
        silently becoming a new class would corrupt every metric).
    bands : list of str, optional
        Allowed band names.
    min_points, min_bands : int
        Objects with fewer observations or distinct bands are malformed.
    on_invalid : {"raise", "drop"}
        ``"raise"``: the first malformed object raises :class:`SchemaError`
        naming object and column. ``"drop"``: malformed objects are removed and
        listed, with their reason, in the returned report.
    table : str
        Name (usually the file) used in error messages.

    Returns
    -------
    lightcurves, objects : pandas.DataFrame
        Copies sorted by (object_id, time, band); only objects present in both.
    report : ValidationReport
    """
    if on_invalid not in ("raise", "drop"):
        raise SchemaError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    _require_columns(lightcurves, LIGHTCURVE_REQUIRED, table)
    _require_columns(objects, OBJECT_REQUIRED, f"objects table for {table}")
    lc = lightcurves.copy()
    obj = objects.copy()
    lc["object_id"] = lc["object_id"].astype(str)
    lc["band"] = lc["band"].astype(str)
    obj["object_id"] = obj["object_id"].astype(str)
    obj["group_id"] = obj["group_id"].astype(str)
    obj["label"] = obj["label"].astype(str)
    for col in _FLOAT_COLUMNS:
        converted = pd.to_numeric(lc[col], errors="coerce")
        bad = converted.isna() & lc[col].notna()
        if bad.any():
            raise SchemaError(
                f"{table}: object '{_first_bad_object(lc, bad.to_numpy())}': column '{col}' "
                f"has non-numeric value {lc.loc[bad, col].iloc[0]!r}"
            )
        lc[col] = converted.astype("float64")

    if obj["object_id"].duplicated().any():
        oid = obj.loc[obj["object_id"].duplicated(), "object_id"].iloc[0]
        raise SchemaError(f"objects table for {table}: object '{oid}': column 'object_id' is duplicated")
    if classes is not None:
        unknown = ~obj["label"].isin(classes)
        if unknown.any():
            row = obj.loc[unknown].iloc[0]
            raise SchemaError(
                f"objects table for {table}: object '{row['object_id']}': column 'label' has "
                f"unknown value {row['label']!r}; allowed: {list(classes)}"
            )

    report = ValidationReport(n_objects_in=len(obj))
    without_obs = sorted(set(obj["object_id"]) - set(lc["object_id"]))
    problems = {oid: "empty: no rows in lightcurves" for oid in without_obs}
    missing_meta = sorted(set(lc["object_id"]) - set(obj["object_id"]))
    if missing_meta:
        raise SchemaError(
            f"{table}: object '{missing_meta[0]}': column 'object_id' has no row in the objects table"
        )
    problems.update(_object_problems(lc, bands, min_points, min_bands))

    if problems:
        if on_invalid == "raise":
            oid = sorted(problems)[0]
            raise SchemaError(f"{table}: object '{oid}': {problems[oid]}")
        report.dropped = problems
        keep = ~lc["object_id"].isin(list(problems))
        lc = lc.loc[keep]
        obj = obj.loc[~obj["object_id"].isin(list(problems))]

    # Unsorted input is legal: sort it (and count how many objects needed it).
    order_ok = lc.groupby("object_id", sort=False)["time"].apply(lambda t: bool(t.is_monotonic_increasing))
    report.resorted_objects = int((~order_ok).sum())
    lc = lc.sort_values(["object_id", "time", "band"], kind="mergesort").reset_index(drop=True)
    obj = obj.sort_values("object_id", kind="mergesort").reset_index(drop=True)
    report.n_objects_out = len(obj)
    return lc, obj, report
