"""The model artefact written by the train stage and read by evaluation and prediction.

A plain ``torch.save`` dictionary rather than a Lightning checkpoint, so a user can
rebuild the classifier with nothing but this file: it carries the architecture's
config, the class and band order, and the fully resolved pipeline config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..io import atomic_path
from ..models import build_model

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, model_config: dict, classes: list[str],
                    bands: list[str], n_inputs: int, config: dict, metadata: dict[str, Any]) -> Path:
    """Write the classifier and everything needed to rebuild and apply it (atomically)."""
    payload = {
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model_config,
        "classes": list(classes),
        "bands": list(bands),
        "n_inputs": int(n_inputs),
        "config": config,
        "metadata": metadata,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # A file object, not a path: torch names the zip's root folder after a path,
        # and the temporary name would make identical checkpoints differ in bytes.
        torch.save(payload, fh)
    return Path(path)


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the classifier in eval mode; returns ``(model, payload without state_dict)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; run the train stage first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on bad bytes
        raise ValueError(f"{path}: cannot read the checkpoint (truncated or not a torch file): "
                         f"{type(err).__name__}: {err}") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: not a DeepRubin checkpoint (a {type(payload).__name__}, not a dict)")
    for key in ("version", "state_dict", "model_config", "classes", "n_inputs"):
        if key not in payload:
            raise ValueError(f"{path}: not a DeepRubin checkpoint (missing field '{key}')")
    if payload["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {payload['version']} != supported {CHECKPOINT_VERSION}")
    model = build_model(payload["model_config"], n_inputs=payload["n_inputs"], n_classes=len(payload["classes"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta
