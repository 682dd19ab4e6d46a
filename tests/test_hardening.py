"""Hardening: a file a user was handed runs no code; a calibrator belongs to one checkpoint;
experiment records say how a run ended; outputs are readable by the group and checked early.

Issue 19, points 1, 2, 4, 5 (paths) and 6 (file modes).
"""
from __future__ import annotations

import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from deeprubin.core import io
from deeprubin.core.calibration import (
    CalibrationMismatchError,
    load_calibrator,
    make_calibrator,
    resolve_calibration,
    save_calibration,
)
from deeprubin.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from deeprubin.core.models import ALLOWED_MODELS, ModelConfigError, build_model, model_name

TCN = {"_target_": "deeprubin.core.models.tcn.TCNClassifier", "name": "tcn", "channels": 4, "kernel_size": 3,
       "n_blocks": 2, "dropout": 0.0}
CLASSES = ["A", "B", "C"]


def _checkpoint(path: Path, model_config: dict = TCN, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(model_config, n_inputs=4, n_classes=3)
    return save_checkpoint(path, model, model_config=model_config, classes=CLASSES, bands=["g", "r"], n_inputs=4,
                           config={"seed": seed}, metadata={})


class _Payload:
    """Pickles to ``os.system(command)``: what a crafted checkpoint runs on an unsafe load."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# ----------------------------------------------------------------------------- 1. no code runs
def test_pickled_payload_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    good = torch.load(_checkpoint(tmp_path / "good.ckpt"), weights_only=True)
    good["metadata"] = {"note": _Payload(f"touch {marker}")}
    evil = tmp_path / "evil.ckpt"
    torch.save(good, evil)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: cannot read the checkpoint: it holds pickled Python"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_plain_pickle_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(_Payload(f"touch {marker}")))
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: cannot read the checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.parametrize("model_config,match", [
    ({**TCN, "_target_": "os.system"}, r"'_target_' 'os.system' is not an allowed model class"),
    ({**TCN, "dropout": {"_target_": "os.system", "command": "touch {marker}"}}, r"key 'dropout' is a mapping"),
    ({**TCN, "channels": [{"_target_": "os.system", "_args_": ["touch {marker}"]}]}, r"key 'channels\[0\]' is a mapping"),
    ({**TCN, "_target_": "builtins.eval"}, "not an allowed model class"),
    ({k: v for k, v in TCN.items() if k != "_target_"}, "has no '_target_' key"),
    ({**TCN, "_recursive_": True, "_args_": ["x"]}, r"key '_recursive_' is not an argument name"),
])
def test_nested_target_or_foreign_class_in_a_checkpoint_is_refused(tmp_path, model_config, match):
    marker = tmp_path / "pwned"
    payload = torch.load(_checkpoint(tmp_path / "good.ckpt"), weights_only=True)
    payload["model_config"] = {k: (v.replace("{marker}", str(marker)) if isinstance(v, str) else v)
                               for k, v in model_config.items()}
    if isinstance(payload["model_config"].get("dropout"), dict):
        payload["model_config"]["dropout"]["command"] = f"touch {marker}"
    if isinstance(payload["model_config"].get("channels"), list):
        payload["model_config"]["channels"][0]["_args_"] = [f"touch {marker}"]
    evil = tmp_path / "evil.ckpt"
    torch.save(payload, evil)
    with pytest.raises(CheckpointError, match=r"evil\.ckpt: field 'model_config': .*" + f"(?:{match})"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_allowed_models_all_build_and_round_trip(tmp_path):
    assert "deeprubin.core.models.tcn.TCNClassifier" in ALLOWED_MODELS
    path = _checkpoint(tmp_path / "m.ckpt")
    model, meta = load_checkpoint(path)
    assert model_name(model) == "deeprubin.core.models.tcn.TCNClassifier"
    assert meta["classes"] == CLASSES


def test_a_task_model_is_built_only_if_its_module_lists_it():
    from deeprubin.core.models import model_class
    from deeprubin.tasks.transits.model import InceptionResNet1D

    assert model_class({"_target_": "deeprubin.tasks.transits.model.InceptionResNet1D"}) is InceptionResNet1D
    for target in ("deeprubin.tasks.transits.model.InceptionResidualBlock",  # a module, not listed in MODELS
                   "deeprubin.tasks.transits.model.torch",                   # an attribute that is no class
                   "deeprubin.tasks.transits.fit.fit_segment_classifier",    # not a task's model module
                   "deeprubin.tasks.nosuchtask.model.Net",                   # no such task
                   "deeprubin.tasks.transits.model.os.system"):
        with pytest.raises(ModelConfigError, match="is not an allowed model class"):
            model_class({"_target_": target})


def test_model_config_with_unknown_argument_names_the_class(tmp_path):
    with pytest.raises(ModelConfigError, match=r"TCNClassifier: .*unexpected keyword argument 'widht'"):
        build_model({**TCN, "widht": 3}, n_inputs=4, n_classes=3)


def test_weights_that_do_not_fit_are_named(tmp_path):
    payload = torch.load(_checkpoint(tmp_path / "good.ckpt"), weights_only=True)
    payload["model_config"] = {**TCN, "channels": 8}
    bad = tmp_path / "bad.ckpt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=r"bad\.ckpt: field 'state_dict' does not fit"):
        load_checkpoint(bad)


def test_no_unsafe_loading_remains_in_the_source():
    src = Path(__file__).resolve().parents[1] / "src"
    offenders = []
    for path in src.rglob("*.py"):
        text = path.read_text()
        for needle in ("weights_only=False", "pickle.load(", "pickle.loads(", "mlflow.pytorch.log_model",
                       "hydra.utils import instantiate", "instantiate(cfg, n_inputs"):
            if needle in text:
                offenders.append(f"{path.relative_to(src)}: {needle}")
    assert offenders == []


# ----------------------------------------------------------------------------- 2. calibrator bound to its model
def _calibration(tmp_path: Path, checkpoint: Path) -> Path:
    cal = make_calibrator("temperature", CLASSES)
    cal.temperature = 1.5
    return save_calibration(checkpoint.parent / "calibration.json", {"temperature": cal,
                                                                   "none": make_calibrator("none", CLASSES)},
                            default="temperature", fitted_on={"split": "val"}, checkpoint=checkpoint)


def test_calibrator_of_another_checkpoint_is_refused(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    mine = _checkpoint(tmp_path / "a" / "model.ckpt", seed=0)
    other = _checkpoint(tmp_path / "b" / "model.ckpt", seed=7)
    path = _calibration(tmp_path, mine)
    assert load_calibrator(path, classes=CLASSES, checkpoint=mine).method == "temperature"
    with pytest.raises(CalibrationMismatchError, match=r"calibration\.json: fitted for another checkpoint .* than "
                                                       r".*b/model\.ckpt"):
        load_calibrator(path, classes=CLASSES, checkpoint=other)


def test_calibration_file_without_binding_is_refused_with_a_checkpoint(tmp_path):
    mine = _checkpoint(tmp_path / "model.ckpt")
    path = _calibration(tmp_path, mine)
    data = io.read_json(path)
    del data["checkpoint"]
    io.write_json(data, path)
    with pytest.raises(CalibrationMismatchError, match="field 'checkpoint' is missing"):
        load_calibrator(path, checkpoint=mine)


def test_auto_calibration_is_the_file_beside_the_checkpoint(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    mine = _checkpoint(tmp_path / "a" / "model.ckpt")
    _calibration(tmp_path, mine)
    other = _checkpoint(tmp_path / "b" / "model.ckpt", seed=3)
    assert resolve_calibration("auto", mine) == tmp_path / "a" / "calibration.json"
    assert resolve_calibration("auto", other) is None
    assert resolve_calibration(None, mine) is None
    assert resolve_calibration("x.json", mine) == Path("x.json")


# ----------------------------------------------------------------------------- 5/6. paths and modes
def test_outputs_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io.write_text("x", tmp_path / "a.txt")
        io.write_json({"a": 1}, tmp_path / "a.json")
        _checkpoint(tmp_path / "m.ckpt")
    finally:
        os.umask(old)
    for name in ("a.txt", "a.json", "m.ckpt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_fails_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=r"ro: the models folder is not writable"):
            io.check_writable(folder, "models folder")
    finally:
        folder.chmod(0o755)


def test_output_path_that_is_a_file_fails_naming_it(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match=r"file/sub: the predict.output folder is not writable"):
        io.check_writable(tmp_path / "file" / "sub", "predict.output folder")


# ----------------------------------------------------------------------------- 4. honest MLflow records
def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {r.info.run_id: r.info.status for e in client.search_experiments()
            for r in client.search_runs([e.experiment_id])}


def test_run_guard_marks_failed_finished_and_killed(tmp_path):
    from deeprubin.core.tracking import StageInterrupted, run_guard, start_training_run

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client, ok = start_training_run(uri, "e", run_name="ok", tags={})
    with run_guard(client, ok):
        assert _runs(uri)[ok] == "RUNNING"
    _, bad = start_training_run(uri, "e", run_name="bad", tags={})
    with pytest.raises(RuntimeError), run_guard(client, bad):
        raise RuntimeError("disk full")
    _, killed = start_training_run(uri, "e", run_name="killed", tags={})
    with pytest.raises(StageInterrupted), run_guard(client, killed):
        os.kill(os.getpid(), signal.SIGTERM)
    status = _runs(uri)
    assert (status[ok], status[bad], status[killed]) == ("FINISHED", "FAILED", "KILLED")


def test_training_run_leaves_the_tracking_variable_as_it_found_it(tmp_path, monkeypatch):
    import mlflow

    from deeprubin.core.tracking import training_run

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with training_run(uri, "e", run_name="r", tags={}) as (client, run_id, logger):
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")   # what Lightning's logger may do
    assert os.environ["MLFLOW_TRACKING_URI"] == uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with training_run(uri, "e", run_name="r2", tags={}):
        mlflow.set_tracking_uri(uri)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert _runs(uri)[run_id] == "FINISHED"


@pytest.mark.e2e  # starts and SIGKILLs a training process (~20 s)
def test_sigkilled_run_is_marked_killed_and_its_temp_folder_removed(tmp_path):
    """A process SIGKILLed mid-run leaves RUNNING and a temp folder; the next run cleans both up."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    script = textwrap.dedent(f"""
        import os, sys, time
        from deeprubin.core.tracking import start_training_run, temp_checkpoint_dir
        client, run_id = start_training_run({uri!r}, "e", run_name="doomed", tags={{}})
        folder = temp_checkpoint_dir()
        print(run_id, folder.name, flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    run_id, folder = proc.stdout.readline().split()
    proc.kill()
    proc.wait()
    assert _runs(uri)[run_id] == "RUNNING" and Path(folder).exists()
    from deeprubin.core.tracking import start_training_run

    start_training_run(uri, "e", run_name="next", tags={})
    assert _runs(uri)[run_id] == "KILLED"
    assert not Path(folder).exists()


# ----------------------------------------------------------------------------- registry: no pickled modules
def test_registered_model_is_the_checkpoint_and_loads_safely(tmp_path):
    from deeprubin.core.tracking import start_training_run
    from deeprubin.core.registry import load_registered, log_classifier

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client, run_id = start_training_run(uri, "e", run_name="r", tags={})
    ckpt = _checkpoint(tmp_path / "model.ckpt")
    model_uri = log_classifier(client, run_id, ckpt, (4, 10), registered_name="toy-classifier")
    assert model_uri == "models:/toy-classifier/1"
    import mlflow

    # the name is looked up in the given store, not in whatever store the process last used
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'another.db'}")
    model, meta = load_registered(model_uri, tracking_uri=uri)
    x = torch.zeros(2, 4, 10)
    original, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), original(x).numpy())
    assert meta["classes"] == CLASSES


