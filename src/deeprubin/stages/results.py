"""Results stage: write ``docs/results.md`` from the reports (:mod:`deeprubin.results_doc`)."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..core import io
from ..core.config import ConfigError, require
from ..core.entry import hydra_entry
from ..results_doc import render_results

log = logging.getLogger(__name__)


def run_results(cfg: DictConfig) -> dict:
    """Read every report file the config names (absent files show as n/a) and write the page."""
    node = OmegaConf.to_container(require(cfg, "results"), resolve=True)
    for key in ("output", "seeds_file", "sections", "seed_labels"):
        if node.get(key) is None:
            raise ConfigError(f"config key 'results.{key}' is missing")
    files = sorted({row["file"] for section in node["sections"] for row in section["rows"]})
    reports = {f: io.read_json(f) for f in files if Path(f).exists()}
    seeds = io.read_json(node["seeds_file"]) if Path(node["seeds_file"]).exists() else None
    paper_file = node.get("paper_file")
    paper = io.read_json(paper_file) if paper_file and Path(paper_file).exists() else None
    text = render_results({**node, "seed": int(cfg.seed)}, reports, seeds, paper)
    io.write_text(text, node["output"])
    missing = [f for f in files if f not in reports]
    log.info("results: %s from %d report files%s", node["output"], len(reports),
             f" ({len(missing)} absent: {missing})" if missing else "")
    return {"output": node["output"], "n_reports": len(reports), "missing": missing}


main = hydra_entry(run_results)

if __name__ == "__main__":
    main()
