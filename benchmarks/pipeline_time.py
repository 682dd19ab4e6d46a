"""What the numerics pinning costs: every stage's wall time and the GP throughput, pinned and not.

Usage (from the repository root, after ``make setup``; ~20 min on 2 cores)::

    .venv/bin/python -m benchmarks.pipeline_time              # pipeline + GP throughput
    .venv/bin/python -m benchmarks.pipeline_time --skip-pipeline --repeats 5
    .venv/bin/python -m benchmarks.pipeline_time --repro --repeats 1   # the run-time budget (~8 min)

Pipeline: HEAD is cloned twice into a temporary folder (as ``make verify`` does) and every
stage runs in DAG order (``dvc repro --single-item``), alternating between the clone whose
stages run pinned (the default) and the one run with ``DEEPRUBIN_PIN_NUMERICS=0``, so both
see the same machine load. GP throughput: the default preprocess settings on the default
simulated survey, fitted in fresh processes, pinned and unpinned alternately, ``--repeats``
times each (the fit only, not the imports). ``--repro`` instead times the default pipeline as a
user runs it: one ``dvc repro`` in a fresh clone (pinned, the default), each stage from the
line where DVC starts it to the next one's (so DVC's own work between stages counts), plus one
GP throughput run. Each mode's stage times are also summed per task
(``per_task_seconds``: a stage ``<step>@<task>`` or a stage whose params name one task's node
belongs to that task, the others to ``shared``), the split of the run-time budget that
docs/benchmarks.md states. Writes ``reports/benchmarks/pipeline_time.json``
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
from deeprubin.core.config import compose_task
from deeprubin.sources.simulate import load_simulated
from deeprubin.tasks.transients.preprocess.gp import fit_gp_grid
cfg = compose_task("transients")
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


def stage_tasks(dvc_yaml: Path) -> dict[str, str]:
    """Stage name -> the task it belongs to: ``<step>@<task>``, else the one task whose
    ``tasks.<task>`` node its params and outputs name (``shared`` for none or several)."""
    import yaml

    owners = {}
    for name, stage in yaml.safe_load(dvc_yaml.read_text())["stages"].items():
        if "foreach" in stage:
            continue  # named <step>@<task> when expanded
        text = json.dumps({k: stage.get(k) for k in ("params", "outs", "metrics")})
        tasks = set(re.findall(r"tasks\.(\w+)\.", text))
        owners[name] = tasks.pop() if len(tasks) == 1 else "shared"
    return owners


def per_task(seconds: dict[str, float], owners: dict[str, str]) -> dict[str, float]:
    """Stage seconds summed per task (:func:`stage_tasks`)."""
    out: dict[str, float] = {}
    for stage, value in seconds.items():
        task = stage.split("@", 1)[1] if "@" in stage else owners.get(stage, "shared")
        out[task] = round(out.get(task, 0.0) + value, 1)
    return dict(sorted(out.items()))


def time_pipeline(workdir: Path, say, modes=MODES) -> dict:
    clones = {}
    for mode in modes:
        dest = workdir / mode / "repo"
        dest.parent.mkdir(parents=True)
        verify.clone(REPO_ROOT, "HEAD", dest)
        clones[mode] = dest
    stage_seconds = {mode: {} for mode in modes}
    for stage in stages_in_order(clones["pinned"], mode_env("pinned")):
        for mode in modes:
            env = mode_env(mode)
            env["PYTHONPATH"] = str(clones[mode] / "src")  # the clone's code, not this checkout's
            start = time.perf_counter()
            subprocess.run(["dvc", "repro", "--single-item", stage], cwd=clones[mode], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stage_seconds[mode][stage] = round(time.perf_counter() - start, 2)
        say(f"{stage:>22s}: " + ", ".join(f"{mode} {stage_seconds[mode][stage]:6.1f} s" for mode in modes))
    totals = {mode: round(sum(stage_seconds[mode].values()), 1) for mode in modes}
    owners = stage_tasks(clones["pinned"] / "dvc.yaml")
    out = {"stage_seconds": stage_seconds, "total_seconds": totals,
           "per_task_seconds": {mode: per_task(stage_seconds[mode], owners) for mode in modes}}
    if len(modes) == 2:
        out["pinned_over_unpinned"] = round(totals["pinned"] / totals["unpinned"], 3)
    return out


def time_repro(workdir: Path, say) -> dict:
    """One ``dvc repro`` of HEAD in a fresh clone, pinned: seconds per stage (start to the next
    stage's start, the last to the end of the run), per task and in all."""
    dest = workdir / "repo"
    dest.parent.mkdir(parents=True, exist_ok=True)
    verify.clone(REPO_ROOT, "HEAD", dest)
    env = mode_env("pinned")
    env["PYTHONPATH"] = str(dest / "src")  # the clone's code, not this checkout's
    env["PYTHONUNBUFFERED"] = "1"          # DVC's "Running stage" lines as they happen, not in bursts
    starts: list[tuple[str, float]] = []
    begin = time.perf_counter()
    with subprocess.Popen(["dvc", "repro"], cwd=dest, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            found = re.match(r"Running stage '([^']+)'", line)
            if found:
                starts.append((found.group(1), time.perf_counter()))
                say(f"{time.perf_counter() - begin:7.1f} s: {found.group(1)}")
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro failed in {dest} (exit {proc.returncode})")
    end = time.perf_counter()
    seconds = {name: round((starts[i + 1][1] if i + 1 < len(starts) else end) - t, 2)
               for i, (name, t) in enumerate(starts)}
    return {"stage_seconds": {"pinned": seconds}, "total_seconds": {"pinned": round(end - begin, 1)},
            "per_task_seconds": {"pinned": per_task(seconds, stage_tasks(dest / "dvc.yaml"))},
            "method": "one `dvc repro` in a fresh clone; a stage lasts from its 'Running stage' line to the next"}


def time_gp(repeats: int, say, modes=MODES) -> dict:
    rates = {mode: [] for mode in modes}
    for r in range(repeats):
        for mode in modes:
            done = subprocess.run([sys.executable, "-c", GP_CODE], env=mode_env(mode), cwd=REPO_ROOT, check=True,
                                  capture_output=True, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rates[mode].append(round(result["objects"] / result["seconds"], 1))
            say(f"GP repeat {r + 1} {mode}: {rates[mode][-1]} light curves/s ({result['status']})")
    medians = {mode: statistics.median(v) for mode, v in rates.items()}
    out = {"light_curves_per_s": rates, "median": medians}
    if len(modes) == 2:
        out["pinned_over_unpinned"] = round(medians["pinned"] / medians["unpinned"], 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="GP throughput runs per mode")
    parser.add_argument("--skip-pipeline", action="store_true", help="only the GP throughput")
    parser.add_argument("--repro", action="store_true",
                        help="one pinned `dvc repro` in a fresh clone, timed per stage and task (the run-time "
                             "budget), instead of the stage-by-stage comparison of pinned and unpinned")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/benchmarks/pipeline_time.json")
    args = parser.parse_args(argv)
    say = lambda line: print(line, flush=True)  # noqa: E731
    out = {**provenance("pipeline_time", argv), "pinned_env": numerics.PINNED_ENV}
    out["gp"] = time_gp(args.repeats, say, ("pinned",) if args.repro else MODES)
    if not args.skip_pipeline:
        workdir = Path(tempfile.mkdtemp(prefix="deeprubin-pipeline-time-"))
        try:
            out["pipeline"] = time_repro(workdir, say) if args.repro else time_pipeline(workdir, say)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    io.write_json(out, args.out)
    say(f"GP: median light curves/s {out['gp']['median']}")
    if "pipeline" in out:
        say(f"pipeline: {out['pipeline']['total_seconds']} s; per task {out['pipeline']['per_task_seconds']}")
    say(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
