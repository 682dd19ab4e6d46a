"""SED assembly of the stellar task: bands, extinction, colours and their errors."""
from __future__ import annotations

import extinction
import numpy as np
import pandas as pd
import pytest

from deeprubin.core.config import ConfigError
from deeprubin.tasks.stellar.sed import (
    BANDS, KEPLER_KP_EFFECTIVE_WAVELENGTH, assemble_sed, color_pairs, effective_wavelength,
    extinction_coefficients, extinction_correct, merge_tables)


def _table():
    return pd.DataFrame({"star_id": ["s1", "s2", "s3"],
                         "mag_g": [15.0, 14.0, np.nan], "mag_err_g": [0.03, 0.02, np.nan],
                         "mag_r": [14.5, 13.2, 12.0], "mag_err_r": [0.04, 0.02, 0.01],
                         "mag_J": [13.0, 12.1, 11.0], "mag_err_J": [0.02, np.nan, 0.03],
                         "ebv": [0.1, 0.0, 0.3]})


def test_effective_wavelengths_are_ordered_and_cached():
    lam = {b: effective_wavelength(b) for b in BANDS}
    assert lam["u"] < lam["g"] < lam["r"] < lam["i"] < lam["z"] < lam["J"] < lam["H"] < lam["Ks"]
    assert lam["BP"] < lam["G"] < lam["RP"] and 4000 < lam["g"] < 5000 and 20000 < lam["Ks"] < 23000
    assert lam["Kp"] == KEPLER_KP_EFFECTIVE_WAVELENGTH
    assert effective_wavelength.cache_info().hits >= 0 and effective_wavelength("g") == lam["g"]
    with pytest.raises(ConfigError, match="unknown band"):
        effective_wavelength("y")


def test_colours_and_propagated_errors():
    feats, report = assemble_sed(_table(), ["J", "g", "r"])
    assert list(feats.columns) == ["star_id", "mag_J", "mag_err_J", "mag_g", "mag_err_g", "mag_r", "mag_err_r",
                                   "color_g_r", "color_err_g_r", "color_r_J", "color_err_r_J"]
    assert report["colors"] == ["g-r", "r-J"]   # ordered by effective wavelength
    np.testing.assert_allclose(feats["color_g_r"][:2], [0.5, 0.8])
    np.testing.assert_allclose(feats["color_err_g_r"][:2], [0.05, np.hypot(0.02, 0.02)])
    np.testing.assert_allclose(feats["color_err_r_J"][0], np.hypot(0.04, 0.02))
    assert np.isnan(feats["color_g_r"][2]) and np.isnan(feats["color_err_r_J"][1])   # NaN preserved
    assert report["missing_fraction"]["g"] == pytest.approx(1 / 3)
    assert report["missing_error_fraction"]["J"] == pytest.approx(1 / 3)
    assert report["color_missing_fraction"]["g-r"] == pytest.approx(1 / 3)


def test_explicit_colours_and_missing_error_fill():
    feats, report = assemble_sed(_table(), ["g", "r", "J"], {"colors": [["g", "J"]], "missing_mag_err": 0.05})
    assert [c for c in feats.columns if c.startswith("color_")] == ["color_g_J", "color_err_g_J"]
    assert feats["mag_err_J"][1] == 0.05 and report["filled_mag_err"] == 1
    assert np.isnan(feats["mag_err_g"][2])   # no magnitude: no error is invented


def test_extinction_makes_colours_bluer_by_the_law():
    ebv, r_v = 0.25, 3.1
    bands = ["g", "r", "i", "J", "Ks", "Kp", "BP", "RP"]
    wave = np.array([effective_wavelength(b) for b in bands])
    a_ref = extinction.fitzpatrick99(wave, r_v * ebv, r_v)
    mags = np.array([[16.0, 15.4, 15.1, 14.0, 13.5, 15.3, 15.8, 14.9]])
    out, errs = extinction_correct(mags, bands, ebv, r_v)
    assert errs is None
    np.testing.assert_allclose(mags - out, a_ref[None, :], rtol=1e-10)
    # colour excess removed: E(g-r) = A_g - A_r > 0, so the corrected colour is bluer by exactly that
    table = pd.DataFrame({"star_id": ["a"], "mag_g": [16.0], "mag_r": [15.4], "ebv": [ebv]})
    raw, _ = assemble_sed(table, ["g", "r"])
    ded, report = assemble_sed(table, ["g", "r"], {"extinction": {"apply": True}})
    shift = raw["color_g_r"][0] - ded["color_g_r"][0]
    assert shift > 0 and shift == pytest.approx(a_ref[0] - a_ref[1], rel=1e-10)
    assert report["extinction"]["coefficients"]["g"] == pytest.approx(a_ref[0] / ebv)
    # other laws are linear in E(B-V) too
    ccm = extinction_coefficients(["g"], 3.1, "ccm89")[0]
    assert ccm == pytest.approx(extinction.ccm89(np.array([wave[0]]), 3.1, 3.1)[0])


