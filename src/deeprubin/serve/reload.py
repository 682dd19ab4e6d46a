"""Serving a task's ``champion`` from the MLflow registry, and following the alias without a restart.

In registry mode (``serve.models.<task>.source: registry``) the server loads, at startup, the version the
``champion`` alias of ``serve.models.<task>.registered_model`` points at: downloaded into
``serve.registry.cache`` and verified (:func:`deeprubin.serve.versions.cache_version`: the checkpoint's
sha256 against the registry's records, the calibrator against its tag), then loaded through the predict
path's :class:`Predictor` (weights-only checkpoint, JSON calibrator).

:class:`ChampionWatcher` looks at the alias every ``serve.registry.poll_s`` seconds in a background thread.
When it points at another version, the new :class:`~deeprubin.serve.scoring.ServedModel` is built
completely first, then put in the service's model table in one assignment: a request or batch job that
already holds the old model finishes on it, the next one gets the new one. A version that cannot be loaded
is logged (once) and counted (``model_reloads_total{outcome="failed"}``); the server keeps the model it has.
"""
from __future__ import annotations

import logging
import threading
from typing import Mapping, MutableMapping

from mlflow.tracking import MlflowClient

from .metrics import Metrics
from .scoring import ServedModel, served_model
from .settings import ModelSource, RegistrySettings
from .versions import CHAMPION, RegistryError, aliases, cache_version, describe_version

log = logging.getLogger(__name__)
LOADED, FAILED = "loaded", "failed"


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version the ``champion`` alias points at, or None."""
    return aliases(client, name).get(CHAMPION)


def load_version(client: MlflowClient, task: str, name: str, version: str, registry: RegistrySettings,
                 quality: Mapping | None) -> ServedModel:
    """A registry version as a fully loaded :class:`ServedModel` (from the verified cache folder)."""
    local = cache_version(client, name, version, registry.cache)
    return served_model(task, local.checkpoint, local.calibration, quality,
                        registry={"name": name, "version": local.version, "alias": CHAMPION, "uri": local.uri})


def load_champion(client: MlflowClient, task: str, source: ModelSource, registry: RegistrySettings,
                  quality: Mapping | None) -> ServedModel:
    """The task's champion at startup; :class:`RegistryError` naming the model when there is none."""
    version = champion_version(client, str(source.registered_model))
    if version is None:
        raise RegistryError(f"config key 'serve.models.{task}.source' is registry, but registered model "
                            f"'{source.registered_model}' has no '{CHAMPION}' alias in {client.tracking_uri}; "
                            f"promote a version: python -m deeprubin.serve.registry promote --task {task} --version N")
    return load_version(client, task, str(source.registered_model), version, registry, quality)


def publish(metrics: Metrics, model: ServedModel) -> None:
    """The model's gauges: ``model_info`` and, for a registry version, ``model_registry_version``."""
    metrics.set_model(model.task, model.name, model.version)
    if model.registry is not None:
        metrics.set_registry_version(model.task, model.registry["name"], model.registry["alias"],
                                     int(model.registry["version"]))


class ChampionWatcher:
    """Polls the champion alias of the registry-mode tasks and swaps each new version in once loaded."""

    def __init__(self, client: MlflowClient, models: MutableMapping[str, ServedModel],
                 sources: Mapping[str, ModelSource], registry: RegistrySettings,
                 quality: Mapping[str, Mapping | None], metrics: Metrics):
        self.client, self.models, self.sources = client, models, dict(sources)
        self.registry, self.quality, self.metrics = registry, quality, metrics
        self._failed: dict[str, str | None] = {}          # task -> the version last logged as failing
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> dict[str, str]:
        """One look at every alias; returns ``{task: version}`` of the models swapped in."""
        swapped = {}
        for task, source in self.sources.items():
            name, current = str(source.registered_model), (self.models[task].registry or {}).get("version")
            try:
                version = champion_version(self.client, name)
            except Exception as err:                         # the store unreachable: keep serving, look again
                self._warn_once(task, "alias", f"serve: cannot read the '{CHAMPION}' alias of '{name}': {err}")
                continue
            if self._failed.get(task) == "alias":
                self._failed.pop(task)
            if version is None or version == current:
                continue
            try:
                new = load_version(self.client, task, name, version, self.registry, self.quality.get(task))
            except Exception as err:
                if self._warn_once(task, version, f"serve: {describe_version(name, version)} (the new {CHAMPION}) "
                                                  f"cannot be loaded, still serving version {current}: {err}"):
                    self.metrics.count_reload(task, FAILED)
                continue
            self.models[task] = new                          # the swap: one reference replaced
            publish(self.metrics, new)
            self.metrics.count_reload(task, LOADED)
            self._failed.pop(task, None)
            swapped[task] = version
            log.info("serve: %s now serves %s (%s), was version %s; calibration %s", task,
                     describe_version(name, version), new.version, current, new.predictor.calibration)
        return swapped

    def _warn_once(self, task: str, what: str, message: str) -> bool:
        if self._failed.get(task) == what:
            return False
        self._failed[task] = what
        log.error(message)
        return True

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="deeprubin-champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; a load in progress is left to finish in its daemon thread."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.registry.poll_s):
            try:
                self.check()
            except Exception:                                # never let the thread die
                log.exception("serve: champion watcher failed; looking again in %s s", self.registry.poll_s)
