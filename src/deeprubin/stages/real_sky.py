"""Real-sky stage: the simulation-trained classifier applied to real ZTF light curves.

For every dataset of ``cfg.real_sky.datasets`` (a ``source`` config, e.g. the shipped
``files_alerce_30sne`` / ``files_bts_snia``, and a real label -> model class map) the model
at ``paths.models/model.ckpt`` classifies the objects through the predict path
(:func:`deeprubin.tasks.transients.evaluation.inference.predict_source_detailed`: same readers as a user,
preprocessing from the checkpoint's config) and the predictions are scored against the
real labels (:func:`deeprubin.tasks.transients.evaluation.real_sky.score_real_sample`).

Writes ``paths.reports/real_sky.json`` (per dataset: n objects, per-class recall, confusion,
predicted fractions, data fingerprint; the ``target`` fraction, e.g. BTS SNe Ia classified
as SN Ia) and ``paths.reports/real_sky/`` (``real_sky.png``, ``predictions_<dataset>.csv``).
A dataset whose files are absent (no ``../shared/data/real``) is recorded as skipped with
the reason, and the figure says so: the stage never fails for lack of real data.

The real data live outside the repository and may be absent, so they cannot be a DVC
dependency (DVC fails on a missing dependency path); the report's ``data_sha256`` per
dataset shows when they changed, and ``dvc repro -f real_sky`` refreshes the stage.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..core import io
from ..core.checkpoint import load_checkpoint
from ..core.config import require
from ..core.entry import hydra_entry
from ..core.quality import check_quality_config
from ..tasks.transients.evaluation.inference import predict_source_detailed
from ..tasks.transients.evaluation.real_sky import (data_fingerprint, dataset_source, input_paths, missing_inputs,
                                                   score_real_sample, target_summary)
from ..tasks.transients.plots.real_sky import plot_real_sky

log = logging.getLogger(__name__)


def evaluate_dataset(name: str, node: DictConfig, checkpoint: Path, out: Path,
                     calibration: Path | None = None, quality=None) -> dict:
    """Classify one real dataset and score it; ``{"skipped": True, "reason": ...}`` when absent."""
    source, label_map = dataset_source(name, node)
    reason = missing_inputs(name, source)
    if reason is not None:
        return {"skipped": True, "reason": reason, "description": node.get("description")}
    paths = input_paths(source)
    sha, n_files = data_fingerprint(paths)
    result = predict_source_detailed(checkpoint, source, label_classes=[str(k) for k in label_map],
                                     calibration=calibration, quality=quality)
    io.write_text(result.predictions.to_csv(index=False, float_format="%.6f"), out / f"predictions_{name}.csv")
    points = result.lightcurves.groupby("object_id").size()
    detected = (result.lightcurves.groupby("object_id")["detected"].mean()
                if "detected" in result.lightcurves.columns else None)
    entry = {
        "skipped": False,
        "description": node.get("description"),
        "source_path": [str(p) for p in paths],
        "data_sha256": sha,
        "n_files": n_files,
        "n_dropped_by_validation": int(result.validation.get("n_dropped", 0)),
        # not classified: a data-quality flag in quality.unusable (scores below are over the rest)
        "n_unusable": int(len(result.unusable)),
        "unusable_objects": dict(zip(result.unusable["object_id"].astype(str),
                                     result.unusable["quality_flags"].astype(str))),
        "median_points_per_object": float(points.median()),
        "median_detected_fraction": None if detected is None else float(detected.median()),
    }
    entry.update(score_real_sample(result.predictions, result.classes, label_map))
    log.info("real_sky: %s: %d objects, recall %s, predicted %s", name, entry["n_objects"],
             {k: round(v, 3) for k, v in entry["recall"].items()},
             {k: round(v, 3) for k, v in entry["predicted_fractions"].items() if v})
    return entry


def run_real_sky(cfg: DictConfig) -> dict:
    """Evaluate every configured real dataset; write ``real_sky.json`` and the figure."""
    node = require(cfg, "real_sky")
    checkpoint = Path(cfg.paths.models) / "model.ckpt"
    _, meta = load_checkpoint(checkpoint)     # fail early (missing/corrupt) even if every dataset is absent
    classes = [str(c) for c in meta["classes"]]
    out = Path(cfg.paths.reports) / "real_sky"
    # The calibrate stage's file, as the predict entry point uses it (null: raw softmax).
    calibration = None if node.get("calibration") is None else Path(str(node.calibration))
    quality = check_quality_config(cfg.get("quality"))
    datasets = {str(name): evaluate_dataset(str(name), ds, checkpoint, out, calibration, quality)
                for name, ds in (node.get("datasets") or {}).items()}
    skipped = [n for n, d in datasets.items() if d.get("skipped")]
    report = {
        "checkpoint": str(checkpoint),
        "calibration": None if calibration is None else str(calibration),
        "model_classes": classes,
        "skipped": len(skipped) == len(datasets),
        "datasets": datasets,
        "target": target_summary(node.get("target"), datasets),
    }
    if report["skipped"]:
        report["reason"] = ("no dataset configured" if not datasets else
                            "; ".join(f"{n}: {datasets[n]['reason']}" for n in skipped))
    io.save_figure(plot_real_sky(datasets, classes), out / "real_sky.png",
                   caption="Simulation-trained classifier on real ZTF light curves: confusion against the real "
                           "labels and predicted class fractions per dataset")
    io.write_json(report, Path(cfg.paths.reports) / "real_sky.json")
    target = report["target"] or {}
    if target.get("fraction") is not None:
        log.info("real_sky: %.1f%% of %s %s classified as %s (target %.0f%%: %s)", 100 * target["fraction"],
                 target["dataset"], target["class"], target["class"], 100 * target["min_fraction"],
                 "passed" if target["passed"] else "NOT reached")
    return report


main = hydra_entry(run_real_sky, task="transients")

if __name__ == "__main__":
    main()


__all__ = ["evaluate_dataset", "run_real_sky"]
