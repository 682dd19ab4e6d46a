"""The stellar task's sources: the spectrum simulator and the real Kepler stars, as raw tables.

The simulated spectra are the task's objects (``object_id`` = the spectrum, ``group_id`` = its
star, so a star's epochs never straddle splits). The Kepler stars are read only when the
catalogue is there (``source.kepler.path``; the project runs without it) and are split on
their own by the ``stellar_sed`` stage, so their presence never changes the simulated split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ...core.config import ConfigError
from .readers import read_kepler_stellar
from .simulate import StellarSample, mk_class, simulate_sample

#: Columns of the Kepler table when the catalogue is absent (so the file always has its schema).
KEPLER_COLUMNS = ("star_id", "kepid", "label", "teff", "teff_err", "logg", "logg_err", "feh", "feh_err")


def source_settings(cfg: DictConfig) -> dict:
    """The simulator's settings: ``source`` with the task's class names and Teff edges."""
    settings = OmegaConf.to_container(cfg.source, resolve=True)
    for key in ("kepler", "name"):
        settings.pop(key, None)
    settings.update(classes=list(cfg.task.classes), teff_edges=list(cfg.task.teff_edges))
    return settings


def load_sample(cfg: DictConfig) -> tuple[StellarSample, dict]:
    """The simulated survey (seed ``data_seed``) with ``object_id`` and ``group_id`` columns, and a report."""
    sample = simulate_sample(source_settings(cfg), seed=int(cfg.data_seed))
    spectra = sample.spectra
    spectra.insert(0, "object_id", spectra["spectrum_id"].astype(str))
    spectra.insert(1, "group_id", spectra["star_id"].astype(str))
    counts = spectra.groupby("label").size()
    report = {"source": "simulate", "n_spectra": int(len(spectra)), "n_stars": int(spectra["star_id"].nunique()),
              "n_pixels": int(len(sample.wave)), "spectra_per_class": {str(k): int(v) for k, v in counts.items()},
              "median_snr": float(np.median(spectra["snr"])),
              "masked_pixel_fraction": float(np.mean(sample.mask))}
    return sample, report


def load_kepler(node: Mapping | None, classes=None, edges=None) -> tuple[pd.DataFrame, dict]:
    """The real Kepler stars, one row per star with its MK class from the catalogue Teff, and a
    report; an empty table (``status`` disabled or absent) when ``node.path`` is null or missing."""
    empty = pd.DataFrame({c: pd.Series(dtype="float64" if c not in ("star_id", "label") else "object")
                          for c in KEPLER_COLUMNS})
    path = None if node is None else node.get("path")
    if not path:
        return empty, {"status": "disabled"}
    path = Path(str(path))
    if not path.exists():
        return empty, {"status": "absent", "path": str(path)}
    if classes is None or edges is None:
        raise ConfigError("load_kepler: the task's 'task.classes' and 'task.teff_edges' are needed to label stars")
    table, report = read_kepler_stellar(path)
    table.insert(2, "label", mk_class(table["teff"].to_numpy(), list(classes), list(edges)))
    counts = table.groupby("label").size()
    return table, {"status": "read", "path": str(path), **report,
                   "stars_per_class": {str(k): int(v) for k, v in counts.items()}}
