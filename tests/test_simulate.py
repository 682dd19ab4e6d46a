"""Tests of the built-in survey simulator (deeprubin.sources.simulate)."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from deeprubin.core.schema import validate_tables
from deeprubin.sources.simulate import CLASS_MODELS, SimulationConfigError, simulate_survey
from deeprubin.sources.simulate.cadence import SurveyConfig, flux_error, is_visible
from deeprubin.sources.simulate.classes import damped_random_walk
from deeprubin.sources.simulate.survey import TRUTH_COLUMNS, class_counts

CLASSES = ["SNIa", "SNII", "SNIbc", "SLSN", "QSO", "Cepheid", "RRLyrae", "EB"]
BANDS = ["g", "r"]
SURVEY = {
    "mjd_start": 58300.0,
    "duration_days": 365.0,
    "season_length_days": 240.0,
    "cadence_days": 3.0,
    "nightly_scatter_hours": 2.0,
    "weather_loss_fraction": 0.2,
    "lim_mag_median": 20.5,
    "lim_mag_scatter": 0.3,
}
SN_CLASSES = ["SNIa", "SNII", "SNIbc"]


def make_config(n_objects=36, survey=None, **overrides):
    config = {"n_objects": n_objects, "class_fractions": None, "overlap_fraction": 0.1,
              "survey": {**SURVEY, **(survey or {})}}
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def tables():
    return simulate_survey(make_config(n_objects=48), seed=7, classes=CLASSES, bands=BANDS)


# --------------------------------------------------------------------------- contract

def test_registry_has_every_class():
    """The training classes, plus the anomaly layer's held-out classes (never a training class)."""
    from deeprubin.sources.simulate.novel import NOVEL_MODELS

    assert set(CLASS_MODELS) == set(CLASSES) | set(NOVEL_MODELS)
    assert not set(NOVEL_MODELS) & set(CLASSES)


def test_tables_pass_schema_validation(tables):
    lc, obj = tables
    clean_lc, clean_obj, report = validate_tables(lc, obj, classes=CLASSES, bands=BANDS, on_invalid="raise")
    assert report.dropped == {} and report.resorted_objects == 0
    pd.testing.assert_frame_equal(clean_lc[lc.columns], lc)  # already sorted by object_id, time
    assert list(lc.columns) == ["object_id", "time", "band", "flux", "flux_err", "mag", "mag_err", "detected"]
    assert set(TRUTH_COLUMNS) <= set(obj.columns)
    assert {"ra", "dec", "redshift"} <= set(obj.columns)
    assert (obj["source"] == "simulate").all()
    assert (lc["flux_err"] > 0).all()
    np.testing.assert_array_equal(lc["detected"], lc["flux"] / lc["flux_err"] >= 5)
    assert lc.loc[lc["flux"] <= 0, ["mag", "mag_err"]].isna().all().all()
    assert lc.loc[lc["flux"] > 0, ["mag", "mag_err"]].notna().all().all()
    galactic = obj["label"].isin(["Cepheid", "RRLyrae", "EB"])
    assert obj.loc[galactic, "redshift"].isna().all()
    assert (obj.loc[~galactic, "redshift"] > 0).all()


def test_single_band_and_omegaconf_input():
    omegaconf = pytest.importorskip("omegaconf")
    config = omegaconf.OmegaConf.create(make_config(n_objects=12))
    classes = omegaconf.OmegaConf.create(["SNIa", "QSO"])
    lc, obj = simulate_survey(config, seed=3, classes=classes, bands=["r"])
    assert set(lc["band"]) == {"r"}
    validate_tables(lc, obj, classes=["SNIa", "QSO"], bands=["r"], on_invalid="raise")


def test_observations_inside_survey(tables):
    lc, _ = tables
    assert lc["time"].min() >= SURVEY["mjd_start"]
    assert lc["time"].max() < SURVEY["mjd_start"] + SURVEY["duration_days"]


# --------------------------------------------------------------------------- determinism and counts

def test_same_seed_gives_identical_tables(tables):
    lc, obj = simulate_survey(make_config(n_objects=48), seed=7, classes=CLASSES, bands=BANDS)
    pd.testing.assert_frame_equal(lc, tables[0])
    pd.testing.assert_frame_equal(obj, tables[1])


def test_different_seed_differs(tables):
    lc, obj = simulate_survey(make_config(n_objects=48), seed=8, classes=CLASSES, bands=BANDS)
    assert len(lc) != len(tables[0]) or not np.allclose(lc["flux"], tables[0]["flux"])
    assert not np.allclose(obj["ra"], tables[1]["ra"])


