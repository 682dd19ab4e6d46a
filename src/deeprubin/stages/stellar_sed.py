"""stellar_sed: the stellar task's classical models and its real Kepler stars.

Runs :mod:`deeprubin.tasks.stellar.classical` and writes under ``paths.baseline``:
``metrics.json`` (gradient-boosted trees on PCA of the simulated spectra and on the simulated
stars' colours, on the pipeline's split: the baselines ``evaluate@stellar`` reports the
spectral network against), ``real.json`` (the Kepler stars from their photometry: trees and
SEDNet side by side, the training-median and KIC references, the simulated-to-real domain
shift; ``skipped`` without the catalogue), the test predictions and the figure of the
Kepler predictions against the catalogue.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..core import io
from ..core.entry import hydra_entry
from ..tasks.stellar.classical import kepler_block, simulated_block
from ..tasks.stellar.dataset import TARGETS
from ..tasks.stellar.gbm import check_gbm_config
from ..tasks.stellar.plots import plot_pred_vs_truth

log = logging.getLogger(__name__)


def run_stellar_sed(cfg: DictConfig) -> dict:
    """Fit and score the classical models and the Kepler SED models; write the baseline folder."""
    sed_cfg = cfg.sed
    check_gbm_config(sed_cfg.gbm)
    seed = int(cfg.seed)
    out = io.check_writable(Path(cfg.paths.baseline), "paths.baseline folder")
    metrics, predictions, sim_sed_models = simulated_block(cfg, cfg.paths, sed_cfg, seed)
    real, kepler_predictions = kepler_block(cfg, cfg.paths, sed_cfg, sim_sed_models, seed)
    io.write_json(metrics, out / "metrics.json")
    io.write_json(real, out / "real.json")
    io.write_parquet(predictions, out / "predictions.parquet")
    io.write_parquet(kepler_predictions, out / "kepler_predictions.parquet")
    truth = {t: predictions[f"truth_{t}"].to_numpy() for t in TARGETS}
    plot_pred_vs_truth(truth, {"trees on spectra PCA": {t: predictions[f"pred_{t}"].to_numpy() for t in TARGETS}},
                       f"Simulated test spectra: the classical baseline ({len(predictions)} spectra)", "True",
                       out / "figures" / "stellar_classical_predictions.png")
    if len(kepler_predictions):
        truth = {t: kepler_predictions[f"truth_{t}"].to_numpy() for t in TARGETS}
        models = {name: {t: kepler_predictions[f"{key}_{t}"].to_numpy() for t in TARGETS}
                  for name, key in (("trees (HistGBM)", "gbm"), ("SEDNet", "sednet"))}
        plot_pred_vs_truth(truth, models, f"Kepler planet hosts from their photometry: {len(kepler_predictions)} "
                           "test stars", "Catalogue", out / "figures" / "stellar_kepler_sed_predictions.png")
        log.info("stellar_sed: Kepler test stars: Teff MAE %.0f K (trees) %.0f K (SEDNet), logg MAE %.3f / %.3f dex "
                 "(training median: %.3f)", real["gbm"]["parameters"]["teff"]["mae"],
                 real["sednet"]["parameters"]["teff"]["mae"], real["gbm"]["parameters"]["logg"]["mae"],
                 real["sednet"]["parameters"]["logg"]["mae"], real["reference_training_median"]["logg"])
    else:
        log.info("stellar_sed: %s", real["reason"])
    return {"simulated": metrics, "real": real}


main = hydra_entry(run_stellar_sed, task="stellar")

if __name__ == "__main__":
    main()
