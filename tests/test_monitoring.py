"""Drift monitoring (issue 25, point 4): deeprubin.core.monitoring and the monitor stage, on tiny synthetic data."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from deeprubin.core import io
from deeprubin.core.config import ConfigError
from deeprubin.core.monitoring import (
    ScoredSample,
    adjust_p_values,
    check_config,
    ks_test,
    missing_fraction,
    monitor_window,
    population_stability_index,
    prediction_arrays,
    psi_from_fractions,
    quantile_edges,
)

CLASSES = ["SNIa", "SNII", "QSO", "RRLyrae"]

#: The shipped thresholds (conf/monitor/default.yaml), as the library sees them.
CONFIG = {
    "min_objects": 30,
    "features": {"columns": None, "exclude": [], "n_bins": 10, "epsilon": 1e-4, "psi_warn": 0.1, "psi_alert": 0.25,
                 "ks_alpha": 0.01, "ks_correction": "holm", "ks_min_statistic": 0.1, "missing_alert": 0.1,
                 "top_n": 20},
    "class_fractions": {"epsilon": 1e-4, "psi_alert": 0.25, "total_variation_alert": 0.15, "class_shift_alert": 0.1},
    "calibration": {"n_bins": 10, "scheme": "width", "ece_increase_alert": 0.05, "floor_draws": 20, "seed": 0},
    "performance": {"macro_f1_drop_alert": 0.05, "accuracy_drop_alert": 0.05},
}


def config(**changes) -> dict:
    """CONFIG with dotted keys changed: ``config(**{"features.n_bins": 5})``."""
    out = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node[p]
        node[last] = value
    return out


def features(n: int, seed: int, shift: float = 0.0, missing: float = 0.0) -> pd.DataFrame:
    """Two numeric features (``mag`` shifted by ``shift``; ``colour`` with ``missing`` of it NaN) and a text column."""
    rng = np.random.default_rng(seed)
    colour = rng.normal(0.5, 0.2, n)
    colour[rng.uniform(size=n) < missing] = np.nan
    return pd.DataFrame({"object_id": [f"o{seed}_{i}" for i in range(n)], "mag": rng.normal(19.0, 1.0, n) + shift,
                         "colour": colour, "survey": "ztf"})


def predictions(n: int, seed: int, mix=(0.25, 0.25, 0.25, 0.25), strength: float = 2.5,
                labels: str = "calibrated") -> pd.DataFrame:
    """A prediction table: true classes drawn from ``mix``, probabilities favouring them; ``labels``:
    ``calibrated`` (drawn from the probabilities themselves), ``random`` (unrelated), ``none``."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(CLASSES), size=n, p=np.asarray(mix) / np.sum(mix))
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), y] += strength
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"object_id": [f"p{seed}_{i}" for i in range(n)]})
    if labels == "calibrated":
        drawn = np.minimum((rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1), len(CLASSES) - 1)
        table["label"] = np.asarray(CLASSES)[drawn]
    elif labels == "random":
        table["label"] = np.asarray(CLASSES)[rng.integers(0, len(CLASSES), n)]
    table["predicted"] = np.asarray(CLASSES)[p.argmax(axis=1)]
    for j, c in enumerate(CLASSES):
        table[f"prob_{c}"] = p[:, j]
    return table


# ----------------------------------------------------------------------------- statistics
def test_psi_and_ks_identical_vs_shifted():
    rng = np.random.default_rng(0)
    reference, same, shifted = rng.normal(0, 1, 3000), rng.normal(0, 1, 1000), rng.normal(0.8, 1, 1000)
    assert population_stability_index(reference, reference, 10, 1e-4) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(reference, same, 10, 1e-4) < 0.1
    assert population_stability_index(reference, shifted, 10, 1e-4) > 0.25
    d_same, p_same = ks_test(reference, same)
    d_shift, p_shift = ks_test(reference, shifted)
    assert p_same > 0.01 and d_same < 0.1
    assert p_shift < 1e-10 and d_shift > 0.25
    # bins at the reference's deciles: each holds a tenth of it
    edges = quantile_edges(reference, 10)
    assert len(edges) == 9
    assert np.allclose(np.bincount(np.searchsorted(edges, reference, side="right")) / 3000, 0.1, atol=1e-3)


