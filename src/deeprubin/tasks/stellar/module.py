"""Lightning module of the stellar task: MK class and heteroscedastic Teff, logg, [Fe/H] in one loss."""
from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from .model import split_outputs

#: Columns of ``history.csv`` before the per-target ones (one row per epoch);
#: :func:`history_columns` appends ``val_mae_<name>`` per target.
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_class_loss", "val_target_nll", "val_accuracy",
                   "val_macro_f1"]

SCHEDULERS = ("none", "cosine", "onecycle")


def history_columns(target_names: Sequence[str]) -> list[str]:
    """:data:`HISTORY_COLUMNS` then ``val_mae_<name>`` (standardised units) for each target."""
    return [*HISTORY_COLUMNS, *(f"val_mae_{name}" for name in target_names)]


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                 beta: float = 0.0) -> torch.Tensor:
    """Mean heteroscedastic Gaussian negative log-likelihood over the known targets.

    ``0.5 * (log_var + (target - mean)^2 / exp(log_var))`` per known entry (the constant
    ``0.5 log 2 pi`` left out), averaged over the entries where ``mask`` is True (and ``target``
    finite); 0 (still a graph node) where none is known. Per target it is minimised by
    ``mean = target`` and ``log_var = log (target - mean)^2``.

    ``beta`` > 0 is the beta-NLL of Seitzer et al. (2022, ICLR): each entry weighted by the
    (detached) ``variance ** beta``, which keeps poorly fitted examples from being written off
    as noisy (``beta = 0.5`` is their recommendation; 0 is the plain NLL).
    """
    known = mask & torch.isfinite(target)
    safe = torch.where(known, target, mean.detach())     # no NaN enters the graph (0 * NaN = NaN)
    per = 0.5 * (log_var + (safe - mean) ** 2 * torch.exp(-log_var))
    if beta > 0:
        per = per * torch.exp(beta * log_var).detach()
    weight = known.to(per.dtype)
    return (per * weight).sum() / weight.sum().clamp_min(1.0)


class StellarMultiTask(L.LightningModule):
    """Wraps a stellar model (:mod:`deeprubin.tasks.stellar.model`); one loss for class and parameters.

    A batch is ``(x, y_class, y_targets, target_mask)``: inputs, int64 class index, float32
    standardised targets ``(batch, n_targets)`` and a bool mask (True = target known).
    Loss = ``classification_weight`` x cross-entropy + ``target_weight`` x :func:`gaussian_nll`.
    Validation accuracy, macro-F1 and the MAE of each target's mean (standardised units, known
    targets only) are computed over the whole validation set each epoch.

    Parameters
    ----------
    model : torch.nn.Module
    n_classes : int
        Classes of the class head (0: regression only; the class loss and metrics are then off).
    target_names : sequence of str
        Names of the targets in column order (``val_mae_<name>``).
    learning_rate, weight_decay : float
        AdamW settings.
    class_weights : torch.Tensor, optional
        Per-class weights of the cross-entropy, shape (n_classes,).
    label_smoothing : float
        Of the cross-entropy, in [0, 1).
    classification_weight, target_weight : float
        Weights of the two loss terms (>= 0, not both 0).
    nll_beta : float
        beta of :func:`gaussian_nll` (0 = plain Gaussian NLL).
    scheduler : {"none", "cosine", "onecycle"}
        Learning-rate schedule over the whole fit, stepped per batch (cosine annealing to 0, or
        one-cycle with its peak at ``learning_rate``).
    """

    def __init__(self, model: nn.Module, n_classes: int, target_names: Sequence[str], learning_rate: float = 1e-3,
                 weight_decay: float = 1e-4, class_weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, classification_weight: float = 1.0, target_weight: float = 1.0,
                 nll_beta: float = 0.0, scheduler: str = "none"):
        super().__init__()
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"StellarMultiTask: label_smoothing must be in [0, 1), got {label_smoothing}")
        if float(classification_weight) < 0 or float(target_weight) < 0 or (
                float(classification_weight) == 0 and float(target_weight) == 0):
            raise ValueError("StellarMultiTask: classification_weight and target_weight must be >= 0 and not both "
                             f"0, got {classification_weight} and {target_weight}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"StellarMultiTask: scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if float(nll_beta) < 0:
            raise ValueError(f"StellarMultiTask: nll_beta must be >= 0, got {nll_beta}")
        self.model = model
        self.n_classes, self.target_names = int(n_classes), [str(n) for n in target_names]
        self.n_targets = len(self.target_names)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.label_smoothing = float(label_smoothing)
        self.classification_weight = float(classification_weight) if self.n_classes > 0 else 0.0
        self.target_weight = float(target_weight) if self.n_targets > 0 else 0.0
        self.nll_beta, self.scheduler = float(nll_beta), scheduler
        if class_weights is not None and tuple(class_weights.shape) != (self.n_classes,):
            raise ValueError(f"StellarMultiTask: class_weights of shape {tuple(class_weights.shape)}, expected "
                             f"({self.n_classes},)")
        self.register_buffer("class_weights", class_weights.float() if class_weights is not None else None)
        self.with_class_metrics = self.n_classes >= 2 and self.classification_weight > 0
        if self.with_class_metrics:
            self.val_accuracy = MulticlassAccuracy(self.n_classes, average="micro")
            self.val_macro_f1 = MulticlassF1Score(self.n_classes, average="macro")
        self._abs_error = torch.zeros(self.n_targets, dtype=torch.float64)
        self._n_known = torch.zeros(self.n_targets, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _losses(self, batch):
        x, y, targets, mask = batch
        logits, mean, log_var = split_outputs(self(x), self.n_classes, self.n_targets)
        if self.classification_weight > 0:
            class_loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights,
                                                     label_smoothing=self.label_smoothing)
        else:
            class_loss = logits.sum() * 0.0
        nll = gaussian_nll(mean, log_var, targets, mask, self.nll_beta) if self.n_targets else mean.sum() * 0.0
        loss = self.classification_weight * class_loss + self.target_weight * nll
        return loss, class_loss, nll, logits, mean

    def training_step(self, batch, batch_idx):
        loss, *_ = self._losses(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[1]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, class_loss, nll, logits, mean = self._losses(batch)
        _, y, targets, mask = batch
        n = len(y)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("val_class_loss", class_loss, on_step=False, on_epoch=True, batch_size=n)
        self.log("val_target_nll", nll, on_step=False, on_epoch=True, batch_size=n)
        if self.with_class_metrics:
            self.val_accuracy.update(logits, y)
            self.val_macro_f1.update(logits, y)
        known = mask & torch.isfinite(targets)
        error = torch.where(known, (mean - torch.nan_to_num(targets)).abs(), torch.zeros_like(mean))
        self._abs_error += error.sum(dim=0).detach().cpu().double()
        self._n_known += known.sum(dim=0).cpu().double()

    def on_validation_epoch_end(self) -> None:
        if self.with_class_metrics:
            self.log("val_accuracy", self.val_accuracy.compute())
            self.log("val_macro_f1", self.val_macro_f1.compute())
            self.val_accuracy.reset()
            self.val_macro_f1.reset()
        mae = self._abs_error / self._n_known   # NaN for a target unknown in every validation example
        for name, value in zip(self.target_names, mae):
            self.log(f"val_mae_{name}", float(value))
        self._abs_error.zero_()
        self._n_known.zero_()

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        if self.scheduler == "none":
            return optimizer
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if self.scheduler == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        else:
            schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.learning_rate, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
