"""Spectral energy distributions: band merging, extinction correction, magnitude and colour features.

Magnitude columns follow the readers' naming: ``mag_<band>`` and ``mag_err_<band>`` (band names
of :data:`BANDS`). :func:`assemble_sed` merges one or several tables on ``star_id``, optionally
dereddens with a per-star ``E(B-V)``, and returns features that keep NaN where a band is missing
(a histogram gradient-boosting model takes missing values as they are):

``mag_<b>``, ``mag_err_<b>``
    magnitude and error of each configured band (errors NaN where the input has none, unless
    ``missing_mag_err`` gives a value);
``color_<b1>_<b2>``, ``color_err_<b1>_<b2>``
    ``mag_<b1> - mag_<b2>`` for adjacent bands in order of effective wavelength (or the pairs of
    ``colors``), error ``sqrt(e1^2 + e2^2)``.

Options of ``cfg`` (a Mapping; defaults in :data:`SED_DEFAULTS`):

``id_column``
    The star identifier the tables are merged on (``star_id``).
``colors``
    ``adjacent`` or a list of ``[b1, b2]`` pairs.
``absent_bands``
    A configured band no table has a column for: ``nan`` (its features are all NaN, so the feature
    set depends on the config only), ``drop`` (left out, colours over the rest) or ``raise``.
``missing_mag_err``
    ``null`` or the error [mag] given to a magnitude that has none (e.g. KIC photometry).
``extinction``
    ``apply`` (bool), ``ebv_column`` (``ebv``), ``ebv_err_column`` (``null`` or a column),
    ``r_v`` (3.1), ``law`` (:data:`EXTINCTION_LAWS`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ...core.config import ConfigError

#: Band name -> speclite filter (None: no speclite curve, see :data:`EFFECTIVE_WAVELENGTH_OVERRIDES`).
BANDS: dict[str, str | None] = {
    "u": "sdss2010-u", "g": "sdss2010-g", "r": "sdss2010-r", "i": "sdss2010-i", "z": "sdss2010-z",
    "J": "twomass-J", "H": "twomass-H", "Ks": "twomass-Ks",
    "G": "gaiadr3-G", "BP": "gaiadr3-BP", "RP": "gaiadr3-RP",
    "Kp": None,
}
#: Kepler Kp effective wavelength [A]: the Kepler bandpass spans ~4200-9000 A with an effective
#: wavelength near 6400 A (Koch et al. 2010, ApJ 713, L79; Brown et al. 2011, AJ 142, 112, Sect. 2).
KEPLER_KP_EFFECTIVE_WAVELENGTH = 6400.0
EFFECTIVE_WAVELENGTH_OVERRIDES: dict[str, float] = {"Kp": KEPLER_KP_EFFECTIVE_WAVELENGTH}
#: Laws of the ``extinction`` package (Barbary 2016) usable here; fm07 is defined for R_V = 3.1 only.
EXTINCTION_LAWS = ("fitzpatrick99", "ccm89", "odonnell94", "fm07")
FM07_R_V = 3.1
ABSENT_BAND_POLICIES = ("nan", "drop", "raise")

#: Every option of :func:`assemble_sed`'s ``cfg`` with its default (see the module docstring).
SED_DEFAULTS: dict[str, Any] = {
    "id_column": "star_id",
    "colors": "adjacent",
    "absent_bands": "nan",
    "missing_mag_err": None,
    "extinction": {"apply": False, "ebv_column": "ebv", "ebv_err_column": None, "r_v": 3.1,
                   "law": "fitzpatrick99"},
}


def _check_bands(bands: Sequence[str], where: str) -> list[str]:
    bands = [str(b) for b in bands]
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        raise ConfigError(f"{where}: unknown band(s) {unknown}; known {list(BANDS)}")
    if len(set(bands)) != len(bands):
        raise ConfigError(f"{where}: repeated band in {bands}")
    return bands


@lru_cache(maxsize=None)
def effective_wavelength(band: str) -> float:
    """Effective wavelength [A] of ``band``: speclite's ``effective_wavelength`` of its filter
    (cached), or the constant of :data:`EFFECTIVE_WAVELENGTH_OVERRIDES`."""
    _check_bands([band], "effective_wavelength")
    if band in EFFECTIVE_WAVELENGTH_OVERRIDES:
        return float(EFFECTIVE_WAVELENGTH_OVERRIDES[band])
    import speclite.filters

    return float(speclite.filters.load_filter(BANDS[band]).effective_wavelength.to_value("Angstrom"))


def extinction_coefficients(bands: Sequence[str], r_v: float = 3.1, law: str = "fitzpatrick99") -> np.ndarray:
    """``A_band / E(B-V)`` of each band: the ``extinction`` law at the band's effective wavelength
    with ``A_V = R_V`` (the laws are linear in A_V)."""
    import extinction

    bands = _check_bands(bands, "extinction_coefficients")
    if law not in EXTINCTION_LAWS:
        raise ConfigError(f"extinction_coefficients: 'law' must be one of {EXTINCTION_LAWS}, got {law!r}")
    r_v = float(r_v)
    if not np.isfinite(r_v) or r_v <= 0:
        raise ConfigError(f"extinction_coefficients: 'r_v' must be a positive number, got {r_v!r}")
    wave = np.array([effective_wavelength(b) for b in bands], dtype=np.float64)
    if law == "fm07":
        if not np.isclose(r_v, FM07_R_V):
            raise ConfigError(f"extinction_coefficients: law 'fm07' is defined for r_v = {FM07_R_V}, got {r_v}")
        return np.asarray(extinction.fm07(wave, r_v), dtype=np.float64)
    return np.asarray(getattr(extinction, law)(wave, r_v, r_v), dtype=np.float64)


def extinction_correct(mags, bands: Sequence[str], ebv, r_v: float = 3.1, law: str = "fitzpatrick99", *,
                       mag_errs=None, ebv_err=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Dereddened magnitudes ``m - R_band E(B-V)`` (``A_V = R_V E(B-V)``, the law at each band's
    effective wavelength).

    Parameters
    ----------
    mags : array (n_star, n_band) or (n_band,)
        Magnitudes in the order of ``bands``; NaN stays NaN.
    bands : sequence of str
        Band names of :data:`BANDS`.
    ebv : float or array (n_star,)
        E(B-V) [mag]; a NaN E(B-V) gives NaN dereddened magnitudes.
    r_v, law
        Total-to-selective extinction and the law (:data:`EXTINCTION_LAWS`).
    mag_errs : array like ``mags``, optional
    ebv_err : float or array (n_star,), optional
        E(B-V) uncertainty, added in quadrature: ``sqrt(err^2 + (R_band ebv_err)^2)``.

    Returns
    -------
    (mags, errors)
        ``errors`` is None when neither ``mag_errs`` nor ``ebv_err`` is given (with only
        ``ebv_err``, the errors are ``R_band ebv_err``).
    """
    coeff = extinction_coefficients(bands, r_v, law)
    mags = np.asarray(mags, dtype=np.float64)
    single = mags.ndim == 1
    m2 = np.atleast_2d(mags)
    if m2.ndim != 2 or m2.shape[1] != len(coeff):
        raise ValueError(f"extinction_correct: 'mags' must have {len(coeff)} columns (one per band), "
                         f"got shape {mags.shape}")
    ebv = np.asarray(ebv, dtype=np.float64).reshape(-1, 1) if np.ndim(ebv) else np.full((len(m2), 1), float(ebv))
    if ebv.shape[0] != m2.shape[0]:
        raise ValueError(f"extinction_correct: 'ebv' has {ebv.shape[0]} values for {m2.shape[0]} stars")
    out = m2 - ebv * coeff[None, :]
    errs = None
    if mag_errs is not None or ebv_err is not None:
        e = np.zeros_like(m2) if mag_errs is None else np.atleast_2d(np.asarray(mag_errs, dtype=np.float64))
        if e.shape != m2.shape:
            raise ValueError(f"extinction_correct: 'mag_errs' shape {np.shape(mag_errs)} differs from 'mags' "
                             f"{mags.shape}")
        if ebv_err is not None:
            de = np.asarray(ebv_err, dtype=np.float64)
            de = de.reshape(-1, 1) if de.ndim else np.full((len(m2), 1), float(de))
            if de.shape[0] != m2.shape[0]:
                raise ValueError(f"extinction_correct: 'ebv_err' has {de.shape[0]} values for {m2.shape[0]} stars")
            e = np.hypot(e, de * coeff[None, :])
        errs = e[0] if single else e
    return (out[0] if single else out), errs


