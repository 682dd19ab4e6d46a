"""Tests of the batched GPyTorch light-curve interpolation (deeprubin.tasks.transients.preprocess.gp)."""
from __future__ import annotations

import gpytorch
import numpy as np
import pandas as pd
import pytest
import torch
from linear_operator.utils.errors import NotPSDError

from deeprubin.tasks.transients.preprocess import gp as gpmod
from deeprubin.tasks.transients.preprocess import gp_model
from deeprubin.tasks.transients.preprocess.gp import GPGrid, fit_gp_grid, load_gp_grid, save_gp_grid

BANDS = {"g": 4800.0, "r": 6400.0, "i": 7800.0}
MJD0 = 59000.0


def make_lightcurves(objects: dict[str, tuple]) -> pd.DataFrame:
    """Canonical long table from {object_id: (time_days, band, flux, flux_err)} arrays."""
    frames = []
    for oid, (t, band, flux, err) in objects.items():
        t = np.atleast_1d(np.asarray(t, dtype=float))
        frames.append(pd.DataFrame({
            "object_id": oid,
            "time": MJD0 + t,
            "band": np.broadcast_to(np.asarray(band, dtype=str), t.shape),
            "flux": np.broadcast_to(np.asarray(flux, dtype=float), t.shape),
            "flux_err": np.broadcast_to(np.asarray(err, dtype=float), t.shape),
        }))
    return pd.concat(frames, ignore_index=True)


def bump(t, band, t0=40.0, amp=100.0, width=15.0):
    """Smooth transient-like flux (microjansky), slightly redder later."""
    colour = {"g": 1.0, "r": 0.8, "i": 0.6}
    return amp * np.array([colour[b] for b in band]) * np.exp(-0.5 * ((t - t0) / width) ** 2)


def random_object(rng, n, t_max=150.0, amp=100.0, rel_err=0.02, bands=("g", "r")):
    t = np.sort(rng.uniform(0.0, t_max, n))
    band = rng.choice(list(bands), n)
    flux = bump(t, band, amp=amp)
    err = np.full(n, rel_err * amp)
    return t, band, flux + rng.normal(0.0, err), err


def fit(lc, **overrides) -> GPGrid:
    kwargs = dict(
        band_wavelengths=BANDS, window_before_days=50.0, window_after_days=100.0, n_grid=61,
        fit_margin_days=20.0, max_points=200, n_iter=200, learning_rate=0.1, batch_size=16,
        tol=1e-5, wavelength_length_scale=6000.0, progress=False,
    )
    kwargs.update(overrides)
    return fit_gp_grid(lc, **kwargs)


def interp_grid(grid: GPGrid, k: int, band: int, t_rel) -> np.ndarray:
    return np.interp(t_rel, grid.grid_time, grid.mean[k, band])


@pytest.fixture(scope="module")
def mixed_lightcurves():
    """Objects of very different lengths, so batches need padding."""
    rng = np.random.default_rng(1)
    objects = {f"obj{k}": random_object(rng, n) for k, n in enumerate([5, 8, 12, 20, 40, 60, 90, 30])}
    return make_lightcurves(objects)


@pytest.fixture(scope="module")
def mixed_grid(mixed_lightcurves):
    return fit(mixed_lightcurves, batch_size=8)


def test_shapes_units_and_order(mixed_lightcurves, mixed_grid):
    grid = mixed_grid
    n = mixed_lightcurves["object_id"].nunique()
    assert list(grid.object_ids) == list(pd.unique(mixed_lightcurves["object_id"]))
    assert list(grid.bands) == list(BANDS) and np.allclose(grid.wavelengths, list(BANDS.values()))
    assert grid.mean.shape == grid.std.shape == (n, len(BANDS), 61)
    assert grid.mean.dtype == np.float32 and grid.std.dtype == np.float32
    assert grid.grid_time[0] == -50.0 and grid.grid_time[-1] == 100.0
    assert np.isfinite(grid.mean).all() and (grid.std >= 0).all()
    assert list(grid.diagnostics.columns) == list(gpmod.DIAGNOSTIC_COLUMNS)
    assert grid.diagnostics["fit_ok"].all()
    assert (grid.diagnostics["message"] == "").all()
    # t_ref is an observation time, flux_scale the largest |flux| used.
    for k, oid in enumerate(grid.object_ids):
        obj = mixed_lightcurves[mixed_lightcurves["object_id"] == oid]
        assert grid.t_ref[k] in obj["time"].to_numpy()
        assert grid.flux_scale[k] == pytest.approx(np.abs(obj["flux"]).max())


def test_t_ref_ignores_insignificant_spike():
    t = np.array([0.0, 10.0, 20.0, 30.0])
    flux = np.array([5.0, 50.0, 20.0, 500.0])  # 500 has S/N 0.5: not a reference candidate
    err = np.array([1.0, 1.0, 1.0, 1000.0])
    grid = fit(make_lightcurves({"a": (t, "g", flux, err)}))
    assert grid.t_ref[0] == MJD0 + 10.0


def test_posterior_mean_passes_near_noiseless_data():
    t = np.linspace(0.0, 120.0, 60)
    band = np.tile(["g", "r", "i"], 20)
    truth = bump(t, band)
    grid = fit(make_lightcurves({"a": (t, band, truth, 0.01)}))
    rel = t - (grid.t_ref[0] - MJD0)
    for k, name in enumerate(BANDS):
        sel = band == name
        inside = sel & (rel >= -50) & (rel <= 100)
        predicted = interp_grid(grid, 0, k, rel[inside]) * grid.flux_scale[0]
        assert np.max(np.abs(predicted - truth[inside])) < 0.02 * truth.max()


