"""Typed schemas of the config nodes every run reads, so that a typo'd or mistyped key fails.

Hydra composes ``conf/`` without knowing which keys the code reads, so a key added with a
typo (``preprocess.n_gird: 30``) would be silently ignored, and ``trainer.max_epochs: ten``
would fail deep inside training. :func:`check_schema` merges each node below into its
dataclass in OmegaConf's struct mode: an unknown key or a value of the wrong type raises
:class:`~deeprubin.core.config.ConfigError` naming the key, before the stage does any work. The
stage entry (``hydra_entry``) calls it; DVC's own composition of ``params.yaml`` does not
need it (it runs no project code).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from .config import ConfigError, task_names


@dataclass
class PathsSchema:
    """The paths every task has: what the generic stages read and write (``tasks.<task>.paths``)."""
    raw: str = MISSING           # ingest: the canonical tables
    processed: str = MISSING     # preprocess: the examples
    splits: str = MISSING        # split: manifest.parquet
    train_inputs: str = MISSING  # what train reads besides the split (a task's own stage output, or processed)
    models: str = MISSING        # train: model.ckpt, config.yaml, history.csv
    reports: str = MISSING       # evaluate: figures/, evaluation/
    metrics: str = MISSING       # evaluate: its metrics file (the task's metrics.json, or a part of it)
    baseline: str = MISSING      # the task's classical baseline, which evaluate compares against


@dataclass
class MlflowSchema:
    experiment: str = MISSING


@dataclass
class SplitSchema:
    name: str = "grouped"
    group_column: str = "group_id"
    fractions: Dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})


@dataclass
class CalibratorSelectionSchema:
    """``evaluate.calibration.select``: the rule of ``method: select`` (:func:`deeprubin.core.calibration_report.select_method`)."""
    folds: int = 5
    min_z: float = 2.0


@dataclass
class CalibrationSchema:
    """``evaluate.calibration`` of every task (:mod:`deeprubin.core.calibration_report`)."""
    method: str = "temperature"
    n_bins: int = 15
    per_class_bins: int = 10
    isotonic_floor: float = 1e-4
    floor_draws: int = 200
    select: CalibratorSelectionSchema = field(default_factory=CalibratorSelectionSchema)


@dataclass
class PredictSchema:
    """``predict`` of every task (the predict entry point, :mod:`deeprubin.stages.predict`)."""
    checkpoint: Optional[str] = None
    calibration: Optional[str] = "auto"
    output: Optional[str] = None


@dataclass
class ResultsSchema:
    output: str = "docs/results.md"
    seeds_file: Optional[str] = None
    paper_file: Optional[str] = None    # the paper profile's runner output (make paper)
    seed_labels: Dict[str, Dict[str, str]] = field(default_factory=dict)
    sections: List[Any] = field(default_factory=list)


#: Shared node name -> schema (nodes of the whole config, outside ``tasks``).
SCHEMAS: dict[str, Any] = {"results": ResultsSchema}

#: The shared building blocks a task's schema module may reuse.
__all__ = ["SCHEMAS", "MlflowSchema", "PathsSchema", "SplitSchema", "check_node", "check_schema", "task_schemas"]


def task_schemas(task: str) -> dict[str, Any]:
    """A task's node schemas: ``SCHEMAS`` of ``deeprubin.tasks.<task>.config_schema`` (imported by
    name, so the core names no task), or none when the task has no such module. The key ``""``
    stands for the whole ``tasks.<task>`` node."""
    try:
        module = importlib.import_module(f"deeprubin.tasks.{task}.config_schema")
    except ModuleNotFoundError as err:
        if err.name not in (f"deeprubin.tasks.{task}", f"deeprubin.tasks.{task}.config_schema"):
            raise
        return {}
    return dict(getattr(module, "SCHEMAS", {}))


def check_schema(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first unknown or mistyped key of a schema'd node:
    the shared nodes, then each task's nodes (``tasks.<name>.<node>``, from the task's schema)."""
    checks = [(name, schema, cfg.get(name)) for name, schema in SCHEMAS.items()]
    for task in task_names(cfg):
        node = cfg.tasks[task]
        for name, schema in task_schemas(task).items():
            part = OmegaConf.select(node, name) if name else node
            if not isinstance(schema, type):      # a function of the node: its schema by option, or None
                schema = schema(part) if part is not None else None
            if schema is not None:
                checks.append((f"tasks.{task}" + (f".{name}" if name else ""), schema, part))
    for name, schema, node in checks:
        check_node(name, schema, node)


def check_node(name: str, schema: Any, node: DictConfig | dict | None) -> None:
    """Raise :class:`ConfigError` naming ``name.<key>`` for an unknown or mistyped key of ``node``
    against the dataclass ``schema`` (nothing for ``None``)."""
    if node is None:
        return
    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    try:
        OmegaConf.merge(OmegaConf.structured(schema), container)
    except ConfigKeyError as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", "?")
        known = sorted(f.name for f in schema.__dataclass_fields__.values())
        raise ConfigError(f"config key '{name}.{key}' is not a known key of '{name}' (a typo?); "
                          f"known: {known}") from None
    except ValidationError as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", "?")
        raise ConfigError(f"config key '{name}.{key}': {str(err).splitlines()[0]}") from None
