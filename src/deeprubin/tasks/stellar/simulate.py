"""An SDSS-like optical stellar spectrum simulator built on a small, explicit physical model.

No spectral library (PHOENIX, Kurucz/ATLAS, MARCS) can be downloaded here, so each star's
spectrum is synthesised from textbook stellar-atmosphere physics (Gray 2005, *The Observation
and Analysis of Stellar Photospheres*, 3rd ed.; chapters and equations cited at each step):

1. **Photosphere** (one layer at tau_5000 = 2/3 where T = Teff, grey Eddington): gas pressure from
   hydrostatic equilibrium ``P_g = g tau / kappa`` (Gray eq. 9.9 with constant opacity), electron
   pressure from the Saha equation of H, He and eleven metals (Gray ch. 1, 9), solved together.
2. **Continuum**: opacities per H nucleus of H- bound-free (Gray eq. 8.11-8.12) and free-free
   (eq. 8.13), H bound-free and free-free (eq. 8.8-8.10; Balmer and Paschen jumps) and electron
   scattering; the emergent flux is ``pi B_lambda(T)`` at the depth where ``tau_lambda = 2/3``
   (Eddington-Barbier, grey T(tau)), times a smooth blue line-blanketing factor growing toward
   cool, metal-rich stars (the millions of weak lines not listed).
3. **Lines** (:data:`ATOMIC_LINES`, plus :data:`N_FOREST` statistical "forest" lines): the ratio
   of line to continuum opacity from Boltzmann excitation x Saha ionisation x abundance (Gray
   ch. 11 and 16), so Balmer lines peak near A0 and neutral metals grow toward cool stars (below
   ~4000 K against an added molecular-haze opacity, :data:`MOLECULAR_HAZE`); Voigt profiles
   (``scipy.special.voigt_profile``) with thermal + microturbulent Doppler width, radiative,
   van der Waals (Unsoeld C6, Gray eq. 11.29-11.35; scales as P_g, i.e. with gravity) and, for
   hydrogen, linear Stark damping (scales as N_e^(2/3)); residual absorption
   ``d_max eta / (1 + eta)`` (Schuster-Schwarzschild-like single layer, d_max from the surface
   temperature), which gives the curve of growth: linear, flat (saturated), then damping
   (square-root) growth with abundance 10^[Fe/H] (alpha elements enhanced in metal-poor stars).
   Each line is integrated exactly over the model pixels (its Doppler core is unresolved there).
4. **Molecular bands**: TiO (heads 4955-7672 A), the CH G band, MgH and CaH, from dissociation
   equilibrium with saturation (the fraction of the metal bound in the molecule is K / (1 + K),
   K ~ p(B) 10^(D0 theta)), with an empirical gravity exponent (hydrides strong in dwarfs).
5. **Star**: rotation (Gray 2005 eq. 18.14 kernel), radius from logg and a main-sequence (or giant)
   mass, a dereddened apparent r magnitude drawn from the config (so a distance modulus follows).
6. **Observation** (per epoch): relativistic Doppler shift (systemic + binary orbit + jitter),
   Fitzpatrick (1999) extinction (``extinction`` package), Gaussian line-spread function at the
   drawn resolution R, integration over the SDSS log10 pixels (1e-4 dex), sky (continuum plus
   a few emission lines), noise at the drawn median S/N (variance from source + sky), cosmic-ray
   hits, a bad-column run and reduced wavelength coverage, all flagged in ``mask`` (ivar 0).
7. **Photometry**: AB magnitudes through speclite's SDSS, 2MASS and Gaia DR3 curves of the
   noiseless, reddened model SED on a 2800-26000 A grid, with Gaussian errors from per-band limits.

Limits (what this is *not*): one LTE layer instead of a model atmosphere (no depth-dependent
source function, no NLTE, no convection, fixed partition functions); no real line list beyond
~80 strong lines (the rest is a fixed pseudo-random forest and a smooth blanketing factor, so
weak-line positions are not those of real stars); hydrogen Stark wings are Lorentzian (not
Holtsmark/Vidal-Cooper-Smith) and calibrated by one factor; molecular bands are smooth
exponential shapes without rotational structure, scaled to reference stars with an empirical
gravity dependence, and no band beyond those listed (no VO, H2O, CN, C2); giants and dwarfs
share one mass-radius recipe and giants may take any logg in the configured range at any Teff
of their class (no isochrones); no emission lines, chromospheric activity, magnetic fields, spots, white dwarfs,
carbon stars, peculiar (Ap/Am) or hotter-than-20000 K stars; no telluric absorption (the O2 A and
B bands, H2O); no flux-calibration or sky-subtraction residuals beyond the noise; the absolute
strengths were checked only against rough solar and A0V equivalent widths (``LINE_OPACITY_SCALE``,
``STARK_SCALE``). Trends with Teff, logg and [Fe/H] are physical in direction and order of
magnitude, not at the precision of a spectral library: a model trained here will meet a
domain shift on real SDSS/LAMOST spectra.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, NamedTuple, Sequence

import extinction
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.special import erfc, voigt_profile

from ...core.config import ConfigError

# --------------------------------------------------------------------------------------------
# Physical constants (CODATA 2018, cgs unless stated)
# --------------------------------------------------------------------------------------------
C_KMS = 299792.458
C_CGS = 2.99792458e10
H_CGS = 6.62607015e-27
K_CGS = 1.380649e-16
AMU_G = 1.66053907e-24
SIGMA_THOMSON = 6.6524587e-25          # cm^2
PI_E2_OVER_MC2 = 8.85282e-13           # pi e^2 / (m_e c^2) = pi r_e [cm]: integrated line cross-section / (lambda^2 f)
HC_EV_ANGSTROM = 12398.42              # hc [eV A]
THETA_K = 5039.77                      # theta = THETA_K / T = log10(e) / (k T [eV])
SAHA_LOG_CONST = -0.47712              # log10[k (2 pi m_e k / h^2)^(3/2)], P_e in dyn cm^-2 (Gray eq. 1.20)
G_NEWTON = 6.6743e-8
M_SUN_G = 1.98847e33
R_SUN_CM = 6.957e10
PARSEC_CM = 3.0856776e18
FLUX_UNIT = 1e-17                      # SDSS flux unit [erg s^-1 cm^-2 A^-1]

# --------------------------------------------------------------------------------------------
# Atomic data
# --------------------------------------------------------------------------------------------


class Species(NamedTuple):
    """Ionisation energies [eV] of stages I, II, ... (NIST ASD), partition functions of stages
    I, II, ... (constants near 5000-6000 K, Gray 2005 Appendix D; a stated limit), solar log
    abundance (Asplund et al. 2009, ARA&A 47, 481; log eps(H) = 12), atomic mass [amu], and
    whether it is an alpha element (enhanced in metal-poor stars, :data:`ALPHA_ENHANCEMENT`)."""

    chi_ion: tuple[float, ...]
    partition: tuple[float, ...]
    log_eps: float
    mass: float
    alpha: bool = False


SPECIES: dict[str, Species] = {
    "H": Species((13.598,), (2.0, 1.0), 12.00, 1.008),
    "He": Species((24.587, 54.418), (1.0, 2.0, 1.0), 10.93, 4.003),
    "C": Species((11.260, 24.383), (9.3, 6.0, 1.0), 8.43, 12.011),
    "O": Species((13.618, 35.121), (8.9, 4.0, 9.0), 8.69, 15.999, True),
    "Na": Species((5.139, 47.286), (2.0, 1.0, 6.0), 6.24, 22.990),
    "Mg": Species((7.646, 15.035), (1.0, 2.0, 1.0), 7.60, 24.305, True),
    "Al": Species((5.986, 18.829), (5.8, 1.0, 2.0), 6.45, 26.982),
    "Si": Species((8.152, 16.346), (9.5, 5.7, 1.0), 7.51, 28.086, True),
    "K": Species((4.341, 31.63), (2.0, 1.0, 6.0), 5.03, 39.098),
    "Ca": Species((6.113, 11.872), (1.1, 2.1, 1.0), 6.34, 40.078, True),
    "Ti": Species((6.828, 13.576), (30.0, 55.0, 24.0), 4.95, 47.867, True),
    "Cr": Species((6.767, 16.486), (9.0, 7.0, 25.0), 5.64, 51.996),
    "Fe": Species((7.902, 16.199), (25.0, 40.0, 25.0), 7.50, 55.845),
    "Sr": Species((5.695, 11.030), (1.2, 2.0, 1.0), 2.87, 87.62),
}
#: [alpha/Fe] = ALPHA_ENHANCEMENT for [Fe/H] <= -1, falling linearly to 0 at [Fe/H] = 0 (the
#: Galactic halo / thick-disc trend, e.g. Bensby et al. 2014, A&A 562, A71).
ALPHA_ENHANCEMENT = 0.4


def air_to_vacuum(wave_air: np.ndarray | float) -> np.ndarray:
    """Vacuum wavelength [A] of an air wavelength [A] (N. Piskunov's inversion of the
    Ciddor/Morton refractive index, as used by VALD3 and SDSS)."""
    wave_air = np.asarray(wave_air, dtype=np.float64)
    s2 = (1e4 / wave_air) ** 2
    n = 1.0 + 8.336624212083e-5 + 2.408926869968e-2 / (130.1065924522 - s2) + 1.599740894897e-4 / (38.92568793293 - s2)
    return wave_air * n


class Line(NamedTuple):
    """One absorption line: air wavelength [A], element, ionisation stage (0 = neutral), lower
    level excitation [eV], log gf, and (hydrogen only) the lower and upper principal quantum
    numbers for the Stark width."""

    wave_air: float
    element: str
    stage: int
    chi_low: float
    log_gf: float
    n_low: int = 0
    n_up: int = 0


def _hydrogen_log_gf(n_low: int, n_up: int) -> float:
    """log gf of a hydrogen line from Kramers' semi-classical oscillator strength with a mean
    bound-bound Gaunt factor of 0.85 (within ~10 % of the exact values for Balmer and Paschen
    lines; Menzel & Pekeris 1935)."""
    f = (32.0 / (3.0 ** 1.5 * np.pi)) / (n_low ** 5 * n_up ** 3) / (1.0 / n_low ** 2 - 1.0 / n_up ** 2) ** 3
    return float(np.log10(2.0 * n_low ** 2 * f * 0.85))


#: Hydrogen lower-level excitation [eV]: 13.598 (1 - 1/n^2).
def _chi_h(n: int) -> float:
    return 13.598 * (1.0 - 1.0 / n ** 2)


#: Balmer lines Halpha..H10 (air wavelengths and log gf from NIST ASD; Wiese & Fuhr 2009) and
#: Paschen P10..P16 (log gf from :func:`_hydrogen_log_gf`), which sit on the Ca II triplet in
#: hot stars.
HYDROGEN_LINES = [
    Line(6562.80, "H", 0, _chi_h(2), 0.710, 2, 3), Line(4861.33, "H", 0, _chi_h(2), -0.020, 2, 4),
    Line(4340.47, "H", 0, _chi_h(2), -0.447, 2, 5), Line(4101.74, "H", 0, _chi_h(2), -0.753, 2, 6),
    Line(3970.07, "H", 0, _chi_h(2), -0.993, 2, 7), Line(3889.05, "H", 0, _chi_h(2), -1.192, 2, 8),
    Line(3835.38, "H", 0, _chi_h(2), -1.362, 2, 9), Line(3797.90, "H", 0, _chi_h(2), -1.511, 2, 10),
] + [Line(w, "H", 0, _chi_h(3), _hydrogen_log_gf(3, n), 3, n) for w, n in
     ((9014.91, 10), (8862.78, 11), (8750.47, 12), (8665.02, 13), (8598.39, 14), (8545.38, 15), (8502.48, 16))]

#: Strong metal and helium lines: air wavelength [A], species, stage, chi_low [eV], log gf.
#: Values rounded from the NIST Atomic Spectra Database and VALD (Ryabchikova et al. 2015);
#: He I values are multiplet totals. Approximate (~0.1 dex): fine for a parametric simulator,
#: not for abundance analysis.
METAL_LINES = [
    # Ca II H & K, infrared triplet
    Line(3933.66, "Ca", 1, 0.000, 0.135), Line(3968.47, "Ca", 1, 0.000, -0.180),
    Line(8498.02, "Ca", 1, 1.692, -1.312), Line(8542.09, "Ca", 1, 1.700, -0.362),
    Line(8662.14, "Ca", 1, 1.692, -0.623),
    # Ca I
    Line(4226.73, "Ca", 0, 0.000, 0.244), Line(6122.22, "Ca", 0, 1.886, -0.316),
    Line(6162.17, "Ca", 0, 1.899, -0.090), Line(6439.08, "Ca", 0, 2.526, 0.390),
    # Mg I b triplet, Mg I 3829-3838, 8807; Mg II 4481
    Line(5167.32, "Mg", 0, 2.709, -0.870), Line(5172.68, "Mg", 0, 2.712, -0.393),
    Line(5183.60, "Mg", 0, 2.717, -0.167), Line(3829.36, "Mg", 0, 2.709, -0.208),
    Line(3832.30, "Mg", 0, 2.712, 0.270), Line(3838.29, "Mg", 0, 2.717, 0.490),
    Line(8806.76, "Mg", 0, 4.346, -0.137), Line(4481.20, "Mg", 1, 8.864, 0.970),
    # Na I D, 8183/8195; K I 7665/7699
    Line(5889.95, "Na", 0, 0.000, 0.117), Line(5895.92, "Na", 0, 0.000, -0.184),
    Line(8183.26, "Na", 0, 2.102, 0.237), Line(8194.79, "Na", 0, 2.104, 0.492),
    Line(7664.90, "K", 0, 0.000, 0.135), Line(7698.96, "K", 0, 0.000, -0.168),
    # Sr II (luminosity sensitive), Si II (hot stars)
    Line(4077.71, "Sr", 1, 0.000, 0.150), Line(4215.52, "Sr", 1, 0.000, -0.170),
    Line(6347.11, "Si", 1, 8.121, 0.150), Line(6371.37, "Si", 1, 8.121, -0.080),
    # He I (B stars)
    Line(4026.19, "He", 0, 20.964, -0.370), Line(4471.48, "He", 0, 20.964, 0.050),
    Line(5875.62, "He", 0, 20.964, 0.740), Line(4921.93, "He", 0, 21.218, -0.440),
    Line(6678.15, "He", 0, 21.218, 0.330),
    # Fe II (gravity sensitive in F/G stars)
    Line(4923.93, "Fe", 1, 2.891, -1.320), Line(5018.44, "Fe", 1, 2.891, -1.220),
    Line(5169.03, "Fe", 1, 2.891, -1.300),
    # Fe I
    Line(4045.81, "Fe", 0, 1.485, 0.280), Line(4063.59, "Fe", 0, 1.557, 0.062),
    Line(4071.74, "Fe", 0, 1.608, -0.022), Line(4132.06, "Fe", 0, 1.608, -0.675),
    Line(4143.87, "Fe", 0, 1.557, -0.511), Line(4202.03, "Fe", 0, 1.485, -0.708),
    Line(4250.79, "Fe", 0, 1.557, -0.714), Line(4260.47, "Fe", 0, 2.399, 0.077),
    Line(4271.76, "Fe", 0, 1.485, -0.164), Line(4307.90, "Fe", 0, 1.557, -0.073),
    Line(4325.76, "Fe", 0, 1.608, 0.006), Line(4383.54, "Fe", 0, 1.485, 0.200),
    Line(4404.75, "Fe", 0, 1.557, -0.142), Line(4415.12, "Fe", 0, 1.608, -0.615),
    Line(4920.50, "Fe", 0, 2.832, 0.068), Line(4957.60, "Fe", 0, 2.808, 0.233),
    Line(5227.19, "Fe", 0, 1.557, -1.228), Line(5269.54, "Fe", 0, 0.859, -1.321),
    Line(5328.04, "Fe", 0, 0.915, -1.466), Line(5371.49, "Fe", 0, 0.958, -1.645),
    Line(5397.13, "Fe", 0, 0.915, -1.993), Line(5405.77, "Fe", 0, 0.990, -1.844),
    Line(5429.70, "Fe", 0, 0.958, -1.879), Line(5446.92, "Fe", 0, 0.990, -1.914),
    Line(5586.76, "Fe", 0, 3.368, -0.144), Line(5615.64, "Fe", 0, 3.332, 0.050),
    Line(6136.61, "Fe", 0, 2.453, -1.400), Line(6191.56, "Fe", 0, 2.433, -1.417),
    Line(6230.72, "Fe", 0, 2.559, -1.281), Line(6252.56, "Fe", 0, 2.404, -1.687),
    Line(6393.60, "Fe", 0, 2.433, -1.432), Line(6400.00, "Fe", 0, 3.602, -0.290),
    Line(6494.98, "Fe", 0, 2.404, -1.273), Line(8327.05, "Fe", 0, 2.198, -1.525),
    Line(8387.77, "Fe", 0, 2.176, -1.493), Line(8688.62, "Fe", 0, 2.176, -1.212),
    Line(8824.22, "Fe", 0, 2.198, -1.540),
]
ATOMIC_LINES = HYDROGEN_LINES + METAL_LINES

#: The statistical line forest: N_FOREST pseudo-lines with fixed (seeded) wavelengths, species,
#: excitation and log gf, standing in for the thousands of weak Fe-peak lines of a real spectrum
#: (their density falls toward the red as lambda^-2). Not real lines: a stated limit.
N_FOREST = 260
FOREST_SEED = 20050101
#: Per species: element, stage, share of the lines, chi_low range [eV], log gf range.
FOREST_SPECIES = (("Fe", 0, 0.62, (0.0, 5.0), (-4.0, -1.0)), ("Fe", 1, 0.08, (2.5, 4.0), (-4.0, -1.5)),
                  ("Ti", 0, 0.10, (0.0, 2.5), (-3.0, 0.0)), ("Cr", 0, 0.10, (0.0, 3.5), (-3.0, -0.5)),
                  ("Ca", 0, 0.05, (1.5, 3.0), (-2.5, -0.5)), ("Si", 0, 0.05, (4.9, 6.0), (-2.0, -0.5)))

#: van der Waals: Unsoeld's C6 underestimates the broadening; Gray (2005, Sect. 11) quotes
#: enhancement factors of ~1.5-2.5 in gamma_6.
VDW_ENHANCEMENT = 2.0
#: Hydrogen linear Stark width: FWHM(Hbeta) = 48 A (N_e / 1e17 cm^-3)^(2/3) (the plasma-diagnostic
#: relation, Gigosos & Cardenoso 1996), scaled as lambda^2 (n_u^2 - n_l^2) for other lines. A
#: Lorentzian of this width over-predicts the far wings of the true (Holtsmark, ~dlambda^-5/2)
#: profile, so its width is scaled by STARK_SCALE, set so an A0V star (9500 K, logg 4.2) has
#: EW(Hgamma) ~ 15-20 A (Gray & Corbally 2009, *Stellar Spectral Classification*, ch. 4).
HBETA_STARK_FWHM_1E17 = 48.0
STARK_SCALE = 0.06
#: Halpha's unshifted central Stark component makes it ~4x narrower than the lambda^2 (n_u^2 - n_l^2)
#: scaling from Hbeta (FWHM ~11 A at 1e17 cm^-3 against 48 A; Gigosos et al. 2003, Spectrochim. Acta B 58, 1489).
HALPHA_STARK_FACTOR = 0.3
#: Global line-to-continuum opacity factor of the single-layer model: 1 (the opacity ratio at
#: tau_5000 = 2/3 as computed, times 0.5, which brings the solar Na D, Mg b, Ca I 4227, Ca II triplet
#: and Fe I equivalent widths within ~30 % of the observed ones (Moore et al. 1966 solar atlas).
LINE_OPACITY_SCALE = 0.5
#: Molecular line haze: below ~4000 K the unresolved TiO (and other molecular) lines add a pseudo-
#: continuum opacity against which atomic lines form (e.g. Allard & Hauschildt 1995, ApJ 445, 433);
#: modelled as MOLECULAR_HAZE x the TiO column relative to the band reference star (an M2 dwarf)
#: times the continuum opacity.
MOLECULAR_HAZE = 10.0
#: Lines are rendered from where eta = line/continuum opacity drops below this.
ETA_MIN = 3e-4
LINE_WINDOW_LIMITS = (0.8, 180.0)      # half-width limits [A] of a line's rendered window
LINE_SAMPLES_PER_SIDE = 48             # log-spaced samples per side of a line for its integral
#: Surface temperature / Teff: the residual flux of a black line core is B(T0)/B(Teff). The grey
#: value is 2^-1/4 = 0.84; 0.75 mimics the deeper cores of real (blanketed, NLTE) photospheres.
SURFACE_T_RATIO = 0.75

#: Continuum: tau_5000 of the layer the single-layer model uses, and the reference wavelength.
TAU_PHOTOSPHERE = 2.0 / 3.0
WAVE_REF = 5000.0
#: H- bound-free cross-section polynomial (Gray 2005 eq. 8.11, John 1988), 1e-18 cm^2, lambda [A].
H_MINUS_BF_COEFFS = (1.99654, -1.18267e-5, 2.64243e-6, -4.40524e-10, 3.23992e-14, -1.39568e-18, 2.78701e-23)
H_MINUS_THRESHOLD = 16419.0            # photodetachment threshold (0.754 eV)
H_MINUS_BINDING = 0.754                # eV
#: H- free-free (Gray 2005 eq. 8.13; Bell & Berrington 1987 fit): f0, f1, f2 polynomials in log lambda.
H_MINUS_FF_F0 = (-2.2763, -1.6850, 0.76661, -0.053346)
H_MINUS_FF_F1 = (15.2827, -9.2846, 1.99381, -0.142631)
H_MINUS_FF_F2 = (-197.789, 190.266, -67.9775, 10.6913, -0.625151)
HYDROGEN_BF_ALPHA0 = 1.0449e-26        # Gray eq. 8.8 (lambda in A)
HYDROGEN_LEVELS = 20                   # bound-free from n = 1..20
#: The hydrogen bound-free edges are smoothed over this fraction of their wavelength: the highest
#: bound levels dissolve in the plasma's microfields, so the Balmer and Paschen continua extend
#: redward of the edges and merge with the converging lines (Hummer & Mihalas 1988, ApJ 331, 794;
#: approximated by a complementary error function).
HYDROGEN_EDGE_SMOOTHING = 0.02

#: Smooth blanketing by the unlisted lines: transmission exp(-beta), beta(lambda) =
#: BLANKET_SOLAR_4000 Z^BLANKET_Z_POWER (5772 K / Teff)^BLANKET_T_POWER exp(-(lambda - 4000 A) / BLANKET_SCALE),
#: capped at BLANKET_MAX; ~20 % at 4000 A and ~4 % at 6000 A for the Sun (its flux deficit against
#: its continuum; Neckel & Labs 1984, Sol. Phys. 90, 205). Calibrated by eye, a stated approximation.
BLANKET_SOLAR_4000 = 0.22
BLANKET_Z_POWER = 0.5
BLANKET_T_POWER = 3.0
BLANKET_SCALE = 1300.0
BLANKET_MAX = 3.0
T_SUN = 5772.0

#: Molecular bands: name, element pair (A, B), dissociation energy D0 [eV] (Huber & Herzberg
#: 1979), band head [A, approximately vacuum], direction the band degrades (+1 red, -1 blue),
#: e-folding length [A], optical depth at the head for the reference star
#: (:data:`BAND_REFERENCE`), and the gravity exponent (see :func:`band_scales`).
MOLECULAR_BANDS = (
    ("TiO", ("Ti", "O"), 6.87, 4955.0, +1, 120.0, 0.25, 0.0), ("TiO", ("Ti", "O"), 6.87, 5167.0, +1, 120.0, 0.30, 0.0),
    ("TiO", ("Ti", "O"), 6.87, 5448.0, +1, 120.0, 0.35, 0.0), ("TiO", ("Ti", "O"), 6.87, 6158.0, +1, 150.0, 0.45, 0.0),
    ("TiO", ("Ti", "O"), 6.87, 7054.0, +1, 160.0, 0.60, 0.0), ("TiO", ("Ti", "O"), 6.87, 7672.0, +1, 150.0, 0.40, 0.0),
    ("MgH", ("Mg", "H"), 1.34, 5211.0, -1, 120.0, 0.15, 0.5), ("CaH", ("Ca", "H"), 1.70, 6382.0, +1, 60.0, 0.20, 0.5),
    ("CaH", ("Ca", "H"), 1.70, 6750.0, +1, 150.0, 0.25, 0.5),
)
#: Equilibrium constant K of each molecule at its reference star: the fraction of atom A bound in
#: the molecule is K / (1 + K), so a band saturates once most of A is locked up (TiO in mid-M
#: stars); K scales as p(B) 10^(D0 theta) theta^(5/2) (dissociation equilibrium, Gray 2005 Sect. 1).
MOLECULE_K_REF = {"TiO": 1.0, "MgH": 0.05, "CaH": 0.05, "CH": 0.05}
#: The CH G band (D0 = 3.47 eV): a blend of lines filling G_BAND_RANGE, optical depth
#: G_BAND_TAU at the G-band reference star.
G_BAND_RANGE = (4297.0, 4318.0)
G_BAND_EDGE = 3.0
G_BAND_TAU = 0.35
G_BAND_D0 = 3.47
BAND_HEAD_WIDTH = 2.0                  # A: the band head's smoothing
#: Reference stars (Teff, logg, [Fe/H]) at which the band optical depths above hold: an M2 dwarf
#: for the metal-oxide and hydride bands, a K0 dwarf for the G band.
BAND_REFERENCE = (3500.0, 4.8, 0.0)
G_BAND_REFERENCE = (5000.0, 4.6, 0.0)

#: Main-sequence log g and mass against Teff (from the masses and radii of Pecaut & Mamajek
#: 2013, ApJS 208, 9, Table 5; rounded).
MAIN_SEQUENCE = np.array([  # Teff, logg, mass [M_sun]
    (3200.0, 4.95, 0.20), (3400.0, 4.85, 0.35), (3850.0, 4.67, 0.57), (4440.0, 4.62, 0.70),
    (5270.0, 4.57, 0.88), (5770.0, 4.44, 1.00), (6510.0, 4.30, 1.33), (7220.0, 4.20, 1.60),
    (8180.0, 4.25, 1.90), (9700.0, 4.30, 2.30), (15700.0, 4.20, 4.00), (20600.0, 4.15, 7.30)])
GIANT_MASS = 1.3                       # M_sun, a red-clump / RGB typical mass
ROTATION_LIMB_DARKENING = 0.6          # epsilon of the rotation kernel (Gray 2005 eq. 18.14)
ROTATION_SUBSAMPLES = 16               # sub-samples per model pixel when integrating the kernel

#: Night-sky emission lines (vacuum A, strength relative to the sky continuum per A integrated):
#: [O I] 5577/6300/6364, Na I D (street lamps), Hg I 4358/5461 (Kitt Peak / Apache Point sky).
SKY_LINES = ((5578.89, 40.0), (6302.05, 12.0), (6365.54, 4.0), (5891.58, 6.0), (5897.56, 4.0),
             (4359.56, 5.0), (5462.27, 6.0))
SKY_OH_START = 7000.0                  # A: the OH forest raises the sky continuum redward
SKY_OH_RISE = 3.0                      # x the blue sky continuum at 9000 A
#: Read-noise-like variance floor, as a fraction of the source's median flux in the S/N window
#: (in the same Poisson units): keeps ivar finite where source and sky vanish.
READ_NOISE_FLOOR = 1e-3

#: Photometric bands: column name -> speclite filter.
PHOTOMETRY_BANDS = {"u": "sdss2010-u", "g": "sdss2010-g", "r": "sdss2010-r", "i": "sdss2010-i",
                    "z": "sdss2010-z", "J": "twomass-J", "H": "twomass-H", "Ks": "twomass-Ks",
                    "G": "gaiadr3-G", "BP": "gaiadr3-BP", "RP": "gaiadr3-RP"}
SED_WAVE_RANGE = (2800.0, 26000.0)     # A: the model SED for photometry covers every filter
SED_STEP = 1e-3                        # dex
MODEL_OVERSAMPLE = 5                   # model sub-pixels per observed pixel
MODEL_MARGIN_A = 60.0                  # extra rest-frame model coverage beyond the RV-shifted range
MAG_ERROR_SNR5 = 2.5 / np.log(10) / 5.0  # magnitude error of a 5-sigma detection


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def _err(key: str, what: str) -> ConfigError:
    return ConfigError(f"stellar source key '{key}' {what}")


def _value(cfg: Mapping, key: str) -> Any:
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        try:
            present = part in node
        except TypeError:
            present = False
        if not present:
            raise _err(key, "is missing")
        try:
            node = node[part]
        except Exception as err:  # OmegaConf: '???' (MISSING) and interpolation errors
            raise _err(key, f"cannot be read ({err})") from None
    if node is None:
        raise _err(key, "is missing (null)")
    return node


def _number(cfg: Mapping, key: str, lo: float | None = None, hi: float | None = None,
            integer: bool = False, lo_open: bool = False) -> float:
    value = _value(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _err(key, f"must be a number, got {value!r}")
    if integer and float(value) != int(value):
        raise _err(key, f"must be an integer, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise _err(key, f"must be finite, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise _err(key, f"must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise _err(key, f"must be <= {hi}, got {value!r}")
    return int(value) if integer else value


def _range(cfg: Mapping, key: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> tuple[float, float]:
    value = _value(cfg, key)
    try:
        pair = [float(v) for v in value]
    except (TypeError, ValueError):
        raise _err(key, f"must be a [low, high] pair of numbers, got {value!r}") from None
    if len(pair) != 2 or not all(np.isfinite(pair)) or pair[0] > pair[1]:
        raise _err(key, f"must be a [low, high] pair with low <= high, got {value!r}")
    if lo is not None and (pair[0] < lo or (lo_open and pair[0] == lo)):
        raise _err(key, f"must lie {'above' if lo_open else 'at or above'} {lo}, got {value!r}")
    if hi is not None and pair[1] > hi:
        raise _err(key, f"must lie at or below {hi}, got {value!r}")
    return pair[0], pair[1]


def check_classes(classes: Sequence[str], edges: Sequence[float], where: str = "mk_class") -> tuple[list[str], np.ndarray]:
    """Validate class names and Teff edges: ``len(edges) == len(classes) + 1``, strictly monotonic
    (either direction); class ``k`` spans ``edges[k]``..``edges[k + 1]``."""
    classes = [str(c) for c in classes]
    try:
        edges = np.asarray([float(e) for e in edges], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: 'teff_edges' must be numbers, got {edges!r}") from None
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"{where}: 'classes' must be distinct names, got {classes!r}")
    if len(edges) != len(classes) + 1:
        raise ConfigError(f"{where}: 'teff_edges' needs len(classes) + 1 = {len(classes) + 1} values, got {len(edges)}")
    steps = np.diff(edges)
    if not np.all(np.isfinite(edges)) or not (np.all(steps > 0) or np.all(steps < 0)) or np.any(edges <= 0):
        raise ConfigError(f"{where}: 'teff_edges' must be positive and strictly monotonic, got {edges.tolist()}")
    return classes, edges


def mk_class(teff, classes: Sequence[str], edges: Sequence[float]) -> np.ndarray:
    """MK class of each Teff [K] (vectorised).

    ``classes[k]`` spans the Teff interval between ``edges[k]`` and ``edges[k + 1]`` (edges in
    either order; ``len(edges) == len(classes) + 1``), lower bound inclusive: with classes
    ``[B, A, ...]`` and edges ``[20000, 10000, 7500, ...]``, 10000 K is B and 9999 K is A. Teff
    beyond the outer edges gets the outermost class (the outer edges only bound the simulator's
    draws). :class:`ValueError` for a non-finite or non-positive Teff, or bad classes / edges.
    """
    classes, edges = check_classes(classes, edges)
    t = np.asarray(teff, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("mk_class: 'teff' must be finite and > 0 K")
    ascending = edges[1] > edges[0]
    inner = edges[1:-1] if ascending else edges[1:-1][::-1]
    idx = np.searchsorted(inner, t, side="right")  # 0..n-1 over ascending intervals, lower bound inclusive
    names = np.asarray(classes if ascending else classes[::-1], dtype=object)
    return np.asarray(names[idx]).astype(str)


@dataclass(frozen=True)
class SimConfig:
    """The simulator's settings, checked (see :func:`parse_config` and the config keys there)."""

    n_stars: int
    max_epochs: int
    classes: tuple[str, ...]
    teff_edges: tuple[float, ...]
    giant_classes: tuple[str, ...]
    giant_fraction: float
    giant_logg_range: tuple[float, float]
    dwarf_logg_sigma: float
    feh_mean: float
    feh_sigma: float
    feh_range: tuple[float, float]
    vmicro_kms: tuple[float, float]
    vsini_max_hot_kms: float
    vsini_max_cool_kms: float
    rotation_break_teff: float
    ebv_scale: float
    ebv_max: float
    r_v: float
    r_mag_range: tuple[float, float]
    rv_sigma_kms: float
    rv_limit_kms: float
    rv_jitter_kms: float
    rv_error_kms: float
    binary_fraction: float
    binary_k_kms: tuple[float, float]
    snr_range: tuple[float, float]
    snr_window: tuple[float, float]
    resolution_range: tuple[float, float]
    sky_fraction: tuple[float, float]
    cosmic_rays_per_spectrum: float
    cosmic_ray_amplitude: tuple[float, float]
    bad_column_fraction: float
    bad_column_pixels: tuple[float, float]
    reduced_coverage_fraction: float
    coverage_blue_limit: tuple[float, float]
    coverage_red_limit: tuple[float, float]
    wave_log10_min: float
    wave_log10_max: float
    wave_log10_step: float
    mag_error_floor: float
    mag_limit: dict


