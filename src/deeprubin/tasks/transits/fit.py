"""Fit the segment classifier and the candidate vetter: seeded, early-stopped on a validation metric."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch

from ...core import io
from ...core.config import require
from ...core.training import EpochHistory, FitResult, SplitArrays, ensemble_result, fit_module, make_loader
from ...core.models import build_model
from ...core.models.ensemble import check_members, member_seed
from .module import HISTORY_COLUMNS, BinarySegmentClassifier

MONITOR_MODES = {"val_loss": "min", "val_roc_auc": "max", "val_pr_auc": "max"}


def check_trainer_config(cfg) -> None:
    """Raise :class:`deeprubin.core.config.ConfigError` naming the first invalid ``transits.trainer`` key."""
    for key in ("max_epochs", "batch_size", "learning_rate"):
        require(cfg, key, positive=True)
    require(cfg, "weight_decay", at_least=0)
    require(cfg, "early_stopping_patience", at_least=1)
    require(cfg, "num_workers", at_least=0)
    require(cfg, "monitor", choices=MONITOR_MODES)


def fit_segment_classifier(trainer_cfg, model_cfg: dict, train: SplitArrays, val: SplitArrays, seed: int,
                           logger=None, preprocess_cfg=None) -> FitResult:
    """Train ``model_cfg`` on ``train`` (x: (n, 1, length) float32, y: (n,) int64 0/1).

    Returns the weights of the best epoch by ``trainer.monitor`` (validation PR-AUC by default).
    """
    check_trainer_config(trainer_cfg)
    t = trainer_cfg
    for name, part in (("train", train), ("val", val)):
        if len(part.y) == 0 or part.y.min() == part.y.max():
            raise ValueError(f"transits train: the {name} segments need both classes; got "
                             f"{int(part.y.sum())} positive of {len(part.y)}")
    L.seed_everything(seed, workers=True, verbose=False)
    if int(t.get("torch_threads", 0)) > 0:
        torch.set_num_threads(int(t.torch_threads))
    model = build_model(model_cfg, n_inputs=train.x.shape[1], n_classes=1)
    pre = preprocess_cfg
    module = BinarySegmentClassifier(model, float(t.learning_rate), float(t.weight_decay),
                                     augment_flip=bool(t.get("augment_flip", False)), inject=t.get("inject"),
                                     channels=list(pre.channels) if pre is not None else ["robust_z"],
                                     relative_scale=float(pre.relative_scale) if pre is not None else 0.01,
                                     clip=float(pre.clip_value) if pre is not None else 30.0)
    train_loader = make_loader(train, int(t.batch_size), shuffle=True, seed=seed, num_workers=int(t.num_workers))
    val_loader = make_loader(val, int(t.batch_size) * 4, shuffle=False, seed=seed, num_workers=int(t.num_workers))
    # The module computes ROC-AUC/PR-AUC in its own on_validation_epoch_end: read them late.
    history = EpochHistory(HISTORY_COLUMNS, late_validation=True)
    monitor = str(t.monitor)
    return fit_module(t, module, train_loader, val_loader, history, monitor=monitor, mode=MONITOR_MODES[monitor],
                      logger=logger)


def split_segments(x: np.ndarray, segments: pd.DataFrame, manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Segment table per split (``row`` = position in ``x``), by each segment's light curve."""
    split_of = dict(zip(manifest["object_id"].astype(str), manifest["split"]))
    table = segments.assign(row=np.arange(len(segments)), split=segments["object_id"].astype(str).map(split_of))
    missing = table["split"].isna()
    if missing.any():
        raise ValueError(f"split manifest: {int(missing.sum())} segment(s) of light curves absent from the "
                         f"manifest (e.g. {table.loc[missing, 'object_id'].iloc[0]!r}); rerun split@transits")
    return {name: part.reset_index(drop=True) for name, part in table.groupby("split", sort=True)}


def read_split_segments(paths, splits) -> tuple[np.ndarray, dict[str, pd.DataFrame]]:
    """``(x, parts)``: the preprocessed segments (``paths.processed``) and :func:`split_segments` of
    them by ``paths.splits``' manifest, each of ``splits`` required (the train, calibrate and
    evaluate steps read them so). :class:`ValueError` names the file: segment table and array of
    different lengths, or a required split without segments."""
    processed = Path(paths.processed)
    x = io.read_npz(processed / "segments.npz")["x"]
    segments = io.read_parquet(processed / "segments.parquet")
    if len(segments) != len(x):
        raise ValueError(f"{processed}: segments.parquet has {len(segments)} rows but segments.npz "
                         f"{len(x)}; rerun preprocess@transits")
    parts = split_segments(x, segments, io.read_parquet(Path(paths.splits) / "manifest.parquet"))
    for name in splits:
        if name not in parts:
            raise ValueError(f"{paths.splits}/manifest.parquet: no segments in the '{name}' split")
    return x, parts


