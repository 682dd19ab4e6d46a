"""One noise-free light-curve model per astrophysical class, and their registry.

Every model follows the small :class:`ClassModel` protocol:

* ``sample_params(rng, n, population)`` draws the intrinsic parameters of ``n``
  sources (``population``: :class:`~deeprubin.sources.simulate.population.PopulationConfig`)
  and returns a :class:`pandas.DataFrame` (one row per source). Columns named
  ``truth_*`` and ``redshift`` end up in the objects table; the rest are internal
  (e.g. per-band amplitudes ``amp_g``, ``amp_r``).
* ``true_flux(params, source, time, band, rng)`` evaluates the noise-free flux
  in microjansky for a flat batch of observations of many sources at once.

Transients (``is_transient = True``) get their peak time ``truth_peak_mjd``
filled in by the survey (it must fall inside the source's observing season),
after ``sample_params`` and before ``true_flux``.

Physics shared by all classes: extragalactic sources are drawn from volumetric
rates over the Planck 2018 comoving volume, placed at their luminosity distance
and time-dilated by ``1 + z``; every source is dimmed and reddened by Milky Way
dust (:mod:`~deeprubin.sources.simulate.physics`). Which sources end up in the
tables is decided by the survey's detection-based selection (Malmquist bias),
not by the samplers. SNe Ia come from a spectral template
(:mod:`~deeprubin.sources.simulate.snia`); core-collapse SNe and SLSNe use the
Villar et al. (2019) parametric form in the observer frame without K-corrections
(a known limitation at the SLSN redshifts).

Adding a class means adding one entry to :data:`CLASS_MODELS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
from scipy.special import expit

from deeprubin.core.schema import mag_to_flux
from deeprubin.sources.simulate.cadence import SUPPORTED_BANDS, SimulationConfigError
from deeprubin.sources.simulate.physics import (
    BAND_WAVELENGTH_AA,
    distance_modulus,
    draw_milky_way_ebv,
    draw_redshifts,
    milky_way_extinction,
    truncated_normal,
)
from deeprubin.sources.simulate.snia import HsiaoSNIa

#: Apparent mean-magnitude range (r band) of the Galactic stars and quasars drawn
#: before selection: 15 mag is safely below ZTF saturation (~12.5-13); the faint
#: end is the survey depth (``PopulationConfig.deepest_mag``), capped at 22 mag
#: (beyond the deepest single ZTF epochs, ~21.5; a deeper simulated survey then
#: sees the same population at higher signal-to-noise).
GALACTIC_BRIGHT_MAG = 15.0
GALACTIC_FAINT_CAP = 22.0

#: Slope of the apparent-magnitude counts of stars and quasars, dN/dm ~ 10**(slope m):
#: Galactic halo star counts and bright quasar counts at 15 < m < 21 rise by a
#: factor ~2 per magnitude (slope ~0.3; Juric et al. 2008; Richards et al. 2006).
APP_MAG_COUNT_SLOPE = 0.3

#: Reference epoch for periodic phases (keeps (t - t_ref) / P small for accuracy).
REFERENCE_MJD = 58000.0

#: Redshift evolution of core-collapse and SLSN rates: the cosmic star-formation
#: history, psi(z) ~ (1 + z)^2.7 at z < 1 (Madau & Dickinson 2014, ARA&A 52, 415).
CC_RATE_INDEX = 2.7


@runtime_checkable
class ClassModel(Protocol):
    """What the survey needs from a class model."""

    label: str
    is_transient: bool

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        """Intrinsic parameters of ``n`` sources, one row each."""

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise-free flux (microjansky) at ``time`` (MJD) in ``band`` (band codes) of ``source`` (row of params)."""


# --------------------------------------------------------------------------- helpers

def lognormal(rng: np.random.Generator, median: float, sigma_ln: float, n: int) -> np.ndarray:
    """``n`` draws with the given median and natural-log scatter ``sigma_ln``."""
    return median * np.exp(sigma_ln * rng.standard_normal(n))


def apparent_magnitudes(rng: np.random.Generator, n: int, lo: float, hi: float,
                        slope: float = APP_MAG_COUNT_SLOPE) -> np.ndarray:
    """``n`` magnitudes in [lo, hi] with counts dN/dm proportional to 10**(slope * m)."""
    span = 10.0 ** (slope * (hi - lo)) - 1.0
    return lo + np.log10(1.0 + rng.random(n) * span) / slope


