"""Augment stage: GP-drawn copies of the training objects, and their GP grid.

Reads the raw tables and the split manifest, draws augmented copies of the
*training* objects (:mod:`deeprubin.tasks.transients.preprocess.augment`), writes them to
``paths.augmented`` (``lightcurves.parquet``, ``objects.parquet``) and fits them with
the same batched GP and parameters as the preprocess stage (``gp_grid.npz``,
``gp_fits.parquet``). With ``augment.enabled: false`` (the default, ``augment=none``)
it writes the same files with no objects, so the DVC graph is the same either way.
The train stage appends these grids to the training split only
(:func:`augmented_train_arrays`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.entry import hydra_entry
from ..tasks.transients.preprocess.augment import augment_training_set, empty_tables, parse_settings
from ..tasks.transients.preprocess.gp import fit_gp_grid, save_gp_grid
from ..tasks.transients.features.extract import extract_features, feature_columns
from ..tasks.transients.preprocess.inputs import check_preprocess_config, feature_config, gp_input, gp_kwargs
from ..tasks.transients.training.augmented import check_parents_in_train

log = logging.getLogger(__name__)


def run_augment(cfg: DictConfig) -> dict:
    """Write augmented light curves, objects, their GP grid, their features and ``augment_report.json``.

    The features (``preprocess.features``, as the preprocess step extracts them for the real
    objects) feed the fusion model's feature and folded-view branches.
    """
    node = cfg.get("augment")
    settings = parse_settings(None if node is None else OmegaConf.to_container(node, resolve=True),
                              list(cfg.task.classes))
    check_preprocess_config(cfg)
    band_wavelengths = dict(cfg.task.band_wavelengths)
    kwargs = gp_kwargs(cfg)
    out = Path(cfg.paths.augmented)
    start = time.perf_counter()
    if settings.enabled:
        lightcurves = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
        objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
        manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
        aug_lc, aug_obj, report = augment_training_set(lightcurves, objects, manifest, settings,
                                                       band_wavelengths=band_wavelengths, gp_kwargs=kwargs)
        check_parents_in_train(aug_obj, manifest)
    else:
        aug_lc, aug_obj = empty_tables()
        report = {"enabled": False}
    grid = fit_gp_grid(gp_input(aug_lc, cfg), band_wavelengths=band_wavelengths, progress=False, **kwargs)
    io.write_parquet(aug_lc, out / "lightcurves.parquet")
    io.write_parquet(aug_obj, out / "objects.parquet")
    save_gp_grid(grid, out / "gp_grid.npz", out / "gp_fits.parquet")
    bands = [str(b) for b in band_wavelengths]
    features_cfg = feature_config(cfg)
    features = (extract_features(aug_lc, bands, features_cfg, aug_obj) if len(aug_lc) else
                pd.DataFrame({c: pd.Series(dtype=object if c == "object_id" else float)
                              for c in ["object_id", *feature_columns(bands, features_cfg)]}))
    io.write_parquet(features, out / "features.parquet")
    diag = grid.diagnostics
    # No timing in the report: a DVC output must not change when nothing else did.
    report.update({"n_objects": int(len(diag)), "n_fit_ok": int(diag["fit_ok"].sum())})
    io.write_json(report, out / "augment_report.json")
    log.info("augment: %d augmented training light curves (%s) in %.1f s", report["n_objects"],
             "enabled" if settings.enabled else "disabled", time.perf_counter() - start)
    return report


main = hydra_entry(run_augment, task="transients")

if __name__ == "__main__":
    main()
