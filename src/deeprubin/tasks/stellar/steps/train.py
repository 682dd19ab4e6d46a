"""The stellar task's ``train`` step (see :mod:`deeprubin.tasks.stellar.steps`): the multi-task
spectral network (``tasks.stellar.model``) on the training stars, early-stopped on validation."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ....core import io
from ....core.checkpoint import write_model_outputs
from ....core.config import to_dict
from ....core.models import model_class, model_name, resolve_model_config
from ....core.tracking import flatten, hydra_sweep, log_params, provenance_tags, set_tags, training_run
from ..dataset import TARGETS, class_index, read_split_tables, truth_columns
from ..fit import StellarArrays, TargetScaler, fit_stellar, predict_outputs

log = logging.getLogger(__name__)

#: Names of the input channels, stored in the checkpoint (its ``bands`` field).
CHANNELS = ["normalised_flux", "flux_error", "mask"]


def split_arrays(x: np.ndarray, table, classes, scaler: TargetScaler, where: str) -> StellarArrays:
    """The :class:`StellarArrays` of ``table``'s rows: standardised targets, known-target mask."""
    values = table[truth_columns()].to_numpy(float)
    return StellarArrays(table["object_id"].astype(str).to_numpy(), x[table["row"].to_numpy()].astype(np.float32),
                         class_index(table["label"], classes, where),
                         scaler.transform(values).astype(np.float32), np.isfinite(values))


def train(cfg: DictConfig) -> dict:
    """Train, write ``model.ckpt`` (the target scaler in its metadata), ``config.yaml``, ``history.csv``."""
    x, parts = read_split_tables(cfg.paths, ("train", "val"))
    classes = list(cfg.task.classes)
    seed = int(cfg.seed)
    scaler = TargetScaler.fit(parts["train"][truth_columns()].to_numpy(float), list(TARGETS),
                              log10=list(cfg.trainer.get("log10_targets") or ()))
    where = f"{cfg.paths.raw}/objects.parquet"
    train_set = split_arrays(x, parts["train"], classes, scaler, where)
    val_set = split_arrays(x, parts["val"], classes, scaler, where)
    data_hash = io.file_sha256(Path(cfg.paths.processed) / "spectra.npz")
    sweep_id, sweep_dir, job_dir = hydra_sweep()
    out = io.check_writable(job_dir / "model" if job_dir is not None else Path(cfg.paths.models), "models folder")
    model_config = resolve_model_config(cfg.model)
    built = model_class(model_config)
    with training_run(cfg.mlflow.tracking_uri, str(cfg.mlflow.experiment), run_name=f"{built.__name__}-seed{seed}",
                      tags=provenance_tags(built, data_hash, "train", task="stellar"), sweep_id=sweep_id,
                      sweep_dir=sweep_dir) as run:
        client, run_id, logger = run
        resolved = to_dict(cfg)
        params = flatten("", {k: resolved[k] for k in ("trainer", "preprocess")})
        params.update(flatten("model", model_config))
        params.update({"seed": seed, "data.n_train": len(train_set.y), "data.n_val": len(val_set.y)})
        log_params(client, run_id, params)
        result = fit_stellar(cfg.trainer, model_config, train_set, val_set, seed, n_classes=len(classes),
                             target_names=list(TARGETS), logger=logger)
        proba, mean, sigma = predict_outputs(result.model, val_set.x)
        val_physical = scaler.inverse_mean(mean)
        truth = parts["val"][truth_columns()].to_numpy(float)
        val_mae = {name: float(np.nanmean(np.abs(val_physical[:, k] - truth[:, k]))) for k, name in enumerate(TARGETS)}
        val_accuracy = float(np.mean(proba.argmax(1) == val_set.y))
        summary = {"data_sha256": data_hash, "n_train": int(len(train_set.y)), "n_val": int(len(val_set.y)),
                   "best_monitor": result.best_score, "monitor": str(cfg.trainer.monitor),
                   "neg_val_loss": -float(result.best_score), "epochs_run": result.epochs_run,
                   "val_accuracy": val_accuracy, **{f"val_mae_{k}": v for k, v in val_mae.items()},
                   "target_scaler": scaler.to_dict(), "targets": list(TARGETS)}
        for key in ("val_accuracy", "val_mae_teff", "val_mae_logg", "val_mae_feh"):
            client.log_metric(run_id, f"{key}_final", summary[key])
        write_model_outputs(out, result.model, history=result.history, model_config=model_config, classes=classes,
                            bands=CHANNELS, n_inputs=int(train_set.x.shape[1]), config=resolved, metadata=summary)
        client.log_artifact(run_id, str(out / "config.yaml"))
        client.log_artifact(run_id, str(out / "history.csv"))
        set_tags(client, run_id, {"val_mae_teff": f"{val_mae['teff']:.1f}", "model": model_name(result.model)})
    log.info("train stellar: %d training spectra; val accuracy %.3f, MAE Teff %.0f K, logg %.3f, [Fe/H] %.3f after "
             "%d epochs (MLflow run %s)", len(train_set.y), val_accuracy, val_mae["teff"], val_mae["logg"],
             val_mae["feh"], result.epochs_run, run_id)
    return summary
