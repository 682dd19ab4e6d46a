"""Star-level scores from segment scores."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...core.config import ConfigError

METHODS = ("topk_mean", "max", "mean")


def aggregate_scores(scores: np.ndarray, method: str, k: int = 3) -> float:
    """One star score from its segment scores.

    ``topk_mean``: mean of the ``k`` highest (all if fewer) -- robust to one spurious
    segment while still driven by the transit-bearing ones; ``max``; ``mean``.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        raise ValueError("aggregate_scores: no segment scores (a light curve without segments)")
    if method == "max":
        return float(scores.max())
    if method == "mean":
        return float(scores.mean())
    if method == "topk_mean":
        if k < 1:
            raise ConfigError(f"config key 'transits.aggregate.k' must be >= 1, got {k}")
        return float(np.sort(scores)[::-1][:k].mean())
    raise ConfigError(f"config key 'transits.aggregate.method' must be one of {METHODS}, got {method!r}")


def star_scores(segments: pd.DataFrame, method: str, k: int) -> pd.DataFrame:
    """Per light curve: ``target_id, mission, num_segments, star_score`` (+ ``object_id``).

    ``segments`` needs ``object_id``, ``target_id``, ``mission`` and ``score``.
    """
    rows = []
    for object_id, part in segments.groupby("object_id", sort=True):
        rows.append({"object_id": object_id, "target_id": part["target_id"].iloc[0],
                     "mission": part["mission"].iloc[0], "num_segments": int(len(part)),
                     "star_score": aggregate_scores(part["score"].to_numpy(), method, k)})
    return pd.DataFrame(rows, columns=["object_id", "target_id", "mission", "num_segments", "star_score"])
