"""The model artefact written by the train stage and read by evaluation and prediction.

A plain ``torch.save`` dictionary rather than a Lightning checkpoint, so a user can
rebuild the classifier with nothing but this file: it carries the architecture's
config, the class and band order, and the config nodes that define the model
(:data:`SAVED_CONFIG`). A deep ensemble (:class:`deeprubin.core.models.ensemble.DeepEnsemble`)
is one checkpoint too: its members' shared model config, ``n_members`` and their weights.

A checkpoint is a file a user may have been handed, so reading one runs no code: it is
read with ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts
only; a pickled object is refused), and the model is rebuilt only from the classes in
:data:`deeprubin.core.models.ALLOWED_MODELS` with plain arguments (no ``_target_`` taken from
the file is followed). :func:`file_sha256` of the checkpoint binds a calibrator to it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from .models import ModelConfigError, build_model
from .models.ensemble import MAX_MEMBERS, DeepEnsemble
from . import io
from .io import atomic_path


class CheckpointError(ValueError):
    """A file that is not a readable, safe DeepRubin checkpoint; the message names the file and the field."""

CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, model_config: dict, classes: list[str],
                    bands: list[str], n_inputs: int, config: dict, metadata: dict[str, Any]) -> Path:
    """Write the classifier and everything needed to rebuild and apply it (atomically).

    ``model`` may be a :class:`DeepEnsemble`; ``model_config`` is then its members' config and the
    payload records ``n_members`` (absent for a single network, whose file is as before).
    """
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
    if isinstance(model, DeepEnsemble):
        payload["n_members"] = len(model.members)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # A file object, not a path: torch names the zip's root folder after a path,
        # and the temporary name would make identical checkpoints differ in bytes.
        torch.save(payload, fh)
    return Path(path)


def read_weights(path: str | Path) -> object:
    """``torch.load`` a file with ``weights_only=True``: no code in the file runs.

    Raises
    ------
    CheckpointError
        Naming the file: truncated, not a torch file, or holding pickled objects (refused, not run).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError (a refused object), RuntimeError, EOFError on bad bytes
        unsafe = "weights_only" in str(err) or "Unsupported global" in str(err)
        why = ("it holds pickled Python objects, which are refused (a checkpoint holds only tensors, numbers, "
               "strings, lists and dicts)" if unsafe else "truncated or not a torch file")
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: cannot read the checkpoint: {why}: {type(err).__name__}: {first}") from None


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the classifier in eval mode; returns ``(model, payload without state_dict)``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        Unreadable or unsafe file, a missing field, another version, a model config outside
        the allow-list, or weights that do not fit the model; the message names the file and field.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint; run the train stage first")
    payload = read_weights(path)
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: not a DeepRubin checkpoint (a {type(payload).__name__}, not a dict)")
    for key in ("version", "state_dict", "model_config", "classes", "n_inputs"):
        if key not in payload:
            raise CheckpointError(f"{path}: not a DeepRubin checkpoint (missing field '{key}')")
    if payload["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload['version']} != supported {CHECKPOINT_VERSION}")
    if not isinstance(payload["classes"], list) or not all(isinstance(c, str) for c in payload["classes"]):
        raise CheckpointError(f"{path}: field 'classes' must be a list of class names")
    if isinstance(payload["n_inputs"], bool) or not isinstance(payload["n_inputs"], int) or payload["n_inputs"] < 1:
        raise CheckpointError(f"{path}: field 'n_inputs' must be a positive integer, got {payload['n_inputs']!r}")
    n_members = payload.get("n_members", 1)
    if isinstance(n_members, bool) or not isinstance(n_members, int) or not 1 <= n_members <= MAX_MEMBERS:
        raise CheckpointError(f"{path}: field 'n_members' must be an integer from 1 to {MAX_MEMBERS} (members of an ensemble) "
                              f"or absent, got {n_members!r}")
    try:
        members = [build_model(payload["model_config"], n_inputs=payload["n_inputs"],
                               n_classes=len(payload["classes"])) for _ in range(n_members)]
    except ModelConfigError as err:
        raise CheckpointError(f"{path}: field 'model_config': {err}") from None
    model = members[0] if n_members == 1 else DeepEnsemble(members)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: field 'state_dict' does not fit {payload['model_config'].get('_target_')}: "
                              f"{first}") from None
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta


#: The config nodes a checkpoint (and ``config.yaml`` beside it) keeps of the task's resolved
#: config: what defines the model and its training data, each a DVC param of the train stage
#: (``seed``, ``data_seed``, ``tasks.<task>.task/source/preprocess/model/trainer``; ``task_name`` is
#: the stage's own). Nothing else: a node the stage does not declare (evaluation settings, the
#: real-data checks) would change the checkpoint's bytes without DVC rerunning the stage.
SAVED_CONFIG = ("seed", "data_seed", "task_name", "task", "source", "preprocess", "model", "trainer")


def saved_config(config: dict) -> dict:
    """The :data:`SAVED_CONFIG` nodes of a resolved task config (those it has)."""
    return {key: config[key] for key in SAVED_CONFIG if key in config}


def write_model_outputs(out: Path, model: torch.nn.Module, *, config: dict, history, **checkpoint) -> Path:
    """A train stage's three outputs in ``out``: ``model.ckpt`` (:func:`save_checkpoint` with
    ``checkpoint`` and the :func:`saved_config` of the resolved task ``config``), ``config.yaml``
    (the same nodes as YAML) and ``history.csv`` (one row per epoch, 6 significant digits, so a
    rerun writes the same bytes). Returns the checkpoint path."""
    kept = saved_config(config)
    ckpt = save_checkpoint(out / "model.ckpt", model, config=kept, **checkpoint)
    io.write_text(OmegaConf.to_yaml(OmegaConf.create(kept)), out / "config.yaml")
    io.write_text(history.to_csv(index=False, float_format="%.6g"), out / "history.csv")
    return ckpt

