"""Split stage: grouped, stratified, deterministic train/val/test manifest + leakage check."""
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
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    fractions = OmegaConf.to_container(cfg.split.fractions, resolve=True)
    manifest = make_split(objects, fractions, seed=int(cfg.data_seed))
    check_no_leakage(manifest)
    out = Path(cfg.paths.splits)
    io.write_parquet(manifest, out / "manifest.parquet")
    report = split_summary(manifest)
    io.write_json(report, out / "split_report.json")
    log.info("split: train %d / val %d / test %d objects; no group in two splits",
             report["train"]["n_objects"], report["val"]["n_objects"], report["test"]["n_objects"])
    return report


main = hydra_entry(run_split)

if __name__ == "__main__":
    main()