def test_result_does_not_depend_on_dict_or_list_order():
    fractions = {"SNIa": 2, "QSO": 1, "Cepheid": 1}
    a = simulate_survey(make_config(n_objects=20, class_fractions=fractions), seed=5,
                        classes=["SNIa", "QSO", "Cepheid"], bands=BANDS)
    reordered = dict(reversed(list(fractions.items())))
    b = simulate_survey(make_config(n_objects=20, class_fractions=reordered), seed=5,
                        classes=["Cepheid", "QSO", "SNIa"], bands=BANDS)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_exact_class_counts():
    config = make_config(n_objects=50, overlap_fraction=0.0,
                         class_fractions={"SNIa": 3, "QSO": 1, "Cepheid": 1})
    _, obj = simulate_survey(config, seed=1, classes=CLASSES, bands=BANDS)
    assert obj["label"].value_counts().to_dict() == {"SNIa": 30, "QSO": 10, "Cepheid": 10}
    assert (obj["group_id"] == obj["object_id"]).all()


def test_largest_remainder_counts():
    assert class_counts(7, {"b": 1, "a": 1, "c": 1}) == {"a": 3, "b": 2, "c": 2}
    assert class_counts(10, {"x": 0.55, "y": 0.45}) == {"x": 6, "y": 4}
    assert class_counts(5, {"x": 1, "y": 0}) == {"x": 5, "y": 0}
    counts = class_counts(1001, {k: w for k, w in zip(CLASSES, [1, 2, 3, 4, 5, 6])})
    assert sum(counts.values()) == 1001


def test_balanced_counts_with_duplicates(tables):
    _, obj = tables
    primaries = obj[~obj["object_id"].str.endswith("_f2")]
    assert primaries["label"].value_counts().to_dict() == {label: 6 for label in CLASSES}
    assert len(primaries) == 48
    # Object numbers are shuffled, so an id does not reveal the class.
    assert primaries["object_id"].str.fullmatch(r"sim\d{6}").all()
    assert primaries.sort_values("object_id")["label"].iloc[:6].nunique() > 1


# --------------------------------------------------------------------------- overlapping fields

def test_overlap_duplicates_share_group_and_truth():
    lc, obj = simulate_survey(make_config(n_objects=60, overlap_fraction=0.5), seed=11,
                              classes=CLASSES, bands=BANDS)
    dup = obj[obj["object_id"].str.endswith("_f2")]
    per_class = class_counts(60, {label: 1.0 for label in CLASSES})
    assert len(dup) == sum(int(np.floor(0.5 * k + 0.5)) for k in per_class.values())
    parents = obj.set_index("object_id").loc[dup["object_id"].str[:-3]]
    # Everything but the per-realisation detection count is shared.
    truth = ["label", "group_id", "ra", "dec", "redshift", *(c for c in TRUTH_COLUMNS if c != "truth_n_detections")]
    pd.testing.assert_frame_equal(dup[truth].reset_index(drop=True), parents[truth].reset_index(drop=True))
    assert (dup["group_id"] == dup["object_id"].str[:-3]).all()
    singles = obj[~obj["object_id"].isin(dup["object_id"].str[:-3]) & ~obj["object_id"].isin(dup["object_id"])]
    assert (singles["group_id"] == singles["object_id"]).all()
    # Own cadence realisation: the duplicate is not observed at the parent's times.
    oid = dup["object_id"].iloc[0]
    t_dup = lc.loc[lc["object_id"] == oid, "time"].to_numpy()
    t_parent = lc.loc[lc["object_id"] == oid[:-3], "time"].to_numpy()
    assert len(np.intersect1d(t_dup, t_parent)) == 0


def test_qso_duplicates_see_the_same_variability():
    survey = {"lim_mag_median": 25.0, "lim_mag_scatter": 0.0}
    lc, obj = simulate_survey(make_config(n_objects=30, survey=survey, overlap_fraction=0.5), seed=2,
                              classes=["QSO"], bands=["r"])
    # Luminous quasars vary little (MacLeod et al. 2010); test those whose variability dominates the noise.
    strong = obj["object_id"].str.endswith("_f2") & (obj["truth_sf_inf_mag"] > 0.1)
    assert strong.sum() >= 3
    for oid in obj.loc[strong, "object_id"]:
        a = lc[lc["object_id"] == oid[:-3]]
        b = lc[lc["object_id"] == oid]
        # Interpolate the parent's light curve at the duplicate's times (DRW is smooth on
        # 1-day scales compared with its ~1 yr amplitude timescale).
        inside = (b["time"] > a["time"].min()) & (b["time"] < a["time"].max())
        interp = np.interp(b.loc[inside, "time"], a["time"], a["mag"])
        assert np.corrcoef(interp, b.loc[inside, "mag"])[0, 1] > 0.8