def galactic_magnitudes(rng: np.random.Generator, n: int, population, label: str) -> np.ndarray:
    """Mean r magnitudes of ``n`` stars or quasars, from :data:`GALACTIC_BRIGHT_MAG` to the survey depth.

    Raises
    ------
    SimulationConfigError
        When the survey's deepest epochs are brighter than the brightest such source.
    """
    if population.deepest_mag <= GALACTIC_BRIGHT_MAG:
        raise SimulationConfigError(
            f"survey.lim_mag_median: limiting magnitude {population.deepest_mag:.2f} (median + 3 sigma) "
            f"is brighter than the brightest simulated {label} ({GALACTIC_BRIGHT_MAG} mag)")
    return apparent_magnitudes(rng, n, GALACTIC_BRIGHT_MAG, min(population.deepest_mag, GALACTIC_FAINT_CAP))


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


def _mw_dust(rng: np.random.Generator, n: int, population) -> dict[str, np.ndarray]:
    """Milky Way E(B-V) (key ``ebv``) and extinction per band (keys ``g``, ``r``), mag, shape ``(n,)``."""
    ebv = draw_milky_way_ebv(rng, n, population.mw_ebv_mean)
    return {"ebv": ebv, **{b: milky_way_extinction(ebv, b) for b in SUPPORTED_BANDS}}


# --------------------------------------------------------------------------- Villar transients

