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

from deeprubin.core.schema import flux_to_mag
from deeprubin.sources.simulate.cadence import (
    DETECTION_SNR,
    MIN_POINTS_PER_OBJECT,
    SUPPORTED_BANDS,
    SimulationConfigError,
    SurveyConfig,
    draw_field_cadence,
    draw_field_depth,
    draw_schedule,
    draw_season_starts,
    lost_nights,
    observe,
    visible_windows,
)
from deeprubin.sources.simulate.classes import CLASS_MODELS, ClassModel
from deeprubin.sources.simulate.population import (
    DEFAULT_PERIOD_RANGES,
    DEPTH_MARGIN_SIGMA,
    PopulationConfig,
)

__all__ = ["OUTPUT_MODES", "SURVEY_LIKE_FRACTIONS", "SimulationConfigError", "TRUTH_COLUMNS", "class_counts",
           "simulate_survey"]

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
    "truth_abs_peak_mag_r",   # transients: absolute r peak magnitude (no K-correction)
    "truth_distmod",          # transients: Planck 2018 distance modulus
    "truth_mw_ebv",           # Milky Way E(B-V) of the sight line
    "truth_rise_days",        # transients: rise timescale (r; Villar tau_rise, SN Ia half-flux rise)
    "truth_fall_days",        # transients: decline timescale (r; Villar tau_fall, SN Ia half-flux fade)
    "truth_plateau_days",     # Villar transients: plateau length
    "truth_period_days",      # pulsators and eclipsing binaries
    "truth_amplitude_mag",    # pulsators: r peak-to-peak amplitude; EB: r primary eclipse depth
    "truth_tau_days",         # QSO: DRW damping timescale, observer frame
    "truth_sf_inf_mag",       # QSO: DRW asymptotic structure function, r band
    "truth_lim_mag_median",   # median 5-sigma depth of the source's field
    "truth_season_start_mjd", # start of the source's first visibility season
    "truth_n_detections",     # epochs of this realisation with SNR >= 5 (selection quantity)
)

#: ``source.output`` values: every epoch as forced photometry, or alert-style
#: detections only (non-detections summarised in the objects table, as for real
#: ZTF alerts in :mod:`deeprubin.sources.ztf_alerts`).
OUTPUT_MODES = ("forced", "alert")

#: ``class_fractions: survey``: the class mix of a real labelled ZTF set, the
#: training set of the ALeRCE light-curve classifier (Sanchez-Saez et al. 2021,
#: AJ 161, 141, Table 1; "E" = eclipsing binaries, "RRL" = RR Lyrae, "CEP" = Cepheids).
SURVEY_LIKE_FRACTIONS = {"SNIa": 1272, "SNIbc": 94, "SNII": 328, "SLSN": 24, "QSO": 26168,
                         "Cepheid": 618, "RRLyrae": 32482, "EB": 37901}

