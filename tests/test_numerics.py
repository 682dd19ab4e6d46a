"""Same params, same bytes: the numerics pinning (core/numerics.py) and the batch-invariant GP fit."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, make_tables

from deeprubin.core import numerics
from deeprubin.tasks.transients.preprocess.gp import fit_gp_grid

PROBE = REPO_ROOT / "tests" / "numerics_probe.py"

#: Environments that select other kernels on this machine, as another CPU would: MKL's code
#: branch, ATen's vector width, oneDNN's instruction set, the thread count. Each was measured to
#: change the GP grid or the trained weights here (docs/decisions/numerics-pinning.md).
KERNEL_ENVS = {
    "mkl-avx2": {"MKL_CBWR": "AVX2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "one-thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "openblas-sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "native": {},
}


def probe(extra_env: dict, entry: bool) -> dict:
    """Run the probe in a fresh process whose environment has none of the pinned values, plus ``extra_env``."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV and k != numerics.SWITCH}
    env.update(extra_env)
    cmd = [sys.executable, str(PROBE), *(["--entry"] if entry else [])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_other_kernels_differ_unpinned_and_agree_through_the_entry_point():
    raw = {name: probe(env, entry=False) for name, env in KERNEL_ENVS.items()}
    pinned = {name: probe(env, entry=True) for name, env in KERNEL_ENVS.items()}
    # Without the pinning the kernels change the results (else this test could not fail) ...
    assert len({(r["gp"], r["train"]) for r in raw.values()}) >= 2, raw
    assert len({r["gp"] for r in raw.values()}) >= 2, raw
    assert len({r["numpy"] for r in raw.values()}) >= 2, raw
    # ... and through the pipeline's entry point every environment gives the same bytes.
    assert len({(r["gp"], r["train"], r["numpy"]) for r in pinned.values()}) == 1, pinned
    assert {(r["capability"], r["threads"]) for r in pinned.values()} == {("AVX2", numerics.THREADS)}


def test_stage_process_runs_pinned_whatever_the_environment(tmp_path):
    """A real stage process (split), started with other kernels asked for, logs the pinned state."""
    from deeprubin.core import io

    _, objects = make_tables(n_objects=12)
    io.write_parquet(objects, tmp_path / "raw" / "objects.parquet")
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV}
    env.update(MKL_CBWR="AVX2", ATEN_CPU_CAPABILITY="default", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "deeprubin.stages.split", "task_name=transients", f"paths.raw={tmp_path / 'raw'}",
           f"paths.splits={tmp_path / 'splits'}", "outputs_outside_repo=true", f"hydra.run.dir={tmp_path / 'hydra'}", "hydra/job_logging=stdout"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"numerics: MKL CNR COMPATIBLE, ATen AVX2, {numerics.THREADS} threads (pinned)" in done.stdout
    assert (tmp_path / "splits" / "manifest.parquet").exists()


def test_stage_process_says_once_when_pinning_is_off(tmp_path):
    env = dict(os.environ, **{numerics.SWITCH: "0"})
    code = "import deeprubin.stages; from deeprubin.core import numerics; print(numerics.check().summary())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pinning off (DEEPRUBIN_PIN_NUMERICS=0)" in done.stdout


def test_late_pinning_is_reported_in_one_line():
    """torch already loaded and used with other settings: pin() cannot help, and says so once."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV}
    code = ("import torch, logging; logging.basicConfig(); (torch.ones(64, 64) @ torch.ones(64, 64)).exp(); "
            "import deeprubin.stages; "
            "from deeprubin.core import numerics; numerics.pin(); st = numerics.check(); print('OK', st.ok)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "OK False" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if "torch was used before deeprubin pinned" in line]
    assert len(warnings) == 1, done.stderr
    assert "MKL CNR mode" in warnings[0]


def test_status_names_each_unpinned_setting(monkeypatch):
    import torch

    monkeypatch.setattr(numerics, "_mkl_cbwr", lambda: 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
    st = numerics.status()
    assert not st.ok
    text = numerics.describe_problems(st)
    assert "MKL CNR mode is code 1, not COMPATIBLE" in text
    assert f"torch uses 7 threads, not {numerics.THREADS}" in text


def _random_lightcurves(n_objects: int, seed: int):
    rng = np.random.default_rng(seed)
    frames = []
    import pandas as pd

    for k in range(n_objects):
        n = int(rng.integers(4, 70))
        t = np.sort(rng.uniform(0.0, 120.0, n))
        band = rng.choice(["g", "r"], n)
        flux = 80.0 * np.exp(-0.5 * ((t - rng.uniform(20, 90)) / rng.uniform(5, 30)) ** 2) + rng.normal(0, 3, n)
        frames.append(pd.DataFrame({"object_id": f"o{k:03d}", "time": 59000.0 + t, "band": band, "flux": flux,
                                    "flux_err": 3.0}))
    return pd.concat(frames, ignore_index=True)


GP_KW = dict(band_wavelengths={"g": 4800.0, "r": 6400.0}, window_before_days=30.0, window_after_days=70.0,
             n_grid=30, fit_margin_days=20.0, max_points=256, n_iter=60, learning_rate=0.1, tol=1e-4,
             wavelength_length_scale=6000.0, progress=False)


def _object_bytes(grid, oid: str) -> bytes:
    j = list(grid.object_ids).index(oid)
    d = grid.diagnostics.iloc[j]
    return (grid.mean[j].tobytes() + grid.std[j].tobytes() + np.float64(grid.t_ref[j]).tobytes()
            + np.array([d.final_loss, d.amplitude, d.length_scale_time_days, d.n_iter], dtype=float).tobytes())


def test_gp_output_of_an_object_does_not_depend_on_its_batch():
    lc = _random_lightcurves(40, seed=3)
    together = fit_gp_grid(lc, batch_size=256, **GP_KW)
    small_batches = fit_gp_grid(lc, batch_size=3, workers=2, **GP_KW)
    ids = list(together.object_ids)
    other_partition = fit_gp_grid(lc[lc.object_id.isin(ids[::3])], batch_size=5, **GP_KW)
    for oid in ids[:12]:
        alone = fit_gp_grid(lc[lc.object_id == oid], batch_size=256, **GP_KW)
        assert _object_bytes(alone, oid) == _object_bytes(together, oid), oid
    for oid in ids:
        assert _object_bytes(small_batches, oid) == _object_bytes(together, oid), oid
    for oid in ids[::3]:
        assert _object_bytes(other_partition, oid) == _object_bytes(together, oid), oid


def test_pinning_after_import_but_before_any_math_still_holds():
    """MKL and ATen read their settings at their first call, not at import, so they are pinned
    even when torch was imported first. numpy's SIMD loops and its OpenBLAS kernel are chosen when
    numpy loads: on a CPU with AVX-512 they cannot be pinned afterwards, and the check says so
    (naming numpy and OpenBLAS, nothing else); on an AVX2-only CPU they are what pinning asks for."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV}
    code = ("import torch, logging; logging.basicConfig(); import deeprubin.stages; "
            "from deeprubin.core import numerics; print(numerics.check().summary())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"MKL CNR COMPATIBLE, ATen AVX2, {numerics.THREADS} threads (")
    if "(pinned)" not in done.stdout:
        problems = done.stdout.split("NOT pinned: ", 1)[1].rstrip().rstrip(")").split("; ")
        assert problems and all("numpy loaded before" in p for p in problems), problems
        assert "WARNING" in done.stderr  # said once, in the log
    else:
        assert "WARNING" not in done.stderr