def parse_config(cfg: Mapping) -> SimConfig:
    """Read and check every key of the simulator's config; :class:`ConfigError` (a ValueError)
    names the key. ``cfg`` is a Mapping (the task's ``source`` node plus ``classes`` and
    ``teff_edges``); keys the simulator does not use (``name``, ...) are ignored. All are required:

    - ``n_stars``, ``max_epochs``: stars, and spectra per star (uniform in 1..max_epochs).
    - ``classes``, ``teff_edges``: MK classes and Teff edges [K] (see :func:`mk_class`); a class is
      drawn uniformly, then Teff uniformly within its edges (balanced classes).
    - ``giant_classes``, ``giant_fraction``, ``giant_logg_range``: the share of stars of those
      classes drawn as giants, logg uniform in the range; others sit on the main sequence
      (:data:`MAIN_SEQUENCE`) with Gaussian scatter ``dwarf_logg_sigma`` (clipped at 2 sigma).
    - ``feh_mean``, ``feh_sigma``, ``feh_range``: [Fe/H] normal, clipped.
    - ``vmicro_kms``: microturbulence range (uniform); ``vsini_max_hot_kms`` /
      ``vsini_max_cool_kms``: v sin i uniform up to these above / below ``rotation_break_teff``.
    - ``ebv_scale``, ``ebv_max``, ``r_v``: E(B-V) exponential with this mean, capped; R_V of the
      Fitzpatrick (1999) law.
    - ``r_mag_range``: dereddened apparent SDSS r magnitude (uniform), which sets the distance.
    - ``rv_sigma_kms``, ``rv_limit_kms``, ``rv_jitter_kms``, ``binary_fraction``,
      ``binary_k_kms``: systemic RV normal (clipped at half the limit), per-epoch jitter, binaries
      with a semi-amplitude uniform in the range at a random phase per epoch; true RVs clipped to
      the limit. ``rv_error_kms``: the measured (catalogue) RV's Gaussian error.
    - ``snr_range``: median S/N per pixel in ``snr_window`` [A, observed], log-uniform.
    - ``resolution_range``: R = lambda / FWHM of the Gaussian LSF, uniform per spectrum.
    - ``sky_fraction``: sky continuum / source median flux in the S/N window, uniform.
    - ``cosmic_rays_per_spectrum`` (Poisson mean; 1-3 pixels each, ``cosmic_ray_amplitude``
      sigma), ``bad_column_fraction`` (spectra with a masked run of ``bad_column_pixels``),
      ``reduced_coverage_fraction`` (spectra whose blue end moves into ``coverage_blue_limit`` or
      red end into ``coverage_red_limit``, [A]).
    - ``wave_log10_min``, ``wave_log10_max``, ``wave_log10_step``: the observed pixel grid.
    - ``mag_error_floor``, ``mag_limit`` (band -> 5-sigma AB limit for every band of
      :data:`PHOTOMETRY_BANDS`): photometric errors; fainter than the limit: NaN (not detected).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"stellar source config must be a mapping, got {type(cfg).__name__}")
    classes_raw = _value(cfg, "classes")
    edges_raw = _value(cfg, "teff_edges")
    if isinstance(classes_raw, str):
        raise _err("classes", f"must be a list of class names, got {classes_raw!r}")
    try:
        classes, edges = check_classes(list(classes_raw), list(edges_raw), where="stellar source")
    except TypeError:
        raise _err("teff_edges", f"must be a list of numbers, got {edges_raw!r}") from None
    if np.min(edges) < MAIN_SEQUENCE[0, 0] - 400 or np.max(edges) > MAIN_SEQUENCE[-1, 0] + 400:
        raise _err("teff_edges", f"must lie within {MAIN_SEQUENCE[0, 0] - 400:.0f}-{MAIN_SEQUENCE[-1, 0] + 400:.0f} K "
                   f"(the simulator's physics range), got {edges.tolist()}")
    giants_raw = _value(cfg, "giant_classes")
    giants = tuple(str(c) for c in ([] if isinstance(giants_raw, str) else giants_raw))
    if isinstance(giants_raw, str) or not set(giants) <= set(classes):
        raise _err("giant_classes", f"must be a list of names from 'classes' {classes}, got {giants_raw!r}")
    lo_mag, hi_mag = _number(cfg, "wave_log10_min", 3.5), _number(cfg, "wave_log10_max", hi=4.0)
    step = _number(cfg, "wave_log10_step", 1e-6, 1e-2)
    if hi_mag - lo_mag < 100 * step:
        raise _err("wave_log10_max", f"must exceed wave_log10_min by >= 100 steps, got {lo_mag}..{hi_mag}")
    wave_lo, wave_hi = 10 ** lo_mag, 10 ** hi_mag
    limits = _value(cfg, "mag_limit")
    if not isinstance(limits, Mapping):
        raise _err("mag_limit", f"must map each band {list(PHOTOMETRY_BANDS)} to a 5-sigma AB limit, got {limits!r}")
    mag_limit = {b: _number(cfg, f"mag_limit.{b}", 5.0, 35.0) for b in PHOTOMETRY_BANDS}
    snr_window = _range(cfg, "snr_window", wave_lo, wave_hi)
    if snr_window[1] - snr_window[0] < 10.0:
        raise _err("snr_window", f"must span >= 10 A inside the wavelength grid, got {list(snr_window)}")
    blue, red = _range(cfg, "coverage_blue_limit", wave_lo, wave_hi), _range(cfg, "coverage_red_limit", wave_lo, wave_hi)
    if blue[1] >= red[0]:
        raise _err("coverage_blue_limit", f"must end below coverage_red_limit's start, got {list(blue)} and {list(red)}")
    return SimConfig(
        n_stars=_number(cfg, "n_stars", 1, integer=True),
        max_epochs=_number(cfg, "max_epochs", 1, 100, integer=True),
        classes=tuple(classes), teff_edges=tuple(float(e) for e in edges),
        giant_classes=giants,
        giant_fraction=_number(cfg, "giant_fraction", 0.0, 1.0),
        giant_logg_range=_range(cfg, "giant_logg_range", 0.0, 4.0),
        dwarf_logg_sigma=_number(cfg, "dwarf_logg_sigma", 0.0, 1.0),
        feh_mean=_number(cfg, "feh_mean", -4.0, 1.0),
        feh_sigma=_number(cfg, "feh_sigma", 0.0, 3.0),
        feh_range=_range(cfg, "feh_range", -4.0, 1.0),
        vmicro_kms=_range(cfg, "vmicro_kms", 0.0, 10.0),
        vsini_max_hot_kms=_number(cfg, "vsini_max_hot_kms", 0.0, 500.0),
        vsini_max_cool_kms=_number(cfg, "vsini_max_cool_kms", 0.0, 500.0),
        rotation_break_teff=_number(cfg, "rotation_break_teff", 0.0),
        ebv_scale=_number(cfg, "ebv_scale", 0.0),
        ebv_max=_number(cfg, "ebv_max", 0.0, 5.0),
        r_v=_number(cfg, "r_v", 2.0, 6.0),
        r_mag_range=_range(cfg, "r_mag_range", 0.0, 30.0),
        rv_sigma_kms=_number(cfg, "rv_sigma_kms", 0.0),
        rv_limit_kms=_number(cfg, "rv_limit_kms", 0.0, 3000.0, lo_open=True),
        rv_jitter_kms=_number(cfg, "rv_jitter_kms", 0.0),
        rv_error_kms=_number(cfg, "rv_error_kms", 0.0),
        binary_fraction=_number(cfg, "binary_fraction", 0.0, 1.0),
        binary_k_kms=_range(cfg, "binary_k_kms", 0.0, 500.0),
        snr_range=_range(cfg, "snr_range", 0.0, 1e4, lo_open=True),
        snr_window=snr_window,
        resolution_range=_range(cfg, "resolution_range", 100.0, 2e4),
        sky_fraction=_range(cfg, "sky_fraction", 0.0, 1e3),
        cosmic_rays_per_spectrum=_number(cfg, "cosmic_rays_per_spectrum", 0.0, 1000.0),
        cosmic_ray_amplitude=_range(cfg, "cosmic_ray_amplitude", 0.0),
        bad_column_fraction=_number(cfg, "bad_column_fraction", 0.0, 1.0),
        bad_column_pixels=_range(cfg, "bad_column_pixels", 1.0, 1000.0),
        reduced_coverage_fraction=_number(cfg, "reduced_coverage_fraction", 0.0, 1.0),
        coverage_blue_limit=blue, coverage_red_limit=red,
        wave_log10_min=lo_mag, wave_log10_max=hi_mag, wave_log10_step=step,
        mag_error_floor=_number(cfg, "mag_error_floor", 0.0, 1.0),
        mag_limit=mag_limit,
    )


# --------------------------------------------------------------------------------------------
# Photosphere: Saha ionisation, electron and gas pressure
# --------------------------------------------------------------------------------------------

def abundances(feh: np.ndarray) -> dict[str, np.ndarray]:
    """Number abundance relative to H of every species, shape of ``feh``: solar scaled by
    10^[Fe/H] for metals (H and He fixed), alpha elements enhanced (:data:`ALPHA_ENHANCEMENT`)."""
    feh = np.asarray(feh, dtype=np.float64)
    alpha = ALPHA_ENHANCEMENT * np.clip(-feh, 0.0, 1.0)
    out = {}
    for name, sp in SPECIES.items():
        scale = 0.0 if name in ("H", "He") else feh + (alpha if sp.alpha else 0.0)
        out[name] = 10.0 ** (sp.log_eps - 12.0 + scale) * np.ones_like(feh)
    return out


def stage_fractions(name: str, teff: np.ndarray, log_pe: np.ndarray) -> np.ndarray:
    """Fractions of ``name`` in each ionisation stage (Saha, Gray eq. 1.20), (n_stages, ...)."""
    sp = SPECIES[name]
    theta = THETA_K / teff
    log_t = np.log10(teff)
    logs = [np.zeros(np.broadcast(teff, log_pe).shape)]
    for r, chi in enumerate(sp.chi_ion):
        log_phi = SAHA_LOG_CONST + np.log10(2.0 * sp.partition[r + 1] / sp.partition[r]) + 2.5 * log_t - theta * chi
        logs.append(logs[-1] + log_phi - log_pe)
    logs = np.stack(logs)
    logs -= logs.max(axis=0)
    w = 10.0 ** logs
    return w / w.sum(axis=0)


def _saha_log_phi(teff: np.ndarray) -> np.ndarray:
    """log10 Phi_r(T) [dyn cm^-2] of the first two ionisations of every species, (n_species, 2,
    ...): n_(r+1) / n_r = Phi_r / P_e (Gray eq. 1.20); -inf where a species has no such stage."""
    theta = THETA_K / teff
    out = np.full((len(SPECIES), 2) + np.shape(teff), -np.inf)
    for s, sp in enumerate(SPECIES.values()):
        for r, chi in enumerate(sp.chi_ion[:2]):
            out[s, r] = SAHA_LOG_CONST + np.log10(2.0 * sp.partition[r + 1] / sp.partition[r]) \
                + 2.5 * np.log10(teff) - theta * chi
    return out


def _electrons_per_h(log_phi: np.ndarray, log_pe: np.ndarray, abund_matrix: np.ndarray) -> np.ndarray:
    """Free electrons per H nucleus from every species' first two ionisations."""
    l1 = log_phi[:, 0] - log_pe
    l2 = l1 + log_phi[:, 1] - log_pe
    m = np.maximum(0.0, np.maximum(l1, l2))
    w0, w1, w2 = 10.0 ** (-m), 10.0 ** (l1 - m), 10.0 ** (l2 - m)
    return (abund_matrix * (w1 + 2.0 * w2) / (w0 + w1 + w2)).sum(axis=0)


