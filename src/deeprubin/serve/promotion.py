"""Promotion by alias: a registry version becomes a task's ``champion`` only if it scores at least as well as
the current champion on the task's fixed evaluation set (the command: :mod:`deeprubin.serve.registry`).

**The evaluation set** (``serve.registry.evaluation.<task>``): the objects of one split (``test``) of the
pipeline's split manifest with their manifest labels, their rows of the raw light-curve table (as ingested)
and of the objects table (the redshifts). Its fingerprint is the sha256 of the split's name and of the three
files. A version is scored through the predict path: :class:`Predictor` with the version's checkpoint and
calibrator, :meth:`Predictor.probabilities` of those rows, the predicted class of
:func:`~deeprubin.tasks.transients.evaluation.predict.prediction_table`, then
:func:`~deeprubin.core.metrics.classification_metrics` over every object of the set (an object the predict
path returns no row for counts as misclassified). ``serve.registry.metric`` picks the score compared.

**Scores** are model-version tags (:data:`EVAL_PREFIX`: every metric of :data:`PROMOTION_METRICS`, the set's
fingerprint, the calibrator's sha256, the counts). A recorded score is reused while the fingerprint and the
calibrator match (the champion is not scored again at each promotion), else computed again and recorded.

**The rule** (:func:`accepts`): with no champion, the first promotion is accepted; otherwise the candidate
needs ``score >= champion's score + serve.registry.min_improvement``. A ``challenger`` is scored and recorded
but not gated (it is the version under trial). A version promoted to champion loses the challenger alias.

**A version's calibrator** is fixed at its first promotion (tag :data:`~.versions.CALIBRATION_TAG`): the
``calibration.json`` already in the version; else the file given (``--calibration PATH``, refused when fitted
for another checkpoint) or, by default, the file of ``serve.models.<task>`` (its ``calibration`` resolved
against its ``checkpoint``: the calibrate stage's file beside the pipeline's model), used when it is bound
(sha256) to the version's checkpoint; the file is then logged into the version's ``model/`` folder. Else, or
with ``--calibration none``, the version is scored and served with the raw softmax (tag ``none``). Nothing
is unpickled: checkpoints load through :func:`deeprubin.core.checkpoint.load_checkpoint`, calibrators are JSON.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from ..core import io
from ..core.calibration import CALIBRATION_NAME, CalibrationMismatchError, load_calibrator
from ..core.config import ConfigError
from ..core.metrics import classification_metrics
from ..core.registry import ARTIFACT_PATH
from ..tasks.transients.evaluation.inference import Predictor
from ..tasks.transients.evaluation.predict import prediction_table
from .settings import PROMOTION_METRICS, EvaluationSettings
from .versions import (CALIBRATION_TAG, CHALLENGER, CHAMPION, CHECKPOINT_TAG, NO_CALIBRATION, SHORT_SHA,
                       LocalVersion, RegistryError, aliases, describe_version, download_version, get_version)

EVAL_PREFIX = "deeprubin.eval."
SET_TAG = f"{EVAL_PREFIX}set_sha256"
EVAL_CALIBRATION_TAG = f"{EVAL_PREFIX}calibration_sha256"
PROMOTED_PREFIX = "deeprubin.promoted."
#: The prediction of an object the predict path returned no row for (never a class: counted wrong).
NOT_CLASSIFIED = ""
#: Columns the split manifest must have.
MANIFEST_COLUMNS = ("object_id", "label", "split")
#: Times in tags and listings (UTC); MLflow's timestamps are in milliseconds.
ISO_UTC, MS_PER_S = "%Y-%m-%dT%H:%M:%SZ", 1000


class PromotionError(RuntimeError):
    """A promotion that cannot be decided (a version with a fixed calibrator given another one, ...)."""


# ---------------------------------------------------------------- the evaluation set

@dataclass(frozen=True)
class EvaluationData:
    """A task's evaluation set, read: rows, objects, labels (index: object_id, sorted) and fingerprint."""

    lightcurves: pd.DataFrame
    objects: pd.DataFrame
    labels: pd.Series
    fingerprint: str
    where: str                          # "the 'test' split of <manifest> (n objects)", for messages


