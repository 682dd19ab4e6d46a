"""Unit tests of the transits task: transit model, time systems, labels, split, aggregation,
BLS, sampling, model shapes and bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from deeprubin.core.config import ConfigError, compose_task
from deeprubin.tasks.transits.aggregate import aggregate_scores, star_scores
from deeprubin.tasks.transits.ephemeris import EphemerisError, check_ephemerides, in_transit
from deeprubin.tasks.transits.metrics import threshold_at_fpr
from deeprubin.tasks.transits.preprocess import SkipLightCurve, clean_lightcurve
from deeprubin.tasks.transits.segments import label_segments, normalise, window_starts
from deeprubin.tasks.transits.simulate.transit import (eclipse_flux, geometry_from_duration, occultation_flux,
                                                        transit_flux)
from deeprubin.sources.missions import TimeSystemError, bjd_to_mission, check_time_system, mission_to_bjd


@pytest.fixture(scope="module")
def tcfg():
    return compose_task("transits", ["transits=tiny"])


# ---- transit model -------------------------------------------------------------------------

@pytest.mark.parametrize("k", [0.05, 0.1, 0.2])
def test_transit_depth_without_limb_darkening_is_radius_ratio_squared(k):
    """Central transit, u = 0: the flat bottom is exactly 1 - (R_p/R_*)^2 (Mandel & Agol 2002)."""
    t = np.linspace(-0.05, 0.05, 201)
    flux = transit_flux(t, 0.0, 5.0, k, 15.0, 0.0, (0.0, 0.0), 0.0, 1)
    assert flux.min() == pytest.approx(1 - k ** 2, rel=1e-6)
    assert transit_flux(np.array([1.0]), 0.0, 5.0, k, 15.0, 0.0, (0.0, 0.0), 0.0, 1)[0] == 1.0


def test_occultation_is_fp_deep_at_phase_half_and_absent_at_transit():
    """A hot Jupiter's occultation (HAT-P-7 b-like: k 0.077, a/R* 4.15, A_g 0.2): -fp at phase
    0.5, 0 at the transit and between; its duration close to the transit's (circular orbit)."""
    k, a_rs, period = 0.077, 4.15, 2.2
    fp = 0.2 * (k / a_rs) ** 2
    t = np.array([0.0, 0.25 * period, 0.5 * period])
    occ = occultation_flux(t, 0.0, period, k, a_rs, 0.5, fp, 0.0, 1)
    assert occ == pytest.approx([0.0, 0.0, -fp], abs=1e-12)
    fine = np.linspace(-0.3, 0.3, 6001)
    transit_in = fine[transit_flux(fine, 0.0, period, k, a_rs, 0.5, (0.0, 0.0), 0.0, 1) < 1]
    occ_in = fine[occultation_flux(fine + 0.5 * period, 0.0, period, k, a_rs, 0.5, fp, 0.0, 1) < 0]
    assert np.ptp(occ_in) == pytest.approx(np.ptp(transit_in), abs=2e-3)


def test_simulated_planets_carry_their_occultation(tcfg):
    from deeprubin.tasks.transits.simulate.survey import simulate_survey

    eph = simulate_survey(tcfg.source, seed=3).ephemerides
    planets = eph[eph["kind"] == "planet"]
    albedo = planets["occultation_depth"] / (planets["rp_rs"] / planets["a_rs"]) ** 2
    lo, hi = tcfg.source.planet_albedo
    assert len(planets) and albedo.between(lo * (1 - 1e-9), hi * (1 + 1e-9)).all()
    ebs = eph[eph["kind"] == "eb"]
    assert (ebs["occultation_depth"] < ebs["depth"]).all()


