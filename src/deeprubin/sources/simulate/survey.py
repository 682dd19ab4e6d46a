"""Simulate a ZTF-like survey: draw sources, observe them, return the canonical tables.

Random streams are derived from ``(seed, purpose, class label, ...)`` with
:class:`numpy.random.SeedSequence`, never from the order of a dict: the same
configuration and seed give identical tables, and a class's sources do not
change when another class is added (only the shuffled object numbers do).
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deeprubin.schema import flux_to_mag
from deeprubin.sources.simulate.cadence import (
    DETECTION_SNR,
    SUPPORTED_BANDS,
    SimulationConfigError,
    SurveyConfig,
    draw_field_depth,
    draw_schedule,
    draw_season_starts,
    lost_nights,
    observe,
    visible_windows,
)
from deeprubin.sources.simulate.classes import CLASS_MODELS, ClassModel

__all__ = ["SimulationConfigError", "TRUTH_COLUMNS", "class_counts", "simulate_survey"]

#: Value of the ``source`` column of the objects table.
SOURCE_NAME = "simulate"

#: Truth columns always present in the objects table (NaN where not applicable).
#: Magnitudes are AB, times MJD or observer-frame days.
TRUTH_COLUMNS = (
    "truth_peak_mjd",         # transients: time of r-band maximum
    "truth_peak_mag_g",       # brightest noise-free magnitude (transients, pulsators)
    "truth_peak_mag_r",
    "truth_mean_mag_g",       # pulsators: midway between max and min; QSO: mean of the DRW
    "truth_mean_mag_r",
    "truth_abs_peak_mag_r",   # transients: absolute r peak magnitude
    "truth_rise_days",        # transients: Villar logistic rise timescale (r)
    "truth_fall_days",        # transients: Villar exponential decline timescale (r)
    "truth_plateau_days",     # transients: Villar plateau length
    "truth_period_days",      # pulsators
    "truth_amplitude_mag",    # pulsators: r-band peak-to-peak amplitude
    "truth_tau_days",         # QSO: DRW damping timescale, observer frame
    "truth_sf_inf_mag",       # QSO: DRW asymptotic structure function, r band
    "truth_lim_mag_median",   # median 5-sigma depth of the source's field
    "truth_season_start_mjd", # start of the source's first visibility season
)

#: Transient peaks are placed at least this far (days) inside a visibility
#: window (at most a quarter of the window), so the peak is usually sampled.
PEAK_EDGE_MARGIN_DAYS = 10.0

#: ZTF observes north of declination -30 deg (Bellm et al. 2019).
MIN_DEC_DEG = -30.0

#: Minimum digits of the object number in ``sim000123``.
ID_DIGITS = 6

#: Keys that select a random stream (the second entry of every spawn key).
_STREAM_IDS, _STREAM_WEATHER, _STREAM_CLASS = 0, 1, 2
#: Per-class sub-streams.
_PARAMS, _SKY, _CADENCE, _VARIABILITY, _NOISE = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class SimulationConfig:
    """Validated top-level configuration.

    Attributes
    ----------
    n_objects : int
        Number of distinct sources (duplicates from overlapping fields come on top).
    class_fractions : dict of str -> float
        Relative weight of every class in ``classes`` (0 for those left out).
    overlap_fraction : float
        Fraction of sources observed a second time, in [0, 1).
    survey : SurveyConfig
    """

    n_objects: int
    class_fractions: dict[str, float]
    overlap_fraction: float
    survey: SurveyConfig


# --------------------------------------------------------------------------- configuration

def _as_dict(node, key: str) -> dict:
    """A mapping (dict or OmegaConf DictConfig) as a plain dict; None -> {}."""
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise SimulationConfigError(f"{key}: expected a mapping, got {type(node).__name__} {node!r}")
    return dict(node)


def _number(value, key: str) -> float:
    """A finite real number, or a SimulationConfigError naming ``key``."""
    if isinstance(value, bool) or value is None:
        raise SimulationConfigError(f"{key}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SimulationConfigError(f"{key}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SimulationConfigError(f"{key}: expected a finite number, got {value!r}")
    return number


def _check(ok: bool, key: str, requirement: str, value) -> None:
    if not ok:
        raise SimulationConfigError(f"{key}: must be {requirement}, got {value!r}")


def parse_survey(node) -> SurveyConfig:
    """Validate the ``survey`` section; missing keys take the :class:`SurveyConfig` defaults.

    Unknown keys are errors (a typo such as ``cadence_day`` must not silently
    fall back to the default).
    """
    raw = _as_dict(node, "survey")
    allowed = [f.name for f in dataclasses.fields(SurveyConfig)]
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise SimulationConfigError(f"survey.{unknown[0]}: unknown key; allowed keys: {allowed}")
    values = {k: _number(v, f"survey.{k}") for k, v in raw.items()}
    survey = SurveyConfig(**values)
    s = survey
    _check(s.duration_days > 0, "survey.duration_days", "> 0", s.duration_days)
    _check(0 < s.season_length_days <= 365, "survey.season_length_days", "in (0, 365]", s.season_length_days)
    _check(s.cadence_days > 0, "survey.cadence_days", "> 0", s.cadence_days)
    _check(s.nightly_scatter_hours >= 0, "survey.nightly_scatter_hours", ">= 0", s.nightly_scatter_hours)
    _check(0 <= s.weather_loss_fraction < 1, "survey.weather_loss_fraction", "in [0, 1)",
           s.weather_loss_fraction)
    _check(s.lim_mag_scatter >= 0, "survey.lim_mag_scatter", ">= 0", s.lim_mag_scatter)
    return survey


def _parse_labels(values, key: str, allowed: Sequence[str]) -> list[str]:
    """A non-empty list of distinct names, each in ``allowed``."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise SimulationConfigError(f"{key}: expected a list of names, got {values!r}")
    names = [str(v) for v in values]
    if not names:
        raise SimulationConfigError(f"{key}: must not be empty")
    for name in names:
        if name not in allowed:
            raise SimulationConfigError(f"{key}: unknown value {name!r}; supported: {list(allowed)}")
    if len(set(names)) != len(names):
        raise SimulationConfigError(f"{key}: duplicated entries in {names}")
    return names


