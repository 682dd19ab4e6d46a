"""Calibrate and predict for the transits task (issue 18: the generic stages serve every task).

A tiny transits model is trained in-process once per module (the simulator's tiny survey, two
epochs); ``calibrate@transits`` fits the segment calibrators on its validation split and the
predict entry point scores the tiny K2-like files of :mod:`test_transits_sources` through the
``files`` source with it, one row per light curve.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import compose_under
from test_transits_sources import k2_folder

from deeprubin.core import io, numerics
from deeprubin.core.calibration import CalibrationMismatchError, load_calibrator
from deeprubin.core.config import ConfigError
from deeprubin.tasks.transits.module import SEGMENT_CLASSES


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(cfg, root)``: the tiny transits chain run through calibrate under ``root``."""
    from deeprubin.stages.calibrate import run_calibrate
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split
    from deeprubin.stages.train import run_train

    root = tmp_path_factory.mktemp("transits_tiny")
    cfg = compose_under(root, ["experiment=tiny"], task="transits")
    numerics.apply_threads()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for stage in (run_ingest, run_preprocess, run_split, run_train):
            stage(cfg)
        metrics = run_calibrate(cfg)
    finally:
        os.chdir(cwd)
    return cfg, root, metrics


def predict_cfg(trained, tmp_path, *extra):
    """The trained task's config with the files source on the tiny K2 CSVs and an output file."""
    cfg, root, _ = trained
    folder = k2_folder(tmp_path)
    return compose_under(root, ["experiment=tiny", "tasks/transits/source=files_k2", f"source.path={folder}",
                                "source.progress_bar=false", f"ephemerides.path={tmp_path / 'eph.csv'}",
                                f"predict.output={tmp_path / 'out' / 'k2.csv'}", *extra], task="transits")


def test_calibrate_fits_segment_calibrators_bound_to_the_checkpoint(trained):
    cfg, _, metrics = trained
    checkpoint = Path(cfg.paths.models) / "model.ckpt"
    calibrator = load_calibrator(checkpoint.parent / "calibration.json", classes=SEGMENT_CLASSES,
                                 checkpoint=checkpoint)
    assert calibrator.method == metrics["default_method"] and "selection" in metrics   # method: select
    for split in ("val", "test"):
        assert set(metrics[split]) == {"uncalibrated", "temperature", "isotonic"}
        for summary in metrics[split].values():
            assert 0 <= summary["ece_width"] <= 1 and summary["nll"] > 0
    figures = Path(cfg.paths.reports) / "calibration" / "figures"
    assert {p.name for p in figures.glob("*.png")} == {"reliability_width.png", "reliability_mass.png",
                                                      "reliability_per_class.png"}


def test_predict_scores_every_light_curve_of_a_registry_source(trained, tmp_path):
    from deeprubin.stages.predict import run_predict

    summary = run_predict(predict_cfg(trained, tmp_path))
    assert summary["n_scored"] == 2 and summary["n_skipped"] == 0 and "temperature" in summary["calibration"]
    table = pd.read_csv(tmp_path / "out" / "k2.csv")
    assert table["object_id"].tolist() == ["EPIC1", "EPIC2"]
    known = table.set_index("object_id")["n_known_transit_segments"]
    assert known["EPIC1"] > 0 and known["EPIC2"] == 0      # the ephemeris is EPIC1's only
    assert table["max_transit_probability"].between(0, 1).all() and table["star_score"].between(0, 1).all()
    assert (table["best_t_end"] > table["best_t_start"]).all() and table["mission"].eq("K2").all()


