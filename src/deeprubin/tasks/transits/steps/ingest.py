"""The transits task's ``ingest`` step (see :mod:`deeprubin.tasks.transits.steps`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ....core import io
from ....core.config import ConfigError, require
from ..simulate import simulate_survey

log = logging.getLogger(__name__)


#: The sources this task reads so far.
SOURCES = ("simulate",)


def check_simulate_config(cfg) -> None:
    """Raise :class:`ConfigError` naming the first impossible ``tasks.transits.source`` key."""
    require(cfg, "n_stars", at_least=3)
    for key in ("planet_fraction", "eb_fraction", "both_missions_fraction", "tess_fraction"):
        value = require(cfg, key, at_least=0)
        if value > 1:
            raise ConfigError(f"config key 'tasks.transits.source.{key}' must be <= 1, got {value}")
    if float(cfg.planet_fraction) + float(cfg.eb_fraction) > 1:
        raise ConfigError("config keys 'tasks.transits.source.planet_fraction' + 'eb_fraction' must be <= 1")
    require(cfg, "min_transits", at_least=1)


def ingest(cfg: DictConfig) -> dict:
    """Write ``lightcurves.parquet``, ``objects.parquet``, ``ephemerides.parquet`` and a report."""
    sim = cfg.source
    require(sim, "name", choices=SOURCES)
    check_simulate_config(sim)
    survey = simulate_survey(sim, seed=int(cfg.data_seed))
    out = Path(cfg.paths.raw)
    io.write_parquet(survey.lightcurves, out / "lightcurves.parquet")
    io.write_parquet(survey.objects, out / "objects.parquet")
    io.write_parquet(survey.ephemerides, out / "ephemerides.parquet")
    io.write_json(survey.report, out / "ingest_report.json")
    log.info("ingest transits: %d light curves of %d stars (%s)", len(survey.objects), int(sim.n_stars),
             survey.report["per_label"])
    return survey.report
