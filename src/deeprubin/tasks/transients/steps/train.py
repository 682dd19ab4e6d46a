"""The transients task's ``train`` step (see :mod:`deeprubin.tasks.transients.steps`)."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....core.checkpoint import write_model_outputs
from ....core.config import to_dict
from ....core.metrics import classification_metrics
from ....core.models import model_class, model_name, resolve_model_config
from ....core.registry import log_classifier
from ....core.tracking import flatten, hydra_sweep, log_params, provenance_tags, set_tags, training_run
from ..evaluation.predict import predict_probabilities
from ..features.extract import hide_redshifts
from ..preprocess.gp import load_gp_grid
from ..training.augmented import augmented_train_arrays
from ..preprocess.inputs import feature_config
from ..training.data import SplitArrays, split_arrays
from ..training.inputs import feature_count, model_inputs, uses_features
from ..training.fit import fit_ensemble

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Train ``cfg.model``; write ``model.ckpt``, ``config.yaml`` and ``history.csv``; log to MLflow.

    Returns the run's summary, including ``val_macro_f1`` (the sweep objective) and
    test-set scores (for reports only; never used for selection).
    """
    classes = list(cfg.task.classes)
    grid_path = Path(cfg.paths.processed) / "gp_grid.npz"
    grid = load_gp_grid(grid_path, Path(cfg.paths.processed) / "gp_fits.parquet")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    features_cfg = feature_config(cfg)
    model_config = resolve_model_config(cfg.model, grid_step_days=float(np.diff(grid.grid_time).mean()),
                                        grid_length=int(grid.mean.shape[-1]),
                                        n_features=feature_count([str(b) for b in grid.bands], features_cfg))
    built = model_class(model_config)  # the allow-list, checked before any work; its name is the logged one
    train_ids = manifest.loc[manifest["split"] == "train", "object_id"].astype(str)
    x = _inputs(model_config, grid, Path(cfg.paths.raw), Path(cfg.paths.processed), features_cfg,
                hidden=(train_ids, int(cfg.seed)))
    data = split_arrays(grid.object_ids, x, manifest, classes)
    for name in ("train", "val"):
        if name not in data or len(data[name].y) == 0:
            raise ValueError(f"{cfg.paths.splits}/manifest.parquet: the '{name}' split is empty")
    data_hash = io.file_sha256(grid_path)
    if uses_features(model_config):
        data_hash = hashlib.sha256((data_hash + io.file_sha256(Path(cfg.paths.processed) / "features.parquet")
                                    + io.file_sha256(Path(cfg.paths.raw) / "lightcurves.parquet")).encode()).hexdigest()
    n_augmented = 0
    if cfg.get("augment") is not None and cfg.augment.enabled:  # GP copies of training objects: train only
        extra = augmented_train_arrays(cfg, classes, manifest,
                                       lambda g, folder: _inputs(model_config, g, folder, folder, features_cfg,
                                                                 hidden=(g.object_ids.astype(str), int(cfg.seed))))
        n_augmented = len(extra.y)
        if n_augmented:
            data["train"] = SplitArrays(np.concatenate([data["train"].object_ids, extra.object_ids]),
                                        np.concatenate([data["train"].x, extra.x]),
                                        np.concatenate([data["train"].y, extra.y]))
        data_hash = hashlib.sha256(
            (data_hash + io.file_sha256(Path(cfg.paths.augmented) / "gp_grid.npz")).encode()).hexdigest()

    sweep_id, sweep_dir, job_dir = hydra_sweep()
    out = io.check_writable(job_dir / "model" if job_dir is not None else Path(cfg.paths.models), "models folder")
    with training_run(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, run_name=f"{built.__name__}-seed{cfg.seed}",
                      tags=provenance_tags(built, data_hash, "train"), sweep_id=sweep_id,
                      sweep_dir=sweep_dir) as run:  # FINISHED only after the outputs below are written
        return _train_and_write(cfg, run, data, grid, classes, model_config, out, data_hash, n_augmented)


