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
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ....core import io
from ....core.config import ConfigError, require
from ....core.quality import check_quality_config

log = logging.getLogger(__name__)


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
        mapped objects (None without any); ``precision`` (model class that some real label maps
        to -> fraction of the objects predicted as it whose real label maps to it; None when
        nothing was predicted as it: an object of an unmapped label counts as wrong, so calling
        everything SN Ia cannot score well); ``predicted_fractions`` (model class -> fraction of
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
    truth = np.array([mapped.get(r) for r in real], dtype=object)
    precision = {c: (float(np.mean(truth[predicted == c] == c)) if (predicted == c).any() else None)
                 for c in sorted(set(mapped.values()))}
    return {
        "n_objects": int(n),
        "n_objects_per_label": {label: int((real == label).sum()) for label in rows},
        "label_map_used": mapped,
        "unmapped_labels": unmapped,
        "recall": recall,
        "accuracy": float(correct[is_mapped].mean()) if is_mapped.any() else None,
        "precision": precision,
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


def input_paths(source: DictConfig) -> list[Path]:
    """The files/folders a source config reads (its ``path`` and, if any, ``metadata.path``)."""
    paths = [Path(str(require(source, "path")))]
    meta = source.get("metadata")
    if meta is not None and meta.get("path"):
        paths.append(Path(str(meta.path)))
    return paths


def missing_inputs(name: str, source: DictConfig) -> str | None:
    """Why dataset ``name`` cannot be read (its input paths absent), or None when they are all there."""
    missing = [str(p) for p in input_paths(source) if not p.exists()]
    if not missing:
        return None
    reason = f"input not found: {', '.join(missing)} (relative to {Path.cwd()})"
    log.warning("real_sky: dataset %s skipped: %s", name, reason)
    return reason


def dataset_source(name: str, node: DictConfig) -> tuple[DictConfig, dict]:
    """``(source config, real label -> model class)`` of dataset ``name`` of ``real_sky.datasets``."""
    source = node.get("source")
    if source is None:
        raise ConfigError(f"config key 'real_sky.datasets.{name}.source' is missing")
    return source, OmegaConf.to_container(node.get("label_map") or {}, resolve=True)


def target_summary(target: DictConfig | None, datasets: dict) -> dict | None:
    """The headline fraction: objects of ``target.dataset`` with real label ``target.class`` classified so."""
    if target is None:
        return None
    name, cls = str(require(target, "dataset")), str(require(target, "class"))
    threshold = float(require(target, "min_fraction"))
    if name not in datasets:
        raise ConfigError(f"config key 'real_sky.target.dataset' = {name!r} is not one of real_sky.datasets "
                          f"{sorted(datasets)}")
    entry = datasets[name]
    summary = {"dataset": name, "class": cls, "min_fraction": threshold}
    if entry.get("skipped"):
        return {**summary, "skipped": True, "fraction": None, "passed": None}
    fraction = entry["recall"].get(cls)
    if fraction is None:
        raise ConfigError(f"config key 'real_sky.target.class' = {cls!r}: no object of dataset {name!r} has a "
                          f"real label mapped to it (labels {sorted(entry['n_objects_per_label'])}, "
                          f"map {entry['label_map_used']})")
    return {**summary, "skipped": False, "fraction": fraction, "n_objects": entry["n_objects_per_label"].get(cls),
            "passed": bool(fraction >= threshold)}


def forest_on_real_sky(model, cfg: DictConfig, feature_config, feature_columns: Sequence[str],
                       out: str | Path) -> dict:
    """The feature baseline (a fitted forest) on the real datasets of ``cfg.real_sky``, side by side
    with the deep model's ``real_sky`` stage: the same sources, readers, validation and data-quality
    set-aside (:func:`~deeprubin.tasks.transients.evaluation.inference.load_for_prediction`), the
    features extracted with ``feature_config`` (the forest's own). Writes
    ``out/predictions_<dataset>.csv`` and ``out/summary.csv`` (one row per dataset: skipped or
    not, objects, accuracy, the reason of a skip; always written, so the folder exists when every
    dataset is absent); returns the report (the structure of ``real_sky.json``: ``datasets``
    scored by :func:`score_real_sample`, ``target``). A dataset whose files are absent is recorded
    as skipped; without a ``real_sky`` config the report says so.
    """
    from ..features.baseline import SplitData, predict_table
    from ..features.extract import extract_features
    from .inference import load_for_prediction

    node = cfg.get("real_sky")
    if node is None or not node.get("datasets"):
        _write_summary({}, out)
        return {"skipped": True, "reason": "no real_sky.datasets configured", "datasets": {}, "target": None}
    classes = [str(c) for c in cfg.task.classes]
    bands = [str(b) for b in cfg.task.band_wavelengths]
    quality = check_quality_config(cfg.get("quality"))
    datasets = {}
    for name, ds in node.datasets.items():
        name = str(name)
        source, label_map = dataset_source(name, ds)
        reason = missing_inputs(name, source)
        if reason is not None:
            datasets[name] = {"skipped": True, "reason": reason, "description": ds.get("description")}
            continue
        sha, n_files = data_fingerprint(input_paths(source))
        loaded = load_for_prediction(cfg, source, bands, label_classes=[str(k) for k in label_map], quality=quality)
        features = extract_features(loaded.lightcurves, bands, feature_config, loaded.objects)
        ids = np.sort(loaded.objects["object_id"].astype(str).to_numpy())
        x = features.set_index(features["object_id"].astype(str)).reindex(ids)[list(feature_columns)]
        labels = loaded.objects.set_index(loaded.objects["object_id"].astype(str))["label"].reindex(ids)
        table = predict_table(model, SplitData(ids, x.to_numpy(dtype=np.float32), labels.astype(str).to_numpy()),
                              classes)
        io.write_text(table.to_csv(index=False, float_format="%.6f"), Path(out) / f"predictions_{name}.csv")
        datasets[name] = {"skipped": False, "description": ds.get("description"), "data_sha256": sha,
                          "n_files": n_files, "n_unusable": int(len(loaded.unusable)),
                          **score_real_sample(table, classes, label_map)}
        log.info("baseline real_sky: %s: %d objects, recall %s", name, len(table),
                 {k: round(v, 3) for k, v in datasets[name]["recall"].items()})
    _write_summary(datasets, out)
    skipped = [n for n, d in datasets.items() if d.get("skipped")]
    report = {"model": "feature + balanced random forest (the baseline stage's)", "skipped": len(skipped) == len(datasets),
              "datasets": datasets, "target": target_summary(node.get("target"), datasets)}
    if report["skipped"]:
        report["reason"] = "; ".join(f"{n}: {datasets[n]['reason']}" for n in skipped)
    return report


def _write_summary(datasets: dict, out: str | Path) -> None:
    """``out/summary.csv``: one row per dataset (skipped, n_objects, accuracy, reason)."""
    rows = [{"dataset": name, "skipped": bool(d.get("skipped")), "n_objects": d.get("n_objects"),
             "accuracy": d.get("accuracy"), "reason": d.get("reason", "")} for name, d in datasets.items()]
    table = pd.DataFrame(rows, columns=["dataset", "skipped", "n_objects", "accuracy", "reason"])
    io.write_text(table.to_csv(index=False, float_format="%.6f"), Path(out) / "summary.csv")


__all__ = ["data_fingerprint", "dataset_source", "forest_on_real_sky", "input_paths", "label_mapping",
           "missing_inputs", "score_real_sample", "target_summary"]
