"""Train stage: GP grids + split manifest -> classifier checkpoint, tracked in MLflow."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.entities import Param, RunTag
from omegaconf import DictConfig, OmegaConf

from .. import io
from ..config import to_dict
from ..models import resolve_model_config
from ..preprocess.gp import load_gp_grid
from ..training.checkpoint import save_checkpoint
from ..training.data import grid_features, split_arrays
from ..training.fit import fit_classifier
from ..training.tracking import flatten, git_commit, make_logger
from ._entry import hydra_entry

log = logging.getLogger(__name__)


def _output_dir(cfg: DictConfig) -> Path:
    """DVC-tracked model folder, except in a Hydra multirun: each job writes to its own folder."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir) / "model"
    return Path(cfg.paths.models)


def run_train(cfg: DictConfig) -> dict:
    """Train ``cfg.model``; write ``model.ckpt``, ``config.yaml`` and ``history.csv``; log to MLflow."""
    classes = list(cfg.task.classes)
    grid_path = Path(cfg.paths.processed) / "gp_grid.npz"
    grid = load_gp_grid(grid_path, Path(cfg.paths.processed) / "gp_fits.parquet")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    features = grid_features(grid.mean, grid.std)
    data = split_arrays(grid.object_ids, features, manifest, classes)
    for name in ("train", "val"):
        if name not in data or len(data[name].y) == 0:
            raise ValueError(f"{cfg.paths.splits}/manifest.parquet: the '{name}' split is empty")
    data_hash = io.file_sha256(grid_path)
    train_counts = np.bincount(data["train"].y, minlength=len(classes))

    logger = make_logger(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, run_name=str(cfg.model.name))
    model_config = resolve_model_config(cfg.model, grid_step_days=float(np.diff(grid.grid_time).mean()))
    result = fit_classifier(cfg, data, model_config, n_inputs=features.shape[1], classes=classes, logger=logger)

    out = _output_dir(cfg)
    resolved = to_dict(cfg)
    # No git commit or timestamp in the checkpoint: the same params and data give the
    # same bytes, so dvc.lock does not change on a rerun. The commit goes to MLflow.
    metadata = {"data_sha256": data_hash, "n_train": int(len(data["train"].y)), "n_val": int(len(data["val"].y)),
                "best_val_loss": result.best_val_loss, "epochs_run": result.epochs_run}
    ckpt = save_checkpoint(out / "model.ckpt", result.model, model_config=model_config, classes=classes,
                           bands=[str(b) for b in grid.bands], n_inputs=features.shape[1], config=resolved,
                           metadata=metadata)
    io.write_text(OmegaConf.to_yaml(cfg), out / "config.yaml")
    io.write_text(result.history.to_csv(index=False, float_format="%.6g"), out / "history.csv")

    client, run_id = logger.experiment, logger.run_id
    params = flatten("", {k: resolved[k] for k in ("seed", "model", "trainer", "preprocess", "source")})
    params.update({"data.n_objects": len(grid.object_ids), "data.n_train": metadata["n_train"],
                   "data.n_val": metadata["n_val"]})
    client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                     tags=[RunTag("git_commit", git_commit()), RunTag("dataset_sha256", data_hash)])
    client.log_dict(run_id, {c: int(n) for c, n in zip(classes, train_counts)}, "class_distribution_train.json")
    client.log_artifact(run_id, str(ckpt), "model")
    client.log_artifact(run_id, str(out / "config.yaml"), "model")
    log.info("train: best val_loss %.4f after %d epochs -> %s (MLflow run %s)",
             result.best_val_loss, result.epochs_run, ckpt, run_id)
    return metadata


main = hydra_entry(run_train)

if __name__ == "__main__":
    main()
