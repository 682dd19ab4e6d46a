"""The transients task's ``ingest`` step (see :mod:`deeprubin.tasks.transients.steps`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ....core import io
from ....core.config import ConfigError, require
from ....core.quality import check_quality_config, quality_table, summary as quality_summary
from ....core.schema import validate_tables
from ....sources import SOURCES, resolve_loader

log = logging.getLogger(__name__)


def ingest(cfg: DictConfig) -> dict:
    """Load the configured source, validate both tables, write them to ``paths.raw``.

    Returns the ingest report (also written as ``ingest_report.json``).
    """
    source_name = require(cfg, "source.name", choices=SOURCES)
    on_invalid = require(cfg, "source.validation.on_invalid", choices=("raise", "drop"))
    min_points = int(require(cfg, "source.validation.min_points", at_least=1))
    min_bands = int(require(cfg, "source.validation.min_bands", at_least=1))
    if min_bands > len(cfg.task.band_wavelengths):
        raise ConfigError(f"config key 'source.validation.min_bands' = {min_bands} exceeds the "
                          f"{len(cfg.task.band_wavelengths)} bands of task.band_wavelengths")
    quality_cfg = check_quality_config(cfg.get("quality"))  # before the source is read
    out = io.check_writable(Path(cfg.paths.raw), "paths.raw folder")
    lightcurves, objects = resolve_loader(cfg.source)(cfg)  # its _target_, checked against SOURCES
    lightcurves, objects, validation = validate_tables(
        lightcurves, objects, classes=list(cfg.task.classes), bands=list(cfg.task.band_wavelengths),
        min_points=min_points, min_bands=min_bands, on_invalid=on_invalid, table=f"source '{source_name}'",
    )
    if objects.empty:
        raise ValueError(f"source '{source_name}': no valid objects left after validation")
    quality = quality_summary(quality_table(lightcurves, quality_cfg, objects), quality_cfg["unusable"])
    io.write_parquet(lightcurves, out / "lightcurves.parquet")
    io.write_parquet(objects, out / "objects.parquet")
    report = {
        "source": source_name,
        "n_objects": len(objects),
        "n_observations": len(lightcurves),
        "objects_per_label": objects["label"].value_counts().sort_index().to_dict(),
        "observations_per_object_median": float(lightcurves.groupby("object_id").size().median()),
        "validation": validation.as_dict(),
        "quality": quality,
    }
    io.write_json(report, out / "ingest_report.json")
    log.info("ingest: %d objects, %d observations -> %s", len(objects), len(lightcurves), out)
    if quality["n_flagged"]:
        log.warning("ingest: %d object(s) with data-quality flags %s (%d unusable for prediction); listed in "
                    "%s under 'quality'", quality["n_flagged"], {k: v for k, v in quality["by_flag"].items() if v},
                    quality["n_unusable"], out / "ingest_report.json")
    return report
