"""Physics of the simulator's class models: distances, dilation, dust, selection, shapes, output modes."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from deeprubin.sources.simulate import CLASS_MODELS, SimulationConfigError, simulate_survey
from deeprubin.sources.simulate.classes import (
    SNIBC_SPEC,
    eclipse_profile,
    fourier_extrema,
    fourier_shape,
)
from deeprubin.sources.simulate.physics import (
    distance_modulus,
    draw_redshifts,
    milky_way_extinction,
    redshift_at_distance_modulus,
)
from deeprubin.sources.simulate.population import PopulationConfig
from deeprubin.sources.simulate.snia import C_INTRINSIC, M0_B, SIGMA_INT, TRIPP_ALPHA, TRIPP_BETA, draw_colour
from deeprubin.sources.simulate.survey import SURVEY_LIKE_FRACTIONS

BANDS = ["g", "r"]
ALL = ["SNIa", "SNII", "SNIbc", "SLSN", "QSO", "Cepheid", "RRLyrae", "EB"]


def config(n_objects=24, **overrides):
    cfg = {"n_objects": n_objects, "class_fractions": None, "overlap_fraction": 0.0, "survey": {}}
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def snia_params():
    rng = np.random.default_rng(0)
    return CLASS_MODELS["SNIa"].sample_params(rng, 4000, PopulationConfig(deepest_mag=21.4))


# --------------------------------------------------------------------------- cosmology and dust

def test_distance_modulus_matches_astropy_planck18():
    from astropy.cosmology import Planck18

    z = np.array([0.01, 0.05, 0.1, 0.5, 2.0])
    np.testing.assert_allclose(distance_modulus(z), Planck18.distmod(z).value, atol=2e-3)
    np.testing.assert_allclose(redshift_at_distance_modulus(distance_modulus(z)), z, rtol=1e-3)
    with pytest.raises(ValueError, match="redshift"):
        distance_modulus(np.array([-0.1]))


def test_volumetric_redshifts_follow_comoving_volume():
    z = draw_redshifts(np.random.default_rng(1), 20000, 0.001, 0.1, 0.0)
    # Low z: dV ~ z^2 dz, so N(<z) ~ z^3: half the maximum holds ~1/8 of the sources.
    assert (z < 0.05).mean() == pytest.approx(0.13, abs=0.02)
    assert z.min() >= 0.001 and z.max() <= 0.1
    with pytest.raises(ValueError):
        draw_redshifts(np.random.default_rng(1), 5, 0.2, 0.1, 0.0)


def test_milky_way_extinction_is_bluer_larger():
    a_g, a_r = milky_way_extinction(np.array([0.1]), "g"), milky_way_extinction(np.array([0.1]), "r")
    assert 0.30 < a_g[0] < 0.42 and 0.2 < a_r[0] < 0.3  # A_g/E(B-V) ~ 3.6, A_r/E(B-V) ~ 2.5 (SF11)
    assert milky_way_extinction(np.zeros(1), "g")[0] == 0.0


# --------------------------------------------------------------------------- SN Ia template

def test_snia_peak_absolute_magnitude_within_input_scatter(snia_params):
    p = snia_params[np.isfinite(snia_params["truth_peak_mag_r"])]
    # Tripp-standardised B magnitude scatters by sigma_int around M0.
    standardised = p["truth_abs_peak_mag_b"] + TRIPP_ALPHA * p["truth_x1"] - TRIPP_BETA * p["truth_c"]
    assert standardised.mean() == pytest.approx(M0_B, abs=0.02)
    assert standardised.std() == pytest.approx(SIGMA_INT, rel=0.1)
    # r-band absolute peak of ordinary (x1 ~ 0, c ~ 0) SNe Ia is ~-19.2 (Perley et al. 2020 BTS: -19.2 median).
    normal = p[(p["truth_x1"].abs() < 0.5) & (p["truth_c"].abs() < 0.03)]
    assert -19.5 < normal["truth_abs_peak_mag_r"].median() < -18.9


def test_snia_distance_dimming_and_time_dilation(snia_params):
    model = CLASS_MODELS["SNIa"]
    p = snia_params[np.isfinite(snia_params["truth_peak_mag_r"])].copy().reset_index(drop=True)
    p["truth_peak_mjd"] = 60000.0
    # Noise-free light curves on a fine grid recover the tabulated peak and widths.
    t = 60000.0 + np.arange(-60.0, 120.0, 0.25)
    rows = np.arange(min(len(p), 200))
    src = np.repeat(rows, len(t))
    flux = model.true_flux(p, src, np.tile(t, len(rows)), np.ones(len(src), dtype=int), None).reshape(len(rows), -1)
    peak_mag = 23.9 - 2.5 * np.log10(flux.max(axis=1))
    np.testing.assert_allclose(peak_mag, p.loc[rows, "truth_peak_mag_r"], atol=0.02)
    np.testing.assert_allclose(t[np.argmax(flux, axis=1)], 60000.0, atol=0.6)
    # Rest-frame widths: the observed half-flux width divided by stretch * (1 + z) is the template's.
    width = np.array([np.ptp(t[f >= f.max() / 2]) for f in flux])
    rest = width / (p.loc[rows, "truth_stretch"] * (1 + p.loc[rows, "redshift"])).to_numpy()
    low_z = p.loc[rows, "redshift"].to_numpy() < 0.1
    assert np.std(rest[low_z]) / np.mean(rest[low_z]) < 0.05
    # Distance dimming: apparent minus absolute B magnitude grows one-for-one with the
    # Planck 2018 distance modulus (K-corrections are small at these redshifts).
    near = p[p["redshift"] < 0.08]
    gap = (near["truth_peak_mag_r"] - near["truth_abs_peak_mag_b"]
           - milky_way_extinction(near["truth_mw_ebv"].to_numpy(), "r"))
    design = np.column_stack([near["truth_distmod"], near["truth_c"], near["truth_x1"], np.ones(len(near))])
    slope = np.linalg.lstsq(design, gap.to_numpy(), rcond=None)[0][0]  # colour/stretch terms held fixed
    assert slope == pytest.approx(1.0, abs=0.05)


def test_villar_distance_modulus_and_dilation():
    model = CLASS_MODELS["SNIbc"]
    p = model.sample_params(np.random.default_rng(2), 3000, PopulationConfig(deepest_mag=21.4))
    dust_r = milky_way_extinction(p["truth_mw_ebv"].to_numpy(), "r")
    np.testing.assert_allclose(p["truth_peak_mag_r"] - p["truth_abs_peak_mag_r"] - dust_r,
                               distance_modulus(p["redshift"].to_numpy()), atol=1e-9)
    rest = p["truth_rise_days"] / (1 + p["redshift"])
    assert rest.median() == pytest.approx(SNIBC_SPEC.tau_rise[0], rel=0.05)
    assert p["truth_fall_days"].median() > SNIBC_SPEC.tau_fall[0]  # observer frame is dilated


def test_malmquist_bias_selected_sample_is_brighter_at_high_redshift():
    _, obj = simulate_survey(config(n_objects=150), seed=3, classes=["SNIa"], bands=BANDS)
    far = obj["redshift"] > obj["redshift"].median()
    m = obj["truth_abs_peak_mag_r"]
    assert m[far].mean() < m[~far].mean() - 0.1  # only the brighter ones survive far away
    assert (obj["truth_n_detections"] >= 3).all()


# --------------------------------------------------------------------------- periodic classes

def test_fourier_shapes_rise_fast_for_rrab_and_are_near_sinusoidal_for_rrc():
    phase = np.linspace(0, 1, 2000, endpoint=False)

    def rise_fraction(r21, r31, p21, p31):
        m = fourier_shape(phase, r21, r31, p21, p31)
        return ((phase[np.argmin(m)] - phase[np.argmax(m)]) % 1.0)

    assert rise_fraction(0.48, 0.33, 2.4, 5.1) < 0.3        # RRab: steep rise
    assert 0.35 < rise_fraction(0.15, 0.07, 2.9, 5.5) < 0.5  # RRc: nearly symmetric
    lo, hi, _ = fourier_extrema(np.array([0.0]), np.array([0.0]), np.array([0.0]), np.array([0.0]))
    assert lo[0] == pytest.approx(-1, abs=1e-3) and hi[0] == pytest.approx(1, abs=1e-3)


def test_rr_lyrae_periods_amplitudes_and_bailey_relation():
    p = CLASS_MODELS["RRLyrae"].sample_params(np.random.default_rng(4), 3000, PopulationConfig())
    ab, c = p[p["truth_subtype"] == 0], p[p["truth_subtype"] == 1]
    assert 0.7 < len(ab) / len(p) < 0.86  # Sesar et al. 2010: 78 % RRab
    assert ab["truth_period_days"].between(0.45, 0.75).mean() > 0.9
    assert c["truth_period_days"].between(0.25, 0.42).mean() > 0.9
    assert 0.6 < ab["truth_amplitude_mag"].median() < 0.8 and 0.3 < c["truth_amplitude_mag"].median() < 0.42
    slope = np.polyfit(np.log10(ab["truth_period_days"]), ab["truth_amplitude_mag"], 1)[0]
    assert slope < -1.5  # longer-period RRab have smaller amplitudes
    assert (p["truth_amplitude_g_mag"] > p["truth_amplitude_mag"]).all()


def test_eclipsing_binary_shapes():
    phase = np.linspace(0, 1, 1001)
    contact = eclipse_profile(phase, np.zeros_like(phase), 0.05, 0.5, 0.4)
    detached = eclipse_profile(phase, np.ones_like(phase), 0.03, 0.8, 0.2)
    assert contact[0] == pytest.approx(0.5) and contact[500] == pytest.approx(0.4)
    assert contact[250] == pytest.approx(0.0, abs=1e-6)  # quadrature: maximum light
    assert detached[0] == pytest.approx(0.8, abs=1e-3) and detached[500] == pytest.approx(0.2, abs=1e-3)
    assert detached[250] < 1e-6  # flat outside eclipses
    p = CLASS_MODELS["EB"].sample_params(np.random.default_rng(5), 2000, PopulationConfig())
    ew = p[p["truth_subtype"] == 0]
    assert 0.8 < len(ew) / len(p) < 0.95 and 0.3 < ew["truth_period_days"].median() < 0.45


def test_eclipsing_binary_period_recovered_by_lomb_scargle():
    timeseries = pytest.importorskip("astropy.timeseries")
    lc, obj = simulate_survey(config(n_objects=12, class_fractions=None), seed=8, classes=["EB"], bands=BANDS)
    hits = 0
    for row in obj[obj["truth_subtype"] == 0].itertuples():  # contact: continuous variation
        r = lc[(lc["object_id"] == row.object_id) & (lc["band"] == "r")]
        f, pw = timeseries.LombScargle(r["time"], r["flux"], r["flux_err"]).autopower(
            minimum_frequency=0.5, maximum_frequency=12.0, samples_per_peak=20)
        best = 1.0 / f[np.argmax(pw)]
        hits += abs(2 * best / row.truth_period_days - 1) < 0.01  # ellipsoidal: half the orbit
    assert hits >= 0.7 * (obj["truth_subtype"] == 0).sum()


def test_qso_variability_follows_macleod_relations():
    p = CLASS_MODELS["QSO"].sample_params(np.random.default_rng(6), 4000, PopulationConfig(deepest_mag=21.4))
    # Brighter quasars vary less (C = 0.131 per mag) and bluer rest wavelengths vary more (B < 0).
    slope = np.polyfit(p["truth_abs_mag_i"], np.log10(p["truth_sf_inf_mag"]), 1)[0]
    assert 0.08 < slope < 0.18
    assert (p["truth_sf_inf_g_mag"] > p["truth_sf_inf_mag"]).all()
    rest_tau = p["truth_tau_days"] / (1 + p["redshift"])
    assert 50 < rest_tau.median() < 400  # ~200 d rest frame (MacLeod et al. 2010)


# --------------------------------------------------------------------------- output modes and mixes

def test_alert_output_is_the_detections_of_forced_output():
    forced_lc, forced_obj = simulate_survey(config(n_objects=16), seed=9, classes=ALL, bands=BANDS)
    alert_lc, alert_obj = simulate_survey(config(n_objects=16, output="alert"), seed=9, classes=ALL, bands=BANDS)
    assert alert_lc["detected"].all()
    pd.testing.assert_frame_equal(alert_lc, forced_lc[forced_lc["detected"]].reset_index(drop=True))
    nondet = (~forced_lc["detected"]).groupby(forced_lc["object_id"]).sum()
    np.testing.assert_array_equal(alert_obj.set_index("object_id")["n_non_detections"].reindex(nondet.index),
                                  nondet.to_numpy())
    oid = alert_obj.loc[alert_obj["last_nondet_mjd"].notna(), "object_id"].iloc[0]
    first = alert_lc.loc[alert_lc["object_id"] == oid, "time"].min()
    before = forced_lc[(forced_lc["object_id"] == oid) & ~forced_lc["detected"] & (forced_lc["time"] < first)]
    assert alert_obj.set_index("object_id").loc[oid, "last_nondet_mjd"] == before["time"].max()
    assert "n_non_detections" not in forced_obj


def test_survey_like_class_mix():
    _, obj = simulate_survey(config(n_objects=300, class_fractions="survey"), seed=10, classes=ALL, bands=BANDS)
    counts = obj["label"].value_counts()
    total = sum(SURVEY_LIKE_FRACTIONS.values())
    assert counts["EB"] == pytest.approx(300 * SURVEY_LIKE_FRACTIONS["EB"] / total, abs=1)
    assert counts["EB"] > counts["QSO"] > counts["SNIa"]


def test_spectroscopic_subpopulation_is_flux_limited_and_nearby():
    """A spectroscopic fraction of every transient class is drawn brighter than the flux limit;
    the rest of the class and the non-transients are the default depth-limited draws."""
    classes = ["SNIa", "SNII", "RRLyrae"]
    base = config(n_objects=120, overlap_fraction=0.0)
    _, plain = simulate_survey(base, seed=3, classes=classes, bands=BANDS)
    spec_cfg = copy.deepcopy(base)
    spec_cfg["population"] = {"spectroscopic_fraction": 0.5, "spectroscopic_peak_mag": 18.5}
    _, mixed = simulate_survey(spec_cfg, seed=3, classes=classes, bands=BANDS)
    assert "truth_spectroscopic" not in plain.columns          # default tables unchanged
    assert mixed["label"].value_counts().to_dict() == plain["label"].value_counts().to_dict()
    for label in ("SNIa", "SNII"):
        part = mixed[mixed["label"] == label]
        spec = part[part["truth_spectroscopic"] == 1.0]
        phot = part[part["truth_spectroscopic"] == 0.0]
        assert len(spec) == 20 and len(phot) == 20
        peak = spec[["truth_peak_mag_g", "truth_peak_mag_r"]].min(axis=1)
        assert (peak <= 18.5).all()
        assert spec["redshift"].median() < phot["redshift"].median()
        assert spec["truth_n_detections"].median() > phot["truth_n_detections"].median()
    assert mixed.loc[mixed["label"] == "RRLyrae", "truth_spectroscopic"].isna().all()
    pd.testing.assert_frame_equal(mixed[mixed["label"] == "RRLyrae"].drop(columns="truth_spectroscopic")
                                  .reset_index(drop=True),
                                  plain[plain["label"] == "RRLyrae"].reset_index(drop=True), check_like=True)


def test_snia_host_dust_colour_model_has_an_exponential_red_tail():
    """c = N(-0.084, 0.042) + Exp(tau): mean -0.084 + tau, a long red tail the SK16 population lacks,
    and redder SNe are fainter through the Tripp/CCM colour law."""
    rng = np.random.default_rng(5)
    sk16 = draw_colour(rng, 40000)
    dusty = draw_colour(rng, 40000, 0.3)
    # mean of an exponential truncated where c reaches the 1.0 cap: tau - L exp(-L/tau) / (1 - exp(-L/tau))
    cut = 1.0 - C_INTRINSIC[0]
    expected = C_INTRINSIC[0] + 0.3 - cut * np.exp(-cut / 0.3) / (1.0 - np.exp(-cut / 0.3))
    assert dusty.mean() == pytest.approx(expected, abs=0.01)
    assert dusty.min() >= -0.3 and dusty.max() <= 1.0
    assert (dusty > 0.4).mean() > 0.15 > 10 * (sk16 > 0.4).mean()
    # dust only reddens: the blue edge is the intrinsic Gaussian's (between its mean and mean - 3 sd)
    assert C_INTRINSIC[0] - 3 * C_INTRINSIC[1] < np.quantile(dusty, 0.02) < C_INTRINSIC[0]
    population = PopulationConfig(deepest_mag=21.4, snia_dust_tau=0.3)
    p = CLASS_MODELS["SNIa"].sample_params(np.random.default_rng(6), 4000, population)
    red, blue = p["truth_c"] > 0.4, p["truth_c"] < 0.0
    gap = (p.loc[red, "truth_abs_peak_mag_b"].median() - p.loc[blue, "truth_abs_peak_mag_b"].median())
    assert gap > TRIPP_BETA * 0.4
    near = p["redshift"] < 0.1          # K-corrections redden every SN further out
    colour = p["truth_peak_mag_g"] - p["truth_peak_mag_r"]
    assert colour[red & near].median() > colour[blue & near].median() + 0.4


def test_flux_limit_caps_the_redshift_range():
    """max_peak_mag bounds the redshift sampler (no draws far beyond the flux limit)."""
    deep = PopulationConfig(deepest_mag=21.4)
    bright = PopulationConfig(deepest_mag=21.4, max_peak_mag=18.5)
    brightest = CLASS_MODELS["SNIa"].brightest_abs_mag()
    assert bright.limiting_mag == pytest.approx(19.5)
    assert bright.redshift_max_for(brightest) < 0.5 * deep.redshift_max_for(brightest)
    with pytest.raises(SimulationConfigError, match=r"population\.max_peak_mag.*brighter than the brightest"):
        PopulationConfig(deepest_mag=21.4, max_peak_mag=5.0).redshift_max_for(brightest, "SNIa")


# --------------------------------------------------------------------------- physically impossible input

BAD = [
    ("population.redshift_min", {"population": {"redshift_min": -0.1}}),
    ("population.redshift_min", {"population": {"redshift_min": 0.0}}),
    ("population.redshift_max", {"population": {"redshift_min": 0.5, "redshift_max": 0.2}}),
    ("population.period_ranges_days.RRLyrae", {"population": {"period_ranges_days": {"RRLyrae": [0.0, 1.0]}}}),
    ("population.period_ranges_days.Cepheid", {"population": {"period_ranges_days": {"Cepheid": [-3, 10]}}}),
    ("population.period_ranges_days.EB", {"population": {"period_ranges_days": {"EB": [5, 2]}}}),
    ("population.period_ranges_days.Mira", {"population": {"period_ranges_days": {"Mira": [100, 400]}}}),
    ("population.period_ranges_days.EB", {"population": {"period_ranges_days": {"EB": [1.0]}}}),
    ("population.min_detections", {"output": "alert", "population": {"min_detections": 1}}),
    ("population.mw_ebv_mean", {"population": {"mw_ebv_mean": -0.1}}),
    ("population.max_peak_mag", {"population": {"max_peak_mag": 5}}),
    ("population.spectroscopic_fraction", {"population": {"spectroscopic_fraction": 1.5}}),
    ("population.spectroscopic_fraction", {"population": {"spectroscopic_fraction": -0.1}}),
    ("population.spectroscopic_peak_mag", {"population": {"spectroscopic_peak_mag": 8.0}}),
    ("population.snia_dust_tau", {"population": {"snia_dust_tau": 0.0}}),
    ("population.snia_dust_tau", {"population": {"snia_dust_tau": 0.8}}),
    ("population.spectroscopic_peak_mag", {"population": {"spectroscopic_peak_mag": "bright"}}),
    ("population.redshift", {"population": {"redshift": 0.1}}),
    ("output", {"output": "fits"}),
    ("class_fractions", {"class_fractions": "realistic"}),
    ("survey.lim_mag_median", {"survey": {"lim_mag_median": 12.0, "lim_mag_scatter": 0.1}}),
]


@pytest.mark.parametrize("key, change", BAD, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD)])
def test_out_of_range_physics_raises_naming_key(key, change):
    cfg = copy.deepcopy(config(n_objects=8))
    cfg.update(change)
    with pytest.raises(SimulationConfigError, match=key.replace(".", r"\.")):
        simulate_survey(cfg, seed=0, classes=ALL, bands=BANDS)


@pytest.mark.parametrize("label", ["SNIa", "SLSN", "RRLyrae", "QSO"])
def test_limiting_magnitude_brighter_than_brightest_object(label):
    cfg = config(n_objects=4, survey={"lim_mag_median": 5.0, "lim_mag_scatter": 0.1})
    with pytest.raises(SimulationConfigError, match=r"survey\.lim_mag_median.*brighter than the brightest"):
        simulate_survey(cfg, seed=0, classes=[label], bands=BANDS)
