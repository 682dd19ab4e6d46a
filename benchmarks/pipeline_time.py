"""What the numerics pinning costs: every stage's wall time and the GP throughput, pinned and not.

Usage (from the repository root, after ``make setup``; ~20 min on 2 cores)::

    .venv/bin/python -m benchmarks.pipeline_time              # pipeline + GP throughput
    .venv/bin/python -m benchmarks.pipeline_time --skip-pipeline --repeats 5

Pipeline: HEAD is cloned twice into a temporary folder (as ``make verify`` does) and every
stage runs in DAG order (``dvc repro --single-item``), alternating between the clone whose
stages run pinned (the default) and the one run with ``DEEPRUBIN_PIN_NUMERICS=0``, so both
see the same machine load. GP throughput: the default preprocess settings on the default
simulated survey, fitted in fresh processes, pinned and unpinned alternately, ``--repeats``
times each (the fit only, not the imports). Writes ``reports/benchmarks/pipeline_time.json``
with the command, the machine and the code hash. Timings never go into DVC-tracked metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import provenance
from deeprubin.core import io, numerics, verify

REPO_ROOT = Path(__file__).resolve().parents[1]
MODES = ("pinned", "unpinned")

#: Fits the default simulated survey with the default preprocess settings; prints objects/s.
GP_CODE = """
import deeprubin.stages, json, time
from deeprubin.core import numerics
numerics.check()
from deeprubin.core.config import compose_params
from deeprubin.sources.simulate import load_simulated
from deeprubin.tasks.transients.preprocess.gp import fit_gp_grid
cfg = compose_params([])
lc, _ = load_simulated(cfg)
lc = lc[lc["detected"]]
p = cfg.preprocess
start = time.perf_counter()
grid = fit_gp_grid(lc, band_wavelengths=dict(cfg.task.band_wavelengths), window_before_days=p.window_before_days,
                   window_after_days=p.window_after_days, n_grid=p.n_grid, fit_margin_days=p.fit_margin_days,
                   max_points=p.max_points, n_iter=p.n_iter, learning_rate=p.learning_rate, batch_size=p.batch_size,
                   tol=p.tol, wavelength_length_scale=p.wavelength_length_scale, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"objects": len(grid.object_ids), "seconds": seconds, "status": numerics.status().summary()}))
"""


def mode_env(mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env[numerics.SWITCH] = "1" if mode == "pinned" else "0"
    return env


def stages_in_order(repo: Path, env: dict) -> list[str]:
    """Stage names in the order `dvc repro` runs them (from a dry run)."""
    dry = subprocess.run(["dvc", "repro", "--force", "--dry"], cwd=repo, check=True, env=env, capture_output=True,
                         text=True).stdout
    return re.findall(r"Running stage '([^']+)'", dry)


def time_pipeline(workdir: Path, say) -> dict:
    clones = {}
    for mode in MODES:
        dest = workdir / mode / "repo"
        dest.parent.mkdir(parents=True)
        verify.clone(REPO_ROOT, "HEAD", dest)
        clones[mode] = dest
    stage_seconds = {mode: {} for mode in MODES}
    for stage in stages_in_order(clones["pinned"], mode_env("pinned")):
        for mode in MODES:
            env = mode_env(mode)
            env["PYTHONPATH"] = str(clones[mode] / "src")  # the clone's code, not this checkout's
            start = time.perf_counter()
            subprocess.run(["dvc", "repro", "--single-item", stage], cwd=clones[mode], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stage_seconds[mode][stage] = round(time.perf_counter() - start, 2)
        say(f"{stage:>22s}: pinned {stage_seconds['pinned'][stage]:6.1f} s, "
            f"unpinned {stage_seconds['unpinned'][stage]:6.1f} s")
    totals = {mode: round(sum(stage_seconds[mode].values()), 1) for mode in MODES}
    return {"stage_seconds": stage_seconds, "total_seconds": totals,
            "pinned_over_unpinned": round(totals["pinned"] / totals["unpinned"], 3)}


def time_gp(repeats: int, say) -> dict:
    rates = {mode: [] for mode in MODES}
    for r in range(repeats):
        for mode in MODES:
            done = subprocess.run([sys.executable, "-c", GP_CODE], env=mode_env(mode), cwd=REPO_ROOT, check=True,
                                  capture_output=True, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rates[mode].append(round(result["objects"] / result["seconds"], 1))
            say(f"GP repeat {r + 1} {mode}: {rates[mode][-1]} light curves/s ({result['status']})")
    medians = {mode: statistics.median(v) for mode, v in rates.items()}
    return {"light_curves_per_s": rates, "median": medians,
            "pinned_over_unpinned": round(medians["pinned"] / medians["unpinned"], 3)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="GP throughput runs per mode")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the GP throughput")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/benchmarks/pipeline_time.json")
    args = parser.parse_args(argv)
    say = lambda line: print(line, flush=True)  # noqa: E731
    out = {**provenance("pipeline_time", argv), "pinned_env": numerics.PINNED_ENV}
    out["gp"] = time_gp(args.repeats, say)
    if not args.skip_pipeline:
        workdir = Path(tempfile.mkdtemp(prefix="deeprubin-pipeline-time-"))
        try:
            out["pipeline"] = time_pipeline(workdir, say)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    io.write_json(out, args.out)
    say(f"GP: pinned/unpinned throughput {out['gp']['pinned_over_unpinned']}")
    if "pipeline" in out:
        say(f"pipeline: {out['pipeline']['total_seconds']} s, pinned/unpinned {out['pipeline']['pinned_over_unpinned']}")
    say(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
