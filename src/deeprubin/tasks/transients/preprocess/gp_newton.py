"""Batched damped-Newton fit of the GP hyperparameters, with exact derivatives.

Each object's GP has two or three hyperparameters: the log kernel variance
``a = log s`` and the log length scales ``u_d = log l_d`` for the fitted input
dimensions ``d`` (time; and wavelength when it is not fixed). With so few
parameters, Newton's method with the exact Hessian converges in a handful of
iterations where Adam needs fifty or more, and every iteration costs about what
an Adam step costs: one batched Cholesky, the inverse from it (:func:`_inverse`)
and one matrix product per fitted length scale. Autograd is not used: the derivatives of the
negative log marginal likelihood

    L = 1/2 y^T K^-1 y + 1/2 log|K| + n/2 log(2 pi),   K = s C(r) + N,

are written out (``K_i = dK/dtheta_i``, ``W_i = K^-1 K_i``, ``alpha = K^-1 y``)::

    g_i  = 1/2 tr(W_i) - 1/2 alpha^T K_i alpha
    H_ij = 1/2 tr(K^-1 K_ij) - 1/2 tr(W_i W_j) + alpha^T K_i K^-1 K_j alpha - 1/2 alpha^T K_ij alpha

with, for the Matern-3/2 correlation ``C = (1 + sqrt3 r) exp(-sqrt3 r)``,
``r^2 = sum_d q_d``, ``q_d = dx_d^2 / l_d^2`` and ``E = exp(-sqrt3 r)``::

    K_a  = s C = K - N                     K_aa = K_a,  K_ad = K_d
    K_d  = 3 s q_d E                       K_de = K_d (sqrt3 q_e / r - 2 delta_de)

``K_a`` needs no matrix product (``W_a = I - K^-1 N``). The values agree with
GPyTorch's ``MultivariateNormal.log_prob`` and autograd (checked in the tests).

Padding is exact here: a padded point has zero correlation with every point and
unit noise, so ``K`` is block diagonal with an identity block, ``y`` is zero
there, and the padding adds exactly nothing to the loss, gradient or Hessian.

Optimisation is a projected Newton method with backtracking, per object:

* the start: the given amplitude and time length scale (data-driven, see
  ``gp_model``), or the time length scale of lowest loss among a few candidates
  (:func:`_scan_start`), as the likelihood is often bimodal in it. The given start
  and the candidates cost a Cholesky and a triangular solve each (the loss only);
  K^-1, the gradient and the Hessian are computed once, at the chosen start;
* the Hessian is made positive definite by replacing its eigenvalues with their
  absolute values, at least :data:`MIN_CURVATURE` (a 2x2 or 3x3 eigendecomposition
  per object), so the step is always a descent direction;
  parameters at a bound whose gradient points outwards are held fixed;
* steps are capped at :data:`MAX_LOG_STEP` in log space; a step that does not
  lower the loss is shortened (x :data:`BACKTRACK`) and retried;
* an object has converged when the predicted decrease of its loss per point,
  ``1/2 g^T H^-1 g``, is below ``tol * max(|loss per point|, 1)`` (or its step
  has been shortened to nothing); it is frozen, and the batch is compacted
  (converged objects dropped; the padded size kept, so that an object's arithmetic does
  not depend on its batch mates) once :data:`COMPACT_FRACTION` of it has converged, so
  converged objects are not evaluated again.

Cost: at 50 points per object a fit takes ~3.7 full evaluations (Cholesky, K^-1,
gradient, Hessian) and 3 loss-only ones per object, on the benchmark's simulated
light curves (``benchmarks/gp_throughput.py``); at 50-100 points the elementwise
passes over the (b, n, n) stacks cost about as much as the LAPACK calls. With
subset-of-data hyperparameters (``hyper_max_points`` of
:func:`deeprubin.tasks.transients.preprocess.gp.fit_gp_grid`) this fit runs on m <= n points of each
object and the full data then costs one :func:`evaluate` without derivatives or
inverse (``solve=True``: a Cholesky of the (n, n) covariance and two triangular
solves) plus :func:`posterior` from that factor (a triangular solve per chunk of
test points), ~2x cheaper than with K^-1 at 200 points.

Every decision is per object, and every operation rounds an object's numbers the same way
whatever the batch (row sums rather than gemv, see :func:`_bmv`; the padded size fixed by the
caller), so with the numerics pinned a batch gives the same bytes as fitting each of its
objects alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
from dataclasses import dataclass
from typing import Iterator

import torch

SQRT3 = math.sqrt(3.0)
#: Largest Newton step in any log hyperparameter (a factor e^1.5 ~ 4.5).
MAX_LOG_STEP = 1.5
#: Step shrink factor after a step that did not lower the loss.
BACKTRACK = 0.25
#: After this many consecutive shrinks the object is declared converged (stuck at a kink or bound).
MAX_BACKTRACKS = 8
#: Smallest eigenvalue the (per-point) Hessian is shifted to.
MIN_CURVATURE = 1e-6
#: Matrix size from which K^-1 comes from LAPACK's potri rather than a triangular solve
#: and a matrix product (see :func:`_inverse`; measured crossover on CPU, one thread: 80-90).
POTRI_MIN_N = 88
#: The batch is compacted (converged objects dropped) once at least
#: this fraction of it has converged: a compaction copies ~3 (b, n, n) arrays, an
#: evaluation makes ~25 passes over them, so a few converged rows already pay.
COMPACT_FRACTION = 0.1


#: glibc mallopt parameters and the values used while fitting (see :func:`retain_freed_memory`).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_RETAIN_MMAP_THRESHOLD = 32 << 20  # glibc's maximum
_RETAIN_TRIM_THRESHOLD = 2**31 - 1
_DEFAULT_THRESHOLD = 128 << 10  # glibc's default for both


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextlib.contextmanager
def retain_freed_memory() -> Iterator[None]:
    """Keep freed heap memory for reuse while fitting (glibc only; elsewhere a no-op).

    Every Newton iteration allocates a dozen (b, n, n) float64 temporaries of a few
    MB. glibc serves blocks that large with fresh ``mmap`` pages and returns them on
    free, so each temporary costs a page fault per 4 kB; on the 2-core CPU machines
    this was half of the fit time (measured with getrusage: ~10,000 minor faults
    per iteration at 256 objects x 50 points). Raising the mmap and trim thresholds
    lets the heap recycle those blocks. On exit the thresholds go back to glibc's
    defaults (fixed rather than glibc's dynamic threshold) and the retained memory
    is released with ``malloc_trim``.
    """
    libc = _libc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _RETAIN_MMAP_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _RETAIN_TRIM_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


class CholeskyFailed(RuntimeError):
    """Covariance matrices of some objects are not positive definite at the starting point."""


#: Added to every squared distance r^2 so that r > 0 (the Hessian divides by r where the
#: numerator is exactly 0); changes no r^2 above ~1e-280.
TINY = 1e-300
#: Squared time distance given to every pair involving a padded point: the
#: correlation exp(-sqrt3 r) underflows to exactly 0 for any allowed length scale.
PAD_DISTANCE2 = 1e200


@dataclass
class Geometry:
    """The fixed part of a batch: pairwise squared distances and data (internal units).

    Attributes
    ----------
    dt2 : torch.Tensor
        (b, n, n) squared time differences; :data:`PAD_DISTANCE2` for every pair
        that involves a padded point.
    dw2 : torch.Tensor or None
        (b, n, n) squared wavelength differences; None when ``q_w`` is given
        (a fixed wavelength length scale needs only ``q_w``).
    y : torch.Tensor
        (b, n) normalised flux, 0 on padding.
    noise : torch.Tensor
        (b, n) noise variance, 1 on padding.
    n_real : torch.Tensor
        (b,) number of real points (float).
    q_w : torch.Tensor or None
        (b, n, n) ``dw2 / l_w**2 + TINY`` for a fixed wavelength length scale
        (computed once per batch), else None.
    """

    dt2: torch.Tensor
    dw2: torch.Tensor | None
    y: torch.Tensor
    noise: torch.Tensor
    n_real: torch.Tensor
    q_w: torch.Tensor | None = None

    @classmethod
    def from_padded(cls, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor, n_real: torch.Tensor,
                    log_ls_w_fixed: torch.Tensor | None = None) -> "Geometry":
        """From padded inputs (``x`` (b, n, 2); rows ``n_real:`` of each object are padding)."""
        n = x.shape[1]
        real = torch.arange(n, device=x.device)[None, :] < n_real[:, None]
        pair = real[:, :, None] & real[:, None, :]
        dt2 = (x[..., :, None, 0] - x[..., None, :, 0]).square_().masked_fill_(~pair, PAD_DISTANCE2)
        dw2 = (x[..., :, None, 1] - x[..., None, :, 1]).square_()
        q_w = None
        if log_ls_w_fixed is not None:
            q_w = dw2.mul_(torch.exp(-2.0 * log_ls_w_fixed)[:, None, None]).add_(TINY)
            dw2 = None
        return cls(dt2=dt2, dw2=dw2, y=torch.where(real, y, 0.0), noise=torch.where(real, noise, 1.0),
                   n_real=n_real.to(x.dtype), q_w=q_w)

    def select(self, rows: torch.Tensor, trim: bool = True) -> "Geometry":
        """Sub-batch of ``rows``, padding trimmed to its longest object (unless not ``trim``)."""
        n = int(self.n_real[rows].max()) if trim else self.y.shape[1]
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows, :n, :n]

        return Geometry(pick(self.dt2), pick(self.dw2), self.y[rows, :n], self.noise[rows, :n], self.n_real[rows],
                        pick(self.q_w))


@dataclass
class Terms:
    """Loss and derivatives of b objects at one point (totals, not per point).

    ``kinv`` and ``alpha`` (= K^-1 y) are kept for the posterior, or ``chol`` (the lower
    Cholesky factor of K) and ``alpha`` when :func:`evaluate` was asked to ``solve``.
    """

    loss: torch.Tensor  # (b,)
    grad: torch.Tensor | None  # (b, p)
    hess: torch.Tensor | None  # (b, p, p)
    ok: torch.Tensor  # (b,) bool: Cholesky succeeded and the loss is finite
    kinv: torch.Tensor | None  # (b, n, n)
    alpha: torch.Tensor  # (b, n)
    chol: torch.Tensor | None = None  # (b, n, n), with ``solve`` only


def _bmv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Batched matrix-vector product (b, n, m) x (b, m) -> (b, n).

    An elementwise product and a row sum rather than ``a @ v[..., None]``: torch sends a
    batch of one matrix to BLAS's gemv and larger batches to a batched gemm, whose
    roundings differ, so an object's fit would depend on how many objects share its batch
    (and compaction changes that during the fit). A row sum rounds the same way whatever
    the batch (``tests/test_numerics.py``)."""
    return (a * v.unsqueeze(-2)).sum(-1)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) over the last two dims, (b,) (faster on CPU than a flattened bmm)."""
    return (a * b).sum((-1, -2))


def _dims(geom: Geometry, theta: torch.Tensor, log_ls_w_fixed: torch.Tensor | None):
    """[(squared distance, 1 / l^2)] of the fitted length scales, and r^2 + TINY (b, n, n)."""
    inv_t = torch.exp(-2.0 * theta[:, 1])
    if log_ls_w_fixed is None:
        inv_w = torch.exp(-2.0 * theta[:, 2])
        dims = [(geom.dt2, inv_t), (geom.dw2, inv_w)]
        base = (geom.dw2 * inv_w[:, None, None]).add_(TINY)
    else:
        dims = [(geom.dt2, inv_t)]
        base = geom.q_w
        if base is None:
            base = (geom.dw2 * torch.exp(-2.0 * log_ls_w_fixed)[:, None, None]).add_(TINY)
    return dims, torch.addcmul(base, geom.dt2, inv_t[:, None, None])


def _factor(k: torch.Tensor):
    """Cholesky factor (identity where it fails, so the arithmetic stays finite) and success flags.

    ``k`` is symmetric, so its transpose (a free view) is ``k`` in LAPACK's column-major
    layout; factorising it as ``U^T U`` hands LAPACK a contiguous copy and returns
    ``L = U^T`` row-major, faster on CPU than ``cholesky_ex(k)``
    (``docs/decisions/gp-newton-restructure.md``).
    """
    upper, info = torch.linalg.cholesky_ex(k.transpose(-1, -2), upper=True)
    chol = upper.transpose(-1, -2)
    ok = info == 0
    if not bool(ok.all()):
        eye = torch.eye(k.shape[-1], dtype=k.dtype, device=k.device)
        chol = torch.where(ok[:, None, None], chol, eye)
    return chol, ok


def _inverse(chol: torch.Tensor) -> torch.Tensor:
    """K^-1 (b, n, n) from its lower Cholesky factor.

    On CPU, with one thread, LAPACK's ``potri`` (``torch.cholesky_inverse``) is faster
    than a triangular solve against the identity followed by ``L^-T L^-1`` for large
    matrices and slower for small ones, where the per-matrix call overhead dominates
    (measured in ``docs/decisions/gp-newton-restructure.md``); see :data:`POTRI_MIN_N`.
    """
    b, n = chol.shape[0], chol.shape[-1]
    if n >= POTRI_MIN_N and chol.device.type == "cpu":  # measured on CPU only
        return torch.cholesky_inverse(chol)
    eye = torch.eye(n, dtype=chol.dtype, device=chol.device).expand(b, n, n)
    chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)
    return chol_inv.transpose(-1, -2) @ chol_inv


def evaluate(geom: Geometry, theta: torch.Tensor, log_ls_w_fixed: torch.Tensor | None,
             derivatives: bool = True, inverse: bool = True, solve: bool = False) -> Terms:
    """Negative log marginal likelihood (and gradient, Hessian) at ``theta``.

    Parameters
    ----------
    geom : Geometry
    theta : torch.Tensor
        (b, p): ``[log s, log l_t]`` (p = 2, ``log_ls_w_fixed`` given) or
        ``[log s, log l_t, log l_w]`` (p = 3, ``log_ls_w_fixed`` None); internal units.
    log_ls_w_fixed : torch.Tensor or None
        (b,) fixed log wavelength length scale.
    derivatives : bool
        Compute the gradient and Hessian (implies ``inverse``).
    inverse : bool
        Keep ``K^-1`` (for the posterior); without it and without derivatives
        only a Cholesky and a triangular solve are needed.
    solve : bool
        Without ``derivatives`` and ``inverse``: also ``alpha = K^-1 y`` (a second
        triangular solve) and the Cholesky factor in ``Terms.chol``, for
        :func:`posterior` without K^-1 (else ``alpha`` holds ``L^-1 y``).
    """
    b, n = geom.y.shape
    p = theta.shape[1]
    s = torch.exp(theta[:, 0])
    dims, r2 = _dims(geom, theta, log_ls_w_fixed)
    nsr = r2.sqrt_().mul_(-SQRT3)  # -sqrt(3) r, < 0 everywhere (TINY)
    e = torch.exp(nsr)  # E = exp(-sqrt3 r), exactly 0 for padded pairs
    k = torch.addcmul(e, nsr, e, value=-1.0).mul_(s[:, None, None])  # s C = s (1 + sqrt3 r) E
    k.diagonal(dim1=-2, dim2=-1).add_(geom.noise)
    chol, ok = _factor(k)
    del k
    y = geom.y
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    if derivatives or inverse:
        kinv = _inverse(chol)
        alpha = _bmv(kinv, y)
        quad = (y * alpha).sum(-1)
    else:
        kinv = None
        white = torch.linalg.solve_triangular(chol, y.unsqueeze(-1), upper=False)
        quad = white.square().sum((-1, -2))
        if solve:  # K^-1 y = L^-T (L^-1 y)
            alpha = torch.linalg.solve_triangular(chol.transpose(-1, -2), white, upper=True).squeeze(-1)
        else:
            alpha = white.squeeze(-1)  # not K^-1 y; callers that need alpha ask for the inverse or solve
    loss = 0.5 * (quad + logdet + geom.n_real * math.log(2.0 * math.pi))
    ok = ok & torch.isfinite(loss)
    loss = torch.where(ok, loss, torch.full_like(loss, math.inf))
    if not derivatives:
        return Terms(loss, None, None, ok, kinv, alpha, chol if solve and kinv is None else None)

    noise = geom.noise
    kinv_diag = torch.diagonal(kinv, dim1=-2, dim2=-1)
    # theta_0 = log s: K_a = s C = K - N, W_a = I - K^-1 N, v_a = K_a alpha = y - N alpha.
    v_a = y - noise * alpha
    # Length scales: K_d = c_d M_d with M_d = E o dx_d^2 and c_d = 3 s / l_d^2.
    c_d = [3.0 * s * inv for _, inv in dims]
    m_d = [e * d2 for d2, _ in dims]
    w_d = [kinv @ m for m in m_d]  # W_d / c_d, W_d = K^-1 K_d
    tr_w_d = [torch.diagonal(w, dim1=-2, dim2=-1).sum(-1) for w in w_d]  # tr(W_d) / c_d
    v_d = [_bmv(m, alpha) for m in m_d]  # K_d alpha / c_d
    # One pass over K^-1 for K^-1 N alpha and every K^-1 K_d alpha / c_d.
    kinv_rhs = kinv @ torch.stack([noise * alpha, *v_d], -1)
    kinv_v_a = alpha - kinv_rhs[..., 0]
    kinv_v_d = [kinv_rhs[..., i] for i in range(1, p)]
    tr_kinv_n = (kinv_diag * noise).sum(-1)
    tr_w_a = n - tr_kinv_n  # a padded point adds 1 - 1 = 0
    # tr(K^-1 N K^-1 N) = noise^T (K^-1 o K^-1) noise
    tr_wa_wa = n - 2.0 * tr_kinv_n + (noise * _bmv(kinv * kinv, noise)).sum(-1)  # pads: 1 - 2 + 1
    grad = theta.new_empty(b, p)
    hess = theta.new_empty(b, p, p)
    quad_a = (alpha * v_a).sum(-1)
    grad[:, 0] = 0.5 * tr_w_a - 0.5 * quad_a
    hess[:, 0, 0] = 0.5 * tr_w_a - 0.5 * tr_wa_wa + (v_a * kinv_v_a).sum(-1) - 0.5 * quad_a
    for i in range(1, p):
        c, m, w, tr_w, v, kv = c_d[i - 1], m_d[i - 1], w_d[i - 1], tr_w_d[i - 1], v_d[i - 1], kinv_v_d[i - 1]
        quad_d = (alpha * v).sum(-1)
        grad[:, i] = c * (0.5 * tr_w - 0.5 * quad_d)
        # tr(W_a W_d) = tr(W_d) - tr(K^-1 N W_d), tr(K^-1 N W_d) = noise . rowsum(W_d o K^-1)
        tr_kn_w = (noise * (w * kinv).sum(-1)).sum(-1)
        h = c * (0.5 * tr_kn_w + (v_a * kv).sum(-1) - 0.5 * quad_d)
        hess[:, 0, i] = hess[:, i, 0] = h
        for j in range(i, p):
            c_e, inv_e = c_d[j - 1], dims[j - 1][1]
            # K_de = K_d o (sqrt3 q_e / r - 2 delta_de), sqrt3 q_e / r = -3 dx_e^2 / (l_e^2 nsr)
            g_de = (m * dims[j - 1][0]).div_(nsr)
            scale = -3.0 * c * inv_e
            tr_k_de = scale * _dot(kinv, g_de)
            quad_de = scale * (alpha * _bmv(g_de, alpha)).sum(-1)
            if i == j:
                tr_k_de = tr_k_de - 2.0 * c * tr_w
                quad_de = quad_de - 2.0 * c * quad_d
            tr_wd_we = c * c_e * (w * w_d[j - 1].transpose(-1, -2)).sum((-1, -2))
            h = 0.5 * tr_k_de - 0.5 * tr_wd_we + c * c_e * (v * kinv_v_d[j - 1]).sum(-1) - 0.5 * quad_de
            hess[:, i, j] = hess[:, j, i] = h
    return Terms(loss, grad, hess, ok, kinv, alpha)


def _newton_direction(grad, hess, theta, lo, hi):
    """Projected Newton direction (b, p) and predicted decrease 1/2 g^T H^-1 g (b,), per point."""
    # Parameters at a bound with the gradient pointing out of the box stay where they are.
    blocked = ((theta <= lo) & (grad > 0)) | ((theta >= hi) & (grad < 0))
    free = (~blocked).to(theta.dtype)
    g = grad * free
    h = hess * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
    evals, evecs = torch.linalg.eigh(h)
    evals = evals.abs().clamp_min(MIN_CURVATURE)  # |eigenvalue|: a descent direction even if H is indefinite
    coef = _bmv(evecs.transpose(-1, -2), g) / evals
    direction = -_bmv(evecs, coef)
    decrease = 0.5 * (coef * coef * evals).sum(-1)
    largest = direction.abs().amax(-1, keepdim=True)
    direction = direction * torch.clamp(MAX_LOG_STEP / largest.clamp_min(1e-300), max=1.0)
    return direction * free, decrease


@dataclass
class Fit:
    """Result of :func:`newton_fit` for b objects (full batch layout)."""

    theta: torch.Tensor  # (b, p) final parameters
    steps: torch.Tensor  # (b,) int64 Newton iterations (loss evaluations after the start)
    loss: torch.Tensor  # (b,) negative log marginal likelihood per real point at theta
    kinv: torch.Tensor | None  # (b, n, n) K^-1 at theta (rows/columns of padding: 0); or None and:
    alpha: torch.Tensor  # (b, n) K^-1 y at theta
    chol: torch.Tensor | None = None  # (b, n, n) lower Cholesky factor of K at theta, where kinv is None


def _scan_start(geom: Geometry, theta: torch.Tensor, loss: torch.Tensor, log_ls_w_fixed: torch.Tensor | None,
                candidates: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``theta`` with the time length scale of lowest loss among ``theta``'s (loss ``loss``) and ``candidates``.

    A Matern GP's likelihood in the time length scale is often bimodal (a slow trend
    plus noise, or a fast variation); Newton from one start finds the nearest mode,
    so a coarse scan first picks the better basin. Each candidate costs a batched
    Cholesky and a triangular solve (no inverse, no derivatives).
    """
    best_loss, best = loss.clone(), theta[:, 1].clone()
    for candidate in candidates.clamp(float(lo[1]), float(hi[1])):
        trial = theta.clone()
        trial[:, 1] = candidate
        trial_loss = evaluate(geom, trial, log_ls_w_fixed, derivatives=False, inverse=False).loss
        better = trial_loss < best_loss
        best_loss = torch.where(better, trial_loss, best_loss)
        best = torch.where(better, candidate, best)
    theta = theta.clone()
    theta[:, 1] = best
    return theta