def _solve_log_pe(log_phi, log_pg, abund_matrix, n_iter: int = 36) -> np.ndarray:
    """log10 P_e such that P_e / P_g = x_e / (sum A + x_e) (charge and particle conservation)."""
    n_nuclei = abund_matrix.sum(axis=0)
    lo = np.full(np.shape(log_pg), -8.0)
    hi = np.asarray(log_pg, dtype=np.float64).copy()
    for _ in range(n_iter):  # bisection: the residual grows monotonically with P_e
        mid = 0.5 * (lo + hi)
        x_e = _electrons_per_h(log_phi, mid, abund_matrix)
        resid = mid - (log_pg + np.log10(x_e / (n_nuclei + x_e)))
        hi = np.where(resid > 0, mid, hi)
        lo = np.where(resid > 0, lo, mid)
    return 0.5 * (lo + hi)


@lru_cache(maxsize=16)
def _opacity_wave_terms(key: bytes) -> dict[str, np.ndarray]:
    """The star-independent factors of :func:`continuum_opacity` on one wavelength grid (cached:
    the model, SED and line grids recur for every star)."""
    lam = np.frombuffer(key, dtype=np.float64)
    alpha_bf = np.polynomial.polynomial.polyval(lam, H_MINUS_BF_COEFFS) * 1e-18
    log_lam = np.log10(lam)
    chi_h = SPECIES["H"].chi_ion[0]
    levels = np.arange(1, HYDROGEN_LEVELS + 1)
    edges = HC_EV_ANGSTROM / (chi_h / levels ** 2)
    reach = 0.5 * erfc((lam[None, :] - edges[:, None]) / (HYDROGEN_EDGE_SMOOTHING * edges[:, None]))
    return {"lam": lam, "alpha_bf": np.where(lam < H_MINUS_THRESHOLD, np.clip(alpha_bf, 0.0, None), 0.0),
            "f0": np.polynomial.polynomial.polyval(log_lam, H_MINUS_FF_F0),
            "f1": np.polynomial.polynomial.polyval(log_lam, H_MINUS_FF_F1),
            "f2": np.polynomial.polynomial.polyval(log_lam, H_MINUS_FF_F2),
            "reach": reach / levels[:, None] ** 3, "chi_n": chi_h * (1.0 - 1.0 / levels ** 2),
            "lam3": HYDROGEN_BF_ALPHA0 * lam ** 3}


