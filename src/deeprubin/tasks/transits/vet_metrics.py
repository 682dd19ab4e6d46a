"""Star-level metrics of the search + vetting approach, beside the search alone and the segment CNN.

A *star* is a ``target_id`` (a star seen by Kepler and TESS has two light curves); it is
flagged when any of its candidates passes (the per-star false-positive rate of the issue).
Star scores: the vetter's highest candidate probability; the search alone's highest top-
candidate SDE (``bls_sde``) or depth SNR (``bls_snr``); the segment CNN's highest light-curve
score. Thresholds sit at ``target_fpr`` on the validation stars that host no planet and are
applied unchanged to the test stars. Intervals: a bootstrap over test stars (the same draws
for every method).

The planet SNR is the simulator's expected total SNR of the injected transit
(``ephemerides.snr_total``: mean in-transit depth over the noise on the transit's time scale,
x sqrt(transits observed)).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from .metrics import threshold_at_fpr

#: Score columns of :func:`star_table` and the method each names in the reports.
METHODS = {"vet": "search + CNN vetting", "bls_sde": "search alone (SDE)", "bls_snr": "search alone (depth SNR)",
           "segment": "segment CNN"}


def star_table(candidates: pd.DataFrame, objects: pd.DataFrame, ephemerides: pd.DataFrame,
               segment_scores: pd.Series | None = None) -> pd.DataFrame:
    """One row per star of ``candidates`` (which carry ``score``, the vetter's probability).

    Columns: target_id, split, label (1: hosts a planet seen in one of its light curves),
    eclipsing_binary (1: a binary, no planet), snr_total, planet_period [d] and planet_depth
    (of its planet of highest SNR), vet, bls_sde, bls_snr and, given ``segment_scores``
    (object_id -> light-curve score), segment.
    """
    c = candidates
    top = c[c["rank"] == 1]
    kind = objects["label"]
    per_lc = pd.DataFrame({"target_id": top["target_id"].to_numpy(), "split": top["split"].to_numpy(),
                           "object_id": top["object_id"].to_numpy(), "bls_sde": top["sde"].to_numpy(),
                           "bls_snr": top["depth_snr"].to_numpy()})
    per_lc["vet"] = per_lc["object_id"].map(c.groupby("object_id")["score"].max())
    per_lc["planet"] = (per_lc["object_id"].map(kind) == "planet").astype(int)
    per_lc["eb"] = (per_lc["object_id"].map(kind) == "eclipsing_binary").astype(int)
    if segment_scores is not None:
        per_lc["segment"] = per_lc["object_id"].map(segment_scores)
    agg = {"split": "first", "planet": "max", "eb": "max", "vet": "max", "bls_sde": "max", "bls_snr": "max"}
    if segment_scores is not None:
        agg["segment"] = "max"
    stars = per_lc.groupby("target_id", sort=True).agg(agg).reset_index()
    stars = stars.rename(columns={"planet": "label", "eb": "eclipsing_binary"})
    stars["eclipsing_binary"] = stars["eclipsing_binary"] * (1 - stars["label"])
    planets = ephemerides[ephemerides["kind"] == "planet"]
    # the star's planet of highest SNR (over its light curves) gives its SNR, period and depth
    best = planets.loc[planets.dropna(subset=["snr_total"]).groupby("target_id")["snr_total"].idxmax()]
    best = best.set_index("target_id")
    for col, src in (("snr_total", "snr_total"), ("planet_period", "period"), ("planet_depth", "depth")):
        stars[col] = stars["target_id"].map(best[src])
    return stars


def injection_recovery(stars: pd.DataFrame, metrics: dict, snr_edges, n_bins_period: int,
                       n_bins_depth: int) -> pd.DataFrame:
    """Recall of the stars with a planet, per method at its validation threshold, binned by the
    planet's total SNR (``snr_edges``), period and depth (log bins over the stars' range).

    Columns: method, variable (snr, period [d], depth [ppm]), lo, hi, n, recall, err.
    """
    from .metrics import log_edges, recall_by_bins

    pos = stars[stars["label"] == 1].dropna(subset=["snr_total"])
    values = {"snr": pos["snr_total"].to_numpy(float), "period": pos["planet_period"].to_numpy(float),
              "depth": 1e6 * pos["planet_depth"].to_numpy(float)}
    bins = {"snr": list(snr_edges), "period": log_edges(values["period"], n_bins_period),
            "depth": log_edges(values["depth"], n_bins_depth)}
    tables = []
    for key, entry in metrics["methods"].items():
        detected = pos[key].to_numpy(float) > float(entry["threshold"])
        for var, v in values.items():
            tables.append(recall_by_bins(v, detected, bins[var]).assign(method=key, variable=var))
    cols = ["method", "variable", "lo", "hi", "n", "recall", "err"]
    return pd.concat(tables, ignore_index=True)[cols] if tables else pd.DataFrame(columns=cols)


def _summary(val: pd.DataFrame, test: pd.DataFrame, col: str, target_fpr: float, snr_cut: float) -> dict:
    thr = threshold_at_fpr(val.loc[val["label"] == 0, col], target_fpr)
    lab, score = test["label"].to_numpy(), test[col].to_numpy(float)
    det = score > thr
    hi = (lab == 1) & (test["snr_total"].to_numpy(float) >= snr_cut)
    neg = lab == 0
    eb = test["eclipsing_binary"].to_numpy() == 1
    detectable = neg | hi
    both = 0 < lab.sum() < lab.size

    def _frac(mask):
        return float(det[mask].mean()) if mask.any() else None

    return {"roc_auc": float(roc_auc_score(lab, score)) if both else None,
            "roc_auc_snr_ge_threshold": float(roc_auc_score(lab[detectable], score[detectable]))
            if 0 < hi.sum() < detectable.sum() else None,
            "threshold": thr, "recall": _frac(lab == 1), "recall_snr_ge_threshold": _frac(hi),
            "false_positive_rate": _frac(neg), "eb_false_positive_rate": _frac(eb),
            "non_eb_false_positive_rate": _frac(neg & ~eb),
            "val_roc_auc": float(roc_auc_score(val["label"], val[col])) if 0 < val["label"].sum() < len(val) else None}


def vetting_metrics(stars: pd.DataFrame, target_fpr: float, snr_cut: float, n_boot: int, seed: int) -> dict:
    """Per method (:data:`METHODS` columns present in ``stars``): ROC-AUC (all test stars; and
    planets of SNR >= ``snr_cut`` against every non-planet star), recall at the validation
    threshold of ``target_fpr``, false-positive rate (all, eclipsing binaries, others), each
    with a 95 % bootstrap interval over test stars; ``n_stars`` per split."""
    val, test = stars[stars["split"] == "val"], stars[stars["split"] == "test"]
    if val.empty or test.empty or val["label"].nunique() < 2:
        raise ValueError("transits vetting: the validation and test splits need stars with and without a planet; "
                         f"got {len(val)} validation ({int(val['label'].sum())} with a planet) and {len(test)} test")
    methods = [m for m in METHODS if m in stars.columns]
    rng = np.random.default_rng(seed)
    point = {m: _summary(val, test, m, target_fpr, snr_cut) for m in methods}
    draws: dict = {m: {k: [] for k in point[m]} for m in methods}
    for _ in range(int(n_boot)):
        sample = test.iloc[rng.integers(0, len(test), len(test))]
        for m in methods:
            # the threshold stays the validation one: only the test stars are resampled
            s = _summary(val, sample, m, target_fpr, snr_cut)
            for k, v in s.items():
                if v is not None:
                    draws[m][k].append(v)
    out: dict = {"target_fpr": target_fpr, "snr_threshold": snr_cut, "n_bootstrap": int(n_boot),
                 "n_stars": {"val": int(len(val)), "test": int(len(test)),
                             "test_with_planet": int(test["label"].sum()),
                             "test_planet_snr_ge_threshold": int(((test["label"] == 1)
                                                                  & (test["snr_total"] >= snr_cut)).sum()),
                             "test_without_planet": int((test["label"] == 0).sum()),
                             "test_eclipsing_binary": int(test["eclipsing_binary"].sum())},
                 "methods": {}}
    for m in methods:
        entry = {}
        for k, v in point[m].items():
            entry[k] = v
            if k not in ("threshold", "val_roc_auc") and len(draws[m][k]) > 1:
                entry[f"{k}_ci95"] = [float(np.quantile(draws[m][k], 0.025)), float(np.quantile(draws[m][k], 0.975))]
        out["methods"][m] = {"name": METHODS[m], **entry}
    return out


def comparison_table(metrics: dict) -> pd.DataFrame:
    """``comparison.csv``: one row per method, the point values and intervals of :func:`vetting_metrics`."""
    rows = []
    for key, entry in metrics["methods"].items():
        row = {"method": key, "name": entry["name"]}
        for k, v in entry.items():
            if k == "name":
                continue
            if k.endswith("_ci95"):
                row[f"{k[:-5]}_low"], row[f"{k[:-5]}_high"] = v
            else:
                row[k] = v
        rows.append(row)
    return pd.DataFrame(rows)