def newton_fit(geom: Geometry, theta0: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
               log_ls_w_fixed: torch.Tensor | None, *, n_iter: int, tol: float,
               start_log_ls_t: torch.Tensor | None = None) -> Fit:
    """Minimise every object's loss from ``theta0`` within ``[lo, hi]`` (each (p,)).

    ``start_log_ls_t``: other starting log time length scales to scan first
    (:func:`_scan_start`), or None.

    Raises
    ------
    CholeskyFailed
        If the covariance of some object is not positive definite at ``theta0``.
    """
    b, p = theta0.shape
    n_full = geom.y.shape[1]
    device, dtype = theta0.device, theta0.dtype
    theta = torch.maximum(torch.minimum(theta0, hi), lo)
    out = Fit(theta=theta.clone(), steps=torch.zeros(b, dtype=torch.long, device=device),
              loss=torch.zeros(b, dtype=dtype, device=device),
              kinv=torch.zeros(b, n_full, n_full, dtype=dtype, device=device),
              alpha=torch.zeros(b, n_full, dtype=dtype, device=device))
    if b == 0:
        return out
    idx = torch.arange(b, device=device)  # rows of the batch still being optimised
    sub, fixed_w = geom, log_ls_w_fixed
    # The loss alone at the start (a Cholesky and a triangular solve), then the scan;
    # derivatives and K^-1 only at the chosen start.
    start = evaluate(sub, theta, fixed_w, derivatives=False, inverse=n_iter <= 0)
    if not bool(start.ok.all()):
        raise CholeskyFailed(f"covariance not positive definite at the initial point for "
                             f"{int((~start.ok).sum())} object(s)")
    per_point = 1.0 / sub.n_real
    if n_iter <= 0:
        out.loss, out.kinv, out.alpha = start.loss * per_point, start.kinv, start.alpha
        return out
    if start_log_ls_t is not None and len(start_log_ls_t):
        theta = _scan_start(sub, theta, start.loss, fixed_w, start_log_ls_t, lo, hi)
    terms = evaluate(sub, theta, fixed_w)
    if not bool(terms.ok.all()):  # the scan factorised these same matrices; kept as a guard
        raise CholeskyFailed(f"covariance not positive definite at the scanned start for "
                             f"{int((~terms.ok).sum())} object(s)")
    loss, kinv, alpha = terms.loss * per_point, terms.kinv, terms.alpha
    grad, hess = terms.grad * per_point[:, None], terms.hess * per_point[:, None, None]
    direction, decrease = _newton_direction(grad, hess, theta, lo, hi)
    fraction = torch.ones(b, dtype=dtype, device=device)
    n_shrink = torch.zeros(b, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)

    def finish(rows: torch.Tensor, n_steps) -> None:
        n = kinv.shape[-1]
        target = idx[rows]
        out.theta[target] = theta[rows]
        out.steps[target] = n_steps
        out.loss[target] = loss[rows]
        out.kinv[target, :n, :n] = kinv[rows]
        out.alpha[target, :n] = alpha[rows]

    for step in range(1, n_iter + 1):
        converged = (decrease < tol * loss.abs().clamp_min(1.0)) | (n_shrink > MAX_BACKTRACKS)
        newly = converged & ~done
        if bool(newly.any()):
            finish(newly, step - 1)
            done = done | newly
        if bool(done.all()):
            return out
        if int(done.sum()) >= COMPACT_FRACTION * len(done):  # compact: drop converged objects
            keep = torch.nonzero(~done).squeeze(-1)
            sub = sub.select(keep, trim=False)  # the padded size must not depend on batch mates
            n = sub.y.shape[1]
            idx, theta, loss, grad, hess = idx[keep], theta[keep], loss[keep], grad[keep], hess[keep]
            kinv, alpha = kinv[keep, :n, :n], alpha[keep, :n]
            direction, decrease, fraction = direction[keep], decrease[keep], fraction[keep]
            n_shrink, done = n_shrink[keep], done[keep]
            fixed_w = None if fixed_w is None else fixed_w[keep]
            per_point = 1.0 / sub.n_real
        trial = torch.maximum(torch.minimum(theta + fraction[:, None] * direction, hi), lo)
        trial = torch.where(done[:, None], theta, trial)
        t = evaluate(sub, trial, fixed_w)
        t_loss = t.loss * per_point
        better = t.ok & (t_loss <= loss) & ~done
        if bool(better.all()):  # the common case: take the new state wholesale
            theta, loss, kinv, alpha = trial, t_loss, t.kinv, t.alpha
            grad, hess = t.grad * per_point[:, None], t.hess * per_point[:, None, None]
        else:
            rows = torch.nonzero(better).squeeze(-1)
            theta[rows] = trial[rows]
            loss[rows] = t_loss[rows]
            grad[rows] = t.grad[rows] * per_point[rows, None]
            hess[rows] = t.hess[rows] * per_point[rows, None, None]
            kinv[rows] = t.kinv[rows]
            alpha[rows] = t.alpha[rows]
        new_direction, new_decrease = _newton_direction(grad, hess, theta, lo, hi)
        direction = torch.where(better[:, None], new_direction, direction)
        decrease = torch.where(better, new_decrease, decrease)
        fraction = torch.where(better, torch.ones_like(fraction), fraction * BACKTRACK)
        n_shrink = torch.where(better, torch.zeros_like(n_shrink), n_shrink + 1)
    left = ~done
    if bool(left.any()):  # out of iterations
        finish(left, n_iter)
    return out