@dataclass(frozen=True)
class TransientSpec:
    """Distributions of one supernova subtype (rest-frame times in days, r band).

    The light curve is the Villar et al. (2019, ApJ 884, 83) form: a logistic
    rise (``tau_rise``), a linear plateau decline losing ``plateau_drop`` of the
    flux over ``plateau`` days, then an exponential decline (``tau_fall``).
    ``abs_mag_r`` and ``peak_colour`` are (mean, sd) normals; timescale pairs
    are (median, sigma_ln) lognormals; ``plateau_drop`` is uniform (lo, hi).
    The g band shares the explosion time and plateau length and has its own
    timescales (``*_ratio_g`` times the r values), which sets the colour
    evolution; ``peak_colour`` is the rest-frame g - r at maximum.
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


# Per-class distributions. Villar et al. (2019) fitted this form to the PS1-MDS
# spectroscopic sample (their Fig. 8: SN II have the longest plateaus, SN Ibc the
# fastest declines, SLSNe the slowest rises and declines); the medians below are
# set to reproduce the published rest-frame rise and decline times of each class.
# SN II-P: M_r ~ -16.8 +- 0.9 (Richardson et al. 2014, AJ 147, 118; Anderson et al. 2014),
# rise ~7-10 d (Gonzalez-Gaitan et al. 2015), ~80-100 d plateau with strong reddening.
SNIIP_SPEC = TransientSpec(abs_mag_r=(-16.8, 0.9), peak_colour=(0.0, 0.12),
                           tau_rise=(2.0, 0.3), tau_fall=(30.0, 0.3), plateau=(85.0, 0.2),
                           plateau_drop=(0.25, 0.55), rise_ratio_g=0.9, fall_ratio_g=0.8,
                           drop_ratio_g=1.6)
# SN II-L: brighter than II-P (M ~ -17.5 +- 0.7, Faran et al. 2014), steady ~2-3 mag / 100 d.
SNIIL_SPEC = TransientSpec(abs_mag_r=(-17.5, 0.7), peak_colour=(0.0, 0.12),
                           tau_rise=(2.5, 0.3), tau_fall=(45.0, 0.25), plateau=(10.0, 0.5),
                           plateau_drop=(0.05, 0.2), rise_ratio_g=0.9, fall_ratio_g=0.65,
                           drop_ratio_g=1.6)
# SN Ib/c: M_r ~ -17.6 +- 0.8 (Drout et al. 2011; Lyman et al. 2016), ~12-15 d rise,
# tau_fall ~ 17 d in r, redder at peak (host extinction; g - r ~ 0.3). Their rise and
# decline overlap those of SNe Ia (Villar et al. 2019; Perley et al. 2020).
SNIBC_SPEC = TransientSpec(abs_mag_r=(-17.6, 0.8), peak_colour=(0.3, 0.15),
                           tau_rise=(2.8, 0.25), tau_fall=(17.0, 0.25), plateau=(2.0, 0.5),
                           plateau_drop=(0.0, 0.1), rise_ratio_g=0.9, fall_ratio_g=0.7,
                           drop_ratio_g=1.5)
# SLSN-I: M_g ~ -21.5 +- 0.7 (ZTF sample of Chen et al. 2023, ApJ 943, 41), rest-frame
# rise (half-maximum to peak) ~25-30 d and decline to half maximum ~40-50 d
# (Chen et al. 2023; Nicholl et al. 2015), blue at maximum (g - r ~ -0.1).
SLSN_SPEC = TransientSpec(abs_mag_r=(-21.3, 0.7), peak_colour=(-0.1, 0.12),
                          tau_rise=(10.0, 0.3), tau_fall=(60.0, 0.3), plateau=(5.0, 0.5),
                          plateau_drop=(0.0, 0.1), rise_ratio_g=0.9, fall_ratio_g=0.75,
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
    rate_index : float
        Volumetric rate evolution, ``r(z) ~ (1 + z)**rate_index``.
    """

    is_transient = True

    def __init__(self, label: str, subtypes: tuple[tuple[float, TransientSpec], ...],
                 rate_index: float = CC_RATE_INDEX):
        self.label = label
        self.subtypes = subtypes
        self.rate_index = rate_index

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

    def brightest_abs_mag(self) -> float:
        """A bright bound (mean - 3 sd of the brightest subtype) on the peak absolute r magnitude."""
        return min(spec.abs_mag_r[0] - 3.0 * spec.abs_mag_r[1] for _, spec in self.subtypes)

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        """Draw ``n`` supernovae.

        Redshifts follow the volumetric rate (:data:`CC_RATE_INDEX`) out to where
        the brightest member would be fainter than the deepest epochs; apparent
        peak magnitudes follow from the Planck 2018 distance modulus and Milky Way
        extinction; all timescales are stretched by ``1 + z``.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``redshift``, ``truth_*`` columns (peak magnitudes in mag, timescales
            in observer-frame days; ``truth_peak_mjd`` NaN until the survey places
            the peak) and internal per-band shape columns.
        """
        z_max = population.redshift_max_for(self.brightest_abs_mag(), self.label)
        z = draw_redshifts(rng, n, population.redshift_min, z_max, self.rate_index)
        v = self._draw_spec_values(rng, n)
        dust = _mw_dust(rng, n, population)
        mu = distance_modulus(z)
        m_r = v["abs_mag"] + mu + dust["r"]
        stretch = 1.0 + z
        p = pd.DataFrame({"redshift": z, "plateau": v["plateau"] * stretch})
        p["tau_rise_r"] = v["tau_rise"] * stretch
        p["tau_fall_r"] = v["tau_fall"] * stretch
        p["tau_rise_g"] = p["tau_rise_r"] * v["rise_ratio_g"]
        p["tau_fall_g"] = p["tau_fall_r"] * v["fall_ratio_g"]
        # Plateau slope: fraction of flux lost over the plateau, capped below 1 (flux stays > 0).
        p["slope_r"] = v["drop"] / p["plateau"]
        p["slope_g"] = np.minimum(v["drop"] * v["drop_ratio_g"], 0.9) / p["plateau"]
        peak_mag = {"r": m_r, "g": m_r + v["colour"] + dust["g"] - dust["r"]}
        # Shapes only for sources that can be selected (the others are dropped by the survey).
        visible = np.flatnonzero(np.minimum(peak_mag["r"], peak_mag["g"]) <= population.hopeless_mag)
        for band in SUPPORTED_BANDS:
            offset, height = np.zeros(n), np.ones(n)
            offset[visible], height[visible] = _shape_peak(
                p[f"tau_rise_{band}"].to_numpy()[visible], p[f"tau_fall_{band}"].to_numpy()[visible],
                p["plateau"].to_numpy()[visible], p[f"slope_{band}"].to_numpy()[visible])
            p[f"amp_{band}"] = mag_to_flux(peak_mag[band]) / height
            p[f"peak_offset_{band}"] = offset
            p[f"truth_peak_mag_{band}"] = peak_mag[band]
        p["truth_peak_mjd"] = _nan(n)
        p["truth_abs_peak_mag_r"] = v["abs_mag"]
        p["truth_distmod"] = mu
        p["truth_mw_ebv"] = dust["ebv"]
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




# --------------------------------------------------------------------------- pulsating stars