def test_psi_edge_cases():
    # repeated values merge bins; a constant reference gets two (below it, from it)
    assert len(quantile_edges(np.r_[np.zeros(90), np.ones(10)], 10)) == 2
    assert len(quantile_edges(np.full(50, 3.0), 10)) == 1
    assert population_stability_index(np.full(50, 3.0), np.full(40, 3.0), 10, 1e-4) == pytest.approx(0.0)
    # a window entirely outside the reference's range: finite (empty bins count as epsilon), and large
    far = population_stability_index(np.linspace(0, 1, 100), np.full(50, 9.0), 10, 1e-4)
    assert np.isfinite(far) and far > 5
    # symmetric, zero for equal fractions, epsilon floors an empty bin
    r, w = np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2])
    assert psi_from_fractions(r, w, 1e-4) == pytest.approx(psi_from_fractions(w, r, 1e-4))
    assert psi_from_fractions(r, r, 1e-4) == 0.0
    assert psi_from_fractions(r, w, 1e-2) < psi_from_fractions(r, w, 1e-6)
    with pytest.raises(ValueError, match="no finite window values"):
        population_stability_index([1.0, 2.0], [np.nan, np.inf], 10, 1e-4)
    with pytest.raises(ValueError, match="no finite reference values"):
        ks_test([np.nan], [1.0])
    with pytest.raises(ValueError, match="no reference values"):
        quantile_edges(np.array([]), 10)


def test_p_value_adjustments():
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust_p_values(p, "none").tolist() == p
    assert adjust_p_values(p, "bonferroni").tolist() == pytest.approx([0.04, 0.16, 0.12, 1.0])
    assert adjust_p_values(p, "holm").tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert adjust_p_values([], "holm").size == 0
    with pytest.raises(ValueError, match="method must be one of"):
        adjust_p_values(p, "fdr")


def test_nan_and_infinities_are_missing_and_compared_on_their_own():
    assert missing_fraction([1.0, np.nan, np.inf, -np.inf]) == 0.75
    assert missing_fraction([]) == 0.0
    reference = features(1500, 0, missing=0.05)
    window = features(600, 1, missing=0.5)   # the same distributions, but half the colours missing
    report = monitor_window(ScoredSample(reference), ScoredSample(window), CONFIG)["families"]["features"]
    colour = report["per_feature"]["colour"]
    assert colour["missing_reference"] == pytest.approx(0.05, abs=0.02)
    assert colour["missing_window"] == pytest.approx(0.5, abs=0.05)
    assert colour["psi"] < 0.1 and colour["n_window"] == int(window["colour"].notna().sum())   # finite values only
    assert report["crossed"] == ["colour"] and "missing fraction" in report["reasons"][0]
    assert not report["per_feature"]["mag"]["alert"]
    # a feature all missing in the window: not compared by PSI/KS, alerted on its missing fraction
    window["mag"] = np.inf
    report = monitor_window(ScoredSample(reference), ScoredSample(window), CONFIG)["families"]["features"]
    mag = report["per_feature"]["mag"]
    assert mag["psi"] is None and mag["ks_statistic"] is None
    assert "fewer than monitor.min_objects" in mag["not_compared"]
    assert mag["missing_window"] == 1.0 and report["crossed"][0] == "mag"   # no PSI: listed first


# ----------------------------------------------------------------------------- the families
def test_feature_drift_crosses_only_for_a_shifted_feature():
    reference = features(1500, 0)
    same = monitor_window(ScoredSample(reference), ScoredSample(features(600, 1)), CONFIG)
    assert same["alert"] is False and same["alerts"] == []
    family = same["families"]["features"]
    assert family["alert"] is False and family["crossed"] == [] and family["n_compared"] == 2
    assert set(family["per_feature"]) == {"mag", "colour"}    # text columns are not features
    assert all(e["psi_status"] == "stable" for e in family["per_feature"].values())
    shifted = monitor_window(ScoredSample(reference), ScoredSample(features(600, 1, shift=1.0)), CONFIG)
    family = shifted["families"]["features"]
    assert shifted["alert"] is True and shifted["alerts"] == ["features"]
    assert family["crossed"] == ["mag"] and family["per_feature"]["mag"]["psi_status"] == "major"
    assert "PSI" in family["reasons"][0] and "KS D" in family["reasons"][0]
    # a moderate shift is listed as warn, not an alert (KS needs its effect size too)
    moderate = config(**{"features.ks_min_statistic": 0.5})
    family = monitor_window(ScoredSample(reference), ScoredSample(features(600, 1, shift=0.35)),
                            moderate)["families"]["features"]
    assert family["warn"] == ["mag"] and family["crossed"] == []
    # named, excluded and absent columns
    family = monitor_window(ScoredSample(reference), ScoredSample(features(600, 1, shift=1.0)),
                            config(**{"features.exclude": ["mag"]}))["families"]["features"]
    assert family["n_features"] == 1 and family["alert"] is False
    family = monitor_window(ScoredSample(reference), ScoredSample(features(600, 1).drop(columns="colour")),
                            CONFIG)["families"]["features"]
    assert family["not_in_window"] == ["colour"] and list(family["per_feature"]) == ["mag"]
    small = monitor_window(ScoredSample(reference), ScoredSample(features(10, 1)), CONFIG)["families"]["features"]
    assert small["alert"] is False and "fewer than monitor.min_objects (30)" in small["skipped"]
    none = monitor_window(ScoredSample(reference), ScoredSample(features(100, 1)[["object_id"]]), CONFIG)
    assert "has no feature column" in none["families"]["features"]["skipped"]


