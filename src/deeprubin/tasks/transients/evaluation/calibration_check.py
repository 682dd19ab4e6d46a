"""Calibration measured on a large, independent sample of the simulator.

The pipeline's test split (~300 objects) cannot resolve an ECE of 0.02: a perfectly
calibrated model scores ~0.04 on it from sampling noise alone (see
:func:`deeprubin.core.reliability.ece_floor`). This check draws a fresh sample from
the *training* simulator configuration with another seed (objects never seen in training,
validation or calibration), classifies it through the predict path
(:func:`deeprubin.tasks.transients.evaluation.inference.predict_source_detailed`: the checkpoint's own GP
settings and features) and scores every calibrator fitted by the calibrate stage.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from ....core.calibration import apply_calibration, load_calibrator, saved_methods
from ....core.checkpoint import load_checkpoint
from ....core.config import ConfigError
from ....core.reliability import calibration_summary, ece_floor
from .inference import predict_source_detailed, training_config

#: The calibrators the calibrate stage saves, and the names they are reported under.
REPORTED = {"none": "uncalibrated", "temperature": "temperature", "isotonic": "isotonic"}


def training_source(checkpoint_path: str | Path):
    """The ``source`` config node the checkpointed model was trained on."""
    _, meta = load_checkpoint(checkpoint_path)
    return training_config(meta, checkpoint_path).source


def independent_sample_source(checkpoint_path: str | Path, n_objects: int, seed: int):
    """The checkpoint's training ``source`` node with ``n_objects`` and ``seed`` replaced.

    Raises :class:`~deeprubin.core.config.ConfigError` when the model was not trained on the
    simulator (there is nothing to draw an independent sample from).
    """
    source = training_source(checkpoint_path)
    if str(source.name) != "simulate":
        raise ConfigError(f"{checkpoint_path}: the model was trained on source '{source.name}', not the "
                          "simulator: the calibration check needs source=simulate")
    return OmegaConf.merge(source, {"n_objects": int(n_objects), "seed": int(seed)})


def calibration_check(checkpoint_path: str | Path, calibration_path: str | Path, *, n_objects: int, seed: int,
                      n_bins: int, floor_draws: int) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Score every saved calibrator on ``n_objects`` freshly simulated objects.

    Returns
    -------
    report : dict
        ``n_objects``, ``simulation_seed``, ``n_bins``, ``default_method`` and per method
        saved by the calibrate stage (uncalibrated, temperature, isotonic; uncalibrated
        only when it skipped calibration) :func:`calibration_summary` plus
        ``ece_floor_width`` / ``ece_floor_mass``: the ECE a perfectly calibrated model
        would score on this many objects.
    probabilities : dict name -> (n, C) array
    labels : (n,) int array of true class indices
    """
    source = independent_sample_source(checkpoint_path, n_objects, seed)
    result = predict_source_detailed(checkpoint_path, source)   # raw softmax, calibrated below
    classes = result.classes
    labels = np.array([classes.index(str(c)) for c in result.predictions["label"]])
    raw = result.predictions[[f"prob_{c}" for c in classes]].to_numpy()
    default = str(load_calibrator(calibration_path, classes=classes, checkpoint=checkpoint_path).method)
    report = {"n_objects": int(len(labels)), "simulation_seed": int(seed), "n_bins": int(n_bins),
              "default_method": default, "methods": {}}
    probabilities = {}
    saved = saved_methods(calibration_path)  # only 'none' when the calibrate stage had one class
    for method, name in REPORTED.items():
        if method not in saved:
            continue
        p = apply_calibration(raw, load_calibrator(calibration_path, method=method, classes=classes,
                                                       checkpoint=checkpoint_path))
        probabilities[name] = p
        summary = calibration_summary(p, labels, n_bins)
        for scheme in ("width", "mass"):
            summary[f"ece_floor_{scheme}"] = ece_floor(p, n_bins, scheme, floor_draws, seed)
        report["methods"][name] = summary
    return report, probabilities, labels
