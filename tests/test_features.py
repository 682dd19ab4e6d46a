"""Light-curve features, the balanced-random-forest baseline and its stage (fast, tiny data)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_under, make_tables

from deeprubin.core import io
from deeprubin.core.config import ConfigError
from deeprubin.tasks.transients.evaluation.compare import comparison_table, paired_bootstrap
from deeprubin.tasks.transients.features import FEATURE_SETS, FeatureConfig, extract_features, feature_names
from deeprubin.tasks.transients.features.extract import feature_rows
from deeprubin.tasks.transients.features.baseline import BRFParams, train_and_score, tune_grid

BANDS = ["g", "r"]
#: Small, fast options for the tests: coarse periodogram grid, quick Bazin fits.
FAST = dict(periodogram_log2_n_freq=10, sn_fit_algorithm="lmsder", n_jobs=1)


def _toy_object(oid: str, kind: str, rng: np.random.Generator, n: int = 30) -> pd.DataFrame:
    """One object in both bands: periodic (sinusoid), transient (fast rise, slow decline) or flat."""
    rows = []
    for b, band in enumerate(BANDS):
        t = np.sort(rng.uniform(58000, 58200, n)) + 0.01 * b
        if kind == "periodic":
            flux = 200 + 120 * np.sin(2 * np.pi * t / rng.uniform(4, 8) + rng.uniform(0, 6))
        elif kind == "transient":
            t0 = rng.uniform(58060, 58120)
            x = t - t0
            flux = 20 + 400 * np.exp(-np.clip(x, 0, None) / 25) / (1 + np.exp(-x / 3))
        else:
            flux = np.full(n, rng.uniform(80, 300))
        flux = flux * (1.3 if band == "g" else 1.0) + rng.normal(0, 5, n)
        rows.append(pd.DataFrame({"object_id": oid, "time": t, "band": band, "flux": flux,
                                  "flux_err": np.full(n, 5.0)}))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def toy_problem():
    """Three separable classes, 24 objects each, with a train/val/test manifest."""
    rng = np.random.default_rng(7)
    kinds = ["periodic", "transient", "flat"]
    frames, rows = [], []
    for i in range(72):
        kind = kinds[i % 3]
        oid = f"toy{i:03d}"
        frames.append(_toy_object(oid, kind, rng))
        split = ("train", "train", "train", "train", "val", "test")[(i // 3) % 6]
        rows.append({"object_id": oid, "group_id": oid, "label": kind, "split": split})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows), kinds


# --- extraction ------------------------------------------------------------------------------

def test_features_shape_names_and_determinism():
    lc, objects = make_tables(n_objects=4, n_per_band=30)
    config = FeatureConfig(**FAST)
    first = extract_features(lc, BANDS, config)
    second = extract_features(lc.sample(frac=1.0, random_state=3), BANDS, config)  # row order must not matter
    names = feature_names(BANDS, "full")
    assert list(first.columns) == ["object_id"] + names
    assert len(set(names)) == len(names)
    assert first["object_id"].tolist() == sorted(objects["object_id"])
    pd.testing.assert_frame_equal(first, second)
    values = first[names].to_numpy(dtype=float)
    assert not np.isinf(values).any()
    assert first["n_obs_g"].tolist() == [30] * len(objects)
    for name in ("mag_amplitude_g", "flux_chi2_r", "periodogram_period_0_g", "bazin_fit_rise_time_r",
                 "color_g_r_mean", "color_g_r_peak"):
        assert name in names and first[name].notna().all(), name


def test_feature_sets_are_nested_and_named():
    basic, periodic, full = (feature_names(BANDS, s) for s in ("basic", "periodic", "full"))
    assert set(basic) < set(periodic) < set(full)
    assert not any(n.startswith(("periodogram", "bazin")) for n in basic)
    assert all(n.endswith(("_g", "_r")) or n.startswith("color_g_r") for n in full)
    # Absolute flux scale and absolute time are not features.
    dropped = ("bazin_fit_amplitude", "bazin_fit_baseline", "bazin_fit_reference_time")
    assert not {f"{n}_{b}" for n in dropped for b in BANDS} & set(full)
    assert sorted(FEATURE_SETS) == ["basic", "full", "periodic"]


def test_sparse_bands_give_nan_not_a_crash():
    rng = np.random.default_rng(1)
    full = _toy_object("full", "periodic", rng)
    one_g = full.assign(object_id="one_g").drop(full.index[(full["band"] == "g")][1:])   # 1 point in g
    two_r = full.assign(object_id="two_r").drop(full.index[(full["band"] == "r")][2:])   # 2 points in r
    no_r = full.assign(object_id="no_r").loc[lambda d: d["band"] == "g"]               # no r at all
    flat = full.assign(object_id="flat", flux=100.0)                                      # constant
    lc = pd.concat([full, one_g, two_r, no_r, flat], ignore_index=True)
    for min_points in (2, 5):
        feats = extract_features(lc, BANDS, FeatureConfig(min_points=min_points, **FAST)).set_index("object_id")
        assert not np.isinf(feats.to_numpy(dtype=float)).any()
        assert feats.loc["one_g", "n_obs_g"] == 1 and feats.loc["no_r", "n_obs_r"] == 0
        assert np.isnan(feats.loc["one_g", "mag_mean_g"]) and np.isnan(feats.loc["one_g", "periodogram_period_0_g"])
        assert np.isnan(feats.loc["no_r", "flux_chi2_r"]) and np.isnan(feats.loc["no_r", "color_g_r_mean"])
        assert np.isnan(feats.loc["no_r", "det_fraction_r"])
        assert feats.loc["full", ["mag_mean_g", "flux_chi2_r", "periodogram_period_0_r"]].notna().all()
        # Constant magnitudes: indices normalised by the scatter are NaN, not inf.
        assert np.isnan(feats.loc["flat", "mag_eta_g"])
    assert np.isnan(feats.loc["two_r", "mag_mean_r"])  # min_points=5: 2 points are not enough
    two = extract_features(lc, BANDS, FeatureConfig(min_points=2, **FAST)).set_index("object_id")
    assert np.isfinite(two.loc["two_r", "mag_mean_r"]) and np.isnan(two.loc["two_r", "mag_kurtosis_r"])


def test_magnitudes_and_detections_derived_when_absent(tables):
    lc, _ = tables
    with_mag = lc.copy()
    with_mag["mag"] = 23.9 - 2.5 * np.log10(lc["flux"].clip(lower=1e-9))
    with_mag["mag_err"] = 1.0857 * lc["flux_err"] / lc["flux"].abs()
    with_mag["detected"] = False  # the table's own flag wins over the S/N threshold
    derived = extract_features(lc, BANDS, FeatureConfig(set="basic", **FAST))
    given = extract_features(with_mag, BANDS, FeatureConfig(set="basic", **FAST))
    assert (derived["n_det_g"] > 0).all() and (given["n_det_g"] == 0).all()


def test_detections_photometry_sees_only_detected_rows():
    rng = np.random.default_rng(5)
    lc = pd.concat([_toy_object("a", "transient", rng), _toy_object("b", "periodic", rng)], ignore_index=True)
    lc["detected"] = lc["flux"] / lc["flux_err"] >= 40   # faint epochs: forced photometry, not detected
    assert 0 < lc["detected"].sum() < len(lc)
    config = FeatureConfig(photometry="detections", **FAST)
    on_detections = extract_features(lc, BANDS, config)
    # The same as extracting all photometry of a table holding only the detected rows ...
    only = extract_features(lc.loc[lc["detected"]], BANDS, FeatureConfig(**FAST))
    pd.testing.assert_frame_equal(on_detections, only)
    # ... and different from using every row: counts and flux statistics see the faint epochs.
    every = extract_features(lc, BANDS, FeatureConfig(**FAST))
    assert (on_detections["n_obs_g"] == on_detections["n_det_g"]).all()
    assert (every["n_obs_g"] > every["n_det_g"]).all()
    assert not np.allclose(on_detections["flux_chi2_r"], every["flux_chi2_r"])
    # Without a `detected` column the alert-style threshold decides, as for the GP.
    no_flag = lc.drop(columns="detected")
    rows = feature_rows(no_flag, config)
    assert (rows["flux"] / rows["flux_err"] >= 5).all() and len(rows) < len(no_flag)
    assert feature_rows(no_flag, FeatureConfig(**FAST)) is no_flag


def test_absolute_magnitudes_from_the_objects_redshift():
    from deeprubin.sources.simulate.physics import distance_modulus
    from deeprubin.tasks.transients.features.extract import feature_columns

    rng = np.random.default_rng(11)
    lc = pd.concat([_toy_object(o, "transient", rng) for o in ("a", "b", "c", "d", "e")], ignore_index=True)
    objects = pd.DataFrame({"object_id": ["a", "b", "c", "d", "zz"], "redshift": [0.05, np.nan, -0.1, 0.3, 0.2]})
    config = FeatureConfig(absolute_magnitudes=True, **FAST)
    with_abs = extract_features(lc, BANDS, config, objects)
    plain = extract_features(lc, BANDS, FeatureConfig(**FAST))
    assert list(with_abs.columns) == ["object_id", *feature_columns(BANDS, config)] \
        == ["object_id", *feature_names(BANDS), "abs_peak_mag_g", "abs_peak_mag_r"]
    pd.testing.assert_frame_equal(with_abs[plain.columns], plain)       # the set's columns are unchanged
    table = with_abs.set_index("object_id")
    for band in BANDS:
        expected = table.loc[["a", "d"], f"mag_peak_{band}"].to_numpy() - distance_modulus(np.array([0.05, 0.3]))
        np.testing.assert_allclose(table.loc[["a", "d"], f"abs_peak_mag_{band}"], expected)
        # no redshift, a non-physical one, or no row in the objects table: missing, not a guess
        assert table.loc[["b", "c", "e"], f"abs_peak_mag_{band}"].isna().all()
    # no objects table at all (an alert stream without host redshifts): missing
    assert extract_features(lc, BANDS, config)[["abs_peak_mag_g", "abs_peak_mag_r"]].isna().all().all()
    twice = pd.concat([objects, objects.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="objects: object_id 'a' appears more than once"):
        extract_features(lc, BANDS, config, twice)
    with pytest.raises(ConfigError, match=r"preprocess\.features\.absolute_magnitudes"):
        FeatureConfig(absolute_magnitudes="yes")


def test_hide_redshifts_hides_a_seeded_share_of_the_training_objects_only():
    from deeprubin.tasks.transients.features.extract import hide_redshifts

    n = 2000
    ids = [f"o{i}" for i in range(n)]
    features = pd.DataFrame({"object_id": ids, "mag_peak_r": np.linspace(15, 20, n),
                             "abs_peak_mag_g": -19.0, "abs_peak_mag_r": -19.5})
    train = ids[: n // 2]
    hidden = hide_redshifts(features, train, 0.5, seed=3)
    gone = hidden["abs_peak_mag_r"].isna().to_numpy()
    assert 0.45 < gone[: n // 2].mean() < 0.55          # about the share asked for, of the training rows
    assert not gone[n // 2:].any()                       # never a validation/test row
    assert (hidden["abs_peak_mag_g"].isna().to_numpy() == gone).all()   # every band of an object together
    pd.testing.assert_series_equal(hidden["mag_peak_r"], features["mag_peak_r"])   # other columns untouched
    assert features["abs_peak_mag_r"].notna().all()      # the input is not modified
    # the draw depends on the seed and the id, not on the row order
    shuffled = hide_redshifts(features.iloc[::-1], train, 0.5, seed=3).sort_index()
    pd.testing.assert_frame_equal(shuffled, hidden)
    assert not (hide_redshifts(features, train, 0.5, seed=4)["abs_peak_mag_r"].isna().to_numpy() == gone).all()
    pd.testing.assert_frame_equal(hide_redshifts(features, train, 0.0, seed=3), features)
    with pytest.raises(ConfigError, match=r"preprocess\.features\.redshift_hidden_fraction"):
        FeatureConfig(redshift_hidden_fraction=1.0)
    with pytest.raises(ConfigError, match=r"preprocess\.features\.redshift_hidden_fraction"):
        FeatureConfig(redshift_hidden_fraction="half")


def test_photometry_option_error_names_the_key():
    with pytest.raises(ConfigError, match=r"preprocess\.features\.photometry"):
        FeatureConfig(photometry="forced")


# --- the forest ------------------------------------------------------------------------------

def test_baseline_learns_a_separable_problem(toy_problem):
    lc, manifest, kinds = toy_problem
    features = extract_features(lc, BANDS, FeatureConfig(**FAST))
    params = BRFParams(n_estimators=60, n_jobs=1)
    result = train_and_score(features, manifest, kinds, params, seed=0)
    assert result.metrics["n_test"] == (manifest["split"] == "test").sum()
    assert result.metrics["macro_f1"] >= 0.8, result.metrics  # chance: 1/3
    assert set(result.metrics) == {"accuracy", "macro_f1", "n_test", "per_class"}
    assert result.val_metrics is not None and result.val_metrics["n_test"] == (manifest["split"] == "val").sum()
    assert list(result.importances["feature"]) != [] and result.importances["importance"].is_monotonic_decreasing
    assert result.predictions[[f"prob_{k}" for k in kinds]].sum(axis=1).round(6).eq(1).all()
    again = train_and_score(features, manifest, kinds, params, seed=0)
    assert again.metrics == result.metrics
    pd.testing.assert_frame_equal(again.importances, result.importances)


def test_single_class_training_set_gives_a_constant_predictor(toy_problem):
    """A real set with one class (e.g. BTS SNe Ia only) still reports instead of crashing."""
    lc, manifest, kinds = toy_problem
    features = extract_features(lc, BANDS, FeatureConfig(set="basic", **FAST))
    one = manifest.assign(label=kinds[0])
    result = train_and_score(features, one, kinds, BRFParams(n_estimators=5, n_jobs=1), seed=0)
    assert result.metrics["accuracy"] == 1.0
    assert (result.importances["importance"] == 0).all()


def test_baseline_missing_feature_row_is_named(toy_problem):
    lc, manifest, kinds = toy_problem
    features = extract_features(lc.loc[lc["object_id"] != "toy005"], BANDS, FeatureConfig(set="basic", **FAST))
    with pytest.raises(ValueError, match="toy005"):
        train_and_score(features, manifest, kinds, BRFParams(n_estimators=5, n_jobs=1), seed=0)


def test_tuning_keeps_the_best_val_point_and_breaks_ties_by_grid_order(toy_problem):
    lc, manifest, kinds = toy_problem
    features = extract_features(lc, BANDS, FeatureConfig(set="basic", **FAST))
    grid = {"min_samples_leaf": [1, 40], "max_features": [1, "sqrt"]}
    params = BRFParams(n_estimators=20, n_jobs=1)
    result = train_and_score(features, manifest, kinds, params, seed=0, grid=grid)
    table = result.tuning
    assert len(table) == 4 and list(table.columns) == ["min_samples_leaf", "max_features", "val_macro_f1",
                                                       "val_accuracy", "chosen"]
    assert table[["min_samples_leaf", "max_features"]].astype(str).values.tolist() == \
        [["1", "1"], ["1", "sqrt"], ["40", "1"], ["40", "sqrt"]]
    best = table["val_macro_f1"].max()
    first_best = int(np.flatnonzero(table["val_macro_f1"].to_numpy() == best)[0])
    assert table["chosen"].tolist() == [k == first_best for k in range(4)]
    chosen = table.iloc[first_best]
    assert (result.params.min_samples_leaf, str(result.params.max_features)) == \
        (chosen["min_samples_leaf"], str(chosen["max_features"]))
    assert result.val_metrics["macro_f1"] == best   # the val scores reported are the chosen forest's
    # a leaf of 40 objects on ~40 training objects cannot separate three kinds: tuning must not pick it
    assert result.params.min_samples_leaf == 1
    again = train_and_score(features, manifest, kinds, params, seed=0, grid=grid)
    pd.testing.assert_frame_equal(again.tuning, table)


def test_tuning_without_a_val_split_is_an_error(toy_problem):
    lc, manifest, kinds = toy_problem
    features = extract_features(lc, BANDS, FeatureConfig(set="basic", **FAST))
    no_val = manifest.assign(split=manifest["split"].replace({"val": "train"}))
    with pytest.raises(ValueError, match="baseline.tune: the manifest has no 'val' split"):
        train_and_score(features, no_val, kinds, BRFParams(n_estimators=5, n_jobs=1), seed=0,
                        grid={"min_samples_leaf": [1, 2]})
    result = train_and_score(features, no_val, kinds, BRFParams(n_estimators=5, n_jobs=1), seed=0)
    assert result.val_metrics is None and result.tuning.empty   # untuned: the settings as given


@pytest.mark.parametrize("grid, message", [
    ("sqrt", r"'baseline\.tune' must be a mapping"),
    ({"n_jobs": [1, 2]}, r"'baseline\.tune\.n_jobs' is not a tunable forest setting"),
    ({"colour": [1]}, r"'baseline\.tune\.colour' is not a tunable"),
    ({"max_depth": 3}, r"'baseline\.tune\.max_depth' must be a non-empty list"),
    ({"max_depth": []}, r"'baseline\.tune\.max_depth' must be a non-empty list"),
    ({"sampling_strategy": ["all", "some"]}, r"'baseline\.tune\.sampling_strategy'.*got 'some'"),
])
def test_tune_grid_errors_name_the_key(grid, message):
    with pytest.raises(ConfigError, match=message):
        tune_grid(grid)


def test_comparison_table():
    deep = {"accuracy": 0.9, "macro_f1": 0.85, "n_test": 10,
            "per_class": {"A": {"f1": 0.8}, "B": {"f1": 0.9}}}
    base = {"accuracy": 0.7, "macro_f1": 0.65, "n_test": 10,
            "per_class": {"A": {"f1": 0.6}, "B": {"f1": 0.7}}}
    table = comparison_table(deep, base, "tcn")
    assert list(table.columns) == ["model", "accuracy", "macro_f1", "n_test", "f1_A", "f1_B"]
    assert table["model"].iloc[0] == "tcn" and table["f1_B"].tolist() == [0.9, 0.7]
    with pytest.raises(ValueError, match="test split"):
        comparison_table(deep, {**base, "n_test": 11}, "tcn")


def test_paired_bootstrap_scores_both_models_and_their_difference():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    classes = ["A", "B", "C"]
    y = rng.integers(0, 3, 120)
    good = np.where(rng.random(120) < 0.85, y, rng.integers(0, 3, 120))
    poor = np.where(rng.random(120) < 0.55, y, rng.integers(0, 3, 120))
    groups = [f"g{i // 2}" for i in range(120)]            # pairs of objects share a group
    table = paired_bootstrap(y, {"deep": good, "forest": poor}, groups, classes, n_boot=300, seed=1)
    t = table.set_index(["model", "score"])
    assert t.loc[("deep", "macro_f1"), "value"] == pytest.approx(f1_score(y, good, average="macro"))
    assert t.loc[("forest", "accuracy"), "value"] == pytest.approx(accuracy_score(y, poor))
    assert t.loc[("deep", "f1_B"), "value"] == pytest.approx(f1_score(y, good, labels=[1], average="macro"))
    diff = t.loc[("deep minus forest", "macro_f1")]
    assert diff["value"] == pytest.approx(t.loc[("deep", "macro_f1"), "value"] - t.loc[("forest", "macro_f1"), "value"])
    assert 0 < diff["low"] < diff["value"] < diff["high"]
    for (model, score), row in t.iterrows():
        assert row["low"] <= row["value"] + 1e-12 and row["value"] <= row["high"] + 1e-12, (model, score)
    # paired: the same predictions differ by exactly 0 in every replicate
    same = paired_bootstrap(y, {"a": good, "b": good.copy()}, groups, classes, n_boot=50, seed=1).set_index(
        ["model", "score"])
    assert same.loc[("a minus b", "macro_f1"), ["value", "low", "high"]].tolist() == [0.0, 0.0, 0.0]
    again = paired_bootstrap(y, {"deep": good, "forest": poor}, groups, classes, n_boot=300, seed=1)
    pd.testing.assert_frame_equal(again, table)
    with pytest.raises(ValueError, match="two models"):
        paired_bootstrap(y, {"deep": good}, groups, classes, n_boot=5, seed=1)
    with pytest.raises(ValueError, match="one entry per object"):
        paired_bootstrap(y, {"deep": good, "forest": poor[:-1]}, groups, classes, n_boot=5, seed=1)


def test_baseline_predictions_must_cover_the_test_split(tmp_path):
    from deeprubin.tasks.transients.steps.evaluate import _baseline_predictions

    path = tmp_path / "predictions.csv"
    pd.DataFrame({"object_id": ["a", "b"], "label": ["X", "Y"], "predicted": ["Y", "X"]}).to_csv(path, index=False)
    assert _baseline_predictions(path, np.array(["b", "a"]), ["X", "Y"]).tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"predictions\.csv: the baseline was not scored on this test split"):
        _baseline_predictions(path, np.array(["a", "c"]), ["X", "Y"])
    with pytest.raises(ValueError, match=r"column 'predicted' has class\(es\) \['Y'\]"):
        _baseline_predictions(path, np.array(["a", "b"]), ["X", "Z"])


# --- the stage -------------------------------------------------------------------------------

def tiny_cfg(tmp_path: Path, *overrides: str):
    return compose_under(tmp_path, ["experiment=tiny", "source.n_objects=60", "baseline.n_estimators=50",
                                    "baseline.n_jobs=1", "preprocess.features.n_jobs=1",
                                    "preprocess.features.periodogram_log2_n_freq=10",
                                    "preprocess.features.sn_fit_algorithm=lmsder", *overrides])


def _bts_like_folder(cfg, folder: Path) -> Path:
    """Four simulated SNe Ia written as the BTS files are: detections only, ``time,mag,magerr,band``, ZTF r as R."""
    lc = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    folder.mkdir()
    for oid in objects.loc[objects["label"] == "SNIa", "object_id"].astype(str)[:4]:
        rows = lc.loc[(lc["object_id"].astype(str) == oid) & (lc["flux"] / lc["flux_err"] >= 5)]
        pd.DataFrame({"time": rows["time"], "mag": 23.9 - 2.5 * np.log10(rows["flux"]),
                      "magerr": 1.0857 * rows["flux_err"] / rows["flux"],
                      "band": rows["band"].map({"g": "g", "r": "R"})}).to_csv(folder / f"{oid}.csv", index=False)
    return folder


def test_baseline_stage_in_process(tmp_path):
    from deeprubin.stages.baseline import run_baseline
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split

    cfg = tiny_cfg(tmp_path)
    run_ingest(cfg)
    run_preprocess(cfg)   # the features come from the preprocess step, beside the GP grid
    run_split(cfg)
    bts = _bts_like_folder(cfg, tmp_path / "bts")   # a real sample in the BTS layout; the ALeRCE one absent
    cfg.real_sky.datasets.bts_snia.source.path = str(bts)
    cfg.real_sky.datasets.bts_snia.source.metadata = None
    cfg.real_sky.datasets.alerce_30sne.source.path = str(tmp_path / "no_alerce")
    metrics = run_baseline(cfg)
    out = Path(cfg.paths.reports) / "baseline"
    # the forest on the real samples, beside the deep model's real_sky stage
    real = json.loads((out / "real_sky.json").read_text())
    assert real["datasets"]["alerce_30sne"]["skipped"] is True and "no_alerce" in real["datasets"]["alerce_30sne"]["reason"]
    entry, target = real["datasets"]["bts_snia"], real["target"]
    predicted = pd.read_csv(out / "real_sky" / "predictions_bts_snia.csv")
    assert entry["skipped"] is False and entry["n_objects"] == len(predicted) == 4
    assert target["dataset"] == "bts_snia" and target["fraction"] == pytest.approx((predicted["predicted"] == "SNIa").mean())
    assert set(predicted["label"]) == {"SNIa"}
    summary = pd.read_csv(out / "real_sky" / "summary.csv").set_index("dataset")
    assert summary.loc["bts_snia", "n_objects"] == 4 and bool(summary.loc["alerce_30sne", "skipped"])
    written = json.loads((out / "metrics.json").read_text())
    assert {k: v for k, v in written.items() if k not in ("forest", "tuned_on")} == metrics
    assert set(metrics) == {"accuracy", "macro_f1", "n_test", "per_class"}
    # the forest's settings were chosen on val over the config's grid; every point is in tuning.csv
    tuning = pd.read_csv(out / "tuning.csv")
    grid = cfg.baseline.tune
    assert written["tuned_on"] == "val" and len(tuning) == int(np.prod([len(v) for v in grid.values()]))
    chosen = tuning.loc[tuning["chosen"]].iloc[0]
    assert tuning["chosen"].sum() == 1 and chosen["val_macro_f1"] == tuning["val_macro_f1"].max()
    assert written["forest"]["sampling_strategy"] == chosen["sampling_strategy"]
    assert json.loads((out / "val_metrics.json").read_text())["macro_f1"] == pytest.approx(chosen["val_macro_f1"])
    assert set(metrics["per_class"]) == set(cfg.task.classes)
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    assert metrics["n_test"] == (manifest["split"] == "test").sum()
    features_path = Path(cfg.paths.processed) / "features.parquet"
    features = io.read_parquet(features_path)
    assert len(features) == len(manifest)
    from deeprubin.tasks.transients.features.extract import feature_columns
    from deeprubin.tasks.transients.preprocess.inputs import feature_config
    assert list(features.columns) == ["object_id"] + feature_columns(list(cfg.task.band_wavelengths),
                                                                      feature_config(cfg))
    importances = pd.read_csv(out / "feature_importances.csv")
    assert len(importances) == features.shape[1] - 1
    assert "SNIa" in (out / "classification_report.txt").read_text()
    for name in ("confusion_normalised.png", "feature_importances.png"):
        assert (out / "figures" / name).stat().st_size > 10_000, name
    assert json.loads((out / "val_metrics.json").read_text())["n_test"] == (manifest["split"] == "val").sum()
    assert not list(Path(tmp_path).glob("**/.*.tmp"))
    # features written with another feature set (a stale file): named, before any fit
    before = (out / "metrics.json").read_bytes()
    io.write_parquet(features.drop(columns=features.columns[-1]), features_path)
    with pytest.raises(ValueError, match=r"features\.parquet: columns are not those of feature set 'full'"):
        run_baseline(cfg)
    assert (out / "metrics.json").read_bytes() == before


def test_preprocess_and_baseline_with_absolute_magnitudes(tmp_path):
    from deeprubin.stages.baseline import run_baseline
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split

    cfg = tiny_cfg(tmp_path, "preprocess.features.absolute_magnitudes=true", "baseline.tune={}")
    cfg.real_sky.datasets.bts_snia.source.path = str(tmp_path / "no_bts")
    cfg.real_sky.datasets.alerce_30sne.source.path = str(tmp_path / "no_alerce")
    run_ingest(cfg)
    run_preprocess(cfg)
    run_split(cfg)
    features = io.read_parquet(Path(cfg.paths.processed) / "features.parquet")
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet").set_index("object_id")
    assert list(features.columns[-2:]) == ["abs_peak_mag_g", "abs_peak_mag_r"]
    z = objects["redshift"].reindex(features["object_id"]).to_numpy()
    has_peak = features["mag_peak_r"].notna().to_numpy()
    # extragalactic objects (a redshift) get a value, Milky Way ones (none) stay missing
    assert features["abs_peak_mag_r"].notna().to_numpy()[np.isfinite(z) & has_peak].all()
    assert features["abs_peak_mag_r"].isna().to_numpy()[~np.isfinite(z)].all()
    run_baseline(cfg)
    importances = pd.read_csv(Path(cfg.paths.reports) / "baseline" / "feature_importances.csv")
    assert {"abs_peak_mag_g", "abs_peak_mag_r"} <= set(importances["feature"])


@pytest.mark.parametrize("override, key", [
    ("baseline.n_estimators=0", "baseline.n_estimators"),
    ("baseline.n_estimators=-3", "baseline.n_estimators"),
    ("preprocess.features.set=everything", "preprocess.features.set"),
    ("baseline.sampling_strategy=some", "baseline.sampling_strategy"),
    ("baseline.min_samples_leaf=0", "baseline.min_samples_leaf"),
    ("preprocess.features.min_points=1", "preprocess.features.min_points"),
    ("+preprocess.features.colour=true", "preprocess.features.colour"),
    ("+baseline.tune.n_jobs=[1]", "baseline.tune.n_jobs"),
    ("baseline.tune.max_features=[cube]", "baseline.tune.max_features"),
])
def test_baseline_config_errors_name_the_key(tmp_path, override, key):
    from deeprubin.stages.baseline import run_baseline

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_baseline(tiny_cfg(tmp_path, override))  # fails before reading any data


def test_extractor_failure_on_one_light_curve_is_contained():
    """A Rust panic (light-curve's periodogram on one point) costs that light curve only."""
    import light_curve as licu

    from deeprubin.tasks.transients.features.extract import _evaluate

    t = np.linspace(0.0, 50.0, 20)
    good = (t, np.sin(t), np.full(20, 0.1))
    bad = (np.array([1.0]), np.array([1.0]), np.array([0.1]))
    out = _evaluate(licu.Periodogram(peaks=1), [good, bad, good], n_jobs=1, what="periodogram")
    assert np.isfinite(out[[0, 2]]).all() and np.isnan(out[1]).all()
