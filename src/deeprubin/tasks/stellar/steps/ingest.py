"""The stellar task's ``ingest`` step (see :mod:`deeprubin.tasks.stellar.steps`): the simulated
spectroscopic survey and, when its file is there, the real Kepler stars."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from ....core import io
from ....core.config import require
from ..source import load_sample, load_kepler


def ingest(cfg: DictConfig) -> dict:
    """Write ``objects.parquet`` (one row per spectrum: the split unit is its star,
    ``group_id``), ``stars.parquet``, ``spectra.npz``, ``kepler_stars.parquet`` (empty when the
    real catalogue is absent) and ``ingest_report.json``."""
    require(cfg, "source.name", choices=("simulate",))
    out = io.check_writable(Path(cfg.paths.raw), "paths.raw folder")
    sample, report = load_sample(cfg)
    kepler, kepler_report = load_kepler(cfg.source.get("kepler"), cfg.task.classes, cfg.task.teff_edges)
    io.write_parquet(sample.spectra, out / "objects.parquet")
    io.write_parquet(sample.stars, out / "stars.parquet")
    io.write_npz(out / "spectra.npz", wave=sample.wave, flux=sample.flux, ivar=sample.ivar, mask=sample.mask)
    io.write_parquet(kepler, out / "kepler_stars.parquet")
    report = {**report, "kepler": kepler_report}
    io.write_json(report, out / "ingest_report.json")
    return report
