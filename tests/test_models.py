import numpy as np
import pandas as pd
import pytest
import torch
from conftest import fit_one_batch

from deeprubin.core.models import build_model
from deeprubin.core.models.gru import GRUClassifier
from deeprubin.core.models.tcn import TCNClassifier
from deeprubin.core.training import class_weights
from deeprubin.tasks.transients.training.data import grid_features, split_arrays

SMALL_MODELS = [
    {"_target_": "deeprubin.core.models.tcn.TCNClassifier", "name": "tcn", "channels": 8, "kernel_size": 3,
     "n_blocks": 3, "dropout": 0.0},
    {"_target_": "deeprubin.core.models.gru.GRUClassifier", "name": "gru", "hidden_size": 8, "n_layers": 1,
     "dropout": 0.0, "bidirectional": True},
    {"_target_": "deeprubin.core.models.inception.InceptionResNetClassifier", "name": "inception",
     "branch_channels": 4, "kernel_sizes": [3, 5, 9], "n_modules": 3, "blocks_per_residual": 3, "dropout": 0.0},
    {"_target_": "deeprubin.core.models.transformer.TransformerClassifier", "name": "transformer", "d_model": 16,
     "n_heads": 2, "n_layers": 1, "dim_feedforward": 32, "dropout": 0.0, "grid_step_days": 2.0},
]


@pytest.mark.parametrize("cfg", SMALL_MODELS, ids=lambda c: c["name"])
def test_models_map_grid_to_logits(cfg):
    model = build_model(cfg, n_inputs=4, n_classes=6)
    out = model(torch.randn(5, 4, 20))
    assert out.shape == (5, 6)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cfg", SMALL_MODELS, ids=lambda c: c["name"])
def test_models_overfit_one_batch(cfg):
    """Every architecture can drive the loss on a single fixed batch to ~0."""
    torch.manual_seed(0)
    model = build_model(cfg, n_inputs=4, n_classes=3)
    x, y = torch.randn(12, 4, 20), torch.arange(12) % 3
    loss = fit_one_batch(model, x, y, torch.optim.Adam(model.parameters(), lr=1e-2))
    assert (model(x).argmax(-1) == y).all(), f"final training loss {loss:.3f}"


@pytest.mark.parametrize("name", ["tcn", "gru", "inception", "transformer"])
def test_shipped_model_configs_build(base_cfg, name):
    from deeprubin.core.config import compose_task
    from deeprubin.core.models import resolve_model_config

    cfg = compose_task("transients", [f"model={name}"])
    model_cfg = resolve_model_config(cfg.model, grid_step_days=2.0)
    model = build_model(model_cfg, n_inputs=4, n_classes=6)
    assert model(torch.randn(2, 4, int(cfg.preprocess.n_grid))).shape == (2, 6)


def test_transformer_padding_mask_ignores_padded_steps():
    from deeprubin.core.models.transformer import TransformerClassifier

    torch.manual_seed(0)
    model = TransformerClassifier(4, 3, d_model=8, n_heads=2, n_layers=1, dim_feedforward=16, dropout=0.0).eval()
    x = torch.randn(1, 4, 10)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[:, 7:] = True
    x2 = x.clone()
    x2[..., 7:] = 100.0
    torch.testing.assert_close(model(x, mask), model(x2, mask))


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
    from deeprubin.core.models.inception import InceptionResNetClassifier
    from deeprubin.core.models.transformer import TransformerClassifier

    with pytest.raises(ValueError, match="n_heads must divide d_model"):
        TransformerClassifier(4, 3, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="kernel_sizes must be odd"):
        InceptionResNetClassifier(4, 3, kernel_sizes=[4, 8])
    with pytest.raises(ValueError, match="kernel size 41 is too large for a grid of 10 steps"):
        InceptionResNetClassifier(4, 3, kernel_sizes=[5, 41], n_modules=3)(torch.randn(1, 4, 10))


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


def test_noise_resampling_redraws_means_only():
    from deeprubin.tasks.transients.training.module import resample_from_uncertainty

    torch.manual_seed(0)
    x = torch.cat([torch.zeros(64, 2, 30), torch.full((64, 2, 30), 0.5)], dim=1)
    out = resample_from_uncertainty(x)
    torch.testing.assert_close(out[:, 2:], x[:, 2:])
    assert abs(out[:, :2].std().item() - 0.5) < 0.02
    x[:, 2:] = 0.0
    torch.testing.assert_close(resample_from_uncertainty(x), x)
