"""GP interpolation throughput and quality: this project's batched GP vs per-object fits.

Usage (from the repository root, after `make setup`)::

    .venv/bin/python -m benchmarks.gp_throughput            # or: make bench-gp
    .venv/bin/python -m benchmarks.gp_throughput --sizes 20 50 --n-ours 512 --n-sklearn 30
    .venv/bin/python -m benchmarks.gp_throughput --hyper-max-points 64   # subset-of-data hyperparameters

What it does, on the same simulated objects for every method:

* Simulates a ZTF-like survey (``deeprubin.sources.simulate.simulate_survey``; daily
  cadence per band and year-long visibility so every object has enough points), and
  subsamples each object to exactly N points (both bands) within
  ``[-50, +100]`` days of its brightest significant observation, for every N in
  ``--sizes``. Objects without N points there are skipped.
* **Throughput**: light curves per second for fitting the GP hyperparameters of
  every object on its N points and predicting mean and std on the pipeline's output
  grid (2 bands x 50 times over [-30, +70] days):

  - ``deeprubin``: :func:`deeprubin.tasks.transients.preprocess.gp.fit_gp_grid` (batched Newton; with
    torch's default thread count, that many batches at once in single-threaded worker
    threads; ``deeprubin_1thread`` with one thread, i.e. one batch at a time), with
    ``--hyper-max-points`` (default: conf/preprocess/gp.yaml's ``hyper_max_points``):
    hyperparameters fitted on a stratified subset of that many points of larger
    objects, the posterior conditioned on all their points;
  - ``sklearn``: a loop of ``GaussianProcessRegressor`` with the same kernel form,
    ``ConstantKernel * Matern(nu=1.5, length_scale=[time, wavelength])``, the
    wavelength length scale fixed at 6000 A as ours, ``alpha`` = per-point noise
    variance, zero mean, default L-BFGS-B optimiser from the same initial values;
  - ``george``: a loop of the per-object fit Avocado (Boone 2019) does:
    ``(0.5 scale)**2 * Matern32Kernel([20**2, 6000**2], ndim=2)``, wavelength metric
    frozen, scipy ``minimize`` with george's gradient and Avocado's bounds. Skipped,
    with the reason recorded, if george cannot be imported.

  The per-object baselines run with one BLAS thread per process (more threads only
  slow 50-200 point problems down), as a plain loop in one process and split over
  as many spawned worker processes as there are CPUs (``lc_per_s_all_cores_measured``,
  what the loop really gets from every core; workers warmed up before timing).
  ``lc_per_s_all_cores`` is the ideal all-cores figure, single-process rate x CPU
  count (perfect scaling). Ratios against all three are reported; ours is the
  median of ``--repeats`` runs, the baselines the best of ``--baseline-repeats``.
* **Quality**: 20% of each object's N points (``--hidden-fraction``) are hidden, every
  method fits the other 80%, and the mean negative log predictive density (NLPD,
  Gaussian with variance = latent posterior variance + the point's noise variance)
  and the RMSE of the hidden points are reported in normalised flux (flux /
  flux_scale, flux_scale = max(max |flux|, 3 median flux_err) of the fitted points,
  as in preprocessing), for each method on the objects it ran on and for ours on
  the same objects as each baseline.

Writes ``reports/benchmarks/gp_throughput.json`` and ``gp_throughput.png`` and prints
the machine (CPU model, cores, load, torch version and threads).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.common import machine as common_machine
from deeprubin.core import io
from deeprubin.core.plot_style import figure_style, new_figure
from deeprubin.tasks.transients.preprocess.gp import fit_gp_grid, gp_process_pool
from deeprubin.tasks.transients.preprocess.gp_model import MIN_NOISE
from deeprubin.sources.simulate import simulate_survey

BANDS = {"g": 4746.48, "r": 6366.38}  # ZTF pivot wavelengths, as in conf/task/transients.yaml
CLASSES = ["SNIa", "SNII", "SNIbc", "QSO", "Cepheid", "RRLyrae"]
WAVELENGTH_LS = 6000.0
INIT_TIME_LS = 20.0
GRID = np.linspace(-30.0, 70.0, 50)  # the pipeline's output grid
WINDOW = (-50.0, 100.0)  # days around the brightest significant observation
#: fit_gp_grid settings: a window wide enough to keep every point, no binning.
OURS = dict(band_wavelengths=BANDS, window_before_days=30.0, window_after_days=70.0, n_grid=len(GRID),
            fit_margin_days=1000.0, max_points=1024, n_iter=60, learning_rate=0.1, batch_size=256,
            wavelength_length_scale=WAVELENGTH_LS, progress=False)
TARGETS = {"min_lc_per_s_at_50": 500.0, "min_ratio_vs_sklearn": 20.0, "min_ratio_vs_george": 10.0,
           "max_nlpd_excess": 0.05}


# --------------------------------------------------------------------------- machine

def machine() -> dict:
    """:func:`benchmarks.common.machine` plus torch's thread count and the baselines' versions."""
    info = {**common_machine(), "torch_threads": torch.get_num_threads()}
    try:
        import sklearn

        info["sklearn"] = sklearn.__version__
    except ImportError:
        pass
    try:
        import george

        info["george"] = george.__version__
    except ImportError:
        pass
    return info


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def results_header(args: argparse.Namespace) -> dict:
    """The start of a sibling benchmark's results: machine, load average now, its arguments
    (paths as text) and an empty ``sizes``; :func:`write_results` finishes it."""
    return {"machine": machine(), "load_average_start": load(),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "sizes": {}}


def write_results(results: dict, path: Path) -> None:
    """Add the load average at the end to ``results`` and write them to ``path`` (JSON)."""
    results["load_average_end"] = load()
    io.write_json(results, path)
    print(f"wrote {path}")


# --------------------------------------------------------------------------- data

def simulate_objects(n_objects: int, seed: int) -> pd.DataFrame:
    """Light curves of a simulated survey with enough points per object for every size."""
    survey = {"cadence_days": 1.0, "season_length_days": 365.0}
    lightcurves, _ = simulate_survey({"n_objects": n_objects, "overlap_fraction": 0.0, "survey": survey},
                                     seed=seed, classes=CLASSES, bands=list(BANDS))
    return lightcurves


def subsample(lightcurves: pd.DataFrame, n_points: int, seed: int) -> list[pd.DataFrame]:
    """Per object, exactly ``n_points`` observations (>= 1 per band) within WINDOW of its peak."""
    rng = np.random.default_rng(seed)
    out = []
    for _, obj in lightcurves.groupby("object_id", sort=True):
        flux, err, t = obj["flux"].to_numpy(), obj["flux_err"].to_numpy(), obj["time"].to_numpy()
        significant = np.flatnonzero(flux / err >= 3.0)
        candidates = significant if len(significant) else np.arange(len(obj))
        t_peak = t[candidates[np.argmax(flux[candidates])]]
        window = obj[(t >= t_peak + WINDOW[0]) & (t <= t_peak + WINDOW[1])]
        if len(window) < n_points or window["band"].nunique() < len(BANDS):
            continue
        for _ in range(20):
            pick = np.sort(rng.choice(len(window), n_points, replace=False))
            if window["band"].iloc[pick].nunique() == len(BANDS):
                out.append(window.iloc[pick].reset_index(drop=True))
                break
    return out


def hide(objects: list[pd.DataFrame], fraction: float, seed: int):
    """(fit part, hidden part) of every object; the hidden points are a random ``fraction``."""
    rng = np.random.default_rng(seed)
    fit, hidden = [], []
    for obj in objects:
        n_hidden = max(1, int(round(fraction * len(obj))))
        mask = np.zeros(len(obj), bool)
        mask[rng.choice(len(obj), n_hidden, replace=False)] = True
        fit.append(obj[~mask].reset_index(drop=True))
        hidden.append(obj[mask].reset_index(drop=True))
    return fit, hidden


def normalised(obj: pd.DataFrame, t_ref: float, scale: float):
    """(x (n, 2) days rel. t_ref and Angstrom, y, err) in normalised flux."""
    x = np.c_[obj["time"].to_numpy() - t_ref, obj["band"].map(BANDS).to_numpy(dtype=float)]
    return x, obj["flux"].to_numpy() / scale, obj["flux_err"].to_numpy() / scale


def reference(obj: pd.DataFrame) -> tuple[float, float]:
    """(t_ref, flux_scale) exactly as fit_gp_grid computes them."""
    flux, err, t = obj["flux"].to_numpy(), obj["flux_err"].to_numpy(), obj["time"].to_numpy()
    significant = np.flatnonzero(flux / err >= 3.0)
    candidates = significant if len(significant) else np.arange(len(obj))
    t_ref = float(t[candidates[np.argmax(flux[candidates])]])
    return t_ref, float(max(np.abs(flux).max(), 3.0 * np.median(err)))


def grid_inputs() -> np.ndarray:
    return np.c_[np.tile(GRID, len(BANDS)), np.repeat(list(BANDS.values()), len(GRID))]


# --------------------------------------------------------------------------- scoring

def matern32(x1, x2, ls_t, ls_w):
    r = np.sqrt(((x1[:, None, 0] - x2[None, :, 0]) / ls_t) ** 2 + ((x1[:, None, 1] - x2[None, :, 1]) / ls_w) ** 2)
    return (1.0 + math.sqrt(3.0) * r) * np.exp(-math.sqrt(3.0) * r)


def posterior(x, y, noise, x_new, amplitude, ls_t, ls_w):
    """Exact latent posterior mean and variance at x_new (numpy, float64)."""
    s = amplitude ** 2
    k = s * matern32(x, x, ls_t, ls_w) + np.diag(noise)
    chol = np.linalg.cholesky(k)
    k_cross = s * matern32(x_new, x, ls_t, ls_w)
    mean = k_cross @ np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    v = np.linalg.solve(chol, k_cross.T)
    return mean, np.clip(s - (v * v).sum(0), 0.0, None)


def point_scores(y, err, mean, var):
    """Per hidden point: negative log predictive density and squared error."""
    total = var + np.maximum(err ** 2, MIN_NOISE)
    nlpd = 0.5 * np.log(2.0 * np.pi * total) + 0.5 * (y - mean) ** 2 / total
    return nlpd, (y - mean) ** 2


def summarise(scores: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    nlpd = np.concatenate([s[0] for s in scores])
    sq = np.concatenate([s[1] for s in scores])
    per_object = np.array([s[0].mean() for s in scores])
    return {"n_objects": len(scores), "n_hidden_points": int(nlpd.size), "nlpd_mean": float(nlpd.mean()),
            "nlpd_median": float(np.median(nlpd)), "nlpd_per_object_median": float(np.median(per_object)),
            "rmse": float(np.sqrt(sq.mean()))}


# --------------------------------------------------------------------------- methods

def pipeline_gp_settings():
    """The ``preprocess`` node of the composed pipeline config (conf/preprocess/gp.yaml)."""
    from deeprubin.core.config import compose_params

    return compose_params([]).preprocess


def default_hyper_max_points() -> int | None:
    """``preprocess.hyper_max_points`` of the pipeline config."""
    return pipeline_gp_settings().get("hyper_max_points")


def default_tol() -> float:
    """``preprocess.tol`` of the pipeline config."""
    return float(pipeline_gp_settings().tol)


OURS["tol"] = default_tol()  # main() may override it (--tol)


def hyper_max_points_arg(value: str) -> int | None:
    """argparse type of ``--hyper-max-points``: an integer, or ``null``/``none`` for all points."""
    return None if value.lower() in ("null", "none") else int(value)


#: Worker processes of ``--parallel processes`` (a warm :func:`gp_process_pool`), else None.
POOL = None


def ours_fit(objects: list[pd.DataFrame], threads: int | None, executor=None):
    """fit_gp_grid on all objects (in ``executor``'s processes if given); returns (seconds, grid)."""
    table = pd.concat([o.assign(object_id=f"o{k:06d}") for k, o in enumerate(objects)], ignore_index=True)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    settings = dict(OURS, executor=executor)
    try:
        fit_gp_grid(table[table["object_id"].isin([f"o{k:06d}" for k in range(8)])], **settings)  # warm-up
        start = time.perf_counter()
        grid = fit_gp_grid(table, **settings)
        return time.perf_counter() - start, grid
    finally:
        torch.set_num_threads(previous)


def ours_quality(fit_objs, hidden_objs, threads) -> list[tuple[np.ndarray, np.ndarray]]:
    _, grid = ours_fit(fit_objs, threads)  # the same fits in threads or processes
    d = grid.diagnostics
    scores = []
    for k, (obj, hid) in enumerate(zip(fit_objs, hidden_objs)):
        t_ref, scale = float(grid.t_ref[k]), float(grid.flux_scale[k])
        x, y, err = normalised(obj, t_ref, scale)
        xh, yh, eh = normalised(hid, t_ref, scale)
        mean, var = posterior(x, y, np.maximum(err ** 2, MIN_NOISE), xh, d["amplitude"].iloc[k],
                              d["length_scale_time_days"].iloc[k], d["length_scale_wavelength_angstrom"].iloc[k])
        scores.append(point_scores(yh, eh, mean, var))
    return scores


def sklearn_fit_predict(obj, x_pred, t_ref=None, scale=None):
    """Fit one object (normalised) and predict (mean, var) at x_pred (days rel. t_ref, A)."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    if t_ref is None:
        t_ref, scale = reference(obj)
    x, y, err = normalised(obj, t_ref, scale)
    kernel = ConstantKernel(max(float(np.mean(y ** 2)), 1e-2), (1e-6, 1e4)) * Matern(
        length_scale=[INIT_TIME_LS, WAVELENGTH_LS], length_scale_bounds=[(0.5, 1000.0), (WAVELENGTH_LS, WAVELENGTH_LS)],
        nu=1.5)
    gpr = GaussianProcessRegressor(kernel, alpha=np.maximum(err ** 2, MIN_NOISE), normalize_y=False)
    gpr.fit(x, y)
    mean, std = gpr.predict(x_pred, return_std=True)
    return mean, std ** 2


def george_fit_predict(obj, x_pred, t_ref=None, scale=None):
    """Avocado's fit_gaussian_process (Boone 2019) on one object (normalised), then predict."""
    import george
    from george import kernels
    from scipy.optimize import minimize

    if t_ref is None:
        t_ref, scale = reference(obj)
    x, y, err = normalised(obj, t_ref, scale)
    signal_to_noise = np.abs(y) / np.sqrt(err ** 2 + (1e-2 * np.max(y)) ** 2)
    guess = np.abs(y[np.argmax(signal_to_noise)])
    kernel = (0.5 * guess) ** 2 * kernels.Matern32Kernel([INIT_TIME_LS ** 2, WAVELENGTH_LS ** 2], ndim=2)
    kernel.freeze_parameter("k2:metric:log_M_1_1")
    gp = george.GP(kernel)
    start = gp.get_parameter_vector()
    gp.compute(x, err)

    def neg_ln_like(p):
        gp.set_parameter_vector(p)
        return -gp.log_likelihood(y)

    def grad_neg_ln_like(p):
        gp.set_parameter_vector(p)
        return -gp.grad_log_likelihood(y)

    bounds = [(start[0] - 10, start[0] + 10), (0, np.log(1000 ** 2))]
    result = minimize(neg_ln_like, start, jac=grad_neg_ln_like, bounds=bounds)
    gp.set_parameter_vector(result.x if result.success else start)
    return gp.predict(y, x_pred, return_var=True)


def fit_all(fn, objects) -> int:
    """Fit and predict on the output grid every object with ``fn``, one after the other."""
    x_grid = grid_inputs()
    for obj in objects:
        fn(obj, x_grid)
    return len(objects)


def loop_timing(fn, objects) -> float:
    fn(objects[0], grid_inputs())  # warm-up (imports)
    start = time.perf_counter()
    fit_all(fn, objects)
    return time.perf_counter() - start


def loop_quality(fn, fit_objs, hidden_objs):
    scores = []
    for obj, hid in zip(fit_objs, hidden_objs):
        t_ref, scale = reference(obj)
        xh, yh, eh = normalised(hid, t_ref, scale)
        mean, var = fn(obj, xh, t_ref, scale)
        scores.append(point_scores(yh, eh, mean, var))
    return scores


BASELINES = {"sklearn": sklearn_fit_predict, "george": george_fit_predict}


def _baseline_worker_init() -> None:
    """Worker process set-up: one BLAS and torch thread (as the loop). Spawned workers import
    this module as ``benchmarks.gp_throughput`` (run with ``python -m``)."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    single_threaded_blas()  # threadpoolctl applies the limit on construction, for the worker's lifetime


def _baseline_warm_up(name: str, obj: pd.DataFrame) -> None:
    """One fit (imports, first-call costs), then a pause so every worker gets one of these."""
    BASELINES[name](obj, grid_inputs())
    time.sleep(1.0)


def _baseline_chunk(name: str, objects: list[pd.DataFrame]) -> int:
    return fit_all(BASELINES[name], objects)


def parallel_loop_rate(name: str, objects: list[pd.DataFrame], processes: int, repeats: int) -> list[float]:
    """Light curves per second of the per-object loop ``name`` split over ``processes`` worker processes.

    What the baseline really gets from every core (Avocado fits objects in parallel
    processes too), rather than assuming perfect scaling: the workers share the
    memory bandwidth and caches. Workers are spawned and warmed up (one fit each)
    before the clock starts; each takes an equal share of ``objects``.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork after torch's thread pools started
    chunks = [objects[i::processes] for i in range(processes)]
    with ctx.Pool(processes, initializer=_baseline_worker_init) as pool:
        pool.starmap(_baseline_warm_up, [(name, objects[0])] * processes, chunksize=1)
        rates = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            done = sum(pool.starmap(_baseline_chunk, [(name, c) for c in chunks], chunksize=1))
            rates.append(done / (time.perf_counter() - start))
    return rates


def single_threaded_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# --------------------------------------------------------------------------- report

def plot(results: dict, sizes: list[int], path: Path) -> None:
    in_processes = results["config"].get("parallel") == "processes"
    styles = {"deeprubin": ("o", "-", "DeepRubin batched GP (one worker process per core)" if in_processes
                            else "DeepRubin batched GP (one worker per torch thread)"),
              "deeprubin_threads": ("o", "--", "DeepRubin batched GP (one worker per torch thread)"),
              "deeprubin_1thread": ("o", ":", "DeepRubin batched GP (1 thread)"),
              "sklearn": ("s", "-", "scikit-learn GPR, per object (1 process)"),
              "george": ("^", "-", "george, Avocado-style, per object (1 process)")}
    with figure_style():
        fig = new_figure((6.4, 4.4))
        ax = fig.add_subplot()
        for method, (marker, line, label) in styles.items():
            rows = results["methods"].get(method, {}).get("sizes", {})
            xs = [n for n in sizes if str(n) in rows]
            if not xs:
                continue
            ys = [rows[str(n)]["lc_per_s"] for n in xs]
            (handle,) = ax.plot(xs, ys, marker=marker, linestyle=line, label=label)
            if method in ("sklearn", "george"):
                cores = results["machine"]["cpu_count"]
                measured = [n for n in xs if "lc_per_s_all_cores_measured" in rows[str(n)]]
                if measured:
                    ax.plot(measured, [rows[str(n)]["lc_per_s_all_cores_measured"] for n in measured], marker=marker,
                            linestyle="-.", color=handle.get_color(), alpha=0.8,
                            label=f"{method}: {cores} processes (measured)")
                ax.plot(xs, [rows[str(n)]["lc_per_s_all_cores"] for n in xs], linestyle="--", color=handle.get_color(),
                        alpha=0.5, label=f"{method}: ideal on {cores} cores (2 x one process)")
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("Points per light curve (two bands)")
        ax.set_ylabel("Throughput (light curves / s)")
        ax.set_title(f"GP fit + prediction, {results['machine']['cpu_count']} CPU cores")
        ax.legend(fontsize=8)
        io.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200], help="points per object")
    parser.add_argument("--n-ours", type=int, default=1024, help="objects per size for this implementation")
    parser.add_argument("--n-sklearn", type=int, default=60, help="objects per size for scikit-learn")
    parser.add_argument("--n-george", type=int, default=120, help="objects per size for george")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats of ours (the median is reported)")
    parser.add_argument("--baseline-repeats", type=int, default=2,
                        help="timing repeats of the per-object baselines (the best is reported)")
    parser.add_argument("--hidden-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--hyper-max-points", type=hyper_max_points_arg, default=default_hyper_max_points(),
                        help="fit_gp_grid's hyper_max_points (subset-of-data hyperparameters; 'null' = all "
                             "points); default: the value in conf/preprocess/gp.yaml")
    parser.add_argument("--tol", type=float, default=OURS["tol"],
                        help="fit_gp_grid's convergence tolerance; default: the value in conf/preprocess/gp.yaml")
    parser.add_argument("--parallel", choices=["threads", "processes"], default="threads",
                        help="how ours uses the cores: worker threads (fit_gp_grid's default) or a warm pool "
                             "of worker processes (fit_gp_grid(executor=gp_process_pool()))")
    args = parser.parse_args(argv)
    OURS["hyper_max_points"] = args.hyper_max_points
    OURS["tol"] = args.tol
    global POOL
    with gp_process_pool() if args.parallel == "processes" else nullcontext() as POOL:
        return run(args)


