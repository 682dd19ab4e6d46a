"""Wall time of every stage of the default pipeline, run in this repository.

Usage (from the repository root, after `make setup`)::

    .venv/bin/python benchmarks/pipeline_time.py

Forces each stage to rerun in DAG order (``dvc repro --force --single-item``), prints
the machine and the timings, and writes ``reports/benchmarks/pipeline_time.json``.
The outputs it regenerates are the ones `dvc repro` would make (the pipeline is
deterministic), so `dvc status` stays clean afterwards.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from deeprubin import io

import re


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine()}


def stages_in_order(env: dict) -> list[str]:
    """Stage names in the order `dvc repro` runs them (from a dry run)."""
    dry = subprocess.run(["dvc", "repro", "--force", "--dry"], check=True, env=env, capture_output=True,
                         text=True).stdout
    return re.findall(r"Running stage '([^']+)'", dry)


def main() -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    info = machine()
    print("machine:", info)
    timings = {}
    for stage in stages_in_order(env):
        start = time.perf_counter()
        subprocess.run(["dvc", "repro", "--force", "--single-item", stage], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        timings[stage] = round(time.perf_counter() - start, 2)
        print(f"{stage:>10s}: {timings[stage]:7.1f} s")
    total = round(sum(timings.values()), 2)
    print(f"{'total':>10s}: {total:7.1f} s")
    io.write_json({"machine": info, "stage_seconds": timings, "total_seconds": total},
                  Path("reports/benchmarks/pipeline_time.json"))


if __name__ == "__main__":
    main()
