"""The feature-based baseline: a balanced random forest on light-curve features.

ALeRCE's light-curve classifier (Sánchez-Sáez et al. 2021) is a (hierarchical)
balanced random forest on hand-built features; this is its flat version on
:mod:`deeprubin.tasks.transients.features.extract`'s features. Every tree is grown on a bootstrap
sample under-sampled to balanced classes (imbalanced-learn's
``BalancedRandomForestClassifier``). It is fitted on the ``train`` split of the
same manifest the deep models use, seeded; the settings in ``baseline.tune`` are chosen on
the ``val`` split by macro-F1, as the deep model is chosen on validation (a starved baseline
proves nothing), and the test split is used for the comparison only.
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import pandas as pd
from imblearn.ensemble import BalancedRandomForestClassifier
from sklearn.dummy import DummyClassifier

from ....core.config import ConfigError
from ....core.metrics import classification_metrics

#: ``sampling_strategy`` values accepted for the per-tree under-sampling.
SAMPLING_STRATEGIES = ("all", "not minority", "not majority", "majority", "auto")
_MAX_FEATURES = ("sqrt", "log2")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class BRFParams:
    """Hyperparameters of the balanced random forest (``baseline.*`` in the config).

    ``n_estimators``, ``max_depth`` (None: grow until pure), ``min_samples_leaf``,
    ``max_features`` and ``n_jobs`` as in scikit-learn; ``sampling_strategy``,
    ``replacement`` and ``bootstrap`` as in imbalanced-learn (the defaults,
    ``"all"``/True/False, under-sample every class to the smallest one with
    replacement for each tree).
    """

    n_estimators: int = 500
    max_depth: int | None = None
    min_samples_leaf: int = 1
    max_features: str | float | int | None = "sqrt"
    sampling_strategy: str = "all"
    replacement: bool = True
    bootstrap: bool = False
    n_jobs: int = 2

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~deeprubin.core.config.ConfigError` naming the offending key."""
        if not _is_int(self.n_estimators) or self.n_estimators <= 0:
            raise ConfigError(f"config key 'baseline.n_estimators' must be an integer > 0, "
                              f"got {self.n_estimators!r}")
        if self.max_depth is not None and (not _is_int(self.max_depth) or self.max_depth <= 0):
            raise ConfigError(f"config key 'baseline.max_depth' must be null or an integer > 0, "
                              f"got {self.max_depth!r}")
        if not _is_int(self.min_samples_leaf) or self.min_samples_leaf < 1:
            raise ConfigError(f"config key 'baseline.min_samples_leaf' must be an integer >= 1, "
                              f"got {self.min_samples_leaf!r}")
        mf = self.max_features
        ok = (mf is None or mf in _MAX_FEATURES or (_is_int(mf) and mf >= 1)
              or (isinstance(mf, float) and 0.0 < mf <= 1.0))
        if not ok:
            raise ConfigError(f"config key 'baseline.max_features' must be 'sqrt', 'log2', null, an integer "
                              f">= 1 or a fraction in (0, 1], got {mf!r}")
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            raise ConfigError(f"config key 'baseline.sampling_strategy' must be one of "
                              f"{list(SAMPLING_STRATEGIES)}, got {self.sampling_strategy!r}")
        for key in ("replacement", "bootstrap"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"config key 'baseline.{key}' must be true or false, "
                                  f"got {getattr(self, key)!r}")
        if not _is_int(self.n_jobs) or not (self.n_jobs >= 1 or self.n_jobs == -1):
            raise ConfigError(f"config key 'baseline.n_jobs' must be a positive integer or -1, "
                              f"got {self.n_jobs!r}")

    @classmethod
    def from_config(cls, node: Any) -> "BRFParams":
        """Build from the ``baseline`` mapping (keys other than the fields are ignored)."""
        values = dict(node or {})
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def build(self, seed: int) -> BalancedRandomForestClassifier:
        """The unfitted classifier, seeded with ``seed``."""
        return BalancedRandomForestClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, sampling_strategy=self.sampling_strategy,
            replacement=self.replacement, bootstrap=self.bootstrap, n_jobs=self.n_jobs,
            random_state=int(seed))


@dataclass
class SplitData:
    """One split's rows: object ids, the feature matrix (NaN kept) and string labels."""

    object_ids: np.ndarray
    x: np.ndarray
    labels: np.ndarray