@dataclass(frozen=True)
class PulsatorSpec:
    """Distributions of one pulsating-star subtype.

    ``period`` is (mean, sd) of a normal in days, or of log10(days) when
    ``log_period`` is True, truncated to ``population.period_range(label)``.
    The r-band peak-to-peak amplitude is ``bailey[0] + bailey[1] log10(P) +
    N(0, bailey[2])`` mag (a Bailey-diagram relation; slope 0 = no period
    dependence), clipped to ``amplitude_clip``. ``amplitude_ratio_g`` is A_g / A_r;
    ``colour`` (mean, sd) the mean g - r before reddening. The light-curve shape
    is a third-order Fourier series in magnitude (sine convention, Simon & Lee
    1981): amplitude ratios ``r21``, ``r31`` and phase differences ``phi21``,
    ``phi31`` (rad), each (mean, sd) normal.
    """

    period: tuple[float, float]
    log_period: bool
    bailey: tuple[float, float, float]
    amplitude_clip: tuple[float, float]
    amplitude_ratio_g: float
    colour: tuple[float, float]
    r21: tuple[float, float]
    r31: tuple[float, float]
    phi21: tuple[float, float]
    phi31: tuple[float, float]


# RRab and RRc: periods, r amplitudes (Bailey relation for RRab, A_r = -2.93 log10 P
# +- 0.17 mag; flat for RRc) and A_g / A_r ~ 1.39-1.41 from the 483 SDSS Stripe 82
# RR Lyrae of Sesar et al. (2010, ApJ 708, 717, Table 2: RRab <P> = 0.58 d, sd 0.07;
# RRc <P> = 0.34 d, sd 0.04; 78 % RRab). Fourier shapes: RRab R21 ~ 0.48, R31 ~ 0.33,
# phi21 ~ 2.4, phi31 ~ 5.1 (sine, V band; Kovacs & Kupi 2007, Jurcsik & Kovacs 1996) give
# the steep rise over ~20-25 % of the cycle; RRc are nearly sinusoidal (R21 ~ 0.15).
# Mean colours g - r ~ 0.25 (RRab) and 0.15 (RRc) (Sesar et al. 2010).
RRAB_SPEC = PulsatorSpec(period=(0.58, 0.07), log_period=False, bailey=(0.0, -2.93, 0.17),
                         amplitude_clip=(0.15, 1.3), amplitude_ratio_g=1.39, colour=(0.25, 0.08),
                         r21=(0.48, 0.04), r31=(0.33, 0.04), phi21=(2.4, 0.15), phi31=(5.1, 0.25))
RRC_SPEC = PulsatorSpec(period=(0.34, 0.042), log_period=False, bailey=(0.36, 0.0, 0.06),
                        amplitude_clip=(0.1, 0.6), amplitude_ratio_g=1.41, colour=(0.15, 0.08),
                        r21=(0.15, 0.05), r31=(0.07, 0.03), phi21=(2.9, 0.3), phi31=(5.5, 0.5))
# Classical Cepheids: log10 P ~ 0.85 +- 0.3 (most 5-10 d; OGLE, Soszynski et al. 2015);
# V amplitudes 0.3-1 mag, A_g / A_r ~ 1.4 (A_B : A_V : A_R ~ 1.5 : 1 : 0.8); Fourier
# R21 ~ 0.35, R31 ~ 0.18 (Simon & Lee 1981) giving a rise over ~30 % of the cycle;
# F-G supergiants plus disk reddening, g - r ~ 0.6.
CEPHEID_SPEC = PulsatorSpec(period=(0.85, 0.3), log_period=True, bailey=(0.45, 0.0, 0.12),
                            amplitude_clip=(0.15, 1.0), amplitude_ratio_g=1.4, colour=(0.6, 0.15),
                            r21=(0.35, 0.1), r31=(0.18, 0.07), phi21=(2.6, 0.3), phi31=(5.3, 0.4))

#: Phase samples used to normalise each Fourier shape to unit peak-to-peak.
SHAPE_GRID_POINTS = 256


def fourier_shape(phase: np.ndarray, r21: np.ndarray, r31: np.ndarray, phi21: np.ndarray,
                  phi31: np.ndarray) -> np.ndarray:
    """Un-normalised third-order Fourier magnitude curve (larger = fainter); arrays broadcast.

    ``m = sin(x) + r21 sin(2x + phi21) + r31 sin(3x + phi31)`` with ``x = 2 pi phase``.
    """
    x = 2.0 * np.pi * phase
    return np.sin(x) + r21 * np.sin(2.0 * x + phi21) + r31 * np.sin(3.0 * x + phi31)


