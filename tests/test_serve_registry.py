"""Registry promotion by alias (deeprubin.serve.promotion, .versions, the .registry command) and the server
following the champion (deeprubin.serve.reload), with a real local MLflow store (SQLite in tmp_path) and the
tiny pipeline's model next to a deliberately worse copy of it; last, the real server (uvicorn subprocess)
picking a promotion up without a restart."""
from __future__ import annotations

import re
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_env
from deeprubin.core import io
from deeprubin.core.config import ConfigError, compose_params
from deeprubin.serve.promotion import (EVAL_PREFIX, PromotionError, Request, accepts, evaluate, load_evaluation,
                                       promote)
from deeprubin.serve.settings import EvaluationSettings, settings_from
from deeprubin.serve.versions import (CALIBRATION_TAG, CHALLENGER, CHAMPION, CHECKPOINT_TAG, NO_CALIBRATION,
                                      RegistryError, aliases, cache_version, registry_client)

NAME = "transients-classifier"
METRIC = "macro_f1"
#: The class the worse copy predicts for every object.
CONSTANT_CLASS = 0
#: The e2e server's alias polling period, and how many periods the test waits for a promotion.
POLL_S, POLL_PERIODS = 0.5, 60


# ---------------------------------------------------------------- the rule and the settings

@pytest.mark.parametrize("candidate,champion,tolerance,accepted", [
    (0.2, None, 0.0, True),        # no champion: the first promotion is accepted
    (0.2, None, 0.5, True),
    (0.1, 0.2, 0.0, False),        # worse
    (0.2, 0.2, 0.0, True),         # not worse
    (0.3, 0.2, 0.0, True),         # better
    (0.25, 0.2, 0.1, False),       # better, by less than min_improvement
    (0.15, 0.2, -0.1, True),       # a negative tolerance accepts a small loss
])
def test_the_promotion_rule(candidate, champion, tolerance, accepted):
    assert accepts(candidate, champion, tolerance) is accepted


def test_registry_settings():
    s = settings_from(compose_params())
    assert s.models["transients"].source == "file" and s.models["transients"].registered_model == NAME
    assert s.registry.metric == METRIC and s.registry.min_improvement == 0.0 and s.registry.poll_s > 0
    evaluation = s.registry.evaluation["transients"]
    assert evaluation.split == "test" and evaluation.manifest == Path("data/splits/transients/manifest.parquet")
    s = settings_from(compose_params(["serve.models.transients.source=registry"]))
    assert s.models["transients"].source == "registry"


@pytest.mark.parametrize("override,key", [
    ("serve.models.transients.source=mlflow", "serve.models.transients.source"),
    ("serve.registry.metric=auc", "serve.registry.metric"),
    ("serve.registry.min_improvement=lots", "serve.registry.min_improvement"),
    ("serve.registry.poll_s=0", "serve.registry.poll_s"),
    ("+serve.registry.evaluation.transients.splits=test", "serve.registry.evaluation.transients.splits"),
])
def test_bad_registry_settings_name_the_key(override, key):
    with pytest.raises(ConfigError, match=re.escape(f"'{key}")):
        settings_from(compose_params([override]))


# ---------------------------------------------------------------- a real store, real models

def constant_copy(checkpoint: Path, out: Path, class_index: int) -> Path:
    """A deliberately worse model: ``checkpoint`` with the weights of every output layer zeroed and its bias
    favouring one class, so that it predicts that class for every object; written by the project's
    checkpoint writer."""
    import torch

    from deeprubin.core.checkpoint import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear) and layer.out_features == len(meta["classes"]):
                layer.weight.zero_()
                layer.bias.zero_()
                layer.bias[class_index] = 1.0
    return save_checkpoint(out, model, model_config=meta["model_config"], classes=meta["classes"],
                           bands=meta["bands"], n_inputs=meta["n_inputs"], config=meta["config"],
                           metadata=meta["metadata"])


@pytest.fixture(scope="module")
def case(tiny_pipeline, tmp_path_factory):
    """The tiny model (with its calibrator), a worse copy, the evaluation set and both scores on it."""
    from deeprubin.core import numerics

    cfg, _ = tiny_pipeline
    good = Path(cfg.paths.models) / "model.ckpt"
    worse = constant_copy(good, tmp_path_factory.mktemp("worse") / "model.ckpt", CONSTANT_CLASS)
    raw = Path(cfg.paths.raw)
    evaluation = EvaluationSettings("test", Path(cfg.paths.splits) / "manifest.parquet", raw / "lightcurves.parquet",
                                    raw / "objects.parquet")
    numerics.apply_threads()
    data = load_evaluation("transients", evaluation)
    calibration = good.parent / "calibration.json"
    scores = {"good": evaluate(good, calibration, data)[METRIC], "worse": evaluate(worse, None, data)[METRIC]}
    assert scores["worse"] < scores["good"], scores                      # the premise: really worse
    return SimpleNamespace(cfg=cfg, good=good, worse=worse, calibration=calibration, evaluation=evaluation,
                           data=data, scores=scores)


