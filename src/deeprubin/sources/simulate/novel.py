"""Classes the classifier never sees: the anomaly layer's held-out test populations.

Registered in :data:`~deeprubin.sources.simulate.classes.CLASS_MODELS` under labels that no
training survey lists (``task.classes`` does not name them): the anomaly stage simulates them
in a survey of their own (same cadence and noise, another seed) and scores them against the
known classes' test objects. Each follows the :class:`~deeprubin.sources.simulate.classes.ClassModel`
protocol.

* :class:`TidalDisruption` (``TDE``): Gaussian rise, ``t^-5/3`` power-law decline, blue and
  nearly constant colour. ZTF TDEs (van Velzen et al. 2021, ApJ 908, 4; Hammerstein et al.
  2023, ApJ 942, 9): peak M_g ~ -19.8 +- 0.7, rise sigma ~ 10^(1.1 +- 0.2) d, decline
  ``((t - t_peak + t0) / t0)^-5/3`` with t0 ~ 10^(1.5 +- 0.2) d, g - r ~ -0.3 +- 0.1 (T ~ 2-4e4 K).
* :class:`Kilonova` (``KN``): AT 2017gfo-like (Villar et al. 2017, ApJ 851, L21; Kasliwal et
  al. 2017): rise under a day, peak M_r ~ -16 +- 0.5, then exponential fading with
  e-folding times ~1 d in g (~1 mag/day) and ~2 d in r (~0.5 mag/day): reddening fast.
* :class:`Microlensing` (``uLens``): single-lens Paczynski (1986) magnification of a constant
  star, achromatic and symmetric: ``A(u) = (u^2 + 2) / (u sqrt(u^2 + 4))``,
  ``u = sqrt(u0^2 + ((t - t0) / tE)^2)``; tE lognormal with median 25 d (OGLE bulge events,
  Mroz et al. 2017, Nature 548, 183), u0 uniform in [0.02, 1], source flux fraction
  (blending) uniform in [0.2, 1].
* :class:`Unphysical` (``Unphysical``): achromatic rectangular dips or flashes of a constant
  star, repeating with a period that drifts linearly in time; no astrophysical model makes
  box-shaped, colourless events whose period changes by tens of per cent within a season.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from deeprubin.core.schema import mag_to_flux
from deeprubin.sources.simulate.cadence import SUPPORTED_BANDS
from deeprubin.sources.simulate.physics import distance_modulus, draw_redshifts

# classes.py imports this module at its end (registry); the helpers it needs come from there
from deeprubin.sources.simulate import classes as _c

#: TDE (van Velzen et al. 2021): peak M_g (mean, sd); log10 rise sigma and decline t0 [rest days].
TDE_ABS_MAG_G = (-19.8, 0.7)
TDE_LOG10_RISE = (1.1, 0.2)
TDE_LOG10_T0 = (1.5, 0.2)
TDE_COLOUR = (-0.3, 0.1)
#: Kilonova (AT 2017gfo-like): peak M_r (mean, sd), peak g - r, e-folding times [rest days].
KN_ABS_MAG_R = (-16.0, 0.5)
KN_COLOUR = (-0.1, 0.2)
KN_TAU = {"g": (1.0, 0.3), "r": (2.0, 0.3)}       # (median, sigma_ln)
KN_RISE_DAYS = 0.3
#: Microlensing: Einstein time (median d, sigma_ln), impact parameter and blending ranges.
ULENS_TE = (25.0, 0.6)
ULENS_U0 = (0.02, 1.0)
ULENS_BLEND = (0.2, 1.0)
#: Unphysical boxes: period at the reference epoch [d], drift rate of ln(period) per 100 d, box width
#: [d], flash amplitude [mag] / dip depth [fraction of the flux].
UNPHYS_PERIOD = (4.0, 30.0)
UNPHYS_DRIFT_PER_100D = (0.1, 0.4)
UNPHYS_WIDTH = (0.5, 3.0)
UNPHYS_FLASH_MAG = (0.5, 1.5)
UNPHYS_DIP_DEPTH = (0.2, 0.6)


def _extragalactic(rng, n, population, label, abs_mag, brightest, rate_index=0.0):
    """Redshift, distance modulus, Milky Way dust and absolute magnitude of ``n`` events."""
    z_max = population.redshift_max_for(brightest, label)
    z = draw_redshifts(rng, n, population.redshift_min, z_max, rate_index)
    m_abs = abs_mag[0] + abs_mag[1] * rng.standard_normal(n)
    dust = _c._mw_dust(rng, n, population)
    return z, distance_modulus(z), dust, m_abs


class TidalDisruption:
    """Tidal disruption flare: Gaussian rise, ``t^-5/3`` decline, constant blue colour."""

    is_transient = True

    def __init__(self, label: str = "TDE"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        brightest = TDE_ABS_MAG_G[0] - 3.0 * TDE_ABS_MAG_G[1]
        z, mu, dust, m_g = _extragalactic(rng, n, population, self.label, TDE_ABS_MAG_G, brightest)
        colour = TDE_COLOUR[0] + TDE_COLOUR[1] * rng.standard_normal(n)
        stretch = 1.0 + z
        p = pd.DataFrame({"redshift": z})
        p["rise"] = 10.0 ** (TDE_LOG10_RISE[0] + TDE_LOG10_RISE[1] * rng.standard_normal(n)) * stretch
        p["t0"] = 10.0 ** (TDE_LOG10_T0[0] + TDE_LOG10_T0[1] * rng.standard_normal(n)) * stretch
        peak = {"g": m_g + mu + dust["g"], "r": m_g - colour + mu + dust["r"]}
        for band in SUPPORTED_BANDS:
            p[f"amp_{band}"] = mag_to_flux(peak[band])
            p[f"truth_peak_mag_{band}"] = peak[band]
        p["truth_peak_mjd"] = np.full(n, np.nan)
        p["truth_rise_days"] = p["rise"]
        p["truth_fall_days"] = p["t0"]
        p["truth_distmod"] = mu
        p["truth_mw_ebv"] = dust["ebv"]
        return p

    def true_flux(self, params, source, time, band, rng) -> np.ndarray:
        dt = time - params["truth_peak_mjd"].to_numpy()[source]
        rise = params["rise"].to_numpy()[source]
        t0 = params["t0"].to_numpy()[source]
        shape = np.where(dt < 0, np.exp(-0.5 * (dt / rise) ** 2),
                         (np.maximum(dt, 0.0) / t0 + 1.0) ** (-5.0 / 3.0))
        return _c.per_band(params, "amp", source, band) * shape


class Kilonova:
    """Kilonova: sub-day rise, then exponential fading, faster in g than in r."""

    is_transient = True

    def __init__(self, label: str = "KN"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        brightest = KN_ABS_MAG_R[0] - 3.0 * KN_ABS_MAG_R[1]
        z, mu, dust, m_r = _extragalactic(rng, n, population, self.label, KN_ABS_MAG_R, brightest)
        colour = KN_COLOUR[0] + KN_COLOUR[1] * rng.standard_normal(n)
        stretch = 1.0 + z
        p = pd.DataFrame({"redshift": z})
        peak = {"r": m_r + mu + dust["r"], "g": m_r + colour + mu + dust["g"]}
        for band in SUPPORTED_BANDS:
            p[f"tau_{band}"] = _c.lognormal(rng, *KN_TAU[band], n) * stretch
            p[f"amp_{band}"] = mag_to_flux(peak[band])
            p[f"truth_peak_mag_{band}"] = peak[band]
        p["rise"] = KN_RISE_DAYS * stretch
        p["truth_peak_mjd"] = np.full(n, np.nan)
        p["truth_fall_days"] = p["tau_r"]
        p["truth_distmod"] = mu
        p["truth_mw_ebv"] = dust["ebv"]
        return p

    def true_flux(self, params, source, time, band, rng) -> np.ndarray:
        dt = time - params["truth_peak_mjd"].to_numpy()[source]
        rise = params["rise"].to_numpy()[source]
        tau = _c.per_band(params, "tau", source, band)
        shape = np.where(dt < 0, np.exp(np.clip(dt, -50.0 * rise, 0.0) / rise), np.exp(-np.maximum(dt, 0.0) / tau))
        return _c.per_band(params, "amp", source, band) * shape


def paczynski(u: np.ndarray) -> np.ndarray:
    """Point-source point-lens magnification ``A(u) = (u^2 + 2) / (u sqrt(u^2 + 4))``."""
    return (u ** 2 + 2.0) / (u * np.sqrt(u ** 2 + 4.0))


class _GalacticBase:
    """A constant star (mean magnitudes with the Galactic magnitude counts and dust)."""

    is_transient = False

    def _star(self, rng, n, population) -> pd.DataFrame:
        dust = _c._mw_dust(rng, n, population)
        mean_r = _c.galactic_magnitudes(rng, n, population, self.label)
        colour = rng.uniform(0.2, 1.0, n)    # g - r of field stars
        p = pd.DataFrame({"redshift": np.full(n, np.nan)})
        p["mean_mag_r"] = mean_r + dust["r"]
        p["mean_mag_g"] = mean_r + colour + dust["g"]
        for band in SUPPORTED_BANDS:
            p[f"truth_mean_mag_{band}"] = p[f"mean_mag_{band}"]
        p["truth_mw_ebv"] = dust["ebv"]
        return p


class Microlensing(_GalacticBase):
    """Single-lens microlensing of a (possibly blended) constant star: achromatic, symmetric."""

    is_transient = True

    def __init__(self, label: str = "uLens"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        p = self._star(rng, n, population)
        p["t_e"] = _c.lognormal(rng, *ULENS_TE, n)
        p["u0"] = rng.uniform(*ULENS_U0, n)
        p["blend"] = rng.uniform(*ULENS_BLEND, n)
        peak_gain = -2.5 * np.log10(p["blend"] * paczynski(p["u0"].to_numpy()) + 1.0 - p["blend"])
        for band in SUPPORTED_BANDS:
            p[f"truth_peak_mag_{band}"] = p[f"mean_mag_{band}"] + peak_gain
        p["truth_peak_mjd"] = np.full(n, np.nan)
        p["truth_rise_days"] = p["t_e"]
        return p

    def true_flux(self, params, source, time, band, rng) -> np.ndarray:
        t0 = params["truth_peak_mjd"].to_numpy()[source]
        u = np.hypot(params["u0"].to_numpy()[source], (time - t0) / params["t_e"].to_numpy()[source])
        fs = params["blend"].to_numpy()[source]
        return mag_to_flux(_c.per_band(params, "mean_mag", source, band)) * (fs * paczynski(u) + 1.0 - fs)


class Unphysical(_GalacticBase):
    """Achromatic box-shaped flashes or dips of a constant star, at a linearly drifting period."""

    def __init__(self, label: str = "Unphysical"):
        self.label = label

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        p = self._star(rng, n, population)
        p["period0"] = np.exp(rng.uniform(*np.log(UNPHYS_PERIOD), n))
        p["drift"] = rng.uniform(*UNPHYS_DRIFT_PER_100D, n) / 100.0 * rng.choice([-1.0, 1.0], n)
        p["width"] = rng.uniform(*UNPHYS_WIDTH, n)
        p["phase0"] = rng.random(n)
        flash = rng.random(n) < 0.5
        gain = np.where(flash, 10.0 ** (0.4 * rng.uniform(*UNPHYS_FLASH_MAG, n)), 1.0 - rng.uniform(*UNPHYS_DIP_DEPTH, n))
        p["factor"] = gain
        p["truth_subtype"] = flash.astype(float)          # 1: flashes, 0: dips
        p["truth_period_days"] = p["period0"]
        p["truth_amplitude_mag"] = -2.5 * np.log10(gain)
        for band in SUPPORTED_BANDS:
            p[f"truth_peak_mag_{band}"] = p[f"mean_mag_{band}"] + np.minimum(p["truth_amplitude_mag"], 0.0)
        return p

    def true_flux(self, params, source, time, band, rng) -> np.ndarray:
        p0 = params["period0"].to_numpy()[source]
        k = params["drift"].to_numpy()[source]
        dt = time - _c.REFERENCE_MJD
        # period P(t) = P0 exp(k dt) (always > 0): cycles elapsed = integral dt / P = -expm1(-k dt) / (k P0)
        cycles = -np.expm1(-k * dt) / (k * p0) + params["phase0"].to_numpy()[source]
        period_now = p0 * np.exp(k * dt)
        in_box = np.mod(cycles, 1.0) * period_now < params["width"].to_numpy()[source]
        factor = np.where(in_box, params["factor"].to_numpy()[source], 1.0)
        return mag_to_flux(_c.per_band(params, "mean_mag", source, band)) * factor


#: label -> model, merged into CLASS_MODELS; never in a training survey's task.classes.
NOVEL_MODELS = {"TDE": TidalDisruption(), "KN": Kilonova(), "uLens": Microlensing(), "Unphysical": Unphysical()}
