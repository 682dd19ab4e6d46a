"""The anomaly layer: the held-out simulator classes, the scorers, the stage on the tiny pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deeprubin.core.config import ConfigError
from deeprubin.sources.simulate import CLASS_MODELS, simulate_survey
from deeprubin.sources.simulate.novel import NOVEL_MODELS, paczynski
from deeprubin.sources.simulate.population import PopulationConfig
from deeprubin.tasks.transients.anomaly.scorers import AnomalyModel, novelty_metrics
from deeprubin.tasks.transients.evaluation.predict import representation, representation_array

BANDS = {"g": 0, "r": 1}


def _params(label, n=20, seed=0):
    return NOVEL_MODELS[label].sample_params(np.random.default_rng(seed), n, PopulationConfig())


def _flux(label, params, t, band, source=0):
    t = np.asarray(t, dtype=float)
    return NOVEL_MODELS[label].true_flux(params, np.full(len(t), source), t, np.full(len(t), BANDS[band]),
                                         np.random.default_rng(0))


# --------------------------------------------------------------------- held-out classes
def test_novel_classes_are_registered_but_in_no_training_survey(base_cfg):
    assert set(NOVEL_MODELS) <= set(CLASS_MODELS)
    assert not set(NOVEL_MODELS) & set(base_cfg.task.classes)


def test_microlensing_is_achromatic_and_symmetric():
    p = _params("uLens")
    p["truth_peak_mjd"] = 58500.0
    dt = np.array([-30.0, -10.0, -2.0, 0.0, 2.0, 10.0, 30.0])
    g, r = _flux("uLens", p, 58500.0 + dt, "g"), _flux("uLens", p, 58500.0 + dt, "r")
    np.testing.assert_allclose(g / g[0], r / r[0], rtol=1e-12)          # achromatic
    np.testing.assert_allclose(g, g[::-1], rtol=1e-12)                  # symmetric about t0
    assert g[3] == g.max()
    assert paczynski(np.array([1e9]))[0] == pytest.approx(1.0)


def test_tde_keeps_its_colour_and_declines_as_t_to_minus_five_thirds():
    p = _params("TDE")
    p["truth_peak_mjd"] = 58500.0
    t = 58500.0 + np.array([-20.0, 0.0, 50.0, 200.0])
    colour = -2.5 * np.log10(_flux("TDE", p, t, "g") / _flux("TDE", p, t, "r"))
    np.testing.assert_allclose(colour, colour[0])
    t0 = p["t0"].iloc[0]
    late = _flux("TDE", p, 58500.0 + np.array([10 * t0, 100 * t0]), "r")
    assert np.log(late[0] / late[1]) / np.log((100 * t0 + t0) / (10 * t0 + t0)) == pytest.approx(5 / 3, rel=1e-9)


def test_kilonova_fades_in_days_and_reddens():
    p = _params("KN")
    p["truth_peak_mjd"] = 58500.0
    t = 58500.0 + np.array([0.0, 3.0])
    g, r = _flux("KN", p, t, "g"), _flux("KN", p, t, "r")
    assert g[1] / g[0] < r[1] / r[0] < 0.5               # fades within days, g faster than r
    assert -2.5 * np.log10(g[1] / r[1]) > -2.5 * np.log10(g[0] / r[0])     # redder later


def test_unphysical_boxes_are_achromatic_with_a_drifting_period():
    p = _params("Unphysical", n=10)
    t = np.linspace(58300.0, 58665.0, 20001)
    g, r = _flux("Unphysical", p, t, "g"), _flux("Unphysical", p, t, "r")
    levels = np.unique(np.round(g / g.min(), 9))
    assert len(levels) == 2                                   # box-shaped: two flux levels only
    np.testing.assert_allclose(g / g[0], r / r[0])             # achromatic
    high = g > g.min() * (1 + 1e-9) if p["factor"].iloc[0] > 1 else g < g.max() * (1 - 1e-9)
    starts = t[1:][np.diff(high.astype(int)) == 1]
    gaps = np.diff(starts)
    assert abs(gaps[-1] / gaps[0] - 1) > 0.05                  # the period drifts


def test_simulated_novel_survey():
    from deeprubin.core.config import compose_task
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(compose_task("transients").source, resolve=True)
    node["n_objects"] = 16
    lc, objects = simulate_survey(node, seed=3, classes=["uLens", "Unphysical"], bands=["g", "r"])
    assert set(objects["label"]) == {"uLens", "Unphysical"}
    assert (lc.groupby("object_id")["detected"].sum() >= 3).all()


# --------------------------------------------------------------------------- scorers
def _blobs(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    feats = pd.DataFrame(rng.normal(shift, 1.0, (n, 5)), columns=[f"f{i}" for i in range(5)])
    emb = rng.normal(shift, 1.0, (n, 8))
    p = rng.dirichlet(np.ones(3) * (0.3 if shift == 0 else 3.0), n)
    return feats, emb, p


def _fit(**kw):
    f, e, p = _blobs(200, 0)
    fv, ev, pv = _blobs(60, 1)
    return AnomalyModel.fit(f, e, val_features=fv, val_emb=ev, val_probabilities=pv,
                            combine=kw.pop("combine", ["iforest", "knn", "msp"]), **kw)


def test_scorers_rank_outliers_above_inliers_and_round_trip(tmp_path):
    model = _fit(k=5, n_estimators=100)
    fin, ein, pin = _blobs(100, 2)
    fout, eout, pout = _blobs(20, 3, shift=6.0)
    fin.iloc[0, 0] = np.nan                      # a missing value is imputed, not an error
    scores = model.score(pd.concat([fin, fout], ignore_index=True), np.vstack([ein, eout]), np.vstack([pin, pout]))
    is_out = np.r_[np.zeros(100, bool), np.ones(20, bool)]
    m = novelty_metrics(scores.assign(label=np.where(is_out, "odd", "known")), is_out,
                        np.where(is_out, "odd", "known"), ["iforest", "knn", "combined"], 0.1)
    assert m["iforest"]["auroc"]["odd"] > 0.95 and m["knn"]["auroc"]["odd"] > 0.95
    assert m["combined"]["top_precision"] == 1.0
    assert scores["combined"].between(0, 1).all()
    model.save(tmp_path, score="knn")
    again = AnomalyModel.load(tmp_path)
    assert again.default_score == "knn"
    pd.testing.assert_frame_equal(again.score(pd.concat([fin, fout], ignore_index=True), np.vstack([ein, eout]),
                                              np.vstack([pin, pout])), scores)


def test_anomaly_model_errors(tmp_path):
    with pytest.raises(ValueError, match="combine"):
        _fit(combine=["telepathy"])
    f, e, p = _blobs(5, 0)
    with pytest.raises(ValueError, match="more than k"):
        AnomalyModel.fit(f, e, val_features=f, val_emb=e, val_probabilities=p, combine=["knn"], k=10)
    model = _fit(k=5, n_estimators=20)
    fin, ein, pin = _blobs(4, 2)
    with pytest.raises(ValueError, match="f4"):
        model.score(fin.drop(columns="f4"), ein, pin)
    with pytest.raises(ValueError, match="width"):
        model.score(fin, ein[:, :3], pin)
    with pytest.raises(FileNotFoundError, match="anomaly stage"):
        AnomalyModel.load(tmp_path / "none")
    model.save(tmp_path)
    meta = json.loads((tmp_path / "anomaly.json").read_text())
    (tmp_path / "anomaly.json").write_text(json.dumps({**meta, "format": "pickle"}))
    with pytest.raises(ValueError, match="format"):
        AnomalyModel.load(tmp_path)


def test_representation_reads_each_members_last_layer():
    from deeprubin.core.models.ensemble import DeepEnsemble

    torch.manual_seed(0)
    members = [torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3)) for _ in range(2)]
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    ensemble = DeepEnsemble(members).eval()
    with torch.no_grad(), representation(ensemble) as captured:
        for i in range(0, len(x), 3):                  # batches are concatenated in order
            ensemble(torch.from_numpy(x[i:i + 3]))
    e = representation_array(captured)
    assert e.shape == (7, 12)
    np.testing.assert_allclose(np.linalg.norm(e[:, :6], axis=1), 1.0)
    hidden = torch.relu(members[1][0](torch.from_numpy(x))).detach().numpy()
    np.testing.assert_allclose(e[:, 6:], hidden / np.linalg.norm(hidden, axis=1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="no linear layer"), representation(torch.nn.ReLU()):
        pass


# --------------------------------------------------------------------- the stage, tiny
def test_anomaly_stage_on_the_tiny_pipeline(tiny_pipeline, tmp_path):
    from omegaconf import OmegaConf

    from deeprubin.tasks.transients.anomaly.evaluate import _score_source, run_anomaly

    cfg, _ = tiny_pipeline
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.paths.anomaly = str(tmp_path / "reports")
    cfg.paths.anomaly_model = str(tmp_path / "model")
    cfg.anomaly.novel.n_objects = 24
    cfg.anomaly.real = []
    cfg.anomaly.scorers.k = 5
    report = run_anomaly(cfg)
    assert set(report["auroc"]) == set(cfg.anomaly.novel.classes)
    assert report["score"] in report["validation_auroc_min"]
    assert report["validation_auroc_min"][report["score"]] == max(report["validation_auroc_min"].values())
    candidates = pd.read_csv(tmp_path / "reports" / "candidates.csv")
    assert candidates["score"].is_monotonic_decreasing and candidates["why"].notna().all()
    assert (tmp_path / "reports" / "figures" / "novelty_roc.png").exists()
    assert (tmp_path / "reports" / "figures" / "top_candidates.png").exists()

    # an injected unphysical signal: a constant star with 3-magnitude box flashes
    from deeprubin.tasks.transients.evaluation.inference import Predictor

    model = AnomalyModel.load(tmp_path / "model")
    predictor = Predictor(Path(cfg.paths.models) / "model.ckpt", calibration="auto")
    t = np.sort(np.random.default_rng(0).uniform(58300, 58500, 120))
    flux = np.where(np.mod(t, 9.0) < 1.5, 1600.0, 100.0)
    lc = pd.DataFrame({"object_id": "injected", "time": t, "band": np.where(np.arange(120) % 2, "g", "r"),
                       "flux": flux, "flux_err": 2.0, "detected": True})
    injected = _score_source(predictor, model, lc)
    known = pd.read_csv(tmp_path / "reports" / "scores.csv").query("sample == 'test'")
    assert injected["iforest"].iloc[0] > known["iforest"].quantile(0.95)

    # the stream reports the stage's chosen score for each alert, as scoring its light curve directly
    from deeprubin.core import io
    from deeprubin.stream.classifier import Classifier, StreamSettings, run_stream
    from deeprubin.stream.simulate import write_stream
    from deeprubin.stream.state import StateStore
    from deeprubin.stream.transports import ReplayTransport

    raw = io.read_parquet(Path(cfg.paths.raw) / "lightcurves.parquet")
    objects = io.read_parquet(Path(cfg.paths.raw) / "objects.parquet").head(2)
    raw = raw[raw["object_id"].isin(objects["object_id"])]
    write_stream(raw, objects, tmp_path / "alerts", history_days=1000.0)
    with StateStore(tmp_path / "state.sqlite") as store:
        run_stream(ReplayTransport(tmp_path / "alerts"), store, Classifier(predictor, "v1", anomaly=model),
                   StreamSettings(batch_size=4, max_alerts=8, idle_stop_s=0.0))
        table = store.classifications()
    assert len(table) == 8 and table["anomaly_score"].notna().all()
    r = table.iloc[-1]
    cut = raw[(raw["object_id"] == r["object_id"]) & (raw["time"] <= r["time"] + 1e-9)].assign(object_id=r["alert_id"])
    direct = _score_source(predictor, model, cut)[model.default_score].iloc[0]
    assert r["anomaly_score"] == pytest.approx(direct, abs=1e-3)


def test_anomaly_config_errors(tiny_pipeline):
    from omegaconf import OmegaConf

    from deeprubin.tasks.transients.anomaly.evaluate import _check

    cfg, _ = tiny_pipeline
    for key, value, match in [("novel.classes", ["SNIa", "TDE"], "trained on"),
                              ("novel.classes", ["Dragon"], "simulator classes"),
                              ("score", "vibes", "anomaly.score"), ("top_fraction", 1.5, "top_fraction"),
                              ("novel.validation_seed_offset", 1000, "must differ")]:
        bad = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        OmegaConf.update(bad, f"anomaly.{key}", value)
        with pytest.raises(ConfigError, match=match):
            _check(bad)
