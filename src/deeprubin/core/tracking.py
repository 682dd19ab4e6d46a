"""MLflow tracking: where runs go, how they are named, tagged and nested, and what is logged.

One MLflow experiment per task (``cfg.mlflow.experiment``). A training run is named
``<model>-seed<seed>`` and tagged with the git commit (and whether the work tree was
dirty), the dataset hash, the DVC stage and the sweep id. Runs of one Hydra multirun
are children of one parent run per sweep, so the UI groups them.

A run's status says what happened (:func:`run_guard`): FINISHED only once the stage's
outputs are written, FAILED on an error, KILLED on SIGTERM/SIGINT. A process killed with
SIGKILL cannot say so itself; the next training run in the same store marks its RUNNING
run KILLED (the run is tagged with host and pid) and removes its temporary folder.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

PARENT_TAG = "deeprubin.sweep_parent"
HOST_TAG, PID_TAG = "deeprubin.host", "deeprubin.pid"
#: Prefix of a training job's temporary checkpoint folder; the pid follows, so a folder left
#: by a killed job can be told from one in use.
TEMP_PREFIX = "deeprubin-ckpt-"

log = logging.getLogger(__name__)


class StageInterrupted(BaseException):
    """SIGTERM or SIGINT arrived during a guarded run (a BaseException, like KeyboardInterrupt)."""


class OpenRunMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger, except that a successful fit leaves the run open.

    Lightning marks the run FINISHED when ``trainer.fit`` returns, before the stage has
    written its checkpoint; :func:`run_guard` ends the run instead, after the outputs.
    """

    def finalize(self, status: str = "success") -> None:
        if status in ("success", "finished"):
            return
        super().finalize(status)

    def set_prefix(self, prefix: str) -> None:
        """Prefix the metric keys logged from now on (``"member1"`` -> ``member1-val_loss``)."""
        self._prefix = prefix


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_checkpoint_dir() -> tempfile.TemporaryDirectory:
    """A temporary folder for Lightning's checkpoints, named with this process's pid."""
    return tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-")


def reap_stale(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of dead processes on this host, and remove their temp folders.

    Returns the ids of the runs marked.
    """
    host = socket.gethostname()
    marked = []
    for run in client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and "
                                                                 f"tags.`{HOST_TAG}` = '{host}'"):
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            marked.append(run.info.run_id)
            log.warning("MLflow run %s (pid %s) was left RUNNING by a killed process: marked KILLED",
                        run.info.run_id, pid)
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return marked


@contextlib.contextmanager
def run_guard(client: MlflowClient, run_id: str) -> Iterator[None]:
    """End ``run_id`` as FINISHED when the block completes, FAILED on an error, KILLED on a signal.

    SIGTERM (and SIGINT) raise :class:`StageInterrupted` in the block, so ``finally``
    clauses (temporary folders) run and the run is marked KILLED before the process exits.
    """
    handlers = {}

    def interrupted(signum, frame):
        raise StageInterrupted(f"{signal.Signals(signum).name} received")

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, interrupted)
    try:
        yield
    except (StageInterrupted, KeyboardInterrupt):
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    else:
        client.set_terminated(run_id, "FINISHED")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def tracking_uri(configured: str) -> str:
    """``MLFLOW_TRACKING_URI`` from the environment wins over the config.

    Queued DVC experiments run in temporary copies of the repository; pointing the
    variable at an absolute store collects all of them in one place.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or configured


def git_state(repo: str | Path = ".") -> tuple[str, bool]:
    """``(commit sha, work tree dirty?)``; ``("unknown", False)`` outside a git checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def hydra_sweep() -> tuple[str | None, Path | None, Path | None]:
    """(sweep id, sweep folder, this job's folder) in a Hydra multirun, else Nones: a training
    step in a sweep writes its model into the job's folder and groups its run under the sweep's."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        sweep_dir = Path(hc.sweep.dir)
        return sweep_dir.name, sweep_dir, Path(hc.runtime.output_dir)
    return None, None, None


def flatten(prefix: str, node) -> dict[str, object]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` for MLflow params."""
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: node}


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def sweep_parent_run(client: MlflowClient, experiment_id: str, sweep_id: str, lock_dir: Path) -> str:
    """The id of the parent run of ``sweep_id``, created by the first job that asks.

    A file lock in the sweep folder serialises the look-up-or-create, so parallel
    jobs (joblib launcher) agree on one parent.
    """
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / ".mlflow_parent.lock")):
        found = client.search_runs([experiment_id],
                                   filter_string=f"tags.`{PARENT_TAG}` = '{sweep_id}'", max_results=1)
        if found:
            return found[0].info.run_id
        run = client.create_run(experiment_id, run_name=f"sweep-{sweep_id}",
                                tags={PARENT_TAG: sweep_id, "sweep_id": sweep_id})
        return run.info.run_id


def start_training_run(uri: str, experiment: str, *, run_name: str, tags: dict[str, str],
                       sweep_id: str | None = None, sweep_dir: Path | None = None) -> tuple[MlflowClient, str]:
    """Create the MLflow run of one training job (a child of the sweep's parent if in a sweep)."""
    client = MlflowClient(tracking_uri(uri))
    experiment_id = _experiment_id(client, experiment)
    reap_stale(client, experiment_id)
    all_tags = {**tags, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    if sweep_id:
        all_tags["sweep_id"] = sweep_id
        if sweep_dir is not None:
            all_tags["mlflow.parentRunId"] = sweep_parent_run(client, experiment_id, sweep_id, sweep_dir)
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    return client, run.info.run_id


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Log many params in one request (values truncated to MLflow's length limit)."""
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
        client.log_batch(run_id, params=items[start:start + 100])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def provenance_tags(built: type, data_sha256: str, stage: str, **extra: str) -> dict[str, str]:
    """The tags every training run carries: commit, dirty tree, data hash, DVC stage, model class."""
    sha, dirty = git_state()
    return {"git_commit": sha, "git_dirty": str(dirty).lower(), "dataset_sha256": data_sha256,
            "dvc_stage": stage, "model": f"{built.__module__}.{built.__qualname__}", **extra}


@contextlib.contextmanager
def training_run(uri: str, experiment: str, *, run_name: str, tags: dict[str, str],
                 sweep_id: str | None = None, sweep_dir: Path | None = None
                 ) -> Iterator[tuple[MlflowClient, str, OpenRunMLFlowLogger]]:
    """One guarded training run: ``(client, run_id, Lightning logger)`` for the block.

    The run is created with :func:`start_training_run` and ended by :func:`run_guard`:
    FINISHED only when the block (which writes the stage's outputs) completes, FAILED on an
    error, KILLED on a signal. Lightning's logger calls ``mlflow.set_tracking_uri``, which
    also sets ``MLFLOW_TRACKING_URI`` in the process environment; the variable is put back as
    it was, so a second run in the same process (a notebook, the tests) uses its own store.
    """
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        client, run_id = start_training_run(uri, experiment, run_name=run_name, tags=tags, sweep_id=sweep_id,
                                            sweep_dir=sweep_dir)
        with run_guard(client, run_id):
            yield client, run_id, OpenRunMLFlowLogger(experiment_name=experiment, tracking_uri=tracking_uri(uri),
                                                      run_id=run_id, log_model=False)
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before

