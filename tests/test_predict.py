"""The predict path (deeprubin.tasks.transients.evaluation.inference, stages.predict) and the real_sky stage,
on a tiny model trained once per module."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REAL_DATA, compose_under, make_tables
from omegaconf import OmegaConf

from deeprubin.core import io
from deeprubin.core.calibration import CalibrationMismatchError, load_calibrator
from deeprubin.core.config import ConfigError, compose_task
from deeprubin.core.schema import SchemaError
from deeprubin.sources import SOURCES
from deeprubin.tasks.transients.evaluation.inference import (CheckpointMismatchError, predict_source,
                                                             predict_source_detailed)
from deeprubin.tasks.transients.evaluation.real_sky import data_fingerprint, score_real_sample
from deeprubin.tasks.transients.preprocess.inputs import gp_input


def tiny_cfg(root: Path, *overrides: str):
    return compose_under(root, ["experiment=tiny", "source.n_objects=60", *overrides])


@pytest.fixture(scope="module")
def trained(tiny_pipeline):
    """(cfg, checkpoint path) of the shared tiny pipeline, run up to evaluate (n_grid 20, not the default 50)."""
    cfg, _ = tiny_pipeline
    return cfg, Path(cfg.paths.models) / "model.ckpt"


def test_predict_matches_the_evaluate_path(trained):
    """Same objects, same (calibrated) probabilities as the evaluate stage (which reads the
    pipeline's GP grid)."""
    cfg, ckpt = trained
    table = predict_source(ckpt, cfg.source, calibration=Path(cfg.paths.models) / "calibration.json")
    ingested = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    assert table["object_id"].tolist() == ingested["object_id"].tolist()
    assert list(table.columns[:3]) == ["object_id", "label", "predicted"]
    classes = list(cfg.task.classes)
    assert [c for c in table.columns if c.startswith("prob_")] == [f"prob_{c}" for c in classes]
    evaluated = pd.read_csv(Path(cfg.paths.reports) / "evaluation" / "predictions.csv")
    joined = evaluated.merge(table, on="object_id", suffixes=("_eval", ""))
    assert len(joined) == len(evaluated) > 0
    assert (joined["label_eval"] == joined["label"]).all()
    assert (joined["predicted_eval"] == joined["predicted"]).all()
    for c in classes:   # predictions.csv keeps 6 decimals
        np.testing.assert_allclose(joined[f"prob_{c}_eval"], joined[f"prob_{c}"], atol=2e-6)
    np.testing.assert_allclose(table[[f"prob_{c}" for c in classes]].sum(axis=1), 1.0, rtol=1e-6)


def test_predict_applies_the_saved_calibrator(trained):
    """With the calibrate stage's file, probabilities are that calibrator applied to the softmax."""
    from deeprubin.core.calibration import apply_calibration, load_calibrator

    cfg, ckpt = trained
    calibration = Path(cfg.paths.models) / "calibration.json"
    raw = predict_source(ckpt, cfg.source)
    calibrated = predict_source(ckpt, cfg.source, calibration=calibration)
    columns = [f"prob_{c}" for c in cfg.task.classes]
    expected = apply_calibration(raw[columns].to_numpy(), load_calibrator(calibration, classes=cfg.task.classes))
    np.testing.assert_allclose(calibrated[columns].to_numpy(), expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(FileNotFoundError):
        predict_source(ckpt, cfg.source, calibration=calibration.with_name("missing.json"))


def test_predict_uses_the_checkpoints_preprocessing(trained):
    """The GP grid follows the checkpoint's config (tiny: 20 steps), not the current conf/ (50)."""
    cfg, ckpt = trained
    assert compose_task("transients").preprocess.n_grid != 20
    result = predict_source_detailed(ckpt, compose_task("transients", ["source.n_objects=12"]).source)
    assert result.grid.mean.shape[1:] == (2, 20)
    assert result.bands == ["g", "r"] and len(result.predictions) == len(result.objects) >= 12


def test_run_predict_writes_csv_and_parquet(trained, tmp_path):
    from deeprubin.stages.predict import run_predict

    cfg, ckpt = trained
    run = cfg.copy()
    run.source.n_objects = 10
    run.predict.checkpoint = str(ckpt)
    for name in ("p.csv", "p.parquet"):
        run.predict.output = str(tmp_path / name)
        summary = run_predict(run)
        assert summary["n_objects"] >= 10 and sum(summary["predicted"].values()) == summary["n_objects"]
    csv, parquet = pd.read_csv(tmp_path / "p.csv"), pd.read_parquet(tmp_path / "p.parquet")
    assert csv["object_id"].tolist() == parquet["object_id"].tolist()
    np.testing.assert_allclose(csv.filter(like="prob_"), parquet.filter(like="prob_"), atol=1e-6)
    run.predict.output = None
    with pytest.raises(ConfigError, match=r"'predict\.output' is missing"):
        run_predict(run)
    run.predict.output = str(tmp_path / "p.txt")
    with pytest.raises(ConfigError, match=r"'predict\.output' must end in one of"):
        run_predict(run)


def test_predict_checkpoint_errors(trained, tmp_path):
    cfg, ckpt = trained
    with pytest.raises(FileNotFoundError, match=r"nowhere\.ckpt: no such checkpoint"):
        predict_source(tmp_path / "nowhere.ckpt", cfg.source)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(ckpt.read_bytes()[:2000])           # truncated file
    with pytest.raises(ValueError, match=r"corrupt\.ckpt: cannot read the checkpoint"):
        predict_source(corrupt, cfg.source)
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.ckpt: cannot read the checkpoint"):
        predict_source(tmp_path / "text.ckpt", cfg.source)
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(ValueError, match=r"list\.ckpt: not a DeepRubin checkpoint"):
        predict_source(tmp_path / "list.ckpt", cfg.source)
    payload = torch.load(ckpt, weights_only=True)
    payload["config"] = {"seed": 1}
    torch.save(payload, tmp_path / "noconfig.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"noconfig\.ckpt: checkpoint has no saved training config"):
        predict_source(tmp_path / "noconfig.ckpt", cfg.source)
    payload = torch.load(ckpt, weights_only=True)
    payload["bands"] = ["r", "g"]
    torch.save(payload, tmp_path / "bands.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"bands\.ckpt: saved config bands \['g', 'r'\] != checkpoint"):
        predict_source(tmp_path / "bands.ckpt", cfg.source)
    with pytest.raises(ConfigError, match=r"'source\.name' is missing"):
        predict_source(ckpt, {"n_objects": 3})


def test_predict_source_bands_not_in_the_checkpoint(trained, tmp_path, monkeypatch):
    """A band the model was not trained on: a clear error from the checkpoint check (any loader) or,
    for source=files, from the reader naming the file and column."""
    cfg, ckpt = trained
    lc, objects = make_tables(n_objects=3, bands=("g", "i"), labels=("SNIa",))
    monkeypatch.setitem(SOURCES, "custom", lambda _cfg: (lc, objects))
    with pytest.raises(CheckpointMismatchError, match=r"source 'custom': column 'band' has band\(s\) \['i'\] "
                                                      r"\(first in object 'obj000'\).*bands are \['g', 'r'\]"):
        predict_source(ckpt, {"name": "custom"})
    folder = tmp_path / "lc"
    folder.mkdir()
    (folder / "ZTF1.csv").write_text("time,mag,magerr,band\n1,19,0.1,g\n2,18,0.1,i\n3,18.5,0.1,g\n")
    source = {"name": "files", "layout": "per_object_csv", "path": str(folder), "label": "SNIa",
              "columns": {"time": "time", "band": "band", "mag": "mag", "mag_err": "magerr"},
              "progress_bar": False, "validation": {"on_invalid": "drop", "min_points": 3, "min_bands": 1}}
    with pytest.raises(SchemaError, match=r"ZTF1\.csv: column 'band', object 'ZTF1', line 3: band 'i' is not a "
                                          r"task band \['g', 'r'\]"):
        predict_source(ckpt, source)


def test_label_classes_keep_labels_outside_the_model(trained, tmp_path, monkeypatch):
    cfg, ckpt = trained
    lc, objects = make_tables(n_objects=4, labels=("SNIa", "TDE"))
    monkeypatch.setitem(SOURCES, "custom", lambda _cfg: (lc, objects))
    with pytest.raises(SchemaError, match="TDE"):
        predict_source(ckpt, {"name": "custom"})
    table = predict_source(ckpt, {"name": "custom"}, label_classes=["TDE"])
    assert table["label"].tolist() == ["SNIa", "TDE", "SNIa", "TDE"]
    assert set(table["predicted"]) <= set(cfg.task.classes)


# --------------------------------------------------------------------------- detections_only

def test_gp_input_detections_only(base_cfg):
    lc, _ = make_tables(n_objects=2)
    lc["detected"] = lc["flux"] / lc["flux_err"] >= 5
    lc.loc[lc["object_id"] == "obj001", "detected"] = False
    cfg = base_cfg.copy()
    cfg.preprocess.detections_only = False
    assert gp_input(lc, cfg) is lc                                  # every row
    cfg.preprocess.detections_only = True
    kept = gp_input(lc, cfg)
    a = kept[kept["object_id"] == "obj000"]
    assert a["detected"].all() and len(a) == int(lc.loc[lc["object_id"] == "obj000", "detected"].sum())
    assert len(kept[kept["object_id"] == "obj001"]) == 1           # no detection: one point keeps it
    assert list(pd.unique(kept["object_id"])) == ["obj000", "obj001"]
    lc.loc[lc["object_id"] == "obj001", "detected"] = True          # no column: detected = flux/err >= 5
    derived = gp_input(lc.drop(columns="detected"), cfg)
    assert (derived["flux"] / derived["flux_err"] >= 5).all() and len(derived) < len(lc)
    pd.testing.assert_frame_equal(derived[derived["object_id"] == "obj000"].reset_index(drop=True),
                                  a.drop(columns="detected").reset_index(drop=True))


# --------------------------------------------------------------------------- real_sky

def test_score_real_sample_maps_labels_and_reports_unmapped():
    predictions = pd.DataFrame({"label": ["Ia", "Ia", "Ia", "II", "SLSN", "SLSN"],
                                "predicted": ["SNIa", "SNIa", "SNII", "SNIa", "SNII", "SNIa"]})
    score = score_real_sample(predictions, ["SNIa", "SNII"], {"Ia": "SNIa", "II": "SNII", "SLSN": "SLSN"})
    assert score["label_map_used"] == {"II": "SNII", "Ia": "SNIa"} and score["unmapped_labels"] == ["SLSN"]
    assert score["recall"] == {"II": 0.0, "Ia": pytest.approx(2 / 3)}
    assert score["accuracy"] == pytest.approx(2 / 4)
    # precision of a model class counts every object predicted as it, unmapped labels as wrong
    assert score["precision"] == {"SNII": 0.0, "SNIa": pytest.approx(2 / 4)}
    nothing = score_real_sample(predictions.assign(predicted="SNIa"), ["SNIa", "SNII"], {"Ia": "SNIa", "II": "SNII"})
    assert nothing["precision"] == {"SNII": None, "SNIa": pytest.approx(3 / 6)}
    assert score["confusion"] == {"rows": ["II", "Ia", "SLSN"], "columns": ["SNIa", "SNII"],
                                  "counts": [[1, 0], [2, 1], [1, 1]]}
    assert score["predicted_fractions"] == {"SNIa": pytest.approx(4 / 6), "SNII": pytest.approx(2 / 6)}
    assert score["n_objects_per_label"] == {"II": 1, "Ia": 3, "SLSN": 2}


def test_data_fingerprint_changes_with_content(tmp_path):
    (tmp_path / "a.csv").write_text("1")
    first = data_fingerprint([tmp_path])
    assert first[1] == 1 and data_fingerprint([tmp_path]) == first
    (tmp_path / "a.csv").write_text("2")
    assert data_fingerprint([tmp_path])[0] != first[0]


def real_sky_cfg(cfg, alerce: Path, bts: Path):
    run = cfg.copy()
    run.real_sky.datasets.alerce_30sne.source.path = str(alerce)
    run.real_sky.datasets.bts_snia.source.path = str(bts)
    return run


def test_real_sky_skips_when_the_real_data_are_absent(trained, tmp_path):
    from deeprubin.stages.real_sky import run_real_sky

    cfg, _ = trained
    run = real_sky_cfg(cfg, tmp_path / "no_alerce", tmp_path / "no_bts")
    run.paths.reports = str(tmp_path / "reports")
    report = run_real_sky(run)
    saved = json.loads((tmp_path / "reports/real_sky.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["skipped"] is True and "no_alerce" in saved["reason"] and "no_bts" in saved["reason"]
    assert saved["datasets"]["bts_snia"]["skipped"] is True
    assert saved["target"] == {"dataset": "bts_snia", "class": "SNIa", "min_fraction": 0.85, "skipped": True,
                               "fraction": None, "passed": None}
    assert (tmp_path / "reports/real_sky/real_sky.png").stat().st_size > 5_000


def test_forest_on_real_sky_writes_its_folder_when_every_dataset_is_absent(trained, tmp_path):
    """DVC declares the baseline's real_sky/ folder: it must exist even with no real data beside the repo."""
    from deeprubin.tasks.transients.evaluation.real_sky import forest_on_real_sky
    from deeprubin.tasks.transients.preprocess.inputs import feature_config

    cfg, _ = trained
    run = real_sky_cfg(cfg, tmp_path / "no_alerce", tmp_path / "no_bts")
    report = forest_on_real_sky(None, run, feature_config(run), [], tmp_path / "real_sky")
    assert report["skipped"] is True and report["target"]["fraction"] is None
    summary = pd.read_csv(tmp_path / "real_sky" / "summary.csv")
    assert summary["dataset"].tolist() == ["alerce_30sne", "bts_snia"] and summary["skipped"].all()
    assert summary["reason"].str.contains("input not found").all()


def test_real_sky_config_errors(trained, tmp_path):
    from deeprubin.stages.real_sky import run_real_sky

    cfg, _ = trained
    run = real_sky_cfg(cfg, tmp_path / "x", tmp_path / "y")
    run.paths.reports = str(tmp_path / "reports")
    run.real_sky.target.dataset = "nope"
    with pytest.raises(ConfigError, match=r"'real_sky\.target\.dataset' = 'nope' is not one of"):
        run_real_sky(run)
    run.paths.models = str(tmp_path / "nomodel")
    with pytest.raises(FileNotFoundError, match=r"model\.ckpt: no such checkpoint"):
        run_real_sky(run)


@pytest.mark.skipif(not REAL_DATA.exists(), reason=f"shared real data not found at {REAL_DATA}")
def test_real_sky_on_a_subset_of_the_real_files(trained, tmp_path):
    """The 30 ALeRCE SNe and 25 BTS SNe Ia through the shipped source configs."""
    from deeprubin.stages.real_sky import run_real_sky

    cfg, _ = trained
    bts = tmp_path / "bts"
    bts.mkdir()
    for path in sorted((REAL_DATA / "ztf_bts_snia/light-curves").glob("*.csv"))[:25]:
        shutil.copy(path, bts / path.name)
    run = real_sky_cfg(cfg, REAL_DATA / "ztf_alerce_30sne", bts)
    run.paths.reports = str(tmp_path / "reports")
    report = run_real_sky(run)
    assert report["skipped"] is False
    alerce, bts_entry = report["datasets"]["alerce_30sne"], report["datasets"]["bts_snia"]
    assert alerce["n_objects_per_label"] == {"SLSN": 2, "SNII": 1, "SNIa": 19, "SNIbc": 8}
    model_has_slsn = "SLSN" in report["model_classes"]
    assert ("SLSN" in alerce["unmapped_labels"]) is not model_has_slsn
    assert set(alerce["recall"]) == {"SNIa", "SNII", "SNIbc"} | ({"SLSN"} if model_has_slsn else set())
    counts = np.array(alerce["confusion"]["counts"])
    assert counts.sum() == alerce["n_objects"] == 30 and counts.shape == (4, len(report["model_classes"]))
    assert bts_entry["n_files"] == 25 + 1 and 20 <= bts_entry["n_objects"] <= 25   # + bts.csv metadata
    target = report["target"]
    assert target["fraction"] == pytest.approx(bts_entry["recall"]["SNIa"])
    assert target["fraction"] == pytest.approx(bts_entry["predicted_fractions"]["SNIa"])
    predictions = pd.read_csv(tmp_path / "reports/real_sky/predictions_bts_snia.csv")
    assert len(predictions) == bts_entry["n_objects"] and (predictions["label"] == "SNIa").all()
    assert (tmp_path / "reports/real_sky/real_sky.png").stat().st_size > 20_000
    assert io.read_json(tmp_path / "reports/real_sky.json")["datasets"]["bts_snia"]["data_sha256"] == \
        bts_entry["data_sha256"]


def test_calibration_check_scores_every_calibrator_on_fresh_objects(trained, tmp_path):
    from deeprubin.stages.calibration_check import run_calibration_check

    cfg, ckpt = trained
    run = cfg.copy()
    run.paths.reports = str(tmp_path / "reports")
    report = run_calibration_check(run)
    assert set(report["methods"]) == {"uncalibrated", "temperature", "isotonic"}
    assert report["n_objects"] >= 40 and report["simulation_seed"] != cfg.seed
    for m in report["methods"].values():
        assert 0.0 <= m["ece_width"] <= 1.0 and m["ece_floor_width"]["p05"] <= m["ece_floor_width"]["p95"]
    written = json.loads((tmp_path / "reports" / "calibration" / "independent_test.json").read_text())
    assert written["methods"]["temperature"]["n"] == report["n_objects"]
    assert (tmp_path / "reports" / "calibration" / "independent" / "reliability_width.pdf").exists()
    from deeprubin.tasks.transients.evaluation.calibration_check import independent_sample_source

    source = independent_sample_source(ckpt, 7, 123)
    assert source.n_objects == 7 and source.seed == 123 and source.name == "simulate"


def test_calibration_check_errors(trained, tmp_path):
    from deeprubin.tasks.transients.evaluation.calibration_check import independent_sample_source
    from deeprubin.stages.calibration_check import run_calibration_check

    cfg, ckpt = trained
    run = cfg.copy()
    run.evaluate.calibration.check.seed = int(cfg.data_seed)
    with pytest.raises(ConfigError, match=r"'evaluate\.calibration\.check\.seed' must differ from 'data_seed'"):
        run_calibration_check(run)
    payload = torch.load(ckpt, weights_only=True)
    payload["config"]["source"] = {"name": "files", "path": "x"}
    torch.save(payload, tmp_path / "files.ckpt")
    with pytest.raises(ConfigError, match=r"files\.ckpt: the model was trained on source 'files'"):
        independent_sample_source(tmp_path / "files.ckpt", 10, 1)


def test_one_class_validation_split_skips_calibration(trained, tmp_path):
    """A validation split of one class (as with a one-class real sample) is recorded as
    skipped: identity calibrator as the default, the reason in both files, and the
    calibration check scores only the uncalibrated probabilities."""
    from deeprubin.core.calibration import IdentityCalibrator, load_calibrator, saved_methods
    from deeprubin.stages.calibrate import run_calibrate
    from deeprubin.stages.calibration_check import run_calibration_check

    cfg, ckpt = trained
    run = cfg.copy()
    for key in ("models", "splits", "reports"):
        run.paths[key] = str(tmp_path / key)
        (tmp_path / key).mkdir()
    shutil.copy(ckpt, tmp_path / "models" / "model.ckpt")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet")
    val = manifest["split"] == "val"
    kept_label = manifest.loc[val, "label"].value_counts().index[0]
    one_class = manifest[~val | (manifest["label"] == kept_label)]
    io.write_parquet(one_class, tmp_path / "splits" / "manifest.parquet")

    metrics = run_calibrate(run)
    assert metrics["default_method"] == "none" and metrics["temperature"] is None
    assert "only one class" in metrics["skipped"] and metrics["configured_method"] == cfg.evaluate.calibration.method
    assert set(metrics["val"]) == {"uncalibrated"} and metrics["val"]["uncalibrated"]["n"] == (one_class["split"] == "val").sum()
    written = json.loads((tmp_path / "reports" / "calibration" / "metrics.json").read_text())
    assert written["skipped"] == metrics["skipped"]
    calibration = tmp_path / "models" / "calibration.json"
    assert saved_methods(calibration) == ["none"]
    assert isinstance(load_calibrator(calibration), IdentityCalibrator)
    assert "only one class" in json.loads(calibration.read_text())["fitted_on"]["skipped"]
    assert (tmp_path / "reports" / "calibration" / "figures" / "reliability_width.png").exists()

    report = run_calibration_check(run)
    assert set(report["methods"]) == {"uncalibrated"} and report["default_method"] == "none"


def test_calibration_check_of_a_real_data_model_is_recorded_as_skipped(trained, tmp_path):
    """A model trained on files/ALeRCE data has no simulator for an independent sample:
    the stage writes the reason instead of stopping `dvc repro`."""
    from deeprubin.stages.calibration_check import run_calibration_check

    cfg, ckpt = trained
    run = cfg.copy()
    run.paths.models, run.paths.reports = str(tmp_path / "models"), str(tmp_path / "reports")
    (tmp_path / "models").mkdir()
    payload = torch.load(ckpt, weights_only=True)
    payload["config"]["source"] = {"name": "files", "path": "x"}
    torch.save(payload, tmp_path / "models" / "model.ckpt")
    shutil.copy(Path(cfg.paths.models) / "calibration.json", tmp_path / "models" / "calibration.json")
    report = run_calibration_check(run)
    assert report["training_source"] == "files" and "trained on source 'files', not the simulator" in report["skipped"]
    written = json.loads((tmp_path / "reports" / "calibration" / "independent_test.json").read_text())
    assert written == report
    assert (tmp_path / "reports" / "calibration" / "independent").is_dir()


# --------------------------------------------------------------------------- data quality (issue 19.3)

def test_unusable_objects_are_listed_not_classified(trained, tmp_path, monkeypatch):
    from deeprubin.stages.predict import run_predict

    cfg, ckpt = trained
    lc, objects = make_tables(n_objects=4, labels=("SNIa",))
    one = lc["object_id"] == "obj002"
    lc.loc[one, "flux"] = -lc.loc[one, "flux"].abs()      # flux sign flipped: no detection
    monkeypatch.setitem(SOURCES, "custom", lambda _cfg: (lc, objects))
    quality = OmegaConf.to_container(cfg.quality)
    result = predict_source_detailed(ckpt, {"name": "custom"}, quality=quality)
    assert "obj002" not in set(result.predictions["object_id"])
    assert result.unusable[["object_id", "quality_flags"]].values.tolist() == [["obj002", "no_detection"]]
    assert (result.predictions["quality_flags"] == "").all()
    # without quality thresholds nothing is set aside (library callers keep the old behaviour)
    assert "obj002" in set(predict_source(ckpt, {"name": "custom"})["object_id"])
    # the predict stage lists it with no prediction, and names the calibrator on every row
    out = tmp_path / "pred.csv"
    run_cfg = OmegaConf.merge(cfg, {"source": {"name": "custom", "_target_": None},
                                    "predict": {"checkpoint": str(ckpt), "output": str(out), "progress_bar": False}})
    summary = run_predict(run_cfg)
    table = pd.read_csv(out, keep_default_na=False)
    assert summary["n_unusable"] == 1 and len(table) == 4
    row = table.set_index("object_id").loc["obj002"]
    assert row["predicted"] == "" and row["quality_flags"] == "no_detection"
    chosen = load_calibrator(ckpt.parent / "calibration.json", classes=list(cfg.task.classes)).method
    assert table["calibration"].str.startswith(f"{chosen} from").all()   # the method calibrate selected
    lc["flux"] = -lc["flux"].abs()
    with pytest.raises(SchemaError, match=r"source 'custom': every object is flagged unusable"):
        predict_source_detailed(ckpt, {"name": "custom"}, quality=quality)


def test_calibrator_of_another_model_is_refused_by_predict(trained, tmp_path):
    cfg, ckpt = trained
    other = tmp_path / "other" / "model.ckpt"
    other.parent.mkdir()
    payload = torch.load(ckpt, weights_only=True)
    payload["metadata"] = {**payload["metadata"], "note": "retrained"}
    torch.save(payload, other)
    with pytest.raises(CalibrationMismatchError, match=r"calibration\.json: fitted for another checkpoint"):
        predict_source(other, cfg.source, calibration=ckpt.parent / "calibration.json")
    # auto: nothing beside the other checkpoint -> raw softmax, said in the result
    from deeprubin.tasks.transients.evaluation.inference import predict_source_detailed as detailed

    src = OmegaConf.merge(cfg.source, {"n_objects": 6})
    assert detailed(other, src, calibration="auto").calibration == "none (raw softmax)"
    chosen = load_calibrator(ckpt.parent / "calibration.json", classes=list(cfg.task.classes)).method
    assert detailed(ckpt, src, calibration="auto").calibration.startswith(f"{chosen} from")


def test_unlabeled_files_are_predicted_without_inventing_labels(trained, tmp_path, monkeypatch):
    from deeprubin.tasks.transients.evaluation.inference import UNLABELED
    cfg, ckpt = trained
    folder = tmp_path / "lc"
    folder.mkdir()
    t = np.linspace(58000, 58060, 12)
    for name in ("A", "B"):
        rows = [f"{ti},{19 + 0.5 * np.sin(ti / 9):.3f},0.05,{'g' if i % 2 else 'r'}" for i, ti in enumerate(t)]
        (folder / f"{name}.csv").write_text("time,mag,magerr,band\n" + "\n".join(rows) + "\n")
    source = {"name": "files", "layout": "per_object_csv", "path": str(folder), "progress_bar": False,
              "columns": {"time": "time", "band": "band", "mag": "mag", "mag_err": "magerr"},
              "validation": {"on_invalid": "drop", "min_points": 3, "min_bands": 1}}
    table = predict_source(ckpt, source)
    assert table["label"].tolist() == [UNLABELED, UNLABELED]
    assert set(table["predicted"]) <= set(cfg.task.classes)
    # a loader that returns no label column at all
    lc, objects = make_tables(n_objects=2)
    monkeypatch.setitem(SOURCES, "custom", lambda _cfg: (lc, objects.drop(columns="label")))
    assert predict_source(ckpt, {"name": "custom"})["label"].tolist() == [UNLABELED, UNLABELED]
