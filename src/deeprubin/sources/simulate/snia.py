"""Type Ia supernovae from the Hsiao spectral template, through the survey's bandpasses.

The spectral time series is the Hsiao et al. (2007, ApJ 663, 1187) SN Ia
template as bundled with sncosmo (``Hsiao_SED_V3_subsampled.fits``: rest-frame
phases -20 to +85 d from B maximum every 5 d, 1000-25000 Angstrom every
50 Angstrom; sncosmo's bicubic interpolation between the phases). It is
redshifted and integrated through the g/r response curves of
:mod:`~deeprubin.sources.simulate.bandpasses` once, on a redshift grid, and
interpolated per source, so thousands of supernovae cost milliseconds.

Population (SALT2-like parameters):

* stretch ``x1`` and colour ``c`` from the asymmetric Gaussian parent
  populations of Scolnic & Kessler (2016, ApJL 822, L35; G10 scatter model):
  x1 from the untargeted PS1 sample (peak 0.604, sigma- 1.029, sigma+ 0.363),
  because ZTF is an untargeted survey and the low-z sample's galaxy-targeted
  searches favour massive hosts and fast decliners (its x1 has sigma- 3.1); c from
  the low-z sample (peak -0.055, sigma- 0.023, sigma+ 0.150), the one closest to
  ZTF in redshift and rest-frame wavelengths;
* or, with ``population.snia_dust_tau`` set, colour as intrinsic colour plus host
  dust, ``c = c_int + E(B-V)_host`` with ``c_int ~ N(-0.084, 0.042)`` and an
  exponential ``E(B-V)_host`` of mean ``tau`` (the form of Brout & Scolnic 2021,
  ApJ 909, 26, whose fits give tau ~ 0.1-0.15 mag). The Scolnic & Kessler
  populations were fitted to cosmology samples cut to |c| < 0.3, so they have
  almost no SN reddened beyond that; a flux-limited sample with no colour cut
  (the ZTF BTS) has a red tail of dusty, nearby SNe Ia that are easily mistaken
  for stripped-envelope SNe. Both parts go through the same Tripp/CCM colour law
  below (``R_V = 2.1``, close to the mean host R_V ~ 2 of Brout & Scolnic; their
  weaker intrinsic colour-luminosity slope is not modelled);
* time stretch ``s = 0.98 + 0.091 x1 + 0.003 x1^2 - 0.00075 x1^3`` (Guy et al.
  2007, A&A 466, 11) applied to the rest-frame phase;
* luminosity by the Tripp relation, ``M_B = M0 - alpha x1 + beta c +
  N(0, sigma_int)`` with alpha = 0.141, beta = 3.101 (Betoule et al. 2014,
  A&A 568, A22; JLA) and M0 = -19.05 for H0 = 70, i.e. -19.13 for the Planck 2018
  H0 = 67.4 used here, sigma_int = 0.1 mag;
* colour as a CCM89 dust law (Cardelli et al. 1989) with ``E(B-V) = c`` and
  ``R_V = beta - 1 = 2.1`` in the rest frame, so that the B-band dimming is
  exactly ``beta * c``; evaluated at the rest-frame effective wavelength of each
  band (broad-band approximation);
* Milky Way extinction in the observer frame (Fitzpatrick 1999, R_V = 3.1);
* redshifts of a volumetric rate ``r(z) ~ (1 + z)^1.7`` (Perrett et al. 2012,
  AJ 144, 59) over Planck 2018 comoving volume, with luminosity distance from
  ``astropy.cosmology.Planck18`` and (1 + z) time dilation.

Beyond +85 d the template is continued with the radioactive-tail decline of
1.5 mag / 100 d (Leibundgut 2000, A&ARv 10, 179).
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pandas as pd

from deeprubin.sources.simulate.bandpasses import bandpass
from deeprubin.sources.simulate.cadence import SUPPORTED_BANDS
from deeprubin.sources.simulate.physics import (
    BAND_WAVELENGTH_AA,
    distance_modulus,
    draw_milky_way_ebv,
    draw_redshifts,
    dust_extinction,
    milky_way_extinction,
)

TEMPLATE_FILE = "Hsiao_SED_V3_subsampled.fits"

#: Scolnic & Kessler (2016) G10 parent populations, (peak, sigma-, sigma+, lo, hi): x1 of the
#: untargeted PS1 sample, c of the low-z sample.
X1_DISTRIBUTION = (0.604, 1.029, 0.363, -3.0, 2.0)
C_DISTRIBUTION = (-0.055, 0.023, 0.150, -0.3, 0.5)
#: Brout & Scolnic (2021) intrinsic colour, Gaussian (mean, sd), and the cap on the total
#: colour of the host-dust model (c = 1.0 is A_B ~ 3.1 mag: such SNe are rarely found).
C_INTRINSIC = (-0.084, 0.042)
C_DUST_MAX = 1.0
#: Tripp standardisation (Betoule et al. 2014) and Planck-18-H0 absolute magnitude.
TRIPP_ALPHA = 0.141
TRIPP_BETA = 3.101
M0_B = -19.13
SIGMA_INT = 0.10
#: Rest-frame R_V of the colour law so that A_B = (R_V + 1) c = beta c.
COLOUR_LAW_RV = TRIPP_BETA - 1.0
#: Volumetric SN Ia rate index, r(z) ~ (1 + z)^RATE_INDEX (Perrett et al. 2012).
RATE_INDEX = 1.7
#: Late-time decline beyond the template, mag per rest-frame day (Leibundgut 2000).
TAIL_MAG_PER_DAY = 0.015

#: Rest-frame phase grid of the tabulated band fluxes, days (template range).
PHASE_GRID = np.arange(-20.0, 85.0 + 0.5, 0.5)
#: Redshift grid of the tabulated band fluxes.
Z_GRID = np.arange(0.002, 0.6 + 1e-9, 0.002)


def asymmetric_normal(rng: np.random.Generator, peak: float, sigma_lo: float, sigma_hi: float,
                      lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` draws from a two-sided Gaussian (different widths either side of ``peak``), clipped
    to [lo, hi] by redrawing (rejection; the cut tails hold a few per cent)."""
    out = np.empty(n)
    todo = np.arange(n)
    p_lo = sigma_lo / (sigma_lo + sigma_hi)  # mass left of the peak (continuous density)
    while len(todo):
        m = len(todo)
        side = rng.random(m) < p_lo
        x = np.abs(rng.standard_normal(m))
        value = np.where(side, peak - sigma_lo * x, peak + sigma_hi * x)
        ok = (value >= lo) & (value <= hi)
        out[todo[ok]] = value[ok]
        todo = todo[~ok]
    return out