def test_limb_darkening_deepens_centre_and_duration_is_kept():
    t = np.array([0.0])
    plain = transit_flux(t, 0.0, 5.0, 0.1, 15.0, 0.0, (0.0, 0.0), 0.0, 1)[0]
    dark = transit_flux(t, 0.0, 5.0, 0.1, 15.0, 0.0, (0.4, 0.26), 0.0, 1)[0]
    assert dark < plain  # limb darkening makes the centre of the disc brighter, so deeper
    a_rs, b = geometry_from_duration(5.0, 0.15, 0.1, 12.0)
    fine = np.linspace(-0.2, 0.2, 40001)
    flux = transit_flux(fine, 0.0, 5.0, 0.1, a_rs, b, (0.4, 0.26), 0.0, 1)
    in_t = fine[flux < 1]
    assert in_t.max() - in_t.min() == pytest.approx(0.15, abs=2e-3)


def test_eclipsing_binary_has_primary_and_secondary_of_requested_depths():
    t = np.linspace(0, 4, 20001)
    flux = eclipse_flux(t, 1.0, 2.0, 0.05, 0.4, 6.0, False, 0.0, 1)
    assert 1 - flux[np.argmin(np.abs(t - 1.0))] == pytest.approx(0.05, rel=1e-3)
    assert 1 - flux[np.argmin(np.abs(t - 2.0))] == pytest.approx(0.02, rel=1e-3)


# ---- time systems --------------------------------------------------------------------------

def test_time_system_conversions():
    assert float(mission_to_bjd(np.array([100.0]), "Kepler").jd[0]) == pytest.approx(2454933.0)
    assert float(mission_to_bjd(np.array([1325.5]), "TESS").jd[0]) == pytest.approx(2458325.5)
    assert bjd_to_mission(2458325.5, "TESS") == pytest.approx(1325.5)
    assert bjd_to_mission(2456813.418, "K2") == pytest.approx(1980.418)
    t = np.array([131.5123456789])
    assert bjd_to_mission(mission_to_bjd(t, "Kepler"), "Kepler")[0] == pytest.approx(t[0], abs=1e-9)


def test_time_system_mismatch_is_an_error():
    check_time_system(np.array([1326.0, 1350.0]), "TESS", "x")
    with pytest.raises(TimeSystemError, match=r"lc\.fits: field 'time'.*TESS range"):
        check_time_system(np.array([131.0, 160.0]), "TESS", "lc.fits")  # BKJD given as TESS
    with pytest.raises(TimeSystemError, match="Kepler range"):
        check_time_system(np.array([2454964.0]), "Kepler", "lc.fits")  # BJD, not BKJD
    with pytest.raises(TimeSystemError, match="unknown mission"):
        check_time_system(np.array([1.0]), "Hubble", "lc.fits")


# ---- ephemerides and segment labels ---------------------------------------------------------

def _eph(**kw):
    row = {"target_id": "T1", "object_id": "T1-Kepler", "kind": "planet", "period": 3.0,
           "t0_bjd": 2454833.0 + 201.0, "duration": 0.2, "snr_transit": 10.0}
    row.update(kw)
    return pd.DataFrame([row])


@pytest.mark.parametrize("field,value,match", [
    ("period", 0.0, "field 'period' must be > 0"),
    ("period", -2.0, "field 'period' must be > 0"),
    ("duration", 5.0, "field 'duration' .* not shorter than the period"),
    ("duration", 0.0, "field 'duration' must be > 0"),
])
def test_bad_ephemerides_are_errors_naming_target_and_field(field, value, match):
    with pytest.raises(EphemerisError, match=rf"eph\.parquet: target 'T1': {match}"):
        check_ephemerides(_eph(**{field: value}), "eph.parquet")


