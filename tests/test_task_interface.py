"""The task interface: a task is a package, a conf file and a line in the task list.

A toy third task goes through every generic stage: a config node ``tasks.toy`` (its paths and
settings, in the shape the generic stages read) and a package ``deeprubin.tasks.toy`` with one
module per step (written here into a temporary folder on the package's path: a nearest-centroid
classifier on two features, scored next to a majority-class baseline). The generic entry
points serve it from its view of the config, the schema check accepts a task without a schema
module, and DVC's foreach gives it ``ingest@toy`` ... ``evaluate@toy`` with its own paths.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deeprubin.core import io
from deeprubin.core.config import (ConfigError, compose_params, compose_task, task_names, task_overrides,
                                   task_view, write_params)
from deeprubin.core.config_schema import check_schema
from deeprubin.core.entry import stage_config
from deeprubin.stages.split import run_split

REPO_ROOT = Path(__file__).resolve().parents[1]

TOY = """# @package tasks.toy
task:
  name: toy
  classes: [a, b]
paths:
  raw: data/raw/toy
  processed: data/processed/toy
  splits: data/splits/toy
  train_inputs: ${.processed}
  models: models/toy
  reports: reports/toy
  metrics: ${.reports}/metrics.json
  baseline: reports/toy/baseline
quality: {}
source:
  n_hosts: 40
preprocess:
  scale: true
split:
  name: grouped
  group_column: host
  fractions: {train: 0.5, val: 0.25, test: 0.25}
model: {}
trainer: {}
evaluate:
  calibration: {method: temperature, n_bins: 5, per_class_bins: 5, isotonic_floor: 1.0e-4, floor_draws: 20}
predict:
  checkpoint: ${..paths.models}/model.json
  output: null