def run(args: argparse.Namespace) -> dict:
    """The benchmark for parsed ``args`` (see :func:`main`)."""
    info = machine()
    print("machine:", info, flush=True)
    start_load = load()
    print("load average (1, 5, 15 min):", start_load, flush=True)
    t0 = time.perf_counter()
    n_needed = max(args.n_ours, args.n_sklearn, args.n_george)
    lightcurves = simulate_objects(2 * n_needed + 100, args.seed)
    try:
        import george  # noqa: F401

        george_status = {"available": True}
    except ImportError as exc:
        george_status = {"available": False,
                         "reason": f"george could not be imported ({exc}); `pip install george` (a compiled "
                                   "wheel is on PyPI for CPython 3.11 / manylinux) to include the Avocado baseline"}
        print("george: not available:", george_status["reason"], flush=True)

    # "deeprubin": the --parallel mode; with processes, the thread workers too ("deeprubin_threads"),
    # their repeats interleaved with the processes' so that load drifts hit both alike.
    variants = [("deeprubin", None, POOL)] + ([("deeprubin_threads", None, None)] if POOL is not None else [])
    settings = {name: (threads, executor) for name, threads, executor in variants} | {"deeprubin_1thread": (1, None)}
    methods = {**{name: {"sizes": {}} for name in settings},
               "sklearn": {"sizes": {}}, "george": {"sizes": {}, **george_status}}
    baselines = {"sklearn": (sklearn_fit_predict, args.n_sklearn)}
    if george_status["available"]:
        baselines["george"] = (george_fit_predict, args.n_george)
    for n in args.sizes:
        objects = subsample(lightcurves, n, args.seed + n)[:n_needed]
        if len(objects) < n_needed:
            print(f"  N={n}: only {len(objects)} objects have {n} points in the window", flush=True)
        fit_objs, hidden_objs = hide(objects, args.hidden_fraction, args.seed + 1000 + n)
        n_ours = min(args.n_ours, len(objects))
        # --- ours
        runs = {name: [] for name, _, _ in variants}
        grids = {}
        for _ in range(args.repeats):
            for name, threads, executor in variants:
                seconds, grids[name] = ours_fit(objects[:n_ours], threads, executor)
                runs[name].append(n_ours / seconds)
        seconds, grids["deeprubin_1thread"] = ours_fit(objects[:n_ours], 1)
        runs["deeprubin_1thread"] = [n_ours / seconds]
        for name, grid in grids.items():
            threads, executor = settings[name]
            row = {"n_objects": n_ours, "lc_per_s": float(np.median(runs[name])), "lc_per_s_runs": runs[name],
                   "torch_threads": threads or torch.get_num_threads(),
                   "parallel": "processes" if executor is not None else ("threads" if threads is None else "none"),
                   "n_iter_median": float(grid.diagnostics["n_iter"].median()),
                   "n_iter_max": int(grid.diagnostics["n_iter"].max()),
                   "fit_ok_fraction": float(grid.diagnostics["fit_ok"].mean())}
            if name == "deeprubin":
                scores = ours_quality(fit_objs[:n_ours], hidden_objs[:n_ours], None)
                row["quality"] = summarise(scores)
                for base, (_, n_base) in baselines.items():
                    row[f"quality_on_{base}_objects"] = summarise(scores[:min(n_base, len(objects))])
            methods[name]["sizes"][str(n)] = row
            print(f"  N={n:4d} {name:18s}: {row['lc_per_s']:9.1f} lc/s "
                  f"(median Newton iterations {row['n_iter_median']:.0f}, max {row['n_iter_max']})", flush=True)
        # --- per-object baselines
        for base, (fn, n_base) in baselines.items():
            subset = objects[:min(n_base, len(objects))]
            with single_threaded_blas(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs = [len(subset) / loop_timing(fn, subset) for _ in range(max(1, args.baseline_repeats))]
                scores = loop_quality(fn, fit_objs[:len(subset)], hidden_objs[:len(subset)])
            rate = max(runs)
            cores = os.cpu_count() or 1
            parallel = parallel_loop_rate(base, subset, cores, args.baseline_repeats) if cores > 1 else runs
            methods[base]["sizes"][str(n)] = {
                "n_objects": len(subset), "lc_per_s": rate, "lc_per_s_runs": runs,
                "lc_per_s_all_cores": rate * cores, "lc_per_s_all_cores_measured": max(parallel),
                "lc_per_s_all_cores_measured_runs": parallel, "processes_measured": cores, "blas_threads": 1,
                "quality": summarise(scores)}
            print(f"  N={n:4d} {base:18s}: {rate:9.1f} lc/s in one process, {max(parallel):9.1f} lc/s in "
                  f"{cores} processes", flush=True)

    ratios, checks = {}, {}
    for n in args.sizes:
        ours = methods["deeprubin"]["sizes"][str(n)]
        one = methods["deeprubin_1thread"]["sizes"][str(n)]
        ratios[str(n)] = {}
        for base in baselines:
            b = methods[base]["sizes"][str(n)]
            q_ours, q_base = ours[f"quality_on_{base}_objects"], b["quality"]
            excess = (q_ours["nlpd_mean"] - q_base["nlpd_mean"]) / abs(q_base["nlpd_mean"])
            ratios[str(n)][base] = {
                "throughput_vs_all_cores": ours["lc_per_s"] / b["lc_per_s_all_cores"],
                "throughput_vs_all_cores_measured": ours["lc_per_s"] / b["lc_per_s_all_cores_measured"],
                "throughput_vs_one_process": ours["lc_per_s"] / b["lc_per_s"],
                "one_thread_vs_one_process": one["lc_per_s"] / b["lc_per_s"],
                "nlpd_ours": q_ours["nlpd_mean"], "nlpd_baseline": q_base["nlpd_mean"],
                "nlpd_relative_excess": excess, "rmse_ours": q_ours["rmse"], "rmse_baseline": q_base["rmse"]}
            target = TARGETS["min_ratio_vs_sklearn" if base == "sklearn" else "min_ratio_vs_george"]
            checks[f"N={n}: >= {target:g}x {base} (all cores, ideal scaling)"] = \
                ratios[str(n)][base]["throughput_vs_all_cores"] >= target
            checks[f"N={n}: >= {target:g}x {base} (all cores, measured)"] = \
                ratios[str(n)][base]["throughput_vs_all_cores_measured"] >= target
            checks[f"N={n}: >= {target:g}x {base} (one process)"] = ratios[str(n)][base]["throughput_vs_one_process"] >= target
            checks[f"N={n}: NLPD within 5% of {base}"] = excess <= TARGETS["max_nlpd_excess"]
    if "50" in methods["deeprubin"]["sizes"]:
        checks[">= 500 lc/s at 50 points"] = methods["deeprubin"]["sizes"]["50"]["lc_per_s"] >= TARGETS["min_lc_per_s_at_50"]
    results = {
        "machine": info,
        "load_average_start": start_load,
        "load_average_end": load(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {"sizes": args.sizes, "n_ours": args.n_ours, "n_sklearn": args.n_sklearn,
                   "n_george": args.n_george, "repeats": args.repeats, "baseline_repeats": args.baseline_repeats,
                   "hyper_max_points": args.hyper_max_points, "parallel": args.parallel,
                   "reported": "ours: median of repeats; baselines: best of repeats (conservative ratios)",
                   "hidden_fraction": args.hidden_fraction,
                   "seed": args.seed, "window_days": list(WINDOW), "prediction_grid": "2 bands x 50 times, [-30, 70] d",
                   "ours": {k: v for k, v in OURS.items() if k != "band_wavelengths"}},
        "methods": methods,
        "ratios": ratios,
        "targets": TARGETS,
        "checks": checks,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out = args.out
    io.write_json(results, out / "gp_throughput.json")
    plot(results, args.sizes, out / "gp_throughput.png")
    print(f"\nload average at the end: {results['load_average_end']}; {results['seconds']} s")
    print(f"{'N':>5s} {'ours lc/s':>10s} " + " ".join(
        f"{b + ' lc/s 1|all':>22s} {'x 1|all|ideal':>18s} {'NLPD ours/' + b:>22s}" for b in baselines))
    for n in args.sizes:
        line = f"{n:5d} {methods['deeprubin']['sizes'][str(n)]['lc_per_s']:10.1f} "
        for base in baselines:
            r, m = ratios[str(n)][base], methods[base]["sizes"][str(n)]
            line += (f"{m['lc_per_s']:10.1f}|{m['lc_per_s_all_cores_measured']:<11.1f} "
                     f"{r['throughput_vs_one_process']:5.1f}|{r['throughput_vs_all_cores_measured']:5.1f}|"
                     f"{r['throughput_vs_all_cores']:<6.1f} {r['nlpd_ours']:10.3f}/{r['nlpd_baseline']:<10.3f} ")
        print(line)
    for name, ok in checks.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")
    print(f"wrote {out / 'gp_throughput.json'} and {out / 'gp_throughput.png'}")
    return results


if __name__ == "__main__":
    main()
