"""GP augmentation of the training split (deeprubin.tasks.transients.preprocess.augment and the augment stage)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_under

from deeprubin.core import io
from deeprubin.core.config import ConfigError, compose_task
from deeprubin.core.split import make_split
from deeprubin.tasks.transients.preprocess.augment import (AugmentSettings, ParentGP, augment_parent,
                                                           augment_training_set, dimming_factor, parse_settings)
from deeprubin.sources.simulate import simulate_survey

CLASSES = ["SNIa", "SNII", "SNIbc", "QSO", "Cepheid", "RRLyrae"]
BANDS = {"g": 4746.48, "r": 6366.38}
GP_KWARGS = dict(window_before_days=30.0, window_after_days=70.0, n_grid=20, fit_margin_days=20.0, max_points=256,
                 n_iter=20, learning_rate=0.1, batch_size=256, tol=1e-4, wavelength_length_scale=6000.0,
                 device="cpu", seed=0, progress=False)
BASE = dict(enabled=True, seed=3, mode="copies", copies={}, max_copies_per_object=10,
            redshift_classes=["SNIa", "SNII", "SNIbc", "QSO"], redshift_scale=[0.8, 1.5], time_shift_days=10.0,
            time_jitter_days=0.5, drop_fraction=[0.1, 0.5], min_points=5)


def settings(**overrides) -> AugmentSettings:
    return parse_settings({**BASE, **overrides}, CLASSES)


@pytest.fixture(scope="module")
def survey():
    """A small simulated survey (with overlapping-field duplicates sharing a group) and its split."""
    lightcurves, objects = simulate_survey({"n_objects": 48, "overlap_fraction": 0.25}, seed=5, classes=CLASSES,
                                           bands=list(BANDS))
    manifest = make_split(objects, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=5)
    return lightcurves, objects, manifest


def run(survey, s: AugmentSettings):
    lightcurves, objects, manifest = survey
    return augment_training_set(lightcurves, objects, manifest, s, band_wavelengths=BANDS, gp_kwargs=GP_KWARGS)


@pytest.fixture(scope="module")
def copies_result(survey):
    return run(survey, settings(copies={"SNIa": 2, "QSO": 1, "Cepheid": 3}))


def test_copies_inherit_group_and_stay_in_train(survey, copies_result):
    _, objects, manifest = survey
    aug_lc, aug_obj, _ = copies_result
    assert len(aug_obj) > 0 and set(aug_lc["object_id"]) == set(aug_obj["object_id"])
    parents = objects.set_index("object_id")
    assert (aug_obj["group_id"].to_numpy() == parents.loc[aug_obj["parent_id"], "group_id"].to_numpy()).all()
    assert (aug_obj["label"].to_numpy() == parents.loc[aug_obj["parent_id"], "label"].to_numpy()).all()
    assert (aug_obj["split"] == "train").all()
    assert aug_obj["object_id"].str.fullmatch(r".+_aug\d{3}").all()
    assert (aug_obj["object_id"].str.rsplit("_aug", n=1).str[0] == aug_obj["parent_id"]).all()
    split_of = manifest.set_index("object_id")["split"]
    assert (aug_obj["parent_id"].map(split_of) == "train").all()
    held_out_groups = set(manifest.loc[manifest["split"] != "train", "group_id"])
    assert not set(aug_obj["group_id"]) & held_out_groups
    # Canonical light-curve table: finite, positive errors, sorted per object.
    assert np.isfinite(aug_lc[["time", "flux", "flux_err"]].to_numpy()).all() and (aug_lc["flux_err"] > 0).all()
    assert (aug_lc.groupby("object_id")["time"].apply(lambda t: t.is_monotonic_increasing)).all()
    assert (aug_lc.groupby("object_id").size() >= BASE["min_points"]).all()


def test_per_class_counts_follow_copies(survey, copies_result):
    _, _, manifest = survey
    _, aug_obj, report = copies_result
    made = aug_obj["label"].value_counts().to_dict()
    train = manifest[manifest["split"] == "train"]["label"].value_counts()
    for label, per_object in {"SNIa": 2, "QSO": 1, "Cepheid": 3}.items():
        assert report["per_class"][label]["copies_requested"] == per_object * report["per_class"][label][
            "n_usable_parents"]
        assert made.get(label, 0) == report["per_class"][label]["copies_made"]
        assert report["per_class"][label]["copies_made"] == per_object * train[label]  # every parent usable here
    assert not set(made) - {"SNIa", "QSO", "Cepheid"}


def test_balance_tops_up_to_largest_class(survey):
    lightcurves, objects, manifest = survey
    # Make the training set unbalanced: keep a third of the SNIa training objects.
    train_ia = manifest[(manifest["split"] == "train") & (manifest["label"] == "SNIa")]["object_id"]
    drop = set(train_ia.iloc[len(train_ia) // 3:])
    unbalanced = manifest[~manifest["object_id"].isin(drop)]
    _, aug_obj, report = augment_training_set(lightcurves, objects, unbalanced, settings(mode="balance"),
                                              band_wavelengths=BANDS, gp_kwargs=GP_KWARGS)
    train = unbalanced[unbalanced["split"] == "train"]["label"].value_counts()
    after = train.add(aug_obj["label"].value_counts(), fill_value=0)
    assert (after == train.max()).all(), after
    assert report["per_class"]["SNIa"]["copies_made"] == train.max() - train["SNIa"]
    capped = augment_training_set(lightcurves, objects, unbalanced, settings(mode="balance", max_copies_per_object=1),
                                  band_wavelengths=BANDS, gp_kwargs=GP_KWARGS)[1]
    assert (capped.groupby("parent_id").size() <= 1).all()


def test_deterministic_with_seed(survey, copies_result):
    again = run(survey, settings(copies={"SNIa": 2, "QSO": 1, "Cepheid": 3}))
    pd.testing.assert_frame_equal(again[0], copies_result[0])
    pd.testing.assert_frame_equal(again[1], copies_result[1])
    other = run(survey, settings(copies={"SNIa": 2, "QSO": 1, "Cepheid": 3}, seed=4))[0]
    assert not (len(other) == len(copies_result[0]) and np.allclose(other["flux"], copies_result[0]["flux"]))


def bump_parent(z_peak_days=10.0) -> ParentGP:
    t = np.linspace(-40.0, 80.0, 121)
    band = np.tile([0, 1], 61)[:121]
    y = np.exp(-0.5 * ((t - z_peak_days) / 8.0) ** 2)
    wavelength = np.array(list(BANDS.values()))[band]
    return ParentGP(object_id="p", t=t, wavelength=wavelength, band=band, y=y, y_err=np.full(121, 1e-3),
                    t_ref=60000.0, flux_scale=100.0, amplitude=0.5, length_scale_time=8.0,
                    length_scale_wavelength=6000.0)


def test_redshifting_dilates_time_and_dims():
    parent = bump_parent(10.0)
    s = settings(redshift_scale=[3.0, 3.0], time_shift_days=0.0, time_jitter_days=0.0, drop_fraction=[0.0, 0.0])
    lcs, meta, skipped = augment_parent(parent, 1, s, redshift=0.1, apply_redshift=True,
                                        band_names=list(BANDS), band_wavelengths=np.array(list(BANDS.values())))
    assert skipped == 0
    stretch = (1 + 0.3) / (1 + 0.1)
    assert meta[0]["redshift"] == pytest.approx(0.3)
    assert meta[0]["aug_redshift_factor"] == pytest.approx(stretch)
    dim = dimming_factor(0.1, 0.3)
    assert meta[0]["aug_dimming"] == pytest.approx(dim) and dim < 0.2
    lc = lcs[0]
    peak_time = lc["time"][np.argmax(lc["flux"])] - parent.t_ref
    assert peak_time == pytest.approx(10.0 * stretch, abs=1.5)
    assert lc["flux"].max() == pytest.approx(dim * parent.flux_scale, rel=0.1)
    # Same parent, no redshift: peak where the parent's is, undimmed.
    lcs, meta, _ = augment_parent(parent, 1, s, redshift=0.1, apply_redshift=False,
                                  band_names=list(BANDS), band_wavelengths=np.array(list(BANDS.values())))
    assert meta[0]["aug_redshift_factor"] == 1.0 and meta[0]["redshift"] == 0.1
    assert lcs[0]["time"][np.argmax(lcs[0]["flux"])] - parent.t_ref == pytest.approx(10.0, abs=1.5)
    # A galactic object (no redshift) is never redshifted.
    _, meta, _ = augment_parent(parent, 1, s, redshift=math.nan, apply_redshift=True,
                                band_names=list(BANDS), band_wavelengths=np.array(list(BANDS.values())))
    assert meta[0]["aug_redshift_factor"] == 1.0


def test_time_shift_moves_the_event():
    parent = bump_parent(10.0)
    s = settings(time_shift_days=15.0, time_jitter_days=0.0, drop_fraction=[0.0, 0.0])
    _, meta, _ = augment_parent(parent, 8, s, redshift=math.nan, apply_redshift=False,
                                band_names=list(BANDS), band_wavelengths=np.array(list(BANDS.values())))
    shifts = np.array([m["aug_time_shift_days"] for m in meta])
    assert np.all(np.abs(shifts) <= 15.0) and np.ptp(shifts) > 5.0


def test_truncation_cuts_copies_after_their_first_detection():
    parent = bump_parent(10.0)
    whole = settings(time_shift_days=0.0, time_jitter_days=0.0, drop_fraction=[0.0, 0.0])
    cut = settings(time_shift_days=0.0, time_jitter_days=0.0, drop_fraction=[0.0, 0.0], truncate_fraction=1.0,
                   truncate_days=[2.0, 30.0])
    kw = dict(redshift=math.nan, apply_redshift=False, band_names=list(BANDS),
              band_wavelengths=np.array(list(BANDS.values())))
    full_lcs, full_meta, _ = augment_parent(parent, 6, whole, **kw)
    lcs, meta, _ = augment_parent(parent, 6, cut, **kw)
    for full, lc, m in zip(full_lcs, lcs, meta):
        d = m["aug_truncate_days"]
        assert 2.0 <= d <= 30.0
        first = lc["time"][np.flatnonzero(lc["detected"])[0]]
        assert first == full["time"][np.flatnonzero(full["detected"])[0]]
        # everything up to first detection + d, nothing after (the min_points floor aside)
        assert lc["time"].max() <= max(first + d, full["time"][cut.min_points - 1])
        assert len(lc["time"]) == int(np.sum(full["time"] <= max(first + d, full["time"][cut.min_points - 1])))
        # the kept points are the whole copy's points: truncation draws from a stream of its own
        np.testing.assert_array_equal(lc["flux"], full["flux"][:len(lc["flux"])])
    assert np.ptp([m["aug_truncate_days"] for m in meta]) > 3.0
    assert all(math.isnan(m["aug_truncate_days"]) for m in full_meta)


def test_truncation_mask_keeps_min_points_and_skips_undetected():
    from deeprubin.tasks.transients.preprocess.augment import truncation_mask

    time = np.arange(10.0)
    detected = time >= 3
    assert truncation_mask(time, detected, 2.0, 3).tolist() == [t <= 5 for t in time]
    assert truncation_mask(time, detected, 0.5, 7).sum() == 7        # the floor of min_points rows
    assert truncation_mask(time, np.zeros(10, bool), 2.0, 3) is None  # never detected: stays whole


def test_truncated_fraction_and_report(survey):
    aug_lc, aug_obj, report = run(survey, settings(copies_all=2, truncate_fraction=0.5, truncate_days=[1.0, 50.0]))
    truncated = aug_obj["aug_truncate_days"].notna()
    assert 0.25 < truncated.mean() < 0.75 and report["n_truncated"] == int(truncated.sum())
    # the untruncated copies are those made without truncation
    plain_lc, plain_obj, _ = run(survey, settings(copies_all=2))
    ids = aug_obj.loc[~truncated, "object_id"]
    pd.testing.assert_frame_equal(aug_lc[aug_lc["object_id"].isin(ids)].reset_index(drop=True),
                                  plain_lc[plain_lc["object_id"].isin(ids)].reset_index(drop=True))
    n_cut = aug_lc[aug_lc["object_id"].isin(aug_obj.loc[truncated, "object_id"])].groupby("object_id").size()
    n_full = plain_lc.groupby("object_id").size().reindex(n_cut.index)
    assert (n_cut <= n_full).all() and (n_cut < n_full).mean() > 0.5


@pytest.mark.parametrize("override, key", [
    ({"copies": {"SNIa": -1}}, "augment.copies.SNIa"),
    ({"copies": {"Nova": 2}}, "augment.copies.Nova"),
    ({"copies": {"SNIa": 1.5}}, "augment.copies.SNIa"),
    ({"copies_all": -3}, "augment.copies_all"),
    ({"copies": 4}, "augment.copies"),
    ({"mode": "oversample"}, "augment.mode"),
    ({"redshift_classes": ["SNIa", "Kilonova"]}, "augment.redshift_classes"),
    ({"redshift_scale": [1.5, 0.8]}, "augment.redshift_scale"),
    ({"drop_fraction": [0.2, 1.0]}, "augment.drop_fraction"),
    ({"max_copies_per_object": -2}, "augment.max_copies_per_object"),
    ({"min_points": 0}, "augment.min_points"),
    ({"truncate_fraction": 1.5}, "augment.truncate_fraction"),
    ({"truncate_fraction": -0.1}, "augment.truncate_fraction"),
    ({"truncate_fraction": 0.5, "truncate_days": [0.0, 10.0]}, "augment.truncate_days"),
    ({"truncate_fraction": 0.5, "truncate_days": [20.0, 10.0]}, "augment.truncate_days"),
    ({"truncate_fraction": 0.5, "truncate_days": None}, "augment.truncate_days"),
])
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        settings(**override)


def test_copies_all_is_every_class_of_the_task():
    """`copies_all: 4` (augment=gp_all) is 4 for each class the task has, whatever they are, so a
    data set with other classes needs no class list in the augment config; `copies` overrides it."""
    assert settings(mode="copies", copies_all=4).copies == {c: 4 for c in CLASSES}
    assert settings(mode="copies", copies_all=4, copies={"SNIa": 1}).copies == {**{c: 4 for c in CLASSES}, "SNIa": 1}
    other = parse_settings({**compose_task("transients")["augment"], "redshift_classes": []}, ["A", "B"])
    assert other.copies == {"A": 4, "B": 4}
    assert compose_task("transients")["augment"]["copies_all"] == 4


def test_disabled_settings():
    assert not parse_settings({"name": "none", "enabled": False}, CLASSES).enabled
    assert not parse_settings(None, CLASSES).enabled
    assert compose_task("transients", ["augment=none"])["augment"]["enabled"] is False


def test_default_augments_every_class_of_the_task():
    """The pipeline default (augment=gp_all) gives copies to every transient class."""
    cfg = compose_task("transients")
    settings_ = parse_settings(cfg["augment"], cfg["task"]["classes"])
    assert settings_.enabled and settings_.mode == "copies"
    assert set(settings_.copies) == set(cfg["task"]["classes"]) and min(settings_.copies.values()) >= 1


def stage_cfg(tmp_path: Path, *overrides: str):
    return compose_under(tmp_path, ["experiment=tiny", "source.n_objects=48", *overrides])


def test_disabled_stage_writes_empty_outputs(tmp_path, monkeypatch):
    from deeprubin.tasks.transients.preprocess.gp import load_gp_grid
    from deeprubin.stages.augment import run_augment
    from deeprubin.tasks.transients.training.augmented import augmented_train_arrays

    monkeypatch.chdir(tmp_path)
    cfg = stage_cfg(tmp_path, "augment=none")  # no raw data needed
    report = run_augment(cfg)
    out = Path(cfg.paths.augmented)
    assert report["enabled"] is False and report["n_objects"] == 0
    lc = io.read_parquet(out / "lightcurves.parquet")
    obj = io.read_parquet(out / "objects.parquet")
    assert len(lc) == 0 and {"object_id", "time", "band", "flux", "flux_err"} <= set(lc.columns)
    assert len(obj) == 0 and {"object_id", "label", "group_id", "parent_id", "split"} <= set(obj.columns)
    grid = load_gp_grid(out / "gp_grid.npz", out / "gp_fits.parquet")
    assert grid.mean.shape == (0, 2, cfg.preprocess.n_grid) and len(grid.diagnostics) == 0
    arrays = augmented_train_arrays(cfg, list(cfg.task.classes), pd.DataFrame(columns=["object_id", "split"]))
    assert arrays.x.shape == (0, 4, cfg.preprocess.n_grid) and len(arrays.y) == 0
    assert (out / "augment_report.json").exists()


def test_stage_then_train_uses_copies_for_training_only(tmp_path, monkeypatch):
    from deeprubin.stages.augment import run_augment
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split
    from deeprubin.stages.train import run_train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = stage_cfg(tmp_path, "augment=gp", "augment.mode=copies", "+augment.copies.SNIbc=2",
                    "trainer.max_epochs=1")
    run_ingest(cfg)
    run_preprocess(cfg)
    run_split(cfg)
    report = run_augment(cfg)
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    n_train_ibc = int(((manifest["split"] == "train") & (manifest["label"] == "SNIbc")).sum())
    assert report["n_objects"] == report["per_class"]["SNIbc"]["copies_made"] == 2 * n_train_ibc > 0
    summary = run_train(cfg)
    assert summary["n_train"] == int((manifest["split"] == "train").sum()) + report["n_objects"]
    assert summary["n_val"] == int((manifest["split"] == "val").sum())
    aug = io.read_parquet(Path(cfg.paths.augmented) / "objects.parquet")
    assert not set(aug["object_id"]) & set(manifest["object_id"])
    assert set(aug["group_id"]) <= set(manifest.loc[manifest["split"] == "train", "group_id"])


def test_luminosity_distance_matches_astropy():
    from astropy.cosmology import FlatLambdaCDM

    from deeprubin.tasks.transients.preprocess.augment import luminosity_distance_mpc

    z = np.array([0.001, 0.05, 0.3, 1.4, 3.5])
    reference = FlatLambdaCDM(H0=70.0, Om0=0.3, Tcmb0=0.0).luminosity_distance(z).value
    np.testing.assert_allclose(luminosity_distance_mpc(z), reference, rtol=1e-9)
