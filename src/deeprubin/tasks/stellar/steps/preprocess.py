"""The stellar task's ``preprocess`` step (see :mod:`deeprubin.tasks.stellar.steps`): the spectra
as network inputs on one rest-frame grid, and the stars' SEDs as tabular features."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ....core import io
from ..preprocess import spectra_to_inputs
from ..sed import assemble_sed

log = logging.getLogger(__name__)


def preprocess(cfg: DictConfig) -> dict:
    """Write ``spectra.npz`` (``x`` (n, 3, n_grid): normalised flux, its error, the mask;
    ``grid`` rest-frame wavelengths [A]; ``object_id``), ``sed.parquet`` (simulated stars) and
    ``sed_kepler.parquet`` (real stars; empty without the catalogue), and a report."""
    raw, out = Path(cfg.paths.raw), io.check_writable(Path(cfg.paths.processed), "paths.processed folder")
    pre = cfg.preprocess
    objects = io.read_parquet(raw / "objects.parquet")
    spectra = io.read_npz(raw / "spectra.npz")
    if len(objects) != len(spectra["flux"]):
        raise ValueError(f"{raw}: objects.parquet has {len(objects)} rows but spectra.npz {len(spectra['flux'])} "
                         "spectra; rerun ingest@stellar")
    x, grid = spectra_to_inputs(spectra["wave"], spectra["flux"], spectra["ivar"], spectra["mask"],
                                objects["rv"].to_numpy(float), OmegaConf.to_container(pre.grid, resolve=True),
                                OmegaConf.to_container(pre.continuum, resolve=True), float(pre.error_clip))
    io.write_npz(out / "spectra.npz", x=x.astype(np.float32), grid=grid,
                 object_id=np.asarray(objects["object_id"].astype(str), dtype=str))
    stars = io.read_parquet(raw / "stars.parquet")
    sed, sed_report = assemble_sed(stars, list(pre.sed.bands), OmegaConf.to_container(pre.sed.options, resolve=True))
    io.write_parquet(sed, out / "sed.parquet")
    kepler = io.read_parquet(raw / "kepler_stars.parquet")
    if len(kepler):
        sed_kepler, kepler_report = assemble_sed(kepler, list(pre.sed_kepler.bands),
                                                 OmegaConf.to_container(pre.sed_kepler.options, resolve=True))
    else:
        sed_kepler, kepler_report = kepler[["star_id"]].copy(), {"status": "no Kepler stars"}
    io.write_parquet(sed_kepler, out / "sed_kepler.parquet")
    report = {"n_spectra": int(len(x)), "n_grid": int(len(grid)), "grid_angstrom": [float(grid[0]), float(grid[-1])],
              "masked_fraction": float(x[:, 2].mean()), "sed": sed_report, "sed_kepler": kepler_report}
    io.write_json(report, out / "preprocess_report.json")
    log.info("preprocess stellar: %d spectra on %d pixels (%.0f-%.0f A rest frame), %.1f %% masked; %d + %d SEDs",
             len(x), len(grid), grid[0], grid[-1], 100 * report["masked_fraction"], len(sed), len(sed_kepler))
    return report
