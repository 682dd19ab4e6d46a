"""Split stage, generic: grouped, stratified, deterministic train/val/test manifest + leakage check.

It serves every task (``task_name=<task>``; dvc.yaml runs it once per task with ``foreach``):
the task's ``split.group_column`` of ``objects.parquet`` is the group that never straddles two
splits (``group_id`` for transients: an object and its copies; ``target_id`` for transits: a
star, whose Kepler and TESS light curves stay together).
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.entry import hydra_entry
from ..core.split import check_no_leakage, make_split, split_summary

log = logging.getLogger(__name__)


def run_split(cfg: DictConfig) -> dict:
    """Write ``manifest.parquet`` (object_id, group_id, label, split) and ``split_report.json``.

    Raises :class:`deeprubin.core.split.LeakageError` (failing the DVC pipeline) if any
    group would straddle two splits.
    """
    path = Path(cfg.paths.raw) / "objects.parquet"
    objects = io.read_parquet(path)
    column = str(cfg.split.get("group_column", "group_id"))
    if column not in objects.columns:
        raise ValueError(f"{path}: no column '{column}' (config key 'tasks.{cfg.task_name}.split.group_column'); "
                         f"columns: {sorted(objects.columns)}")
    objects = objects.assign(group_id=objects[column])
    fractions = OmegaConf.to_container(cfg.split.fractions, resolve=True)
    manifest = make_split(objects, fractions, seed=int(cfg.data_seed))
    check_no_leakage(manifest)
    out = Path(cfg.paths.splits)
    io.write_parquet(manifest, out / "manifest.parquet")
    report = split_summary(manifest)
    io.write_json(report, out / "split_report.json")
    log.info("split %s: train %d / val %d / test %d objects; no group in two splits",
             cfg.task_name, report["train"]["n_objects"], report["val"]["n_objects"], report["test"]["n_objects"])
    return report


main = hydra_entry(run_split, generic=True)

if __name__ == "__main__":
    main()
