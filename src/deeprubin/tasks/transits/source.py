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
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ...core.config import ConfigError, require
from ...core.config_schema import check_node
from ...core.schema import validate_tables
from ...sources import SOURCES, resolve_loader
from .config_schema import TransitsSimulateSchema
from .real import RealDataError, read_ephemerides, to_transit_tables
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
    ``task.cadence_minutes`` with the ephemerides the source carries or ``ephemerides.path`` names."""
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
    lc, obj, eph = to_transit_tables(lightcurves, objects, dict(cfg.task.cadence_minutes), known,
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


#: How a real target's file goes into its source config (``real.sources.<format>``), by source name.
FILE_KEYS = {"lightkurve": lambda path: {"local": {"paths": [str(path)], "pattern": path.name}},
             "files": lambda path: {"path": str(path.parent), "glob": path.name}}


def read_target(cfg: DictConfig, target, root: Path, cadence_minutes: float) -> dict:
    """One real target's light curve read through the task's registry source, as ingest reads it.

    ``target.format`` names the source config in ``real.sources`` (an option of
    ``tasks/transits/source``: ``lightkurve`` in local-file mode for MAST FITS, ``files_k2`` for
    the header-less K2 CSVs); the target's ``file`` (under ``root``) is given to it, and
    :func:`registry_tables` validates the light curve and bins it to ``cadence_minutes``.

    Returns
    -------
    dict
        ``time`` (the mission's own system), ``flux``, ``flux_err``, ``quality`` arrays.

    Raises
    ------
    RealDataError
        Naming the target: a missing file, a format without a source config, a source whose
        file key is unknown, another mission than the target's, not exactly one light curve.
    """
    name, mission = str(target.name), str(target.mission)
    path = root / str(target.file)
    if not path.exists():
        raise RealDataError(f"{path}: no such file (real target {name})")
    formats = cfg.real.get("sources") or {}
    fmt = str(target.format)
    if fmt not in formats:
        raise RealDataError(f"real target {name}: format {fmt!r} has no source config in "
                            f"tasks.transits.real.sources (known: {sorted(formats)})")
    source = formats[fmt]
    if str(source.get("name")) not in FILE_KEYS:
        raise RealDataError(f"real target {name}: tasks.transits.real.sources.{fmt} is source "
                            f"{source.get('name')!r}, which takes no single file; use one of {sorted(FILE_KEYS)}")
    view = OmegaConf.merge(cfg, {"task": {"cadence_minutes": {mission: float(cadence_minutes)}},
                                 "ephemerides": {"path": None}})
    view.source = OmegaConf.merge(source, FILE_KEYS[str(source.name)](path))   # replaces the task's own source
    lightcurves, objects, _, _ = registry_tables(view)
    if len(objects) != 1:
        raise RealDataError(f"{path}: real target {name}: the source read {len(objects)} light curves, expected one")
    if objects["mission"].iloc[0] != mission:
        raise RealDataError(f"{path}: real target {name} is a {mission} target but the file is "
                            f"{objects['mission'].iloc[0]}'s")
    return {"time": lightcurves["time"].to_numpy(dtype=float), "flux": lightcurves["flux"].to_numpy(dtype=float),
            "flux_err": lightcurves["flux_err"].to_numpy(dtype=float),
            "quality": lightcurves["quality"].to_numpy(dtype=np.int64)}
