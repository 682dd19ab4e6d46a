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

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from .config import ConfigError


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
    duplicate_conflict_sigma: float = 5.0
    unusable: List[str] = field(default_factory=list)


@dataclass
class PredictSchema:
    checkpoint: Optional[str] = None
    calibration: Optional[str] = "auto"
    output: Optional[str] = None
    label_classes: List[str] = field(default_factory=list)
    progress_bar: bool = True


@dataclass
class TaskSchema:
    name: str = "transients"
    classes: List[str] = field(default_factory=list)
    band_wavelengths: Dict[str, float] = field(default_factory=dict)


@dataclass
class CalibrationCheckSchema:
    n_objects: int = 6000
    seed: int = 20261121


@dataclass
class CalibrationSchema:
    method: str = "temperature"
    n_bins: int = 15
    per_class_bins: int = 10
    isotonic_floor: float = 1e-4
    floor_draws: int = 200
    check: CalibrationCheckSchema = field(default_factory=CalibrationCheckSchema)


@dataclass
class BootstrapSchema:
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass
class UncertaintySchema:
    mc_passes: int = 50
    seed: int = 0
    rejection_max_fraction: float = 0.5
    rejection_steps: int = 26


@dataclass
class EarlySchema:
    days: List[float] = field(default_factory=lambda: [3, 5, 10, 20, 50])
    detection_snr: float = 5.0


@dataclass
class EvaluateSchema:
    n_sample_predictions: int = 4
    calibration: CalibrationSchema = field(default_factory=CalibrationSchema)
    plasticc_weights: Optional[Dict[str, float]] = None
    bootstrap: BootstrapSchema = field(default_factory=BootstrapSchema)
    uncertainty: UncertaintySchema = field(default_factory=UncertaintySchema)
    early: EarlySchema = field(default_factory=EarlySchema)


@dataclass
class FeaturesSchema:
    set: str = "full"
    min_points: int = 5
    periodogram_min_period: float = 0.1
    periodogram_log2_n_freq: int = 14
    sn_fit_algorithm: str = "mcmc-lmsder"


@dataclass
class BaselineSchema:
    name: str = "brf"
    n_estimators: int = 500
    max_depth: Optional[int] = None
    min_samples_leaf: int = 1
    max_features: Any = "sqrt"          # "sqrt", "log2", a fraction or a count (scikit-learn)
    sampling_strategy: Any = "all"      # imbalanced-learn: a name, a fraction or a per-class dict
    replacement: bool = True
    bootstrap: bool = False
    n_jobs: int = 2
    features: FeaturesSchema = field(default_factory=FeaturesSchema)


@dataclass
class AugmentSchema:
    name: str = "gp"
    enabled: bool = True
    seed: int = 0
    mode: str = "balance"
    copies: Dict[str, int] = field(default_factory=dict)
    max_copies_per_object: int = 10
    redshift_classes: List[str] = field(default_factory=list)
    redshift_scale: List[float] = field(default_factory=lambda: [0.8, 1.5])
    time_shift_days: float = 10.0
    time_jitter_days: float = 0.5
    drop_fraction: List[float] = field(default_factory=lambda: [0.1, 0.5])
    min_points: int = 5


@dataclass
class ResultsSchema:
    output: str = "docs/results.md"
    seeds_file: Optional[str] = None
    seed_labels: Dict[str, Dict[str, str]] = field(default_factory=dict)
    sections: List[Any] = field(default_factory=list)


@dataclass
class TransitsPathsSchema:
    raw: str = "data/raw/transits"
    processed: str = "data/processed/transits"
    splits: str = "data/splits/transits"
    models: str = "models/transits"
    reports: str = "reports/transits"


@dataclass
class KeplerCadenceSchema:
    cadence_minutes: float = 29.4244
    n_quarters: int = 1
    quarter_days: float = 89.0
    quarter_gap_days: float = 1.0
    downlink_every_days: float = 30.0
    downlink_gap_days: float = 1.0
    start_bkjd: float = 169.5


@dataclass
class TessCadenceSchema:
    cadence_minutes: float = 10.0
    sector_days: float = 27.4
    orbit_gap_days: float = 1.0
    first_sector_btjd: float = 1325.3
    n_sectors_available: int = 13
    noise_factor: float = 3.5
    mag_offset: float = -0.5


@dataclass
class StellarNoiseSchema:
    kepmag_range: List[float] = field(default_factory=lambda: [11.0, 15.5])
    floor_ppm: float = 10.0
    granulation_ppm: List[float] = field(default_factory=lambda: [20.0, 80.0])
    granulation_tau_days: List[float] = field(default_factory=lambda: [0.05, 0.3])
    rotation_amp: List[float] = field(default_factory=lambda: [0.0005, 0.01])
    rotation_period_days: List[float] = field(default_factory=lambda: [3.0, 40.0])
    flare_rate_per_day: float = 0.02
    jump_rate_per_day: float = 0.01
    outlier_rate: float = 1e-4
    quality_flag_rate: float = 0.005


@dataclass
class EclipsingBinarySchema:
    depth: List[float] = field(default_factory=lambda: [0.001, 0.3])
    period_days: List[float] = field(default_factory=lambda: [0.5, 15.0])
    secondary_ratio: List[float] = field(default_factory=lambda: [0.05, 1.0])
    v_shape_fraction: float = 0.5


