"""Gaussian-process augmentation of training light curves (Avocado's idea, Boone 2019).

New training light curves are drawn from the 2-D (time, wavelength) GP fitted to a
*training* object (its "parent"). Every copy is one joint posterior draw, so it
follows the parent's data where they constrain it and varies where they do not:

1. **Cadence.** The copy is observed at the parent's own observation times and
   bands (its survey cadence), each time perturbed by up to ``time_jitter_days``.
2. **Time shift.** The source's light curve moves against that cadence by ``shift``
   drawn uniformly in ``[-time_shift_days, +time_shift_days]``, so the same
   cadence samples other phases of the event.
3. **Redshift** (classes in ``redshift_classes`` with a finite parent redshift
   ``z0 > 0``). A new redshift ``z = z0 * u``, ``u`` log-uniform in
   ``redshift_scale``; with ``f = (1 + z) / (1 + z0)``:

   * time dilation: an interval of ``dt`` days of the parent becomes ``f dt``
     (around the parent's reference time ``t_ref``);
   * bandpass shift: the band at wavelength ``lambda`` sees the parent's spectrum
     at ``lambda / f``, which the GP's wavelength dimension interpolates;
   * dimming: flux density is multiplied by ``f * (d_L(z0) / d_L(z))**2``
     (flat LambdaCDM, H0 = 70 km/s/Mpc, Omega_m = 0.3).

   An observation at time ``t`` of the copy therefore samples the parent's GP at
   time ``t_ref + (t - t_ref - shift) / f`` and wavelength ``lambda / f``; points
   that would need the GP outside the time span of the parent's data are removed
   (no extrapolation).
4. **Drop.** A fraction of the remaining observations, drawn uniformly in
   ``drop_fraction``, is removed at random.
5. **Noise.** Flux = dimming x (joint posterior draw of the latent flux) + white
   noise with the parent's flux error at that epoch, which is also the reported
   ``flux_err`` (sky-noise dominated errors do not depend on the source).
6. **Truncation** (a fraction ``truncate_fraction`` of the copies, as RAPID and ATAT train):
   the copy keeps only what was observed up to ``d`` days after its first detection
   (flux / flux_err >= :data:`DETECTION_SNR`), ``d`` log-uniform in ``truncate_days``, and
   at least its first ``min_points`` observations; so a light curve seen a few days after
   discovery, as the early stage and the alert stream see it, is in the training
   distribution. A copy with no detection is not truncated. Truncation draws from a stream
   of its own: the other copies are the same with or without it.

A copy needs ``min_points`` observations; otherwise it is redrawn (up to
:data:`MAX_ATTEMPTS` times) and, failing that, skipped and counted in the report.

How many copies: ``mode: copies`` gives each training object of class ``c``
``copies[c]`` copies (classes not listed: ``copies_all``, default 0; ``copies_all: 4`` gives 4 to
every class of the task, whatever its classes); ``mode: balance`` tops every class
up to the largest training class, spreading the missing number evenly over the
class's usable parents (some get one more, chosen at random), at most
``max_copies_per_object`` each.

Copies carry their parent's ``group_id``, ``split = "train"`` and ids
``<parent>_aug000``, ``<parent>_aug001``, ... so they can never land in another
split than their parent; only objects the manifest puts in ``train`` are parents.
Every copy has its own random stream, derived from ``(seed, parent id, copy
number)``: the output does not depend on processing order or on other classes.
"""
from __future__ import annotations

import contextlib
import math
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from deeprubin.core.config import ConfigError
from deeprubin.core.schema import flux_to_mag
from deeprubin.tasks.transients.preprocess import gp as gpmod
from deeprubin.tasks.transients.preprocess.gp_model import MIN_NOISE

#: Tries per copy to get ``min_points`` observations before it is skipped.
MAX_ATTEMPTS = 10
#: Alert-style detection threshold (flux / flux_err) for the ``detected`` column.
DETECTION_SNR = 5.0
#: Relative jitter on the diagonal of the posterior covariance before sampling.
SAMPLE_JITTER = 1e-10
#: Columns of the augmented objects table beyond the raw objects table's.
EXTRA_OBJECT_COLUMNS = ("parent_id", "split", "aug_redshift_factor", "aug_time_shift_days",
                        "aug_drop_fraction", "aug_truncate_days")