def test_a_source_loader_comes_from_its_target_and_only_from_the_allow_list():
    """conf/source/*.yaml name their loader by ``_target_``; only the loaders of
    deeprubin.sources.SOURCES may run, whatever a config says."""
    from omegaconf import OmegaConf

    from deeprubin.core.config import ConfigError, compose_task
    from deeprubin.sources import resolve_loader
    from deeprubin.sources.files import load_files
    from deeprubin.sources.simulate import load_simulated

    assert resolve_loader(compose_task("transients").source) is load_simulated
    assert resolve_loader(compose_task("transients", ["source=files_bts_snia"]).source) is load_files
    assert resolve_loader(OmegaConf.create({"name": "files"})) is load_files  # a node saved before _target_
    for target in ("os.system", "deeprubin.sources.files.read_table", "deeprubin.stages.ingest.run_ingest"):
        with pytest.raises(ConfigError, match=rf"'source._target_' = '{target}' is not a registered source loader"):
            resolve_loader(OmegaConf.create({"name": "files", "_target_": target}))
    with pytest.raises(ConfigError, match=r"'source.name' = 'custom' and 'source._target_' = "
                                          r"'deeprubin.sources.simulate.load_simulated' disagree"):
        resolve_loader(OmegaConf.create({"name": "custom", "_target_": "deeprubin.sources.simulate.load_simulated"}))
    with pytest.raises(ConfigError, match=r"'source.name' must be one of .* got 'ftp'"):
        resolve_loader(OmegaConf.create({"name": "ftp"}))