# --------------------------------------------------------------------------- cadence

def test_seasonal_gap_and_visibility():
    survey = {"duration_days": 730.0, "season_length_days": 180.0}
    lc, obj = simulate_survey(make_config(n_objects=18, survey=survey), seed=4, classes=CLASSES, bands=BANDS)
    merged = lc.merge(obj[["object_id", "truth_season_start_mjd"]], on="object_id")
    visible = is_visible(merged["time"].to_numpy(), merged["truth_season_start_mjd"].to_numpy(),
                         SurveyConfig(**{**SURVEY, **survey}))
    assert visible.all()
    largest_gap = lc.groupby("object_id")["time"].apply(lambda t: np.diff(t.to_numpy()).max())
    assert (largest_gap > 365 - 180 - 10).all()


def test_cadence_is_irregular_and_bands_interleave(tables):
    lc, _ = tables
    r = lc[lc["band"] == "r"]
    gaps = r.groupby("object_id")["time"].diff().dropna()
    assert 2.0 < gaps[gaps < 30].median() < 5.0
    assert gaps[gaps < 30].std() > 0.5
    # Observing times scatter within the night around ~08 UTC (Palomar midnight).
    frac = lc["time"] % 1.0
    assert frac.std() > 1.0 / 24 and frac.between(0.1, 0.6).all()
    # g and r are (almost) never taken at the same time.
    per_obj = lc.groupby(["object_id", "time"]).size()
    assert (per_obj > 1).mean() < 0.01


def test_cadence_field_spread_varies_the_revisit_interval_per_object():
    """With a spread, each object's field has its own cadence (log-uniform around cadence_days);
    without one every object shares it."""
    survey = {**SURVEY, "weather_loss_fraction": 0.0}
    per_object = {}
    for spread in (0.0, 1.0):
        lc, _ = simulate_survey(make_config(n_objects=64, survey={**survey, "cadence_field_spread": spread}),
                                seed=2, classes=["RRLyrae"], bands=["r"])
        per_object[spread] = lc.groupby("object_id")["time"].apply(lambda t: np.median(np.diff(t.to_numpy())))
    assert per_object[0.0].std() < 0.3
    assert per_object[1.0].std() > 1.0
    assert per_object[1.0].min() < 2.5 and per_object[1.0].max() > 4.5
    assert 2.0 < per_object[1.0].median() < 4.5


def test_weather_removes_nights():
    clear = simulate_survey(make_config(n_objects=12, survey={"weather_loss_fraction": 0.0}), seed=9,
                            classes=CLASSES, bands=BANDS)[0]
    cloudy = simulate_survey(make_config(n_objects=12, survey={"weather_loss_fraction": 0.6}), seed=9,
                             classes=CLASSES, bands=BANDS)[0]
    assert len(cloudy) < 0.6 * len(clear)


# --------------------------------------------------------------------------- noise

def test_faint_objects_have_larger_relative_errors(tables):
    lc, obj = tables
    variables = obj[obj["label"].isin(["QSO", "Cepheid", "RRLyrae"])]
    rel = (lc["flux_err"] / lc["flux"].abs()).groupby(lc["object_id"]).median()
    rel = rel.reindex(variables["object_id"]).to_numpy()
    mag = variables["truth_mean_mag_r"].to_numpy()
    assert np.corrcoef(mag, np.log(rel))[0, 1] > 0.7
    assert np.median(rel[mag < 18.5]) < np.median(rel[mag > 19.8])


def test_noise_model_limits():
    lim = np.full(3, 20.5)
    f_lim = 10 ** (-0.4 * (20.5 - 23.9))
    err = flux_error(np.array([0.0, f_lim, 100 * f_lim]), lim)
    assert err[0] == pytest.approx(f_lim / 5)           # sky noise only
    assert err[1] / f_lim == pytest.approx(0.2, rel=0.05)  # SNR ~5 at the limit
    assert 0.01 <= err[2] / (100 * f_lim) < 0.02        # bright: calibration floor + Poisson


# --------------------------------------------------------------------------- class physics

