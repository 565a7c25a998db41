r"""Chebyshev-filtered subspace iteration (Zhou & Saad 2007) for the top singular triplets.

The symmetric problem solved is ``S = A`` when ``A`` is declared hermitian (eigenvalues ``lambda``,
wanted: the largest ``|lambda|``), else the Gram operator ``S = A^T A`` (or ``A A^T``, the smaller
side; eigenvalues ``s^2``). For a *damping interval* ``[lo, a]`` that holds the unwanted part of the
spectrum (``lo = -a`` for an indefinite ``A``, ``lo = 0`` for a Gram operator), the filter

.. math::  p(S) = T_m\big((2 S - (a + lo)) / (a - lo)\big)

keeps the eigenvectors of ``S``, maps the damping interval into ``[-1, 1]`` and grows like
``cosh(m arccosh x)`` outside it: a block of ``k`` vectors filtered once with degree ``m`` gains a
factor ``T_m(x_i)`` on the wanted directions over the damped ones, about twice the exponent of ``m``
power iterations. A pass is ``m`` block products, one orthonormalisation (CholeskyQR rounds) and one
Rayleigh-Ritz step on ``k`` columns, so the cost is dominated by the products: unlike block Lanczos,
there is no basis of ``10 d`` columns to re-orthogonalise (which made Lanczos bound by dense
``O(n K^2)`` work on sparse graph operators).

Two things make it robust without a user-supplied spectrum:

* **The damping interval and the block size come from a probe**: a short block Lanczos run
  (``b`` random start vectors, orthogonalised against the whole basis) gives Ritz values
  ``theta_j`` and Gauss-quadrature weights ``w_j`` (first-block components), hence an estimate of
  the eigenvalue count ``N(t) ~ n sum_{|theta_j| >= t} w_j``. The block covers every eigenvalue
  within 10% of the estimated ``d``-th (a cluster cut by ``d`` is taken whole) and the damping
  bound ``a`` is put where ``N`` reaches twice the block size. Ritz values are lower bounds of the
  eigenvalues by interlacing, so ``a`` errs low: a low ``a`` slows convergence but never damps a
  wanted direction.
* **Each pass updates** ``a <- max(a, |theta_k|)`` (still a lower bound of ``|lambda_k|``) and
  picks the degree from the measured residuals: ``T_m(x_d) >= 2 r_d / tol``.

Every pass ends with residuals of the Ritz pairs of ``S``; the solver stops when the top ``d`` meet
``tol`` or after ``maxiter`` passes. Callers certify the result with fresh products.

Three things keep a pass cheap: the start block is random except for the probe's isolated top Ritz
vectors (``TAKE_ABOVE``: inside a cluster the probe's vectors are degenerate and would cost a
pass); on CPU the recurrence runs on column panels that stay in the last-level cache
(:func:`panel_width`), with the sparse kernel measured at the panel width; and a first pass whose
float32 rounding floor would stop short of the target is cut into segments with a CholeskyQR pass
between them (``SEGMENT_FLOOR``) rather than followed by a second pass.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._spmm import last_level_cache_bytes as _last_level_cache_bytes
from ..operators import LinearOperator
from ._common import gaussian, ix, mm, svd_small, uniform
from ._orth import (
    NEAR_ORTHONORMAL,
    _chol_factors,
    _cholqr,
    _deviation,
    _gram,
    _orthonormalize,
    _orthonormalize_local,
    default_rank_tol,
    orthonormalize,
)

__all__ = ["chebyshev_solve"]


class _Gram(LinearOperator):
    """``A^T A`` (``left=False``) or ``A A^T`` (``left=True``) of an operator, symmetric."""

    def __init__(self, op: Any, left: bool):
        self.op = op
        self.left = left

    @property
    def shape(self) -> tuple[int, int]:
        k = self.op.shape[0] if self.left else self.op.shape[1]
        return (k, k)

    @property
    def dtype(self) -> np.dtype:
        return self.op.dtype

    def _matmat(self, x: jax.Array) -> jax.Array:
        if self.left:
            return self.op.matmat(self.op.rmatmat(x))
        return self.op.rmatmat(self.op.matmat(x))

    _rmatmat = _matmat


jax.tree_util.register_pytree_node(
    _Gram, lambda g: ((g.op,), g.left), lambda left, ch: _Gram(ch[0], left)
)


class Probe(NamedTuple):
    """Ritz data of the probe run: values (by ``|theta|`` descending), weights, vectors.

    The Ritz vectors are kept factored, ``X = (Y^T Vt)^T``: the start block forms only the few it
    takes (:func:`_start`), not all ``K``.
    """

    theta: np.ndarray
    weight: np.ndarray  # Gauss-quadrature weights, summing to 1
    Vt: jax.Array  # (K + b, n) the Lanczos basis, transposed (the last b rows unused)
    Y: jax.Array  # (K + b, K) the Ritz vectors' coefficients, same order (zero in the last b rows)
    b: int  # the probe's block (columns per step)


@functools.partial(jax.jit, static_argnames=("b", "steps", "reorth"))
def _probe(S, key, *, b: int, steps: int, reorth: float | None = None):
    """Block Lanczos: ``steps`` blocks of ``b`` columns, each orthogonalised against the basis.

    ``reorth`` as in :func:`orthonormalize` (``None``: always two projections). The basis is
    stored transposed with one spare block (the last step writes its unused next block there, so
    no select copies the whole basis), and each step projects against the rows in use only
    (``_Basis.ncols``): 100k-node block model, 8 x 10 probe, 0.49 s -> 0.40 s on CPU (0.30 s with
    the product kernel measured at 8 columns; 1M nodes: 4.3 s -> 3.7 s; PROBE_REORTH for more).
    """
    n = S.shape[0]
    dt = S.dtype
    K = b * steps
    rank_tol = default_rank_tol(dt, b)

    def fill(shift=0):
        # replacement directions for deficient columns, generated only when one is (inside the
        # replacement loop): computed up front, XLA re-ran the generator in three fusions, ~40 ms
        # of a 100k-node probe
        return jnp.roll(gaussian(key, (n, 2 * b), dt)[:, b:], shift, axis=0)

    Q0 = _orthonormalize(
        gaussian(key, (n, 2 * b), dt)[:, :b], None, fill=fill, reorth=None, rank_tol=rank_tol
    ).Q
    Vt = jnp.zeros((K + b, n), dt).at[:b].set(Q0.T)
    H = jnp.zeros((K, K), dt)

    def body(i, carry):
        Vt, H = carry
        Qi = jax.lax.dynamic_slice(Vt, ix(i * b, 0), (b, n)).T
        W = S.matmat(Qi)
        Q, _, C = _orthonormalize_local(
            W, Vt, (i + 1) * b, local=2 * b, chunk=b, select_eps=PROBE_SELECT_EPS,
            fill=functools.partial(fill, 7919 * (i + 1)), reorth=reorth, rank_tol=rank_tol,
        )
        H = jax.lax.dynamic_update_slice(H, C[:K], ix(0, i * b))
        Vt = jax.lax.dynamic_update_slice(Vt, Q.T, ix((i + 1) * b, 0))
        return Vt, H

    Vt, H = jax.lax.fori_loop(0, steps, body, (Vt, H))
    # H holds V^T S V column block by column block (rows above the next block); symmetrise from
    # the upper block triangle.
    rows = jnp.arange(K)[:, None] // b
    cols = jnp.arange(K)[None, :] // b
    upper = jnp.where(rows <= cols, H, 0.0)
    Hs = jnp.where(rows == cols, 0.5 * (upper + upper.T), upper + upper.T)
    theta, Y = jnp.linalg.eigh(Hs)
    order = jnp.argsort(-jnp.abs(theta), stable=True)
    theta, Y = theta[order], Y[:, order]
    weight = jnp.sum(Y[:b] ** 2, axis=0) / b
    # the Ritz vectors stay factored (Y padded to the basis's spare rows: no copy of Vt[:K])
    return theta, weight, Vt, jnp.pad(Y, ((0, b), (0, 0)))


def probe(S, key, *, b: int, steps: int, timer=None) -> Probe:
    if timer is None:
        theta, weight, Vt, Y = _probe(S, key, b=b, steps=steps, reorth=PROBE_REORTH)
    else:
        theta, weight, Vt, Y = timer.run(
            "probe", _probe, S, key, b=b, steps=steps, reorth=PROBE_REORTH
        )
    return Probe(np.asarray(theta, np.float64), np.asarray(weight, np.float64), Vt, Y, b)


def _count(pr: Probe, n: int, t: float) -> float:
    """Estimated number of eigenvalues with ``|lambda| >= t``."""
    return float(n * np.sum(pr.weight[np.abs(pr.theta) >= t]))


def _value_at_count(pr: Probe, n: int, c: float) -> float:
    """The largest ``|theta_j|`` at which the estimated count reaches ``c``."""
    at = np.abs(pr.theta)
    cum = n * np.cumsum(pr.weight)
    idx = int(np.searchsorted(cum, c))
    return float(at[min(idx, at.size - 1)])


@jax.jit
def _matmat(S, X):
    return S.matmat(X)


@functools.partial(jax.jit, static_argnames=("take", "k"))
def _start(Vt, Y, key, *, take: int, k: int):
    """Start block: the probe's top ``take`` Ritz vectors (``Y[:, :take]^T Vt``), then random.

    The columns are uniform (:func:`~._common.uniform`), not Gaussian: any continuous law does
    for a start block, and the Gaussian draw was 80 ms of a 1.6 s solve (100k x 127). The Ritz
    vectors are written over the first columns in place (no concatenated copy of the block).
    """
    X = uniform(key, (Vt.shape[1], k), Vt.dtype)
    if not take:
        return X
    return X.at[:, :take].set(mm(Y[:, :take].T, Vt).T)


def _recurrence(S, X, lo, a, xs, degree):
    """The scaled three-term recurrence of :func:`_filter` on one block (traceable)."""
    c = 2.0 / (a - lo)
    e = (a + lo) / (a - lo)

    def L(y):
        return c * S.matmat(y) - e * y

    xs = jnp.maximum(xs, 1.0)
    t0 = jnp.ones_like(xs)
    t1 = xs
    y0 = X
    y1 = L(X) / t1[None, :]

    def step(_, carry):
        y0, y1, t0, t1 = carry
        t2 = 2.0 * xs * t1 - t0
        y2 = (2.0 * t1 / t2)[None, :] * L(y1) - (t0 / t2)[None, :] * y0
        return y1, y2, t1, t2

    out = jax.lax.fori_loop(0, degree - 1, step, (y0, y1, t0, t1))
    return out[1]


def _filter_impl(S, X, lo, a, xs, degree, panel: int = 0):
    r"""``T_m(L(S)) X`` for ``L(x) = (2 x - (a + lo)) / (a - lo)``, columns scaled by ``1/T_m(xs)``.

    The scaled three-term recurrence (``y_j = T_j(L(S)) x / T_j(xs)``) keeps columns near unit
    norm, so no overflow and a well-conditioned block for the next orthonormalisation.

    ``panel > 0``: the columns are independent, so the whole recurrence runs on panels of
    ``panel`` columns one after another, each read from and written back to its columns of the
    block (a loop over ``dynamic_slice`` / ``dynamic_update_slice``, in place); columns past the
    last whole panel form a narrower panel of their own. A panel's three iterates stay in the
    CPU's last-level cache while the sparse product gathers rows of it (see :func:`panel_width`).
    Against a ``lax.map`` over a transposed ``(panels, n, panel)`` copy of the block (and a
    zero-padded last panel): no transposed copies in and out, 0.82 s against 0.85 s for degree 10
    on 100k x 128 (2-core CPU, interleaved), the same values to the bit.
    """
    if not panel:
        return _recurrence(S, X, lo, a, xs, degree)
    n, k = X.shape
    q, rem = divmod(k, panel)

    def one(j, Y):
        Xp = jax.lax.dynamic_slice(Y, ix(0, j * panel), (n, panel))
        xp = jax.lax.dynamic_slice(xs, ix(j * panel), (panel,))
        return jax.lax.dynamic_update_slice(
            Y, _recurrence(S, Xp, lo, a, xp, degree), ix(0, j * panel)
        )

    Y = jax.lax.fori_loop(0, q, one, X)
    if rem:
        c = q * panel
        Y = Y.at[:, c:].set(_recurrence(S, Y[:, c:], lo, a, xs[c:], degree))
    return Y


#: :func:`_filter_impl` compiled; ``_filter_inplace`` donates ``X`` (the solver's start block or
#: orthonormalised block, not used again), so the filter writes its output over it.
_filter = jax.jit(_filter_impl, static_argnames=("panel",))
_filter_inplace = jax.jit(_filter_impl, static_argnames=("panel",), donate_argnames=("X",))


#: The probe: block Lanczos with blocks of PROBE_BLOCK columns, PROBE_COLUMNS columns in all. Blocks
#: of 16 (80 or 96 columns) were tried: no faster at 100k nodes, and their estimates scattered (the
#: bulk block model's gapless cut was missed in 2 of 3 seeds; kNN's block ranged 88-184).
PROBE_BLOCK = 8
PROBE_COLUMNS = 80
#: The probe's block Gram-Schmidt projects out its basis a second time only where a column lost more
#: than half its norm in the first projection (``orthonormalize(reorth=...)``). Its estimates were
#: the same to 4 digits as with two projections always (block model 100k and 1M, bulk block model,
#: kNN 50k; two keys each), and the 1M-node probe took 2.6-2.8 s instead of 3.3 s.
PROBE_REORTH = 0.5
#: Each probe step projects out its last two blocks first (the three-term couplings) and then
#: the basis, subtracting only the rows whose coefficients exceed this many eps (on CPU; see
#: ``_orth._project_selective``; ``None``: all), as auto's block Lanczos does for cheap products.
#: The plans are the same to 4 digits (block, degree, d-th value, stretch, gapless: block models
#: 100k and bulk, kNN 50k, 4 keys each); the 100k probe took 0.229 s against 0.243 s
#: (interleaved medians of 8), the 1M one no different within the noise (3.74 / 3.69 s).
PROBE_SELECT_EPS = 8.0
#: Degrees added to the first pass's estimate (the probe's values are lower bounds). Measured on
#: the 1M-node block model (d = 32, block 136, float32, the start block of TAKE_ABOVE): 1 gives
#: degree 16 and a first-pass residual of 7.1e-5 (tol 1e-4: one pass, 2428 product columns);
#: 1.5 gives 17, cut into segments 9 + 8, 2.8e-5, 1.5-2 s slower. Session 9 (tol 1e-4): 0.5 gives
#: the same degree 16 there (keys 0 and 1: 8.4e-5 with block 136, and 1.4e-4 then a second pass
#: of degree 2 with block 112, the same as with 1; 0 gives 15 and a second pass on both keys).
#: On the 100k-node model (d = 64) 1 gave degree 11 and residuals 1.1e-5 to 2.1e-5 (5 keys,
#: blocks 112-128), a degree more than needed: 0.5 gives 10 and 2.8e-5 to 7.8e-5 on 17 keys, all
#: in one pass, 8% fewer product columns.
FIRST_PASS_MARGIN = 0.5
#: The start block takes the probe's Ritz vectors whose values are above this multiple of the
#: estimated ``d``-th (isolated top values, which the probe resolves), the rest is random. Inside a
#: cluster the probe's Ritz vectors are nearly degenerate (a degree-10 Krylov space of 8 vectors
#: spans about 8 directions of a tight cluster), so taking them left the block a poor cover of the
#: cluster: on a diagonal test (60 values in [0.64, 0.66], bulk in [-0.42, 0.42], n = 50,000,
#: d = 30, block 72), 40 probe vectors gave a first-pass residual of 1.2e-2 (float64 too) and a
#: second pass; with this rule 1.0e-5 in one pass. 1M-node block model: degrees [16, 3] -> [17].
TAKE_ABOVE = 1.1
#: A first pass's filter is cut into segments (a CholeskyQR pass between them) whose rounding floor
#: stays below this fraction of the pass's target residual. The floor, about ``0.2 (a / |lambda_1|)
#: eps`` times a segment's growth ratio ``T_m(x_1) / T_m(x_d)``, is calibrated on the 1M-node block
#: model (d = 32, block 136, float32): one segment of degree 17 ended at 6.7e-5 and one of 16 at
#: 7.1e-5 (the floor, not convergence, sets both), two (9 + 8) at 2.8e-5 (the model: 6e-5 and
#: 3.5e-5 for one segment of 17 and 16).
SEGMENT_FLOOR = 1.0
#: A filter panel's iterate may take this fraction of the last-level cache (three iterates live).
PANEL_CACHE_FRACTION = 0.25
#: Narrowest panel: below 16 columns the sparse products cost more per column than the cache gains.
PANEL_MIN = 16


def panel_width(S: Any, k: int) -> int:
    """Columns per filter panel for ``S`` and a block of ``k`` (0: the whole block at once).

    Panels only on CPU, for sparse operators (or the Gram operator of one), and only when the
    whole ``(n, k)`` iterate does not fit in a quarter of the last-level cache but a panel of at
    least ``PANEL_MIN`` columns does. Measured (2-core EPYC, 32 MiB L3, float32, degree 11 on a
    128-column block, 100k-node block model with 5M entries): whole block 1.45 s (ELL) / 1.64 s
    (BCSR); panels of 16 / 32 / 64: 1.13 / 1.21 / 1.18 s (BCSR), 1.79 / 1.32 / 1.44 s (ELL). On the
    1M-node model no panel fits (64 MB at 16 columns), and there wider products are cheaper per
    column (5.9 ms at 136 columns against 10 ms at 16).
    """
    from .. import operators as ops

    if jax.default_backend() != "cpu":
        return 0
    gram = isinstance(S, _Gram)
    leaf = S.op if gram else S
    if not isinstance(leaf, ops.SparseOperator):
        return 0
    n = max(leaf.shape) if gram else S.shape[0]  # a Gram's products pass through both sides
    budget = PANEL_CACHE_FRACTION * _last_level_cache_bytes()
    item = np.dtype(S.dtype).itemsize
    if budget <= 0 or n * k * item <= budget:
        return 0
    fit = int(budget // (n * item)) // 8 * 8
    if fit < PANEL_MIN:
        return 0
    # the widest panel with the block at most an eighth short of whole panels (the columns past
    # the last whole one run as a narrower panel, at about a padded panel's cost)
    for p in range(fit, PANEL_MIN - 1, -8):
        if (-(-k // p)) * p <= 1.125 * k:
            return p
    return 0


def _tuned(S: Any, width: int) -> tuple[Any, str]:
    """``S`` (an operator or its :class:`_Gram`) with its sparse kernels measured at ``width``."""
    from ._svds import _tuned_products  # _svds imports this module

    return _tuned_products(S, width, False)


@jax.jit
def _orth_once(Y):
    """One shifted CholeskyQR pass (between the segments of a first pass).

    Only the conditioning matters there (the next segment's span is the same for any basis of
    ``Y``'s), so one pass does; the pass's end orthonormalises in full.
    """
    return _cholqr(Y, shift=10.0)[0]


@jax.jit
def _orth_block(Y):
    """Basis of the filtered block ``Y``: two rounds of shifted CholeskyQR3, the last one folded.

    Returns ``(Q, Rinv, ok)``: ``Q Rinv`` is the orthonormal basis, ``Q`` the first round's output
    and ``Rinv`` the inverse Cholesky factor of its Gram (the second round's CholeskyQR pass with
    its tall product left out: :func:`_ritz` applies ``Rinv`` to ``k x k`` coefficients instead);
    ``ok`` is false when ``Q`` is not within ``NEAR_ORTHONORMAL`` of orthonormal, and the caller
    then orthonormalises it in full (:func:`_orth_full`).

    A block filtered from random columns is dominated by the top eigenvectors (condition numbers
    of 1e6 and more, and numerically rank deficient, 3.7e16-8.4e16 measured, once the columns past
    the wanted cluster collapse onto it). One round of :func:`orthonormalize` (shifted CholeskyQR,
    CholeskyQR, a third pass when the Gram asks) then leaves ``|Q^T Q - I|`` at 1e-2 in float32;
    a second round on its output brings it to rounding (8e-7), and the Ritz residuals of the top
    ``d`` match those after Householder QR. Only Gram products and triangular factors of
    ``k x k`` matrices (no Householder QR of the tall block, whose LAPACK call runs on one thread
    here). Measured (2-core CPU, load 6-7, float32, one filter pass from the solver's start):
    100k-node block model, 100k x 128: Householder 4.5 s, two rounds 1.1 s, top-64 relative
    residuals 2.05e-5 and 2.13e-5; kNN 50k Gram, 50k x 184: 3.4 s against 0.83 s, 1.91e-3 and
    1.88e-3 (one pass of two). Whole solves, same process, interleaved: 1M-node block model
    (d = 32, 136 columns; load 5.5) 77.5 s against 111.7 s wall, 54.9 s against 75.0 s CPU,
    2836 against 2972 product columns, 32/32 certified, max residual 3.8e-5 against 2.6e-5;
    100k-node block model 4.79 s against 4.95 s wall (products dominate there). Folding the
    second round's product saves one of the eight tall products.
    """
    Q = orthonormalize(Y).Q
    g = _gram(Q)
    _, rinv = _chol_factors(g)
    ok = (_deviation(g) <= NEAR_ORTHONORMAL) & jnp.all(jnp.isfinite(rinv))
    return Q, rinv, ok


@jax.jit
def _orth_full(Q):
    """The second round in full, for a first round that left ``Q`` far from orthonormal."""
    return orthonormalize(Q).Q, jnp.eye(Q.shape[1], dtype=Q.dtype)


@functools.partial(jax.jit, static_argnames=("d",))
def _ritz(S, Q, Rinv, *, d: int):
    """Rayleigh-Ritz of ``S`` on the orthonormal basis ``Q Rinv``, sorted by ``|theta|``.

    Returns ``(theta, C, X_d, res_d)``: all ``k`` values, the Ritz vectors' coefficients on ``Q``
    (``X = Q C``, ``C = Rinv Z`` for the eigenvectors ``Z`` of the projected matrix), and the top
    ``d`` Ritz vectors ``Q C[:, :d]`` with their residual norms. The other ``k - d`` vectors are
    formed only when another pass needs them (:func:`_complete`): on the last pass the two tall
    products are ``n x k x d`` instead of ``n x k x k``. ``W = S Q`` gives ``S X = W C``.
    """
    W = S.matmat(Q)
    H = mm(Rinv.T, mm(mm(Q.T, W), Rinv))
    theta, Z = jnp.linalg.eigh(0.5 * (H + H.T))
    order = jnp.argsort(-jnp.abs(theta), stable=True)
    theta, Z = theta[order], Z[:, order]
    C = mm(Rinv, Z)
    Cd = C[:, :d]
    X = mm(Q, Cd)
    R = mm(W, Cd) - X * theta[None, :d]
    res = jnp.sqrt(jnp.sum(R * R, axis=0))
    return theta, C, X, res


@functools.partial(jax.jit, static_argnames=("d",))
def _complete(Q, C, Xd, *, d: int):
    """All ``k`` Ritz vectors: the top ``d`` given, the rest ``Q C[:, d:]``."""
    return jnp.concatenate([Xd, mm(Q, C[:, d:])], axis=1)


def _rayleigh_ritz(S, Y, d: int, timer=None):
    """Orthonormalise ``Y`` (:func:`_orth_block`), then :func:`_ritz`.

    Returns ``(Q, theta, C, X_d, res_d)``: the Ritz vectors are ``Q C`` (``Q`` itself is the
    first round's block, orthonormal only after ``C``'s folded factor).

    One CholeskyQR2 round was not enough here: a single plain CholeskyQR in float32 left a
    residual floor of 7e-4 on a 100k-node block model where Householder QR reached the float64
    result, 3e-5; two rounds of shifted CholeskyQR3 reach it.
    """
    run = (lambda _, f, *a, **k: f(*a, **k)) if timer is None else timer.run
    Q, Rinv, ok = run("orthonormalisation", _orth_block, Y)
    if not bool(ok):
        Q, Rinv = run("orthonormalisation", _orth_full, Q)
    return (Q, *run("rayleigh-ritz", _ritz, S, Q, Rinv, d=d))


@functools.partial(jax.jit, static_argnames=("d", "left"))
def _svd_extract(A, X, key, *, d: int, left: bool):
    """Singular triplets from the right (``left=False``) or left basis ``X`` of a Gram solve."""
    B = A.rmatmat(X) if left else A.matmat(X)
    o = _orthonormalize(  # the fill is drawn only if a column is deficient
        B, None, fill=lambda: gaussian(key, B.shape, B.dtype), reorth=None,
        rank_tol=default_rank_tol(B.dtype, B.shape[1]),
    )
    P, s, Z = svd_small(o.R)
    other = mm(o.Q, P[:, :d])
    mine = mm(X, Z[:, :d])
    return (s[:d], mine, other) if left else (s[:d], other, mine)


def _limit(theta: np.ndarray, tol: float, hermitian: bool) -> np.ndarray:
    """Residual bound of ``S``'s Ritz pairs meeting ``tol`` in the svds certificate.

    Hermitian: ``|S x - theta x| <= tol |theta_1|``. Gram: ``|A^T u - s v| = |S x - theta x| / s``
    must be at most ``tol s_1``, i.e. ``|S x - theta x| <= tol sqrt(theta_1 theta_i)``.
    """
    th = np.maximum(np.abs(theta), np.finfo(np.float32).tiny)
    return tol * (np.full_like(th, th[0]) if hermitian else np.sqrt(th[0] * th))


class ChebyshevResult(NamedTuple):
    s: jax.Array
    U: jax.Array
    V: jax.Array
    sign: jax.Array
    passes: int
    matvecs: int
    block: int
    note: str


class Plan(NamedTuple):
    """What the probe says about a Chebyshev solve: block, damping bound, estimated work.

    Attributes:
        S: the symmetric operator filtered (``A``, or its Gram operator).
        left: ``S = A A^T`` (the smaller side) rather than ``A^T A``.
        probe: the probe's Ritz data.
        matvecs: product columns of the probe (``A`` and ``A^T`` columns counted apart).
        lam_d: estimated ``d``-th eigenvalue magnitude of ``S``.
        cluster: estimated count of eigenvalues within 10% of ``lam_d``.
        wide: estimated count above ``lam_d / 2``.
        block: the block ``k`` (capped at ``cap``).
        uncapped: the block before the cap.
        stretch: estimated count of singular values within 10% of the ``d``-th (of ``A``), which
            a block must hold whole for the filter to separate the wanted ones.
        cap: the largest block allowed.
        bound: the damping bound ``a``.
        degree: estimated filter degree of the first pass.
        columns: estimated product columns of the whole solve (``1.5 block (degree + 1)``,
            times 2 for a Gram operator).
    """

    S: Any
    left: bool
    probe: Probe
    matvecs: int
    lam_d: float
    cluster: float
    wide: float
    block: int
    uncapped: int
    stretch: float
    cap: int
    bound: float
    degree: float
    columns: float

    @property
    def gapless(self) -> bool:
        """The cut at ``d`` falls inside a stretch of spectrum wider than the largest block."""
        return 1.15 * self.stretch > self.cap

    def describe(self) -> str:
        """One line for ``info.reason``."""
        return (
            f"probe: estimated d-th value {self.lam_d:.3g}, {self.stretch:.0f} singular values "
            f"within 10% of the d-th, {self.wide:.0f} values above half of it; block {self.block}"
            + (f" (capped from {self.uncapped})" if self.uncapped > self.block else "")
            + f", first-pass degree ~{self.degree:.0f}, ~{self.columns:.0f} product columns"
        )


def block_cap(d: int, n: int, itemsize: int, max_block_bytes: int) -> int:
    """The largest Chebyshev block: ``max(4 (d + over), 256)`` columns and ``max_block_bytes``."""
    over = max(8, d // 4)
    by_d = max(4 * (d + over), 256)
    by_mem = max(d, max_block_bytes // max(1, n * itemsize))
    return int(max(d, min(by_d, by_mem, max(d, n // 2))))


def plan(
    A: Any,
    d: int,
    key: jax.Array,
    tol: float,
    *,
    hermitian: bool,
    block_size: int | None = None,
    bound: float | None = None,
    max_block_bytes: int = 2**30,
    timer=None,
) -> Plan:
    """Probe the spectrum and choose the block and damping bound (see module docs)."""
    m, n = A.shape
    left = (not hermitian) and m < n
    S = A if hermitian else _Gram(A, left)
    N = S.shape[0]
    b = PROBE_BLOCK
    steps = max(4, min(PROBE_COLUMNS // b, (N // b) - 1))
    # the probe's narrow products run on the kernel measured at its width (sparse, CPU, >= 1M
    # entries; cached per pattern), the filter's wide ones keep theirs
    pr = probe(_tuned(S, b)[0], key, b=b, steps=steps, timer=timer)
    mv = b * steps * (1 if hermitian else 2)
    lam_d = _value_at_count(pr, N, d)
    if d <= pr.theta.size:
        # the d-th Ritz value bounds the d-th eigenvalue magnitude from below (interlacing, at
        # each end of the spectrum); the quadrature count can miss isolated top values
        lam_d = max(lam_d, abs(float(pr.theta[d - 1])))
    cluster = _count(pr, N, 0.9 * lam_d)
    over = max(8, d // 4)
    # the block: the whole cluster at the cut; and down to half the d-th value when that takes at
    # most twice as many columns (a decaying spectrum, where the (k+1)-th value sets the rate; on a
    # dense bulk below the cut a wider block costs more than the passes it saves)
    k_basic = max(d + over, int(math.ceil(1.15 * cluster)))
    wide = _count(pr, N, 0.5 * lam_d)
    k_wide = int(math.ceil(1.15 * wide))
    k = k_basic if k_wide > 2 * k_basic else max(k_basic, k_wide)
    k = int(min(-(-k // 8) * 8, max(d, N // 2)))  # a multiple of 8, at most half the dimension
    cap = block_cap(d, N, np.dtype(A.dtype).itemsize, max_block_bytes)
    # the stretch of spectrum at the cut: singular values within 10% of the d-th (0.81 lam_d for
    # a Gram operator, whose eigenvalues are squares), which a block must hold whole
    stretch = _count(pr, N, (0.9 if hermitian else 0.81) * lam_d)
    uncapped = k
    k = min(k, cap)
    if block_size is not None:
        k = uncapped = int(block_size)  # as given (svds checked d <= block_size <= min(m, n))
    k = max(k, d)
    if bound is None:
        a = _value_at_count(pr, N, 2 * k)
        a = min(a, 0.8 * lam_d)
    else:
        a = float(bound)
    # an operator of low rank: keep the interval away from zero
    a = max(a, 1e-3 * abs(float(pr.theta[0])), float(np.finfo(np.float32).tiny) ** 0.5)
    lo = -a if hermitian else 0.0
    x_d = max((2 * lam_d - (a + lo)) / (a - lo), 1.0 + 1e-3)
    need = max(math.sqrt(N / k) / (0.5 * tol), 2.0)
    deg = math.acosh(need) / math.acosh(x_d) + FIRST_PASS_MARGIN
    cols = 1.5 * k * (deg + 1) * (1 if hermitian else 2)
    return Plan(S, left, pr, mv, lam_d, cluster, wide, k, uncapped, stretch, cap, a, deg, cols)


def chebyshev_solve(
    A: Any,
    d: int,
    key: jax.Array,
    tol: float,
    *,
    hermitian: bool,
    block_size: int | None = None,
    maxiter: int | None = None,
    max_degree: int = 24,
    bound: float | None = None,
    max_block_bytes: int = 2**30,
    plan_: Plan | None = None,
    timer=None,
) -> ChebyshevResult:
    """Top-``d`` singular triplets by Chebyshev-filtered subspace iteration (see module docs).

    ``plan_`` (from :func:`plan` with the same key and settings) skips the probe. ``timer`` (a
    :class:`~jaxcontext.linalg._stages.StageTimer`): time the stages (the filter's products are
    its degree times a measured block product; the rest of the filter is ``filter recurrence``).
    """
    m, n = A.shape
    dt = A.dtype
    passes_max = 30 if maxiter is None else maxiter
    kp, kr = jax.random.split(key)
    if plan_ is None:
        plan_ = plan(
            A, d, kp, tol, hermitian=hermitian, block_size=block_size, bound=bound,
            max_block_bytes=max_block_bytes, timer=timer,
        )
    S, left, pr, mv = plan_.S, plan_.left, plan_.probe, plan_.matvecs
    N = S.shape[0]
    b, steps = pr.b, pr.Y.shape[1] // pr.b
    lam_d, cluster, wide, k, a = plan_.lam_d, plan_.cluster, plan_.wide, plan_.block, plan_.bound
    lo_of = (lambda a: -a) if hermitian else (lambda a: 0.0)
    # --- start block: the probe's top Ritz vectors, completed with random columns ------------
    K = pr.Y.shape[1]
    take = min(k, K // 2, int(np.sum(np.abs(pr.theta) > TAKE_ABOVE * lam_d)))
    X = _start(pr.Vt, pr.Y, kr, take=take, k=k)
    xs = np.r_[np.abs(pr.theta[:take]), np.zeros(k - take)]
    res = None
    theta = None
    passes = 0
    degrees: list[Any] = []
    eps = float(np.finfo(np.dtype(dt)).eps)
    # the filter's products: column panels that stay in cache where they fit, on the kernel
    # measured at the panel width; else the whole block on the operator's kernel
    panel = panel_width(S, k)
    Sf, kernel_note = _tuned(S, panel) if panel else (S, "")
    hist: list[float] = []
    target = 0.5 * tol
    while passes < passes_max:
        lo = lo_of(a)
        xs_map = (2 * xs - (a + lo)) / (a - lo)
        if res is None:
            # a start block's unwanted part: about sqrt(N / k) times its wanted part
            r_d = math.sqrt(N / k)
            x_d = (2 * lam_d - (a + lo)) / (a - lo)
        else:
            r_d = float(np.max(res[:d] / _limit(theta[:d], 1.0, hermitian)))
            x_d = float(xs_map[d - 1])
        x_d = max(x_d, 1.0 + 1e-3)
        need = max(r_d / target, 2.0)
        deg = math.acosh(need) / math.acosh(x_d)
        x_1 = max(
            float((2 * abs(theta[0] if theta is not None else pr.theta[0]) - (a + lo)) / (a - lo)),
            1.01,
        )
        cap = max(2, int(60 / math.acosh(x_1)))  # growth below e^60: no float32 overflow
        seg = cap  # degree of one segment: every pass but the first is one segment
        if res is None:
            # The probe's estimate is optimistic (its values are lower bounds): FIRST_PASS_MARGIN
            # degrees more.
            # Random start columns are dominated by the top eigenvectors, by T_m(x_1) / T_m(x_d),
            # and the wanted directions keep only about eps T_m(x_1) / T_m(x_d) of relative
            # accuracy (1M-node block model, random start: 7.1e-5 at degree 16, 6.7e-5 at 17; the
            # larger floors of 3.3e-4 to 9e-4 recorded before were mostly the degenerate start
            # block that TAKE_ABOVE removed). So the first pass is split into segments whose
            # floor stays under SEGMENT_FLOOR times the target, with a CholeskyQR pass between
            # them: span(p2(S) orth(p1(S) X)) = span(p2(S) p1(S) X), and T_m(x)^2 ~ T_2m(x) / 2,
            # so two segments of degree m damp like one of 2 m. Later passes start from Ritz
            # vectors scaled by their own values, which do not have that problem.
            deg = deg + FIRST_PASS_MARGIN
            spread = math.acosh(x_1) - math.acosh(x_d)
            if spread > 0:
                # the residual floor relative to |theta_1|: about 0.2 (a / |theta_1|) eps times the
                # growth ratio (the rounding error's part in the damped spectrum, of size <= a)
                top = abs(float(pr.theta[0]))
                floor = 0.2 * (a / top) * eps
                floor_ok = math.log(max(SEGMENT_FLOOR * target / floor, 4.0)) / spread
                seg = max(2, min(cap, int(floor_ok)))
        total = int(min(max(int(math.ceil(deg)), 2), max_degree))
        if res is not None:
            total = seg = min(total, cap)
        count = -(-total // seg)
        segments = [total // count + (1 if i < total % count else 0) for i in range(count)]
        deg = total
        xs_seg = jnp.asarray(xs_map, dt)
        Y = X  # each segment filters the previous one's output
        for i, deg_i in enumerate(segments):
            if i:
                X = _orth_once(Y) if timer is None else timer.run(
                    "orthonormalisation", _orth_once, Y
                )
                xs_seg = jnp.zeros_like(xs_seg)  # orthonormal columns: no scaling needed
            fargs = (Sf, X, jnp.asarray(lo, dt), jnp.asarray(a, dt), xs_seg, deg_i)
            if timer is None:
                Y = _filter_inplace(*fargs, panel=panel)
            else:
                # one product on a contiguous panel (the slice copied outside) or on the block,
                # measured before the filter takes X over
                if panel:
                    first = jax.block_until_ready(jnp.array(X[:, :panel]))
                    unit = timer.measure(_matmat, Sf, first) * (k / panel)
                else:
                    unit = timer.measure(_matmat, Sf, X)
                Y, t_filter = timer.timed(
                    "filter", _filter_inplace, *fargs, panel=panel, donate=True
                )
                timer.add("products", deg_i * unit, deg_i)
                timer.add("filter recurrence", max(0.0, t_filter - deg_i * unit))
        Q, th, C, Xd, rs = _rayleigh_ritz(S, Y, d, timer)
        theta = np.asarray(th, np.float64)
        res = np.asarray(rs, np.float64)
        xs = np.abs(theta)
        passes += 1
        degrees.append(deg if len(segments) == 1 else "+".join(map(str, segments)))
        hist.append(float(np.max(res[:d] / _limit(theta[:d], 1.0, hermitian))))
        mv += (deg + 1) * k * (1 if hermitian else 2)
        # a lower bound of |lambda_k| (Ritz values interlace), kept below the d-th Ritz value so
        # that the wanted directions are never inside the damping interval
        a = min(max(a, float(np.abs(theta[k - 1]))), 0.8 * float(np.abs(theta[d - 1])))
        if passes >= passes_max or np.all(res[:d] <= _limit(theta[:d], tol, hermitian)):
            X = Xd
            break
        X = _complete(Q, C, Xd, d=d) if timer is None else timer.run(
            "rayleigh-ritz", _complete, Q, C, Xd, d=d
        )
    capped = f" (capped from {plan_.uncapped})" if plan_.uncapped > k else ""
    note = (
        f"Chebyshev-filtered subspace iteration: block {k}{capped}"
        + (f", filter in panels of {panel} columns" if panel else "")
        + (f" ({kernel_note})" if kernel_note else "")
        + f", damping bound {a:.3g}, degrees [{', '.join(map(str, degrees))}], relative "
        f"residuals {', '.join(f'{h:.1e}' for h in hist)} "
        f"(probe: {b} x {steps} block Lanczos, estimated d-th value {lam_d:.3g}, "
        f"{cluster:.0f} values above 0.9 times it, {wide:.0f} above half of it)"
    )
    if hermitian:
        th = jnp.asarray(theta[:d], dt)
        sign = jnp.where(th < 0, -1.0, 1.0).astype(dt)
        Vd = X[:, :d]
        return ChebyshevResult(jnp.abs(th), Vd * sign[None, :], Vd, sign, passes, mv, k, note)
    ekey = jax.random.fold_in(kr, 1)
    if timer is None:
        s, U, V = _svd_extract(A, X, ekey, d=d, left=left)
    else:
        s, U, V = timer.run("extraction", _svd_extract, A, X, ekey, d=d, left=left)
    mv += d
    return ChebyshevResult(s, U, V, jnp.ones((d,), dt), passes, mv, k, note)