def draw_colour(rng: np.random.Generator, n: int, dust_tau: float | None = None) -> np.ndarray:
    """SALT2-like colours ``c`` of ``n`` SNe Ia, shape ``(n,)``.

    ``dust_tau`` None: the Scolnic & Kessler (2016) low-z parent population
    (:data:`C_DISTRIBUTION`). A number (mag): intrinsic colour :data:`C_INTRINSIC`
    plus exponential host dust ``E(B-V)`` with that mean (Brout & Scolnic 2021),
    the total clipped to [C_DISTRIBUTION lower bound, :data:`C_DUST_MAX`] by redrawing.
    """
    if dust_tau is None:
        return asymmetric_normal(rng, *C_DISTRIBUTION, n)
    out = np.empty(n)
    todo = np.arange(n)
    while len(todo):
        m = len(todo)
        value = C_INTRINSIC[0] + C_INTRINSIC[1] * rng.standard_normal(m) + rng.exponential(dust_tau, m)
        ok = (value >= C_DISTRIBUTION[3]) & (value <= C_DUST_MAX)
        out[todo[ok]] = value[ok]
        todo = todo[~ok]
    return out


def salt_stretch(x1: np.ndarray) -> np.ndarray:
    """Time-stretch factor of SALT2 ``x1`` (Guy et al. 2007), dimensionless."""
    x1 = np.asarray(x1, dtype=float)
    return 0.98 + 0.091 * x1 + 0.003 * x1**2 - 0.00075 * x1**3


@lru_cache(maxsize=1)
def hsiao_source():
    """The bundled Hsiao template as an sncosmo ``TimeSeriesSource`` (amplitude 1)."""
    import sncosmo

    path = os.path.join(os.path.dirname(sncosmo.__file__), "data", "models", TEMPLATE_FILE)
    phase, wave, flux = sncosmo.read_griddata_fits(path)
    return sncosmo.TimeSeriesSource(phase, wave, flux, zero_before=True, name="hsiao-subsampled")


