"""Calibrators, reliability metrics and their bad-input errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import softmax
from torchmetrics.functional.classification import multiclass_calibration_error

from deeprubin.core.calibration import (
    IsotonicCalibrator,
    TemperatureScaling,
    apply_calibration,
    calibrator_from_dict,
    check_probabilities,
    load_calibrator,
    make_calibrator,
    save_calibration,
    saved_methods,
    single_class_reason,
)
from deeprubin.core.reliability import (
    brier_score,
    calibration_summary,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_bins,
    top_label,
)
from deeprubin.tasks.transients.evaluation.predict import probabilities_from_table

CLASSES = ["a", "b", "c", "d"]


def _synthetic_logits(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z / temperature): calibrated at exactly that T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, size=(n, len(CLASSES)))
    p = softmax(z / temperature, axis=1)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p, axis=1)).sum(axis=1)  # one categorical draw per row
    return z, y


def test_temperature_scaling_recovers_known_temperature():
    z, y = _synthetic_logits(20_000, temperature=2.5)
    cal = TemperatureScaling(CLASSES).fit(z, y)
    assert cal.temperature == pytest.approx(2.5, rel=0.05)
    # Calibrated at T: the ECE drops to sampling noise, the argmax is unchanged.
    raw = softmax(z, axis=1)
    fixed = apply_calibration(z, cal, kind="logits")
    assert expected_calibration_error(fixed, y) < 0.01 < expected_calibration_error(raw, y)
    assert (fixed.argmax(1) == raw.argmax(1)).all()
    # Probabilities in give the same answer as logits in (softmax is shift-invariant).
    np.testing.assert_allclose(apply_calibration(raw, cal), fixed, atol=1e-9)


def test_isotonic_output_sums_to_one_and_improves_calibration():
    z, y = _synthetic_logits(5000, temperature=3.0, seed=1)
    cal = IsotonicCalibrator(CLASSES, floor=1e-4).fit(z[:2500], y[:2500])
    p = apply_calibration(z[2500:], cal, kind="logits")
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    assert p.min() > 0
    assert expected_calibration_error(p, y[2500:]) < expected_calibration_error(softmax(z[2500:], 1), y[2500:])


def test_isotonic_map_matches_sklearn_predict():
    from sklearn.isotonic import IsotonicRegression

    z, y = _synthetic_logits(800, temperature=2.0, seed=2)
    p = softmax(z, axis=1)
    cal = IsotonicCalibrator(CLASSES, floor=0.0).fit(z, y)
    x, fx = cal.thresholds["a"]
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p[:, 0], y == 0)
    grid = np.linspace(-0.1, 1.1, 57)
    np.testing.assert_allclose(np.interp(grid, x, fx), iso.predict(grid), atol=1e-12)


@pytest.mark.parametrize("method", ["temperature", "isotonic", "none"])
def test_to_dict_from_dict_round_trip(method, tmp_path):
    z, y = _synthetic_logits(600, temperature=1.7, seed=3)
    cal = make_calibrator(method, CLASSES).fit(z, y)
    data = json.loads(json.dumps(cal.to_dict()))  # through JSON, as persisted
    again = calibrator_from_dict(data)
    np.testing.assert_allclose(apply_calibration(z, again, kind="logits"), apply_calibration(z, cal, kind="logits"))
    np.testing.assert_allclose(apply_calibration(z, data, kind="logits"), apply_calibration(z, cal, kind="logits"))
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"weights")  # only its sha256 is recorded
    path = save_calibration(tmp_path / "calibration.json", {method: cal}, default=method, fitted_on={"split": "val"},
                            checkpoint=ckpt)
    loaded = load_calibrator(path, classes=CLASSES)
    assert loaded.method == method
    np.testing.assert_allclose(apply_calibration(z, loaded, kind="logits"), apply_calibration(z, cal, kind="logits"))
    with pytest.raises(ValueError, match="model classes"):
        load_calibrator(path, classes=CLASSES[::-1])


def test_ece_of_perfectly_calibrated_data_is_near_zero():
    rng = np.random.default_rng(4)
    conf = rng.uniform(0.5, 1.0, 200_000)  # two classes: class 0 is the arg-max with probability conf
    p = np.column_stack([conf, 1 - conf])
    y = np.where(rng.uniform(size=conf.size) < conf, 0, 1)  # right exactly as often as claimed
    for scheme in ("width", "mass"):
        assert expected_calibration_error(p, y, 15, scheme) < 0.005


def test_ece_of_known_miscalibration_matches_hand_computation():
    # 10 objects, confidence 0.9 each, 6 correct: one bin, |0.6 - 0.9| = 0.3.
    # 10 more at confidence 0.7, all correct: |1.0 - 0.7| = 0.3. ECE = 0.3.
    # Plus 20 at 0.55 with 11 correct: |0.55 - 0.55| = 0. ECE = (10*0.3 + 10*0.3 + 0) / 40 = 0.15.
    conf = np.r_[np.full(10, 0.9), np.full(10, 0.7), np.full(20, 0.55)]
    y = np.r_[np.zeros(6), np.ones(4), np.zeros(10), np.zeros(11), np.ones(9)].astype(int)
    p = np.column_stack([conf, 1 - conf])
    assert expected_calibration_error(p, y, 15, "width") == pytest.approx(0.15, abs=1e-6)
    # Equal-mass, 4 bins of 10 in sorted (stable) order: the 0.55 objects split into 10
    # right (|1.0 - 0.55|) and 1 right + 9 wrong (|0.1 - 0.55|); then 0.7 and 0.9 as above.
    assert expected_calibration_error(p, y, 4, "mass") == pytest.approx((4.5 + 4.5 + 3 + 3) / 40, abs=1e-9)
    bins = reliability_bins(*top_label(p, y), n_bins=15, scheme="width")
    assert bins["count"].tolist() == [20, 10, 10]
    # Brier by hand: correct at c contributes 2 (1-c)^2, wrong 2 c^2.
    brier = (6 * 2 * 0.1**2 + 4 * 2 * 0.9**2 + 10 * 2 * 0.3**2 + 11 * 2 * 0.45**2 + 9 * 2 * 0.55**2) / 40
    assert brier_score(p, y) == pytest.approx(brier)
    nll = -(6 * np.log(0.9) + 4 * np.log(0.1) + 10 * np.log(0.7) + 11 * np.log(0.55) + 9 * np.log(0.45)) / 40
    assert negative_log_likelihood(p, y) == pytest.approx(nll)


def test_equal_width_ece_agrees_with_own_bins():
    """The torchmetrics number and the reliability bins of the figures are the same ECE."""
    from deeprubin.core.reliability import ece_from_bins

    z, y = _synthetic_logits(3000, temperature=0.5, seed=5)
    p = softmax(z, axis=1)
    p = p[p.max(1) < 1.0]  # torchmetrics puts confidence == 1.0 in a bin of its own
    y = y[: len(p)]
    ours = ece_from_bins(reliability_bins(*top_label(p, y), n_bins=15, scheme="width"))
    theirs = float(multiclass_calibration_error(torch.as_tensor(p), torch.as_tensor(y), num_classes=4, n_bins=15))
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_summary_keys():
    z, y = _synthetic_logits(300, temperature=1.0, seed=6)
    s = calibration_summary(softmax(z, 1), y)
    assert {"ece_width", "ece_mass", "brier", "nll", "accuracy", "classwise_ece_width"} <= set(s)


# ----------------------------------------------------------------------------- bad input
def test_empty_validation_set_is_an_error():
    with pytest.raises(ValueError, match="no objects to calibrate"):
        TemperatureScaling(CLASSES).fit(np.zeros((0, 4)), np.zeros(0, dtype=int))


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_single_class_validation_set_is_an_error(method):
    with pytest.raises(ValueError, match="only one class"):
        make_calibrator(method, CLASSES).fit(np.zeros((5, 4)), np.full(5, 2))


def test_single_class_reason_names_the_set_and_class():
    assert single_class_reason(np.array([0, 1, 1])) is None
    assert single_class_reason(np.array([2, 2, 2]), "val") == \
        "val: only one class (index 2) among 3 objects; calibration needs at least two classes"


def test_saved_methods_lists_the_file_and_rejects_other_json(tmp_path):
    path = tmp_path / "calibration.json"
    save_calibration(path, {"none": make_calibrator("none", CLASSES),
                            "temperature": TemperatureScaling(CLASSES, 1.5)}, default="none", fitted_on={},
                     checkpoint=Path(__file__))  # any file: only its sha256 is recorded
    assert saved_methods(path) == ["none", "temperature"]
    (tmp_path / "other.json").write_text(json.dumps({"default": "none"}))
    with pytest.raises(ValueError, match=r"other\.json: not a calibration file"):
        saved_methods(tmp_path / "other.json")


def test_probabilities_not_summing_to_one_are_an_error():
    p = np.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.4, 0.0, 0.0]])
    with pytest.raises(ValueError, match="row 1.*sum to 0.9"):
        apply_calibration(p, TemperatureScaling(CLASSES, 2.0))
    with pytest.raises(ValueError, match="object 'x2'"):
        check_probabilities(p, "preds.csv", object_ids=["x1", "x2"])
    with pytest.raises(ValueError, match="outside"):
        check_probabilities(np.array([[1.5, -0.5]]))


def test_prediction_table_missing_a_class_is_an_error():
    table = pd.DataFrame({"object_id": ["o1"], "prob_a": [0.5], "prob_b": [0.5], "prob_c": [0.0]})
    with pytest.raises(ValueError, match=r"preds.csv: no probability column for class\(es\) \['d'\]"):
        probabilities_from_table(table, CLASSES, "preds.csv")
    table["prob_d"] = 0.0
    assert probabilities_from_table(table, CLASSES).shape == (1, 4)


def test_calibrator_with_wrong_number_of_columns_is_an_error():
    with pytest.raises(ValueError, match="3 score columns"):
        apply_calibration(np.zeros((2, 3)), TemperatureScaling(CLASSES), kind="logits")


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="one of"):
        make_calibrator("platt", CLASSES)


def test_ece_floor_shrinks_with_more_objects():
    from deeprubin.core.reliability import ece_floor

    rng = np.random.default_rng(7)
    p = softmax(rng.normal(0, 2, size=(4000, 4)), axis=1)
    small, large = ece_floor(p[:300], n_draws=50), ece_floor(p, n_draws=50)
    assert small["p05"] <= small["mean"] <= small["p95"]
    assert large["mean"] < 0.6 * small["mean"]  # ~1/sqrt(n)


# ------------------------------------------------------------------ choosing the default calibrator

def _sampled(n: int, sharpen: float, seed: int = 0):
    """Labels drawn from softmax(z); the model reports ``sharpen * z`` (1: calibrated; > 1: overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, 4))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    return sharpen * z, y


