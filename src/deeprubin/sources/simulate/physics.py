"""Distances, redshift distributions and dust for the simulator's class models.

Everything is vectorised over sources and cheap to call repeatedly: the
cosmology is tabulated once on a redshift grid (Planck 2018, astropy's
``Planck18``) and interpolated; dust laws are evaluated at the effective
wavelength of each band (a broad-band approximation, good to a few per cent of
the extinction for the E(B-V) < 0.3 mag drawn here).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtr, ndtri

#: Effective wavelengths (Angstrom) of the ZTF g and r filters (Bellm et al. 2019;
#: the same values as ``task.band_wavelengths``), used for the broad-band dust
#: approximation and the rest-frame wavelength of quasar variability.
BAND_WAVELENGTH_AA = {"g": 4746.48, "r": 6366.38}

#: Milky Way dust: Fitzpatrick (1999) law with R_V = 3.1 (Schlafly & Finkbeiner 2011).
MW_RV = 3.1

#: Redshift grid of the tabulated cosmology: fine at low z (where the supernovae are),
#: out to z = 6 for quasars.
_Z_GRID = np.concatenate([np.linspace(1e-4, 1.0, 2000), np.linspace(1.0, 6.0, 501)[1:]])
#: The highest redshift :func:`distance_modulus` accepts.
Z_TABLE_MAX = float(_Z_GRID[-1])


def truncated_normal(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float,
                     n: int) -> np.ndarray:
    """``n`` draws from N(mean, sd) truncated to [lo, hi] (inverse CDF, no rejection loop)."""
    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return mean + sd * ndtri(a + rng.random(n) * (b - a))


@lru_cache(maxsize=1)
def _distance_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, distance modulus [mag], comoving volume element dV/dz/dOmega [Mpc^3/sr]) on the grid."""
    from astropy.cosmology import Planck18

    mu = Planck18.distmod(_Z_GRID).value
    dvdz = Planck18.differential_comoving_volume(_Z_GRID).value
    return _Z_GRID, mu, dvdz


def distance_modulus(z: np.ndarray) -> np.ndarray:
    """Distance modulus 5 log10(d_L / 10 pc) of Planck 2018 cosmology, mag; ``z`` > 0, shape kept."""
    grid, mu, _ = _distance_table()
    z = np.asarray(z, dtype=float)
    if np.any(z <= 0) or np.any(z > grid[-1]):
        raise ValueError(f"redshift outside (0, {grid[-1]}]: {z[(z <= 0) | (z > grid[-1])][:3]}")
    return np.interp(np.log(z), np.log(grid), mu)


def redshift_at_distance_modulus(mu: np.ndarray) -> np.ndarray:
    """Inverse of :func:`distance_modulus` (monotonic), clipped to the tabulated range."""
    grid, table, _ = _distance_table()
    return np.exp(np.interp(np.asarray(mu, dtype=float), table, np.log(grid)))


def draw_redshifts(rng: np.random.Generator, n: int, z_min: float, z_max: float,
                   rate_index: float) -> np.ndarray:
    """``n`` redshifts of a volumetric population, shape ``(n,)``.

    The density is ``dN/dz ~ (1 + z)**rate_index * dV_c/dz / (1 + z)``: a
    comoving volumetric rate evolving as a power of ``1 + z``, observed over a
    fixed observer-frame time (the ``1 / (1 + z)`` is cosmological time dilation
    of the rate). For non-transient populations pass the space-density evolution
    as ``rate_index`` + 1.
    """
    if not 0 < z_min < z_max:
        raise ValueError(f"need 0 < z_min < z_max, got z_min={z_min}, z_max={z_max}")
    grid, _, dvdz = _distance_table()
    z = np.linspace(z_min, z_max, 2048)
    density = np.interp(z, grid, dvdz) * (1.0 + z) ** (rate_index - 1.0)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(z))])
    return np.interp(rng.random(n) * cdf[-1], cdf, z)


def dust_extinction(wavelength_aa: np.ndarray, a_v: np.ndarray, r_v: float, law: str = "fitzpatrick99"
                    ) -> np.ndarray:
    """Extinction A_lambda (mag) for per-source A_V at per-source wavelengths; arrays broadcast.

    Uses the ``extinction`` package: the law is linear in A_V, so it is evaluated
    once for A_V = 1 and scaled (this also allows negative A_V, used for the
    bluer-than-average side of the SN Ia colour distribution).
    """
    import extinction

    wave = np.atleast_1d(np.asarray(wavelength_aa, dtype=float))
    func = {"fitzpatrick99": extinction.fitzpatrick99, "ccm89": extinction.ccm89}[law]
    per_av = func(np.ascontiguousarray(wave.ravel()), 1.0, r_v).reshape(wave.shape)
    return np.asarray(a_v, dtype=float) * per_av


def milky_way_extinction(ebv: np.ndarray, band: str) -> np.ndarray:
    """Milky Way extinction (mag) in ZTF ``band`` for colour excesses ``ebv`` (mag), shape kept."""
    return dust_extinction(np.full(np.shape(ebv), BAND_WAVELENGTH_AA[band]), MW_RV * np.asarray(ebv), MW_RV)


def draw_milky_way_ebv(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    """Milky Way E(B-V) (mag) along ``n`` random high-latitude sight lines, shape ``(n,)``.

    Exponential with the given mean: the SFD dust map over the ZTF extragalactic
    sky (|b| > 15 deg) has a median E(B-V) ~ 0.04 and a long tail (Schlafly &
    Finkbeiner 2011); the ZTF BTS SNe Ia have median A_V = 0.11 mag, i.e.
    E(B-V) ~ 0.036 (Perley et al. 2020 catalogue).
    """
    return rng.exponential(mean, n)
