"""Fixed-length segments of a flattened light curve, their normalisation and labels.

A segment is ``segment_length`` consecutive cadences of one contiguous chunk; windows
start every ``stride`` cadences, plus one window flush with the chunk's end so its last
cadences are covered too. A segment is positive when it holds at least
``min_in_transit_points`` cadences inside a predicted planet transit.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...core.config import ConfigError
from .ephemeris import in_transit, transit_phase
from ...sources.missions import bjd_to_mission


def window_starts(n: int, length: int, stride: int) -> np.ndarray:
    """Start indices of the windows of one chunk of ``n`` cadences (empty if ``n < length``)."""
    if length <= 0 or stride <= 0:
        raise ConfigError(f"segment_length ({length}) and stride ({stride}) must be > 0 (zero-length segments)")
    if n < length:
        return np.zeros(0, dtype=int)
    starts = np.arange(0, n - length + 1, stride)
    if starts[-1] != n - length:
        starts = np.append(starts, n - length)
    return starts.astype(int)


def segment_windows(chunk: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, int]:
    """``(starts, n_short_chunks)``: absolute start indices over all chunks, and how many
    chunks were shorter than one window (their cadences are not segmented)."""
    starts, short = [], 0
    for c in np.unique(chunk):
        idx = np.flatnonzero(chunk == c)
        s = window_starts(idx.size, length, stride)
        short += int(s.size == 0)
        starts.append(idx[0] + s)
    return (np.concatenate(starts) if starts else np.zeros(0, int)), short


CHANNELS = ("robust_z", "relative")


def normalise(x: np.ndarray, channels, clip: float, relative_scale: float) -> np.ndarray:
    """Per-segment normalisation of ``x`` (shape ``(n_seg, length)``) into input channels.

    Returns ``(n_seg, n_channels, length)`` float32, one channel per entry of ``channels``:

    ``robust_z``
        ``(x - median) / (1.4826 MAD)`` per segment: a dip in units of the segment's own
        noise (a depth-to-noise ratio, as a detection statistic), clipped to ``+-clip``.
    ``relative``
        ``(x - median) / relative_scale``: the absolute depth (``relative_scale = 0.01``
        puts a 1 % dip at -1), clipped to ``+-clip``. Keeps what the noise units lose: an
        eclipse of 10 % is a binary star, not a planet.
    """
    x = np.asarray(x, dtype=float)
    med = np.median(x, axis=1, keepdims=True)
    out = []
    for name in channels:
        if name == "robust_z":
            mad = 1.4826 * np.median(np.abs(x - med), axis=1, keepdims=True)
            out.append((x - med) / np.where(mad > 0, mad, 1.0))
        elif name == "relative":
            out.append((x - med) / relative_scale)
        else:
            raise ConfigError(f"config key 'transits.preprocess.channels': unknown channel {name!r}; "
                              f"use {list(CHANNELS)}")
    return np.clip(np.stack(out, axis=1), -clip, clip).astype(np.float32)


def label_segments(time: np.ndarray, starts: np.ndarray, length: int, ephemerides: pd.DataFrame, mission: str,
                   cadence_days: float, min_points: int) -> pd.DataFrame:
    """Per-segment truth from ephemerides.

    Parameters
    ----------
    time : numpy.ndarray, shape (n,)
        Cadence times of the flattened light curve (mission system).
    starts : numpy.ndarray, shape (n_seg,)
        Window start indices.
    ephemerides : pandas.DataFrame
        This light curve's rows (``kind`` planet or eb; period, t0_bjd, duration; for
        planets optionally snr_transit).

    Returns
    -------
    pandas.DataFrame
        One row per segment: ``label`` (0/1), ``n_in_transit`` (cadences in planet
        transits), ``snr`` (in-segment SNR of the planet transits: per-transit SNR x
        sqrt(in-transit cadences / cadences per transit); NaN when no transit),
        ``has_eclipse`` (overlaps a primary or secondary EB eclipse).
    """
    idx = starts[:, None] + np.arange(length)[None, :]
    n_in = np.zeros(len(starts), int)
    snr2 = np.zeros(len(starts))
    eclipse = np.zeros(len(starts), bool)
    snr_known = True
    for row in ephemerides.itertuples(index=False):
        if row.kind == "planet":
            mask = in_transit(time, row.period, row.t0_bjd, row.duration, mission)[idx]
            k = mask.sum(axis=1)
            n_in += k
            snr_transit = float(getattr(row, "snr_transit", np.nan))
            snr_known &= bool(np.isfinite(snr_transit))  # real planets: no simulated SNR
            snr2 += (snr_transit ** 2 if np.isfinite(snr_transit) else 0.0) * k / (row.duration / cadence_days)
        elif row.kind == "eb":
            t0 = float(bjd_to_mission(row.t0_bjd, mission))
            for offset in (0.0, 0.5 * row.period):
                ph = transit_phase(time, row.period, t0 + offset)
                eclipse |= (np.abs(ph) < 0.5 * row.duration)[idx].any(axis=1)
    label = (n_in >= int(min_points)).astype(np.int64)
    snr = np.where((n_in > 0) & snr_known, np.sqrt(snr2), np.nan)
    return pd.DataFrame({"label": label, "n_in_transit": n_in, "snr": snr, "has_eclipse": eclipse})
