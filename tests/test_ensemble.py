"""Deep ensembles (issue 20, point 3): several seeds' networks averaged and saved as one checkpoint."""
from __future__ import annotations

import pytest
import torch

from deeprubin.core.checkpoint import CheckpointError, load_checkpoint, read_weights, save_checkpoint
from deeprubin.core.models import build_model
from deeprubin.core.models.ensemble import MAX_MEMBERS, DeepEnsemble, member_class
from deeprubin.core.models.tcn import TCNClassifier

TCN = {"_target_": "deeprubin.core.models.tcn.TCNClassifier", "name": "tcn", "channels": 8, "kernel_size": 3,
       "n_blocks": 2, "dropout": 0.1}


def members(n: int, n_classes: int = 3) -> list[torch.nn.Module]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_model(TCN, n_inputs=4, n_classes=n_classes).eval())
    return out


def save(path, model, n_classes=3):
    return save_checkpoint(path, model, model_config=TCN, classes=[f"c{i}" for i in range(n_classes)], bands=["g", "r"],
                           n_inputs=4, config={"seed": 1}, metadata={})


def test_the_ensemble_averages_probabilities():
    nets = members(3)
    x = torch.randn(5, 4, 16)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), -1) for m in nets]).mean(0)
        out = DeepEnsemble(nets).eval()(x)
    assert out.shape == (5, 3)
    assert torch.allclose(torch.softmax(out, -1), mean, atol=1e-6)   # softmax of its logits = mean probability


def test_a_binary_ensemble_averages_sigmoids():
    nets = members(4, n_classes=1)
    x = torch.randn(6, 4, 16)
    with torch.no_grad():
        mean = torch.stack([torch.sigmoid(m(x)) for m in nets]).mean(0)
        out = DeepEnsemble(nets)(x)
    assert out.shape == (6, 1) and torch.allclose(torch.sigmoid(out), mean, atol=1e-6)


def test_the_ensemble_is_saved_and_loaded_as_one_checkpoint(tmp_path):
    ensemble = DeepEnsemble(members(3)).eval()
    save(tmp_path / "e.ckpt", ensemble)
    loaded, meta = load_checkpoint(tmp_path / "e.ckpt")
    assert isinstance(loaded, DeepEnsemble) and len(loaded.members) == 3 and meta["n_members"] == 3
    assert member_class(loaded) is TCNClassifier and not loaded.training
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), ensemble(x))


def test_a_single_network_checkpoint_is_unchanged(tmp_path):
    """No ``n_members`` field for one network: its file is what it was before ensembles."""
    save(tmp_path / "one.ckpt", members(1)[0])
    assert "n_members" not in read_weights(tmp_path / "one.ckpt")
    model, _ = load_checkpoint(tmp_path / "one.ckpt")
    assert isinstance(model, TCNClassifier)


@pytest.mark.parametrize("value", [0, MAX_MEMBERS + 1, "3", True, 2.0])
def test_a_bad_member_count_is_named(tmp_path, value):
    ensemble = DeepEnsemble(members(2))
    save(tmp_path / "e.ckpt", ensemble)
    payload = read_weights(tmp_path / "e.ckpt")
    payload["n_members"] = value
    torch.save(payload, tmp_path / "e.ckpt")
    with pytest.raises(CheckpointError, match=r"e\.ckpt: field 'n_members' must be an integer from 1 to 64"):
        load_checkpoint(tmp_path / "e.ckpt")


def test_weights_of_another_member_count_are_named(tmp_path):
    save(tmp_path / "e.ckpt", DeepEnsemble(members(3)))
    payload = read_weights(tmp_path / "e.ckpt")
    payload["n_members"] = 2
    torch.save(payload, tmp_path / "e.ckpt")
    with pytest.raises(CheckpointError, match=r"e\.ckpt: field 'state_dict' does not fit"):
        load_checkpoint(tmp_path / "e.ckpt")


def test_an_ensemble_needs_two_members_of_one_architecture():
    with pytest.raises(ValueError, match="needs 2 to 64 members, got 1"):
        DeepEnsemble(members(1))
    gru = build_model({"_target_": "deeprubin.core.models.gru.GRUClassifier", "hidden_size": 4, "n_layers": 1,
                       "dropout": 0.0, "bidirectional": False}, n_inputs=4, n_classes=3)
    with pytest.raises(ValueError, match="share one architecture"):
        DeepEnsemble([members(1)[0], gru])


def test_mc_dropout_reaches_every_member():
    ensemble = DeepEnsemble(members(2)).train()
    assert all(m.training for m in ensemble.members)
    assert len(list(ensemble.parameters())) == 2 * len(list(members(1)[0].parameters()))
