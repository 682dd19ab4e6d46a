"""Vetting inputs of a transit candidate: AstroNet-style folded views and scalar diagnostics,
and the candidate's truth from the simulator's ephemerides.

Views (Shallue & Vanderburg 2018): the light curve folded at the candidate's period and
binned with the median, centred on the transit:

- the *global* view covers the whole orbit, phase -P/2 to P/2 (``vet.n_global`` bins), so a
  secondary eclipse at phase 0.5 shows at its edges;
- the *local* view covers ``vet.local_durations`` transit durations around the transit
  (``vet.n_local`` bins), resolving its shape (U for a planet, V for a grazing binary).

Both are scaled by the candidate's BLS depth (out of transit 0, a box of the found depth
-1) and clipped to ``[-vet.clip, vet.clip]``; empty bins are filled by interpolation.

Diagnostics (ExoMiner's choice, computed from the data, not the truth): depth SNR, signal
detection efficiency, odd-even depth difference and secondary-eclipse depth in standard
errors, secondary-to-primary depth ratio, the albedo a planet would need for that secondary
(the Robovetter's planetary-occultation test: hot Jupiters show occultations too; a secondary
or twin a planet's occultation can explain is exempted, ``occultation_consistent``), transit shape (depth over the whole transit over
the depth over its central half: ~1 for U, < 1 for V), duration over period, period, depth,
transits observed, whether a sinusoid explains the signal better than a box, and the light
curve's other candidates (Kepler's ephemeris matching): whether one has the same period (or
twice or half it), at what phase offset (0.5: the other eclipse of a binary) and its depth ratio.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...core.config import require
from ...sources.missions import bjd_to_mission
from .ephemeris import transit_phase
from .search import robust_scatter

#: Names of the scalar diagnostics, in the order of the model input.
DIAGNOSTICS = ("log_depth_snr", "log_sde", "odd_even_sigma", "secondary_sigma", "secondary_ratio", "implied_albedo", "shape",
               "log_duration_over_period", "log_period", "log_depth", "log_n_transits", "sinusoid_preferred",
               "period_twin", "twin_phase", "twin_log_depth_ratio", "occultation_consistent")

#: Candidate truth classes (from the simulator's ephemerides).
TRUTH_CLASSES = ("planet", "eclipsing_binary", "false_alarm")


def check_vet_config(cfg) -> None:
    """Raise :class:`deeprubin.core.config.ConfigError` naming the first invalid ``transits.vet`` key."""
    require(cfg, "n_global", at_least=8)
    require(cfg, "n_local", at_least=8)
    require(cfg, "local_durations", positive=True)
    require(cfg, "clip", positive=True)
    require(cfg, "match.period_tolerance", positive=True)
    require(cfg, "match.epoch_tolerance_durations", positive=True)
    require(cfg, "occultation.max_albedo", positive=True)
    require(cfg, "occultation.max_depth", positive=True)


def _binned_median(x: np.ndarray, y: np.ndarray, lo: float, hi: float, n_bins: int) -> np.ndarray:
    """Median of ``y`` in ``n_bins`` equal bins of ``x`` over [lo, hi); empty bins interpolated
    from their neighbours (0 when every bin is empty)."""
    edges = np.linspace(lo, hi, n_bins + 1)
    idx = np.digitize(x, edges) - 1
    inside = (idx >= 0) & (idx < n_bins)
    out = np.full(n_bins, np.nan)
    if inside.any():
        order = np.argsort(idx[inside], kind="mergesort")
        ids, ys = idx[inside][order], y[inside][order]
        starts = np.flatnonzero(np.r_[True, np.diff(ids) > 0])
        for start, end in zip(starts, np.r_[starts[1:], ids.size]):
            out[ids[start]] = np.median(ys[start:end])
    good = np.isfinite(out)
    if not good.any():
        return np.zeros(n_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    return np.interp(centres, centres[good], out[good])


def folded_views(time: np.ndarray, flux: np.ndarray, period: float, t0: float, duration: float, depth: float,
                 cfg) -> tuple[np.ndarray, np.ndarray]:
    """``(global_view, local_view)`` of shapes ``(vet.n_global,)`` and ``(vet.n_local,)``, float32.

    ``flux`` is detrended relative flux (1 out of transit); the views are ``(flux - median
    out of transit) / depth``, so the found transit sits at -1 in the centre bins.
    """
    phase = transit_phase(time, period, t0)
    out_of_transit = np.abs(phase) > duration
    base = float(np.median(flux[out_of_transit])) if out_of_transit.sum() > 0 else float(np.median(flux))
    scale = depth if depth > 0 else robust_scatter(flux)
    y = (np.asarray(flux, dtype=float) - base) / scale
    half_local = 0.5 * float(cfg.local_durations) * duration
    global_view = _binned_median(phase, y, -0.5 * period, 0.5 * period, int(cfg.n_global))
    local_view = _binned_median(phase, y, -half_local, half_local, int(cfg.n_local))
    clip = float(cfg.clip)
    return (np.clip(global_view, -clip, clip).astype(np.float32), np.clip(local_view, -clip, clip).astype(np.float32))


def transit_shape(time: np.ndarray, flux: np.ndarray, period: float, t0: float, duration: float) -> float:
    """Mean depth over the whole transit / mean depth over its central half (out of transit 0).

    A flat-bottomed (U) transit gives ~1, a V-shaped eclipse ~2/3; 1 when undefined.
    """
    phase = np.abs(transit_phase(time, period, t0))
    out = phase > duration
    base = float(np.median(flux[out])) if out.any() else float(np.median(flux))
    full, inner = phase < 0.5 * duration, phase < 0.25 * duration
    if not full.any() or not inner.any():
        return 1.0
    d_inner = base - float(np.mean(flux[inner]))
    if not d_inner > 0:
        return 1.0
    return float(np.clip((base - float(np.mean(flux[full]))) / d_inner, 0.0, 2.0))


def _sigma(a: float, b: float, ea: float, eb: float) -> float:
    err = float(np.hypot(ea, eb))
    return float((a - b) / err) if err > 0 and np.isfinite(err) else 0.0


def implied_albedo(cand: dict) -> float:
    """The geometric albedo a planet would need to make the candidate's phase-0.5 eclipse:
    ``A_g = depth_secondary / depth x (a / R_*)^2``, with ``depth ~ (R_p / R_*)^2`` and
    ``a / R_* ~ P / (pi T)`` (central transit, small planet). The Kepler Robovetter's test for a
    planetary occultation (Coughlin et al. 2016): a hot Jupiter's occultation needs ``A_g`` below
    ~1, a binary's secondary eclipse far more. 0 when the depth or duration is not positive."""
    depth, duration = float(cand["depth"]), float(cand["duration"])
    if not (depth > 0 and duration > 0):
        return 0.0
    a_rs = float(cand["period"]) / (np.pi * duration)
    return float(cand["depth_secondary"]) / depth * a_rs ** 2