LIGHTCURVE_COLUMNS = ("object_id", "time", "band", "flux", "flux_err", "mag", "mag_err", "detected")
MODES = ("balance", "copies")


@dataclass(frozen=True)
class AugmentSettings:
    """Validated ``augment`` configuration (see the module docstring)."""

    enabled: bool
    seed: int = 0
    mode: str = "balance"
    copies: dict[str, int] = field(default_factory=dict)
    max_copies_per_object: int = 10
    redshift_classes: tuple[str, ...] = ()
    redshift_scale: tuple[float, float] = (1.0, 1.0)
    time_shift_days: float = 0.0
    time_jitter_days: float = 0.0
    drop_fraction: tuple[float, float] = (0.0, 0.0)
    min_points: int = 3
    truncate_fraction: float = 0.0
    truncate_days: tuple[float, float] = (1.0, 100.0)


def _error(key: str, message: str) -> ConfigError:
    return ConfigError(f"config key 'augment.{key}' {message}")


def _number(node: Mapping, key: str, *, integer: bool = False, minimum: float | None = None):
    if key not in node or node[key] is None:
        raise _error(key, "is missing")
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _error(key, f"must be a number, got {value!r}")
    if integer and float(value) != int(value):
        raise _error(key, f"must be an integer, got {value!r}")
    if not math.isfinite(float(value)):
        raise _error(key, f"must be finite, got {value!r}")
    if minimum is not None and value < minimum:
        raise _error(key, f"must be >= {minimum}, got {value!r}")
    return int(value) if integer else float(value)


def _pair(node: Mapping, key: str, lo_bound: float, hi_bound: float | None = None) -> tuple[float, float]:
    value = node.get(key)
    if value is None or isinstance(value, (str, bytes)) or len(value) != 2:
        raise _error(key, f"must be a pair [low, high], got {value!r}")
    lo, hi = (_number({key: v}, key) for v in value)
    if not lo_bound <= lo <= hi or (hi_bound is not None and hi > hi_bound):
        upper = "" if hi_bound is None else f" <= {hi_bound}"
        raise _error(key, f"must satisfy {lo_bound} <= low <= high{upper}, got {list(value)!r}")
    return lo, hi


def parse_settings(node: Mapping | None, classes: Sequence[str]) -> AugmentSettings:
    """Validate the ``augment`` config node; errors name the offending key.

    Raises
    ------
    deeprubin.core.config.ConfigError
        Unknown mode or class, negative copies, bad ranges.
    """
    if node is None or not bool(node.get("enabled", False)):
        return AugmentSettings(enabled=False)
    classes = [str(c) for c in classes]
    mode = node.get("mode")
    if mode not in MODES:
        raise _error("mode", f"must be one of {list(MODES)}, got {mode!r}")
    copies_node = node.get("copies") or {}
    if not isinstance(copies_node, Mapping):
        raise _error("copies", f"must be a mapping class -> copies per training object, got {copies_node!r}")
    every = node.get("copies_all")
    if every is not None:  # the classes `copies` does not list, whatever the task's classes are
        every = _copies_value(every, "copies_all")
        copies_node = {**{c: every for c in classes}, **copies_node}
    copies = {}
    for label, value in copies_node.items():
        if str(label) not in classes:
            raise _error(f"copies.{label}", f"names an unknown class; the task's classes are {classes}")
        copies[str(label)] = _copies_value(value, f"copies.{label}")
    redshift_classes = node.get("redshift_classes") or []
    if isinstance(redshift_classes, (str, bytes)):
        raise _error("redshift_classes", f"must be a list of class names, got {redshift_classes!r}")
    for label in redshift_classes:
        if str(label) not in classes:
            raise _error("redshift_classes", f"names an unknown class {label!r}; the task's classes are {classes}")
    return AugmentSettings(
        enabled=True,
        seed=_number(node, "seed", integer=True, minimum=0),
        mode=mode,
        copies=copies,
        max_copies_per_object=_number(node, "max_copies_per_object", integer=True, minimum=0),
        redshift_classes=tuple(str(c) for c in redshift_classes),
        redshift_scale=_pair(node, "redshift_scale", 1e-3),
        time_shift_days=_number(node, "time_shift_days", minimum=0),
        time_jitter_days=_number(node, "time_jitter_days", minimum=0),
        drop_fraction=_pair(node, "drop_fraction", 0.0, 0.9),
        min_points=_number(node, "min_points", integer=True, minimum=1),
        **_truncation(node),
    )