def test_class_fraction_drift():
    reference = predictions(1000, 0)
    same = monitor_window(ScoredSample(predictions=reference), ScoredSample(predictions=predictions(600, 1)),
                          CONFIG)["families"]["class_fractions"]
    assert same["alert"] is False and same["total_variation"] < 0.1 and same["psi"] < 0.05
    assert sum(same["window"].values()) == pytest.approx(1.0)
    skewed = monitor_window(ScoredSample(predictions=reference),
                            ScoredSample(predictions=predictions(600, 1, mix=(0.7, 0.1, 0.1, 0.1))),
                            CONFIG)["families"]["class_fractions"]
    assert skewed["alert"] is True and skewed["crossed"][0] == "SNIa" and skewed["shift"]["SNIa"] > 0.3
    assert any("total variation" in r for r in skewed["reasons"])
    # objects the model did not classify (all probabilities missing, as the service writes them) are left out
    window = predictions(100, 2)
    window.loc[:9, [f"prob_{c}" for c in CLASSES]] = np.nan
    family = monitor_window(ScoredSample(predictions=reference), ScoredSample(predictions=window),
                            CONFIG)["families"]["class_fractions"]
    assert family["n_window"] == 90 and family["n_unclassified_window"] == 10


def test_calibration_drift_and_performance_regression_with_labels():
    reference = ScoredSample(predictions=predictions(1500, 0), name="test split")
    good = monitor_window(reference, ScoredSample(predictions=predictions(800, 1)), CONFIG)
    assert good["families"]["calibration"]["alert"] is False and good["families"]["performance"]["alert"] is False
    assert good["families"]["calibration"]["window_floor"]["p95"] > 0
    assert good["families"]["performance"]["classes"] == CLASSES
    bad = monitor_window(reference, ScoredSample(predictions=predictions(800, 1, labels="random")), CONFIG)
    cal, perf = bad["families"]["calibration"], bad["families"]["performance"]
    assert cal["alert"] is True and cal["crossed"] == ["ece"] and cal["increase"] > 0.3
    assert perf["alert"] is True and perf["crossed"] == ["macro_f1", "accuracy"] and perf["drop"]["accuracy"] > 0.3
    assert bad["alerts"] == ["calibration", "performance"]
    # macro-F1 over the classes the window's labels contain, on both sides
    window = predictions(800, 1)
    window = window[window["label"].isin(["SNIa", "QSO"])]
    perf = monitor_window(reference, ScoredSample(predictions=window), CONFIG)["families"]["performance"]
    assert perf["classes"] == ["SNIa", "QSO"] and set(perf["per_class_f1"]) == {"SNIa", "QSO"}
    # no floor: the increase alone decides
    nofloor = monitor_window(reference, ScoredSample(predictions=predictions(800, 1, labels="random")),
                             config(**{"calibration.floor_draws": 0}))["families"]["calibration"]
    assert nofloor["window_floor"] is None and nofloor["alert"] is True


