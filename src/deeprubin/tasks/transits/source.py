"""The transits task's sources: its survey simulator or a loader of the shared source registry,
read into the task's raw tables (light curves, objects, ephemerides).

``source.name: simulate`` runs the task's own survey simulator (:mod:`.simulate`), which knows
the truth of every transit. Any other name is a loader of the shared source registry
(:data:`deeprubin.sources.SOURCES`, picked by ``source._target_`` like the transients task's):
``lightkurve`` (MAST, or local FITS files) and ``files`` (local CSV/FITS tables, e.g.
``transits/source=files_k2``). Their canonical tables are validated against the task's bands
(the missions) and star labels, then turned into the task's raw tables by
:func:`.real.to_transit_tables`, with the ephemerides the source carries or ``ephemerides.path``
names. The ingest step writes them; the predict step scores them.
"""
from __future__ import annotations

import logging

from omegaconf import DictConfig

from ...core.config import ConfigError, require
from ...core.config_schema import check_node
from ...core.schema import validate_tables
from ...sources import SOURCES, resolve_loader
from .config_schema import TransitsSimulateSchema
from .real import read_ephemerides, to_transit_tables
from .simulate import simulate_survey

log = logging.getLogger(__name__)


def check_simulate_config(cfg) -> None:
    """Raise :class:`ConfigError` naming the first unknown, mistyped or impossible
    ``tasks.transits.source`` key of the simulator."""
    check_node("tasks.transits.source", TransitsSimulateSchema, cfg)
    require(cfg, "n_stars", at_least=3)
    for key in ("planet_fraction", "eb_fraction", "both_missions_fraction", "tess_fraction"):
        value = require(cfg, key, at_least=0)
        if value > 1:
            raise ConfigError(f"config key 'tasks.transits.source.{key}' must be <= 1, got {value}")
    if float(cfg.planet_fraction) + float(cfg.eb_fraction) > 1:
        raise ConfigError("config keys 'tasks.transits.source.planet_fraction' + 'eb_fraction' must be <= 1")
    require(cfg, "min_transits", at_least=1)


def simulate_tables(cfg: DictConfig):
    """The task's survey simulator (``source.name: simulate``), seeded by ``data_seed``."""
    check_simulate_config(cfg.source)
    survey = simulate_survey(cfg.source, seed=int(cfg.data_seed))
    log.info("transits source: %d simulated light curves of %d stars (%s)", len(survey.objects), int(cfg.source.n_stars),
             survey.report["per_label"])
    return survey.lightcurves, survey.objects, survey.ephemerides, survey.report


def registry_tables(cfg: DictConfig):
    """A registry source (its ``_target_``), validated, turned into the task's tables at the task's
    ``cadence_minutes`` with the ephemerides the source carries or ``ephemerides.path`` names."""
    name = str(cfg.source.name)
    validation = cfg.source.get("validation") or {}
    lightcurves, objects = resolve_loader(cfg.source)(cfg)   # its _target_, checked against SOURCES
    lightcurves, objects, report = validate_tables(
        lightcurves, objects, classes=list(cfg.task.classes), bands=list(cfg.task.band_wavelengths),
        min_points=int(validation.get("min_points", 3)), min_bands=1,
        on_invalid=str(validation.get("on_invalid", "raise")), table=f"source '{name}'")
    if objects.empty:
        raise ValueError(f"source '{name}': no valid objects left after validation")
    path = (cfg.get("ephemerides") or {}).get("path")
    known = read_ephemerides(path) if path else None
    lc, obj, eph = to_transit_tables(lightcurves, objects, dict(cfg.cadence_minutes), known,
                                     where=f"source '{name}'")
    summary = {"source": name, "n_lightcurves": int(len(obj)), "n_stars": int(obj["target_id"].nunique()),
               "n_observations": int(len(lc)), "n_ephemerides": int(len(eph)),
               "per_label": {k: int(v) for k, v in obj["label"].value_counts().sort_index().items()},
               "per_mission": {k: int(v) for k, v in obj["mission"].value_counts().sort_index().items()},
               "validation": report.as_dict()}
    log.info("transits source: %d light curves of %d stars from source '%s' (%d ephemerides)",
             summary["n_lightcurves"], summary["n_stars"], name, summary["n_ephemerides"])
    return lc, obj, eph, summary


def load_source_tables(cfg: DictConfig):
    """``(lightcurves, objects, ephemerides, report)`` of the task's ``source`` (simulator or registry)."""
    name = require(cfg, "source.name", choices=("simulate", *SOURCES))
    return simulate_tables(cfg) if name == "simulate" else registry_tables(cfg)
