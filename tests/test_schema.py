import numpy as np
import pandas as pd
import pytest
from conftest import make_tables

from deeprubin.core.schema import SchemaError, flux_to_mag, mag_to_flux, validate_tables


def test_valid_tables_pass_and_are_sorted(tables):
    lc, obj = tables
    shuffled = lc.sample(frac=1.0, random_state=1)
    out_lc, out_obj, report = validate_tables(shuffled, obj, classes=["SNIa", "QSO"], bands=["g", "r"])
    assert len(out_lc) == len(lc)
    assert report.resorted_objects > 0
    for _, part in out_lc.groupby("object_id"):
        assert part["time"].is_monotonic_increasing
    assert report.n_objects_out == len(obj)


@pytest.mark.parametrize("column, value, reason", [
    ("flux", np.nan, "column 'flux'"),
    ("flux", np.inf, "column 'flux'"),
    ("flux_err", np.nan, "column 'flux_err'"),
    ("flux_err", 0.0, "'flux_err' <= 0"),
    ("flux_err", -1.0, "'flux_err' <= 0"),
    ("time", np.inf, "column 'time'"),
])
def test_bad_values_raise_naming_object_and_column(tables, column, value, reason):
    lc, obj = tables
    lc = lc.copy()
    lc.loc[5, column] = value
    bad = lc.loc[5, "object_id"]
    with pytest.raises(SchemaError, match=rf"object '{bad}'.*{reason}"):
        validate_tables(lc, obj)


def test_drop_mode_drops_and_counts(tables):
    lc, obj = tables
    lc = lc.copy()
    lc.loc[0, "flux"] = np.nan
    bad = lc.loc[0, "object_id"]
    out_lc, out_obj, report = validate_tables(lc, obj, on_invalid="drop")
    assert bad not in set(out_obj["object_id"]) and bad not in set(out_lc["object_id"])
    assert report.as_dict()["dropped_by_reason"] == {"non_finite": 1}


def test_duplicate_times_rejected(tables):
    lc, obj = tables
    lc = pd.concat([lc, lc.iloc[[3]]], ignore_index=True)
    with pytest.raises(SchemaError, match="duplicate_time"):
        validate_tables(lc, obj)


def test_empty_object_single_point_and_one_band():
    lc, obj = make_tables(n_objects=3)
    # obj000: no rows at all; obj001: a single point; obj002: fine.
    lc = lc[lc["object_id"] != "obj000"]
    one = lc[lc["object_id"] == "obj001"].iloc[:1]
    lc = pd.concat([one, lc[lc["object_id"] == "obj002"]])
    with pytest.raises(SchemaError, match="object 'obj000': empty"):
        validate_tables(lc, obj)
    _, out_obj, report = validate_tables(lc, obj, on_invalid="drop", min_points=3)
    assert list(out_obj["object_id"]) == ["obj002"]
    assert report.dropped["obj001"].startswith("too_few_points")
    g_only = lc[(lc["band"] == "g") & (lc["object_id"] == "obj002")]
    with pytest.raises(SchemaError, match="too_few_bands"):
        validate_tables(g_only, obj[obj["object_id"] == "obj002"], min_bands=2)


def test_unknown_label_and_band(tables):
    lc, obj = tables
    obj = obj.copy()
    obj.loc[1, "label"] = "SNIax"
    with pytest.raises(SchemaError, match="object 'obj001'.*column 'label'.*'SNIax'"):
        validate_tables(lc, obj, classes=["SNIa", "QSO"])
    lc2, obj2 = make_tables()
    with pytest.raises(SchemaError, match="unknown_band"):
        validate_tables(lc2, obj2, bands=["g"])


def test_missing_column_and_non_numeric(tables):
    lc, obj = tables
    with pytest.raises(SchemaError, match=r"missing required column\(s\) \['flux_err'\]"):
        validate_tables(lc.drop(columns="flux_err"), obj)
    lc = lc.copy().astype({"flux": object})
    lc.loc[2, "flux"] = "bright"
    with pytest.raises(SchemaError, match="column 'flux' has non-numeric value 'bright'"):
        validate_tables(lc, obj)


def test_observations_without_object_row(tables):
    lc, obj = tables
    with pytest.raises(SchemaError, match="no row in the objects table"):
        validate_tables(lc, obj.iloc[1:])


def test_invalid_on_invalid(tables):
    with pytest.raises(SchemaError, match="on_invalid"):
        validate_tables(*tables, on_invalid="ignore")


def test_mag_flux_round_trip():
    flux, err = mag_to_flux(np.array([20.0, 23.9]), np.array([0.1, 0.2]))
    assert flux[1] == pytest.approx(1.0)
    mag, mag_err = flux_to_mag(flux, err)
    np.testing.assert_allclose(mag, [20.0, 23.9])
    np.testing.assert_allclose(mag_err, [0.1, 0.2])
    assert np.isnan(flux_to_mag(np.array([-1.0]))[0])
