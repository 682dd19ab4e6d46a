"""The run-time budget's split per task (benchmarks.pipeline_time): which task each stage counts for."""
from __future__ import annotations

from conftest import REPO_ROOT

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