def color_pairs(bands: Sequence[str], colors: str | Sequence = "adjacent", where: str = "sed") -> list[tuple[str, str]]:
    """Colour pairs: adjacent bands in order of effective wavelength (``"adjacent"``), or the
    given ``[b1, b2]`` pairs (each band among ``bands``)."""
    bands = _check_bands(bands, where)
    if isinstance(colors, str):
        if colors != "adjacent":
            raise ConfigError(f"{where}: 'colors' must be 'adjacent' or a list of [b1, b2] pairs, got {colors!r}")
        ordered = sorted(bands, key=effective_wavelength)
        return list(zip(ordered[:-1], ordered[1:]))
    pairs = []
    for pair in colors:
        if isinstance(pair, str) or len(pair) != 2 or any(str(b) not in bands for b in pair) or pair[0] == pair[1]:
            raise ConfigError(f"{where}: 'colors' entry {list(pair) if not isinstance(pair, str) else pair!r} "
                              f"must be two different bands of {bands}")
        pairs.append((str(pair[0]), str(pair[1])))
    return pairs


def _settings(cfg: Mapping | None) -> dict[str, Any]:
    """``cfg`` over :data:`SED_DEFAULTS`; unknown keys raise naming them."""
    cfg = {} if cfg is None else dict(cfg)
    unknown = sorted(set(cfg) - set(SED_DEFAULTS))
    if unknown:
        raise ConfigError(f"sed: unknown key(s) {unknown}; known {sorted(SED_DEFAULTS)}")
    ext = dict(SED_DEFAULTS["extinction"])
    given = cfg.get("extinction") or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"sed: 'extinction' must be a mapping, got {given!r}")
    bad = sorted(set(given) - set(ext))
    if bad:
        raise ConfigError(f"sed: unknown key(s) {[f'extinction.{k}' for k in bad]}; known "
                          f"{[f'extinction.{k}' for k in ext]}")
    ext.update(given)
    out = {**SED_DEFAULTS, **cfg, "extinction": ext}
    if out["absent_bands"] not in ABSENT_BAND_POLICIES:
        raise ConfigError(f"sed: 'absent_bands' must be one of {ABSENT_BAND_POLICIES}, got {out['absent_bands']!r}")
    err = out["missing_mag_err"]
    if err is not None and (isinstance(err, bool) or not isinstance(err, (int, float)) or not err >= 0):
        raise ConfigError(f"sed: 'missing_mag_err' must be null or a non-negative number, got {err!r}")
    if not isinstance(ext["apply"], bool):
        raise ConfigError(f"sed: 'extinction.apply' must be true or false, got {ext['apply']!r}")
    if ext["law"] not in EXTINCTION_LAWS:
        raise ConfigError(f"sed: 'extinction.law' must be one of {EXTINCTION_LAWS}, got {ext['law']!r}")
    r_v = ext["r_v"]
    if isinstance(r_v, bool) or not isinstance(r_v, (int, float)) or not r_v > 0:
        raise ConfigError(f"sed: 'extinction.r_v' must be a positive number, got {r_v!r}")
    return out


