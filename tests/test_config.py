"""conf/ -> params.yaml: one source of truth, and every stage reads params.yaml."""

import pytest
import yaml
from conftest import REPO_ROOT
from omegaconf import OmegaConf

from deeprubin.core.config import ConfigError, compose_params, require, write_params


def test_conf_composes_to_committed_params_yaml():
    composed = OmegaConf.to_container(compose_params([]))
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert composed == committed, "params.yaml is stale: run `make params` after editing conf/"


def test_overrides_change_params(tmp_path):
    path = write_params(tmp_path / "params.yaml", ["model=gru", "tasks.transients.trainer.max_epochs=3",
                                                   "experiment=tiny"])
    params = yaml.safe_load(path.read_text())["tasks"]["transients"]
    assert params["model"]["_target_"].endswith("GRUClassifier")
    assert params["trainer"]["max_epochs"] == 3  # command-line overrides beat the experiment
    assert params["trainer"]["batch_size"] == 16  # from experiment=tiny
    assert params["source"]["n_objects"] == 90
    assert params["paths"]["raw"] == "data/raw/transients"


def test_dvc_stages_read_params_yaml():
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    hydra_args = dvc["vars"][0]["hydra_args"]
    assert "--config-name params" in hydra_args and "--config-dir ." in hydra_args
    for name, stage in dvc["stages"].items():
        stage = stage.get("do", stage)  # a generic stage: one body for every task (foreach)
        assert "${hydra_args}" in stage["cmd"], name
        assert stage.get("params"), f"stage {name} declares no params"
        code = f"stages/{name}.py"
        assert any(code in d for d in stage["deps"]), f"stage {name} does not depend on its code"


def test_train_declares_every_config_node_its_checkpoint_saves():
    """A node saved in model.ckpt but not a param of train would change the checkpoint's bytes
    without DVC rerunning train (the lock would go stale on a config edit)."""
    from deeprubin.core.checkpoint import SAVED_CONFIG

    params = set(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]["params"])
    shared = {"seed", "data_seed"}
    wanted = {key if key in shared else f"tasks.${{key}}.{key}" for key in SAVED_CONFIG if key != "task_name"}
    assert wanted <= params, f"train does not declare {sorted(wanted - params)}"


def test_the_checkpoint_saves_only_its_nodes(tmp_path):
    import pandas as pd
    import torch

    from deeprubin.core.checkpoint import SAVED_CONFIG, write_model_outputs

    config = {key: {"k": 1} for key in SAVED_CONFIG} | {"evaluate": {"n_boot": 5}, "real": {"root": "x"}}
    write_model_outputs(tmp_path, torch.nn.Linear(1, 1), config=config, history=pd.DataFrame({"epoch": [0]}),
                        model_config={}, classes=["a"], bands=["g"], n_inputs=1, metadata={})
    saved = torch.load(tmp_path / "model.ckpt", weights_only=True)["config"]
    assert set(saved) == set(SAVED_CONFIG)
    assert set(yaml.safe_load((tmp_path / "config.yaml").read_text())) == set(SAVED_CONFIG)


def test_dvc_config_enables_hydra():
    text = (REPO_ROOT / ".dvc" / "config").read_text()
    assert "[hydra]" in text and "enabled = true" in text


def test_require_messages():
    cfg = OmegaConf.create({"a": {"b": 0, "c": "x"}})
    with pytest.raises(ConfigError, match="'a.b' must be > 0"):
        require(cfg, "a.b", positive=True)
    with pytest.raises(ConfigError, match="'a.c' must be one of"):
        require(cfg, "a.c", choices=["y"])
    with pytest.raises(ConfigError, match="'a.d' is missing"):
        require(cfg, "a.d")
    with pytest.raises(ConfigError, match="must be >= 1"):
        require({"k": 0}, "k", at_least=1)


def test_notebooks_are_committed_as_jupytext_text_without_outputs():
    import json
    import subprocess

    import jupytext

    texts = sorted((REPO_ROOT / "notebooks").glob("*.py"))
    assert {p.stem for p in texts} >= {"eda", "gp_preprocessing"}
    for path in texts:
        nb = jupytext.read(path)
        assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent", path.name
        assert any(cell.cell_type == "code" for cell in nb.cells)
    tracked = subprocess.run(["git", "ls-files", "notebooks"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    for name in tracked.split():
        if name.endswith(".ipynb"):  # a paired copy, if one is ever committed, must be stripped
            nb = json.loads((REPO_ROOT / name).read_text())
            assert not any(cell.get("outputs") for cell in nb["cells"]), f"{name}: strip outputs before committing"


def test_unknown_model_and_missing_key_fail_at_composition():
    """Bad sweep or model choices fail before any training, naming the key."""
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="model/resnet"):
        compose_params(["model=resnet"])
    with pytest.raises(ConfigCompositionException, match="model.n_heads"):
        compose_params(["tasks.transients.model.n_heads=4"])  # the default (fusion) model has no attention heads
