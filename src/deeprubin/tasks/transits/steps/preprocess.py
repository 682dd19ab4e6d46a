"""The transits task's ``preprocess`` step (see :mod:`deeprubin.tasks.transits.steps`)."""
from __future__ import annotations

from collections import Counter
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ....core import io
from ....sources.missions import check_time_system
from ..dataset import SEGMENT_COLUMNS, segment_lightcurve
from ..ephemeris import check_ephemerides
from ..preprocess import SkipLightCurve, check_preprocess_config

log = logging.getLogger(__name__)


OBJECT_COLUMNS = ("object_id", "target_id", "mission", "cadence_days")

LIGHTCURVE_COLUMNS = ("object_id", "time", "flux", "flux_err", "quality")


def _require_columns(df: pd.DataFrame, columns, where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}")


def preprocess_tables(lightcurves: pd.DataFrame, objects: pd.DataFrame, ephemerides: pd.DataFrame, cfg,
                      raw_dir: str = "raw") -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame, dict]:
    """Segments of every light curve.

    Returns
    -------
    (x, segments, flat, report)
        ``x``: (n_seg, segment_length) float32; ``segments``: one row per segment
        (:data:`deeprubin.tasks.transits.dataset.SEGMENT_COLUMNS`); ``flat``: the flattened
        light curves (object_id, time, flux, trend); ``report``: counts.
    """
    check_preprocess_config(cfg)
    _require_columns(objects, OBJECT_COLUMNS, f"{raw_dir}/objects.parquet")
    _require_columns(lightcurves, LIGHTCURVE_COLUMNS, f"{raw_dir}/lightcurves.parquet")
    check_ephemerides(ephemerides, f"{raw_dir}/ephemerides.parquet")
    eph_by_object = {k: v for k, v in ephemerides.groupby("object_id", sort=False)}
    empty_eph = ephemerides.iloc[:0]
    lc_by_object = {k: v for k, v in lightcurves.groupby("object_id", sort=False)}
    empty_lc = lightcurves.iloc[:0]
    skipped: Counter = Counter()
    counts: Counter = Counter()
    xs, tables, flats, skipped_objects = [], [], [], []
    n_short_chunks = 0
    for obj in objects.sort_values("object_id").itertuples(index=False):
        lc = lc_by_object.get(obj.object_id, empty_lc)
        where = f"{raw_dir}/lightcurves.parquet: object {obj.object_id!r}"
        check_time_system(lc["time"].to_numpy(), obj.mission, where)
        try:
            seg = segment_lightcurve(lc["time"].to_numpy(), lc["flux"].to_numpy(), lc["flux_err"].to_numpy(),
                                     lc["quality"].to_numpy(), object_id=obj.object_id, target_id=obj.target_id,
                                     mission=obj.mission, cadence_days=float(obj.cadence_days),
                                     ephemerides=eph_by_object.get(obj.object_id, empty_eph), cfg=cfg)
        except SkipLightCurve as skip:
            skipped[skip.reason] += 1
            skipped_objects.append({"object_id": obj.object_id, "reason": skip.reason, "message": str(skip)})
            log.warning("preprocess transits: skipped %s", skip)
            continue
        counts.update(seg.clean.counts)
        n_short_chunks += seg.n_short_chunks
        xs.append(seg.x)
        tables.append(seg.table)
        flats.append(pd.DataFrame({"object_id": obj.object_id, "time": seg.clean.time, "flux": seg.clean.flux,
                                   "trend": seg.clean.trend}))
    if not tables:
        raise ValueError(f"{raw_dir}: no usable light curve (skipped: {dict(skipped)})")
    x = np.concatenate(xs).astype(np.float32)
    segments = pd.concat(tables, ignore_index=True)[SEGMENT_COLUMNS]
    report = {"n_lightcurves_in": int(len(objects)), "n_lightcurves_used": int(len(tables)),
              "skipped": dict(skipped), "skipped_objects": skipped_objects,
              "chunks_shorter_than_segment": int(n_short_chunks), "cadences": dict(counts),
              "n_segments": int(len(segments)), "n_positive_segments": int(segments["label"].sum()),
              "segment_length": int(cfg.segment_length), "stride": int(cfg.stride)}
    return x, segments, pd.concat(flats, ignore_index=True), report


def preprocess(cfg: DictConfig) -> dict:
    """Write ``segments.npz`` (x), ``segments.parquet``, ``flat.parquet`` and the report."""
    raw = Path(cfg.paths.raw)
    x, segments, flat, report = preprocess_tables(
        io.read_parquet(raw / "lightcurves.parquet"), io.read_parquet(raw / "objects.parquet"),
        io.read_parquet(raw / "ephemerides.parquet"), cfg.preprocess, raw_dir=str(raw))
    out = Path(cfg.paths.processed)
    io.write_npz(out / "segments.npz", x=x)
    io.write_parquet(segments, out / "segments.parquet")
    io.write_parquet(flat, out / "flat.parquet")
    io.write_json(report, out / "preprocess_report.json")
    log.info("preprocess transits: %d segments (%d positive) from %d light curves; skipped %s",
             report["n_segments"], report["n_positive_segments"], report["n_lightcurves_used"], report["skipped"])
    return report
