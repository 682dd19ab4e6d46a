"""Headline numbers over training seeds: ``make seeds`` writes ``reports/benchmarks/seeds.json``.

A single training run's score moves by several points with the seed, so the numbers the docs
quote are means and standard deviations over at least five training seeds, on the same
simulated data: ``data_seed`` (the simulated surveys and the splits) stays fixed while
``seed`` (network initialisation, batch order, augmentation draws, the forest) varies. The
spread over data seeds, where the test set itself changes, is reported apart
(``data_seeds``), each run at the first training seed.

Usage (from the repository root, after ``make setup``)::

    .venv/bin/python -m benchmarks.seeds                          # training seeds 42 7 11 1 2, data seed 42
    .venv/bin/python -m benchmarks.seeds --data-seeds 7 11        # ... plus two other data seeds
    .venv/bin/python -m benchmarks.seeds --seeds 1 2 --base experiment=tiny --out /tmp/tiny.json

Every run goes through the pipeline's stage entry points (so the numerics are pinned as in
``dvc repro``) with every ``paths.*`` under ``--workdir``: the repository's data, models,
reports and ``dvc.lock`` are not touched. The stages that depend only on the data seed run
once per data seed; the others once per (data seed, training seed). A run whose outputs exist
and that was made from the same overrides and the same ``src/``/``conf/`` files
(``fingerprint.txt``) is not run again (``--rerun`` forces it), so an interrupted run resumes.

Output: ``{"seeds", "data_seed", "transients": {key: {"per_seed", "mean", "std"}}, "transits":
{...}, "data_seeds": {...}, "command", "code_hash", "machine"}``. Without
``../shared/data/real`` the real-sky fraction is null (the stage records ``skipped``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from omegaconf import OmegaConf

from benchmarks.common import command, machine, tree_hash
from deeprubin.core import io
from deeprubin.core.config import compose_params

REPO_ROOT = Path(__file__).resolve().parents[1]

#: (task, stages run once per data seed, stages run per training seed), in DAG order.
CHAINS = {
    "transients": (("ingest@transients", "split@transients", "preprocess@transients"),
                   ("augment", "train@transients", "calibrate", "baseline", "evaluate@transients", "real_sky")),
    "transits": (("ingest@transits", "preprocess@transits", "split@transits"),
                 # transits_search depends on the data only, but writes the search-alone baseline
                 # beside each run's reports (paths.baseline), so it runs per seed (same bytes)
                 ("train@transits", "transits_search", "evaluate@transits", "transits_vet", "transits_real",
                  "transits_report")),
    "stellar": (("ingest@stellar", "preprocess@stellar", "split@stellar"),
                # stellar_sed trains SEDNet (per seed) and writes the trees beside each run's reports
                ("train@stellar", "calibrate@stellar", "stellar_sed", "evaluate@stellar")),
}
#: Path keys whose outputs the data-seed stages write (shared by the training seeds).
SHARED_PATHS = ("raw", "processed", "splits")
#: Headline keys: task -> key -> (file under the task's reports folder, dotted key in it).
#: A HEADLINES file that is the evaluate stage's metrics file (the task's ``paths.metrics``); the
#: other files are relative to the task's ``paths.reports``.
EVALUATE_METRICS = "<paths.metrics>"

HEADLINES = {
    "transients": {
        "deep_macro_f1": (EVALUATE_METRICS, "macro_f1"),
        "deep_val_macro_f1": (EVALUATE_METRICS, "validation.macro_f1"),   # what model selection compares
        # the run's test-set group-bootstrap interval (the paper profile quotes it beside its one run)
        "deep_macro_f1_ci95_low": (EVALUATE_METRICS, "confidence_intervals.macro_f1.low"),
        "deep_macro_f1_ci95_high": (EVALUATE_METRICS, "confidence_intervals.macro_f1.high"),
        "baseline_macro_f1": ("baseline/metrics.json", "macro_f1"),
        "real_sky_fraction": ("real_sky.json", "target.fraction"),
        # the forest on the same real objects (the baseline stage's real_sky.json)
        "baseline_real_sky_fraction": ("baseline/real_sky.json", "target.fraction"),
        # the 30 ALeRCE SNe (four classes, no host redshift): accuracy, and SN Ia precision, so that
        # calling everything SN Ia cannot pass the BTS fraction above unnoticed
        "alerce_30sne_accuracy": ("real_sky.json", "datasets.alerce_30sne.accuracy"),
        "alerce_30sne_snia_precision": ("real_sky.json", "datasets.alerce_30sne.precision.SNIa"),
        "baseline_alerce_30sne_accuracy": ("baseline/real_sky.json", "datasets.alerce_30sne.accuracy"),
    },
    "transits": {
        # the segment CNN (evaluate@transits, its paths.metrics): per light curve, and segment recall
        # at SNR >= 7.1 at the segment threshold of 1% false-positive rate
        "star_roc_auc": (EVALUATE_METRICS, "star.roc_auc"),
        "recall_snr_ge_7p1_at_1pct_fpr": (EVALUATE_METRICS, "segment.recall_snr_ge_threshold"),
        "bls_star_recall_snr_ge_7p1_at_1pct_fpr": (EVALUATE_METRICS, "bls.recall_snr_ge_threshold"),
        # search + CNN vetting, per star (transits_vet; the search alone scored by its SDE)
        "vet_star_roc_auc": ("vetting/metrics.json", "methods.vet.roc_auc"),
        "vet_star_roc_auc_snr_ge_7p1": ("vetting/metrics.json", "methods.vet.roc_auc_snr_ge_threshold"),
        "vet_recall_snr_ge_7p1_at_1pct_fpr": ("vetting/metrics.json", "methods.vet.recall_snr_ge_threshold"),
        "search_recall_snr_ge_7p1_at_1pct_fpr": ("vetting/metrics.json", "methods.bls_sde.recall_snr_ge_threshold"),
        "vet_eb_false_positive_rate": ("vetting/metrics.json", "methods.vet.eb_false_positive_rate"),
        # the real planet hosts (transits_real; None without the real-data folder): how many of the
        # three are the top candidate at the known period and pass the vetting threshold
        "real_found_top_and_passing": ("real/real_report.json", "vetting_summary.n_found_top_and_passing"),
        # the run's test-star bootstrap intervals ([low, high] lists: index 0 and 1)
        "vet_star_roc_auc_snr_ge_7p1_ci95_low": ("vetting/metrics.json",
                                                 "methods.vet.roc_auc_snr_ge_threshold_ci95.0"),
        "vet_star_roc_auc_snr_ge_7p1_ci95_high": ("vetting/metrics.json",
                                                  "methods.vet.roc_auc_snr_ge_threshold_ci95.1"),
        "vet_recall_snr_ge_7p1_at_1pct_fpr_ci95_low": ("vetting/metrics.json",
                                                       "methods.vet.recall_snr_ge_threshold_ci95.0"),
        "vet_recall_snr_ge_7p1_at_1pct_fpr_ci95_high": ("vetting/metrics.json",
                                                        "methods.vet.recall_snr_ge_threshold_ci95.1"),
        "search_eb_false_positive_rate": ("vetting/metrics.json", "methods.bls_sde.eb_false_positive_rate"),
    },
    "stellar": {
        # the spectral network on the test spectra at S/N 40-60, and the trees on PCA of the same spectra
        "teff_mae": (EVALUATE_METRICS, "teff_mae"),
        "logg_mae": (EVALUATE_METRICS, "logg_mae"),
        "feh_mae": (EVALUATE_METRICS, "feh_mae"),
        "macro_f1": (EVALUATE_METRICS, "macro_f1"),
        "coverage_1sigma": (EVALUATE_METRICS, "coverage_1sigma"),
        "baseline_teff_mae": (EVALUATE_METRICS, "baseline.gbm_spectra_pca.reference.teff_mae"),
        "baseline_logg_mae": (EVALUATE_METRICS, "baseline.gbm_spectra_pca.reference.logg_mae"),
        "baseline_feh_mae": (EVALUATE_METRICS, "baseline.gbm_spectra_pca.reference.feh_mae"),
        # the real Kepler stars from their photometry: SEDNet and the trees (stellar_sed)
        "kepler_sednet_teff_mae": (EVALUATE_METRICS, "real.sednet.parameters.teff.mae"),
        "kepler_sednet_logg_mae": (EVALUATE_METRICS, "real.sednet.parameters.logg.mae"),
        "kepler_gbm_teff_mae": (EVALUATE_METRICS, "real.gbm.parameters.teff.mae"),
        "kepler_gbm_logg_mae": (EVALUATE_METRICS, "real.gbm.parameters.logg.mae"),
    },
}
#: Per-seed differences reported beside the headlines: name -> (task, minuend, subtrahend).
DIFFERENCES = {"deep_minus_baseline_macro_f1": ("transients", "deep_macro_f1", "baseline_macro_f1")}
HYDRA_ARGS = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout",
              "hydra/hydra_logging=disabled")


class StageFailed(RuntimeError):
    """A pipeline stage exited non-zero."""


def module_of(stage: str) -> str:
    """``train`` -> ``deeprubin.stages.train``; ``split@transits`` (a generic stage, as dvc.yaml's
    foreach names it) -> ``deeprubin.stages.split``."""
    return f"deeprubin.stages.{stage.partition('@')[0]}"


def stage_args(stage: str) -> list[str]:
    """The overrides a stage name carries: ``split@transits`` -> ``["task_name=transits"]``."""
    task = stage.partition("@")[2]
    return [f"task_name={task}"] if task else []


def run_overrides(base: list[str], seed: int, data_seed: int, shared_dir: Path, run_dir: Path) -> list[str]:
    """Hydra overrides of one run: seeds, every transients and transits path, its own MLflow store."""
    cfg = compose_params(base)
    moved = []
    for prefix, paths in [("paths", cfg.paths)] + [(f"tasks.{t}.paths", cfg.tasks[t].paths) for t in cfg.tasks]:
        for key, value in paths.items():
            root = shared_dir if key in SHARED_PATHS else run_dir
            moved.append(f"{prefix}.{key}={root / str(value)}")
    return [*base, f"seed={seed}", f"data_seed={data_seed}", *moved, "outputs_outside_repo=true",
            f"mlflow.tracking_uri=sqlite:///{run_dir / 'mlruns.db'}"]


def run_stage(stage: str, config_dir: Path, log: Path) -> float:
    """Run one stage with ``config_dir/params.yaml``; output appended to ``log``. Returns seconds.

    Raises
    ------
    StageFailed
        Naming the stage, the params file and the log, with the log's last lines.
    """
    start = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        proc = subprocess.run([sys.executable, "-m", module_of(stage), "--config-dir", str(config_dir),
                               "--config-name", "params", *HYDRA_ARGS, *stage_args(stage)], cwd=REPO_ROOT, stdout=out,
                              stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise StageFailed(f"stage {stage} failed (exit {proc.returncode}) with {config_dir / 'params.yaml'}; "
                          f"log {log}:\n{tail}")
    return time.perf_counter() - start


def run_chain(stages, run_dir: Path, overrides: list[str], code: str, rerun: bool, progress, label: str) -> bool:
    """Run ``stages`` in ``run_dir`` unless a finished run with the same fingerprint is there;
    True when they ran."""
    fingerprint = hashlib.sha256(json.dumps([overrides, code, list(stages)]).encode()).hexdigest()
    stamp = run_dir / "fingerprint.txt"
    if not rerun and stamp.exists() and stamp.read_text().strip() == fingerprint:
        progress(f"{label}: up to date")
        return False
    stamp.unlink(missing_ok=True)  # a run stopped half-way must not look finished
    io.write_text(OmegaConf.to_yaml(compose_params(overrides)), run_dir / "params.yaml")
    for stage in stages:
        seconds = run_stage(stage, run_dir, run_dir / "stages.log")
        progress(f"{label}: {stage} {seconds:.0f} s")
    io.write_text(fingerprint + "\n", stamp)
    return True


def headlines(task_paths: dict[str, Mapping]) -> dict[str, dict[str, float | None]]:
    """The :data:`HEADLINES` of one finished run's tasks (the keys of ``task_paths``, each the
    task's ``paths`` with ``reports`` and ``metrics``; None where absent, e.g. real data missing)."""
    out = {}
    for task, keys in HEADLINES.items():
        if task not in task_paths:
            continue
        out[task] = {}
        for name, (file, dotted) in keys.items():
            paths = task_paths[task]
            path = Path(paths["metrics"]) if file == EVALUATE_METRICS else Path(paths["reports"]) / file
            node = io.read_json(path) if path.exists() else None
            for part in dotted.split("."):
                if isinstance(node, list) and part.isdigit():   # an interval's [low, high]
                    node = node[int(part)] if int(part) < len(node) else None
                else:
                    node = node.get(part) if isinstance(node, dict) else None
            out[task][name] = node if isinstance(node, (int, float)) and not isinstance(node, bool) else None
    for name, (task, a, b) in DIFFERENCES.items():
        if task not in out:
            continue
        x, y = out[task][a], out[task][b]
        out[task][name] = None if x is None or y is None else x - y
    return out


