"""The transits task ingests through the shared source registry (issue 18, point 2): canonical
tables of the ``files`` and ``lightkurve`` sources -> the task's raw tables
(:func:`deeprubin.tasks.transits.real.to_transit_tables`), then its preprocess step, on tiny
K2-like files written here; the shipped real Kepler/TESS FITS when ``../shared`` is there."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA, REPO_ROOT

from deeprubin.core import io
from deeprubin.core.config import ConfigError, compose_task
from deeprubin.core.schema import SchemaError
from deeprubin.sources.missions import MISSION_OFFSETS, TimeSystemError
from deeprubin.stages.ingest import run_ingest
from deeprubin.stages.preprocess import run_preprocess
from deeprubin.tasks.transits.real import read_ephemerides, to_transit_tables

CADENCE = {"Kepler": 29.4244, "K2": 29.4244, "TESS": 10.0}
K2_T0 = 2000.3            # BKJD
PERIOD, DURATION, DEPTH = 4.0, 0.15, 0.01


def canonical(object_id="EPIC1", band="k2", start=2000.0, days=30.0, minutes=29.4244, **objects_extra):
    rng = np.random.default_rng(0)
    time = np.arange(start, start + days, minutes / 1440.0)
    flux = 1.0 + 1e-4 * rng.standard_normal(time.size)
    lc = pd.DataFrame({"object_id": object_id, "time": time, "band": band, "flux": flux,
                       "flux_err": np.full(time.size, 1e-4)})
    obj = pd.DataFrame([{"object_id": object_id, "label": "planet", "group_id": object_id, **objects_extra}])
    return lc, obj


def test_tables_bin_short_cadence_and_take_the_catalogue_ephemeris():
    lc, obj = canonical("KIC 1", "kepler", start=500.0, days=3.0, minutes=1.0, time_system="BKJD",
                        ephemeris_period=2.0, ephemeris_t0=500.5, ephemeris_duration=0.1)
    out_lc, out_obj, eph = to_transit_tables(lc, obj, CADENCE)
    row = out_obj.iloc[0]
    assert row["mission"] == "Kepler" and row["time_system"] == "BKJD" and row["target_id"] == "KIC 1"
    assert row["cadence_days"] == pytest.approx(29.4244 / 1440)           # 1-min data binned to 29.4 min
    assert len(out_lc) == pytest.approx(3 * 1440 / 29.4244, abs=2)
    assert (out_lc["quality"] == 0).all() and np.isfinite(out_lc["flux_err"]).all()
    assert eph.to_dict("records") == [{"object_id": "KIC 1", "mission": "Kepler", "target_id": "KIC 1",
                                       "kind": "planet", "period": 2.0, "t0_bjd": 500.5 + MISSION_OFFSETS["Kepler"],
                                       "duration": 0.1}]


def test_tables_match_known_ephemerides_by_target_and_keep_native_cadence():
    lc, obj = canonical("EPIC1_detrended", group_id="EPIC1")
    lc["flux_err"] = np.nan                               # no errors: the point-to-point scatter
    known = pd.DataFrame({"target_id": ["EPIC1", "EPIC2"], "period": [PERIOD, 3.0],
                          "t0_bjd": [K2_T0 + MISSION_OFFSETS["K2"], 2.0], "duration": [DURATION, 0.1]})
    out_lc, out_obj, eph = to_transit_tables(lc, obj, CADENCE, known)
    assert out_obj.iloc[0]["target_id"] == "EPIC1" and out_obj.iloc[0]["cadence_days"] == pytest.approx(
        29.4244 / 1440, rel=1e-6)
    assert eph["target_id"].tolist() == ["EPIC1"] and eph["object_id"].tolist() == ["EPIC1_detrended"]
    assert (out_lc["flux_err"] > 0).all()


@pytest.mark.parametrize("change, error, message", [
    ({"band": "g"}, SchemaError, r"source 'x': object 'EPIC1': column 'band' must be one mission of "
                                 r"\['k2', 'kepler', 'tess'\], got \['g'\]"),
    ({"time_system": "BJD_TDB"}, SchemaError, r"object 'EPIC1': field 'time_system' is 'BJD_TDB'.*BKJD"),
    ({"start": 2459000.0}, TimeSystemError, r"source 'x': object 'EPIC1'"),
])
def test_tables_name_the_object_and_field_of_bad_input(change, error, message):
    lc, obj = canonical(start=change.get("start", 2000.0))
    if "band" in change:
        lc["band"] = change["band"]
    if "time_system" in change:
        obj["time_system"] = change["time_system"]
    with pytest.raises(error, match=message):
        to_transit_tables(lc, obj, CADENCE, where="source 'x'")


def test_ephemerides_file_errors_name_file_column_and_line(tmp_path):
    with pytest.raises(SchemaError, match=r"no such ephemerides file \(config key 'ephemerides.path'\)"):
        read_ephemerides(tmp_path / "absent.csv")
    (tmp_path / "a.csv").write_text("target_id,period,t0_bjd\nEPIC1,4,2456833\n")
    with pytest.raises(SchemaError, match=r"a\.csv: missing column\(s\) \['duration'\]"):
        read_ephemerides(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("target_id,period,t0_bjd,duration\nEPIC1,4,2456833,0.1\nEPIC2,four,1,0.1\n")
    with pytest.raises(SchemaError, match=r"b\.csv: column 'period', line 3: not a number: 'four'"):
        read_ephemerides(tmp_path / "b.csv")


def k2_folder(tmp_path):
    """Two header-less K2-like CSVs (time BKJD, normalised flux): one with box transits, one quiet."""
    folder = tmp_path / "k2"
    folder.mkdir()
    rng = np.random.default_rng(1)
    time = np.arange(2000.0, 2030.0, 29.4244 / 1440.0)
    phase = (time - K2_T0 + 0.5 * PERIOD) % PERIOD - 0.5 * PERIOD
    for name, depth in (("EPIC1", DEPTH), ("EPIC2", 0.0)):
        flux = 1.0 + 2e-4 * rng.standard_normal(time.size) - depth * (np.abs(phase) < DURATION / 2)
        pd.DataFrame({"t": time, "f": flux}).to_csv(folder / f"{name}.csv", header=False, index=False)
    (tmp_path / "eph.csv").write_text(f"target_id,period,t0_bjd,duration\nEPIC1,{PERIOD},"
                                      f"{K2_T0 + MISSION_OFFSETS['K2']},{DURATION}\n")
    return folder


def files_cfg(tmp_path, *extra):
    return compose_task("transits", [
        "experiment=tiny", "tasks/transits/source=files_k2", f"source.path={k2_folder(tmp_path)}",
        "source.progress_bar=false", f"ephemerides.path={tmp_path / 'eph.csv'}",
        f"paths.raw={tmp_path / 'raw'}", f"paths.processed={tmp_path / 'processed'}", *extra])


def test_ingest_and_preprocess_steps_run_on_the_files_source(tmp_path):
    cfg = files_cfg(tmp_path)
    report = run_ingest(cfg)
    assert report["source"] == "files" and report["n_lightcurves"] == 2 and report["n_ephemerides"] == 1
    assert report["per_mission"] == {"K2": 2}
    objects = io.read_parquet(tmp_path / "raw/objects.parquet")
    assert objects["mission"].tolist() == ["K2", "K2"] and set(objects["target_id"]) == {"EPIC1", "EPIC2"}
    processed = run_preprocess(cfg)
    segments = io.read_parquet(tmp_path / "processed/segments.parquet")
    assert processed["n_lightcurves_used"] == 2 and processed["n_positive_segments"] > 0
    positive = segments[segments["label"] == 1]
    assert set(positive["object_id"]) == {"EPIC1"}            # transits only where the ephemeris says


def test_ingest_refuses_a_registry_source_with_labels_outside_the_task(tmp_path):
    cfg = files_cfg(tmp_path, "source.label=transit")
    with pytest.raises(SchemaError, match=r"transit"):
        run_ingest(cfg)
    assert not (tmp_path / "raw/objects.parquet").exists()


def test_ingest_names_an_unknown_source_and_a_bad_simulator_key(tmp_path):
    cfg = compose_task("transits", ["experiment=tiny", f"paths.raw={tmp_path}"])
    cfg.source.name = "nope"
    with pytest.raises(ConfigError, match=r"config key 'source.name' must be one of \['simulate', "):
        run_ingest(cfg)
    cfg = compose_task("transits", ["experiment=tiny", f"paths.raw={tmp_path}", "+source.n_star=3"])
    with pytest.raises(ConfigError, match=r"config key 'tasks.transits.source.n_star' is not a known key"):
        run_ingest(cfg)


@pytest.mark.skipif(not REAL_DATA.exists(), reason=f"shared real data not found at {REAL_DATA}")
def test_real_kepler_and_tess_fits_through_the_lightkurve_source(tmp_path, monkeypatch):
    """HAT-P-7 (Kepler Q1 short cadence) and WASP-126 (TESS sector 1) read offline by the
    lightkurve source, with their published ephemerides (those of conf/transits/default.yaml's
    real targets), through ingest and preprocess: their transits land in positive segments."""
    monkeypatch.chdir(REPO_ROOT)
    (tmp_path / "eph.csv").write_text(
        "target_id,period,t0_bjd,duration\n"
        "KIC 10666592,2.204735417,2454954.3585417,0.16203\n"
        "TIC 25155310,3.2887898,2458327.519958,0.14321\n")
    cfg = compose_task("transits", [
        "tasks/transits/source=lightkurve", f"source.local.paths=[{REAL_DATA / 'kepler_tess_fits'}]",
        "source.catalog.path=null", "source.labels.label=planet", "source.fetch.progress=false",
        f"paths.cache={tmp_path / 'cache'}", f"ephemerides.path={tmp_path / 'eph.csv'}",
        f"paths.raw={tmp_path / 'raw'}", f"paths.processed={tmp_path / 'processed'}",
        "task.cadence_minutes.Kepler=10.0"])           # the Kepler file holds ~10 days (as transits_real)
    report = run_ingest(cfg)
    assert report["per_mission"] == {"Kepler": 1, "TESS": 1} and report["n_ephemerides"] == 2
    processed = run_preprocess(cfg)
    segments = io.read_parquet(tmp_path / "processed/segments.parquet")
    assert processed["n_lightcurves_used"] == 2
    assert set(segments.loc[segments["label"] == 1, "target_id"]) == {"KIC 10666592", "TIC 25155310"}
