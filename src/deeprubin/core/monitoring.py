"""Drift monitoring: a window of scored inputs compared with the training data.

:func:`monitor_window` compares a *window* (objects scored by the model: a batch job of the
service, an export of the stream classifier's store, a fresh simulated sample) with a
*reference* (the training data and the model's scores on its test split) in four families,
each with thresholds from a config mapping (:func:`check_config`; the ``monitor`` node of
the pipeline config, ``conf/monitor/default.yaml``):

``features``
    per feature: the Population Stability Index (:func:`population_stability_index`, bins at
    the reference's quantiles), the two-sample Kolmogorov-Smirnov statistic and p-value
    (:func:`scipy.stats.ks_2samp`, p-values adjusted over the features compared), and the
    missing fraction (NaN or infinite values) of each side compared as its own quantity:
    PSI and KS see only the finite values.
``class_fractions``
    the fractions of objects predicted as each class (arg-max of the probabilities), window
    against reference: PSI over the classes, total variation distance and per-class shifts.
``calibration``
    when the window carries labels (labelled feedback): its top-label ECE
    (:func:`deeprubin.core.reliability.expected_calibration_error`) against the reference's,
    with the ECE a perfectly calibrated model would score on the window
    (:func:`deeprubin.core.reliability.ece_floor`) as the noise floor.
``performance``
    with labels: macro-F1 (over the classes the window's labels contain, on both sides:
    :func:`deeprubin.core.metrics.subset_macro_f1`) and accuracy, window against reference.

The report (:func:`monitor_window`) gives every family ``alert`` (true/false), ``crossed``
(the features, classes or metrics past a threshold), ``reasons`` (one line each) and
``skipped`` (why a family was not compared, e.g. no labels; never an alert), and overall
``alert`` and ``alerts`` (the families that alerted).

Inputs are plain tables (:class:`ScoredSample`): a feature table (one row per object, numeric
columns) and a prediction table in the project's layout (``object_id``, ``prob_<class>`` for
every class, optionally ``label``), the layout of the evaluate stage's ``predictions.csv``,
the predict entry point's output, the service's batch results and
:meth:`deeprubin.stream.state.StateStore.classifications`. Nothing here reads or writes files.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy import stats

from .calibration import check_probabilities
from .config import ConfigError
from .metrics import subset_macro_f1
from .reliability import SCHEMES, ece_floor, expected_calibration_error

#: The drift families of a report, in report order.
FAMILIES = ("features", "class_fractions", "calibration", "performance")
#: Prefix of a class's probability column in a prediction table.
PROB_PREFIX = "prob_"
#: p-value adjustments over the features compared (``features.ks_correction``).
KS_CORRECTIONS = ("holm", "bonferroni", "none")
#: PSI status of a feature by the ``features.psi_warn`` / ``psi_alert`` conventions.
PSI_STATUS = ("stable", "moderate", "major")

#: Every key of a monitoring config the library reads, by node (``""``: the node itself):
#: ``(kind, low, high)``. ``int``: an integer >= low; ``float``: a number in (low, high] (high None: no
#: upper bound); ``float0``: in [low, high]; ``choice``: one of ``low``; ``columns``: null or a list of names.
_KEYS: dict[str, dict[str, tuple]] = {
    "": {"min_objects": ("int", 1, None)},
    "features": {
        "columns": ("columns", None, None), "exclude": ("columns", None, None),
        "n_bins": ("int", 2, None), "epsilon": ("float", 0.0, 1.0), "psi_warn": ("float", 0.0, None),
        "psi_alert": ("float", 0.0, None), "ks_alpha": ("float", 0.0, 1.0),
        "ks_correction": ("choice", KS_CORRECTIONS, None), "ks_min_statistic": ("float0", 0.0, 1.0),
        "missing_alert": ("float", 0.0, 1.0), "top_n": ("int", 1, None),
    },
    "class_fractions": {
        "epsilon": ("float", 0.0, 1.0), "psi_alert": ("float", 0.0, None),
        "total_variation_alert": ("float", 0.0, 1.0), "class_shift_alert": ("float", 0.0, 1.0),
    },
    "calibration": {
        "n_bins": ("int", 1, None), "scheme": ("choice", SCHEMES, None), "ece_increase_alert": ("float", 0.0, 1.0),
        "floor_draws": ("int", 0, None), "seed": ("int", 0, None),
    },
    "performance": {"macro_f1_drop_alert": ("float", 0.0, 1.0), "accuracy_drop_alert": ("float", 0.0, 1.0)},
}
#: Keys of the ``monitor`` node the library ignores (the stage's: where reference and window come from).
STAGE_KEYS = ("reference", "window")
#: Label values that mean "no label" (besides empty and NaN); the predict path writes ``unlabeled``.
UNLABELLED = ("unlabeled", "unlabelled", "nan", "none", "null")


# ----------------------------------------------------------------------------- config
def check_config(config: Mapping[str, Any], prefix: str = "monitor") -> dict:
    """Validate a monitoring config and return it as a plain dict (only the library's keys).

    Every threshold comes from here; nothing has a default in code. Raises
    :class:`~deeprubin.core.config.ConfigError` naming the key (``monitor.features.n_bins``) when
    a key is missing, unknown, of the wrong type or out of range, or ``psi_warn > psi_alert``.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"config key '{prefix}' must be a mapping, got {type(config).__name__}")
    config = _plain(config)
    out: dict[str, Any] = {}
    for node, keys in _KEYS.items():
        where = f"{prefix}.{node}" if node else prefix
        section = config.get(node) if node else config
        if node and not isinstance(section, Mapping):
            raise ConfigError(f"config key '{where}' is missing or not a mapping (got {section!r})")
        known = set(keys) if node else set(keys) | {n for n in _KEYS if n} | set(STAGE_KEYS)
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"config key '{where}.{unknown[0]}' is not a known key of '{where}' (a typo?); "
                              f"known: {sorted(known)}")
        values = {key: _check_value(f"{where}.{key}", section.get(key, _MISSING), *spec) for key, spec in keys.items()}
        if node:
            out[node] = values
        else:
            out.update(values)
    if out["features"]["psi_warn"] > out["features"]["psi_alert"]:
        raise ConfigError(f"config key '{prefix}.features.psi_warn' ({out['features']['psi_warn']}) must not exceed "
                          f"'{prefix}.features.psi_alert' ({out['features']['psi_alert']})")
    return out


