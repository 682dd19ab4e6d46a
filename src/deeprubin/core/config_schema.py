"""Typed schemas of the config nodes every run reads, so that a typo'd or mistyped key fails.

Hydra composes ``conf/`` without knowing which keys the code reads, so a key added with a
typo (``preprocess.n_gird: 30``) would be silently ignored, and ``trainer.max_epochs: ten``
would fail deep inside training. :func:`check_schema` merges each node below into its
dataclass in OmegaConf's struct mode: an unknown key or a value of the wrong type raises
:class:`~deeprubin.config.ConfigError` naming the key, before the stage does any work. The
stage entry (``hydra_entry``) calls it; DVC's own composition of ``params.yaml`` does not
need it (it runs no project code).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from ..config import ConfigError


@dataclass
class PreprocessSchema:
    name: str = "gp"
    window_before_days: float = 30.0
    window_after_days: float = 70.0
    n_grid: int = 50
    fit_margin_days: float = 20.0
    max_points: int = 256
    n_iter: int = 60
    optimizer: str = "newton"
    learning_rate: float = 0.1
    tol: float = 1e-4
    hyper_max_points: Optional[int] = None
    batch_size: int = 256
    wavelength_length_scale: Optional[float] = 6000.0
    device: str = "cpu"
    detections_only: bool = True


@dataclass
class SplitSchema:
    name: str = "grouped"
    fractions: Dict[str, float] = field(default_factory=lambda: {"train": 0.7, "val": 0.15, "test": 0.15})


@dataclass
class TrainerSchema:
    max_epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    class_weighted_loss: bool = True
    noise_resampling: bool = False
    early_stopping_patience: int = 8
    accelerator: str = "cpu"
    num_workers: int = 0
    deterministic: bool = True
    progress_bar: bool = True


@dataclass
class QualitySchema:
    detection_snr: float = 5.0
    sentinel_mag: float = 90.0
    jd_min: float = 2_400_000.0
    mjd_max: float = 100_000.0
    max_abs_flux_ujy: float = 1e9
    unusable: List[str] = field(default_factory=list)


@dataclass
class PredictSchema:
    checkpoint: Optional[str] = None
    calibration: Optional[str] = "auto"
    output: Optional[str] = None
    label_classes: List[str] = field(default_factory=list)
    progress_bar: bool = True


#: Node name -> schema. Nodes not listed (task, source, model, ...) vary by option and are
#: checked by the code that reads them (e.g. the files source's strict options).
SCHEMAS: dict[str, Any] = {"preprocess": PreprocessSchema, "split": SplitSchema, "trainer": TrainerSchema,
                           "quality": QualitySchema, "predict": PredictSchema}


def check_schema(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first unknown or mistyped key of a schema'd node."""
    for name, schema in SCHEMAS.items():
        node = cfg.get(name) if isinstance(cfg, DictConfig) else None
        if node is None:
            continue
        try:
            OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(node, resolve=True))
        except ConfigKeyError as err:
            key = getattr(err, "full_key", None) or getattr(err, "key", "?")
            known = sorted(f.name for f in schema.__dataclass_fields__.values())
            raise ConfigError(f"config key '{name}.{key}' is not a known key of '{name}' (a typo?); "
                              f"known: {known}") from None
        except ValidationError as err:
            key = getattr(err, "full_key", None) or getattr(err, "key", "?")
            raise ConfigError(f"config key '{name}.{key}': {str(err).splitlines()[0]}") from None
