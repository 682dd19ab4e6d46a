"""Typed schema of the transits task's config node (``tasks.transits``), checked whole by
:func:`deeprubin.core.config_schema.check_schema`: an unknown or mistyped key fails naming it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ...core.config_schema import CalibrationSchema, MlflowSchema, PathsSchema, PredictSchema, SplitSchema


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
class TransitsTaskSchema:
    name: str = "transits"
    classes: List[str] = field(default_factory=lambda: ["planet", "eclipsing_binary", "no_planet"])
    band_wavelengths: Dict[str, float] = field(default_factory=dict)
    cadence_minutes: Dict[str, float] = field(default_factory=dict)


@dataclass
class TransitsPathsSchema(PathsSchema):
    cache: str = "data/cache/transits"             # the fetching sources' downloads
    candidates: str = "data/candidates/transits"   # transits_search: candidates and vetting inputs


@dataclass
class EphemeridesSchema:
    path: Optional[str] = None


@dataclass
class TransitsSimulateSchema:
    name: str = "simulate"
    n_stars: int = 260
    planet_fraction: float = 0.45
    eb_fraction: float = 0.15
    both_missions_fraction: float = 0.1
    tess_fraction: float = 0.3
    catalog: Optional[str] = None
    min_transits: int = 2
    planet_radius_earth: List[float] = field(default_factory=lambda: [1.5, 16.0])
    planet_albedo: List[float] = field(default_factory=lambda: [0.03, 0.5])
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
    callbacks: Dict[str, Any] = field(default_factory=dict)   # name -> _target_ node (core.training.extra_callbacks)
    sampling: SamplingSchema = field(default_factory=SamplingSchema)


@dataclass
class AggregateSchema:
    method: str = "topk_mean"
    k: int = 3


@dataclass
class SearchSchema:
    min_period_days: float = 0.5
    max_period_fraction: float = 0.5
    n_periods: int = 1500
    durations_hours: List[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    objective: str = "snr"
    max_candidates: int = 3
    min_snr: float = 7.1
    mask_factor: float = 3.0
    refine_points: int = 41
    n_jobs: int = 1


@dataclass
class MatchSchema:
    period_tolerance: float = 0.01
    epoch_tolerance_durations: float = 1.0


@dataclass
class VetTrainerSchema:
    max_epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 10
    monitor: str = "val_pr_auc"
    ensemble_members: int = 1
    flip_views: bool = True
    accelerator: str = "cpu"
    torch_threads: int = 2
    num_workers: int = 0
    deterministic: bool = True
    progress_bar: bool = False
    callbacks: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OccultationSchema:
    max_albedo: float = 1.0
    max_depth: float = 0.075


@dataclass
class VetSchema:
    n_global: int = 201
    n_local: int = 61
    local_durations: float = 4.0
    clip: float = 5.0
    match: MatchSchema = field(default_factory=MatchSchema)
    occultation: OccultationSchema = field(default_factory=OccultationSchema)
    model: Dict[str, Any] = field(default_factory=dict)   # rebuilt through the allow-list (build_model)
    trainer: VetTrainerSchema = field(default_factory=VetTrainerSchema)
    n_bootstrap: int = 1000


@dataclass
class TransitsEvaluateSchema:
    target_fpr: float = 0.01
    snr_threshold: float = 7.1
    snr_bins: List[float] = field(default_factory=list)
    n_bins_period: int = 6
    n_bins_depth: int = 6
    aggregate: AggregateSchema = field(default_factory=AggregateSchema)
    calibration: CalibrationSchema = field(default_factory=CalibrationSchema)


@dataclass
class TransitsRealSchema:
    root: str = "../shared/data/real"
    catalog: Optional[str] = None
    n_top_segments: int = 4
    control_mask_factor: float = 1.5
    period_tolerance: float = 0.001
    targets: List[Any] = field(default_factory=list)   # each target checked by deeprubin.tasks.transits.real
    sources: Dict[str, Any] = field(default_factory=dict)   # format -> registry source config (checked by its loader)


@dataclass
class TransitsSchema:
    task: TransitsTaskSchema = field(default_factory=TransitsTaskSchema)
    paths: TransitsPathsSchema = field(default_factory=TransitsPathsSchema)
    mlflow: MlflowSchema = field(default_factory=MlflowSchema)
    quality: Dict[str, Any] = field(default_factory=dict)   # none read by the transits ingest yet
    # by option: the simulator's keys are checked against TransitsSimulateSchema by the ingest
    # step; the registry sources check their own (the files source refuses unknown keys)
    source: Dict[str, Any] = field(default_factory=dict)
    ephemerides: EphemeridesSchema = field(default_factory=EphemeridesSchema)
    preprocess: TransitsPreprocessSchema = field(default_factory=TransitsPreprocessSchema)
    split: SplitSchema = field(default_factory=lambda: SplitSchema(group_column="target_id"))
    model: Dict[str, Any] = field(default_factory=dict)   # rebuilt through the allow-list (build_model)
    trainer: TransitsTrainerSchema = field(default_factory=TransitsTrainerSchema)
    evaluate: TransitsEvaluateSchema = field(default_factory=TransitsEvaluateSchema)
    search: SearchSchema = field(default_factory=SearchSchema)
    vet: VetSchema = field(default_factory=VetSchema)
    real: TransitsRealSchema = field(default_factory=TransitsRealSchema)
    predict: PredictSchema = field(default_factory=PredictSchema)


def source_schema(node) -> Any:
    """The simulator's schema for ``source.name: simulate``; None for a registry source (those
    check their own keys: the files source refuses unknown ones)."""
    return TransitsSimulateSchema if node.get("name") == "simulate" else None


#: ``""``: the whole ``tasks.transits`` node; ``source``: by option.
SCHEMAS: dict[str, Any] = {"": TransitsSchema, "source": source_schema}
