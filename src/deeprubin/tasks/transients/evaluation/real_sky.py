"""Scoring a simulation-trained classifier against the labels of a real sample.

Real samples rarely share the model's class list: the ALeRCE SNe include superluminous SNe
(``SLSN``) that a transients model may not have, and the BTS sample is SNe Ia only. Each real
label is mapped to a model class with a per-dataset ``label_map`` (real label -> model class);
a label whose target is not one of the model's classes (or that is not in the map) is
*unmapped*: its objects are classified and counted in the confusion matrix, but have no
correct answer and no recall.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def label_mapping(real_labels: Sequence[str], label_map: Mapping[str, str | None],
                  classes: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``(real label -> model class, unmapped real labels)`` for the labels present."""
    mapped, unmapped = {}, []
    for label in sorted(set(map(str, real_labels))):
        target = label_map.get(label)
        if target is not None and str(target) in set(map(str, classes)):
            mapped[label] = str(target)
        else:
            unmapped.append(label)
    return mapped, unmapped


def score_real_sample(predictions: pd.DataFrame, classes: Sequence[str],
                      label_map: Mapping[str, str | None]) -> dict:
    """Per-class recall, confusion and predicted fractions of one real sample.

    Parameters
    ----------
    predictions : pandas.DataFrame
        :func:`deeprubin.tasks.transients.evaluation.inference.predict_source` output: ``label`` (real label),
        ``predicted`` (a model class), one row per object.
    classes : sequence of str
        The model's classes (confusion columns, in this order).
    label_map : mapping
        Real label -> model class (see module docstring).

    Returns
    -------
    dict
        ``n_objects``; ``n_objects_per_label``; ``label_map_used`` (real -> model class, for
        the labels present) and ``unmapped_labels``; ``recall`` (real label -> fraction of its
        objects predicted as its model class; unmapped labels are absent); ``accuracy`` over
        mapped objects (None without any); ``predicted_fractions`` (model class -> fraction of
        all objects); ``confusion`` = ``{"rows": real labels, "columns": model classes,
        "counts": [[int]]}``.
    """
    classes = [str(c) for c in classes]
    real = predictions["label"].astype(str).to_numpy()
    predicted = predictions["predicted"].astype(str).to_numpy()
    mapped, unmapped = label_mapping(real, label_map, classes)
    rows = sorted(set(real))
    counts = np.zeros((len(rows), len(classes)), dtype=int)
    col = {c: j for j, c in enumerate(classes)}
    for i, label in enumerate(rows):
        for p in predicted[real == label]:
            counts[i, col[p]] += 1
    recall = {label: float(np.mean(predicted[real == label] == target)) for label, target in mapped.items()}
    is_mapped = np.isin(real, list(mapped))
    correct = np.array([mapped.get(r) == p for r, p in zip(real, predicted)], dtype=bool)
    n = len(predictions)
    return {
        "n_objects": int(n),
        "n_objects_per_label": {label: int((real == label).sum()) for label in rows},
        "label_map_used": mapped,
        "unmapped_labels": unmapped,
        "recall": recall,
        "accuracy": float(correct[is_mapped].mean()) if is_mapped.any() else None,
        "predicted_fractions": {c: float((predicted == c).mean()) if n else 0.0 for c in classes},
        "confusion": {"rows": rows, "columns": classes, "counts": counts.tolist()},
    }


def data_fingerprint(paths: Sequence[str | Path]) -> tuple[str, int]:
    """SHA-256 over the relative names and bytes of every file under ``paths``, and the file count.

    Recorded in the report so that a change of the real data (which DVC cannot track: it lives
    outside the repository and may be absent) is visible in ``real_sky.json``.
    """
    digest = hashlib.sha256()
    n_files = 0
    for root in map(Path, paths):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
            digest.update(rel.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
            n_files += 1
    return digest.hexdigest(), n_files


__all__ = ["data_fingerprint", "label_mapping", "score_real_sample"]