def test_labels_missing_unlabelled_or_foreign():
    reference = ScoredSample(predictions=predictions(500, 0))
    window = predictions(300, 1)
    window["label"] = ["unlabeled", "", None, "TDE"] * 75
    report = monitor_window(reference, ScoredSample(predictions=window), CONFIG)
    for family in ("calibration", "performance"):
        assert report["families"][family]["alert"] is False
        assert "no labelled object" in report["families"][family]["skipped"]
    assert prediction_arrays(window, CLASSES, "w").n_other_labels == 75   # TDE: labelled, not a model class
    assert report["families"]["class_fractions"]["skipped"] is None
    few = predictions(300, 1)
    few.loc[20:, "label"] = np.nan
    assert "monitor.min_objects (30)" in monitor_window(reference, ScoredSample(predictions=few),
                                                        CONFIG)["families"]["calibration"]["skipped"]
    unlabelled_reference = predictions(500, 0, labels="none")
    report = monitor_window(ScoredSample(predictions=unlabelled_reference),
                            ScoredSample(predictions=predictions(300, 1)), CONFIG)
    assert report["families"]["performance"]["skipped"] == "the reference predictions have no labels"


def test_alert_logic_overall_and_per_family():
    reference = ScoredSample(features(1000, 0), predictions(1000, 0), "ref")
    quiet = monitor_window(reference, ScoredSample(features(500, 1), predictions(500, 1), "w"), CONFIG)
    assert quiet["alert"] is False and quiet["alerts"] == []
    assert [quiet["families"][f]["alert"] for f in ("features", "class_fractions", "calibration", "performance")] \
        == [False] * 4
    assert quiet["classes"] == CLASSES and quiet["names"] == {"reference": "ref", "window": "w"}
    assert quiet["thresholds"]["features"]["psi_alert"] == 0.25
    loud = monitor_window(reference, ScoredSample(features(500, 1, shift=2.0), predictions(500, 1), "w"), CONFIG)
    assert loud["alert"] is True and loud["alerts"] == ["features"]
    # a window with predictions only (the service's results): features skipped, never an alert
    only = monitor_window(reference, {"predictions": predictions(500, 1, mix=(1, 0, 0, 0), labels="none"),
                                      "name": "service"}, CONFIG)
    assert only["families"]["features"]["skipped"] == "service has no feature table"
    assert only["alerts"] == ["class_fractions"] and only["families"]["class_fractions"]["crossed"][0] == "SNIa"
    # a window with features only: the prediction families skipped
    feats = monitor_window(reference, ScoredSample(features=features(500, 1)), CONFIG)
    assert feats["families"]["calibration"]["skipped"] == "sample has no prediction table"
    # thresholds move the decision
    strict = config(**{"class_fractions.class_shift_alert": 0.001})
    assert monitor_window(reference, ScoredSample(predictions=predictions(500, 1)), strict)["alerts"] == \
        ["class_fractions"]


def test_config_errors_name_the_key():
    assert check_config(CONFIG)["features"]["n_bins"] == 10
    assert check_config(OmegaConf.create({**CONFIG, "window": {"kind": "table"}}))["min_objects"] == 30
    cases = [
        ({"features.n_bins": 1}, "monitor.features.n_bins' must be an integer >= 2"),
        ({"features.n_bins": 2.5}, "monitor.features.n_bins"),
        ({"features.epsilon": 0.0}, r"monitor.features.epsilon' must be in \(0.0, 1.0\]"),
        ({"features.psi_alert": "high"}, "monitor.features.psi_alert' must be a number"),
        ({"features.psi_alert": True}, "monitor.features.psi_alert' must be a number"),
        ({"features.psi_warn": 0.3}, "monitor.features.psi_warn' .* must not exceed 'monitor.features.psi_alert'"),
        ({"features.ks_alpha": 1.5}, "monitor.features.ks_alpha"),
        ({"features.ks_correction": "fdr"}, "monitor.features.ks_correction' must be one of"),
        ({"features.ks_min_statistic": -0.1}, r"monitor.features.ks_min_statistic' must be in \[0.0, 1.0\]"),
        ({"features.columns": "mag"}, "monitor.features.columns' must be null or a list"),
        ({"features.exclude": [1]}, "monitor.features.exclude"),
        ({"features.colums": None}, "monitor.features.colums' is not a known key"),
        ({"class_fractions.total_variation_alert": float("nan")}, "monitor.class_fractions.total_variation_alert"),
        ({"calibration.scheme": "log"}, "monitor.calibration.scheme' must be one of"),
        ({"calibration.floor_draws": -1}, "monitor.calibration.floor_draws"),
        ({"performance.macro_f1_drop_alert": None}, "monitor.performance.macro_f1_drop_alert' must be a number"),
        ({"min_objects": 0}, "monitor.min_objects"),
        ({"thresholds": {}}, "monitor.thresholds' is not a known key"),
    ]
    for changes, match in cases:
        with pytest.raises(ConfigError, match=match):
            check_config(config(**changes))
    for node in ("features", "performance"):
        bad = copy.deepcopy(CONFIG)
        del bad[node]
        with pytest.raises(ConfigError, match=f"config key 'monitor.{node}' is missing"):
            check_config(bad)
    bad = copy.deepcopy(CONFIG)
    del bad["calibration"]["seed"]
    with pytest.raises(ConfigError, match="config key 'monitor.calibration.seed' is missing"):
        check_config(bad)
    with pytest.raises(ConfigError, match="config key 'monitor' must be a mapping"):
        check_config(["features"])
    with pytest.raises(ConfigError, match="config key 'watch.min_objects' is missing"):
        check_config({k: v for k, v in CONFIG.items() if k != "min_objects"}, prefix="watch")
    # the stage's node passes the schema check; a typo fails naming the key
    from deeprubin.core.config import compose_params
    from deeprubin.core.config_schema import check_schema

    cfg = compose_params()
    check_schema(cfg)
    check_config(cfg.tasks.transients.monitor)
    with pytest.raises(ConfigError, match="tasks.transients.monitor.window.n_object"):
        check_schema(compose_params(["+tasks.transients.monitor.window.n_object=5"]))