def new_store(root: Path, checkpoints: list[Path]):
    """``(tracking URI, client)`` of a new SQLite store under ``root`` with one registered version per
    checkpoint (versions 1, 2, ... in order), each logged by a run as the train stage does."""
    from deeprubin.core.registry import log_classifier

    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = registry_client(uri)
    experiment = client.create_experiment("serve-registry", artifact_location=str(root / "artifacts"))
    for checkpoint in checkpoints:
        run_id = client.create_run(experiment).info.run_id
        log_classifier(client, run_id, checkpoint, (4, 20), registered_name=NAME)
        client.set_terminated(run_id)
    return uri, client


def request(case, version: int, alias: str = CHAMPION, min_improvement: float = 0.0,
            calibration: str | None = None) -> Request:
    return Request(task="transients", name=NAME, version=str(version), alias=alias, metric=METRIC,
                   min_improvement=min_improvement, evaluation=case.evaluation, calibration=calibration,
                   default=case.calibration)


def tags(client, version: int) -> dict:
    return dict(client.get_model_version(NAME, str(version)).tags)


def cli_overrides(case, uri: str, *extra: str) -> list[str]:
    e = case.evaluation
    return [f"serve.registry.tracking_uri={uri}", f"serve.registry.evaluation.transients.manifest={e.manifest}",
            f"serve.registry.evaluation.transients.lightcurves={e.lightcurves}",
            f"serve.registry.evaluation.transients.objects={e.objects}",
            f"serve.models.transients.checkpoint={case.good}", *extra]


