"""Typed schemas of the transients task's config nodes (``tasks.transients.*``).

:func:`deeprubin.core.config_schema.check_schema` merges each node into its dataclass in
OmegaConf's struct mode, so a typo'd or mistyped key fails naming the key before any work.
Nodes not listed vary by option and are checked by the code that reads them: ``source`` (the
files source refuses unknown keys, the simulator its own), ``model`` (rebuilt through the
allow-list, :func:`deeprubin.core.models.build_model`, which refuses unknown arguments),
``real_sky`` (its datasets are sources) and ``sim_vs_real``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ...core.config_schema import CalibrationSchema, MlflowSchema, PredictSchema, SplitSchema
from ...core.config_schema import PathsSchema as TaskPathsSchema


@dataclass
class PathsSchema(TaskPathsSchema):
    augmented: str = "data/augmented/transients"   # the augment stage's GP copies
    cache: str = "data/cache/transients"           # the fetching sources' downloads
    anomaly_model: str = "models/transients/anomaly"   # the anomaly stage's fitted scorers
    anomaly: str = "reports/transients/anomaly"        # the anomaly stage's reports


@dataclass
class FeaturesSchema:
    n_jobs: int = 2
    set: str = "full"
    min_points: int = 5
    periodogram_min_period: float = 0.1
    periodogram_log2_n_freq: int = 14
    sn_fit_algorithm: str = "mcmc-lmsder"
    photometry: str = "all"
    absolute_magnitudes: bool = False
    redshift_hidden_fraction: float = 0.0


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
    features: FeaturesSchema = field(default_factory=FeaturesSchema)


@dataclass
class TrainerSchema:
    max_epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    class_weighted_loss: bool = True
    noise_resampling: bool = False
    early_stopping_patience: int = 8
    ensemble_members: int = 1
    accelerator: str = "cpu"
    num_workers: int = 0
    deterministic: bool = True
    progress_bar: bool = True
    callbacks: Dict[str, Any] = field(default_factory=dict)   # name -> _target_ node (core.training.extra_callbacks)


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
class TransientsPredictSchema(PredictSchema):
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
class TransientsCalibrationSchema(CalibrationSchema):
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
    transient_classes: List[str] = field(default_factory=lambda: ["SNIa", "SNII", "SNIbc", "SLSN"])


@dataclass
class EvaluateSchema:
    n_sample_predictions: int = 4
    calibration: TransientsCalibrationSchema = field(default_factory=TransientsCalibrationSchema)
    plasticc_weights: Optional[Dict[str, float]] = None
    bootstrap: BootstrapSchema = field(default_factory=BootstrapSchema)
    uncertainty: UncertaintySchema = field(default_factory=UncertaintySchema)
    early: EarlySchema = field(default_factory=EarlySchema)


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
    tune: Optional[Dict[str, Any]] = None   # setting -> list of values, chosen on val (features.baseline.tune_grid)


@dataclass
class AugmentSchema:
    name: str = "gp"
    enabled: bool = True
    seed: int = 0
    mode: str = "balance"
    copies: Dict[str, int] = field(default_factory=dict)
    copies_all: Optional[int] = None   # copies of every class `copies` does not list
    max_copies_per_object: int = 10
    redshift_classes: List[str] = field(default_factory=list)
    redshift_scale: List[float] = field(default_factory=lambda: [0.8, 1.5])
    time_shift_days: float = 10.0
    time_jitter_days: float = 0.5
    drop_fraction: List[float] = field(default_factory=lambda: [0.1, 0.5])
    min_points: int = 5
    truncate_fraction: float = 0.0        # copies cut a few days after their first detection
    truncate_days: List[float] = field(default_factory=lambda: [1.0, 100.0])


@dataclass
class AnomalyNovelSchema:
    classes: List[str] = field(default_factory=lambda: ["TDE", "KN", "uLens", "Unphysical"])
    n_objects: int = 400
    seed_offset: int = 1000
    validation_seed_offset: int = 2000


@dataclass
class AnomalyScorersSchema:
    combine: List[str] = field(default_factory=lambda: ["iforest", "knn", "msp"])
    k: int = 10
    n_estimators: int = 300


@dataclass
class AnomalySchema:
    novel: AnomalyNovelSchema = field(default_factory=AnomalyNovelSchema)
    score: str = "auto"
    scorers: AnomalyScorersSchema = field(default_factory=AnomalyScorersSchema)
    top_fraction: float = 0.01
    n_candidates: int = 50
    n_figures: int = 8
    real: List[str] = field(default_factory=list)


@dataclass
class StreamRedisSchema:
    url: str = "redis://127.0.0.1:6379/0"
    stream: str = "deeprubin-alerts"
    group: str = "deeprubin-classifier"
    consumer: str = "classifier-1"
    field: str = "packet"


@dataclass
class StreamKafkaSchema:
    topics: List[str] = field(default_factory=list)
    config: Dict[str, Any] = field(default_factory=dict)


@dataclass
class StreamOutputSchema:
    kind: Optional[str] = None
    stream: str = "deeprubin-classifications"
    topic: str = "deeprubin-classifications"


@dataclass
class StreamSimulateSchema:
    split: str = "test"
    history_days: float = 30.0
    packets_per_file: int = 10000


@dataclass
class StreamReplaySchema:
    path: str = "data/stream/transients/alerts"


@dataclass
class StreamSchema:
    mode: str = "run"
    checkpoint: str = "models/transients/model.ckpt"
    calibration: Optional[str] = "auto"
    anomaly_model: Optional[str] = "models/transients/anomaly"
    survey: str = "ztf"
    rubin_schema: str = "latest"
    transport: str = "replay"
    state: str = "data/stream/transients/state.sqlite"
    durability: str = "normal"
    dead_letter: Optional[str] = None
    batch_size: int = 32
    poll_timeout_s: float = 1.0
    max_alerts: Optional[int] = None
    idle_stop_s: Optional[float] = 0.0
    progress_every_s: float = 10.0
    replay: StreamReplaySchema = field(default_factory=StreamReplaySchema)
    redis: StreamRedisSchema = field(default_factory=StreamRedisSchema)
    kafka: StreamKafkaSchema = field(default_factory=StreamKafkaSchema)
    output: StreamOutputSchema = field(default_factory=StreamOutputSchema)
    simulate: StreamSimulateSchema = field(default_factory=StreamSimulateSchema)


@dataclass
class MonitorReferenceSchema:
    features: str = "data/processed/transients/features.parquet"
    manifest: str = "data/splits/transients/manifest.parquet"
    split: str = "train"
    predictions: str = "reports/transients/evaluation/predictions.csv"


@dataclass
class MonitorWindowSchema:
    kind: str = "simulate"
    checkpoint: str = "models/transients/model.ckpt"
    calibration: Optional[str] = "auto"
    n_objects: int = 500
    seed: int = 20261207
    path: Optional[str] = None
    features_path: Optional[str] = None
    labels_path: Optional[str] = None
    per_object: str = "last"


@dataclass
class MonitorFeaturesSchema:
    columns: Optional[List[str]] = None
    exclude: List[str] = field(default_factory=list)
    n_bins: int = 10
    epsilon: float = 1e-4
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    ks_alpha: float = 0.01
    ks_correction: str = "holm"
    ks_min_statistic: float = 0.1
    missing_alert: float = 0.1
    top_n: int = 20


@dataclass
class MonitorClassFractionsSchema:
    epsilon: float = 1e-4
    psi_alert: float = 0.25
    total_variation_alert: float = 0.15
    class_shift_alert: float = 0.1


@dataclass
class MonitorCalibrationSchema:
    n_bins: int = 15
    scheme: str = "width"
    ece_increase_alert: float = 0.05
    floor_draws: int = 200
    seed: int = 0


@dataclass
class MonitorPerformanceSchema:
    macro_f1_drop_alert: float = 0.05
    accuracy_drop_alert: float = 0.05


@dataclass
class MonitorSchema:
    """``monitor``: the monitor stage (ranges checked by :func:`deeprubin.core.monitoring.check_config`)."""
    reference: MonitorReferenceSchema = field(default_factory=MonitorReferenceSchema)
    window: MonitorWindowSchema = field(default_factory=MonitorWindowSchema)
    min_objects: int = 30
    features: MonitorFeaturesSchema = field(default_factory=MonitorFeaturesSchema)
    class_fractions: MonitorClassFractionsSchema = field(default_factory=MonitorClassFractionsSchema)
    calibration: MonitorCalibrationSchema = field(default_factory=MonitorCalibrationSchema)
    performance: MonitorPerformanceSchema = field(default_factory=MonitorPerformanceSchema)


#: Node of ``tasks.transients`` -> schema.
SCHEMAS: dict[str, Any] = {"task": TaskSchema, "paths": PathsSchema, "mlflow": MlflowSchema,
                           "preprocess": PreprocessSchema, "split": SplitSchema, "augment": AugmentSchema,
                           "trainer": TrainerSchema, "evaluate": EvaluateSchema, "baseline": BaselineSchema,
                           "quality": QualitySchema, "predict": TransientsPredictSchema,
                           "stream": StreamSchema, "anomaly": AnomalySchema, "monitor": MonitorSchema}