def fourier_extrema(r21, r31, phi21, phi31) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-source (min, max, phase of min) of :func:`fourier_shape`, each shape ``(n,)``."""
    grid = np.linspace(0.0, 1.0, SHAPE_GRID_POINTS, endpoint=False)[None, :]
    m = fourier_shape(grid, r21[:, None], r31[:, None], phi21[:, None], phi31[:, None])
    return m.min(axis=1), m.max(axis=1), grid[0, np.argmin(m, axis=1)]


class FourierPulsator:
    """Pulsating star class (RR Lyrae, Cepheids) as a mixture of :class:`PulsatorSpec` subtypes."""

    is_transient = False

    def __init__(self, label: str, subtypes: tuple[tuple[float, PulsatorSpec], ...]):
        self.label = label
        self.subtypes = subtypes

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        """Draw ``n`` stars.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``truth_period_days``, ``truth_amplitude_mag`` (r, peak to peak),
            ``truth_amplitude_g_mag``, ``truth_subtype`` (index into ``subtypes``),
            ``truth_mean_mag_{g,r}`` (midway between maximum and minimum, with
            Milky Way extinction), ``truth_peak_mag_{g,r}`` (maximum light),
            ``truth_mw_ebv``, ``redshift`` (NaN) and internal shape columns.
        """
        lo, hi = population.period_range(self.label)
        which = choose_subtypes(rng, tuple(w for w, _ in self.subtypes), n)
        cols = ("period", "amp_r", "ratio", "colour", "r21", "r31", "phi21", "phi31")
        v = {k: np.empty(n) for k in cols}
        for i, (_, spec) in enumerate(self.subtypes):
            idx = np.flatnonzero(which == i)
            m = len(idx)
            if spec.log_period:
                v["period"][idx] = 10.0 ** truncated_normal(rng, *spec.period, np.log10(lo), np.log10(hi), m)
            else:
                v["period"][idx] = truncated_normal(rng, *spec.period, lo, hi, m)
            a, b, sd = spec.bailey
            amp = a + b * np.log10(v["period"][idx]) + sd * rng.standard_normal(m)
            v["amp_r"][idx] = np.clip(amp, *spec.amplitude_clip)
            v["ratio"][idx] = spec.amplitude_ratio_g * lognormal(rng, 1.0, 0.05, m)
            v["colour"][idx] = spec.colour[0] + spec.colour[1] * rng.standard_normal(m)
            for key in ("r21", "r31", "phi21", "phi31"):
                mean, sd_k = getattr(spec, key)
                v[key][idx] = mean + sd_k * rng.standard_normal(m)
        v["r21"], v["r31"] = np.abs(v["r21"]), np.abs(v["r31"])
        dust = _mw_dust(rng, n, population)
        mean_r = galactic_magnitudes(rng, n, population, self.label)
        lo_m, hi_m, _ = fourier_extrema(v["r21"], v["r31"], v["phi21"], v["phi31"])
        p = pd.DataFrame({"redshift": _nan(n), "amp_r": v["amp_r"], "amp_g": v["amp_r"] * v["ratio"],
                          "r21": v["r21"], "r31": v["r31"], "phi21": v["phi21"], "phi31": v["phi31"],
                          "shape_min": lo_m, "shape_max": hi_m, "phase0": rng.random(n)})
        p["mean_mag_r"] = mean_r + dust["r"]
        p["mean_mag_g"] = mean_r + v["colour"] + dust["g"]
        p["truth_period_days"] = v["period"]
        p["truth_amplitude_mag"] = v["amp_r"]
        p["truth_amplitude_g_mag"] = p["amp_g"]
        p["truth_subtype"] = which.astype(float)
        p["truth_mw_ebv"] = dust["ebv"]
        for band in SUPPORTED_BANDS:
            p[f"truth_mean_mag_{band}"] = p[f"mean_mag_{band}"]
            p[f"truth_peak_mag_{band}"] = p[f"mean_mag_{band}"] - 0.5 * p[f"amp_{band}"]
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Strictly periodic flux in microjansky. ``rng`` is unused (deterministic model)."""
        period = params["truth_period_days"].to_numpy()[source]
        phase = np.mod((time - REFERENCE_MJD) / period + params["phase0"].to_numpy()[source], 1.0)
        col = {k: params[k].to_numpy()[source] for k in ("r21", "r31", "phi21", "phi31", "shape_min", "shape_max")}
        shape = fourier_shape(phase, col["r21"], col["r31"], col["phi21"], col["phi31"])
        unit = (shape - col["shape_min"]) / (col["shape_max"] - col["shape_min"])  # 0 = max light, 1 = min
        mag = per_band(params, "mean_mag", source, band) + per_band(params, "amp", source, band) * (unit - 0.5)
        return mag_to_flux(mag)