def test_segment_labels_from_ephemerides():
    cadence = 0.02
    time = 200.0 + np.arange(0, 20.0, cadence)  # BKJD; transits at 201, 204, ... (period 3)
    starts = window_starts(time.size, 50, 50)  # 1-day windows
    truth = label_segments(time, starts, 50, _eph(period=3.0, duration=0.2), "Kepler", cadence, 1)
    mid = time[starts[:, None] + np.arange(50)]
    expected = np.array([np.any(np.abs((w - 201.0 + 1.5) % 3.0 - 1.5) < 0.1) for w in mid])
    np.testing.assert_array_equal(truth["label"].to_numpy(), expected.astype(int))
    assert truth["label"].sum() > 0 and (truth["label"] == 0).sum() > 0
    full = truth[truth["n_in_transit"] == 10]  # a whole transit: 0.2 d / 0.02 d cadences
    assert np.allclose(full["snr"], 10.0)  # one full transit -> the per-transit SNR
    # in_transit agrees with the time system: the same ephemeris in TESS time has no transit here
    assert in_transit(time, 3.0, 2454833.0 + 201.0, 0.2, "Kepler").sum() > 0


def test_eclipse_segments_are_negative_but_flagged():
    time = 200.0 + np.arange(0, 10.0, 0.02)
    starts = window_starts(time.size, 100, 100)
    eb = _eph(kind="eb", period=4.0, snr_transit=np.nan)
    truth = label_segments(time, starts, 100, eb, "Kepler", 0.02, 1)
    assert truth["label"].sum() == 0 and truth["has_eclipse"].any()


def test_window_starts_cover_the_end_and_reject_zero_length():
    np.testing.assert_array_equal(window_starts(1000, 256, 256), [0, 256, 512, 744])
    assert window_starts(100, 256, 64).size == 0
    with pytest.raises(ConfigError, match="zero-length"):
        window_starts(100, 0, 10)
    with pytest.raises(ConfigError, match="zero-length"):
        window_starts(100, 10, 0)


def test_normalise_channels():
    rng = np.random.default_rng(0)
    x = 1 + 1e-3 * rng.standard_normal((3, 500))
    x[:, 100:110] -= 0.01
    out = normalise(x, ["robust_z", "relative"], 30.0, 0.01)
    assert out.shape == (3, 2, 500) and out.dtype == np.float32
    assert np.median(out[:, 1, 100:110]) == pytest.approx(-1.0, abs=0.1)  # 1 % dip -> -1
    assert out[:, 0].min() >= -30.0
    with pytest.raises(ConfigError, match="unknown channel"):
        normalise(x, ["flux"], 30.0, 0.01)


# ---- cleaning: bad input -----------------------------------------------------------------------

def _lc(n, cadence=0.02, seed=0):
    rng = np.random.default_rng(seed)
    t = 200.0 + cadence * np.arange(n)
    return t, 1 + 1e-4 * rng.standard_normal(n), np.full(n, 1e-4), np.zeros(n, int)


def test_light_curve_shorter_than_one_window_is_skipped(tcfg):
    t, f, e, q = _lc(tcfg.preprocess.segment_length - 1)
    with pytest.raises(SkipLightCurve, match="fewer than one segment") as info:
        clean_lightcurve(t, f, e, q, tcfg.preprocess, 0.02, "lc 'x'")
    assert info.value.reason == "shorter_than_segment"


def test_all_nan_quarters_are_dropped_and_all_nan_light_curve_skipped(tcfg):
    n = 2 * tcfg.preprocess.segment_length
    t, f, e, q = _lc(n)
    t = np.concatenate([t, t + 60.0])  # a second "quarter" after a gap ...
    f = np.concatenate([f, np.full(n, np.nan)])  # ... that is all NaN
    e, q = np.concatenate([e, e]), np.concatenate([q, q])
    clean = clean_lightcurve(t, f, e, q, tcfg.preprocess, 0.02, "lc 'x'")
    assert clean.counts["nan_chunks_dropped"] == 1 and clean.time.max() < 260
    with pytest.raises(SkipLightCurve) as info:
        clean_lightcurve(t, np.full(t.size, np.nan), e, q, tcfg.preprocess, 0.02, "lc 'x'")
    assert info.value.reason == "all_nan_chunks"