def continuum_opacity(wave: np.ndarray, teff: np.ndarray, log_pe: np.ndarray, f_hi: np.ndarray,
                      x_e: np.ndarray) -> np.ndarray:
    """Continuum opacity [cm^2 per H nucleus], shape (n_stars, n_wave), of H- bf + ff, H bf + ff
    (neutral H fraction ``f_hi``) and electron scattering (``x_e`` electrons per H nucleus)."""
    w = _opacity_wave_terms(np.ascontiguousarray(wave, dtype=np.float64).tobytes())
    lam = w["lam"][None, :]
    teff = np.asarray(teff, dtype=np.float64).reshape(-1, 1)
    pe = 10.0 ** np.asarray(log_pe, dtype=np.float64).reshape(-1, 1)
    f_hi = np.asarray(f_hi, dtype=np.float64).reshape(-1, 1)
    x_e = np.asarray(x_e, dtype=np.float64).reshape(-1, 1)
    theta = THETA_K / teff
    stim = 1.0 - 10.0 ** (-theta * HC_EV_ANGSTROM / lam)
    # H- bound-free (Gray eqs. 8.11-8.12), per neutral H atom
    k_hm_bf = 4.158e-10 * w["alpha_bf"][None, :] * pe * theta ** 2.5 * 10.0 ** (H_MINUS_BINDING * theta) * stim
    # H- free-free (Gray eq. 8.13)
    log_theta = np.log10(theta)
    k_hm_ff = 1e-26 * pe * 10.0 ** (w["f0"][None, :] + w["f1"][None, :] * log_theta + w["f2"][None, :] * log_theta ** 2)
    # H bound-free from levels 1..HYDROGEN_LEVELS (Gray eq. 8.8, g_bf = 1; edges smoothed) and
    # free-free (eq. 8.10, g_ff = 1)
    chi_h = SPECIES["H"].chi_ion[0]
    k_h = (10.0 ** (-theta * w["chi_n"][None, :])) @ w["reach"]
    k_h = w["lam3"][None, :] * (k_h + np.log10(np.e) / (2 * theta * chi_h) * 10.0 ** (-theta * chi_h)) * stim
    return f_hi * (k_hm_bf + k_hm_ff + k_h) + SIGMA_THOMSON * x_e


