"""Connectors for the real file formats of the stellar task (read offline; nothing is fetched).

``read_sdss_spectrum``
    One SDSS DR8+ ``spec-PLATE-MJD-FIBER.fits`` file (full or "lite") as documented in the SDSS
    data model, https://data.sdss.org/datamodel/files/BOSS_SPECTRO_REDUX/RUN2D/spectra/PLATE4/spec.html :
    HDU 0 header keywords copied from spPlate (``PLATEID``, ``MJD``, ``FIBERID``, ``PLUG_RA``,
    ``PLUG_DEC``); HDU 1 (EXTNAME ``COADD``) a binary table with columns ``flux``
    [1e-17 erg/s/cm^2/A], ``loglam`` (log10 of the vacuum wavelength in A), ``ivar``,
    ``and_mask``, ``or_mask``, ``wdisp``, ``sky``, ``model``; HDU 2 (EXTNAME ``SPALL``; older
    reductions ``SPECOBJ``) the one-row spAll (BOSS) or specObj (SDSS-I/II) entry of the fibre,
    with ``Z``, ``Z_ERR``, ``CLASS``, ``SUBCLASS`` and, for SDSS-I/II, the ``ELODIE_*`` template
    parameters. SSPP parameters (``TEFF_ADOP`` ...) live in the separate sppParams file; they are
    picked up only when a user-joined HDU 2 carries them.
``read_gaia_photometry``
    A Gaia DR3 ``gaia_source`` extract (CSV, ECSV, VOTable, FITS) -> G, BP, RP magnitudes and errors.
``read_kepler_stellar``
    The Kepler KOI table (``kepler_confirmed_planets.csv``, one row per planet candidate) -> one
    row per star with its catalogue Teff, logg, [Fe/H] and KIC/2MASS photometry.
``sdss_spectrum_url``
    The SAS address of a spec file (a pure function; nothing is downloaded here).

Every reader raises :class:`StellarReadError` naming the file and the HDU / column / field of a
missing file, an unreadable or truncated file, a missing HDU or column, arrays of unequal length
and non-numeric values.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd


class StellarReadError(ValueError):
    """A stellar data file that cannot be read; the message names the file and the HDU/column/field."""


# --------------------------------------------------------------------------------------------
# SDSS spec files
# --------------------------------------------------------------------------------------------

#: Required columns of the COADD HDU (SDSS data model, spec.html, HDU 1).
SDSS_COADD_COLUMNS = ("flux", "loglam", "ivar", "and_mask")
#: EXTNAMEs of the coadd and the spAll/specObj HDUs (spec.html; DR8 files may say SPECOBJ).
SDSS_COADD_EXTNAMES = ("COADD",)
SDSS_SPALL_EXTNAMES = ("SPALL", "SPECOBJ")
#: Identification fields: meta key -> (HDU 0 keyword, HDU 2 column) (spec.html, spAll/specObj).
SDSS_ID_FIELDS = {"plate": ("PLATEID", "PLATE"), "mjd": ("MJD", "MJD"), "fiberid": ("FIBERID", "FIBERID"),
                  "ra": ("PLUG_RA", "PLUG_RA"), "dec": ("PLUG_DEC", "PLUG_DEC")}
#: Required HDU 2 columns -> meta keys.
SDSS_SPALL_COLUMNS = {"Z": "z", "Z_ERR": "z_err", "CLASS": "class", "SUBCLASS": "subclass"}
#: Optional stellar parameters of HDU 2: ELODIE template fit (specObj, SDSS-I/II) and SSPP
#: adopted values (sppParams; present only in user-joined tables).
SDSS_STELLAR_COLUMNS = ("ELODIE_TEFF", "ELODIE_LOGG", "ELODIE_FEH", "ELODIE_SPTYPE", "ELODIE_BV",
                        "TEFF_ADOP", "TEFF_ADOP_UNC", "LOGG_ADOP", "LOGG_ADOP_UNC", "FEH_ADOP", "FEH_ADOP_UNC")
#: SAS run2d names of the SDSS-I/II (legacy) reductions; the others are BOSS/eBOSS.
SDSS_LEGACY_RUN2D = ("26", "103", "104")
SDSS_SAS_ROOT = "https://data.sdss.org/sas"


@dataclass
class SdssSpectrum:
    """One SDSS coadded spectrum.

    ``wave`` vacuum Angstrom (``10**loglam``, float64); ``flux`` [1e-17 erg/s/cm^2/A] and
    ``ivar`` float32; ``mask`` bool, True = bad pixel (``ivar`` is 0 there); ``meta`` the
    identification, redshift, class and any stellar parameters of HDU 2 (``ELODIE_TEFF`` ...).
    """

    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def _find_hdu(hdul, extnames: Sequence[str], index: int, path: Path, what: str):
    """The HDU named one of ``extnames``, else HDU ``index`` when it is a binary table."""
    from astropy.io import fits

    for hdu in hdul:
        if str(hdu.name).upper() in extnames:
            return hdu
    if len(hdul) > index and isinstance(hdul[index], fits.BinTableHDU):
        return hdul[index]
    raise StellarReadError(f"{path}: HDU {index} ({what}, EXTNAME {'/'.join(extnames)}) is missing; "
                           f"the file has {[h.name for h in hdul]}")


def _column(data, name: str, path: Path, hdu: str):
    names = {n.lower(): n for n in data.columns.names}
    if name.lower() not in names:
        raise StellarReadError(f"{path}: HDU {hdu}: missing column '{name}'; found {list(data.columns.names)}")
    return data[names[name.lower()]]


def _numeric_array(values, path: Path, hdu: str, name: str, dtype) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise StellarReadError(f"{path}: HDU {hdu}: column '{name}' is not numeric ({exc})") from exc
    return arr.reshape(-1) if arr.ndim > 1 and arr.shape[0] == 1 else arr


def _scalar(value):
    """A FITS cell as a plain Python value (bytes -> stripped str, numpy scalars -> int/float)."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _read_spall(hdu, path: Path) -> dict[str, Any]:
    data = hdu.data
    hname = f"2 ({hdu.name})"
    if data is None or len(data) < 1:
        raise StellarReadError(f"{path}: HDU {hname}: the spAll/specObj table has no row")
    row = {n.upper(): _scalar(data[n][0]) for n in data.columns.names}
    meta: dict[str, Any] = {}
    for col, key in SDSS_SPALL_COLUMNS.items():
        if col not in row:
            raise StellarReadError(f"{path}: HDU {hname}: missing column '{col}'; found {sorted(row)}")
        meta[key] = row[col]
    for col in ("Z", "Z_ERR"):
        try:
            meta[SDSS_SPALL_COLUMNS[col]] = float(row[col])
        except (TypeError, ValueError) as exc:
            raise StellarReadError(f"{path}: HDU {hname}: column '{col}' is not a number: {row[col]!r}") from exc
    for col in SDSS_STELLAR_COLUMNS:
        if col in row:
            meta[col] = row[col]
    # specObj carries ELODIE_TEFF = 0 where no template was fitted: no parameters then.
    teff = meta.get("ELODIE_TEFF")
    if isinstance(teff, (int, float)) and not (np.isfinite(teff) and teff > 0):
        for col in ("ELODIE_TEFF", "ELODIE_LOGG", "ELODIE_FEH"):
            if col in meta:
                meta[col] = float("nan")
    return {"_row": row, **meta}


