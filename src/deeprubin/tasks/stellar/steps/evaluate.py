"""The stellar task's ``evaluate`` step (see :mod:`deeprubin.tasks.stellar.steps`): the spectral
network on the test stars, next to the classical models of ``stellar_sed`` and its Kepler block.

Headline keys (``teff_mae``, ``logg_mae``, ``feh_mae``, ``macro_f1``, ``coverage_1sigma``) are
those of the test spectra in the reference S/N window (``evaluate.reference_snr``, around the
S/N 50 the issue's targets are stated at); ``all`` holds every test spectrum, ``by_snr`` each
S/N bin. Coverage uses the sigmas rescaled by the factor fitted on the validation split
(``sigma_scale``; the raw coverage is reported beside it).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....core.checkpoint import load_checkpoint
from ....core.config import require
from ..dataset import class_index, read_split_tables
from ..evaluation import checkpoint_scaler, class_probabilities, network_outputs
from ..metrics import GAUSS_1SIGMA, bootstrap_mae, regression_metrics, score_block, sigma_scale
from ..plots import plot_confusion, plot_coverage, plot_residuals, plot_snr

log = logging.getLogger(__name__)


def _outputs(model, x, part, classes, scaler, targets):
    return network_outputs(model, x[part["row"].to_numpy()], len(classes), scaler, targets)


def evaluate(cfg: DictConfig) -> dict:
    """Score the network on the test split; write ``metrics.json``, ``evaluation/`` and figures."""
    ev = cfg.evaluate
    require(ev, "bootstrap.n_boot", positive=True)
    x, parts = read_split_tables(cfg.paths, ("val", "test"))
    checkpoint = Path(cfg.paths.models) / "model.ckpt"
    model, meta = load_checkpoint(checkpoint)
    classes = list(meta["classes"])
    scaler, targets = checkpoint_scaler(meta, checkpoint)
    val, test = parts["val"], parts["test"]
    out_val, out_test = (_outputs(model, x, p, classes, scaler, targets) for p in (val, test))
    proba, calibration = class_probabilities(out_test.logits, classes, checkpoint, "auto")
    predicted = np.asarray(classes)[proba.argmax(1)]
    where = f"{cfg.paths.raw}/objects.parquet"
    labels = class_index(test["label"], classes, where)
    truth = {t: test[f"truth_{t}"].to_numpy(float) for t in targets}
    scale = {t: sigma_scale(val[f"truth_{t}"].to_numpy(float), out_val.mean[t], out_val.sigma[t]) for t in targets}
    sigma = {t: out_test.sigma[t] * scale[t] for t in targets}
    groups = test["star_id"].astype(str).to_numpy()
    snr = test["snr"].to_numpy(float)
    n_boot, seed = int(ev.bootstrap.n_boot), int(cfg.seed)
    lo, hi = (float(v) for v in ev.reference_snr)
    ref = (snr >= lo) & (snr < hi)
    if not ref.any():
        raise ValueError(f"config key 'tasks.stellar.evaluate.reference_snr' = [{lo}, {hi}]: no test spectrum has "
                         f"an S/N in it (test S/N {snr.min():.0f}-{snr.max():.0f})")

    def block(rows):
        return score_block({t: truth[t][rows] for t in targets}, {t: out_test.mean[t][rows] for t in targets},
                           {t: sigma[t][rows] for t in targets}, labels[rows], proba[rows], groups[rows],
                           len(classes), n_boot, seed, targets)

    headline, all_block = block(ref), block(np.ones(len(test), bool))
    metrics = {f"{t}_mae": headline["parameters"][t]["mae"] for t in targets}
    metrics.update(macro_f1=headline["macro_f1"], accuracy=headline["accuracy"],
                   coverage_1sigma=float(np.mean([headline["parameters"][t]["coverage_1sigma"] for t in targets])),
                   coverage_2sigma=float(np.mean([headline["parameters"][t]["coverage_2sigma"] for t in targets])))
    metrics.update(reference_snr=[lo, hi], reference=headline, all=all_block, sigma_scale=scale,
                   coverage_1sigma_raw={t: regression_metrics(truth[t], out_test.mean[t], out_test.sigma[t])[
                       "coverage_1sigma"] for t in targets},
                   gaussian_1sigma=GAUSS_1SIGMA, calibration=str(calibration) if calibration else None,
                   model=meta["model_config"].get("_target_"), n_test_spectra=int(len(test)),
                   n_test_stars=int(len(set(groups))))

    # by S/N bin, the network and the classical baseline on the same spectra
    baseline_dir = Path(cfg.paths.baseline)
    base_pred = io.read_parquet(baseline_dir / "predictions.parquet").set_index("object_id").loc[
        test["object_id"].astype(str)]
    models = {"spectral network": out_test.mean,
              "trees on spectra PCA": {t: base_pred[f"pred_{t}"].to_numpy(float) for t in targets}}
    edges = [float(v) for v in ev.snr_bins]
    rows = []
    for a, b in zip(edges[:-1], edges[1:]):
        inside = (snr >= a) & (snr < b)
        if inside.sum() < 2:
            continue
        for name, pred in models.items():
            for k, t in enumerate(targets):
                interval = bootstrap_mae(truth[t][inside], pred[t][inside], groups[inside], n_boot, seed + k)
                rows.append({"model": name, "target": t, "snr_low": a, "snr_high": b, "n": int(inside.sum()),
                             "mae": interval["mae"], "low": interval["low"], "high": interval["high"]})
    by_snr = pd.DataFrame(rows)
    metrics["by_snr"] = by_snr.to_dict(orient="records")
    baseline = io.read_json(baseline_dir / "metrics.json")
    trees = models["trees on spectra PCA"]
    base_ref = {"n": int(ref.sum()),
                **{f"{t}_mae": float(np.mean(np.abs(trees[t][ref] - truth[t][ref]))) for t in targets}}
    metrics["baseline"] = {"gbm_spectra_pca": {"reference": base_ref, "all": baseline["gbm_spectra_pca"]},
                           "gbm_sed": baseline["gbm_sed"]}
    metrics["real"] = io.read_json(baseline_dir / "real.json")

    reports = Path(cfg.paths.reports)
    figures = reports / "figures"
    plot_residuals(truth, models, truth["teff"], figures / "stellar_residuals_vs_teff.png")
    plot_snr(by_snr, figures / "stellar_mae_vs_snr.png")
    plot_coverage({f"{t} (val-rescaled sigma)": (out_test.mean[t] - truth[t]) / sigma[t] for t in targets},
                  figures / "stellar_sigma_coverage.png")
    plot_confusion(test["label"].astype(str), predicted, classes,
                   figures / "stellar_confusion_matrix.png")
    predictions = pd.DataFrame({"object_id": test["object_id"].astype(str), "star_id": groups, "snr": snr,
                                "label": test["label"].astype(str),
                                "pred_class": predicted})
    for t in targets:
        predictions[f"truth_{t}"], predictions[f"pred_{t}"], predictions[f"sigma_{t}"] = \
            truth[t], out_test.mean[t], sigma[t]
    evaluation = reports / "evaluation"
    io.write_table(predictions, evaluation / "test_predictions.csv")
    io.write_table(by_snr, evaluation / "mae_by_snr.csv")
    io.write_json(metrics, Path(cfg.paths.metrics))
    log.info("evaluate stellar (S/N %g-%g, %d test spectra): Teff MAE %.0f K, logg %.3f dex, [Fe/H] %.3f dex, "
             "macro-F1 %.3f, 1-sigma coverage %.3f; trees on spectra: %.0f K / %.3f / %.3f",
             lo, hi, int(ref.sum()), metrics["teff_mae"], metrics["logg_mae"], metrics["feh_mae"],
             metrics["macro_f1"], metrics["coverage_1sigma"], base_ref["teff_mae"], base_ref["logg_mae"],
             base_ref["feh_mae"])
    return metrics
