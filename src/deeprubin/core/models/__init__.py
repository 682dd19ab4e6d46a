"""Plain ``torch.nn.Module`` classifiers over GP grids, built from config.

Every model maps an input of shape ``(batch, n_inputs, n_time)`` (GP mean and GP
standard deviation per band, stacked as channels) to class logits of shape
``(batch, n_classes)``.
"""
from __future__ import annotations

import importlib
import re
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

# Keys of a model config node that describe it rather than construct it.
_DESCRIPTIVE_KEYS = ("name",)

#: The shared classes a model config (from ``conf/`` or from a checkpoint, which a user may
#: have been handed) can build. A new shared architecture is added here by its dotted path;
#: a task's own architecture lives in ``deeprubin.tasks.<task>.model`` and is listed in that
#: module's ``MODELS`` tuple (so core never names a task). Nothing else is imported or
#: called: no ``hydra.utils.instantiate``, which would follow any ``_target_``
#: (``os.system`` included), nested ones too.
ALLOWED_MODELS = (
    "deeprubin.core.models.tcn.TCNClassifier",
    "deeprubin.core.models.gru.GRUClassifier",
    "deeprubin.core.models.inception.InceptionResNetClassifier",
    "deeprubin.core.models.transformer.TransformerClassifier",
)
#: A task's model module: only modules of this project's task packages are ever imported.
_TASK_MODEL = re.compile(r"^deeprubin\.tasks\.[a-z_][a-z0-9_]*\.model\.([A-Za-z_]\w*)$")


class ModelConfigError(ValueError):
    """A model config that names a class outside :data:`ALLOWED_MODELS` or holds anything but plain values."""


def _check_plain(value: Any, where: str) -> None:
    """Constructor arguments are numbers, strings, booleans, None and lists of them: nothing callable."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif isinstance(value, Mapping):
        raise ModelConfigError(f"model config key '{where}' is a mapping ({sorted(value)}); model arguments are "
                               "plain values, and a nested '_target_' is never followed")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise ModelConfigError(f"model config key '{where}' is a {type(value).__name__}; "
                               "model arguments are plain values (number, string, boolean, list)")


def model_class(model_cfg: Mapping[str, Any]) -> type[torch.nn.Module]:
    """The class ``model_cfg['_target_']`` names, if it is in :data:`ALLOWED_MODELS`.

    Raises
    ------
    ModelConfigError
        No ``_target_``, or a target outside the allow-list (named, with the allowed ones).
    """
    target = model_cfg.get("_target_")
    if target is None:
        raise ModelConfigError(f"model config has no '_target_' key: {sorted(model_cfg)}")
    module, _, name = str(target).rpartition(".")
    if target in ALLOWED_MODELS:
        return getattr(importlib.import_module(module), name)
    if isinstance(target, str) and _TASK_MODEL.match(target):
        try:
            task_models = importlib.import_module(module)
        except ModuleNotFoundError:
            task_models = None
        cls = getattr(task_models, name, None)
        if name in getattr(task_models, "MODELS", ()) and isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            return cls
    raise ModelConfigError(f"model config '_target_' {target!r} is not an allowed model class; "
                           f"allowed: {list(ALLOWED_MODELS)} and the classes a task's model module lists "
                           "in MODELS (deeprubin.tasks.<task>.model.MODELS); add a new architecture there")


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
    """Build the model named by ``model_cfg._target_``, one of :data:`ALLOWED_MODELS`.

    The config may come from a checkpoint a user was handed, so it is treated as
    untrusted: the class must be on the allow-list and every argument a plain value
    (:class:`ModelConfigError` otherwise, before anything is imported or called).

    Parameters
    ----------
    model_cfg : mapping
        A ``conf/model/*.yaml`` node: ``_target_`` plus constructor keyword arguments.
    n_inputs, n_classes : int
        Input channels (2 x number of bands) and number of classes, known from the data.
    """
    if not isinstance(model_cfg, (Mapping, DictConfig)):
        raise ModelConfigError(f"model config is a {type(model_cfg).__name__}, not a mapping")
    cfg = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    cls = model_class(cfg)
    kwargs = {k: v for k, v in cfg.items() if k != "_target_" and k not in _DESCRIPTIVE_KEYS}
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier() or key.startswith("_"):
            raise ModelConfigError(f"model config key {key!r} is not an argument name (Hydra keys such as "
                                   "'_args_' or '_recursive_' are not followed)")
        _check_plain(value, key)
    try:
        return cls(**kwargs, n_inputs=int(n_inputs), n_classes=int(n_classes))
    except TypeError as err:  # an unknown or missing argument: name the class and the config keys
        raise ModelConfigError(f"model config for {cfg['_target_']}: {err} (keys {sorted(kwargs)})") from None


def model_name(model: torch.nn.Module) -> str:
    """The name a built model is logged under: its class's dotted path (not a free-text config key)."""
    return f"{type(model).__module__}.{type(model).__qualname__}"