_MISSING = object()


def _plain(config: Mapping) -> dict:
    """A plain-dict copy of a mapping or an OmegaConf node (interpolations resolved)."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    return {k: _plain(v) if isinstance(v, Mapping) else v for k, v in config.items()}


def _check_value(key: str, value: Any, kind: str, low: Any, high: Any) -> Any:
    if value is _MISSING:
        raise ConfigError(f"config key '{key}' is missing")
    if kind == "columns":
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key '{key}' must be null or a list of column names, got {value!r}")
        return [str(v) for v in value]
    if kind == "choice":
        if value not in low:
            raise ConfigError(f"config key '{key}' must be one of {list(low)}, got {value!r}")
        return value
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
    if kind == "int":
        if int(value) != value or value < low:
            raise ConfigError(f"config key '{key}' must be an integer >= {low}, got {value!r}")
        return int(value)
    value = float(value)
    closed = kind == "float0"
    if not np.isfinite(value) or (value < low if closed else value <= low) or (high is not None and value > high):
        bounds = (f"in {'[' if closed else '('}{low}, {high}]" if high is not None else f"> {low}")
        raise ConfigError(f"config key '{key}' must be {bounds}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ScoredSample:
    """What is monitored on one side (reference or window); either table may be absent.

    Attributes
    ----------
    features : pandas.DataFrame or None
        One row per object; every numeric column is a feature (unless the config names or
        excludes columns). NaN and infinities are *missing* values.
    predictions : pandas.DataFrame or None
        A prediction table: ``prob_<class>`` for every class of the model (rows summing to one;
        rows whose probabilities are all NaN are objects the model did not classify, counted and
        left out), optionally ``object_id`` (named in errors) and ``label`` (the true class: labelled
        feedback; empty, NaN or a name outside the model's classes means unlabelled).
    name : str
        Named in every error and in the report (a file path, ``"window"``).
    """

    features: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    name: str = "sample"


@dataclass(frozen=True)
class PredictionArrays:
    """A prediction table as arrays (:func:`prediction_arrays`)."""

    probabilities: np.ndarray     # (n, C), the classified objects only
    predicted: np.ndarray         # (n,) class index: arg-max of the probabilities
    labels: np.ndarray            # (n,) class index of the true class, -1 where unlabelled
    n_unclassified: int           # rows with every probability NaN (left out above)
    n_other_labels: int           # labelled rows whose label is not a class of the model (counted unlabelled)

    @property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0


def table_classes(predictions: pd.DataFrame, name: str) -> list[str]:
    """The classes of a prediction table, from its ``prob_<class>`` columns in column order."""
    classes = [str(c)[len(PROB_PREFIX):] for c in predictions.columns if str(c).startswith(PROB_PREFIX)]
    if len(classes) < 2:
        raise ValueError(f"{name}: a prediction table needs a '{PROB_PREFIX}<class>' column for each of at least two "
                         f"classes; columns: {list(map(str, predictions.columns))}")
    return classes


def prediction_arrays(predictions: pd.DataFrame, classes: Sequence[str], name: str) -> PredictionArrays:
    """Probabilities, predicted class and labels of a prediction table, checked.

    Raises
    ------
    ValueError
        Naming ``name`` and the column: a class of ``classes`` without its ``prob_<class>``
        column, a ``prob_`` column of a class not in ``classes`` (another model's table), no
        classified row; naming the object: a row with some but not all probabilities missing,
        probabilities outside [0, 1] or not summing to one
        (:func:`deeprubin.core.calibration.check_probabilities`).
    """
    classes = [str(c) for c in classes]
    present = table_classes(predictions, name)
    missing = [c for c in classes if c not in present]
    if missing:
        raise ValueError(f"{name}: no column '{PROB_PREFIX}{missing[0]}' (expected {PROB_PREFIX}<class> for every "
                         f"class of {classes})")
    extra = [c for c in present if c not in classes]
    if extra:
        raise ValueError(f"{name}: column '{PROB_PREFIX}{extra[0]}' is not a class of the reference {classes}: "
                         "the window was scored by another model")
    p = predictions[[f"{PROB_PREFIX}{c}" for c in classes]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    ids = (predictions["object_id"].astype(str).to_numpy() if "object_id" in predictions.columns
           else np.array([f"row {i}" for i in range(len(predictions))]))
    unclassified = np.isnan(p).all(axis=1)
    partial = np.flatnonzero(np.isnan(p).any(axis=1) & ~unclassified)
    if len(partial):
        raise ValueError(f"{name}: object '{ids[partial[0]]}' has a missing probability in some but not all "
                         f"'{PROB_PREFIX}<class>' columns ({len(partial)} rows in all)")
    keep = ~unclassified
    if not keep.any():
        raise ValueError(f"{name}: no classified object (every row's probabilities are missing)")
    p = check_probabilities(p[keep], name, list(ids[keep]))
    labels = np.full(int(keep.sum()), -1, dtype=np.int64)
    n_other = 0
    if "label" in predictions.columns:
        raw = predictions.loc[keep, "label"]
        given = raw.notna() & ~raw.astype(str).str.strip().str.lower().isin(("",) + UNLABELLED)
        index = {c: i for i, c in enumerate(classes)}
        mapped = raw.astype(str).map(index)
        labels = np.where(given & mapped.notna(), mapped.fillna(-1), -1).astype(np.int64)
        n_other = int((given & mapped.isna()).sum())
    return PredictionArrays(p, p.argmax(axis=1), labels, int(unclassified.sum()), n_other)


def _as_sample(sample: ScoredSample | Mapping, default_name: str) -> ScoredSample:
    if isinstance(sample, ScoredSample):
        return sample
    if isinstance(sample, Mapping):
        unknown = sorted(set(sample) - {"features", "predictions", "name"})
        if unknown:
            raise ValueError(f"{default_name}: unknown field '{unknown[0]}' (known: features, predictions, name)")
        return ScoredSample(sample.get("features"), sample.get("predictions"), str(sample.get("name", default_name)))
    raise TypeError(f"{default_name}: expected a ScoredSample or a mapping, got {type(sample).__name__}")


# ----------------------------------------------------------------------------- single statistics
def finite_values(values: Any) -> np.ndarray:
    """The finite values of a column as float (NaN and infinities dropped: they are *missing*)."""
    x = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(dtype=float)
    return x[np.isfinite(x)]


def missing_fraction(values: Any) -> float:
    """Fraction of values that are NaN or infinite (0 for an empty column)."""
    x = pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(dtype=float)
    return float((~np.isfinite(x)).mean()) if len(x) else 0.0


def quantile_edges(reference: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges at the reference's ``1/n_bins ... (n_bins-1)/n_bins`` quantiles, repeated values
    merged (a feature with few distinct values gets fewer bins; a constant one two: below it and from it)."""
    reference = np.asarray(reference, dtype=float)
    if reference.size == 0:
        raise ValueError("quantile_edges: no reference values")
    return np.unique(np.quantile(reference, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))


def bin_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fraction of ``values`` in each of the ``len(edges) + 1`` bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    values = np.asarray(values, dtype=float)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi_from_fractions(reference: np.ndarray, window: np.ndarray, epsilon: float) -> float:
    """``sum_b (w_b - r_b) ln(w_b / r_b)`` with each fraction floored at ``epsilon`` (an empty bin would give
    ``ln 0``); 0 for identical fractions, symmetric in its arguments."""
    r = np.maximum(np.asarray(reference, dtype=float), epsilon)
    w = np.maximum(np.asarray(window, dtype=float), epsilon)
    return float(np.sum((w - r) * np.log(w / r)))


def population_stability_index(reference: Any, window: Any, n_bins: int, epsilon: float) -> float:
    """PSI of the window's finite values against the reference's, in ``n_bins`` reference-quantile bins.

    Conventions (Siddiqi 2006; Yurdakul 2018): below 0.1 stable, 0.1-0.25 a moderate shift,
    above 0.25 a major one. Empty bins count as ``epsilon`` (:func:`psi_from_fractions`). The
    sampling noise of PSI between two samples of one distribution is about
    ``(bins - 1) (1/n_reference + 1/n_window)``.

    Raises ``ValueError`` when either side has no finite value.
    """
    r, w = finite_values(reference), finite_values(window)
    if r.size == 0 or w.size == 0:
        raise ValueError(f"population_stability_index: no finite {'reference' if r.size == 0 else 'window'} values")
    edges = quantile_edges(r, n_bins)
    return psi_from_fractions(bin_fractions(r, edges), bin_fractions(w, edges), epsilon)


def ks_test(reference: Any, window: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(statistic, p-value)`` on the finite values of each side
    (:func:`scipy.stats.ks_2samp`, two-sided). Raises ``ValueError`` when a side has no finite value."""
    r, w = finite_values(reference), finite_values(window)
    if r.size == 0 or w.size == 0:
        raise ValueError(f"ks_test: no finite {'reference' if r.size == 0 else 'window'} values")
    result = stats.ks_2samp(r, w)
    return float(result.statistic), float(result.pvalue)


def adjust_p_values(p_values: Sequence[float], method: str) -> np.ndarray:
    """Family-wise adjusted p-values: ``holm`` (step-down), ``bonferroni`` (times the number of tests),
    or ``none``; capped at 1."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if method == "none" or m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "holm":
        order = np.argsort(p, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out = np.empty(m)
        out[order] = np.minimum(stepped, 1.0)
        return out
    raise ValueError(f"adjust_p_values: method must be one of {list(KS_CORRECTIONS)}, got {method!r}")


# ----------------------------------------------------------------------------- the families
def _skipped(reason: str, **extra) -> dict:
    return {"alert": False, "skipped": reason, "crossed": [], "reasons": [], **extra}


def feature_columns(reference: pd.DataFrame, window: pd.DataFrame, settings: Mapping, names: tuple[str, str]
                    ) -> tuple[list[str], list[str]]:
    """``(columns compared, reference columns the window lacks)``.

    With ``settings["columns"]`` null: every numeric (not boolean) column of the reference not in
    ``settings["exclude"]``; those the window lacks are listed, not compared. Named columns must be
    numeric columns of both tables (``ValueError`` naming the table and the column).
    """
    exclude = set(settings.get("exclude") or [])
    named = settings.get("columns")
    if named is None:
        candidates = [str(c) for c in reference.columns if str(c) not in exclude
                      and pd.api.types.is_numeric_dtype(reference[c]) and not pd.api.types.is_bool_dtype(reference[c])]
        return [c for c in candidates if c in window.columns], [c for c in candidates if c not in window.columns]
    for table, name in ((reference, names[0]), (window, names[1])):
        for c in named:
            if c not in table.columns:
                raise ValueError(f"{name}: no feature column '{c}' (named in monitor.features.columns)")
            if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c]):
                raise ValueError(f"{name}: feature column '{c}' is not numeric (dtype {table[c].dtype})")
    return [c for c in named if c not in exclude], []


def feature_drift(reference: pd.DataFrame, window: pd.DataFrame, settings: Mapping, min_objects: int,
                  names: tuple[str, str] = ("reference", "window")) -> dict:
    """The ``features`` family: PSI, KS and missing fractions per feature, and the alert.

    A feature alerts when its PSI reaches ``psi_alert``, or its adjusted KS p-value is below
    ``ks_alpha`` with a KS statistic of at least ``ks_min_statistic``, or its missing fraction
    moves by ``missing_alert`` or more. PSI and KS are computed only when both sides have at
    least ``min_objects`` finite values (the missing fractions always are).
    """
    columns, absent = feature_columns(reference, window, settings, names)
    if not columns:
        return _skipped(f"{names[1]} has no feature column of {names[0]}" if len(window.columns) else
                        f"{names[1]} has no feature table", not_in_window=absent)
    if len(window) < min_objects:
        return _skipped(f"{names[1]}: {len(window)} objects with features, fewer than monitor.min_objects "
                        f"({min_objects})", not_in_window=absent)
    per: dict[str, dict] = {}
    tested = []
    for c in columns:
        r, w = finite_values(reference[c]), finite_values(window[c])
        entry = {"n_reference": int(r.size), "n_window": int(w.size),
                 "missing_reference": missing_fraction(reference[c]), "missing_window": missing_fraction(window[c]),
                 "psi": None, "psi_status": None, "ks_statistic": None, "ks_p_value": None, "ks_p_adjusted": None}
        entry["missing_shift"] = entry["missing_window"] - entry["missing_reference"]
        if min(r.size, w.size) >= min_objects:
            entry["psi"] = population_stability_index(r, w, settings["n_bins"], settings["epsilon"])
            entry["psi_status"] = PSI_STATUS[int(entry["psi"] >= settings["psi_warn"]) +
                                             int(entry["psi"] >= settings["psi_alert"])]
            entry["ks_statistic"], entry["ks_p_value"] = ks_test(r, w)
            tested.append(c)
        else:
            entry["not_compared"] = (f"fewer than monitor.min_objects ({min_objects}) finite values "
                                     f"(reference {r.size}, window {w.size})")
        per[c] = entry
    for c, p in zip(tested, adjust_p_values([per[c]["ks_p_value"] for c in tested], settings["ks_correction"])):
        per[c]["ks_p_adjusted"] = float(p)
    reasons: dict[str, str] = {}
    for c, e in per.items():
        why = []
        if e["psi"] is not None and e["psi"] >= settings["psi_alert"]:
            why.append(f"PSI {e['psi']:.3f} >= {settings['psi_alert']}")
        if (e["ks_p_adjusted"] is not None and e["ks_p_adjusted"] < settings["ks_alpha"]
                and e["ks_statistic"] >= settings["ks_min_statistic"]):
            why.append(f"KS D {e['ks_statistic']:.3f} >= {settings['ks_min_statistic']} with adjusted p "
                       f"{e['ks_p_adjusted']:.2g} < {settings['ks_alpha']}")
        if abs(e["missing_shift"]) >= settings["missing_alert"]:
            why.append(f"missing fraction {e['missing_reference']:.3f} -> {e['missing_window']:.3f} "
                       f"(|shift| >= {settings['missing_alert']})")
        e["alert"] = bool(why)
        if why:
            reasons[c] = f"{c}: " + "; ".join(why)
    # the largest PSI first; a feature alerting on its missing fraction alone (no PSI) ahead of all
    order = sorted(reasons, key=lambda c: -(per[c]["psi"] if per[c]["psi"] is not None else np.inf))
    psis = [e["psi"] for e in per.values() if e["psi"] is not None]
    return {
        "alert": bool(order), "skipped": None, "crossed": order, "reasons": [reasons[c] for c in order],
        "warn": sorted((c for c, e in per.items() if e["psi_status"] == "moderate"), key=lambda c: -per[c]["psi"]),
        "n_features": len(columns), "n_compared": len(tested), "not_in_window": absent,
        "n_reference": int(len(reference)), "n_window": int(len(window)),
        "max_psi": max(psis) if psis else None, "per_feature": per,
    }


def class_fraction_drift(reference: PredictionArrays, window: PredictionArrays, classes: Sequence[str],
                         settings: Mapping, min_objects: int) -> dict:
    """The ``class_fractions`` family: fractions predicted as each class, PSI over classes, total
    variation distance ``0.5 sum_k |w_k - r_k|`` and per-class shifts ``w_k - r_k``; alerts when
    PSI reaches ``psi_alert``, the distance ``total_variation_alert``, or a class's |shift|
    ``class_shift_alert``."""
    classes = [str(c) for c in classes]
    n_r, n_w = len(reference.predicted), len(window.predicted)
    if min(n_r, n_w) < min_objects:
        return _skipped(f"{n_r} reference and {n_w} window objects classified; each needs monitor.min_objects "
                        f"({min_objects})", n_reference=n_r, n_window=n_w)
    r = np.bincount(reference.predicted, minlength=len(classes)) / n_r
    w = np.bincount(window.predicted, minlength=len(classes)) / n_w
    shift = w - r
    psi = psi_from_fractions(r, w, settings["epsilon"])
    tv = float(0.5 * np.abs(shift).sum())
    crossed = [c for c, s in zip(classes, shift) if abs(s) >= settings["class_shift_alert"]]
    reasons = [f"{c}: predicted fraction {r[k]:.3f} -> {w[k]:.3f} (|shift| >= {settings['class_shift_alert']})"
               for k, c in enumerate(classes) if c in crossed]
    if psi >= settings["psi_alert"]:
        reasons.append(f"PSI over classes {psi:.3f} >= {settings['psi_alert']}")
    if tv >= settings["total_variation_alert"]:
        reasons.append(f"total variation distance {tv:.3f} >= {settings['total_variation_alert']}")
    return {
        "alert": bool(reasons), "skipped": None, "crossed": crossed, "reasons": reasons,
        "n_reference": n_r, "n_window": n_w, "n_unclassified_window": window.n_unclassified,
        "reference": dict(zip(classes, r.tolist())), "window": dict(zip(classes, w.tolist())),
        "shift": dict(zip(classes, shift.tolist())), "psi": psi, "total_variation": tv,
    }


def _labelled_reason(reference: PredictionArrays, window: PredictionArrays, min_objects: int) -> str | None:
    n_r, n_w = int(reference.labelled.sum()), int(window.labelled.sum())
    if n_w == 0:
        return "the window has no labelled object (no labelled feedback)"
    if n_r == 0:
        return "the reference predictions have no labels"
    if min(n_r, n_w) < min_objects:
        return (f"{n_r} reference and {n_w} window objects labelled with a class of the model; each needs "
                f"monitor.min_objects ({min_objects})")
    return None


def calibration_drift(reference: PredictionArrays, window: PredictionArrays, settings: Mapping,
                      min_objects: int) -> dict:
    """The ``calibration`` family on the labelled objects: top-label ECE of the window against the
    reference's; alerts when it rose by ``ece_increase_alert`` or more *and* lies above the 95th
    percentile of the window's noise floor (the ECE of perfectly calibrated labels drawn from the
    window's own probabilities, ``floor_draws`` draws; 0 draws: no floor)."""
    reason = _labelled_reason(reference, window, min_objects)
    if reason is not None:
        return _skipped(reason, n_labelled_window=int(window.labelled.sum()))
    n_bins, scheme = settings["n_bins"], settings["scheme"]
    rp, ry = reference.probabilities[reference.labelled], reference.labels[reference.labelled]
    wp, wy = window.probabilities[window.labelled], window.labels[window.labelled]
    ece_r = expected_calibration_error(rp, ry, n_bins, scheme)
    ece_w = expected_calibration_error(wp, wy, n_bins, scheme)
    floor = (ece_floor(wp, n_bins, scheme, settings["floor_draws"], settings["seed"])
             if settings["floor_draws"] > 0 else None)
    increase = ece_w - ece_r
    above_floor = floor is None or ece_w > floor["p95"]
    crossed, reasons = [], []
    if increase >= settings["ece_increase_alert"] and above_floor:
        crossed = ["ece"]
        reasons = [f"ECE {ece_r:.3f} -> {ece_w:.3f} (increase >= {settings['ece_increase_alert']}"
                   + (f", above the window's noise floor p95 {floor['p95']:.3f})" if floor else ")")]
    return {
        "alert": bool(crossed), "skipped": None, "crossed": crossed, "reasons": reasons,
        "n_labelled_reference": int(len(ry)), "n_labelled_window": int(len(wy)),
        "n_other_labels_window": window.n_other_labels, "n_bins": n_bins, "scheme": scheme,
        "reference_ece": ece_r, "window_ece": ece_w, "increase": increase, "window_floor": floor,
        "reference_confidence": float(rp.max(axis=1).mean()), "window_confidence": float(wp.max(axis=1).mean()),
    }


def performance_regression(reference: PredictionArrays, window: PredictionArrays, classes: Sequence[str],
                           settings: Mapping, min_objects: int) -> dict:
    """The ``performance`` family on the labelled objects: macro-F1 over the classes present in the
    window's labels (the same classes on both sides, each class's F1 against every object) and
    accuracy; alerts when either dropped from the reference by its ``*_drop_alert`` or more."""
    reason = _labelled_reason(reference, window, min_objects)
    if reason is not None:
        return _skipped(reason, n_labelled_window=int(window.labelled.sum()))
    classes = [str(c) for c in classes]
    ry, rp = reference.labels[reference.labelled], reference.predicted[reference.labelled]
    wy, wp = window.labels[window.labelled], window.predicted[window.labelled]
    subset = sorted(set(wy.tolist()))
    scores = {}
    for side, y, p in (("reference", ry, rp), ("window", wy, wp)):
        scores[side] = {"macro_f1": subset_macro_f1(y, p, subset), "accuracy": float((y == p).mean())}
    drop = {k: scores["reference"][k] - scores["window"][k] for k in ("macro_f1", "accuracy")}
    crossed, reasons = [], []
    for metric in ("macro_f1", "accuracy"):
        limit = settings[f"{metric}_drop_alert"]
        if drop[metric] >= limit:
            crossed.append(metric)
            reasons.append(f"{metric} {scores['reference'][metric]:.3f} -> {scores['window'][metric]:.3f} "
                           f"(drop >= {limit})")
    per_class = {}
    for k in subset:
        per_class[classes[k]] = {side: subset_macro_f1(y, p, [k])
                                 for side, y, p in (("reference", ry, rp), ("window", wy, wp))}
    return {
        "alert": bool(crossed), "skipped": None, "crossed": crossed, "reasons": reasons,
        "classes": [classes[k] for k in subset], "n_labelled_reference": int(len(ry)),
        "n_labelled_window": int(len(wy)), "reference": scores["reference"], "window": scores["window"],
        "drop": drop, "per_class_f1": per_class,
    }


# ----------------------------------------------------------------------------- the report
def monitor_window(reference: ScoredSample | Mapping, window: ScoredSample | Mapping, config: Mapping,
                   classes: Sequence[str] | None = None) -> dict:
    """Compare a window of scored inputs with the reference; the report of every drift family.

    Parameters
    ----------
    reference, window : ScoredSample or mapping with ``features``, ``predictions``, ``name``
        E.g. reference: the training split's features and the test split's predictions (with
        labels); window: what the service, the stream or a batch scored (labels optional).
    config : mapping
        The monitoring config (:func:`check_config` validates it; ``conf/monitor/default.yaml``).
    classes : sequence of str, optional
        The model's classes; default: the reference predictions' ``prob_<class>`` columns, else the
        window's.

    Returns
    -------
    dict
        ``alert`` (any family alerted), ``alerts`` (those families), ``families`` (per family:
        ``alert``, ``crossed``, ``reasons``, ``skipped`` and its statistics), ``classes``,
        ``names`` and the ``thresholds`` applied.

    Raises
    ------
    deeprubin.core.config.ConfigError
        A config key missing, unknown or out of range (naming it).
    ValueError
        A table that cannot be read as described (naming the sample and the column or object);
        a window with neither features nor predictions.
    """
    settings = check_config(config)
    reference, window = _as_sample(reference, "reference"), _as_sample(window, "window")
    if window.features is None and window.predictions is None:
        raise ValueError(f"{window.name}: nothing to monitor (neither a feature nor a prediction table)")
    if reference.features is None and reference.predictions is None:
        raise ValueError(f"{reference.name}: nothing to compare with (neither a feature nor a prediction table)")
    min_objects = settings["min_objects"]
    families: dict[str, dict] = {}
    if reference.features is None or window.features is None:
        families["features"] = _skipped(f"{(window if window.features is None else reference).name} has no "
                                        "feature table")
    else:
        families["features"] = feature_drift(reference.features, window.features, settings["features"], min_objects,
                                             (reference.name, window.name))
    if classes is None and (reference.predictions is not None or window.predictions is not None):
        source = reference if reference.predictions is not None else window
        classes = table_classes(source.predictions, source.name)
    classes = [str(c) for c in classes or []]
    if reference.predictions is None or window.predictions is None:
        reason = f"{(window if window.predictions is None else reference).name} has no prediction table"
        for family in FAMILIES[1:]:
            families[family] = _skipped(reason)
    else:
        ref = prediction_arrays(reference.predictions, classes, reference.name)
        win = prediction_arrays(window.predictions, classes, window.name)
        families["class_fractions"] = class_fraction_drift(ref, win, classes, settings["class_fractions"], min_objects)
        families["calibration"] = calibration_drift(ref, win, settings["calibration"], min_objects)
        families["performance"] = performance_regression(ref, win, classes, settings["performance"], min_objects)
    alerts = [f for f in FAMILIES if families[f]["alert"]]
    return {"alert": bool(alerts), "alerts": alerts, "families": families, "classes": classes,
            "names": {"reference": reference.name, "window": window.name}, "thresholds": settings}


__all__ = ["FAMILIES", "KS_CORRECTIONS", "PredictionArrays", "ScoredSample", "adjust_p_values", "bin_fractions",
           "calibration_drift", "check_config", "class_fraction_drift", "feature_columns", "feature_drift",
           "finite_values", "ks_test", "missing_fraction", "monitor_window", "performance_regression",
           "population_stability_index", "prediction_arrays", "psi_from_fractions", "quantile_edges",
           "table_classes"]
