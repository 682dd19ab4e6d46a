"""From a light curve and its ephemerides to labelled, normalised segments (one code path
for simulated and real data)."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...sources.missions import check_time_system
from .ephemeris import check_ephemerides
from .preprocess import CleanLightCurve, SkipLightCurve, check_preprocess_config, clean_lightcurve
from .segments import label_segments, normalise, segment_windows

log = logging.getLogger(__name__)

SEGMENT_COLUMNS = ["segment_id", "object_id", "target_id", "mission", "start", "t_start", "t_end", "label",
                   "n_in_transit", "snr", "has_eclipse", "min_value"]


@dataclass
class LightCurveSegments:
    """The segments of one light curve: ``x`` (n_seg, n_channels, length) float32 and their table."""

    clean: CleanLightCurve
    x: np.ndarray
    table: pd.DataFrame
    n_short_chunks: int


def segment_lightcurve(time, flux, flux_err, quality, *, object_id: str, target_id: str, mission: str,
                       cadence_days: float, ephemerides: pd.DataFrame, cfg) -> LightCurveSegments:
    """Clean, flatten, segment, normalise and label one light curve.

    ``cfg`` is the ``transits.preprocess`` node; raises
    :class:`deeprubin.tasks.transits.preprocess.SkipLightCurve` for an unusable light curve.
    """
    where = f"light curve {object_id!r} ({mission})"
    clean = clean_lightcurve(time, flux, flux_err, quality, cfg, cadence_days, where)
    length, stride = int(cfg.segment_length), int(cfg.stride)
    starts, n_short = segment_windows(clean.chunk, length, stride)
    if starts.size == 0:
        from .preprocess import SkipLightCurve

        raise SkipLightCurve("shorter_than_segment", f"{where}: no contiguous stretch of {length} cadences")
    idx = starts[:, None] + np.arange(length)[None, :]
    x = normalise(clean.flux[idx], list(cfg.channels), float(cfg.clip_value), float(cfg.relative_scale))
    truth = label_segments(clean.time, starts, length, ephemerides, mission, cadence_days,
                           int(cfg.min_in_transit_points))
    table = pd.DataFrame({
        "segment_id": [f"{object_id}:{s}" for s in starts],
        "object_id": object_id, "target_id": target_id, "mission": mission, "start": starts,
        "t_start": clean.time[starts], "t_end": clean.time[starts + length - 1],
    })
    table = pd.concat([table, truth], axis=1)
    table["min_value"] = x[:, 0].min(axis=1)  # the deepest normalised dip: ranks hard negatives
    return LightCurveSegments(clean, x, table[SEGMENT_COLUMNS], n_short)


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
