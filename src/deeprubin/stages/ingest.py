"""Ingest stage: the task's source -> its validated canonical tables in ``paths.raw``.

Generic: it serves every task (``task_name=<task>``; dvc.yaml runs it once per task with
``foreach``, as ``ingest@<task>``) by calling the task's ``ingest`` step
(:func:`deeprubin.tasks.load_task`): transients read the configured source
(``source._target_``) into ``lightcurves``/``objects``; transits simulate the Kepler/TESS survey.
"""
from __future__ import annotations

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..tasks import load_task


def run_ingest(cfg: DictConfig) -> dict:
    """Run the task's ingest step; returns its report (also written as ``ingest_report.json``)."""
    return load_task(cfg.task_name).step("ingest")(cfg)


main = hydra_entry(run_ingest, generic=True)

if __name__ == "__main__":
    main()