def matern32(x1, x2, length_scales):
    r = np.sqrt((((x1[:, None, :] - x2[None, :, :]) / length_scales) ** 2).sum(-1))
    return (1.0 + np.sqrt(3.0) * r) * np.exp(-np.sqrt(3.0) * r)


def test_hyperparameters_recovered_from_gp_draws():
    rng = np.random.default_rng(7)
    true_ls, amplitude, noise = 15.0, 100.0, 3.0
    objects = {}
    for k in range(6):
        t = np.sort(rng.uniform(0.0, 200.0, 90))
        band = rng.choice(list(BANDS), 90)
        x = np.stack([t, np.array([BANDS[b] for b in band])], -1)
        cov = amplitude**2 * matern32(x, x, np.array([true_ls, 6000.0])) + 1e-9 * np.eye(90)
        f = np.linalg.cholesky(cov) @ rng.normal(size=90)
        objects[f"draw{k}"] = (t, band, f + rng.normal(0.0, noise, 90), noise)
    grid = fit(make_lightcurves(objects), window_before_days=250.0, window_after_days=250.0,
               n_iter=400)
    diag = grid.diagnostics
    ls = diag["length_scale_time_days"].to_numpy()
    assert diag["fit_ok"].all()
    assert np.all((ls > true_ls / 2) & (ls < true_ls * 2)), ls
    assert true_ls / 1.5 < np.median(ls) < true_ls * 1.5
    fitted_amplitude = diag["amplitude"].to_numpy() * grid.flux_scale
    assert 0.5 * amplitude < np.median(fitted_amplitude) < 2.0 * amplitude
    assert np.allclose(diag["length_scale_wavelength_angstrom"], 6000.0)  # fixed, as asked


def test_wavelength_length_scale_fitted_when_not_fixed():
    rng = np.random.default_rng(3)
    lc = make_lightcurves({"a": random_object(rng, 60, bands=("g", "r", "i"))})
    grid = fit(lc, wavelength_length_scale=None)
    assert grid.diagnostics["fit_ok"].all()
    assert grid.diagnostics["length_scale_wavelength_angstrom"].iloc[0] != 6000.0


def test_batched_equals_one_by_one(mixed_lightcurves, mixed_grid):
    single = fit(mixed_lightcurves, batch_size=1)
    np.testing.assert_allclose(single.mean, mixed_grid.mean, atol=1e-5)
    np.testing.assert_allclose(single.std, mixed_grid.std, atol=1e-5)
    for column in ("final_loss", "amplitude", "length_scale_time_days"):
        np.testing.assert_allclose(single.diagnostics[column], mixed_grid.diagnostics[column], rtol=1e-6)
    np.testing.assert_array_equal(single.diagnostics["n_iter"], mixed_grid.diagnostics["n_iter"])


def test_worker_threads_give_the_one_by_one_result(mixed_lightcurves, mixed_grid):
    """Batches fitted two at a time in worker threads: same grid, thread count restored."""
    threads = torch.get_num_threads()
    parallel = fit(mixed_lightcurves, batch_size=3, workers=2)
    assert torch.get_num_threads() == threads
    serial = fit(mixed_lightcurves, batch_size=3, workers=1)
    np.testing.assert_allclose(parallel.mean, serial.mean, atol=1e-9)
    np.testing.assert_allclose(parallel.std, serial.std, atol=1e-9)
    np.testing.assert_allclose(parallel.mean, mixed_grid.mean, atol=1e-5)
    np.testing.assert_array_equal(parallel.diagnostics["n_iter"], mixed_grid.diagnostics["n_iter"])
    with pytest.raises(ValueError, match="workers"):
        fit(mixed_lightcurves, workers=0)


def test_worker_processes_give_the_thread_result(mixed_lightcurves):
    """Batches fitted in worker processes (executor=gp_process_pool) equal the thread workers' result,
    with and without subset-of-data hyperparameters."""
    with gpmod.gp_process_pool(2) as pool:
        for extra in ({}, {"hyper_max_points": 16}):
            in_processes = fit(mixed_lightcurves, batch_size=4, workers=2, executor=pool, **extra)
            in_threads = fit(mixed_lightcurves, batch_size=4, workers=2, **extra)
            np.testing.assert_array_equal(in_processes.mean, in_threads.mean)
            np.testing.assert_array_equal(in_processes.std, in_threads.std)
            pd.testing.assert_frame_equal(in_processes.diagnostics, in_threads.diagnostics)


def test_process_fit_returns_an_unpicklable_error_by_name(monkeypatch):
    """A worker's exception that cannot be pickled comes back as its class name and text."""
    class Unpicklable(RuntimeError):
        def __init__(self):
            super().__init__("matrix not positive definite")
            self.callback = lambda: None  # lambdas do not pickle

    def fails(*args, **kwargs):
        raise Unpicklable()

    rng = np.random.default_rng(3)
    lc = make_lightcurves({"a": random_object(rng, 12)})
    _, objects = gpmod._prepare(lc, list(BANDS), np.array(list(BANDS.values())), -70.0, 120.0, 200)
    task = (objects, None, 6000.0, np.zeros((4, 2)), 1e-6,
            dict(fit_wavelength=False, n_iter=5, learning_rate=0.1, tol=1e-4, optimizer="newton"))
    monkeypatch.setattr(gp_model, "fit_batch", fails)
    error = gpmod._process_fit(task)
    assert isinstance(error, RuntimeError) and str(error) == "Unpicklable: matrix not positive definite"
    monkeypatch.setattr(gp_model, "fit_batch", lambda *a, **k: (_ for _ in ()).throw(ValueError("bad batch")))
    error = gpmod._process_fit(task)
    assert type(error) is ValueError and str(error) == "bad batch"  # picklable: returned as it is