def merge_tables(tables: pd.DataFrame | Sequence[pd.DataFrame],
                 id_column: str = "star_id") -> tuple[pd.DataFrame, dict]:
    """Outer-merge tables on ``id_column``; a column in several tables takes the first table's
    value where it is not NaN, else the next one's (table order = priority).

    Returns the merged table (sorted by id) and ``{"n_tables", "n_stars", "stars_per_table"}``.
    Raises ValueError naming the table (by position) and the id for a missing id column or a
    repeated id.
    """
    tables = [tables] if isinstance(tables, pd.DataFrame) else list(tables)
    if not tables:
        raise ValueError("sed: no table to merge")
    merged: pd.DataFrame | None = None
    for k, t in enumerate(tables):
        if id_column not in t.columns:
            raise ValueError(f"sed: table {k}: missing id column '{id_column}' (config 'id_column'); "
                             f"found {list(t.columns)}")
        t = t.copy()
        t[id_column] = t[id_column].astype(str)
        dup = t[id_column].duplicated()
        if dup.any():
            raise ValueError(f"sed: table {k}: column '{id_column}': repeated id {t.loc[dup, id_column].iloc[0]!r}")
        t = t.set_index(id_column)
        merged = t if merged is None else _combine(merged, t)
    merged = merged.sort_index(kind="mergesort")
    merged.index.name = id_column
    return merged.reset_index(), {"n_tables": len(tables), "n_stars": int(len(merged)),
                                  "stars_per_table": [int(len(t)) for t in tables]}