def _id_field(key: str, header, spall_row: dict, path: Path):
    keyword, column = SDSS_ID_FIELDS[key]
    value = header.get(keyword)
    where = f"HDU 0 keyword '{keyword}'"
    if value is None:
        value, where = spall_row.get(column), f"HDU 2 column '{column}'"
    if value is None:
        raise StellarReadError(f"{path}: HDU 0: missing keyword '{keyword}' (and no HDU 2 column '{column}')")
    try:
        return int(value) if key in ("plate", "mjd", "fiberid") else float(value)
    except (TypeError, ValueError) as exc:
        raise StellarReadError(f"{path}: {where} is not a number: {value!r}") from exc


def read_sdss_spectrum(path: str | Path, and_mask_bits: int | None = None) -> SdssSpectrum:
    """One SDSS ``spec-PLATE-MJD-FIBER.fits`` file (DR8+ data model; see the module docstring).

    Parameters
    ----------
    path : str or Path
        The spec file (full or lite).
    and_mask_bits : int, optional
        Bits of ``and_mask`` that make a pixel bad; ``None`` (default): any set bit.

    Returns
    -------
    SdssSpectrum
        ``wave`` = ``10**loglam`` (vacuum A); ``mask`` True where ``and_mask`` has a (selected)
        bit set, ``ivar <= 0`` or flux/ivar are not finite; there ``ivar`` = 0 and a non-finite
        flux = 0. ``meta``: ``plate, mjd, fiberid, ra, dec`` (HDU 0, else HDU 2), ``z, z_err,
        class, subclass`` and the ``ELODIE_*`` / SSPP columns HDU 2 has (``ELODIE_*`` NaN where
        ``ELODIE_TEFF`` <= 0, i.e. no fit), ``file``, ``hdu2_extname``.

    Raises
    ------
    StellarReadError
        Naming the file and HDU/column/keyword: missing file, not FITS or truncated, missing HDU 1
        or 2, missing or non-numeric column, columns of unequal length, loglam not increasing.
    """
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    path = Path(path)
    if not path.is_file():
        raise StellarReadError(f"{path}: no such SDSS spec file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)  # "File may have been truncated"
            with fits.open(path, memmap=False) as hdul:
                hdul.verify("exception")
                header = hdul[0].header
                coadd = _find_hdu(hdul, SDSS_COADD_EXTNAMES, 1, path, "coadded spectrum")
                hname = f"1 ({coadd.name})"
                data = coadd.data
                if data is None:
                    raise StellarReadError(f"{path}: HDU {hname} has no data")
                cols = {name: _column(data, name, path, hname) for name in SDSS_COADD_COLUMNS}
                loglam = _numeric_array(cols["loglam"], path, hname, "loglam", np.float64)
                flux = _numeric_array(cols["flux"], path, hname, "flux", np.float32)
                ivar = _numeric_array(cols["ivar"], path, hname, "ivar", np.float32)
                and_mask = _numeric_array(cols["and_mask"], path, hname, "and_mask", np.int64)
                spall_hdu = _find_hdu(hdul, SDSS_SPALL_EXTNAMES, 2, path, "spAll/specObj metadata")
                spall = _read_spall(spall_hdu, path)
                spall_name = str(spall_hdu.name)
    except StellarReadError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, AstropyUserWarning,
            fits.VerifyError) as exc:
        raise StellarReadError(f"{path}: not a readable FITS file ({type(exc).__name__}: {exc})") from exc

    lengths = {"loglam": loglam.shape, "flux": flux.shape, "ivar": ivar.shape, "and_mask": and_mask.shape}
    if len(set(lengths.values())) != 1 or loglam.ndim != 1 or loglam.size < 2:
        raise StellarReadError(f"{path}: HDU {hname}: columns flux, loglam, ivar, and_mask must be 1-D of "
                               f"equal length (at least 2); got shapes {lengths}")
    if not np.all(np.isfinite(loglam)) or np.any(np.diff(loglam) <= 0):
        raise StellarReadError(f"{path}: HDU {hname}: column 'loglam' must be finite and strictly increasing")
    bits = and_mask if and_mask_bits is None else (and_mask & int(and_mask_bits))
    mask = (bits != 0) | ~np.isfinite(ivar) | (ivar <= 0) | ~np.isfinite(flux)
    ivar = np.where(mask, np.float32(0), ivar).astype(np.float32)
    flux = np.where(np.isfinite(flux), flux, np.float32(0)).astype(np.float32)

    row = spall.pop("_row")
    meta: dict[str, Any] = {key: _id_field(key, header, row, path) for key in SDSS_ID_FIELDS}
    meta.update(spall)
    meta.update(file=str(path), hdu2_extname=spall_name)
    return SdssSpectrum(wave=10.0 ** loglam, flux=flux, ivar=ivar, mask=mask, meta=meta)


