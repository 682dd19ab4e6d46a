"""The task interface: a task is a package, a conf file and a line in the task list.

A toy third task (a config node ``tasks.toy`` with its paths and split settings, no code of
its own) goes through the generic stages: the split entry point serves it from its view of the
config, the schema check accepts a task without a schema module, and DVC's foreach gives it a
``split@toy`` stage of its own, with its own paths.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from deeprubin.core import io
from deeprubin.core.config import (ConfigError, compose_params, compose_task, task_names, task_overrides,
                                   task_view, write_params)
from deeprubin.core.config_schema import check_schema
from deeprubin.core.entry import stage_config
from deeprubin.core.split import LeakageError
from deeprubin.stages.split import run_split

REPO_ROOT = Path(__file__).resolve().parents[1]

TOY = """# @package tasks.toy
task:
  name: toy
paths:
  raw: data/raw/toy
  splits: data/splits/toy
split:
  name: grouped
  group_column: host
  fractions: {train: 0.5, val: 0.25, test: 0.25}
"""


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
    assert task_names(cfg) == ["transients", "transits", "toy"]
    check_schema(cfg)  # the toy task has no schema module: its nodes are not checked, nothing fails
    view = task_view(cfg, "toy")
    assert view.task_name == "toy" and view.paths.raw == "data/raw/toy"
    assert view.paths.figures == cfg.paths.figures and view.seed == cfg.seed  # the shared keys
    assert "model" not in view and "tasks" not in view


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
    with pytest.raises(ConfigError, match="config key 'task_name' is missing"):
        stage_config(cfg, generic=True)
    cfg.task_name = "stellar"
    with pytest.raises(ConfigError, match=r"'task_name' = 'stellar' is not a task of this config; "
                                          r"known: \['transients', 'transits', 'toy'\]"):
        stage_config(cfg, generic=True)
    cfg.task_name = "toy"
    assert stage_config(cfg, generic=True).paths.splits == "data/splits/toy"
    assert stage_config(cfg).tasks.toy.paths.splits == "data/splits/toy"  # index/results read the whole


def test_short_keys_go_to_the_task(toy_conf):
    assert task_overrides("toy", ["split.group_column=x", "seed=3", "paths.figures=f", "paths.raw=r",
                                  "+split.extra=1", "tasks.transits.seed=1"], toy_conf) == [
        "tasks.toy.split.group_column=x", "seed=3", "paths.figures=f", "tasks.toy.paths.raw=r",
        "+tasks.toy.split.extra=1", "tasks.transits.seed=1"]
    with pytest.raises(ConfigError, match="'stellar' is not a task"):
        task_overrides("stellar", ["split.x=1"], toy_conf)


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
    assert not any(name.startswith("transits_split") for name in names)  # no per-task copy of the stage
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stage = next(s for s in dvc_repo.index.stages if s.name == "split@toy")
        assert "task_name=toy" in stage.cmd
        assert [str(o.def_path) for o in stage.outs] == ["data/splits/toy/manifest.parquet",
                                                         "data/splits/toy/split_report.json"]
        assert "data/raw/toy/objects.parquet" in [str(d.def_path) for d in stage.deps]
