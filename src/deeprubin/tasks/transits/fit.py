"""Fit the segment classifier: seeded, early-stopped on a validation metric."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch

from ...core import io
from ...core.config import require
from ...core.training import EpochHistory, FitResult, SplitArrays, fit_module, make_loader
from ...core.models import build_model
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
