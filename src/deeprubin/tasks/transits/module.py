"""Lightning module for binary segment classification (transit / no transit)."""
from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

#: Columns of ``history.csv`` (one row per epoch).
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_roc_auc", "val_pr_auc"]


class BinarySegmentClassifier(L.LightningModule):
    """Wraps a model ``(batch, 1, T) -> (batch, 1)`` logits; binary cross-entropy loss.

    Validation ROC-AUC and PR-AUC (average precision) are computed over the whole
    validation set each epoch (torchmetrics), not averaged over batches.

    Parameters
    ----------
    model : torch.nn.Module
    learning_rate, weight_decay : float
        AdamW settings (seed: 1e-3 and 1e-4).
    pos_weight : float
        Weight of positive examples in the loss (1 = none).
    augment_flip : bool
        Time-reverse a random half of every training batch: a transit (and an eclipse) is
        symmetric in time, so this doubles the variety of the training set for free.
    inject : mapping, optional
        Settings of :func:`deeprubin.tasks.transits.injection.inject_transits` (training batches only).
    channels, relative_scale, clip
        The input channels' names and normalisation (``transits.preprocess``), for injection.
    """

    def __init__(self, model: nn.Module, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
                 pos_weight: float = 1.0, augment_flip: bool = False, inject=None, channels=("robust_z",),
                 relative_scale: float = 0.01, clip: float = 30.0):
        super().__init__()
        self.model = model
        self.augment_flip = augment_flip
        self.inject = inject if inject is not None and float(inject.probability) > 0 else None
        self.channels = list(channels)
        self.relative_scale = relative_scale
        self.clip = clip
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.register_buffer("pos_weight", torch.tensor([float(pos_weight)]))
        self.val_roc_auc = BinaryAUROC()
        self.val_pr_auc = BinaryAveragePrecision()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(-1)

    def _loss(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=self.pos_weight)
        return loss, logits, y

    def training_step(self, batch, batch_idx):
        if self.augment_flip:
            x, y = batch
            # torch's global generator: seeded by lightning.seed_everything, so reproducible
            flip = torch.rand(len(x), device=x.device) < 0.5
            batch = (torch.where(flip[:, None, None], x.flip(-1), x), y)
        if self.inject is not None:
            from .injection import inject_transits

            batch = inject_transits(batch[0], batch[1], self.inject, self.channels, self.relative_scale, self.clip)
        loss, _, y = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logits, y = self._loss(batch)
        probs = torch.sigmoid(logits)
        self.val_roc_auc.update(probs, y.long())
        self.val_pr_auc.update(probs, y.long())
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))

    def on_validation_epoch_end(self) -> None:
        self.log("val_roc_auc", self.val_roc_auc.compute())
        self.log("val_pr_auc", self.val_pr_auc.compute())
        self.val_roc_auc.reset()
        self.val_pr_auc.reset()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


#: The classes of a segment, in the order of :func:`class_logits`' columns.
SEGMENT_CLASSES = ("no_transit", "transit")


@torch.no_grad()
def _batched(model: nn.Module, x, batch_size: int, link) -> np.ndarray:
    model.eval()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    out = []
    for start in range(0, len(x), batch_size):
        logits = model(torch.from_numpy(x[start:start + batch_size]))
        out.append(link(logits.reshape(-1)).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_scores(model: nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """Transit probabilities, shape (n,), for segments ``x`` of shape (n, n_channels, length)."""
    return _batched(model, x, batch_size, torch.sigmoid)


def class_logits(model: nn.Module, x, batch_size: int = 256) -> np.ndarray:
    """Logits of :data:`SEGMENT_CLASSES`, shape (n, 2) float64: ``[0, z]`` for the model's transit
    logit ``z`` (a softmax over them is the sigmoid of ``z``), the form the calibrators take."""
    z = _batched(model, x, batch_size, lambda t: t).astype(np.float64)
    return np.stack([np.zeros_like(z), z], axis=1)
