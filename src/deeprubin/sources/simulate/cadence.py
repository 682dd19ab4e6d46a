"""Observing schedule and noise model of the ZTF-like simulated survey.

Everything here is vectorised over objects: a schedule is a set of flat arrays
(one entry per observation) rather than one small table per object.

Vocabulary used throughout the simulator:

* a *source* is one astrophysical object (one set of truth parameters, one sky
  position, one visibility season);
* a *realisation* is one observed object in the output tables. Every source has
  one realisation; a source in an overlapping field has a second one with its
  own cadence and noise (see :mod:`deeprubin.sources.simulate.survey`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deeprubin.core.schema import mag_to_flux

#: Bands the simulator can produce, in the order of the integer band codes used
#: internally (``band_code == 0`` is g). Extending to LSST ugrizy means adding
#: names here and per-band parameters to the class models.
SUPPORTED_BANDS = ("g", "r")

#: Length of the visibility cycle. The sky position of a field comes back to the
#: night sky once a year (sidereal year ~365.26 d; 365.25 is close enough).
YEAR_DAYS = 365.25

#: Fractional MJD of the middle of the night at Palomar (ZTF): local midnight is
#: ~08:00 UTC (UTC-8), i.e. MJD + 0.33. Observing times scatter around it.
NIGHT_CENTRE_MJD_FRACTION = 0.33

#: Half-length of a usable night in days (~4.8 h either side of midnight), so a
#: jittered observation never spills into the neighbouring night.
MAX_NIGHT_OFFSET_DAYS = 0.2

#: Revisit intervals are irregular: each nominal visit moves by up to
#: +-CADENCE_IRREGULARITY/2 of the cadence (scheduler priorities, field
#: rotation). Kept < 1 so nominal visits stay in time order.
CADENCE_IRREGULARITY = 0.5

#: Every source is guaranteed at least this many days of visibility inside the
#: survey (capped at half the season and half the survey), so no object is empty.
SEASON_MIN_OVERLAP_DAYS = 30.0

#: Share of the limiting-magnitude scatter that is a fixed property of a field
#: (airmass at its declination, sky background, Galactic dust); the rest varies
#: epoch to epoch (seeing, moon, clouds). Total scatter is ``lim_mag_scatter``.
FIELD_DEPTH_FRACTION = 0.5

#: Sky counts in the photometric aperture of a source at the 5-sigma limit. Sets
#: the Poisson term: a source 2.5 mag brighter than the limit has source noise
#: equal to sky noise, roughly the regime of 30-s ZTF exposures (Masci et al. 2019).
SKY_COUNTS_AT_LIMIT = 2500.0

#: Relative calibration floor (ZTF repeatability of bright stars is 1-2 per cent,
#: Masci et al. 2019, PASP 131, 018003): bright sources never get SNR > 100.
CALIBRATION_FLOOR = 0.01

#: Signal-to-noise of a detection (alert-style threshold).
DETECTION_SNR = 5.0

#: Every realisation gets at least this many observations (the schema's default
#: ``min_points``); sparser draws are redrawn.
MIN_POINTS_PER_OBJECT = 3

#: How many times a too-sparse schedule is redrawn before giving up.
MAX_SCHEDULE_REDRAWS = 50


class SimulationConfigError(ValueError):
    """A simulator configuration that cannot be simulated; the message names the key."""


@dataclass(frozen=True)
class SurveyConfig:
    """Validated survey parameters (the ``survey`` section of the source config).

    Attributes
    ----------
    mjd_start : float
        First night of the survey, MJD.
    duration_days : float
        Survey length in days; observations satisfy
        ``mjd_start <= time < mjd_start + duration_days``.
    season_length_days : float
        Days per year a source is observable, in (0, 365].
    cadence_days : float
        Mean revisit interval per band, days.
    nightly_scatter_hours : float
        Standard deviation of the observing time around the middle of the night.
    weather_loss_fraction : float
        Fraction of nights lost to weather, in [0, 1).
    lim_mag_median : float
        Median 5-sigma limiting AB magnitude.
    lim_mag_scatter : float
        Total standard deviation of the limiting magnitude, mag.
    calibration_floor : float
        Relative flux error added in quadrature (photometric systematics).
    cadence_field_spread : float
        Per-field variety of the revisit interval: each realisation's interval is
        ``cadence_days * 2**u`` with ``u`` uniform in ``[-spread, spread]`` (log-uniform,
        median ``cadence_days``). ZTF revisits differ by field: the public survey's
        g/r cadence was 3 nights, partnership fields were visited nightly, and fields
        in the overlap of the primary and secondary grids are observed more often
        (Bellm et al. 2019, PASP 131, 068003); weather and scheduling add to it.
        0 = one cadence for every field.
    """

    mjd_start: float = 58300.0
    duration_days: float = 365.0
    season_length_days: float = 240.0
    cadence_days: float = 3.0
    nightly_scatter_hours: float = 2.0
    weather_loss_fraction: float = 0.2
    lim_mag_median: float = 20.5
    lim_mag_scatter: float = 0.3
    calibration_floor: float = CALIBRATION_FLOOR
    cadence_field_spread: float = 0.0

    @property
    def mjd_end(self) -> float:
        """End of the survey (exclusive), MJD."""
        return self.mjd_start + self.duration_days

    @property
    def n_nights(self) -> int:
        """Number of (partial) nights spanned by the survey."""
        return int(np.ceil(self.duration_days)) + 1

    @property
    def first_night(self) -> int:
        """Integer MJD of the night containing ``mjd_start``."""
        return int(np.floor(self.mjd_start))


@dataclass
class Schedule:
    """Flat arrays describing every observation, shape ``(n_obs,)`` each.

    Attributes
    ----------
    realisation : ndarray of int64
        Index of the observed realisation.
    time : ndarray of float64
        Observation time, MJD.
    band : ndarray of int64
        Band code, an index into :data:`SUPPORTED_BANDS`.
    lim_mag : ndarray of float64
        5-sigma limiting AB magnitude of the epoch.
    """

    realisation: np.ndarray
    time: np.ndarray
    band: np.ndarray
    lim_mag: np.ndarray

    def take(self, mask: np.ndarray) -> "Schedule":
        """Subset of the observations selected by a boolean mask or index array."""
        return Schedule(self.realisation[mask], self.time[mask], self.band[mask], self.lim_mag[mask])

    @staticmethod
    def concat(parts: list["Schedule"]) -> "Schedule":
        """Concatenate schedules (realisation indices must already be global)."""
        return Schedule(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("realisation", "time", "band", "lim_mag")))


def lost_nights(rng: np.random.Generator, survey: SurveyConfig) -> np.ndarray:
    """Which nights are lost to weather, shape ``(survey.n_nights,)``, True = lost.

    Weather is site-wide: a cloudy night is lost for every field, so the mask
    is drawn once per survey and shared by all sources.
    """
    return rng.random(survey.n_nights) < survey.weather_loss_fraction


def _season_overlap_days(survey: SurveyConfig) -> float:
    """Minimum visible days inside the survey guaranteed to every source."""
    return min(SEASON_MIN_OVERLAP_DAYS, 0.5 * min(survey.season_length_days, survey.duration_days))


def draw_season_starts(rng: np.random.Generator, n: int, survey: SurveyConfig) -> np.ndarray:
    """Start of each source's first visibility season, MJD, shape ``(n,)``.

    The phase is uniform over the year, except that (for surveys shorter than
    one full cycle) phases whose season would miss the survey are excluded, so
    every source has at least :func:`_season_overlap_days` visible days.
    Seasons repeat every :data:`YEAR_DAYS`.
    """
    length = survey.season_length_days
    margin = _season_overlap_days(survey)
    lo = survey.mjd_start - length + margin
    span = min(YEAR_DAYS, survey.duration_days + length - 2.0 * margin)
    return lo + rng.random(n) * span


def is_visible(time: np.ndarray, season_start: np.ndarray, survey: SurveyConfig) -> np.ndarray:
    """True where ``time`` (MJD) falls in a visibility season; arrays broadcast."""
    return np.mod(time - season_start, YEAR_DAYS) < survey.season_length_days


def visible_windows(season_start: np.ndarray, survey: SurveyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Visibility windows clipped to the survey.

    Parameters
    ----------
    season_start : ndarray, shape (n,)
        Start of the first season of each source, MJD.
    survey : SurveyConfig

    Returns
    -------
    starts, ends : ndarray, shape (n, n_windows)
        Window edges in MJD; windows outside the survey have ``start == end``.
    """
    # Seasons start between mjd_start - 365 and mjd_start + 365, so cycles -1..n+1 cover it.
    n_cycles = int(np.ceil(survey.duration_days / YEAR_DAYS)) + 3
    cycle = np.arange(-1, n_cycles - 1)
    starts = season_start[:, None] + cycle[None, :] * YEAR_DAYS
    ends = starts + survey.season_length_days
    starts = np.clip(starts, survey.mjd_start, survey.mjd_end)
    ends = np.clip(ends, survey.mjd_start, survey.mjd_end)
    return starts, ends


