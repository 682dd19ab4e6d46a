"""What the GP sees and how it is configured: shared by the preprocess and augment stages and
the predict path (which reads the settings from a checkpoint's config)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core.config import ConfigError, require
from .gp import OPTIMIZERS, check_hyper_max_points

log = logging.getLogger(__name__)

#: Signal-to-noise of a detection where a table has no ``detected`` column (the schema's definition).
DETECTION_SNR = 5.0


def check_preprocess_config(cfg: DictConfig) -> None:
    for key in ("window_before_days", "window_after_days", "n_iter", "learning_rate", "batch_size", "max_points"):
        require(cfg, f"preprocess.{key}", positive=True)
    require(cfg, "preprocess.n_grid", at_least=2)
    require(cfg, "preprocess.fit_margin_days", at_least=0)
    require(cfg, "preprocess.tol", at_least=0)
    wl = cfg.preprocess.wavelength_length_scale
    if wl is not None and not wl > 0:
        raise ConfigError(f"config key 'preprocess.wavelength_length_scale' must be > 0 or null, got {wl!r}")
    optimizer = cfg.preprocess.get("optimizer", "newton")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"config key 'preprocess.optimizer' must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    hyper = cfg.preprocess.get("hyper_max_points")
    try:
        check_hyper_max_points(hyper, len(cfg.task.band_wavelengths))
    except ValueError as exc:
        raise ConfigError(f"config key 'preprocess.hyper_max_points': {exc}") from exc
    for band, wavelength in cfg.task.band_wavelengths.items():
        if not wavelength > 0:
            raise ConfigError(f"config key 'task.band_wavelengths.{band}' must be > 0 Angstrom, got {wavelength!r}")
    feature_config(cfg)


def feature_config(cfg: DictConfig):
    """The light-curve feature options, ``cfg.preprocess.features`` (checked; errors name the key).

    A checkpoint written before the features moved into ``preprocess`` has none: the defaults.
    """
    from ..features.extract import FeatureConfig

    return FeatureConfig.from_config(cfg.preprocess.get("features"))


def gp_kwargs(cfg: DictConfig) -> dict:
    """The :func:`fit_gp_grid` arguments from ``cfg.preprocess`` (shared with the augment stage)."""
    p = cfg.preprocess
    return dict(
        window_before_days=float(p.window_before_days),
        window_after_days=float(p.window_after_days),
        n_grid=int(p.n_grid),
        fit_margin_days=float(p.fit_margin_days),
        max_points=int(p.max_points),
        n_iter=int(p.n_iter),
        learning_rate=float(p.learning_rate),
        batch_size=int(p.batch_size),
        tol=float(p.tol),
        wavelength_length_scale=None if p.wavelength_length_scale is None else float(p.wavelength_length_scale),
        device=str(p.device),
        seed=int(cfg.data_seed),
        # absent from configs older than the setting (e.g. a checkpoint's): fit on all points
        hyper_max_points=p.get("hyper_max_points"),
        optimizer=str(p.get("optimizer", "newton")),  # absent from older configs: the Newton fit
    )


def gp_input(lightcurves: pd.DataFrame, cfg: DictConfig) -> pd.DataFrame:
    """The rows the GP sees: all of them, or only detections with ``preprocess.detections_only``.

    Alert streams (ZTF/ALeRCE, BTS photometry) carry detections only (flux / flux_err >= 5),
    while forced photometry (the simulator's default) also has faint and negative epochs.
    ``detections_only: true`` gives training the same view of the sky as alert data; the
    predict path reads the flag from the checkpoint's config, so both sides agree. Absent
    from old configs = ``false``. Without a ``detected`` column, detected means
    flux / flux_err >= 5 (the schema's definition). An object with no detection keeps its
    first row, so no object disappears from the grid.
    """
    if not bool(cfg.preprocess.get("detections_only", False)):
        return lightcurves
    if "detected" in lightcurves.columns:
        detected = lightcurves["detected"].astype(bool).to_numpy()
    else:   # the optional column's definition (deeprubin.core.schema): flux / flux_err >= 5
        with np.errstate(divide="ignore", invalid="ignore"):
            detected = (lightcurves["flux"] / lightcurves["flux_err"]).to_numpy() >= DETECTION_SNR
    # An object with no detection at all keeps its first row (it gets fitted on that faint
    # point alone), so the grid still has every object. Row order is kept.
    oid = lightcurves["object_id"].astype(str)
    has_detection = pd.Series(detected, index=lightcurves.index).groupby(oid).transform("any").to_numpy()
    orphan_first = ~oid.duplicated().to_numpy() & ~has_detection
    if orphan_first.any():
        log.info("preprocess.detections_only: %d object(s) without any detection keep one point",
                 int(orphan_first.sum()))
    kept = lightcurves.loc[detected | orphan_first]
    return kept.reset_index(drop=True)