# --------------------------------------------------------------------------- eclipsing binaries

# Contact (W UMa, EW) and detached (Algol, EA) binaries. Among the ZTF periodic
# variables, EW outnumber EA by ~7 to 1 (Chen et al. 2020, ApJS 249, 18: 369,707 EW,
# 49,943 EA). EW periods cluster at 0.25-0.5 d (lognormal, median 0.37 d; Rucinski 2007)
# with r amplitudes 0.1-0.8 mag (median ~0.4) and minima of nearly equal depth. EA
# periods spread over 1-20 d (log-normal, median ~3 d; Prsa et al. 2011, Kepler EB
# catalogue); eclipse half-width in phase (R1 + R2) / (2 pi a) ~ 0.05 (P / 1 d)^(-2/3)
# from Kepler's third law for solar-type pairs; primary depths 0.2-1.2 mag and
# secondary/primary depth ratios 0-0.8 (temperature ratio). Colours of F-K dwarfs,
# g - r ~ 0.3-0.6; eclipse depths nearly grey (A_g / A_r ~ 1.05).
EW_WEIGHT, EA_WEIGHT = 369707.0, 49943.0
EW_LOG10_PERIOD = (np.log10(0.37), 0.12)
EW_AMPLITUDE = (0.4, 0.15, 0.1, 0.8)      # mean, sd, lo, hi (mag)
EW_DEPTH_RATIO = (0.8, 1.0)               # secondary / primary, uniform
EA_LOG10_PERIOD = (np.log10(3.0), 0.35)
EA_DEPTH = (0.2, 1.2)                     # primary depth (mag), uniform
EA_DEPTH_RATIO = (0.0, 0.8)
EA_WIDTH_AT_1D = 0.05                     # eclipse half-width (phase) at P = 1 d
EB_COLOUR = (0.45, 0.12)
EB_DEPTH_RATIO_G = 1.05


def eclipse_profile(phase: np.ndarray, kind: np.ndarray, width: np.ndarray, depth1: np.ndarray,
                    depth2: np.ndarray) -> np.ndarray:
    """Magnitude excess (>= 0, mag) of an eclipsing binary at ``phase`` (primary eclipse at 0).

    Contact systems (``kind == 0``): continuously varying ellipsoidal light
    curve, ``depth * (1 - cos(4 pi phase)) / 2`` with the primary depth at phase 0
    and the secondary at 0.5. Detached systems (``kind == 1``): flat outside
    eclipses, Gaussian-profile eclipses of half-width ``width`` at phases 0 and 0.5.
    Arrays broadcast.
    """
    d0 = np.minimum(phase, 1.0 - phase)                # distance to primary eclipse
    d5 = np.abs(phase - 0.5)                           # distance to secondary eclipse
    near_primary = d0 < d5
    contact = np.where(near_primary, depth1, depth2) * 0.5 * (1.0 + np.cos(4.0 * np.pi * np.minimum(d0, d5)))
    detached = depth1 * np.exp(-0.5 * (d0 / width) ** 2) + depth2 * np.exp(-0.5 * (d5 / width) ** 2)
    return np.where(kind == 0, contact, detached)


