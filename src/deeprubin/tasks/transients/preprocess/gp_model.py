"""Batched exact GP over (time, wavelength): one independent GP per object.

A batch of ``b`` objects is one GPyTorch :class:`~gpytorch.models.ExactGP` with
``batch_shape=torch.Size([b])``: every kernel hyperparameter has a leading batch
dimension, so each object has its own amplitude and length scales, and a single
batched Cholesky serves all objects at each optimiser step.

:func:`fit_batch` optimises the hyperparameters with one of two optimisers:

* ``"newton"`` (default): :mod:`deeprubin.tasks.transients.preprocess.gp_newton`, a projected Newton
  method with the exact gradient and Hessian written out for this kernel, after a
  scan of :data:`START_TIME_LENGTH_SCALES_DAYS`; 2-4 iterations per object. Its
  loss and derivatives equal GPyTorch's ``MultivariateNormal.log_prob`` and
  autograd (tested); padding is exact there (zero correlation, unit noise).
* ``"adam"``: Adam on the GPyTorch model's raw parameters through autograd
  (50-60 steps per object; ~7x slower), kept as the reference implementation.

Choice of kernel (Avocado's, Boone 2019): Matern-3/2 is once differentiable, so it
follows the fast rise and the kinks of transients that a squared exponential
over-smooths; a fixed wavelength length scale of 6000 A links the bands strongly
(colours vary slowly), which also lets an object observed in one band predict the
others; amplitude and time length scale are fitted per object.

Units inside this module are *internal*: time in units of :data:`TIME_UNIT_DAYS`,
wavelength in units of :data:`WAVELENGTH_UNIT_ANGSTROM` and flux normalised by the
object's flux scale, so every input is of order unity. :func:`fit_batch` converts
the fitted length scales back to days and Angstrom.

Why the batch gives the same answer as fitting each object alone:

* the loss is the sum over objects of each object's own negative log marginal
  likelihood, and Adam updates every parameter element-wise (Newton: solves a
  separate 2x2 or 3x3 system per object), so object ``i``'s trajectory never sees
  object ``j``'s gradients;
* objects shorter than the batch's longest are padded with copies of their first
  point carrying zero flux and a noise variance of :data:`PAD_NOISE` (the Newton
  path instead zeroes their correlations exactly); padded points come last, so the
  Cholesky factor of the real block is untouched, and their constant contribution
  to the likelihood is removed;
* convergence is tested per object and a converged object's parameters are
  frozen, so it stops exactly where it would have stopped on its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from linear_operator.utils.errors import NotPSDError

from deeprubin.tasks.transients.preprocess import gp_newton

#: Internal time unit: length scales of ~20 days become ~2.
TIME_UNIT_DAYS = 10.0
#: Internal wavelength unit: optical bands (3500-9000 A) become 3.5-9.
WAVELENGTH_UNIT_ANGSTROM = 1000.0
#: Noise variance (normalised flux squared) of padding points: 1e8 makes their
#: weight in the posterior ~1e-8 of a real point's.
PAD_NOISE = 1e8
#: Floor on the observation noise variance (normalised flux squared), i.e. an
#: error floor of 0.1% of the flux scale; GPyTorch's FixedNoiseGaussianLikelihood
#: would round smaller float64 noise up to this anyway (with a warning), and the
#: hand-written posterior must use the same noise as the fit.
MIN_NOISE = 1e-6
#: Initial / default time length scale (days); typical supernova rise/decline scale.
DEFAULT_TIME_LENGTH_SCALE_DAYS = 20.0
#: Initial / default wavelength length scale (Angstrom), the value Avocado fixes.
DEFAULT_WAVELENGTH_LENGTH_SCALE_ANGSTROM = 6000.0
#: Hyperparameter bounds, enforced by clamping after each step. The upper time
#: bound stops a constant light curve from driving the length scale to infinity.
TIME_LENGTH_SCALE_BOUNDS_DAYS = (0.5, 1000.0)
WAVELENGTH_LENGTH_SCALE_BOUNDS_ANGSTROM = (100.0, 1.0e6)
#: Bounds on the kernel variance (normalised flux squared).
OUTPUTSCALE_BOUNDS = (1.0e-6, 1.0e4)
#: Floor on the initial kernel variance so an all-zero light curve still starts
#: from a usable amplitude.
MIN_INIT_OUTPUTSCALE = 1.0e-2
#: Largest (objects x test points x training points) cross-covariance built at once
#: when predicting (~32 MB in float64; the kernel needs a few such temporaries).
POSTERIOR_CHUNK_ELEMENTS = 1 << 22
#: Time length scales (days) scanned, besides DEFAULT_TIME_LENGTH_SCALE_DAYS, for the
#: Newton optimiser's starting point (see :func:`deeprubin.tasks.transients.preprocess.gp_newton._scan_start`).
START_TIME_LENGTH_SCALES_DAYS = (4.0, 100.0)
START_LOG_TIME_LENGTH_SCALES = tuple(math.log(v / TIME_UNIT_DAYS) for v in START_TIME_LENGTH_SCALES_DAYS)
#: Convergence window: an object has converged when its loss moved by less than
#: ``tol * max(|loss|, 1)`` over the last this-many steps.
CONVERGENCE_WINDOW = 5


class NonFiniteLossError(RuntimeError):
    """The marginal likelihood of at least one object in a batch was NaN or inf."""


@dataclass
class PackedBatch:
    """Padded training data of ``b`` objects, in internal units.

    Attributes
    ----------
    x : torch.Tensor
        (b, n, 2) float64: (time / TIME_UNIT_DAYS, wavelength / WAVELENGTH_UNIT_ANGSTROM).
        Rows ``n_real[i]:`` of object ``i`` are padding.
    y : torch.Tensor
        (b, n) float64 normalised flux; 0 on padding.
    noise : torch.Tensor
        (b, n) float64 observation noise variance (normalised, >= MIN_NOISE); PAD_NOISE on padding.
    n_real : torch.Tensor
        (b,) int64 number of real points (>= 1).
    optimise : torch.Tensor
        (b,) bool; False keeps the initial (default) hyperparameters.
    init_outputscale, init_time_ls, init_wave_ls : torch.Tensor
        (b,) float64 initial kernel variance and length scales (internal units).
    """

    x: torch.Tensor
    y: torch.Tensor
    noise: torch.Tensor
    n_real: torch.Tensor
    optimise: torch.Tensor
    init_outputscale: torch.Tensor
    init_time_ls: torch.Tensor
    init_wave_ls: torch.Tensor


@dataclass
class BatchFit:
    """Result of :func:`fit_batch`; numpy arrays, object axis first.

    Attributes
    ----------
    mean, std : numpy.ndarray
        (b, M) float64 posterior mean / std of the latent normalised flux at the test points.
    final_loss : numpy.ndarray
        (b,) negative log marginal likelihood per real point at the returned hyperparameters.
    amplitude : numpy.ndarray
        (b,) kernel amplitude (sqrt of the kernel variance), normalised flux units.
    length_scale_time_days, length_scale_wavelength_angstrom : numpy.ndarray
        (b,) fitted length scales.
    n_iter : numpy.ndarray
        (b,) int optimiser steps taken by each object.
    """

    mean: np.ndarray
    std: np.ndarray
    final_loss: np.ndarray
    amplitude: np.ndarray
    length_scale_time_days: np.ndarray
    length_scale_wavelength_angstrom: np.ndarray
    n_iter: np.ndarray


class _Matern32Function(torch.autograd.Function):
    """Matern-3/2 correlation over (time, wavelength) with an analytic length-scale gradient.

    ``k = (1 + sqrt(3) r) exp(-sqrt(3) r)`` with ``r^2 = dt^2 / l_t^2 + dw^2 / l_w^2``,
    and ``dk/dl_d = 3 exp(-sqrt(3) r) d_d^2 / l_d^3``, which is finite at ``r = 0``.
    Autograd through GPyTorch's MaternKernel records about twice as many passes over
    the (b, n, n) matrices; with :class:`_GaussianNLL` a training step is ~2x faster
    on CPU, for the same values and gradients (checked in the tests). Inputs are
    data, never differentiated.
    """

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            raise ValueError("Matern32Kernel is not differentiable with respect to its inputs")
        inv_l2 = lengthscale.pow(-2)  # (..., 1, 2)
        dt2 = (x1[..., :, None, 0] - x2[..., None, :, 0]).square_()  # (..., n, m)
        dw2 = (x1[..., :, None, 1] - x2[..., None, :, 1]).square_()
        s = torch.addcmul(dt2 * inv_l2[..., 0:1], dw2, inv_l2[..., 1:2]).sqrt_().mul_(math.sqrt(3.0))
        e = torch.neg(s).exp_()
        k = s.add_(1.0).mul_(e)
        ctx.save_for_backward(dt2, dw2, e, lengthscale)
        return k

    @staticmethod
    def backward(ctx, grad_k: torch.Tensor):
        dt2, dw2, e, lengthscale = ctx.saved_tensors
        ge = (grad_k * e).flatten(-2)
        grad_t = (ge * dt2.flatten(-2)).sum(-1)
        grad_w = (ge * dw2.flatten(-2)).sum(-1)
        grad_l = 3.0 * torch.stack([grad_t, grad_w], -1).unsqueeze(-2) / lengthscale.pow(3)
        return None, None, grad_l


class Matern32Kernel(gpytorch.kernels.Kernel):
    """GPyTorch kernel: Matern-3/2 over 2-D (time, wavelength) inputs, ARD length scales.

    Same values as ``gpytorch.kernels.MaternKernel(nu=1.5, ard_num_dims=2)`` (without
    its input centring, so no precision is lost), faster to differentiate; see
    :class:`_Matern32Function`.
    """

    has_lengthscale = True

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params) -> torch.Tensor:
        if diag:  # stationary: k(x, x) = 1
            return x1.new_ones(x1.shape[:-1])
        return _Matern32Function.apply(x1, x2, self.lengthscale)


class _GaussianNLL(torch.autograd.Function):
    """Negative log density of y ~ N(0, K), (b,), with the closed-form gradient.

    ``d nll / dK = (K^-1 - alpha alpha^T) / 2`` with ``alpha = K^-1 y``: one
    inverse from the Cholesky factor instead of differentiating through the factorisation.
    Same value as GPyTorch's ``MultivariateNormal.log_prob`` (checked in the tests).
    """

    @staticmethod
    def forward(ctx, covariance: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        chol = psd_safe_cholesky(covariance)  # adds jitter only to failing matrices
        alpha = torch.cholesky_solve(y.unsqueeze(-1), chol)
        quad = (y.unsqueeze(-1) * alpha).sum((-1, -2))
        logdet = 2.0 * chol.diagonal(dim1=-1, dim2=-2).log().sum(-1)
        ctx.save_for_backward(chol, alpha)
        return 0.5 * (quad + logdet + y.shape[-1] * math.log(2.0 * math.pi))

    @staticmethod
    def backward(ctx, grad_nll: torch.Tensor):
        chol, alpha = ctx.saved_tensors
        # K^-1 = L^-T L^-1: a triangular solve and a matmul are ~2x faster here
        # than torch.cholesky_inverse on batches of small matrices.
        eye = torch.eye(chol.shape[-1], dtype=chol.dtype, device=chol.device).expand_as(chol)
        chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)
        w = (chol_inv.transpose(-1, -2) @ chol_inv).sub_(alpha @ alpha.transpose(-1, -2))
        return w.mul_(0.5 * grad_nll[..., None, None]), None


class BatchedLightCurveGP(gpytorch.models.ExactGP):
    """Zero-mean GP, ScaleKernel(Matern-3/2) over (time, wavelength), batched over objects.

    The mean is zero (as in Avocado): far from the data the prediction returns to
    zero flux, the right prior for difference-imaging photometry of transients.
    Hyperparameters are optimised in log space (exp transform) so that Adam's
    steps are relative changes, whatever the scale of the parameter.

    Parameters
    ----------
    x : torch.Tensor
        (b, n, 2) training inputs.
    y : torch.Tensor
        (b, n) training targets.
    noise : torch.Tensor
        (b, n) fixed heteroscedastic noise variances.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor):
        batch_shape = torch.Size([x.shape[0]])
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(
            noise=noise, learn_additional_noise=False, batch_shape=batch_shape
        )
        super().__init__(x, y, likelihood)
        log_positive = dict(transform=torch.exp, inv_transform=torch.log)
        self.mean_module = gpytorch.means.ZeroMean(batch_shape=batch_shape)
        self.covar_module = gpytorch.kernels.ScaleKernel(
            Matern32Kernel(
                ard_num_dims=2,
                batch_shape=batch_shape,
                lengthscale_constraint=gpytorch.constraints.Positive(**log_positive),
            ),
            batch_shape=batch_shape,
            outputscale_constraint=gpytorch.constraints.Positive(**log_positive),
        )

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _nll_per_point(model: BatchedLightCurveGP, batch: PackedBatch) -> torch.Tensor:
    """(b,) negative log marginal likelihood per real point.

    Padding sits at a real point's location with noise PAD_NOISE and zero flux, so
    each padded point adds ``-0.5 log(2 pi PAD_NOISE)`` to the log likelihood (up to
    ~1/PAD_NOISE); that constant is removed so the loss is the real points' alone.
    """
    covariance = model.likelihood(model(batch.x)).covariance_matrix  # kernel + fixed noise, (b, n, n)
    nll = _GaussianNLL.apply(covariance, batch.y)
    n_pad = (batch.x.shape[1] - batch.n_real).to(nll.dtype)
    nll_real = nll - 0.5 * n_pad * math.log(2.0 * math.pi * PAD_NOISE)
    return nll_real / batch.n_real.to(nll.dtype)


