"""The shared training loop (deeprubin.core.training): extra callbacks from `_target_` nodes."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from deeprubin.core.config import ConfigError
from deeprubin.core.training import EpochHistory, SplitArrays, extra_callbacks, fit_module, make_loader


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 2))

    def training_step(self, batch, _):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.model(x), y), on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer_cfg(**callbacks):
    return OmegaConf.create({"max_epochs": 3, "accelerator": "cpu", "deterministic": True,
                             "early_stopping_patience": 5, "progress_bar": False, "callbacks": callbacks})


def arrays(seed: int) -> SplitArrays:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 32)
    x = (rng.normal(size=(32, 2, 4)) + y[:, None, None]).astype(np.float32)
    return SplitArrays(np.arange(32).astype(str), x, y.astype(np.int64))


def test_a_callback_from_its_target_runs_in_the_fit():
    torch.manual_seed(0)
    cfg = trainer_cfg(lr_drop={"_target_": "lightning.pytorch.callbacks.GradientAccumulationScheduler",
                               "scheduling": {0: 2}})
    (callback,) = extra_callbacks(cfg)
    assert type(callback).__name__ == "GradientAccumulationScheduler"
    module = Tiny()
    result = fit_module(cfg, module, make_loader(arrays(0), 8, True, 0), make_loader(arrays(1), 8, False, 0),
                        EpochHistory(["epoch", "train_loss", "val_loss"]))
    assert result.epochs_run == 3 and len(result.history) == 3
    assert extra_callbacks(trainer_cfg()) == [] and extra_callbacks(OmegaConf.create({})) == []


@pytest.mark.parametrize("spec, match", [
    ({"_target_": "os.system", "command": "true"}, r"'trainer\.callbacks\.x\._target_' = 'os\.system': only "
                                                   r"lightning\.pytorch\.callbacks\.<Callback> classes"),
    ({"_target_": "lightning.pytorch.callbacks.Path"}, r"'trainer\.callbacks\.x\._target_' = .* is not a "
                                                       r"Lightning Callback class"),
    ({"_target_": "lightning.pytorch.callbacks.Timer", "inner": {"_target_": "os.getcwd"}},
     r"'trainer\.callbacks\.x': nested _target_ nodes and Hydra directives are not allowed"),
    ({"_target_": "lightning.pytorch.callbacks.Timer", "_recursive_": False}, r"Hydra directives are not allowed"),
    ({"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitr": "val_loss"},
     r"'trainer\.callbacks\.x': lightning\.pytorch\.callbacks\.EarlyStopping could not be built"),
])
def test_a_bad_callback_is_refused_naming_the_key(spec, match):
    with pytest.raises(ConfigError, match=match):
        extra_callbacks(trainer_cfg(x=spec))
