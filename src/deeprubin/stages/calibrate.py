"""Calibrate stage: the task's post-hoc calibrators, fitted on its validation split.

Generic: it serves every task (``task_name=<task>``; dvc.yaml runs it once per task with
``foreach``, as ``calibrate@<task>``) by calling the task's ``calibrate`` step
(:func:`deeprubin.tasks.load_task`). Every task writes ``calibration.json`` beside its
checkpoint (bound to it by sha256; :func:`deeprubin.core.calibration.save_calibration`) and,
under ``paths.reports/calibration/``, ``metrics.json`` and ``figures/`` (reliability diagrams):
the transients classes, the transits segments' transit probability.
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..tasks import load_task


def run_calibrate(cfg: DictConfig) -> dict:
    """Run the task's calibrate step; returns its metrics (also written as ``calibration/metrics.json``)."""
    return load_task(cfg.task_name).step("calibrate")(cfg)


main = hydra_entry(run_calibrate, generic=True)

if __name__ == "__main__":
    main()
