"""Transit and eclipse shapes with quadratic limb darkening (batman; Kreidberg 2015).

batman implements the Mandel & Agol (2002) analytic model; ``tests/test_transits_model.py``
checks it against the no-limb-darkening depth ``(R_p/R_*)^2``.
"""
from __future__ import annotations

import batman
import numpy as np

G_SI = 6.674e-11
M_SUN_KG = 1.98892e30
R_SUN_M = 6.957e8
R_EARTH_PER_R_SUN = 6371.0 / 695700.0


def scaled_semi_major_axis(period_days: float, stellar_mass: float, stellar_radius: float) -> float:
    """a / R_* from Kepler's third law (circular orbit, planet mass neglected)."""
    p = period_days * 86400.0
    a = (G_SI * stellar_mass * M_SUN_KG * p ** 2 / (4 * np.pi ** 2)) ** (1.0 / 3.0)
    return a / (stellar_radius * R_SUN_M)


def geometry_from_duration(period: float, duration: float, k: float, a_rs: float) -> tuple[float, float]:
    """(a/R_*, impact parameter b) consistent with a full duration T14 (circular orbit).

    From ``sin(pi T14 / P) sqrt(x^2 - b^2) = sqrt((1 + k)^2 - b^2)`` with ``x = a/R_*``:
    ``b`` follows from the density-based ``a_rs``; when no ``b`` fits (the catalogue
    duration and the stellar density disagree) ``b`` is clipped into ``[0, 0.9 (1 - k)]``
    (non-grazing) and ``x`` recomputed, so the simulated transit keeps the catalogue duration.
    """
    s2 = np.sin(np.pi * duration / period) ** 2
    b2 = ((1 + k) ** 2 - s2 * a_rs ** 2) / (1 - s2)
    b = float(np.sqrt(np.clip(b2, 0.0, (0.9 * max(1 - k, 0.0)) ** 2)))
    x = float(np.sqrt(((1 + k) ** 2 - b ** 2) / s2 + b ** 2))
    return x, b


def transit_flux(time: np.ndarray, t0: float, period: float, rp_rs: float, a_rs: float, b: float,
                 u: tuple[float, float], exp_time_days: float, supersample: int) -> np.ndarray:
    """Relative flux (1 out of transit) of a limb-darkened transit, integrated over the exposure.

    Parameters
    ----------
    time : numpy.ndarray, shape (n,)
        Days, in the same system as ``t0``.
    rp_rs, a_rs, b : float
        Radius ratio, scaled semi-major axis, impact parameter.
    u : (float, float)
        Quadratic limb-darkening coefficients.
    """
    return _light_curve(time, _params(t0, period, rp_rs, a_rs, b, u), exp_time_days, supersample)


def _params(t0: float, period: float, rp_rs: float, a_rs: float, b: float, u) -> batman.TransitParams:
    """batman's parameters of a circular orbit with quadratic limb darkening ``u``."""
    params = batman.TransitParams()
    params.t0, params.per, params.rp, params.a = float(t0), float(period), float(rp_rs), float(a_rs)
    params.inc = float(np.degrees(np.arccos(np.clip(b / a_rs, 0.0, 1.0))))
    params.ecc, params.w = 0.0, 90.0
    params.limb_dark, params.u = "quadratic", [float(u[0]), float(u[1])]
    return params


def _light_curve(time: np.ndarray, params: batman.TransitParams, exp_time_days: float, supersample: int,
                 **model_kwargs) -> np.ndarray:
    """batman's light curve of ``params`` at ``time``, integrated over the exposure when supersampled."""
    if supersample > 1:
        model_kwargs.update(supersample_factor=int(supersample), exp_time=float(exp_time_days))
    model = batman.TransitModel(params, np.asarray(time, dtype=float), **model_kwargs)
    return np.asarray(model.light_curve(params), dtype=float)


def occultation_flux(time: np.ndarray, t0: float, period: float, rp_rs: float, a_rs: float, b: float,
                     fp: float, exp_time_days: float, supersample: int) -> np.ndarray:
    """The planet's occultation (secondary eclipse) at phase 0.5: 0 out of it, ``-fp`` at its
    full depth (batman's secondary-eclipse model; circular orbit, constant dayside flux, no
    phase curve). ``fp`` is the planet-to-star flux ratio, e.g. ``A_g (R_p / a)^2`` for an
    effective geometric albedo ``A_g`` (reflected light plus the thermal part in the band)."""
    params = _params(t0, period, rp_rs, a_rs, b, (0.4, 0.26))   # limb darkening unused: a uniform disc
    params.fp, params.t_secondary = float(fp), float(t0) + 0.5 * float(period)
    return _light_curve(time, params, exp_time_days, supersample, transittype="secondary") - (1.0 + float(fp))


def eclipse_flux(time: np.ndarray, t0: float, period: float, depth: float, secondary_ratio: float,
                 a_rs: float, v_shaped: bool, exp_time_days: float, supersample: int) -> np.ndarray:
    """An eclipsing binary: primary eclipse of ``depth`` and a secondary at phase 0.5.

    The shape comes from batman with a large companion (``k = 0.5``), grazing (``b = 1.2``,
    V-shaped) or central (``b = 0.3``, U-shaped), scaled to the wanted depth (as light
    from a blended binary is diluted); the secondary has ``secondary_ratio x depth``.
    """
    k, b = 0.5, (1.2 if v_shaped else 0.3)
    flux = np.ones_like(np.asarray(time, dtype=float))
    for offset, d in ((0.0, depth), (0.5 * period, depth * secondary_ratio)):
        shape = 1.0 - transit_flux(time, t0 + offset, period, k, a_rs, b, (0.4, 0.26), exp_time_days, supersample)
        # Depth of the unscaled shape at mid-eclipse (not from the samples, which may miss it).
        peak = 1.0 - transit_flux(np.array([t0 + offset]), t0 + offset, period, k, a_rs, b, (0.4, 0.26), 0.0, 1)[0]
        if peak > 0:
            flux -= d * shape / peak
    return flux


def eclipse_duration(period: float, a_rs: float, k: float = 0.5, b: float = 0.3) -> float:
    """Full duration T14 (days) of the eclipse geometry used by :func:`eclipse_flux`."""
    arg = np.sqrt(max((1 + k) ** 2 - b ** 2, 0.0)) / np.sqrt(max(a_rs ** 2 - b ** 2, 1e-9))
    return float(period / np.pi * np.arcsin(min(arg, 1.0)))
