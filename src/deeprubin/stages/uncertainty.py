"""Uncertainty stage: Monte Carlo dropout on the test split.

Writes under ``paths.reports/uncertainty/``: ``objects.csv`` (per test object: label,
MC-mean prediction, its probability, predictive entropy and mutual information [nats],
whether it is right), ``metrics.json`` (misclassification ROC-AUC of predictive
entropy, mutual information and of 1 - max softmax probability of the deterministic
model; accuracy-rejection curve) and ``figures/uncertainty.png``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ..core import io
from ..core.config import require
from ..core.entry import hydra_entry
from ..tasks.transients.evaluation.inputs import load_model_inputs
from ..tasks.transients.evaluation.predict import predict_probabilities
from ..tasks.transients.evaluation.uncertainty import (accuracy_rejection_curve, dropout_rate,
                                                       mc_dropout_probabilities, misclassification_auroc,
                                                       mutual_information, predictive_entropy, require_dropout)
from ..tasks.transients.plots.uncertainty import plot_uncertainty

log = logging.getLogger(__name__)


def run_uncertainty(cfg: DictConfig) -> dict:
    """MC-dropout passes over the test split; per-object uncertainties, their AUROC and a figure."""
    n_passes = int(require(cfg, "evaluate.uncertainty.mc_passes", at_least=2))
    max_fraction = float(require(cfg, "evaluate.uncertainty.rejection_max_fraction", positive=True))
    steps = int(require(cfg, "evaluate.uncertainty.rejection_steps", at_least=2))
    inputs = load_model_inputs(cfg)
    test, classes = inputs.split("test"), inputs.classes
    require_dropout(inputs.model, f"{cfg.paths.models}/model.ckpt (model {inputs.meta['model_config'].get('name')})")
    samples = mc_dropout_probabilities(inputs.model, test.x, n_passes, seed=int(cfg.evaluate.uncertainty.seed))
    mean = samples.mean(axis=0)
    predicted = mean.argmax(axis=1)
    correct = predicted == test.y
    deterministic = predict_probabilities(inputs.model, test.x)
    scores = {"predictive entropy": predictive_entropy(samples), "mutual information": mutual_information(samples)}
    max_prob = {"1 - max probability": 1.0 - deterministic.max(axis=1)}
    aurocs = {name: misclassification_auroc(u, ~correct) for name, u in {**scores, **max_prob}.items()}
    fractions = np.linspace(0.0, max_fraction, steps)
    curves = {name: accuracy_rejection_curve(u, correct, fractions) for name, u in scores.items()}
    # Reference: rejecting at random keeps the accuracy on average; its expectation is flat.
    curves["random"] = np.full(len(fractions), correct.mean())

    out = Path(cfg.paths.reports) / "uncertainty"
    table = pd.DataFrame({"object_id": test.object_ids, "label": np.asarray(classes)[test.y],
                          "predicted": np.asarray(classes)[predicted], "probability": mean.max(axis=1),
                          "entropy": scores["predictive entropy"], "mutual_information": scores["mutual information"],
                          "correct": correct})
    io.write_text(table.to_csv(index=False, float_format="%.6f"), out / "objects.csv")
    metrics = {
        "n_test": int(len(test.y)), "mc_passes": n_passes, "dropout": dropout_rate(inputs.model),
        "mc_accuracy": float(correct.mean()),
        "deterministic_accuracy": float((deterministic.argmax(axis=1) == test.y).mean()),
        "auroc_misclassification": {k.replace(" ", "_").replace("-", "minus"): v for k, v in aurocs.items()},
        "mean_entropy": {"correct": float(scores["predictive entropy"][correct].mean()) if correct.any() else None,
                         "wrong": float(scores["predictive entropy"][~correct].mean()) if (~correct).any() else None},
        "rejection_curve": {"rejected_fraction": fractions.tolist(),
                            **{k.replace(" ", "_"): v.tolist() for k, v in curves.items()}},
    }
    io.write_json(metrics, out / "metrics.json")
    io.save_figure(plot_uncertainty(scores, correct, aurocs, fractions, curves), out / "figures" / "uncertainty.png",
                   caption=f"Monte Carlo dropout ({n_passes} passes) on the test set: predictive entropy and mutual "
                           "information for correct and wrong predictions, and accuracy after rejecting the most "
                           "uncertain objects.")
    log.info("uncertainty: %d passes, MC accuracy %.3f; misclassification AUROC entropy %.3f, MI %.3f, 1-maxp %.3f",
             n_passes, metrics["mc_accuracy"], aurocs["predictive entropy"], aurocs["mutual information"],
             aurocs["1 - max probability"])
    return metrics


main = hydra_entry(run_uncertainty, task="transients")

if __name__ == "__main__":
    main()