def draw_field_depth(rng: np.random.Generator, n: int, survey: SurveyConfig) -> np.ndarray:
    """Median 5-sigma limiting magnitude of each source's field, shape ``(n,)``."""
    sd = FIELD_DEPTH_FRACTION * survey.lim_mag_scatter
    return survey.lim_mag_median + sd * rng.standard_normal(n)


def draw_field_cadence(rng: np.random.Generator, n: int, survey: SurveyConfig) -> np.ndarray:
    """Revisit interval per band of each realisation's field, days, shape ``(n,)``
    (see :attr:`SurveyConfig.cadence_field_spread`)."""
    u = rng.uniform(-survey.cadence_field_spread, survey.cadence_field_spread, n)
    return survey.cadence_days * 2.0**u


def _epoch_depth_sd(survey: SurveyConfig) -> float:
    """Epoch-to-epoch scatter of the depth so that field + epoch add up to ``lim_mag_scatter``."""
    return survey.lim_mag_scatter * np.sqrt(1.0 - FIELD_DEPTH_FRACTION**2)


def _band_visits(rng: np.random.Generator, season_start: np.ndarray, survey: SurveyConfig,
                 lost: np.ndarray, cadence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Observation times of one band for ``n`` realisations.

    Visits are nominally every ``cadence`` days (per realisation, shape ``(n,)``;
    None = ``survey.cadence_days`` for all) from a random per-realisation
    offset (so g and r visits of one object rarely coincide), moved by an
    irregular amount, snapped to a night, then scattered within the night.
    Visits outside the survey, outside the season or on a lost night are dropped;
    a second visit in the same night and band is dropped too (a field is
    revisited once per night and band).

    Returns
    -------
    realisation : ndarray of int64, shape (n_obs,)
        Index into ``season_start``.
    time : ndarray of float64, shape (n_obs,)
        MJD, increasing within each realisation.
    """
    n = len(season_start)
    per_realisation = np.full(n, survey.cadence_days) if cadence is None else np.asarray(cadence, dtype=float)
    cadence = per_realisation[:, None]  # (n, 1): broadcasts over the visits
    n_visits = int(np.floor(survey.duration_days / per_realisation.min())) + 2 if n else 0
    offset = rng.random(n) * per_realisation
    nominal = offset[:, None] + cadence * np.arange(n_visits)[None, :]
    nominal = nominal + cadence * CADENCE_IRREGULARITY * (rng.random((n, n_visits)) - 0.5)
    night = np.floor(survey.mjd_start - survey.first_night + nominal).astype(np.int64)
    within_night = rng.normal(0.0, survey.nightly_scatter_hours / 24.0, (n, n_visits))
    within_night = np.clip(within_night, -MAX_NIGHT_OFFSET_DAYS, MAX_NIGHT_OFFSET_DAYS)
    time = survey.first_night + night + NIGHT_CENTRE_MJD_FRACTION + within_night

    keep = (time >= survey.mjd_start) & (time < survey.mjd_end)
    keep &= is_visible(time, season_start[:, None], survey)
    keep &= ~lost[np.clip(night, 0, len(lost) - 1)]
    keep[:, 1:] &= night[:, 1:] != night[:, :-1]
    rows, cols = np.nonzero(keep)
    return rows.astype(np.int64), time[rows, cols]


def draw_schedule(rngs: dict[str, np.random.Generator], season_start: np.ndarray,
                  field_depth: np.ndarray, survey: SurveyConfig, bands: list[str],
                  lost: np.ndarray, cadence: np.ndarray | None = None) -> Schedule:
    """Observations of every realisation in every requested band.

    Parameters
    ----------
    rngs : dict of str -> numpy.random.Generator
        One stream per band, so the r-band cadence does not change when g is
        added or removed.
    season_start, field_depth : ndarray, shape (n,)
        Per-realisation first-season start (MJD) and median 5-sigma depth (mag).
    survey : SurveyConfig
    bands : list of str
        Subset of :data:`SUPPORTED_BANDS`.
    lost : ndarray of bool, shape (survey.n_nights,)
        Weather mask from :func:`lost_nights`.
    cadence : ndarray, shape (n,), optional
        Per-realisation revisit interval, days (:func:`draw_field_cadence`);
        None = ``survey.cadence_days`` for every realisation.

    Returns
    -------
    Schedule
        Sorted by realisation, then band, then time. A realisation with fewer
        than :data:`MIN_POINTS_PER_OBJECT` observations has its whole schedule
        redrawn; if that keeps failing, :class:`SimulationConfigError` is raised.
    """
    n = len(season_start)
    need = np.arange(n)
    parts: list[Schedule] = []
    for _ in range(MAX_SCHEDULE_REDRAWS):
        drawn = _draw_once(rngs, need, season_start, field_depth, survey, bands, lost, cadence)
        counts = np.bincount(drawn.realisation, minlength=n)[need]
        ok = counts >= MIN_POINTS_PER_OBJECT
        parts.append(drawn.take(np.isin(drawn.realisation, need[ok])))
        need = need[~ok]
        if len(need) == 0:
            schedule = Schedule.concat(parts)
            order = np.lexsort((schedule.time, schedule.band, schedule.realisation))
            return schedule.take(order)
    raise SimulationConfigError(
        f"survey: {len(need)} object(s) still have fewer than {MIN_POINTS_PER_OBJECT} observations "
        f"after {MAX_SCHEDULE_REDRAWS} redraws; the cadence is too sparse for the seasons - "
        f"lower 'cadence_days' or 'weather_loss_fraction', or raise 'season_length_days' "
        f"or 'duration_days' (got {survey})"
    )


def _draw_once(rngs: dict[str, np.random.Generator], which: np.ndarray, season_start: np.ndarray,
               field_depth: np.ndarray, survey: SurveyConfig, bands: list[str],
               lost: np.ndarray, cadence: np.ndarray | None = None) -> Schedule:
    """One draw of the schedule of the realisations ``which`` (global indices kept)."""
    parts = []
    for band in bands:
        rng = rngs[band]
        local, time = _band_visits(rng, season_start[which], survey, lost,
                                   None if cadence is None else cadence[which])
        real = which[local]
        lim = field_depth[real] + _epoch_depth_sd(survey) * rng.standard_normal(len(real))
        code = np.full(len(real), SUPPORTED_BANDS.index(band), dtype=np.int64)
        parts.append(Schedule(real, time, code, lim))
    return Schedule.concat(parts)


def flux_error(true_flux: np.ndarray, lim_mag: np.ndarray, floor: float = CALIBRATION_FLOOR) -> np.ndarray:
    """1-sigma flux uncertainty in microjansky, same shape as the inputs.

    Three terms in quadrature: sky noise ``f_lim / 5`` (so a source at the
    limiting magnitude has SNR 5), source Poisson noise that grows as
    ``sqrt(flux)`` (bright sources get larger absolute but smaller relative
    errors) and a relative calibration floor.

    Parameters
    ----------
    true_flux : ndarray
        Noise-free flux, microjansky (0 for a transient far from its event).
    lim_mag : ndarray
        5-sigma limiting AB magnitude of each epoch.
    """
    sky = mag_to_flux(lim_mag) / DETECTION_SNR
    source = np.clip(true_flux, 0.0, None)
    variance = sky**2 + source * sky / np.sqrt(SKY_COUNTS_AT_LIMIT) + (floor * source) ** 2
    return np.sqrt(variance)


def observe(rng: np.random.Generator, true_flux: np.ndarray,
            lim_mag: np.ndarray, floor: float = CALIBRATION_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Add Gaussian noise: ``flux = true_flux + N(0, flux_err)``.

    Returns
    -------
    flux, flux_err : ndarray, shape like ``true_flux``
        Observed flux and its 1-sigma error, microjansky.
    """
    err = flux_error(true_flux, lim_mag, floor)
    return true_flux + err * rng.standard_normal(true_flux.shape), err
