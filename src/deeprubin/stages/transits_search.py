"""transits_search: the periodic transit search of every light curve, and its candidates.

Runs :func:`deeprubin.tasks.transits.vetting.candidate_table` over the flattened light curves
of ``preprocess@transits`` (every split: the vetter trains on the training stars' candidates)
and writes, under ``paths.candidates``, ``candidates.parquet`` (one row per candidate, with its
truth from the simulator's ephemerides) and ``candidate_inputs.npz`` (the vetter's inputs);
under ``paths.baseline``, ``bls_scores.csv`` (the search alone: the top candidate of each
validation and test light curve, scored by its SDE) and ``search_report.json`` (candidates per
truth class, and the search's recovery of the simulated planets by SNR).
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..core import io
from ..core.entry import hydra_entry
from ..tasks.transits.search import check_search_config
from ..tasks.transits.vetting import check_vet_config, candidate_table, search_report

log = logging.getLogger(__name__)


def run_transits_search(cfg: DictConfig) -> dict:
    """Search every light curve; write the candidates, their inputs, the BLS scores and the report."""
    tc = cfg
    check_search_config(tc.search)
    check_vet_config(tc.vet)
    raw, processed = Path(tc.paths.raw), Path(tc.paths.processed)
    flat = io.read_parquet(processed / "flat.parquet")
    objects = io.read_parquet(raw / "objects.parquet").set_index("object_id")
    ephemerides = io.read_parquet(raw / "ephemerides.parquet")
    manifest = io.read_parquet(Path(tc.paths.splits) / "manifest.parquet")
    table, x = candidate_table(flat, objects, ephemerides, dict(zip(manifest["object_id"], manifest["split"])),
                               tc.search, tc.vet, n_jobs=int(tc.search.n_jobs), where=str(processed / "flat.parquet"))
    cands = Path(tc.paths.candidates)
    io.write_parquet(table, cands / "candidates.parquet")
    io.write_npz(cands / "candidate_inputs.npz", x=x)
    top = table[(table["rank"] == 1) & table["split"].isin(["val", "test"])]
    bls = top.assign(label=(top["star_label"] == "planet").astype(int))[
        ["object_id", "target_id", "mission", "split", "label", "sde", "depth_snr", "period", "t0", "duration", "depth"]]
    out = Path(tc.paths.baseline)
    io.write_text(bls.to_csv(index=False, float_format="%.6g"), out / "bls_scores.csv")
    report = search_report(table, ephemerides, list(tc.evaluate.snr_bins))
    io.write_json(report, out / "search_report.json")
    log.info("transits_search: %d candidates in %d light curves (%s)", len(table), table["object_id"].nunique(),
             report["candidates_per_truth"])
    return report


main = hydra_entry(run_transits_search, task="transits")

if __name__ == "__main__":
    main()
