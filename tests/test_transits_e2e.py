"""End to end: the transits stages of the real DVC pipeline on `transits=tiny` (via
`experiment=tiny`), in a temporary copy of the repository (no real data beside it)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REAL_DATA, build_tiny_repo, run_in

pytestmark = pytest.mark.e2e

TRANSITS_STAGES = ("evaluate@transits", "transits_real", "transits_report")


@pytest.fixture(scope="module")
def transits_repo(tmp_path_factory) -> Path:
    return build_tiny_repo(tmp_path_factory.mktemp("transits") / "repo", targets=TRANSITS_STAGES)


def test_transits_repro_writes_report(transits_repo):
    reports = transits_repo / "reports/transits"
    metrics = json.loads((reports / "segment/metrics.json").read_text())   # evaluate@transits: the segment CNN
    for level in ("segment", "star", "bls"):
        assert {"roc_auc", "pr_auc", "recall", "fpr", "threshold"} <= set(metrics[level])
    assert metrics["target_fpr"] == 0.01 and metrics["snr_threshold"] == 7.1
    assert "recall_snr_ge_threshold" in metrics["segment"]
    tables = reports / "evaluation"
    stars = pd.read_csv(tables / "star_scores.csv")
    assert list(stars.columns) == ["target_id", "mission", "num_segments", "star_score", "label"]
    assert stars["star_score"].between(0, 1).all() and set(stars["label"]) <= {0, 1}
    comparison = pd.read_csv(tables / "comparison.csv")
    assert comparison["method"].tolist()[:2] == ["cnn_star_score", "bls_sde"]
    assert set(comparison["negatives_for_threshold"]) <= {"all", "not_eclipsing_binary"}
    assert (tables / "injection_recovery.csv").exists()
    for fig in ("figures/roc_pr.png", "figures/injection_recovery.png", "figures/cnn_vs_bls.png",
                "real/top_segments.png"):
        assert (reports / fig).stat().st_size > 5_000, fig
    # No real-data folder beside the temporary repo: documented skip, and the built-in
    # parameter distribution replaced the absent catalogue.
    real = json.loads((reports / "real/real_report.json").read_text())
    assert real["skipped"] is True and "absent" in real["note"]
    ingest = json.loads((transits_repo / "data/raw/transits/ingest_report.json").read_text())
    assert ingest["hosts"]["source"] == "fallback"
    assert (transits_repo / "models/transits/history.csv").exists()
    # The search + vetting path: candidates of every star, the vetter (a two-network ensemble in
    # the tiny profile), the star-level comparison with the search alone and the segment CNN.
    vetting = json.loads((reports / "vetting/metrics.json").read_text())
    assert set(vetting["methods"]) == {"vet", "bls_sde", "bls_snr", "segment"}
    for entry in vetting["methods"].values():
        assert {"roc_auc", "recall_snr_ge_threshold", "eb_false_positive_rate", "threshold"} <= set(entry)
    assert vetting["selected_by_validation"] in ("vet", "segment")
    assert pd.read_csv(reports / "vetting/comparison.csv")["method"].tolist() == ["vet", "bls_sde", "bls_snr",
                                                                                   "segment"]
    assert (reports / "vetting/figures/vetting_roc.png").stat().st_size > 5_000
    # The headline file (transits_report): the keys, from the three reports.
    headline = json.loads((reports / "metrics.json").read_text())
    assert headline["star"]["method"] == vetting["selected_by_validation"]
    assert headline["star"]["roc_auc"] == vetting["methods"][headline["star"]["method"]]["roc_auc"]
    assert headline["vetting"]["recall_snr_ge_7p1_at_1pct_fpr"] == vetting["methods"]["vet"]["recall_snr_ge_threshold"]
    assert headline["bls"]["recall_snr_ge_7p1_at_1pct_fpr"] == vetting["methods"]["bls_sde"]["recall_snr_ge_threshold"]
    assert headline["eb_false_positive_rate"] == headline["star"]["eb_false_positive_rate"]
    assert headline["real"] == {"skipped": True, "note": real["note"]}
    candidates = pd.read_parquet(transits_repo / "data/candidates/transits/candidates.parquet")
    assert (candidates.groupby("target_id")["split"].nunique() == 1).all()
    assert set(candidates["truth"]) <= {"planet", "eclipsing_binary", "false_alarm"}
    assert (transits_repo / "models/transits/vetter/model.ckpt").exists()


def test_transits_split_keeps_stars_whole(transits_repo):
    manifest = pd.read_parquet(transits_repo / "data/splits/transits/manifest.parquet")
    objects = pd.read_parquet(transits_repo / "data/raw/transits/objects.parquet")
    merged = manifest.merge(objects[["object_id", "target_id"]], on="object_id")
    assert (merged.groupby("target_id")["split"].nunique() == 1).all()


def test_transits_second_repro_is_up_to_date(transits_repo):
    out = run_in(["dvc", "repro", *TRANSITS_STAGES], transits_repo)
    assert "up to date" in out.lower()


@pytest.mark.skipif(not REAL_DATA.exists(), reason="real data folder absent")
def test_transits_real_planets_are_scored(transits_repo):
    """The trained tiny model scores the real Kepler/TESS/K2 light curves (same code path)."""
    run_in([sys.executable, "-m", "deeprubin.stages.transits_real", "--config-dir", ".", "--config-name", "params",
            "hydra.run.dir=.", "hydra.output_subdir=null", f"real.root={REAL_DATA}",  # short keys of the task: tasks.transits.real.root
            f"real.catalog={REAL_DATA / 'catalogs/kepler_confirmed_planets.csv'}"], transits_repo)
    real = json.loads((transits_repo / "reports/transits/real/real_report.json").read_text())
    assert real["skipped"] is False
    for name in ("HAT-P-7", "WASP-126", "K2-3"):
        entry = real["targets"][name]
        if entry.get("skipped"):  # tiny segments fit every file; a skip here is a regression
            pytest.fail(f"{name}: {entry['reason']}")
        assert entry["n_transit_segments"] >= 1 and entry["best_transit_rank"] >= 1
        assert entry["n_control_segments"] >= 1
        vet = entry["vetting"]
        assert vet["candidates"] and vet["candidates"][0]["rank"] == 1
        assert 0 <= vet["candidates"][0]["vetting_score"] <= 1 and isinstance(vet["found"], bool)
