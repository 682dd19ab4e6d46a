"""Benchmark helpers: the run-time budget's split per task (benchmarks.pipeline_time) and the feature-shift table."""
from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import REPO_ROOT

from benchmarks.feature_shift import shift_table
from benchmarks.pipeline_time import per_task, stage_tasks


def test_every_stage_of_dvc_yaml_counts_for_its_task():
    owners = stage_tasks(REPO_ROOT / "dvc.yaml")
    assert owners["transits_search"] == owners["transits_vet"] == owners["transits_real"] == "transits"
    assert owners["baseline"] == owners["calibration_check"] == owners["real_sky"] == "transients"
    assert owners["index"] == owners["results"] == "shared"      # they read every task
    assert not any("@" in name for name in owners)                 # generic stages: by their @<task>


def test_per_task_sums_generic_and_own_stages():
    owners = {"baseline": "transients", "transits_search": "transits", "index": "shared"}
    seconds = {"ingest@transients": 10.0, "train@transits": 30.5, "baseline": 5.25, "transits_search": 2.0,
               "index": 1.0, "unknown_stage": 0.5}
    assert per_task(seconds, owners) == {"shared": 1.5, "transients": 15.2, "transits": 32.5}


def test_shift_table_ranks_the_shifted_feature_first():
    rng = np.random.default_rng(0)
    sim = pd.DataFrame({"object_id": [f"s{i}" for i in range(200)], "same": rng.normal(size=200),
                        "moved": rng.normal(size=200), "empty": np.nan})
    real = pd.DataFrame({"object_id": [f"r{i}" for i in range(150)], "same": rng.normal(size=150),
                         "moved": rng.normal(3.0, 1.0, size=150), "empty": 1.0})
    real.loc[:9, "same"] = np.inf   # non-finite values count as missing
    table = shift_table(sim, real)
    assert table["feature"].tolist() == ["moved", "same", "empty"]
    moved, same, empty = (table.set_index("feature").loc[k] for k in ("moved", "same", "empty"))
    assert moved["ks"] > 0.8 and same["ks"] < 0.2 and np.isnan(empty["ks"])
    assert same["real_missing"] == 10 / 150 and empty["sim_missing"] == 1.0
