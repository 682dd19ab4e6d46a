"""Index stage: copy every figure to ``paths.figures`` (PNG + PDF) and write ``paths.report_index``.

Runs last; what it lists is discovered from dvc.yaml and dvc.lock
(:mod:`deeprubin.reporting`), so new stages appear without code changes.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..core.entry import hydra_entry
from ..reporting import write_report_index

log = logging.getLogger(__name__)


def run_index(cfg: DictConfig) -> dict:
    """Collect the figures and write the Markdown index (from the working directory, the repo root)."""
    summary = write_report_index(Path.cwd(), cfg.paths.figures, cfg.paths.report_index)
    log.info("index: %d figures -> %s, %d metric/table files -> %s%s", summary["n_figures"], cfg.paths.figures,
             summary["n_metrics"], cfg.paths.report_index,
             f"; {len(summary['no_caption'])} figure(s) without caption" if summary["no_caption"] else "")
    return summary


main = hydra_entry(run_index)

if __name__ == "__main__":
    main()