def _truncation(node: Mapping) -> dict:
    """``truncate_fraction`` in [0, 1] (absent: 0) and ``truncate_days`` [low, high], 0.1 <= low."""
    if node.get("truncate_fraction") is None:
        return {}
    fraction = _number(node, "truncate_fraction", minimum=0.0)
    if fraction > 1.0:
        raise _error("truncate_fraction", f"must be a fraction in [0, 1], got {fraction!r}")
    return {"truncate_fraction": fraction, "truncate_days": _pair(node, "truncate_days", 0.1)}


def _copies_value(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _error(key, f"must be a non-negative integer, got {value!r}")
    if value < 0:
        raise _error(key, f"must be >= 0 (copies per training object), got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- how many copies

def copies_per_parent(parents: pd.DataFrame, class_sizes: Mapping[str, int], settings: AugmentSettings
                      ) -> dict[str, int]:
    """Number of copies of every usable parent.

    Parameters
    ----------
    parents : pandas.DataFrame
        Usable training objects (``object_id``, ``label``).
    class_sizes : Mapping[str, int]
        Training objects per class (usable or not): what ``balance`` equalises.
    settings : AugmentSettings
    """
    out: dict[str, int] = {}
    if settings.mode == "copies":
        for oid, label in zip(parents["object_id"].astype(str), parents["label"].astype(str)):
            out[oid] = settings.copies.get(label, 0)
        return out
    target = max(class_sizes.values(), default=0)
    for label, part in parents.groupby("label", sort=True):
        ids = np.sort(part["object_id"].astype(str).to_numpy())
        needed = max(0, target - int(class_sizes.get(str(label), 0)))
        base, extra = divmod(needed, len(ids))
        order = _rng(settings.seed, "balance", str(label)).permutation(len(ids))
        counts = np.full(len(ids), base, dtype=np.int64)
        counts[order[:extra]] += 1
        counts = np.minimum(counts, settings.max_copies_per_object)
        out.update(zip(ids.tolist(), counts.tolist()))
    return out


def _rng(seed: int, *keys) -> np.random.Generator:
    """Independent stream for ``(seed, *keys)``; strings are hashed with crc32 (stable across runs)."""
    ints = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *ints]))


# --------------------------------------------------------------------------- cosmology

#: Flat LambdaCDM used for the dimming of redshifted copies.
HUBBLE_CONSTANT, OMEGA_M = 70.0, 0.3
SPEED_OF_LIGHT_KM_S = 299792.458