def planetary_occultation(cand: dict, cfg) -> tuple[bool, bool]:
    """Whether the candidate's phase-0.5 eclipse, and its period twin, could be the planet's own
    occultation (the Kepler Robovetter's exemption, Thompson et al. 2018): the candidate is no
    deeper than a planet (``vet.occultation.max_depth``) and the albedo a planet would need
    (:func:`implied_albedo`) is positive and at most ``vet.occultation.max_albedo``. The twin
    counts when it sits where the occultation would (the same period half an orbit away, or half
    the period: the search found the occultation with the transits masked) and is shallower.

    Returns ``(secondary, twin)``.
    """
    depth, duration = float(cand["depth"]), float(cand["duration"])
    max_albedo = float(cfg.occultation.max_albedo)
    if not (0 < depth <= float(cfg.occultation.max_depth) and duration > 0):
        return False, False
    secondary = 0 < implied_albedo(cand) <= max_albedo
    twin = False
    if cand.get("period_twin", 0.0):
        ratio, phase = float(cand.get("twin_period_ratio", 1.0)), float(cand.get("twin_phase", 0.0))
        at_occultation = ratio == 0.5 or (ratio == 1.0 and phase > 0.4)
        log_ratio = float(cand.get("twin_log_depth_ratio", 0.0))
        twin_depth = 10 ** log_ratio * depth   # the twin seen as this candidate's secondary
        twin = at_occultation and log_ratio < 0 and implied_albedo({**cand, "depth_secondary": twin_depth}) <= max_albedo
    return bool(secondary), bool(twin)


