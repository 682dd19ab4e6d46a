"""Register a trained classifier in MLflow's Model Registry as its checkpoint file, never as a pickle.

MLflow's PyTorch flavour pickles the whole ``nn.Module``: loading such a model runs
whatever the pickle says, so a registry entry from someone else would be code. Here a model
version is the same weights-only checkpoint the train stage writes (tensors plus a plain
config, :mod:`deeprubin.core.checkpoint`), logged under the run's ``model/`` artifact
folder with a small ``deeprubin-model.json`` describing it (format, sha256, classes, bands,
input shape, the class of the model). :func:`load_registered` downloads a version and
rebuilds it through :func:`~deeprubin.core.checkpoint.load_checkpoint`, so the
allow-list and ``weights_only`` apply to registry models too.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from . import io
from .checkpoint import load_checkpoint

#: Folder under the run's artifacts that a registered model version points at.
ARTIFACT_PATH = "model"
CHECKPOINT_NAME = "model.ckpt"
DESCRIPTION_NAME = "deeprubin-model.json"
FORMAT = "deeprubin-checkpoint"


def describe(checkpoint: Path, model: torch.nn.Module, meta: dict, input_shape: list[int]) -> dict:
    """What a registry reader needs before downloading the weights."""
    return {"format": FORMAT, "checkpoint": CHECKPOINT_NAME, "sha256": io.file_sha256(checkpoint),
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "classes": list(meta["classes"]), "bands": list(meta.get("bands", [])),
            "input_shape": ["batch", *input_shape], "output": "logits, one per class",
            "load": "deeprubin.core.registry.load_registered(uri)"}


#: How often :func:`log_inputs_once` tries when a parallel job inserted the same dataset first.
DATASET_INSERT_ATTEMPTS = 3


def log_inputs_once(client, run_id: str, datasets: list) -> None:
    """``client.log_inputs``, safe against parallel jobs of one sweep logging the same dataset.

    MLflow's SQL store looks a dataset (experiment, name, digest) up and inserts it when absent,
    not atomically: two jobs of a joblib sweep that train on the same data can both miss it and
    the second insert fails with a ``UNIQUE constraint`` error. The row exists by then, so trying
    again links the run to it. Any other error is raised at once.
    """
    for attempt in range(1, DATASET_INSERT_ATTEMPTS + 1):
        try:
            client.log_inputs(run_id, datasets=datasets)
            return
        except MlflowException as err:
            if "UNIQUE constraint failed" not in str(err) or attempt == DATASET_INSERT_ATTEMPTS:
                raise


def log_classifier(client, run_id: str, checkpoint: str | Path, input_shape: tuple[int, ...], registered_name: str,
                   dataset_df=None,
                   dataset_name: str = "train", dataset_digest: str | None = None) -> str:
    """Log ``checkpoint`` under ``run_id`` (artifact folder ``model/``) and register a new version.

    Parameters
    ----------
    checkpoint : path
        The train stage's ``model.ckpt`` (read back here, so what is registered is what loads).
    input_shape : tuple of int
        One example's shape, ``(channels, time steps)``.
    registered_name : str
        Model Registry name, e.g. ``transients-classifier``; each call adds a version.
    dataset_df : pandas.DataFrame, optional
        Small description of the training set (object ids, labels), logged as the run's input.

    Returns
    -------
    str
        The model URI (``models:/<registered_name>/<version>``).
    """
    checkpoint = Path(checkpoint)
    model, meta = load_checkpoint(checkpoint)
    input_shape = [int(n) for n in input_shape]
    with tempfile.TemporaryDirectory(prefix="deeprubin-model-") as tmp:
        folder = Path(tmp) / ARTIFACT_PATH
        folder.mkdir()
        (folder / CHECKPOINT_NAME).write_bytes(checkpoint.read_bytes())
        (folder / DESCRIPTION_NAME).write_text(json.dumps(describe(checkpoint, model, meta, input_shape), indent=2))
        client.log_artifacts(run_id, str(folder), ARTIFACT_PATH)
    if dataset_df is not None:
        dataset = mlflow.data.from_pandas(dataset_df, name=dataset_name, digest=dataset_digest)
        log_inputs_once(client, run_id, [mlflow.entities.DatasetInput(dataset._to_mlflow_entity(), tags=[
            mlflow.entities.InputTag("mlflow.data.context", "training")])])
    try:
        client.create_registered_model(registered_name)
    except MlflowException as err:
        if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
            raise
    source = f"{client.get_run(run_id).info.artifact_uri}/{ARTIFACT_PATH}"
    version = client.create_model_version(registered_name, source=source, run_id=run_id)
    return f"models:/{registered_name}/{version.version}"


def _version_source(uri: str, tracking_uri: str | None) -> str:
    """``models:/name/<version>`` or ``models:/name@alias`` -> the version's artifact location,
    looked up in the registry of ``tracking_uri`` itself (MLflow would otherwise resolve the
    name in the process-wide registry, whatever an earlier ``mlflow.set_tracking_uri`` left)."""
    if tracking_uri is None or not uri.startswith("models:/"):
        return uri
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name, _, version = uri.removeprefix("models:/").partition("/")
    if "@" in name and not version:
        name, alias = name.split("@", 1)
        version = client.get_model_version_by_alias(name, alias).version
    if not str(version).isdigit():
        return uri
    return client.get_model_version_download_uri(name, str(version))


def load_registered(uri: str, tracking_uri: str | None = None) -> tuple[torch.nn.Module, dict]:
    """Download a registered version (``models:/name/version``) and rebuild it safely.

    Raises
    ------
    deeprubin.core.checkpoint.CheckpointError
        The version is not a DeepRubin checkpoint (e.g. a pickled ``mlflow.pytorch`` model,
        which is refused rather than unpickled), or its checkpoint fails the checks of
        :func:`~deeprubin.core.checkpoint.load_checkpoint`.
    """
    from .checkpoint import CheckpointError

    with tempfile.TemporaryDirectory(prefix="deeprubin-registry-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=_version_source(uri, tracking_uri),
                                                         dst_path=tmp, tracking_uri=tracking_uri))
        description = local / DESCRIPTION_NAME
        if not description.exists():
            raise CheckpointError(f"{uri}: not a DeepRubin registry model (no {DESCRIPTION_NAME}); "
                                  "pickled models are not loaded")
        info = io.read_json(description)
        ckpt = local / str(info.get("checkpoint", CHECKPOINT_NAME))
        if info.get("format") != FORMAT or ckpt.parent != local or not ckpt.exists():
            raise CheckpointError(f"{uri}: {DESCRIPTION_NAME} field 'format'/'checkpoint' does not name "
                                  f"a {FORMAT} file in the version")
        if io.file_sha256(ckpt) != info.get("sha256"):
            raise CheckpointError(f"{uri}: {ckpt.name} does not match the sha256 in {DESCRIPTION_NAME}")
        return load_checkpoint(ckpt)