def test_cleaning_masks_quality_and_clips_only_upper_outliers(tcfg):
    t, f, e, q = _lc(3 * tcfg.preprocess.segment_length)
    q[10] = 1024
    f[10] = 0.5  # a flagged bad cadence
    f[200] += 0.01  # a flare-like upper outlier
    f[400:405] -= 0.002  # a transit-like dip must survive
    clean = clean_lightcurve(t, f, e, q, tcfg.preprocess, 0.02, "lc")
    assert clean.counts["quality_flagged"] == 1 and clean.counts["upper_outliers_clipped"] >= 1
    assert t[200] not in clean.time and t[10] not in clean.time
    assert np.all(np.isin(t[400:405], clean.time))
    assert clean.flux[np.isin(clean.time, t[400:405])].mean() < 0.999


def test_preprocess_config_errors(tcfg):
    from deeprubin.tasks.transits.preprocess import check_preprocess_config

    bad = OmegaConf.merge(tcfg.preprocess, {"stride": 0})
    with pytest.raises(ConfigError, match="'stride' must be > 0"):
        check_preprocess_config(bad)


def test_preprocess_tables_counts_skips_and_stops_on_bad_time_system(tcfg):
    from deeprubin.tasks.transits.dataset import preprocess_tables

    n = 2 * tcfg.preprocess.segment_length
    rows = []
    for oid, n_pts in (("A-Kepler", n), ("B-Kepler", 50)):
        t, f, e, q = _lc(n_pts)
        rows.append(pd.DataFrame({"object_id": oid, "time": t, "flux": f, "flux_err": e, "quality": q}))
    lcs = pd.concat(rows, ignore_index=True)
    objects = pd.DataFrame({"object_id": ["A-Kepler", "B-Kepler"], "target_id": ["A", "B"],
                            "mission": "Kepler", "cadence_days": 0.02})
    eph = _eph(object_id="A-Kepler", target_id="A")
    x, segments, flat, report = preprocess_tables(lcs, objects, eph, tcfg.preprocess)
    assert report["skipped"] == {"shorter_than_segment": 1} and report["n_lightcurves_used"] == 1
    assert len(x) == len(segments) > 0 and segments["label"].sum() > 0
    with pytest.raises(TimeSystemError, match="object 'A-Kepler'"):
        preprocess_tables(lcs, objects.assign(mission="TESS"), eph, tcfg.preprocess)
    with pytest.raises(EphemerisError, match="field 'period'"):
        preprocess_tables(lcs, objects, eph.assign(period=-1.0), tcfg.preprocess)


# ---- split, sampling, aggregation, thresholds, BLS, model ---------------------------------------

