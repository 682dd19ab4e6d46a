"""Does ``torch.compile`` speed up the batched GP fit on CPU? Eager against compiled, interleaved.

Usage (from the repository root, after `make setup`; ~3 min on 2 cores, a C++ compiler needed)::

    .venv/bin/python -m benchmarks.gp_compile
    .venv/bin/python -m benchmarks.gp_compile --sizes 50 100 --repeats 5

Why: a full evaluation of the Newton fit (:func:`deeprubin.tasks.transients.preprocess.gp_newton.evaluate`)
makes ~25 elementwise passes over (b, n, n) stacks besides its LAPACK/BLAS calls, and
``benchmarks/gp_cost_floor.py`` puts those passes at 0.4-1.2x the calls. TorchInductor fuses
elementwise passes into generated C++ loops, so this measures, with one torch thread:

* ``evaluate`` alone on ``--batch`` two-band objects of n points (the inputs of
  ``benchmarks/gp_cost_floor.py``), with derivatives and loss-only, eager and
  ``torch.compile(evaluate, dynamic=True)``;
* the whole :func:`deeprubin.tasks.transients.preprocess.gp.fit_gp_grid` on the objects of
  ``benchmarks/gp_throughput.py`` (``--n-objects`` per size), with ``evaluate`` and
  ``posterior`` of ``gp_newton`` replaced by their compiled versions, the two interleaved
  (median of ``--repeats``), after a warm-up that pays the compilation (timed too);
* the largest difference of the fits' ``final_loss`` and grid mean between the two.

Writes ``<out>/gp_compile.json`` (default ``reports/benchmarks``) and prints a table.
"""
from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks import gp_throughput as bench  # noqa: E402  (the sibling benchmark's objects and fit settings)
from benchmarks.gp_cost_floor import two_band_batch  # noqa: E402  (the same evaluate inputs as the cost floor's)

from deeprubin.tasks.transients.preprocess import gp_newton

EAGER = {"evaluate": gp_newton.evaluate, "posterior": gp_newton.posterior}


def compiled_functions() -> dict:
    """``torch.compile`` (dynamic shapes: batch and padding change with every compaction) of
    ``gp_newton.evaluate`` and ``gp_newton.posterior``."""
    return {name: torch.compile(fn, dynamic=True) for name, fn in EAGER.items()}


def use(functions: dict) -> None:
    """Make ``gp_newton`` (and so the fit) call ``functions``; module globals, looked up per call."""
    for name, fn in functions.items():
        setattr(gp_newton, name, fn)


def time_evaluate(fn, geom, theta, fixed_w, repeats: int, **kwargs) -> float:
    """Microseconds per object of ``fn(geom, theta, fixed_w, **kwargs)`` (after 3 untimed calls)."""
    for _ in range(3):
        fn(geom, theta, fixed_w, **kwargs)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(geom, theta, fixed_w, **kwargs)
    return (time.perf_counter() - start) / repeats / geom.y.shape[0] * 1e6


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200], help="points per object")
    parser.add_argument("--batch", type=int, default=128, help="objects per batch of the evaluate timing")
    parser.add_argument("--n-objects", type=int, default=512, help="objects per size of the fit timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch._logging.set_logs(dynamo=logging.ERROR)  # graph-break notices (the Cholesky check) are expected
    torch.set_num_threads(1)
    compiled = compiled_functions()
    lightcurves = bench.simulate_objects(args.n_objects * 2 + 100, args.seed)
    results = bench.results_header(args)
    for n in args.sizes:
        row = {}
        geom, theta, fixed_w = two_band_batch(n, args.batch, args.seed)
        for label, kwargs in (("full", {}), ("loss_only", {"derivatives": False, "inverse": False})):
            eager = time_evaluate(EAGER["evaluate"], geom, theta, fixed_w, 10 * args.repeats, **kwargs)
            fused = time_evaluate(compiled["evaluate"], geom, theta, fixed_w, 10 * args.repeats, **kwargs)
            row[f"evaluate_{label}_us"] = {"eager": eager, "compiled": fused, "speed_up": eager / fused}
        objects = bench.subsample(lightcurves, n, args.seed + n)[:args.n_objects]
        use(compiled)
        start = time.perf_counter()
        bench.ours_fit(objects[:64], 1)
        row["compile_warm_up_s"] = time.perf_counter() - start
        rates, grids = {"eager": [], "compiled": []}, {}
        for _ in range(args.repeats):  # interleaved
            for label, functions in (("eager", EAGER), ("compiled", compiled)):
                use(functions)
                seconds, grids[label] = bench.ours_fit(objects, 1)
                rates[label].append(len(objects) / seconds)
        use(EAGER)
        fit = {label: float(np.median(r)) for label, r in rates.items()}
        row["fit_lc_per_s"] = {**fit, "runs": rates, "speed_up": fit["compiled"] / fit["eager"]}
        d_eager, d_comp = grids["eager"].diagnostics, grids["compiled"].diagnostics
        row["max_abs_difference"] = {
            "final_loss": float(np.nanmax(np.abs(d_eager["final_loss"].to_numpy() - d_comp["final_loss"].to_numpy()))),
            "grid_mean": float(np.nanmax(np.abs(grids["eager"].mean - grids["compiled"].mean)))}
        results["sizes"][str(n)] = row
        print(f"N={n:4d} evaluate full {row['evaluate_full_us']['eager']:7.1f} -> "
              f"{row['evaluate_full_us']['compiled']:7.1f} us/object ({row['evaluate_full_us']['speed_up']:.2f}x), "
              f"loss-only {row['evaluate_loss_only_us']['speed_up']:.2f}x; fit {fit['eager']:7.1f} -> "
              f"{fit['compiled']:7.1f} lc/s ({row['fit_lc_per_s']['speed_up']:.2f}x, warm-up "
              f"{row['compile_warm_up_s']:.0f} s); max |d final_loss| {row['max_abs_difference']['final_loss']:.1e}",
              flush=True)
    bench.write_results(results, args.out / "gp_compile.json")
    return results


if __name__ == "__main__":
    main()