def _parse_fractions(node, classes: list[str]) -> dict[str, float]:
    """Relative class weights; ``None`` means balanced over ``classes``."""
    if node is None:
        return {label: 1.0 for label in classes}
    raw = _as_dict(node, "class_fractions")
    weights = {label: 0.0 for label in classes}
    for label, value in raw.items():
        label = str(label)
        if label not in classes:
            raise SimulationConfigError(
                f"class_fractions: unknown class {label!r}; the task's classes are {classes}")
        weight = _number(value, f"class_fractions.{label}")
        _check(weight >= 0, f"class_fractions.{label}", ">= 0", value)
        weights[label] = weight
    if sum(weights.values()) <= 0:
        raise SimulationConfigError(f"class_fractions: all weights are zero: {raw}")
    return weights


def parse_config(config: Mapping, classes: Sequence[str]) -> SimulationConfig:
    """Validate the source configuration.

    Keys other than ``n_objects``, ``class_fractions``, ``overlap_fraction`` and
    ``survey`` (e.g. ``name``, ``validation``) belong to other parts of the
    pipeline and are ignored.
    """
    cfg = _as_dict(config, "config")
    if "n_objects" not in cfg:
        raise SimulationConfigError("n_objects: missing (number of sources to simulate)")
    n_raw = cfg["n_objects"]
    n = _number(n_raw, "n_objects")
    _check(n == int(n) and n > 0, "n_objects", "a positive integer", n_raw)
    overlap = _number(cfg.get("overlap_fraction", 0.1), "overlap_fraction")
    _check(0 <= overlap < 1, "overlap_fraction", "in [0, 1)", overlap)
    return SimulationConfig(
        n_objects=int(n),
        class_fractions=_parse_fractions(cfg.get("class_fractions"), list(classes)),
        overlap_fraction=overlap,
        survey=parse_survey(cfg.get("survey")),
    )


def class_counts(n_objects: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Exact integer counts summing to ``n_objects`` (largest-remainder rounding).

    Ties in the remainders go to the alphabetically first label, so the result
    does not depend on the order of ``weights``.
    """
    labels = sorted(weights)
    w = np.array([weights[k] for k in labels], dtype=float)
    quota = n_objects * w / w.sum()
    counts = np.floor(quota).astype(int)
    remainder = quota - counts
    order = sorted(range(len(labels)), key=lambda i: (-remainder[i], labels[i]))
    for i in order[: n_objects - int(counts.sum())]:
        counts[i] += 1
    return {label: int(c) for label, c in zip(labels, counts)}


# --------------------------------------------------------------------------- random streams

def _label_key(name: str) -> int:
    """Stable integer for a label (crc32: unlike hash(), identical across processes)."""
    return zlib.crc32(name.encode("utf-8"))


def _stream(seed: int, *keys: int) -> np.random.Generator:
    """Independent generator for ``(seed, *keys)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(keys)))


# --------------------------------------------------------------------------- per-class simulation

