"""``source=files`` (deeprubin.sources.files): every layout, option and error path on tiny
fixtures written in the test, plus the shipped configs on the shared real data (skipped when
``../shared/data/real`` is absent)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA, REPO_ROOT, build_tiny_repo, run_in
from omegaconf import OmegaConf

from deeprubin.core.config import ConfigError, compose_task
from deeprubin.core.schema import SchemaError, mag_to_flux, validate_tables
from deeprubin.sources.files import DEFAULTS, load_files, load_files_report, resolve_options

CLASSES = ["SNIa", "SNII", "SNIbc", "QSO", "Cepheid", "RRLyrae"]
BANDS = {"g": 4746.48, "r": 6366.38}
#: (task, config group, option): the shipped files-source configs.
SHIPPED = [("transients", "source", "files_bts_snia"), ("transients", "source", "files_sdss_rrlyrae"),
           ("transients", "source", "files_alerce_30sne"), ("transits", "tasks/transits/source", "files_k2")]


# --------------------------------------------------------------------------- helpers

def make_cfg(classes=CLASSES, bands=BANDS, **source):
    """Whole-pipeline-shaped config with a ``files`` source node (no progress bar)."""
    node = {"name": "files", "progress_bar": False,
            "validation": {"on_invalid": "drop", "min_points": 3, "min_bands": 1}}
    node.update(source)
    return OmegaConf.create({"task": {"name": "t", "classes": list(classes), "band_wavelengths": dict(bands)},
                             "source": node})


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.strip() + "\n")
    return path


MAG_COLUMNS = {"time": "time", "band": "band", "mag": "mag", "mag_err": "magerr"}


def bts_like(tmp_path: Path) -> Path:
    """Two per-object CSVs in the BTS layout (bands g and R)."""
    folder = tmp_path / "lc"
    write_csv(folder / "ZTF1.csv", """
time,mag,magerr,band
58000.0,19.0,0.1,g
58001.0,18.5,0.1,R
58002.0,18.0,0.05,g
58003.0,18.2,0.05,R
""")
    write_csv(folder / "ZTF2.csv", """
time,mag,magerr,band
58010.0,20.0,0.2,R
58011.0,19.5,0.15,g
58012.0,19.0,0.1,R
""")
    return folder


def bts_cfg(folder: Path, **extra):
    opts = dict(layout="per_object_csv", path=str(folder), columns=MAG_COLUMNS, band_aliases={"R": "r"},
                label="SNIa")
    opts.update(extra)
    return make_cfg(**opts)


def validated(lc, obj, classes=CLASSES, bands=BANDS):
    return validate_tables(lc, obj, classes=list(classes), bands=list(bands), on_invalid="raise")


# --------------------------------------------------------------------------- per_object_csv

def test_per_object_csv_magnitudes_to_flux_and_aliases(tmp_path):
    lc, obj, report = load_files_report(bts_cfg(bts_like(tmp_path)))
    assert list(lc.columns) == ["object_id", "time", "band", "flux", "flux_err", "mag", "mag_err", "detected"]
    assert sorted(obj["object_id"]) == ["ZTF1", "ZTF2"]                    # file name stems
    assert set(lc["band"]) == {"g", "r"}                                    # R -> r
    row = lc[(lc.object_id == "ZTF1") & (lc.time == 58001.0)].iloc[0]
    flux, err = mag_to_flux(18.5, 0.1)
    assert row["band"] == "r" and row["flux"] == pytest.approx(flux) and row["flux_err"] == pytest.approx(err)
    assert row["mag"] == 18.5 and row["mag_err"] == 0.1 and bool(row["detected"])
    assert (obj["label"] == "SNIa").all() and (obj["source"] == "files").all()
    assert (obj["group_id"] == obj["object_id"]).all()
    assert report["n_files"] == 2 and report["n_rows_read"] == 7 and report["reader"] == "fast"
    lc2, obj2, _ = validated(lc, obj)
    assert len(obj2) == 2 and len(lc2) == 7


def test_detected_is_signal_to_noise_at_least_5(tmp_path):
    write_csv(tmp_path / "lc/a.csv", "time,mag,magerr,band\n1,19,0.1,g\n2,19,0.3,g\n3,19,0.21,g")
    lc = load_files(bts_cfg(tmp_path / "lc"))[0]
    # S/N = 2.5 / (ln 10 * magerr): 10.9, 3.6, 5.17
    assert lc["detected"].tolist() == [True, False, True]


def test_flux_columns_zero_point_and_detected_column(tmp_path):
    write_csv(tmp_path / "lc/a.csv", "t,filter,f,fe,det\n1,g,1000,10,1\n2,r,2000,20,0\n3,g,-5,10,1")
    cfg = make_cfg(path=str(tmp_path / "lc"), label="QSO", flux_zero_point=27.5,
                   columns={"time": "t", "band": "filter", "flux": "f", "flux_err": "fe", "detected": "det"})
    lc = load_files(cfg)[0]
    scale = 10 ** (-0.4 * (27.5 - 23.9))
    np.testing.assert_allclose(lc["flux"], np.array([1000, 2000, -5]) * scale)
    np.testing.assert_allclose(lc["flux_err"], np.array([10, 20, 10]) * scale)
    assert lc["detected"].tolist() == [True, False, True]
    assert np.isnan(lc["mag"].iloc[2])                           # no magnitude of a negative flux
    assert lc["mag"].iloc[0] == pytest.approx(27.5 - 2.5 * np.log10(1000))


def test_header_less_files_constant_band_and_scatter_errors(tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(200) * 0.02
    flux = 1 + rng.normal(0, 1e-3, t.size)
    (tmp_path / "k2").mkdir()
    pd.DataFrame({"t": t, "f": flux}).to_csv(tmp_path / "k2/EPIC1.csv", header=False, index=False)
    detrended = pd.DataFrame({"t": t, "f": 1 + rng.normal(0, 2e-3, t.size)})
    detrended.to_csv(tmp_path / "k2/EPIC1_detrended.csv", header=False, index=False)
    cfg = make_cfg(classes=["transit"], bands={"k2": 6400.0}, path=str(tmp_path / "k2"), header=False,
                   names=["time", "flux"], columns={"time": "time", "band": None, "flux": "flux"}, band="k2",
                   flux_err_fallback="scatter", relative_flux=True, label="transit",
                   group_id_regex=r"^(EPIC\d+)", time_system="BKJD")
    lc, obj = load_files(cfg)
    assert set(lc["band"]) == {"k2"} and len(lc) == 400
    assert lc["flux_err"].nunique() == 2                             # one scatter estimate per object
    assert lc["flux_err"].iloc[0] == pytest.approx(1e-3, rel=0.25)
    assert lc["mag"].isna().all()                                    # relative flux: no magnitudes
    np.testing.assert_allclose(lc.loc[lc.object_id == "EPIC1", "flux"], flux)   # not rescaled
    assert set(obj["group_id"]) == {"EPIC1"}                         # the detrended copy shares the group
    assert set(obj["time_system"]) == {"BKJD"}
    validated(lc, obj, classes=["transit"], bands=["k2"])


def test_constant_flux_error_fallback(tmp_path):
    write_csv(tmp_path / "lc/a.csv", "time,flux\n1,5\n2,6\n3,7")
    cfg = make_cfg(path=str(tmp_path / "lc"), columns={"time": "time", "band": None, "flux": "flux"}, band="g",
                   flux_err_fallback=0.5, label="QSO")
    assert load_files(cfg)[0]["flux_err"].tolist() == [0.5, 0.5, 0.5]


def test_band_filter_drop_bands_keeps_task_bands(tmp_path):
    write_csv(tmp_path / "lc/1.csv", """
