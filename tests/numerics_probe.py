"""Fit GPs, take a few training steps, do some numpy/scipy math; print the md5 of each (test_numerics).

Run as ``python tests/numerics_probe.py [--entry]``. With ``--entry`` the process starts
through the pipeline's entry point (``import deeprubin.stages``, which pins the numerics,
then the stage wrapper's check), as every DVC stage does; without it, torch runs with
whatever kernels this CPU and environment select. The test runs it in subprocesses under
environments that select other kernels (another CPU, emulated) and compares the hashes.
"""
from __future__ import annotations

import sys

if "--entry" in sys.argv:
    import deeprubin.stages  # noqa: F401  (pins the numerics before torch loads)
    from deeprubin.core import numerics

    numerics.check()

import hashlib  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from deeprubin.core.models.tcn import TCNClassifier
from deeprubin.tasks.transients.preprocess.gp import fit_gp_grid
from deeprubin.tasks.transients.training.data import grid_features

BANDS = {"g": 4800.0, "r": 6400.0}


def md5(*arrays) -> str:
    h = hashlib.md5()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def lightcurves(n_objects: int = 48, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """Transient bumps (class 0) and sinusoids (class 1), 5-90 points each, in g and r."""
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for k in range(n_objects):
        n = int(rng.integers(5, 90))
        t = np.sort(rng.uniform(0.0, 150.0, n))
        band = rng.choice(list(BANDS), n)
        if k % 2 == 0:
            flux = 100.0 * np.exp(-0.5 * ((t - rng.uniform(30, 90)) / rng.uniform(5, 25)) ** 2)
        else:
            flux = 50.0 + 30.0 * np.sin(2 * np.pi * t / rng.uniform(2, 40))
        err = np.full(n, 3.0)
        frames.append(pd.DataFrame({"object_id": f"obj{k:03d}", "time": 59000.0 + t, "band": band,
                                    "flux": flux + rng.normal(0.0, err), "flux_err": err}))
        labels.append(k % 2)
    return pd.concat(frames, ignore_index=True), np.array(labels)


def main() -> None:
    lc, labels = lightcurves()
    grid = fit_gp_grid(lc, band_wavelengths=BANDS, window_before_days=30.0, window_after_days=70.0, n_grid=50,
                       fit_margin_days=20.0, max_points=256, n_iter=60, learning_rate=0.1, batch_size=16,
                       tol=1e-4, wavelength_length_scale=6000.0, progress=False)
    d = grid.diagnostics
    gp_hash = md5(grid.mean, grid.std, d["final_loss"].to_numpy(), d["length_scale_time_days"].to_numpy(),
                  d["amplitude"].to_numpy())

    x = torch.from_numpy(grid_features(grid.mean, grid.std))
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    model = TCNClassifier(n_inputs=x.shape[1], n_classes=2)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(4):
        rows = torch.arange(step * 8, step * 8 + 16) % len(y)
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    train_hash = md5(*(t.detach().numpy() for t in model.state_dict().values()))

    # numpy/scipy: OpenBLAS (matrix products, solves) and numpy's SIMD loops (transcendentals).
    rng = np.random.default_rng(0)
    a, m = rng.normal(size=20001), rng.normal(size=(200, 200))
    numpy_hash = md5(m @ m, np.linalg.solve(m @ m.T + np.eye(200), a[:200]), np.exp(a), np.log(np.abs(a)),
                     np.sin(a), np.quantile(a, [0.25, 0.75]))
    print(json.dumps({"gp": gp_hash, "train": train_hash, "numpy": numpy_hash, "capability": torch.backends.cpu.get_cpu_capability(),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
