"""Gaussian-process interpolation of light curves onto a regular grid, batched.

For every object a 2-D GP over (time, wavelength) is fitted to the flux of all
bands at once (Avocado-style, Boone 2019) and its posterior mean and standard
deviation are evaluated on ``n_grid`` times around the object's reference time,
for every band. The model (zero mean, amplitude x Matern-3/2 over time and
wavelength, the wavelength length scale fixed at 6000 A as in Avocado, the flux
errors as fixed heteroscedastic noise) and its batched fit live in
:mod:`deeprubin.tasks.transients.preprocess.gp_model` (GPyTorch model, Adam) and
:mod:`deeprubin.tasks.transients.preprocess.gp_newton` (the default optimiser: a batched projected
Newton method with exact gradient and Hessian of the 2-3 log hyperparameters,
converging in 2-4 iterations from a data-driven start); this module prepares the
data, cuts the batches, handles failures and saves the result.

Speed: ``benchmarks/gp_throughput.py`` (``reports/benchmarks/gp_throughput.json``) against
per-object scikit-learn and george fits. Batches run in single-threaded worker threads, one per
torch thread (:func:`_batch_runner`), which, unlike two intra-op threads, does not collapse
when other processes load the cores (see ``workers`` in :func:`fit_gp_grid`).

Same bytes whatever the batch: an object is fitted at a size that depends on its own length
only (:func:`padded_length`; a batch holds one such size), on one torch thread, and with the
numerics pinned (:mod:`deeprubin.core.numerics`) its grid, hyperparameters and loss are the
same bytes fitted alone, in any batch, in any partition of the table, with any ``workers``
or ``batch_size`` (``tests/test_numerics.py``; ``docs/decisions/numerics-pinning.md``).

Subset-of-data hyperparameters (``hyper_max_points``; Chalupka, Williams & Murray 2013,
"A framework for evaluating approximation methods for Gaussian process regression",
JMLR 14): an object with more than that many points fits its hyperparameters on a
stratified subset of that many (:func:`hyper_subset`: per band, a contiguous run of
points around the brightest one), and its grid posterior and ``final_loss`` are then
computed from all its points, so the O(n^3) work of such an object is one Cholesky (and
a triangular solve for the grid variance) instead of ~3.7 Newton evaluations. Such objects
are batched apart from the others (:func:`_batches`); objects at or below the limit are
fitted exactly as without it. Off by default; why is measured in
``docs/decisions/gp-subset-of-data.md``.

Per object:

1. Rows in bands absent from ``band_wavelengths``, or with non-finite values or
   ``flux_err <= 0``, are ignored.
2. ``t_ref`` is the time of the brightest observation among those with
   ``flux / flux_err >= 3`` (all observations if none is that significant).
3. Observations within ``[t_ref - window_before - fit_margin,
   t_ref + window_after + fit_margin]`` (days) are kept; if more than
   ``max_points`` remain they are averaged (inverse-variance weights) in
   equal-width time bins per band, so memory per object is bounded.
4. Flux is divided by ``flux_scale = max(max |flux|, 3 median(flux_err))`` so the
   GP sees amplitudes of order one; ``mean``/``std`` stay in those units. The
   errors enter as fixed noise variances ``(flux_err / flux_scale)**2``, floored
   at ``gp_model.MIN_NOISE`` (an error floor of 0.1% of the flux scale).

Degenerate objects always get a grid without NaN:

* no usable observation: ``mean = 0``, ``std = FALLBACK_STD``, ``t_ref = NaN``,
  ``fit_ok = False``;
* fewer than :data:`MIN_POINTS_TO_FIT` points: GP posterior with default
  hyperparameters (not fitted), ``fit_ok = False``;
* a single band: fitted normally (``fit_ok = True``); the wavelength length scale
  has no gradient then and stays at its initial/fixed value, so the other bands
  are predicted through the fixed colour correlation;
* a batch whose fit raises (non-PSD covariance, NaN loss): its objects are refitted
  one by one with more jitter (``fit_ok = True`` if that works), then with default
  hyperparameters and no optimisation (``fit_ok = False``), and finally replaced by
  per-band linear interpolation with ``std = FALLBACK_STD`` (``fit_ok = False``).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from deeprubin.core import io
from deeprubin.tasks.transients.preprocess import gp_model, gp_newton
from deeprubin.tasks.transients.preprocess.gp_model import (DEFAULT_TIME_LENGTH_SCALE_DAYS,
                                                            DEFAULT_WAVELENGTH_LENGTH_SCALE_ANGSTROM,
                                                            MIN_INIT_OUTPUTSCALE, MIN_NOISE, PAD_NOISE,
                                                            TIME_UNIT_DAYS, WAVELENGTH_UNIT_ANGSTROM, BatchFit,
                                                            PackedBatch)

#: Objects with fewer points get default hyperparameters instead of a fit.
MIN_POINTS_TO_FIT = 3
#: Signal-to-noise an observation needs to be a reference-time candidate.
T_REF_MIN_SNR = 3.0
#: Posterior std (normalised flux) reported where no GP posterior could be
#: computed; normalised flux peaks at 1, so this says "unknown at the flux scale".
FALLBACK_STD = 1.0
#: Largest batch, in elements of one (objects, n, n) matrix stack: 2M float64 (16 MB)
#: keeps a batch's dozen working matrices near the CPU caches. At 200 points per object
#: this means batches of 52 objects, 2x faster than 256 on the 2-core machines; at 50
#: points ``batch_size`` (256) is the limit.
MAX_BATCH_ELEMENTS = 1 << 21
#: Objects with at most this many points are fitted at their exact size (:func:`padded_length`).
PAD_EXACT_UP_TO = 16
#: Hyperparameter optimisers (see :func:`fit_gp_grid`).
OPTIMIZERS = ("newton", "adam")
#: Jitter of the batched fit, of the one-by-one refit, and of the default-hyperparameter retry.
JITTER_BATCH, JITTER_SINGLE, JITTER_DEFAULT = 1e-8, 1e-6, 1e-4

#: Smallest allowed ``hyper_max_points`` (besides two points per band): fewer points
#: leave the amplitude and time length scale poorly constrained.
HYPER_MIN_POINTS = 8
#: Points per band (where the band has them) that a hyperparameter subset always keeps.
HYPER_MIN_PER_BAND = 2

DIAGNOSTIC_COLUMNS = (
    "object_id", "fit_ok", "n_points", "n_points_hyper", "n_iter", "final_loss", "amplitude",
    "length_scale_time_days", "length_scale_wavelength_angstrom", "message",
)


@dataclass
class GPGrid:
    """GP posterior of every object on a common relative-time grid.

    Attributes
    ----------
    object_ids : numpy.ndarray
        (N,) str, in order of first appearance in the input table.
    bands : numpy.ndarray
        (B,) str, in the order of ``band_wavelengths``.
    wavelengths : numpy.ndarray
        (B,) float, effective wavelength of each band in Angstrom.
    grid_time : numpy.ndarray
        (T,) float, days relative to ``t_ref``.
    t_ref : numpy.ndarray
        (N,) float, MJD of each object's reference time (brightest significant
        observation); NaN for an object without usable observations.
    flux_scale : numpy.ndarray
        (N,) float, microjansky; ``mean``/``std`` are flux / flux_scale.
    mean : numpy.ndarray
        (N, B, T) float32, posterior mean of the normalised latent flux (no observation noise).
    std : numpy.ndarray
        (N, B, T) float32, posterior std of the normalised latent flux.
    diagnostics : pandas.DataFrame
        One row per object, same order: ``object_id``, ``fit_ok`` (bool), ``n_points``
        (points the posterior is conditioned on, after binning), ``n_points_hyper``
        (points the hyperparameters were fitted on: ``min(n_points, hyper_max_points)``,
        0 where they were not fitted), ``n_iter`` (optimiser steps),
        ``final_loss`` (negative log marginal likelihood per point of all ``n_points``,
        normalised units), ``amplitude`` (kernel std, normalised flux), ``length_scale_time_days``,
        ``length_scale_wavelength_angstrom``, ``message`` ("" when ``fit_ok``).
        Hyperparameter columns are NaN where no GP was used.
    """

    object_ids: np.ndarray
    bands: np.ndarray
    wavelengths: np.ndarray
    grid_time: np.ndarray
    t_ref: np.ndarray
    flux_scale: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    diagnostics: pd.DataFrame


@dataclass
class _Object:
    """One object's fit data: relative time (days), wavelength (A), normalised flux and error."""

    t: np.ndarray
    wavelength: np.ndarray
    band: np.ndarray  # band index into the band list
    y: np.ndarray
    y_err: np.ndarray
    t_ref: float
    flux_scale: float

    @property
    def n(self) -> int:
        return len(self.t)

    def take(self, rows: np.ndarray) -> "_Object":
        """The object restricted to ``rows`` (same reference time and flux scale)."""
        return _Object(self.t[rows], self.wavelength[rows], self.band[rows], self.y[rows], self.y_err[rows],
                       self.t_ref, self.flux_scale)