def summarise(values: list[float | None]) -> dict:
    """``per_seed`` as given, and mean and standard deviation (n - 1) of its non-null values."""
    v = [x for x in values if x is not None]
    return {"per_seed": values, "mean": statistics.fmean(v) if v else None,
            "std": statistics.stdev(v) if len(v) > 1 else None}


def run_all(seeds: list[int], data_seed: int, workdir: Path, base: list[str] = (), rerun: bool = False,
            progress=print, tasks: list[str] | None = None, timings: dict | None = None) -> dict[int, dict]:
    """Run every training seed at ``data_seed`` for ``tasks`` (default: every task of :data:`CHAINS`);
    ``{seed: headlines}``. ``timings`` (task -> seconds), when given, gains the wall time of each
    task's chains that ran (not of those found up to date)."""
    tasks = list(CHAINS) if tasks is None else list(tasks)
    base = list(base)
    code = tree_hash(REPO_ROOT / "src", REPO_ROOT / "conf")
    shared_dir = workdir / f"data{data_seed}" / "shared"
    results = {}
    for i, seed in enumerate(seeds):
        run_dir = workdir / f"data{data_seed}" / f"seed{seed}"
        overrides = run_overrides(base, seed, data_seed, shared_dir, run_dir)
        for task in tasks:
            shared, per_seed = CHAINS[task]
            start = time.perf_counter()
            ran = False
            if i == 0:  # the data-seed stages: the first seed's run writes them
                ran = run_chain(shared, shared_dir / task, overrides, code, rerun, progress, f"data {data_seed} {task}")
            ran = run_chain(per_seed, run_dir / task, overrides, code, rerun, progress,
                            f"data {data_seed} seed {seed} {task}") or ran
            if timings is not None and ran:
                timings[task] = round(timings.get(task, 0.0) + time.perf_counter() - start, 1)
        cfg = compose_params(overrides)
        results[seed] = headlines({task: cfg.tasks[task].paths for task in tasks})
        progress(f"data {data_seed} seed {seed}: {json.dumps(results[seed])}")
    return results


