"""Calibration check stage: the calibrators scored on a large independent simulated sample.

Writes ``paths.reports/calibration/independent_test.json`` (see
:func:`deeprubin.tasks.transients.evaluation.calibration_check.calibration_check`) and a reliability
diagram of that sample, ``paths.reports/calibration/independent/reliability_width.png``.

A model trained on real data (``source`` other than ``simulate``) has no simulator to
draw an independent sample from: the stage then records ``skipped`` with the reason in
the JSON, leaves the figure folder empty, and the rest of ``dvc repro`` goes on.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..core import io
from ..core.config import ConfigError, require
from ..core.entry import hydra_entry
from ..tasks.transients.evaluation.calibration_check import calibration_check, training_source
from ..core.plot_calibration import plot_reliability

log = logging.getLogger(__name__)


def run_calibration_check(cfg: DictConfig) -> dict:
    """Simulate ``evaluate.calibration.check.n_objects`` new objects, classify, score each calibrator."""
    n_objects = int(require(cfg, "evaluate.calibration.check.n_objects", at_least=2))
    seed = int(require(cfg, "evaluate.calibration.check.seed"))
    if seed == int(cfg.data_seed):
        raise ConfigError(f"config key 'evaluate.calibration.check.seed' must differ from 'data_seed' ({seed}): "
                          "the check needs objects the model has never seen")
    n_bins = int(require(cfg, "evaluate.calibration.n_bins", at_least=1))
    models = Path(cfg.paths.models)
    out = Path(cfg.paths.reports) / "calibration"
    source_name = str(training_source(models / "model.ckpt").name)
    if source_name != "simulate":
        reason = (f"{models / 'model.ckpt'}: the model was trained on source '{source_name}', not the simulator; "
                  "there is no independent simulated sample to check the calibration on")
        log.warning("calibration_check: skipped: %s", reason)
        (out / "independent").mkdir(parents=True, exist_ok=True)  # the stage's (empty) figure output
        report = {"skipped": reason, "training_source": source_name}
        io.write_json(report, out / "independent_test.json")
        return report
    report, probabilities, labels = calibration_check(
        models / "model.ckpt", models / "calibration.json", n_objects=n_objects, seed=seed, n_bins=n_bins,
        floor_draws=int(require(cfg, "evaluate.calibration.floor_draws", at_least=1)))
    io.save_figure(plot_reliability(probabilities, labels, n_bins, "width"),
                   out / "independent" / "reliability_width.png",
                   caption=f"Top-label reliability of {report['n_objects']} independently simulated objects "
                           f"({n_bins} equal-width bins), uncalibrated and after each calibrator")
    io.write_json(report, out / "independent_test.json")
    for name, m in report["methods"].items():
        log.info("calibration_check: %-12s ECE width %.4f (floor %.4f), mass %.4f, Brier %.4f, NLL %.4f",
                 name, m["ece_width"], m["ece_floor_width"]["mean"], m["ece_mass"], m["brier"], m["nll"])
    return report


main = hydra_entry(run_calibration_check, task="transients")

if __name__ == "__main__":
    main()
