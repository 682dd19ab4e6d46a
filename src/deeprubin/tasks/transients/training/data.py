"""Turn GP grids and a split manifest into tensors for training and evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ....core.training import SplitArrays


def grid_features(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Stack GP mean and std as channels: ``(N, B, T), (N, B, T) -> (N, 2B, T)`` float32.

    The std channels carry the measurement and interpolation uncertainty to the model,
    so a flat stretch of grid far from any observation is not mistaken for data.
    """
    if mean.shape != std.shape:
        raise ValueError(f"GP mean shape {mean.shape} != GP std shape {std.shape}")
    return np.concatenate([mean, std], axis=1).astype(np.float32)


def split_arrays(object_ids: np.ndarray, features: np.ndarray, manifest: pd.DataFrame,
                 classes: list[str]) -> dict[str, SplitArrays]:
    """Select each split's rows of ``features`` by object_id.

    Objects in the manifest but absent from the grid (e.g. dropped at preprocessing)
    are skipped; a label outside ``classes`` is an error.
    """
    index = {oid: i for i, oid in enumerate(object_ids.astype(str))}
    class_index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(manifest["label"]) - set(class_index))
    if unknown:
        raise ValueError(f"split manifest: column 'label' has unknown value(s) {unknown}; classes are {classes}")
    out = {}
    for split_name, part in manifest.groupby("split", sort=True):
        part = part[part["object_id"].astype(str).isin(index)]
        rows = np.array([index[o] for o in part["object_id"].astype(str)], dtype=int)
        out[str(split_name)] = SplitArrays(
            object_ids=part["object_id"].astype(str).to_numpy(),
            x=features[rows] if len(rows) else features[:0],
            y=part["label"].map(class_index).to_numpy(dtype=np.int64),
        )
    return out
