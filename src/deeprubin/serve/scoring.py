"""A task's model as the service holds it, and the scoring of request tables through the predict path.

:func:`score_tables` applies, in order, what the batch predict path applies to a source's tables
(:func:`deeprubin.tasks.transients.evaluation.inference.load_for_prediction` and
:func:`~deeprubin.tasks.transients.evaluation.inference.predict_source_detailed`): the ingest
validation (:func:`deeprubin.core.schema.validate_tables`, objects labelled ``unlabeled``), the
band check against the checkpoint, the data-quality flags (objects with a flag in
``quality.unusable`` are set aside), then :meth:`Predictor.probabilities` and
:func:`~deeprubin.tasks.transients.evaluation.predict.prediction_table`. Objects the batch path
would not classify get ``predicted: null`` and a warning instead of failing the request.

A batch job (:mod:`.batch`) runs the same steps: :func:`prepare_tables` on its whole file, then
:func:`classify` on :data:`MODEL_BATCH`-aligned slices of the objects that reach the model, so
every forward pass of the network sees the rows the whole file's would (see :data:`MODEL_BATCH`).
"""
from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core import io
from ..core.calibration import resolve_calibration
from ..core.quality import check_quality_config, quality_table, unusable_mask
from ..core.schema import SchemaError, validate_tables
from ..tasks.transients.evaluation.inference import UNLABELED, Predictor, check_bands
from ..tasks.transients.evaluation.predict import class_probabilities, prediction_table
from .settings import ModelSource

#: ``source`` column of the objects the service builds (what validation's messages name).
SOURCE = "serve"
#: Objects per forward pass of the network in the predict path (``class_probabilities``' batch size,
#: read from it). The float32 matrix products round differently for a different batch, so an object's
#: probabilities depend (in the last bits) on which objects share its forward pass: a batch job
#: scored in slices of a multiple of this many objects gets the whole file's numbers exactly.
MODEL_BATCH = int(inspect.signature(class_probabilities).parameters["batch_size"].default)


@dataclass(frozen=True)
class Validation:
    """The ingest validation's settings (``serve.validation``)."""

    on_invalid: str
    min_points: int
    min_bands: int


@dataclass
class ServedModel:
    """A task's loaded predictor, its identity and a lock that serialises its use."""

    task: str
    predictor: Any                     # a Predictor, or anything with classes, bands, probabilities()
    checkpoint: Path
    sha256: str
    calibration_file: str | None
    quality: dict | None
    name: str = ""
    architecture: str = ""
    registry: dict | None = None       # registry mode: name, version, alias, uri of the version served
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def version(self) -> str:
        """``sha256:<first 16 hex>`` of the checkpoint (what the stream records as model_version)."""
        return f"sha256:{self.sha256[:16]}"

    def describe(self) -> dict:
        """The ``/v1/models`` entry."""
        meta = getattr(self.predictor, "meta", {}) or {}
        return {"task": self.task, "name": self.name, "architecture": self.architecture, "version": self.version,
                "checkpoint": str(self.checkpoint), "sha256": self.sha256,
                "classes": list(self.predictor.classes), "bands": list(self.predictor.bands),
                "calibration": {"description": str(getattr(self.predictor, "calibration", "")),
                                "file": self.calibration_file},
                "n_members": meta.get("n_members"),
                "data_sha256": (meta.get("metadata") or {}).get("data_sha256"),
                "registry": None if self.registry is None else dict(self.registry)}


def load_model(task: str, source: ModelSource, quality: Mapping | None) -> ServedModel:
    """Load a task's checkpoint and calibrator once; errors name the ``serve.models`` key and file."""
    key = f"serve.models.{task}.checkpoint"
    if not source.checkpoint.is_file():
        raise FileNotFoundError(f"config key '{key}': {source.checkpoint} does not exist (train a model: dvc repro)")
    return served_model(task, source.checkpoint, resolve_calibration(source.calibration, source.checkpoint), quality)


def served_model(task: str, checkpoint: Path, calibration: Path | None, quality: Mapping | None,
                 registry: Mapping | None = None) -> ServedModel:
    """A :class:`ServedModel` of a checkpoint file and its calibration file (None: raw softmax), fully loaded."""
    predictor = Predictor(checkpoint, calibration=calibration)
    return ServedModel(task=task, predictor=predictor, checkpoint=checkpoint,
                       sha256=io.file_sha256(checkpoint),
                       calibration_file=None if calibration is None else str(calibration),
                       quality=None if quality is None else check_quality_config(quality, f"tasks.{task}.quality"),
                       name=f"{predictor.train_cfg.task.name}-classifier",
                       architecture=str(predictor.meta["model_config"].get("name", "")),
                       registry=None if registry is None else dict(registry))


def objects_table(lightcurves: pd.DataFrame, metadata: pd.DataFrame, table: str = "request") -> pd.DataFrame:
    """The canonical objects table of a request: every object of either table, in order of first
    appearance, labelled ``unlabeled`` with its own id as group, plus the metadata columns given."""
    given = metadata["object_id"].astype(str)
    if given.duplicated().any():
        raise SchemaError(f"{table}: field 'objects': object '{given[given.duplicated()].iloc[0]}' is given "
                          "more than once")
    ids = list(dict.fromkeys([*lightcurves["object_id"].astype(str), *given]))
    objects = pd.DataFrame({"object_id": ids, "label": UNLABELED, "group_id": ids, "source": SOURCE})
    if len(metadata.columns) > 1:
        objects = objects.merge(metadata.assign(object_id=given), on="object_id", how="left")
    return objects


def uses_redshift(predictor: Any) -> bool:
    """Whether the model reads absolute magnitudes (``preprocess.features.absolute_magnitudes``)."""
    return bool(getattr(getattr(predictor, "feature_config", None), "absolute_magnitudes", False))