def _inputs(model_config: dict, grid, raw: Path, processed: Path, features_cfg, hidden) -> np.ndarray:
    """The model's inputs for the objects of ``grid``: the light curves and features of ``raw``/``processed``
    are read only when the model takes them (the fusion model). ``hidden``: ``(training object ids,
    seed)``, whose redshifts :func:`hide_redshifts` hides in part (``redshift_hidden_fraction``)."""
    if not uses_features(model_config):
        return model_inputs(model_config, grid)
    features = hide_redshifts(io.read_parquet(processed / "features.parquet"), hidden[0],
                              features_cfg.redshift_hidden_fraction, hidden[1])
    return model_inputs(model_config, grid, lightcurves=io.read_parquet(raw / "lightcurves.parquet"),
                        features=features, feature_config=features_cfg,
                        features_name=str(processed / "features.parquet"))


def _train_and_write(cfg, run, data, grid, classes, model_config, out, data_hash, n_augmented) -> dict:
    client, run_id, logger = run
    resolved = to_dict(cfg)
    params = flatten("", {k: resolved[k] for k in ("seed", "trainer", "preprocess", "source", "augment")
                          if k in resolved})
    params.update(flatten("model", model_config))
    params.update({"data.n_objects": len(grid.object_ids), "data.n_train": len(data["train"].y),
                   "data.n_val": len(data["val"].y), "data.n_train_augmented": n_augmented})
    log_params(client, run_id, params)
    client.log_dict(run_id, {c: int(n) for c, n in zip(classes, np.bincount(data["train"].y, minlength=len(classes)))},
                    "class_distribution_train.json")

    n_inputs = 2 * len(grid.bands)   # GP mean and std channels per band (a fusion model's grid part too)
    result = fit_ensemble(cfg, data, model_config, n_inputs=n_inputs, classes=classes, logger=logger)

    summary = {"data_sha256": data_hash, "n_train": int(len(data["train"].y)), "n_val": int(len(data["val"].y)),
               "best_val_loss": result.best_score, "epochs_run": result.epochs_run}
    scores = {}
    for split_name in ("val", "test"):
        if split_name in data and len(data[split_name].y):
            probs = predict_probabilities(result.model, data[split_name].x)
            m = classification_metrics(np.asarray(classes)[data[split_name].y], np.asarray(classes)[probs.argmax(1)],
                                       classes)
            scores[f"{split_name}_accuracy"], scores[f"{split_name}_macro_f1"] = m["accuracy"], m["macro_f1"]
    for key, value in scores.items():
        client.log_metric(run_id, key, value)

    # No git commit, run id or timestamp in the checkpoint: the same params and data give
    # the same bytes, so dvc.lock does not change on a rerun. Provenance lives in MLflow.
    ckpt = write_model_outputs(out, result.model, history=result.history,
                               model_config=model_config, classes=classes, bands=[str(b) for b in grid.bands],
                               n_inputs=n_inputs, config=resolved, metadata=summary)
    client.log_artifact(run_id, str(out / "config.yaml"))
    train_table = pd.DataFrame({"object_id": data["train"].object_ids, "label": np.asarray(classes)[data["train"].y]})
    model_uri = log_classifier(client, run_id, ckpt, data["train"].x.shape[1:],
                               registered_name=f"{cfg.task.name}-classifier", dataset_df=train_table,
                               dataset_name=f"{cfg.task.name}-train", dataset_digest=data_hash[:16])
    set_tags(client, run_id, {"registered_model": model_uri, "model": model_name(result.model)})
    summary.update(scores, mlflow_run_id=run_id, model_uri=model_uri)
    log.info("train: best val_loss %.4f, val macro-F1 %.3f after %d epochs -> %s (MLflow run %s, %s)",
             result.best_score, scores.get("val_macro_f1", float("nan")), result.epochs_run, ckpt, run_id, model_uri)
    return summary
