"""lightkurve source: the real Kepler/TESS FITS files through lightkurve.read, mocked MAST search.

Tests that need ``../shared/data/real/kepler_tess_fits`` skip cleanly when it is absent; the
corrupted-file and id tests run without it (they build their own FITS file).
"""
from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from conftest import REAL_DATA

from deeprubin.core.config import ConfigError
from deeprubin.core.schema import validate_tables
from deeprubin.sources.lightkurve_source import (
    LightCurveFileError,
    normalise_target,
    object_id_of,
    process_segments,
    read_local,
)

FITS_DIR = REAL_DATA / "kepler_tess_fits"
KEPLER = FITS_DIR / "kplr010666592-2009131110544_slc.fits"
TESS = FITS_DIR / "hlsp_tess-data-alerts_tess_phot_00025155310-s01_tess_v1_lc.fits"
CATALOG = REAL_DATA / "catalogs" / "kepler_confirmed_planets.csv"
needs_fits = pytest.mark.skipif(not FITS_DIR.is_dir(), reason="shared real FITS absent")

warnings.filterwarnings("ignore", message=".*oktopus.*")


def lk_cfg(tmp_path, *extra):
    from deeprubin.core.config import compose_task

    return compose_task("transients", ["source=lightkurve", f"paths.raw={tmp_path}", f"paths.cache={tmp_path}/cache", "source.fetch.progress=false",
                           "source.fetch.requests_per_second=null", "source.fetch.max_retries=2", *extra])


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize("target, mission, expected", [
    ("KIC 10666592", None, ("KIC 10666592", "kepler")),
    ("kic010666592", None, ("KIC 10666592", "kepler")),
    ("EPIC 201367065", None, ("EPIC 201367065", "k2")),
    ("TIC 25155310", "TESS", ("TIC 25155310", "tess")),
    (25155310, "tess", ("TIC 25155310", "tess")),
])
def test_normalise_target(target, mission, expected):
    assert normalise_target(target, mission) == expected


@pytest.mark.parametrize("target, mission", [("TIC 1", "Kepler"), ("12345", None), ("Kepler-10", None)])
def test_normalise_target_rejects(target, mission):
    with pytest.raises(ConfigError):
        normalise_target(target, mission)


# ---------------------------------------------------------------- corrupted files


def _write_small_fits(path: Path) -> None:
    from astropy.io import fits

    hdu = fits.BinTableHDU.from_columns([fits.Column(name="TIME", format="D", array=np.arange(10.0)),
                                         fits.Column(name="PDCSAP_FLUX", format="E", array=np.ones(10))])
    hdu.header["EXTNAME"] = "LIGHTCURVE"
    primary = fits.PrimaryHDU()
    primary.header["TELESCOP"] = "Kepler"
    primary.header["KEPLERID"] = 1
    fits.HDUList([primary, hdu]).writeto(path)


def test_truncated_header_gives_clear_error_naming_file(tmp_path):
    good = tmp_path / "kplr000000001-2009131110544_slc.fits"
    _write_small_fits(good)
    bad = tmp_path / "truncated_slc.fits"
    bad.write_bytes(good.read_bytes()[:1000])          # cut inside the primary header
    with pytest.raises(LightCurveFileError) as info:
        read_local(bad)
    msg = str(info.value)
    assert str(bad) in msg and "truncated" in msg.lower()


@needs_fits
def test_real_fits_with_truncated_header_copy(tmp_path):
    bad = tmp_path / KEPLER.name
    bad.write_bytes(KEPLER.read_bytes()[:5000])        # header of the primary HDU cut short
    with pytest.raises(LightCurveFileError) as info:
        read_local([TESS, bad])
    msg = str(info.value)
    assert str(bad) in msg
    assert "2880" in msg or "END" in msg or "truncated" in msg   # astropy's own diagnosis is quoted


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        read_local(tmp_path / "nope.fits")


