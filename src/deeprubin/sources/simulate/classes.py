"""One noise-free light-curve model per astrophysical class, and their registry.

Every model follows the small :class:`ClassModel` protocol:

* ``sample_params(rng, n)`` draws the intrinsic parameters of ``n`` sources and
  returns a :class:`pandas.DataFrame` (one row per source). Columns named
  ``truth_*`` and ``redshift`` end up in the objects table; the rest are
  internal (e.g. per-band amplitudes ``amp_g``, ``amp_r``).
* ``true_flux(params, source, time, band, rng)`` evaluates the noise-free flux
  in microjansky for a flat batch of observations of many sources at once.

Transients (``is_transient = True``) get their peak time ``truth_peak_mjd``
filled in by the survey (it must fall inside the source's observing season),
after ``sample_params`` and before ``true_flux``.

Adding a class means adding one entry to :data:`CLASS_MODELS`. The parameter
values below are deliberately simple, literature-motivated first guesses; a later
version replaces the transients with spectral templates, cosmology, K-corrections
and extinction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr, ndtri

from deeprubin.schema import mag_to_flux
from deeprubin.sources.simulate.cadence import SUPPORTED_BANDS

#: Apparent magnitude range (r band; peak for transients, mean for variables) of
#: simulated sources: bright enough for ZTF alerts at the bright end, at the
#: ~20.5 mag survey limit at the faint end, so faint objects are noisy.
APP_MAG_RANGE = (17.0, 20.5)

#: Slope of the apparent-magnitude counts, dN/dm ~ 10**(slope * m). Euclidean
#: counts have 0.6; flattened to 0.3 to mimic the incompleteness of real
#: labelled samples near the limit (most sources faint, but not overwhelmingly).
APP_MAG_COUNT_SLOPE = 0.3

#: Low-redshift distance: d_L ~ (c z / H0) (1 + (1 - q0) z / 2) with H0 = 70 km/s/Mpc
#: and q0 = Omega_m / 2 - Omega_L = -0.55 (flat LCDM, Omega_m = 0.3). Good to a few
#: per cent below z ~ 0.3; a full cosmology comes with the realistic simulator.
HUBBLE_DISTANCE_MPC = 299792.458 / 70.0
DECELERATION_Q0 = -0.55

#: Reference epoch for periodic phases (keeps (t - t_ref) / P small for accuracy).
REFERENCE_MJD = 58000.0


@runtime_checkable
class ClassModel(Protocol):
    """What the survey needs from a class model."""

    label: str
    is_transient: bool

    def sample_params(self, rng: np.random.Generator, n: int) -> pd.DataFrame:
        """Intrinsic parameters of ``n`` sources, one row each."""

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise-free flux (microjansky) at ``time`` (MJD) in ``band`` (band codes) of ``source`` (row of params)."""


# --------------------------------------------------------------------------- helpers

def truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float,
                     n: int) -> np.ndarray:
    """``n`` draws from N(mean, sd) truncated to [lo, hi] (inverse CDF, no rejection loop)."""
    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return mean + sd * ndtri(a + rng.random(n) * (b - a))


def lognormal(rng: np.random.Generator, median: float, sigma_ln: float, n: int) -> np.ndarray:
    """``n`` draws with the given median and natural-log scatter ``sigma_ln``."""
    return median * np.exp(sigma_ln * rng.standard_normal(n))


def apparent_magnitudes(rng: np.random.Generator, n: int, lo: float = APP_MAG_RANGE[0],
                        hi: float = APP_MAG_RANGE[1], slope: float = APP_MAG_COUNT_SLOPE) -> np.ndarray:
    """``n`` magnitudes in [lo, hi] with counts dN/dm proportional to 10**(slope * m)."""
    span = 10.0 ** (slope * (hi - lo)) - 1.0
    return lo + np.log10(1.0 + rng.random(n) * span) / slope


