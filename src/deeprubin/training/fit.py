"""Fit a classifier with Lightning: seeded, class-weighted, early-stopped on validation loss."""
from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from omegaconf import DictConfig

from ..core.checkpoint import read_weights
from ..core.config import require
from ..core.tracking import temp_checkpoint_dir
from ..models import build_model
from .data import SplitArrays, class_weights, make_loader
from .module import LightCurveClassifier

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]


class EpochHistory(Callback):
    """Collects the epoch-level metrics Lightning has logged into a table.

    ``columns``: ``epoch`` then the logged metric names (``train_*`` and ``val_*``).
    """

    def __init__(self, columns: list[str] | tuple[str, ...] = tuple(HISTORY_COLUMNS)) -> None:
        self.columns = list(columns)
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        for key in self.columns[1:]:
            row[key] = float(metrics[key]) if key in metrics else np.nan
        self.rows.append(row)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Training metrics are reduced after validation; fill them into this epoch's row.
        metrics = trainer.callback_metrics
        if self.rows and self.rows[-1]["epoch"] == trainer.current_epoch:
            for key in (c for c in self.columns if c.startswith("train_")):
                if key in metrics:
                    self.rows[-1][key] = float(metrics[key])

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


@dataclass
class FitResult:
    model: torch.nn.Module
    history: pd.DataFrame
    best_val_loss: float
    epochs_run: int


def check_trainer_config(cfg: DictConfig) -> None:
    """Raise :class:`deeprubin.core.config.ConfigError` naming the first invalid trainer key."""
    for key in ("max_epochs", "batch_size", "learning_rate"):
        require(cfg, f"trainer.{key}", positive=True)
    require(cfg, "trainer.weight_decay", at_least=0)
    require(cfg, "trainer.early_stopping_patience", at_least=1)
    require(cfg, "trainer.num_workers", at_least=0)


def fit_classifier(cfg: DictConfig, data: dict[str, SplitArrays], model_config: dict, n_inputs: int,
                   classes: list[str], logger=None) -> FitResult:
    """Train the model of ``model_config`` on ``data["train"]``, early-stopping on ``data["val"]``.

    ``model_config`` is ``cfg.model`` after :func:`deeprubin.models.resolve_model_config`.
    Returns the best (lowest validation loss) weights, not the last ones.
    """
    check_trainer_config(cfg)
    t = cfg.trainer
    seed = int(cfg.seed)
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(model_config, n_inputs=n_inputs, n_classes=len(classes))
    # One forward pass before training: an architecture that cannot take this grid
    # (e.g. a kernel longer than the sequence) fails now, with its own message.
    with torch.no_grad():
        model.eval()(torch.from_numpy(data["train"].x[:2]))
    model.train()
    weights = class_weights(data["train"].y, len(classes)) if t.class_weighted_loss else None
    module = LightCurveClassifier(model, len(classes), weights, float(t.learning_rate), float(t.weight_decay),
                                  noise_resampling=bool(t.noise_resampling))
    train_loader = make_loader(data["train"], int(t.batch_size), shuffle=True, seed=seed,
                               num_workers=int(t.num_workers))
    val_loader = make_loader(data["val"], int(t.batch_size), shuffle=False, seed=seed, num_workers=int(t.num_workers))
    history = EpochHistory()
    with temp_checkpoint_dir() as ckpt_dir:
        best = ModelCheckpoint(dirpath=ckpt_dir, monitor="val_loss", mode="min", save_top_k=1,
                               save_weights_only=True)
        trainer = L.Trainer(
            max_epochs=int(t.max_epochs),
            accelerator=str(t.accelerator),
            devices=1,
            deterministic=bool(t.deterministic),
            logger=logger if logger is not None else False,
            callbacks=[best, EarlyStopping("val_loss", patience=int(t.early_stopping_patience)), history],
            enable_progress_bar=bool(t.progress_bar),
            enable_model_summary=False,
            log_every_n_steps=1,
        )
        trainer.fit(module, train_loader, val_loader)
        state = read_weights(best.best_model_path)["state_dict"]
        module.load_state_dict(state)
        best_val = float(best.best_model_score) if best.best_model_score is not None else float("nan")
    module.eval()
    return FitResult(model=module.model.cpu(), history=history.table(), best_val_loss=best_val,
                     epochs_run=trainer.current_epoch)