def photosphere(teff, logg, feh, n_iter: int = 36) -> dict[str, np.ndarray]:
    """The layer tau_5000 = 2/3 (T = Teff): gas and electron pressure [dyn cm^-2], neutral H
    fraction, electrons per H nucleus, abundances, mean mass per H nucleus [g] and the continuum
    opacity at 5000 A [cm^2 per H], for arrays of stars. ``P_g = g tau / kappa_mass`` solved by
    bisection in log P_g (kappa grows with P through P_e)."""
    teff = np.atleast_1d(np.asarray(teff, dtype=np.float64))
    logg = np.broadcast_to(np.asarray(logg, dtype=np.float64), teff.shape).copy()
    feh = np.broadcast_to(np.asarray(feh, dtype=np.float64), teff.shape).copy()
    abund = abundances(feh)
    abund_matrix = np.stack([abund[n] for n in SPECIES])
    log_phi = _saha_log_phi(teff)
    mass_per_h = AMU_G * sum(abund[n] * SPECIES[n].mass for n in SPECIES)
    lo, hi = np.full(teff.shape, -2.0), np.full(teff.shape, 9.0)

    def state(log_pg):
        log_pe = _solve_log_pe(log_phi, log_pg, abund_matrix)
        f_hi = stage_fractions("H", teff, log_pe)[0]
        x_e = _electrons_per_h(log_phi, log_pe, abund_matrix)
        kappa = continuum_opacity(np.array([WAVE_REF]), teff, log_pe, f_hi, x_e)[:, 0]
        return log_pe, f_hi, x_e, kappa

    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        kappa = state(mid)[3]
        resid = mid - np.log10(10.0 ** logg * TAU_PHOTOSPHERE * mass_per_h / kappa)
        hi = np.where(resid > 0, mid, hi)
        lo = np.where(resid > 0, lo, mid)
    log_pg = 0.5 * (lo + hi)
    log_pe, f_hi, x_e, kappa = state(log_pg)
    return {"teff": teff, "logg": logg, "feh": feh, "log_pg": log_pg, "log_pe": log_pe,
            "f_hi": f_hi, "x_e": x_e, "abund": abund, "mass_per_h": mass_per_h, "kappa_ref": kappa}


