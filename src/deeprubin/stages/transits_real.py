"""transits_real: score real Kepler, TESS and K2 planets with the trained model.

Each light curve is read by the task's registry source (``real.sources``: the lightkurve
source for MAST FITS, the files source for K2 CSVs; :func:`deeprubin.tasks.transits.source.read_target`),
as ``ingest@transits`` reads them, then goes through the code path of the simulated ones (clean, flatten,
segment, normalise, label from the ephemeris) and the model scores every segment. With
periods shorter than a segment every segment holds a transit, so each star also gets
control segments: the same light curve with the predicted in-transit cadences (x
``control_mask_factor`` of the duration) cut out. The report gives where the segments
holding a true transit rank among all of the star's segments (transit and control).
Each light curve is also searched (``transits_search``'s code and settings) and its candidates
vetted by ``transits_vet``'s network, at the threshold of its validation false-positive rate
(``reports/transits/vetting/metrics.json``): the known planet should be the top candidate, at
its catalogue period within ``real.period_tolerance``, and pass (``vetting`` per target).
When the real-data folder is absent the stage writes a report saying so (and no figure
other than a note), so the pipeline runs anywhere.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ..core import io
from ..core.checkpoint import load_checkpoint
from ..core.entry import hydra_entry
from ..tasks.transits.dataset import segment_lightcurve
from ..tasks.transits.ephemeris import check_ephemerides, in_transit
from ..tasks.transits.module import predict_scores
from ..tasks.transits.plots import plot_top_segments
from ..tasks.transits.preprocess import SkipLightCurve
from ..tasks.transits.real import RealDataError, rank_true_segments, real_ephemeris, vet_known_planet
from ..tasks.transits.source import read_target
from ..tasks.transits.vetting import search_and_describe
from ..sources.missions import MISSION_SYSTEMS

log = logging.getLogger(__name__)


def run_transits_real(cfg: DictConfig) -> dict:
    """Write ``reports/transits/real/real_report.json`` and ``top_segments.png``."""
    tc = cfg
    rc = tc.real
    root = Path(str(rc.root))
    out = Path(tc.paths.reports) / "real"
    if not root.exists():
        report = {"skipped": True, "note": f"real-data folder {root} absent; nothing scored", "targets": {}}
        io.write_json(report, out / "real_report.json")
        io.save_figure(plot_top_segments([], f"Real planets: skipped ({root} absent)"), out / "top_segments.png")
        log.warning("transits_real: %s absent; skipped", root)
        return report
    model, _ = load_checkpoint(Path(tc.paths.models) / "model.ckpt")
    vetter, _ = load_checkpoint(Path(tc.paths.models) / "vetter" / "model.ckpt")
    vet_metrics = io.read_json(Path(tc.paths.reports) / "vetting" / "metrics.json")
    vet_threshold = float(vet_metrics["methods"]["vet"]["threshold"])
    catalog = Path(str(rc.catalog)) if rc.get("catalog") else None
    report: dict = {"skipped": False, "targets": {}}
    items = []
    for target in rc.targets:
        name, mission = str(target.name), str(target.mission)
        minutes = target.get("cadence_minutes") or tc.task.cadence_minutes[mission]
        cadence = float(minutes) / 1440.0
        try:
            eph = real_ephemeris(target, catalog)
            check_ephemerides(eph, f"transits.real.targets[{name}]")
            lc = read_target(tc, target, root, float(minutes))
            seg = segment_lightcurve(lc["time"], lc["flux"], lc["flux_err"], lc["quality"], object_id=name,
                                     target_id=str(target.target_id), mission=mission, cadence_days=cadence,
                                     ephemerides=eph, cfg=tc.preprocess)
            period, t0_bjd, duration = (float(eph[c].iloc[0]) for c in ("period", "t0_bjd", "duration"))
            keep = ~in_transit(lc["time"], period, t0_bjd, float(rc.control_mask_factor) * duration, mission)
            control = segment_lightcurve(lc["time"][keep], lc["flux"][keep], lc["flux_err"][keep],
                                         lc["quality"][keep], object_id=f"{name}-control",
                                         target_id=str(target.target_id), mission=mission, cadence_days=cadence,
                                         ephemerides=eph.iloc[:0], cfg=tc.preprocess)
        except (RealDataError, SkipLightCurve) as err:
            report["targets"][name] = {"skipped": True, "reason": str(err)}
            log.warning("transits_real: %s skipped: %s", name, err)
            continue
        table = seg.table.assign(score=predict_scores(model, seg.x))
        controls = control.table.assign(score=predict_scores(model, control.x))
        ranks = rank_true_segments(pd.concat([table, controls], ignore_index=True))
        ranks.update({"mission": mission, "file": str(target.file), "period_days": period, "t0_bjd": t0_bjd,
                      "duration_days": duration, "cadence_minutes": float(minutes),
                      "n_cadences": int(seg.clean.time.size), "n_control_segments": int(len(controls)),
                      "n_original_segments": int(len(table)),
                      "n_original_segments_without_transit": int((table["label"] == 0).sum())})
        cands, inputs = search_and_describe(name, seg.clean.time, seg.clean.flux, tc.search, tc.vet)
        scores = predict_scores(vetter, np.stack(inputs)) if inputs else np.zeros(0)
        ranks["vetting"] = vet_known_planet(cands, scores, period, vet_threshold, float(rc.period_tolerance))
        report["targets"][name] = ranks
        length = int(tc.preprocess.segment_length)
        for rank, row in enumerate(table.sort_values("score", ascending=False).head(int(rc.n_top_segments))
                                   .itertuples(index=False), start=1):
            sl = slice(int(row.start), int(row.start) + length)
            t, f = seg.clean.time[sl], seg.clean.flux[sl]
            mask = in_transit(t, float(eph["period"].iloc[0]), float(eph["t0_bjd"].iloc[0]),
                              float(eph["duration"].iloc[0]), mission)
            items.append({"name": f"{name} ({mission})", "time": t, "flux": f, "score": float(row.score),
                          "rank": rank, "in_transit": mask, "time_label": "Time (BKJD or BTJD, days)"})
        v = ranks["vetting"]
        log.info("transits_real: %s: best transit-segment rank %s of %d; search: top candidate P = %.5f d "
                 "(known %.5f), known planet rank %s, vetting score %s (threshold %.3f)", name,
                 ranks["best_transit_rank"], ranks["n_segments"], v["top_candidate_period"] or float("nan"), period,
                 v["known_planet_rank"], v["vetting_score"], vet_threshold)
    vetted = [t["vetting"]["found"] for t in report["targets"].values() if "vetting" in t]
    report["vetting_summary"] = {"n_targets": len(vetted), "n_found_top_and_passing": int(sum(vetted)),
                                 "threshold": vet_threshold, "period_tolerance": float(rc.period_tolerance)}
    report["time_systems"] = MISSION_SYSTEMS
    io.write_json(report, out / "real_report.json")
    io.save_figure(plot_top_segments(items, "Top-scoring segments of real planet hosts (red: predicted transit)"),
                   out / "top_segments.png",
                   caption="Highest-scoring segments of the real Kepler, TESS and K2 planet hosts, with the "
                           "published transit times marked")
    return report


main = hydra_entry(run_transits_real, task="transits")

if __name__ == "__main__":
    main()
