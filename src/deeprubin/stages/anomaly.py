"""Anomaly stage: fit the anomaly scorers, validate them on held-out classes, rank candidates.

::

    python -m deeprubin.stages.anomaly            # dvc repro anomaly

Reads the trained classifier, its calibration, the GP grid, features and split of the pipeline;
simulates the held-out classes of ``anomaly.novel``; writes ``paths.anomaly`` (metrics.json,
candidates.csv, scores.csv, figures/) and ``paths.anomaly_model`` (the fitted scorers the stream
classifier applies). The work: :func:`deeprubin.tasks.transients.anomaly.evaluate.run_anomaly`.
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..tasks.transients.anomaly.evaluate import run_anomaly as _run


def run_anomaly(cfg: DictConfig) -> dict:
    """Fit, validate and rank (see the module docstring)."""
    return _run(cfg)


main = hydra_entry(run_anomaly, task="transients")

if __name__ == "__main__":
    main()