def _combine(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Union of rows and columns; ``first`` wins where it has a value."""
    index = first.index.union(second.index, sort=False)
    columns = list(first.columns) + [c for c in second.columns if c not in first.columns]
    out = first.reindex(index=index, columns=columns)
    for col in second.columns:
        other = second[col].reindex(index)
        out[col] = other if col not in first.columns else out[col].where(out[col].notna(), other)
    return out


def assemble_sed(table: pd.DataFrame | Sequence[pd.DataFrame], bands: Sequence[str],
                 cfg: Mapping | None = None) -> tuple[pd.DataFrame, dict]:
    """SED features of each star: magnitudes, colours and their errors (NaN where missing).

    Parameters
    ----------
    table : DataFrame or sequence of DataFrames
        Tables with ``star_id`` (``cfg.id_column``) and ``mag_<band>`` / ``mag_err_<band>``
        columns (e.g. :func:`~deeprubin.tasks.stellar.readers.read_kepler_stellar`, and a Gaia
        table renamed to ``star_id``), merged on the id (:func:`merge_tables`), plus ``ebv``
        (``cfg.extinction.ebv_column``) when extinction is applied.
    bands : sequence of str
        The bands wanted (names of :data:`BANDS`).
    cfg : Mapping, optional
        Options (module docstring, :data:`SED_DEFAULTS`).

    Returns
    -------
    (features, report)
        ``features``: the id column, then ``mag_<b>``, ``mag_err_<b>`` for each band (in the
        order of ``bands``), then ``color_<b1>_<b2>``, ``color_err_<b1>_<b2>``; one row per star,
        sorted by id. ``report``: ``n_stars``, ``bands``, ``absent_bands``,
        ``missing_fraction`` (band -> fraction of stars without a magnitude),
        ``missing_error_fraction`` (among stars with a magnitude), ``filled_mag_err``,
        ``colors``, ``color_missing_fraction``, ``extinction`` (applied, law, r_v,
        coefficients ``A_b / E(B-V)``, ``n_missing_ebv``), ``merge``.

    Raises
    ------
    ConfigError
        Naming the key: unknown band or option, bad ``colors``/``absent_bands``/extinction values,
        the E(B-V) column absent when extinction is applied, an absent band with
        ``absent_bands: raise``.
    ValueError
        A table without the id column or with a repeated id.
    """
    s = _settings(cfg)
    bands = _check_bands(bands, "sed: 'bands'")
    if not bands:
        raise ConfigError("sed: 'bands' is empty")
    id_col = str(s["id_column"])
    merged, merge_report = merge_tables(table, id_col)
    absent = [b for b in bands if f"mag_{b}" not in merged.columns]
    if absent and s["absent_bands"] == "raise":
        raise ConfigError(f"sed: band(s) {absent} have no 'mag_<band>' column in any table "
                          f"(config 'absent_bands: raise'); found {list(merged.columns)}")
    if s["absent_bands"] == "drop":
        bands = [b for b in bands if b not in absent]
        if not bands:
            raise ConfigError(f"sed: no configured band has a magnitude column (config 'absent_bands: drop'); "
                              f"found {list(merged.columns)}")
    n = len(merged)
    mags = np.full((n, len(bands)), np.nan)
    errs = np.full((n, len(bands)), np.nan)
    for j, b in enumerate(bands):
        for arr, col in ((mags, f"mag_{b}"), (errs, f"mag_err_{b}")):
            if col in merged.columns:
                values = pd.to_numeric(merged[col], errors="coerce")
                bad = values.isna() & merged[col].notna()
                if bad.any():
                    raise ValueError(f"sed: column '{col}', star {merged[id_col].iloc[int(np.flatnonzero(bad)[0])]!r}: "
                                     f"not a number: {merged[col][bad].iloc[0]!r}")
                arr[:, j] = values.to_numpy(np.float64)
    has_mag = np.isfinite(mags)
    no_err = has_mag & ~np.isfinite(errs)
    report: dict[str, Any] = {
        "n_stars": int(n), "bands": list(bands), "absent_bands": absent,
        "missing_fraction": {b: float(1 - has_mag[:, j].mean()) if n else 0.0 for j, b in enumerate(bands)},
        "missing_error_fraction": {b: float(no_err[:, j].sum() / max(has_mag[:, j].sum(), 1))
                                   for j, b in enumerate(bands)},
        "filled_mag_err": 0, "merge": merge_report}
    if s["missing_mag_err"] is not None:
        errs[no_err] = float(s["missing_mag_err"])
        report["filled_mag_err"] = int(no_err.sum())

    ext = s["extinction"]
    ext_report: dict[str, Any] = {"applied": ext["apply"]}
    if ext["apply"]:
        col = ext["ebv_column"]
        if col not in merged.columns:
            raise ConfigError(f"sed: extinction is applied but column '{col}' (config 'extinction.ebv_column') "
                              f"is in no table; found {list(merged.columns)}")
        ebv = pd.to_numeric(merged[col], errors="coerce").to_numpy(np.float64)
        ebv_err = None
        if ext["ebv_err_column"] is not None:
            ecol = ext["ebv_err_column"]
            if ecol not in merged.columns:
                raise ConfigError(f"sed: column '{ecol}' (config 'extinction.ebv_err_column') is in no table; "
                                  f"found {list(merged.columns)}")
            ebv_err = pd.to_numeric(merged[ecol], errors="coerce").to_numpy(np.float64)
        mags, new_errs = extinction_correct(mags, bands, ebv, ext["r_v"], ext["law"], mag_errs=errs, ebv_err=ebv_err)
        errs = new_errs
        coeff = extinction_coefficients(bands, ext["r_v"], ext["law"])
        ext_report.update(law=ext["law"], r_v=float(ext["r_v"]), ebv_column=col,
                          coefficients={b: float(c) for b, c in zip(bands, coeff)},
                          n_missing_ebv=int(np.isnan(ebv).sum()))
    report["extinction"] = ext_report

    pairs = color_pairs(bands, s["colors"], "sed")
    features = {id_col: merged[id_col].to_numpy()}
    for j, b in enumerate(bands):
        features[f"mag_{b}"] = mags[:, j]
        features[f"mag_err_{b}"] = errs[:, j]
    index = {b: j for j, b in enumerate(bands)}
    color_missing = {}
    for b1, b2 in pairs:
        c = mags[:, index[b1]] - mags[:, index[b2]]
        features[f"color_{b1}_{b2}"] = c
        features[f"color_err_{b1}_{b2}"] = np.hypot(errs[:, index[b1]], errs[:, index[b2]])
        color_missing[f"{b1}-{b2}"] = float(np.isnan(c).mean()) if n else 0.0
    report["colors"] = [f"{b1}-{b2}" for b1, b2 in pairs]
    report["color_missing_fraction"] = color_missing
    return pd.DataFrame(features), report