def test_cepheid_period_recovered_by_lomb_scargle():
    timeseries = pytest.importorskip("astropy.timeseries")
    lc, obj = simulate_survey(make_config(n_objects=12, overlap_fraction=0.0), seed=21,
                              classes=["Cepheid"], bands=BANDS)
    hits = 0
    for row in obj.itertuples():
        r = lc[(lc["object_id"] == row.object_id) & (lc["band"] == "r")]
        frequency, power = timeseries.LombScargle(r["time"], r["flux"], r["flux_err"]).autopower(
            minimum_frequency=1 / 100.0, maximum_frequency=1 / 1.5, samples_per_peak=10)
        best = 1.0 / frequency[np.argmax(power)]
        hits += abs(best / row.truth_period_days - 1.0) < 0.03
    assert hits >= 9  # a few may lose to a seasonal alias
    assert obj["truth_period_days"].between(1.0, 60.0).all()  # population.period_ranges_days


def test_periodic_amplitudes_and_periods():
    _, obj = simulate_survey(make_config(n_objects=40, overlap_fraction=0.0), seed=3,
                             classes=["Cepheid", "RRLyrae"], bands=BANDS)
    rr = obj[obj["label"] == "RRLyrae"]
    assert rr["truth_period_days"].between(0.2, 1.0).all()
    for label, (lo, hi) in {"Cepheid": (0.15, 1.0), "RRLyrae": (0.1, 1.3)}.items():
        sub = obj[obj["label"] == label]
        amp_g = 2 * (sub["truth_mean_mag_g"] - sub["truth_peak_mag_g"])
        assert sub["truth_amplitude_mag"].between(lo, hi).all()
        assert (amp_g > sub["truth_amplitude_mag"]).all()  # larger in g


def test_damped_random_walk_statistics():
    rng = np.random.default_rng(0)
    n_src, tau, sigma = 4000, 50.0, 0.15
    times = np.array([0.0, 10.0, 60.0, 61.0])
    source = np.repeat(np.arange(n_src), len(times))
    time = np.tile(times, n_src)
    x = damped_random_walk(rng, source, time, np.full(n_src, tau), np.full(n_src, sigma)).reshape(n_src, -1)
    assert x.std(axis=0) == pytest.approx(np.full(len(times), sigma), rel=0.05)
    for i, j in [(0, 1), (1, 2), (2, 3)]:
        corr = np.corrcoef(x[:, i], x[:, j])[0, 1]
        assert corr == pytest.approx(np.exp(-(times[j] - times[i]) / tau), abs=0.04)


def test_qso_structure_function_matches_drw():
    survey = {"lim_mag_median": 23.0, "lim_mag_scatter": 0.1, "duration_days": 730.0}
    lc, obj = simulate_survey(make_config(n_objects=60, survey=survey, overlap_fraction=0.0), seed=13,
                              classes=["QSO"], bands=["r"])
    ratios = []
    for row in obj.itertuples():
        d = lc[lc["object_id"] == row.object_id]
        t, m, e = d["time"].to_numpy(), d["mag"].to_numpy(), d["mag_err"].to_numpy()
        i, j = np.triu_indices(len(t), k=1)
        lag = t[j] - t[i]
        model = row.truth_sf_inf_mag**2 * (1.0 - np.exp(-lag / row.truth_tau_days))
        observed = (m[j] - m[i]) ** 2 - e[i] ** 2 - e[j] ** 2  # remove the photometric noise
        ratios.append(observed.mean() / model.mean())
    # Per-object estimates are skewed (few independent tau-long stretches), so the
    # median sits below 1; the mean over objects is the unbiased check.
    assert 0.5 < np.median(ratios) < 1.2
    assert 0.7 < np.mean(ratios) < 1.4


def test_supernova_peak_sampled_and_detected():
    survey = {"lim_mag_median": 21.0}
    lc, obj = simulate_survey(make_config(n_objects=45, survey=survey), seed=17, classes=SN_CLASSES, bands=BANDS)
    start, end = SURVEY["mjd_start"], SURVEY["mjd_start"] + SURVEY["duration_days"]
    assert obj["truth_peak_mjd"].between(start, end).all()
    # Magnitude-limited selection: nothing fainter than the deepest epochs (+0.5 mag margin).
    brightest = obj[["truth_peak_mag_g", "truth_peak_mag_r"]].min(axis=1)
    assert (brightest < 21.0 + 3 * SURVEY["lim_mag_scatter"] + 0.5).all()
    primary = ~obj["object_id"].str.endswith("_f2")  # selection is on the primary realisation
    assert (obj.loc[primary, "truth_n_detections"] >= 3).all()
    per_object = lc.groupby("object_id")["detected"].sum().reindex(obj["object_id"], fill_value=0)
    np.testing.assert_array_equal(per_object.to_numpy(), obj["truth_n_detections"].to_numpy())
    merged = lc.merge(obj[["object_id", "truth_peak_mjd"]], on="object_id")
    near = merged[(merged["time"] - merged["truth_peak_mjd"]).abs() < 15]
    detected = near.groupby("object_id")["detected"].sum().reindex(obj["object_id"], fill_value=0)
    assert (detected >= 2).mean() > 0.9
    # Far from the event the flux is consistent with zero.
    far = merged[(merged["time"] - merged["truth_peak_mjd"]) < -80]
    assert abs((far["flux"] / far["flux_err"]).mean()) < 0.2