# ---------------------------------------------------------------- real FITS, offline


@needs_fits
def test_read_local_real_kepler_and_tess():
    lcs = read_local(FITS_DIR)
    ids = sorted(object_id_of(lc) for lc in lcs)
    assert ids == ["KIC 10666592", "TIC 25155310"]


@needs_fits
def test_flagged_cadences_and_nans_removed():
    none = read_local(KEPLER, quality_bitmask="none")[0]
    default = read_local(KEPLER)[0]
    assert len(default) < len(none)                          # flagged cadences gone at read time
    from lightkurve.utils import KeplerQualityFlags
    assert not np.any(np.asarray(default.quality.value) & KeplerQualityFlags.DEFAULT_BITMASK)
    table, meta = process_segments([default], "KIC 10666592")
    assert meta["n_removed_nan"] > 0                         # Q0 has NaN PDCSAP cadences
    assert np.isfinite(table[["time", "flux", "flux_err"]].to_numpy()).all()
    assert (table["flux_err"] > 0).all() and table["time"].is_monotonic_increasing
    assert meta["time_system"] == "BKJD" and meta["bjd_offset"] == 2454833.0
    assert meta["author"] == "Kepler" and meta["flux_origin"] == "pdcsap_flux"


@needs_fits
def test_segments_are_normalised_each_then_stitched():
    lc = read_local(KEPLER)[0]
    half = len(lc) // 2
    first, second = lc[:half].copy(), lc[half:].copy()
    second.flux = second.flux * 1.3                     # a quarter with another aperture/gain
    second.flux_err = second.flux_err * 1.3
    second.meta["QUARTER"] = 1
    table, meta = process_segments([first, second], "KIC 10666592")
    t_split = float(np.asarray(second.time.value)[0])
    assert np.nanmedian(table.loc[table["time"] < t_split, "flux"]) == pytest.approx(1.0, abs=1e-6)
    assert np.nanmedian(table.loc[table["time"] >= t_split, "flux"]) == pytest.approx(1.0, abs=1e-6)
    assert meta["segments"] == "Q0,Q1" and meta["n_segments"] == 2
    rel = table["flux_err"] / table["flux"]
    assert rel.median() == pytest.approx(np.nanmedian(np.asarray(lc.flux_err.value) / np.asarray(lc.flux.value)),
                                         rel=0.05)


@needs_fits
def test_load_local_two_missions_mjd_validates(tmp_path):
    cfg = lk_cfg(tmp_path, f"source.local.paths=[{FITS_DIR}]", "source.labels.label=planet_host",
                 "source.time_format=mjd")
    from deeprubin.sources.lightkurve_source import load_lightkurve

    lc, obj = load_lightkurve(cfg)
    out_lc, out_obj, report = validate_tables(lc, obj, classes=["planet_host"], bands=["kepler", "tess"],
                                              min_points=100)
    assert report.n_objects_out == 2
    o = out_obj.set_index("object_id")
    assert set(o["time_system"]) == {"BMJD_TDB"} and set(o["bjd_offset"]) == {2400000.5}
    assert set(o["label_source"]) == {"config"}
    assert o.loc["KIC 10666592", "group_id"] == "KIC 10666592"
    kep = out_lc[out_lc["object_id"] == "KIC 10666592"]
    assert set(kep["band"]) == {"kepler"}
    native = read_local(KEPLER)[0]
    t0 = float(np.asarray(native.time.value)[0])
    assert kep["time"].iloc[0] == pytest.approx(t0 + 2454833.0 - 2400000.5, abs=1e-6)
    assert abs(out_lc["flux"].median() - 1.0) < 1e-3


@needs_fits
def test_native_time_refuses_to_mix_missions(tmp_path):
    from deeprubin.sources.lightkurve_source import load_lightkurve

    with pytest.raises(ConfigError, match="time_format"):
        load_lightkurve(lk_cfg(tmp_path, f"source.local.paths=[{FITS_DIR}]", "source.labels.label=planet_host"))