#: Candidate batches drawn per class before the selection is declared hopeless.
MAX_SELECTION_BATCHES = 40
#: Smallest candidate batch, and the cap on the oversampling factor of a batch.
MIN_BATCH, MAX_OVERSAMPLE = 64, 200.0

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
_PARAMS, _SKY, _CADENCE, _VARIABILITY, _NOISE, _DUPLICATES = 0, 1, 2, 3, 4, 5


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
    population : PopulationConfig
    output : str
        One of :data:`OUTPUT_MODES`.
    """

    n_objects: int
    class_fractions: dict[str, float]
    overlap_fraction: float
    survey: SurveyConfig
    population: PopulationConfig
    output: str = "forced"


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
    _check(0 <= s.calibration_floor < 1, "survey.calibration_floor", "in [0, 1)", s.calibration_floor)
    _check(0 <= s.cadence_field_spread <= 3, "survey.cadence_field_spread", "in [0, 3] (octaves)",
           s.cadence_field_spread)
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
    """Relative class weights; ``None`` means balanced over ``classes``, ``"survey"`` the
    :data:`SURVEY_LIKE_FRACTIONS` mix (restricted to ``classes``)."""
    if node is None:
        return {label: 1.0 for label in classes}
    if isinstance(node, str):
        if node != "survey":
            raise SimulationConfigError(f"class_fractions: expected null, 'survey' or a mapping, got {node!r}")
        return {label: float(SURVEY_LIKE_FRACTIONS.get(label, 0.0)) for label in classes}
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


def parse_population(node, survey: SurveyConfig, output: str) -> PopulationConfig:
    """Validate ``population``; missing keys take the :class:`PopulationConfig` defaults.

    Raises :class:`SimulationConfigError` naming the key for a negative or
    inverted redshift range, a period range with a bound <= 0, an unknown key or
    class, or ``min_detections`` below the alert-mode minimum.
    """
    raw = _as_dict(node, "population")
    allowed = ["min_detections", "redshift_min", "redshift_max", "mw_ebv_mean", "period_ranges_days",
               "max_peak_mag", "spectroscopic_fraction", "spectroscopic_peak_mag", "snia_dust_tau"]
    unknown = sorted(set(map(str, raw)) - set(allowed))
    if unknown:
        raise SimulationConfigError(f"population.{unknown[0]}: unknown key; allowed keys: {allowed}")
    d = PopulationConfig()
    min_det = _number(raw.get("min_detections", d.min_detections), "population.min_detections")
    floor = MIN_POINTS_PER_OBJECT if output == "alert" else 0
    _check(min_det == int(min_det) and min_det >= floor, "population.min_detections",
           f"an integer >= {floor} (output: {output})", min_det)
    z_min = _number(raw.get("redshift_min", d.redshift_min), "population.redshift_min")
    z_max = _number(raw.get("redshift_max", d.redshift_max), "population.redshift_max")
    _check(z_min > 0, "population.redshift_min", "> 0 (redshifts are positive)", z_min)
    _check(z_min < z_max <= 6.0, "population.redshift_max", f"in (redshift_min={z_min}, 6]", z_max)
    ebv = _number(raw.get("mw_ebv_mean", d.mw_ebv_mean), "population.mw_ebv_mean")
    _check(0 <= ebv <= 1, "population.mw_ebv_mean", "in [0, 1] mag", ebv)
    periods = dict(DEFAULT_PERIOD_RANGES)
    for label, bounds in _as_dict(raw.get("period_ranges_days"), "population.period_ranges_days").items():
        key = f"population.period_ranges_days.{label}"
        if str(label) not in DEFAULT_PERIOD_RANGES:
            raise SimulationConfigError(f"{key}: unknown periodic class; supported {sorted(DEFAULT_PERIOD_RANGES)}")
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
            raise SimulationConfigError(f"{key}: expected [min, max] in days, got {bounds!r}")
        lo, hi = (_number(b, key) for b in bounds)
        _check(lo > 0, key, "a period range with min > 0 days", list(bounds))
        _check(hi > lo, key, "a period range with max > min", list(bounds))
        periods[str(label)] = (lo, hi)
    deepest = survey.lim_mag_median + DEPTH_MARGIN_SIGMA * survey.lim_mag_scatter
    max_peak = raw.get("max_peak_mag")
    if max_peak is not None:
        max_peak = _number(max_peak, "population.max_peak_mag")
        _check(max_peak > 10.0, "population.max_peak_mag", "> 10 mag (or null)", max_peak)
    spec_fraction = _number(raw.get("spectroscopic_fraction", d.spectroscopic_fraction),
                            "population.spectroscopic_fraction")
    _check(0.0 <= spec_fraction <= 1.0, "population.spectroscopic_fraction", "in [0, 1]", spec_fraction)
    spec_mag = _number(raw.get("spectroscopic_peak_mag", d.spectroscopic_peak_mag), "population.spectroscopic_peak_mag")
    _check(spec_mag > 10.0, "population.spectroscopic_peak_mag", "> 10 mag", spec_mag)
    dust_tau = raw.get("snia_dust_tau")
    if dust_tau is not None:
        dust_tau = _number(dust_tau, "population.snia_dust_tau")
        _check(0.0 < dust_tau <= 0.5, "population.snia_dust_tau", "in (0, 0.5] mag (or null)", dust_tau)
    return PopulationConfig(min_detections=int(min_det), redshift_min=z_min, redshift_max=z_max,
                            mw_ebv_mean=ebv, period_ranges=periods, deepest_mag=deepest, max_peak_mag=max_peak,
                            spectroscopic_fraction=spec_fraction, spectroscopic_peak_mag=spec_mag,
                            snia_dust_tau=dust_tau)


def parse_config(config: Mapping, classes: Sequence[str]) -> SimulationConfig:
    """Validate the source configuration.

    Keys other than ``n_objects``, ``class_fractions``, ``overlap_fraction``,
    ``output``, ``population`` and ``survey`` (e.g. ``name``, ``validation``)
    belong to other parts of the pipeline and are ignored.
    """
    cfg = _as_dict(config, "config")
    if "n_objects" not in cfg:
        raise SimulationConfigError("n_objects: missing (number of sources to simulate)")
    n_raw = cfg["n_objects"]
    n = _number(n_raw, "n_objects")
    _check(n == int(n) and n > 0, "n_objects", "a positive integer", n_raw)
    overlap = _number(cfg.get("overlap_fraction", 0.1), "overlap_fraction")
    _check(0 <= overlap < 1, "overlap_fraction", "in [0, 1)", overlap)
    output = cfg.get("output", "forced")
    _check(output in OUTPUT_MODES, "output", f"one of {list(OUTPUT_MODES)}", output)
    survey = parse_survey(cfg.get("survey"))
    return SimulationConfig(
        n_objects=int(n),
        class_fractions=_parse_fractions(cfg.get("class_fractions"), list(classes)),
        overlap_fraction=overlap,
        survey=survey,
        population=parse_population(cfg.get("population"), survey, output),
        output=str(output),
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
    lim_mag: np.ndarray
    objects: pd.DataFrame


@dataclass
class _Batch:
    """One batch of candidate sources, each observed in two realisations (primary and
    overlapping field), noise included. Realisation ``r`` belongs to source ``r % m``."""

    params: pd.DataFrame
    ra: np.ndarray
    dec: np.ndarray
    season: np.ndarray
    depth: np.ndarray
    realisation: np.ndarray
    time: np.ndarray
    band: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    lim_mag: np.ndarray
    n_detections: np.ndarray  # per realisation, shape (2 m,)
    n_drawn: int              # candidates drawn, including those dropped as too faint


def _draw_batch(model: ClassModel, m: int, cfg: SimulationConfig, bands: list[str], seed: int,
                lost: np.ndarray, batch: int, stream: str | None = None) -> _Batch:
    """Draw, schedule and observe ``m`` candidate sources of one class (random streams keyed by
    ``stream``, default the class label, and ``batch``)."""
    key = _label_key(stream or model.label)
    survey = cfg.survey
    params = model.sample_params(_stream(seed, _STREAM_CLASS, key, _PARAMS, batch), m,
                                 cfg.population).reset_index(drop=True)
    # Sources too faint to ever be selected are dropped before scheduling (saves time only).
    peak_cols = [c for c in ("truth_peak_mag_g", "truth_peak_mag_r") if c in params]
    if peak_cols:
        brightest = params[peak_cols].min(axis=1).to_numpy()
        params = params.loc[~(brightest > cfg.population.hopeless_mag)].reset_index(drop=True)
    n_drawn = m
    m = len(params)
    if m == 0:
        empty = np.zeros(0)
        return _Batch(params, empty, empty, empty, empty, empty.astype(np.int64), empty,
                      empty.astype(np.int64), empty, empty, empty, empty.astype(np.int64), n_drawn)
    sky = _stream(seed, _STREAM_CLASS, key, _SKY, batch)
    ra, dec = draw_sky_positions(sky, m)
    season = draw_season_starts(sky, m, survey)
    depth = draw_field_depth(sky, m, survey)
    if model.is_transient:
        params["truth_peak_mjd"] = draw_peak_times(sky, season, survey)
    source_of = np.concatenate([np.arange(m), np.arange(m)])  # realisation -> source
    # Each realisation's field has its own revisit interval (the overlapping field's too);
    # drawn last from the sky stream, and only with a spread, so other draws are unchanged.
    cadence = draw_field_cadence(sky, 2 * m, survey) if survey.cadence_field_spread > 0 else None
    band_rngs = {b: _stream(seed, _STREAM_CLASS, key, _CADENCE, _label_key(b), batch) for b in bands}
    schedule = draw_schedule(band_rngs, season[source_of], depth[source_of], survey, bands, lost, cadence)
    true_flux = model.true_flux(params, source_of[schedule.realisation], schedule.time, schedule.band,
                                _stream(seed, _STREAM_CLASS, key, _VARIABILITY, batch))
    flux, flux_err = observe(_stream(seed, _STREAM_CLASS, key, _NOISE, batch), true_flux, schedule.lim_mag,
                             survey.calibration_floor)
    detected = flux / flux_err >= DETECTION_SNR
    n_det = np.bincount(schedule.realisation[detected], minlength=2 * m)
    return _Batch(params, ra, dec, season, depth, schedule.realisation, schedule.time, schedule.band,
                  flux, flux_err, schedule.lim_mag, n_det, n_drawn)


def _simulate_class(model: ClassModel, numbers: np.ndarray, cfg: SimulationConfig, bands: list[str],
                    seed: int, lost: np.ndarray, stream: str | None = None) -> _ClassResult:
    """Simulate the ``len(numbers)`` selected sources of one class (``numbers``: their object numbers).

    Candidates are drawn in batches from the class's physical population and
    kept, in draw order, when their primary realisation has at least
    ``population.min_detections`` epochs with SNR >= 5: the magnitude-limited
    selection of a real survey (Malmquist bias: at a given distance only the
    brighter members survive). Each batch is oversampled by the acceptance rate
    seen so far. A fraction ``overlap_fraction`` of the kept sources keeps its
    second realisation (overlapping field); in alert mode a second realisation
    with fewer than :data:`MIN_POINTS_PER_OBJECT` detections is not an object
    and is dropped. ``stream`` names the random streams (default the class label;
    the spectroscopic sub-population of :func:`_simulate_transient` uses its own).
    """
    n = len(numbers)
    need = n
    kept: list[tuple[_Batch, np.ndarray]] = []
    drawn = accepted = 0
    for batch in range(MAX_SELECTION_BATCHES):
        rate = (accepted + 1.0) / (drawn + 1.0)
        m = int(max(MIN_BATCH, np.ceil(min(1.25 * need / rate, need * MAX_OVERSAMPLE))))
        b = _draw_batch(model, m, cfg, bands, seed, lost, batch, stream)
        m = len(b.ra)
        ok = np.flatnonzero(b.n_detections[:m] >= cfg.population.min_detections)
        drawn, accepted = drawn + b.n_drawn, accepted + len(ok)
        take = ok[:need]
        kept.append((b, take))
        need -= len(take)
        if need == 0:
            break
    else:
        raise SimulationConfigError(
            f"population.min_detections: only {n - need} of {n} {model.label} sources reach "
            f"{cfg.population.min_detections} detections after {drawn} candidates; the survey is too "
            f"shallow for this class (survey.lim_mag_median = {cfg.survey.lim_mag_median})")

    key = _label_key(stream or model.label)
    n_dup = int(np.floor(cfg.overlap_fraction * n + 0.5))
    duplicated = np.sort(_stream(seed, _STREAM_CLASS, key, _DUPLICATES).choice(n, size=n_dup, replace=False))
    dup_rank = np.full(n, -1)
    dup_rank[duplicated] = np.arange(n_dup)

    parts, offset = [], 0
    for b, take in kept:
        m = len(b.ra)
        glob = np.full(2 * m, -1)
        glob[take] = offset + np.arange(len(take))                 # primary realisations
        second = dup_rank[offset + np.arange(len(take))]
        glob[m + take[second >= 0]] = n + second[second >= 0]     # kept duplicates
        if cfg.output == "alert":
            glob[np.arange(m, 2 * m)[b.n_detections[m:] < MIN_POINTS_PER_OBJECT]] = -1
        rows = glob[b.realisation] >= 0
        parts.append((glob[b.realisation[rows]], b.time[rows], b.band[rows], b.flux[rows],
                      b.flux_err[rows], b.lim_mag[rows], glob, b.n_detections))
        offset += len(take)

    def cat(i):
        return np.concatenate([p[i] for p in parts])

    realisation, time, band, flux, flux_err, lim = (cat(i) for i in range(6))
    params = pd.concat([b.params.iloc[take] for b, take in kept], ignore_index=True)
    per_source = {k: np.concatenate([getattr(b, k)[take] for b, take in kept])
                  for k in ("ra", "dec", "season", "depth")}
    n_det = np.zeros(n + n_dup)
    for glob, counts in ((p[6], p[7]) for p in parts):
        ok = glob >= 0
        n_det[glob[ok]] = counts[ok]
    present = np.unique(realisation)  # alert mode may have dropped duplicates
    source_of = np.concatenate([np.arange(n), duplicated])
    objects = _objects_rows(model.label, numbers, cfg.n_objects, source_of, params, **per_source)
    objects["truth_n_detections"] = n_det
    remap = np.full(n + n_dup, -1)
    remap[present] = np.arange(len(present))
    objects = objects.iloc[present].reset_index(drop=True)
    return _ClassResult(remap[realisation], time, band, flux, flux_err, lim, objects)


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


def _simulate_transient(model: ClassModel, numbers: np.ndarray, cfg: SimulationConfig, bands: list[str],
                        seed: int, lost: np.ndarray) -> list[_ClassResult]:
    """A transient class: photometric and spectroscopic sub-populations.

    ``round(population.spectroscopic_fraction * n)`` of the class's sources come from
    the flux-limited population with a noise-free peak brighter than
    ``population.spectroscopic_peak_mag`` (own random streams, ``<label>/spectroscopic``),
    the others from the depth-limited one; both then pass the same survey and the same
    ``min_detections`` selection. Why: a real labelled sample is a spectroscopic one,
    and spectroscopic completeness ends far brighter than the imaging depth (the ZTF
    BTS classifies everything brighter than 18.5 mag, Fremling et al. 2020, ApJ 895, 32;
    Perley et al. 2020, ApJ 904, 35, which is most of the labelled ZTF supernovae used by
    brokers, e.g. ALeRCE, Sanchez-Saez et al. 2021, AJ 161, 141). Such supernovae are
    nearby (BTS SNe Ia: median z ~ 0.07), barely time-dilated and detected for weeks,
    unlike the z ~ 0.15 events at the survey limit. With a fraction > 0 the objects table
    gets ``truth_spectroscopic`` (1.0 for the flux-limited sub-population, else 0.0).
    """
    n = len(numbers)
    n_spec = int(np.floor(cfg.population.spectroscopic_fraction * n + 0.5))
    parts = []
    if n - n_spec:
        parts.append((numbers[n_spec:], cfg, None, 0.0))
    if n_spec:
        limit = cfg.population.spectroscopic_peak_mag
        if cfg.population.max_peak_mag is not None:
            limit = min(limit, cfg.population.max_peak_mag)
        spec_cfg = dataclasses.replace(cfg, population=dataclasses.replace(cfg.population, max_peak_mag=limit))
        parts.append((numbers[:n_spec], spec_cfg, f"{model.label}/spectroscopic", 1.0))
    results = []
    for block, block_cfg, stream, flag in parts:
        result = _simulate_class(model, block, block_cfg, bands, seed, lost, stream)
        if cfg.population.spectroscopic_fraction > 0:   # default: tables unchanged
            result.objects["truth_spectroscopic"] = flag
        results.append(result)
    return results


# --------------------------------------------------------------------------- assembly

def _assemble(results: list[_ClassResult], output: str = "forced") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate per-class results into the two sorted canonical tables (``output``: see
    :func:`alert_view`)."""
    objects = pd.concat([r.objects for r in results], ignore_index=True)
    offsets = np.cumsum([0] + [len(r.objects) for r in results[:-1]])
    realisation = np.concatenate([r.realisation + o for r, o in zip(results, offsets)])
    time = np.concatenate([r.time for r in results])
    band = np.concatenate([r.band for r in results])
    flux = np.concatenate([r.flux for r in results])
    flux_err = np.concatenate([r.flux_err for r in results])
    lim_mag = np.concatenate([r.lim_mag for r in results])

    # Sort through integer ranks: far faster than sorting a million strings.
    id_order = np.argsort(objects["object_id"].to_numpy(dtype=str), kind="stable")
    rank = np.empty(len(id_order), dtype=np.int64)
    rank[id_order] = np.arange(len(id_order))
    order = np.lexsort((band, time, rank[realisation]))
    realisation, time, band, flux, flux_err, lim_mag = (
        a[order] for a in (realisation, time, band, flux, flux_err, lim_mag))

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
    if output == "alert":
        return alert_view(lightcurves, lim_mag, objects)
    return lightcurves, objects