def sdss_spectrum_url(plate: int, mjd: int, fiber: int, run2d: str = "26", dr: str = "dr17",
                      lite: bool = True, survey: str | None = None) -> str:
    """The SAS address of ``spec-PLATE-MJD-FIBER.fits`` (https://dr16.sdss.org/optical/spectrum/view/data/access).

    ``survey`` defaults to ``sdss`` for the legacy run2d (26, 103, 104) and ``eboss`` otherwise
    (DR13+; DR9-DR12 BOSS reductions are under ``boss``). Plate and fibre are zero-padded to 4
    digits, the MJD to 5.
    """
    for name, value in (("plate", plate), ("mjd", mjd), ("fiber", fiber)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"sdss_spectrum_url: '{name}' must be a non-negative integer, got {value!r}")
    run2d = str(run2d)
    survey = survey or ("sdss" if run2d in SDSS_LEGACY_RUN2D else "eboss")
    folder = "spectra/lite" if lite else "spectra"
    return (f"{SDSS_SAS_ROOT}/{dr}/{survey}/spectro/redux/{run2d}/{folder}/{plate:04d}/"
            f"spec-{plate:04d}-{mjd:05d}-{fiber:04d}.fits")


# --------------------------------------------------------------------------------------------
# Gaia DR3 photometry
# --------------------------------------------------------------------------------------------