def diagnostics(cand: dict, shape: float, cfg) -> np.ndarray:
    """The :data:`DIAGNOSTICS` of one candidate (:func:`deeprubin.tasks.transits.search.search_lightcurve`
    row), each compressed to order 1 (``arcsinh`` of significances, ``log10`` of scales).

    A secondary eclipse or a period twin that could be the planet's occultation
    (:func:`planetary_occultation`) is not shown as a binary's: its diagnostics are zeroed and
    ``occultation_consistent`` is 1 (a hot Jupiter's detectable occultation is rare in the
    simulated survey, too rare for the network to learn the exemption from examples)."""
    depth = float(cand["depth"])
    odd_even = abs(_sigma(cand["depth_odd"], cand["depth_even"], cand["depth_odd_err"], cand["depth_even_err"]))
    secondary = _sigma(cand["depth_secondary"], 0.0, cand["depth_secondary_err"], 0.0)
    ratio = float(cand["depth_secondary"]) / depth if depth > 0 else 0.0
    albedo = implied_albedo(cand)
    twin = [float(cand.get(k, 0.0)) for k in ("period_twin", "twin_phase", "twin_log_depth_ratio")]
    occ_secondary, occ_twin = planetary_occultation(cand, cfg)
    if occ_secondary:
        secondary = ratio = albedo = 0.0
    if occ_twin:
        twin = [0.0, 0.0, 0.0]
    values = [np.arcsinh(cand["depth_snr"]), np.arcsinh(cand["sde"]), np.arcsinh(odd_even), np.arcsinh(secondary),
              np.clip(ratio, -2.0, 2.0), np.arcsinh(albedo), shape, np.log10(cand["duration"] / cand["period"]),
              np.log10(cand["period"]), np.log10(max(depth, 1e-7)), np.log10(max(cand["n_transits"], 1)),
              float(cand["harmonic_dll"] > 0), *twin, float(occ_secondary or occ_twin)]
    return np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def match_truth(period: float, t0: float, duration: float, truths: pd.DataFrame, mission: str, cfg) -> str:
    """The :data:`TRUTH_CLASSES` entry of a candidate, from the light curve's true ephemerides.

    A candidate is a planet (or an eclipsing binary) when its period is the true one, or
    twice or half it (within ``vet.match.period_tolerance``, relative) and one of its
    transits falls within ``vet.match.epoch_tolerance_durations`` durations of a true one;
    for a binary the secondary eclipse (phase 0.5) counts too. Anything else is a false alarm.
    """
    tol, epoch_tol = float(cfg.match.period_tolerance), float(cfg.match.epoch_tolerance_durations)
    for row in truths.itertuples(index=False):
        true_t0 = float(bjd_to_mission(row.t0_bjd, mission))
        for ratio in (1.0, 2.0, 0.5):
            if abs(period - ratio * row.period) > tol * ratio * row.period:
                continue
            base = min(ratio, 1.0) * row.period  # the true period: exact over any time from t0
            offsets = (0.0, 0.5 * row.period) if row.kind == "eb" else (0.0,)
            window = epoch_tol * max(duration, float(row.duration))
            if any(abs(transit_phase(np.array([t0]), base, true_t0 + off)[0]) < window for off in offsets):
                return "planet" if row.kind == "planet" else "eclipsing_binary"
    return "false_alarm"


def period_twins(cands: list[dict], tolerance: float) -> list[dict]:
    """For each candidate of one light curve, its nearest *twin*: another candidate whose period is
    1, 2 or 1/2 x its own (within ``tolerance``, relative). Returns per candidate ``period_twin``
    (1/0), ``twin_phase`` (the twin's epoch offset in units of the shorter period, folded to
    [0, 0.5]), ``twin_log_depth_ratio`` (log10 of twin depth / own depth; 0 without a twin) and
    ``twin_period_ratio`` (1, 2 or 0.5: the twin's period over its own; not a model input)."""
    out = []
    for i, c in enumerate(cands):
        best = {"period_twin": 0.0, "twin_phase": 0.0, "twin_log_depth_ratio": 0.0, "twin_period_ratio": 1.0}
        best_err = np.inf
        for j, o in enumerate(cands):
            if i == j:
                continue
            for ratio in (1.0, 2.0, 0.5):
                err = abs(o["period"] / (ratio * c["period"]) - 1.0)
                if err <= tolerance and err < best_err:
                    base = min(o["period"], c["period"])
                    phase = ((o["t0"] - c["t0"]) / base) % 1.0
                    best_err = err
                    best = {"period_twin": 1.0, "twin_phase": float(min(phase, 1.0 - phase)),
                            "twin_log_depth_ratio": float(np.log10(max(o["depth"], 1e-7) / max(c["depth"], 1e-7))),
                            "twin_period_ratio": ratio}
        out.append(best)
    return out


def candidate_inputs(time: np.ndarray, flux: np.ndarray, cand: dict, cfg) -> np.ndarray:
    """One candidate's model input: global view, local view and diagnostics concatenated,
    shape ``(n_global + n_local + len(DIAGNOSTICS),)`` float32 (the layout
    :class:`deeprubin.tasks.transits.model.AstroNetVetter` splits)."""
    g, loc = folded_views(time, flux, cand["period"], cand["t0"], cand["duration"], cand["depth"], cfg)
    shape = transit_shape(time, flux, cand["period"], cand["t0"], cand["duration"])
    return np.concatenate([g, loc, diagnostics(cand, shape, cfg)]).astype(np.float32)