def alert_view(lightcurves: pd.DataFrame, lim_mag: np.ndarray, objects: pd.DataFrame
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alert-style tables: detections only, non-detections summarised per object.

    Follows the convention of :mod:`deeprubin.sources.ztf_alerts` for real ZTF
    alerts: upper limits never become flux rows; the objects table gains
    ``n_non_detections`` and the last non-detection before the first detection
    (``last_nondet_mjd``, ``last_nondet_band``, ``last_nondet_diffmaglim`` = the
    5-sigma limiting magnitude of that epoch; NaN/None when there is none).

    Parameters
    ----------
    lightcurves : pandas.DataFrame
        Forced-photometry table (every epoch), sorted by object and time.
    lim_mag : ndarray, shape (len(lightcurves),)
        5-sigma limiting magnitude of each epoch.
    objects : pandas.DataFrame
    """
    det = lightcurves["detected"].to_numpy(dtype=bool)
    ids = lightcurves["object_id"].to_numpy()
    first_det = pd.Series(lightcurves["time"].to_numpy()[det], index=ids[det]).groupby(level=0).min()
    limits = pd.DataFrame({"object_id": ids[~det], "time": lightcurves["time"].to_numpy()[~det],
                           "band": lightcurves["band"].to_numpy()[~det], "diffmaglim": lim_mag[~det]})
    objects = objects.copy()
    objects["n_non_detections"] = objects["object_id"].map(limits.groupby("object_id").size()).fillna(0).astype(int)
    before = limits[limits["time"] < limits["object_id"].map(first_det).to_numpy()]
    last = before.loc[before.groupby("object_id")["time"].idxmax()].set_index("object_id")
    objects["last_nondet_mjd"] = objects["object_id"].map(last["time"]).astype(float)
    objects["last_nondet_band"] = objects["object_id"].map(last["band"])
    objects["last_nondet_diffmaglim"] = objects["object_id"].map(last["diffmaglim"]).astype(float)
    return lightcurves.loc[det].reset_index(drop=True), objects


def simulate_survey(config: Mapping, *, seed: int, classes: Sequence[str],
                    bands: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate a ZTF-like survey of variable and transient sources.

    Parameters
    ----------
    config : Mapping
        Plain dict or OmegaConf ``DictConfig`` with ``n_objects`` (int, number
        of distinct selected sources), ``class_fractions`` (label -> relative
        weight, None for balanced or ``"survey"`` for :data:`SURVEY_LIKE_FRACTIONS`),
        ``overlap_fraction`` (default 0.1), ``output`` (``"forced"``, default, or
        ``"alert"``), ``population`` (see :func:`parse_population`) and ``survey``
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
        With ``output: alert`` only the detected rows.
    objects : pandas.DataFrame, shape (n_objects + n_duplicates, ...)
        ``object_id`` (``sim000123``; a source seen again in an overlapping field
        adds ``sim000123_f2`` with the same truth and ``group_id``), ``label``,
        ``group_id``, ``source`` (``"simulate"``), ``ra``, ``dec`` (deg),
        ``redshift`` (NaN for Galactic classes) and :data:`TRUTH_COLUMNS`
        (NaN where not applicable) plus class-specific ``truth_*`` columns,
        sorted by object_id. With ``output: alert`` also ``n_non_detections``
        and ``last_nondet_{mjd,band,diffmaglim}`` (see :func:`alert_view`).

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
        model = CLASS_MODELS[label]
        if model.is_transient:
            results.extend(_simulate_transient(model, block, cfg, bands, seed, lost))
        else:
            results.append(_simulate_class(model, block, cfg, bands, seed, lost))
    return _assemble(results, cfg.output)
