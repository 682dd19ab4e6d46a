"""Apply a trained checkpoint to any source: ingest -> training preprocessing -> probabilities.

:func:`predict_source` is the library form of the ``predict`` entry point
(:mod:`deeprubin.stages.predict`) and what the ``real_sky`` stage uses. It never looks at
the *current* pipeline config for anything that shaped the model: the task (classes, band
wavelengths), the GP settings and the seed all come from the resolved config saved in the
checkpoint by the train stage, so a model is applied exactly as it was trained, even after
``conf/`` has changed. Only the source node is the caller's.

Steps (each one the same code the pipeline runs):

1. :func:`deeprubin.core.checkpoint.load_checkpoint` rebuilds the classifier;
2. the source loader registered in :data:`deeprubin.sources.SOURCES` reads the data
   into the canonical tables, validated with the source's own ``validation`` settings
   (:func:`deeprubin.core.schema.validate_tables`, as in the ingest stage);
3. :func:`deeprubin.tasks.transients.preprocess.gp.fit_gp_grid` with :func:`deeprubin.tasks.transients.preprocess.inputs.gp_kwargs`
   of the *checkpoint's* config (and its optional ``preprocess.detections_only`` row filter,
   :func:`deeprubin.tasks.transients.preprocess.inputs.gp_input`);
4. :func:`deeprubin.tasks.transients.training.inputs.model_inputs`: GP mean and std channels, and for
   the fusion model the light-curve features (extracted with the checkpoint's
   ``preprocess.features``) and folded views of the same light curves;
5. :func:`deeprubin.tasks.transients.evaluation.predict.class_probabilities`, the single place where class
   probabilities are produced: the softmax, calibrated by the calibrator the ``calibrate``
   stage saved beside the model when a calibration file is given;
6. :func:`deeprubin.tasks.transients.evaluation.predict.prediction_table`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ....core.calibration import load_calibrator, resolve_calibration
from ....core.checkpoint import load_checkpoint
from ....core.config import ConfigError
from ....core.quality import check_quality_config, quality_table, unusable_mask
from ....core.schema import SchemaError, validate_tables
from ..preprocess.gp import GPGrid, fit_gp_grid
from ..training.inputs import checkpoint_feature_config, model_inputs, uses_features
from .predict import class_probabilities, prediction_table, representation_array
from .predict import representation as record_representation

log = logging.getLogger(__name__)

#: The ``label`` of objects predicted from a source that has no labels.
UNLABELED = "unlabeled"


class CheckpointMismatchError(ValueError):
    """The source's data cannot be fed to this checkpoint (e.g. bands it was not trained on)."""


@dataclass
class SourcePrediction:
    """What :func:`predict_source_detailed` returns.

    Attributes
    ----------
    predictions : pandas.DataFrame
        One row per classified object: ``object_id``, ``label`` (the source's label, if
        any), ``predicted``, ``prob_<class>`` for every class of the checkpoint.
    objects : pandas.DataFrame
        The validated ``objects`` table of the source (metadata columns included).
    lightcurves : pandas.DataFrame
        The validated ``lightcurves`` table (before the GP's row filter).
    grid : deeprubin.tasks.transients.preprocess.gp.GPGrid
        GP grid of the classified objects, same order as ``predictions``.
    classes, bands : list of str
        The checkpoint's class and band order.
    validation : dict
        :meth:`deeprubin.core.schema.ValidationReport.as_dict` of the source tables.
    unusable : pandas.DataFrame
        Objects not classified because of their data-quality flags (``object_id``, ``label``,
        ``quality_flags``); empty when ``quality`` was not given or nothing was flagged.
    calibration : str
        The calibrator applied and its file (``temperature from models/.../calibration.json``),
        or ``none (raw softmax)``.
    """

    predictions: pd.DataFrame
    objects: pd.DataFrame
    lightcurves: pd.DataFrame
    grid: GPGrid
    classes: list[str]
    bands: list[str]
    validation: dict = field(default_factory=dict)
    calibration: str = "none (raw softmax)"
    unusable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"object_id": [], "label": [], "quality_flags": []}))


