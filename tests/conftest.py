"""Shared fixtures: tiny canonical tables and the composed project config."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
    from deeprubin.config import compose_params

    return compose_params([])
