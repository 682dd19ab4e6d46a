"""transits_split: grouped train/val/test split of the light curves by star.

The group is the star (``target_id``), so a star observed by Kepler and by TESS keeps
both light curves in one split; the split is made on light curves before segmentation,
so no segment of a test star is ever seen in training.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.entry import hydra_entry
from ..core.split import check_no_leakage, make_split, split_summary

log = logging.getLogger(__name__)


def run_transits_split(cfg: DictConfig) -> dict:
    """Write ``manifest.parquet`` (object_id, group_id, label, split) and ``split_report.json``."""
    objects = io.read_parquet(Path(cfg.transits.paths.raw) / "objects.parquet")
    objects = objects.assign(group_id=objects["target_id"])
    manifest = make_split(objects, OmegaConf.to_container(cfg.transits.split.fractions, resolve=True),
                          seed=int(cfg.data_seed))
    check_no_leakage(manifest)
    out = Path(cfg.transits.paths.splits)
    io.write_parquet(manifest, out / "manifest.parquet")
    report = split_summary(manifest)
    io.write_json(report, out / "split_report.json")
    log.info("transits_split: train %d / val %d / test %d light curves", report["train"]["n_objects"],
             report["val"]["n_objects"], report["test"]["n_objects"])
    return report


main = hydra_entry(run_transits_split)

if __name__ == "__main__":
    main()
