"""The training loop every task shares: split arrays, seeded loaders, the Lightning fit.

A task builds its ``LightningModule`` (its loss, its metrics) and its :class:`SplitArrays`;
:func:`fit_module` runs Lightning with early stopping and returns the best epoch's weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from .checkpoint import read_weights
from .tracking import temp_checkpoint_dir


@dataclass
class SplitArrays:
    """Model inputs and integer labels for one split.

    Attributes
    ----------
    object_ids : numpy.ndarray, shape (n,)
        The example's id (an object, or a segment of one).
    x : numpy.ndarray, shape (n, n_channels, length), float32
    y : numpy.ndarray, shape (n,), int64
        Index into the task's class list (0/1 for a binary task).
    """

    object_ids: np.ndarray
    x: np.ndarray
    y: np.ndarray


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``n / (C * n_c)``, shape (C,); absent classes get 0."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def make_loader(arrays: SplitArrays, batch_size: int, shuffle: bool, seed: int,
                num_workers: int = 0) -> DataLoader:
    """A DataLoader whose shuffling depends only on ``seed``."""
    dataset = TensorDataset(torch.from_numpy(arrays.x), torch.from_numpy(arrays.y))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=num_workers)


class EpochHistory(Callback):
    """Collects the epoch-level metrics Lightning has logged into a table.

    ``columns``: ``epoch`` then the logged metric names (``train_*`` and ``val_*``).
    With ``late_validation=True`` the ``val_*`` values are also read at the end of the
    training epoch, for modules that compute them in their own ``on_validation_epoch_end``
    (which runs after the callbacks' hook).
    """

    def __init__(self, columns: list[str] | tuple[str, ...], late_validation: bool = False) -> None:
        self.columns = list(columns)
        self.late_validation = late_validation
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
            keys = self.columns[1:] if self.late_validation else [c for c in self.columns if c.startswith("train_")]
            for key in keys:
                if key in metrics:
                    self.rows[-1][key] = float(metrics[key])

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


@dataclass
class FitResult:
    model: torch.nn.Module
    history: pd.DataFrame
    best_score: float      # the monitored validation metric at the best epoch
    epochs_run: int


#: Where a ``trainer.callbacks`` entry's ``_target_`` may point: Lightning's own callbacks.
CALLBACK_MODULE = "lightning.pytorch.callbacks"


def ensemble_result(results: list[FitResult]) -> FitResult:
    """The fits of an ensemble's members as one :class:`FitResult`: their
    :class:`~deeprubin.core.models.ensemble.DeepEnsemble`, the histories stacked with a leading
    ``member`` column, the members' mean best score and their total epochs."""
    from .models.ensemble import DeepEnsemble

    history = pd.concat([r.history.assign(member=k) for k, r in enumerate(results)], ignore_index=True)
    history = history[["member", *[c for c in history.columns if c != "member"]]]
    return FitResult(DeepEnsemble([r.model for r in results]), history,
                     float(np.mean([r.best_score for r in results])), int(sum(r.epochs_run for r in results)))


def extra_callbacks(trainer_cfg) -> list[Callback]:
    """The callbacks of ``trainer.callbacks`` (a mapping name -> ``_target_`` node), built as
    ``cls(**arguments)`` in name order (not ``hydra.utils.instantiate``: no recursion, no directives). Only classes of :data:`CALLBACK_MODULE` that are
    Lightning ``Callback``s may be named (a config names code to run), and no nested ``_target_``.

    Raises
    ------
    ConfigError
        Naming the key ``trainer.callbacks.<name>`` and what is wrong, before any training.
    """
    from omegaconf import DictConfig, OmegaConf

    from .config import ConfigError

    node = trainer_cfg.get("callbacks") if hasattr(trainer_cfg, "get") else None
    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else (node or {})
    built = []
    for name in sorted(node):
        spec = dict(node[name] or {})
        key = f"trainer.callbacks.{name}"
        target = str(spec.get("_target_", ""))
        module, _, cls_name = target.rpartition(".")
        if module != CALLBACK_MODULE:
            raise ConfigError(f"config key '{key}._target_' = {target!r}: only {CALLBACK_MODULE}.<Callback> "
                              "classes may be named")
        import lightning.pytorch.callbacks as callbacks

        cls = getattr(callbacks, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Callback)):
            raise ConfigError(f"config key '{key}._target_' = {target!r} is not a Lightning Callback class")
        arguments = {k: v for k, v in spec.items() if k != "_target_"}
        if any(isinstance(v, dict) and "_target_" in v for v in arguments.values()) or any(
                str(k).startswith("_") for k in arguments):
            raise ConfigError(f"config key '{key}': nested _target_ nodes and Hydra directives are not allowed")
        try:
            built.append(cls(**arguments))
        except Exception as err:  # a wrong argument: name the key
            raise ConfigError(f"config key '{key}': {target} could not be built: {err}") from None
    return built


def fit_module(trainer_cfg, module: L.LightningModule, train_loader: DataLoader, val_loader: DataLoader,
               history: EpochHistory, monitor: str = "val_loss", mode: str = "min", logger=None) -> FitResult:
    """Fit ``module`` (whose network is ``module.model``), early-stopping on ``monitor``.

    ``trainer_cfg`` supplies ``max_epochs``, ``accelerator``, ``deterministic``,
    ``early_stopping_patience``, ``progress_bar`` and optional extra ``callbacks``
    (:func:`extra_callbacks`; built before the trainer, so a bad one fails before any work). Returns the best epoch's weights
    (by ``monitor``), not the last ones; checkpoints live in a temporary folder.
    """
    t = trainer_cfg
    extra = extra_callbacks(t)
    with temp_checkpoint_dir() as ckpt_dir:
        best = ModelCheckpoint(dirpath=ckpt_dir, monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True)
        trainer = L.Trainer(
            max_epochs=int(t.max_epochs),
            accelerator=str(t.accelerator),
            devices=1,
            deterministic=bool(t.deterministic),
            logger=logger if logger is not None else False,
            callbacks=[best, EarlyStopping(monitor, mode=mode, patience=int(t.early_stopping_patience)), history,
                       *extra],
            enable_progress_bar=bool(t.progress_bar),
            enable_model_summary=False,
            log_every_n_steps=1,
        )
        trainer.fit(module, train_loader, val_loader)
        state = read_weights(best.best_model_path)["state_dict"]
        module.load_state_dict(state)
        score = float(best.best_model_score) if best.best_model_score is not None else float("nan")
    module.eval()
    return FitResult(model=module.model.cpu().eval(), history=history.table(), best_score=score,
                     epochs_run=trainer.current_epoch)
