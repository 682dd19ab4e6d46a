"""Transit-detection metrics from segment scores: the pure part of ``transits_evaluate``.

Thresholds are fixed on the validation split at ``evaluate.target_fpr`` (1 %) and applied
unchanged to the test split: the segment threshold (validation negative segments), the
star-score threshold and the BLS SDE threshold (validation negative light curves). Every
summary is also given with thresholds set on negatives that hold no eclipsing binary (the
detection limit against noise alone, apart from binary rejection).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregate import star_scores
from .metrics import detection_summary, log_edges, recall_by_bins, threshold_at_fpr

COMPARISON_COLUMNS = ("roc_auc", "pr_auc", "threshold", "recall", "fpr", "precision", "recall_snr_ge_threshold",
                      "roc_auc_snr_ge_threshold")


@dataclass
class TransitEvaluation:
    """What :func:`evaluate_transit_scores` returns.

    Attributes
    ----------
    metrics : dict
        The content of ``metrics.json`` (NaN where undefined).
    stars_test : pandas.DataFrame
        One row per test light curve: star_score, label, snr_total, bls_sde, ...
    comparison : pandas.DataFrame
        CNN star score vs BLS SDE at equal false-positive rate (``comparison.csv``).
    curves : dict
        ``{threshold series: {"snr"|"period"|"depth": recall table}}`` (injection-recovery).
    thresholds : dict
        Thresholds used by the figures: segment, star, bls (and star_no_eb, bls_no_eb).
    """

    metrics: dict
    stars_test: pd.DataFrame
    comparison: pd.DataFrame
    curves: dict
    thresholds: dict


def _star_table(segments: pd.DataFrame, objects: pd.DataFrame, planets: pd.DataFrame, aggregate) -> pd.DataFrame:
    stars = star_scores(segments, str(aggregate.method), int(aggregate.k))
    label = objects.set_index("object_id")["label"]
    stars["label"] = (stars["object_id"].map(label) == "planet").astype(int)
    snr = planets.set_index("object_id")["snr_total"]
    stars["snr_total"] = stars["object_id"].map(snr)
    return stars


def evaluate_transit_scores(val: pd.DataFrame, test: pd.DataFrame, objects: pd.DataFrame, planets: pd.DataFrame,
                            bls_sde: pd.Series, ev, aggregate, bls_source: str = "BLS scores") -> TransitEvaluation:
    """Segment, star and BLS metrics of scored validation and test segments.

    Parameters
    ----------
    val, test : pandas.DataFrame
        Segments with ``score`` (model probability), ``label``, ``snr``, ``has_eclipse``,
        ``object_id``, ``target_id``, ``mission``.
    objects, planets : pandas.DataFrame
        The ingest tables (``label`` per light curve) and the planet ephemerides
        (``snr_total``, ``period``, ``depth``).
    bls_sde : pandas.Series
        BLS signal detection efficiency per ``object_id`` (the transits_bls stage).
    ev, aggregate : config nodes
        ``transits.evaluate`` (target_fpr, snr_threshold, snr_bins, n_bins_period,
        n_bins_depth) and ``transits.aggregate`` (method, k).
    bls_source : str
        Where ``bls_sde`` came from, for error messages.
    """
    target_fpr, snr_cut = float(ev.target_fpr), float(ev.snr_threshold)
    # Segment level: threshold at the target FPR on validation negatives.
    seg_thr = threshold_at_fpr(val.loc[val["label"] == 0, "score"], target_fpr)
    seg_test = detection_summary(test["label"], test["score"], seg_thr)
    pos = test[test["label"] == 1]
    detected = pos["score"].to_numpy() > seg_thr
    hi = pos["snr"].to_numpy() >= snr_cut
    seg_test["recall_snr_ge_threshold"] = float(detected[hi].mean()) if hi.any() else float("nan")
    seg_test["n_positive_snr_ge_threshold"] = int(hi.sum())
    neg = test[test["label"] == 0]
    seg_test["fpr_eclipse_segments"] = float((neg.loc[neg["has_eclipse"], "score"] > seg_thr).mean()) \
        if neg["has_eclipse"].any() else float("nan")
    seg_test["fpr_non_eclipse_segments"] = float((neg.loc[~neg["has_eclipse"], "score"] > seg_thr).mean()) \
        if (~neg["has_eclipse"]).any() else float("nan")

    # The same, with the threshold set on validation negatives that hold no binary eclipse:
    # the detection limit against noise alone, separate from rejecting eclipsing binaries
    # (which a single segment often cannot do: diluted, U-shaped, faint secondary).
    val_neg_clean = val.loc[(val["label"] == 0) & ~val["has_eclipse"], "score"]
    if len(val_neg_clean):
        thr_clean = threshold_at_fpr(val_neg_clean, target_fpr)
        seg_test["no_eclipse_negatives"] = {
            "threshold": thr_clean,
            "recall_snr_ge_threshold": float((pos.loc[hi, "score"] > thr_clean).mean()) if hi.any() else None,
            "recall": float((pos["score"] > thr_clean).mean()) if len(pos) else None,
            "fpr_non_eclipse_segments": float((neg.loc[~neg["has_eclipse"], "score"] > thr_clean).mean())
            if (~neg["has_eclipse"]).any() else None,
            "fpr_eclipse_segments": float((neg.loc[neg["has_eclipse"], "score"] > thr_clean).mean())
            if neg["has_eclipse"].any() else None,
        }

    # Injection-recovery: positives of the test split by injected SNR, period and depth,
    # at the segment threshold (and at the one set on non-eclipse negatives).
    props = pos.merge(planets[["object_id", "period", "depth"]], on="object_id", how="left")

    def _curves(found: np.ndarray) -> dict[str, pd.DataFrame]:
        return {
            "snr": recall_by_bins(pos["snr"], found, list(ev.snr_bins)),
            "period": recall_by_bins(props["period"], found, log_edges(props["period"], int(ev.n_bins_period))),
            "depth": recall_by_bins(props["depth"] * 1e6, found, log_edges(props["depth"] * 1e6, int(ev.n_bins_depth))),
        }

    curves = {"threshold on all negatives": _curves(detected)}
    if "no_eclipse_negatives" in seg_test:
        curves["threshold on non-eclipse negatives"] = _curves(
            pos["score"].to_numpy() > seg_test["no_eclipse_negatives"]["threshold"])

    # Star level (per light curve) and BLS on the same light curves.
    stars_val = _star_table(val, objects, planets, aggregate)
    stars_test = _star_table(test, objects, planets, aggregate)
    sde = bls_sde
    for table in (stars_val, stars_test):
        table["bls_sde"] = table["object_id"].map(sde)
        if table["bls_sde"].isna().any():
            raise ValueError(f"{bls_source}: no BLS result for "
                             f"{table.loc[table['bls_sde'].isna(), 'object_id'].iloc[0]!r}; rerun transits_bls")
    thresholds = {"segment": seg_thr,
                  "star": threshold_at_fpr(stars_val.loc[stars_val["label"] == 0, "star_score"], target_fpr),
                  "bls": threshold_at_fpr(stars_val.loc[stars_val["label"] == 0, "bls_sde"], target_fpr)}
    star_cnn = detection_summary(stars_test["label"], stars_test["star_score"], thresholds["star"])
    star_bls = detection_summary(stars_test["label"], stars_test["bls_sde"], thresholds["bls"])
    # The same scores restricted to planets a search could find (total SNR >= snr_threshold)
    # against every negative: separates "missed a detectable planet" from "undetectable".
    detectable = (stars_test["label"] == 0) | (stars_test["snr_total"] >= snr_cut)
    for summary, col, key in ((star_cnn, "star_score", "star"), (star_bls, "bls_sde", "bls")):
        p = stars_test[stars_test["label"] == 1]
        hi_star = p["snr_total"] >= snr_cut
        summary["recall_snr_ge_threshold"] = float((p.loc[hi_star, col] > thresholds[key]).mean()) \
            if hi_star.any() else float("nan")
        sub = detection_summary(stars_test.loc[detectable, "label"], stars_test.loc[detectable, col], thresholds[key])
        summary["roc_auc_snr_ge_threshold"] = sub["roc_auc"]
        summary["pr_auc_snr_ge_threshold"] = sub["pr_auc"]
        summary["n_positive_snr_ge_threshold"] = int(hi_star.sum())
    # Star level with thresholds set on validation negatives that are not eclipsing binaries.
    kind = objects.set_index("object_id")["label"]
    clean_val = stars_val[(stars_val["label"] == 0) & (stars_val["object_id"].map(kind) != "eclipsing_binary")]
    is_eb_test = stars_test["object_id"].map(kind) == "eclipsing_binary"
    for summary, col in ((star_cnn, "star_score"), (star_bls, "bls_sde")):
        if len(clean_val):
            thr = threshold_at_fpr(clean_val[col], target_fpr)
            p = stars_test[stars_test["label"] == 1]
            det = stars_test[col] > thr
            summary["no_eb_negatives"] = {
                "threshold": thr, "recall": float((p[col] > thr).mean()) if len(p) else None,
                "recall_snr_ge_threshold": float((p.loc[p["snr_total"] >= snr_cut, col] > thr).mean())
                if (p["snr_total"] >= snr_cut).any() else None,
                "fpr_non_eb": float(det[(stars_test["label"] == 0) & ~is_eb_test].mean())
                if ((stars_test["label"] == 0) & ~is_eb_test).any() else None,
                "fpr_eb": float(det[is_eb_test].mean()) if is_eb_test.any() else None}
    comparison = pd.DataFrame([
        {"method": name, "negatives_for_threshold": "all", **{k: summary[k] for k in COMPARISON_COLUMNS}}
        for name, summary in (("cnn_star_score", star_cnn), ("bls_sde", star_bls))]
        + [{"method": name, "negatives_for_threshold": "not_eclipsing_binary", "roc_auc": summary["roc_auc"],
            "pr_auc": summary["pr_auc"], "threshold": summary["no_eb_negatives"]["threshold"],
            "recall": summary["no_eb_negatives"]["recall"], "fpr": summary["no_eb_negatives"]["fpr_non_eb"],
            "recall_snr_ge_threshold": summary["no_eb_negatives"]["recall_snr_ge_threshold"],
            "roc_auc_snr_ge_threshold": summary["roc_auc_snr_ge_threshold"],
            "fpr_eclipsing_binaries": summary["no_eb_negatives"]["fpr_eb"]}
           for name, summary in (("cnn_star_score", star_cnn), ("bls_sde", star_bls))
           if "no_eb_negatives" in summary])

    metrics = {
        "target_fpr": target_fpr, "snr_threshold": snr_cut,
        "aggregate": {"method": str(aggregate.method), "k": int(aggregate.k)},
        "segment": seg_test,
        "star": star_cnn,
        "bls": star_bls,
        "cnn_recall_minus_bls_recall": star_cnn["recall"] - star_bls["recall"],
        "targets": {
            "segment_recall_snr_ge_7.1_at_1pct_fpr>=0.90": bool(seg_test["recall_snr_ge_threshold"] >= 0.9),
            "star_roc_auc>=0.98": bool(star_cnn["roc_auc"] >= 0.98),
            "star_recall>=bls_recall": bool(star_cnn["recall"] >= star_bls["recall"]),
            # the same comparison with thresholds on non-EB negatives (where recall is not ~0 for both)
            "star_recall>=bls_recall_non_eb_threshold": bool(
                star_cnn.get("no_eb_negatives", {}).get("recall", float("nan"))
                >= star_bls.get("no_eb_negatives", {}).get("recall", float("nan"))),
        },
        "n_val_segments": int(len(val)), "n_test_segments": int(len(test)),
        "n_test_lightcurves": int(len(stars_test)), "n_test_stars": int(stars_test["target_id"].nunique()),
    }
    comparison_thresholds = dict(thresholds)
    for key, summary in (("star_no_eb", star_cnn), ("bls_no_eb", star_bls)):
        if "no_eb_negatives" in summary:
            comparison_thresholds[key] = summary["no_eb_negatives"]["threshold"]
    return TransitEvaluation(metrics, stars_test, comparison, curves, comparison_thresholds)
