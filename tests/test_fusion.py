"""The fusion classifier (GP grid + light-curve features + folded views) and its inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fit_one_batch

from deeprubin.core.checkpoint import load_checkpoint, save_checkpoint
from deeprubin.core.models import ModelConfigError, build_model
from deeprubin.core.models.ensemble import DeepEnsemble
from deeprubin.tasks.transients.features.extract import FeatureConfig, feature_names
from deeprubin.tasks.transients.model import FusionClassifier, input_layout, piecewise_linear
from deeprubin.tasks.transients.preprocess.gp import GPGrid
from deeprubin.tasks.transients.training.inputs import (checkpoint_feature_config, fold_views, lomb_scargle_periods,
                                                        model_inputs)

TARGET = "deeprubin.tasks.transients.model.FusionClassifier"
SMALL = dict(grid_length=12, n_features=5, fold_bins=8, fold_periods=[1.0, 2.0], channels=8, n_blocks=2,
             feature_hidden=16, fold_channels=8, head_hidden=16)


def _model(n_classes: int = 3, **overrides) -> FusionClassifier:
    torch.manual_seed(0)
    return build_model({"_target_": TARGET, **SMALL, **overrides}, n_inputs=4, n_classes=n_classes)


def _flat(model: FusionClassifier, n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, model.n_values)).astype(np.float32))


def test_layout_and_shapes():
    model = _model()
    # grid 4 channels x 12 steps, 5 features, fold 2 bands x 2 periods x (mean, occupancy) = 8 channels x 8 bins
    assert model.layout == {"grid": (0, 48), "features": (48, 53), "fold": (53, 117)}
    assert model.n_values == 117
    assert model.eval()(_flat(model, 6)).shape == (6, 3)
    only = _model(branches=["features", "fold"])
    assert only.layout == input_layout(("features", "fold"), 4, 12, 5, 8, 8) == {"features": (0, 5), "fold": (5, 69)}
    assert only.eval()(_flat(only, 2)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"expects flat inputs of shape \(batch, 117\)"):
        model(torch.zeros(2, 4, 12))


@pytest.mark.parametrize("overrides, match", [
    ({"branches": ["grid", "spectra"]}, "'branches' must be distinct names"),
    ({"branches": []}, "'branches' must be distinct names"),
    ({"fold_bins": 0}, "positive integer sizes"),
    ({"fold_periods": [1.0, -2.0]}, "positive fold_periods"),
    ({"dropout": 1.0}, "dropout"),
    ({"feature_encoding": "onehot"}, "'feature_encoding' must be one of"),
    ({"feature_encoding": "ple", "feature_bins": 0}, "positive integer sizes"),
])
def test_bad_settings_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        _model(**overrides)


def test_allow_list_refuses_foreign_targets_and_mappings():
    with pytest.raises(ModelConfigError, match="not an allowed model class"):
        build_model({"_target_": "deeprubin.tasks.transients.model.torch", **SMALL}, n_inputs=4, n_classes=3)
    with pytest.raises(ModelConfigError, match="is a mapping"):
        build_model({"_target_": TARGET, **SMALL, "channels": {"_target_": "os.system"}}, n_inputs=4, n_classes=3)


def test_missing_features_are_masked_and_scaling_ignores_them():
    model = _model()
    x = _flat(model, 40)
    start, stop = model.layout["features"]
    x[:, start] = float("nan")          # a feature missing for every object
    x[::2, start + 1] = float("nan")     # a feature missing for half of them
    x[:, start + 2] = 3.0                # a constant feature
    model.fit_input_scaling(x)
    assert model.feature_center[0] == 0 and model.feature_scale[0] == 1
    expected = torch.nanquantile(x[:, start + 1], 0.5)
    assert torch.isclose(model.feature_center[1], expected)
    assert model.feature_scale[2] == 1 and model.feature_center[2] == 3
    out = model.eval()(x)
    assert torch.isfinite(out).all()
    # the value standing in for a missing feature is irrelevant: NaN and +-inf give the same output
    x_inf = x.clone()
    x_inf[:, start] = float("inf")
    torch.testing.assert_close(model(x_inf), out)
    # ... and the indicator tells missing from a present value at the centre
    x_centre = x.clone()
    x_centre[:, start] = 0.0
    assert not torch.allclose(model(x_centre), out)


def test_overfits_one_batch():
    """Sanity of the whole graph: it can drive the training loss of 16 objects to ~0."""
    model = _model(n_classes=4, dropout=0.0, branch_dropout=0.0)
    x = _flat(model, 16, seed=1)
    y = torch.arange(16) % 4
    model.fit_input_scaling(x)
    fit_one_batch(model, x, y, torch.optim.AdamW(model.parameters(), lr=1e-2))
    assert (model(x).argmax(1) == y).all()
    with torch.no_grad():
        assert float(torch.nn.functional.cross_entropy(model(x), y)) < 0.05


def test_every_branch_reaches_the_output():
    """Fusion: changing only one branch's inputs changes the logits (no branch is disconnected)."""
    model = _model().eval()
    x = _flat(model, 4)
    base = model(x)
    for name, (start, stop) in model.layout.items():
        changed = x.clone()
        changed[:, start:stop] += 1.0
        assert not torch.allclose(model(changed), base), name


