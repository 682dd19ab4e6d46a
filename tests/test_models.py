import numpy as np
import pytest
import torch

from deeprubin.models import build_model
from deeprubin.models.gru import GRUClassifier
from deeprubin.models.tcn import TCNClassifier
from deeprubin.training.data import class_weights, grid_features, split_arrays

import pandas as pd


@pytest.mark.parametrize("cfg", [
    {"_target_": "deeprubin.models.tcn.TCNClassifier", "name": "tcn", "channels": 8, "kernel_size": 3,
     "n_blocks": 3, "dropout": 0.0},
    {"_target_": "deeprubin.models.gru.GRUClassifier", "name": "gru", "hidden_size": 8, "n_layers": 1,
     "dropout": 0.0, "bidirectional": True},
])
def test_models_map_grid_to_logits(cfg):
    model = build_model(cfg, n_inputs=4, n_classes=6)
    out = model(torch.randn(5, 4, 20))
    assert out.shape == (5, 6)
    assert torch.isfinite(out).all()


def test_tcn_is_causal():
    torch.manual_seed(0)
    model = TCNClassifier(2, 3, channels=4, n_blocks=2, dropout=0.0).eval()
    x = torch.randn(1, 2, 16)
    h1 = model.blocks(x)
    x2 = x.clone()
    x2[..., 10:] += 5.0
    h2 = model.blocks(x2)
    torch.testing.assert_close(h1[..., :10], h2[..., :10])


def test_invalid_hyperparameters():
    with pytest.raises(ValueError, match="model \\(tcn\\)"):
        TCNClassifier(2, 3, channels=0)
    with pytest.raises(ValueError, match="model \\(gru\\)"):
        GRUClassifier(2, 3, hidden_size=8, dropout=1.5)
    with pytest.raises(ValueError, match="_target_"):
        build_model({"channels": 3}, 2, 3)


def test_features_and_split_arrays():
    mean = np.ones((3, 2, 5))
    std = np.zeros((3, 2, 5))
    x = grid_features(mean, std)
    assert x.shape == (3, 4, 5) and x.dtype == np.float32
    manifest = pd.DataFrame({"object_id": ["a", "b", "c"], "group_id": ["a", "b", "c"],
                             "label": ["X", "Y", "X"], "split": ["train", "train", "test"]})
    data = split_arrays(np.array(["c", "b", "a"]), x, manifest, ["X", "Y"])
    assert list(data["train"].object_ids) == ["a", "b"]
    assert list(data["train"].y) == [0, 1]
    with pytest.raises(ValueError, match="unknown value"):
        split_arrays(np.array(["a"]), x[:1], manifest.assign(label="Z"), ["X", "Y"])
    with pytest.raises(ValueError, match="shape"):
        grid_features(mean, std[:, :1])


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    assert w[0] < w[1] and w[2] == 0