def redshift_from_distance_modulus(mu: np.ndarray) -> np.ndarray:
    """Invert the low-redshift d_L(z) expansion for z; ``mu`` in mag, shape preserved."""
    d_l = 10.0 ** ((np.asarray(mu, dtype=float) - 25.0) / 5.0) / HUBBLE_DISTANCE_MPC
    k = 1.0 - DECELERATION_Q0
    return (np.sqrt(1.0 + 2.0 * k * d_l) - 1.0) / k


def per_band(params: pd.DataFrame, stem: str, source: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Look up the per-band column ``{stem}_{band}`` for each observation, shape ``(n_obs,)``."""
    table = np.stack([params[f"{stem}_{b}"].to_numpy(dtype=float) for b in SUPPORTED_BANDS], axis=1)
    return table[source, band]


def choose_subtypes(rng: np.random.Generator, weights: tuple[float, ...], n: int) -> np.ndarray:
    """Index of the subtype of each of ``n`` sources, drawn with the given relative weights."""
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


# --------------------------------------------------------------------------- transients

@dataclass(frozen=True)
class TransientSpec:
    """Distributions of one supernova subtype (rest-frame times in days, r band).

    The light curve is the Villar et al. (2019, ApJ 884, 83) form: a logistic
    rise (``tau_rise``), a linear plateau decline losing ``plateau_drop`` of the
    flux over ``plateau`` days, then an exponential decline (``tau_fall``).
    Medians/``sigma_ln`` pairs are lognormal; ``(mean, sd)`` pairs normal;
    ``(lo, hi)`` pairs uniform. The g band shares the explosion time and plateau
    length and has its own timescales (``*_ratio_g`` times the r values), which
    sets the colour evolution; ``peak_colour`` is g - r at maximum.
    """

    abs_mag_r: tuple[float, float]
    peak_colour: tuple[float, float]
    tau_rise: tuple[float, float]
    tau_fall: tuple[float, float]
    plateau: tuple[float, float]
    plateau_drop: tuple[float, float]
    rise_ratio_g: float
    fall_ratio_g: float
    drop_ratio_g: float


# SN Ia: M_r ~ -19.3 with ~0.3 mag scatter before standardisation (Ashall et al. 2016;
# ZTF BTS, Perley et al. 2020); ~18 d rise; r fades ~0.6-0.7 mag in 15 d (tau ~ 25 d),
# g ~1 mag in 15 d (tau ~ 16 d) so Ia redden after a blue (g - r ~ -0.1) maximum.
SNIA_SPEC = TransientSpec(abs_mag_r=(-19.3, 0.3), peak_colour=(-0.08, 0.08),
                          tau_rise=(3.5, 0.25), tau_fall=(25.0, 0.2), plateau=(3.0, 0.5),
                          plateau_drop=(0.0, 0.1), rise_ratio_g=0.9, fall_ratio_g=0.62,
                          drop_ratio_g=1.5)
# SN II-P: M_r ~ -16.8 +- 1 (Richardson et al. 2014; Anderson et al. 2014), fast rise
# (~7-10 d, Gonzalez-Gaitan et al. 2015), ~80-100 d plateau during which the colour
# reddens strongly (g drops faster), then a drop to the radioactive tail.
SNIIP_SPEC = TransientSpec(abs_mag_r=(-16.8, 0.9), peak_colour=(0.0, 0.12),
                           tau_rise=(2.0, 0.3), tau_fall=(30.0, 0.3), plateau=(85.0, 0.2),
                           plateau_drop=(0.25, 0.55), rise_ratio_g=0.9, fall_ratio_g=0.8,
                           drop_ratio_g=1.6)
# SN II-L: brighter than II-P (M ~ -17.5, Faran et al. 2014), steady ~2-3 mag / 100 d decline.
SNIIL_SPEC = TransientSpec(abs_mag_r=(-17.5, 0.7), peak_colour=(0.0, 0.12),
                           tau_rise=(2.5, 0.3), tau_fall=(45.0, 0.25), plateau=(10.0, 0.5),
                           plateau_drop=(0.05, 0.2), rise_ratio_g=0.9, fall_ratio_g=0.65,
                           drop_ratio_g=1.6)
# SN Ib/c: M_r ~ -17.6 +- 0.8 (Drout et al. 2011; Lyman et al. 2016), faster (~12-15 d
# rise, tau_fall ~ 17 d in r) and redder at peak (host extinction; g - r ~ 0.3).
SNIBC_SPEC = TransientSpec(abs_mag_r=(-17.6, 0.8), peak_colour=(0.3, 0.15),
                           tau_rise=(2.8, 0.25), tau_fall=(17.0, 0.25), plateau=(2.0, 0.5),
                           plateau_drop=(0.0, 0.1), rise_ratio_g=0.9, fall_ratio_g=0.7,
                           drop_ratio_g=1.5)

#: Points per band used to locate the maximum of each transient light curve.
PEAK_GRID_POINTS = 801


def villar_shape(dt: np.ndarray, tau_rise: np.ndarray, tau_fall: np.ndarray,
                 plateau: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Unit-amplitude Villar et al. (2019) light curve; all arrays broadcast.

    Parameters
    ----------
    dt : ndarray
        Time since the reference epoch t0 (observer frame), days.
    tau_rise, tau_fall : ndarray
        Logistic rise and exponential decline timescales, days.
    plateau : ndarray
        Plateau length gamma, days.
    slope : ndarray
        Fractional flux decline per day during the plateau (``slope * plateau < 1``).
    """
    rise = expit(dt / tau_rise)  # numerically safe 1 / (1 + exp(-dt / tau_rise))
    on_plateau = 1.0 - slope * dt
    after = (1.0 - slope * plateau) * np.exp(-np.maximum(dt - plateau, 0.0) / tau_fall)
    return rise * np.where(dt < plateau, on_plateau, after)


def _shape_peak(tau_rise, tau_fall, plateau, slope) -> tuple[np.ndarray, np.ndarray]:
    """Time after t0 and value of the maximum of :func:`villar_shape`, each shape ``(n,)``."""
    u = np.linspace(0.0, 1.0, PEAK_GRID_POINTS)[None, :]
    lo = -5.0 * tau_rise
    hi = plateau + 10.0 * tau_rise
    dt = lo[:, None] + u * (hi - lo)[:, None]
    values = villar_shape(dt, tau_rise[:, None], tau_fall[:, None], plateau[:, None], slope[:, None])
    best = np.argmax(values, axis=1)
    rows = np.arange(len(best))
    return dt[rows, best], values[rows, best]


class VillarTransient:
    """Supernova class as a weighted mixture of :class:`TransientSpec` subtypes.

    Parameters
    ----------
    label : str
        Class label in the objects table.
    subtypes : tuple of (weight, TransientSpec)
        Subtypes and their relative weights.
    """

    is_transient = True

    def __init__(self, label: str, subtypes: tuple[tuple[float, TransientSpec], ...]):
        self.label = label
        self.subtypes = subtypes

    def _draw_spec_values(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Rest-frame r-band parameters and g ratios, drawn subtype by subtype."""
        which = choose_subtypes(rng, tuple(w for w, _ in self.subtypes), n)
        names = ("abs_mag", "colour", "tau_rise", "tau_fall", "plateau", "drop",
                 "rise_ratio_g", "fall_ratio_g", "drop_ratio_g")
        out = {k: np.empty(n) for k in names}
        for i, (_, spec) in enumerate(self.subtypes):
            idx = np.flatnonzero(which == i)
            m = len(idx)
            out["abs_mag"][idx] = spec.abs_mag_r[0] + spec.abs_mag_r[1] * rng.standard_normal(m)
            out["colour"][idx] = spec.peak_colour[0] + spec.peak_colour[1] * rng.standard_normal(m)
            out["tau_rise"][idx] = lognormal(rng, *spec.tau_rise, m)
            out["tau_fall"][idx] = lognormal(rng, *spec.tau_fall, m)
            out["plateau"][idx] = lognormal(rng, *spec.plateau, m)
            out["drop"][idx] = rng.uniform(*spec.plateau_drop, m)
            # Per-object scatter in the g/r timescale ratios, so colour curves overlap between classes.
            out["rise_ratio_g"][idx] = spec.rise_ratio_g * lognormal(rng, 1.0, 0.1, m)
            out["fall_ratio_g"][idx] = spec.fall_ratio_g * lognormal(rng, 1.0, 0.1, m)
            out["drop_ratio_g"][idx] = spec.drop_ratio_g * lognormal(rng, 1.0, 0.1, m)
        return out

    def sample_params(self, rng: np.random.Generator, n: int) -> pd.DataFrame:
        """Draw ``n`` supernovae.

        The apparent r peak magnitude is drawn first (so every class covers the
        same apparent range), then the absolute magnitude; the redshift follows
        from the distance modulus and stretches all timescales by ``1 + z``.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``redshift``, ``truth_*`` columns (peak magnitudes in mag, timescales
            in observer-frame days; ``truth_peak_mjd`` NaN until the survey places
            the peak) and internal per-band shape columns.
        """
        v = self._draw_spec_values(rng, n)
        m_r = apparent_magnitudes(rng, n)
        z = redshift_from_distance_modulus(m_r - v["abs_mag"])
        stretch = 1.0 + z
        p = pd.DataFrame({"redshift": z, "plateau": v["plateau"] * stretch})
        p["tau_rise_r"] = v["tau_rise"] * stretch
        p["tau_fall_r"] = v["tau_fall"] * stretch
        p["tau_rise_g"] = p["tau_rise_r"] * v["rise_ratio_g"]
        p["tau_fall_g"] = p["tau_fall_r"] * v["fall_ratio_g"]
        # Plateau slope: fraction of flux lost over the plateau, capped below 1 (flux stays > 0).
        p["slope_r"] = v["drop"] / p["plateau"]
        p["slope_g"] = np.minimum(v["drop"] * v["drop_ratio_g"], 0.9) / p["plateau"]
        peak_mag = {"r": m_r, "g": m_r + v["colour"]}
        for band in SUPPORTED_BANDS:
            offset, height = _shape_peak(p[f"tau_rise_{band}"].to_numpy(), p[f"tau_fall_{band}"].to_numpy(),
                                         p["plateau"].to_numpy(), p[f"slope_{band}"].to_numpy())
            p[f"amp_{band}"] = mag_to_flux(peak_mag[band]) / height
            p[f"peak_offset_{band}"] = offset
            p[f"truth_peak_mag_{band}"] = peak_mag[band]
        p["truth_peak_mjd"] = _nan(n)
        p["truth_abs_peak_mag_r"] = v["abs_mag"]
        p["truth_rise_days"] = p["tau_rise_r"]
        p["truth_fall_days"] = p["tau_fall_r"]
        p["truth_plateau_days"] = p["plateau"]
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Villar flux in microjansky; ~0 far from the event. ``rng`` is unused (deterministic model)."""
        # truth_peak_mjd is the r-band maximum; t0 is the common reference epoch of both bands.
        t0 = (params["truth_peak_mjd"] - params["peak_offset_r"]).to_numpy()[source]
        shape = villar_shape(time - t0, per_band(params, "tau_rise", source, band),
                             per_band(params, "tau_fall", source, band),
                             params["plateau"].to_numpy()[source], per_band(params, "slope", source, band))
        return per_band(params, "amp", source, band) * shape


# --------------------------------------------------------------------------- periodic variables

@dataclass(frozen=True)
class PeriodicSpec:
    """Distributions of one pulsating-star subtype.

    ``log10_period`` is (mean, sd, lo, hi) of a truncated normal in log10(days);
    ``amplitude_r`` is a uniform (lo, hi) peak-to-peak r amplitude in mag;
    ``amplitude_ratio_g`` is the mean g/r amplitude ratio; ``rise_fraction`` a
    uniform (lo, hi) fraction of the cycle spent brightening (small = sawtooth);
    ``colour`` is (mean, sd) of the mean g - r.
    """

    log10_period: tuple[float, float, float, float]
    amplitude_r: tuple[float, float]
    amplitude_ratio_g: float
    rise_fraction: tuple[float, float]
    colour: tuple[float, float]


# Classical Cepheids: P ~ 3-50 d with most at 5-10 d (OGLE, Soszynski et al. 2015);
# V amplitudes 0.3-1 mag with A_B : A_V : A_R ~ 1.5 : 1 : 0.8, i.e. A_g / A_r ~ 1.4;
# fast rise (~30 % of the cycle); F-G supergiants plus reddening, g - r ~ 0.6.
CEPHEID_SPEC = PeriodicSpec(log10_period=(0.85, 0.3, np.log10(3.0), np.log10(50.0)),
                            amplitude_r=(0.25, 0.7), amplitude_ratio_g=1.4,
                            rise_fraction=(0.2, 0.4), colour=(0.6, 0.15))
# RRab (fundamental mode, ~70 % of RR Lyrae): P ~ 0.45-0.9 d, steep rise (~15 % of the
# cycle), A_r 0.4-0.9 with A_g / A_r ~ 1.3 (Sesar et al. 2010, SDSS Stripe 82).
RRAB_SPEC = PeriodicSpec(log10_period=(np.log10(0.57), 0.07, np.log10(0.45), np.log10(0.9)),
                         amplitude_r=(0.4, 0.9), amplitude_ratio_g=1.3,
                         rise_fraction=(0.1, 0.2), colour=(0.25, 0.08))
# RRc (first overtone): P ~ 0.3-0.45 d, near-sinusoidal, A_r 0.25-0.45, bluer.
RRC_SPEC = PeriodicSpec(log10_period=(np.log10(0.34), 0.05, np.log10(0.3), np.log10(0.45)),
                        amplitude_r=(0.25, 0.45), amplitude_ratio_g=1.3,
                        rise_fraction=(0.35, 0.5), colour=(0.15, 0.08))


def pulsation_shape(phase: np.ndarray, rise_fraction: np.ndarray) -> np.ndarray:
    """Brightness shape in [0, 1] over one cycle (0 = minimum light, 1 = maximum).

    A half-cosine rise over ``rise_fraction`` of the cycle followed by a slower
    half-cosine decline: a smooth, asymmetric sawtooth. Peak-to-peak is exactly
    1, so the amplitude parameter is the true amplitude. Arrays broadcast.
    """
    rising = 0.5 * (1.0 - np.cos(np.pi * phase / rise_fraction))
    falling = 0.5 * (1.0 + np.cos(np.pi * (phase - rise_fraction) / (1.0 - rise_fraction)))
    return np.where(phase < rise_fraction, rising, falling)


class PeriodicVariable:
    """Pulsating star class as a weighted mixture of :class:`PeriodicSpec` subtypes."""

    is_transient = False

    def __init__(self, label: str, subtypes: tuple[tuple[float, PeriodicSpec], ...]):
        self.label = label
        self.subtypes = subtypes

    def sample_params(self, rng: np.random.Generator, n: int) -> pd.DataFrame:
        """Draw ``n`` stars.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``truth_period_days``, ``truth_amplitude_mag`` (r, peak to peak),
            ``truth_mean_mag_{g,r}`` (midway between maximum and minimum),
            ``truth_peak_mag_{g,r}`` (maximum light), ``redshift`` (NaN) and the
            internal ``amp_{g,r}``, ``rise_fraction``, ``phase0``.
        """
        which = choose_subtypes(rng, tuple(w for w, _ in self.subtypes), n)
        period, amp_r, ratio, rise, colour = (np.empty(n) for _ in range(5))
        for i, (_, spec) in enumerate(self.subtypes):
            idx = np.flatnonzero(which == i)
            m = len(idx)
            period[idx] = 10.0 ** truncated_normal(rng, *spec.log10_period, m)
            amp_r[idx] = rng.uniform(*spec.amplitude_r, m)
            ratio[idx] = spec.amplitude_ratio_g * lognormal(rng, 1.0, 0.05, m)
            rise[idx] = rng.uniform(*spec.rise_fraction, m)
            colour[idx] = spec.colour[0] + spec.colour[1] * rng.standard_normal(m)
        mean_r = apparent_magnitudes(rng, n)
        p = pd.DataFrame({"redshift": _nan(n), "amp_r": amp_r, "amp_g": amp_r * ratio,
                          "rise_fraction": rise, "phase0": rng.random(n)})
        p["mean_mag_r"] = mean_r
        p["mean_mag_g"] = mean_r + colour
        p["truth_period_days"] = period
        p["truth_amplitude_mag"] = amp_r
        for band in SUPPORTED_BANDS:
            p[f"truth_mean_mag_{band}"] = p[f"mean_mag_{band}"]
            p[f"truth_peak_mag_{band}"] = p[f"mean_mag_{band}"] - 0.5 * p[f"amp_{band}"]
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Strictly periodic flux in microjansky. ``rng`` is unused (deterministic model)."""
        period = params["truth_period_days"].to_numpy()[source]
        phase = np.mod((time - REFERENCE_MJD) / period + params["phase0"].to_numpy()[source], 1.0)
        brightness = pulsation_shape(phase, params["rise_fraction"].to_numpy()[source])
        mag = per_band(params, "mean_mag", source, band) + per_band(params, "amp", source, band) * (0.5 - brightness)
        return mag_to_flux(mag)


# --------------------------------------------------------------------------- quasars

# Damped random walk (Kelly et al. 2009): SF(dt) = SF_inf * sqrt(1 - exp(-|dt| / tau)).
# SDSS Stripe 82 quasars (MacLeod et al. 2010, ApJ 721, 1014): rest-frame tau ~ 200 d
# (~0.3 dex scatter), SF_inf ~ 0.2 mag (~0.2 dex), SF_inf ~ lambda^-0.48, so
# SF_g / SF_r ~ (6231 / 4770)^0.48 ~ 1.14. Quasars bright enough for ZTF sit at
# z ~ 0.3-3 (SDSS DR7, Schneider et al. 2010) with g - r ~ 0.1-0.3.
QSO_LOG10_TAU_REST = (2.3, 0.3)
QSO_LOG10_SF_INF_R = (-0.7, 0.2)
QSO_SF_RATIO_G = 1.14
QSO_REDSHIFT_GAMMA = (4.0, 0.35)  # shape, scale: mean 1.4, sd 0.7
QSO_COLOUR = (0.2, 0.1)


def damped_random_walk(rng: np.random.Generator, source: np.ndarray, time: np.ndarray,
                       tau: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Zero-mean Ornstein-Uhlenbeck process sampled at irregular times.

    Uses the exact discrete-time update between consecutive samples of a source,
    ``x_i = a x_{i-1} + sigma sqrt(1 - a^2) eps``, ``a = exp(-dt / tau)``, starting
    from the stationary distribution N(0, sigma^2). All observations of one source
    (every band and every realisation) share one path, so duplicates of a source
    see the same variability.

    Parameters
    ----------
    source : ndarray of int, shape (n_obs,)
        Source of each observation (index into ``tau`` and ``sigma``).
    time : ndarray of float, shape (n_obs,)
        Observation times, days (any order).
    tau, sigma : ndarray, shape (n_sources,)
        Damping timescale (days) and stationary standard deviation (mag).

    Returns
    -------
    ndarray, shape (n_obs,)
        Process value at each observation, in the input order.
    """
    order = np.lexsort((time, source))
    s, t = source[order], time[order]
    starts = np.r_[True, s[1:] != s[:-1]]
    seg_start = np.flatnonzero(starts)
    seg_id = np.cumsum(starts) - 1
    pos = np.arange(len(s)) - seg_start[seg_id]
    dt = np.r_[0.0, np.diff(t)]
    a = np.where(starts, 0.0, np.exp(-dt / tau[s]))  # a = 0 at a source's first sample: fresh stationary draw
    b = sigma[s] * np.sqrt(1.0 - a**2) * rng.standard_normal(len(s))
    # The recursion is sequential in time but independent across sources: step
    # through sample positions, vectorised over all sources at once.
    n_seg, width = len(seg_start), int(pos.max()) + 1 if len(s) else 0
    a_grid = np.zeros((n_seg, width))
    b_grid = np.zeros((n_seg, width))
    a_grid[seg_id, pos] = a
    b_grid[seg_id, pos] = b
    x_grid = np.zeros((n_seg, width))
    x_grid[:, 0] = b_grid[:, 0]
    for k in range(1, width):
        x_grid[:, k] = a_grid[:, k] * x_grid[:, k - 1] + b_grid[:, k]
    out = np.empty(len(s))
    out[order] = x_grid[seg_id, pos]
    return out


class DampedRandomWalkQSO:
    """Quasar: mean magnitude plus a damped random walk shared by both bands."""

    is_transient = False

    def __init__(self, label: str = "QSO"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int) -> pd.DataFrame:
        """Draw ``n`` quasars.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``redshift``, ``truth_tau_days`` (observer frame, days),
            ``truth_sf_inf_mag`` (r band, mag), ``truth_mean_mag_{g,r}`` and the
            internal ``sf_scale_{g,r}`` (band amplitude relative to r).
        """
        z = rng.gamma(*QSO_REDSHIFT_GAMMA, n) + 0.05
        tau_rest = 10.0 ** (QSO_LOG10_TAU_REST[0] + QSO_LOG10_TAU_REST[1] * rng.standard_normal(n))
        sf_inf = 10.0 ** (QSO_LOG10_SF_INF_R[0] + QSO_LOG10_SF_INF_R[1] * rng.standard_normal(n))
        mean_r = apparent_magnitudes(rng, n)
        colour = QSO_COLOUR[0] + QSO_COLOUR[1] * rng.standard_normal(n)
        p = pd.DataFrame({"redshift": z, "sf_scale_g": QSO_SF_RATIO_G, "sf_scale_r": 1.0})
        p["mean_mag_r"] = mean_r
        p["mean_mag_g"] = mean_r + colour
        p["truth_tau_days"] = tau_rest * (1.0 + z)  # time dilation
        p["truth_sf_inf_mag"] = sf_inf
        p["truth_mean_mag_g"] = p["mean_mag_g"]
        p["truth_mean_mag_r"] = p["mean_mag_r"]
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flux in microjansky; ``rng`` drives the stochastic variability."""
        # Stationary variance of the DRW is SF_inf^2 / 2.
        sigma = params["truth_sf_inf_mag"].to_numpy() / np.sqrt(2.0)
        x = damped_random_walk(rng, source, time, params["truth_tau_days"].to_numpy(), sigma)
        mag = per_band(params, "mean_mag", source, band) + per_band(params, "sf_scale", source, band) * x
        return mag_to_flux(mag)


# --------------------------------------------------------------------------- registry

#: label -> class model. Adding a class = adding one entry here.
CLASS_MODELS: dict[str, ClassModel] = {
    "SNIa": VillarTransient("SNIa", ((1.0, SNIA_SPEC),)),
    # Volume-limited mix: ~70 % II-P-like plateaus, ~30 % fast-declining II-L.
    "SNII": VillarTransient("SNII", ((0.7, SNIIP_SPEC), (0.3, SNIIL_SPEC))),
    "SNIbc": VillarTransient("SNIbc", ((1.0, SNIBC_SPEC),)),
    "QSO": DampedRandomWalkQSO("QSO"),
    "Cepheid": PeriodicVariable("Cepheid", ((1.0, CEPHEID_SPEC),)),
    "RRLyrae": PeriodicVariable("RRLyrae", ((0.7, RRAB_SPEC), (0.3, RRC_SPEC))),
}
