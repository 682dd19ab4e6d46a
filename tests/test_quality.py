"""Data-quality flags (issue 19, point 3): implausible photometry is flagged, counted, and not classified."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tables
from omegaconf import OmegaConf

from deeprubin.core.config import ConfigError
from deeprubin.core.quality import FLAGS, check_quality_config, quality_table, summary, unusable_mask
from deeprubin.sources import SOURCES

QUALITY = {"detection_snr": 5.0, "sentinel_mag": 90.0, "jd_min": 2_400_000.0, "mjd_max": 100_000.0,
           "max_abs_flux_ujy": 1e9, "duplicate_conflict_sigma": 5.0, "unusable": list(FLAGS)}


def _spoil(lc, how: str):
    """Make object obj001 implausible in one way; the others stay clean."""
    one = lc["object_id"] == "obj001"
    lc = lc.copy()
    if how == "sentinel_mag":
        lc["mag"] = 19.0
        lc["mag_err"] = 0.1
        lc.loc[one, "mag"] = 99.99
    elif how == "no_detection":
        lc.loc[one, "flux"] = -lc.loc[one, "flux"].abs()          # the flux sign flipped
    elif how == "mixed_time_system":
        rows = lc.index[one][::2]
        lc.loc[rows, "time"] += 2_400_000.5                         # half the times in JD
    elif how == "implausible_flux":
        lc.loc[one, "flux"] *= 1e30
    return lc


def _duplicates(objects, spread: float):
    """obj001 had one epoch given twice, fluxes ``spread`` sigma apart (as the files source records it)."""
    one = objects["object_id"] == "obj001"
    return objects.assign(n_duplicate_epochs=one.astype(int), n_duplicate_rows=one.astype(int),
                          duplicate_spread_sigma=np.where(one, spread, 0.0))


@pytest.mark.parametrize("how", FLAGS)
def test_each_flag_is_raised_on_the_spoiled_object_only(how):
    lc, objects = make_tables(n_objects=3)
    if how == "conflicting_duplicates":
        table = quality_table(lc, QUALITY, _duplicates(objects, spread=12.0))
    else:
        table = quality_table(_spoil(lc, how), QUALITY, objects)
    flags = dict(zip(table["object_id"], table["quality_flags"]))
    assert flags == {"obj000": "", "obj001": how, "obj002": ""}
    assert unusable_mask(table, [how]).tolist() == [False, True, False]
    assert unusable_mask(table, []).tolist() == [False, False, False]


def test_counts_behind_the_flags():
    lc, _ = make_tables(n_objects=2, n_per_band=10)
    table = quality_table(_spoil(lc, "mixed_time_system"), QUALITY).set_index("object_id")
    assert table.loc["obj001", "n_points"] == 20
    assert table.loc["obj001", "n_jd_times"] == 10 and table.loc["obj001", "n_mjd_times"] == 10
    assert table.loc["obj000", "n_detections"] > 0
    s = summary(table.reset_index(), ["mixed_time_system"])
    assert s["by_flag"]["mixed_time_system"] == 1 and s["n_unusable"] == 1
    assert s["flagged_objects"] == {"obj001": "mixed_time_system"}


def test_detected_column_wins_over_the_snr():
    lc, _ = make_tables(n_objects=1)
    lc["detected"] = False
    assert quality_table(lc, QUALITY)["quality_flags"].tolist() == ["no_detection"]


@pytest.mark.parametrize("key,value,match", [
    ("detection_snr", 0, r"'quality\.detection_snr' must be a positive number, got 0"),
    ("jd_min", "abc", r"'quality\.jd_min' must be a positive number, got 'abc'"),
    ("mjd_max", 3e6, r"'quality\.mjd_max' \(3000000\.0\) must be below 'quality\.jd_min'"),
    ("unusable", ["no_detections"], r"'quality\.unusable' has unknown flag\(s\) \['no_detections'\]"),
    ("max_abs_flux_ujy", True, r"'quality\.max_abs_flux_ujy' must be a positive number, got True"),
])
def test_bad_quality_config_names_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        check_quality_config({**QUALITY, key: value})
    with pytest.raises(ConfigError, match=r"config key 'quality' is missing"):
        check_quality_config(None)


def test_shipped_config_is_valid(base_cfg):
    q = check_quality_config(base_cfg.quality)
    # Every flag makes an object unusable except conflicting duplicates: the source merged them.
    assert set(q["unusable"]) == set(FLAGS) - {"conflicting_duplicates"}


def test_ingest_report_lists_flagged_objects(tmp_path, monkeypatch):
    from conftest import compose_under

    from deeprubin.stages import ingest

    lc, objects = make_tables(n_objects=4)
    spoiled = _spoil(lc, "no_detection")
    monkeypatch.setitem(SOURCES, "simulate", lambda _cfg: (spoiled, objects))
    cfg = compose_under(tmp_path, ["experiment=tiny", "task.classes=[SNIa,QSO]", "source.validation.min_points=3"])
    report = ingest.run_ingest(cfg)
    assert report["quality"]["flagged_objects"] == {"obj001": "no_detection"}
    assert report["quality"]["by_flag"]["no_detection"] == 1
    cfg.quality.unusable = ["nonsense"]
    before = (tmp_path / "data/raw/transients/objects.parquet").read_bytes()
    with pytest.raises(ConfigError, match="unknown flag"):
        ingest.run_ingest(cfg)
    assert (tmp_path / "data/raw/transients/objects.parquet").read_bytes() == before  # nothing overwritten
    assert np.isfinite(spoiled["flux"]).all()
    OmegaConf.to_container(cfg)  # the config stays a valid tree


def test_agreeing_duplicates_are_counted_not_flagged():
    lc, objects = make_tables(n_objects=3)
    table = quality_table(lc, QUALITY, _duplicates(objects, spread=1.5)).set_index("object_id")
    assert table["quality_flags"].tolist() == ["", "", ""]
    assert table.loc["obj001", "n_duplicate_epochs"] == 1 and table.loc["obj000", "n_duplicate_epochs"] == 0
    s = summary(table.reset_index(), list(FLAGS))
    assert s["n_duplicate_epochs"] == 1 and s["max_duplicate_spread_sigma"] == 1.5 and s["n_flagged"] == 0


def test_without_an_objects_table_there_are_no_duplicates():
    lc, _ = make_tables(n_objects=2)
    table = quality_table(lc, QUALITY)
    assert table["n_duplicate_epochs"].tolist() == [0, 0] and table["duplicate_spread_sigma"].tolist() == [0.0, 0.0]