def luminosity_distance_mpc(z) -> np.ndarray:
    """Luminosity distance (Mpc) in flat LambdaCDM (H0 = 70 km/s/Mpc, Omega_m = 0.3).

    ``(1 + z) c / H0 * integral_0^z dz' / E(z')`` by Simpson's rule on 2048
    intervals (relative error < 1e-9 for z < 10; matches astropy's FlatLambdaCDM
    without radiation, checked in the tests).
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    u = np.linspace(0.0, 1.0, 2049)  # z' = z u
    zz = z[:, None] * u[None, :]
    inv_e = 1.0 / np.sqrt(OMEGA_M * (1.0 + zz) ** 3 + (1.0 - OMEGA_M))
    weights = np.ones(u.size)
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    integral = z * (inv_e @ weights) * (u[1] - u[0]) / 3.0
    return (1.0 + z) * SPEED_OF_LIGHT_KM_S / HUBBLE_CONSTANT * integral


def dimming_factor(z0: float, z: float) -> float:
    """Flux-density ratio of a source moved from ``z0`` to ``z`` (same rest-frame frequency)."""
    d0, d1 = luminosity_distance_mpc(np.array([z0, z]))
    return float((1.0 + z) / (1.0 + z0) * (d0 / d1) ** 2)


# --------------------------------------------------------------------------- one parent

@dataclass
class ParentGP:
    """A training object's fitted GP: its data (as fitted) and hyperparameters.

    ``t`` (days relative to ``t_ref``), ``wavelength`` (Angstrom), ``band`` (index
    into the band list), ``y``/``y_err`` (flux / flux_scale), ``amplitude``
    (normalised flux), length scales in days and Angstrom.
    """

    object_id: str
    t: np.ndarray
    wavelength: np.ndarray
    band: np.ndarray
    y: np.ndarray
    y_err: np.ndarray
    t_ref: float
    flux_scale: float
    amplitude: float
    length_scale_time: float
    length_scale_wavelength: float


def _matern32(t1, w1, t2, w2, ls_t: float, ls_w: float) -> np.ndarray:
    r = np.sqrt(((t1[:, None] - t2[None, :]) / ls_t) ** 2 + ((w1[:, None] - w2[None, :]) / ls_w) ** 2)
    return (1.0 + math.sqrt(3.0) * r) * np.exp(-math.sqrt(3.0) * r)


def posterior_sample(parent: ParentGP, t: np.ndarray, wavelength: np.ndarray, rng: np.random.Generator
                     ) -> np.ndarray:
    """One joint draw of the parent's latent normalised flux at (``t``, ``wavelength``) (days rel. t_ref, A)."""
    s = parent.amplitude ** 2
    ls = (parent.length_scale_time, parent.length_scale_wavelength)
    k = s * _matern32(parent.t, parent.wavelength, parent.t, parent.wavelength, *ls)
    k[np.diag_indices_from(k)] += np.maximum(parent.y_err ** 2, MIN_NOISE)
    k_cross = s * _matern32(t, wavelength, parent.t, parent.wavelength, *ls)
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, parent.y))
    v = np.linalg.solve(chol, k_cross.T)
    mean = k_cross @ alpha
    cov = s * _matern32(t, wavelength, t, wavelength, *ls) - v.T @ v
    evals, evecs = np.linalg.eigh(0.5 * (cov + cov.T) + SAMPLE_JITTER * s * np.eye(len(t)))
    return mean + evecs @ (np.sqrt(np.clip(evals, 0.0, None)) * rng.standard_normal(len(t)))


def augment_parent(parent: ParentGP, n_copies: int, settings: AugmentSettings, *, redshift: float,
                   apply_redshift: bool, band_names: Sequence[str], band_wavelengths: np.ndarray
                   ) -> tuple[list[dict], list[dict], int]:
    """Draw ``n_copies`` copies of one parent.

    ``redshift`` is the parent's (NaN if unknown); it is changed only if
    ``apply_redshift`` and it is finite and > 0.

    Returns
    -------
    lightcurves : list of dict
        One dict of equal-length column arrays per copy (:data:`LIGHTCURVE_COLUMNS`).
    metadata : list of dict
        Per copy: ``object_id``, ``parent_id``, ``redshift``, ``aug_redshift_factor``
        (``f``), ``aug_time_shift_days``, ``aug_drop_fraction``, ``aug_truncate_days`` (NaN:
        not truncated), ``aug_dimming`` and ``aug_t_ref`` (the parent's reference time, MJD).
    n_skipped : int
        Copies that could not reach ``min_points`` observations.
    """
    lightcurves, metadata, skipped = [], [], 0
    t_lo, t_hi = float(parent.t.min()), float(parent.t.max())
    band_wavelengths = np.asarray(band_wavelengths, dtype=float)
    can_redshift = apply_redshift and math.isfinite(redshift) and redshift > 0
    for copy in range(n_copies):
        rng = _rng(settings.seed, "copy", parent.object_id, copy)
        for _ in range(MAX_ATTEMPTS):
            t_obs = parent.t + rng.uniform(-settings.time_jitter_days, settings.time_jitter_days, parent.t.size)
            shift = rng.uniform(-settings.time_shift_days, settings.time_shift_days)
            z, stretch, dim = redshift, 1.0, 1.0
            if can_redshift:
                lo, hi = settings.redshift_scale
                z = redshift * math.exp(rng.uniform(math.log(lo), math.log(hi)))
                stretch = (1.0 + z) / (1.0 + redshift)
                dim = dimming_factor(redshift, z)
            t_parent = (t_obs - shift) / stretch
            drop = rng.uniform(*settings.drop_fraction)
            keep = (t_parent >= t_lo) & (t_parent <= t_hi) & (rng.random(parent.t.size) >= drop)
            if keep.sum() >= settings.min_points:
                break
        else:
            skipped += 1
            continue
        band = parent.band[keep]
        f = posterior_sample(parent, t_parent[keep], band_wavelengths[band] / stretch, rng)
        err = parent.y_err[keep] * parent.flux_scale
        flux = dim * f * parent.flux_scale + rng.standard_normal(len(err)) * err
        order = np.lexsort((band, t_obs[keep]))
        flux, err, band, time = flux[order], err[order], band[order], t_obs[keep][order] + parent.t_ref
        truncate = truncation_days(settings, parent.object_id, copy)
        if truncate is not None:
            cut = truncation_mask(time, flux / err >= DETECTION_SNR, truncate, settings.min_points)
            if cut is None:
                truncate = None
            else:
                flux, err, band, time = flux[cut], err[cut], band[cut], time[cut]
        mag, mag_err = flux_to_mag(flux, err)
        oid = f"{parent.object_id}_aug{copy:03d}"
        lightcurves.append({"object_id": np.full(len(time), oid, dtype=object), "time": time,
                            "band": np.asarray(band_names, dtype=object)[band], "flux": flux, "flux_err": err,
                            "mag": mag, "mag_err": mag_err, "detected": flux / err >= DETECTION_SNR})
        metadata.append({"object_id": oid, "parent_id": parent.object_id, "redshift": z,
                         "aug_redshift_factor": stretch, "aug_time_shift_days": shift, "aug_drop_fraction": drop,
                         "aug_truncate_days": math.nan if truncate is None else truncate,
                         "aug_dimming": dim, "aug_t_ref": parent.t_ref})
    return lightcurves, metadata, skipped