def evaluation_files(task: str, settings: EvaluationSettings) -> dict[str, Path]:
    """The set's files by config field; :class:`ConfigError` naming the key of a missing one."""
    files = {"manifest": settings.manifest, "lightcurves": settings.lightcurves, "objects": settings.objects}
    for field, path in files.items():
        if not path.is_file():
            raise ConfigError(f"config key 'serve.registry.evaluation.{task}.{field}': {path} does not exist "
                              "(the pipeline's data: dvc repro)")
    return files


def fingerprint(split: str, files: dict[str, Path]) -> str:
    """sha256 of the split's name and of each file's sha256."""
    record = {"split": split, **{field: io.file_sha256(path) for field, path in sorted(files.items())}}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def load_evaluation(task: str, settings: EvaluationSettings) -> EvaluationData:
    """The objects of ``settings.split`` in the manifest, their labels and their rows."""
    files = evaluation_files(task, settings)
    manifest = io.read_parquet(files["manifest"])
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ConfigError(f"config key 'serve.registry.evaluation.{task}.manifest': {files['manifest']} has no "
                          f"column(s) {missing}")
    chosen = manifest.loc[manifest["split"].astype(str) == settings.split]
    if chosen.empty:
        raise ConfigError(f"config key 'serve.registry.evaluation.{task}.split': {files['manifest']} has no object "
                          f"in split {settings.split!r}")
    labels = chosen.set_index(chosen["object_id"].astype(str))["label"].astype(str).sort_index()
    ids = set(labels.index)
    lightcurves = io.read_parquet(files["lightcurves"])
    objects = io.read_parquet(files["objects"])
    lightcurves = lightcurves.loc[lightcurves["object_id"].astype(str).isin(ids)].reset_index(drop=True)
    objects = objects.loc[objects["object_id"].astype(str).isin(ids)].reset_index(drop=True)
    where = f"the {settings.split!r} split of {files['manifest']} ({len(labels)} objects)"
    return EvaluationData(lightcurves, objects, labels, fingerprint(settings.split, files), where)


def evaluate(checkpoint: Path, calibration: Path | None, data: EvaluationData) -> dict[str, float]:
    """The :data:`PROMOTION_METRICS` of a checkpoint and calibrator on the set, plus ``n_objects`` and
    ``n_classified``."""
    predictor = Predictor(checkpoint, calibration=calibration)
    grid, probabilities = predictor.probabilities(data.lightcurves, objects=data.objects)
    table = prediction_table(np.asarray(grid.object_ids).astype(str), probabilities, list(predictor.classes))
    predicted = dict(zip(table["object_id"], table["predicted"].astype(str)))
    y_pred = [predicted.get(oid, NOT_CLASSIFIED) for oid in data.labels.index]
    metrics = classification_metrics(data.labels.to_numpy(), y_pred, list(predictor.classes))
    return {**{m: float(metrics[m]) for m in PROMOTION_METRICS}, "n_objects": len(y_pred),
            "n_classified": len(predicted)}


# ---------------------------------------------------------------- scores as tags

def score_tags(scores: dict[str, float], data: EvaluationData, calibration_sha: str) -> dict[str, str]:
    """The model-version tags of :func:`evaluate`'s scores (floats written to read back exactly)."""
    return {**{f"{EVAL_PREFIX}{k}": repr(v) if isinstance(v, float) else str(v) for k, v in scores.items()},
            SET_TAG: data.fingerprint, EVAL_CALIBRATION_TAG: calibration_sha}


def recorded_score(tags: dict[str, str], metric: str, data: EvaluationData) -> float | None:
    """A score recorded on this evaluation set with the version's fixed calibrator, else None."""
    fixed = tags.get(CALIBRATION_TAG)
    if fixed is None or tags.get(SET_TAG) != data.fingerprint or tags.get(EVAL_CALIBRATION_TAG) != fixed:
        return None
    value = tags.get(f"{EVAL_PREFIX}{metric}")
    return None if value is None else float(value)


def accepts(candidate: float, champion: float | None, min_improvement: float) -> bool:
    """The promotion rule: the first champion is accepted; later ones need ``>= champion + min_improvement``."""
    return champion is None or candidate >= champion + min_improvement


# ---------------------------------------------------------------- a version's identity and calibrator

