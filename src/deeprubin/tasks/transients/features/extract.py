"""Per-object variability features from the canonical ``lightcurves`` table.

Every feature is computed per object and band with the extractors of the
`light-curve <https://github.com/light-curve/light-curve-python>`_ package
(Rust, evaluated over all objects of a band at once with ``Extractor.many`` and
``n_jobs`` threads), plus detection counts and colours computed with pandas.

Which photometry, and why
-------------------------
* **Magnitudes of detections** (``mag_*``): the shape statistics of ALeRCE's
  light-curve classifier (Sánchez-Sáez et al. 2021) are computed on the
  magnitudes of detections. Magnitudes make them independent of distance
  (amplitudes become flux ratios), and detections (``flux/flux_err >= 5``) have
  small, nearly Gaussian magnitude errors; faint forced-photometry points have
  undefined (flux <= 0) or meaningless magnitudes.
* **Fluxes of all points** (``flux_*``, ``periodogram_*``, ``bazin_fit_*``):
  our light curves carry forced photometry at every epoch, which ALeRCE's alert
  stream does not. Variability significance, the periodogram and the supernova
  model use it: the periodogram of the censored detections is biased towards the
  bright phases of faint variables (it finds the true period of the simulated
  Cepheids and RR Lyrae more often from all fluxes than from detected magnitudes:
  ``docs/evaluation.md``, "Baseline features"), and the Bazin
  model is a flux model whose rise is constrained by the non-detections before
  the explosion. Only scale-free flux features are kept (reduced chi2, excess
  variance, Stetson K, ...); the Bazin amplitude, baseline and reference time
  (flux scale, absolute MJD) are dropped in favour of their ratio.
* ``photometry: detections`` (:class:`FeatureConfig`) restricts every group to the
  detected points, which is all that alert data carry: then "all points" in the
  table below means "all detections", ``n_obs`` equals ``n_det``, and features of
  simulated forced photometry read the same as those of the real alert photometry.
  Which one the pipeline uses, and why: ``conf/preprocess/gp.yaml`` and
  ``docs/decisions/features-detections-only.md``.

Feature names
-------------
``<name>_<band>`` for per-band features, ``color_<b1>_<b2>_<name>`` for colours,
in the order returned by :func:`feature_names` (groups in :data:`GROUP_ORDER`,
bands in the order given, names in the order listed below):

=============== =============================== =============================================
group           photometry (points used)        names (per band)
=============== =============================== =============================================
``counts``      all                             ``n_obs``, ``n_det``, ``det_fraction``
``magnitude``   magnitudes of detections        ``mag_`` + amplitude, beyond_1_std, cusum,
                                                eta, eta_e, inter_percentile_range_10,
                                                kurtosis, linear_fit_slope,
                                                linear_fit_slope_sigma,
                                                linear_fit_reduced_chi2, linear_trend,
                                                linear_trend_sigma, linear_trend_noise,
                                                maximum_slope, mean, median,
                                                median_absolute_deviation,
                                                median_buffer_range_percentage_10,
                                                percent_amplitude, chi2, skew,
                                                standard_deviation, stetson_K,
                                                weighted_mean, duration, peak
``flux``        fluxes of all points            ``flux_`` + excess_variance, chi2,
                                                stetson_K, eta_e, skew, kurtosis,
                                                beyond_1_std
``periodogram`` fluxes of all points            ``periodogram_period_0``,
                                                ``periodogram_period_s_to_n_0``
                                                (Lomb-Scargle, best peak, fixed grid)
``sn_model``    fluxes of all points            ``bazin_fit_rise_time``,
                                                ``bazin_fit_fall_time``,
                                                ``bazin_fit_reduced_chi2``,
                                                ``bazin_fit_baseline_ratio``
``colour``      magnitudes of detections        ``color_<b1>_<b2>_mean`` (difference of mean
                                                magnitudes), ``color_<b1>_<b2>_peak``
                                                (difference of brightest magnitudes),
                                                for adjacent bands
=============== =============================== =============================================

``mag_peak`` is the brightest (smallest) detected magnitude; times are in days,
so slopes are per day and periods in days.

Absolute magnitudes (``preprocess.features.absolute_magnitudes: true``)
-----------------------------------------------------------------------
Metadata where a source has it: with an objects table that carries ``redshift`` (the
simulator's, BTS's catalogue redshift), ``abs_peak_mag_<band>`` = ``mag_peak_<band>`` minus the
distance modulus of that redshift (the simulator's cosmology,
:func:`deeprubin.sources.simulate.physics.distance_modulus`; no K-correction), appended after the
set's columns. An object without a finite positive redshift (stars, alerts without a host
redshift) gets ``NaN``. The raw redshift is not a feature: the simulator draws equal numbers per
class, so at the low redshifts of a bright sample it over-represents the fainter classes, a
prior the sky does not share (measured in ``docs/decisions/absolute-magnitudes.md``).
Because only stars lack a redshift in the simulated training set, the training steps hide the
redshift of a share of the training objects (``redshift_hidden_fraction``, :func:`hide_redshifts`):
otherwise an alert without a host redshift would look like a star to both models.

Missing values
--------------
A value that cannot be computed is ``NaN`` (never ``inf``, never a sentinel):
a band with fewer than ``min_points`` usable points gets ``NaN`` for every
light-curve feature of that band (its counts stay exact), an extractor that fails
on a light curve (too few points for it, constant magnitudes, a fit that does
not converge) gives ``NaN`` through ``fill_value``, and non-finite results or
values beyond float32 range become ``NaN``. They are left as ``NaN`` because the
baseline's trees (scikit-learn >= 1.4, used by imbalanced-learn's balanced random
forest) split on missing values natively, learning at every split on which side
the missing objects go; a sentinel plus a ``<name>_missing`` indicator would add
one column per feature to express the same thing, and ``n_det_<band>`` already
says why a band is missing.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import light_curve as licu
import numpy as np
import pandas as pd

from ....core.config import ConfigError
from ....core.schema import flux_to_mag
from ....sources.simulate.physics import Z_TABLE_MAX, distance_modulus

log = logging.getLogger(__name__)

#: Signal-to-noise above which a point counts as a detection when the table has no
#: ``detected`` column (the alert-style threshold of the schema).
DETECTION_SNR = 5.0

#: Feature groups, in column order.
GROUP_ORDER = ("counts", "magnitude", "flux", "periodogram", "sn_model", "colour")

#: Named feature sets -> the groups they contain (``preprocess.features.set``).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    # ALeRCE-like shape statistics of detections, counts and colours: no fits.
    "basic": ("counts", "magnitude", "colour"),
    # + scale-free flux variability indices and the Lomb-Scargle periodogram.
    "periodic": ("counts", "magnitude", "flux", "periodogram", "colour"),
    # + the Bazin supernova model fitted to the fluxes (the default).
    "full": ("counts", "magnitude", "flux", "periodogram", "sn_model", "colour"),
}

#: The photometry the features see (``preprocess.features.photometry``): every row, or detections.
PHOTOMETRY = ("all", "detections")

#: Bazin fit algorithms of light-curve accepted in the config.
SN_FIT_ALGORITHMS = ("mcmc-lmsder", "lmsder", "mcmc", "ceres", "mcmc-ceres")

#: The fewest points any extractor here may be given: light-curve's periodogram
#: panics (it does not raise) on fewer than two points.
_ABSOLUTE_MIN_POINTS = 2
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class FeatureConfig:
    """Options of the feature extraction (``preprocess.features`` in the config).

    Attributes
    ----------
    set : str
        Name of a feature set in :data:`FEATURE_SETS`.
    min_points : int
        Fewest usable points (detections for ``magnitude``, all observations for
        the flux groups) a band needs for its light-curve features; below it they
        are ``NaN``. At least 2.
    periodogram_min_period : float
        Shortest period searched, in days (the grid runs from 0 to 2 pi / this
        angular frequency).
    periodogram_log2_n_freq : int
        The fixed frequency grid has ``2**k + 1`` points (FFT periodogram).
    sn_fit_algorithm : str
        light-curve's ``BazinFit`` algorithm, one of :data:`SN_FIT_ALGORITHMS`.
    n_jobs : int
        Threads for ``Extractor.many``.
    photometry : str
        The rows every group sees, one of :data:`PHOTOMETRY`: ``all`` (forced photometry
        included, as the table above says) or ``detections`` (only detected points, as alert
        data carry: then ``n_obs`` counts detections and the flux groups, the periodogram and
        the fusion model's folded view see detections too; see :func:`feature_rows`).
    absolute_magnitudes : bool
        Append ``abs_peak_mag_<band>`` from the objects' ``redshift`` (see the module docstring;
        every set holds the ``magnitude`` group's ``mag_peak``).
    redshift_hidden_fraction : float
        Share of the training objects whose redshift is hidden (their ``abs_peak_mag_<band>``
        set missing, :func:`hide_redshifts`) before either model is fitted, so that a missing
        redshift (alert packets, the ALeRCE sample) does not read as "a Milky Way object": in the
        simulated training set only stars lack one. In ``[0, 1)``; no effect without
        ``absolute_magnitudes``. Validation, test and prediction keep every redshift they have.
    """

    set: str = "full"
    min_points: int = 5
    periodogram_min_period: float = 0.1
    periodogram_log2_n_freq: int = 14
    sn_fit_algorithm: str = "mcmc-lmsder"
    n_jobs: int = 2
    photometry: str = "all"
    absolute_magnitudes: bool = False
    redshift_hidden_fraction: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def groups(self) -> tuple[str, ...]:
        return FEATURE_SETS[self.set]

    def validate(self) -> None:
        """Raise :class:`~deeprubin.core.config.ConfigError` naming the offending key."""
        prefix = "preprocess.features"
        if self.set not in FEATURE_SETS:
            raise ConfigError(f"config key '{prefix}.set' must be one of {sorted(FEATURE_SETS)}, "
                              f"got {self.set!r}")
        if not isinstance(self.min_points, (int, np.integer)) or self.min_points < _ABSOLUTE_MIN_POINTS:
            raise ConfigError(f"config key '{prefix}.min_points' must be an integer >= "
                              f"{_ABSOLUTE_MIN_POINTS}, got {self.min_points!r}")
        if isinstance(self.periodogram_min_period, bool) or \
                not isinstance(self.periodogram_min_period, (int, float, np.number)) or \
                not self.periodogram_min_period > 0:
            raise ConfigError(f"config key '{prefix}.periodogram_min_period' must be > 0, "
                              f"got {self.periodogram_min_period!r}")
        if not isinstance(self.periodogram_log2_n_freq, (int, np.integer)) or \
                not 6 <= self.periodogram_log2_n_freq <= 20:
            raise ConfigError(f"config key '{prefix}.periodogram_log2_n_freq' must be an integer in "
                              f"[6, 20], got {self.periodogram_log2_n_freq!r}")
        if self.sn_fit_algorithm not in SN_FIT_ALGORITHMS:
            raise ConfigError(f"config key '{prefix}.sn_fit_algorithm' must be one of "
                              f"{list(SN_FIT_ALGORITHMS)}, got {self.sn_fit_algorithm!r}")
        if not isinstance(self.n_jobs, (int, np.integer)) or not (self.n_jobs >= 1 or self.n_jobs == -1):
            raise ConfigError(f"config key '{prefix}.n_jobs' must be a positive integer or -1, "
                              f"got {self.n_jobs!r}")
        if self.photometry not in PHOTOMETRY:
            raise ConfigError(f"config key '{prefix}.photometry' must be one of {list(PHOTOMETRY)}, "
                              f"got {self.photometry!r}")
        if not isinstance(self.absolute_magnitudes, (bool, np.bool_)):
            raise ConfigError(f"config key '{prefix}.absolute_magnitudes' must be true or false, "
                              f"got {self.absolute_magnitudes!r}")
        fraction = self.redshift_hidden_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or \
                not 0 <= fraction < 1:
            raise ConfigError(f"config key '{prefix}.redshift_hidden_fraction' must be a number in [0, 1), "
                              f"got {fraction!r}")

    @classmethod
    def from_config(cls, node: Any, **defaults: Any) -> "FeatureConfig":
        """Build from the ``preprocess.features`` mapping (``defaults`` fill keys it leaves out).

        Unknown keys and bad values raise :class:`~deeprubin.core.config.ConfigError` naming the key.
        """
        values = dict(node or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"config key 'preprocess.features.{unknown[0]}' is not a feature option; "
                              f"known: {sorted(known)}")
        return cls(**{**defaults, **{k: v for k, v in values.items() if v is not None}})


# --- the extractors of each group --------------------------------------------------------

def _magnitude_features() -> list:
    return [licu.Amplitude(), licu.BeyondNStd(1.0), licu.Cusum(), licu.Eta(), licu.EtaE(),
            licu.InterPercentileRange(0.1), licu.Kurtosis(), licu.LinearFit(), licu.LinearTrend(),
            licu.MaximumSlope(), licu.Mean(), licu.Median(), licu.MedianAbsoluteDeviation(),
            licu.MedianBufferRangePercentage(0.1), licu.PercentAmplitude(), licu.ReducedChi2(),
            licu.Skew(), licu.StandardDeviation(), licu.StetsonK(), licu.WeightedMean(), licu.Duration()]


def _flux_features() -> list:
    return [licu.ExcessVariance(), licu.ReducedChi2(), licu.StetsonK(), licu.EtaE(), licu.Skew(),
            licu.Kurtosis(), licu.BeyondNStd(1.0)]


def _periodogram(config: FeatureConfig):
    max_freq = 2.0 * np.pi / config.periodogram_min_period
    freqs = np.linspace(0.0, max_freq, 2 ** config.periodogram_log2_n_freq + 1)
    return licu.Periodogram(peaks=1, freqs=freqs, fast=True)


_BAZIN_KEEP = ("bazin_fit_rise_time", "bazin_fit_fall_time", "bazin_fit_reduced_chi2")
_BAZIN_NAMES = _BAZIN_KEEP + ("bazin_fit_baseline_ratio",)


def _group_band_names(group: str) -> list[str]:
    """Per-band names of one group, without the band suffix."""
    if group == "counts":
        return ["n_obs", "n_det", "det_fraction"]
    if group == "magnitude":
        return [f"mag_{n}" for n in licu.Extractor(*_magnitude_features()).names] + ["mag_peak"]
    if group == "flux":
        return [f"flux_{n}" for n in licu.Extractor(*_flux_features()).names]
    if group == "periodogram":
        return list(_periodogram(FeatureConfig(periodogram_log2_n_freq=6)).names)
    if group == "sn_model":
        return list(_BAZIN_NAMES)
    raise KeyError(group)


def _colour_pairs(bands: Sequence[str]) -> list[tuple[str, str]]:
    return [(bands[i], bands[i + 1]) for i in range(len(bands) - 1)]


def feature_names(bands: Sequence[str], feature_set: str = "full") -> list[str]:
    """The feature columns, in order, for ``bands`` (bluest first) and a feature set."""
    if feature_set not in FEATURE_SETS:
        raise ConfigError(f"config key 'preprocess.features.set' must be one of {sorted(FEATURE_SETS)}, "
                          f"got {feature_set!r}")
    bands = [str(b) for b in bands]
    names: list[str] = []
    for group in GROUP_ORDER:
        if group not in FEATURE_SETS[feature_set]:
            continue
        if group == "colour":
            for b1, b2 in _colour_pairs(bands):
                names += [f"color_{b1}_{b2}_mean", f"color_{b1}_{b2}_peak"]
            continue
        for band in bands:
            names += [f"{n}_{band}" for n in _group_band_names(group)]
    return names


def feature_columns(bands: Sequence[str], config: FeatureConfig) -> list[str]:
    """The columns (after ``object_id``) of :func:`extract_features` with ``config``: the set's
    :func:`feature_names`, then ``abs_peak_mag_<band>`` when ``config.absolute_magnitudes``."""
    names = feature_names(bands, config.set)
    if config.absolute_magnitudes:
        names += [f"abs_peak_mag_{b}" for b in bands]
    return names


def hide_redshifts(features: pd.DataFrame, object_ids: Iterable[str], fraction: float, seed: int) -> pd.DataFrame:
    """``features`` with the ``abs_peak_mag_<band>`` columns missing for about ``fraction`` of the
    rows whose ``object_id`` is in ``object_ids`` (the training objects); other rows and columns as
    they are (a copy; ``features`` is unchanged).

    Which objects are hidden depends only on ``seed`` and each object id (a SHA-256 draw), not on
    the row order, so the forest and the deep model of one seed hide the same objects.
    """
    columns = [c for c in features.columns if str(c).startswith("abs_peak_mag_")]
    out = features.copy()
    if not columns or fraction <= 0:
        return out
    chosen = set(map(str, object_ids))
    ids = out["object_id"].astype(str)
    draws = np.array([int.from_bytes(hashlib.sha256(f"{seed}:{oid}".encode()).digest()[:8], "big") / 2.0 ** 64
                      for oid in ids])
    hidden = ids.isin(chosen).to_numpy() & (draws < fraction)
    out.loc[hidden, columns] = np.nan
    return out


def distance_moduli(redshift: np.ndarray) -> np.ndarray:
    """Distance modulus per redshift (mag); ``NaN`` where the redshift is missing, not positive or
    beyond the cosmology table."""
    z = np.asarray(redshift, dtype=np.float64)
    usable = np.isfinite(z) & (z > 0) & (z <= Z_TABLE_MAX)
    mu = np.full(z.shape, np.nan)
    if usable.any():
        mu[usable] = distance_modulus(z[usable])
    return mu


def _absolute_magnitudes(features: pd.DataFrame, bands: Sequence[str], objects: pd.DataFrame | None) -> pd.DataFrame:
    """``abs_peak_mag_<band>`` per row of ``features`` (indexed by object id) from ``objects``' redshifts."""
    if objects is None or "redshift" not in objects.columns:
        z = np.full(len(features), np.nan)
    else:
        ids = objects["object_id"].astype(str)
        if ids.duplicated().any():
            raise ValueError(f"objects: object_id {ids[ids.duplicated()].iloc[0]!r} appears more than once, so its "
                             "redshift is ambiguous")
        z = pd.to_numeric(objects["redshift"], errors="coerce").set_axis(ids).reindex(features.index).to_numpy()
    mu = distance_moduli(z)
    return pd.DataFrame({f"abs_peak_mag_{b}": features[f"mag_peak_{b}"].to_numpy(np.float64) - mu for b in bands},
                        index=features.index)


# --- evaluation ----------------------------------------------------------------------------

def _is_panic(exc: BaseException) -> bool:
    # pyo3 turns a Rust panic into pyo3_runtime.PanicException, a BaseException.
    return type(exc).__name__ == "PanicException"


def _evaluate(extractor, lcs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_jobs: int,
              what: str) -> np.ndarray:
    """``extractor.many`` with NaN fill; falls back to one light curve at a time on failure."""
    n_out = len(extractor.names)
    if not lcs:
        return np.empty((0, n_out))
    try:
        return np.asarray(extractor.many(lcs, fill_value=np.nan, sorted=True, check=True, n_jobs=n_jobs),
                          dtype=np.float64).reshape(len(lcs), n_out)
    except BaseException as exc:  # noqa: BLE001 - Rust panics are BaseExceptions
        if not (isinstance(exc, Exception) or _is_panic(exc)):
            raise
        log.warning("features: %s failed on the batch (%s); retrying one light curve at a time", what, exc)
    out = np.full((len(lcs), n_out), np.nan)
    n_failed = 0
    for i, lc in enumerate(lcs):
        try:
            out[i] = extractor(*lc, fill_value=np.nan, sorted=True, check=True)
        except BaseException as exc:  # noqa: BLE001
            if not (isinstance(exc, Exception) or _is_panic(exc)):
                raise
            n_failed += 1
    if n_failed:
        log.warning("features: %s failed on %d of %d light curves (left NaN)", what, n_failed, len(lcs))
    return out


def _prepare(lightcurves: pd.DataFrame, bands: Sequence[str]) -> pd.DataFrame:
    """Sorted copy with float64 time/flux/err, magnitudes and a detection flag."""
    missing = [c for c in ("object_id", "time", "band", "flux", "flux_err") if c not in lightcurves.columns]
    if missing:
        raise ValueError(f"lightcurves: missing required column(s) {missing}")
    lc = lightcurves.loc[lightcurves["band"].astype(str).isin(list(bands))].copy()
    lc["object_id"] = lc["object_id"].astype(str)
    lc["band"] = lc["band"].astype(str)
    for col in ("time", "flux", "flux_err"):
        lc[col] = lc[col].astype(np.float64)
    if "mag" not in lc.columns or "mag_err" not in lc.columns:
        lc["mag"], lc["mag_err"] = flux_to_mag(lc["flux"].to_numpy(), lc["flux_err"].to_numpy())
    # The table's own flag where it has one, else the alert-style S/N threshold.
    lc["detected"] = detected(lc)
    lc["mag"] = lc["mag"].astype(np.float64)
    lc["mag_err"] = lc["mag_err"].astype(np.float64)
    finite = np.isfinite(lc[["time", "flux", "flux_err"]].to_numpy()).all(axis=1) & (lc["flux_err"] > 0)
    lc = lc.loc[finite]
    lc["usable_mag"] = (lc["detected"].astype(bool) & np.isfinite(lc["mag"]) & np.isfinite(lc["mag_err"])
                        & (lc["mag_err"] > 0))
    return lc.sort_values(["band", "object_id", "time"], kind="mergesort").reset_index(drop=True)


def detected(lightcurves: pd.DataFrame) -> np.ndarray:
    """Boolean per row: the table's ``detected`` flag where it has one (missing values fall back),
    else the alert-style threshold ``flux / flux_err >= DETECTION_SNR``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        by_snr = (lightcurves["flux"].astype(np.float64) / lightcurves["flux_err"].astype(np.float64)) >= DETECTION_SNR
    given = lightcurves["detected"] if "detected" in lightcurves.columns else pd.Series(pd.NA, index=lightcurves.index)
    return given.astype("boolean").fillna(by_snr).astype(bool).to_numpy()


def feature_rows(lightcurves: pd.DataFrame, config: FeatureConfig) -> pd.DataFrame:
    """The rows of ``lightcurves`` the features (and the fusion model's folded view) are computed
    from: all of them, or with ``config.photometry == "detections"`` the detected ones only.

    Alert data (ZTF alerts, ALeRCE, the BTS photometry) carry detections only, while the
    simulator writes forced photometry at every epoch; features of detections read the same on
    both, as ``preprocess.detections_only`` does for the GP.
    """
    if config.photometry == "all":
        return lightcurves
    return lightcurves.loc[detected(lightcurves)]


def _per_object(frame: pd.DataFrame, columns: tuple[str, str, str]):
    """(object_ids, list of (t, m, sigma)) from a band's rows sorted by object and time."""
    ids, start = np.unique(frame["object_id"].to_numpy(), return_index=True)
    t, m, s = (np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in columns)
    bounds = list(start) + [len(frame)]
    return ids, [(t[a:b], m[a:b], s[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _group_values(lc_band: pd.DataFrame, group: str, config: FeatureConfig) -> pd.DataFrame:
    """One band's features of one group for the objects with enough points (index object_id)."""
    if group == "magnitude":
        rows = lc_band.loc[lc_band["usable_mag"]]
        columns = ("time", "mag", "mag_err")
        extractor = licu.Extractor(*_magnitude_features())
    else:
        rows = lc_band
        columns = ("time", "flux", "flux_err")
        extractor = {"flux": lambda: licu.Extractor(*_flux_features()),
                     "periodogram": lambda: _periodogram(config),
                     "sn_model": lambda: licu.BazinFit(config.sn_fit_algorithm)}[group]()
    ids, lcs = _per_object(rows, columns)
    keep = [i for i, lc in enumerate(lcs) if len(lc[0]) >= config.min_points]
    ids = ids[keep]
    lcs = [lcs[i] for i in keep]
    values = pd.DataFrame(_evaluate(extractor, lcs, config.n_jobs, f"{group} ({type(extractor).__name__})"),
                          index=pd.Index(ids, name="object_id"), columns=list(extractor.names))
    if group == "magnitude":
        values.columns = [f"mag_{c}" for c in values.columns]
        values["mag_peak"] = rows.groupby("object_id")["mag"].min().reindex(values.index)
    elif group == "flux":
        values.columns = [f"flux_{c}" for c in values.columns]
    elif group == "sn_model":
        with np.errstate(divide="ignore", invalid="ignore"):
            values["bazin_fit_baseline_ratio"] = values["bazin_fit_baseline"] / values["bazin_fit_amplitude"]
        values = values[list(_BAZIN_NAMES)]
    return values


def extract_features(lightcurves: pd.DataFrame, bands: Sequence[str],
                     config: FeatureConfig | None = None, objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """Variability features of every object in ``lightcurves``.

    Parameters
    ----------
    lightcurves : pandas.DataFrame
        Canonical ``lightcurves`` table (``object_id``, ``time``, ``band``, ``flux``,
        ``flux_err``; ``mag``/``mag_err``/``detected`` are derived from the fluxes
        when absent). Rows of other bands are ignored.
    bands : sequence of str
        Bands, bluest first (colours are taken between neighbours).
    config : FeatureConfig, optional
        Feature set and extraction options (defaults: the ``full`` set).
    objects : pandas.DataFrame, optional
        The canonical ``objects`` table (``object_id``, ``redshift``), read only with
        ``config.absolute_magnitudes``; without it (or its ``redshift``) those columns are ``NaN``.

    Returns
    -------
    pandas.DataFrame
        One row per object (sorted by ``object_id``): ``object_id`` and then the
        columns of :func:`feature_columns` in that order; ``n_obs_*``/``n_det_*`` are
        integers, the rest float64 with ``NaN`` where a value could not be computed.
    """
    config = config or FeatureConfig()
    bands = [str(b) for b in bands]
    if not bands:
        raise ValueError("extract_features: no bands given")
    object_ids = np.unique(lightcurves["object_id"].astype(str).to_numpy())
    index = pd.Index(object_ids, name="object_id")
    lc = feature_rows(_prepare(lightcurves, bands), config)
    by_band = {band: lc.loc[lc["band"] == band] for band in bands}
    parts: list[pd.DataFrame] = []
    for group in GROUP_ORDER:
        if group not in config.groups:
            continue
        if group == "colour":
            parts.append(_colours(lc, bands, index))
            continue
        for band in bands:
            rows = by_band[band]
            if group == "counts":
                n_obs = rows.groupby("object_id").size().reindex(index, fill_value=0)
                n_det = rows.groupby("object_id")["detected"].sum().reindex(index, fill_value=0)
                values = pd.DataFrame({"n_obs": n_obs.astype(np.int64), "n_det": n_det.astype(np.int64)})
                values["det_fraction"] = (n_det / n_obs.where(n_obs > 0)).astype(np.float64)
            else:
                values = _group_values(rows, group, config).reindex(index)
            values.columns = [f"{c}_{band}" for c in values.columns]
            parts.append(values)
    features = pd.concat(parts, axis=1)
    if config.absolute_magnitudes:
        features = pd.concat([features, _absolute_magnitudes(features, bands, objects)], axis=1)
    names = feature_columns(bands, config)
    assert list(features.columns) == names, "feature columns out of step with feature_columns()"
    floats = [c for c in names if features[c].dtype.kind == "f"]
    values = features[floats].to_numpy(dtype=np.float64)
    values[~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)] = np.nan
    features[floats] = values
    return features.reset_index()


def _colours(lc: pd.DataFrame, bands: Sequence[str], index: pd.Index) -> pd.DataFrame:
    det = lc.loc[lc["usable_mag"]]
    stats = det.groupby(["object_id", "band"])["mag"].agg(["mean", "min"])
    out = pd.DataFrame(index=index)
    for b1, b2 in _colour_pairs(bands):
        first = stats.xs(b1, level="band").reindex(index) if b1 in stats.index.get_level_values("band") \
            else pd.DataFrame(np.nan, index=index, columns=["mean", "min"])
        second = stats.xs(b2, level="band").reindex(index) if b2 in stats.index.get_level_values("band") \
            else pd.DataFrame(np.nan, index=index, columns=["mean", "min"])
        out[f"color_{b1}_{b2}_mean"] = (first["mean"] - second["mean"]).astype(np.float64)
        out[f"color_{b1}_{b2}_peak"] = (first["min"] - second["min"]).astype(np.float64)
    return out