def truncation_days(settings: AugmentSettings, object_id: str, copy: int) -> float | None:
    """Days after the first detection copy ``copy`` of ``object_id`` keeps, or None (not truncated).

    Its own random stream ``(seed, "truncate", object, copy)``: a copy is truncated with
    probability ``truncate_fraction`` at ``d`` log-uniform in ``truncate_days``.
    """
    if settings.truncate_fraction <= 0.0:
        return None
    rng = _rng(settings.seed, "truncate", object_id, copy)
    if rng.random() >= settings.truncate_fraction:
        return None
    lo, hi = settings.truncate_days
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def truncation_mask(time: np.ndarray, detected: np.ndarray, days: float, min_points: int) -> np.ndarray | None:
    """Rows (``time`` sorted) observed up to the first detection + ``days``, and at least the first
    ``min_points`` rows; None when nothing is detected (the copy stays whole)."""
    if not detected.any():
        return None
    cutoff = time[np.flatnonzero(detected)[0]] + days
    cutoff = max(cutoff, time[min(min_points, len(time)) - 1])
    return time <= cutoff


# --------------------------------------------------------------------------- the whole training set

def fit_parents(lightcurves: pd.DataFrame, *, band_wavelengths: Mapping[str, float], gp_kwargs: Mapping
                ) -> dict[str, ParentGP]:
    """Fit the batched GP to the given objects; usable (``fit_ok``) fits as :class:`ParentGP`.

    ``gp_kwargs`` are the remaining :func:`deeprubin.tasks.transients.preprocess.gp.fit_gp_grid`
    arguments (the preprocess configuration), so parents are fitted exactly as in
    preprocessing.
    """
    grid = gpmod.fit_gp_grid(lightcurves, band_wavelengths=band_wavelengths, **gp_kwargs)
    band_names = [str(b) for b in band_wavelengths]
    wavelengths = np.array([float(band_wavelengths[b]) for b in band_names])
    before, after = float(gp_kwargs["window_before_days"]), float(gp_kwargs["window_after_days"])
    margin = float(gp_kwargs["fit_margin_days"])
    object_ids, objects = gpmod._prepare(lightcurves, band_names, wavelengths, -before - margin, after + margin,
                                         int(gp_kwargs["max_points"]))
    diag = grid.diagnostics
    parents = {}
    for k, (oid, o) in enumerate(zip(object_ids.astype(str), objects)):
        if not bool(diag["fit_ok"].iloc[k]) or o.n == 0:
            continue
        parents[oid] = ParentGP(
            object_id=oid, t=o.t, wavelength=o.wavelength, band=o.band, y=o.y, y_err=o.y_err, t_ref=o.t_ref,
            flux_scale=o.flux_scale, amplitude=float(diag["amplitude"].iloc[k]),
            length_scale_time=float(diag["length_scale_time_days"].iloc[k]),
            length_scale_wavelength=float(diag["length_scale_wavelength_angstrom"].iloc[k]))
    return parents