def training_config(meta: Mapping[str, Any], checkpoint_path: str | Path) -> DictConfig:
    """The resolved training config saved in a checkpoint, checked against its class/band lists.

    Raises :class:`CheckpointMismatchError` naming the checkpoint when the config is absent or
    disagrees with the checkpoint's ``classes``/``bands`` (a hand-edited or foreign file).
    """
    config = meta.get("config")
    if not isinstance(config, Mapping) or "task" not in config or "preprocess" not in config:
        raise CheckpointMismatchError(
            f"{checkpoint_path}: checkpoint has no saved training config with 'task' and 'preprocess' "
            f"(written by an old or foreign trainer); retrain with the train stage")
    cfg = OmegaConf.create(dict(config))
    bands = [str(b) for b in cfg.task.band_wavelengths]
    if bands != [str(b) for b in meta.get("bands", bands)]:
        raise CheckpointMismatchError(f"{checkpoint_path}: saved config bands {bands} != checkpoint bands "
                                      f"{list(meta['bands'])}")
    if [str(c) for c in cfg.task.classes] != [str(c) for c in meta["classes"]]:
        raise CheckpointMismatchError(f"{checkpoint_path}: saved config classes {list(cfg.task.classes)} != "
                                      f"checkpoint classes {list(meta['classes'])}")
    return cfg


def source_config(train_cfg: DictConfig, source: Mapping | DictConfig, *,
                  label_classes: Sequence[str] = ()) -> DictConfig:
    """The config a source loader sees at prediction time.

    The checkpoint's training config with ``source`` replaced; ``task.classes`` is extended by
    ``label_classes`` (labels the data may carry beyond the model's classes, e.g. ``SLSN`` in a
    real sample evaluated with a model that has no such class) so loaders keep those objects,
    and by :data:`UNLABELED`, the label of objects whose source has none (a ``files`` source
    without ``label`` or ``metadata.label_column``, a loader returning no ``label`` column).
    """
    cfg = train_cfg.copy()
    node = OmegaConf.to_container(source, resolve=True) if OmegaConf.is_config(source) else dict(source)
    if "name" not in node:
        raise ConfigError("config key 'source.name' is missing (simulate, files, alerce, lightkurve, ...)")
    if node["name"] == "files" and _files_source_has_no_labels(node):
        node["label"] = UNLABELED  # data with no labels is classified as it is, not given invented labels
        label_classes = [*label_classes, UNLABELED]
    cfg.source = OmegaConf.create(node)
    extra = [str(c) for c in label_classes if str(c) not in set(map(str, cfg.task.classes))]
    cfg.task.classes = [str(c) for c in cfg.task.classes] + extra
    return cfg


def _files_source_has_no_labels(node: dict) -> bool:
    """A ``files`` source with neither ``label`` nor a label column (its layout's defaults included)."""
    from ....sources.files import resolve_options

    if node.get("label") is not None:
        return False
    try:
        opts = resolve_options({**node, "label": UNLABELED})
    except ConfigError:
        return False  # let the loader report the config error itself
    return not opts["metadata"].get("label_column") and opts["layout"] != "alerce_csv"