def split_features(features: pd.DataFrame, manifest: pd.DataFrame, feature_columns: Sequence[str],
                   classes: Sequence[str]) -> dict[str, SplitData]:
    """Join features to the manifest and cut them into its splits (rows sorted by object_id).

    Raises ``ValueError`` naming the objects when a manifest object has no feature
    row, or when a label is not in ``classes``.
    """
    missing = sorted(set(manifest["object_id"].astype(str)) - set(features["object_id"].astype(str)))
    if missing:
        raise ValueError(f"features: {len(missing)} object(s) of the split manifest have no feature row "
                         f"(e.g. {missing[:3]}); were they dropped from the light curves?")
    unknown = sorted(set(manifest["label"].astype(str)) - set(map(str, classes)))
    if unknown:
        raise ValueError(f"manifest: label(s) {unknown} are not in task.classes {list(classes)}")
    table = manifest[["object_id", "label", "split"]].astype({"object_id": str, "label": str}).merge(
        features.astype({"object_id": str}), on="object_id", how="left", validate="one_to_one")
    table = table.sort_values("object_id", kind="mergesort")
    out = {}
    for name, part in table.groupby("split", sort=True):
        out[str(name)] = SplitData(object_ids=part["object_id"].to_numpy(),
                                   x=part[list(feature_columns)].to_numpy(dtype=np.float32),
                                   labels=part["label"].to_numpy())
    return out


def fit_baseline(train: SplitData, params: BRFParams, seed: int) -> BalancedRandomForestClassifier:
    """Fit the balanced random forest on the training split."""
    if len(train.labels) == 0:
        raise ValueError("baseline: the 'train' split is empty")
    if np.unique(train.labels).size < 2:
        # A forest cannot learn from one class (e.g. a real set of SNe Ia only): predict
        # that class, so the pipeline still reports, and say so.
        logging.getLogger(__name__).warning(
            "baseline: only one class (%s) in the training split; using a constant predictor",
            train.labels[0])
        return DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train.labels), 1)), train.labels)
    return params.build(seed).fit(train.x, train.labels)


def predict_table(model: BalancedRandomForestClassifier, data: SplitData, classes: Sequence[str]) -> pd.DataFrame:
    """object_id, label, predicted, prob_<class> for every class of ``classes`` (0 if unseen in training)."""
    classes = [str(c) for c in classes]
    proba = model.predict_proba(data.x)
    full = np.zeros((len(data.labels), len(classes)))
    for j, c in enumerate(model.classes_):
        full[:, classes.index(str(c))] = proba[:, j]
    table = pd.DataFrame({"object_id": data.object_ids, "label": data.labels,
                          "predicted": np.asarray(model.classes_)[proba.argmax(axis=1)].astype(str)})
    for j, c in enumerate(classes):
        table[f"prob_{c}"] = full[:, j]
    return table


def importance_table(model: BalancedRandomForestClassifier, feature_columns: Sequence[str]) -> pd.DataFrame:
    """Mean decrease in impurity per feature, with its spread over trees, most important first."""
    if not hasattr(model, "estimators_"):  # constant predictor: no feature is used
        zeros = np.zeros(len(feature_columns))
        return pd.DataFrame({"feature": list(feature_columns), "importance": zeros, "importance_std": zeros})
    per_tree = np.array([tree.feature_importances_ for tree in model.estimators_])
    table = pd.DataFrame({"feature": list(feature_columns), "importance": model.feature_importances_,
                          "importance_std": per_tree.std(axis=0)})
    table = table.sort_values(["importance", "feature"], ascending=[False, True], kind="mergesort")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def tune_grid(node: Any) -> dict[str, list]:
    """Parse ``baseline.tune`` (a mapping ``key -> list of values``; null or empty: no tuning).

    Keys must be :class:`BRFParams` fields other than ``n_jobs``; every value of a list is
    checked as ``BRFParams`` checks it. Raises :class:`~deeprubin.core.config.ConfigError`
    naming the key.
    """
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"config key 'baseline.tune' must be a mapping of setting -> list of values, got {node!r}")
    grid: dict[str, list] = {}
    tunable = [k for k in BRFParams.__dataclass_fields__ if k != "n_jobs"]
    for key, values in node.items():
        if key not in tunable:
            raise ConfigError(f"config key 'baseline.tune.{key}' is not a tunable forest setting "
                              f"(one of {tunable})")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(f"config key 'baseline.tune.{key}' must be a non-empty list, got {values!r}")
        for value in values:
            try:
                BRFParams(**{key: value})
            except ConfigError as exc:
                raise ConfigError(f"config key 'baseline.tune.{key}': {exc}") from None
        grid[str(key)] = list(values)
    return grid


