"""Monitor stage: a window of scored inputs compared with the training data (drift monitoring).

::

    python -m deeprubin.stages.monitor                                   # dvc repro monitor
    python -m deeprubin.stages.monitor monitor.window.kind=table monitor.window.path=scores.parquet

The reference is the preprocess step's features of the ``monitor.reference.split`` (train)
objects and the evaluate stage's test-split predictions (calibrated, labelled). The window is
``monitor.window.kind``: ``simulate`` (default: a fresh sample of the simulator the model was
trained on, another seed, scored through the predict path with its features: offline, seconds)
or ``table`` (a scored file: the service's batch ``result.parquet``, an export of the stream's
store, a predict output; optional features and labelled feedback joined by ``object_id``).
The comparison is :func:`deeprubin.core.monitoring.monitor_window`; docs/monitoring.md.

Writes ``paths.reports/monitoring/monitoring.json`` (``alert`` per family and overall, what
crossed which threshold) and ``paths.reports/monitoring/figures/`` (features, class fractions,
calibration, performance). A ``simulate`` window for a model not trained on the simulator is
recorded as skipped (as the calibration_check stage does): the figures say so.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..core import io
from ..core.config import ConfigError, require, to_dict
from ..core.entry import hydra_entry
from ..core.monitoring import ScoredSample, check_config, monitor_window, prediction_arrays
from ..core.plot_monitoring import plot_calibration_drift, plot_class_fractions, plot_feature_drift, plot_performance

log = logging.getLogger(__name__)

#: ``monitor.window.kind`` choices, and ``monitor.window.per_object`` (rows of one object in a table).
WINDOW_KINDS, PER_OBJECT = ("simulate", "table"), ("last", "all")


def read_table(path: str | Path, key: str) -> pd.DataFrame:
    """A CSV or parquet table named by config ``key``; errors name the key and the file."""
    path = Path(str(path))
    if path.suffix not in io.TABLE_SUFFIXES:
        raise ConfigError(f"config key '{key}' = {path}: a table is one of {list(io.TABLE_SUFFIXES)}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (config key '{key}')")
    if path.suffix == ".parquet":
        return io.read_parquet(path)
    try:
        return pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise io.UnreadableFileError(f"{path}: cannot read this CSV file (config key '{key}'): {err}") from None


def _table(cfg: DictConfig, key: str, columns: tuple[str, ...] = ("object_id",)) -> tuple[pd.DataFrame, str]:
    """The table at config ``key`` and its path, with ``columns`` checked."""
    path = str(require(cfg, key))
    table = read_table(path, key)
    for column in columns:
        if column not in table.columns:
            raise ValueError(f"{path}: no column '{column}' (config key '{key}')")
    return table, path


def load_reference(cfg: DictConfig) -> ScoredSample:
    """The training split's features and the evaluate stage's test predictions."""
    split = str(require(cfg, "monitor.reference.split"))
    manifest, manifest_path = _table(cfg, "monitor.reference.manifest", ("object_id", "split"))
    features, features_path = _table(cfg, "monitor.reference.features")
    ids = set(manifest.loc[manifest["split"].astype(str) == split, "object_id"].astype(str))
    features = features[features["object_id"].astype(str).isin(ids)].reset_index(drop=True)
    if features.empty:
        raise ValueError(f"{features_path}: no row of split '{split}' of {manifest_path} "
                         "(config key 'monitor.reference.split')")
    predictions, predictions_path = _table(cfg, "monitor.reference.predictions")
    return ScoredSample(features, predictions, f"{split} split features, {Path(predictions_path).name}")


def simulated_window(cfg: DictConfig) -> tuple[ScoredSample | None, dict]:
    """A fresh simulated sample scored through the predict path; ``(None, {"skipped": ...})`` when the
    model was not trained on the simulator."""
    from ..core.quality import check_quality_config
    from ..tasks.transients.evaluation.calibration_check import training_source
    from ..tasks.transients.evaluation.inference import Predictor, load_for_prediction
    from ..tasks.transients.evaluation.predict import prediction_table

    n_objects = int(require(cfg, "monitor.window.n_objects", at_least=1))
    seed = int(require(cfg, "monitor.window.seed", at_least=0))
    if seed == int(cfg.data_seed):
        raise ConfigError(f"config key 'monitor.window.seed' must differ from 'data_seed' ({seed}): the window "
                          "must be objects the model has never seen")
    checkpoint = Path(str(require(cfg, "monitor.window.checkpoint")))
    source = training_source(checkpoint)
    info = {"kind": "simulate", "checkpoint": str(checkpoint), "n_objects": n_objects, "simulation_seed": seed,
            "training_source": str(source.name)}
    if str(source.name) != "simulate":
        info["skipped"] = (f"{checkpoint}: the model was trained on source '{source.name}', not the simulator; "
                           "there is no fresh simulated window (set monitor.window.kind=table)")
        return None, info
    calibration = cfg.monitor.window.get("calibration")
    predictor = Predictor(checkpoint, calibration=None if calibration is None else str(calibration))
    loaded = load_for_prediction(predictor.train_cfg, {**to_dict(source), "n_objects": n_objects, "seed": seed},
                                 predictor.bands, quality=check_quality_config(cfg.get("quality")))
    out = predictor.outputs(loaded.lightcurves, features=True, objects=loaded.objects)
    ids = out.grid.object_ids.astype(str)
    labels = loaded.objects.set_index(loaded.objects["object_id"].astype(str))["label"].reindex(ids).to_numpy()
    info.update(calibration=predictor.calibration, n_unusable=int(len(loaded.unusable)))
    return ScoredSample(out.features, prediction_table(ids, out.probabilities, predictor.classes, labels),
                        f"simulated window (seed {seed})"), info


def table_window(cfg: DictConfig) -> tuple[ScoredSample, dict]:
    """A scored file, with optional feature and label tables joined on ``object_id``."""
    table, path = _table(cfg, "monitor.window.path")
    per_object = require(cfg, "monitor.window.per_object", choices=PER_OBJECT)
    n_rows = len(table)
    if per_object == "last":   # the stream's store has one row per alert, in time order: the latest
        table = table.drop_duplicates("object_id", keep="last").reset_index(drop=True)
    table["object_id"] = table["object_id"].astype(str)
    info = {"kind": "table", "path": str(path), "n_rows": n_rows, "n_objects": int(table["object_id"].nunique()),
            "per_object": per_object, "sha256": io.file_sha256(path)}
    # labelled feedback (object_id, label) and features (object_id, feature columns), joined; they win
    for key, columns in (("labels_path", ("object_id", "label")), ("features_path", ("object_id",))):
        if cfg.monitor.window.get(key) is None:
            continue
        extra, extra_path = _table(cfg, f"monitor.window.{key}", columns)
        extra = extra.assign(object_id=extra["object_id"].astype(str)).drop_duplicates("object_id", keep="last")
        extra = extra[list(columns)] if key == "labels_path" else extra
        table = table.drop(columns=[c for c in extra.columns if c != "object_id" and c in table.columns])
        table = table.merge(extra, on="object_id", how="left")
        info[key] = extra_path
    features = table.drop(columns=[c for c in table.columns if str(c).startswith("prob_")])
    return ScoredSample(features, table, f"{Path(str(path)).name}"), info


def run_monitor(cfg: DictConfig) -> dict:
    """Compare the configured window with the reference; write monitoring.json and the figures."""
    node = require(cfg, "monitor")
    settings = check_config(to_dict(node))      # every threshold, before any work
    kind = require(cfg, "monitor.window.kind", choices=WINDOW_KINDS)
    reference = load_reference(cfg)
    out = io.check_writable(Path(cfg.paths.reports) / "monitoring", "monitoring report folder")  # before the window
    window, info = simulated_window(cfg) if kind == "simulate" else table_window(cfg)
    if window is None:
        log.warning("monitor: skipped: %s", info["skipped"])
        report = {"alert": False, "alerts": [], "skipped": info["skipped"], "window": info, "thresholds": settings,
                  "names": {"reference": reference.name, "window": "(none)"},
                  "families": {f: {"alert": False, "skipped": info["skipped"], "crossed": []}
                               for f in ("features", "class_fractions", "calibration", "performance")}}
    else:
        report = monitor_window(reference, window, settings)
        report["window"] = info
    report["reference"] = {key: str(node.reference[key]) for key in ("features", "manifest", "split", "predictions")}
    figures = out / "figures"
    pairs = None
    if window is not None and not report["families"]["calibration"].get("skipped"):
        pairs = []
        for sample in (reference, window):
            arrays = prediction_arrays(sample.predictions, report["classes"], sample.name)
            pairs.append((arrays.probabilities[arrays.labelled], arrays.labels[arrays.labelled]))
    captions = {
        "features.png": (plot_feature_drift(report, settings["features"]["top_n"]),
                         "Feature drift of the monitored window against the training features: PSI, KS statistic "
                         "and missing fractions of the most shifted features"),
        "class_fractions.png": (plot_class_fractions(report),
                                "Fractions of objects predicted as each class, window against the test split"),
        "calibration.png": (plot_calibration_drift(report, *(pairs or (None, None))),
                            "Top-label reliability of the labelled window objects against the test split"),
        "performance.png": (plot_performance(report),
                            "Macro-F1, accuracy and per-class F1 of the labelled window against the test split"),
    }
    for name, (fig, caption) in captions.items():
        io.save_figure(fig, figures / name, caption=caption)
    io.write_json(report, out / "monitoring.json")
    for family, entry in report["families"].items():
        log.info("monitor: %-15s %s%s", family, "ALERT" if entry["alert"] else "ok",
                 f" (skipped: {entry['skipped']})" if entry.get("skipped") else
                 (": " + "; ".join(entry.get("reasons", [])) if entry["alert"] else ""))
    return report


main = hydra_entry(run_monitor, task="transients")

if __name__ == "__main__":
    main()
