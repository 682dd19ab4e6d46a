"""The augment stage's GP copies of training objects, read back as training arrays.

The copies inherit their parent's group; :func:`check_parents_in_train` refuses any copy
whose parent is outside the training split (a leak into validation or test).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....core.split import LeakageError, check_no_leakage
from ..preprocess.gp import load_gp_grid
from .data import SplitArrays, grid_features


def check_parents_in_train(aug_obj: pd.DataFrame, manifest: pd.DataFrame) -> None:
    """Every copy's parent is a training object of the manifest, with the same group; no group leaks."""
    if aug_obj.empty:
        return
    split_of = manifest.set_index(manifest["object_id"].astype(str))["split"]
    parent_split = aug_obj["parent_id"].astype(str).map(split_of)
    if (parent_split != "train").any():
        bad = aug_obj.loc[parent_split != "train", "object_id"].iloc[0]
        raise LeakageError(f"augmented object {bad!r} has a parent outside the training split")
    combined = pd.concat([manifest[["object_id", "group_id", "split"]],
                          aug_obj[["object_id", "group_id", "split"]]], ignore_index=True)
    check_no_leakage(combined)


def augmented_train_arrays(cfg: DictConfig, classes: list[str], manifest: pd.DataFrame, inputs=None):
    """The augmented copies as training arrays (:class:`deeprubin.tasks.transients.training.data.SplitArrays`).

    ``inputs(grid, folder)`` builds the model's inputs from the copies' GP grid and the folder of
    their light curves and features (default: the GP-grid channels).

    Raises :class:`deeprubin.core.split.LeakageError` if a copy's group is outside the
    training split of ``manifest`` (the manifest the model is trained with).
    """
    folder = Path(cfg.paths.augmented)
    grid = load_gp_grid(folder / "gp_grid.npz", folder / "gp_fits.parquet")
    objects = io.read_parquet(folder / "objects.parquet")
    if len(grid.object_ids) == 0:
        n_bands, n_time = grid.mean.shape[1:]
        return SplitArrays(np.array([], dtype=str), np.zeros((0, 2 * n_bands, n_time), np.float32),
                           np.array([], dtype=np.int64))   # concatenated with nothing: train's shape stays
    check_parents_in_train(objects, manifest)
    label = objects.set_index(objects["object_id"].astype(str))["label"].astype(str)
    labels = label.reindex(grid.object_ids)
    class_index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels.dropna()) - set(class_index))
    if labels.isna().any() or unknown:
        raise ValueError(f"{folder}/objects.parquet: labels missing or unknown ({unknown}) for augmented objects")
    x = grid_features(grid.mean, grid.std) if inputs is None else inputs(grid, folder)
    return SplitArrays(object_ids=grid.object_ids.astype(str), x=x,
                       y=labels.map(class_index).to_numpy(dtype=np.int64))
