"""The LightningModule shared by every classifier architecture."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


def resample_from_uncertainty(x: torch.Tensor) -> torch.Tensor:
    """Redraw mean channels from their std channels.

    ``x`` is ``(batch, 2B, T)``: B GP-mean channels then the B matching GP-std
    channels (see :func:`deeprubin.tasks.transients.training.data.grid_features`). Returns a new
    tensor; std channels are unchanged. Uses torch's global generator, which
    ``lightning.seed_everything`` seeds, so runs stay reproducible.
    """
    n_bands = x.shape[1] // 2
    mean, std = x[:, :n_bands], x[:, n_bands:]
    return torch.cat([mean + std * torch.randn_like(mean), std], dim=1)


class LightCurveClassifier(L.LightningModule):
    """Wraps any ``nn.Module`` mapping ``(batch, C_in, T)`` to logits ``(batch, n_classes)``.

    Parameters
    ----------
    model : torch.nn.Module
        The architecture (see :mod:`deeprubin.core.models`).
    n_classes : int
    class_weights : torch.Tensor, shape (n_classes,), optional
        Weights of the cross-entropy loss (inverse class frequency against imbalance).
    learning_rate, weight_decay : float
        AdamW settings.
    noise_resampling : bool
        Redraw the GP-mean channels of every training batch as ``mean + std * N(0, 1)``
        (a fresh draw each time the batch is seen, so each epoch), so the model sees the
        measurement uncertainty as variation, not only as an input channel.
    """

    def __init__(self, model: nn.Module, n_classes: int, class_weights: torch.Tensor | None = None,
                 learning_rate: float = 3e-3, weight_decay: float = 1e-4, noise_resampling: bool = False):
        super().__init__()
        self.model = model
        self.noise_resampling = noise_resampling
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        weights = class_weights if class_weights is not None else torch.ones(n_classes)
        self.register_buffer("class_weights", weights.float())
        self.train_acc = MulticlassAccuracy(num_classes=n_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=n_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch, accuracy: MulticlassAccuracy, prefix: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        accuracy(logits.argmax(dim=-1), y)
        self.log(f"{prefix}_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log(f"{prefix}_acc", accuracy, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx):
        if self.noise_resampling:
            x, y = batch
            batch = (resample_from_uncertainty(x), y)
        return self._step(batch, self.train_acc, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_acc, "val")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