def load_source_tables(cfg: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Run the source's ingest loader and the ingest stage's validation; ``(lc, objects, report)``."""
    from ....sources import SOURCES, resolve_loader

    name = str(cfg.source.name)
    if name not in SOURCES:
        raise ConfigError(f"config key 'source.name' must be one of {sorted(SOURCES)}, got {name!r}")
    validation = cfg.source.get("validation") or {}
    lightcurves, objects = resolve_loader(cfg.source)(cfg)
    classes = list(cfg.task.classes)
    if "label" not in objects.columns:  # a loader for unlabeled data
        objects = objects.assign(label=UNLABELED)
        classes.append(UNLABELED)
    lightcurves, objects, report = validate_tables(
        lightcurves, objects, classes=classes, bands=None,
        min_points=int(validation.get("min_points", 3)), min_bands=int(validation.get("min_bands", 1)),
        on_invalid=str(validation.get("on_invalid", "raise")), table=f"source '{name}'")
    return lightcurves, objects, report.as_dict()


def check_bands(lightcurves: pd.DataFrame, bands: Sequence[str], where: str) -> None:
    """Every band of the data must be one the checkpoint was trained on (named otherwise)."""
    unknown = sorted(set(lightcurves["band"].astype(str)) - set(map(str, bands)))
    if unknown:
        first = lightcurves.loc[lightcurves["band"].astype(str) == unknown[0], "object_id"].iloc[0]
        raise CheckpointMismatchError(
            f"{where}: column 'band' has band(s) {unknown} (first in object '{first}') that the checkpoint "
            f"was not trained on; its bands are {list(bands)} (map or drop them in the source config, "
            f"e.g. source.band_aliases / source.drop_bands for source=files)")


class Predictor:
    """A checkpoint ready to classify light-curve tables: the predict path's steps 3-5.

    Loads the model, its saved training config and (optionally) its calibrator once;
    :meth:`probabilities` then turns any canonical ``lightcurves`` table into class
    probabilities exactly as the ``predict`` entry point does (the GP with the checkpoint's
    settings, the fusion model's features and folded views, the calibrated softmax). Shared by
    :func:`predict_source_detailed` and the stream classifier (:mod:`deeprubin.stream`).
    """

    def __init__(self, checkpoint_path: str | Path, *, calibration: str | Path | None = None):
        self.checkpoint = Path(checkpoint_path)
        self.model, self.meta = load_checkpoint(checkpoint_path)
        self.train_cfg = training_config(self.meta, checkpoint_path)
        self.classes = [str(c) for c in self.meta["classes"]]
        self.bands = [str(b) for b in self.train_cfg.task.band_wavelengths]
        calibration = resolve_calibration(calibration, checkpoint_path)
        self.calibrator = None if calibration is None else load_calibrator(calibration, classes=self.classes,
                                                                            checkpoint=checkpoint_path)
        self.calibration = ("none (raw softmax)" if self.calibrator is None
                            else f"{self.calibrator.method} from {calibration}")
        model_config = self.meta["model_config"]
        self.feature_config = (checkpoint_feature_config(self.meta, str(checkpoint_path))
                               if uses_features(model_config) else None)
        #: seconds spent so far in each step of :meth:`outputs` (gp, features, model): where the time goes
        self.timings: dict[str, float] = {"gp": 0.0, "features": 0.0, "model": 0.0}

    def grid(self, lightcurves: pd.DataFrame, *, progress: bool = False) -> GPGrid:
        """The GP grid of ``lightcurves`` with the checkpoint's preprocessing settings."""
        from ..preprocess.inputs import gp_input, gp_kwargs

        grid = fit_gp_grid(gp_input(lightcurves, self.train_cfg),
                           band_wavelengths=dict(self.train_cfg.task.band_wavelengths),
                           progress=progress, **gp_kwargs(self.train_cfg))
        if list(map(str, grid.bands)) != self.bands:
            raise CheckpointMismatchError(f"{self.checkpoint}: GP grid bands {list(grid.bands)} != checkpoint "
                                          f"bands {self.bands}")
        return grid

    def outputs(self, lightcurves: pd.DataFrame, *, progress: bool = False,
                representation: bool = False, features: bool = False,
                objects: pd.DataFrame | None = None) -> "PredictorOutputs":
        """Everything the predict path computes for ``lightcurves``: grid, features, inputs, probabilities
        and, with ``representation``, the model's learned representation recorded in the same forward
        pass (:func:`~deeprubin.tasks.transients.evaluation.predict.representation`). ``features``: the
        light-curve features even for a model that does not read them (with the checkpoint's saved
        ``preprocess.features``, as the pipeline's preprocess step extracts them). ``objects``: the
        canonical objects table, whose ``redshift`` gives the absolute magnitudes of a model trained
        with them (without it they are missing, as for an alert without a host redshift)."""
        from ..features.extract import extract_features

        clock = time.perf_counter()
        grid = self.grid(lightcurves, progress=progress)
        clock = self._tick("gp", clock)
        model_config = self.meta["model_config"]
        table = None
        if self.feature_config is not None or features:
            config = self.feature_config or checkpoint_feature_config(self.meta, str(self.checkpoint))
            ids = set(grid.object_ids.astype(str))
            table = extract_features(lightcurves[lightcurves["object_id"].astype(str).isin(ids)],
                                     [str(b) for b in grid.bands], config, objects)
        if self.feature_config is not None:   # the fusion model: features and folded views of the same curves
            x = model_inputs(model_config, grid, lightcurves=lightcurves, feature_config=self.feature_config,
                             features=table)
        else:
            x = model_inputs(model_config, grid)
        clock = self._tick("features", clock)
        if x.ndim == 3 and x.shape[1] != int(self.meta["n_inputs"]):
            raise CheckpointMismatchError(f"{self.checkpoint}: features have {x.shape[1]} channels, the model "
                                          f"expects {self.meta['n_inputs']}")
        if not representation:
            out = PredictorOutputs(grid, table, x, class_probabilities(self.model, x, self.calibrator))
        else:
            with record_representation(self.model) as captured:
                p = class_probabilities(self.model, x, self.calibrator)
            out = PredictorOutputs(grid, table, x, p, representation_array(captured))
        self._tick("model", clock)
        return out

    def _tick(self, step: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[step] += now - since
        return now

    def probabilities(self, lightcurves: pd.DataFrame, *, progress: bool = False,
                      objects: pd.DataFrame | None = None) -> tuple[GPGrid, np.ndarray]:
        """``(grid, probabilities)`` for every object of ``lightcurves`` (rows in ``grid.object_ids`` order)."""
        out = self.outputs(lightcurves, progress=progress, objects=objects)
        return out.grid, out.probabilities


@dataclass
class PredictorOutputs:
    """What :meth:`Predictor.outputs` returns, rows in ``grid.object_ids`` order."""

    grid: GPGrid
    features: pd.DataFrame | None      # the feature table (object_id + columns): fusion model or asked for
    x: np.ndarray                      # the model's inputs
    probabilities: np.ndarray          # calibrated when the predictor has a calibrator
    representation: np.ndarray | None = None   # (n, width) when asked for


def predict_source_detailed(checkpoint_path: str | Path, source: Mapping | DictConfig, *,
                            label_classes: Sequence[str] = (), progress: bool = False,
                            calibration: str | Path | None = None,
                            quality: Mapping | None = None) -> SourcePrediction:
    """Classify every object of ``source`` with the checkpoint; see :func:`predict_source`."""
    predictor = Predictor(checkpoint_path, calibration=calibration)
    classes, bands = predictor.classes, predictor.bands
    loaded = load_for_prediction(predictor.train_cfg, source, bands, label_classes=label_classes, quality=quality)
    lightcurves, objects, flags, unusable, where = (loaded.lightcurves, loaded.objects, loaded.flags,
                                                    loaded.unusable, loaded.where)
    grid, probabilities = predictor.probabilities(lightcurves, progress=progress, objects=objects)
    labels = objects.set_index(objects["object_id"].astype(str))["label"]
    object_ids = grid.object_ids.astype(str)
    table = prediction_table(object_ids, probabilities, classes, labels.reindex(object_ids).to_numpy())
    if flags is not None:
        table["quality_flags"] = table["object_id"].map(flags).fillna("").to_numpy()
    log.info("predict: %d objects of %s classified with %s, calibration %s", len(table), where, checkpoint_path,
             predictor.calibration)
    return SourcePrediction(table, objects, lightcurves, grid, classes, bands, loaded.validation,
                            predictor.calibration, unusable)


@dataclass
class LoadedSource:
    """What :func:`load_for_prediction` returns: the objects to classify and those set aside."""

    lightcurves: pd.DataFrame
    objects: pd.DataFrame
    validation: dict
    flags: pd.Series | None          # quality flags per object_id (None without a quality config)
    unusable: pd.DataFrame           # object_id, label, quality_flags of the objects not classified
    where: str                       # "source '<name>' (<path>)", for messages


def load_for_prediction(cfg: DictConfig, source: Mapping | DictConfig, bands: Sequence[str], *,
                        label_classes: Sequence[str] = (), quality: Mapping | None = None) -> LoadedSource:
    """Read ``source`` as a model trained with ``cfg`` (a task config) would be given it: the source's
    loader and validation, bands checked against ``bands``, objects whose data-quality flags are in
    ``quality.unusable`` set aside. Shared by the deep model's predict path and the forest's real-sky
    scoring, so both classify the same objects."""
    scfg = source_config(cfg, source, label_classes=label_classes)
    where = f"source '{scfg.source.name}'" + (f" ({scfg.source.path})" if scfg.source.get("path") else "")
    lightcurves, objects, validation = load_source_tables(scfg)
    if objects.empty:
        raise SchemaError(f"{where}: no valid objects to classify after validation")
    check_bands(lightcurves, bands, where)
    flags, unusable = None, pd.DataFrame({"object_id": [], "label": [], "quality_flags": []})
    if quality is not None:
        lightcurves, objects, flags, unusable = _set_aside_unusable(lightcurves, objects, quality, where)
    return LoadedSource(lightcurves, objects, validation, flags, unusable, where)


def _set_aside_unusable(lightcurves: pd.DataFrame, objects: pd.DataFrame, quality: Mapping, where: str):
    """Drop the objects whose data-quality flags are in ``quality.unusable``; return them listed.

    Returns ``(lightcurves, objects, flags per object_id, unusable table)``; raises
    :class:`~deeprubin.core.schema.SchemaError` when no object is left.
    """
    q = check_quality_config(quality)
    table = quality_table(lightcurves, q, objects)
    flags = table.set_index("object_id")["quality_flags"]
    bad_ids = set(table.loc[unusable_mask(table, q["unusable"]), "object_id"])
    ids = objects["object_id"].astype(str)
    unusable = objects.loc[ids.isin(bad_ids), ["object_id", "label"]].reset_index(drop=True)
    unusable["quality_flags"] = unusable["object_id"].astype(str).map(flags).to_numpy()
    if not bad_ids:
        return lightcurves, objects, flags, unusable
    shown = dict(list(zip(unusable["object_id"].astype(str), unusable["quality_flags"]))[:5])
    log.warning("predict: %d object(s) of %s not classified, their data-quality flags are in quality.unusable "
                "(first: %s); listed in the output with no prediction", len(bad_ids), where, shown)
    if len(bad_ids) == len(objects):
        raise SchemaError(f"{where}: every object is flagged unusable by its data quality ({shown}...); "
                          "see quality.unusable")
    keep = ~lightcurves["object_id"].astype(str).isin(bad_ids)
    return (lightcurves.loc[keep].reset_index(drop=True), objects.loc[~ids.isin(bad_ids)].reset_index(drop=True),
            flags, unusable)


def predict_source(checkpoint_path: str | Path, source: Mapping | DictConfig, *,
                   label_classes: Sequence[str] = (), progress: bool = False,
                   calibration: str | Path | None = None, quality: Mapping | None = None) -> pd.DataFrame:
    """One row per object of ``source``: object_id, label, predicted, prob_<class>.

    Parameters
    ----------
    checkpoint_path : path
        A ``model.ckpt`` written by the train stage.
    source : mapping or omegaconf.DictConfig
        A ``source`` config node (e.g. ``compose_task("transients", ["source=files_bts_snia"]).source``);
        it must have ``name`` (a key of :data:`deeprubin.sources.SOURCES`).
    label_classes : sequence of str
        Labels the source may carry besides the model's classes (kept, not classified into).
    progress : bool
        Show the GP fit's progress bar.
    calibration : path, ``"auto"`` or None
        The ``calibration.json`` the ``calibrate`` stage fitted for this checkpoint (its
        default calibrator is applied to the softmax); ``auto``: the one beside the
        checkpoint, if any; None: uncalibrated probabilities. A file fitted for another
        checkpoint is refused (:class:`~deeprubin.core.calibration.CalibrationMismatchError`).
    quality : mapping or None
        The ``quality`` config node (:mod:`deeprubin.core.quality`): objects with a flag in
        ``quality.unusable`` are not classified (:attr:`SourcePrediction.unusable` lists
        them) and every row gets a ``quality_flags`` column. None: no flags.

    Returns
    -------
    pandas.DataFrame
        Probabilities (each row sums to 1): the model's softmax, calibrated when
        ``calibration`` is given.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``checkpoint_path``.
    ValueError
        Corrupt or foreign checkpoint (:func:`deeprubin.core.checkpoint.load_checkpoint`);
        :class:`CheckpointMismatchError` for bands the model was not trained on;
        :class:`deeprubin.core.schema.SchemaError` / :class:`deeprubin.core.config.ConfigError` from the
        source loader (bad files, bad options), naming file, column and key.
    """
    return predict_source_detailed(checkpoint_path, source, label_classes=label_classes,
                                   progress=progress, calibration=calibration, quality=quality).predictions


__all__ = ["CheckpointMismatchError", "LoadedSource", "Predictor", "PredictorOutputs", "SourcePrediction", "check_bands", "load_for_prediction",
           "load_source_tables", "predict_source", "predict_source_detailed", "source_config", "training_config"]