@lru_cache(maxsize=1)
def reference_peak_mag_b() -> float:
    """Rest-frame Bessell B peak AB magnitude of the amplitude-1 template (as if at 10 pc)."""
    return float(hsiao_source().peakmag("bessellb", "ab"))


@lru_cache(maxsize=None)
def band_flux_table(band: str) -> np.ndarray:
    """Observed band flux (microjansky) of the amplitude-1 template at 10 pc, shifted to each
    redshift of :data:`Z_GRID` without distance dimming; shape ``(len(Z_GRID), len(PHASE_GRID))``.

    sncosmo applies the redshift (wavelength stretch and the ``1 / (1 + z)`` of
    the flux density); the distance modulus is applied per source.
    """
    import sncosmo

    model = sncosmo.Model(source=hsiao_source())
    bp = bandpass(band)
    table = np.empty((len(Z_GRID), len(PHASE_GRID)))
    for i, z in enumerate(Z_GRID):
        model.set(z=z, t0=0.0, amplitude=1.0)
        table[i] = model.bandflux(bp, PHASE_GRID * (1.0 + z), zp=23.9, zpsys="ab")
    return np.clip(table, 0.0, None)


def template_band_flux(band: str, z: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of :func:`band_flux_table` at per-observation ``z`` and rest ``phase``.

    Before -20 d the flux is 0; after +85 d it declines by :data:`TAIL_MAG_PER_DAY`.
    """
    table = band_flux_table(band)
    z = np.clip(np.asarray(z, dtype=float), Z_GRID[0], Z_GRID[-1])
    fz = (z - Z_GRID[0]) / (Z_GRID[1] - Z_GRID[0])
    iz = np.clip(np.floor(fz).astype(int), 0, len(Z_GRID) - 2)
    wz = fz - iz
    ph = np.clip(phase, PHASE_GRID[0], PHASE_GRID[-1])
    fp = (ph - PHASE_GRID[0]) / (PHASE_GRID[1] - PHASE_GRID[0])
    ip = np.clip(np.floor(fp).astype(int), 0, len(PHASE_GRID) - 2)
    wp = fp - ip
    flux = ((1 - wz) * ((1 - wp) * table[iz, ip] + wp * table[iz, ip + 1])
            + wz * ((1 - wp) * table[iz + 1, ip] + wp * table[iz + 1, ip + 1]))
    late = np.asarray(phase) > PHASE_GRID[-1]
    flux = np.where(late, flux * 10.0 ** (-0.4 * TAIL_MAG_PER_DAY * (np.asarray(phase) - PHASE_GRID[-1])), flux)
    return np.where(np.asarray(phase) < PHASE_GRID[0], 0.0, flux)


class HsiaoSNIa:
    """SN Ia class model: Hsiao template with SALT2-like stretch/colour and Tripp luminosities."""

    is_transient = True
    is_extragalactic = True

    def __init__(self, label: str = "SNIa"):
        self.label = label

    def brightest_abs_mag(self) -> float:
        """A bright bound (3 sigma) on the peak absolute magnitude, mag (used to bound redshifts)."""
        return M0_B - TRIPP_ALPHA * X1_DISTRIBUTION[4] + TRIPP_BETA * C_DISTRIBUTION[3] - 3 * SIGMA_INT

    def sample_params(self, rng: np.random.Generator, n: int, population) -> pd.DataFrame:
        """Draw ``n`` SNe Ia.

        Parameters
        ----------
        population : deeprubin.sources.simulate.population.PopulationConfig
            Redshift range and Milky Way dust.

        Returns
        -------
        pandas.DataFrame, shape (n, ...)
            ``redshift``, ``truth_x1``, ``truth_c``, ``truth_stretch``,
            ``truth_abs_peak_mag_b`` (Tripp M_B incl. colour), ``truth_mw_ebv``,
            ``truth_distmod``, ``truth_peak_mag_{g,r}`` (apparent, all effects),
            ``truth_abs_peak_mag_r`` (``truth_peak_mag_r`` minus distance modulus
            and MW extinction), observer-frame ``truth_rise_days`` (half-flux to r
            peak) / ``truth_fall_days`` (r peak to half flux), and internal
            ``scale_{g,r}`` (flux multipliers) and ``peak_offset_r`` (observer days
            from B to r maximum).
        """
        z_max = population.redshift_max_for(self.brightest_abs_mag())
        z = draw_redshifts(rng, n, population.redshift_min, z_max, RATE_INDEX)
        x1 = asymmetric_normal(rng, *X1_DISTRIBUTION, n)
        c = draw_colour(rng, n, population.snia_dust_tau)
        m_b = M0_B - TRIPP_ALPHA * x1 + TRIPP_BETA * c + SIGMA_INT * rng.standard_normal(n)
        ebv = draw_milky_way_ebv(rng, n, population.mw_ebv_mean)
        mu = distance_modulus(z)
        s = salt_stretch(x1)
        p = pd.DataFrame({"redshift": z, "truth_x1": x1, "truth_c": c, "truth_stretch": s,
                          "truth_abs_peak_mag_b": m_b, "truth_mw_ebv": ebv, "truth_distmod": mu})
        # Source amplitude without colour: the colour law adds beta * c in B.
        base = -0.4 * (m_b - TRIPP_BETA * c - reference_peak_mag_b() + mu)
        phases = PHASE_GRID[None, :]
        # Light curves only for sources that can be selected: in g and r the peak is within
        # ~0.5 mag of the B peak over the redshift range, so a 1 mag margin is safe.
        visible = np.flatnonzero(m_b + mu <= population.hopeless_mag + 1.0)
        for band in SUPPORTED_BANDS:
            host = dust_extinction(BAND_WAVELENGTH_AA[band] / (1.0 + z), c * COLOUR_LAW_RV, COLOUR_LAW_RV,
                                   law="ccm89")
            mw = milky_way_extinction(ebv, band)
            p[f"scale_{band}"] = 10.0 ** (base - 0.4 * (host + mw))
            zv = z[visible]
            curve = template_band_flux(band, np.repeat(zv[:, None], phases.shape[1], axis=1),
                                       np.repeat(phases, len(visible), axis=0))
            k = np.argmax(curve, axis=1)
            peak = np.full(n, np.inf)  # invisible sources: never detected, dropped by the survey
            peak[visible] = 23.9 - 2.5 * np.log10(p[f"scale_{band}"].to_numpy()[visible]
                                                  * curve[np.arange(len(visible)), k])
            p[f"truth_peak_mag_{band}"] = peak
            if band == "r":
                dilation = s[visible] * (1.0 + zv)
                rise, fall = _half_flux_widths(curve, k)
                for col, values in (("peak_offset_r", PHASE_GRID[k] * dilation),
                                    ("truth_rise_days", rise * dilation), ("truth_fall_days", fall * dilation)):
                    p[col] = np.nan
                    p.loc[visible, col] = values
                p["truth_abs_peak_mag_r"] = p["truth_peak_mag_r"] - mu - mw
        p["truth_peak_mjd"] = np.nan
        return p

    def true_flux(self, params: pd.DataFrame, source: np.ndarray, time: np.ndarray,
                  band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Template flux in microjansky; ``truth_peak_mjd`` is the r maximum. ``rng`` unused."""
        z = params["redshift"].to_numpy()[source]
        dilation = params["truth_stretch"].to_numpy()[source] * (1.0 + z)
        t_bmax = (params["truth_peak_mjd"] - params["peak_offset_r"]).to_numpy()[source]
        phase = (time - t_bmax) / dilation
        out = np.zeros(len(time))
        for code, name in enumerate(SUPPORTED_BANDS):
            sel = band == code
            if sel.any():
                out[sel] = (params[f"scale_{name}"].to_numpy()[source[sel]]
                            * template_band_flux(name, z[sel], phase[sel]))
        return out


def _half_flux_widths(curve: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rest-frame days from half flux to the maximum and back, per row of ``curve`` (PHASE_GRID)."""
    n = len(k)
    half = curve[np.arange(n), k][:, None] / 2.0
    idx = np.arange(curve.shape[1])[None, :]
    before = (curve < half) & (idx < k[:, None])
    after = (curve < half) & (idx > k[:, None])
    step = PHASE_GRID[1] - PHASE_GRID[0]
    first = np.where(before.any(axis=1), np.where(before, idx, -1).max(axis=1), 0)
    last = np.where(after.any(axis=1), np.where(after, idx, 10**9).min(axis=1), curve.shape[1] - 1)
    return (k - first) * step, (last - k) * step