def test_input_errors_name_the_table_column_or_object():
    reference = ScoredSample(features(100, 0), predictions(100, 0), "ref.csv")
    win = predictions(100, 1)
    cases = [
        (win.drop(columns="prob_QSO"), r"w.csv: no column 'prob_QSO'"),
        (win.assign(prob_TDE=0.0), r"w.csv: column 'prob_TDE' is not a class of the reference"),
        (win.assign(prob_SNIa=win["prob_SNIa"].where(win.index != 3)),
         r"w.csv: object 'p1_3' has a missing probability"),
        (win.assign(prob_SNIa=win["prob_SNIa"] + 0.5), r"w.csv: object 'p1_\d+' has a probability outside"),
        (win.assign(**{f"prob_{c}": np.nan for c in CLASSES}), r"w.csv: no classified object"),
        (win[["object_id", "prob_SNIa"]], r"w.csv: a prediction table needs a 'prob_<class>' column"),
    ]
    for table, match in cases:
        with pytest.raises(ValueError, match=match):
            monitor_window(reference, ScoredSample(predictions=table, name="w.csv"), CONFIG)
    with pytest.raises(ValueError, match="w.csv: a prediction table needs"):
        monitor_window(ScoredSample(features(100, 0)), ScoredSample(predictions=win[["object_id"]], name="w.csv"),
                       CONFIG)
    with pytest.raises(ValueError, match="window: nothing to monitor"):
        monitor_window(reference, ScoredSample(name="window"), CONFIG)
    with pytest.raises(ValueError, match="ref: nothing to compare with"):
        monitor_window(ScoredSample(name="ref"), ScoredSample(predictions=win), CONFIG)
    with pytest.raises(ValueError, match="window: unknown field 'labels'"):
        monitor_window(reference, {"predictions": win, "labels": []}, CONFIG)
    with pytest.raises(TypeError, match="window: expected a ScoredSample"):
        monitor_window(reference, [win], CONFIG)
    with pytest.raises(ValueError, match="ref.csv: no feature column 'size' .named in monitor.features.columns"):
        monitor_window(reference, ScoredSample(features(100, 1), name="w.csv"),
                       config(**{"features.columns": ["size"]}))
    with pytest.raises(ValueError, match="w.csv: no feature column 'colour'"):
        monitor_window(reference, ScoredSample(features(100, 1).drop(columns="colour"), name="w.csv"),
                       config(**{"features.columns": ["colour"]}))
    with pytest.raises(ValueError, match="ref.csv: feature column 'survey' is not numeric"):
        monitor_window(reference, ScoredSample(features(100, 1)), config(**{"features.columns": ["survey"]}))
    with pytest.raises(ConfigError, match="monitor.features.n_bins"):
        monitor_window(reference, ScoredSample(predictions=win), config(**{"features.n_bins": 0}))