def test_process_pool_and_executor_arguments_are_checked(mixed_lightcurves):
    with pytest.raises(ValueError, match="n_workers must be >= 1"):
        with gpmod.gp_process_pool(0):
            pass
    with pytest.raises(ValueError, match="executor .* CPU only, got device='cuda'"):
        fit(mixed_lightcurves, device="cuda", executor=object())


def test_padding_does_not_change_a_fit():
    rng = np.random.default_rng(5)
    short = random_object(rng, 10)
    long = random_object(rng, 150, t_max=300.0, amp=1000.0)
    wide = dict(window_before_days=400.0, window_after_days=400.0)
    alone = fit(make_lightcurves({"short": short}), **wide)
    together = fit(make_lightcurves({"short": short, "long": long}), batch_size=2, **wide)
    assert together.diagnostics["n_points"].tolist() == [10, 150]  # really padded 10 -> 150
    np.testing.assert_allclose(together.mean[0], alone.mean[0], atol=1e-6)
    np.testing.assert_allclose(together.std[0], alone.std[0], atol=1e-6)
    for column in ("final_loss", "amplitude", "length_scale_time_days", "n_iter"):
        assert together.diagnostics[column].iloc[0] == pytest.approx(alone.diagnostics[column].iloc[0], rel=1e-7)


def test_degenerate_objects_give_finite_grids():
    lc = make_lightcurves({
        "one_point": ([10.0], "g", [50.0], [2.0]),
        "two_points": ([10.0, 20.0], ["g", "r"], [50.0, 40.0], [2.0, 2.0]),
        "one_band": (np.linspace(0, 100, 20), "r", bump(np.linspace(0, 100, 20), ["r"] * 20), 1.0),
        "flat": (np.linspace(0, 100, 20), ["g", "r"] * 10, 10.0, 1.0),
        "zeros": (np.linspace(0, 100, 20), ["g", "r"] * 10, 0.0, 1.0),
        "unknown_band": ([10.0, 20.0, 30.0], "y", [1.0, 2.0, 3.0], 1.0),
    })
    grid = fit(lc, batch_size=4)
    diag = grid.diagnostics.set_index("object_id")
    assert np.isfinite(grid.mean).all() and np.isfinite(grid.std).all()
    assert np.isfinite(grid.flux_scale).all() and (grid.flux_scale > 0).all()
    for oid in ("one_point", "two_points"):
        assert not diag.loc[oid, "fit_ok"] and "too few points" in diag.loc[oid, "message"]
        assert diag.loc[oid, "n_iter"] == 0
    for oid in ("one_band", "flat", "zeros"):
        assert diag.loc[oid, "fit_ok"] and diag.loc[oid, "message"] == ""
    assert not diag.loc["unknown_band", "fit_ok"] and diag.loc["unknown_band", "n_points"] == 0
    k = list(grid.object_ids).index("unknown_band")
    assert np.isnan(grid.t_ref[k]) and (grid.mean[k] == 0).all() and (grid.std[k] == gpmod.FALLBACK_STD).all()
    # A one-point object: posterior peaks at the point and returns towards zero far from it.
    k = list(grid.object_ids).index("one_point")
    assert grid.mean[k, 0].max() == pytest.approx(grid.mean[k, 0, np.argmin(np.abs(grid.grid_time))], rel=1e-6)
    assert abs(grid.mean[k, 0, -1]) < 0.05


def test_failures_fall_back_without_nan(monkeypatch):
    rng = np.random.default_rng(2)
    lc = make_lightcurves({f"o{k}": random_object(rng, 15 + k) for k in range(3)})
    real_fit_batch = gp_model.fit_batch

    def fails_in_batches(batch, *args, **kwargs):
        if batch.x.shape[0] > 1:
            raise NotPSDError("synthetic failure")
        return real_fit_batch(batch, *args, **kwargs)

    monkeypatch.setattr(gp_model, "fit_batch", fails_in_batches)
    grid = fit(lc, batch_size=3)
    assert grid.diagnostics["fit_ok"].all()  # the one-by-one refit succeeded

    def always_fails(batch, *args, **kwargs):
        raise gp_model.NonFiniteLossError("synthetic NaN")

    monkeypatch.setattr(gp_model, "fit_batch", always_fails)
    grid = fit(lc, batch_size=3)
    assert not grid.diagnostics["fit_ok"].any()
    assert grid.diagnostics["message"].str.contains("linear interpolation fallback").all()
    assert np.isfinite(grid.mean).all() and (grid.std == gpmod.FALLBACK_STD).all()
    assert np.abs(grid.mean).max() > 0.5  # the interpolation follows the data (peak = 1)


