import numpy as np
import pytest
import torch

from deeprubin.core.checkpoint import load_checkpoint, save_checkpoint
from deeprubin.core.metrics import classification_metrics, confusion_table, row_normalised, text_report
from deeprubin.tasks.transients.evaluation.predict import predict_probabilities, prediction_table

CLASSES = ["A", "B", "C"]


def test_metrics_match_hand_computation():
    y_true = ["A", "A", "B", "B", "C", "C"]
    y_pred = ["A", "B", "B", "B", "C", "A"]
    m = classification_metrics(y_true, y_pred, CLASSES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["B"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                                   "f1": pytest.approx(0.8), "support": 2}
    f1s = [m["per_class"][c]["f1"] for c in CLASSES]
    assert m["macro_f1"] == pytest.approx(np.mean(f1s))
    assert "macro avg" in text_report(y_true, y_pred, CLASSES)


def test_absent_class_scores_zero_without_warning():
    m = classification_metrics(["A", "B"], ["A", "B"], CLASSES)
    assert m["per_class"]["C"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_confusion_counts_and_row_normalisation():
    cm = confusion_table(["A", "A", "B"], ["A", "B", "B"], CLASSES)
    assert cm.loc["A"].tolist() == [1, 1, 0]
    norm = row_normalised(cm)
    assert norm.loc["A"].tolist() == [0.5, 0.5, 0.0]
    assert norm.loc["C"].tolist() == [0.0, 0.0, 0.0]  # no objects: zeros, not NaN


def test_prediction_table_and_probabilities():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    x = np.random.default_rng(0).normal(size=(5, 2, 4)).astype(np.float32)
    p = predict_probabilities(model, x, batch_size=2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    table = prediction_table(np.array(list("abcde")), p, CLASSES, np.array(["A"] * 5))
    assert list(table.columns) == ["object_id", "label", "predicted", "prob_A", "prob_B", "prob_C"]
    assert (table["predicted"] == np.array(CLASSES)[p.argmax(1)]).all()
    with pytest.raises(ValueError, match="no objects"):
        predict_probabilities(model, x[:0])


def test_checkpoint_round_trip_and_errors(tmp_path):
    cfg = {"_target_": "deeprubin.core.models.tcn.TCNClassifier", "name": "tcn", "channels": 4, "kernel_size": 3,
           "n_blocks": 2, "dropout": 0.0}
    from deeprubin.core.models import build_model

    model = build_model(cfg, n_inputs=4, n_classes=3).eval()
    path = save_checkpoint(tmp_path / "m.ckpt", model, model_config=cfg, classes=CLASSES, bands=["g", "r"],
                           n_inputs=4, config={"seed": 1}, metadata={"data_sha256": "x"})
    loaded, meta = load_checkpoint(path)
    x = torch.randn(2, 4, 10)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta["classes"] == CLASSES and meta["bands"] == ["g", "r"]
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="other.ckpt: not a DeepRubin checkpoint"):
        load_checkpoint(tmp_path / "other.ckpt")