def test_branch_dropout_only_in_training():
    model = _model(branch_dropout=0.5)
    x = _flat(model, 8)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, model(x))


def test_scaling_buffers_and_ensemble_survive_the_checkpoint(tmp_path):
    members = [_model(), _model()]
    for k, member in enumerate(members):
        member.fit_input_scaling(_flat(member, 30, seed=k) * (k + 2))
        torch.nn.init.normal_(member.head[-1].weight, generator=torch.Generator().manual_seed(k))
    for model, name in ((members[0], "single.ckpt"), (DeepEnsemble(members), "ensemble.ckpt")):
        path = save_checkpoint(tmp_path / name, model, model_config={"_target_": TARGET, **SMALL}, classes=["a", "b", "c"],
                               bands=["g", "r"], n_inputs=4, config={}, metadata={})
        loaded, _ = load_checkpoint(path)
        x = _flat(members[0], 5, seed=9)
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert not torch.equal(loaded.members[0].feature_scale, loaded.members[1].feature_scale)


# --- inputs ------------------------------------------------------------------------------------

def _sine_lightcurves(periods: dict[str, float], n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for oid, period in periods.items():
        for band, phase0 in (("g", 0.0), ("r", 0.1)):
            t = np.sort(rng.uniform(0, 300, n))
            flux = 100 + 50 * np.sin(2 * np.pi * (t / period + phase0))
            rows.append(pd.DataFrame({"object_id": oid, "time": t, "band": band, "flux": flux, "flux_err": 1.0}))
    return pd.concat(rows, ignore_index=True)


def test_fold_views_recover_the_shape_at_the_true_period():
    lc = _sine_lightcurves({"a": 0.7, "b": 3.3})
    views = fold_views(lc, ["a", "b", "none"], ["g", "r"], np.array([0.7, 3.3, np.nan]), bins=16,
                       multiples=[1.0, 2.0])
    assert views.shape == (3, 8, 16) and views.dtype == np.float32
    for i in range(2):
        mean_g, occupancy_g = views[i, 0], views[i, 2]
        assert occupancy_g.all()                                  # 200 points fill 16 bins
        # a sine folded at its period: one full cycle, so the binned curve spans most of the range
        assert mean_g.max() - mean_g.min() > 0.8 and abs(mean_g.mean()) < 0.1
        at_2p = views[i, 4]                                       # at 2P: two cycles, the same half twice
        np.testing.assert_allclose(at_2p[:8], at_2p[8:], atol=0.15)
    assert not views[2].any()                                     # no period: an empty view
    wrong = fold_views(lc, ["a"], ["g", "r"], np.array([0.7 * 1.37]), bins=16, multiples=[1.0])
    assert np.ptp(wrong[0, 0]) < np.ptp(views[0, 0]) / 2          # a wrong period washes the shape out


def test_lomb_scargle_period_of_the_most_significant_band():
    table = pd.DataFrame({"periodogram_period_0_g": [1.0, 2.0, np.nan], "periodogram_period_0_r": [5.0, 7.0, np.nan],
                          "periodogram_period_s_to_n_0_g": [9.0, 1.0, 3.0],
                          "periodogram_period_s_to_n_0_r": [2.0, np.nan, 4.0]})
    np.testing.assert_array_equal(lomb_scargle_periods(table, ["g", "r"]), [1.0, 2.0, np.nan])
    with pytest.raises(ValueError, match="periodogram group"):
        lomb_scargle_periods(table.drop(columns="periodogram_period_0_r"), ["g", "r"])


def _grid(ids, n_time=12) -> GPGrid:
    rng = np.random.default_rng(3)
    n = len(ids)
    return GPGrid(object_ids=np.array(ids), bands=np.array(["g", "r"]), wavelengths=np.array([4800.0, 6400.0]),
                  grid_time=np.arange(n_time, dtype=float), t_ref=np.zeros(n), flux_scale=np.ones(n),
                  mean=rng.normal(size=(n, 2, n_time)).astype(np.float32),
                  std=rng.uniform(0.1, 1, size=(n, 2, n_time)).astype(np.float32),
                  diagnostics=pd.DataFrame({"object_id": ids}))


def test_model_inputs_follow_the_layout_and_the_grid_order():
    config = FeatureConfig(set="periodic", periodogram_log2_n_freq=10, n_jobs=1)
    names = feature_names(["g", "r"], config.set)
    ids = ["b", "a", "c"]
    lc = _sine_lightcurves({"a": 0.7, "b": 3.3, "c": 1.9})
    features = pd.DataFrame(np.arange(2 * len(names), dtype=float).reshape(2, -1), columns=names)
    features.insert(0, "object_id", ["a", "b"])          # "c" has no row: all its features are missing
    features["periodogram_period_0_g"] = [0.7, 3.3]
    model_config = {"_target_": TARGET, **SMALL, "n_features": len(names)}
    x = model_inputs(model_config, _grid(ids), lightcurves=lc, features=features, feature_config=config)
    model = build_model(model_config, n_inputs=4, n_classes=3)
    assert x.shape == (3, model.n_values) and x.dtype == np.float32
    (g0, g1), (f0, f1), (d0, d1) = model.layout["grid"], model.layout["features"], model.layout["fold"]
    grid = _grid(ids)
    np.testing.assert_array_equal(x[:, g0:g1], np.concatenate([grid.mean, grid.std], 1).reshape(3, -1).astype(np.float32))
    np.testing.assert_array_equal(x[0, f0:f1], features.iloc[1, 1:].to_numpy(np.float32))   # "b" first
    assert np.isnan(x[2, f0:f1]).all()
    assert x[:2, d0:d1].any(axis=1).all() and not x[2, d0:d1].any()    # "c": no period, empty fold
    # extracted on the fly when no table is given: the same columns
    fresh = model_inputs(model_config, grid, lightcurves=lc, feature_config=config)
    assert fresh.shape == x.shape and np.isfinite(fresh[:, f0:f1]).any()
    with pytest.raises(ValueError, match=r"features\.parquet: columns are not those of feature set 'periodic'"):
        model_inputs(model_config, grid, lightcurves=lc, features=features.iloc[:, :-1], feature_config=config,
                     features_name="features.parquet")
    with pytest.raises(ValueError, match="needs the light curves and the feature options"):
        model_inputs(model_config, grid, features=features)
    # a grid model takes the GP channels only
    tcn = model_inputs({"_target_": "deeprubin.core.models.tcn.TCNClassifier"}, grid)
    assert tcn.shape == (3, 4, 12)


def test_model_inputs_carry_absolute_magnitudes_from_the_objects():
    from deeprubin.sources.simulate.physics import distance_modulus
    from deeprubin.tasks.transients.training.inputs import feature_count

    config = FeatureConfig(set="periodic", periodogram_log2_n_freq=10, n_jobs=1, absolute_magnitudes=True)
    ids = ["a", "b"]
    lc = _sine_lightcurves({"a": 0.7, "b": 3.3})
    n_features = feature_count(["g", "r"], config)
    assert n_features == len(feature_names(["g", "r"], config.set)) + 2
    model_config = {"_target_": TARGET, **SMALL, "n_features": n_features}
    objects = pd.DataFrame({"object_id": ["a", "b"], "redshift": [0.1, np.nan]})
    x = model_inputs(model_config, _grid(ids), lightcurves=lc, feature_config=config, objects=objects)
    f0, f1 = build_model(model_config, n_inputs=4, n_classes=3).layout["features"]
    peak_r = x[0, f0 + feature_names(["g", "r"], config.set).index("mag_peak_r")]
    assert x[0, f1 - 1] == pytest.approx(peak_r - distance_modulus(np.array([0.1]))[0], abs=1e-4)
    assert np.isnan(x[1, f1 - 2:f1]).all()                      # "b": no redshift
    # a features table written without the option does not fit a model trained with it
    plain = model_inputs({**model_config, "n_features": n_features - 2}, _grid(ids), lightcurves=lc,
                         feature_config=FeatureConfig(set="periodic", periodogram_log2_n_freq=10, n_jobs=1))
    assert plain.shape[1] == x.shape[1] - 2
    from deeprubin.tasks.transients.features.extract import extract_features
    stale = extract_features(lc, ["g", "r"], FeatureConfig(set="periodic", periodogram_log2_n_freq=10, n_jobs=1))
    with pytest.raises(ValueError, match=r"absolute_magnitudes: True"):
        model_inputs(model_config, _grid(ids), lightcurves=lc, features=stale, feature_config=config)


def test_checkpoint_feature_options_are_checked():
    assert checkpoint_feature_config({"config": {"preprocess": {"features": {"set": "basic"}}}}, "m.ckpt").set == "basic"
    assert checkpoint_feature_config({"config": {}}, "m.ckpt") == FeatureConfig()     # an older checkpoint
    with pytest.raises(ValueError, match=r"m\.ckpt: checkpoint config key 'preprocess\.features\.set'"):
        checkpoint_feature_config({"config": {"preprocess": {"features": {"set": "everything"}}}}, "m.ckpt")
    with pytest.raises(ValueError, match=r"m\.ckpt: checkpoint field 'config\.preprocess\.features' is a list"):
        checkpoint_feature_config({"config": {"preprocess": {"features": [1]}}}, "m.ckpt")


# --- training: input scaling from train, deep ensembles ---------------------------------------

def _train_cfg(**trainer):
    from omegaconf import OmegaConf

    base = {"max_epochs": 2, "batch_size": 16, "learning_rate": 1e-2, "weight_decay": 0.0, "class_weighted_loss": True,
            "noise_resampling": False, "early_stopping_patience": 5, "accelerator": "cpu", "num_workers": 0,
            "deterministic": True, "progress_bar": False, "callbacks": {}, "ensemble_members": 1}
    return OmegaConf.create({"seed": 7, "trainer": {**base, **trainer}})


def _split_data(model: FusionClassifier):
    from deeprubin.core.training import SplitArrays

    out = {}
    for k, name in enumerate(("train", "val")):
        x = _flat(model, 24, seed=k).numpy()
        x[:, model.layout["features"][0]] = np.nan
        out[name] = SplitArrays(np.arange(24).astype(str), x, (np.arange(24) % 3).astype(np.int64))
    return out


def test_fit_ensemble_builds_independent_members_and_scales_from_train():
    from deeprubin.core.models.ensemble import member_seed
    from deeprubin.tasks.transients.training.fit import fit_ensemble

    config = {"_target_": TARGET, **SMALL}
    data = _split_data(_model())
    single = fit_ensemble(_train_cfg(), data, config, n_inputs=4, classes=["a", "b", "c"])
    assert isinstance(single.model, FusionClassifier) and "member" not in single.history
    start = single.model.layout["features"][0]
    train_features = torch.from_numpy(data["train"].x[:, start + 1])
    assert torch.isclose(single.model.feature_center[1], torch.nanquantile(train_features, 0.5))
    ensemble = fit_ensemble(_train_cfg(ensemble_members=3), data, config, n_inputs=4, classes=["a", "b", "c"])
    assert isinstance(ensemble.model, DeepEnsemble) and len(ensemble.model.members) == 3
    assert sorted(set(ensemble.history["member"])) == [0, 1, 2] and list(ensemble.history.columns)[0] == "member"
    # member 0 is the single network of the same seed; the others differ
    for a, b in zip(single.model.state_dict().values(), ensemble.model.members[0].state_dict().values()):
        torch.testing.assert_close(a, b)
    w = [m.head[-1].weight for m in ensemble.model.members]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    # neighbouring seeds share no member (a seeds benchmark of ensembles stays honest)
    seeds = {member_seed(s, k) for s in (7, 8) for k in range(3)}
    assert len(seeds) == 6 and member_seed(7, 0) == 7


@pytest.mark.parametrize("trainer, match", [
    ({"ensemble_members": 0}, r"'trainer\.ensemble_members' must be an integer in \[1, 64\]"),
    ({"ensemble_members": 2.5}, r"'trainer\.ensemble_members'"),
    ({"noise_resampling": True}, r"'trainer\.noise_resampling' redraws GP-grid channels"),
])
def test_bad_training_settings_are_named(trainer, match):
    from deeprubin.core.config import ConfigError
    from deeprubin.tasks.transients.training.fit import fit_ensemble

    with pytest.raises(ConfigError, match=match):
        fit_ensemble(_train_cfg(**trainer), _split_data(_model()), {"_target_": TARGET, **SMALL}, n_inputs=4,
                     classes=["a", "b", "c"])


def test_piecewise_linear_encoding_of_features():
    edges = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 4.0]])   # feature 1: a zero-width first bin (repeated quantile)
    enc = piecewise_linear(torch.tensor([[0.5, 1.0], [5.0, 3.0], [-1.0, 2.0]]), edges)
    assert enc.shape == (3, 2, 2)
    assert enc[0].tolist() == [[0.5, 0.0], [0.0, 0.0]]          # half the first bin; below feature 1's step
    assert enc[1].tolist() == [[1.0, 1.0], [1.0, 0.5]]          # above every bin; the step then half the second
    assert enc[2].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    model = _model(feature_encoding="ple", feature_bins=4)
    x = _flat(model, 50)
    start, _ = model.layout["features"]
    x[:, start] = float("nan")                                   # missing for every object: default edges
    x[::3, start + 1] = float("nan")
    model.fit_input_scaling(x)
    assert model.feature_edges.shape == (5, 5) and torch.isfinite(model.feature_edges).all()
    z = (x[:, start + 2] - model.feature_center[2]) / model.feature_scale[2]
    assert torch.allclose(model.feature_edges[2], torch.quantile(z, torch.linspace(0, 1, 5)))
    assert torch.equal(model.feature_edges[0], torch.linspace(-1.0, 1.0, 5))
    out = model.eval()(x)
    assert out.shape == (50, 3) and torch.isfinite(out).all()
    learner = _model(feature_encoding="ple", feature_bins=4, branches=["features"], dropout=0.0)
    xf = x[:, start:start + 5].nan_to_num()
    learner.fit_input_scaling(xf)
    assert fit_one_batch(learner, xf, torch.arange(50) % 3, torch.optim.Adam(learner.parameters(), lr=1e-2)) < 0.1