def test_many_points_are_binned_to_max_points():
    rng = np.random.default_rng(4)
    lc = make_lightcurves({"dense": random_object(rng, 600, bands=("g", "r", "i"))})
    grid = fit(lc, max_points=45)
    assert 0 < grid.diagnostics["n_points"].iloc[0] <= 45
    assert grid.diagnostics["fit_ok"].iloc[0]
    with pytest.raises(ValueError, match="max_points"):
        fit(lc, max_points=2)


def test_std_larger_in_gap_than_at_observations():
    t = np.concatenate([np.linspace(0, 30, 15), np.linspace(90, 120, 15)])
    band = np.array(["g", "r"] * 15)
    rng = np.random.default_rng(6)
    flux = 100 * np.sin(t / 20.0) + 150
    grid = fit(make_lightcurves({"gap": (t, band, flux + rng.normal(0, 2, 30), 2.0)}),
               window_before_days=150.0, window_after_days=150.0, n_grid=301)
    rel = t - (grid.t_ref[0] - MJD0)
    std_g = grid.std[0, 0]
    at_obs = np.interp(rel[band == "g"], grid.grid_time, std_g).max()
    in_gap = np.interp(rel[0] + 60.0, grid.grid_time, std_g)
    assert in_gap > 3 * at_obs


def test_deterministic(mixed_lightcurves, mixed_grid):
    again = fit(mixed_lightcurves, batch_size=8)
    np.testing.assert_array_equal(again.mean, mixed_grid.mean)
    np.testing.assert_array_equal(again.std, mixed_grid.std)
    pd.testing.assert_frame_equal(again.diagnostics, mixed_grid.diagnostics)