def posterior(theta: torch.Tensor, log_ls_w_fixed: torch.Tensor | None, x_train: torch.Tensor,
              n_real: torch.Tensor, kinv: torch.Tensor | None, alpha: torch.Tensor, x_test: torch.Tensor,
              chunk_elements: int, chol: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std (each (b, M)) of the latent f at ``x_test`` (M, 2).

    ``kinv`` and ``alpha`` are K^-1 and K^-1 y at ``theta`` (from :class:`Fit`);
    padded training points are masked out. With ``kinv`` None the variance comes
    from the lower Cholesky factor ``chol`` of K instead, ``|L^-1 k_*|^2`` by a
    triangular solve: ~4x cheaper than K^-1 and ``k_* K^-1 k_*`` at 200 points and
    100 test points (CPU, one thread), so used where K^-1 is not already at hand
    (the subset-of-data path). Test points go in chunks so the (b, chunk, n)
    cross-covariance stays below ``chunk_elements``.
    """
    b, n = alpha.shape
    log_ls_w = theta[:, 2] if log_ls_w_fixed is None else log_ls_w_fixed
    inv_lt2 = torch.exp(-2.0 * theta[:, 1])[:, None, None]
    inv_lw2 = torch.exp(-2.0 * log_ls_w)[:, None, None]
    s = torch.exp(theta[:, 0])
    real = (torch.arange(n, device=x_train.device)[None, :] < n_real[:, None]).to(x_train.dtype)
    weight = (s[:, None] * real)[:, None, :]
    chunk = max(1, chunk_elements // max(1, b * n))
    means, stds = [], []
    for start in range(0, x_test.shape[0], chunk):
        xt = x_test[start:start + chunk]
        dt2 = (xt[None, :, None, 0] - x_train[:, None, :, 0]).square_()
        dw2 = (xt[None, :, None, 1] - x_train[:, None, :, 1]).square_()
        sr = dt2.mul_(inv_lt2).add_(dw2.mul_(inv_lw2)).sqrt_().mul_(SQRT3)
        k_cross = torch.neg(sr).exp_().mul_(sr.add_(1.0)).mul_(weight)  # (b, m, n)
        means.append(_bmv(k_cross, alpha))
        if kinv is not None:
            var = s[:, None] - ((k_cross @ kinv) * k_cross).sum(-1)
        else:  # padded rows of L are the identity and k_cross is 0 there: they add nothing
            var = s[:, None] - torch.linalg.solve_triangular(chol, k_cross.transpose(-1, -2),
                                                              upper=False).square().sum(-2)
        stds.append(var.clamp_min(0.0).sqrt())
    return torch.cat(means, -1), torch.cat(stds, -1)
