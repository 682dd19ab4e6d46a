"""Model versions of the MLflow model registry as the service and the promotion command use them.

A version is what :func:`deeprubin.core.registry.log_classifier` registered: its run's ``model/``
artifact folder, holding the checkpoint (``model.ckpt``, the train stage's weights-only file) and its
description (``deeprubin-model.json``, with the checkpoint's sha256). A promotion (:mod:`.promotion`)
may add the calibrator the calibrate stage fitted for that checkpoint (``model/calibration.json``, JSON)
and records on the version, as model-version tags:

* :data:`CHECKPOINT_TAG`: the checkpoint's sha256, as verified when the promotion downloaded it;
* :data:`CALIBRATION_TAG`: the sha256 of the calibration file in the version, or ``none``;
* the evaluation scores (:data:`deeprubin.serve.promotion.EVAL_PREFIX`).

:func:`download_version` copies a version into a folder and verifies it: the checkpoint against the
description's sha256 and the tag's (when there is one), the calibrator against its tag. Nothing is
unpickled: the checkpoint is only loaded by :func:`deeprubin.core.checkpoint.load_checkpoint` (through
:class:`~deeprubin.tasks.transients.evaluation.inference.Predictor`), and the calibrator is JSON.
:func:`cache_version` keeps downloads in the service's cache, one folder per version and content.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ..core import io
from ..core.calibration import CALIBRATION_NAME
from ..core.registry import ARTIFACT_PATH, CHECKPOINT_NAME, DESCRIPTION_NAME, FORMAT

#: The aliases a promotion sets; the service serves :data:`CHAMPION`.
CHAMPION, CHALLENGER = "champion", "challenger"
ALIASES = (CHAMPION, CHALLENGER)
CHECKPOINT_TAG = "deeprubin.checkpoint_sha256"
CALIBRATION_TAG = "deeprubin.calibration_sha256"
#: :data:`CALIBRATION_TAG` of a version scored and served with the raw softmax.
NO_CALIBRATION = "none"
#: Hex digits of a sha256 in a cache folder's name.
SHORT_SHA = 16
#: Prefix of a download in progress in the cache (renamed once verified).
DOWNLOAD_PREFIX = ".download-"
#: MLflow's error code of an absent registered model or version.
MISSING_CODE = "RESOURCE_DOES_NOT_EXIST"
#: MLflow's switch of its download progress bars (one per download, in the server's log otherwise).
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class RegistryError(RuntimeError):
    """A registry entry that cannot be used (absent, unverifiable); the message names model, version and file."""


@dataclass(frozen=True)
class LocalVersion:
    """A registry version downloaded and verified: its folder, checkpoint and calibrator (None: raw softmax)."""

    name: str
    version: str
    folder: Path
    checkpoint: Path
    calibration: Path | None
    sha256: str                        # the checkpoint's

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def calibration_sha256(self) -> str:
        return NO_CALIBRATION if self.calibration is None else io.file_sha256(self.calibration)


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client of the store (``MLFLOW_TRACKING_URI`` wins over the config, as for training), registry included."""
    from ..core.tracking import tracking_uri as resolve

    uri = resolve(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _missing(err: MlflowException) -> bool:
    return str(getattr(err, "error_code", "")) == MISSING_CODE


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """``{alias: version}`` of a registered model; :class:`RegistryError` when it is not registered."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if _missing(err):
            raise RegistryError(f"registered model '{name}' does not exist in {client.tracking_uri} (the train "
                                "stage registers one per run)") from None
        raise
    return {str(alias): str(version) for alias, version in (model.aliases or {}).items()}


def get_version(client: MlflowClient, name: str, version: str):
    """The ``ModelVersion``; :class:`RegistryError` naming it when absent."""
    try:
        return client.get_model_version(name, str(version))
    except MlflowException as err:
        if _missing(err):
            raise RegistryError(f"registered model '{name}' has no version {version} in "
                                f"{client.tracking_uri}") from None
        raise


def describe_version(name: str, version: str) -> str:
    return f"'{name}' version {version}"


def _verify(folder: Path, name: str, version: str, tags: dict[str, str]) -> LocalVersion:
    """Check a downloaded version folder against its description and tags; see the module docstring."""
    what = describe_version(name, version)
    description = folder / DESCRIPTION_NAME
    if not description.is_file():
        raise RegistryError(f"{what}: no {DESCRIPTION_NAME} in its '{ARTIFACT_PATH}' folder: not a DeepRubin "
                            "checkpoint (a pickled model is not loaded)")
    info = io.read_json(description)
    checkpoint = folder / str(info.get("checkpoint", CHECKPOINT_NAME))
    if info.get("format") != FORMAT or checkpoint.parent != folder or not checkpoint.is_file():
        raise RegistryError(f"{what}: {DESCRIPTION_NAME} field 'format'/'checkpoint' does not name a {FORMAT} file "
                            "in the version")
    sha = io.file_sha256(checkpoint)
    for source, recorded in ((f"{DESCRIPTION_NAME} field 'sha256'", info.get("sha256")),
                             (f"tag '{CHECKPOINT_TAG}'", tags.get(CHECKPOINT_TAG))):
        if recorded is not None and recorded != sha:
            raise RegistryError(f"{what}: {checkpoint.name} has sha256 {sha[:SHORT_SHA]}..., the registry's {source} "
                                f"says {str(recorded)[:SHORT_SHA]}...: not loaded")
    calibration = folder / CALIBRATION_NAME
    recorded = tags.get(CALIBRATION_TAG)
    if recorded == NO_CALIBRATION or (recorded is None and not calibration.is_file()):
        return LocalVersion(name, str(version), folder, checkpoint, None, sha)
    if not calibration.is_file():
        raise RegistryError(f"{what}: tag '{CALIBRATION_TAG}' names a calibrator but the version has no "
                            f"{CALIBRATION_NAME}")
    if recorded is not None and io.file_sha256(calibration) != recorded:
        raise RegistryError(f"{what}: {CALIBRATION_NAME} does not match tag '{CALIBRATION_TAG}' "
                            f"({recorded[:SHORT_SHA]}...): not loaded")
    return LocalVersion(name, str(version), folder, checkpoint, calibration, sha)


def _download(client: MlflowClient, mv, into: Path) -> Path:
    """The version's ``model/`` folder, downloaded under ``into``."""
    import mlflow

    source = client.get_model_version_download_uri(mv.name, str(mv.version))
    into.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(PROGRESS_BAR_ENV, "false")      # the user's own setting wins
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(into),
                                                        tracking_uri=client.tracking_uri))
    except (MlflowException, OSError) as err:
        raise RegistryError(f"{describe_version(mv.name, mv.version)}: cannot download {source}: {err}") from None