#: File suffix -> astropy.table format.
TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable",
                 ".votable": "votable", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits"}
#: Gaia band -> (magnitude column, flux_over_error column) of gaia_source.
GAIA_BANDS = {"G": ("phot_g_mean_mag", "phot_g_mean_flux_over_error"),
              "BP": ("phot_bp_mean_mag", "phot_bp_mean_flux_over_error"),
              "RP": ("phot_rp_mean_mag", "phot_rp_mean_flux_over_error")}
#: Uncertainty of the Gaia (E)DR3 Vega zero points [mag], added in quadrature to the
#: magnitude errors: Riello et al. 2021, A&A 649, A3, Table 3 (G 25.6874 +- 0.0028,
#: BP 25.3385 +- 0.0028, RP 24.7479 +- 0.0038).
GAIA_ZERO_POINT_ERR = {"G": 0.0028, "BP": 0.0028, "RP": 0.0038}
#: 2.5 / ln(10): magnitude error per unit relative flux error.
MAG_PER_RELATIVE_FLUX = 2.5 / math.log(10.0)
GAIA_OPTIONAL = ("ra", "dec", "parallax", "parallax_error")
GAIA_OUTPUT_COLUMNS = ("source_id", "ra", "dec", "mag_G", "mag_err_G", "mag_BP", "mag_err_BP",
                       "mag_RP", "mag_err_RP", "parallax", "parallax_error")


