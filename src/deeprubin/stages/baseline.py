"""Baseline stage: light-curve features + balanced random forest, scored on the deep models' test split."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.config import ConfigError
from ..core.entry import hydra_entry
from ..core.metrics import confusion_table, row_normalised, text_report
from ..tasks.transients.evaluation.real_sky import forest_on_real_sky
from ..tasks.transients.features.baseline import BRFParams, train_and_score, tune_grid
from ..tasks.transients.features.extract import FeatureConfig, feature_columns, hide_redshifts
from ..tasks.transients.features.plots import plot_feature_importances
from ..tasks.transients.preprocess.inputs import feature_config
from ..tasks.transients.plots import plot_confusion_matrix

log = logging.getLogger(__name__)

#: Features shown in the importance figure.
TOP_FEATURES = 20


def check_baseline_config(cfg: DictConfig) -> tuple[FeatureConfig, BRFParams, dict[str, list]]:
    """Validate ``baseline.*`` (``tune`` included) and ``preprocess.features`` before any work; errors name the key."""
    node = cfg.get("baseline")
    if node is None:
        raise ConfigError("config key 'baseline' is missing (add `- baseline: brf` to the defaults)")
    params = BRFParams.from_config(node)
    grid = tune_grid(OmegaConf.to_container(node.tune) if node.get("tune") is not None else None)
    return feature_config(cfg), params, grid


def run_baseline(cfg: DictConfig) -> dict:
    """Fit the forest on the ``train`` features (the preprocess step's), write the test report.

    Writes, under ``paths.baseline``:
    ``metrics.json`` (test split, the structure of the deep model's ``metrics.json``),
    ``val_metrics.json`` (same structure, val split; for choosing settings without the test
    split), ``classification_report.txt``, ``predictions.csv``,
    ``confusion_normalised.csv``, ``feature_importances.csv``, ``tuning.csv`` (val macro-F1 of
    every ``baseline.tune`` grid point; the chosen settings are ``forest`` in ``metrics.json``),
    ``figures/`` (row-normalised confusion matrix, top-20 feature importances), and the forest on
    the real datasets of ``real_sky`` beside the deep model's stage: ``real_sky.json`` and
    ``real_sky/predictions_<dataset>.csv`` (datasets whose files are absent are recorded as skipped).
    """
    feature_cfg, params, grid = check_baseline_config(cfg)
    classes = [str(c) for c in cfg.task.classes]
    bands = [str(b) for b in cfg.task.band_wavelengths]
    seed = int(cfg.seed)
    features_path = Path(cfg.paths.processed) / "features.parquet"
    features = io.read_parquet(features_path)
    columns = feature_columns(bands, feature_cfg)
    expected = ["object_id", *columns]
    if list(features.columns) != expected:
        raise ValueError(f"{features_path}: columns are not those of feature set '{feature_cfg.set}' for bands "
                         f"{bands} (rerun the preprocess stage); first difference at column "
                         f"{next((i for i, (a, b) in enumerate(zip(features.columns, expected)) if a != b), len(expected))}")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    # the deep model's training objects hide the same redshifts (same seed, same ids)
    features = hide_redshifts(features, manifest.loc[manifest["split"] == "train", "object_id"],
                              feature_cfg.redshift_hidden_fraction, seed)

    start = time.perf_counter()
    result = train_and_score(features, manifest, classes, params, seed,
                             feature_columns=columns, grid=grid)
    fit_s = time.perf_counter() - start

    out = Path(cfg.paths.baseline)
    truth, predicted = result.predictions["label"], result.predictions["predicted"]
    forest = {k: v for k, v in asdict(result.params).items() if k != "n_jobs"}
    io.write_json({**result.metrics, "forest": forest, "tuned_on": "val" if grid and len(result.tuning) else None},
                  out / "metrics.json")
    io.write_text(result.tuning.to_csv(index=False, float_format="%.6f"), out / "tuning.csv")
    # Always written (DVC declares it): empty when the manifest has no val split.
    io.write_json(result.val_metrics or {}, out / "val_metrics.json")
    io.write_text(text_report(truth, predicted, classes), out / "classification_report.txt")
    io.write_text(result.predictions.to_csv(index=False, float_format="%.6f"), out / "predictions.csv")
    io.write_text(row_normalised(confusion_table(truth, predicted, classes)).to_csv(float_format="%.4f"),
                  out / "confusion_normalised.csv")
    io.write_text(result.importances.to_csv(index=False, float_format="%.6g"), out / "feature_importances.csv")
    figures = out / "figures"
    io.save_figure(plot_confusion_matrix(truth, predicted, classes, normalize=True),
                   figures / "confusion_normalised.png",
                   caption="Test-set confusion matrix (row-normalised) of the feature + balanced random forest "
                           "baseline.")
    io.save_figure(plot_feature_importances(result.importances, top=TOP_FEATURES),
                   figures / "feature_importances.png",
                   caption=f"The {TOP_FEATURES} most important light-curve features of the baseline random forest.")
    real = forest_on_real_sky(result.model, cfg, feature_cfg, columns, out / "real_sky")
    io.write_json(real, out / "real_sky.json")
    if grid:
        log.info("baseline: chose %s of %d grid points on val (macro-F1 %.3f)", {k: forest[k] for k in grid},
                 len(result.tuning), float(result.tuning.loc[result.tuning["chosen"], "val_macro_f1"].iloc[0]))
    log.info("baseline: test accuracy %.3f, macro-F1 %.3f on %d objects (forest %.1f s) -> %s",
             result.metrics["accuracy"], result.metrics["macro_f1"], result.metrics["n_test"], fit_s, out)
    return result.metrics


main = hydra_entry(run_baseline, task="transients")

if __name__ == "__main__":
    main()
