"""Readers of the stellar task: SDSS spec files, Gaia DR3 extracts, the Kepler KOI table."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.table import Table

from deeprubin.tasks.stellar.readers import (
    GAIA_OUTPUT_COLUMNS, GAIA_ZERO_POINT_ERR, KEPLER_OUTPUT_COLUMNS, SdssSpectrum, StellarReadError,
    read_gaia_photometry, read_kepler_stellar, read_sdss_spectrum, sdss_spectrum_url)

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/real"
N_PIX = 50


# ---------------------------------------------------------------- SDSS spec files

def _coadd(n=N_PIX, drop=(), loglam=None, **override):
    loglam = np.linspace(3.5798, 3.5798 + 1e-4 * (n - 1), n, dtype=np.float32) if loglam is None else loglam
    arrays = {"flux": np.linspace(10, 20, n).astype(np.float32), "loglam": loglam,
              "ivar": np.full(n, 4.0, np.float32), "and_mask": np.zeros(n, np.int32),
              "or_mask": np.zeros(n, np.int32), "wdisp": np.ones(n, np.float32),
              "sky": np.zeros(n, np.float32), "model": np.ones(n, np.float32)}
    arrays["ivar"][3] = 0.0
    arrays["and_mask"][7] = 1 << 22   # NOSKY
    arrays.update(override)
    fmt = {np.dtype("float32"): "E", np.dtype("int32"): "J", np.dtype("float64"): "D"}
    cols = [fits.Column(name=k, format=fmt[np.asarray(v).dtype], array=v) for k, v in arrays.items() if k not in drop]
    return fits.BinTableHDU.from_columns(cols, name="COADD")


def _spall(name="SPALL", drop=(), **override):
    row = {"PLATE": 266, "MJD": 51630, "FIBERID": 3, "PLUG_RA": 146.71, "PLUG_DEC": -1.04, "Z": 1.2e-4,
           "Z_ERR": 8e-6, "CLASS": "STAR", "SUBCLASS": "G2", "ELODIE_TEFF": 5800.0, "ELODIE_LOGG": 4.3,
           "ELODIE_FEH": -0.2}
    row.update(override)
    cols = []
    for k, v in row.items():
        if k in drop:
            continue
        if isinstance(v, str):
            cols.append(fits.Column(name=k, format="16A", array=np.array([v])))
        elif isinstance(v, int):
            cols.append(fits.Column(name=k, format="J", array=np.array([v], np.int32)))
        else:
            cols.append(fits.Column(name=k, format="D", array=np.array([v])))
    return fits.BinTableHDU.from_columns(cols, name=name)


def _primary(drop=()):
    hdr = fits.Header()
    for k, v in {"PLATEID": 266, "MJD": 51630, "FIBERID": 3, "PLUG_RA": 146.71, "PLUG_DEC": -1.04}.items():
        if k not in drop:
            hdr[k] = v
    return fits.PrimaryHDU(header=hdr)


def _write(path, *hdus):
    fits.HDUList(list(hdus)).writeto(path, overwrite=True)
    return path


def test_sdss_spectrum_reads_the_documented_layout(tmp_path):
    path = _write(tmp_path / "spec-0266-51630-0003.fits", _primary(), _coadd(), _spall())
    spec = read_sdss_spectrum(path)
    assert isinstance(spec, SdssSpectrum)
    assert spec.wave.dtype == np.float64 and spec.flux.dtype == np.float32 and spec.ivar.dtype == np.float32
    loglam = np.linspace(3.5798, 3.5798 + 1e-4 * (N_PIX - 1), N_PIX, dtype=np.float32)
    np.testing.assert_allclose(spec.wave, 10.0 ** loglam.astype(np.float64))
    assert spec.mask.dtype == bool and set(np.flatnonzero(spec.mask)) == {3, 7}
    assert spec.ivar[7] == 0 and spec.ivar[0] == 4.0
    m = spec.meta
    assert (m["plate"], m["mjd"], m["fiberid"]) == (266, 51630, 3)
    assert m["ra"] == pytest.approx(146.71) and m["dec"] == pytest.approx(-1.04)
    assert m["class"] == "STAR" and m["subclass"] == "G2" and m["z"] == pytest.approx(1.2e-4)
    assert m["z_err"] == pytest.approx(8e-6)
    assert m["ELODIE_TEFF"] == 5800.0 and m["ELODIE_LOGG"] == 4.3 and m["ELODIE_FEH"] == -0.2


def test_sdss_mask_bits_selection_and_specobj_fallbacks(tmp_path):
    # DR8-style SPECOBJ extname; plate/mjd/fiber/ra/dec only in HDU 2; no ELODIE fit (TEFF 0).
    path = _write(tmp_path / "s.fits", _primary(drop=("PLATEID", "MJD", "FIBERID", "PLUG_RA", "PLUG_DEC")),
                  _coadd(), _spall(name="SPECOBJ", ELODIE_TEFF=0.0))
    spec = read_sdss_spectrum(path, and_mask_bits=1 << 0)   # NOSKY (bit 22) ignored
    assert set(np.flatnonzero(spec.mask)) == {3}
    assert spec.meta["plate"] == 266 and spec.meta["hdu2_extname"] == "SPECOBJ"
    assert math.isnan(spec.meta["ELODIE_TEFF"]) and math.isnan(spec.meta["ELODIE_FEH"])
    # no ELODIE columns at all (BOSS spAll): parameters simply absent
    path2 = _write(tmp_path / "b.fits", _primary(), _coadd(),
                   _spall(drop=("ELODIE_TEFF", "ELODIE_LOGG", "ELODIE_FEH")))
    assert "ELODIE_TEFF" not in read_sdss_spectrum(path2).meta


def test_sdss_nonfinite_flux_is_masked(tmp_path):
    flux = np.linspace(10, 20, N_PIX).astype(np.float32)
    flux[10] = np.nan
    spec = read_sdss_spectrum(_write(tmp_path / "s.fits", _primary(), _coadd(flux=flux), _spall()))
    assert spec.mask[10] and spec.flux[10] == 0 and spec.ivar[10] == 0


@pytest.mark.parametrize("case, match", [
    ("absent", "no such SDSS spec file"),
    ("garbage", "not a readable FITS file"),
    ("truncated", "not a readable FITS file"),
    ("no_coadd", r"HDU 1 \(coadded spectrum"),
    ("no_spall", r"HDU 2 \(spAll/specObj"),
    ("no_ivar", r"HDU 1 \(COADD\): missing column 'ivar'"),
    ("no_class", r"HDU 2 \(SPALL\): missing column 'CLASS'"),
    ("bad_z", r"HDU 2 \(SPALL\): column 'Z' is not a number"),
    ("no_plate", "HDU 0: missing keyword 'PLATEID'"),
    ("bad_loglam", "column 'loglam' must be finite and strictly increasing"),
    ("array_cells", "must be 1-D of equal length"),
])
def test_sdss_errors_name_file_and_hdu(tmp_path, case, match):
    path = tmp_path / "spec-bad.fits"
    if case == "garbage":
        path.write_bytes(b"\x00\xffnot fits at all" * 300)
    elif case == "truncated":
        _write(path, _primary(), _coadd(n=4000), _spall())
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "no_coadd":
        _write(path, _primary())
    elif case == "no_spall":
        _write(path, _primary(), _coadd())
    elif case == "no_ivar":
        _write(path, _primary(), _coadd(drop=("ivar",)), _spall())
    elif case == "no_class":
        _write(path, _primary(), _coadd(), _spall(drop=("CLASS",)))
    elif case == "bad_z":
        _write(path, _primary(), _coadd(), _spall(Z="high"))
    elif case == "no_plate":
        _write(path, _primary(drop=("PLATEID",)), _coadd(), _spall(drop=("PLATE",)))
    elif case == "bad_loglam":
        loglam = np.linspace(3.58, 3.59, N_PIX, dtype=np.float32)[::-1].copy()
        _write(path, _primary(), _coadd(loglam=loglam), _spall())
    elif case == "array_cells":   # a vector-valued 'flux' cell: wrong-length arrays
        cols = [fits.Column(name="flux", format="3E", array=np.ones((N_PIX, 3), np.float32)),
                fits.Column(name="loglam", format="E", array=np.linspace(3.58, 3.59, N_PIX).astype(np.float32)),
                fits.Column(name="ivar", format="E", array=np.ones(N_PIX, np.float32)),
                fits.Column(name="and_mask", format="J", array=np.zeros(N_PIX, np.int32))]
        _write(path, _primary(), fits.BinTableHDU.from_columns(cols, name="COADD"), _spall())
    with pytest.raises(StellarReadError, match=match) as info:
        read_sdss_spectrum(path)
    assert str(path) in str(info.value)


def test_sdss_spectrum_url():
    assert sdss_spectrum_url(266, 51630, 3) == (
        "https://data.sdss.org/sas/dr17/sdss/spectro/redux/26/spectra/lite/0266/spec-0266-51630-0003.fits")
    assert sdss_spectrum_url(4055, 55359, 596, run2d="v5_13_2", lite=False) == (
        "https://data.sdss.org/sas/dr17/eboss/spectro/redux/v5_13_2/spectra/4055/spec-4055-55359-0596.fits")
    with pytest.raises(ValueError, match="'fiber'"):
        sdss_spectrum_url(266, 51630, "3")


# ---------------------------------------------------------------- Gaia DR3

def _gaia_table(n=3, drop=()):
    t = Table({"source_id": np.array([4295806720, 38655544960, 1275606125067016832], np.int64)[:n],
               "ra": np.array([44.99, 45.07, 45.2])[:n], "dec": np.array([0.005, 0.02, 0.1])[:n],
               "parallax": np.array([1.2, 3.4, 0.5])[:n], "parallax_error": np.array([0.1, 0.05, 0.3])[:n],
               "phot_g_mean_mag": np.array([17.6, 16.3, 12.1])[:n],
               "phot_g_mean_flux_over_error": np.array([1000.0, 2000.0, 5000.0])[:n],
               "phot_bp_mean_mag": np.ma.masked_array([18.0, 16.8, 12.5][:n], mask=[False, True, False][:n]),
               "phot_bp_mean_flux_over_error": np.array([100.0, np.nan, 800.0])[:n],
               "phot_rp_mean_mag": np.array([17.0, 15.6, 11.5])[:n],
               "phot_rp_mean_flux_over_error": np.array([150.0, 300.0, 0.0])[:n]})
    t.remove_columns([c for c in drop])
    return t


@pytest.mark.parametrize("suffix, fmt", [(".csv", "ascii.csv"), (".ecsv", "ascii.ecsv"),
                                         (".vot", "votable"), (".fits", "fits")])
def test_gaia_photometry_all_formats(tmp_path, suffix, fmt):
    path = tmp_path / f"gaia{suffix}"
    _gaia_table().write(path, format=fmt)
    out = read_gaia_photometry(path)
    assert tuple(out.columns) == GAIA_OUTPUT_COLUMNS
    assert out["source_id"].tolist() == [4295806720, 38655544960, 1275606125067016832]  # exact int64
    assert out["mag_G"].tolist() == pytest.approx([17.6, 16.3, 12.1])
    k = 2.5 / math.log(10)
    assert out["mag_err_G"].iloc[0] == pytest.approx(math.hypot(k / 1000.0, GAIA_ZERO_POINT_ERR["G"]))
    assert out["mag_err_BP"].iloc[0] == pytest.approx(math.hypot(k / 100.0, GAIA_ZERO_POINT_ERR["BP"]))
    assert np.isnan(out["mag_BP"].iloc[1]) and np.isnan(out["mag_err_BP"].iloc[1])
    assert np.isnan(out["mag_err_RP"].iloc[2])   # flux_over_error 0: no error
    assert out["parallax"].tolist() == pytest.approx([1.2, 3.4, 0.5])


def test_gaia_optional_columns_absent(tmp_path):
    path = tmp_path / "g.csv"
    _gaia_table(drop=("ra", "dec", "parallax", "parallax_error", "phot_g_mean_flux_over_error")).write(
        path, format="ascii.csv")
    out = read_gaia_photometry(path)
    assert out[["ra", "dec", "parallax", "parallax_error", "mag_err_G"]].isna().all().all()
    assert out["mag_err_RP"].notna().sum() == 2


@pytest.mark.parametrize("case, match", [
    ("absent", "no such Gaia photometry file"),
    ("suffix", "unknown table format"),
    ("garbage_fits", "not a readable fits table"),
    ("truncated_fits", "not a readable fits table"),
    ("missing_col", r"missing column\(s\) \['phot_rp_mean_mag'\]"),
    ("nonnumeric", r"column 'phot_g_mean_mag', row 1: not a number: 'bright'"),
    ("duplicate", "column 'source_id': duplicate value"),
    ("empty", "no rows"),
])
def test_gaia_errors_name_file_and_column(tmp_path, case, match):
    path = tmp_path / ("g.txt" if case == "suffix" else "g.fits" if "fits" in case else "g.csv")
    if case == "suffix":
        path.write_text("source_id\n1\n")
    elif case == "garbage_fits":
        path.write_bytes(b"\x13\x37 garbage" * 500)
    elif case == "truncated_fits":
        big = _gaia_table()
        big = Table({c: np.resize(np.ma.filled(big[c], np.nan), 5000) for c in big.colnames})
        big["source_id"] = np.arange(5000, dtype=np.int64)
        big.write(path, format="fits")
        path.write_bytes(path.read_bytes()[:20000])
    elif case == "missing_col":
        _gaia_table(drop=("phot_rp_mean_mag",)).write(path, format="ascii.csv")
    elif case == "nonnumeric":
        t = _gaia_table().to_pandas()
        t["phot_g_mean_mag"] = t["phot_g_mean_mag"].astype(object)
        t.loc[1, "phot_g_mean_mag"] = "bright"
        t.to_csv(path, index=False)
    elif case == "duplicate":
        t = _gaia_table().to_pandas()
        t.loc[2, "source_id"] = t.loc[0, "source_id"]
        t.to_csv(path, index=False)
    elif case == "empty":
        _gaia_table()[:0].write(path, format="ascii.csv")
    with pytest.raises(StellarReadError, match=match) as info:
        read_gaia_photometry(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- Kepler KOI table

KOI_HEADER = ("kepid,kepoi_name,kepler_name,koi_period,koi_time0bk,duration(days),koi_ldm_coeff2,koi_ldm_coeff1,"
              "koi_tce_plnt_num,koi_steff,koi_steff_err1,koi_steff_err2,koi_slogg,koi_slogg_err1,koi_slogg_err2,"
              "FeH,FeH_err1,FeH_err2,radius,radius_err1,radius_err2,mass,mass_err1,mass_err2,ra,dec,koi_kepmag,"
              "koi_gmag,koi_rmag,koi_imag,koi_zmag,koi_jmag,koi_hmag,koi_kmag")
KOI_ROWS = [
    # star 11446443: two planets, same star values
    "11446443,K00001.01,Kepler-1 b,2.47,122.76,0.07,0.27,0.39,1,5820,78,-78,4.457,0.024,-0.024,-0.06,0.15,-0.15,"
    "0.96,0.04,-0.04,0.97,0.06,-0.06,286.80847,49.316399,11.338,11.736,11.275,11.168,11.126,10.232,9.92,9.846",
    "11446443,K00001.02,,5.1,130.1,0.1,0.27,0.39,2,5820,78,-78,4.457,0.024,-0.024,-0.06,0.15,-0.15,"
    "0.96,0.04,-0.04,0.97,0.06,-0.06,286.80847,49.316399,11.338,11.736,11.275,11.168,11.126,10.232,9.92,9.846",
    # star 3559935: second row disagrees (a conflict); first complete row kept
    "3559935,K00492.01,,29.9,140.2,0.2,0.3,0.4,1,5275,80,-100,4.5,0.1,-0.1,0.1,0.15,-0.15,"
    "0.9,0.1,-0.1,0.9,0.1,-0.1,290.1,38.6,14.424,15.0,14.3,14.1,,12.9,12.5,12.4",
    "3559935,K00492.02,,82.5,150.1,0.3,0.3,0.4,2,5589,70,-70,4.4,0.1,-0.1,0.2,0.14,-0.14,"
    "0.9,0.1,-0.1,0.9,0.1,-0.1,290.1,38.6,14.424,15.0,14.3,14.1,,12.9,12.5,12.4",
    # star 3447722: first row lacks parameters, second has them (not a conflict)
    "3447722,K01198.04,,3.3,131.0,0.1,,,,,,,,,,,,,,,,,,,291.0,38.5,15.319,15.8,15.2,15.1,15.0,14.2,13.9,13.8",
    "3447722,K01198.01,,7.4,135.0,0.1,0.3,0.4,1,6157,150,-200,4.3,0.1,-0.2,-0.1,0.30,-0.30,"
    "1.1,0.1,-0.1,1.1,0.1,-0.1,291.0,38.5,15.319,15.8,15.2,15.1,15.0,14.2,13.9,13.8",
    # star 2852810: no parameters at all: dropped
    "2852810,K06097.01,,1.1,131.0,0.1,,,,,,,,,,,,,,,,,,,292.0,39.0,12.749,13.1,12.7,12.6,12.5,11.8,11.5,11.4",
]


def _koi(tmp_path, rows=KOI_ROWS, header=KOI_HEADER):
    path = tmp_path / "koi.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_kepler_one_row_per_star(tmp_path):
    table, report = read_kepler_stellar(_koi(tmp_path))
    assert tuple(table.columns) == KEPLER_OUTPUT_COLUMNS
    assert table["kepid"].tolist() == [3447722, 3559935, 11446443]
    assert table["star_id"].tolist() == ["KIC3447722", "KIC3559935", "KIC11446443"]
    row = table.set_index("kepid").loc[3559935]
    assert row["teff"] == 5275 and row["teff_err"] == pytest.approx(90.0)   # mean of 80, |-100|
    assert np.isnan(row["mag_z"]) and row["mag_Ks"] == 12.4
    assert table.set_index("kepid").loc[3447722, "teff"] == 6157   # complete row preferred
    assert table.set_index("kepid").loc[11446443, "logg_err"] == pytest.approx(0.024)
    assert report["n_rows"] == 7 and report["n_stars"] == 4 and report["n_stars_kept"] == 3
    assert report["stars_conflicting"] == 1 and report["conflicting_kepids"] == [3559935]
    assert report["stars_with_incomplete_rows"] == 1
    assert report["dropped_missing_teff"] == 1 and report["n_dropped"] == 1
    assert report["missing_mag_z"] == 1 and report["missing_mag_J"] == 0


def test_kepler_conflict_raise_and_requirements(tmp_path):
    with pytest.raises(StellarReadError, match=r"kepid 3559935: line 5 disagrees with line 4 in 'teff'"):
        read_kepler_stellar(_koi(tmp_path), on_conflict="raise")
    table, report = read_kepler_stellar(_koi(tmp_path), require_mags=("mag_z",))
    assert 3559935 not in table["kepid"].tolist() and report["dropped_missing_mag_z"] == 1
    with pytest.raises(ValueError, match="on_conflict"):
        read_kepler_stellar(_koi(tmp_path), on_conflict="mean")
    with pytest.raises(ValueError, match="mag_y"):
        read_kepler_stellar(_koi(tmp_path), require_mags=("mag_y",))


@pytest.mark.parametrize("case, match", [
    ("absent", "no such Kepler catalogue file"),
    ("empty", "not a readable CSV table"),
    ("binary", "not a readable CSV table|missing column"),
    ("missing_col", r"missing column\(s\) \['FeH_err2'\]"),
    ("nonnumeric", r"column 'koi_steff', line 3: not a number: 'hot'"),
    ("bad_kepid", r"column 'kepid', line 2: not a number: 'KIC1'"),
    ("no_rows", "no rows"),
])
def test_kepler_errors_name_file_and_column(tmp_path, case, match):
    path = tmp_path / "koi.csv"
    if case == "empty":
        path.write_text("")
    elif case == "binary":
        path.write_bytes(bytes(range(256)) * 20)
    elif case == "missing_col":
        path = _koi(tmp_path, KOI_ROWS, KOI_HEADER.replace(",FeH_err2", ",FeH_errX"))
    elif case == "nonnumeric":
        path = _koi(tmp_path, [KOI_ROWS[0], KOI_ROWS[1].replace(",5820,", ",hot,")])
    elif case == "bad_kepid":
        path = _koi(tmp_path, ["KIC1" + KOI_ROWS[0][8:]])
    elif case == "no_rows":
        path = _koi(tmp_path, [])
    with pytest.raises(StellarReadError, match=match) as info:
        read_kepler_stellar(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not (REAL_DATA / "catalogs/kepler_confirmed_planets.csv").exists(),
                    reason="shared real data absent")
def test_kepler_real_catalogue():
    table, report = read_kepler_stellar(REAL_DATA / "catalogs/kepler_confirmed_planets.csv")
    assert report["n_rows"] == 4723 and report["n_stars"] == 3611
    assert table["kepid"].is_unique and len(table) == report["n_stars_kept"] > 3400
    assert table[["teff", "logg", "feh"]].notna().all().all()
    assert table["teff"].between(2000, 12000).all()
    assert table["mag_J"].notna().all() and table["mag_Ks"].notna().all()
    assert report["missing_mag_z"] > report["missing_mag_g"]