def empty_tables(objects_columns: Sequence[str] = ("object_id", "label", "group_id", "source", "redshift")
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Augmented light curves and objects tables with no rows (right columns and dtypes)."""
    lightcurves = pd.DataFrame({
        "object_id": pd.Series([], dtype=object), "time": pd.Series([], dtype=float),
        "band": pd.Series([], dtype=object), "flux": pd.Series([], dtype=float),
        "flux_err": pd.Series([], dtype=float), "mag": pd.Series([], dtype=float),
        "mag_err": pd.Series([], dtype=float), "detected": pd.Series([], dtype=bool)})
    columns = list(dict.fromkeys([*objects_columns, *EXTRA_OBJECT_COLUMNS]))
    objects = pd.DataFrame({c: pd.Series([], dtype=float if c.startswith(("aug_", "redshift")) else object)
                            for c in columns})
    return lightcurves, objects


def augment_training_set(lightcurves: pd.DataFrame, objects: pd.DataFrame, manifest: pd.DataFrame,
                         settings: AugmentSettings, *, band_wavelengths: Mapping[str, float],
                         gp_kwargs: Mapping) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Augmented copies of the training objects of ``manifest``.

    Parameters
    ----------
    lightcurves, objects : pandas.DataFrame
        The canonical raw tables.
    manifest : pandas.DataFrame
        Split manifest (``object_id``, ``group_id``, ``label``, ``split``); only
        ``split == "train"`` objects are parents.
    settings : AugmentSettings
    band_wavelengths : Mapping[str, float]
    gp_kwargs : Mapping
        :func:`fit_gp_grid` arguments other than ``lightcurves`` and ``band_wavelengths``.

    Returns
    -------
    lightcurves : pandas.DataFrame
        :data:`LIGHTCURVE_COLUMNS`, sorted by object_id then time.
    objects : pandas.DataFrame
        The parent's objects row (group_id, label, source, ... ) with the copy's
        ``object_id``, new ``redshift`` and truth columns adjusted (see
        :func:`_adjust_truth`), plus :data:`EXTRA_OBJECT_COLUMNS`; sorted by object_id.
    report : dict
        Per class: training objects, usable parents, copies requested, made, skipped.
    """
    if not settings.enabled:
        lc, obj = empty_tables(objects.columns)
        return lc, obj, {"enabled": False}
    train = manifest.loc[manifest["split"] == "train", ["object_id", "label"]].astype(str)
    class_sizes = train["label"].value_counts().to_dict()
    train_lc = lightcurves[lightcurves["object_id"].astype(str).isin(set(train["object_id"]))]
    parents = fit_parents(train_lc, band_wavelengths=band_wavelengths, gp_kwargs=gp_kwargs)
    usable = train[train["object_id"].isin(parents.keys())]
    usable = usable[[parents[o].t.size >= settings.min_points for o in usable["object_id"]]]
    counts = copies_per_parent(usable, class_sizes, settings)

    band_names = [str(b) for b in band_wavelengths]
    wavelengths = np.array([float(band_wavelengths[b]) for b in band_names])
    obj_index = objects.assign(object_id=objects["object_id"].astype(str)).set_index("object_id")
    has_z = "redshift" in obj_index.columns
    lc_parts, meta_parts = [], []
    report = {"enabled": True, "mode": settings.mode, "per_class": {}}
    with _single_threaded_blas():
        for label in sorted(set(train["label"])):
            _augment_class(label, usable, counts, parents, obj_index, has_z, class_sizes, settings, band_names,
                           wavelengths, lc_parts, meta_parts, report)
    report["n_copies"] = int(sum(v["copies_made"] for v in report["per_class"].values()))
    report["n_truncated"] = int(sum(v["copies_truncated"] for v in report["per_class"].values()))

    if not meta_parts:
        lc, obj = empty_tables(objects.columns)
        return lc, obj, report
    aug_lc = pd.DataFrame({c: np.concatenate([p[c] for p in lc_parts]) for c in LIGHTCURVE_COLUMNS})
    meta = pd.DataFrame(meta_parts)
    parent_rows = obj_index.loc[meta["parent_id"]].reset_index()
    aug_obj = _adjust_truth(parent_rows, meta)
    aug_obj["object_id"] = meta["object_id"].to_numpy()
    aug_obj["parent_id"] = meta["parent_id"].to_numpy()
    aug_obj["split"] = "train"
    if has_z:
        aug_obj["redshift"] = meta["redshift"].to_numpy()
    for column in ("aug_redshift_factor", "aug_time_shift_days", "aug_drop_fraction", "aug_truncate_days"):
        aug_obj[column] = meta[column].to_numpy()
    order = [c for c in objects.columns if c in aug_obj.columns] + list(EXTRA_OBJECT_COLUMNS)
    aug_obj = aug_obj[list(dict.fromkeys(order))].sort_values("object_id", kind="mergesort").reset_index(drop=True)
    aug_lc = aug_lc.sort_values(["object_id", "time"], kind="mergesort").reset_index(drop=True)
    return aug_lc, aug_obj, report


def _augment_class(label, usable, counts, parents, obj_index, has_z, class_sizes, settings, band_names,
                   wavelengths, lc_parts, meta_parts, report) -> None:
    """Copies of one class's parents, appended to ``lc_parts``/``meta_parts``; its report entry."""
    ids = sorted(usable.loc[usable["label"] == label, "object_id"])
    requested = made = skipped = truncated = 0
    for oid in ids:
        n = counts.get(oid, 0)
        if n == 0:
            continue
        z = float(obj_index.at[oid, "redshift"]) if has_z else math.nan
        lcs, meta, n_skip = augment_parent(parents[oid], n, settings, redshift=z,
                                           apply_redshift=label in settings.redshift_classes,
                                           band_names=band_names, band_wavelengths=wavelengths)
        lc_parts += lcs
        meta_parts += meta
        requested, made, skipped = requested + n, made + len(meta), skipped + n_skip
        truncated += sum(not math.isnan(m["aug_truncate_days"]) for m in meta)
    report["per_class"][label] = {"n_train": int(class_sizes.get(label, 0)), "n_usable_parents": len(ids),
                                  "copies_requested": requested, "copies_made": made, "copies_skipped": skipped,
                                  "copies_truncated": truncated}


def _single_threaded_blas():
    """One BLAS thread for the many small per-copy matrices (multi-threaded BLAS only adds
    synchronisation there, and stalls badly when other processes share the cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _adjust_truth(parent_rows: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """Parent objects rows with simulator truth moved like the light curve.

    ``truth_peak_mjd`` follows the time mapping ``t -> t_ref + shift + f (t - t_ref)``,
    ``truth_*_days`` time scales are multiplied by the dilation ``f`` and apparent
    ``truth_peak_mag_*`` / ``truth_mean_mag_*`` change by ``-2.5 log10(dimming)``.
    """
    rows = parent_rows.copy()
    stretch = meta["aug_redshift_factor"].to_numpy()
    if "truth_peak_mjd" in rows:
        t_ref = meta["aug_t_ref"].to_numpy()
        rows["truth_peak_mjd"] = (t_ref + meta["aug_time_shift_days"].to_numpy()
                                  + stretch * (rows["truth_peak_mjd"].to_numpy() - t_ref))
    for column in rows.columns:
        if column.startswith("truth_") and column.endswith("_days"):
            rows[column] = rows[column].to_numpy() * stretch
        elif column.startswith(("truth_peak_mag_", "truth_mean_mag_")):
            rows[column] = rows[column].to_numpy() - 2.5 * np.log10(meta["aug_dimming"].to_numpy())
    return rows
