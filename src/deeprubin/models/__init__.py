"""Plain ``torch.nn.Module`` classifiers over GP grids, built from config.

Every model maps an input of shape ``(batch, n_inputs, n_time)`` (GP mean and GP
standard deviation per band, stacked as channels) to class logits of shape
``(batch, n_classes)``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

# Keys of a model config node that describe it rather than construct it.
_DESCRIPTIVE_KEYS = ("name",)


def resolve_model_config(model_cfg: Mapping[str, Any] | DictConfig, **data_values: Any) -> dict:
    """Plain-dict model config with ``null`` entries filled from the data.

    A config value of ``null`` for a key in ``data_values`` (e.g. ``grid_step_days``)
    means "take it from the data"; the filled dict is what the checkpoint stores, so
    the model can be rebuilt without the data.
    """
    cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    for key, value in data_values.items():
        if key in cfg and cfg[key] is None:
            cfg[key] = value
    return cfg


def build_model(model_cfg: Mapping[str, Any] | DictConfig, n_inputs: int, n_classes: int) -> torch.nn.Module:
    """Instantiate the model named by ``model_cfg._target_``.

    Parameters
    ----------
    model_cfg : mapping
        A ``conf/model/*.yaml`` node: ``_target_`` plus constructor keyword arguments.
    n_inputs, n_classes : int
        Input channels (2 x number of bands) and number of classes, known from the data.
    """
    cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    if "_target_" not in cfg:
        raise ValueError(f"model config has no '_target_' key: {sorted(cfg)}")
    for key in _DESCRIPTIVE_KEYS:
        cfg.pop(key, None)
    return instantiate(cfg, n_inputs=n_inputs, n_classes=n_classes)