@needs_fits
def test_native_time_single_mission_records_btjd(tmp_path):
    from deeprubin.sources.lightkurve_source import load_lightkurve

    lc, obj = load_lightkurve(lk_cfg(tmp_path, f"source.local.paths=[{FITS_DIR}]", "source.mission=TESS",
                                     "source.labels.label=planet_host"))
    assert obj["object_id"].tolist() == ["TIC 25155310"]
    assert obj.loc[0, "time_system"] == "BTJD" and obj.loc[0, "bjd_offset"] == 2457000.0
    assert 1325 < lc["time"].min() < 1326                        # BTJD of sector 1


@needs_fits
@pytest.mark.skipif(not CATALOG.exists(), reason="shared catalogue absent")
def test_catalog_label_and_ephemeris(tmp_path):
    from deeprubin.sources.lightkurve_source import load_lightkurve

    lc, obj = load_lightkurve(lk_cfg(tmp_path, f"source.local.paths=[{FITS_DIR}]", "source.time_format=bjd",
                                     f"source.catalog.path={CATALOG}", "source.labels.label=field_star"))
    o = obj.set_index("object_id")
    assert o.loc["KIC 10666592", "label"] == "planet_host"
    assert o.loc["KIC 10666592", "label_source"] == "catalog:kepler_confirmed_planets.csv"
    assert o.loc["KIC 10666592", "ephemeris_period"] == pytest.approx(2.204735)
    assert o.loc["KIC 10666592", "ephemeris_t0"] == pytest.approx(121.358542 + 2454833.0)   # BKJD -> BJD
    assert o.loc["TIC 25155310", "label"] == "field_star"         # not in the Kepler catalogue


@needs_fits
def test_user_label_table_wins(tmp_path):
    from deeprubin.sources.lightkurve_source import load_lightkurve

    table = tmp_path / "labels.csv"
    pd.DataFrame({"object_id": ["KIC 10666592"], "label": ["eb"]}).to_csv(table, index=False)
    _, obj = load_lightkurve(lk_cfg(tmp_path, f"source.local.paths=[{KEPLER}]", "source.labels.label=planet_host",
                                    f"source.labels.table={table}", "source.labels.map={eb: binary}"))
    assert obj.loc[0, "label"] == "binary" and obj.loc[0, "label_source"] == "user_table"


# ---------------------------------------------------------------- mocked MAST search + download


class FakeSearchResult:
    """What lightkurve.search_lightcurve returns, reduced to what the loader uses."""

    def __init__(self, files, log):
        self.files, self.log = list(files), log

    def __len__(self):
        return len(self.files)

    def download_all(self, quality_bitmask="default", download_dir=None, cutout_size=None, **kwargs):
        import lightkurve as lk

        self.log.append(("download_all", quality_bitmask, download_dir, kwargs.get("flux_column")))
        Path(download_dir).mkdir(parents=True, exist_ok=True)
        fault = self.log.download_faults.pop(0) if self.log.download_faults else None
        if fault == "corrupt":
            raise lk.utils.LightkurveError(f"Not recognized as a supported data product:\n{download_dir}/x.fits\n"
                                           "This file may be corrupt due to an interrupted download.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lk.LightCurveCollection([lk.read(str(f), quality_bitmask=quality_bitmask, **kwargs)
                                            for f in self.files])


class SearchLog(list):
    def __init__(self):
        super().__init__()
        self.search_faults: list = []
        self.download_faults: list = []


