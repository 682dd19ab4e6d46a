"""Train stage: the task's deep model on its training split, tracked in MLflow.

Generic: it serves every task (``task_name=<task>``; dvc.yaml runs it once per task with
``foreach``, as ``train@<task>``) by calling the task's ``train`` step
(:func:`deeprubin.tasks.load_task`). It writes ``model.ckpt``, ``config.yaml`` and ``history.csv``
to ``paths.models`` (a sweep job: to its own folder), and its result carries the task's
sweep objective (``OBJECTIVE`` of the task's ``steps`` package) for Hydra sweepers.
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..tasks import load_task


def run_train(cfg: DictConfig) -> dict:
    """Run the task's train step; returns its summary with ``objective`` added."""
    task = load_task(cfg.task_name)
    summary = task.step("train")(cfg)
    return {**summary, "objective": summary[task.objective]}


main = hydra_entry(run_train, objective=lambda summary: summary["objective"], generic=True)

if __name__ == "__main__":
    main()