def test_grouped_split_keeps_a_star_and_its_two_missions_together(tcfg):
    from deeprubin.core.split import make_split
    from deeprubin.tasks.transits.simulate import simulate_survey

    sim = OmegaConf.merge(tcfg.source, {"both_missions_fraction": 0.5, "n_stars": 30})
    survey = simulate_survey(sim, seed=3)
    objects = survey.objects
    assert (objects.groupby("target_id")["mission"].nunique() == 2).sum() >= 5
    manifest = make_split(objects.assign(group_id=objects["target_id"]), {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
    per_star = manifest.merge(objects[["object_id", "target_id"]], on="object_id")
    assert (per_star.groupby("target_id")["split"].nunique() == 1).all()
    assert set(manifest["split"]) == {"train", "val", "test"}


def test_simulation_is_seeded_and_stores_truth(tcfg):
    from deeprubin.tasks.transits.simulate import simulate_survey

    a = simulate_survey(tcfg.source, seed=1)
    b = simulate_survey(tcfg.source, seed=1)
    pd.testing.assert_frame_equal(a.lightcurves, b.lightcurves)
    planets = a.ephemerides[a.ephemerides["kind"] == "planet"]
    assert len(planets) and (planets["snr_transit"] > 0).all() and (planets["n_transits"] >= 1).all()
    check_ephemerides(a.ephemerides, "simulated")
    for row in a.objects.itertuples():
        check_time_system(a.lightcurves.loc[a.lightcurves["object_id"] == row.object_id, "time"].to_numpy(),
                          row.mission, row.object_id)


def test_catalogue_fallback_when_file_absent(tcfg, tmp_path):
    from deeprubin.tasks.transits.simulate.catalog import host_table

    cfg = OmegaConf.merge(tcfg.source, {"catalog": str(tmp_path / "absent.csv")})
    hosts, report = host_table(cfg, 50, np.random.default_rng(0))
    assert report["source"] == "fallback" and len(hosts) == 50
    assert (hosts["duration"] < hosts["period"]).all()


def test_sampling_caps_ratio_and_hard_negatives(tcfg):
    from deeprubin.tasks.transits.sampling import sample_training_segments

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"object_id": np.repeat([f"s{i}" for i in range(10)], 30),
                          "label": (rng.random(300) < 0.2).astype(int), "min_value": rng.normal(-4, 2, 300)})
    cfg = OmegaConf.create({"max_segments_per_star": 20, "neg_pos_ratio": 1.0, "hard_negative_fraction": 1.0})
    rows = sample_training_segments(table, cfg, seed=0)
    chosen = table.iloc[rows]
    assert (chosen.groupby("object_id").size() <= 20).all()
    n_pos = chosen["label"].sum()
    assert (chosen["label"] == 0).sum() == n_pos
    # all negatives hard: the chosen negatives are the deepest of those the cap allowed
    assert chosen.loc[chosen["label"] == 0, "min_value"].mean() < table.loc[table["label"] == 0, "min_value"].mean()
    np.testing.assert_array_equal(rows, sample_training_segments(table, cfg, seed=0))
    with pytest.raises(ConfigError, match="hard_negative_fraction"):
        sample_training_segments(table, OmegaConf.merge(cfg, {"hard_negative_fraction": 2.0}), 0)
    # weak positives (in-segment SNR below min_positive_snr) are left out of training
    snr = np.where(table["label"] == 1, np.linspace(0.5, 20, len(table)), np.nan)
    rows = sample_training_segments(table.assign(snr=snr), OmegaConf.merge(cfg, {"min_positive_snr": 5.0}), 0)
    kept = table.assign(snr=snr).iloc[rows]
    assert kept.loc[kept["label"] == 1, "snr"].min() >= 5.0


def test_aggregation_functions():
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.7])
    assert aggregate_scores(s, "max") == pytest.approx(0.9)
    assert aggregate_scores(s, "mean") == pytest.approx(0.54)
    assert aggregate_scores(s, "topk_mean", k=3) == pytest.approx(0.8)
    assert aggregate_scores(s[:2], "topk_mean", k=3) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="aggregate.method"):
        aggregate_scores(s, "median")
    with pytest.raises(ValueError, match="no segment scores"):
        aggregate_scores(np.array([]), "max")
    seg = pd.DataFrame({"object_id": ["a", "a", "b"], "target_id": ["A", "A", "B"], "mission": ["Kepler"] * 3,
                        "score": [0.2, 0.6, 0.3]})
    stars = star_scores(seg, "max", 3)
    assert stars["star_score"].tolist() == [0.6, 0.3] and stars["num_segments"].tolist() == [2, 1]


def test_threshold_at_fpr():
    neg = np.arange(100) / 100.0
    thr = threshold_at_fpr(neg, 0.01)
    assert (neg > thr).mean() <= 0.01
    assert (neg > threshold_at_fpr(neg, 0.05)).mean() == pytest.approx(0.05)
    with pytest.raises(ValueError, match="no negative"):
        threshold_at_fpr(np.array([]), 0.01)


