"""What the evaluation stages share: the trained model and its inputs per split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ....core import io
from ....core.checkpoint import load_checkpoint
from ..preprocess.gp import GPGrid, load_gp_grid
from ..training.data import SplitArrays, split_arrays
from ..training.inputs import checkpoint_feature_config, model_inputs, uses_features


@dataclass
class ModelInputs:
    """The checkpointed model, its metadata and its inputs (:func:`~deeprubin.tasks.transients.training.inputs.model_inputs`) of every split."""

    model: torch.nn.Module
    meta: dict
    classes: list[str]
    grid: GPGrid
    manifest: pd.DataFrame
    splits: dict[str, SplitArrays]
    checkpoint: Path

    def split(self, name: str) -> SplitArrays:
        """One split's arrays; ``ValueError`` naming the manifest when it is missing or empty."""
        arrays = self.splits.get(name)
        if arrays is None or len(arrays.y) == 0:
            raise ValueError(f"split manifest: the '{name}' split has no object with a GP grid")
        return arrays

    def groups(self, object_ids: np.ndarray) -> np.ndarray:
        """``group_id`` of each object (the manifest's), for grouped bootstrap."""
        group_of = dict(zip(self.manifest["object_id"].astype(str), self.manifest["group_id"].astype(str)))
        return np.array([group_of[str(o)] for o in object_ids])


def load_model_inputs(cfg: DictConfig) -> ModelInputs:
    """Load ``paths.models/model.ckpt``, the GP grid and the split manifest named in ``cfg.paths``."""
    checkpoint = Path(cfg.paths.models) / "model.ckpt"
    model, meta = load_checkpoint(checkpoint)
    classes = [str(c) for c in meta["classes"]]
    processed = Path(cfg.paths.processed)
    grid = load_gp_grid(processed / "gp_grid.npz", processed / "gp_fits.parquet")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    model_config = meta["model_config"]
    if uses_features(model_config):
        x = model_inputs(model_config, grid, lightcurves=io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet"),
                         features=io.read_parquet(processed / "features.parquet"),
                         feature_config=checkpoint_feature_config(meta, str(checkpoint)),
                         features_name=str(processed / "features.parquet"))
    else:
        x = model_inputs(model_config, grid)
    splits = split_arrays(grid.object_ids, x, manifest, classes)
    return ModelInputs(model, meta, classes, grid, manifest, splits, checkpoint)