@dataclass
class FallbackPlanetSchema:
    period_days: List[float] = field(default_factory=lambda: [0.8, 40.0])
    duration_hours: List[float] = field(default_factory=lambda: [1.0, 8.0])
    stellar_radius: List[float] = field(default_factory=lambda: [0.7, 1.6])
    stellar_mass: List[float] = field(default_factory=lambda: [0.7, 1.3])
    limb_darkening: List[float] = field(default_factory=lambda: [0.40, 0.26])


@dataclass
class TransitsSimulateSchema:
    n_stars: int = 260
    planet_fraction: float = 0.45
    eb_fraction: float = 0.15
    both_missions_fraction: float = 0.1
    tess_fraction: float = 0.3
    catalog: Optional[str] = None
    min_transits: int = 2
    planet_radius_earth: List[float] = field(default_factory=lambda: [1.5, 16.0])
    kepler: KeplerCadenceSchema = field(default_factory=KeplerCadenceSchema)
    tess: TessCadenceSchema = field(default_factory=TessCadenceSchema)
    noise: StellarNoiseSchema = field(default_factory=StellarNoiseSchema)
    eb: EclipsingBinarySchema = field(default_factory=EclipsingBinarySchema)
    outlier_star_fraction: float = 0.1
    fallback: FallbackPlanetSchema = field(default_factory=FallbackPlanetSchema)


@dataclass
class TransitsPreprocessSchema:
    quality_mask: str = "nonzero"
    sigma_upper: float = 4.0
    flatten_window_factor: float = 3.0
    max_duration_hours: float = 10.0
    flatten_polyorder: int = 2
    gap_days: float = 0.5
    segment_length: int = 1024
    stride: int = 256
    channels: List[str] = field(default_factory=lambda: ["robust_z", "relative"])
    relative_scale: float = 0.01
    clip_value: float = 30.0
    min_in_transit_points: int = 1
    max_nan_fraction: float = 0.99


@dataclass
class SamplingSchema:
    max_segments_per_star: int = 24
    neg_pos_ratio: float = 1.5
    hard_negative_fraction: float = 0.5
    min_positive_snr: float = 3.0


@dataclass
class InjectionSchema:
    probability: float = 0.4
    snr_per_transit: List[float] = field(default_factory=lambda: [3.0, 40.0])
    duration_cadences: List[float] = field(default_factory=lambda: [3.0, 36.0])
    period_cadences: List[float] = field(default_factory=lambda: [60.0, 1500.0])
    ingress_fraction: List[float] = field(default_factory=lambda: [0.05, 0.25])
    max_depth: float = 0.03


@dataclass
class TransitsTrainerSchema:
    max_epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 6
    monitor: str = "val_pr_auc"
    augment_flip: bool = True
    inject: Optional[InjectionSchema] = field(default_factory=InjectionSchema)
    accelerator: str = "cpu"
    torch_threads: int = 1
    num_workers: int = 0
    deterministic: bool = True
    progress_bar: bool = False


@dataclass
class AggregateSchema:
    method: str = "topk_mean"
    k: int = 3


@dataclass
class BlsSchema:
    min_period_days: float = 0.5
    max_period_fraction: float = 0.5
    n_periods: int = 1500
    durations_hours: List[float] = field(default_factory=lambda: [1.5, 3.0, 6.0])
    objective: str = "snr"


@dataclass
class TransitsEvaluateSchema:
    target_fpr: float = 0.01
    snr_threshold: float = 7.1
    snr_bins: List[float] = field(default_factory=list)
    n_bins_period: int = 6
    n_bins_depth: int = 6
    bls: BlsSchema = field(default_factory=BlsSchema)


@dataclass
class TransitsRealSchema:
    root: str = "../shared/data/real"
    segment_cadence_minutes: Dict[str, float] = field(default_factory=dict)
    n_top_segments: int = 4
    control_mask_factor: float = 1.5
    targets: List[Any] = field(default_factory=list)   # each target checked by deeprubin.tasks.transits.real


@dataclass
class TransitsSchema:
    name: str = "transits"
    mlflow_experiment: str = "deeprubin-transits"
    paths: TransitsPathsSchema = field(default_factory=TransitsPathsSchema)
    simulate: TransitsSimulateSchema = field(default_factory=TransitsSimulateSchema)
    preprocess: TransitsPreprocessSchema = field(default_factory=TransitsPreprocessSchema)
    sampling: SamplingSchema = field(default_factory=SamplingSchema)
    split: SplitSchema = field(default_factory=SplitSchema)
    model: Dict[str, Any] = field(default_factory=dict)   # rebuilt through the allow-list (build_model)
    trainer: TransitsTrainerSchema = field(default_factory=TransitsTrainerSchema)
    aggregate: AggregateSchema = field(default_factory=AggregateSchema)
    evaluate: TransitsEvaluateSchema = field(default_factory=TransitsEvaluateSchema)
    real: TransitsRealSchema = field(default_factory=TransitsRealSchema)


#: Node name -> schema. Nodes not listed vary by option and are checked by the code that reads
#: them: ``source`` (the files source refuses unknown keys, the simulator its own), ``model``
#: (rebuilt through the allow-list, :func:`deeprubin.core.models.build_model`, which refuses unknown
#: arguments) and ``real_sky`` (its datasets are sources).
SCHEMAS: dict[str, Any] = {"task": TaskSchema, "preprocess": PreprocessSchema, "split": SplitSchema,
                           "augment": AugmentSchema, "trainer": TrainerSchema, "evaluate": EvaluateSchema,
                           "baseline": BaselineSchema, "quality": QualitySchema, "predict": PredictSchema,
                           "results": ResultsSchema, "transits": TransitsSchema}


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
