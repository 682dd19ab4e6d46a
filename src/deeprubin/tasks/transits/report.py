"""The transits task's headline metrics: one file over its three reports.

``reports/transits/metrics.json`` gathers what a reader of the task asks first, from the
stages that measured it (nothing is recomputed here):

- ``star``: star-level scores of the default method, the one chosen on validation
  (``selected_by_validation``: the search + CNN vetting or the segment CNN), with intervals;
- ``vetting``: the search + CNN vetting per star (``transits_vet``);
- ``bls``: the search alone, its top candidate's SDE as the star score, at the same
  validation false-positive rate;
- ``segment``: the segment CNN per star (``transits_vet``) and per segment (``evaluate@transits``);
- ``eb_false_positive_rate``: eclipsing binaries flagged by the default method;
- ``real``: per real planet host, the top candidate's period, the known planet's rank and
  its vetting score (``transits_real``).
"""
from __future__ import annotations

from typing import Any, Mapping

#: Keys of a vetting method's entry copied to the headline file (each with its ``_ci95`` when present).
STAR_KEYS = ("roc_auc", "roc_auc_snr_ge_threshold", "recall", "recall_snr_ge_threshold", "false_positive_rate",
             "eb_false_positive_rate", "non_eb_false_positive_rate", "threshold", "val_roc_auc")

#: The vetting report's method key behind each headline section.
SECTIONS = {"vetting": "vet", "bls": "bls_sde", "segment": "segment"}


def _method(entry: Mapping[str, Any], snr_label: str) -> dict:
    """One method's star-level entry, the SNR-cut recall also under the issue's name."""
    out = {"name": entry["name"]}
    for key in STAR_KEYS:
        if key in entry:
            out[key] = entry[key]
        if f"{key}_ci95" in entry:
            out[f"{key}_ci95"] = entry[f"{key}_ci95"]
    out[f"recall_{snr_label}_at_1pct_fpr"] = entry.get("recall_snr_ge_threshold")
    return out


def _real(real: Mapping[str, Any]) -> dict:
    """Per real target: the search's top period, the known planet's rank, its vetting score, pass/fail."""
    if real.get("skipped"):
        return {"skipped": True, "note": real.get("note")}
    out: dict = {}
    for name, entry in real.get("targets", {}).items():
        if entry.get("skipped") or "vetting" not in entry:
            out[name] = {"skipped": True, "reason": entry.get("reason")}
            continue
        v = entry["vetting"]
        out[name] = {"mission": entry.get("mission"), "known_period": v["known_period"],
                     "found_period": v["top_candidate_period"], "period_error": v["top_candidate_period_error"],
                     "rank": v["known_planet_rank"], "vetting_score": v["vetting_score"],
                     "passes_vetting": v["passes_vetting"], "found_top_and_passing": v["found"]}
    return out


def task_metrics(segment: Mapping[str, Any], vetting: Mapping[str, Any], real: Mapping[str, Any]) -> dict:
    """``reports/transits/metrics.json`` from evaluate@transits' (segment CNN), transits_vet's and
    transits_real's reports.

    Raises
    ------
    KeyError
        Naming the report and the key when one lacks what the headline needs.
    """
    try:
        methods = vetting["methods"]
        chosen = vetting["selected_by_validation"]
        target_fpr, snr_cut = float(vetting["target_fpr"]), float(vetting["snr_threshold"])
        missing = [m for m in SECTIONS.values() if m not in methods]
        if missing:
            raise KeyError(f"methods.{missing[0]}")
    except KeyError as err:
        raise KeyError(f"vetting metrics: no {err.args[0]!r}; rerun transits_vet") from None
    snr_label = f"snr_ge_{snr_cut:g}".replace(".", "p")
    sections = {name: _method(methods[key], snr_label) for name, key in SECTIONS.items()}
    sections["segment"]["segments"] = {k: segment.get("segment", {}).get(k) for k in
                                       ("roc_auc", "pr_auc", "recall", "recall_snr_ge_threshold", "fpr")}
    star = {"method": chosen, **_method(methods[chosen], snr_label)}
    return {"selected_by_validation": chosen, "target_fpr": target_fpr, "snr_threshold": snr_cut,
            "n_stars": vetting.get("n_stars"), "star": star, **sections,
            "eb_false_positive_rate": star.get("eb_false_positive_rate"),
            "real": _real(real)}
