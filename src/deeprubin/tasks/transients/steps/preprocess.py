"""The transients task's ``preprocess`` step (see :mod:`deeprubin.tasks.transients.steps`)."""
from __future__ import annotations

import logging
from pathlib import Path
import time

from omegaconf import DictConfig

from ....core import io
from ..features.extract import extract_features
from ..preprocess.gp import fit_gp_grid, save_gp_grid
from ..preprocess.inputs import check_preprocess_config, feature_config, gp_input, gp_kwargs

log = logging.getLogger(__name__)


def preprocess(cfg: DictConfig) -> dict:
    """Fit one GP per object (in batches), extract its light-curve features; write both and a report."""
    check_preprocess_config(cfg)
    p = cfg.preprocess
    lightcurves = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    start = time.perf_counter()
    grid = fit_gp_grid(gp_input(lightcurves, cfg), band_wavelengths=dict(cfg.task.band_wavelengths), **gp_kwargs(cfg))
    elapsed = time.perf_counter() - start
    out = Path(cfg.paths.processed)
    save_gp_grid(grid, out / "gp_grid.npz", out / "gp_fits.parquet")
    start_features = time.perf_counter()
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")   # redshifts, for absolute magnitudes
    features = extract_features(lightcurves, list(cfg.task.band_wavelengths), feature_config(cfg), objects)
    features_s = time.perf_counter() - start_features
    io.write_parquet(features, out / "features.parquet")
    diag = grid.diagnostics
    failed = diag.loc[~diag["fit_ok"].astype(bool)]
    report = {
        "n_objects": int(len(diag)),
        "n_fit_ok": int(diag["fit_ok"].sum()),
        "n_fit_failed": int(len(failed)),
        "failed_objects": dict(zip(failed["object_id"].astype(str), failed["message"].astype(str))),
        "median_n_iter": float(diag["n_iter"].median()),
        "hyper_max_points": p.get("hyper_max_points"),
        "n_hyper_subset": int(((diag["n_points_hyper"] > 0) & (diag["n_points_hyper"] < diag["n_points"])).sum()),
        "median_length_scale_time_days": float(diag["length_scale_time_days"].median()),
        "grid": {"n_grid": int(p.n_grid), "window_days": [-float(p.window_before_days), float(p.window_after_days)],
                 "bands": list(cfg.task.band_wavelengths)},
        "normalisation": "flux / flux_scale per object (flux_scale stored in gp_grid.npz)",
        "detections_only": bool(p.get("detections_only", False)),
        "n_features": int(features.shape[1] - 1),
    }
    io.write_json(report, out / "preprocess_report.json")
    log.info("preprocess: %d objects (%d failed fits) in %.1f s (%.0f objects/s)",
             report["n_objects"], report["n_fit_failed"], elapsed, report["n_objects"] / max(elapsed, 1e-9))
    log.info("preprocess: %d light-curve features of %d objects in %.1f s", report["n_features"], len(features),
             features_s)
    return report