def _node(**select):
    from omegaconf import OmegaConf

    return OmegaConf.create({"method": "select", "isotonic_floor": 1e-4, "select": {"folds": 5, "min_z": 2.0, **select}})


def test_selection_keeps_a_calibrated_model_uncalibrated():
    from deeprubin.core.calibration_report import select_method

    z, y = _sampled(600, 1.0)
    chosen = select_method(z, y, list("abcd"), _node(), seed=0)
    assert chosen["chosen"] == "none"
    assert chosen["candidates"]["temperature"]["gain_z"] <= 2.0      # within noise: not worth a calibrator


def test_selection_calibrates_an_overconfident_model():
    from deeprubin.core.calibration_report import select_method

    z, y = _sampled(600, 4.0)
    chosen = select_method(z, y, list("abcd"), _node(), seed=0)
    assert chosen["chosen"] in ("temperature", "isotonic") and chosen["candidates"][chosen["chosen"]]["gain_z"] > 2
    assert chosen["candidates"]["none"]["cv_nll"] > chosen["candidates"][chosen["chosen"]]["cv_nll"]


def test_selection_config_errors_name_the_key():
    from omegaconf import OmegaConf

    from deeprubin.core.calibration_report import check_calibration_config
    from deeprubin.core.config import ConfigError

    base = {"method": "select", "n_bins": 15, "per_class_bins": 10, "isotonic_floor": 1e-4, "floor_draws": 10,
            "select": {"folds": 5, "min_z": 2.0}}
    with pytest.raises(ConfigError, match=r"'evaluate\.calibration\.method' must be one of .*'select'\], got 'auto'"):
        check_calibration_config(OmegaConf.create({"evaluate": {"calibration": {**base, "method": "auto"}}}))
    with pytest.raises(ConfigError, match=r"'evaluate\.calibration\.select\.folds' must be >= 2"):
        check_calibration_config(OmegaConf.create({"evaluate": {"calibration": {**base, "select": {"folds": 1,
                                                                                                    "min_z": 2}}}}))
