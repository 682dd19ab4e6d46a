"""Choosing training segments: per-star cap, negative:positive ratio, hard negatives.

All choices are seeded. Positives whose in-segment SNR is known and below
``min_positive_snr`` are left out of training (a transit buried in noise is a noisy label;
evaluation still counts them). Positives are all kept (up to the per-star cap); negatives fill
``neg_pos_ratio x n_positives``, a ``hard_negative_fraction`` of them the hardest (the
deepest normalised dip: eclipses, outliers, sensitivity jumps), the rest at random.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...core.config import require


def check_sampling_config(cfg) -> None:
    require(cfg, "max_segments_per_star", at_least=1)
    require(cfg, "neg_pos_ratio", positive=True)
    frac = require(cfg, "hard_negative_fraction", at_least=0)
    if frac > 1:
        from ...core.config import ConfigError

        raise ConfigError(f"config key 'hard_negative_fraction' must be <= 1, got {frac}")


def sample_training_segments(table: pd.DataFrame, cfg, seed: int) -> np.ndarray:
    """Row positions (into ``table``) of the training segments, sorted.

    Parameters
    ----------
    table : pandas.DataFrame
        Training-split segments with ``object_id``, ``label`` (0/1), ``min_value``.
    cfg : DictConfig
        The ``transits.sampling`` node.
    """
    check_sampling_config(cfg)
    rng = np.random.default_rng(seed)
    cap = int(cfg.max_segments_per_star)
    min_snr = float(cfg.get("min_positive_snr", 0.0) or 0.0)
    if min_snr > 0 and "snr" in table.columns:
        weak = (table["label"] == 1) & (table["snr"].fillna(np.inf) < min_snr)
    else:
        weak = pd.Series(False, index=table.index)
    weak = weak.to_numpy()
    pos_rows, neg_rows = [], []
    usable = table.reset_index(drop=True).assign(_row=np.arange(len(table)))[~weak]
    for _, part in usable.groupby("object_id", sort=True):
        pos = part[part["label"] == 1]
        neg = part[part["label"] == 0]
        pos = pos.iloc[rng.permutation(len(pos))[:cap]]
        pos_rows.append(pos["_row"].to_numpy())
        # Negatives of a star: its hardest first, then random, within what the cap leaves.
        room = max(cap - len(pos), 0)
        neg = neg.iloc[rng.permutation(len(neg))][:room]
        neg_rows.append(neg[["_row", "min_value"]].to_numpy())
    positives = np.concatenate(pos_rows).astype(int) if pos_rows else np.zeros(0, int)
    negatives = np.concatenate(neg_rows) if neg_rows else np.zeros((0, 2))
    n_neg = min(len(negatives), int(round(float(cfg.neg_pos_ratio) * max(len(positives), 1))))
    n_hard = int(round(float(cfg.hard_negative_fraction) * n_neg))
    by_depth = np.argsort(negatives[:, 1], kind="mergesort")  # most negative dip first
    hard = by_depth[:n_hard]
    rest = by_depth[n_hard:]
    easy = rest[rng.permutation(len(rest))[: n_neg - n_hard]]
    chosen = np.concatenate([positives, negatives[hard, 0].astype(int), negatives[easy, 0].astype(int)])
    return np.sort(chosen)