time,mag,magerr,band
1,17,0.01,u
1.1,17,0.01,g
1.2,17,0.01,r
1.3,17,0.01,i
1.4,17,0.01,z
2.1,17,0.01,g
""")
    lc, obj, report = load_files_report(make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS,
                                                 drop_bands=["u", "i", "z"], label="RRLyrae"))
    assert lc["band"].tolist() == ["g", "r", "g"]
    assert report["rows_dropped"] == {"drop_bands": 3}


def test_unknown_bands_drop_policy(tmp_path):
    write_csv(tmp_path / "lc/1.csv", "time,mag,magerr,band\n1,17,0.01,g\n2,17,0.01,y\n3,17,0.01,w")
    lc, _, report = load_files_report(make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS,
                                               unknown_bands="drop", label="QSO"))
    assert lc["band"].tolist() == ["g"]
    assert report["rows_dropped"] == {"unknown_band": 2} and report["bands_dropped_unknown"] == ["w", "y"]


def test_time_offset_and_time_system(tmp_path):
    write_csv(tmp_path / "lc/a.csv", "jd,mag,magerr,band\n2458000.5,19,0.1,g")
    cfg = make_cfg(path=str(tmp_path / "lc"), columns={**MAG_COLUMNS, "time": "jd"}, time_offset=-2400000.5,
                   time_system="MJD (from JD)", label="SNIa")
    lc, obj = load_files(cfg)
    assert lc["time"].tolist() == [58000.0]
    assert obj["time_system"].tolist() == ["MJD (from JD)"]


def test_mag_missing_sentinels_are_dropped(tmp_path):
    write_csv(tmp_path / "lc/a.csv",
              "time,mag,magerr,band\n1,17,0.01,g\n2,99.99,99.999,g\n3,25.5,99.999,r\n4,18,0.02,r")
    lc, _, report = load_files_report(make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS,
                                               mag_missing_above=90, label="RRLyrae"))
    assert lc["time"].tolist() == [1.0, 4.0]
    assert report["rows_dropped"] == {"mag_missing_sentinel": 2}


def test_incomplete_rows_drop_and_raise(tmp_path):
    write_csv(tmp_path / "lc/a.csv", "time,mag,magerr,band\n1,17,0.01,g\n2,,0.01,g\n3,17,0.01,\n4,18,0.02,r")
    cfg = make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS, label="QSO")
    lc, _, report = load_files_report(cfg)
    assert lc["time"].tolist() == [1.0, 4.0] and report["rows_dropped"] == {"incomplete": 2}
    cfg.source.incomplete_rows = "raise"
    with pytest.raises(SchemaError, match=r"a\.csv: column 'mag', object 'a', line 3: empty value"):
        load_files(cfg)


@pytest.mark.parametrize("policy", ["mean", "first", "raise"])
def test_duplicate_band_time_rows(tmp_path, policy):
    write_csv(tmp_path / "lc/s.csv", """