def _table_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(TABLE_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return TABLE_FORMATS[suffix]
    raise StellarReadError(f"{path}: unknown table format (suffix {path.suffix!r}); expected one of "
                           f"{sorted(TABLE_FORMATS)}")


def _float_column(table, name: str, path: Path) -> np.ndarray:
    """A table column as float64, masked and empty cells NaN; a non-numeric cell raises naming it."""
    col = table[name]
    masked = np.ma.getmaskarray(col)
    values = np.asarray(np.ma.getdata(col))
    if values.dtype.kind in "biuf":
        out = values.astype(np.float64)
    else:
        text = pd.Series(values.astype(str)).str.strip()
        out = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
        bad = np.isnan(out) & ~masked & (text != "").to_numpy() & (text.str.lower() != "nan").to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise StellarReadError(f"{path}: column '{name}', row {i}: not a number: {str(values[i])!r}")
    out = out.copy()
    out[masked] = np.nan
    return out


def read_gaia_photometry(path: str | Path) -> pd.DataFrame:
    """A Gaia DR3 ``gaia_source`` extract -> one row per source with G, BP, RP magnitudes.

    Parameters
    ----------
    path : str or Path
        CSV, ECSV, VOTable or FITS (format from the suffix, read with ``astropy.table.Table.read``).
        Required columns (case-insensitive): ``source_id, phot_g_mean_mag, phot_bp_mean_mag,
        phot_rp_mean_mag``; optional ``phot_*_mean_flux_over_error``, ``parallax``,
        ``parallax_error``, ``ra``, ``dec``.

    Returns
    -------
    pandas.DataFrame
        ``source_id`` (int64), ``ra, dec, mag_G, mag_err_G, mag_BP, mag_err_BP, mag_RP, mag_err_RP,
        parallax, parallax_error``; ``mag_err_X = sqrt((2.5/ln10 / flux_over_error)^2 +
        zp_err_X^2)`` (:data:`GAIA_ZERO_POINT_ERR`), NaN without a (positive) flux_over_error;
        missing (masked) values are NaN.

    Raises
    ------
    StellarReadError
        Naming the file and column: missing file, unknown suffix, unreadable or corrupted file,
        missing required column, non-numeric values, duplicate or missing source_id.
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise StellarReadError(f"{path}: no such Gaia photometry file")
    fmt = _table_format(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # VOTable/units chatter; errors still raise
            table = Table.read(path, format=fmt)
    except Exception as exc:  # astropy raises many types (OSError, ValueError, InconsistentTableError ...)
        raise StellarReadError(f"{path}: not a readable {fmt} table ({type(exc).__name__}: {exc})") from exc
    lower = {c.lower(): c for c in table.colnames}
    required = ("source_id",) + tuple(mag for mag, _ in GAIA_BANDS.values())
    missing = [c for c in required if c not in lower]
    if missing:
        raise StellarReadError(f"{path}: missing column(s) {missing}; found {table.colnames}")
    if len(table) == 0:
        raise StellarReadError(f"{path}: the table has no rows")
    source_id = _float_column(table, lower["source_id"], path)
    if np.isnan(source_id).any():
        raise StellarReadError(f"{path}: column 'source_id', row {int(np.flatnonzero(np.isnan(source_id))[0])}: "
                               "missing value")
    raw_ids = np.asarray(np.ma.getdata(table[lower["source_id"]]))
    if raw_ids.dtype.kind in "iu":
        ids = raw_ids.astype(np.int64)   # exact: float64 cannot hold 19-digit Gaia ids
    elif raw_ids.dtype.kind == "f":
        ids = raw_ids.astype(np.int64)
    else:
        try:
            ids = np.array([int(str(v).strip()) for v in raw_ids], dtype=np.int64)
        except ValueError as exc:
            raise StellarReadError(f"{path}: column 'source_id': not an integer id ({exc})") from exc
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise StellarReadError(f"{path}: column 'source_id': duplicate value {int(ids[dup.to_numpy()][0])}")
    out = pd.DataFrame({"source_id": ids})
    for col in ("ra", "dec"):
        out[col] = _float_column(table, lower[col], path) if col in lower else np.nan
    for band, (mag_col, foe_col) in GAIA_BANDS.items():
        out[f"mag_{band}"] = _float_column(table, lower[mag_col], path)
        if foe_col in lower:
            foe = _float_column(table, lower[foe_col], path)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(foe > 0, MAG_PER_RELATIVE_FLUX / foe, np.nan)
            out[f"mag_err_{band}"] = np.hypot(rel, GAIA_ZERO_POINT_ERR[band])
        else:
            out[f"mag_err_{band}"] = np.nan
    for col in ("parallax", "parallax_error"):
        out[col] = _float_column(table, lower[col], path) if col in lower else np.nan
    return out[list(GAIA_OUTPUT_COLUMNS)]


# --------------------------------------------------------------------------------------------
# Kepler KOI table -> one row per star
# --------------------------------------------------------------------------------------------

#: Output column -> KOI table column (kepler_confirmed_planets.csv). KIC griz are SDSS-like AB
#: magnitudes (Brown et al. 2011, AJ 142, 112); J, H, K are 2MASS (K = Ks).
KEPLER_VALUE_COLUMNS = {"teff": "koi_steff", "logg": "koi_slogg", "feh": "FeH", "ra": "ra", "dec": "dec",
                        "mag_Kp": "koi_kepmag", "mag_g": "koi_gmag", "mag_r": "koi_rmag", "mag_i": "koi_imag",
                        "mag_z": "koi_zmag", "mag_J": "koi_jmag", "mag_H": "koi_hmag", "mag_Ks": "koi_kmag"}
#: Output error column -> (upper, lower) error columns; the error is the mean of their |values|.
KEPLER_ERROR_COLUMNS = {"teff_err": ("koi_steff_err1", "koi_steff_err2"),
                        "logg_err": ("koi_slogg_err1", "koi_slogg_err2"),
                        "feh_err": ("FeH_err1", "FeH_err2")}
KEPLER_OUTPUT_COLUMNS = ("star_id", "kepid", "teff", "teff_err", "logg", "logg_err", "feh", "feh_err", "ra",
                         "dec", "mag_Kp", "mag_g", "mag_r", "mag_i", "mag_z", "mag_J", "mag_H", "mag_Ks")
KEPLER_LABELS = ("teff", "logg", "feh")
KEPLER_MAGS = ("mag_Kp", "mag_g", "mag_r", "mag_i", "mag_z", "mag_J", "mag_H", "mag_Ks")
#: Relative tolerance under which two rows' stellar values count as the same.
KEPLER_AGREEMENT_RTOL = 1e-9
CONFLICT_POLICIES = ("first", "raise")


def _numeric_csv_column(table: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(table[col], errors="coerce")
    bad = values.isna() & table[col].notna() & (table[col].astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise StellarReadError(f"{path}: column '{col}', line {i + 2}: not a number: {table[col].iloc[i]!r}")
    return values.to_numpy(dtype=np.float64)


def read_kepler_stellar(path: str | Path, on_conflict: str = "first",
                        require: Sequence[str] = KEPLER_LABELS,
                        require_mags: Sequence[str] = ()) -> tuple[pd.DataFrame, dict]:
    """The Kepler KOI table reduced to one row per star (``kepid``).

    A star's rows (one per planet candidate) should repeat the same stellar values. Its row is
    the first one in file order with finite ``teff``, ``logg`` and ``feh`` (else its first row).
    Stars whose complete rows disagree in any output value are *conflicts*: with
    ``on_conflict="first"`` (default) that first complete row is kept and the star is counted
    (``report["stars_conflicting"]``, ids in ``report["conflicting_kepids"]``); ``"raise"``
    stops on the first one. Rows that only lack values another row has are not conflicts.

    Parameters
    ----------
    path : str or Path
        ``kepler_confirmed_planets.csv`` (columns ``kepid``, ``koi_steff(_err1/2)``,
        ``koi_slogg(_err1/2)``, ``FeH(_err1/2)``, ``ra``, ``dec``, ``koi_kepmag``, ``koi_gmag`` ...
        ``koi_kmag``).
    on_conflict : {"first", "raise"}
    require : sequence of str
        Label columns (of ``teff, logg, feh``) a star must have; stars without are dropped and
        counted per column.
    require_mags : sequence of str
        Magnitude columns (``mag_Kp`` ... ``mag_Ks``) a star must have, likewise.

    Returns
    -------
    (table, report)
        ``table``: ``star_id`` ("KIC<kepid>"), ``kepid``, ``teff, teff_err, logg, logg_err, feh,
        feh_err`` (errors = mean of |err1|, |err2|, or the one present), ``ra, dec`` [deg],
        ``mag_Kp, mag_g, mag_r, mag_i, mag_z`` (KIC), ``mag_J, mag_H, mag_Ks`` (2MASS), sorted by
        kepid. ``report``: ``n_rows``, ``n_stars`` (distinct kepids), ``n_stars_kept``,
        ``stars_conflicting``, ``conflicting_kepids``, ``stars_with_incomplete_rows``,
        ``dropped_missing_<col>`` (a star may count under several), ``n_dropped``,
        ``missing_<mag>`` (kept stars lacking each magnitude), ``on_conflict``.

    Raises
    ------
    StellarReadError
        Naming the file, column and line: missing file, unreadable CSV, missing column,
        non-numeric value, a conflict with ``on_conflict="raise"``.
    ValueError
        An unknown ``on_conflict`` or ``require``/``require_mags`` name.
    """
    if on_conflict not in CONFLICT_POLICIES:
        raise ValueError(f"read_kepler_stellar: 'on_conflict' must be one of {CONFLICT_POLICIES}, got {on_conflict!r}")
    unknown = [c for c in require if c not in KEPLER_LABELS] + [c for c in require_mags if c not in KEPLER_MAGS]
    if unknown:
        raise ValueError(f"read_kepler_stellar: unknown 'require'/'require_mags' column(s) {unknown}; "
                         f"allowed {KEPLER_LABELS + KEPLER_MAGS}")
    path = Path(path)
    if not path.is_file():
        raise StellarReadError(f"{path}: no such Kepler catalogue file")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise StellarReadError(f"{path}: not a readable CSV table ({type(exc).__name__}: {exc})") from exc
    needed = ["kepid", *KEPLER_VALUE_COLUMNS.values(), *(c for pair in KEPLER_ERROR_COLUMNS.values() for c in pair)]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise StellarReadError(f"{path}: missing column(s) {missing}; found {list(raw.columns)}")
    if raw.empty:
        raise StellarReadError(f"{path}: the table has no rows")
    kepid = _numeric_csv_column(raw, "kepid", path)
    if np.isnan(kepid).any() or np.any(kepid != np.round(kepid)) or np.any(kepid <= 0):
        i = int(np.flatnonzero(~(np.isfinite(kepid) & (kepid == np.round(kepid)) & (kepid > 0)))[0])
        raise StellarReadError(f"{path}: column 'kepid', line {i + 2}: not a positive integer: "
                               f"{raw['kepid'].iloc[i]!r}")
    rows = pd.DataFrame({"kepid": kepid.astype(np.int64)})
    for out, col in KEPLER_VALUE_COLUMNS.items():
        rows[out] = _numeric_csv_column(raw, col, path)
    for out, (up, low) in KEPLER_ERROR_COLUMNS.items():
        pair = np.abs(np.column_stack([_numeric_csv_column(raw, up, path), _numeric_csv_column(raw, low, path)]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # both NaN -> NaN
            rows[out] = np.nanmean(pair, axis=1)

    value_cols = [c for c in KEPLER_OUTPUT_COLUMNS if c not in ("star_id", "kepid")]
    complete = rows[list(KEPLER_LABELS)].notna().all(axis=1)
    rows["_rank"] = (~complete).astype(int)   # complete rows first, then file order (stable sort)
    rows["_line"] = np.arange(len(rows)) + 2
    ordered = rows.sort_values(["kepid", "_rank", "_line"], kind="mergesort")
    first = ordered.groupby("kepid", sort=True).head(1).set_index("kepid")

    conflicting: list[int] = []
    incomplete: set[int] = set()
    multi = rows[rows.duplicated("kepid", keep=False)]
    for kid, group in multi.groupby("kepid", sort=True):
        ref = first.loc[kid, value_cols].to_numpy(dtype=float)
        vals = group[value_cols].to_numpy(dtype=float)
        both = np.isfinite(vals) & np.isfinite(ref)
        differ = both & ~np.isclose(vals, ref, rtol=KEPLER_AGREEMENT_RTOL, atol=0.0)
        if differ.any():
            if on_conflict == "raise":
                r, c = np.argwhere(differ)[0]
                line = int(group["_line"].iloc[r])
                raise StellarReadError(f"{path}: kepid {kid}: line {line} disagrees with line "
                                       f"{int(first.loc[kid, '_line'])} in '{value_cols[c]}' "
                                       f"({vals[r, c]} vs {ref[c]}; on_conflict='first' keeps the first)")
            conflicting.append(int(kid))
        if (np.isfinite(vals) != np.isfinite(ref)).any():
            incomplete.add(int(kid))

    table = first.reset_index()
    report: dict[str, Any] = {"n_rows": int(len(rows)), "n_stars": int(len(table)), "on_conflict": on_conflict,
                              "stars_conflicting": len(conflicting), "conflicting_kepids": conflicting,
                              "stars_with_incomplete_rows": len(incomplete)}
    keep = np.ones(len(table), dtype=bool)
    for col in (*require, *require_mags):
        lacking = table[col].isna().to_numpy()
        report[f"dropped_missing_{col}"] = int(lacking.sum())
        keep &= ~lacking
    table = table[keep].reset_index(drop=True)
    report["n_dropped"] = int((~keep).sum())
    report["n_stars_kept"] = int(len(table))
    for col in KEPLER_MAGS:
        report[f"missing_{col}"] = int(table[col].isna().sum())
    table.insert(0, "star_id", "KIC" + table["kepid"].astype(str))
    return table[list(KEPLER_OUTPUT_COLUMNS)], report
