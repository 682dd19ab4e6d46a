"""Preprocess stage: the task's examples from its raw tables, in ``paths.processed``.

Generic: it serves every task (``task_name=<task>``; dvc.yaml runs it once per task with
``foreach``, as ``preprocess@<task>``) by calling the task's ``preprocess`` step
(:func:`deeprubin.tasks.load_task`): transients fit 2-D Gaussian processes onto a
regular grid; transits clean, flatten and cut labelled segments.
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..tasks import load_task


def run_preprocess(cfg: DictConfig) -> dict:
    """Run the task's preprocess step; returns its report (also written as ``preprocess_report.json``)."""
    return load_task(cfg.task_name).step("preprocess")(cfg)


main = hydra_entry(run_preprocess, generic=True)

if __name__ == "__main__":
    main()
