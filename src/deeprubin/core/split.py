"""Grouped, label-stratified, deterministic train/val/test splits and the leakage check.

The unit of splitting is ``group_id`` (the star, the sky position, the parent of an
augmented copy), never the row: objects of one group always land in the same split.
Groups are assigned per label stratum with largest-remainder quotas so every class
keeps the requested fractions as closely as whole groups allow.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

SPLIT_NAMES = ("train", "val", "test")


class LeakageError(RuntimeError):
    """A group appears in more than one split."""


class SplitConfigError(ValueError):
    """Invalid split configuration."""


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    unknown = set(fractions) - set(SPLIT_NAMES)
    if unknown:
        raise SplitConfigError(f"split.fractions: unknown split name(s) {sorted(unknown)}; use {SPLIT_NAMES}")
    values = {name: float(fractions.get(name, 0.0)) for name in SPLIT_NAMES}
    if any(v < 0 for v in values.values()):
        raise SplitConfigError(f"split.fractions: negative fraction in {values}")
    total = sum(values.values())
    if not np.isclose(total, 1.0, atol=1e-6):
        raise SplitConfigError(f"split.fractions: must sum to 1, got {total:.6f} from {values}")
    if values["train"] <= 0 or values["test"] <= 0:
        raise SplitConfigError("split.fractions: train and test fractions must be > 0")
    return values


def _quotas(n: int, fractions: dict[str, float]) -> list[int]:
    """Largest-remainder rounding of ``n * fractions`` to integers summing to n."""
    raw = np.array([n * fractions[s] for s in SPLIT_NAMES])
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts.tolist()


def _group_labels(objects: pd.DataFrame) -> pd.Series:
    """One stratification label per group: its most common label (ties: alphabetical)."""
    counts = objects.groupby(["group_id", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["group_id", "n", "label"], ascending=[True, False, True])
    return counts.drop_duplicates("group_id").set_index("group_id")["label"]


def make_split(objects: pd.DataFrame, fractions: Mapping[str, float], seed: int) -> pd.DataFrame:
    """Assign every object to train, val or test, keeping groups whole.

    Parameters
    ----------
    objects : pandas.DataFrame
        Needs ``object_id``, ``group_id`` and ``label`` columns.
    fractions : mapping
        Target fraction of groups per split (``train``, ``val``, ``test``), summing to 1.
    seed : int
        Shuffling seed; the same objects and seed give the same manifest.

    Returns
    -------
    pandas.DataFrame
        Manifest with columns ``object_id``, ``group_id``, ``label``, ``split``,
        sorted by ``object_id``.
    """
    fractions = _check_fractions(fractions)
    for col in ("object_id", "group_id", "label"):
        if col not in objects.columns:
            raise SplitConfigError(f"objects table: missing column '{col}' needed for splitting")
    group_label = _group_labels(objects)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(group_label.unique()):
        groups = np.sort(group_label.index[group_label == label].to_numpy().astype(str))
        groups = groups[rng.permutation(len(groups))]
        start = 0
        for split_name, count in zip(SPLIT_NAMES, _quotas(len(groups), fractions)):
            for g in groups[start:start + count]:
                assignment[g] = split_name
            start += count
    manifest = objects[["object_id", "group_id", "label"]].copy()
    manifest["split"] = manifest["group_id"].astype(str).map(assignment)
    manifest = manifest.sort_values("object_id", kind="mergesort").reset_index(drop=True)
    check_no_leakage(manifest)
    return manifest


def check_no_leakage(manifest: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if any group_id occurs in more than one split."""
    n_splits = manifest.groupby("group_id")["split"].nunique()
    leaking = n_splits[n_splits > 1]
    if len(leaking):
        examples = ", ".join(map(str, leaking.index[:5]))
        raise LeakageError(
            f"{len(leaking)} group(s) appear in more than one split (e.g. {examples}); "
            "objects of one group must share a split"
        )


def split_summary(manifest: pd.DataFrame) -> dict:
    """Counts of objects and groups per split and per label (for the stage report)."""
    summary: dict = {"n_objects": int(len(manifest)), "n_groups": int(manifest["group_id"].nunique())}
    for split_name in SPLIT_NAMES:
        part = manifest[manifest["split"] == split_name]
        summary[split_name] = {
            "n_objects": int(len(part)),
            "n_groups": int(part["group_id"].nunique()),
            "per_label": {str(k): int(v) for k, v in part["label"].value_counts().sort_index().items()},
        }
    summary["groups_in_more_than_one_split"] = int(
        (manifest.groupby("group_id")["split"].nunique() > 1).sum()
    )
    return summary