def test_supernova_colour_evolution():
    _, obj = simulate_survey(make_config(n_objects=150, overlap_fraction=0.0), seed=5, classes=SN_CLASSES,
                             bands=BANDS)
    near = obj[obj["redshift"] < 0.1]  # Villar types carry no K-correction: compare nearby events
    colour = (near["truth_peak_mag_g"] - near["truth_peak_mag_r"]).groupby(near["label"]).median()
    assert colour["SNIa"] < colour["SNII"] < colour["SNIbc"]  # Ia bluest, Ibc reddest at peak
    assert obj.groupby("label")["truth_plateau_days"].median()["SNII"] > 30


# --------------------------------------------------------------------------- configuration errors

BAD_CONFIGS = [
    ("n_objects", {"n_objects": 0}),
    ("n_objects", {"n_objects": -5}),
    ("n_objects", {"n_objects": 2.5}),
    ("class_fractions", {"class_fractions": {"SNIa": 1, "Blazar": 1}}),
    ("class_fractions.SNIa", {"class_fractions": {"SNIa": -1, "QSO": 2}}),
    ("class_fractions", {"class_fractions": {"SNIa": 0, "QSO": 0}}),
    ("overlap_fraction", {"overlap_fraction": 1.0}),
    ("overlap_fraction", {"overlap_fraction": -0.1}),
    ("survey.cadence_days", {"survey": {**SURVEY, "cadence_days": 0}}),
    ("survey.season_length_days", {"survey": {**SURVEY, "season_length_days": 0}}),
    ("survey.season_length_days", {"survey": {**SURVEY, "season_length_days": 400}}),
    ("survey.weather_loss_fraction", {"survey": {**SURVEY, "weather_loss_fraction": 1.0}}),
    ("survey.weather_loss_fraction", {"survey": {**SURVEY, "weather_loss_fraction": -0.2}}),
    ("survey.lim_mag_scatter", {"survey": {**SURVEY, "lim_mag_scatter": -0.1}}),
    ("survey.calibration_floor", {"survey": {**SURVEY, "calibration_floor": -0.01}}),
    ("survey.duration_days", {"survey": {**SURVEY, "duration_days": 0}}),
    ("survey.cadence_day", {"survey": {**SURVEY, "cadence_day": 3}}),
    ("survey.cadence_field_spread", {"survey": {**SURVEY, "cadence_field_spread": -0.5}}),
    ("survey.cadence_field_spread", {"survey": {**SURVEY, "cadence_field_spread": 4.0}}),
    ("survey.lim_mag_median", {"survey": {**SURVEY, "lim_mag_median": "deep"}}),
]


@pytest.mark.parametrize("key, change", BAD_CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(BAD_CONFIGS)])
def test_bad_config_raises_naming_key(key, change):
    config = copy.deepcopy(make_config(n_objects=6))
    config.update(change)
    with pytest.raises(SimulationConfigError, match=key.replace(".", r"\.")):
        simulate_survey(config, seed=0, classes=CLASSES, bands=BANDS)


@pytest.mark.parametrize("classes, bands, key", [
    (["SNIa", "Blazar"], BANDS, "classes"),
    (["SNIa", "SNIa"], BANDS, "classes"),
    ([], BANDS, "classes"),
    (CLASSES, ["g", "i"], "bands"),
    (CLASSES, [], "bands"),
])
def test_bad_classes_or_bands_raise(classes, bands, key):
    with pytest.raises(SimulationConfigError, match=key):
        simulate_survey(make_config(n_objects=6), seed=0, classes=classes, bands=bands)


def test_bad_seed_raises():
    with pytest.raises(SimulationConfigError, match="seed"):
        simulate_survey(make_config(n_objects=6), seed=-1, classes=CLASSES, bands=BANDS)


def test_config_error_is_value_error():
    assert issubclass(SimulationConfigError, ValueError)


def test_too_sparse_cadence_raises():
    survey = {"cadence_days": 200.0, "season_length_days": 10.0, "weather_loss_fraction": 0.9}
    with pytest.raises(SimulationConfigError, match="cadence_days"):
        simulate_survey(make_config(n_objects=6, survey=survey), seed=0, classes=CLASSES, bands=BANDS)
