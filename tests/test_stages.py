"""Stage functions called in-process on the tiny configuration (fast, no DVC)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY, compose_under, run_tiny_pipeline

from deeprubin.core import io
from deeprubin.core.config import ConfigError
from deeprubin.core.schema import SchemaError
from deeprubin.core.split import LeakageError
from deeprubin.sources import SOURCES


def tiny_cfg(tmp_path: Path, *overrides: str):
    return compose_under(tmp_path, [*TINY, *overrides])


def run_all(cfg) -> dict:
    return run_tiny_pipeline(cfg, Path.cwd())


@pytest.fixture(autouse=True)
def _isolate_mlflow(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.e2e  # a second tiny pipeline (~40 s): in the e2e layer, which .ci/run also runs
def test_same_params_same_metrics(tmp_path, tiny_pipeline):
    shared_cfg, first = tiny_pipeline  # the shared tiny pipeline is run "a"
    (tmp_path / "a").symlink_to(Path(shared_cfg.paths.models).parents[1])
    second = run_all(tiny_cfg(tmp_path / "b"))
    assert first == json.loads(json.dumps(io._to_jsonable(second)))
    a = io.read_npz(tmp_path / "a/data/processed/transients/gp_grid.npz")
    b = io.read_npz(tmp_path / "b/data/processed/transients/gp_grid.npz")
    np.testing.assert_array_equal(a["mean"], b["mean"])
    import torch

    weights = [torch.load(tmp_path / d / "models/transients/model.ckpt", weights_only=True)["state_dict"]
               for d in ("a", "b")]
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0)
    history = pd.read_csv(tmp_path / "a/models/transients/history.csv")
    # the default trainer.ensemble_members (3): one history row per member and epoch
    assert list(history.columns) == ["member", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    assert sorted(history["member"].unique()) == [0, 1, 2]
    assert history[["train_loss", "val_loss"]].notna().all().all()
    model_cfg = (tmp_path / "a/models/transients/config.yaml").read_text()
    assert "FusionClassifier" in model_cfg


def test_mlflow_run_has_params_metrics_and_model(tiny_pipeline):
    import mlflow

    cfg, _ = tiny_pipeline
    client = mlflow.tracking.MlflowClient(cfg.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["model.name"] == "fusion"
    assert "dataset_sha256" in run.data.tags and "git_commit" in run.data.tags
    # one curve per ensemble member (trainer.ensemble_members: 3), each with one point per epoch
    for member in range(cfg.trainer.ensemble_members):
        assert {f"member{member}-{k}" for k in ("train_loss", "val_loss", "train_acc", "val_acc")} \
            <= set(run.data.metrics)
        assert len(client.get_metric_history(run.info.run_id, f"member{member}-val_loss")) == cfg.trainer.max_epochs
    assert {"val_macro_f1", "test_macro_f1"} <= set(run.data.metrics)
    # named after the class actually built, not the free-text model.name; FINISHED after the outputs
    assert run.info.run_name == "FusionClassifier-seed42" and run.data.tags["dvc_stage"] == "train"
    # the registered predictor: the members averaged as one DeepEnsemble
    assert run.data.tags["model"] == "deeprubin.core.models.ensemble.DeepEnsemble" and run.info.status == "FINISHED"
    assert run.data.tags["git_dirty"] in ("true", "false")
    assert any(a.path == "class_distribution_train.json" for a in client.list_artifacts(run.info.run_id))
    versions = client.search_model_versions("name='transients-classifier'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    # the registered version is the weights-only checkpoint, loaded through the allow-list (no pickle)
    from deeprubin.core.registry import load_registered

    model, meta = load_registered(f"models:/transients-classifier/{versions[0].version}",
                                  tracking_uri=cfg.mlflow.tracking_uri)
    assert len(model.members) == cfg.trainer.ensemble_members
    x = torch.zeros((2, model.members[0].n_values))   # the fusion model's flat inputs (grid, features, fold)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=-1).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert meta["classes"] == list(cfg.task.classes)
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "transients-train"


def test_ingest_drop_mode_reports_dropped_objects(tmp_path, monkeypatch):
    from deeprubin.sources import resolve_loader
    from deeprubin.stages import ingest

    real = resolve_loader("simulate")

    def corrupted(cfg):
        lc, obj = real(cfg)
        lc.loc[lc["object_id"] == obj["object_id"].iloc[0], "flux_err"] = -1.0
        return lc, obj

    monkeypatch.setitem(SOURCES, "simulate", corrupted)
    cfg = tiny_cfg(tmp_path, "source.validation.on_invalid=drop")
    report = ingest.run_ingest(cfg)
    assert report["validation"]["dropped_by_reason"] == {"non_positive_error": 1}
    cfg = tiny_cfg(tmp_path / "raise")
    with pytest.raises(SchemaError, match="'flux_err' <= 0"):
        ingest.run_ingest(cfg)
    assert not (tmp_path / "raise/data/raw/transients/lightcurves.parquet").exists()


@pytest.mark.parametrize("override, message", [
    ("source.validation.min_bands=3", "min_bands"),
    ("source.validation.on_invalid=skip", "on_invalid"),
    ("source.name=nowhere", "source.name"),
])
def test_ingest_config_errors(tmp_path, override, message):
    from deeprubin.stages.ingest import run_ingest

    with pytest.raises(ConfigError, match=message):
        run_ingest(tiny_cfg(tmp_path, override))


@pytest.mark.parametrize("override, message", [
    ("preprocess.n_grid=1", "preprocess.n_grid"),
    ("preprocess.batch_size=0", "preprocess.batch_size"),
    ("preprocess.wavelength_length_scale=-5", "wavelength_length_scale"),
])
def test_preprocess_config_errors(tmp_path, override, message):
    from deeprubin.stages.preprocess import run_preprocess

    with pytest.raises(ConfigError, match=message):
        run_preprocess(tiny_cfg(tmp_path, override))


def test_trainer_config_error(tmp_path):
    from deeprubin.tasks.transients.training.fit import check_trainer_config

    with pytest.raises(ConfigError, match="trainer.learning_rate"):
        check_trainer_config(tiny_cfg(tmp_path, "trainer.learning_rate=0"))


def test_split_stage_fails_on_leakage(tmp_path, monkeypatch):
    from deeprubin.stages import ingest, split

    cfg = tiny_cfg(tmp_path)
    ingest.run_ingest(cfg)

    def leaky(objects, fractions, seed):
        manifest = objects[["object_id", "group_id", "label"]].copy()
        manifest["split"] = np.where(np.arange(len(manifest)) % 2 == 0, "train", "test")
        manifest["group_id"] = "one-group"
        return manifest

    monkeypatch.setattr(split, "make_split", leaky)
    with pytest.raises(LeakageError):
        split.run_split(cfg)
    assert not (tmp_path / "data/splits/transients/manifest.parquet").exists()


def test_missing_input_names_file(tmp_path):
    from deeprubin.stages.split import run_split

    with pytest.raises(FileNotFoundError, match="objects.parquet"):
        run_split(tiny_cfg(tmp_path))


def test_bad_evaluation_config_names_the_key(tmp_path):
    from deeprubin.core.calibration_report import check_calibration_config
    from deeprubin.stages.early import run_early

    cfg = tiny_cfg(tmp_path, "evaluate.calibration.method=platt")
    with pytest.raises(ConfigError, match="evaluate.calibration.method"):
        check_calibration_config(cfg)
    cfg = tiny_cfg(tmp_path, "evaluate.early.days=[10,5]")
    with pytest.raises(ConfigError, match="evaluate.early.days"):
        run_early(cfg)
