"""MC dropout, probabilistic metrics with bootstrap intervals, early-classification truncation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from deeprubin.core.metrics import (
    bootstrap_intervals,
    class_weight_vector,
    headline_metrics,
    one_vs_rest_curves,
    plasticc_log_loss,
)
from deeprubin.tasks.transients.evaluation.early import first_detection_times, truncate_lightcurves
from deeprubin.tasks.transients.evaluation.uncertainty import (accuracy_rejection_curve, enable_mc_dropout,
                                                               mc_dropout_probabilities, misclassification_auroc,
                                                               mutual_information, predictive_entropy)
from deeprubin.core.models import build_model

TCN = {"_target_": "deeprubin.core.models.tcn.TCNClassifier", "channels": 8, "kernel_size": 3, "n_blocks": 2}


def _tcn(dropout: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({**TCN, "dropout": dropout}, n_inputs=4, n_classes=3)
    # Non-trivial batch-norm statistics, so eval vs train mode would differ.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


X = np.random.default_rng(0).normal(size=(6, 4, 16)).astype(np.float32)


def test_mc_dropout_varies_with_dropout_and_keeps_batchnorm_in_eval():
    model = _tcn(0.3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    samples = mc_dropout_probabilities(model, X, n_passes=8, seed=1)
    assert samples.shape == (8, 6, 3)
    assert np.ptp(samples, axis=0).max() > 1e-3, "dropout passes should differ"
    np.testing.assert_allclose(samples.sum(axis=2), 1.0, atol=1e-9)
    # Batch-norm used its running statistics and did not update them.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not model.training and not any(m.training for m in model.modules())
    # Seeded: the same passes again.
    np.testing.assert_array_equal(samples, mc_dropout_probabilities(model, X, n_passes=8, seed=1))


def test_mc_dropout_identical_without_dropout():
    model = _tcn(0.0)
    samples = mc_dropout_probabilities(model, X, n_passes=5, seed=1)
    np.testing.assert_allclose(np.ptp(samples, axis=0), 0.0, atol=1e-12)
    assert mutual_information(samples).max() < 1e-9


def test_model_without_dropout_is_an_error_for_mc_dropout():
    from deeprubin.tasks.transients.evaluation.uncertainty import require_dropout

    assert require_dropout(_tcn(0.2), "m.ckpt") == pytest.approx(0.2)
    with pytest.raises(ValueError, match="m.ckpt: the model has no dropout"):
        require_dropout(_tcn(0.0), "m.ckpt")


def test_enable_mc_dropout_switches_only_dropout():
    model = _tcn(0.2)
    n = enable_mc_dropout(model)
    assert n == sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) > 0
    assert all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_entropy_and_mutual_information_by_hand():
    # Two passes that disagree completely on one object: mean (0.5, 0.5), H = ln 2, each pass H = 0.
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert predictive_entropy(samples)[0] == pytest.approx(np.log(2))
    assert mutual_information(samples)[0] == pytest.approx(np.log(2))
    agree = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert mutual_information(agree)[0] == pytest.approx(0.0)


def test_misclassification_auroc_and_rejection_curve():
    u = np.array([0.1, 0.2, 0.3, 0.9, 0.8])
    wrong = np.array([False, False, False, True, True])
    assert misclassification_auroc(u, wrong) == 1.0
    assert np.isnan(misclassification_auroc(u, np.zeros(5, bool)))
    acc = accuracy_rejection_curve(u, ~wrong, np.array([0.0, 0.4, 1.0]))
    np.testing.assert_allclose(acc[:2], [0.6, 1.0])
    assert np.isnan(acc[2])


# ----------------------------------------------------------------------------- metrics
def test_plasticc_log_loss_weights_classes_not_objects():
    # Class 0: 3 objects with p=0.5 on the truth; class 1: 1 object with p=0.25.
    y = np.array([0, 0, 0, 1])
    p = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.75, 0.25]])
    expected = -(np.log(0.5) + np.log(0.25)) / 2  # each class's mean, averaged with equal weights
    assert plasticc_log_loss(y, p) == pytest.approx(expected)
    weighted = -(1 * np.log(0.5) + 2 * np.log(0.25)) / 3
    assert plasticc_log_loss(y, p, [1.0, 2.0]) == pytest.approx(weighted)
    with pytest.raises(ValueError, match="class weights"):
        plasticc_log_loss(y, p, [1.0])
    assert class_weight_vector({"b": 2.0}, ["a", "b"]).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="unknown class"):
        class_weight_vector({"z": 2.0}, ["a", "b"])


def test_headline_metrics_and_curves():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    p = np.full((300, 3), 0.1)
    p[np.arange(300), y] = 0.8  # always right
    m = headline_metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == m["macro_f1"] == m["weighted_f1"] == m["mcc"] == m["roc_auc_macro"] == 1.0
    assert m["plasticc_log_loss"] == pytest.approx(-np.log(0.8))
    curves = one_vs_rest_curves(y, p, ["a", "b", "c", "d"])
    assert set(curves) == {"a", "b", "c"}  # "d" has no positive: no curve
    assert curves["a"]["auc"] == 1.0 and curves["a"]["ap"] == 1.0


def test_bootstrap_resamples_groups_and_is_seeded():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    p = np.column_stack([rng.uniform(size=200), np.zeros(200)])
    p[:, 1] = 1 - p[:, 0]
    groups = np.repeat(np.arange(50), 4).astype(str)

    def score(yy, pp):
        return {"accuracy": float((pp.argmax(1) == yy).mean())}

    a = bootstrap_intervals(y, p, groups, score, n_boot=200, seed=3)
    b = bootstrap_intervals(y, p, groups, score, n_boot=200, seed=3)
    assert a == b
    ci = a["accuracy"]
    assert ci["low"] < ci["value"] < ci["high"]
    # Whole groups: a group of identical objects counts once, so the spread is wider than
    # with every object independent.
    same = np.repeat(rng.integers(0, 2, 50), 4), np.repeat(p[::4], 4, axis=0)
    grouped = bootstrap_intervals(*same, groups, score, n_boot=300, seed=0)["accuracy"]
    single = bootstrap_intervals(*same, np.arange(200).astype(str), score, n_boot=300, seed=0)["accuracy"]
    assert grouped["std"] > 1.5 * single["std"]


# ----------------------------------------------------------------------------- early
def _stream() -> pd.DataFrame:
    t = np.arange(58000.0, 58060.0, 3.0)
    flux = np.where(t >= 58012, 100.0, 1.0)  # first >= 5 sigma point at 58012 (err 2)
    a = pd.DataFrame({"object_id": "a", "time": t, "band": "g", "flux": flux, "flux_err": 2.0})
    b = pd.DataFrame({"object_id": "b", "time": t, "band": "r", "flux": 1.0, "flux_err": 2.0})  # never detected
    return pd.concat([a, b], ignore_index=True)


def test_truncation_keeps_only_points_up_to_first_detection_plus_days():
    lc = _stream()
    first = first_detection_times(lc, detection_snr=5.0)
    assert first.to_dict() == {"a": 58012.0}
    cut = truncate_lightcurves(lc, first, 10.0)
    assert set(cut["object_id"]) == {"a"}  # never detected: not classified
    assert cut["time"].max() <= 58022.0 and cut["time"].max() == 58021.0
    assert cut["time"].min() == 58000.0  # pre-detection history is kept
    assert len(truncate_lightcurves(lc, first, 0.0)) == 5  # 58000 ... 58012
    with pytest.raises(ValueError, match="days must be >= 0"):
        truncate_lightcurves(lc, first, -1.0)


def test_detected_flag_takes_precedence():
    lc = _stream()
    lc["detected"] = lc["time"] >= 58030
    assert first_detection_times(lc, 5.0).to_dict() == {"a": 58030.0, "b": 58030.0}


def test_logits_and_probabilities_agree():
    from scipy.special import softmax

    from deeprubin.tasks.transients.evaluation.predict import predict_logits, predict_probabilities

    model = _tcn(0.3)
    np.testing.assert_allclose(softmax(predict_logits(model, X), axis=1), predict_probabilities(model, X), atol=1e-6)
    with pytest.raises(ValueError, match="no objects"):
        predict_logits(model, X[:0])


def test_transient_macro_f1_counts_a_transient_called_a_variable_as_a_miss():
    from deeprubin.core.metrics import subset_macro_f1

    # classes 0, 1 transients; 2 a variable star
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = subset_macro_f1(y, y, [0, 1])
    assert perfect == 1.0
    # one class-0 object called class 2: class 0 recall 1/2 (F1 2/3), class 1 untouched (F1 1)
    assert subset_macro_f1(y, np.array([0, 2, 1, 1, 2, 2]), [0, 1]) == pytest.approx((2 / 3 + 1) / 2)
    # errors among the other classes only do not move it
    assert subset_macro_f1(y, np.array([0, 0, 1, 1, 0, 2]), [1]) == 1.0
    # a subset class never seen nor predicted scores 0
    assert subset_macro_f1(np.array([0, 0]), np.array([0, 0]), [0, 1]) == 0.5


@pytest.mark.parametrize("names, match", [([], r"evaluate\.early\.transient_classes"),
                                          (["SNIa", "Kilonova"], r"\['Kilonova'\] unknown")])
def test_early_transient_classes_must_be_model_classes(names, match):
    from omegaconf import OmegaConf

    from deeprubin.core.config import ConfigError
    from deeprubin.stages.early import transient_class_indices

    cfg = OmegaConf.create({"evaluate": {"early": {"transient_classes": names}}})
    with pytest.raises(ConfigError, match=match):
        transient_class_indices(cfg, ["SNIa", "SNII", "QSO"])
    ok = OmegaConf.create({"evaluate": {"early": {"transient_classes": ["SNII", "SNIa"]}}})
    assert transient_class_indices(ok, ["SNIa", "SNII", "QSO"]) == [1, 0]
