"""ZTF alert photometry (ALeRCE layout) -> the canonical ``lightcurves`` / ``objects`` tables.

The input is what the ALeRCE ZTF API returns for ``query_detections`` /
``query_non_detections`` (one row per alert, ZTF alert column names), or the same
layout saved to CSV (e.g. ``ztf_alerce_30sne/detections_corr.csv``). Columns read:

================== ========================================================================
``objectId``/``oid`` object identifier (``object_id`` is accepted too)
``fid``            ZTF filter id: 1 = g, 2 = r, 3 = i
``mjd``            observation time in MJD (``jd`` is accepted and converted: MJD = JD - 2400000.5)
``magpsf``         PSF magnitude of the *difference* image (always positive: the magnitude of
                   ``|science - reference|``)
``sigmapsf``       its 1-sigma error
``isdiffpos``      sign of the difference: ``'t'``/``1``/``True`` positive, ``'f'``/``0``/``-1``
                   /``False`` negative (ZTF alerts use t/f, the ALeRCE API 1/-1)
``magpsf_corr``    ALeRCE "corrected" magnitude: the apparent magnitude of the whole source,
                   reference flux included, ``-2.5 log10(10^-0.4 magnr + sgn 10^-0.4 magpsf)``;
                   only present (finite) when the alert was matched to a reference-image source
                   (ALeRCE's ``corrected`` flag)
``sigmapsf_corr_ext`` error of ``magpsf_corr`` from the difference-image error alone
``sigmapsf_corr``  error of ``magpsf_corr`` including the reference-source error (ALeRCE sets
                   it to 100 when that radicand is negative)
``dubious``        optional ALeRCE flag: the correction is unreliable for that alert
``ra``, ``dec``    optional, averaged per object into ``objects``
================== ========================================================================

Which magnitudes become ``flux`` (``magnitudes=`` argument, default ``"auto"``)
---------------------------------------------------------------------------------
* ``"difference"``: ``flux = sign(isdiffpos) * 10**(-0.4 (magpsf - 23.9))`` µJy, the flux of the
  transient above the reference image (negative when the source faded below it). Error
  ``|flux| * ln(10)/2.5 * sigmapsf``.
* ``"corrected"``: every row whose ``magpsf_corr`` and error are finite (and not ``dubious``) uses
  ``flux = 10**(-0.4 (magpsf_corr - 23.9))``, the total flux of the source; the other rows fall
  back to the difference flux. This mixes two zero levels inside one light curve, so use it
  only when you know every object is corrected.
* ``"auto"`` (default): per *object*, corrected magnitudes when **all** its detections carry a
  usable correction (finite ``magpsf_corr`` and error, not ``dubious``), otherwise difference
  flux for all of its rows. The corrected magnitude is the physically meaningful brightness of
  a variable star or QSO sitting on its own reference-image counterpart, but it is only valid
  where ALeRCE could compute it; mixing corrected and difference fluxes within one object
  would put a jump of the reference flux into its light curve, so an object is never mixed.

The error of a corrected magnitude is ``sigmapsf_corr_ext`` (falling back to ``sigmapsf_corr``
only when ``_ext`` is absent, and ignoring the 100 sentinel): it propagates the per-epoch
difference-image noise, so ``flux_err`` equals the difference-flux error. The reference-flux
uncertainty included in ``sigmapsf_corr`` is a constant offset shared by every epoch, not
independent per-point noise, so it does not belong in per-point errors. Which kind each object
got is written to ``objects.flux_kind`` (``difference`` | ``corrected`` | ``mixed``).

``mag``/``mag_err`` hold the magnitude and error the flux came from; ``mag`` is NaN where the
flux is negative (a magnitude of a negative flux does not exist). ``detected`` is True for every
row: these are alert detections.

Non-detections (upper limits) never become flux rows: they are summarised in ``objects``
(``n_non_detections`` and the last limit before the first detection: ``last_nondet_mjd``,
``last_nondet_band``, ``last_nondet_diffmaglim``). :func:`non_detections_to_limits` returns them
as a separate tidy table for anyone who wants the limits themselves.

Labels: a user table (object id + label) wins and is recorded as ``label_source='user_table'``;
otherwise the broker class found in the input (column ``class``, ``class_name`` or
``classALeRCE``, classifier from ``classifier``/``classifier_name``) is used and recorded as
``label_source='broker:<classifier>'``. Training on broker classes teaches a model to copy
the broker; prefer a spectroscopic table where you have one.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.schema import SchemaError, mag_to_flux

#: ZTF filter id -> band name.
ZTF_FID_BANDS: dict[int, str] = {1: "g", 2: "r", 3: "i"}
#: MJD = JD - this.
JD_TO_MJD = 2400000.5
#: ALeRCE writes this in ``sigmapsf_corr`` when the error formula has no real solution.
ALERCE_SIGMA_SENTINEL = 100.0

ID_COLUMNS = ("objectId", "oid", "object_id")
LABEL_COLUMNS = ("label", "class", "class_name", "classALeRCE")
BROKER_CLASS_COLUMNS = ("class", "class_name", "classALeRCE")
CLASSIFIER_COLUMNS = ("classifier", "classifier_name")
MAGNITUDE_MODES = ("auto", "corrected", "difference")

_TRUE = {"t", "true", "1", "1.0", "+1", "y", "yes"}
_FALSE = {"f", "false", "0", "0.0", "-1", "-1.0", "n", "no"}


def _id_column(df: pd.DataFrame, table: str) -> str:
    for col in ID_COLUMNS:
        if col in df.columns:
            return col
    raise SchemaError(f"{table}: missing object id column (one of {list(ID_COLUMNS)}); "
                      f"found {list(df.columns)}")


def _numeric(df: pd.DataFrame, col: str, ids: pd.Series, table: str, *, required: bool) -> np.ndarray:
    """Column as float; a non-numeric entry raises naming table, column and object."""
    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        i = np.flatnonzero(bad.to_numpy())[0]
        raise SchemaError(f"{table}: object '{ids.iloc[i]}': column '{col}' has non-numeric value "
                          f"{raw.iloc[i]!r}")
    values = values.to_numpy(dtype=float)
    if required:
        bad = ~np.isfinite(values)
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise SchemaError(f"{table}: object '{ids.iloc[i]}': column '{col}' is missing or not "
                              f"finite ({raw.iloc[i]!r})")
    return values


def _times(df: pd.DataFrame, ids: pd.Series, table: str) -> np.ndarray:
    if "mjd" in df.columns:
        return _numeric(df, "mjd", ids, table, required=True)
    if "jd" in df.columns:
        return _numeric(df, "jd", ids, table, required=True) - JD_TO_MJD
    raise SchemaError(f"{table}: missing required column 'mjd' (or 'jd'); found {list(df.columns)}")


def _bands(df: pd.DataFrame, ids: pd.Series, table: str) -> np.ndarray:
    if "fid" not in df.columns:
        raise SchemaError(f"{table}: missing required column 'fid'; found {list(df.columns)}")
    fid = _numeric(df, "fid", ids, table, required=True)
    known = np.isin(fid, list(ZTF_FID_BANDS))
    if not known.all():
        i = np.flatnonzero(~known)[0]
        raise SchemaError(f"{table}: object '{ids.iloc[i]}': column 'fid' has unknown filter id "
                          f"{df['fid'].iloc[i]!r}; known: {ZTF_FID_BANDS}")
    return np.array([ZTF_FID_BANDS[int(f)] for f in fid], dtype=object)


def parse_isdiffpos(values: pd.Series, ids: pd.Series, table: str = "alerce detections") -> np.ndarray:
    """``isdiffpos`` in any of its spellings -> +1.0 / -1.0 (SchemaError on anything else)."""
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, (bool, np.bool_)):
            out[i] = 1.0 if v else -1.0
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and not pd.isna(v):
            if v > 0:
                out[i] = 1.0
                continue
            if v in (0, -1):
                out[i] = -1.0
                continue
        s = str(v).strip().lower()
        if s in _TRUE:
            out[i] = 1.0
        elif s in _FALSE:
            out[i] = -1.0
        else:
            raise SchemaError(f"{table}: object '{ids.iloc[i]}': column 'isdiffpos' has value {v!r}; "
                              "expected t/f, 1/-1 or true/false")
    return out


def _labels_from_table(labels: pd.DataFrame, table: str) -> dict[str, str]:
    lt = f"labels table for {table}"
    id_col = _id_column(labels, lt)
    label_col = next((c for c in LABEL_COLUMNS if c in labels.columns), None)
    if label_col is None:
        raise SchemaError(f"{lt}: missing label column (one of {list(LABEL_COLUMNS)}); "
                          f"found {list(labels.columns)}")
    ids = labels[id_col].astype(str)
    dup = ids.duplicated(keep=False)
    if dup.any():
        raise SchemaError(f"{lt}: object '{ids[dup].iloc[0]}': column '{id_col}' is duplicated")
    missing = labels[label_col].isna()
    if missing.any():
        raise SchemaError(f"{lt}: object '{ids[missing].iloc[0]}': column '{label_col}' is empty")
    return dict(zip(ids, labels[label_col].astype(str)))


def _broker_labels(det: pd.DataFrame, id_col: str, table: str) -> tuple[dict[str, str], dict[str, str]]:
    """object id -> broker class, object id -> classifier name (from the detection rows)."""
    class_col = next((c for c in BROKER_CLASS_COLUMNS if c in det.columns), None)
    if class_col is None:
        raise SchemaError(
            f"{table}: column 'label': no labels table given and no broker class column "
            f"(one of {list(BROKER_CLASS_COLUMNS)}) in the input; every object needs a label")
    clf_col = next((c for c in CLASSIFIER_COLUMNS if c in det.columns), None)
    labels, classifiers = {}, {}
    for oid, part in det.groupby(id_col, sort=False):
        classes = part[class_col].dropna().astype(str).unique()
        if len(classes) == 0:
            raise SchemaError(f"{table}: object '{oid}': column '{class_col}' is empty; "
                              "every object needs a label")
        if len(classes) > 1:
            raise SchemaError(f"{table}: object '{oid}': column '{class_col}' has several classes "
                              f"{sorted(classes)}")
        labels[str(oid)] = classes[0]
        clf = part[clf_col].dropna().astype(str).unique() if clf_col else []
        classifiers[str(oid)] = clf[0] if len(clf) else "alerce"
    return labels, classifiers


def non_detections_to_limits(non_detections: pd.DataFrame, *, table: str = "alerce non-detections"
                             ) -> pd.DataFrame:
    """Non-detection rows -> tidy upper limits: object_id, time [MJD], band, diffmaglim, flux_limit [µJy].

    ``flux_limit`` is the 5-sigma limiting flux of the difference image. These are limits,
    never measurements: keep them out of the ``lightcurves`` table.
    """
    cols = ["object_id", "time", "band", "diffmaglim", "flux_limit"]
    if non_detections is None or len(non_detections) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c not in ("object_id", "band") else object)
                             for c in cols})
    nd = non_detections.reset_index(drop=True)
    id_col = _id_column(nd, table)
    ids = nd[id_col].astype(str)
    if "diffmaglim" not in nd.columns:
        raise SchemaError(f"{table}: missing required column 'diffmaglim'; found {list(nd.columns)}")
    lim = _numeric(nd, "diffmaglim", ids, table, required=True)
    return pd.DataFrame({
        "object_id": ids.to_numpy(),
        "time": _times(nd, ids, table),
        "band": _bands(nd, ids, table),
        "diffmaglim": lim,
        "flux_limit": mag_to_flux(lim),
    })


def _non_detection_summary(limits: pd.DataFrame, first_det: dict[str, float]) -> pd.DataFrame:
    """Per object: number of non-detections and the last one before the first detection."""
    out = pd.DataFrame({"object_id": list(first_det)})
    counts = limits.groupby("object_id").size()
    out["n_non_detections"] = out["object_id"].map(counts).fillna(0).astype(int)
    t0 = limits["object_id"].map(first_det)
    before = limits[limits["time"] < t0]
    last = before.loc[before.groupby("object_id")["time"].idxmax()].set_index("object_id") \
        if len(before) else pd.DataFrame(columns=["time", "band", "diffmaglim"])
    out["last_nondet_mjd"] = out["object_id"].map(last["time"]).astype(float)
    out["last_nondet_band"] = out["object_id"].map(last["band"])
    out["last_nondet_diffmaglim"] = out["object_id"].map(last["diffmaglim"]).astype(float)
    return out


def alerts_to_canonical(
    detections: pd.DataFrame,
    non_detections: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    *,
    source: str = "alerce",
    table: str = "alerce detections",
    magnitudes: str = "auto",
    label_map: Mapping[str, str] | None = None,
    min_rb: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert ALeRCE/ZTF alert detections into the canonical ``(lightcurves, objects)`` tables.

    Parameters
    ----------
    detections : pandas.DataFrame
        One row per detection in the ALeRCE ``query_detections`` layout (see module docstring).
    non_detections : pandas.DataFrame, optional
        ``query_non_detections`` rows (``objectId``/``oid``, ``mjd``/``jd``, ``fid``,
        ``diffmaglim``); summarised in ``objects``, never turned into flux rows.
    labels : pandas.DataFrame, optional
        User label table: an object id column (``objectId``/``oid``/``object_id``) and a label
        column (``label``, ``class``, ``class_name`` or ``classALeRCE``). Every object must be in
        it. Without it the broker class in ``detections`` is used.
    source : str
        Written to ``objects.source``.
    table : str
        Name (usually the file) used in error messages.
    magnitudes : {"auto", "corrected", "difference"}
        Which magnitudes become flux; see the module docstring.
    label_map : mapping, optional
        Raw label -> label (e.g. ALeRCE class names -> task classes); unmapped labels are kept.
        The raw label is kept in ``objects.label_raw``.
    min_rb : float, optional
        Drop detections whose real/bogus score ``rb`` is below this (an object left with no
        detection is an error). Default: keep all.

    Repeated detections of one object in one band at the same time (two alert rows for one
    exposure) are reduced to the row with the highest ``rb`` (then smallest error); the number
    removed is ``objects.n_duplicates_dropped``.

    Returns
    -------
    lightcurves, objects : pandas.DataFrame
        ``lightcurves``: object_id, time [MJD], band, flux, flux_err [µJy], mag, mag_err, detected.
        ``objects``: object_id, label, group_id (= object id), source, label_source, label_raw,
        flux_kind, n_detections, n_duplicates_dropped, n_low_rb_dropped, ra, dec, n_non_detections, last_nondet_mjd, last_nondet_band,
        last_nondet_diffmaglim.

    Raises
    ------
    deeprubin.core.schema.SchemaError
        Missing columns, unknown ``fid``, non-numeric or missing magnitudes, bad ``isdiffpos``,
        or an object without a label; the message names the table, column and object.
    """
    if magnitudes not in MAGNITUDE_MODES:
        raise SchemaError(f"{table}: magnitudes must be one of {list(MAGNITUDE_MODES)}, got {magnitudes!r}")
    if detections is None or len(detections) == 0:
        raise SchemaError(f"{table}: no detections")
    det = detections.reset_index(drop=True)
    id_col = _id_column(det, table)
    for col in ("magpsf", "sigmapsf", "isdiffpos"):
        if col not in det.columns:
            raise SchemaError(f"{table}: missing required column '{col}'; found {list(det.columns)}")
    ids = det[id_col].astype(str)
    time = _times(det, ids, table)
    band = _bands(det, ids, table)
    magpsf = _numeric(det, "magpsf", ids, table, required=True)
    sigmapsf = _numeric(det, "sigmapsf", ids, table, required=True)
    bad = sigmapsf <= 0
    if bad.any():
        raise SchemaError(f"{table}: object '{ids.iloc[np.flatnonzero(bad)[0]]}': column 'sigmapsf' <= 0")
    sign = parse_isdiffpos(det["isdiffpos"], ids, table)

    # The same exposure can yield two alert rows for one object (two candidates in one image,
    # or an alert re-issued with a new candid): keep the most reliable one per (object, fid,
    # time): highest real/bogus score ``rb``, then smallest error.
    rb = _numeric(det, "rb", ids, table, required=False) if "rb" in det.columns else np.full(len(det), np.nan)
    order = pd.DataFrame({"oid": ids.to_numpy(), "band": band, "time": time,
                          "rb": np.nan_to_num(rb, nan=-np.inf), "sig": sigmapsf})
    order = order.sort_values(["rb", "sig"], ascending=[False, True], kind="mergesort")
    dropped = order.duplicated(["oid", "band", "time"], keep="first")
    keep = np.ones(len(det), dtype=bool)
    keep[order.index[dropped.to_numpy()]] = False
    if min_rb is not None:
        keep &= np.isfinite(rb) & (rb >= float(min_rb))
    n_dup = pd.Series(dropped.sort_index().to_numpy(), dtype=int).groupby(ids.to_numpy()).sum()
    n_low_rb = pd.Series((~keep & ~dropped.sort_index().to_numpy()), dtype=int).groupby(ids.to_numpy()).sum()
    if not keep.any():
        raise SchemaError(f"{table}: column 'rb': no detection has rb >= min_rb={min_rb}")
    all_ids = list(pd.unique(ids))
    det, ids = det.loc[keep].reset_index(drop=True), ids.loc[keep].reset_index(drop=True)
    time, band, magpsf, sigmapsf, sign = time[keep], band[keep], magpsf[keep], sigmapsf[keep], sign[keep]
    lost = [o for o in all_ids if o not in set(ids)]
    if lost:
        raise SchemaError(f"{table}: object '{lost[0]}': column 'rb': every detection is below "
                          f"min_rb={min_rb}")

    # Corrected magnitudes and the error that goes with them (see module docstring).
    n = len(det)
    mag_corr = _numeric(det, "magpsf_corr", ids, table, required=False) if "magpsf_corr" in det else np.full(n, np.nan)
    if "sigmapsf_corr_ext" in det.columns:
        sig_corr = _numeric(det, "sigmapsf_corr_ext", ids, table, required=False)
    elif "sigmapsf_corr" in det.columns:
        sig_corr = _numeric(det, "sigmapsf_corr", ids, table, required=False)
    else:
        sig_corr = np.full(n, np.nan)
    usable = np.isfinite(mag_corr) & np.isfinite(sig_corr) & (sig_corr > 0) & (sig_corr < ALERCE_SIGMA_SENTINEL)
    if "dubious" in det.columns:
        dubious = det["dubious"].map(lambda v: str(v).strip().lower() in _TRUE).to_numpy(dtype=bool)
        usable &= ~dubious
    if magnitudes == "difference":
        use_corr = np.zeros(n, dtype=bool)
    elif magnitudes == "corrected":
        use_corr = usable
    else:
        all_usable = pd.Series(usable).groupby(ids.to_numpy()).transform("all").to_numpy(dtype=bool)
        use_corr = usable & all_usable

    diff_flux, diff_err = mag_to_flux(magpsf, sigmapsf)
    corr_flux, corr_err = mag_to_flux(np.where(use_corr, mag_corr, 0.0), np.where(use_corr, sig_corr, 0.0))
    flux = np.where(use_corr, corr_flux, sign * diff_flux)
    flux_err = np.where(use_corr, corr_err, diff_err)
    mag = np.where(use_corr, mag_corr, np.where(sign > 0, magpsf, np.nan))
    mag_err = np.where(use_corr, sig_corr, np.where(sign > 0, sigmapsf, np.nan))

    lightcurves = pd.DataFrame({
        "object_id": ids.to_numpy(), "time": time, "band": band, "flux": flux, "flux_err": flux_err,
        "mag": mag, "mag_err": mag_err, "detected": np.ones(n, dtype=bool),
    })
    lightcurves = lightcurves.sort_values(["object_id", "time", "band"], kind="mergesort").reset_index(drop=True)

    object_ids = list(pd.unique(ids))
    if labels is not None:
        table_labels = _labels_from_table(labels, table)
        missing = [o for o in object_ids if o not in table_labels]
        if missing:
            raise SchemaError(f"labels table for {table}: object '{missing[0]}': column 'label' has no "
                              f"row for this object ({len(missing)} object(s) unlabelled)")
        raw = {o: table_labels[o] for o in object_ids}
        label_source = {o: "user_table" for o in object_ids}
    else:
        raw, classifiers = _broker_labels(det, id_col, table)
        label_source = {o: f"broker:{classifiers[o]}" for o in object_ids}
    label_map = dict(label_map or {})

    kind = pd.Series(use_corr).groupby(ids.to_numpy()).agg(["all", "any"])
    grouped = pd.DataFrame({"oid": ids.to_numpy()}).groupby("oid", sort=False)
    counts = grouped.size()
    objects = pd.DataFrame({
        "object_id": object_ids,
        "label": [label_map.get(raw[o], raw[o]) for o in object_ids],
        "group_id": object_ids,
        "source": source,
        "label_source": [label_source[o] for o in object_ids],
        "label_raw": [raw[o] for o in object_ids],
        "flux_kind": ["corrected" if kind.loc[o, "all"] else "mixed" if kind.loc[o, "any"] else "difference"
                      for o in object_ids],
        "n_detections": [int(counts.loc[o]) for o in object_ids],
        "n_duplicates_dropped": [int(n_dup.get(o, 0)) for o in object_ids],
        "n_low_rb_dropped": [int(n_low_rb.get(o, 0)) for o in object_ids],
    })
    for coord in ("ra", "dec"):
        if coord in det.columns:
            values = pd.to_numeric(det[coord], errors="coerce")
            means = values.groupby(ids.to_numpy()).mean()
            objects[coord] = [float(means.loc[o]) for o in object_ids]

    limits = non_detections_to_limits(non_detections, table=f"non-detections for {table}") \
        if non_detections is not None else non_detections_to_limits(None)
    first_det = lightcurves.groupby("object_id")["time"].min().to_dict()
    summary = _non_detection_summary(limits, {o: first_det[o] for o in object_ids})
    objects = objects.merge(summary, on="object_id", how="left")
    objects = objects.sort_values("object_id", kind="mergesort").reset_index(drop=True)
    return lightcurves, objects


__all__: Sequence[str] = (
    "ZTF_FID_BANDS", "alerts_to_canonical", "non_detections_to_limits", "parse_isdiffpos",
)
