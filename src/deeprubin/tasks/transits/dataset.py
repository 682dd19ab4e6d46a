"""From a light curve and its ephemerides to labelled, normalised segments (one code path
for simulated and real data)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .preprocess import CleanLightCurve, clean_lightcurve
from .segments import label_segments, normalise, segment_windows

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
