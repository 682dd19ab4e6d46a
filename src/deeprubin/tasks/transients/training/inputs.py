"""A checkpoint's model inputs, built the same way for training, evaluation and prediction.

A grid model (TCN, GRU, Inception, transformer) takes the GP mean and std channels,
``(N, 2B, T)`` (:func:`deeprubin.tasks.transients.training.data.grid_features`). The fusion
model (:class:`deeprubin.tasks.transients.model.FusionClassifier`) takes one flat vector per
object: the same grid, the baseline's ``light-curve`` features, and the light curve folded at its
Lomb-Scargle period (:func:`fold_views`). :func:`model_inputs` is the one place that builds
either, so a model is fed at prediction time exactly as it was trained; what it needs beyond the
grid (the feature options, ``preprocess.features``) travels in the checkpoint's saved config.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ....core.models import model_class
from ..features.extract import FeatureConfig, extract_features, feature_columns, feature_rows
from ..model import FusionClassifier
from ..preprocess.gp import GPGrid
from .data import grid_features

def uses_features(model_config: Mapping[str, Any]) -> bool:
    """Whether the model of ``model_config`` takes flat fusion inputs (features and folded views)."""
    return model_class(model_config) is FusionClassifier


def checkpoint_feature_config(meta: Mapping[str, Any], where: str) -> FeatureConfig:
    """The feature options a checkpoint's model was trained with (its saved ``preprocess.features``).

    A checkpoint is a file a user may have been handed: a bad value raises ``ValueError`` naming
    ``where`` and the field.
    """
    config = meta.get("config") if isinstance(meta, Mapping) else None
    preprocess = config.get("preprocess") if isinstance(config, Mapping) else None
    node = preprocess.get("features") if isinstance(preprocess, Mapping) else None
    if node is not None and not isinstance(node, Mapping):
        raise ValueError(f"{where}: checkpoint field 'config.preprocess.features' is a {type(node).__name__}, "
                         "not a mapping")
    try:
        return FeatureConfig.from_config(node)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{where}: checkpoint field 'config.{err}'" if "config key" not in str(err)
                         else f"{where}: checkpoint {err}") from None


def _fusion_setting(model_config: Mapping[str, Any], key: str):
    """A fusion model's setting: the config's value, else the class's default."""
    value = model_config.get(key)
    return inspect.signature(FusionClassifier).parameters[key].default if value is None else value


def lomb_scargle_periods(features: pd.DataFrame, bands: Sequence[str]) -> np.ndarray:
    """Per object (rows of ``features``), the periodogram peak of the band where it is most significant.

    Uses the ``periodogram_period_0_<band>`` and ``periodogram_period_s_to_n_0_<band>`` features;
    an object with no finite positive period in any band gets ``NaN`` (its folded views stay empty).
    """
    bands = [str(b) for b in bands]
    period_cols = [f"periodogram_period_0_{b}" for b in bands]
    snr_cols = [f"periodogram_period_s_to_n_0_{b}" for b in bands]
    missing = [c for c in period_cols + snr_cols if c not in features.columns]
    if missing:
        raise ValueError(f"features: no column(s) {missing} for the folded views; use a feature set with the "
                         "periodogram group (preprocess.features.set: periodic or full)")
    periods = features[period_cols].to_numpy(dtype=np.float64)
    snr = features[snr_cols].to_numpy(dtype=np.float64)
    usable = np.isfinite(periods) & (periods > 0)
    snr = np.where(usable & np.isfinite(snr), snr, -np.inf)
    best = snr.argmax(axis=1)
    chosen = periods[np.arange(len(periods)), best]
    return np.where(usable.any(axis=1), chosen, np.nan)