# ----------------------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def stage_base(tmp_path_factory):
    """The composed transients view with paths under a module folder, the reference files written there."""
    from conftest import compose_under

    cfg = compose_under(tmp_path_factory.mktemp("monitor_stage"))
    processed, splits, reports = Path(cfg.paths.processed), Path(cfg.paths.splits), Path(cfg.paths.reports)
    reference = pd.concat([features(300, 0), features(100, 5)], ignore_index=True)
    io.write_parquet(reference, processed / "features.parquet")
    io.write_parquet(pd.DataFrame({"object_id": reference["object_id"], "label": "SNIa",
                                   "group_id": reference["object_id"], "split": ["train"] * 300 + ["test"] * 100}),
                     splits / "manifest.parquet")
    io.write_text(predictions(400, 0).to_csv(index=False), reports / "evaluation" / "predictions.csv")
    return OmegaConf.to_container(cfg, resolve=True)


def stage_cfg(base: dict, reports: Path, **changes):
    """A copy of ``base`` writing its reports under ``reports``, with ``monitor.<key>`` changes."""
    cfg = OmegaConf.create(copy.deepcopy(base))
    cfg.paths.reports = str(reports)     # the monitor's output; its reference files stay where they were written
    cfg.monitor.min_objects = 20
    for key, value in changes.items():
        OmegaConf.update(cfg, f"monitor.{key}", value)
    return cfg


def test_stage_on_a_scored_table_writes_the_report_and_a_figure_per_family(stage_base, tmp_path):
    from deeprubin.stages.monitor import run_monitor

    # the stream's export: two rows of some objects (one per alert), features and labels in files of their own
    window = predictions(150, 1, mix=(0.7, 0.1, 0.1, 0.1), labels="random")
    scored = pd.concat([window.drop(columns="label").iloc[:20], window.drop(columns="label")], ignore_index=True)
    io.write_parquet(scored, tmp_path / "window.parquet")
    io.write_text(window[["object_id", "label"]].to_csv(index=False), tmp_path / "labels.csv")
    io.write_parquet(features(150, 1, shift=1.5).assign(object_id=window["object_id"]), tmp_path / "feats.parquet")
    cfg = stage_cfg(stage_base, tmp_path, **{"window.kind": "table", "window.path": str(tmp_path / "window.parquet"),
                                  "window.labels_path": str(tmp_path / "labels.csv"),
                                  "window.features_path": str(tmp_path / "feats.parquet")})
    report = run_monitor(cfg)
    out = Path(cfg.paths.reports) / "monitoring"
    written = io.read_json(out / "monitoring.json")
    assert written["alert"] is True
    assert written["alerts"] == ["features", "class_fractions", "calibration", "performance"]
    assert written["families"]["features"]["crossed"] == ["mag"]
    assert written["families"]["features"]["n_reference"] == 300   # the train split's rows only
    assert written["families"]["class_fractions"]["n_window"] == 150   # one row per object (the last)
    assert written["window"]["n_rows"] == 170 and written["window"]["per_object"] == "last"
    assert written["reference"]["split"] == "train" and report["names"]["window"] == "window.parquet"
    for name in ("features", "class_fractions", "calibration", "performance"):
        assert (out / "figures" / f"{name}.pdf").exists()
        assert io.read_figure_caption(out / "figures" / f"{name}.png")
    # every row of an object kept: the stream's alerts as they came
    cfg.monitor.window.per_object = "all"
    assert run_monitor(cfg)["families"]["class_fractions"]["n_window"] == 170


def test_stage_with_the_service_result_only_and_when_the_model_is_not_simulated(stage_base, tmp_path, monkeypatch):
    from deeprubin.stages.monitor import run_monitor

    service = predictions(100, 3, labels="none")   # the service's result.csv: no features, no labels
    service["quality_flags"], service["warnings"] = "", ""
    io.write_text(service.to_csv(index=False), tmp_path / "result.csv")
    cfg = stage_cfg(stage_base, tmp_path, **{"window.kind": "table", "window.path": str(tmp_path / "result.csv")})
    report = run_monitor(cfg)
    assert report["alert"] is False
    assert "has no feature column" in report["families"]["features"]["skipped"]
    assert report["families"]["performance"]["skipped"].startswith("the window has no labelled object")
    # the default window on a model trained on real data: recorded as skipped, every figure says so
    import deeprubin.tasks.transients.evaluation.calibration_check as check

    monkeypatch.setattr(check, "training_source", lambda path: OmegaConf.create({"name": "files"}))
    report = run_monitor(stage_cfg(stage_base, tmp_path / "real"))
    assert report["alert"] is False and "trained on source 'files'" in report["skipped"]
    assert io.read_json(tmp_path / "real" / "monitoring" / "monitoring.json")["skipped"] == report["skipped"]
    figures = tmp_path / "real" / "monitoring" / "figures"
    assert sorted(p.name for p in figures.glob("*.png")) == ["calibration.png", "class_fractions.png",
                                                             "features.png", "performance.png"]