def test_predict_star_scores_match_the_evaluate_aggregation(trained, tmp_path):
    """The star score of predict is the evaluate step's: evaluate.aggregate of the raw segment scores."""
    from deeprubin.core.checkpoint import load_checkpoint
    from deeprubin.stages.predict import run_predict
    from deeprubin.tasks.transits.aggregate import aggregate_scores
    from deeprubin.tasks.transits.module import predict_scores

    cfg = predict_cfg(trained, tmp_path, f"predict.output={tmp_path / 'k2.parquet'}", "predict.calibration=null")
    summary = run_predict(cfg)
    assert summary["calibration"] == "none (raw sigmoid)"
    table = io.read_parquet(tmp_path / "k2.parquet").set_index("object_id")
    # the same light curves through the ingest and preprocess steps, scored by hand
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess

    cfg.paths.raw, cfg.paths.processed = str(tmp_path / "raw"), str(tmp_path / "processed")
    run_ingest(cfg)
    run_preprocess(cfg)
    segments = io.read_parquet(tmp_path / "processed/segments.parquet")
    model, _ = load_checkpoint(cfg.predict.checkpoint)
    segments["score"] = predict_scores(model, io.read_npz(tmp_path / "processed/segments.npz")["x"])
    for object_id, part in segments.groupby("object_id"):
        expected = aggregate_scores(part["score"].to_numpy(), "topk_mean", 3)
        assert table.loc[object_id, "star_score"] == pytest.approx(expected, abs=1e-12)
        # uncalibrated: the highest probability is the highest raw segment score
        assert table.loc[object_id, "max_transit_probability"] == pytest.approx(part["score"].max(), abs=1e-6)


def test_predict_lists_light_curves_it_cannot_segment(trained, tmp_path):
    from deeprubin.stages.predict import run_predict

    cfg = predict_cfg(trained, tmp_path)
    short = tmp_path / "k2" / "EPIC3.csv"   # one day: shorter than one segment
    t = np.arange(2000.0, 2001.0, 29.4244 / 1440.0)
    f = 1.0 + 2e-4 * np.random.default_rng(3).standard_normal(t.size)
    short.write_text("".join(f"{a},{b}\n" for a, b in zip(t, f)))
    summary = run_predict(cfg)
    assert summary["n_scored"] == 2 and summary["n_skipped"] == 1
    table = pd.read_csv(tmp_path / "out" / "k2.csv")
    assert table["object_id"].tolist() == ["EPIC1", "EPIC2", "EPIC3"]   # the skipped one last
    row = table.iloc[2]
    assert np.isnan(row["star_score"]) and row["num_segments"] == 0 and isinstance(row["skipped"], str)
    assert table.iloc[:2]["skipped"].isna().all()


@pytest.mark.parametrize("override, error, match", [
    ("predict.output=null", ConfigError, r"config key 'predict\.output' is missing"),
    ("predict.output=out.txt", ConfigError, r"'predict\.output' must end in one of \['\.csv', '\.parquet'\]"),
])
def test_predict_output_errors_are_named_before_any_work(trained, tmp_path, override, error, match):
    from deeprubin.stages.predict import run_predict

    with pytest.raises(error, match=match):
        run_predict(predict_cfg(trained, tmp_path, override))
    assert not (tmp_path / "out").exists()


def test_predict_refuses_a_calibration_of_another_checkpoint(trained, tmp_path):
    from deeprubin.stages.predict import run_predict

    cfg = predict_cfg(trained, tmp_path)
    foreign = io.read_json(Path(cfg.predict.checkpoint).parent / "calibration.json")
    foreign["checkpoint"]["sha256"] = "0" * 64          # fitted for another model
    io.write_json(foreign, tmp_path / "foreign.json")
    cfg.predict.calibration = str(tmp_path / "foreign.json")
    with pytest.raises(CalibrationMismatchError, match=r"foreign\.json: fitted for another checkpoint"):
        run_predict(cfg)
    assert not (tmp_path / "out" / "k2.csv").exists()


def test_predict_refuses_a_checkpoint_without_the_transits_config(trained, tmp_path):
    from deeprubin.tasks.transits.steps.predict import trained_config

    with pytest.raises(ConfigError, match=r"m\.ckpt: field 'config' is missing"):
        trained_config({}, tmp_path / "m.ckpt")
    with pytest.raises(ConfigError, match=r"field 'config\.task\.cadence_minutes' is missing; not a transits checkpoint"):
        trained_config({"config": {"preprocess": {"stride": 1}, "task": {"name": "transits"}}}, tmp_path / "m.ckpt")