def test_ebv_uncertainty_propagates_into_errors():
    bands = ["g", "Ks"]
    coeff = extinction_coefficients(bands)
    mags = np.array([[15.0, 13.0], [14.0, np.nan]])
    errs = np.array([[0.02, 0.03], [0.01, np.nan]])
    out, new = extinction_correct(mags, bands, np.array([0.1, 0.2]), mag_errs=errs, ebv_err=np.array([0.02, 0.05]))
    np.testing.assert_allclose(new[0], np.hypot(errs[0], 0.02 * coeff))
    assert np.isnan(out[1, 1]) and np.isnan(new[1, 1])
    one, one_err = extinction_correct([15.0, 13.0], bands, 0.1, ebv_err=0.02)
    np.testing.assert_allclose(one_err, 0.02 * coeff)
    np.testing.assert_allclose(one, [15.0, 13.0] - 0.1 * coeff)
    feats, _ = assemble_sed(_table(), ["g", "r"], {"extinction": {"apply": True, "ebv_err_column": "ebv"}})
    c = extinction_coefficients(["g", "r"])
    assert feats["mag_err_g"][0] == pytest.approx(np.hypot(0.03, 0.1 * c[0]))


def test_merging_several_tables_and_absent_bands():
    kic = pd.DataFrame({"star_id": ["s1", "s2"], "mag_g": [15.0, np.nan], "mag_J": [13.0, 12.0]})
    gaia = pd.DataFrame({"star_id": ["s2", "s3"], "mag_g": [14.1, 13.0], "mag_G": [14.5, 12.8],
                         "mag_err_G": [0.003, 0.003]})
    merged, rep = merge_tables([kic, gaia])
    assert merged["star_id"].tolist() == ["s1", "s2", "s3"] and rep["stars_per_table"] == [2, 2]
    assert merged["mag_g"].tolist() == [15.0, 14.1, 13.0]   # first table wins, gaps filled
    feats, report = assemble_sed([kic, gaia], ["g", "G", "J", "H"])
    assert report["absent_bands"] == ["H"] and feats["mag_H"].isna().all()
    assert report["missing_fraction"]["H"] == 1.0 and report["missing_fraction"]["J"] == pytest.approx(1 / 3)
    assert "color_J_H" in feats.columns and feats["color_J_H"].isna().all()
    dropped, report = assemble_sed([kic, gaia], ["g", "G", "J", "H"], {"absent_bands": "drop"})
    assert "mag_H" not in dropped.columns and report["colors"] == ["g-G", "G-J"]
    with pytest.raises(ConfigError, match="absent_bands: raise"):
        assemble_sed([kic, gaia], ["g", "H"], {"absent_bands": "raise"})
    with pytest.raises(ValueError, match="table 1: column 'star_id': repeated id 's2'"):
        merge_tables([kic, pd.concat([gaia, gaia])])
    with pytest.raises(ValueError, match="table 0: missing id column 'star_id'"):
        merge_tables([kic.rename(columns={"star_id": "id"})])
    bad = kic.assign(mag_J=["13.0", "faint"])
    with pytest.raises(ValueError, match="column 'mag_J', star 's2': not a number"):
        assemble_sed(bad, ["J"])


@pytest.mark.parametrize("cfg, bands, match", [
    ({"colour": "adjacent"}, ["g"], r"unknown key\(s\) \['colour'\]"),
    ({"extinction": {"rv": 3.1}}, ["g"], r"extinction\.rv"),
    ({"extinction": {"apply": True, "ebv_column": "E_BV"}}, ["g", "r"], "'extinction.ebv_column'"),
    ({"extinction": {"apply": True, "ebv_err_column": "sig"}}, ["g"], "'extinction.ebv_err_column'"),
    ({"extinction": {"law": "cardelli"}}, ["g"], "'extinction.law'"),
    ({"extinction": {"r_v": -1}}, ["g"], "'extinction.r_v'"),
    ({"extinction": {"apply": "yes"}}, ["g"], "'extinction.apply'"),
    ({"absent_bands": "ignore"}, ["g"], "'absent_bands'"),
    ({"missing_mag_err": -0.1}, ["g"], "'missing_mag_err'"),
    ({"colors": "all"}, ["g", "r"], "'colors'"),
    ({"colors": [["g", "y"]]}, ["g", "r"], "'colors' entry"),
    ({}, ["g", "W1"], r"'bands': unknown band\(s\) \['W1'\]"),
    ({}, ["g", "g"], "repeated band"),
    ({}, [], "'bands' is empty"),
])
def test_config_errors_name_the_key(cfg, bands, match):
    table = pd.DataFrame({"star_id": ["a"], "mag_g": [15.0], "mag_r": [14.0], "ebv": [0.1]})
    with pytest.raises(ConfigError, match=match):
        assemble_sed(table, bands, cfg)


def test_extinction_argument_errors():
    with pytest.raises(ConfigError, match="'fm07' is defined for r_v = 3.1"):
        extinction_coefficients(["g"], 2.5, "fm07")
    assert extinction_coefficients(["g"], 3.1, "fm07")[0] > 0
    with pytest.raises(ValueError, match="'mags' must have 2 columns"):
        extinction_correct(np.zeros((3, 3)), ["g", "r"], 0.1)
    with pytest.raises(ValueError, match="'ebv' has 2 values for 3 stars"):
        extinction_correct(np.zeros((3, 2)), ["g", "r"], [0.1, 0.2])
    assert color_pairs(["Ks", "g", "RP"]) == [("g", "RP"), ("RP", "Ks")]