def test_save_load_round_trip(tmp_path, mixed_grid):
    npz, parquet = tmp_path / "gp" / "grid.npz", tmp_path / "gp" / "diagnostics.parquet"
    save_gp_grid(mixed_grid, npz, parquet)
    loaded = load_gp_grid(npz, parquet)
    for name in ("object_ids", "bands", "wavelengths", "grid_time", "t_ref", "flux_scale", "mean", "std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(mixed_grid, name))
        assert getattr(loaded, name).dtype.kind == getattr(mixed_grid, name).dtype.kind
    assert loaded.mean.dtype == np.float32
    pd.testing.assert_frame_equal(loaded.diagnostics, mixed_grid.diagnostics)
    with np.load(npz, allow_pickle=False) as data:  # strings stored without pickle
        assert data["object_ids"].dtype.kind == "U"


def test_chunked_prediction_matches_unchunked(monkeypatch, mixed_lightcurves, mixed_grid):
    monkeypatch.setattr(gp_model, "POSTERIOR_CHUNK_ELEMENTS", 1000)  # many small chunks
    chunked = fit(mixed_lightcurves, batch_size=8, progress=True)
    np.testing.assert_allclose(chunked.mean, mixed_grid.mean, atol=1e-6)
    np.testing.assert_allclose(chunked.std, mixed_grid.std, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(mixed_lightcurves, mixed_grid):
    on_gpu = fit(mixed_lightcurves, batch_size=8, device="cuda")
    np.testing.assert_allclose(on_gpu.mean, mixed_grid.mean, atol=1e-4)
    np.testing.assert_allclose(on_gpu.std, mixed_grid.std, atol=1e-4)


def test_empty_input():
    lc = make_lightcurves({"a": ([1.0], "g", [1.0], [1.0])}).iloc[:0]
    grid = fit(lc)
    assert grid.mean.shape == (0, 3, 61) and len(grid.diagnostics) == 0


def test_kernel_and_likelihood_match_gpytorch_reference():
    """The fast Matern-3/2 kernel and Gaussian NLL equal GPyTorch's, values and gradients."""
    torch.manual_seed(0)
    b, n = 3, 12
    x = torch.rand(b, n, 2, dtype=torch.float64) * torch.tensor([10.0, 4.0], dtype=torch.float64)
    y = torch.randn(b, n, dtype=torch.float64)
    noise = torch.full((b, n), 0.05, dtype=torch.float64)
    ls = torch.rand(b, 1, 2, dtype=torch.float64) + 0.5
    shape = torch.Size([b])

    ours = gp_model.Matern32Kernel(ard_num_dims=2, batch_shape=shape).double()
    reference = gpytorch.kernels.MaternKernel(nu=1.5, ard_num_dims=2, batch_shape=shape).double()
    ours.lengthscale = ls
    reference.lengthscale = ls
    k_ours, k_ref = ours(x).to_dense(), reference(x).to_dense()
    torch.testing.assert_close(k_ours, k_ref, rtol=1e-9, atol=1e-12)

    nll = gp_model._GaussianNLL.apply(k_ours + torch.diag_embed(noise), y).sum()
    mvn = gpytorch.distributions.MultivariateNormal(torch.zeros(b, n, dtype=torch.float64),
                                                    k_ref + torch.diag_embed(noise))
    nll_ref = -mvn.log_prob(y).sum()
    torch.testing.assert_close(nll, nll_ref, rtol=1e-10, atol=1e-10)
    nll.backward()
    nll_ref.backward()
    torch.testing.assert_close(ours.raw_lengthscale.grad, reference.raw_lengthscale.grad, rtol=1e-7, atol=1e-10)


def test_bad_values_are_ignored_and_never_reach_the_grid():
    """NaN/inf values and zero or negative errors: rows dropped; an object left with nothing falls back."""
    rng = np.random.default_rng(11)
    t, band, flux, err = random_object(rng, 30)
    flux, err = flux.copy(), err.copy()
    flux[[2, 7]] = [np.nan, np.inf]
    err[[4, 9, 12]] = [0.0, -1.0, np.inf]
    t_bad = t.copy()
    t_bad[15] = np.nan
    lc = make_lightcurves({
        "some_bad_rows": (t_bad, band, flux, err),
        "all_nan": (np.linspace(0, 50, 5), "g", np.nan, 1.0),
        "all_bad_errors": (np.linspace(0, 50, 5), "r", 10.0, [0.0, -1.0, np.nan, np.inf, 0.0]),
    })
    grid = fit(lc, batch_size=4)
    diag = grid.diagnostics.set_index("object_id")
    assert np.isfinite(grid.mean).all() and np.isfinite(grid.std).all()
    assert diag.loc["some_bad_rows", "fit_ok"] and diag.loc["some_bad_rows", "n_points"] == 30 - 6
    for oid in ("all_nan", "all_bad_errors"):
        assert not diag.loc[oid, "fit_ok"] and diag.loc[oid, "n_points"] == 0
        assert "no usable observation" in diag.loc[oid, "message"]
        k = list(grid.object_ids).index(oid)
        assert (grid.mean[k] == 0).all() and (grid.std[k] == gpmod.FALLBACK_STD).all()


def test_extreme_dynamic_range_gives_finite_grid():
    """Flux over ten decades with errors down to 1e-12 of it: finite grid, the fit or its fallback recorded."""
    t = np.linspace(0.0, 100.0, 40)
    band = np.array(["g", "r"] * 20)
    flux = 10.0 ** np.linspace(-3, 7, 40)
    objects = {
        "huge_range": (t, band, flux, 1e-12 * flux + 1e-15),
        "tiny_errors": (t, band, bump(t, band), 1e-9),
        "huge_errors": (t, band, bump(t, band), 1e9),
        "spike": (t, band, np.where(np.arange(40) == 20, 1e12, 1.0), 1.0),
    }
    grid = fit(make_lightcurves(objects), batch_size=4)
    assert np.isfinite(grid.mean).all() and np.isfinite(grid.std).all() and (grid.std >= 0).all()
    assert np.isfinite(grid.flux_scale).all() and (grid.flux_scale > 0).all()
    diag = grid.diagnostics
    assert (diag["fit_ok"] | (diag["message"].str.len() > 0)).all()
    assert np.abs(grid.mean).max() < 10.0  # normalised flux: peak ~1


def test_newton_derivatives_match_autograd():
    """Loss, gradient and Hessian of the Newton path equal torch autograd on a dense reference."""
    from deeprubin.tasks.transients.preprocess import gp_newton

    torch.manual_seed(0)
    b, n = 3, 12
    x = torch.rand(b, n, 2, dtype=torch.float64) * torch.tensor([10.0, 4.0], dtype=torch.float64)
    y = torch.randn(b, n, dtype=torch.float64)
    noise = torch.rand(b, n, dtype=torch.float64) * 0.1 + 0.01
    n_real = torch.tensor([12, 9, 5])

    for fit_wavelength in (False, True):
        p = 3 if fit_wavelength else 2
        theta = torch.randn(b, p, dtype=torch.float64) * 0.3
        fixed = None if fit_wavelength else torch.full((b,), 0.5, dtype=torch.float64)
        geom = gp_newton.Geometry.from_padded(x, y, noise, n_real, fixed)
        terms = gp_newton.evaluate(geom, theta, fixed)

        def reference(th):
            out = []
            for i in range(b):
                m = int(n_real[i])
                d = x[i, :m, None, :] - x[i, None, :m, :]
                lw = th[i, 2].exp() if fit_wavelength else fixed[i].exp()
                r = torch.sqrt((d[..., 0] / th[i, 1].exp()) ** 2 + (d[..., 1] / lw) ** 2 + 1e-300)
                k = th[i, 0].exp() * (1 + 3**0.5 * r) * torch.exp(-(3**0.5) * r) + torch.diag(noise[i, :m])
                mvn = torch.distributions.MultivariateNormal(torch.zeros(m, dtype=torch.float64), k)
                out.append(-mvn.log_prob(y[i, :m]))
            return torch.stack(out)

        th = theta.clone().requires_grad_(True)
        loss = reference(th)
        torch.testing.assert_close(terms.loss, loss.detach(), rtol=1e-12, atol=1e-12)
        grad = torch.autograd.grad(loss.sum(), th)[0]
        torch.testing.assert_close(terms.grad, grad, rtol=1e-10, atol=1e-10)
        hess = torch.autograd.functional.hessian(lambda z: reference(z).sum(), theta)
        hess = torch.stack([hess[i, :, i, :] for i in range(b)])
        torch.testing.assert_close(terms.hess, hess, rtol=1e-10, atol=1e-10)


def test_newton_reaches_adam_optimum(mixed_lightcurves):
    """The Newton optimiser (default) ends at least as low as a long Adam run, in far fewer iterations."""
    lc = mixed_lightcurves[mixed_lightcurves["object_id"].isin(["obj1", "obj2", "obj3", "obj7"])]
    newton = fit(lc, batch_size=8)
    adam = fit(lc, batch_size=8, optimizer="adam", n_iter=80, learning_rate=0.2, tol=1e-7)
    ours, reference = newton.diagnostics, adam.diagnostics
    assert (ours["final_loss"] <= reference["final_loss"] + 1e-4).all()
    np.testing.assert_allclose(ours["length_scale_time_days"], reference["length_scale_time_days"], rtol=0.05)
    np.testing.assert_allclose(newton.mean, adam.mean, atol=0.02)
    assert ours["n_iter"].max() <= 15 < reference["n_iter"].min()
    with pytest.raises(ValueError, match="optimizer"):
        fit(lc, optimizer="lbfgs")


# --------------------------------------------------------------------------- subset-of-data hyperparameters

def test_hyper_subset_is_stratified_and_keeps_the_brightest_point():
    band = np.array([0] * 30 + [1] * 7 + [2] * 1)
    rng = np.random.default_rng(0)
    band = band[rng.permutation(len(band))]  # bands interleaved in time
    y = rng.normal(0.0, 0.1, len(band))
    members = [np.flatnonzero(band == k) for k in range(3)]
    brightest = members[0][27]  # near the end of band 0: its run is shifted inwards
    y[brightest] = 5.0
    rows = gpmod.hyper_subset(band, y, 12)
    assert len(rows) == 12 and np.all(np.diff(rows) > 0)  # distinct, time order kept
    assert brightest in rows
    counts = np.bincount(band[rows], minlength=3)
    assert counts.tolist() == [9, 2, 1]  # shares 9.5 / 2.2 / 0.3, floors of min(count, 2) per band
    for k in range(3):  # every band: a contiguous run of its own points (native cadence)
        position = np.searchsorted(members[k], rows[band[rows] == k])
        assert np.all(np.diff(position) == 1)
    np.testing.assert_array_equal(rows[band[rows] == 0], members[0][21:30])  # run ends at the band's end
    centre = np.argmin(np.abs(members[1] - brightest))  # band 1: centred near the brightest point
    assert members[1][centre] in rows
    np.testing.assert_array_equal(gpmod.hyper_subset(band, y, 38), np.arange(38))  # n <= n_select: all
    np.testing.assert_array_equal(gpmod.hyper_subset(band, y, 12), rows)  # deterministic
    with pytest.raises(ValueError, match="hyper_max_points=5"):
        gpmod.hyper_subset(band, y, 5)  # < 2 points for each of 3 bands


@pytest.mark.parametrize("counts, n_select", [([50, 50], 24), ([97, 3], 10), ([1, 1, 60], 8), ([10, 11, 12], 32)])
def test_band_quota_is_proportional_with_floors(counts, n_select):
    counts = np.array(counts)
    quota = gpmod._band_quota(counts, n_select)
    assert quota.sum() == n_select
    assert np.all(quota >= np.minimum(counts, gpmod.HYPER_MIN_PER_BAND)) and np.all(quota <= counts)
    share = n_select * counts / counts.sum()
    floors = np.minimum(counts, gpmod.HYPER_MIN_PER_BAND)
    assert np.all(np.abs(quota - np.maximum(share, floors)) < 2.0)


@pytest.mark.parametrize("value, match", [(4, "below the minimum 8"), (7, "below the minimum 8"),
                                          (12.5, "integer"), ("32", "integer"), (True, "integer")])
def test_invalid_hyper_max_points_raises(mixed_lightcurves, value, match):
    with pytest.raises(ValueError, match=f"hyper_max_points.*{match}"):
        fit(mixed_lightcurves, hyper_max_points=value)


def test_hyper_max_points_minimum_grows_with_bands():
    six = {b: 3000.0 + 1000.0 * k for k, b in enumerate("ugrizy")}
    with pytest.raises(ValueError, match="below the minimum 12"):
        gpmod.check_hyper_max_points(10, len(six))
    assert gpmod.check_hyper_max_points(np.int64(12), len(six)) == 12
    assert gpmod.check_hyper_max_points(None, len(six)) is None


def test_invalid_hyper_max_points_in_config_names_the_key():
    from omegaconf import open_dict

    from deeprubin.core.config import ConfigError, compose_task
    from deeprubin.tasks.transients.preprocess.inputs import check_preprocess_config, gp_kwargs

    cfg = compose_task("transients", ["preprocess.hyper_max_points=5"])
    with pytest.raises(ConfigError, match=r"preprocess\.hyper_max_points"):
        check_preprocess_config(cfg)
    cfg = compose_task("transients", ["preprocess.hyper_max_points=40"])
    check_preprocess_config(cfg)
    assert gp_kwargs(cfg)["hyper_max_points"] == 40
    with open_dict(cfg):
        del cfg.preprocess["hyper_max_points"]  # a config older than the setting (e.g. a checkpoint's)
    check_preprocess_config(cfg)
    assert gp_kwargs(cfg)["hyper_max_points"] is None


def test_objects_within_hyper_max_points_are_fitted_exactly_as_without(mixed_lightcurves, mixed_grid):
    grid = fit(mixed_lightcurves, batch_size=8, hyper_max_points=90)  # longest object: 90 points
    np.testing.assert_array_equal(grid.mean, mixed_grid.mean)
    np.testing.assert_array_equal(grid.std, mixed_grid.std)
    pd.testing.assert_frame_equal(grid.diagnostics, mixed_grid.diagnostics)
    d = mixed_grid.diagnostics
    np.testing.assert_array_equal(d["n_points_hyper"], d["n_points"])  # all points (all >= 3 here)


@pytest.fixture(scope="module")
def gp_draws():
    """Objects drawn from the model's own GP (Matern-3/2, l_t = 12 d), 150 points each in 2 bands."""
    rng = np.random.default_rng(21)
    true_ls, amplitude, noise, n = 12.0, 100.0, 3.0, 150
    objects = {}
    for k in range(5):
        t = np.sort(rng.uniform(0.0, 200.0, n))
        band = rng.choice(["g", "r"], n)
        x = np.stack([t, np.array([BANDS[b] for b in band])], -1)
        cov = amplitude**2 * matern32(x, x, np.array([true_ls, 6000.0])) + 1e-9 * np.eye(n)
        objects[f"draw{k}"] = (t, band, np.linalg.cholesky(cov) @ rng.normal(size=n) + rng.normal(0, noise, n), noise)
    return make_lightcurves(objects), true_ls, amplitude


def test_subset_hyperparameters_recover_the_full_fit_and_the_truth(gp_draws):
    lc, true_ls, amplitude = gp_draws
    wide = dict(window_before_days=250.0, window_after_days=250.0)
    full = fit(lc, **wide)
    subset = fit(lc, hyper_max_points=48, **wide)
    d_full, d_sub = full.diagnostics, subset.diagnostics
    assert d_sub["fit_ok"].all() and (d_sub["n_points_hyper"] == 48).all() and (d_sub["n_points"] == 150).all()
    ls_full, ls_sub = d_full["length_scale_time_days"].to_numpy(), d_sub["length_scale_time_days"].to_numpy()
    assert np.all(np.abs(np.log(ls_sub / ls_full)) < np.log(1.5)), (ls_sub, ls_full)
    assert np.all((ls_sub > true_ls / 2) & (ls_sub < true_ls * 2)), ls_sub
    fitted_amplitude = d_sub["amplitude"].to_numpy() * subset.flux_scale
    assert 0.5 * amplitude < np.median(fitted_amplitude) < 2.0 * amplitude
    # The full-data loss at the subset's hyperparameters is no lower than at the full fit's optimum.
    assert np.all(d_sub["final_loss"].to_numpy() >= d_full["final_loss"].to_numpy() - 1e-9)
    assert np.all(d_sub["final_loss"].to_numpy() < d_full["final_loss"].to_numpy() + 0.1)


def _normalised_points(lc, grid, k):
    obj = lc[lc["object_id"] == grid.object_ids[k]]
    x = np.c_[obj["time"].to_numpy() - grid.t_ref[k], obj["band"].map(BANDS).to_numpy(float)]
    scale = grid.flux_scale[k]
    noise = np.maximum((obj["flux_err"].to_numpy() / scale) ** 2, gp_model.MIN_NOISE)
    return x, obj["flux"].to_numpy() / scale, noise, obj["band"].map(dict(zip(BANDS, range(3)))).to_numpy()


def _posterior_and_loss(x, y, noise, x_new, amplitude, ls_t):
    s = amplitude**2
    k = s * matern32(x, x, np.array([ls_t, 6000.0])) + np.diag(noise)
    chol = np.linalg.cholesky(k)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    k_cross = s * matern32(x_new, x, np.array([ls_t, 6000.0]))
    v = np.linalg.solve(chol, k_cross.T)
    loss = 0.5 * y @ alpha + np.log(np.diag(chol)).sum() + 0.5 * len(y) * np.log(2 * np.pi)
    return k_cross @ alpha, np.sqrt(np.clip(s - (v * v).sum(0), 0, None)), loss / len(y)


def test_subset_posterior_is_conditioned_on_all_points(gp_draws):
    lc, _, _ = gp_draws
    lc = lc[lc["object_id"] == "draw0"]
    wide = dict(window_before_days=250.0, window_after_days=250.0)
    grid = fit(lc, hyper_max_points=24, **wide)
    d = grid.diagnostics.iloc[0]
    x, y, noise, band = _normalised_points(lc, grid, 0)
    order = np.lexsort((band, x[:, 0]))  # the fit's point order: time, then band
    x, y, noise, band = x[order], y[order], noise[order], band[order]
    x_grid = np.c_[np.tile(grid.grid_time, 3), np.repeat(list(BANDS.values()), len(grid.grid_time))]
    mean_all, std_all, loss_all = _posterior_and_loss(x, y, noise, x_grid, d["amplitude"], d["length_scale_time_days"])
    np.testing.assert_allclose(grid.mean[0].ravel(), mean_all, atol=1e-5)
    np.testing.assert_allclose(grid.std[0].ravel(), std_all, atol=1e-5)
    assert d["final_loss"] == pytest.approx(loss_all, rel=1e-9)  # loss of all points, per point
    rows = gpmod.hyper_subset(band, y, 24)
    assert len(rows) == 24
    mean_sub, std_sub, _ = _posterior_and_loss(x[rows], y[rows], noise[rows], x_grid, d["amplitude"],
                                               d["length_scale_time_days"])
    # The 126 points left out of the subset still pull the mean and shrink the std.
    assert np.abs(grid.mean[0].ravel() - mean_sub).max() > 0.05
    assert grid.std[0].mean() < 0.9 * std_sub.mean()


def test_subset_batched_equals_one_by_one(mixed_lightcurves):
    batched = fit(mixed_lightcurves, batch_size=8, hyper_max_points=16)
    single = fit(mixed_lightcurves, batch_size=1, hyper_max_points=16)
    d = batched.diagnostics
    n = d["n_points"].to_numpy()
    np.testing.assert_array_equal(d["n_points_hyper"], np.minimum(n, 16))
    assert d["fit_ok"].all() and (n > 16).sum() >= 4
    np.testing.assert_allclose(single.mean, batched.mean, atol=1e-5)
    np.testing.assert_allclose(single.std, batched.std, atol=1e-5)
    for column in ("final_loss", "amplitude", "length_scale_time_days"):
        np.testing.assert_allclose(single.diagnostics[column], d[column], rtol=1e-6)
    np.testing.assert_array_equal(single.diagnostics["n_iter"], d["n_iter"])
    # Objects above the limit really differ from the all-points fit; those within it do not.
    full = fit(mixed_lightcurves, batch_size=8)
    above = n > 16
    assert not np.allclose(full.diagnostics["length_scale_time_days"][above], d["length_scale_time_days"][above],
                           rtol=1e-6)
    np.testing.assert_allclose(full.mean[~above], batched.mean[~above], atol=1e-6)


def test_subset_with_adam_conditions_on_all_points(mixed_lightcurves):
    lc = mixed_lightcurves[mixed_lightcurves["object_id"].isin(["obj4", "obj5"])]  # 40 and 60 points
    newton = fit(lc, batch_size=8, hyper_max_points=16)
    adam = fit(lc, batch_size=8, hyper_max_points=16, optimizer="adam", n_iter=80, learning_rate=0.2, tol=1e-7)
    assert (adam.diagnostics["n_points_hyper"] == 16).all() and adam.diagnostics["fit_ok"].all()
    np.testing.assert_allclose(adam.diagnostics["final_loss"], newton.diagnostics["final_loss"], atol=2e-3)
    np.testing.assert_allclose(newton.mean, adam.mean, atol=0.02)


def test_subset_full_data_cholesky_failure_ends_in_the_usual_fallback(monkeypatch):
    """A full-data covariance that never factorises: the same fallback as without the subset."""
    from deeprubin.tasks.transients.preprocess import gp_newton

    rng = np.random.default_rng(8)
    lc = make_lightcurves({"a": random_object(rng, 40), "b": random_object(rng, 45)})
    real_evaluate = gp_newton.evaluate

    def fails_above_subset(geom, theta, fixed_w, **kwargs):
        terms = real_evaluate(geom, theta, fixed_w, **kwargs)
        if geom.y.shape[1] > 16:  # every full-data geometry; the 16-point subsets factorise
            terms.ok = torch.zeros_like(terms.ok)
            terms.loss = torch.full_like(terms.loss, float("inf"))
        return terms

    monkeypatch.setattr(gp_newton, "evaluate", fails_above_subset)
    with_subset = fit(lc, batch_size=2, hyper_max_points=16)
    without = fit(lc, batch_size=2)
    for grid in (with_subset, without):
        d = grid.diagnostics
        assert not d["fit_ok"].any() and (d["n_points_hyper"] == 0).all()
        assert d["message"].str.contains("linear interpolation fallback").all()
    assert with_subset.diagnostics["message"].str.contains("covariance of all the data not positive definite").all()
    np.testing.assert_array_equal(with_subset.mean, without.mean)
    np.testing.assert_array_equal(with_subset.std, without.std)


def test_fit_batch_rejects_a_hyper_batch_of_other_objects():
    rng = np.random.default_rng(9)
    lc = make_lightcurves({"a": random_object(rng, 30), "b": random_object(rng, 20)})
    _, objects = gpmod._prepare(lc, list(BANDS), np.array(list(BANDS.values())), -70.0, 120.0, 200)
    dev = torch.device("cpu")
    x_test = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="hyper_batch has 1 objects, batch 2"):
        gp_model.fit_batch(gpmod._pack(objects, 6000.0, dev), x_test, fit_wavelength=False, n_iter=5,
                           learning_rate=0.1, tol=1e-4, hyper_batch=gpmod._pack(objects[:1], 6000.0, dev))


def test_optimizer_is_selectable_from_config(base_cfg, mixed_lightcurves):
    """preprocess.optimizer reaches the fit (the GPyTorch Adam path is not dead code) and is checked."""
    from omegaconf import OmegaConf

    from deeprubin.core.config import ConfigError
    from deeprubin.tasks.transients.preprocess.inputs import check_preprocess_config, gp_kwargs

    cfg = OmegaConf.merge(base_cfg, {"preprocess": {"optimizer": "adam", "n_iter": 5}})
    check_preprocess_config(cfg)
    kwargs = gp_kwargs(cfg)
    assert kwargs["optimizer"] == "adam"
    lc = mixed_lightcurves[mixed_lightcurves["object_id"].isin(["obj1", "obj2"])]
    grid = gpmod.fit_gp_grid(lc, band_wavelengths=dict(cfg.task.band_wavelengths), **{**kwargs, "progress": False})
    assert (grid.diagnostics["n_iter"] == 5).all()  # Adam steps, not Newton's few iterations
    with pytest.raises(ConfigError, match=r"'preprocess\.optimizer' must be one of \['newton', 'adam'\], got 'lbfgs'"):
        check_preprocess_config(OmegaConf.merge(base_cfg, {"preprocess": {"optimizer": "lbfgs"}}))
    old = OmegaConf.create(OmegaConf.to_container(base_cfg))
    del old.preprocess["optimizer"]  # a checkpoint's config from before the key
    assert gp_kwargs(old)["optimizer"] == "newton"