class _RacingClient:
    """Stands in for a client whose first ``log_inputs`` loses the insert race to a parallel job."""

    def __init__(self, failures: int, message: str):
        self.failures, self.message, self.calls = failures, message, 0

    def log_inputs(self, run_id, datasets):
        self.calls += 1
        if self.calls <= self.failures:
            from mlflow.exceptions import MlflowException
            raise MlflowException(self.message)


def test_dataset_logging_survives_a_parallel_insert_and_raises_other_errors():
    from mlflow.exceptions import MlflowException

    from deeprubin.core.registry import DATASET_INSERT_ATTEMPTS, log_inputs_once

    race = "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
    client = _RacingClient(1, race)
    log_inputs_once(client, "run", [])
    assert client.calls == 2                       # the second try links the run to the row the other job wrote
    client = _RacingClient(DATASET_INSERT_ATTEMPTS, race)
    with pytest.raises(MlflowException, match="UNIQUE constraint"):
        log_inputs_once(client, "run", [])
    assert client.calls == DATASET_INSERT_ATTEMPTS
    client = _RacingClient(1, "RESOURCE_DOES_NOT_EXIST: run 'run' not found")
    with pytest.raises(MlflowException, match="not found"):
        log_inputs_once(client, "run", [])
    assert client.calls == 1
