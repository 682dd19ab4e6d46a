"""The classical models of the stellar task: gradient-boosted trees on tabular features.

The trees run on one OpenMP thread (``threadpool_limits``): thousands of small parallel regions
on two shared cores spent most of their time waiting at barriers (a `stellar_sed` run took
minutes instead of seconds), and the trees' results do not depend on the thread count.

scikit-learn's histogram gradient boosting (``HistGradientBoostingClassifier`` /
``...Regressor``, the LightGBM algorithm) was chosen over LightGBM and XGBoost themselves: it is
already a dependency, takes missing values (a band a star lacks) natively, is deterministic for
a given ``random_state``, and is as fast as LightGBM at these sizes (a few thousand rows).

Per target, three regressors are fitted: the squared-error mean and the 15.87 % and 84.13 %
quantiles, so each prediction carries a 1-sigma ``(q84 - q16) / 2`` that the evaluation checks
for coverage as it does the networks' predicted sigma.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from ...core.config import require

#: The quantiles whose half-difference is the 1-sigma of a Gaussian.
Q_LOW, Q_HIGH = 0.15865525393145707, 0.8413447460685429

#: ``gbm`` config keys passed to scikit-learn.
_ARGS = ("max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization")


def check_gbm_config(cfg: Mapping) -> None:
    """Raise :class:`~deeprubin.core.config.ConfigError` naming the first invalid ``gbm`` key."""
    for key in ("max_iter", "max_leaf_nodes", "min_samples_leaf"):
        require(cfg, key, positive=True)
    require(cfg, "learning_rate", positive=True)
    require(cfg, "l2_regularization", at_least=0)
    require(cfg, "validation_fraction", positive=True)
    require(cfg, "n_iter_no_change", positive=True)


def _kwargs(cfg: Mapping, seed: int) -> dict:
    kwargs = {key: cfg[key] for key in _ARGS}
    return dict(kwargs, early_stopping=True, validation_fraction=float(cfg["validation_fraction"]),
                n_iter_no_change=int(cfg["n_iter_no_change"]), random_state=int(seed))


@dataclass
class GBMModels:
    """A classifier (or None) and per target the (mean, q16, q84) regressors."""

    classifier: HistGradientBoostingClassifier | None
    regressors: dict[str, tuple[HistGradientBoostingRegressor, ...]]
    feature_names: list[str]
    log10: tuple[str, ...] = ()        # targets fitted in log10 (their predictions are turned back)


def fit_gbm(x: np.ndarray, labels: np.ndarray | None, targets: Mapping[str, np.ndarray], cfg: Mapping,
            seed: int, feature_names=None, log10=()) -> GBMModels:
    """Fit the classifier on ``labels`` (integer classes; None: no classifier) and, for every
    target, the mean and quantile regressors on the rows where that target is finite (in log10
    for the targets named in ``log10``, which must be positive).

    ``x``: (n, n_features), NaN for a missing feature.
    """
    check_gbm_config(cfg)
    with threadpool_limits(limits=1, user_api="openmp"):
        return _fit_gbm(x, labels, targets, cfg, seed, feature_names, log10)


def _fit_gbm(x, labels, targets, cfg, seed, feature_names, log10) -> GBMModels:
    x = np.asarray(x, dtype=float)
    classifier = None
    if labels is not None:
        labels = np.asarray(labels)
        kwargs = _kwargs(cfg, seed)
        if np.unique(labels, return_counts=True)[1].min() < 2:
            # early stopping holds out a stratified share, impossible with a one-member class (a
            # rare class of a real catalogue): fit the full max_iter instead
            kwargs["early_stopping"] = False
        classifier = HistGradientBoostingClassifier(**kwargs).fit(x, labels)
    regressors = {}
    for k, (name, values) in enumerate(targets.items()):
        values = np.asarray(values, dtype=float)
        if values.shape != (len(x),):
            raise ValueError(f"fit_gbm: target '{name}' has shape {values.shape}, features {x.shape}")
        if name in set(log10):
            if np.nanmin(values) <= 0:
                raise ValueError(f"fit_gbm: target '{name}' is fitted in log10 but has a value <= 0")
            values = np.log10(values)
        ok = np.isfinite(values)
        if ok.sum() < 10:
            raise ValueError(f"fit_gbm: target '{name}' has {int(ok.sum())} finite values; at least 10 needed")
        fitted = []
        for loss, quantile in (("squared_error", None), ("quantile", Q_LOW), ("quantile", Q_HIGH)):
            extra = {"quantile": quantile} if quantile is not None else {}
            model = HistGradientBoostingRegressor(loss=loss, **extra, **_kwargs(cfg, seed + 1 + k))
            fitted.append(model.fit(x[ok], values[ok]))
        regressors[name] = tuple(fitted)
    names = list(feature_names) if feature_names is not None else [f"f{i}" for i in range(x.shape[1])]
    return GBMModels(classifier, regressors, names, tuple(str(t) for t in log10))


def predict_gbm(models: GBMModels, x: np.ndarray) -> tuple[np.ndarray | None, dict, dict]:
    """``(probabilities or None, {target: mean}, {target: sigma})`` for ``x`` (n, n_features).

    Sigma is the quantiles' half-difference, floored at 1e-6 of the mean's scale so a
    degenerate pair of quantiles never gives a zero sigma.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(models.feature_names):
        raise ValueError(f"predict_gbm: features of shape {x.shape}; the models take "
                         f"{len(models.feature_names)} columns ({models.feature_names[:5]}...)")
    with threadpool_limits(limits=1, user_api="openmp"):
        proba = models.classifier.predict_proba(x) if models.classifier is not None else None
        predicted = {name: tuple(m.predict(x) for m in fitted) for name, fitted in models.regressors.items()}
    mean, sigma = {}, {}
    for name, (centre, q_low, q_high) in predicted.items():
        mean[name] = centre
        if name in models.log10:
            mean[name], q_low, q_high = 10.0 ** centre, 10.0 ** q_low, 10.0 ** q_high
        half = 0.5 * (q_high - q_low)
        floor = 1e-6 * max(float(np.nanstd(mean[name])), 1.0)
        sigma[name] = np.maximum(np.abs(half), floor)
    return proba, mean, sigma