@pytest.fixture(scope="module")
def synthetic_quarters(tmp_path_factory):
    """Two Kepler-format quarters of 'KIC 123' written by lightkurve itself (no shared data needed):
    different flux levels, one NaN cadence and one cadence flagged with a default-mask bit."""
    import lightkurve as lk

    folder = tmp_path_factory.mktemp("synthetic_kepler")
    rng = np.random.default_rng(0)
    files = []
    for quarter, (start, level) in enumerate([(120.0, 1000.0), (135.0, 1500.0)], start=3):
        n = 400
        flux = level * (1 + rng.normal(0, 1e-3, n))
        flux[10] = np.nan
        quality = np.zeros(n, dtype=int)
        quality[20] = 1                                   # AttitudeTweak: in the default bitmask
        lc = lk.KeplerLightCurve(time=start + np.arange(n) * 0.0204, flux=flux, flux_err=np.full(n, level * 1e-3),
                                 quality=quality)
        lc.meta.update({"TARGETID": 123, "KEPLERID": 123, "MISSION": "Kepler", "QUARTER": quarter, "CHANNEL": 1,
                        "RA": 290.0, "DEC": 45.0})
        path = folder / f"kplr000000123-q{quarter}_llc.fits"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lc.to_fits(str(path), overwrite=True)
        files.append(path)
    return files


@pytest.fixture
def mast(monkeypatch, synthetic_quarters):
    import lightkurve

    log = SearchLog()
    products = {"KIC 10666592": [KEPLER], "TIC 25155310": [TESS], "KIC 123": synthetic_quarters}

    def fake_search(target, **kwargs):
        log.append(("search", target, kwargs))
        fault = log.search_faults.pop(0) if log.search_faults else None
        if fault == "conn":
            raise requests.exceptions.ConnectionError("MAST unreachable")
        if fault == 503:
            resp = requests.models.Response()
            resp.status_code = 503
            raise requests.exceptions.HTTPError("503 Service Unavailable", response=resp)
        return FakeSearchResult(products.get(target, []), log)

    monkeypatch.setattr(lightkurve, "search_lightcurve", fake_search)
    return log


def _load(cfg, sleeps=None):
    from deeprubin.sources.lightkurve_source import load_lightkurve

    return load_lightkurve(cfg, sleep=(sleeps.append if sleeps is not None else (lambda s: None)),
                           rng=random.Random(0))


def test_mocked_search_synthetic_quarters_stitched(mast, tmp_path):
    cfg = lk_cfg(tmp_path, "source.targets=[kic123]", "source.labels.label=planet_host")
    lc, obj = _load(cfg)
    assert obj.loc[0, "object_id"] == "KIC 123" and obj.loc[0, "segments"] == "Q3,Q4"
    assert len(lc) == 2 * (400 - 2)                      # NaN and flagged cadence gone in each quarter
    for start in (120.0, 135.0):                         # each quarter normalised by its own median
        part = lc[(lc["time"] >= start) & (lc["time"] < start + 10)]
        assert part["flux"].median() == pytest.approx(1.0, abs=1e-6)   # FITS stores float32
        assert part["flux_err"].median() == pytest.approx(1e-3, rel=0.01)
    validate_tables(lc, obj, classes=["planet_host"], bands=["kepler"], min_points=100)


@needs_fits
def test_mocked_search_downloads_processes_and_caches(mast, tmp_path):
    cfg = lk_cfg(tmp_path, "source.targets=[KIC 10666592]", "source.labels.label=planet_host",
                 "source.search.author=Kepler", "source.search.exptime=short")
    lc, obj = _load(cfg)
    searches = [c for c in mast if c[0] == "search"]
    assert searches == [("search", "KIC 10666592", {"mission": "Kepler", "author": "Kepler", "exptime": "short"})]
    dl = [c for c in mast if c[0] == "download_all"][0]
    assert dl[1] == "default" and dl[3] == "pdcsap_flux" and "cache/lightkurve/mast/KIC_10666592" in dl[2]
    assert obj.loc[0, "time_system"] == "BKJD" and set(lc["band"]) == {"kepler"}
    validate_tables(lc, obj, classes=["planet_host"], bands=["kepler"], min_points=100)
    root = next((tmp_path / "cache" / "lightkurve").glob("products-*"))
    manifest = json.loads((root / "fetch_manifest.json").read_text())
    assert manifest["counts"]["fetched"] == 1 and manifest["versions"]["lightkurve"]
    n = len(mast)
    lc2, _ = _load(cfg)                                   # rerun: from the parquet cache, no MAST call
    assert len(mast) == n
    pd.testing.assert_frame_equal(lc, lc2)