def search_and_describe(object_id: str, time: np.ndarray, flux: np.ndarray, search_cfg, vet_cfg) -> tuple[list[dict], list[np.ndarray]]:
    """Search one flattened light curve and build each candidate's model input.

    Candidate ``k``'s views are folded from the light curve with candidates ``1..k-1``'s
    transits masked (the light curve it was found in). Returns ``(rows, inputs)``.
    """
    from .search import mask_found, search_lightcurve

    cands = search_lightcurve(time, flux, search_cfg)
    twins = period_twins(cands, float(vet_cfg.match.period_tolerance))
    rows, inputs = [], []
    for k, cand in enumerate(cands):
        keep = mask_found(time, cands[:k], float(search_cfg.mask_factor))
        inputs.append(candidate_inputs(time[keep], flux[keep], {**cand, **twins[k]}, vet_cfg))
        rows.append({"object_id": object_id, **cand})
    return rows, inputs


def candidate_table(flat: pd.DataFrame, objects: pd.DataFrame, ephemerides: pd.DataFrame, split_of: dict,
                    search_cfg, vet_cfg, n_jobs: int = 1, where: str = "flat.parquet") -> tuple[pd.DataFrame, np.ndarray]:
    """Every light curve of ``flat`` searched (in parallel over ``n_jobs`` processes), its
    candidates described and labelled.

    Parameters
    ----------
    flat : pandas.DataFrame
        Flattened light curves: object_id, time, flux (``preprocess@transits``'s ``flat.parquet``).
    objects : pandas.DataFrame
        Indexed by object_id: target_id, mission, label.
    ephemerides : pandas.DataFrame
        True ephemerides (object_id, kind, period, t0_bjd, duration); empty for real data.
    split_of : dict
        object_id -> split name.

    Returns
    -------
    (pandas.DataFrame, numpy.ndarray)
        One row per candidate (object_id, target_id, mission, split, star_label, the
        search's columns, truth, label = 1 for a planet) and the model inputs, shape
        ``(n, n_global + n_local + len(DIAGNOSTICS))`` float32, in the same order.
    """
    from joblib import Parallel, delayed

    from .search import CANDIDATE_COLUMNS

    missing = sorted(set(flat["object_id"]) - set(objects.index))
    if missing:
        raise ValueError(f"{where}: object {missing[0]!r} is not in objects.parquet; rerun preprocess@transits")
    groups = [(oid, lc["time"].to_numpy(float), lc["flux"].to_numpy(float))
              for oid, lc in flat.groupby("object_id", sort=True)]
    results = Parallel(n_jobs=int(n_jobs))(delayed(search_and_describe)(oid, t, f, search_cfg, vet_cfg)
                                           for oid, t, f in groups)
    rows = [r for found, _ in results for r in found]
    inputs = [x for _, xs in results for x in xs]
    columns = ["object_id", *CANDIDATE_COLUMNS]
    table = pd.DataFrame(rows, columns=columns)
    table.insert(1, "target_id", table["object_id"].map(objects["target_id"]))
    table.insert(2, "mission", table["object_id"].map(objects["mission"]))
    table.insert(3, "split", table["object_id"].map(split_of))
    table.insert(4, "star_label", table["object_id"].map(objects["label"]))
    by_object = {k: v for k, v in ephemerides.groupby("object_id", sort=False)}
    empty = ephemerides.iloc[:0]
    table["truth"] = [match_truth(r.period, r.t0, r.duration, by_object.get(r.object_id, empty), r.mission, vet_cfg)
                      for r in table.itertuples(index=False)]
    table["label"] = (table["truth"] == "planet").astype(np.int64)
    width = int(vet_cfg.n_global) + int(vet_cfg.n_local) + len(DIAGNOSTICS)
    x = np.stack(inputs).astype(np.float32) if inputs else np.zeros((0, width), np.float32)
    return table, x


def search_report(table: pd.DataFrame, ephemerides: pd.DataFrame, snr_bins: list[float]) -> dict:
    """Candidates per rank and truth class, and the search's recovery of simulated planets:
    the fraction of planet light curves with a candidate matched to the planet, per total-SNR bin."""
    planets = ephemerides[ephemerides["kind"] == "planet"].set_index("object_id")
    searched = planets[planets.index.isin(set(table["object_id"]))]
    matched = set(table.loc[table["truth"] == "planet", "object_id"])
    found = searched.index.isin(matched)
    rows = []
    for lo, hi in zip(snr_bins[:-1], snr_bins[1:]):
        inside = (searched["snr_total"] >= lo) & (searched["snr_total"] < hi)
        n = int(inside.sum())
        rows.append({"snr_lo": float(lo), "snr_hi": float(hi), "n": n,
                     "recovered": float(found[inside.to_numpy()].mean()) if n else None})
    return {"n_lightcurves": int(table["object_id"].nunique()), "n_candidates": int(len(table)),
            "candidates_per_rank": {str(k): int(v) for k, v in table["rank"].value_counts().sort_index().items()},
            "candidates_per_truth": {str(k): int(v) for k, v in table["truth"].value_counts().sort_index().items()},
            "planet_recovery_by_snr": rows}