def test_stage_errors_name_the_key_or_file(stage_base, tmp_path):
    from deeprubin.stages.monitor import run_monitor

    table = tmp_path / "w.csv"
    io.write_text(predictions(50, 1).to_csv(index=False), table)
    io.write_text(predictions(50, 1).drop(columns="object_id").to_csv(index=False), tmp_path / "noid.csv")
    io.write_text("object_id\nx\n", tmp_path / "nolabel.csv")
    cases = [
        ({"window.kind": "stream"}, ConfigError, "config key 'monitor.window.kind' must be one of"),
        ({"window.kind": "table"}, ConfigError, "config key 'monitor.window.path' is missing"),
        ({"window.kind": "table", "window.path": str(tmp_path / "gone.csv")}, FileNotFoundError,
         "gone.csv: no such file .config key 'monitor.window.path'"),
        ({"window.kind": "table", "window.path": str(tmp_path / "w.json")}, ConfigError,
         "config key 'monitor.window.path' = .*w.json: a table is one of"),
        ({"window.kind": "table", "window.path": str(tmp_path / "noid.csv")}, ValueError,
         "noid.csv: no column 'object_id' .config key 'monitor.window.path'"),
        ({"window.kind": "table", "window.path": str(table), "window.labels_path": str(tmp_path / "nolabel.csv")},
         ValueError, "nolabel.csv: no column 'label' .config key 'monitor.window.labels_path'"),
        ({"window.kind": "table", "window.path": str(table), "window.per_object": "first"}, ConfigError,
         "monitor.window.per_object' must be one of"),
        ({"reference.split": "training"}, ValueError,
         "no row of split 'training'.*config key 'monitor.reference.split'"),
        ({"reference.predictions": str(tmp_path / "none.csv")}, FileNotFoundError, "monitor.reference.predictions"),
        ({"window.seed": 42}, ConfigError, "'monitor.window.seed' must differ from 'data_seed'"),
        ({"window.n_objects": 0}, ConfigError, "'monitor.window.n_objects' must be >= 1"),
        ({"features.psi_alert": -1}, ConfigError, "monitor.features.psi_alert"),
    ]
    for changes, error, match in cases:
        with pytest.raises(error, match=match):
            run_monitor(stage_cfg(stage_base, tmp_path, **changes))
    io.write_text("not,a\n\"parquet", tmp_path / "bad.parquet")
    with pytest.raises(io.UnreadableFileError, match="bad.parquet"):
        run_monitor(stage_cfg(stage_base, tmp_path,
                              **{"window.kind": "table", "window.path": str(tmp_path / "bad.parquet")}))
    io.write_parquet(pd.DataFrame({"object_id": ["a"]}), tmp_path / "manifest.parquet")
    cfg = stage_cfg(stage_base, tmp_path, **{"reference.manifest": str(tmp_path / "manifest.parquet")})
    with pytest.raises(ValueError, match="manifest.parquet: no column 'split' .config key "
                                         "'monitor.reference.manifest'"):
        run_monitor(cfg)


def test_stage_simulated_window_on_the_tiny_pipeline(tiny_pipeline, tmp_path):
    """The default window: a fresh simulated sample scored through the predict path, with its features."""
    from deeprubin.stages.monitor import run_monitor

    cfg, _ = tiny_pipeline
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.paths.reports = str(tmp_path / "reports")   # the reference's files stay the pipeline's
    cfg.monitor.min_objects = 10
    report = run_monitor(cfg)
    assert report["window"]["kind"] == "simulate" and report["window"]["training_source"] == "simulate"
    family = report["families"]["features"]
    assert family["skipped"] is None and family["n_compared"] > 20 and family["not_in_window"] == []
    assert report["families"]["class_fractions"]["n_window"] > 40
    assert report["families"]["calibration"]["n_labelled_window"] == report["families"]["class_fractions"]["n_window"]
    assert (tmp_path / "reports" / "monitoring" / "monitoring.json").exists()