def bound_calibration(path: Path | None, local: LocalVersion, explicit: bool) -> Path | None:
    """``path`` when it is a calibrator fitted for the version's checkpoint; otherwise None, or, for a file
    the user named (``explicit``), :class:`CalibrationMismatchError` naming the file."""
    if path is None:
        return None
    if not path.is_file():
        if explicit:
            raise FileNotFoundError(f"--calibration {path}: no such file")
        return None
    try:
        load_calibrator(path, checkpoint=local.checkpoint)
    except CalibrationMismatchError:
        if explicit:
            raise
        return None
    return path


def attach_calibration(client: MlflowClient, run_id: str, local: LocalVersion, path: Path) -> LocalVersion:
    """Log ``path`` as ``model/calibration.json`` of the version's run and copy it into the local folder."""
    if not run_id:
        raise RegistryError(f"{describe_version(local.name, local.version)}: no run to log its calibrator into")
    with tempfile.TemporaryDirectory(prefix="deeprubin-calibration-") as tmp:
        named = Path(tmp) / CALIBRATION_NAME
        shutil.copyfile(path, named)
        client.log_artifact(run_id, str(named), ARTIFACT_PATH)
    shutil.copyfile(path, local.folder / CALIBRATION_NAME)
    return LocalVersion(local.name, local.version, local.folder, local.checkpoint, local.folder / CALIBRATION_NAME,
                        local.sha256)


def requested_sha(calibration: str | None) -> str | None:
    """The calibrator ``--calibration`` asks for: None (the default rule), ``none`` or a file's sha256."""
    if calibration is None or calibration.lower() == NO_CALIBRATION:
        return None if calibration is None else NO_CALIBRATION
    if not Path(calibration).is_file():
        raise FileNotFoundError(f"--calibration {calibration}: no such file")
    return io.file_sha256(calibration)


def fix_identity(client: MlflowClient, mv, local: LocalVersion, calibration: str | None,
                 default: Path | None) -> LocalVersion:
    """Record the version's checkpoint sha256 and fix its calibrator, once (see the module docstring).

    ``calibration``: None (the config's file, ``default``, when bound to the checkpoint), ``none`` or a path.
    """
    tags = dict(mv.tags or {})
    requested = requested_sha(calibration)
    fixed = tags.get(CALIBRATION_TAG) or (None if local.calibration is None else local.calibration_sha256)
    if fixed is not None and requested is not None and requested != fixed:
        raise PromotionError(f"{describe_version(local.name, local.version)}: its calibrator is fixed "
                             f"({fixed[:SHORT_SHA]}), --calibration asks for {requested[:SHORT_SHA]}; register a "
                             "new version for another calibrator")
    if fixed is None and requested != NO_CALIBRATION:
        explicit = calibration is not None
        chosen = bound_calibration(Path(calibration) if explicit else default, local, explicit)
        if chosen is not None:
            local = attach_calibration(client, mv.run_id, local, chosen)
    if CALIBRATION_TAG not in tags:
        record_identity(client, local)
    return local


def record_identity(client: MlflowClient, local: LocalVersion) -> None:
    """Tag the version with its checkpoint's and calibrator's sha256 (what the server verifies)."""
    client.set_model_version_tag(local.name, local.version, CHECKPOINT_TAG, local.sha256)
    client.set_model_version_tag(local.name, local.version, CALIBRATION_TAG, local.calibration_sha256)


def version_score(client: MlflowClient, name: str, version: str, metric: str, data: EvaluationData,
                  local: LocalVersion | None = None) -> float:
    """The version's recorded score on the set, or computed (downloaded when ``local`` is not given) and
    recorded as tags."""
    tags = dict(get_version(client, name, version).tags or {})
    recorded = recorded_score(tags, metric, data)
    if recorded is not None:
        return recorded
    with tempfile.TemporaryDirectory(prefix="deeprubin-score-") as tmp:
        local = local or download_version(client, name, version, Path(tmp))
        if CALIBRATION_TAG not in tags:         # an alias set outside this command: record what it holds
            record_identity(client, local)
        scores = evaluate(local.checkpoint, local.calibration, data)
        for key, value in score_tags(scores, data, local.calibration_sha256).items():
            client.set_model_version_tag(name, version, key, value)
    return scores[metric]