def planck(wave: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """B_lambda [erg s^-1 cm^-2 A^-1 sr^-1]; broadcasts ``wave`` [A] against ``temp`` [K]."""
    lam_cm = np.asarray(wave, dtype=np.float64) * 1e-8
    x = H_CGS * C_CGS / (lam_cm * K_CGS * np.asarray(temp, dtype=np.float64))
    return 2.0 * H_CGS * C_CGS ** 2 / lam_cm ** 5 / np.expm1(np.minimum(x, 700.0)) * 1e-8


def continuum_flux(wave: np.ndarray, phot: Mapping) -> np.ndarray:
    """Surface flux [erg s^-1 cm^-2 A^-1], (n_stars, n_wave): pi B_lambda at the depth where
    tau_lambda = 2/3, with T(tau)^4 = 3/4 Teff^4 (tau + 2/3) (Eddington grey atmosphere, Gray eq.
    9.22 / Eddington-Barbier), times the blanketing transmission."""
    kappa = continuum_opacity(wave, phot["teff"], phot["log_pe"], phot["f_hi"], phot["x_e"])
    tau_ref = TAU_PHOTOSPHERE * phot["kappa_ref"][:, None] / kappa
    temp = phot["teff"][:, None] * (0.75 * (tau_ref + 2.0 / 3.0)) ** 0.25
    return np.pi * planck(np.asarray(wave)[None, :], temp) * blanketing(wave, phot["teff"], phot["feh"])


def blanketing(wave: np.ndarray, teff: np.ndarray, feh: np.ndarray) -> np.ndarray:
    """Smooth transmission exp(-beta) of the unlisted weak lines (see :data:`BLANKET_SOLAR_4000`)."""
    teff = np.asarray(teff, dtype=np.float64).reshape(-1, 1)
    z = 10.0 ** (BLANKET_Z_POWER * np.asarray(feh, dtype=np.float64).reshape(-1, 1))
    beta = BLANKET_SOLAR_4000 * z * (T_SUN / teff) ** BLANKET_T_POWER \
        * np.exp(-(np.asarray(wave, dtype=np.float64)[None, :] - 4000.0) / BLANKET_SCALE)
    return np.exp(-np.minimum(beta, BLANKET_MAX))


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def line_table() -> pd.DataFrame:
    """Every line the simulator renders: :data:`ATOMIC_LINES` and the seeded forest; columns
    wave (vacuum A), element, stage, chi_low, log_gf, n_low, n_up, forest (bool)."""
    rows = [dict(l._asdict(), forest=False) for l in ATOMIC_LINES]
    rng = np.random.default_rng(FOREST_SEED)
    probs = np.array([s[2] for s in FOREST_SPECIES])
    kinds = rng.choice(len(FOREST_SPECIES), size=N_FOREST, p=probs / probs.sum())
    lo, hi = 3700.0, 9400.0
    u = rng.random(N_FOREST)  # density ~ lambda^-2: inverse CDF of 1/lambda uniform
    waves = 1.0 / (1.0 / lo - u * (1.0 / lo - 1.0 / hi))
    for k, w in zip(kinds, waves):
        element, stage, _, chi_range, gf_range = FOREST_SPECIES[k]
        rows.append({"wave_air": float(w), "element": element, "stage": stage,
                     "chi_low": float(rng.uniform(*chi_range)), "log_gf": float(rng.uniform(*gf_range)),
                     "n_low": 0, "n_up": 0, "forest": True})
    table = pd.DataFrame(rows)
    table.insert(0, "wave", air_to_vacuum(table["wave_air"].to_numpy()))
    return table


def line_parameters(phot: Mapping, vmicro: np.ndarray, lines: pd.DataFrame | None = None) -> dict[str, np.ndarray]:
    """Per star and line (n_stars, n_lines): ``strength`` S [A] (the integrated line opacity over
    the continuum opacity: eta(dlambda) = S phi(dlambda)), Gaussian ``sigma`` [A], Lorentzian
    half-width ``gamma`` [A], maximum depth ``d_max`` and rendering half-window [A]."""
    lines = line_table() if lines is None else lines
    lam = lines["wave"].to_numpy()
    teff = phot["teff"][:, None]
    theta = THETA_K / teff
    log_pe = phot["log_pe"][:, None]
    pg = 10.0 ** phot["log_pg"][:, None]
    n_stars = len(phot["teff"])
    # number of absorbers in the lower level per H nucleus: A x stage fraction x g/U 10^(-theta chi) (gf below)
    pop = np.zeros((n_stars, len(lines)))
    mass = np.zeros(len(lines))
    chi_ion = np.zeros(len(lines))
    for (element, stage), idx in lines.groupby(["element", "stage"]).indices.items():
        sp = SPECIES[element]
        frac = stage_fractions(element, phot["teff"], phot["log_pe"])[stage]
        pop[:, idx] = (phot["abund"][element] * frac / sp.partition[stage])[:, None]
        mass[idx] = sp.mass
        chi_ion[idx] = sp.chi_ion[stage]
    chi_low = lines["chi_low"].to_numpy()[None, :]
    gf = 10.0 ** lines["log_gf"].to_numpy()[None, :]
    stim = 1.0 - 10.0 ** (-theta * HC_EV_ANGSTROM / lam[None, :])
    sigma_int = PI_E2_OVER_MC2 * (lam * 1e-8) ** 2 * 1e8 * gf * pop * 10.0 ** (-theta * chi_low) * stim  # cm^2 A / H
    kappa = continuum_opacity(lam, phot["teff"], phot["log_pe"], phot["f_hi"], phot["x_e"]) \
        * (1.0 + MOLECULAR_HAZE * molecular_haze(phot))[:, None]
    strength = LINE_OPACITY_SCALE * sigma_int / kappa
    # Doppler: thermal + microturbulence (Gray eq. 11.39)
    v_d = np.sqrt(2.0 * K_CGS * teff / (mass[None, :] * AMU_G) / 1e10 + np.asarray(vmicro)[:, None] ** 2)  # km/s
    sigma = lam[None, :] * v_d / C_KMS / np.sqrt(2.0)
    # damping: radiative (classical, Gray eq. 11.15), van der Waals (eqs. 11.29-11.35), Stark (H)
    lam_cm = lam * 1e-8
    gamma_rad = 0.2223 / lam_cm ** 2
    chi_lambda = HC_EV_ANGSTROM / lam
    upper = np.clip(chi_ion - lines["chi_low"].to_numpy() - chi_lambda, 0.3, None)
    c6 = 0.3e-30 * (1.0 / upper ** 2 - 1.0 / (chi_ion - lines["chi_low"].to_numpy()) ** 2)
    log_gamma6 = 19.6 + 0.4 * np.log10(np.clip(c6, 1e-40, None))[None, :] + np.log10(pg) - 0.7 * np.log10(teff)
    gamma6 = VDW_ENHANCEMENT * 10.0 ** log_gamma6
    gamma = lam_cm[None, :] ** 2 * 1e8 / (4.0 * np.pi * C_CGS) * (gamma_rad[None, :] + gamma6)
    n_low, n_up = lines["n_low"].to_numpy(), lines["n_up"].to_numpy()
    hydrogen = n_up > 0
    if hydrogen.any():
        n_e = 10.0 ** log_pe / (K_CGS * teff)
        hb = air_to_vacuum(4861.33)
        width = np.where(hydrogen, (lam / hb) ** 2 * (n_up ** 2 - n_low ** 2) / 12.0, 0.0)
        width = np.where((n_low == 2) & (n_up == 3), HALPHA_STARK_FACTOR * width, width)
        gamma = gamma + STARK_SCALE * 0.5 * HBETA_STARK_FWHM_1E17 * width[None, :] * (n_e / 1e17) ** (2.0 / 3.0)
    d_max = 1.0 - planck(lam[None, :], SURFACE_T_RATIO * teff) / planck(lam[None, :], teff)
    eta0 = strength * voigt_profile(0.0, sigma, gamma)
    core = sigma * np.sqrt(2.0 * np.log(np.clip(eta0 / ETA_MIN, 1.0, None))) + 4.0 * sigma
    wing = np.sqrt(strength * gamma / (np.pi * ETA_MIN))
    window = np.clip(np.maximum(core, wing), *LINE_WINDOW_LIMITS)
    return {"wave": np.broadcast_to(lam, strength.shape), "strength": strength, "sigma": sigma, "gamma": gamma,
            "d_max": d_max, "window": window}


def line_profiles(params: Mapping, star: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets x [A] (n_lines, n_x) and cumulative absorbed equivalent width [A] along x of every
    line of star ``star``: residual absorption d_max eta / (1 + eta), eta = S x Voigt, integrated
    with the trapezoid rule on a log-spaced grid that resolves the Doppler core."""
    sigma, gamma = params["sigma"][star][:, None], params["gamma"][star][:, None]
    window = params["window"][star][:, None]
    x_min = 0.02 * sigma
    t = np.linspace(0.0, 1.0, LINE_SAMPLES_PER_SIDE)[None, :]
    pos = x_min * (window / x_min) ** t
    x = np.concatenate([-pos[:, ::-1], np.zeros_like(sigma), pos], axis=1)
    eta = params["strength"][star][:, None] * voigt_profile(x, sigma, gamma)
    absorb = params["d_max"][star][:, None] * eta / (1.0 + eta)
    cum = np.concatenate([np.zeros_like(sigma), np.cumsum(0.5 * (absorb[:, 1:] + absorb[:, :-1]) * np.diff(x, axis=1),
                                                          axis=1)], axis=1)
    return x, cum


def equivalent_widths(params: Mapping, star: int) -> np.ndarray:
    """Equivalent width [A] of every line of star ``star`` (the curve of growth's output)."""
    return line_profiles(params, star)[1][:, -1]


def render_lines(params: Mapping, star: int, edges: np.ndarray) -> np.ndarray:
    """Absorption -ln(transmission) of all lines of star ``star`` on the model pixels bounded by
    ``edges``: each pixel's mean residual absorption, exact from the integrated profile
    (:func:`line_profiles`), lines combined multiplicatively. Vectorised over lines."""
    x, cum = line_profiles(params, star)
    n_lines, n_x = x.shape
    centres, window = params["wave"][star], params["window"][star]
    i0 = np.clip(np.searchsorted(edges, centres - window) - 1, 0, len(edges) - 1)
    i1 = np.clip(np.searchsorted(edges, centres + window) + 1, 0, len(edges) - 1)
    counts = i1 - i0 + 1                                     # edges per line
    line_of = np.repeat(np.arange(n_lines), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    edge_idx = np.repeat(i0, counts) + np.arange(line_of.size) - starts
    q = edges[edge_idx] - centres[line_of]
    # the bracketing samples of q in each line's sorted x (a flattened search with per-line offsets)
    span = (x[:, -1] - x[:, 0])[:, None] + 1.0
    offsets = np.cumsum(np.concatenate([[0.0], span[:-1, 0] + 1.0]))
    flat_x = (x - x[:, :1] + offsets[:, None]).ravel()
    flat_q = np.clip(q - x[line_of, 0], 0.0, span[line_of, 0] - 1.0) + offsets[line_of]
    j = np.clip(np.searchsorted(flat_x, flat_q, side="right") - 1, line_of * n_x, line_of * n_x + n_x - 2)
    xa, xb = flat_x[j], flat_x[j + 1]
    w = np.clip((flat_q - xa) / np.where(xb > xa, xb - xa, 1.0), 0.0, 1.0)
    flat_cum = cum.ravel()
    c = flat_cum[j] + w * (flat_cum[j + 1] - flat_cum[j])
    same = line_of[1:] == line_of[:-1]                       # consecutive edges of one line: a pixel
    mean_abs = np.diff(c)[same] / np.diff(edges[edge_idx])[same]
    pix = edge_idx[:-1][same]
    return np.bincount(pix, weights=-np.log1p(-np.clip(mean_abs, 0.0, 0.999)), minlength=len(edges) - 1)


# --------------------------------------------------------------------------------------------
# Molecular bands
# --------------------------------------------------------------------------------------------

def _molecule_strength(teff, logg, abund: Mapping, name: str, atoms: tuple[str, str], d0: float,
                       gravity_exp: float, reference: tuple[float, float, float]) -> np.ndarray:
    """Band optical depth relative to the reference star: the abundance of atom A times the
    fraction of it in the molecule, f = K / (1 + K) with K = K_ref (A_B / A_B,ref)
    10^(D0 (theta - theta_ref)) (theta / theta_ref)^(5/2), times (g / g_ref)^gravity_exp.

    The gravity exponent is empirical: TiO and CH bands are nearly gravity-insensitive at a given
    Teff (TiO sets the M subtypes of dwarfs and giants alike), while the hydrides MgH and CaH are
    the classic dwarf indicators (Gray & Corbally 2009, *Stellar Spectral Classification*, ch. 6-7).
    """
    t_ref, g_ref, feh_ref = reference
    ref_abund = abundances(np.array([feh_ref]))
    first, second = atoms
    theta, theta_ref = THETA_K / np.asarray(teff, dtype=np.float64), THETA_K / t_ref
    k = MOLECULE_K_REF[name] * abund[second] / ref_abund[second][0] * 10.0 ** (d0 * (theta - theta_ref)) \
        * (theta / theta_ref) ** 2.5
    k_ref = MOLECULE_K_REF[name]
    return abund[first] / ref_abund[first][0] * (k / (1.0 + k)) / (k_ref / (1.0 + k_ref)) \
        * 10.0 ** (gravity_exp * (np.asarray(logg, dtype=np.float64) - g_ref))


def band_scales(phot: Mapping) -> np.ndarray:
    """Each star's band optical depths relative to the reference star's, (n_stars, n_bands + 1):
    the bands of :data:`MOLECULAR_BANDS`, then the CH G band."""
    cols = [_molecule_strength(phot["teff"], phot["logg"], phot["abund"], name, atoms, d0, g_exp, BAND_REFERENCE)
            for name, atoms, d0, _, _, _, _, g_exp in MOLECULAR_BANDS]
    cols.append(_molecule_strength(phot["teff"], phot["logg"], phot["abund"], "CH", ("C", "H"), G_BAND_D0, 0.0,
                                   G_BAND_REFERENCE))
    return np.stack(cols, axis=1)


def molecular_haze(phot: Mapping) -> np.ndarray:
    """The TiO strength of each star relative to the band reference star (~0 for hot stars)."""
    name, atoms, d0, _, _, _, _, g_exp = MOLECULAR_BANDS[4]
    return _molecule_strength(phot["teff"], phot["logg"], phot["abund"], name, atoms, d0, g_exp, BAND_REFERENCE)


def band_shapes(wave: np.ndarray) -> np.ndarray:
    """Optical depth of each band at its reference star, (n_bands + 1, n_wave): a smoothed head
    then an exponential fade in the band's direction; the G band a smoothed top hat."""
    from scipy.special import erf

    wave = np.asarray(wave, dtype=np.float64)[None, :]
    rows = []
    for _, _, _, head, direction, length, tau_ref, _ in MOLECULAR_BANDS:
        dx = direction * (wave[0] - head)
        rows.append(tau_ref * 0.5 * (1.0 + erf(dx / BAND_HEAD_WIDTH)) * np.exp(-np.clip(dx, 0.0, None) / length))
    rows.append(G_BAND_TAU * 0.5 * (erf((wave[0] - G_BAND_RANGE[0]) / G_BAND_EDGE)
                                    - erf((wave[0] - G_BAND_RANGE[1]) / G_BAND_EDGE)))
    return np.stack(rows)


def band_optical_depth(wave: np.ndarray, phot: Mapping) -> np.ndarray:
    """Optical depth (n_stars, n_wave) of TiO, MgH, CaH and the CH G band: each band's depth at
    its reference star scaled by the star's molecular column relative to that star's."""
    return band_scales(phot) @ band_shapes(wave)


# --------------------------------------------------------------------------------------------
# Grids, stars, observations
# --------------------------------------------------------------------------------------------

def observed_grid(sim: SimConfig) -> np.ndarray:
    """The observed-frame vacuum wavelengths [A] of the spectrograph pixels (log10 grid)."""
    n = int(np.floor((sim.wave_log10_max - sim.wave_log10_min) / sim.wave_log10_step + 1e-9)) + 1
    return 10.0 ** (sim.wave_log10_min + sim.wave_log10_step * np.arange(n))


def model_grid(sim: SimConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Rest-frame model log10 grid (centres, edges [A], step [dex]) covering the observed grid
    shifted by any allowed RV, :data:`MODEL_OVERSAMPLE` times finer."""
    step = sim.wave_log10_step / MODEL_OVERSAMPLE
    shift = np.log10(1.0 + sim.rv_limit_kms / C_KMS * 1.05)
    lo = np.log10(10 ** sim.wave_log10_min - MODEL_MARGIN_A) - shift
    hi = np.log10(10 ** sim.wave_log10_max + MODEL_MARGIN_A) + shift
    log_c = lo + step * np.arange(int(np.ceil((hi - lo) / step)) + 1)
    return 10.0 ** log_c, 10.0 ** np.append(log_c - 0.5 * step, log_c[-1] + 0.5 * step), step


def sed_grid() -> np.ndarray:
    lo, hi = np.log10(SED_WAVE_RANGE[0]), np.log10(SED_WAVE_RANGE[1])
    return 10.0 ** np.arange(lo, hi + 0.5 * SED_STEP, SED_STEP)


def rotation_kernel(vsini_kms: float, step_dex: float) -> np.ndarray | None:
    """Rotational broadening kernel (Gray 2005 eq. 18.14, linear limb darkening) on a log grid,
    integrated over each pixel (so it tends smoothly to a delta as v sin i -> 0); None for
    v sin i = 0."""
    half = vsini_kms / C_KMS / np.log(10.0) / step_dex          # half-width in pixels
    if half <= 1e-6:
        return None
    n = int(np.ceil(half + 0.5))
    sub = ROTATION_SUBSAMPLES
    u = (np.arange(-(n + 0.5) * sub, (n + 0.5) * sub) + 0.5) / sub   # sub-pixel centres, pixel units
    y = np.clip(1.0 - (u / half) ** 2, 0.0, None)
    eps = ROTATION_LIMB_DARKENING
    prof = 2.0 * (1.0 - eps) * np.sqrt(y) + 0.5 * np.pi * eps * y
    if prof.sum() <= 0:  # narrower than a sub-pixel: all in the central pixel
        kernel = np.zeros(2 * n + 1)
        kernel[n] = 1.0
        return kernel
    kernel = prof.reshape(2 * n + 1, sub).sum(axis=1)
    return kernel / kernel.sum()


def _interp_table(teff: np.ndarray, column: int) -> np.ndarray:
    return np.interp(teff, MAIN_SEQUENCE[:, 0], MAIN_SEQUENCE[:, column])


def draw_stars(sim: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """The stars' true parameters: class uniformly, then Teff uniformly within its edges; logg on
    the main sequence (plus giants in ``giant_classes``); [Fe/H] clipped normal; E(B-V)
    exponential; microturbulence, rotation, systemic RV, binarity and brightness."""
    n = sim.n_stars
    edges = np.asarray(sim.teff_edges)
    k = rng.integers(0, len(sim.classes), n)
    lo, hi = np.minimum(edges[k], edges[k + 1]), np.maximum(edges[k], edges[k + 1])
    teff = rng.uniform(lo, hi)
    label = np.asarray(sim.classes, dtype=object)[k].astype(str)
    can_be_giant = np.isin(label, sim.giant_classes)
    giant = can_be_giant & (rng.random(n) < sim.giant_fraction)
    ms_logg = _interp_table(teff, 1)
    dwarf_logg = ms_logg + np.clip(rng.normal(0.0, 1.0, n), -2.0, 2.0) * sim.dwarf_logg_sigma
    logg = np.where(giant, rng.uniform(*sim.giant_logg_range, n), np.minimum(dwarf_logg, 5.2))
    feh = np.clip(rng.normal(sim.feh_mean, sim.feh_sigma, n), *sim.feh_range)
    ebv = np.minimum(sim.ebv_scale * rng.exponential(1.0, n), sim.ebv_max)
    vmicro = rng.uniform(*sim.vmicro_kms, n)
    vmax = np.where(teff >= sim.rotation_break_teff, sim.vsini_max_hot_kms, sim.vsini_max_cool_kms)
    vsini = vmax * rng.random(n)
    rv_sys = np.clip(rng.normal(0.0, sim.rv_sigma_kms, n), -0.5 * sim.rv_limit_kms, 0.5 * sim.rv_limit_kms)
    binary = rng.random(n) < sim.binary_fraction
    k_amp = np.where(binary, rng.uniform(*sim.binary_k_kms, n), 0.0)
    r0 = rng.uniform(*sim.r_mag_range, n)
    mass = np.where(giant | (logg < ms_logg - 0.6), GIANT_MASS, _interp_table(teff, 2))
    radius = np.sqrt(G_NEWTON * mass * M_SUN_G / 10.0 ** logg) / R_SUN_CM
    return pd.DataFrame({
        "star_id": [f"sim{i:06d}" for i in range(n)], "label": label, "truth_teff": teff, "truth_logg": logg,
        "truth_feh": feh, "truth_ebv": ebv, "truth_vmicro": vmicro, "truth_vsini": vsini,
        "truth_rv_systemic": rv_sys, "is_binary": binary, "binary_k_kms": k_amp, "giant": giant,
        "mass_msun": mass, "radius_rsun": radius, "mag_r0": r0})


def draw_epochs(sim: SimConfig, stars: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One row per spectrum: 1..max_epochs per star, each with its RV (systemic + orbit +
    jitter), measured RV, S/N (log-uniform), resolution, sky level and coverage."""
    n_ep = rng.integers(1, sim.max_epochs + 1, len(stars))
    star_idx = np.repeat(np.arange(len(stars)), n_ep)
    epoch = np.concatenate([np.arange(m) for m in n_ep])
    n = len(star_idx)
    phase = rng.random(n)
    truth_rv = stars["truth_rv_systemic"].to_numpy()[star_idx] \
        + stars["binary_k_kms"].to_numpy()[star_idx] * np.sin(2 * np.pi * phase) \
        + rng.normal(0.0, sim.rv_jitter_kms, n)
    truth_rv = np.clip(truth_rv, -sim.rv_limit_kms, sim.rv_limit_kms)
    rv = truth_rv + rng.normal(0.0, sim.rv_error_kms, n)
    snr = np.exp(rng.uniform(np.log(sim.snr_range[0]), np.log(sim.snr_range[1]), n))
    resolution = rng.uniform(*sim.resolution_range, n)
    sky = rng.uniform(*sim.sky_fraction, n)
    wave_lo, wave_hi = 10 ** sim.wave_log10_min, 10 ** sim.wave_log10_max
    reduced = rng.random(n) < sim.reduced_coverage_fraction
    blue_side = rng.random(n) < 0.5
    cover_lo = np.where(reduced & blue_side, rng.uniform(*sim.coverage_blue_limit, n), wave_lo)
    cover_hi = np.where(reduced & ~blue_side, rng.uniform(*sim.coverage_red_limit, n), wave_hi)
    s = stars.iloc[star_idx].reset_index(drop=True)
    return pd.DataFrame({
        "spectrum_id": [f"{sid}-{e}" for sid, e in zip(s["star_id"], epoch)], "star_id": s["star_id"].to_numpy(),
        "epoch": epoch.astype(np.int64), "label": s["label"].to_numpy(),
        "truth_teff": s["truth_teff"].to_numpy(), "truth_logg": s["truth_logg"].to_numpy(),
        "truth_feh": s["truth_feh"].to_numpy(), "truth_rv": truth_rv, "rv": rv,
        "truth_ebv": s["truth_ebv"].to_numpy(), "snr": snr, "resolution": resolution,
        "sky_fraction": sky, "coverage_min": cover_lo, "coverage_max": cover_hi, "star_index": star_idx})


def _sky_shape(wave: np.ndarray, sigma_a: np.ndarray) -> np.ndarray:
    """Sky spectrum shape (1 = the blue sky continuum): OH rise to the red, emission lines."""
    shape = 1.0 + (SKY_OH_RISE - 1.0) * np.clip((wave - SKY_OH_START) / (9000.0 - SKY_OH_START), 0.0, None)
    for centre, strength in SKY_LINES:
        shape = shape + strength * np.exp(-0.5 * ((wave - centre) / sigma_a) ** 2) / (np.sqrt(2 * np.pi) * sigma_a)
    return shape


@dataclass
class StellarSample:
    """A simulated survey (see :func:`simulate_sample`)."""

    stars: pd.DataFrame
    spectra: pd.DataFrame
    wave: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    report: dict


def intrinsic_spectra(phot: Mapping, vmicro: np.ndarray, vsini: np.ndarray, wave_model: np.ndarray,
                      edges: np.ndarray, step: float, wave_sed: np.ndarray, stars=None):
    """Yield (index, rest-frame surface flux on the model grid, surface-flux SED on ``wave_sed``)
    for each star (or each index of ``stars``) [erg s^-1 cm^-2 A^-1]: continuum x lines (rotated)
    x molecular bands; the SED carries the lines' mean transmission within the model range."""
    params = line_parameters(phot, vmicro)
    scales = band_scales(phot)
    shapes_model, shapes_sed = band_shapes(wave_model), band_shapes(wave_sed)
    inside = (wave_sed > edges[0]) & (wave_sed < edges[-1])
    sed_edges = np.concatenate([[wave_sed[0]], np.sqrt(wave_sed[1:] * wave_sed[:-1]), [wave_sed[-1]]])
    e_in = np.clip(sed_edges, edges[0], edges[-1])
    widths = np.diff(edges)
    for i in (range(len(phot["teff"])) if stars is None else stars):
        sub = {k: (v[i:i + 1] if isinstance(v, np.ndarray) and v.ndim == 1 else v) for k, v in phot.items()}
        sub["abund"] = {k: v[i:i + 1] for k, v in phot["abund"].items()}
        lines_t = np.exp(-render_lines(params, i, edges))
        kernel = rotation_kernel(float(vsini[i]), step)
        if kernel is not None:
            pad = len(kernel) // 2
            lines_t = np.convolve(np.pad(lines_t, pad, mode="edge"), kernel, mode="valid")
        model = continuum_flux(wave_model, sub)[0] * lines_t * np.exp(-scales[i] @ shapes_model)
        cum = np.concatenate([[0.0], np.cumsum(lines_t * widths)])
        mean_t = np.diff(np.interp(e_in, edges, cum)) / np.maximum(np.diff(e_in), 1e-30)
        sed_lines = np.where(inside, mean_t, 1.0)
        sed = continuum_flux(wave_sed, sub)[0] * np.exp(-scales[i] @ shapes_sed) * sed_lines
        yield i, model, sed


def ab_magnitude(wave_sed: np.ndarray, sed: np.ndarray, band: str) -> float:
    """AB magnitude of one spectrum [erg s^-1 cm^-2 A^-1] in ``band`` (speclite)."""
    import astropy.units as u
    import speclite.filters

    response = speclite.filters.load_filter(PHOTOMETRY_BANDS[band])
    return float(response.get_ab_magnitude(sed * u.erg / (u.s * u.cm ** 2 * u.AA), wave_sed * u.AA))


def photometry(wave_sed: np.ndarray, sed_earth: np.ndarray) -> dict[str, np.ndarray]:
    """AB magnitudes per band (speclite) of spectra (n, n_wave) [erg s^-1 cm^-2 A^-1]."""
    import astropy.units as u
    import speclite.filters

    filters = speclite.filters.load_filters(*PHOTOMETRY_BANDS.values())
    table = filters.get_ab_magnitudes(np.atleast_2d(sed_earth) * u.erg / (u.s * u.cm ** 2 * u.AA), wave_sed * u.AA)
    return {band: np.asarray(table[name], dtype=np.float64) for band, name in PHOTOMETRY_BANDS.items()}


def observe(model_rest: np.ndarray, log_model: np.ndarray, step_model: float, wave_obs: np.ndarray,
            rv_kms: float, resolution: float) -> np.ndarray:
    """Noiseless observed flux on the spectrograph pixels: LSF (Gaussian, FWHM = lambda / R) on the
    rest-frame log grid (it commutes with the Doppler shift there), relativistic Doppler shift,
    then the mean over each pixel's :data:`MODEL_OVERSAMPLE` sub-pixels."""
    sigma_pix = 1.0 / (resolution * 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.log(10.0) * step_model)
    smooth = gaussian_filter1d(model_rest, sigma_pix, mode="nearest", truncate=5.0)
    beta = rv_kms / C_KMS
    log_shift = 0.5 * np.log10((1.0 + beta) / (1.0 - beta))
    offsets = (np.arange(MODEL_OVERSAMPLE) - 0.5 * (MODEL_OVERSAMPLE - 1)) * step_model
    log_sub = (np.log10(wave_obs)[:, None] + offsets[None, :]) - log_shift
    return np.interp(log_sub.ravel(), log_model, smooth).reshape(log_sub.shape).mean(axis=1)


def synthesize(teff, logg, feh, wave: np.ndarray, resolution: float = 2000.0, vmicro=1.5, vsini=0.0,
               rv_kms=0.0) -> np.ndarray:
    """Noiseless spectra (n_stars, n_pix) of stars with the given parameters (arrays or scalars),
    observed on the log10 pixel grid ``wave`` [A] at resolution ``resolution`` and radial velocity
    ``rv_kms``: surface flux [erg s^-1 cm^-2 A^-1], no extinction, no noise. The templates of
    a chi^2 or nearest-neighbour fit."""
    teff = np.atleast_1d(np.asarray(teff, dtype=np.float64))
    n = teff.size
    logg, feh = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in (logg, feh))
    vmicro, vsini, rv = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in (vmicro, vsini, rv_kms))
    wave = np.asarray(wave, dtype=np.float64)
    log_w = np.log10(wave)
    steps = np.diff(log_w)
    if wave.ndim != 1 or wave.size < 2 or not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-12) or steps[0] <= 0:
        raise ValueError("synthesize: 'wave' must be an increasing log10-uniform grid")
    step = steps[0] / MODEL_OVERSAMPLE
    v_max = float(np.max(np.abs(rv))) if n else 0.0
    shift = np.log10(1.0 + v_max / C_KMS * 1.05)
    lo = np.log10(wave[0] - MODEL_MARGIN_A) - shift
    hi = np.log10(wave[-1] + MODEL_MARGIN_A) + shift
    log_c = lo + step * np.arange(int(np.ceil((hi - lo) / step)) + 1)
    wave_model = 10.0 ** log_c
    edges = 10.0 ** np.append(log_c - 0.5 * step, log_c[-1] + 0.5 * step)
    phot = photosphere(teff, logg, feh)
    out = np.zeros((n, wave.size))
    for i, model, _ in intrinsic_spectra(phot, vmicro, vsini, wave_model, edges, step, sed_grid()):
        out[i] = observe(model, log_c, step, wave, float(rv[i]), float(resolution))
    return out


def simulate_sample(cfg: Mapping, seed: int) -> StellarSample:
    """Simulate ``cfg.n_stars`` stars and their 1..``cfg.max_epochs`` spectra each.

    Parameters
    ----------
    cfg : Mapping
        The simulator's settings (every key checked by :func:`parse_config`).
    seed : int
        Same seed, same bytes.

    Returns
    -------
    StellarSample
        ``stars``: star_id, label, truth_teff, truth_logg, truth_feh, truth_ebv (E(B-V)),
        truth_vmicro, truth_vsini, truth_rv_systemic, is_binary, binary_k_kms, giant, mass_msun,
        radius_rsun, mag_r0 (dereddened r), abs_mag_r, distance_mag (distance modulus), n_epochs,
        then ``mag_<b>``, ``mag_err_<b>`` (AB, with noise) for b in u g r i z J H Ks G BP RP.
        ``spectra``: spectrum_id, star_id, epoch, label, truth_teff, truth_logg, truth_feh,
        truth_rv [km/s], rv (the catalogue's measured RV = truth + N(0, rv_error_kms)),
        truth_ebv, snr (median S/N per pixel in ``snr_window``), resolution (R), sky_fraction,
        coverage_min, coverage_max [A], n_masked.
        ``wave`` (n_pix,) observed vacuum [A]; ``flux``, ``ivar`` (n_spec, n_pix) float32
        [1e-17 erg/s/cm^2/A]; ``mask`` bool (True = bad, ivar 0 there); ``report``.
    """
    sim = parse_config(cfg)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"simulate_sample: 'seed' must be an integer >= 0, got {seed!r}")
    star_rng, epoch_rng, noise_rng, phot_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4))
    stars = draw_stars(sim, star_rng)
    spectra = draw_epochs(sim, stars, epoch_rng)
    wave = observed_grid(sim)
    wave_model, edges, step = model_grid(sim)
    log_model = np.log10(wave_model)
    wave_sed = sed_grid()
    phot = photosphere(stars["truth_teff"].to_numpy(), stars["truth_logg"].to_numpy(), stars["truth_feh"].to_numpy())
    n_spec, n_pix = len(spectra), len(wave)
    flux = np.zeros((n_spec, n_pix), dtype=np.float32)
    ivar = np.zeros((n_spec, n_pix), dtype=np.float32)
    mask = np.zeros((n_spec, n_pix), dtype=bool)
    ebv = stars["truth_ebv"].to_numpy()
    a_v = sim.r_v * ebv
    ext_obs_unit = extinction.fitzpatrick99(wave.astype(np.float64), 1.0, sim.r_v)        # A_lambda / A_V
    ext_sed_unit = extinction.fitzpatrick99(wave_sed.astype(np.float64), 1.0, sim.r_v)
    radius_cm = stars["radius_rsun"].to_numpy() * R_SUN_CM
    seds = np.zeros((len(stars), len(wave_sed)))
    abs_r = np.zeros(len(stars))
    star_of = spectra["star_index"].to_numpy()
    rows_of = pd.Series(np.arange(n_spec)).groupby(star_of).apply(list).to_dict()
    in_window = (wave >= sim.snr_window[0]) & (wave <= sim.snr_window[1])
    sky_shape = _sky_shape(wave, wave / np.mean(sim.resolution_range) / (2.0 * np.sqrt(2.0 * np.log(2.0))))
    for i, model, sed in intrinsic_spectra(phot, stars["truth_vmicro"].to_numpy(), stars["truth_vsini"].to_numpy(),
                                           wave_model, edges, step, wave_sed):
        # (R / d)^2: the star's radius and the distance that puts its dereddened r at mag_r0
        dilution_10pc = (radius_cm[i] / (10.0 * PARSEC_CM)) ** 2
        abs_r[i] = ab_magnitude(wave_sed, sed * dilution_10pc, "r")
        scale = dilution_10pc * 10.0 ** (-0.4 * (stars["mag_r0"].iat[i] - abs_r[i]))
        seds[i] = sed * scale * 10.0 ** (-0.4 * a_v[i] * ext_sed_unit)
        redden = scale / FLUX_UNIT * 10.0 ** (-0.4 * a_v[i] * ext_obs_unit)
        for j in rows_of.get(i, []):
            row = spectra.iloc[j]
            clean = observe(model, log_model, step, wave, float(row["truth_rv"]), float(row["resolution"])) * redden
            flux[j], ivar[j], mask[j] = _add_noise(clean, wave, row, sim, in_window, sky_shape, noise_rng)
    distance_mag = stars["mag_r0"].to_numpy() - abs_r
    mags = photometry(wave_sed, seds)
    stars = stars.assign(abs_mag_r=abs_r, distance_mag=distance_mag,
                         n_epochs=np.bincount(star_of, minlength=len(stars)))
    for band in PHOTOMETRY_BANDS:
        true = mags[band]
        err = np.sqrt(sim.mag_error_floor ** 2 + (MAG_ERROR_SNR5 * 10.0 ** (0.4 * (true - sim.mag_limit[band]))) ** 2)
        detected = true <= sim.mag_limit[band]           # fainter than the 5-sigma limit: no measurement
        stars[f"mag_{band}"] = np.where(detected, true + phot_rng.normal(0.0, 1.0, len(stars)) * err, np.nan)
        stars[f"mag_err_{band}"] = np.where(detected, err, np.nan)
    spectra = spectra.drop(columns="star_index").assign(n_masked=mask.sum(axis=1))
    report = {"n_stars": int(len(stars)), "n_spectra": int(n_spec), "n_pixels": int(n_pix),
              "per_class_stars": {k: int(v) for k, v in stars["label"].value_counts().sort_index().items()},
              "giants": int(stars["giant"].sum()), "masked_fraction": float(mask.mean())}
    return StellarSample(stars, spectra, wave, flux, ivar, mask, report)


