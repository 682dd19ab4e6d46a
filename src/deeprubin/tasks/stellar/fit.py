"""Fit a stellar multi-task model, predict with it, and standardise its targets.

:func:`fit_stellar` trains a :mod:`deeprubin.tasks.stellar.model` network through the shared
loop (:func:`deeprubin.core.training.fit_module`), seeded and early-stopped on a validation
metric; :func:`predict_outputs` gives class probabilities and each target's mean and sigma;
:class:`TargetScaler` standardises the targets (and carries its numbers in a checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ...core.config import ConfigError, require
from ...core.models import build_model
from ...core.models.ensemble import DeepEnsemble
from ...core.training import EpochHistory, FitResult, class_weights, fit_module
from .model import split_outputs
from .module import SCHEDULERS, StellarMultiTask, history_columns

#: Metrics a fit may monitor (early stopping, best epoch) and their direction; ``val_mae_<target>``
#: (minimised) is allowed too.
MONITOR_MODES = {"val_loss": "min", "val_target_nll": "min", "val_class_loss": "min", "val_accuracy": "max",
                 "val_macro_f1": "max"}


@dataclass
class StellarArrays:
    """Model inputs, classes and standardised targets of one split.

    Attributes
    ----------
    ids : numpy.ndarray, shape (n,)
        The example's id (a star, or a spectrum of one).
    x : numpy.ndarray, float32
        ``(n, n_channels, n_grid)`` spectra or ``(n, n_features)`` SED features (NaN = missing).
    y : numpy.ndarray, shape (n,), int64
        Index into the task's class list.
    targets : numpy.ndarray, shape (n, n_targets), float32
        Standardised targets (:class:`TargetScaler`); any value where ``target_mask`` is False.
    target_mask : numpy.ndarray, shape (n, n_targets), bool
        True where the target is known.
    """

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray
    target_mask: np.ndarray


def check_arrays(arrays: StellarArrays, name: str, n_classes: int, n_targets: int) -> None:
    """Raise :class:`ValueError` naming the split and field of an inconsistent :class:`StellarArrays`."""
    n = len(arrays.y)
    where = f"stellar {name} arrays"
    if n == 0:
        raise ValueError(f"{where}: no examples")
    for field in ("ids", "x"):
        if len(getattr(arrays, field)) != n:
            raise ValueError(f"{where}: field '{field}' has {len(getattr(arrays, field))} rows, y has {n}")
    for field in ("targets", "target_mask"):
        shape = np.shape(getattr(arrays, field))
        if shape != (n, n_targets):
            raise ValueError(f"{where}: field '{field}' has shape {shape}, expected ({n}, {n_targets})")
    if arrays.x.dtype != np.float32 or arrays.targets.dtype != np.float32:
        raise ValueError(f"{where}: fields 'x' and 'targets' must be float32, got {arrays.x.dtype} and "
                         f"{arrays.targets.dtype}")
    if arrays.y.dtype != np.int64 or arrays.target_mask.dtype != np.bool_:
        raise ValueError(f"{where}: field 'y' must be int64 and 'target_mask' bool, got {arrays.y.dtype} and "
                         f"{arrays.target_mask.dtype}")
    if n_classes > 0 and (arrays.y.min() < 0 or arrays.y.max() >= n_classes):
        raise ValueError(f"{where}: field 'y' has class indices outside [0, {n_classes})")
    if not np.isfinite(arrays.targets[arrays.target_mask]).all():
        raise ValueError(f"{where}: field 'targets' is not finite where 'target_mask' is True")


def make_loader(arrays: StellarArrays, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0) -> DataLoader:
    """A DataLoader of ``(x, y, targets, target_mask)`` whose shuffling depends only on ``seed``."""
    dataset = TensorDataset(torch.from_numpy(arrays.x), torch.from_numpy(arrays.y),
                            torch.from_numpy(arrays.targets), torch.from_numpy(arrays.target_mask))
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers)


def monitor_modes(target_names: Sequence[str]) -> dict[str, str]:
    """:data:`MONITOR_MODES` plus ``val_mae_<name>`` (min) for each target."""
    return {**MONITOR_MODES, **{f"val_mae_{name}": "min" for name in target_names}}


def _option(cfg, key: str, default):
    """``cfg[key]``, or ``default`` where the key is absent or null."""
    value = cfg.get(key)
    return default if value is None else value


def check_trainer_config(cfg, target_names: Sequence[str] = ()) -> None:
    """Raise :class:`deeprubin.core.config.ConfigError` naming the first invalid ``stellar.trainer`` key."""
    for key in ("max_epochs", "batch_size", "learning_rate"):
        require(cfg, key, positive=True)
    require(cfg, "weight_decay", at_least=0)
    require(cfg, "early_stopping_patience", at_least=1)
    require(cfg, "num_workers", at_least=0)
    require(cfg, "monitor", choices=monitor_modes(target_names))
    for key in ("accelerator", "deterministic", "progress_bar"):
        require(cfg, key)
    optional = {"torch_threads": {"at_least": 0}, "target_weight": {"at_least": 0},
                "classification_weight": {"at_least": 0}, "label_smoothing": {"at_least": 0},
                "nll_beta": {"at_least": 0}, "scheduler": {"choices": SCHEDULERS},
                "class_weighted_loss": {"choices": (True, False)}}
    for key, check in optional.items():
        if cfg.get(key) is not None:
            require(cfg, key, **check)
    if float(_option(cfg, "label_smoothing", 0.0)) >= 1.0:
        raise ConfigError(f"config key 'label_smoothing' must be < 1, got {cfg.get('label_smoothing')!r}")


def fit_stellar(trainer_cfg, model_cfg: dict, train: StellarArrays, val: StellarArrays, seed: int, n_classes: int,
                target_names: Sequence[str], logger=None) -> FitResult:
    """Train ``model_cfg`` (a :mod:`deeprubin.tasks.stellar.model` class) on ``train``.

    Returns the weights of the best epoch by ``trainer.monitor`` (validation loss by default) and
    the per-epoch history (:func:`deeprubin.tasks.stellar.module.history_columns`).

    Parameters
    ----------
    trainer_cfg : mapping
        ``max_epochs, batch_size, learning_rate, weight_decay, early_stopping_patience, num_workers,
        monitor, accelerator, deterministic, progress_bar``; optional ``torch_threads`` (0 = torch's
        default), ``target_weight`` and ``classification_weight`` (1), ``label_smoothing`` (0),
        ``nll_beta`` (0), ``scheduler`` ("none"), ``class_weighted_loss`` (False: inverse-frequency
        class weights), ``callbacks``.
    model_cfg : dict
        ``_target_`` plus constructor arguments; ``n_targets`` is set to ``len(target_names)``.
    train, val : StellarArrays
    seed : int
        Seeds torch, numpy and the shuffling.
    n_classes : int
        Classes of the class head (0 for regression only).
    target_names : sequence of str
        Names of the target columns (``val_mae_<name>``).
    """
    t = trainer_cfg
    target_names = [str(n) for n in target_names]
    check_trainer_config(t, target_names)
    for name, part in (("train", train), ("val", val)):
        check_arrays(part, name, int(n_classes), len(target_names))
    L.seed_everything(seed, workers=True, verbose=False)
    if int(_option(t, "torch_threads", 0)) > 0:
        torch.set_num_threads(int(t.torch_threads))
    cfg = {**dict(model_cfg), "n_targets": len(target_names)}
    model = build_model(cfg, n_inputs=train.x.shape[1], n_classes=int(n_classes))
    weighted = bool(_option(t, "class_weighted_loss", False)) and int(n_classes) > 0
    weights = class_weights(train.y, int(n_classes)) if weighted else None
    module = StellarMultiTask(model, int(n_classes), target_names, float(t.learning_rate), float(t.weight_decay),
                              class_weights=weights, label_smoothing=float(_option(t, "label_smoothing", 0.0)),
                              classification_weight=float(_option(t, "classification_weight", 1.0)),
                              target_weight=float(_option(t, "target_weight", 1.0)),
                              nll_beta=float(_option(t, "nll_beta", 0.0)),
                              scheduler=str(_option(t, "scheduler", "none")))
    train_loader = make_loader(train, int(t.batch_size), shuffle=True, seed=seed, num_workers=int(t.num_workers))
    val_loader = make_loader(val, int(t.batch_size) * 4, shuffle=False, seed=seed, num_workers=int(t.num_workers))
    # The module computes its validation metrics in its own on_validation_epoch_end: read them late.
    history = EpochHistory(history_columns(target_names), late_validation=True)
    monitor = str(t.monitor)
    return fit_module(t, module, train_loader, val_loader, history, monitor=monitor,
                      mode=monitor_modes(target_names)[monitor], logger=logger)


def _members(model: torch.nn.Module) -> list[torch.nn.Module]:
    return list(model.members) if isinstance(model, DeepEnsemble) else [model]


@torch.no_grad()
def predict_outputs(model: torch.nn.Module, x, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities (n, n_classes), mean (n, n_targets), sigma (n, n_targets))``, standardised units.

    The model is put in eval mode (no dropout; batch norm's running statistics), so the same
    input gives the same output. A :class:`~deeprubin.core.models.ensemble.DeepEnsemble` of
    stellar models is applied member by member: the members' mean probability, and the mean and
    standard deviation of the equal mixture of their Gaussians (Lakshminarayanan et al. 2017).
    """
    if int(batch_size) < 1:
        raise ValueError(f"predict_outputs: batch_size must be >= 1, got {batch_size}")
    members = _members(model)
    n_classes, n_targets = int(members[0].n_classes), int(members[0].n_targets)
    model.eval()
    x = np.asarray(x, dtype=np.float32)
    probs, means, variances = [], [], []
    for start in range(0, len(x), int(batch_size)):
        chunk = torch.from_numpy(x[start:start + int(batch_size)])
        p, mu, m2 = 0.0, 0.0, 0.0
        for member in members:
            logits, mean, log_var = split_outputs(member(chunk).double(), n_classes, n_targets)
            p = p + torch.softmax(logits, dim=-1)
            mu = mu + mean
            m2 = m2 + torch.exp(log_var) + mean ** 2
        k = len(members)
        mu = mu / k
        probs.append((p / k).numpy())
        means.append(mu.numpy())
        variances.append((m2 / k - mu ** 2).clamp_min(0.0).numpy())
    if not probs:
        return (np.zeros((0, n_classes), np.float32), np.zeros((0, n_targets), np.float32),
                np.zeros((0, n_targets), np.float32))
    return (np.concatenate(probs).astype(np.float32), np.concatenate(means).astype(np.float32),
            np.sqrt(np.concatenate(variances)).astype(np.float32))