def draw_sky_positions(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions uniform on the sphere north of :data:`MIN_DEC_DEG`; degrees, shape ``(n,)`` each."""
    ra = 360.0 * rng.random(n)
    sin_lo = np.sin(np.radians(MIN_DEC_DEG))
    dec = np.degrees(np.arcsin(sin_lo + (1.0 - sin_lo) * rng.random(n)))
    return ra, dec


def draw_peak_times(rng: np.random.Generator, season_start: np.ndarray, survey: SurveyConfig) -> np.ndarray:
    """Transient peak times (MJD), uniform over the visible part of the survey, shape ``(n,)``.

    Each visibility window is first shrunk by :data:`PEAK_EDGE_MARGIN_DAYS` (at
    most a quarter of its length) on both sides, so rise and decline are usually
    sampled too.
    """
    starts, ends = visible_windows(season_start, survey)
    shrink = np.minimum(PEAK_EDGE_MARGIN_DAYS, 0.25 * (ends - starts))
    starts, ends = starts + shrink, ends - shrink
    length = ends - starts
    cum = np.cumsum(length, axis=1)
    target = rng.random(len(season_start)) * cum[:, -1]
    window = np.minimum((cum <= target[:, None]).sum(axis=1), length.shape[1] - 1)
    rows = np.arange(len(window))
    return starts[rows, window] + target - (cum[rows, window] - length[rows, window])


def _object_ids(numbers: np.ndarray, n_objects: int) -> np.ndarray:
    width = max(ID_DIGITS, len(str(n_objects - 1)))
    return np.array([f"sim{k:0{width}d}" for k in numbers], dtype=object)


@dataclass
class _ClassResult:
    """Observations (flat arrays) and objects rows of one class."""

    realisation: np.ndarray  # index into objects rows of this class
    time: np.ndarray
    band: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    objects: pd.DataFrame


def _simulate_class(model: ClassModel, numbers: np.ndarray, cfg: SimulationConfig, bands: list[str],
                    seed: int, lost: np.ndarray) -> _ClassResult:
    """Simulate every source of one class (``numbers``: their object numbers)."""
    key = _label_key(model.label)
    n = len(numbers)
    survey = cfg.survey
    params = model.sample_params(_stream(seed, _STREAM_CLASS, key, _PARAMS), n).reset_index(drop=True)

    sky = _stream(seed, _STREAM_CLASS, key, _SKY)
    ra, dec = draw_sky_positions(sky, n)
    season = draw_season_starts(sky, n, survey)
    depth = draw_field_depth(sky, n, survey)
    if model.is_transient:
        params["truth_peak_mjd"] = draw_peak_times(sky, season, survey)
    n_dup = int(np.floor(cfg.overlap_fraction * n + 0.5))
    duplicated = np.sort(sky.choice(n, size=n_dup, replace=False))
    source_of = np.concatenate([np.arange(n), duplicated])  # realisation -> source

    band_rngs = {b: _stream(seed, _STREAM_CLASS, key, _CADENCE, _label_key(b)) for b in bands}
    schedule = draw_schedule(band_rngs, season[source_of], depth[source_of], survey, bands, lost)
    true_flux = model.true_flux(params, source_of[schedule.realisation], schedule.time, schedule.band,
                                _stream(seed, _STREAM_CLASS, key, _VARIABILITY))
    flux, flux_err = observe(_stream(seed, _STREAM_CLASS, key, _NOISE), true_flux, schedule.lim_mag)

    objects = _objects_rows(model.label, numbers, cfg.n_objects, source_of, params,
                            ra=ra, dec=dec, season=season, depth=depth)
    return _ClassResult(schedule.realisation, schedule.time, schedule.band, flux, flux_err, objects)


def _objects_rows(label: str, numbers: np.ndarray, n_objects: int, source_of: np.ndarray,
                  params: pd.DataFrame, *, ra, dec, season, depth) -> pd.DataFrame:
    """Objects-table rows of one class, one per realisation (duplicates share truth and group)."""
    n = len(numbers)
    base = _object_ids(numbers, n_objects)
    ids = np.concatenate([base, np.array([f"{oid}_f2" for oid in base[source_of[n:]]], dtype=object)])
    per_source = params.copy()
    per_source["ra"], per_source["dec"] = ra, dec
    per_source["truth_lim_mag_median"] = depth
    per_source["truth_season_start_mjd"] = season
    per_source = per_source.iloc[source_of].reset_index(drop=True)
    table = pd.DataFrame({"object_id": ids, "label": label, "group_id": base[source_of],
                          "source": SOURCE_NAME})
    extra = [c for c in per_source.columns if c.startswith("truth_") and c not in TRUTH_COLUMNS]
    for column in ("ra", "dec", "redshift", *TRUTH_COLUMNS, *extra):
        table[column] = per_source[column].to_numpy(dtype=float) if column in per_source else np.nan
    return table


# --------------------------------------------------------------------------- assembly

def _assemble(results: list[_ClassResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate per-class results into the two sorted canonical tables."""
    objects = pd.concat([r.objects for r in results], ignore_index=True)
    offsets = np.cumsum([0] + [len(r.objects) for r in results[:-1]])
    realisation = np.concatenate([r.realisation + o for r, o in zip(results, offsets)])
    time = np.concatenate([r.time for r in results])
    band = np.concatenate([r.band for r in results])
    flux = np.concatenate([r.flux for r in results])
    flux_err = np.concatenate([r.flux_err for r in results])

    # Sort through integer ranks: far faster than sorting a million strings.
    id_order = np.argsort(objects["object_id"].to_numpy(dtype=str), kind="stable")
    rank = np.empty(len(id_order), dtype=np.int64)
    rank[id_order] = np.arange(len(id_order))
    order = np.lexsort((band, time, rank[realisation]))
    realisation, time, band, flux, flux_err = (a[order] for a in (realisation, time, band, flux, flux_err))

    mag, mag_err = flux_to_mag(flux, flux_err)
    lightcurves = pd.DataFrame({
        "object_id": objects["object_id"].to_numpy()[realisation],
        "time": time,
        "band": np.array(SUPPORTED_BANDS, dtype=object)[band],
        "flux": flux,
        "flux_err": flux_err,
        "mag": mag,
        "mag_err": mag_err,
        "detected": flux / flux_err >= DETECTION_SNR,
    })
    objects = objects.iloc[id_order].reset_index(drop=True)
    return lightcurves, objects


def simulate_survey(config: Mapping, *, seed: int, classes: Sequence[str],
                    bands: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate a ZTF-like survey of variable and transient sources.

    Parameters
    ----------
    config : Mapping
        Plain dict or OmegaConf ``DictConfig`` with ``n_objects`` (int, number
        of distinct sources), ``class_fractions`` (label -> relative weight, or
        None for balanced), ``overlap_fraction`` (default 0.1) and ``survey``
        (see :class:`~deeprubin.sources.simulate.cadence.SurveyConfig`; missing
        keys take its defaults). Other keys are ignored.
    seed : int
        Non-negative seed; the same config and seed give identical tables.
    classes : sequence of str
        Labels to simulate, each a key of
        :data:`~deeprubin.sources.simulate.classes.CLASS_MODELS`.
    bands : sequence of str
        Bands to observe, a subset of ``("g", "r")``.

    Returns
    -------
    lightcurves : pandas.DataFrame, shape (n_obs, 8)
        ``object_id``, ``time`` (MJD), ``band``, ``flux``, ``flux_err``
        (microjansky), ``mag``, ``mag_err`` (AB; NaN where flux <= 0) and
        ``detected`` (flux / flux_err >= 5), sorted by object_id then time.
    objects : pandas.DataFrame, shape (n_objects + n_duplicates, ...)
        ``object_id`` (``sim000123``; a source seen again in an overlapping field
        adds ``sim000123_f2`` with the same truth and ``group_id``), ``label``,
        ``group_id``, ``source`` (``"simulate"``), ``ra``, ``dec`` (deg),
        ``redshift`` (NaN for Galactic classes) and :data:`TRUTH_COLUMNS`
        (NaN where not applicable), sorted by object_id.

    Raises
    ------
    SimulationConfigError
        For an invalid configuration; the message names the offending key.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimulationConfigError(f"seed: must be a non-negative integer, got {seed!r}")
    classes = _parse_labels(classes, "classes", list(CLASS_MODELS))
    bands = _parse_labels(bands, "bands", SUPPORTED_BANDS)
    cfg = parse_config(config, classes)
    seed = int(seed)

    counts = class_counts(cfg.n_objects, cfg.class_fractions)
    # Object numbers are a random permutation, so an id never reveals the class.
    numbers = _stream(seed, _STREAM_IDS).permutation(cfg.n_objects)
    lost = lost_nights(_stream(seed, _STREAM_WEATHER), cfg.survey)
    results, start = [], 0
    for label in sorted(counts):
        if counts[label] == 0:
            continue
        block = numbers[start:start + counts[label]]
        start += counts[label]
        results.append(_simulate_class(CLASS_MODELS[label], block, cfg, bands, seed, lost))
    return _assemble(results)
