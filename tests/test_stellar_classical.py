"""The stellar task's classical models and metrics: gradient-boosted trees with quantile sigmas,
regression metrics, coverage, grouped bootstrap intervals, the Kepler stars' own split."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprubin.core.config import ConfigError
from deeprubin.tasks.stellar.classical import kepler_split, spectra_features, standardise
from deeprubin.tasks.stellar.gbm import fit_gbm, predict_gbm
from deeprubin.tasks.stellar.metrics import (bootstrap_macro_f1, bootstrap_mae, regression_metrics,
                                             sigma_scale)

GBM = {"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 10,
       "l2_regularization": 0.0, "validation_fraction": 0.2, "n_iter_no_change": 10}


def _data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    noise = 0.3
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=noise, size=n)
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
    return x, y, labels, noise


def test_gbm_learns_a_function_and_its_quantile_sigma_covers_the_noise():
    x, y, labels, noise = _data()
    models = fit_gbm(x[:400], labels[:400], {"t": y[:400]}, GBM, seed=1, feature_names=["a", "b", "c"])
    proba, mean, sigma = predict_gbm(models, x[400:])
    assert proba.shape == (200, 3) and np.allclose(proba.sum(1), 1.0)
    assert np.mean(proba.argmax(1) == labels[400:]) > 0.8
    metrics = regression_metrics(y[400:], mean["t"], sigma["t"])
    assert metrics["mae"] < 0.6 and metrics["r2"] > 0.9
    # quantile trees under-cover (their own error adds to the noise): hence the validation rescaling
    assert 0.3 < metrics["coverage_1sigma"] < 0.9
    assert 0.5 * noise < metrics["median_sigma"] < 3 * noise


def test_gbm_is_deterministic_and_takes_missing_features():
    x, y, labels, _ = _data()
    x[::7, 2] = np.nan
    a = predict_gbm(fit_gbm(x, labels, {"t": y}, GBM, seed=3), x)[1]["t"]
    b = predict_gbm(fit_gbm(x, labels, {"t": y}, GBM, seed=3), x)[1]["t"]
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_gbm_errors_name_the_problem():
    x, y, labels, _ = _data(100)
    with pytest.raises(ConfigError, match="max_iter"):
        fit_gbm(x, labels, {"t": y}, {**GBM, "max_iter": 0}, seed=0)
    with pytest.raises(ValueError, match="target 't' has 5 finite"):
        fit_gbm(x, None, {"t": np.r_[y[:5], np.full(95, np.nan)]}, GBM, seed=0)
    models = fit_gbm(x, None, {"t": y}, GBM, seed=0)
    with pytest.raises(ValueError, match="the models take 3 columns"):
        predict_gbm(models, x[:, :2])


def test_regression_metrics_and_coverage_of_known_gaussians():
    rng = np.random.default_rng(5)
    truth = rng.normal(size=20000)
    sigma = np.full_like(truth, 0.5)
    pred = truth + rng.normal(scale=0.5, size=truth.size) + 0.1
    m = regression_metrics(truth, pred, sigma)
    assert m["bias"] == pytest.approx(0.1, abs=0.02)
    assert m["coverage_1sigma"] == pytest.approx(0.683, abs=0.02)
    assert m["coverage_2sigma"] == pytest.approx(0.954, abs=0.01)
    # sigmas twice too large: the validation factor halves them
    assert sigma_scale(truth, pred - 0.1, 2 * sigma) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="one shape"):
        regression_metrics(truth, pred[:-1])
    with pytest.raises(ValueError, match="no finite"):
        regression_metrics(np.full(3, np.nan), np.zeros(3))


def test_bootstrap_resamples_groups_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    groups = np.repeat([f"s{i}" for i in range(50)], 3)
    truth = rng.normal(size=150)
    pred = truth + rng.normal(scale=1.0, size=150)
    b = bootstrap_mae(truth, pred, groups, n_boot=200, seed=0)
    assert b["low"] < b["mae"] < b["high"]
    assert bootstrap_mae(truth, pred, groups, n_boot=200, seed=0) == b
    labels = rng.integers(0, 3, 150)
    f = bootstrap_macro_f1(labels, labels, groups, 3, n_boot=20, seed=0)
    assert f["macro_f1"] == f["low"] == f["high"] == 1.0


def test_kepler_split_is_grouped_stratified_and_seeded():
    kepler = pd.DataFrame({"star_id": [f"KIC{i}" for i in range(300)],
                           "label": np.where(np.arange(300) % 3 == 0, "K", "G")})
    a = kepler_split(kepler, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=4)
    assert a.equals(kepler_split(kepler, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=4))
    assert set(a.index) == set(kepler["star_id"]) and a.index.is_unique
    for label in ("G", "K"):
        share = (a[kepler.set_index("star_id")["label"] == label] == "test").mean()
        assert share == pytest.approx(0.15, abs=0.03)


def test_spectra_pca_is_fitted_on_training_rows_and_masked_pixels_are_continuum():
    rng = np.random.default_rng(0)
    x = np.ones((40, 3, 50), np.float32)
    x[:, 0] = 1 + 0.1 * rng.normal(size=(40, 50))
    x[:, 2] = 0
    masked = x.copy()
    masked[:, 0, :5], masked[:, 2, :5] = 99.0, 1.0    # bad pixels: their flux must not count
    train = np.arange(30)
    a = spectra_features(x, train, 5, seed=0)
    b = spectra_features(masked, train, 5, seed=0)
    assert a.shape == (40, 5) and np.abs(b).max() < 10
    z = standardise(np.c_[np.arange(10.0), np.full(10, np.nan)], np.arange(10))
    assert np.nanmean(z[:, 0]) == pytest.approx(0.0) and np.isnan(z[:, 1]).all()


def test_gbm_classifier_takes_a_one_member_class():
    x, y, labels, _ = _data(200)
    labels = labels.copy()
    labels[0] = 5                      # one star of a rare class: no stratified early-stopping split
    proba = predict_gbm(fit_gbm(x, labels, {"t": y}, {**GBM, "max_iter": 20}, seed=0), x)[0]
    assert proba.shape[1] == len(np.unique(labels))