def test_model_shapes_and_config_errors(tcfg):
    import torch

    from deeprubin.core.models import build_model

    model = build_model(tcfg.model, n_inputs=2, n_classes=1).eval()
    with torch.no_grad():
        out = model(torch.zeros(3, 2, int(tcfg.preprocess.segment_length)))
    assert out.shape == (3, 1)
    with pytest.raises(Exception, match="one logit"):  # hydra wraps the ValueError
        build_model(tcfg.model, n_inputs=2, n_classes=3)
    with pytest.raises(Exception, match="pooling"):
        build_model(OmegaConf.merge(tcfg.model, {"pooling": "median"}), n_inputs=2, n_classes=1)


def test_injection_turns_negatives_into_positives_with_planetary_depths(tcfg):
    import torch

    from deeprubin.tasks.transits.injection import inject_transits, trapezoid

    shape = trapezoid(torch.arange(100.0), torch.tensor([50.0]), 10.0, 2.0)
    assert shape.max() == 1.0 and shape[50] == 1.0 and shape[45] == 0.0 and 0 < shape[46] < 1
    torch.manual_seed(0)
    x = torch.randn(64, 2, 256)
    x[:, 1] *= 0.02  # relative channel: 200 ppm noise with relative_scale 0.01
    y = torch.zeros(64, dtype=torch.long)
    y[:8] = 1
    cfg = OmegaConf.merge(tcfg.trainer.inject, {"probability": 0.5, "max_depth": 0.01})
    xn, yn = inject_transits(x, y, cfg, ["robust_z", "relative"], 0.01, 30.0)
    changed = (xn - x).abs().amax(dim=(1, 2)) > 0
    assert torch.equal(changed, yn.bool() & ~y.bool())  # only negatives, and each is now positive
    assert 10 < int(changed.sum()) < 56
    assert (x[changed, 1] - xn[changed, 1]).amax() <= 1.0 + 1e-5  # depth capped at 1 % -> 1.0
    assert torch.equal(xn[y.bool()], x[y.bool()])


# ---- real data helpers ---------------------------------------------------------------------------

def test_rank_true_segments():
    from deeprubin.tasks.transits.real import rank_true_segments

    table = pd.DataFrame({"label": [1, 0, 1, 0], "score": [0.9, 0.95, 0.2, 0.1]})
    ranks = rank_true_segments(table)
    assert ranks["transit_segment_ranks"] == [2, 3] and ranks["best_transit_rank"] == 2
    assert not ranks["top_segment_has_transit"]
    assert ranks["roc_auc_transit_vs_no_transit"] == pytest.approx(0.5)


def k2_target(fmt="k2_csv", file="k2/EPIC1.csv"):
    return OmegaConf.create({"name": "K2-x", "target_id": "EPIC 1", "mission": "K2", "file": file, "format": fmt})


def test_real_k2_csv_target_is_read_by_the_files_source_binned_and_checked(tcfg, tmp_path):
    """transits_real reads a K2 CSV through the registry's files source (real.sources.k2_csv),
    as ingest would: binned to the target's cadence, errors filled, times checked as BKJD."""
    from deeprubin.tasks.transits.real import RealDataError
    from deeprubin.tasks.transits.source import read_target

    t = 1980.0 + np.arange(0, 5, 1 / 1440.0)  # 1-min cadence, BKJD (K2)
    (tmp_path / "k2").mkdir()
    path = tmp_path / "k2" / "EPIC1.csv"
    pd.DataFrame({"t": t, "f": 1 + 1e-4 * np.random.default_rng(0).standard_normal(t.size)}).to_csv(
        path, header=False, index=False)
    lc = read_target(tcfg, k2_target(), tmp_path, 30.0)
    assert 230 <= lc["time"].size <= 250  # binned to 30 min
    assert np.all(np.isfinite(lc["flux_err"]) & (lc["flux_err"] > 0)) and (lc["quality"] == 0).all()
    pd.DataFrame({"t": t + 2454833.0, "f": 1 + 1e-4 * np.random.default_rng(0).standard_normal(t.size)}).to_csv(
        path, header=False, index=False)  # BJD, not BKJD
    with pytest.raises(TimeSystemError, match=r"object 'EPIC1': field 'time'"):
        read_target(tcfg, k2_target(), tmp_path, 30.0)
    with pytest.raises(RealDataError, match=r"absent\.csv: no such file \(real target K2-x\)"):
        read_target(tcfg, k2_target(file="k2/absent.csv"), tmp_path, 30.0)
    with pytest.raises(RealDataError, match=r"format 'ascii' has no source config in tasks\.transits\.real\.sources"):
        read_target(tcfg, k2_target(fmt="ascii"), tmp_path, 30.0)
    kepler = OmegaConf.merge(k2_target(), {"mission": "Kepler"})
    pd.DataFrame({"t": t, "f": 1 + 1e-4 * np.random.default_rng(0).standard_normal(t.size)}).to_csv(
        path, header=False, index=False)
    with pytest.raises(RealDataError, match=r"K2-x is a Kepler target but the file is K2's"):
        read_target(tcfg, kepler, tmp_path, 30.0)


