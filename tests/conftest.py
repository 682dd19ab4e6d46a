"""Shared fixtures: tiny canonical tables and the composed project config."""
from __future__ import annotations

import os
from pathlib import Path

from deeprubin.core import numerics

numerics.pin()  # before torch loads, as in every stage process (tests/test_numerics.py)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


def make_tables(n_objects: int = 4, n_per_band: int = 12, bands=("g", "r"), seed: int = 0,
                labels=("SNIa", "QSO")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Small valid (lightcurves, objects) tables: Gaussian bumps on noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_objects):
        oid = f"obj{i:03d}"
        for b, band in enumerate(bands):
            t = np.sort(rng.uniform(58000, 58100, n_per_band)) + 0.01 * b
            flux = 100 * np.exp(-0.5 * ((t - 58040) / 15) ** 2) + rng.normal(0, 3, n_per_band)
            rows.append(pd.DataFrame({"object_id": oid, "time": t, "band": band, "flux": flux,
                                      "flux_err": np.full(n_per_band, 3.0)}))
    lc = pd.concat(rows, ignore_index=True)
    objects = pd.DataFrame({
        "object_id": [f"obj{i:03d}" for i in range(n_objects)],
        "label": [labels[i % len(labels)] for i in range(n_objects)],
        "group_id": [f"grp{i // 2:03d}" for i in range(n_objects)],
        "source": "test",
    })
    return lc, objects


@pytest.fixture
def tables():
    return make_tables()


@pytest.fixture(scope="session")
def base_cfg():
    """The project's composed config (what params.yaml holds)."""
    from deeprubin.core.config import compose_task

    return compose_task("transients")


def fit_one_batch(model, x, y, optimiser, steps: int = 150):
    """``steps`` full-batch cross-entropy steps of ``model`` on ``(x, y)``; the model is left in eval
    mode and the last training loss returned (the overfit-one-batch checks)."""
    import torch

    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
    model.eval()
    return float(loss)


def compose_under(root: Path, overrides=(), task: str = "transients"):
    """The task's view of the composed config with every ``paths.*`` (the task's and the shared
    ones) and the MLflow store under ``root``.

    The paths go in as Hydra overrides, not by editing the composed config, so that keys
    interpolated from them (``predict.checkpoint``, ``real_sky.calibration``, ...) follow.
    """
    from deeprubin.core.config import compose_task

    paths = compose_task(task, list(overrides)).paths
    cfg = compose_task(task, [*overrides, *(f"paths.{key}={root / value}" for key, value in paths.items())])
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlruns.db'}"
    return cfg


#: The in-process tiny pipeline's overrides (shared by test_stages and test_predict).
TINY = ("experiment=tiny", "source.n_objects=60")


def run_tiny_pipeline(cfg, root: Path) -> dict:
    """Ingest -> evaluate in-process under ``root`` (cwd and MLflow isolated); the evaluate metrics."""
    from deeprubin.stages.augment import run_augment
    from deeprubin.stages.calibrate import run_calibrate
    from deeprubin.stages.evaluate import run_evaluate
    from deeprubin.stages.ingest import run_ingest
    from deeprubin.stages.preprocess import run_preprocess
    from deeprubin.stages.split import run_split
    from deeprubin.stages.train import run_train

    # as a stage process starts (hydra_entry): earlier tests in this worker may have changed torch's
    # thread count (transits' fit sets its own), and reductions round differently with it
    numerics.apply_threads()
    cwd, uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    try:
        for stage in (run_ingest, run_preprocess, run_split, run_augment, run_train, run_calibrate):
            stage(cfg)
        return run_evaluate(cfg)
    finally:
        os.chdir(cwd)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_uri(monkeypatch):
    """``mlflow.set_tracking_uri`` (Lightning's logger calls it) sets ``MLFLOW_TRACKING_URI`` in
    the process; no test may see a store another test left in this worker's environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """``(cfg, evaluate metrics as JSON)`` of the tiny pipeline, built once per test run.

    Under pytest-xdist the workers share it (a file lock; the first builds it), so the
    in-process stage tests pay for one tiny pipeline, not one per module. Tests must not
    write under its folders.
    """
    from filelock import FileLock

    from deeprubin.core import io

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, shared by the workers (not by other runs)
    root = base / "tiny_pipeline"
    with FileLock(str(base / "tiny_pipeline.lock")):
        cfg = compose_under(root, TINY)
        done = root / "evaluate_metrics.json"
        if not done.exists():
            io.write_json(run_tiny_pipeline(cfg, root), done)
    return cfg, io.read_json(done)


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for the tests that start a real server there."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_env() -> dict:
    """Environment for subprocesses: the venv first on PATH, a git identity, no global MLflow store."""
    import sys

    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="t@example.org", MPLBACKEND="Agg")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_in(cmd: list[str], cwd: Path) -> str:
    """Run a command, failing the test with its output tail if it exits non-zero."""
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=tiny_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def build_tiny_repo(repo: Path, overrides=("experiment=tiny",), targets=()) -> Path:
    """A git+DVC copy of the project's files with params.yaml composed from ``overrides``,
    after one `dvc repro` (of ``targets`` only, if given) whose results are committed
    (the baseline of `dvc exp show`)."""
    import shutil
    import subprocess

    from deeprubin.core.config import write_params

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = REPO_ROOT / rel
        # pipeline outputs stay behind; the committed benchmark results (seeds.json, an input of
        # the results stage) come along, as in a clone
        if src.is_file() and (not rel.startswith(("data/", "models/", "reports/"))
                              or rel.startswith("reports/benchmarks/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    write_params(repo / "params.yaml", list(overrides), conf_dir=repo / "conf")
    run_in(["git", "init", "-q"], repo)
    run_in(["git", "add", "-A"], repo)
    run_in(["git", "commit", "-q", "-m", "tiny"], repo)
    run_in(["dvc", "repro", *targets], repo)
    run_in(["git", "add", "-A"], repo)
    run_in(["git", "commit", "-q", "-m", "tiny baseline results"], repo)
    return repo
