"""Fit a light-curve classifier: seeded, class-weighted, early-stopped on validation loss."""
from __future__ import annotations

import logging

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from ....core.config import ConfigError, require
from ....core.training import (EpochHistory, FitResult, SplitArrays, class_weights, ensemble_result, fit_module,
                               make_loader)
from ....core.models import build_model
from ....core.models.ensemble import check_members, member_seed
from .module import LightCurveClassifier

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]


def check_trainer_config(cfg: DictConfig) -> None:
    """Raise :class:`deeprubin.core.config.ConfigError` naming the first invalid trainer key."""
    for key in ("max_epochs", "batch_size", "learning_rate"):
        require(cfg, f"trainer.{key}", positive=True)
    require(cfg, "trainer.weight_decay", at_least=0)
    require(cfg, "trainer.early_stopping_patience", at_least=1)
    require(cfg, "trainer.num_workers", at_least=0)
    check_members(cfg.trainer.get("ensemble_members", 1), "trainer.ensemble_members")


def fit_ensemble(cfg: DictConfig, data: dict[str, SplitArrays], model_config: dict, n_inputs: int,
                 classes: list[str], logger=None) -> FitResult:
    """``trainer.ensemble_members`` networks (:func:`fit_classifier`, seeds :func:`member_seed`) as one
    :class:`~deeprubin.core.models.ensemble.DeepEnsemble`; a single network when it is 1.

    The history gains a ``member`` column and each member's MLflow metrics are prefixed
    ``member<k>-``; ``best_score`` is the members' mean best validation
    loss and ``epochs_run`` their total.
    """
    check_trainer_config(cfg)
    n_members = int(cfg.trainer.get("ensemble_members", 1))
    if n_members == 1:
        return fit_classifier(cfg, data, model_config, n_inputs, classes, logger=logger)
    results = []
    for member in range(n_members):
        member_cfg = OmegaConf.merge(cfg, {"seed": member_seed(int(cfg.seed), member)})
        log.info("train: ensemble member %d/%d (seed %d)", member + 1, n_members, member_cfg.seed)
        if hasattr(logger, "set_prefix"):  # each member's curves apart in MLflow: member0-val_loss, ...
            logger.set_prefix(f"member{member}")
        results.append(fit_classifier(member_cfg, data, model_config, n_inputs, classes, logger=logger))
    return ensemble_result(results)


def fit_classifier(cfg: DictConfig, data: dict[str, SplitArrays], model_config: dict, n_inputs: int,
                   classes: list[str], logger=None) -> FitResult:
    """Train the model of ``model_config`` on ``data["train"]``, early-stopping on ``data["val"]``.

    ``model_config`` is ``cfg.model`` after :func:`deeprubin.core.models.resolve_model_config`.
    Returns the best (lowest validation loss) weights, not the last ones
    (``FitResult.best_score`` is that validation loss).
    """
    check_trainer_config(cfg)
    t = cfg.trainer
    seed = int(cfg.seed)
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(model_config, n_inputs=n_inputs, n_classes=len(classes))
    if bool(t.noise_resampling) and data["train"].x.ndim != 3:
        raise ConfigError(f"config key 'trainer.noise_resampling' redraws GP-grid channels; the model "
                          f"{model_config.get('_target_')} takes flat inputs of shape {data['train'].x.shape[1:]}")
    if hasattr(model, "fit_input_scaling"):   # e.g. the fusion model's feature centre and scale, from train only
        model.fit_input_scaling(torch.from_numpy(data["train"].x))
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
    return fit_module(t, module, train_loader, val_loader, EpochHistory(HISTORY_COLUMNS), monitor="val_loss",
                      mode="min", logger=logger)