def arrays(x: np.ndarray, table: pd.DataFrame) -> SplitArrays:
    """SplitArrays for the rows of ``table``: x (n, n_channels, length) float32, y (n,) int64."""
    return SplitArrays(table["segment_id"].to_numpy(), x[table["row"].to_numpy()].astype(np.float32),
                       table["label"].to_numpy(dtype=np.int64))


class CandidateVetterModule(BinarySegmentClassifier):
    """The vetter's Lightning module: binary cross-entropy, validation ROC-AUC and PR-AUC and,
    in training with ``view_sizes = (n_global, n_local)``, each folded view of a random half of
    the batch time-reversed (a transit, and an eclipse, is symmetric in time; the diagnostics
    that follow the views are left as they are)."""

    def __init__(self, model, learning_rate: float, weight_decay: float, view_sizes=None):
        super().__init__(model, learning_rate, weight_decay)
        self.view_sizes = tuple(int(v) for v in view_sizes) if view_sizes else None

    def training_step(self, batch, batch_idx):
        if self.view_sizes is not None:
            x, y = batch
            n_g, n_l = self.view_sizes
            # torch's global generator: seeded by lightning.seed_everything, so reproducible
            flip = torch.rand(len(x), device=x.device) < 0.5
            views = [torch.where(flip[:, None, None], v.flip(-1), v) for v in (x[..., :n_g], x[..., n_g:n_g + n_l])]
            batch = (torch.cat([*views, x[..., n_g + n_l:]], dim=-1), y)
        return super().training_step(batch, batch_idx)


def fit_vetter(trainer_cfg, model_cfg: dict, train: SplitArrays, val: SplitArrays, seed: int,
               logger=None, view_sizes=None) -> FitResult:
    """Train the candidate vetter (``transits.vet.model``) on ``train`` (x: (n, 1, n_inputs)
    float32, y: (n,) int64, 1 = planet), keeping each network's best epoch by ``vet.trainer.monitor``.

    ``vet.trainer.ensemble_members`` > 1 trains that many networks (seeds
    :func:`deeprubin.core.models.ensemble.member_seed`; MLflow curves prefixed ``member<k>-``)
    and returns their :class:`~deeprubin.core.models.ensemble.DeepEnsemble`, as AstroNet
    averaged ten. ``view_sizes``: ``(n_global, n_local)`` to time-reverse the views in training.
    """
    t = trainer_cfg
    check_trainer_config(t)   # the segment trainer's keys, which the vet trainer shares
    n_members = check_members(t.get("ensemble_members", 1), "ensemble_members")
    for name, part in (("train", train), ("val", val)):
        if len(part.y) == 0 or part.y.min() == part.y.max():
            raise ValueError(f"transits vet: the {name} candidates need planets and non-planets; got "
                             f"{int(part.y.sum())} planet(s) of {len(part.y)}")
    monitor = str(t.monitor)
    results = []
    for member in range(n_members):
        member_s = member_seed(seed, member)
        L.seed_everything(member_s, workers=True, verbose=False)
        if int(t.get("torch_threads", 0)) > 0:
            torch.set_num_threads(int(t.torch_threads))
        if n_members > 1 and hasattr(logger, "set_prefix"):
            logger.set_prefix(f"member{member}")
        module = CandidateVetterModule(build_model(model_cfg, n_inputs=1, n_classes=1), float(t.learning_rate),
                                       float(t.weight_decay), view_sizes=view_sizes)
        train_loader = make_loader(train, int(t.batch_size), shuffle=True, seed=member_s,
                                   num_workers=int(t.num_workers))
        val_loader = make_loader(val, int(t.batch_size) * 8, shuffle=False, seed=member_s,
                                 num_workers=int(t.num_workers))
        history = EpochHistory(HISTORY_COLUMNS, late_validation=True)
        results.append(fit_module(t, module, train_loader, val_loader, history, monitor=monitor,
                                  mode=MONITOR_MODES[monitor], logger=logger))
    return results[0] if n_members == 1 else ensemble_result(results)
