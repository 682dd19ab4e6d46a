"""Scan of ``hyper_max_points`` (subset-of-data GP hyperparameters): speed and held-out quality.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.gp_hyper_subset                       # ~10 min on 2 cores
    .venv/bin/python -m benchmarks.gp_hyper_subset --sizes 100 200 --limits null 56 64 --seed 1

For every size N (points per object), every limit M in ``--limits`` (``null`` = all
points) and every convergence tolerance in ``--tols`` (default: the configured one), on
the objects of ``benchmarks/gp_throughput.py`` (same simulation, subsampling and 20%
hidden points, seeded by ``--seed``):

* light curves per second of :func:`deeprubin.tasks.transients.preprocess.gp.fit_gp_grid` with
  ``hyper_max_points=M`` on ``--n-time`` objects of N points (median of ``--repeats``, the
  limits interleaved so that load from other processes spreads over all of them), and the
  CPU seconds of the process (all threads; less sensitive to that load);
* the mean held-out NLPD and RMSE (normalised flux) of the fit on ``--n-quality`` objects,
  and its relative NLPD excess over the per-object scikit-learn and george fits of
  ``gp_throughput.py`` on the same objects (computed once per size).

Writes ``<out>/gp_hyper_subset.json`` (default ``reports/benchmarks``) and prints a table.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks import gp_throughput as bench  # noqa: E402  (the sibling benchmark's data and scoring)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200], help="points per object")
    parser.add_argument("--limits", type=bench.hyper_max_points_arg, nargs="+",
                        default=[None, 24, 32, 40, 48, 56, 64], help="hyper_max_points values ('null' = off)")
    parser.add_argument("--tols", type=float, nargs="+", default=None,
                        help="convergence tolerances to compare (each with every limit, interleaved); "
                             "default: the one in conf/preprocess/gp.yaml")
    parser.add_argument("--n-time", type=int, default=512, help="objects per size for the timing")
    parser.add_argument("--n-quality", type=int, default=120, help="objects per size for the quality")
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args(argv)
    tols = args.tols or [bench.default_tol()]
    # (key, limit, tol) per setting; the key is the limit alone when one tolerance is scanned.
    settings = [(str(m) if len(tols) == 1 else f"{m}, tol={t:g}", m, t) for m in args.limits for t in tols]

    n_needed = max(args.n_time, args.n_quality)
    lightcurves = bench.simulate_objects(2 * n_needed + 100, args.seed)
    results = bench.results_header(args)
    for n in args.sizes:
        objects = bench.subsample(lightcurves, n, args.seed + n)[:n_needed]
        fit_objs, hidden = bench.hide(objects, 0.2, args.seed + 1000 + n)
        n_quality = min(args.n_quality, len(objects))
        baselines = {}
        with bench.single_threaded_blas(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, fn in (("sklearn", bench.sklearn_fit_predict), ("george", bench.george_fit_predict)):
                try:
                    baselines[name] = bench.summarise(bench.loop_quality(fn, fit_objs[:n_quality], hidden[:n_quality]))
                except ImportError as exc:  # george is optional
                    print(f"  {name}: skipped ({exc})", flush=True)
        rows = {key: {"hyper_max_points": m, "tol": t, "lc_per_s_runs": [], "cpu_s_runs": []}
                for key, m, t in settings}
        for _ in range(args.repeats):
            for key, m, t in settings:  # interleaved
                bench.OURS.update(hyper_max_points=m, tol=t)
                cpu = time.process_time()
                seconds, grid = bench.ours_fit(objects[:args.n_time], None)
                rows[key]["lc_per_s_runs"].append(args.n_time / seconds)
                rows[key]["cpu_s_runs"].append(time.process_time() - cpu)  # includes an 8-object warm-up
                rows[key]["n_points_hyper_median"] = float(grid.diagnostics["n_points_hyper"].median())
                rows[key]["n_iter_mean"] = float(grid.diagnostics["n_iter"].mean())
        for key, m, t in settings:
            bench.OURS.update(hyper_max_points=m, tol=t)
            quality = bench.summarise(bench.ours_quality(fit_objs[:n_quality], hidden[:n_quality], None))
            row = rows[key]
            row.update(lc_per_s=float(np.median(row["lc_per_s_runs"])),
                       lc_per_cpu_s=float(args.n_time / np.median(row["cpu_s_runs"])), quality=quality,
                       nlpd_excess={b: (quality["nlpd_mean"] - q["nlpd_mean"]) / abs(q["nlpd_mean"])
                                    for b, q in baselines.items()})
            excess = " ".join(f"{b} {e:+.2%}" for b, e in row["nlpd_excess"].items())
            print(f"N={n:4d} M={key:14s} {row['lc_per_s']:8.1f} lc/s {row['lc_per_cpu_s']:8.1f} lc/cpu-s  "
                  f"NLPD {quality['nlpd_mean']:.4f} ({excess})  RMSE {quality['rmse']:.4f}", flush=True)
        results["sizes"][str(n)] = {"baselines": baselines, "limits": rows}
    bench.write_results(results, args.out / "gp_hyper_subset.json")
    return results


if __name__ == "__main__":
    main()