def summary(results: dict[int, dict], seeds: list[int]) -> dict:
    """Per task and key: the per-seed values in ``seeds`` order, their mean and std."""
    return {task: {key: summarise([results[s][task][key] for s in seeds]) for key in results[seeds[0]][task]}
            for task in results[seeds[0]]}


def carry_over(out: dict, previous_file: Path, tasks: list[str]) -> None:
    """Keep, from ``previous_file`` (the seeds.json being replaced), the sections of the tasks this
    run did not run, with the command, code hash and seeds that made them (``carried_over``), so a
    ``--tasks`` run replaces only its own tasks' numbers."""
    if not previous_file.exists():
        return
    previous = io.read_json(previous_file)
    out["carried_over"] = {}
    for task in CHAINS:
        if task in tasks or task not in previous:
            continue
        origin = (previous.get("carried_over") or {}).get(task) or {
            "command": previous.get("command"), "code_hash": previous.get("code_hash"),
            "seeds": previous.get("seeds"), "data_seeds": (previous.get("data_seeds") or {}).get("seeds")}
        out[task] = previous[task]
        out["data_seeds"][task] = (previous.get("data_seeds") or {}).get(task)
        seconds = (previous.get("seconds_per_task") or {}).get(task)
        if seconds is not None:
            out.setdefault("_carried_seconds", {})[task] = seconds
        out["carried_over"][task] = origin


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11, 1, 2], help="training seeds")
    parser.add_argument("--data-seed", type=int, default=42, help="the data seed of the headline numbers")
    parser.add_argument("--data-seeds", type=int, nargs="*", default=[7, 11],
                        help="other data seeds, each at the first training seed (the data spread)")
    parser.add_argument("--base", nargs="+", default=[], help="Hydra overrides for every run (e.g. experiment=tiny)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/deeprubin_seeds"))
    parser.add_argument("--rerun", action="store_true", help="rerun runs that already finished")
    parser.add_argument("--tasks", nargs="+", choices=list(CHAINS), default=list(CHAINS),
                        help="the tasks to run (e.g. --tasks transients to compare transients configs)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports/benchmarks/seeds.json")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    started = time.perf_counter()
    say = lambda line: print(line, flush=True)  # noqa: E731
    workdir = args.workdir.resolve()
    timings: dict = {}
    results = run_all(args.seeds, args.data_seed, workdir, args.base, args.rerun, say, args.tasks, timings)
    out = {"seeds": args.seeds, "data_seed": args.data_seed, **summary(results, args.seeds)}
    data_runs = {args.data_seed: results[args.seeds[0]]}
    for d in args.data_seeds:
        if d != args.data_seed:
            data_runs[d] = run_all(args.seeds[:1], d, workdir, args.base, args.rerun, say, args.tasks,
                                   timings)[args.seeds[0]]
    data_seeds = list(data_runs)
    out["data_seeds"] = {"seeds": data_seeds, "training_seed": args.seeds[0], **summary(data_runs, data_seeds)}
    out["base"] = args.base
    carry_over(out, args.out, args.tasks)
    cfg = compose_params(args.base)
    out["models"] = {task: str(cfg.tasks[task].model.get("name", cfg.tasks[task].model.get("_target_")))
                     for task in args.tasks}
    out["ensemble_members"] = int(cfg.tasks.transients.trainer.get("ensemble_members", 1))
    out["command"] = command("seeds", argv)
    out["code_hash"] = tree_hash(REPO_ROOT / "src", REPO_ROOT / "conf")
    out["machine"] = machine()
    out["seconds"] = round(time.perf_counter() - started, 1)
    # each task's wall time; a task whose runs were all found up to date (and a carried-over task)
    # keeps the time the previous file recorded for it
    kept = {}
    if args.out.exists():
        kept = {task: s for task, s in (io.read_json(args.out).get("seconds_per_task") or {}).items()
                if task not in timings}
    out["seconds_per_task"] = {**kept, **(out.pop("_carried_seconds", None) or {}), **timings}
    io.write_json(out, args.out)
    for task in args.tasks:
        for key, s in out[task].items():
            cell = "-" if s["mean"] is None else f"{s['mean']:.3f} +- {s['std'] or 0:.3f}"
            say(f"{task:11s} {key:42s} {cell}")
    say(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