def grid_points(params: BRFParams, grid: Mapping[str, Sequence]) -> list[BRFParams]:
    """Every combination of ``grid`` (in its key and value order) over ``params``; ``[params]`` if empty."""
    if not grid:
        return [params]
    keys = list(grid)
    return [replace(params, **dict(zip(keys, combo))) for combo in itertools.product(*(grid[k] for k in keys))]


def tune_baseline(splits: dict[str, SplitData], params: BRFParams, grid: Mapping[str, Sequence], seed: int,
                  classes: Sequence[str]) -> tuple[BalancedRandomForestClassifier, BRFParams, pd.DataFrame]:
    """Fit one forest per grid point on ``train``, keep the one with the best ``val`` macro-F1.

    Ties go to the earlier grid point (the config's order), so the choice is deterministic.
    Returns the chosen model, its settings and a table of every point (its settings, val
    macro-F1 and accuracy, ``chosen``). The test split is not seen.
    """
    train, val = splits.get("train"), splits.get("val")
    if val is None or len(val.labels) == 0:
        raise ValueError("baseline.tune: the manifest has no 'val' split to tune the forest on "
                         "(set baseline.tune: null)")
    rows, best = [], None
    for k, point in enumerate(grid_points(params, grid)):
        model = fit_baseline(train, point, seed)
        scores = classification_metrics(val.labels, predict_table(model, val, classes)["predicted"], classes)
        rows.append({**{key: getattr(point, key) for key in grid}, "val_macro_f1": scores["macro_f1"],
                     "val_accuracy": scores["accuracy"]})
        logging.getLogger(__name__).info("baseline.tune: %d %s -> val macro-F1 %.4f", k,
                                         {key: getattr(point, key) for key in grid}, scores["macro_f1"])
        if best is None or scores["macro_f1"] > best[0]:
            best = (scores["macro_f1"], k, model, point)
    table = pd.DataFrame(rows)
    table["chosen"] = np.arange(len(table)) == best[1]
    return best[2], best[3], table


@dataclass
class BaselineResult:
    """What :func:`train_and_score` returns: the model, predictions, metrics and importances."""

    model: BalancedRandomForestClassifier
    predictions: pd.DataFrame          # test split
    metrics: dict                      # test split, the structure of reports/<task>/metrics.json
    val_metrics: dict | None           # val split (None when the manifest has no val objects)
    importances: pd.DataFrame
    params: BRFParams                  # the forest's settings (the tuned ones when baseline.tune is set)
    tuning: pd.DataFrame               # one row per tuned grid point (empty without a val split)


def train_and_score(features: pd.DataFrame, manifest: pd.DataFrame, classes: Sequence[str],
                    params: BRFParams, seed: int, feature_columns: Sequence[str] | None = None,
                    grid: Mapping[str, Sequence] | None = None) -> BaselineResult:
    """Fit on ``train`` (tuning ``grid`` on ``val``, :func:`tune_baseline`), score ``val`` and ``test``.

    ``feature_columns`` defaults to every column of ``features`` except ``object_id``. Without
    a val split the forest is fitted with ``params`` as they are (and a non-empty ``grid`` is
    an error).
    """
    classes = [str(c) for c in classes]
    columns = list(feature_columns) if feature_columns is not None else \
        [c for c in features.columns if c != "object_id"]
    splits = split_features(features, manifest, columns, classes)
    test = splits.get("test")
    if test is None or len(test.labels) == 0:
        raise ValueError("baseline: the 'test' split of the manifest is empty")
    splits.setdefault("train", SplitData(np.array([]), np.empty((0, len(columns))), np.array([])))
    if grid or ("val" in splits and len(splits["val"].labels)):   # tune_baseline refuses a grid without val
        model, params, tuning = tune_baseline(splits, params, grid or {}, seed, classes)
    else:
        model, tuning = fit_baseline(splits["train"], params, seed), pd.DataFrame()
    predictions = predict_table(model, test, classes)
    metrics = classification_metrics(test.labels, predictions["predicted"], classes)
    val_metrics = None
    if "val" in splits and len(splits["val"].labels):
        val = predict_table(model, splits["val"], classes)
        val_metrics = classification_metrics(splits["val"].labels, val["predicted"], classes)
    return BaselineResult(model=model, predictions=predictions, metrics=metrics, val_metrics=val_metrics,
                          importances=importance_table(model, columns), params=params, tuning=tuning)