def test_first_promotion_then_a_better_one_accepted_and_a_worse_one_refused(case, tmp_path, capsys, monkeypatch):
    from deeprubin.serve import promotion
    from deeprubin.serve.registry import main

    uri, client = new_store(tmp_path, [case.worse, case.good, case.worse])
    first = promote(client, request(case, 1))
    assert first.accepted and "first promotion" in first.message and first.score == case.scores["worse"]
    # version 1 does not fit the config's calibrator (another checkpoint's): raw softmax, fixed as such
    assert tags(client, 1)[CALIBRATION_TAG] == NO_CALIBRATION
    better = promote(client, request(case, 2))
    assert better.accepted and (better.champion, better.champion_score) == ("1", case.scores["worse"])
    assert aliases(client, NAME) == {CHAMPION: "2"}
    # version 2 got the calibrate stage's file (bound to its checkpoint), logged into the version; its score,
    # with that calibrator, is the predict path's and is recorded as a tag that reads back exactly
    recorded = tags(client, 2)
    assert recorded[CALIBRATION_TAG] == io.file_sha256(case.calibration)
    assert recorded[CHECKPOINT_TAG] == io.file_sha256(case.good)
    assert float(recorded[f"{EVAL_PREFIX}{METRIC}"]) == better.score == case.scores["good"]
    local = cache_version(client, NAME, "2", tmp_path / "cache")
    assert io.file_sha256(local.calibration) == io.file_sha256(case.calibration)

    # the command refuses a worse candidate, naming both versions and scores; the champion is not scored again
    scored = []
    monkeypatch.setattr(promotion, "evaluate", lambda *a: scored.append(a) or evaluate(*a))
    assert main(["promote", "--task", "transients", "--version", "3", *cli_overrides(case, uri)]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "version 3" in err and "version 2" in err, err
    assert f"{case.scores['worse']:.6f}" in err and f"{case.scores['good']:.6f}" in err, err
    assert len(scored) == 1 and aliases(client, NAME) == {CHAMPION: "2"}

    assert main(["status", "--task", "transients", *cli_overrides(case, uri)]) == 0
    table = pd.read_csv(StringIO(capsys.readouterr().out), sep="\t", dtype=str)
    assert table["aliases"].tolist() == ["-", CHAMPION, "-"]
    assert table["evaluation_set"].tolist() == ["current"] * 3
    assert table[METRIC].astype(float).tolist() == [case.scores["worse"], case.scores["good"], case.scores["worse"]]


def test_min_improvement(case, tmp_path):
    _, client = new_store(tmp_path, [case.worse, case.good, case.worse])
    gain = case.scores["good"] - case.scores["worse"]
    assert promote(client, request(case, 1)).accepted
    refused = promote(client, request(case, 2, min_improvement=gain + 0.01))
    assert not refused.accepted and "min_improvement" in refused.message and aliases(client, NAME)[CHAMPION] == "1"
    assert promote(client, request(case, 2)).accepted
    assert not promote(client, request(case, 3, min_improvement=-(gain - 0.01))).accepted
    assert promote(client, request(case, 3, min_improvement=-(gain + 0.01))).accepted     # a tolerated loss
    assert aliases(client, NAME)[CHAMPION] == "3"


def test_a_challenger_is_not_gated_and_a_calibrator_is_fixed_once(case, tmp_path):
    from deeprubin.core.calibration import CalibrationMismatchError

    _, client = new_store(tmp_path, [case.good, case.worse, case.worse])
    assert promote(client, request(case, 1)).accepted
    trial = promote(client, request(case, 2, alias=CHALLENGER))
    assert trial.accepted and aliases(client, NAME) == {CHAMPION: "1", CHALLENGER: "2"}
    with pytest.raises(PromotionError, match="version 2: its calibrator is fixed"):
        promote(client, request(case, 2, calibration=str(case.calibration)))
    with pytest.raises(CalibrationMismatchError, match="fitted for another checkpoint"):
        promote(client, request(case, 3, alias=CHALLENGER, calibration=str(case.calibration)))
    assert not promote(client, request(case, 2)).accepted                     # worse: stays the challenger
    assert aliases(client, NAME) == {CHAMPION: "1", CHALLENGER: "2"}


def test_a_download_is_verified_against_the_registry(case, tmp_path):
    _, client = new_store(tmp_path, [case.good])
    with pytest.raises(RegistryError, match="has no version 7"):
        promote(client, request(case, 7))
    assert promote(client, request(case, 1)).accepted
    first = cache_version(client, NAME, "1", tmp_path / "cache")
    assert cache_version(client, NAME, "1", tmp_path / "cache").folder == first.folder          # one per content
    client.set_model_version_tag(NAME, "1", CHECKPOINT_TAG, "0" * 64)
    with pytest.raises(RegistryError, match=r"version 1: model.ckpt has sha256 .* tag 'deeprubin.checkpoint_sha256'"):
        cache_version(client, NAME, "1", tmp_path / "cache")
    client.set_model_version_tag(NAME, "1", CHECKPOINT_TAG, first.sha256)
    client.set_model_version_tag(NAME, "1", CALIBRATION_TAG, "1" * 64)
    with pytest.raises(RegistryError, match="calibration.json does not match tag"):
        cache_version(client, NAME, "1", tmp_path / "cache")


def test_the_watcher_swaps_in_a_promoted_champion(case, tmp_path):
    from deeprubin.serve.metrics import Metrics
    from deeprubin.serve.reload import ChampionWatcher, load_champion
    from deeprubin.serve.settings import ModelSource, RegistrySettings
    from deeprubin.tasks.transients.evaluation.inference import Predictor
    from test_serve import parse_metrics

    uri, client = new_store(tmp_path, [case.worse, case.good])
    source = ModelSource(case.good, "auto", "registry", NAME)
    settings = RegistrySettings(uri, tmp_path / "cache", POLL_S, METRIC, 0.0, {"transients": case.evaluation})
    with pytest.raises(RegistryError, match="no 'champion' alias"):
        load_champion(client, "transients", source, settings, None)
    assert promote(client, request(case, 1)).accepted
    models = {"transients": load_champion(client, "transients", source, settings, None)}
    metrics = Metrics([1.0])
    watcher = ChampionWatcher(client, models, {"transients": source}, settings, {"transients": None}, metrics)
    old = models["transients"]
    assert old.registry["version"] == "1" and watcher.check() == {}
    assert promote(client, request(case, 2)).accepted
    assert watcher.check() == {"transients": "2"} and watcher.check() == {}
    new = models["transients"]
    assert new is not old and new.describe()["registry"] == {"name": NAME, "version": "2", "alias": CHAMPION,
                                                             "uri": f"models:/{NAME}/2"}
    assert new.sha256 == io.file_sha256(case.good) and Path(new.calibration_file).parent == new.checkpoint.parent
    lc, objects = case.data.lightcurves, case.data.objects
    expected = Predictor(case.good, calibration=case.calibration).probabilities(lc, objects=objects)[1]
    np.testing.assert_array_equal(new.predictor.probabilities(lc, objects=objects)[1], expected)
    assert old.predictor.probabilities(lc, objects=objects)[1].argmax(1).tolist() == [CONSTANT_CLASS] * len(objects)
    text = parse_metrics(metrics.render())
    assert text[f'deeprubin_serve_model_registry_version{{task="transients",model="{NAME}",alias="champion"}}'] == 2
    assert text['deeprubin_serve_model_reloads_total{task="transients",outcome="loaded"}'] == 1
    # a champion that cannot be verified is not swapped in; the server keeps the model it has
    client.set_model_version_tag(NAME, "1", CHECKPOINT_TAG, "0" * 64)
    client.set_registered_model_alias(NAME, CHAMPION, "1")
    assert watcher.check() == {} and watcher.check() == {} and models["transients"] is new
    text = parse_metrics(metrics.render())
    assert text['deeprubin_serve_model_reloads_total{task="transients",outcome="failed"}'] == 1


# ---------------------------------------------------------------- the real server follows a promotion

@pytest.mark.e2e
def test_the_server_serves_the_champion_and_picks_up_a_promotion(case, tmp_path):
    from deeprubin.core import numerics
    from deeprubin.core.quality import check_quality_config, quality_table, unusable_mask
    from deeprubin.core.schema import validate_tables
    from deeprubin.tasks.transients.evaluation.inference import UNLABELED, Predictor
    from test_serve import parse_metrics
    from test_serve_e2e import _json_rows, request as http, start_server, tokens_cli

    uri, client = new_store(tmp_path, [case.worse, case.good])
    assert promote(client, request(case, 1)).accepted
    store = tmp_path / "tokens.sqlite"
    token = tokens_cli(store, "create", "--name", "scorer", "--unlimited")
    proc, url = start_server(tmp_path, store, case.good, "serve.models.transients.source=registry",
                             f"serve.registry.tracking_uri={uri}", f"serve.registry.cache={tmp_path / 'cache'}",
                             f"serve.registry.poll_s={POLL_S}")
    try:
        (entry,) = http(f"{url}/v1/models", token=token)[2]["models"]
        assert entry["registry"]["version"] == "1" and entry["sha256"] == io.file_sha256(case.worse)
        proc_cli = subprocess.run([sys.executable, "-m", "deeprubin.serve.registry", "promote", "--task", "transients",
                                   "--version", "2", *cli_overrides(case, uri)],
                                  cwd=tmp_path, env=tiny_env(), capture_output=True, text=True)
        assert proc_cli.returncode == 0, proc_cli.stderr[-4000:]
        assert "version 2 is now 'champion'" in proc_cli.stdout
        for _ in range(POLL_PERIODS):                         # no restart: the server follows the alias
            (entry,) = http(f"{url}/v1/models", token=token)[2]["models"]
            if entry["registry"]["version"] == "2":
                break
            time.sleep(POLL_S)
        assert entry["registry"]["version"] == "2" and entry["sha256"] == io.file_sha256(case.good), entry
        assert entry["calibration"]["file"].endswith("calibration.json")
        metrics = parse_metrics(http(f"{url}/metrics")[2])
        assert metrics[f'deeprubin_serve_model_registry_version{{task="transients",model="{NAME}",'
                       'alias="champion"}'] == 2
        assert metrics['deeprubin_serve_model_info{task="transients",model="transients-classifier",'
                       f'version="{entry["version"]}"}}'] == 1

        # predictions are the new checkpoint's (with its calibrator) through the predict path, bit for bit
        cfg = case.cfg
        raw_lc = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
        raw_obj = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet")
        quality = check_quality_config(cfg.quality)
        flagged = quality_table(raw_lc, quality, raw_obj)
        ids = flagged.loc[~unusable_mask(flagged, quality["unusable"]), "object_id"].astype(str).tolist()[:4]
        lc = raw_lc[raw_lc["object_id"].isin(ids)].reset_index(drop=True)
        meta = raw_obj.loc[raw_obj["object_id"].isin(ids), ["object_id", "redshift"]].reset_index(drop=True)
        status, _, body = http(f"{url}/v1/predict/transients", "POST",
                               {"lightcurves": _json_rows(lc), "objects": _json_rows(meta)}, token)
        assert status == 200 and body["model"]["version"] == entry["version"], body
        results = {r["object_id"]: r for r in body["results"]}
        served = np.array([[results[o]["probabilities"][c] for c in body["classes"]] for o in ids])
        objects = meta.assign(label=UNLABELED, group_id=meta["object_id"], source="serve")
        v_lc, v_obj, _ = validate_tables(lc, objects, classes=[*body["classes"], UNLABELED], on_invalid="drop")
        numerics.apply_threads()
        grid, p = Predictor(case.good, calibration=case.calibration).probabilities(v_lc, objects=v_obj)
        np.testing.assert_array_equal(served, p[[list(grid.object_ids.astype(str)).index(o) for o in ids]])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