class EclipsingBinary:
    """Eclipsing binaries: a contact (EW) / detached (EA) mixture."""

    is_transient = False

    def __init__(self, label: str = "EB"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        """Draw ``n`` binaries.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``truth_period_days`` (orbital), ``truth_amplitude_mag`` (r primary
            eclipse depth), ``truth_subtype`` (0 = contact EW, 1 = detached EA),
            ``truth_mean_mag_{g,r}`` (out-of-eclipse, with Milky Way extinction),
            ``truth_peak_mag_{g,r}`` (= out-of-eclipse), ``truth_mw_ebv``,
            ``redshift`` (NaN) and internal columns.
        """
        lo, hi = population.period_range(self.label)
        kind = choose_subtypes(rng, (EW_WEIGHT, EA_WEIGHT), n)
        ew, ea = kind == 0, kind == 1
        log_p = np.empty(n)
        log_p[ew] = truncated_normal(rng, *EW_LOG10_PERIOD, np.log10(lo), np.log10(hi), int(ew.sum()))
        log_p[ea] = truncated_normal(rng, *EA_LOG10_PERIOD, np.log10(lo), np.log10(hi), int(ea.sum()))
        period = 10.0 ** log_p
        depth1 = np.where(ew, truncated_normal(rng, *EW_AMPLITUDE, n), rng.uniform(*EA_DEPTH, n))
        ratio = np.where(ew, rng.uniform(*EW_DEPTH_RATIO, n), rng.uniform(*EA_DEPTH_RATIO, n))
        width = EA_WIDTH_AT_1D * period ** (-2.0 / 3.0) * lognormal(rng, 1.0, 0.2, n)
        dust = _mw_dust(rng, n, population)
        base_r = galactic_magnitudes(rng, n, population, self.label)
        colour = EB_COLOUR[0] + EB_COLOUR[1] * rng.standard_normal(n)
        p = pd.DataFrame({"redshift": _nan(n), "kind": kind.astype(float), "width": np.minimum(width, 0.2),
                          "depth1_r": depth1, "depth2_r": depth1 * ratio,
                          "depth1_g": depth1 * EB_DEPTH_RATIO_G, "depth2_g": depth1 * ratio * EB_DEPTH_RATIO_G,
                          "phase0": rng.random(n)})
        p["mean_mag_r"] = base_r + dust["r"]
        p["mean_mag_g"] = base_r + colour + dust["g"]
        p["truth_period_days"] = period
        p["truth_amplitude_mag"] = depth1
        p["truth_subtype"] = kind.astype(float)
        p["truth_mw_ebv"] = dust["ebv"]
        for band in SUPPORTED_BANDS:
            p[f"truth_mean_mag_{band}"] = p[f"mean_mag_{band}"]
            p[f"truth_peak_mag_{band}"] = p[f"mean_mag_{band}"]
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Periodic eclipsing flux in microjansky. ``rng`` is unused (deterministic model)."""
        period = params["truth_period_days"].to_numpy()[source]
        phase = np.mod((time - REFERENCE_MJD) / period + params["phase0"].to_numpy()[source], 1.0)
        excess = eclipse_profile(phase, params["kind"].to_numpy()[source], params["width"].to_numpy()[source],
                                 per_band(params, "depth1", source, band), per_band(params, "depth2", source, band))
        return mag_to_flux(per_band(params, "mean_mag", source, band) + excess)


# --------------------------------------------------------------------------- quasars

# Damped random walk (Kelly et al. 2009): SF(dt) = SF_inf * sqrt(1 - exp(-|dt| / tau)).
# MacLeod et al. (2010, ApJ 721, 1014, eq. 7 and Table 1; SDSS Stripe 82 quasars):
# log10 f = A + B log10(lambda_RF / 4000 A) + C (M_i + 23) + D log10(M_BH / 1e9 M_sun)
# for f = SF_inf (mag): A, B, C, D = -0.51, -0.479, 0.131, 0.18 and for f = tau
# (rest-frame days): 2.4, 0.17, 0.03, 0.21. Residual scatter about the relations
# ~0.2 dex in each. Black-hole masses of bright SDSS quasars: log10 M_BH ~ 8.5 +- 0.4
# (Shen et al. 2011, ApJS 194, 45). Redshifts of ZTF-bright quasars z ~ 0.3-3 (SDSS DR7,
# Schneider et al. 2010) with g - r ~ 0.1-0.3; K-correction of a power-law continuum
# f_nu ~ nu^-0.5 (Richards et al. 2006).
MACLEOD_SF = (-0.51, -0.479, 0.131, 0.18)
MACLEOD_TAU = (2.4, 0.17, 0.03, 0.21)
MACLEOD_SCATTER_DEX = 0.2
QSO_LOG10_MBH = (8.5, 0.4)
QSO_REDSHIFT_GAMMA = (4.0, 0.35)  # shape, scale: mean 1.4, sd 0.7
QSO_COLOUR = (0.2, 0.1)
QSO_ALPHA_NU = -0.5


def macleod_relation(coeffs: tuple[float, float, float, float], rest_wavelength_aa: np.ndarray,
                     abs_mag_i: np.ndarray, log10_mbh: np.ndarray) -> np.ndarray:
    """MacLeod et al. (2010) eq. 7: SF_inf (mag) or rest-frame tau (days); arrays broadcast."""
    a, b, c, d = coeffs
    return 10.0 ** (a + b * np.log10(rest_wavelength_aa / 4000.0) + c * (abs_mag_i + 23.0)
                    + d * (log10_mbh - 9.0))


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
    """Quasar: mean magnitude plus one damped random walk, scaled per band (MacLeod et al. 2010)."""

    is_transient = False

    def __init__(self, label: str = "QSO"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        """Draw ``n`` quasars.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``redshift``, ``truth_tau_days`` (observer frame, r band, days),
            ``truth_sf_inf_mag`` (r band, mag), ``truth_sf_inf_g_mag``,
            ``truth_abs_mag_i``, ``truth_log10_mbh``, ``truth_mean_mag_{g,r}``
            (with Milky Way extinction), ``truth_mw_ebv`` and the internal
            ``sf_{g,r}`` (per-band SF_inf, mag).
        """
        z = np.clip(rng.gamma(*QSO_REDSHIFT_GAMMA, n) + 0.05, population.redshift_min, population.redshift_max)
        log_mbh = truncated_normal(rng, *QSO_LOG10_MBH, 7.0, 10.0, n)
        dust = _mw_dust(rng, n, population)
        mean_r = galactic_magnitudes(rng, n, population, self.label)
        colour = QSO_COLOUR[0] + QSO_COLOUR[1] * rng.standard_normal(n)
        k_corr = -2.5 * (1.0 + QSO_ALPHA_NU) * np.log10(1.0 + z)
        abs_i = mean_r - distance_modulus(z) - k_corr  # i ~ r for a quasar continuum (g - r ~ 0.2)
        scatter_sf = MACLEOD_SCATTER_DEX * rng.standard_normal(n)
        scatter_tau = MACLEOD_SCATTER_DEX * rng.standard_normal(n)
        p = pd.DataFrame({"redshift": z})
        for band in SUPPORTED_BANDS:
            rest = BAND_WAVELENGTH_AA[band] / (1.0 + z)
            p[f"sf_{band}"] = macleod_relation(MACLEOD_SF, rest, abs_i, log_mbh) * 10.0 ** scatter_sf
        tau_rest = macleod_relation(MACLEOD_TAU, BAND_WAVELENGTH_AA["r"] / (1.0 + z), abs_i, log_mbh)
        p["mean_mag_r"] = mean_r + dust["r"]
        p["mean_mag_g"] = mean_r + colour + dust["g"]
        p["truth_tau_days"] = tau_rest * 10.0 ** scatter_tau * (1.0 + z)  # time dilation
        p["truth_sf_inf_mag"] = p["sf_r"]
        p["truth_sf_inf_g_mag"] = p["sf_g"]
        p["truth_abs_mag_i"] = abs_i
        p["truth_log10_mbh"] = log_mbh
        p["truth_mw_ebv"] = dust["ebv"]
        p["truth_mean_mag_g"] = p["mean_mag_g"]
        p["truth_mean_mag_r"] = p["mean_mag_r"]
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flux in microjansky; ``rng`` drives the stochastic variability."""
        # Unit-variance walk shared by both bands; the stationary sd of a DRW is SF_inf / sqrt(2).
        x = damped_random_walk(rng, source, time, params["truth_tau_days"].to_numpy(),
                               np.ones(len(params)))
        mag = per_band(params, "mean_mag", source, band) + per_band(params, "sf", source, band) / np.sqrt(2.0) * x
        return mag_to_flux(mag)


# --------------------------------------------------------------------------- registry

#: label -> class model. Adding a class = adding one entry here.
CLASS_MODELS: dict[str, ClassModel] = {
    "SNIa": HsiaoSNIa("SNIa"),
    # Volume-limited mix: ~70 % II-P-like plateaus, ~30 % fast-declining II-L.
    "SNII": VillarTransient("SNII", ((0.7, SNIIP_SPEC), (0.3, SNIIL_SPEC))),
    "SNIbc": VillarTransient("SNIbc", ((1.0, SNIBC_SPEC),)),
    "SLSN": VillarTransient("SLSN", ((1.0, SLSN_SPEC),)),
    "QSO": DampedRandomWalkQSO("QSO"),
    "Cepheid": FourierPulsator("Cepheid", ((1.0, CEPHEID_SPEC),)),
    # Sesar et al. (2010): 379 RRab and 104 RRc in Stripe 82.
    "RRLyrae": FourierPulsator("RRLyrae", ((379.0, RRAB_SPEC), (104.0, RRC_SPEC))),
    "EB": EclipsingBinary("EB"),
}

# Classes no training survey lists (the anomaly layer's held-out populations): novel.py.
from deeprubin.sources.simulate.novel import NOVEL_MODELS  # noqa: E402  (uses the helpers above)

CLASS_MODELS.update(NOVEL_MODELS)