# ---------------------------------------------------------------- promotion

@dataclass(frozen=True)
class Request:
    """What the command asks: a version of ``name`` to ``alias`` for ``task``, compared on ``metric``."""

    task: str
    name: str
    version: str
    alias: str
    metric: str
    min_improvement: float
    evaluation: EvaluationSettings
    calibration: str | None = None       # None: ``default`` when bound; ``none``; or a path
    default: Path | None = None          # the config's calibration file (serve.models.<task>)


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    message: str
    score: float
    champion: str | None = None          # the champion's version before the promotion
    champion_score: float | None = None


def _refusal(req: Request, score: float, champion: str, champion_score: float, data: EvaluationData) -> str:
    return (f"refused: {describe_version(req.name, req.version)} scores {req.metric} {score:.6f} on {data.where}, "
            f"worse than the champion, version {champion}, with {champion_score:.6f}: a new champion needs "
            f">= {champion_score:.6f} + serve.registry.min_improvement ({req.min_improvement})")


def _acceptance(req: Request, score: float, champion: str | None, champion_score: float | None,
                data: EvaluationData) -> str:
    against = (" (no champion before: the first promotion)" if champion_score is None else
               f", champion before: version {champion} with {champion_score:.6f} "
               f"(serve.registry.min_improvement {req.min_improvement})")
    return (f"{describe_version(req.name, req.version)} is now '{req.alias}' of task {req.task}: "
            f"{req.metric} {score:.6f} on {data.where}{against}")


def promote(client: MlflowClient, req: Request) -> Outcome:
    """Score the candidate (and the champion, when its score is not recorded for this set), apply
    :func:`accepts` for ``champion``, then set the alias and the promotion's time tag."""
    current = aliases(client, req.name)
    mv = get_version(client, req.name, req.version)
    version = str(mv.version)
    data = load_evaluation(req.task, req.evaluation)
    with tempfile.TemporaryDirectory(prefix="deeprubin-candidate-") as tmp:
        local = fix_identity(client, mv, download_version(client, req.name, version, Path(tmp)), req.calibration,
                             req.default)
        score = version_score(client, req.name, version, req.metric, data, local)
    champion = current.get(CHAMPION) if req.alias == CHAMPION else None
    if champion == version:
        return Outcome(True, f"{describe_version(req.name, version)} is already '{CHAMPION}'", score, champion, score)
    champion_score = None if champion is None else version_score(client, req.name, champion, req.metric, data)
    if req.alias == CHAMPION and not accepts(score, champion_score, req.min_improvement):
        return Outcome(False, _refusal(req, score, champion, champion_score, data), score, champion, champion_score)
    client.set_registered_model_alias(req.name, req.alias, version)
    if req.alias == CHAMPION and current.get(CHALLENGER) == version:
        client.delete_registered_model_alias(req.name, CHALLENGER)
    client.set_model_version_tag(req.name, version, f"{PROMOTED_PREFIX}{req.alias}",
                                 time.strftime(ISO_UTC, time.gmtime()))
    return Outcome(True, _acceptance(req, score, champion, champion_score, data), score, champion, champion_score)


def status_rows(client: MlflowClient, name: str, metric: str, data_fingerprint: str | None) -> list[dict]:
    """One row per version (oldest first): aliases, creation time, run, recorded score, whether it was
    recorded on the current evaluation set, the calibrator's sha256 (``-``: not fixed yet)."""
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(client, name).items():     # (a search leaves a version's aliases out)
        by_version.setdefault(version, []).append(alias)
    rows = []
    for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version)):
        tags = dict(mv.tags or {})
        recorded = tags.get(f"{EVAL_PREFIX}{metric}")
        on_set = "-" if recorded is None else "current" if tags.get(SET_TAG) == data_fingerprint else "other"
        version = str(mv.version)
        rows.append({"version": version, "aliases": ",".join(sorted(by_version.get(version, []))) or "-",
                     "created": time.strftime(ISO_UTC, time.gmtime(mv.creation_timestamp / MS_PER_S)),
                     "run_id": mv.run_id or "-", metric: recorded or "-", "evaluation_set": on_set,
                     "calibration": tags.get(CALIBRATION_TAG, "-")[:SHORT_SHA]})
    return rows
