"""Spectra as network inputs: rest frame, one log-wavelength grid, continuum normalisation.

:func:`spectra_to_inputs` chains :func:`doppler_to_rest` (relativistic), :func:`resample_flux`
(flux-conserving, pixel-edge integration as SpectRes, Carnall 2017, arXiv:1705.05165, and
specutils' ``FluxConservingResampler``; variances propagated, bad and uncovered pixels masked) and
:func:`continuum_normalise` (a Chebyshev polynomial in log wavelength, fitted with asymmetric
sigma clipping so that absorption lines fall out of the fit), and stacks the contract's input
tensor ``x`` (n, 3, n_grid): normalised flux, its 1-sigma error (clipped), and the mask.

Arrays follow the stellar contract: wavelengths [A, vacuum] increasing, ``flux`` / ``ivar``
(n_spec, n_pix), ``mask`` bool (True = bad). Every function checks its input and raises
:class:`ValueError` naming the argument (or config key) at fault.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.polynomial import chebyshev

from ...core.config import ConfigError

C_KMS = 299792.458
#: A continuum-normalised stellar spectrum lies in [0, ~1.1] up to noise; channel 0 of ``x`` is
#: clipped to these limits so a residual artefact cannot dominate a batch.
NORMALISED_FLUX_LIMITS = (-1.0, 3.0)
#: The fitted continuum is floored at this fraction of its median (absolute) value, so that a
#: pixel where a polynomial dips toward zero (the blue end of an M star) cannot blow up.
CONTINUUM_FLOOR_FRACTION = 1e-3
CHUNK = 256                            # spectra per continuum-fit batch (memory: CHUNK x order x n_pix)


def _check_wave(wave, name: str, ndim=(1, 2)) -> np.ndarray:
    w = np.asarray(wave, dtype=np.float64)
    if w.ndim not in ndim or w.shape[-1] < 2:
        raise ValueError(f"'{name}' must be a {' or '.join(f'{d}-D' for d in ndim)} array of >= 2 wavelengths, "
                         f"got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"'{name}' must hold finite wavelengths > 0 A")
    if np.any(np.diff(w, axis=-1) <= 0):
        raise ValueError(f"'{name}' must be strictly increasing (along its last axis)")
    return w


def doppler_to_rest(wave, rv_kms):
    """Rest-frame wavelengths of observed ``wave`` [A] for radial velocity ``rv_kms`` [km/s,
    positive = receding], with the relativistic longitudinal Doppler factor
    ``lambda_rest = lambda_obs sqrt((1 - beta) / (1 + beta))`` (first order, 1 - beta, differs
    by beta^2 / 2 ~ 5e-7 at 300 km/s).

    ``wave`` (n_pix,) and a scalar ``rv_kms`` give (n_pix,); an array ``rv_kms`` (n_spec,) gives
    (n_spec, n_pix) (``wave`` (n_pix,) shared or (n_spec, n_pix) per spectrum).
    """
    w = _check_wave(wave, "wave")
    rv = np.asarray(rv_kms, dtype=np.float64)
    if rv.ndim > 1:
        raise ValueError(f"'rv_kms' must be a scalar or 1-D array, got shape {rv.shape}")
    if not np.all(np.isfinite(rv)) or np.any(np.abs(rv) >= C_KMS):
        raise ValueError("'rv_kms' must be finite and below the speed of light in magnitude")
    factor = np.sqrt((1.0 - rv / C_KMS) / (1.0 + rv / C_KMS))
    if rv.ndim == 0:
        return w * factor
    if w.ndim == 2 and w.shape[0] != rv.shape[0]:
        raise ValueError(f"'wave' has {w.shape[0]} rows but 'rv_kms' {rv.shape[0]} values")
    return (w if w.ndim == 2 else w[None, :]) * factor[:, None]


def pixel_edges(wave: np.ndarray) -> np.ndarray:
    """Pixel boundaries [A] (..., n_pix + 1): geometric midpoints between centres (pixels of a log
    grid), the outer edges half a pixel (in log) beyond the first and last centre."""
    w = _check_wave(wave, "wave")
    log_w = np.log(w)
    mid = 0.5 * (log_w[..., 1:] + log_w[..., :-1])
    first = log_w[..., :1] - (mid[..., :1] - log_w[..., :1])
    last = log_w[..., -1:] + (log_w[..., -1:] - mid[..., -1:])
    return np.exp(np.concatenate([first, mid, last], axis=-1))


def _as_batch(name: str, array, shape: tuple[int, int], dtype) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 1:
        a = a[None, :]
    if a.shape != shape:
        raise ValueError(f"'{name}' has shape {np.shape(array)}, expected {shape} (n_spec, n_pix) "
                         f"or ({shape[1]},)")
    return a.astype(dtype, copy=False)


def resample_flux(wave_in, flux, ivar, mask, wave_out):
    """Flux-conserving resampling of spectra onto ``wave_out``.

    Each output pixel's flux density is the overlap-weighted mean of the input pixels it covers
    (exact pixel-edge integration, so the integral of flux over wavelength is conserved); its
    variance is ``sum(overlap^2 var) / sum(overlap)^2``. An output pixel is masked (ivar 0) when
    any input pixel contributing to it is bad (``mask``, ``ivar <= 0`` or non-finite flux) or
    when it is not fully inside the input coverage; its flux then comes from the good part of it
    (0 when none).

    Parameters
    ----------
    wave_in : array (n_pix,) or (n_spec, n_pix)
        Input pixel centres [A], increasing (shared, or one row per spectrum: rest frames).
    flux, ivar : array (n_spec, n_pix) (or (n_pix,) for one spectrum)
    mask : bool array like ``flux``, True = bad
    wave_out : array (n_out,)
        Output pixel centres [A], increasing.

    Returns
    -------
    (flux_out, ivar_out, mask_out)
        (n_spec, n_out) float64, float64, bool.
    """
    w_in = _check_wave(wave_in, "wave_in")
    w_out = _check_wave(wave_out, "wave_out", ndim=(1,))
    f = np.asarray(flux)
    n_spec = 1 if f.ndim == 1 else f.shape[0]
    n_pix = w_in.shape[-1]
    if w_in.ndim == 2 and w_in.shape[0] != n_spec:
        raise ValueError(f"'wave_in' has {w_in.shape[0]} rows but 'flux' {n_spec} spectra")
    f = _as_batch("flux", flux, (n_spec, n_pix), np.float64)
    iv = _as_batch("ivar", ivar, (n_spec, n_pix), np.float64)
    m = _as_batch("mask", mask, (n_spec, n_pix), bool)
    e_in = pixel_edges(w_in)
    e_in = np.broadcast_to(e_in, (n_spec, n_pix + 1))
    e_out = pixel_edges(w_out)
    if np.all(e_out[-1] <= e_in[:, 0]) or np.all(e_out[0] >= e_in[:, -1]):
        raise ValueError(f"'wave_out' ({w_out[0]:.1f}-{w_out[-1]:.1f} A) does not overlap 'wave_in' "
                         f"({e_in[:, 0].min():.1f}-{e_in[:, -1].max():.1f} A)")
    bad = m | ~(iv > 0) | ~np.isfinite(f) | ~np.isfinite(iv)
    var = np.where(bad, 0.0, 1.0 / np.where(bad, 1.0, iv))
    f0 = np.where(bad, 0.0, f)
    # first input pixel touching each output pixel, per spectrum
    first = np.stack([np.searchsorted(e_in[s], e_out[:-1], side="right") - 1 for s in range(n_spec)])
    last = np.stack([np.searchsorted(e_in[s], e_out[1:], side="left") - 1 for s in range(n_spec)])
    first, last = np.clip(first, 0, n_pix - 1), np.clip(last, 0, n_pix - 1)
    n_k = int(np.max(last - first)) + 1
    a, b = e_out[:-1][None, :], e_out[1:][None, :]
    rows = np.arange(n_spec)[:, None]
    good_w = np.zeros((n_spec, len(w_out)))
    flux_sum = np.zeros_like(good_w)
    var_sum = np.zeros_like(good_w)
    any_bad = np.zeros(good_w.shape, dtype=bool)
    for k in range(n_k):
        i = np.minimum(first + k, n_pix - 1)
        lo, hi = e_in[rows, i], e_in[rows, i + 1]
        overlap = np.clip(np.minimum(b, hi) - np.maximum(a, lo), 0.0, None)
        overlap = np.where(first + k <= last, overlap, 0.0)
        ok = ~bad[rows, i]
        good_w += overlap * ok
        flux_sum += overlap * f0[rows, i]
        var_sum += overlap ** 2 * var[rows, i]
        any_bad |= (overlap > 0) & ~ok
    covered = (a >= e_in[:, :1]) & (b <= e_in[:, -1:])
    mask_out = any_bad | ~covered | (good_w <= 0)
    safe = np.where(good_w > 0, good_w, 1.0)
    flux_out = np.where(good_w > 0, flux_sum / safe, 0.0)
    var_out = var_sum / safe ** 2
    ivar_out = np.where(mask_out | (var_out <= 0), 0.0, 1.0 / np.where(var_out > 0, var_out, 1.0))
    return flux_out, ivar_out, mask_out


def _cfg_number(cfg: Mapping, key: str, where: str, lo: float | None = None, integer: bool = False) -> float:
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where} settings must be a mapping, got {type(cfg).__name__}")
    value = cfg.get(key)
    if value is None:
        raise ConfigError(f"stellar preprocess key '{where}.{key}' is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or (integer and int(value) != value):
        raise ConfigError(f"stellar preprocess key '{where}.{key}' must be a{'n integer' if integer else ' number'}, "
                          f"got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"stellar preprocess key '{where}.{key}' must be >= {lo}, got {value!r}")
    return int(value) if integer else float(value)


def continuum_cfg(cfg: Mapping) -> dict:
    """The continuum settings, checked: ``order`` (Chebyshev degree in log wavelength),
    ``n_iter`` (clipping iterations), ``clip_low`` and ``clip_high`` (rejection thresholds below
    and above the fit, in units of the robust scatter of the noise-normalised residuals)."""
    out = {"order": _cfg_number(cfg, "order", "continuum", 0, integer=True),
           "n_iter": _cfg_number(cfg, "n_iter", "continuum", 1, integer=True),
           "clip_low": _cfg_number(cfg, "clip_low", "continuum", 0.0),
           "clip_high": _cfg_number(cfg, "clip_high", "continuum", 0.0)}
    if out["clip_low"] <= 0 or out["clip_high"] <= 0:
        raise ConfigError("stellar preprocess keys 'continuum.clip_low' and 'continuum.clip_high' must be > 0")
    return out


def continuum_normalise(wave, flux, ivar, mask, cfg: Mapping):
    """Divide spectra by a fitted continuum.

    A Chebyshev polynomial of degree ``cfg['order']`` in log wavelength is fitted (unweighted,
    over good pixels) and refitted ``cfg['n_iter']`` times, each time keeping only good pixels
    whose noise-normalised residual ``(f - c) sqrt(ivar)`` lies within ``[-clip_low s,
    +clip_high s]`` (``s`` its robust scatter, 1.4826 MAD): a small ``clip_low`` rejects
    absorption lines and lets the fit climb to the upper envelope, ``clip_high`` rejects cosmic
    rays. Masked pixels (``mask`` or ``ivar <= 0``) never enter the fit. Spectra with fewer good
    pixels than ``2 (order + 1)`` get a constant continuum (their good pixels' median, or 1).

    Parameters
    ----------
    wave : array (n_pix,)
        Shared wavelength grid [A], increasing.
    flux, ivar, mask : arrays (n_spec, n_pix) (or (n_pix,))
    cfg : Mapping
        ``order``, ``n_iter``, ``clip_low``, ``clip_high`` (see :func:`continuum_cfg`).

    Returns
    -------
    (norm_flux, norm_ivar, continuum)
        (n_spec, n_pix) float64: ``flux / continuum``, ``ivar * continuum**2``, the continuum.
    """
    settings = continuum_cfg(cfg)
    w = _check_wave(wave, "wave", ndim=(1,))
    n_pix = len(w)
    n_spec = 1 if np.ndim(flux) == 1 else np.shape(flux)[0]
    f = _as_batch("flux", flux, (n_spec, n_pix), np.float64)
    iv = _as_batch("ivar", ivar, (n_spec, n_pix), np.float64)
    m = _as_batch("mask", mask, (n_spec, n_pix), bool)
    good = ~m & (iv > 0) & np.isfinite(f) & np.isfinite(iv)
    log_w = np.log(w)
    x = 2.0 * (log_w - log_w[0]) / (log_w[-1] - log_w[0]) - 1.0
    design = chebyshev.chebvander(x, settings["order"])           # (n_pix, d)
    cont = np.empty((n_spec, n_pix))
    for start in range(0, n_spec, CHUNK):                         # bounded memory: (chunk, d, n_pix)
        part = slice(start, start + CHUNK)
        cont[part] = _fit_continuum(design, f[part], iv[part], good[part], settings)
    floor = CONTINUUM_FLOOR_FRACTION * np.median(np.abs(cont), axis=1, keepdims=True)
    floor = np.where(floor > 0, floor, 1e-30)
    cont = np.where(cont >= floor, cont, floor)                   # a continuum is positive
    with np.errstate(invalid="ignore"):
        return f / cont, iv * cont ** 2, cont


def _fit_continuum(design: np.ndarray, f: np.ndarray, iv: np.ndarray, good: np.ndarray, settings: dict) -> np.ndarray:
    """The clipped Chebyshev fits of :func:`continuum_normalise` for one chunk of spectra."""
    n_spec, d = f.shape[0], design.shape[1]
    f0 = np.where(good, f, 0.0)
    sig_inv = np.sqrt(np.where(good, iv, 0.0))
    ridge = 1e-10 * np.eye(d)
    keep = good.copy()
    cont = np.zeros_like(f0)
    for _ in range(settings["n_iter"] + 1):
        wgt = keep.astype(np.float64)
        normal = np.matmul(design.T[None, :, :] * wgt[:, None, :], design) + ridge   # (n, d, d)
        rhs = np.matmul(design.T[None, :, :], (wgt * f0)[:, :, None])               # (n, d, 1)
        fit_ok = keep.sum(axis=1) >= d
        normal[~fit_ok] = np.eye(d)
        rhs[~fit_ok] = 0.0
        cont = np.linalg.solve(normal, rhs)[..., 0] @ design.T
        resid = np.where(keep, (f0 - cont) * sig_inv, np.nan)
        with np.errstate(all="ignore"):
            centre = np.nanmedian(resid, axis=1, keepdims=True)
            scale = 1.4826 * np.nanmedian(np.abs(resid - centre), axis=1, keepdims=True)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        resid = (f0 - cont) * sig_inv
        new_keep = good & (resid >= -settings["clip_low"] * scale) & (resid <= settings["clip_high"] * scale)
        keep = np.where((new_keep.sum(axis=1) < d)[:, None], keep, new_keep)
    enough = good.sum(axis=1) >= 2 * d
    with np.errstate(all="ignore"):
        med = np.nanmedian(np.where(good, f0, np.nan), axis=1)
    const = np.where(np.isfinite(med) & (med > 0), med, 1.0)
    return np.where(enough[:, None], cont, const[:, None])


def grid_from_cfg(grid_cfg: Mapping) -> np.ndarray:
    """Rest-frame wavelengths [A] of the common grid: ``10**(log10_min + k log10_step)`` up to
    ``log10_max`` (keys of ``grid_cfg``)."""
    lo = _cfg_number(grid_cfg, "log10_min", "grid", 3.0)
    hi = _cfg_number(grid_cfg, "log10_max", "grid", 3.0)
    step = _cfg_number(grid_cfg, "log10_step", "grid", 1e-7)
    if step <= 0 or hi <= lo + step:
        raise ConfigError(f"stellar preprocess keys 'grid.log10_min' < 'grid.log10_max' (by more than "
                          f"'grid.log10_step' > 0), got {lo}, {hi}, {step}")
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return 10.0 ** (lo + step * np.arange(n))


def spectra_to_inputs(wave_obs, flux, ivar, mask, rv_kms, grid_cfg: Mapping, continuum_cfg: Mapping,
                      error_clip: float):
    """Network inputs from observed spectra.

    Parameters
    ----------
    wave_obs : array (n_pix,)
        Observed-frame wavelengths [A] shared by the spectra.
    flux, ivar, mask : arrays (n_spec, n_pix)
    rv_kms : array (n_spec,)
        The radial velocities to remove [km/s] (a catalogue measurement, not the truth).
    grid_cfg : Mapping
        ``log10_min``, ``log10_max``, ``log10_step`` of the rest-frame grid; it must lie inside
        ``wave_obs`` (pixels a large RV shifts out of coverage are masked).
    continuum_cfg : Mapping
        See :func:`continuum_normalise`.
    error_clip : float
        Largest 1-sigma error of channel 1 (and its value at bad pixels), > 0.

    Returns
    -------
    (x, grid)
        ``x`` (n_spec, 3, n_grid) float32: continuum-normalised flux (1 at bad pixels, clipped to
        :data:`NORMALISED_FLUX_LIMITS`), its 1-sigma error (``error_clip`` at bad pixels and
        above it), the mask (1 bad, 0 good); ``grid`` (n_grid,) rest-frame wavelengths [A].
    """
    if isinstance(error_clip, bool) or not isinstance(error_clip, (int, float, np.integer, np.floating)) \
            or not np.isfinite(error_clip) or error_clip <= 0:
        raise ValueError(f"'error_clip' must be a number > 0, got {error_clip!r}")
    w = _check_wave(wave_obs, "wave_obs", ndim=(1,))
    n_spec = 1 if np.ndim(flux) == 1 else np.shape(flux)[0]
    rv = np.asarray(rv_kms, dtype=np.float64).reshape(-1)
    if rv.shape[0] != n_spec:
        raise ValueError(f"'rv_kms' has {rv.shape[0]} values but 'flux' {n_spec} spectra")
    grid = grid_from_cfg(grid_cfg)
    if grid[0] < w[0] or grid[-1] > w[-1]:
        raise ValueError(f"'grid_cfg' grid {grid[0]:.1f}-{grid[-1]:.1f} A lies outside the observed "
                         f"'wave_obs' {w[0]:.1f}-{w[-1]:.1f} A")
    rest = doppler_to_rest(w, rv)
    f, iv, m = resample_flux(rest, flux, ivar, mask, grid)
    nf, niv, _ = continuum_normalise(grid, f, iv, m, continuum_cfg)
    bad = m | ~np.isfinite(nf) | ~(niv > 0)
    err = np.minimum(1.0 / np.sqrt(np.where(bad, 1.0, niv)), error_clip)
    x = np.empty((n_spec, 3, len(grid)), dtype=np.float32)
    x[:, 0] = np.where(bad, 1.0, np.clip(np.nan_to_num(nf, nan=1.0), *NORMALISED_FLUX_LIMITS))
    x[:, 1] = np.where(bad, error_clip, err)
    x[:, 2] = bad
    return x, grid