def _band_quota(counts: np.ndarray, n_select: int) -> np.ndarray:
    """Points per band: proportional to ``counts``, at least ``min(count, HYPER_MIN_PER_BAND)``.

    Largest-remainder rounding of ``n_select * counts / counts.sum()``, then
    adjusted one point at a time (the most under- or over-served band first, the
    lowest band index on ties) to the floors and to a total of ``n_select``.
    Needs ``n_select <= counts.sum()`` and ``n_select >= HYPER_MIN_PER_BAND * len(counts)``.
    """
    share = n_select * counts / counts.sum()
    quota = np.floor(share).astype(np.int64)
    for k in np.argsort(-(share - quota), kind="stable")[: n_select - int(quota.sum())]:
        quota[k] += 1  # largest remainders
    floor = np.minimum(counts, HYPER_MIN_PER_BAND)
    quota = np.clip(quota, floor, counts)
    while quota.sum() > n_select:  # the floors took points: give them back where most over-served
        excess = np.where(quota > floor, quota - share, -np.inf)
        quota[int(np.argmax(excess))] -= 1
    while quota.sum() < n_select:  # (only after clipping at counts) where most under-served
        deficit = np.where(quota < counts, share - quota, -np.inf)
        quota[int(np.argmax(deficit))] += 1
    return quota