time,mag,magerr,band
1.0,20.0,0.1,g
1.0,19.0,0.1,g
1.0,19.0,0.1,r
2.0,19.5,0.1,g
""")
    cfg = make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS, duplicates=policy, label="RRLyrae")
    if policy == "raise":
        with pytest.raises(SchemaError, match=r"s\.csv: object 's': column 'time' repeats band 'g' at time 1\.0"):
            load_files(cfg)
        return
    lc, objects, report = load_files_report(cfg)
    assert report["duplicate_rows_merged"] == 1
    # Count and spread of the repeated epoch go to the objects table, whatever the policy kept:
    # 20.0 and 19.0 mag with 0.1 mag errors disagree by ~6.4 sigma.
    row = objects.set_index("object_id").loc["s"]
    assert row["n_duplicate_epochs"] == 1 and row["n_duplicate_rows"] == 1
    (fa, ea), (fb, eb) = mag_to_flux(20.0, 0.1), mag_to_flux(19.0, 0.1)
    assert row["duplicate_spread_sigma"] == pytest.approx((fb - fa) / np.sqrt(ea**2 + eb**2))
    g1 = lc[(lc.band == "g") & (lc.time == 1.0)]
    assert len(g1) == 1 and len(lc) == 3
    f20, e20 = mag_to_flux(20.0, 0.1)
    f19, e19 = mag_to_flux(19.0, 0.1)
    if policy == "first":
        assert g1["flux"].iloc[0] == pytest.approx(f20)
    else:
        assert g1["flux"].iloc[0] == pytest.approx((f20 + f19) / 2)
        assert g1["flux_err"].iloc[0] == pytest.approx(np.hypot(e20, e19) / 2)
        assert g1["mag"].iloc[0] == pytest.approx(23.9 - 2.5 * np.log10((f20 + f19) / 2))
    validated(lc, pd.DataFrame({"object_id": ["s"], "label": ["RRLyrae"], "group_id": ["s"], "source": ["x"]}))


def test_empty_file_leaves_an_object_without_rows_for_validation(tmp_path):
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF3.csv", "time,mag,magerr,band")           # header only
    (folder / "ZTF4.csv").write_text("")                               # empty
    lc, obj, report = load_files_report(bts_cfg(folder))
    assert report["empty_files"] == 1 and sorted(obj["object_id"]) == ["ZTF1", "ZTF2", "ZTF3", "ZTF4"]
    _, obj2, vr = validate_tables(lc, obj, classes=CLASSES, bands=list(BANDS), on_invalid="drop")
    assert sorted(vr.dropped) == ["ZTF3", "ZTF4"] and vr.dropped["ZTF3"].startswith("empty")


def test_fast_and_per_file_readers_agree(tmp_path):
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF3.csv", "band,magerr,time,mag\nR,0.1,58020.5,18.7\ng,0.1,58021.5,18.9")  # other order
    fast, fast_obj, r1 = load_files_report(bts_cfg(folder))
    slow, slow_obj, r2 = load_files_report(bts_cfg(folder, comment="#"))    # comments -> per-file reader
    assert (r1["reader"], r2["reader"]) == ("fast", "per_file")
    pd.testing.assert_frame_equal(fast, slow)
    pd.testing.assert_frame_equal(fast_obj, slow_obj)


def test_byte_order_mark_and_windows_line_endings(tmp_path):
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "a.csv").write_bytes(b"\xef\xbb\xbftime,mag,magerr,band\r\n1,17,0.1,g\r\n2,17.5,0.1,R\r\n")
    fast, _, r1 = load_files_report(bts_cfg(folder))
    slow, _, r2 = load_files_report(bts_cfg(folder, comment="#"))
    assert r1["reader"] == "fast" and fast["band"].tolist() == ["g", "r"]
    pd.testing.assert_frame_equal(fast, slow)


def test_quoted_and_commented_files_use_the_per_file_reader(tmp_path):
    write_csv(tmp_path / "lc/a.csv",
              '# exported light curve\n"time","mag","magerr","band"\n1,17,0.1,"g"\n2,17.5,0.1,"R"')
    lc, _, report = load_files_report(bts_cfg(tmp_path / "lc", comment="#"))
    assert report["reader"] == "per_file" and lc["band"].tolist() == ["g", "r"]


def test_glob_selects_files(tmp_path):
    folder = bts_like(tmp_path)
    write_csv(folder / "notes.txt", "not a light curve")
    _, obj = load_files(bts_cfg(folder, glob="ZTF1*.csv"))
    assert obj["object_id"].tolist() == ["ZTF1"]


# --------------------------------------------------------------------------- labels and metadata

def write_meta(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "meta.csv", """
ZTFID,RA,Dec,redshift,type
ZTF1,08:29:47.59,+33:54:22.8,0.062,SN Ia
ZTF2,11:43:06.37,-05:30:00.0,,SN II
ZTF9,00:00:00.00,+00:00:00.0,0.1,SN Ia
""")


def test_metadata_label_column_label_map_and_columns(tmp_path):
    meta = write_meta(tmp_path)
    cfg = bts_cfg(bts_like(tmp_path), label=None, label_map={"SN Ia": "SNIa", "SN II": "SNII"},
                  metadata={"path": str(meta), "id_column": "ZTFID", "label_column": "type", "sexagesimal": True,
                            "columns": {"ra": "RA", "dec": "Dec", "redshift": "redshift"}})
    lc, obj = load_files(cfg)
    assert obj["label"].tolist() == ["SNIa", "SNII"] and obj["label_raw"].tolist() == ["SN Ia", "SN II"]
    assert obj["ra"].iloc[0] == pytest.approx((8 + 29 / 60 + 47.59 / 3600) * 15)
    assert obj["dec"].iloc[0] == pytest.approx(33 + 54 / 60 + 22.8 / 3600)
    assert obj["dec"].iloc[1] == pytest.approx(-5.5)
    assert obj["redshift"].iloc[0] == 0.062 and np.isnan(obj["redshift"].iloc[1])
    assert "ZTF9" not in set(obj["object_id"])                         # metadata without light curve
    validated(lc, obj)


def test_constant_label_with_metadata_columns(tmp_path):
    cfg = bts_cfg(bts_like(tmp_path), metadata={"path": str(write_meta(tmp_path)), "id_column": "ZTFID",
                                                "columns": {"redshift": "redshift", "bts_type": "type"}})
    obj = load_files(cfg)[1]
    assert obj["label"].tolist() == ["SNIa", "SNIa"] and obj["bts_type"].tolist() == ["SN Ia", "SN II"]
    # With a constant label, an object missing from the metadata table keeps empty metadata.
    write_csv(tmp_path / "lc/ZTF7.csv", "time,mag,magerr,band\n1,17,0.1,g")
    obj = load_files(cfg)[1].set_index("object_id")
    assert obj.loc["ZTF7", "label"] == "SNIa" and np.isnan(obj.loc["ZTF7", "redshift"])


def test_null_metadata_means_no_metadata_table(tmp_path):
    lc, obj = load_files(bts_cfg(bts_like(tmp_path), metadata=None))
    assert obj["label"].tolist() == ["SNIa", "SNIa"] and "redshift" not in obj.columns


def test_integer_metadata_ids_match_file_stems(tmp_path):
    write_csv(tmp_path / "lc/4099.csv", "time,mag,magerr,band\n1,17,0.01,g\n2,17.1,0.01,r\n3,17.2,0.01,g")
    write_csv(tmp_path / "periods.csv", "Num,Type,Per\n4099,ab,0.64\n13350,c,0.3")
    cfg = make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS, label="RRLyrae",
                   metadata={"path": str(tmp_path / "periods.csv"), "id_column": "Num",
                             "columns": {"rrlyrae_type": "Type", "period_days": "Per"}})
    obj = load_files(cfg)[1]
    assert obj[["object_id", "rrlyrae_type", "period_days"]].values.tolist() == [["4099", "ab", 0.64]]


def test_label_map_null_drops_on_purpose_and_unknown_labels(tmp_path):
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF3.csv", "time,mag,magerr,band\n1,17,0.1,g\n2,17,0.1,g\n3,17,0.1,g")
    write_csv(folder / "ZTF4.csv", "time,mag,magerr,band\n1,17,0.1,g\n2,17,0.1,g\n3,17,0.1,g")
    write_csv(tmp_path / "labels.csv", "id,cls\nZTF1,SNIa\nZTF2,SLSN\nZTF3,TDE")   # ZTF4 unlabelled
    meta = {"path": str(tmp_path / "labels.csv"), "id_column": "id", "label_column": "cls"}
    cfg = bts_cfg(folder, label=None, label_map={"SLSN": None}, metadata=meta)
    with pytest.raises(SchemaError, match=r"labels\.csv: object 'ZTF4': no label"):
        load_files(cfg)
    write_csv(tmp_path / "labels.csv", "id,cls\nZTF1,SNIa\nZTF2,SLSN\nZTF3,TDE\nZTF4,SNIa")
    with pytest.raises(SchemaError, match=r"object 'ZTF3': column 'label' has value 'TDE'.*outside task\.classes"):
        load_files(cfg)
    cfg.source.unknown_labels = "drop"
    write_csv(tmp_path / "labels.csv", "id,cls\nZTF1,SNIa\nZTF2,SLSN\nZTF3,TDE")
    lc, obj, report = load_files_report(cfg)
    assert obj["object_id"].tolist() == ["ZTF1"] and set(lc["object_id"]) == {"ZTF1"}
    assert report["objects_dropped_by_label"] == {"label_map:SLSN->drop": 1, "no_label": 1,
                                                  "unknown_label:TDE": 1}
    assert report["objects_dropped_by_label_ids"]["unknown_label:TDE"] == ["ZTF3"]


def test_unknown_constant_label_raises(tmp_path):
    with pytest.raises(SchemaError, match=r"value 'Ia'.*outside task\.classes"):
        load_files(bts_cfg(bts_like(tmp_path), label="Ia"))


# --------------------------------------------------------------------------- table and plasticc

def observations_frame():
    return pd.DataFrame({"oid": ["a", "a", "a", "b", "b", "b"], "mjd": [1.0, 2, 3, 1, 2, 3],
                         "filter": ["g", "r", "g", "r", "r", "g"], "mag": [18, 18.5, 19, 20, 20, 20],
                         "err": [0.1] * 6})


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_layout(tmp_path, suffix):
    path = tmp_path / f"obs.{suffix}"
    df = observations_frame()
    df.to_csv(path, index=False) if suffix == "csv" else df.to_parquet(path, index=False)
    cfg = make_cfg(layout="table", path=str(path), label="QSO",
                   columns={"object_id": "oid", "time": "mjd", "band": "filter", "mag": "mag", "mag_err": "err"})
    lc, obj = load_files(cfg)
    assert obj["object_id"].tolist() == ["a", "b"] and len(lc) == 6
    np.testing.assert_allclose(lc["flux"], mag_to_flux(df.sort_values(["oid", "mjd", "filter"])["mag"]))
    validated(lc, obj)


def test_plasticc_layout(tmp_path):
    obs = pd.DataFrame({"object_id": [615, 615, 615, 713, 713, 713, 713], "mjd": [1.0, 1.0, 2, 1, 2, 3, 4],
                        "passband": [1, 2, 1, 2, 1, 2, 0], "flux": [100.0, 200, -10, 50, 60, 70, 80],
                        "flux_err": [5.0, 5, 5, 5, 5, 5, 5], "detected_bool": [1, 1, 0, 1, 1, 1, 0]})
    meta = pd.DataFrame({"object_id": [615, 713, 999], "target": [90, 42, 90], "hostgal_photoz": [0.1, 0.2, 0.3]})
    obs.to_csv(tmp_path / "training_set.csv", index=False)
    meta.to_csv(tmp_path / "training_set_metadata.csv", index=False)
    cfg = make_cfg(layout="plasticc", path=str(tmp_path / "training_set.csv"), unknown_bands="drop",
                   metadata={"path": str(tmp_path / "training_set_metadata.csv")},
                   label_map={90: "SNIa", 42: "SNII"})
    lc, obj, report = load_files_report(cfg)
    assert obj[["object_id", "label", "label_raw", "redshift"]].values.tolist() == [
        ["615", "SNIa", "90", 0.1], ["713", "SNII", "42", 0.2]]
    assert report["rows_dropped"] == {"unknown_band": 1}           # passband 0 = u is not a task band
    a = lc[lc.object_id == "615"]
    assert a["band"].tolist() == ["g", "r", "g"]
    scale = 10 ** (-0.4 * (27.5 - 23.9))                             # FLUXCAL -> µJy
    np.testing.assert_allclose(a["flux"], np.array([100, 200, -10]) * scale)
    assert a["detected"].tolist() == [True, True, False]
    validated(lc, obj)


def test_plasticc_defaults_can_be_overridden(tmp_path):
    obs = pd.DataFrame({"object_id": [1, 1, 1], "MJD": [1.0, 2, 3], "passband": [1, 1, 1], "flux": [1.0, 2, 3],
                        "flux_err": [1.0, 1, 1], "detected_bool": [1, 1, 1]})
    obs.to_parquet(tmp_path / "obs.parquet")
    pd.DataFrame({"object_id": [1], "true_target": [90]}).to_csv(tmp_path / "meta.csv", index=False)
    cfg = make_cfg(layout="plasticc", path=str(tmp_path / "obs.parquet"), columns={"time": "MJD"},
                   metadata={"path": str(tmp_path / "meta.csv"), "label_column": "true_target", "columns": {}},
                   label_map={90: "SNIa"})
    lc, obj = load_files(cfg)
    assert lc["time"].tolist() == [1.0, 2.0, 3.0] and obj["label"].tolist() == ["SNIa"]


# --------------------------------------------------------------------------- alerce_csv

ALERCE_DET = """
objectId,fid,mjd,magpsf,sigmapsf,isdiffpos,magpsf_corr,sigmapsf_corr,sigmapsf_corr_ext,ra,dec
ZTFa,1,58000.1,18.0,0.05,t,,,,10.0,20.0
ZTFa,2,58000.2,18.2,0.05,t,,,,10.0,20.0
ZTFa,1,58003.1,18.5,0.05,t,,,,10.0,20.0
ZTFa,3,58003.2,18.5,0.05,t,,,,10.0,20.0
ZTFb,1,58010.1,19.0,0.1,t,,,,11.0,21.0
ZTFb,2,58011.1,19.2,0.1,t,,,,11.0,21.0
ZTFb,2,58012.1,19.4,0.1,t,,,,11.0,21.0
ZTFc,1,58020.1,17.0,0.05,t,,,,12.0,22.0
"""


def alerce_folder(tmp_path: Path, labels="objectId,classALeRCE\nZTFa,SNIa\nZTFb,SNII\nZTFc,SLSN") -> Path:
    folder = tmp_path / "alerce"
    write_csv(folder / "detections.csv", ALERCE_DET)
    write_csv(folder / "non_detections.csv", "objectId,mjd,fid,diffmaglim\nZTFa,57990.0,1,20.5")
    write_csv(folder / "labels.csv", labels)
    return folder


def alerce_cfg(folder, **extra):
    opts = dict(layout="alerce_csv", path=str(folder), detections="detections.csv",
                non_detections="non_detections.csv", labels="labels.csv", drop_bands=["i"],
                label_map={"SNIa": "SNIa", "SNII": "SNII", "SNIbc": "SNIbc", "SLSN": None})
    opts.update(extra)
    return make_cfg(**opts)


def test_alerce_csv_layout(tmp_path):
    lc, obj, report = load_files_report(alerce_cfg(alerce_folder(tmp_path)))
    assert obj[["object_id", "label", "label_raw"]].values.tolist() == [["ZTFa", "SNIa", "SNIa"],
                                                                        ["ZTFb", "SNII", "SNII"]]
    assert report["objects_dropped_by_label"] == {"label_map:SLSN->drop": 1}
    assert report["rows_dropped"] == {"drop_bands": 1}                 # fid 3 = i
    assert set(lc["band"]) == {"g", "r"} and len(lc) == 6
    assert lc["flux"].iloc[0] == pytest.approx(mag_to_flux(18.0))
    assert (obj["source"] == "files").all() and obj["n_non_detections"].tolist() == [1, 0]
    validated(lc, obj)


def test_alerce_csv_user_label_table_constant_label_and_no_metadata(tmp_path):
    folder = alerce_folder(tmp_path)
    write_csv(folder / "spec.csv", "oid,label\nZTFa,SNII\nZTFb,SNII\nZTFc,SNIa")
    obj = load_files(alerce_cfg(folder, labels="spec.csv"))[1]
    assert obj["label"].tolist() == ["SNII", "SNII", "SNIa"]
    obj = load_files(alerce_cfg(folder, label="SNIbc"))[1]
    assert set(obj["label"]) == {"SNIbc"}
    with pytest.raises(ConfigError, match=r"'source\.metadata' is not used by layout alerce_csv"):
        load_files(alerce_cfg(folder, metadata={"path": "m.csv"}))


def test_alerce_csv_unknown_band_and_missing_file(tmp_path):
    folder = alerce_folder(tmp_path)
    with pytest.raises(SchemaError, match=r"detections\.csv: column 'fid', object 'ZTFa': band 'i'"):
        load_files(alerce_cfg(folder, drop_bands=[]))
    with pytest.raises(SchemaError, match=r"nope\.csv: no such file \(ALeRCE labels, config key 'source\.labels'"):
        load_files(alerce_cfg(folder, labels="nope.csv"))



def test_alerce_csv_missing_column_and_non_numeric_magnitude_name_the_file(tmp_path):
    """ALeRCE-format files with a missing magnitude column or a non-numeric magnitude: the
    error names the detections file, the column and the object."""
    folder = alerce_folder(tmp_path)
    det = pd.read_csv(folder / "detections.csv")
    det.drop(columns=["magpsf"]).to_csv(folder / "detections.csv", index=False)
    with pytest.raises(SchemaError, match=r"alerce/detections\.csv: missing required column 'magpsf'"):
        load_files(alerce_cfg(folder))
    bad = det.astype({"magpsf": object})
    bad.loc[4, "magpsf"] = "19.0?"
    bad.to_csv(folder / "detections.csv", index=False)
    with pytest.raises(SchemaError, match=r"alerce/detections\.csv: object 'ZTFb': column 'magpsf' has non-numeric "
                                          r"value '19\.0\?'"):
        load_files(alerce_cfg(folder))
    det.drop(columns=["fid"]).to_csv(folder / "detections.csv", index=False)
    with pytest.raises(SchemaError, match=r"alerce/detections\.csv: missing required column 'fid'"):
        load_files(alerce_cfg(folder))

# --------------------------------------------------------------------------- error paths

def test_missing_folder_and_files(tmp_path):
    with pytest.raises(SchemaError, match=r"nowhere: no such folder .*'source\.path'"):
        load_files(bts_cfg(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match=r"empty: no files match source\.glob = '\*\.csv'"):
        load_files(bts_cfg(tmp_path / "empty"))
    with pytest.raises(SchemaError, match=r"obs\.parquet: no such file \(the observations table"):
        load_files(make_cfg(layout="table", path=str(tmp_path / "obs.parquet"), label="QSO",
                            columns={"object_id": "oid", "mag": "m", "mag_err": "e"}))
    with pytest.raises(SchemaError, match=r"meta\.csv: no such file \(the metadata table, config key "
                                          r"'source\.metadata\.path'"):
        load_files(bts_cfg(bts_like(tmp_path), metadata={"path": str(tmp_path / "meta.csv"),
                                                         "columns": {"z": "z"}}))


@pytest.mark.parametrize("comment", [None, "#"])       # fast reader and per-file reader
def test_missing_column_names_file_column_and_config_key(tmp_path, comment):
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF2.csv", "time,mag,mag_error,band\n1,17,0.1,g")
    with pytest.raises(SchemaError, match=r"ZTF2\.csv: missing column 'magerr' \(config source\.columns\.mag_err "
                                          r"= 'magerr'\); found columns \['time', 'mag', 'mag_error', 'band'\]"):
        load_files(bts_cfg(folder, comment=comment))


def test_missing_column_in_header_less_files_mentions_names(tmp_path):
    write_csv(tmp_path / "k2/a.csv", "1,1.0\n2,1.1")
    cfg = make_cfg(path=str(tmp_path / "k2"), header=False, names=["time", "f"], band="g",
                   columns={"time": "time", "band": None, "flux": "flux"}, flux_err_fallback="scatter", label="QSO")
    with pytest.raises(SchemaError, match=r"a\.csv: missing column 'flux' .*the files have no header, names: "
                                          r"\['time', 'f'\]"):
        load_files(cfg)


def test_missing_column_in_table_and_metadata(tmp_path):
    observations_frame().to_csv(tmp_path / "obs.csv", index=False)
    cols = {"object_id": "oid", "time": "mjd", "band": "band", "mag": "mag", "mag_err": "err"}
    with pytest.raises(SchemaError, match=r"obs\.csv: missing column 'band' \(config source\.columns\.band"):
        load_files(make_cfg(layout="table", path=str(tmp_path / "obs.csv"), label="QSO", columns=cols))
    write_csv(tmp_path / "meta.csv", "oid,z\na,0.1")
    cols["band"] = "filter"
    with pytest.raises(SchemaError, match=r"meta\.csv: missing column 'redshift' \(config "
                                          r"source\.metadata\.columns\.redshift = 'redshift'\)"):
        load_files(make_cfg(layout="table", path=str(tmp_path / "obs.csv"), label="QSO", columns=cols,
                            metadata={"path": str(tmp_path / "meta.csv"), "id_column": "oid",
                                      "columns": {"redshift": "redshift"}}))


def test_unknown_band_names_file_column_and_value(tmp_path):
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF2.csv", "time,mag,magerr,band\n1,17,0.1,g\n2,17,0.1,ZTF_i")
    with pytest.raises(SchemaError, match=r"ZTF2\.csv: column 'band', object 'ZTF2', line 3: band 'ZTF_i' is not "
                                          r"a task band \['g', 'r'\] and not in source\.band_aliases"):
        load_files(bts_cfg(folder))
    # Without the alias, "R" is unknown too (matching is exact).
    with pytest.raises(SchemaError, match=r"band 'R'"):
        load_files(bts_cfg(folder, band_aliases={}))


@pytest.mark.parametrize("comment", [None, "#"])
def test_non_numeric_magnitude_names_file_column_line_and_object(tmp_path, comment):
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF2.csv", "time,mag,magerr,band\n1,17,0.1,g\n2,>19.5,0.1,g\n3,bright,0.1,g")
    with pytest.raises(SchemaError, match=r"ZTF2\.csv: column 'mag' \(source\.columns\.mag\), object 'ZTF2', "
                                          r"line 3: non-numeric value '>19\.5' \(2 such row\(s\) in all\)"):
        load_files(bts_cfg(folder, comment=comment))


def test_non_numeric_time_in_table(tmp_path):
    df = observations_frame().astype({"mjd": object})
    df.loc[4, "mjd"] = "2019-01-01"
    df.to_csv(tmp_path / "obs.csv", index=False)
    cfg = make_cfg(layout="table", path=str(tmp_path / "obs.csv"), label="QSO",
                   columns={"object_id": "oid", "time": "mjd", "band": "filter", "mag": "mag", "mag_err": "err"})
    with pytest.raises(SchemaError, match=r"obs\.csv: column 'mjd' \(source\.columns\.time\), object 'b', line 6: "
                                          r"non-numeric value '2019-01-01'"):
        load_files(cfg)


def test_bad_detected_value_bad_coordinates_duplicate_metadata_and_parse_error(tmp_path):
    write_csv(tmp_path / "det/a.csv", "time,flux,err,band,det\n1,5,1,g,maybe")
    cfg = make_cfg(path=str(tmp_path / "det"), label="QSO",
                   columns={"time": "time", "band": "band", "flux": "flux", "flux_err": "err", "detected": "det"})
    with pytest.raises(SchemaError, match=r"a\.csv: column 'det' \(source\.columns\.detected\), object 'a', "
                                          r"line 2: not a boolean: 'maybe'"):
        load_files(cfg)
    folder = bts_like(tmp_path)
    write_csv(tmp_path / "meta.csv", "ZTFID,RA\nZTF1,12h30\nZTF2,10:00:00")
    with pytest.raises(SchemaError, match=r"meta\.csv: object 'ZTF1': column 'ra'.* has value '12h30'"):
        load_files(bts_cfg(folder, metadata={"path": str(tmp_path / "meta.csv"), "id_column": "ZTFID",
                                             "sexagesimal": True, "columns": {"ra": "RA"}}))
    write_csv(tmp_path / "meta.csv", "ZTFID,z\nZTF1,0.1\nZTF1,0.2")
    with pytest.raises(SchemaError, match=r"meta\.csv: object 'ZTF1': column 'ZTFID' .* is duplicated"):
        load_files(bts_cfg(folder, metadata={"path": str(tmp_path / "meta.csv"), "id_column": "ZTFID",
                                             "columns": {"z": "z"}}))
    write_csv(folder / "ZTF2.csv", "time,mag,magerr,band\n1,17,0.1,g,extra,fields")
    with pytest.raises(SchemaError, match=r"ZTF2\.csv: cannot parse as CSV"):
        load_files(bts_cfg(folder))


@pytest.mark.parametrize("override, message", [
    ({"colour": "g"}, r"config key 'source\.colour' is not an option"),
    ({"columns": {"magerr": "x"}}, r"config key 'source\.columns\.magerr' is not an option"),
    ({"metadata": {"file": "x"}}, r"config key 'source\.metadata\.file' is not an option"),
    ({"layout": "fits"}, r"config key 'source\.layout' must be one of"),
    ({"duplicates": "last"}, r"config key 'source\.duplicates' must be one of \['mean', 'first', 'raise'\]"),
    ({"unknown_labels": "keep"}, r"config key 'source\.unknown_labels'"),
    ({"unknown_bands": "keep"}, r"config key 'source\.unknown_bands'"),
    ({"incomplete_rows": "keep"}, r"config key 'source\.incomplete_rows'"),
    ({"path": None}, r"config key 'source\.path' is missing"),
    ({"columns": {"flux": "f", "flux_err": "fe"}}, r"'source\.columns\.flux' and 'source\.columns\.mag' are both set"),
    ({"columns": {"mag": None}}, r"are both null"),
    ({"columns": {"mag_err": None}}, r"config key 'source\.columns\.mag_err' is missing"),
    ({"columns": {"mag": None, "mag_err": None, "flux": "f"}}, r"'source\.flux_err_fallback' is not set"),
    ({"columns": {"mag": None, "mag_err": None, "flux": "f"}, "flux_err_fallback": "mad"},
     r"'source\.flux_err_fallback' must be 'scatter', a positive number or null"),
    ({"columns": {"band": None}}, r"'source\.columns\.band' is null and 'source\.band'"),
    ({"header": False}, r"config key 'source\.names' is missing"),
    ({"label": None}, r"'source\.label' is null and 'source\.metadata\.label_column' is not set"),
    ({"metadata": {"path": "m.csv", "label_column": "type"}}, r"'source\.label' and "
                                                              r"'source\.metadata\.label_column' are both set"),
    ({"metadata": {"columns": {"z": "z"}}}, r"'source\.metadata\.path' is missing"),
    ({"metadata": {"path": "m.csv", "columns": {"label": "type"}}}, r"'label' is a reserved objects column"),
    ({"group_id_regex": "(("}, r"'source\.group_id_regex' is not a valid regex"),
])
def test_config_errors_name_the_key(tmp_path, override, message):
    cfg = bts_cfg(tmp_path)
    cfg.source = OmegaConf.merge(cfg.source, override)
    with pytest.raises(ConfigError, match=message):
        load_files(cfg)


def test_table_layout_requires_object_id_column():
    with pytest.raises(ConfigError, match=r"'source\.columns\.object_id' is missing \(layout table\)"):
        resolve_options({"layout": "table", "path": "x.csv", "label": "QSO",
                         "columns": {"object_id": None, "mag": "m", "mag_err": "e"}})


# --------------------------------------------------------------------------- ingest stage integration

def test_ingest_stage_runs_the_files_source(tmp_path, monkeypatch):
    from deeprubin.stages import ingest

    monkeypatch.chdir(tmp_path)
    folder = bts_like(tmp_path)
    write_csv(folder / "ZTF3.csv", "time,mag,magerr,band\n1,19,0.1,g")              # too few points
    cfg = compose_task("transients", ["source=files_bts_snia", f"source.path={folder}", "source.progress_bar=false"])
    cfg.source.metadata = {"path": None}
    cfg.paths.raw = str(tmp_path / "raw")
    report = ingest.run_ingest(cfg)
    assert report["source"] == "files" and report["n_objects"] == 2
    assert report["validation"]["dropped_objects"] == {"ZTF3": "too_few_points: 1 < min_points=3"}
    assert pd.read_parquet(tmp_path / "raw/lightcurves.parquet")["band"].isin(["g", "r"]).all()


# --------------------------------------------------------------------------- shipped configs

@pytest.mark.parametrize("task,group,name", SHIPPED, ids=[s[2] for s in SHIPPED])
def test_shipped_configs_compose_and_resolve(task, group, name):
    cfg = compose_task(task, [f"{group}={name}"])
    assert cfg.source.name == "files" and cfg.source._target_ == "deeprubin.sources.files.load_files"
    assert OmegaConf.to_container(cfg.source.validation) == {"on_invalid": "drop", "min_points": 3, "min_bands": 1}
    assert cfg.source.path.startswith("../shared/data/real/")
    opts = resolve_options(cfg.source)
    # every shipped config spells out every option (the comments explain them)
    assert set(cfg.source) - {"name", "_target_", "validation"} <= set(DEFAULTS)
    if opts["layout"] != "alerce_csv":
        assert set(cfg.source) - {"name", "_target_", "validation"} == set(DEFAULTS)
    text = (REPO_ROOT / "conf" / group / f"{name}.yaml").read_text()
    assert text.count("#") >= 20


needs_real = pytest.mark.skipif(not REAL_DATA.exists(), reason=f"shared real data not found at {REAL_DATA}")


def load_shipped(name, monkeypatch, *overrides):
    monkeypatch.chdir(REPO_ROOT)                        # shipped paths are relative to the repo root
    cfg = compose_task("transients", [f"source={name}", "source.progress_bar=false", *overrides])
    lc, obj, report = load_files_report(cfg)
    return cfg, lc, obj, report


def validate_shipped(cfg, lc, obj):
    return validate_tables(lc, obj, classes=list(cfg.task.classes), bands=list(cfg.task.band_wavelengths),
                           min_points=cfg.source.validation.min_points, min_bands=cfg.source.validation.min_bands,
                           on_invalid="drop")


@needs_real
def test_real_bts_snia(monkeypatch):
    cfg, lc, obj, report = load_shipped("files_bts_snia", monkeypatch)
    assert report["n_files"] >= 2289 and report["rows_dropped"] == {"drop_bands": 1}
    lc2, obj2, vr = validate_shipped(cfg, lc, obj)
    assert len(obj2) > 2000 and set(obj2["label"]) == {"SNIa"}
    assert set(lc2["band"]) == {"g", "r"}
    assert set(vr.as_dict()["dropped_by_reason"]) <= {"too_few_points"}
    assert obj2["redshift"].notna().mean() > 0.99 and obj2["redshift"].dropna().between(0, 0.5).all()
    assert obj2["ra"].between(0, 360).all() and obj2["dec"].between(-90, 90).all()
    assert lc2["time"].between(58000, 60500).all() and (lc2["flux_err"] > 0).all()


@needs_real
def test_real_sdss_rrlyrae(monkeypatch):
    cfg, lc, obj, report = load_shipped("files_sdss_rrlyrae", monkeypatch)
    lc2, obj2, _ = validate_shipped(cfg, lc, obj)
    assert len(obj2) > 400 and set(obj2["label"]) == {"RRLyrae"} and set(lc2["band"]) == {"g", "r"}
    assert set(obj2["rrlyrae_type"]) == {"ab", "c"} and obj2["period_days"].between(0.2, 1.0).all()
    assert report["rows_dropped"]["mag_missing_sentinel"] > 0 and report["duplicate_rows_merged"] > 0
    assert lc2["mag"].max() < 30


@needs_real
def test_real_alerce_30sne(monkeypatch):
    cfg, lc, obj, report = load_shipped("files_alerce_30sne", monkeypatch)
    assert report["objects_dropped_by_label"] == {"label_map:SLSN->drop": 2}
    lc2, obj2, _ = validate_shipped(cfg, lc, obj)
    assert obj2["label"].value_counts().to_dict() == {"SNIa": 19, "SNIbc": 8, "SNII": 1}
    assert set(lc2["band"]) <= {"g", "r"} and len(lc2) > 500


@needs_real
def test_real_k2_through_the_transits_task(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    cfg = compose_task("transits", ["tasks/transits/source=files_k2", "source.progress_bar=false"])
    lc, obj = load_files(cfg)
    lc2, obj2, vr = validate_shipped(cfg, lc, obj)
    assert sorted(obj2["object_id"]) == ["EPIC201367065", "EPIC201367065_detrended", "EPIC206154641"]
    assert obj2.set_index("object_id")["group_id"].to_dict()["EPIC201367065_detrended"] == "EPIC201367065"
    assert len(lc2) > 10000 and (lc2["flux_err"] > 0).all() and lc2["flux"].between(0.9, 1.1).all()
    assert set(obj2["time_system"]) == {"BKJD"} and set(obj2["label"]) == {"planet"}
    # the transients task has no band 'k2': the same files are refused, naming file, object and band
    transients = compose_task("transients")
    transients.source = cfg.source
    with pytest.raises(SchemaError, match=r"EPIC201367065\.csv: constant band \(source\.band\), object "
                                          r"'EPIC201367065', line 1: band 'k2' is not a task band \['g', 'r'\]"):
        load_files(transients)


# --------------------------------------------------------------------------- real-data pipeline (slow)

@pytest.mark.slow
@needs_real
def test_dvc_repro_on_bts_snia(tmp_path):
    """`dvc repro` with source=files_bts_snia in a copy of the repo (../shared linked beside it)."""
    (tmp_path / "shared").symlink_to(REAL_DATA.parent.parent)
    repo = build_tiny_repo(tmp_path / "repo", overrides=["source=files_bts_snia", "trainer.max_epochs=3",
                                                         "source.progress_bar=false"])
    ingest = json.loads((repo / "data/raw/transients/ingest_report.json").read_text())
    assert ingest["source"] == "files" and ingest["n_objects"] > 2000
    metrics = json.loads((repo / "reports/transients/metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    # A one-class sample: calibration and the simulated calibration check are recorded as
    # skipped, with their reasons, and the rest of the pipeline runs to the end.
    calibration = json.loads((repo / "reports/transients/calibration/metrics.json").read_text())
    assert "only one class" in calibration["skipped"] and metrics["calibration"] == "none"
    check = json.loads((repo / "reports/transients/calibration/independent_test.json").read_text())
    assert check["training_source"] == "files" and "not the simulator" in check["skipped"]
    assert "Data and pipelines are up to date." in run_in(["dvc", "status"], repo)


def test_objects_without_repeated_epochs_record_zero_duplicates(tmp_path):
    write_csv(tmp_path / "lc/s.csv", "time,mag,magerr,band\n1.0,20.0,0.1,g\n2.0,19.0,0.1,r\n3.0,19.5,0.1,g\n")
    _, objects, report = load_files_report(make_cfg(path=str(tmp_path / "lc"), columns=MAG_COLUMNS, label="RRLyrae"))
    row = objects.set_index("object_id").loc["s"]
    assert (row["n_duplicate_epochs"], row["n_duplicate_rows"], row["duplicate_spread_sigma"]) == (0, 0, 0.0)
    assert "duplicate_rows_merged" not in report
