"""The transits task's ``preprocess`` step (see :mod:`deeprubin.tasks.transits.steps`): every light
curve cleaned, flattened, segmented and labelled (:func:`deeprubin.tasks.transits.dataset.preprocess_tables`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ....core import io
from ..dataset import preprocess_tables

log = logging.getLogger(__name__)


def preprocess(cfg: DictConfig) -> dict:
    """Write ``segments.npz`` (x), ``segments.parquet``, ``flat.parquet`` and the report."""
    raw = Path(cfg.paths.raw)
    x, segments, flat, report = preprocess_tables(
        io.read_parquet(raw / "lightcurves.parquet"), io.read_parquet(raw / "objects.parquet"),
        io.read_parquet(raw / "ephemerides.parquet"), cfg.preprocess, raw_dir=str(raw))
    out = Path(cfg.paths.processed)
    io.write_npz(out / "segments.npz", x=x)
    io.write_parquet(segments, out / "segments.parquet")
    io.write_parquet(flat, out / "flat.parquet")
    io.write_json(report, out / "preprocess_report.json")
    log.info("preprocess transits: %d segments (%d positive) from %d light curves; skipped %s",
             report["n_segments"], report["n_positive_segments"], report["n_lightcurves_used"], report["skipped"])
    return report