def test_real_ephemeris_from_catalogue_or_literature(tmp_path):
    from deeprubin.tasks.transits.real import RealDataError, real_ephemeris

    cat = tmp_path / "cat.csv"
    pd.DataFrame({"kepid": [10666592], "koi_tce_plnt_num": [1], "koi_period": [2.204735417],
                  "koi_time0bk": [121.3585417], "duration(days)": [0.16203]}).to_csv(cat, index=False)
    eph = real_ephemeris(OmegaConf.create({"name": "HAT-P-7", "target_id": "KIC 10666592", "mission": "Kepler",
                                           "from_catalog": 10666592}), cat)
    assert eph["period"].iloc[0] == pytest.approx(2.204735417)
    assert eph["t0_bjd"].iloc[0] == pytest.approx(2454954.3585417)
    check_ephemerides(eph, "real")
    lit = real_ephemeris(OmegaConf.create({"name": "K2-3", "target_id": "EPIC 201367065", "mission": "K2",
                                           "period_days": 10.05403, "t0_bjd": 2456813.418, "duration_hours": 2.6}),
                         None)
    assert lit["duration"].iloc[0] == pytest.approx(2.6 / 24)
    with pytest.raises(RealDataError, match="no row with kepid 1"):
        real_ephemeris(OmegaConf.create({"name": "x", "target_id": "x", "mission": "Kepler", "from_catalog": 1}), cat)


def test_split_segments_are_read_once_for_every_step_and_errors_name_the_file(tmp_path):
    """train, calibrate and evaluate read the segments through fit.read_split_segments."""
    from deeprubin.core import io
    from deeprubin.tasks.transits.fit import read_split_segments

    paths = OmegaConf.create({"processed": str(tmp_path / "p"), "splits": str(tmp_path / "s")})
    segments = pd.DataFrame({"segment_id": ["a0", "a1", "b0"], "object_id": ["a", "a", "b"], "label": [0, 1, 0]})
    io.write_npz(tmp_path / "p" / "segments.npz", x=np.zeros((3, 2, 8), dtype=np.float32))
    io.write_parquet(segments, tmp_path / "p" / "segments.parquet")
    io.write_parquet(pd.DataFrame({"object_id": ["a", "b"], "split": ["train", "val"]}),
                     tmp_path / "s" / "manifest.parquet")
    x, parts = read_split_segments(paths, ("train", "val"))
    assert x.shape == (3, 2, 8) and parts["train"]["row"].tolist() == [0, 1] and parts["val"]["row"].tolist() == [2]
    with pytest.raises(ValueError, match=r"manifest\.parquet: no segments in the 'test' split"):
        read_split_segments(paths, ("val", "test"))
    io.write_parquet(segments.iloc[:2], tmp_path / "p" / "segments.parquet")
    with pytest.raises(ValueError, match=r"segments\.parquet has 2 rows but segments\.npz 3; rerun preprocess@transits"):
        read_split_segments(paths, ("train",))