"""

#: The toy task's package: ``steps/`` with one module per step, as docs/extending.md describes.
TOY_STEPS = {
    "__init__.py": '"""Toy task."""\n',
    "steps/__init__.py": '"""Toy steps."""\nOBJECTIVE = "val_accuracy"\n',
    "steps/ingest.py": '''
from pathlib import Path

import numpy as np
import pandas as pd

from deeprubin.core import io


def ingest(cfg):
    rng = np.random.default_rng(int(cfg.data_seed))
    n = int(cfg.source.n_hosts)
    hosts = np.repeat(np.arange(n), 2)  # two objects per host: a host must not straddle splits
    label = rng.choice(list(cfg.task.classes), n).repeat(2)
    x = rng.normal(size=(2 * n, 2)) + 3.0 * (label == "b")[:, None]
    objects = pd.DataFrame({"object_id": [f"toy{i:03d}" for i in range(2 * n)], "host": [f"h{h}" for h in hosts],
                            "group_id": [f"o{i}" for i in range(2 * n)], "label": label, "x0": x[:, 0], "x1": x[:, 1]})
    io.write_parquet(objects, Path(cfg.paths.raw) / "objects.parquet")
    report = {"n_objects": len(objects)}
    io.write_json(report, Path(cfg.paths.raw) / "ingest_report.json")
    return report
''',
    "steps/preprocess.py": '''
from pathlib import Path

from deeprubin.core import io


def preprocess(cfg):
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    x = objects[["x0", "x1"]].to_numpy()
    if cfg.preprocess.scale:
        x = (x - x.mean(0)) / x.std(0)
    io.write_npz(Path(cfg.paths.processed) / "features.npz", x=x, object_id=objects["object_id"].to_numpy().astype(str))
    return {"n_examples": len(x)}
''',
    "steps/train.py": '''
from pathlib import Path

import numpy as np

from deeprubin.core import io


def data(cfg, split):
    feats = io.read_npz(Path(cfg.paths.processed) / "features.npz")
    manifest = io.read_parquet(Path(cfg.paths.splits) / "manifest.parquet").set_index("object_id")
    rows = manifest.loc[feats["object_id"]]
    keep = (rows["split"] == split).to_numpy()
    return feats["x"][keep], rows["label"].to_numpy()[keep]


def train(cfg):
    x, y = data(cfg, "train")
    centroids = {c: x[y == c].mean(0).tolist() for c in cfg.task.classes}
    io.write_json({"centroids": centroids}, Path(cfg.paths.models) / "model.json")
    xv, yv = data(cfg, "val")
    names = list(centroids)
    pred = np.array(names)[np.argmin([((xv - centroids[c]) ** 2).sum(1) for c in names], axis=0)]
    return {"val_accuracy": float((pred == yv).mean())}
''',
    "steps/evaluate.py": '''
from pathlib import Path

import numpy as np
import pandas as pd

from deeprubin.core import io
from deeprubin.tasks.toy.steps.train import data


def evaluate(cfg):
    centroids = io.read_json(Path(cfg.paths.models) / "model.json")["centroids"]
    x, y = data(cfg, "test")
    names = list(centroids)
    pred = np.array(names)[np.argmin([((x - centroids[c]) ** 2).sum(1) for c in names], axis=0)]
    majority = pd.Series(data(cfg, "train")[1]).mode()[0]
    metrics = {"accuracy": float((pred == y).mean()), "baseline_accuracy": float((y == majority).mean())}
    out = Path(cfg.paths.reports)
    io.write_json(metrics, out / "metrics.json")
    io.write_text(pd.DataFrame({"label": y, "predicted": pred}).to_csv(index=False), out / "evaluation" / "predictions.csv")
    return metrics
''',
    "steps/calibrate.py": '''
from pathlib import Path

import numpy as np

from deeprubin.core import io
from deeprubin.core.calibration_report import calibrate_and_report, check_calibration_config
from deeprubin.tasks.toy.steps.train import data


def logits(centroids, x):
    return -np.stack([((x - np.asarray(centroids[c])) ** 2).sum(1) for c in centroids], axis=1)


def calibrate(cfg):
    node = check_calibration_config(cfg)
    model = Path(cfg.paths.models) / "model.json"
    centroids = io.read_json(model)["centroids"]
    names = list(centroids)
    parts = {s: data(cfg, s) for s in ("val", "test")}
    return calibrate_and_report({s: logits(centroids, x) for s, (x, _) in parts.items()},
                                {s: np.array([names.index(v) for v in y]) for s, (_, y) in parts.items()},
                                names, node, seed=int(cfg.seed), checkpoint=model, models_dir=cfg.paths.models,
                                reports_dir=cfg.paths.reports)
''',
    "steps/predict.py": '''
from pathlib import Path

import pandas as pd

from deeprubin.core import io
from deeprubin.core.calibration import apply_calibration, load_calibrator
from deeprubin.tasks.toy.steps.calibrate import logits


def predict(cfg):
    checkpoint = Path(cfg.predict.checkpoint)
    centroids = io.read_json(checkpoint)["centroids"]
    calibrator = load_calibrator(checkpoint.parent / "calibration.json", checkpoint=checkpoint)
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
    p = apply_calibration(logits(centroids, objects[["x0", "x1"]].to_numpy()), calibrator, kind="logits")
    table = pd.DataFrame({"object_id": objects["object_id"], **{f"prob_{c}": p[:, i] for i, c in enumerate(centroids)}})
    table["predicted"] = [list(centroids)[i] for i in p.argmax(1)]
    io.write_table(table, cfg.predict.output)
    return {"n_objects": len(table)}
''',
}


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """``deeprubin.tasks.toy``: the toy task's package, in a folder added to the tasks' path."""
    import deeprubin.tasks

    root = tmp_path / "toy_package" / "toy"
    for name, text in TOY_STEPS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text.lstrip("\n"))
    monkeypatch.setattr(deeprubin.tasks, "__path__", [*deeprubin.tasks.__path__, str(root.parent)])
    yield root
    for name in [m for m in sys.modules if m == "deeprubin.tasks.toy" or m.startswith("deeprubin.tasks.toy.")]:
        del sys.modules[name]


@pytest.fixture
def toy_conf(tmp_path):
    """conf/ of the project plus the toy task: its file and its line in the defaults list."""
    conf = tmp_path / "conf"
    shutil.copytree(REPO_ROOT / "conf", conf)
    (conf / "toy").mkdir()
    (conf / "toy" / "default.yaml").write_text(TOY)
    root = conf / "config.yaml"
    text = root.read_text()
    root.write_text(text.replace("  - experiment: null", "  - toy: default\n  - experiment: null"))
    return conf


def toy_objects(n_hosts: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    hosts = np.repeat(np.arange(n_hosts), 2)  # two objects per host: a host must not straddle splits
    return pd.DataFrame({"object_id": [f"toy{i:03d}" for i in range(len(hosts))],
                         "host": [f"h{h}" for h in hosts], "group_id": [f"o{i}" for i in range(len(hosts))],
                         "label": rng.choice(["a", "b"], n_hosts).repeat(2)})


def test_a_task_is_a_conf_file_and_a_line(toy_conf):
    cfg = compose_params([], toy_conf)
    assert task_names(cfg) == ["transients", "transits", "stellar", "toy"]
    check_schema(cfg)  # the toy task has no schema module: its nodes are not checked, nothing fails
    view = task_view(cfg, "toy")
    assert view.task_name == "toy" and view.paths.raw == "data/raw/toy"
    assert view.paths.figures == cfg.paths.figures and view.seed == cfg.seed  # the shared keys
    assert "augment" not in view and "tasks" not in view  # another task's nodes are not in its view


def test_the_generic_split_serves_the_toy_task(toy_conf, tmp_path):
    cfg = compose_task("toy", [f"paths.raw={tmp_path}/raw", f"paths.splits={tmp_path}/splits"], toy_conf)
    io.write_parquet(toy_objects(), tmp_path / "raw" / "objects.parquet")
    report = run_split(cfg)
    manifest = io.read_parquet(tmp_path / "splits" / "manifest.parquet")
    assert sum(report[s]["n_objects"] for s in ("train", "val", "test")) == 80
    by_host = manifest.assign(host=manifest["object_id"].map(dict(zip(toy_objects()["object_id"],
                                                                       toy_objects()["host"]))))
    assert by_host.groupby("host")["split"].nunique().max() == 1  # the task's group column was the group
    assert set(manifest["group_id"]) == set(toy_objects()["host"])


def test_the_generic_split_names_a_missing_group_column(toy_conf, tmp_path):
    cfg = compose_task("toy", [f"paths.raw={tmp_path}/raw", f"paths.splits={tmp_path}/splits",
                               "split.group_column=star"], toy_conf)
    io.write_parquet(toy_objects(), tmp_path / "raw" / "objects.parquet")
    with pytest.raises(ValueError, match=r"objects\.parquet: no column 'star' \(config key "
                                         r"'tasks\.toy\.split\.group_column'\)"):
        run_split(cfg)
    assert not (tmp_path / "splits").exists()  # nothing written


def test_a_generic_stage_needs_a_known_task(toy_conf):
    cfg = compose_params([], toy_conf)
    assert cfg.task_name == "transients"  # what a generic stage runs when not told
    cfg.task_name = None
    with pytest.raises(ConfigError, match="config key 'task_name' is missing"):
        stage_config(cfg, generic=True)
    cfg.task_name = "nosuchtask"
    with pytest.raises(ConfigError, match=r"'task_name' = 'nosuchtask' is not a task of this config; "
                                          r"known: \['transients', 'transits', 'stellar', 'toy'\]"):
        stage_config(cfg, generic=True)
    cfg.task_name = "toy"
    assert stage_config(cfg, generic=True).paths.splits == "data/splits/toy"
    assert stage_config(cfg).tasks.toy.paths.splits == "data/splits/toy"  # index/results read the whole


def test_short_keys_go_to_the_task(toy_conf):
    assert task_overrides("toy", ["split.group_column=x", "seed=3", "paths.figures=f", "paths.raw=r",
                                  "+split.extra=1", "tasks.transits.seed=1"], toy_conf) == [
        "tasks.toy.split.group_column=x", "seed=3", "paths.figures=f", "tasks.toy.paths.raw=r",
        "+tasks.toy.split.extra=1", "tasks.transits.seed=1"]
    with pytest.raises(ConfigError, match="'nosuchtask' is not a task"):
        task_overrides("nosuchtask", ["split.x=1"], toy_conf)


def test_dvc_runs_the_generic_split_once_per_task(toy_conf, tmp_path):
    """The DVC graph: foreach over params.yaml's tasks gives split@toy its own paths and params."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    write_params(repo / "params.yaml", [], conf_dir=toy_conf)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc = str(Path(sys.executable).parent / "dvc")
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True)
    listed = subprocess.run([dvc, "stage", "list", "--all"], cwd=repo, capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert {"split@transients", "split@transits", "split@toy"} <= set(names)
    assert {f"{step}@toy" for step in ("ingest", "preprocess", "train", "calibrate", "evaluate")} <= set(names)
    assert not any(name.startswith("transits_split") for name in names)  # no per-task copy of the stage
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stage = next(s for s in dvc_repo.index.stages if s.name == "split@toy")
        assert "task_name=toy" in stage.cmd
        assert [str(o.def_path) for o in stage.outs] == ["data/splits/toy/manifest.parquet",
                                                         "data/splits/toy/split_report.json"]
        assert "data/raw/toy/objects.parquet" in [str(d.def_path) for d in stage.deps]


def test_the_toy_task_runs_through_every_generic_stage(toy_conf, toy_package, tmp_path):
    from deeprubin.stages.calibrate import run_calibrate
    from deeprubin.stages.evaluate import run_evaluate
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.predict import run_predict
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.train import run_train

    base = compose_task("toy", [], toy_conf).paths
    cfg = compose_task("toy", [f"paths.{k}={tmp_path / v}" for k, v in base.items() if k != "train_inputs"],
                       toy_conf)
    assert run_ingest(cfg) == {"n_objects": 80}
    assert run_preprocess(cfg) == {"n_examples": 80}
    run_split(cfg)
    summary = run_train(cfg)
    assert summary["objective"] == summary["val_accuracy"] > 0.8  # the task's OBJECTIVE, for sweepers
    calibration = run_calibrate(cfg)
    assert calibration["default_method"] == "temperature" and calibration["temperature"] > 0
    assert (tmp_path / "models/toy/calibration.json").exists()
    assert (tmp_path / "reports/toy/calibration/figures/reliability_width.png").exists()
    metrics = run_evaluate(cfg)
    assert metrics["accuracy"] > metrics["baseline_accuracy"]
    assert (tmp_path / "reports/toy/evaluation/predictions.csv").exists()
    cfg.predict.output = str(tmp_path / "predictions" / "toy.parquet")
    assert run_predict(cfg) == {"n_objects": 80}
    table = io.read_parquet(tmp_path / "predictions" / "toy.parquet")
    assert set(table["predicted"]) <= {"a", "b"} and table[["prob_a", "prob_b"]].sum(1).round(6).eq(1).all()
    assert not (tmp_path / "data/raw/transients").exists()  # only the toy task's paths were written


def test_a_task_without_steps_is_named(toy_conf, tmp_path):
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.tasks import TaskError

    cfg = compose_task("toy", [f"paths.raw={tmp_path}/raw"], toy_conf)
    with pytest.raises(TaskError, match=r"task 'toy': no module deeprubin\.tasks\.toy\.steps"):
        run_ingest(cfg)
    assert not (tmp_path / "raw").exists()


def test_incomplete_task_packages_are_named(toy_package):
    from deeprubin.tasks import TaskError, load_task

    (toy_package / "steps" / "preprocess.py").write_text("def prepare(cfg):\n    return {}\n")
    (toy_package / "steps" / "evaluate.py").unlink()
    task = load_task("toy")
    with pytest.raises(TaskError, match=r"deeprubin\.tasks\.toy\.steps\.preprocess defines no function "
                                        r"preprocess\(cfg\)"):
        task.step("preprocess")
    with pytest.raises(TaskError, match=r"no module deeprubin\.tasks\.toy\.steps\.evaluate"):
        task.step("evaluate")
    with pytest.raises(TaskError, match=r"'report' is not a step"):
        task.step("report")
    with pytest.raises(TaskError, match=r"'toy\.x' is not a task package name"):
        load_task("toy.x")
    import sys as _sys

    (toy_package / "steps" / "__init__.py").write_text("")
    for name in [m for m in _sys.modules if m.startswith("deeprubin.tasks.toy")]:
        del _sys.modules[name]
    with pytest.raises(TaskError, match=r"does not set OBJECTIVE"):
        load_task("toy")