def hyper_subset(band: np.ndarray, y: np.ndarray, n_select: int) -> np.ndarray:
    """Indices of a deterministic, stratified subset of ``n_select`` points for the hyperparameters.

    Subset-of-data approximation (Chalupka, Williams & Murray 2013, "A framework for
    evaluating approximation methods for Gaussian process regression", JMLR 14): the
    hyperparameters are estimated on a subset, the posterior conditioned on all points.
    Per band, a number of points proportional to the band's share of the object (at
    least ``min(count, HYPER_MIN_PER_BAND)``, largest-remainder rounding; see
    :func:`_band_quota`), taken as a *contiguous run* of that band's points in time
    order, centred on the band's point nearest (in the object's time order) to the
    brightest point (largest ``y``, the first on ties), and shifted inwards at the
    ends of the band. The brightest point is therefore always kept (its own band's
    run is centred on it).

    Why a contiguous run rather than points spread evenly over the light curve: a
    run keeps the survey's native cadence, so the short time scales the full data
    constrain stay visible. An even spread decimates the cadence; on the simulated
    survey of ``benchmarks/gp_throughput.py`` (daily cadence) it made RR Lyrae and
    Cepheid light curves look smooth, the subset then chose time length scales many
    times too long, and the posterior of all points at those values was
    overconfident (measured in ``docs/decisions/gp-subset-of-data.md``).

    Parameters
    ----------
    band : numpy.ndarray
        (n,) int band index of each point; points in time order (as :class:`_Object`).
    y : numpy.ndarray
        (n,) normalised flux.
    n_select : int
        Subset size; ``n_select >= n`` returns every point.

    Returns
    -------
    numpy.ndarray
        (min(n, n_select),) int64 indices into the points, increasing (time order kept).

    Raises
    ------
    ValueError
        If ``n_select`` is below :data:`HYPER_MIN_PER_BAND` points per band present.
    """
    n = len(band)
    if n_select >= n:
        return np.arange(n)
    bands, counts = np.unique(band, return_counts=True)
    if n_select < HYPER_MIN_PER_BAND * len(bands):
        raise ValueError(f"hyper_max_points={n_select} is below {HYPER_MIN_PER_BAND} points for each of the "
                         f"{len(bands)} bands of the object")
    quota = _band_quota(counts, n_select)
    brightest = int(np.argmax(y))
    chosen = []
    for b, count, k in zip(bands, counts, quota):
        members = np.flatnonzero(band == b)  # this band's points, in time order
        centre = int(np.argmin(np.abs(members - brightest)))  # the brightest point itself in its band
        first = min(max(0, centre - k // 2), count - k)
        chosen.append(members[first:first + k])
    return np.sort(np.concatenate(chosen))


def check_hyper_max_points(hyper_max_points, n_bands: int) -> int | None:
    """Validated ``hyper_max_points``: None, or an int >= max(HYPER_MIN_POINTS, 2 per band).

    Raises
    ------
    ValueError
        Naming ``hyper_max_points`` if it is not None nor an integer (bool excluded) or too small.
    """
    if hyper_max_points is None:
        return None
    if isinstance(hyper_max_points, (bool, np.bool_)) or not isinstance(hyper_max_points, (int, np.integer)):
        raise ValueError(f"hyper_max_points must be an integer or None, got {hyper_max_points!r}")
    least = max(HYPER_MIN_POINTS, HYPER_MIN_PER_BAND * n_bands)
    if hyper_max_points < least:
        raise ValueError(f"hyper_max_points={hyper_max_points} is below the minimum {least} "
                         f"(>= {HYPER_MIN_POINTS}, and >= {HYPER_MIN_PER_BAND} per band for {n_bands} bands)")
    return int(hyper_max_points)


def _bin_points(t, band, flux, err, lo, hi, max_points):
    """Inverse-variance average in equal-width time bins per band, <= max_points rows."""
    n_bands = len(np.unique(band))
    n_bins = max(1, max_points // n_bands)
    idx = np.clip(((t - lo) / (hi - lo) * n_bins).astype(np.int64), 0, n_bins - 1)
    key = band.astype(np.int64) * n_bins + idx
    keys, inverse = np.unique(key, return_inverse=True)
    w = 1.0 / err**2
    sw = np.bincount(inverse, w)
    t_b = np.bincount(inverse, w * t) / sw
    f_b = np.bincount(inverse, w * flux) / sw
    return t_b, (keys // n_bins).astype(band.dtype), f_b, 1.0 / np.sqrt(sw)


def _prepare_object(t, band, flux, err, wavelengths, window_lo, window_hi, max_points) -> _Object:
    """Reference time, window, binning and normalisation of one object (rows already clean)."""
    if len(t) == 0:
        return _Object(*(np.zeros(0),) * 5, t_ref=np.nan, flux_scale=1.0)
    significant = flux / err >= T_REF_MIN_SNR
    candidates = np.flatnonzero(significant) if significant.any() else np.arange(len(t))
    t_ref = float(t[candidates[np.argmax(flux[candidates])]])
    rel = t - t_ref
    keep = (rel >= window_lo) & (rel <= window_hi)
    rel, band, flux, err = rel[keep], band[keep], flux[keep], err[keep]
    if len(rel) > max_points:
        rel, band, flux, err = _bin_points(rel, band, flux, err, window_lo, window_hi, max_points)
    order = np.lexsort((band, rel))  # deterministic point order: time, then band
    rel, band, flux, err = rel[order], band[order], flux[order], err[order]
    flux_scale = float(max(np.max(np.abs(flux)), 3.0 * np.median(err)))
    return _Object(rel, wavelengths[band], band, flux / flux_scale, err / flux_scale, t_ref, flux_scale)


def _prepare(lightcurves, band_names, wavelengths, window_lo, window_hi, max_points):
    """Split the long table into per-object :class:`_Object` (order of first appearance).

    Vectorised over objects (segment operations on the table sorted by object and
    time); objects with more than ``max_points`` points in the window go through
    :func:`_prepare_object`, which bins them. Same result as calling
    :func:`_prepare_object` on every object.
    """
    missing = [c for c in ("object_id", "time", "band", "flux", "flux_err") if c not in lightcurves.columns]
    if missing:
        raise ValueError(f"lightcurves: missing required column(s) {missing}")
    oid = lightcurves["object_id"].astype(str).to_numpy()
    object_ids, first, codes = np.unique(oid, return_index=True, return_inverse=True)
    rank = np.empty(len(object_ids), dtype=np.int64)  # sorted-id index -> appearance rank
    rank[np.argsort(first, kind="stable")] = np.arange(len(object_ids))
    codes = rank[codes]
    object_ids = object_ids[np.argsort(first, kind="stable")]
    n_obj = len(object_ids)

    band_index = pd.Series(np.arange(len(band_names)), index=band_names)
    band = lightcurves["band"].astype(str).map(band_index).to_numpy(dtype=float)
    t = lightcurves["time"].to_numpy(dtype=float)
    flux = lightcurves["flux"].to_numpy(dtype=float)
    err = lightcurves["flux_err"].to_numpy(dtype=float)
    usable = np.isfinite(band) & np.isfinite(t) & np.isfinite(flux) & np.isfinite(err) & (err > 0)
    order = np.lexsort((t, codes))
    order = order[usable[order]]
    band = np.where(np.isfinite(band), band, 0).astype(np.int64)
    c, tt, bb, ff, ee = codes[order], t[order], band[order], flux[order], err[order]

    # Reference time: brightest significant observation (all observations if none is),
    # the earliest one on ties, as np.argmax in _prepare_object.
    n_rows = np.bincount(c, minlength=n_obj)
    significant = ff / ee >= T_REF_MIN_SNR
    has_significant = np.bincount(c[significant], minlength=n_obj) > 0
    key = np.where(significant | ~has_significant[c], ff, -np.inf)
    position = np.arange(len(c))
    last_of_object = np.lexsort((-position, key, c))[np.cumsum(n_rows)[n_rows > 0] - 1]
    t_ref = np.full(n_obj, np.nan)
    t_ref[n_rows > 0] = tt[last_of_object]

    rel = tt - t_ref[c]
    keep = (rel >= window_lo) & (rel <= window_hi)
    c, rel, bb, ff, ee = c[keep], rel[keep], bb[keep], ff[keep], ee[keep]
    points = np.lexsort((bb, rel, c))  # per object: time, then band
    c, rel, bb, ff, ee = c[points], rel[points], bb[points], ff[points], ee[points]
    n_keep = np.bincount(c, minlength=n_obj)
    ends = np.cumsum(n_keep)
    starts = ends - n_keep
    # flux_scale = max(max |flux|, 3 median(err)) per object
    max_abs = np.zeros(n_obj)
    nonempty = n_keep > 0
    max_abs[nonempty] = np.maximum.reduceat(np.abs(ff), starts[nonempty]) if len(ff) else 0.0
    sorted_err = ee[np.lexsort((ee, c))]
    lo_mid = np.clip(starts + (n_keep - 1) // 2, 0, max(len(ee) - 1, 0))
    hi_mid = np.clip(starts + n_keep // 2, 0, max(len(ee) - 1, 0))
    median_err = 0.5 * (sorted_err[lo_mid] + sorted_err[hi_mid]) if len(ee) else np.zeros(n_obj)
    flux_scale = np.maximum(max_abs, 3.0 * median_err)

    raw_bounds = np.concatenate([[0], np.cumsum(n_rows)])
    objects = []
    for i in range(n_obj):
        if n_keep[i] > max_points:  # dense: bin in time (rare)
            rows = order[raw_bounds[i]:raw_bounds[i + 1]]
            objects.append(_prepare_object(t[rows], band[rows], flux[rows], err[rows],
                                           wavelengths, window_lo, window_hi, max_points))
        elif n_keep[i] == 0:
            objects.append(_Object(*(np.zeros(0),) * 5, t_ref=np.nan, flux_scale=1.0))
        else:
            a, z, scale = starts[i], ends[i], float(flux_scale[i])
            objects.append(_Object(rel[a:z], wavelengths[bb[a:z]], bb[a:z], ff[a:z] / scale, ee[a:z] / scale,
                                   float(t_ref[i]), scale))
    return object_ids, objects


def padded_length(n: int) -> int:
    """The size an object of ``n`` points is fitted at: ``n`` up to :data:`PAD_EXACT_UP_TO`, above
    that ``n`` rounded up to a multiple of an eighth of its power of two (at most 12.5% padding).

    Batches hold one padded length each (:func:`_batches`), so an object's matrices have the
    same size, and its fit the same bytes, alone or among others (LAPACK's blocking and
    ``gp_newton.POTRI_MIN_N`` depend on the size); the rounding keeps the number of distinct
    sizes, and so of small batches, low.
    """
    if n <= PAD_EXACT_UP_TO:
        return int(n)
    step = 1 << (int(n).bit_length() - 4)  # n in [2^k, 2^(k+1)): step 2^(k-3)
    return int(-(-n // step) * step)


def _pack(objects: list[_Object], wave_ls: float, device, optimise: bool = True) -> PackedBatch:
    """Pad objects to their common :func:`padded_length` (see gp_model on why padding is harmless).

    Objects with fewer than MIN_POINTS_TO_FIT points, or all if ``optimise`` is
    False, keep their initial hyperparameters.
    """
    lengths = np.array([o.n for o in objects])
    b, n = len(objects), padded_length(int(lengths.max()))
    rows = np.repeat(np.arange(b), lengths)
    cols = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(o, name) for o in objects])

    y_real = cat("y")
    x = np.empty((b, n, 2))
    x[:, :, 0] = np.array([o.t[0] for o in objects])[:, None] / TIME_UNIT_DAYS  # padding: first point's location
    x[:, :, 1] = np.array([o.wavelength[0] for o in objects])[:, None] / WAVELENGTH_UNIT_ANGSTROM
    x[rows, cols, 0] = cat("t") / TIME_UNIT_DAYS
    x[rows, cols, 1] = cat("wavelength") / WAVELENGTH_UNIT_ANGSTROM
    y = np.zeros((b, n))
    y[rows, cols] = y_real
    noise = np.full((b, n), PAD_NOISE)
    noise[rows, cols] = np.maximum(cat("y_err") ** 2, MIN_NOISE)
    # Zero mean model: the second moment of the flux is the natural initial kernel variance.
    init_scale = np.maximum(np.bincount(rows, y_real**2, minlength=b) / lengths, MIN_INIT_OUTPUTSCALE)

    def tensor(a, dtype=torch.float64):
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

    return PackedBatch(
        x=tensor(x), y=tensor(y), noise=tensor(noise),
        n_real=tensor(lengths, torch.long),
        optimise=tensor(optimise & (lengths >= MIN_POINTS_TO_FIT), torch.bool),
        init_outputscale=tensor(init_scale),
        init_time_ls=tensor(np.full(b, DEFAULT_TIME_LENGTH_SCALE_DAYS / TIME_UNIT_DAYS)),
        init_wave_ls=tensor(np.full(b, wave_ls / WAVELENGTH_UNIT_ANGSTROM)),
    )


def _batches(order: list[int], lengths: list[int], batch_size: int,
             split_above: int | None = None) -> list[list[int]]:
    """Consecutive batches of ``order`` (sorted by length): at most ``batch_size`` objects and
    at most :data:`MAX_BATCH_ELEMENTS` matrix elements (objects x padded length squared).

    A batch holds objects of one :func:`padded_length` only, so every object is fitted at a
    size that depends on its own length alone, whatever shares its batch.

    With ``split_above``, no batch mixes objects of at most and of more than that many
    points (a batch is either fitted on all points or on hyperparameter subsets)."""
    batches, current, previous = [], [], None
    for i, n in zip(order, lengths):
        key = (padded_length(n), split_above is not None and n > split_above)
        m = key[0]
        if current and (len(current) == batch_size or (len(current) + 1) * m * m > MAX_BATCH_ELEMENTS
                        or key != previous):
            batches.append(current)
            current = []
        current.append(i)
        previous = key
    if current:
        batches.append(current)
    return batches


def _n_workers(workers: int | None, device: torch.device, n_objects: int) -> int:
    """Batches fitted at once: ``workers``, or by default torch's thread count on CPU (1 on GPU)."""
    if workers is None:
        workers = torch.get_num_threads() if device.type == "cpu" else 1
    return max(1, min(workers, n_objects))


@contextlib.contextmanager
def _one_torch_thread(device: torch.device):
    """This thread's torch ops on one intra-op thread while fitting (CPU).

    MKL's and torch's roundings depend on the thread count, and an object must give the
    same bytes whether it is fitted alone (in this thread, also in the retry chain) or in a
    batch of a worker thread or process (each single-threaded)."""
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _one_thread_worker() -> None:
    """Thread-pool initializer: torch ops of this thread use one intra-op thread (OpenMP, MKL)."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def _batch_runner(fit_one, n_workers: int):
    """``run(batches)``: an iterator over ``fit_one(batch)`` for every batch, in order.

    With one worker the batches are fitted one after the other in this thread, each
    with torch's intra-op threads. With ``n_workers > 1`` they are fitted
    ``n_workers`` at a time in a thread pool, each worker single-threaded (torch
    releases the GIL inside its operators). Why: torch's batched LAPACK calls
    (Cholesky, inverse) barely use intra-op threads (256 Cholesky factorisations of
    100 x 100 take 15 ms on two intra-op threads, 8 ms as two single-threaded halves
    at once), and OpenMP's two-thread regions collapse when other processes load
    the cores: on the shared 2-core machine (load average ~3) a fit at 100 points
    per object ran at 23 light curves/s on two intra-op threads and at 430 with two
    workers (``benchmarks/gp_throughput.py``). Every batch is still fitted on its
    own, so the result does not depend on ``n_workers``.
    """
    if n_workers == 1:
        yield lambda batches: map(fit_one, batches)
        return
    previous = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="gp-fit",
                              initializer=_one_thread_worker)
    try:
        yield lambda batches: pool.map(fit_one, batches)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # torch.set_num_threads in a worker also lowers the default of threads started
        # later; restore this thread's setting for the rest of the process.
        torch.set_num_threads(previous)


def _fit_objects(batch_objects: list[_Object], hyper_objects: list[_Object] | None, wave_ls: float, device,
                 x_test: torch.Tensor, jitter: float, fit_kw: dict):
    """One batch's :func:`gp_model.fit_batch`, or the exception it raised (NotPSDError, NaN loss,
    linalg errors), for the caller's retry chain. ``hyper_objects``: the batch's
    hyperparameter subsets (``hyper_max_points``), or None."""
    try:
        hyper = None if hyper_objects is None else _pack(hyper_objects, wave_ls, device)
        return gp_model.fit_batch(_pack(batch_objects, wave_ls, device), x_test, jitter=jitter, hyper_batch=hyper,
                                  **fit_kw)
    except Exception as exc:  # noqa: BLE001 - handled by the caller's retry chain
        return exc


#: Keeps the worker process's glibc setting (:func:`gp_newton.retain_freed_memory`) for its lifetime.
_WORKER_MEMORY = None


def _process_worker_init() -> None:
    """Process-pool initializer: one torch thread, freed heap memory kept for reuse."""
    global _WORKER_MEMORY
    torch.set_num_threads(1)
    _WORKER_MEMORY = gp_newton.retain_freed_memory()
    _WORKER_MEMORY.__enter__()


def _process_fit(task: tuple):
    """:func:`_fit_objects` in a worker process (CPU), for ``task = (batch_objects, hyper_objects,
    wave_ls, x_test as numpy, jitter, fit_kw)``. An exception that cannot be pickled back
    comes back as a RuntimeError with the same text, so the parent's message names it."""
    batch_objects, hyper_objects, wave_ls, x_test, jitter, fit_kw = task
    result = _fit_objects(batch_objects, hyper_objects, wave_ls, torch.device("cpu"),
                          torch.as_tensor(x_test, dtype=torch.float64), jitter, fit_kw)
    if isinstance(result, Exception):
        try:
            pickle.dumps(result)
        except Exception:  # noqa: BLE001 - any pickling failure
            return _UnpicklableError(type(result).__name__, str(result))
    return result


class _UnpicklableError(RuntimeError):
    """A worker's exception that could not be pickled: its class name and text."""

    def __init__(self, kind: str, text: str):
        super().__init__(kind, text)
        self.kind, self.text = kind, text

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}"


@contextlib.contextmanager
def gp_process_pool(n_workers: int | None = None):
    """A pool of worker processes for :func:`fit_gp_grid` (``executor=``), started and warmed.

    Each process fits whole batches with one torch thread, like the thread workers of
    :func:`_batch_runner`, but without sharing a GIL: the Python steps between torch
    operators no longer wait for each other (measured in
    ``docs/decisions/gp-process-pool.md``). Starting a process
    (spawn, importing torch) takes seconds, so a pool pays off for many objects, or
    when kept for several calls. ``n_workers``: None = the number of CPUs.
    The result equals the thread workers' with the same ``workers``.
    """
    if n_workers is not None and n_workers < 1:
        raise ValueError(f"n_workers must be >= 1 (or None), got {n_workers}")
    n = n_workers or os.cpu_count() or 1
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_process_worker_init)
    try:
        list(pool.map(abs, range(n)))  # start every process before the caller's clock does
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _interpolation_fallback(o: _Object, grid_time: np.ndarray, n_bands: int) -> np.ndarray:
    """(B, T) per-band linear interpolation of the normalised flux (all bands if one is empty)."""
    mean = np.zeros((n_bands, len(grid_time)))
    if o.n == 0:
        return mean
    for k in range(n_bands):
        sel = o.band == k if np.any(o.band == k) else np.ones(o.n, bool)
        mean[k] = np.interp(grid_time, o.t[sel], o.y[sel])
    return mean


def fit_gp_grid(
    lightcurves: pd.DataFrame,
    *,
    band_wavelengths: Mapping[str, float],
    window_before_days: float,
    window_after_days: float,
    n_grid: int,
    fit_margin_days: float,
    max_points: int,
    n_iter: int,
    learning_rate: float,
    batch_size: int,
    tol: float,
    wavelength_length_scale: float | None,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
    optimizer: str = "newton",
    workers: int | None = None,
    hyper_max_points: int | None = None,
    executor: Executor | None = None,
) -> GPGrid:
    """Fit a GP per object, in batches, and evaluate it on a regular grid.

    Parameters
    ----------
    lightcurves : pandas.DataFrame
        Canonical long table (``object_id``, ``time`` [MJD], ``band``, ``flux``,
        ``flux_err`` [microjansky]).
    band_wavelengths : Mapping[str, float]
        Band name -> effective wavelength (Angstrom); its order is the band order
        of the output. Rows in other bands are ignored.
    window_before_days, window_after_days : float
        The grid spans ``[-window_before_days, +window_after_days]`` around ``t_ref``.
    n_grid : int
        Number of grid times T (evenly spaced, both ends included).
    fit_margin_days : float
        Extra days on both sides of the window whose observations also constrain the fit.
    max_points : int
        Maximum observations per object; more are binned in time per band.
        Must be at least the number of bands.
    n_iter : int
        Maximum optimiser iterations per object (``diagnostics.n_iter`` records those taken).
    learning_rate : float
        Adam learning rate on the log hyperparameters (``optimizer="adam"`` only).
    batch_size : int
        Maximum objects per batched GP. Batches are also cut so that
        ``objects * n_max**2 <= MAX_BATCH_ELEMENTS`` (n_max <= max_points, the longest
        object in the batch): memory is ~15 float64 arrays of at most 16 MB each,
        whatever the light-curve lengths; prediction is chunked.
    tol : float
        Convergence tolerance on the loss per point: an object stops once its next
        Newton step predicts a decrease below ``tol * max(|loss|, 1)`` (Adam: once
        its loss changed by less than that over the last 5 steps); ``tol <= 0``: never.
    wavelength_length_scale : float or None
        Fixed wavelength length scale in Angstrom (Avocado uses 6000), or None to
        fit it per object (initialised at 6000).
    device : str
        Torch device, ``"cpu"`` or ``"cuda"``.
    seed : int
        Seed for torch (the fit itself is deterministic: data-driven initial values).
    progress : bool
        Show a tqdm progress bar over batches.
    optimizer : str
        ``"newton"`` (default): batched projected Newton with the exact Hessian of
        the 2-3 log hyperparameters (:mod:`deeprubin.tasks.transients.preprocess.gp_newton`), a few
        iterations per object; ``"adam"``: Adam through the GPyTorch model.
    workers : int or None
        Batches fitted at once, each in its own thread with one torch thread (see
        :func:`_batch_runner`); None: torch's thread count on CPU, 1 on GPU. With 1,
        batches run one after the other on torch's intra-op threads. Memory grows
        with the number of batches in flight.
    hyper_max_points : int or None
        Subset-of-data hyperparameters (Chalupka, Williams & Murray 2013, JMLR 14):
        an object with more than this many points (after binning) has its
        hyperparameters fitted (start scan and Newton/Adam) on a deterministic
        stratified subset of this many of its points (:func:`hyper_subset`), and
        its posterior (grid mean/std) and ``final_loss`` computed from all its points
        at those hyperparameters. At least :data:`HYPER_MIN_POINTS` and 2 per band.
        Objects with at most this many points, or all with None, are fitted as
        without the setting. Cost per object above it: a fit at this size plus one
        Cholesky of the full covariance and triangular solves for the posterior.
    executor : concurrent.futures.Executor or None
        CPU only: fit the batches in this pool of worker processes
        (:func:`gp_process_pool`) instead of threads; ``workers`` (None: the pool's
        size) still sets how the objects are cut into batches, so the result is the
        thread workers' one. Objects whose batch failed are retried in this process.

    Returns
    -------
    GPGrid
        N objects, B = len(band_wavelengths) bands, T = n_grid times.

    Notes
    -----
    Objects are sorted by number of points and cut into batches of ``batch_size``
    objects of one :func:`padded_length`; every batch is one batched GP fit (see
    :mod:`deeprubin.tasks.transients.preprocess.gp_model`). The result does not depend on
    ``batch_size``, ``workers`` or the other objects of the table: an object's bytes are
    the same fitted alone (with the numerics pinned, see the module docstring).
    With several workers, batches hold at most an equal share of the objects, so
    every worker has one. While the batches
    run, glibc's malloc keeps freed memory for reuse
    (:func:`deeprubin.tasks.transients.preprocess.gp_newton.retain_freed_memory`), which halves the
    fit time on CPU; the thresholds are reset afterwards.
    """
    band_names = [str(b) for b in band_wavelengths]
    if not band_names:
        raise ValueError("band_wavelengths is empty")
    if n_grid < 1 or batch_size < 1 or n_iter < 0 or learning_rate <= 0:
        raise ValueError("need n_grid >= 1, batch_size >= 1, n_iter >= 0 and learning_rate > 0")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 (or None), got {workers}")
    if executor is not None and torch.device(device).type != "cpu":
        raise ValueError(f"executor (worker processes) runs on the CPU only, got device={device!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if max_points < len(band_names):
        raise ValueError(f"max_points={max_points} is below the number of bands ({len(band_names)})")
    if min(window_before_days, window_after_days, fit_margin_days) < 0:
        raise ValueError("window_before_days, window_after_days and fit_margin_days must be >= 0")
    hyper_max_points = check_hyper_max_points(hyper_max_points, len(band_names))
    torch.manual_seed(seed)
    wavelengths = np.array([float(band_wavelengths[b]) for b in band_names])
    grid_time = np.linspace(-window_before_days, window_after_days, n_grid)
    window_lo = -window_before_days - fit_margin_days
    window_hi = window_after_days + fit_margin_days
    object_ids, objects = _prepare(lightcurves, band_names, wavelengths, window_lo, window_hi, max_points)

    n_obj, n_bands = len(objects), len(band_names)
    dev = torch.device(device)
    x_test = torch.as_tensor(
        np.stack([np.tile(grid_time, n_bands) / TIME_UNIT_DAYS,
                  np.repeat(wavelengths, n_grid) / WAVELENGTH_UNIT_ANGSTROM], -1),
        dtype=torch.float64, device=dev)  # (B*T, 2), band-major so it reshapes to (B, T)
    fit_wave = wavelength_length_scale is None
    wave_ls = DEFAULT_WAVELENGTH_LENGTH_SCALE_ANGSTROM if fit_wave else float(wavelength_length_scale)
    fit_kw = dict(fit_wavelength=fit_wave, n_iter=n_iter, learning_rate=learning_rate, tol=tol,
                  optimizer=optimizer)

    mean = np.zeros((n_obj, n_bands, n_grid), dtype=np.float32)
    std = np.full((n_obj, n_bands, n_grid), FALLBACK_STD, dtype=np.float32)
    diag = {
        "fit_ok": np.zeros(n_obj, bool), "n_points": np.array([o.n for o in objects], dtype=np.int64),
        "n_points_hyper": np.zeros(n_obj, np.int64), "n_iter": np.zeros(n_obj, np.int64), "final_loss": np.full(n_obj, np.nan),
        "amplitude": np.full(n_obj, np.nan), "length_scale_time_days": np.full(n_obj, np.nan),
        "length_scale_wavelength_angstrom": np.full(n_obj, np.nan),
        "message": np.array(["no usable observation in the configured bands"] * n_obj, dtype=object),
    }

    def n_hyper(o: _Object) -> int:
        """Points the hyperparameters of ``o`` are fitted on (0: not fitted, too few points)."""
        if o.n < MIN_POINTS_TO_FIT:
            return 0
        return o.n if hyper_max_points is None else min(o.n, hyper_max_points)

    def hyper_objects(batch_objects: list[_Object]) -> list[_Object] | None:
        """Hyperparameter subsets of a batch above ``hyper_max_points`` (None otherwise).

        :func:`_batches` keeps such objects in batches of their own, so checking the first suffices."""
        if hyper_max_points is None or batch_objects[0].n <= hyper_max_points:
            return None
        return [o.take(hyper_subset(o.band, o.y, hyper_max_points)) for o in batch_objects]

    def store(i: int, fit: BatchFit, j: int, ok: bool, message: str, fitted: bool = True) -> bool:
        """Copy object j of a batch result to slot i; False if it is not finite.

        ``fitted``: whether the hyperparameters were optimised (for ``n_points_hyper``)."""
        m, s = fit.mean[j].reshape(n_bands, n_grid), fit.std[j].reshape(n_bands, n_grid)
        if not (np.isfinite(m).all() and np.isfinite(s).all() and np.isfinite(fit.final_loss[j])):
            return False
        mean[i], std[i] = m, s
        for key in ("n_iter", "final_loss", "amplitude", "length_scale_time_days",
                    "length_scale_wavelength_angstrom"):
            diag[key][i] = getattr(fit, key)[j]
        diag["fit_ok"][i] = ok
        diag["message"][i] = message
        diag["n_points_hyper"][i] = n_hyper(objects[i]) if fitted else 0
        return True

    def store_batch(batch: list[int], fit: BatchFit) -> list[int]:
        """:func:`store` for a whole batch at once; returns the objects whose result is not finite."""
        idx = np.asarray(batch)
        m, s = fit.mean.reshape(len(idx), n_bands, n_grid), fit.std.reshape(len(idx), n_bands, n_grid)
        finite = np.isfinite(m).all((1, 2)) & np.isfinite(s).all((1, 2)) & np.isfinite(fit.final_loss)
        rows = idx[finite]
        mean[rows], std[rows] = m[finite], s[finite]
        for key in ("n_iter", "final_loss", "amplitude", "length_scale_time_days",
                    "length_scale_wavelength_angstrom"):
            diag[key][rows] = getattr(fit, key)[finite]
        ok = diag["n_points"][rows] >= MIN_POINTS_TO_FIT
        diag["fit_ok"][rows] = ok
        diag["n_points_hyper"][rows] = [n_hyper(objects[i]) for i in rows]
        diag["message"][rows] = ""
        for i in rows[~ok]:
            diag["message"][i] = few_points_message(objects[i])
        return idx[~finite].tolist()

    def few_points_message(o: _Object) -> str:
        return (f"too few points ({o.n} < {MIN_POINTS_TO_FIT}): default hyperparameters, "
                "not fitted")

    def fit_alone(i: int, reason: str) -> None:
        """Retry chain for one object whose batch failed or gave non-finite output."""
        o = objects[i]
        try:
            fit = _fit_objects([o], hyper_objects([o]), wave_ls, dev, x_test, JITTER_SINGLE, fit_kw)
            if isinstance(fit, Exception):
                raise fit
            ok = o.n >= MIN_POINTS_TO_FIT
            if store(i, fit, 0, ok, "" if ok else few_points_message(o)):
                return
            reason = "non-finite posterior"
        except Exception as exc:  # noqa: BLE001 - any numerical failure leads to the fallbacks
            reason = f"{type(exc).__name__}: {exc}"
        try:
            fit = gp_model.fit_batch(_pack([o], wave_ls, dev, optimise=False), x_test,
                                     jitter=JITTER_DEFAULT, **fit_kw)
            if store(i, fit, 0, False, f"GP fit failed ({reason}); default hyperparameters, not fitted",
                     fitted=False):
                return
            reason = f"{reason}; non-finite posterior with default hyperparameters"
        except Exception as exc:  # noqa: BLE001
            reason = f"{reason}; default hyperparameters failed too ({type(exc).__name__}: {exc})"
        mean[i] = _interpolation_fallback(o, grid_time, n_bands)
        std[i] = FALLBACK_STD
        diag["fit_ok"][i] = False
        diag["n_points_hyper"][i] = 0
        diag["message"][i] = f"GP failed ({reason}); linear interpolation fallback, std={FALLBACK_STD}"

    # Bucket by length so padding within a batch stays small.
    fittable = [i for i in range(n_obj) if objects[i].n > 0]
    fittable.sort(key=lambda i: (objects[i].n, i))
    if workers is None and executor is not None:  # as many batches at once as the pool has processes
        workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    n_workers = _n_workers(workers, dev, len(fittable))
    # With several workers, no batch is larger than an equal share, so all of them have work.
    share = -(-len(fittable) // n_workers) if fittable else 1
    batches = _batches(fittable, [objects[i].n for i in fittable], min(batch_size, share),
                       split_above=hyper_max_points)
    n_workers = max(1, min(n_workers, len(batches)))

    def fit_one(batch: list[int]) -> BatchFit | Exception:
        """One batch's fit in this process, or the exception it raised."""
        batch_objects = [objects[i] for i in batch]
        return _fit_objects(batch_objects, hyper_objects(batch_objects), wave_ls, dev, x_test, JITTER_BATCH, fit_kw)

    def in_processes(batches: list[list[int]]):
        """The batches' fits (or exceptions) from ``executor``'s worker processes, in order."""
        x_test_np = x_test.cpu().numpy()
        tasks = ([objects[i] for i in batch] for batch in batches)
        return executor.map(_process_fit, ((b, hyper_objects(b), wave_ls, x_test_np, JITTER_BATCH, fit_kw)
                                           for b in tasks))

    runner = (contextlib.nullcontext(in_processes) if executor is not None
              else _batch_runner(fit_one, n_workers))
    with gp_newton.retain_freed_memory(), _one_torch_thread(dev), runner as run:
        for batch, fit in tqdm(zip(batches, run(batches)), total=len(batches), desc="GP fit", unit="batch",
                               disable=not progress):
            if isinstance(fit, Exception):
                for i in batch:
                    fit_alone(i, f"{type(fit).__name__}: {fit}")
                continue
            for i in store_batch(batch, fit):
                fit_alone(i, "non-finite posterior in batch")

    diagnostics = pd.DataFrame({"object_id": object_ids.astype(str), **diag})
    diagnostics["message"] = diagnostics["message"].astype(str)
    return GPGrid(
        object_ids=object_ids.astype(str),
        bands=np.array(band_names, dtype=str),
        wavelengths=wavelengths,
        grid_time=grid_time,
        t_ref=np.array([o.t_ref for o in objects], dtype=float),
        flux_scale=np.array([o.flux_scale for o in objects], dtype=float),
        mean=mean,
        std=std,
        diagnostics=diagnostics[list(DIAGNOSTIC_COLUMNS)],
    )


def save_gp_grid(grid: GPGrid, npz_path: str | os.PathLike, diagnostics_path: str | os.PathLike) -> None:
    """Write the arrays to ``npz_path`` (strings as unicode arrays, no pickle) and the
    diagnostics table to ``diagnostics_path`` (parquet), both atomically."""
    io.write_npz(
        npz_path,
        object_ids=np.asarray(grid.object_ids, dtype=str),
        bands=np.asarray(grid.bands, dtype=str),
        wavelengths=np.asarray(grid.wavelengths, dtype=float),
        grid_time=np.asarray(grid.grid_time, dtype=float),
        t_ref=np.asarray(grid.t_ref, dtype=float),
        flux_scale=np.asarray(grid.flux_scale, dtype=float),
        mean=np.asarray(grid.mean, dtype=np.float32),
        std=np.asarray(grid.std, dtype=np.float32),
    )
    io.write_parquet(grid.diagnostics, diagnostics_path)


def load_gp_grid(npz_path: str | os.PathLike, diagnostics_path: str | os.PathLike) -> GPGrid:
    """Read a grid written by :func:`save_gp_grid`.

    Raises
    ------
    ValueError
        If the diagnostics do not list the same objects, in the same order, as the arrays.
    """
    arrays = io.read_npz(npz_path)
    diagnostics = io.read_parquet(diagnostics_path)
    object_ids = arrays["object_ids"].astype(str)
    if not np.array_equal(diagnostics["object_id"].astype(str).to_numpy(), object_ids):
        raise ValueError(f"{diagnostics_path}: object_id column does not match {npz_path}")
    return GPGrid(
        object_ids=object_ids,
        bands=arrays["bands"].astype(str),
        wavelengths=arrays["wavelengths"],
        grid_time=arrays["grid_time"],
        t_ref=arrays["t_ref"],
        flux_scale=arrays["flux_scale"],
        mean=arrays["mean"],
        std=arrays["std"],
        diagnostics=diagnostics,
    )
