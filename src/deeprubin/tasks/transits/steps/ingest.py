"""The transits task's ``ingest`` step (see :mod:`deeprubin.tasks.transits.steps`): the task's
source (its survey simulator or a registry loader, :mod:`deeprubin.tasks.transits.source`) read
into its raw tables."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ....core import io
from ....core.config import require
from ....sources import SOURCES
from ..source import load_source_tables


def ingest(cfg: DictConfig) -> dict:
    """Write ``lightcurves.parquet``, ``objects.parquet``, ``ephemerides.parquet`` and a report."""
    require(cfg, "source.name", choices=("simulate", *SOURCES))
    out = io.check_writable(Path(cfg.paths.raw), "paths.raw folder")
    lightcurves, objects, ephemerides, report = load_source_tables(cfg)
    io.write_parquet(lightcurves, out / "lightcurves.parquet")
    io.write_parquet(objects, out / "objects.parquet")
    io.write_parquet(ephemerides, out / "ephemerides.parquet")
    io.write_json(report, out / "ingest_report.json")
    return report