def _add_noise(clean: np.ndarray, wave: np.ndarray, row, sim: SimConfig, in_window: np.ndarray,
               sky_shape: np.ndarray, rng: np.random.Generator):
    """Noise at the row's median S/N in the window (variance = k (source + sky + floor)), then cosmic
    rays, a bad-column run and reduced coverage (masked, ivar 0)."""
    n = len(clean)
    ref = clean[in_window]
    level = float(np.median(ref)) if np.median(ref) > 0 else float(np.max(clean) + 1e-30)
    sky = float(row["sky_fraction"]) * level * sky_shape
    src = np.clip(clean, 0.0, None)
    k = (np.median(ref / np.sqrt(np.clip(ref, 0.0, None) + sky[in_window] + READ_NOISE_FLOOR * level))
         / float(row["snr"])) ** 2
    var = k * (src + sky + READ_NOISE_FLOOR * level)
    flux = clean + rng.standard_normal(n) * np.sqrt(var)
    ivar = 1.0 / var
    mask = np.zeros(n, dtype=bool)
    n_cr = rng.poisson(sim.cosmic_rays_per_spectrum)
    for _ in range(n_cr):
        start, width = int(rng.integers(0, n)), int(rng.integers(1, 4))
        flux[start:start + width] += rng.uniform(*sim.cosmic_ray_amplitude) * np.sqrt(var[start:start + width])
        mask[start:start + width] = True
    if rng.random() < sim.bad_column_fraction:
        width = int(rng.integers(int(sim.bad_column_pixels[0]), int(sim.bad_column_pixels[1]) + 1))
        start = int(rng.integers(0, max(n - width, 1)))
        flux[start:start + width] = 0.0
        mask[start:start + width] = True
    outside = (wave < float(row["coverage_min"])) | (wave > float(row["coverage_max"]))
    flux[outside] = 0.0
    mask |= outside
    ivar[mask] = 0.0
    return flux.astype(np.float32), ivar.astype(np.float32), mask