def _flags(value: object) -> list[str]:
    return [f for f in str(value or "").split(";") if f]


@dataclass
class Prepared:
    """Request tables after the predict path's checks: what reaches the model, and every object's notes."""

    lightcurves: pd.DataFrame          # validated rows of the objects to classify, sorted by object_id
    objects: pd.DataFrame              # those objects, sorted by object_id
    order: list[str]                   # every object of the request, in order of first appearance
    flags: dict[str, list[str]]        # data-quality flags per object
    warnings: dict[str, list[str]]     # per object (filled further by :func:`classify`)


def prepare_tables(model: ServedModel, lightcurves: pd.DataFrame, metadata: pd.DataFrame,
                   validation: Validation, table: str = "request") -> Prepared:
    """The ingest validation, the band check and the data-quality flags of the predict path: objects that
    fail validation or carry a flag in ``quality.unusable`` are set aside with a warning.

    Raises :class:`~deeprubin.core.schema.SchemaError` (``on_invalid: raise``, a repeated object
    row) or :class:`~deeprubin.tasks.transients.evaluation.inference.CheckpointMismatchError`
    (a band the model was not trained on), each naming ``table``, the object and the column.
    """
    predictor = model.predictor
    objects = objects_table(lightcurves, metadata, table)
    order = objects["object_id"].tolist()
    lc, obj, report = validate_tables(lightcurves, objects, classes=[*predictor.classes, UNLABELED], bands=None,
                                      min_points=validation.min_points, min_bands=validation.min_bands,
                                      on_invalid=validation.on_invalid, table=table)
    check_bands(lc, predictor.bands, table)
    warnings: dict[str, list[str]] = {oid: [] for oid in order}
    for oid, reason in report.dropped.items():
        warnings[oid].append(f"not classified: {reason}")
    flags: dict[str, list[str]] = {}
    if model.quality is not None and len(obj):
        quality = quality_table(lc, model.quality, obj)
        flags = {str(o): _flags(f) for o, f in zip(quality["object_id"], quality["quality_flags"])}
        bad = set(quality.loc[unusable_mask(quality, model.quality["unusable"]), "object_id"].astype(str))
        for oid in sorted(bad):
            warnings[oid].append(f"not classified: data-quality flag(s) {flags[oid]} are in quality.unusable")
        if bad:
            lc = lc.loc[~lc["object_id"].astype(str).isin(bad)].reset_index(drop=True)
            obj = obj.loc[~obj["object_id"].astype(str).isin(bad)].reset_index(drop=True)
    return Prepared(lc, obj, order, flags, warnings)


def classify(model: ServedModel, prepared: Prepared, lightcurves: pd.DataFrame,
             objects: pd.DataFrame) -> dict[str, dict]:
    """``{object_id: {"predicted", "probabilities"}}`` of ``objects`` (all or some of ``prepared.objects``,
    with their rows): :meth:`Predictor.probabilities` under the model's lock, then
    :func:`~deeprubin.tasks.transients.evaluation.predict.prediction_table`; their warnings are added
    to ``prepared.warnings``."""
    predictions: dict[str, dict] = {}
    if not len(objects):
        return predictions
    predictor, warnings, flags = model.predictor, prepared.warnings, prepared.flags
    classes = list(predictor.classes)
    with model.lock:
        grid, probabilities = predictor.probabilities(lightcurves, objects=objects)
    table = prediction_table(np.asarray(grid.object_ids).astype(str), probabilities, classes)
    for row in table.to_dict(orient="records"):
        predictions[str(row["object_id"])] = {
            "predicted": str(row["predicted"]),
            "probabilities": {c: float(row[f"prob_{c}"]) for c in classes}}
    for oid in objects["object_id"].astype(str):
        if oid not in predictions:
            warnings[oid].append("not classified: the predict path returned no GP grid row for it")
    for oid in predictions:
        if flags.get(oid):
            warnings[oid].append(f"data-quality flag(s) {flags[oid]} (classified: not in quality.unusable)")
    if uses_redshift(predictor):
        z = objects.set_index(objects["object_id"].astype(str)).get("redshift")
        for oid in predictions:
            if z is None or not float(z.get(oid, np.nan)) > 0:
                warnings[oid].append("no positive redshift: the model's absolute-magnitude features are "
                                     "missing (as for an alert without a host redshift)")
    return predictions


def assemble(prepared: Prepared, predictions: Mapping[str, Mapping]) -> list[dict]:
    """One result per object, in order of first appearance (see :func:`score_tables`)."""
    return [{"object_id": oid, "predicted": predictions.get(oid, {}).get("predicted"),
             "probabilities": predictions.get(oid, {}).get("probabilities"),
             "quality_flags": prepared.flags.get(oid, []), "warnings": prepared.warnings[oid]}
            for oid in prepared.order]


def score_tables(model: ServedModel, lightcurves: pd.DataFrame, metadata: pd.DataFrame,
                 validation: Validation, table: str = "request") -> list[dict]:
    """One result per object of the request (order of first appearance): ``object_id``, ``predicted``,
    ``probabilities`` (class -> calibrated probability), ``quality_flags`` and ``warnings``:
    :func:`prepare_tables`, then :func:`classify` of every object that reaches the model. ``table``
    names the input in error messages."""
    prepared = prepare_tables(model, lightcurves, metadata, validation, table)
    return assemble(prepared, classify(model, prepared, prepared.lightcurves, prepared.objects))


def outcome_counts(results: Sequence[Mapping]) -> dict[str, int]:
    """``{"classified": n, "not_classified": m}`` of :func:`score_tables`' results."""
    n = sum(r["predicted"] is not None for r in results)
    return {"classified": n, "not_classified": len(results) - n}