def test_mocked_search_retries_connection_error_and_503(mast, tmp_path):
    mast.search_faults = ["conn", 503]
    sleeps = []
    cfg = lk_cfg(tmp_path, "source.targets=[KIC 123]", "source.labels.label=planet_host")
    _, obj = _load(cfg, sleeps)
    assert len(obj) == 1 and len(sleeps) == 2
    assert [c[1] for c in mast if c[0] == "search"] == ["KIC 123"] * 3


def test_mocked_empty_search_is_recorded_and_not_repeated(mast, tmp_path):
    cfg = lk_cfg(tmp_path, "source.targets=[KIC 123, KIC 999]", "source.labels.label=planet_host")
    _, obj = _load(cfg)
    assert obj["object_id"].tolist() == ["KIC 123"]
    root = next((tmp_path / "cache" / "lightkurve").glob("products-*"))
    assert json.loads((root / "failures.json").read_text())["KIC 999"]["reason"].startswith("empty")
    mast.clear()
    _load(cfg)
    assert mast == []                                    # cached + remembered failure: no MAST call


@needs_fits
def test_mocked_empty_search_and_corrupt_download_are_recorded(mast, tmp_path):
    mast.download_faults = ["corrupt"]
    cfg = lk_cfg(tmp_path, "source.targets=[TIC 25155310, KIC 10666592, TIC 1]", "source.labels.label=planet_host",
                 "source.time_format=bjd")
    lc, obj = _load(cfg)
    assert obj["object_id"].tolist() == ["KIC 10666592"]
    root = next((tmp_path / "cache" / "lightkurve").glob("products-*"))
    failures = json.loads((root / "failures.json").read_text())
    assert failures["TIC 1"]["reason"].startswith("empty")
    assert failures["TIC 25155310"]["reason"].startswith("corrupt_download")
    assert not (tmp_path / "cache" / "lightkurve" / "mast" / "TIC_25155310").exists()   # bad download wiped
    _, obj = _load(lk_cfg(tmp_path, "source.targets=[TIC 25155310, KIC 10666592, TIC 1]",
                          "source.labels.label=planet_host", "source.time_format=bjd",
                          "source.fetch.refetch_failed=true"))
    assert sorted(obj["object_id"]) == ["KIC 10666592", "TIC 25155310"]


@needs_fits
def test_mocked_kill_and_resume(mast, tmp_path, monkeypatch):
    import lightkurve

    original = lightkurve.search_lightcurve
    killed = []

    def interrupting(target, **kwargs):
        if target == "TIC 25155310" and not killed:
            killed.append(target)
            raise KeyboardInterrupt                      # the user hits Ctrl-C on the 2nd target
        return original(target, **kwargs)

    monkeypatch.setattr(lightkurve, "search_lightcurve", interrupting)
    cfg = lk_cfg(tmp_path, "source.targets=[KIC 10666592, TIC 25155310]", "source.labels.label=planet_host",
                 "source.time_format=bjd")
    with pytest.raises(KeyboardInterrupt):
        _load(cfg)
    mast.clear()
    _, obj = _load(cfg)
    assert [c[1] for c in mast if c[0] == "search"] == ["TIC 25155310"]   # only the missing target
    assert len(obj) == 2


@pytest.mark.network
def test_live_mast_search():
    import lightkurve as lk

    result = lk.search_lightcurve("KIC 10666592", mission="Kepler", exptime="long", quarter=1)
    assert len(result) >= 1
