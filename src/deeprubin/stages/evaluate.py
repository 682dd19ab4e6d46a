"""Evaluate stage: the task's test-set scores, tables and figures in ``paths.reports``.

Generic: it serves every task (``task_name=<task>``; dvc.yaml runs it once per task with
``foreach``, as ``evaluate@<task>``) by calling the task's ``evaluate`` step
(:func:`deeprubin.tasks.load_task`): ``metrics.json``, ``figures/`` and the tables in
``evaluation/`` (one folder whatever the task writes, so one stage block fits every task).
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..tasks import load_task


def run_evaluate(cfg: DictConfig) -> dict:
    """Run the task's evaluate step; returns its metrics (also written as ``metrics.json``)."""
    return load_task(cfg.task_name).step("evaluate")(cfg)


main = hydra_entry(run_evaluate, generic=True)

if __name__ == "__main__":
    main()
