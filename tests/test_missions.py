"""One mission table, one time-system module, one KOI catalogue reader (issue 18, point 2)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprubin.core.schema import SchemaError
from deeprubin.sources import lightkurve_source
from deeprubin.sources.missions import (MISSION_OFFSETS, MISSIONS, PREFIX_MISSION, TimeSystemError,
                                        bjd_to_mission, check_time_system, read_koi_catalog)


def test_one_table_feeds_every_reader():
    # the lightkurve source's views are derived from the one table
    assert lightkurve_source.MISSIONS["tess"] == ("TIC", "BTJD", 2457000.0)
    assert lightkurve_source.MISSION_NAMES == {"kepler": "Kepler", "k2": "K2", "tess": "TESS"}
    assert {PREFIX_MISSION[m.id_prefix] for m in MISSIONS.values()} == set(MISSIONS)
    assert MISSION_OFFSETS == {"Kepler": 2454833.0, "K2": 2454833.0, "TESS": 2457000.0}
    assert bjd_to_mission(2457000.5, "TESS") == pytest.approx(0.5)
    with pytest.raises(TimeSystemError, match=r"obj 1: field 'time'.*Kepler range"):
        check_time_system(np.array([2455000.0]), "Kepler", "obj 1")


def test_koi_reader_names_file_and_column(tmp_path):
    cat = tmp_path / "koi.csv"
    pd.DataFrame({"kepid": [1, 1], "koi_period": [3.0, 1.0]}).to_csv(cat, index=False)
    assert len(read_koi_catalog(cat, ["kepid", "koi_period"])) == 2
    with pytest.raises(SchemaError, match=r"koi\.csv: missing column 'koi_time0bk'$"):
        read_koi_catalog(cat, ["kepid", "koi_time0bk"])
    with pytest.raises(SchemaError, match=r"koi\.csv: missing column 'koi_dur' \(config 'source\.catalog\.x'\)"):
        read_koi_catalog(cat, {"source.catalog.x": "koi_dur", "unused": None})
    with pytest.raises(FileNotFoundError, match=r"real target X: catalogue file .*absent\.csv does not exist"):
        read_koi_catalog(tmp_path / "absent.csv", where="real target X")


def test_every_koi_consumer_goes_through_the_reader(tmp_path):
    from deeprubin.tasks.transits.real import real_ephemeris
    from deeprubin.tasks.transits.simulate.catalog import load_catalog
    from omegaconf import OmegaConf

    cat = tmp_path / "koi.csv"
    pd.DataFrame({"kepid": [1], "koi_period": [3.0]}).to_csv(cat, index=False)
    with pytest.raises(SchemaError, match=r"koi\.csv: missing column 'duration\(days\)'"):
        load_catalog(cat)
    with pytest.raises(SchemaError, match=r"koi\.csv: missing column 'koi_tce_plnt_num'"):
        real_ephemeris(OmegaConf.create({"name": "x", "target_id": "KIC 1", "mission": "Kepler", "from_catalog": 1}),
                       cat)
    with pytest.raises(SchemaError, match=r"missing column 'koi_time0bk' \(config 'source\.catalog\.t0_column'\)"):
        lightkurve_source._catalog_targets({"path": str(cat), "period_column": "koi_period",
                                            "t0_column": "koi_time0bk"}, None, 0)


def test_transits_real_fits_goes_through_the_lightkurve_source(tmp_path):
    from omegaconf import OmegaConf

    from deeprubin.core.config import compose_task
    from deeprubin.tasks.transits.source import read_target

    bad = tmp_path / "kplr000000001-2009131110544_llc.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b" " * 50)   # a header cut short
    target = OmegaConf.create({"name": "x", "target_id": "KIC 1", "mission": "Kepler", "file": bad.name,
                               "format": "fits"})
    with pytest.raises(lightkurve_source.LightCurveFileError, match=r"llc\.fits: cannot be read as a Kepler"):
        read_target(compose_task("transits", ["transits=tiny"]), target, tmp_path, 30.0)