def _posterior(model: BatchedLightCurveGP, batch: PackedBatch, x_test: torch.Tensor):
    """Exact posterior mean and std (each (b, M)) of the latent f at ``x_test`` (M, 2).

    Done by hand from the kernel rather than through ``model.eval()`` because
    GPyTorch would materialise the (b, M, M) test covariance to get its diagonal.
    Test points are processed in chunks so that the (b, chunk, n) cross-covariance
    stays below :data:`POSTERIOR_CHUNK_ELEMENTS` whatever B * T and max_points are.
    """
    kernel = model.covar_module
    b, n = batch.y.shape
    k_train = kernel(batch.x).to_dense() + torch.diag_embed(batch.noise)
    chol = psd_safe_cholesky(k_train)
    alpha = torch.cholesky_solve(batch.y.unsqueeze(-1), chol)  # (b, n, 1)
    prior_var = kernel.outputscale.unsqueeze(-1)  # stationary kernel: k(x, x) = outputscale
    chunk = max(1, POSTERIOR_CHUNK_ELEMENTS // (b * n))
    means, stds = [], []
    for start in range(0, x_test.shape[0], chunk):
        x_chunk = x_test[start:start + chunk].expand(b, -1, -1)
        k_cross = kernel(x_chunk, batch.x).to_dense()  # (b, chunk, n)
        means.append((k_cross @ alpha).squeeze(-1))
        v = torch.linalg.solve_triangular(chol, k_cross.transpose(-1, -2), upper=False)  # (b, n, chunk)
        var = (prior_var - v.pow(2).sum(dim=-2)).clamp_min(0.0)  # rounding can go below 0
        stds.append(var.sqrt())
    return torch.cat(means, -1), torch.cat(stds, -1)


def _select(batch: PackedBatch, rows: torch.Tensor) -> PackedBatch:
    """Sub-batch of ``rows``, with padding trimmed to the longest remaining object."""
    n_max = int(batch.n_real[rows].max())
    return PackedBatch(
        x=batch.x[rows, :n_max], y=batch.y[rows, :n_max], noise=batch.noise[rows, :n_max],
        n_real=batch.n_real[rows], optimise=batch.optimise[rows],
        init_outputscale=batch.init_outputscale[rows], init_time_ls=batch.init_time_ls[rows],
        init_wave_ls=batch.init_wave_ls[rows],
    )


class _Bounds:
    """Bounds of the raw (log) hyperparameters, applied by clamping after each step."""

    def __init__(self, fit_wavelength: bool, like: torch.Tensor):
        def log_range(bounds, unit):
            return math.log(bounds[0] / unit), math.log(bounds[1] / unit)

        lo_t, hi_t = log_range(TIME_LENGTH_SCALE_BOUNDS_DAYS, TIME_UNIT_DAYS)
        lo_w, hi_w = log_range(WAVELENGTH_LENGTH_SCALE_BOUNDS_ANGSTROM, WAVELENGTH_UNIT_ANGSTROM)
        if not fit_wavelength:  # a fixed wavelength length scale is used as given
            lo_w, hi_w = -math.inf, math.inf
        self.ls_lo = like.new_tensor([lo_t, lo_w])
        self.ls_hi = like.new_tensor([hi_t, hi_w])
        self.scale_lo, self.scale_hi = (math.log(v) for v in OUTPUTSCALE_BOUNDS)

    @torch.no_grad()
    def clamp_(self, raw_scale: torch.Tensor, raw_ls: torch.Tensor) -> None:
        raw_scale.clamp_(self.scale_lo, self.scale_hi)
        raw_ls.copy_(torch.maximum(torch.minimum(raw_ls, self.ls_hi), self.ls_lo))


def _make_model(batch: PackedBatch, raw_scale=None, raw_ls=None) -> BatchedLightCurveGP:
    """Model for ``batch`` at the given raw hyperparameters, or at the batch's initial values."""
    model = BatchedLightCurveGP(batch.x, batch.y, batch.noise).to(device=batch.x.device, dtype=batch.x.dtype)
    kernel = model.covar_module
    with torch.no_grad():
        if raw_scale is None:
            kernel.outputscale = batch.init_outputscale
            kernel.base_kernel.lengthscale = torch.stack(
                [batch.init_time_ls, batch.init_wave_ls], -1).unsqueeze(-2)
        else:
            kernel.raw_outputscale.copy_(raw_scale)
            kernel.base_kernel.raw_lengthscale.copy_(raw_ls)
    model.train()
    return model


def _raw(model: BatchedLightCurveGP) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainable parameters: raw log kernel variance (b,), raw log length scales (b, 1, 2)."""
    return model.covar_module.raw_outputscale, model.covar_module.base_kernel.raw_lengthscale


def _compact(model, optimiser, batch, keep, learning_rate):
    """Drop converged objects: a smaller model, and an Adam that carries the kept rows' state.

    Adam is element-wise, so slicing its moment estimates continues exactly the
    trajectories the kept objects were on.
    """
    old_params = _raw(model)
    sub = _select(batch, keep)
    new_model = _make_model(sub, *(p.detach()[keep] for p in old_params))
    new_params = _raw(new_model)
    new_optimiser = torch.optim.Adam(list(new_params), lr=learning_rate)
    for old, new in zip(old_params, new_params):
        new_optimiser.state[new] = {
            key: (value[keep].clone() if torch.is_tensor(value) and value.dim() > 0
                  else value.clone() if torch.is_tensor(value) else value)
            for key, value in optimiser.state[old].items()
        }
    return new_model, new_optimiser, sub


def _optimise(batch, raw_scale_out, raw_ls_out, *, fit_wavelength, n_iter, learning_rate, tol):
    """Adam on the objects with ``batch.optimise``; writes their final raw parameters in place.

    Returns (b,) int64 steps per object. An object is frozen when it converges,
    and the batch is compacted once half of it has converged, so the cost follows
    the total number of object-steps rather than the slowest object.
    """
    device = batch.x.device
    steps = torch.zeros(batch.x.shape[0], dtype=torch.long, device=device)
    idx = torch.nonzero(batch.optimise).squeeze(-1)  # rows of `batch` still being optimised
    if n_iter == 0 or len(idx) == 0:
        return steps
    sub = _select(batch, idx)
    model = _make_model(sub, raw_scale_out[idx], raw_ls_out[idx])
    optimiser = torch.optim.Adam(list(_raw(model)), lr=learning_rate)
    bounds = _Bounds(fit_wavelength, batch.x)
    history = torch.full((CONVERGENCE_WINDOW + 1, len(idx)), math.nan, dtype=batch.x.dtype, device=device)
    done = torch.zeros(len(idx), dtype=torch.bool, device=device)
    for step in range(n_iter + 1):
        raw_scale, raw_ls = _raw(model)
        loss = _nll_per_point(model, sub)
        if not bool(torch.isfinite(loss).all()):
            raise NonFiniteLossError(f"non-finite marginal likelihood at step {step}")
        history = torch.roll(history, -1, dims=0)
        history[-1] = loss.detach()
        newly = torch.zeros_like(done)
        if step >= CONVERGENCE_WINDOW and tol > 0:
            spread = history.max(0).values - history.min(0).values
            newly = (spread < tol * loss.detach().abs().clamp_min(1.0)) & ~done
        if step == n_iter:
            newly = ~done  # out of steps: every object left stops here
        if bool(newly.any()):
            with torch.no_grad():
                raw_scale_out[idx[newly]] = raw_scale[newly]
                raw_ls_out[idx[newly]] = raw_ls[newly]
            steps[idx[newly]] = step
            done = done | newly
        if bool(done.all()):
            break
        if 2 * int(done.sum()) >= len(done):
            keep = torch.nonzero(~done).squeeze(-1)
            model, optimiser, sub = _compact(model, optimiser, sub, keep, learning_rate)
            idx, history, done = idx[keep], history[:, keep], done[keep]
            raw_scale, raw_ls = _raw(model)
            loss = _nll_per_point(model, sub)  # gradients must flow to the new model's parameters
        optimiser.zero_grad(set_to_none=False)
        loss.sum().backward()
        if not fit_wavelength:
            raw_ls.grad[..., 1] = 0.0  # zero gradient, hence zero moments: Adam never moves it
        optimiser.step()
        bounds.clamp_(raw_scale, raw_ls)
        with torch.no_grad():  # converged objects go back to where they converged
            raw_scale.copy_(torch.where(done, raw_scale_out[idx], raw_scale))
            raw_ls.copy_(torch.where(done[:, None, None], raw_ls_out[idx], raw_ls))
    return steps


def fit_batch(
    batch: PackedBatch,
    x_test: torch.Tensor,
    *,
    fit_wavelength: bool,
    n_iter: int,
    learning_rate: float,
    tol: float,
    jitter: float = 1e-8,
    optimizer: str = "newton",
    hyper_batch: PackedBatch | None = None,
) -> BatchFit:
    """Fit the hyperparameters of ``b`` GPs at once and predict on ``x_test``.

    Parameters
    ----------
    batch : PackedBatch
        Padded training data (internal units, float64, on the target device).
    x_test : torch.Tensor
        (M, 2) test inputs shared by all objects (internal units).
    fit_wavelength : bool
        Whether the wavelength length scale is optimised; if False it stays at
        ``batch.init_wave_ls``.
    n_iter : int
        Maximum number of optimiser iterations (Newton iterations or Adam steps).
    learning_rate : float
        Adam learning rate (on log hyperparameters); not used by ``"newton"``.
    tol : float
        Per-object convergence tolerance on the loss per point. Newton: an object
        stops once the decrease its next step predicts is below
        ``tol * max(|loss|, 1)``. Adam: once its loss moved by less than that over
        the last :data:`CONVERGENCE_WINDOW` steps. ``tol <= 0``: never before ``n_iter``.
    jitter : float
        Diagonal jitter added when a Cholesky fails (Adam: by psd_safe_cholesky, to
        failing matrices only; Newton: to the noise of the whole batch, x10 per retry,
        only if the starting point fails).
    optimizer : str
        ``"newton"`` (default; batched projected Newton with exact Hessian, see
        :mod:`deeprubin.tasks.transients.preprocess.gp_newton`) or ``"adam"`` (autograd through the
        GPyTorch model).
    hyper_batch : PackedBatch or None
        Subset-of-data hyperparameters (Chalupka, Williams & Murray 2013, JMLR 14,
        "A framework for evaluating approximation methods for Gaussian process
        regression"): the same ``b`` objects, each with a subset of its points (at
        most ``m <= n`` after padding). The hyperparameters (start values, start scan
        and optimisation) come from ``hyper_batch``; the posterior on ``x_test`` and
        ``final_loss`` are then computed from all the points of ``batch`` at those
        hyperparameters (one more Cholesky of the (b, n, n) covariances, and
        triangular solves instead of K^-1 for the posterior).
        None: everything from ``batch``.

    Returns
    -------
    BatchFit

    Raises
    ------
    NonFiniteLossError
        If any object's loss becomes NaN or infinite.
    linear_operator.utils.errors.NotPSDError
        If a covariance matrix stays non-positive-definite despite jitter (with
        ``hyper_batch``: that of the subset or of the full data).
    ValueError
        If ``hyper_batch`` does not have the objects of ``batch`` (its batch size).
    """
    if hyper_batch is not None and hyper_batch.x.shape[0] != batch.x.shape[0]:
        raise ValueError(f"hyper_batch has {hyper_batch.x.shape[0]} objects, batch {batch.x.shape[0]}")
    if optimizer == "newton":
        return _fit_batch_newton(batch, x_test, fit_wavelength=fit_wavelength, n_iter=n_iter, tol=tol,
                                 jitter=jitter, hyper_batch=hyper_batch)
    if optimizer != "adam":
        raise ValueError(f"optimizer must be 'newton' or 'adam', got {optimizer!r}")
    fit_on = batch if hyper_batch is None else hyper_batch
    with (
        gpytorch.settings.max_cholesky_size(10**9),  # always exact Cholesky, never CG/Lanczos
        gpytorch.settings.cholesky_jitter(double_value=jitter, float_value=jitter),
        gpytorch.settings.cholesky_max_tries(3),
    ):
        raw_scale, raw_ls = (p.detach().clone() for p in _raw(_make_model(fit_on)))
        _Bounds(fit_wavelength, batch.x).clamp_(raw_scale, raw_ls)
        steps = _optimise(fit_on, raw_scale, raw_ls, fit_wavelength=fit_wavelength, n_iter=n_iter,
                          learning_rate=learning_rate, tol=tol)
        model = _make_model(batch, raw_scale, raw_ls)
        with torch.no_grad():
            final_loss = _nll_per_point(model, batch)
            mean, std = _posterior(model, batch, x_test)
            length_scale = model.covar_module.base_kernel.lengthscale.squeeze(-2)  # (b, 2)
            amplitude = model.covar_module.outputscale.sqrt()

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    return BatchFit(
        mean=to_numpy(mean),
        std=to_numpy(std),
        final_loss=to_numpy(final_loss),
        amplitude=to_numpy(amplitude),
        length_scale_time_days=to_numpy(length_scale[:, 0]) * TIME_UNIT_DAYS,
        length_scale_wavelength_angstrom=to_numpy(length_scale[:, 1]) * WAVELENGTH_UNIT_ANGSTROM,
        n_iter=to_numpy(steps).astype(np.int64),
    )


def _log_bounds(fit_wavelength: bool, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of ``[log s, log l_t(, log l_w)]`` (internal units), each (p,)."""
    b = _Bounds(fit_wavelength, like)
    lo = [b.scale_lo, float(b.ls_lo[0])] + ([float(b.ls_lo[1])] if fit_wavelength else [])
    hi = [b.scale_hi, float(b.ls_hi[0])] + ([float(b.ls_hi[1])] if fit_wavelength else [])
    return like.new_tensor(lo), like.new_tensor(hi)


def _fit_batch_newton(batch: PackedBatch, x_test: torch.Tensor, *, fit_wavelength: bool, n_iter: int,
                      tol: float, jitter: float, hyper_batch: PackedBatch | None = None) -> BatchFit:
    """:func:`fit_batch` with the batched Newton optimiser of :mod:`gp_newton`.

    With ``hyper_batch`` the Newton fit runs on its (subset) geometry and
    :func:`_condition_on_all` then factorises the full data once at the fitted
    hyperparameters. A Cholesky failure in either goes through the same jitter
    retries (noise of both raised together) and finally raises ``NotPSDError``.
    """
    fit_on = batch if hyper_batch is None else hyper_batch
    theta = torch.stack([fit_on.init_outputscale.log(), fit_on.init_time_ls.log()]
                        + ([fit_on.init_wave_ls.log()] if fit_wavelength else []), -1)
    fixed_w = None if fit_wavelength else fit_on.init_wave_ls.log()
    lo, hi = _log_bounds(fit_wavelength, batch.x)
    theta = torch.maximum(torch.minimum(theta, hi), lo)
    geom = gp_newton.Geometry.from_padded(fit_on.x, fit_on.y, fit_on.noise, fit_on.n_real, fixed_w)
    full = None if hyper_batch is None else gp_newton.Geometry.from_padded(
        batch.x, batch.y, batch.noise, batch.n_real, fixed_w)
    fit = None
    for attempt in range(4):
        try:
            fit = _newton_rows(geom, theta, lo, hi, fixed_w, fit_on.optimise, n_iter=n_iter, tol=tol)
            if full is not None:
                fit = _condition_on_all(full, fit, fixed_w)
            break
        except gp_newton.CholeskyFailed as exc:
            if attempt == 3:
                raise NotPSDError(f"{exc}, also with {jitter * 100:g} added to the noise") from exc
            for g in (geom, full):
                if g is not None:
                    real = torch.arange(g.y.shape[1], device=g.y.device)[None, :] < g.n_real[:, None]
                    g.noise = torch.where(real, g.noise + jitter * 10**attempt, g.noise)
    theta = fit.theta
    mean, std = gp_newton.posterior(theta, fixed_w, batch.x, batch.n_real, fit.kinv, fit.alpha, x_test,
                                    POSTERIOR_CHUNK_ELEMENTS, chol=fit.chol)
    scale = theta[:, 0].exp()
    wave_ls = theta[:, 2] if fit_wavelength else fixed_w

    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    return BatchFit(
        mean=to_numpy(mean),
        std=to_numpy(std),
        final_loss=to_numpy(fit.loss),
        amplitude=to_numpy(scale.sqrt()),
        length_scale_time_days=to_numpy(theta[:, 1].exp()) * TIME_UNIT_DAYS,
        length_scale_wavelength_angstrom=to_numpy(wave_ls.exp()) * WAVELENGTH_UNIT_ANGSTROM,
        n_iter=to_numpy(fit.steps).astype(np.int64),
    )


def _condition_on_all(full: gp_newton.Geometry, fit: gp_newton.Fit,
                      fixed_w: torch.Tensor | None) -> gp_newton.Fit:
    """``fit``'s hyperparameters (from a subset) with the Cholesky factor, K^-1 y and the loss
    per point of all the data.

    ``full`` holds the b objects' full (padded) geometry; one batched Cholesky and two
    triangular solves, no inverse (:func:`gp_newton.posterior` takes the factor) and no
    derivatives. Raises :class:`~deeprubin.tasks.transients.preprocess.gp_newton.CholeskyFailed` if some
    object's full covariance is not positive definite.
    """
    terms = gp_newton.evaluate(full, fit.theta, fixed_w, derivatives=False, inverse=False, solve=True)
    if not bool(terms.ok.all()):
        raise gp_newton.CholeskyFailed(f"covariance of all the data not positive definite at the subset's "
                                       f"hyperparameters for {int((~terms.ok).sum())} object(s)")
    return gp_newton.Fit(theta=fit.theta, steps=fit.steps, loss=terms.loss / full.n_real, kinv=None,
                         alpha=terms.alpha, chol=terms.chol)


def _newton_rows(geom, theta, lo, hi, fixed_w, optimise, *, n_iter, tol) -> gp_newton.Fit:
    """Newton fit of the rows with ``optimise`` (after a start scan), the others evaluated at ``theta``."""
    rows = torch.nonzero(optimise).squeeze(-1)
    others = torch.nonzero(~optimise).squeeze(-1)
    b, n = geom.y.shape
    out = gp_newton.Fit(theta=theta.clone(), steps=torch.zeros(b, dtype=torch.long, device=theta.device),
                        loss=theta.new_zeros(b), kinv=theta.new_zeros(b, n, n), alpha=theta.new_zeros(b, n))
    for part, iterations in ((rows, n_iter), (others, 0)):
        if len(part) == 0:
            continue
        sub = geom.select(part, trim=False)  # the padded size must not depend on batch mates
        sub_w = None if fixed_w is None else fixed_w[part]
        fit = gp_newton.newton_fit(sub, theta[part], lo, hi, sub_w, n_iter=iterations, tol=tol,
                                   start_log_ls_t=theta.new_tensor(START_LOG_TIME_LENGTH_SCALES))
        m = sub.y.shape[1]
        out.theta[part], out.steps[part], out.loss[part] = fit.theta, fit.steps, fit.loss
        out.kinv[part, :m, :m] = fit.kinv
        out.alpha[part, :m] = fit.alpha
    return out