@dataclass
class TargetScaler:
    """Per-target standardisation ``(value - mean) / std``, fitted on training targets.

    Attributes
    ----------
    names : list of str
        Target names in column order.
    mean, std : list of float
        Per target; plain floats, so :meth:`to_dict` can go into a checkpoint's metadata.
    """

    names: list[str]
    mean: list[float]
    std: list[float]
    log10: list[bool] | None = None   # per target: standardise log10(value) (Teff: relative errors)

    def __post_init__(self) -> None:
        if self.log10 is None:   # none in log10 (and a scaler saved before the option reads as such)
            self.log10 = [False] * len(self.names)
        self.log10 = [bool(v) for v in self.log10]

    def _logs(self) -> np.ndarray:
        return np.asarray(self.log10 if self.log10 is not None else [False] * len(self.names), bool)

    def _forward(self, values: np.ndarray) -> np.ndarray:
        out = np.array(values, dtype=np.float64, copy=True)
        logs = self._logs()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, logs] = np.log10(out[:, logs])
        return out

    @classmethod
    def fit(cls, targets: np.ndarray, names: Sequence[str], mask: np.ndarray | None = None,
            log10: Sequence[str] = ()) -> "TargetScaler":
        """Mean and standard deviation of each column of ``targets`` (n, n_targets) over its known
        values (finite, and ``mask`` True where given); the targets named in ``log10`` are
        standardised in log10 (they must be positive).

        Raises
        ------
        ValueError
            Naming the target: fewer than two known values, or no spread.
        """
        targets = np.asarray(targets, dtype=np.float64)
        names = [str(n) for n in names]
        if targets.ndim != 2 or targets.shape[1] != len(names):
            raise ValueError(f"TargetScaler: targets of shape {targets.shape} do not have one column per name {names}")
        unknown = sorted(set(log10) - set(names))
        if unknown:
            raise ValueError(f"TargetScaler: log10 target(s) {unknown} are not among {names}")
        logs = [name in set(log10) for name in names]
        if any(np.nanmin(targets[:, j]) <= 0 for j in range(len(names)) if logs[j] and np.isfinite(targets[:, j]).any()):
            raise ValueError(f"TargetScaler: a log10 target of {[n for n, l in zip(names, logs) if l]} has a value <= 0")
        targets = cls(names, [0.0] * len(names), [1.0] * len(names), logs)._forward(targets)
        known = np.isfinite(targets) if mask is None else (np.asarray(mask, bool) & np.isfinite(targets))
        mean, std = [], []
        for j, name in enumerate(names):
            values = targets[known[:, j], j]
            if len(values) < 2 or not np.std(values) > 0:
                raise ValueError(f"TargetScaler: target '{name}' has {len(values)} known value(s) and no spread; "
                                 "cannot standardise it")
            mean.append(float(np.mean(values)))
            std.append(float(np.std(values)))
        return cls(names, mean, std, logs)

    def _check(self, values: np.ndarray, what: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.names):
            raise ValueError(f"TargetScaler.{what}: array of shape {values.shape} does not have one column per "
                             f"target {self.names}")
        return values

    def transform(self, targets: np.ndarray) -> np.ndarray:
        """Standardised ``targets`` (n, n_targets), float32; NaN stays NaN."""
        return ((self._forward(self._check(targets, "transform")) - self.mean) / np.asarray(self.std)).astype(np.float32)

    def inverse_mean(self, mean: np.ndarray) -> np.ndarray:
        """Predicted means back in physical units (float64)."""
        out = self._check(mean, "inverse_mean") * np.asarray(self.std) + np.asarray(self.mean)
        logs = self._logs()
        out[:, logs] = 10.0 ** out[:, logs]
        return out

    def inverse_sigma(self, sigma: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        """Predicted standard deviations back in physical units (float64); a log10 target's by
        the delta method, ``ln(10) x value x sigma_log10``, which needs the standardised ``mean``."""
        out = self._check(sigma, "inverse_sigma") * np.asarray(self.std)
        logs = self._logs()
        if logs.any():
            if mean is None:
                raise ValueError(f"TargetScaler.inverse_sigma: targets {list(np.asarray(self.names)[logs])} are "
                                 "standardised in log10; pass the standardised mean too")
            out[:, logs] *= np.log(10.0) * self.inverse_mean(mean)[:, logs]
        return out

    def to_dict(self) -> dict[str, list]:
        return {"names": list(self.names), "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "log10": [bool(v) for v in self._logs()]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TargetScaler":
        """Inverse of :meth:`to_dict`; :class:`ValueError` names a missing or inconsistent field."""
        if not isinstance(data, Mapping):
            raise ValueError(f"TargetScaler.from_dict: expected a mapping, got {type(data).__name__}")
        for key in ("names", "mean", "std"):
            if key not in data or not isinstance(data[key], (list, tuple)):
                raise ValueError(f"TargetScaler.from_dict: field '{key}' missing or not a list")
        names, mean, std = list(data["names"]), [float(v) for v in data["mean"]], [float(v) for v in data["std"]]
        if not len(names) == len(mean) == len(std):
            raise ValueError(f"TargetScaler.from_dict: fields 'names', 'mean', 'std' differ in length "
                             f"({len(names)}, {len(mean)}, {len(std)})")
        if not all(np.isfinite(m) for m in mean) or not all(np.isfinite(s) and s > 0 for s in std):
            raise ValueError("TargetScaler.from_dict: field 'std' must be positive and 'mean', 'std' finite")
        logs = data.get("log10")
        if logs is not None and (not isinstance(logs, (list, tuple)) or len(logs) != len(names)):
            raise ValueError("TargetScaler.from_dict: field 'log10' must be a list with one entry per target")
        return cls([str(n) for n in names], mean, std, None if logs is None else [bool(v) for v in logs])
