"""Cost floor of an exact GP hyperparameter fit on this machine: the LAPACK/BLAS calls alone.

Usage (from the repository root, after `make setup`)::

    .venv/bin/python -m benchmarks.gp_cost_floor                 # sizes 20 50 100 200
    .venv/bin/python -m benchmarks.gp_cost_floor --sizes 100 --batch 128

One evaluation of the batched Newton fit (:func:`deeprubin.tasks.transients.preprocess.gp_newton.evaluate`)
with derivatives needs, per object of n points, a Cholesky of the (n, n) covariance,
K^-1 from it (LAPACK ``potri``) and one (n, n) x (n, n) matrix product per fitted length
scale (K^-1 dK/dl for the Hessian); a loss-only evaluation needs the Cholesky. This script
times those calls alone, batched as the fit runs them (one thread, float64, SPD matrices of
the fit's form), and prints microseconds per object. Everything else the fit does (kernel
and derivative arrays, Python) comes on top, so ``floor_us_per_object`` is a lower bound
on the cost per object of ``evaluations`` full and ``loss_only`` loss-only evaluations.
The fit's own ``evaluate`` is timed too, on two-band data of the same size, so the gap
between the two is the cost of everything but those calls.

If ``reports/benchmarks/gp_throughput.json`` exists, each size also gets the time per
object and core that issue 4's targets allow against that run's measured baselines
(20x scikit-learn, 10x george on all cores), and the time the batched fit took in that run.

Writes ``reports/benchmarks/gp_cost_floor.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

from deeprubin.core import io
from deeprubin.tasks.transients.preprocess.gp import MAX_BATCH_ELEMENTS


def matrices(batch: int, n: int, seed: int) -> torch.Tensor:
    """(batch, n, n) float64 covariances of the fit's form: s * Matern-3/2(time) + noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(batch, n, generator=g, dtype=torch.float64) * 100.0, dim=1).values
    r = (t[:, :, None] - t[:, None, :]).abs() * (3.0 ** 0.5 / 20.0)
    noise = 0.01 + 0.05 * torch.rand(batch, n, generator=g, dtype=torch.float64)
    return (1.0 + r) * torch.exp(-r) + torch.diag_embed(noise)


def best_time(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def two_band_batch(n: int, batch: int, seed: int):
    """A batch of ``batch`` two-band objects of ``n`` points as the Newton fit sees them:
    (``gp_newton.Geometry``, ``theta`` (batch, 2), fixed log wavelength length scale (batch,)).

    Two bands (g and r of ZTF, wavelength length scale 6000 A), times over 100 days,
    the time length scale at 20 days, unit amplitude, noise variances 0.01-0.06:
    internal units as in ``deeprubin.tasks.transients.preprocess.gp_model``.
    """
    from deeprubin.tasks.transients.preprocess import gp_model, gp_newton

    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(batch, n, generator=g, dtype=torch.float64) * 100.0, dim=1).values
    wavelength = torch.where(torch.rand(batch, n, generator=g) < 0.5, 4746.48, 6366.38).to(torch.float64)
    x = torch.stack([t / gp_model.TIME_UNIT_DAYS, wavelength / gp_model.WAVELENGTH_UNIT_ANGSTROM], -1)
    y = 0.3 * torch.randn(batch, n, generator=g, dtype=torch.float64)
    noise = 0.01 + 0.05 * torch.rand(batch, n, generator=g, dtype=torch.float64)
    fixed_w = torch.full((batch,), math.log(6000.0 / gp_model.WAVELENGTH_UNIT_ANGSTROM), dtype=torch.float64)
    geom = gp_newton.Geometry.from_padded(x, y, noise, torch.full((batch,), n), fixed_w)
    theta = torch.stack([torch.zeros(batch, dtype=torch.float64),
                         torch.full((batch,), math.log(20.0 / gp_model.TIME_UNIT_DAYS), dtype=torch.float64)], -1)
    return geom, theta, fixed_w


def evaluation_times(n: int, batch: int, repeats: int, seed: int) -> dict:
    """Microseconds per object of the fit's own :func:`gp_newton.evaluate` (full and loss-only) at n points,
    on :func:`two_band_batch`."""
    from deeprubin.tasks.transients.preprocess import gp_newton

    geom, theta, fixed_w = two_band_batch(n, batch, seed)
    per_object = 1e6 / batch
    with gp_newton.retain_freed_memory():
        full = best_time(lambda: gp_newton.evaluate(geom, theta, fixed_w), repeats) * per_object
        loss = best_time(lambda: gp_newton.evaluate(geom, theta, fixed_w, derivatives=False, inverse=False),
                         repeats) * per_object
    return {"evaluate_full_us": full, "evaluate_loss_only_us": loss}