def fold_views(lightcurves: pd.DataFrame, object_ids: Sequence[str], bands: Sequence[str], periods: np.ndarray,
               bins: int, multiples: Sequence[float]) -> np.ndarray:
    """Light curves folded at ``periods * m`` for each multiple ``m``, binned in phase.

    Per object, the flux of each band minus its median is scaled by the object's 5-95 %
    flux range (at least its median flux error); phase 0 is the brightest point. Channels,
    per multiple: the mean scaled flux of each band's bin, then each band's bin occupancy (1 where
    the bin holds an observation): shape ``(len(object_ids), 2 * len(bands) * len(multiples), bins)``
    float32. Objects without a period or without observations stay zero.
    """
    ids = np.asarray(object_ids).astype(str)
    bands = [str(b) for b in bands]
    n, n_bands = len(ids), len(bands)
    out = np.zeros((n, 2 * n_bands * len(multiples), bins), np.float32)
    lc = lightcurves[lightcurves["band"].astype(str).isin(bands)]
    lc = lc[np.isfinite(lc["flux"].to_numpy(float)) & np.isfinite(lc["flux_err"].to_numpy(float))
            & (lc["flux_err"].to_numpy(float) > 0)]
    position = pd.Series(np.arange(n), index=ids)
    obj = lc["object_id"].astype(str).map(position)
    lc = lc[obj.notna().to_numpy()]
    if lc.empty:
        return out
    o = obj[obj.notna()].to_numpy(dtype=np.int64)
    b = lc["band"].astype(str).map({band: i for i, band in enumerate(bands)}).to_numpy(dtype=np.int64)
    t, flux, err = (lc[c].to_numpy(dtype=np.float64) for c in ("time", "flux", "flux_err"))
    frame = pd.DataFrame({"o": o, "b": b, "flux": flux, "err": err})
    centred = flux - frame.groupby(["o", "b"])["flux"].transform("median").to_numpy()
    frame["c"] = centred
    q = frame.groupby("o")["c"].quantile([0.05, 0.95]).unstack()
    spread = (q[0.95] - q[0.05]).reindex(range(n)).to_numpy()
    err_median = frame.groupby("o")["err"].median().reindex(range(n)).to_numpy()
    scale = np.fmax(np.nan_to_num(spread, nan=0.0), np.nan_to_num(err_median, nan=0.0))
    scale = np.where(scale > 0, scale, 1.0)
    y = centred / scale[o]
    order = np.lexsort((-y, o))                       # brightest point first within each object
    first = order[np.unique(o[order], return_index=True)[1]]
    t0 = np.zeros(n)
    t0[o[first]] = t[first]
    has_period = np.isfinite(periods) & (periods > 0)
    rows = has_period[o]
    for k, multiple in enumerate(multiples):
        period = periods[o[rows]] * float(multiple)
        phase = np.mod((t[rows] - t0[o[rows]]) / period, 1.0)
        bin_index = np.minimum((phase * bins).astype(np.int64), bins - 1)
        sums = np.zeros((n, n_bands, bins))
        counts = np.zeros((n, n_bands, bins))
        np.add.at(sums, (o[rows], b[rows], bin_index), y[rows])
        np.add.at(counts, (o[rows], b[rows], bin_index), 1.0)
        base = 2 * n_bands * k
        out[:, base:base + n_bands] = np.where(counts > 0, sums / np.maximum(counts, 1.0), 0.0)
        out[:, base + n_bands:base + 2 * n_bands] = counts > 0
    return out


def model_inputs(model_config: Mapping[str, Any], grid: GPGrid, *, features: pd.DataFrame | None = None,
                 lightcurves: pd.DataFrame | None = None, feature_config: FeatureConfig | None = None,
                 features_name: str = "features", objects: pd.DataFrame | None = None) -> np.ndarray:
    """The inputs of the model of ``model_config`` for the objects of ``grid``, in the grid's order.

    Grid models: ``(N, 2B, T)``. The fusion model: ``(N, n_values)``, its branches' parts
    (:func:`deeprubin.tasks.transients.model.input_layout`); it needs ``lightcurves`` (the canonical
    table the features were, or are to be, extracted from), ``feature_config`` (the options they
    were extracted with) and, optionally, ``features`` (a table of
    :func:`~deeprubin.tasks.transients.features.extract.extract_features`, e.g. the preprocess
    step's, named ``features_name`` in errors; extracted now when not given, with the redshifts of
    ``objects`` when the options ask for absolute magnitudes). Objects absent from ``features``
    get missing values.
    """
    x_grid = grid_features(grid.mean, grid.std)
    if not uses_features(model_config):
        return x_grid
    if lightcurves is None or feature_config is None:
        raise ValueError("model_inputs: the fusion model needs the light curves and the feature options")
    bands = [str(b) for b in grid.bands]
    ids = grid.object_ids.astype(str)
    if features is None:
        features = extract_features(lightcurves[lightcurves["object_id"].astype(str).isin(set(ids))], bands,
                                    feature_config, objects)
    branches = list(_fusion_setting(model_config, "branches"))
    columns = [c for c in features.columns if c != "object_id"]
    if columns != feature_columns(bands, feature_config):
        raise ValueError(f"{features_name}: columns are not those of feature set '{feature_config.set}' "
                         f"(absolute_magnitudes: {feature_config.absolute_magnitudes}) for bands {bands} "
                         "(rerun the step that wrote it)")
    table = features.set_index(features["object_id"].astype(str))[columns].reindex(ids)
    values = table.to_numpy(dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    parts = []
    if "grid" in branches:
        parts.append(x_grid.reshape(len(ids), -1))
    if "features" in branches:
        parts.append(values.astype(np.float32))
    if "fold" in branches:
        periods = lomb_scargle_periods(table.reset_index(drop=True), bands)
        folded = fold_views(feature_rows(lightcurves, feature_config), ids, bands, periods, int(_fusion_setting(model_config, "fold_bins")),
                            [float(m) for m in _fusion_setting(model_config, "fold_periods")])
        parts.append(folded.reshape(len(ids), -1))
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def feature_count(bands: Sequence[str], feature_config: FeatureConfig) -> int:
    """Columns of the feature set for ``bands`` (a fusion model's ``n_features``)."""
    return len(feature_columns(bands, feature_config))