def download_version(client: MlflowClient, name: str, version: str, into: Path) -> LocalVersion:
    """Download a version's ``model/`` folder under ``into`` and verify it."""
    mv = get_version(client, name, version)
    return _verify(_download(client, mv, into), name, str(mv.version), dict(mv.tags or {}))


def cache_folder(cache: Path, local: LocalVersion) -> Path:
    """``<cache>/<name>/v<version>-<checkpoint sha>-<calibration sha or none>``: one folder per content."""
    cal = local.calibration_sha256
    return cache / local.name / f"v{local.version}-{local.sha256[:SHORT_SHA]}-{cal[:SHORT_SHA]}"


def cache_version(client: MlflowClient, name: str, version: str, cache: Path) -> LocalVersion:
    """Download and verify a version, then keep it in ``cache``: renamed into its folder once verified. A
    folder already there is used when it passes the same checks (else replaced by the fresh copy)."""
    mv = get_version(client, name, version)
    tags, version = dict(mv.tags or {}), str(mv.version)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=DOWNLOAD_PREFIX, dir=cache))
    try:
        fresh = _verify(_download(client, mv, tmp), name, version, tags)
        final = cache_folder(cache, fresh)
        if final.is_dir():
            try:
                return _verify(final, name, version, tags)
            except RegistryError:
                shutil.rmtree(final, ignore_errors=True)       # a damaged copy: the fresh one replaces it
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            fresh.folder.rename(final)
        except OSError:                                        # another process put it there first
            if not final.is_dir():
                raise
        return _verify(final, name, version, tags)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