def floor(n: int, batch: int, repeats: int, seed: int) -> dict:
    """Microseconds per object of the Cholesky, the inverse and the matrix product at n points."""
    k = matrices(batch, n, seed)
    chol = torch.linalg.cholesky(k)
    kinv = torch.cholesky_inverse(chol)
    m = torch.rand(batch, n, n, dtype=torch.float64)
    per_object = 1e6 / batch
    cholesky = best_time(lambda: torch.linalg.cholesky_ex(k), repeats) * per_object
    inverse = best_time(lambda: torch.cholesky_inverse(chol), repeats) * per_object
    product = best_time(lambda: kinv @ m, repeats) * per_object
    return {"cholesky_us": cholesky, "inverse_us": inverse, "matmul_us": product,
            "full_evaluation_us": cholesky + inverse + product, "loss_only_evaluation_us": cholesky}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--batch", type=int, default=256,
                        help="objects per batched call, capped as fit_gp_grid caps its batches (MAX_BATCH_ELEMENTS)")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (the best is kept)")
    parser.add_argument("--evaluations", type=float, default=3.7,
                        help="full evaluations per object of the Newton fit (median measured on the benchmark)")
    parser.add_argument("--loss-only", type=float, default=4.0, help="loss-only evaluations per object")
    parser.add_argument("--throughput", type=Path, default=Path("reports/benchmarks/gp_throughput.json"))
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # as each of fit_gp_grid's batch workers
    throughput = json.loads(args.throughput.read_text()) if args.throughput.exists() else None
    sizes = {}
    for n in args.sizes:
        batch = max(1, min(args.batch, MAX_BATCH_ELEMENTS // (n * n)))  # as fit_gp_grid caps its batches
        row = {"batch": batch, **floor(n, batch, args.repeats, seed=n)}
        row["floor_us_per_object"] = args.evaluations * row["full_evaluation_us"] + args.loss_only * row["cholesky_us"]
        row.update(evaluation_times(n, batch, args.repeats, seed=n))
        row["fit_evaluations_us_per_object"] = (args.evaluations * row["evaluate_full_us"]
                                                + args.loss_only * row["evaluate_loss_only_us"])
        if throughput is not None and str(n) in throughput["methods"]["deeprubin"]["sizes"]:
            cores = throughput["machine"]["cpu_count"]
            ours = throughput["methods"]["deeprubin"]["sizes"][str(n)]["lc_per_s"]
            row["measured_us_per_object_core"] = 1e6 * cores / ours
            for base, factor in (("sklearn", throughput["targets"]["min_ratio_vs_sklearn"]),
                                 ("george", throughput["targets"]["min_ratio_vs_george"])):
                rate = throughput["methods"].get(base, {}).get("sizes", {}).get(str(n), {}).get(
                    "lc_per_s_all_cores_measured")
                if rate:
                    row[f"target_us_per_object_core_vs_{base}"] = 1e6 * cores / (factor * rate)
        sizes[str(n)] = row
        line = (f"n={n:4d}: Cholesky {row['cholesky_us']:7.1f} us, K^-1 {row['inverse_us']:7.1f} us, "
                f"product {row['matmul_us']:7.1f} us per object; floor of a fit {row['floor_us_per_object']:8.1f} us; "
                f"evaluate() full {row['evaluate_full_us']:7.1f} us, loss-only {row['evaluate_loss_only_us']:7.1f} us, "
                f"a fit's evaluations {row['fit_evaluations_us_per_object']:8.1f} us")
        if "measured_us_per_object_core" in row:
            line += f"; measured {row['measured_us_per_object_core']:8.1f} us"
            for base in ("sklearn", "george"):
                if f"target_us_per_object_core_vs_{base}" in row:
                    line += f"; target vs {base} {row[f'target_us_per_object_core_vs_{base}']:8.1f} us"
        print(line, flush=True)
    result = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "load_average": os.getloadavg()},
              "config": {"batch": args.batch, "repeats": args.repeats, "evaluations": args.evaluations,
                         "loss_only": args.loss_only, "threads": 1,
                         "throughput_json": str(args.throughput) if throughput is not None else None},
              "sizes": sizes}
    io.write_json(result, args.out / "gp_cost_floor.json")
    print(f"wrote {args.out / 'gp_cost_floor.json'}")
    return result


if __name__ == "__main__":
    main()
