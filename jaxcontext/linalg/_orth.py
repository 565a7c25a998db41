r"""Orthonormalisation of tall blocks by matrix products: the one routine every solver uses.

:func:`orthonormalize` turns an ``(n, k)`` block ``X`` into ``Q`` with orthonormal columns,
optionally orthogonal to an orthonormal ``basis`` ``B`` (block classical Gram-Schmidt), with

.. math::  X = B C + Q R, \qquad Q^T Q = I, \qquad B^T Q = 0 .

A pass projects out the basis (``C = B^T X``, ``X <- X - B C``) and runs a Cholesky QR on the
column-scaled Gram matrix ``G = X^T X`` (``R = chol(G)``, ``Q = X R^{-1}``). The first pass shifts
the Gram by ``10 (k + 1) eps`` so that it never breaks down (shifted CholeskyQR, Fukaya et al.
2020); the second pass is a plain CholeskyQR (CholeskyQR2 / BCGS2, orthogonality at the level of
``eps``). When the second Gram shows the first pass was not enough (``cond(X)`` beyond about
``eps^{-1/2}``, or heavy cancellation in the projection), a third pass runs (shifted CholeskyQR3),
so ``cond(X)`` up to about ``1 / eps`` is handled. Without a basis, a block already within
``NEAR_ORTHONORMAL`` of orthonormal takes one plain CholeskyQR pass instead (its error is
``O(eps cond(X)^2)``); every Gram is formed once, for the check and the factorisation. Columns
that are numerically dependent on the basis and the earlier columns are replaced by random
directions when a ``key`` (or a ``fill`` block) is given.

Only products and reductions touch the tall block (no Householder QR), so XLA's partitioner keeps a
row-sharded ``X`` sharded; the ``k x k`` problems are replicated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from ._common import ix

HIGHEST = jax.lax.Precision.HIGHEST
#: Without a basis, a block whose scaled Gram is within this of the identity gets one plain
#: CholeskyQR pass (its orthogonality error is ``O(eps cond^2)``, and ``cond <= 1.7`` here).
NEAR_ORTHONORMAL = 0.25

__all__ = ["Orthonormalized", "orthonormalize"]


class Orthonormalized(NamedTuple):
    """Result of :func:`orthonormalize`: ``X = basis @ C + Q @ R``.

    Attributes:
        Q: ``(n, k)`` orthonormal columns, orthogonal to the basis.
        R: ``(k, k)`` coefficients (upper triangular unless columns were replaced).
        C: ``(p, k)`` coefficients on the basis (``(0, k)`` without a basis).
        deficient: ``(k,)`` bool, columns found numerically dependent on the basis and the earlier
            columns (replaced by random directions when a key or fill was given, else returned as
            small, unnormalised remainders).
    """

    Q: jax.Array
    R: jax.Array
    C: jax.Array
    deficient: jax.Array


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=HIGHEST)


class _Basis(NamedTuple):
    """An orthonormal basis stored *transposed*, ``Bt`` of shape ``(p, n)``.

    Row-major ``(p, n)`` storage makes both products fast ``NN``-type GEMMs on CPU (``Bt @ x`` and
    ``(C^T @ Bt)^T``; contracting the long axis of an ``(n, p)`` array ran 3-5x slower). With
    ``ncols`` given, only the first ``ncols`` rows are used: the products take the leading rows up
    to the next of at most four static row counts (multiples of ``chunk``, picked by
    ``lax.switch``), so their cost follows the used size without recompiling for each size (rows
    past ``ncols`` are masked). Up to half the rows a static leading slice is used; XLA:CPU
    copies it before the product, so larger counts read the whole (zero-padded) basis instead
    (``SLICE_FRACTION``). A loop over ``dynamic_slice`` chunks copied every chunk too and ran 2-3x
    slower on a 100k-row basis (measured, 2-core CPU: 8 columns against 144 of 256 rows, 60 ms
    against 21 ms).
    """

    Bt: jax.Array
    ncols: Any = None
    chunk: int = 0
    #: With ``ncols``: subtract only the leading rows up to the last one whose coefficient exceeds
    #: ``select`` times the column's norm (see :func:`_project_selective`; CPU only); ``None``
    #: subtracts all.
    select: float | None = None


def _project(x: jax.Array, basis: _Basis | None):
    """Return ``(x - B C, C)`` with ``C = B^T x`` (``C`` zero past ``ncols``)."""
    if basis is None:
        return x, None
    Bt = basis.Bt
    if basis.ncols is None:
        c = _mm(Bt, x)
        return x - _mm(c.T, Bt).T, c
    if basis.select is not None:
        # CPU only: there the update is a sweep of the basis from memory worth skipping; on a
        # GPU it costs microseconds, less than the branch (whose index the host reads)
        full = basis._replace(select=None)
        return jax.lax.platform_dependent(
            x, Bt, basis.ncols,
            cpu=lambda x, Bt, ncols: _project_selective(x, basis._replace(Bt=Bt, ncols=ncols)),
            default=lambda x, Bt, ncols: _project(x, full._replace(Bt=Bt, ncols=ncols)),
        )
    p = Bt.shape[0]
    views = _row_views(p, basis.chunk)

    def leading(s: int):
        def f(Bt, x, ncols):
            c = _dot_rows(s)(Bt, x, ncols)
            return _subtract_rows(s)(Bt, x, c), c

        return f

    if len(views) == 1:
        return leading(p)(Bt, x, basis.ncols)
    idx = jnp.searchsorted(jnp.asarray(views, jnp.int32), basis.ncols, side="left")
    return jax.lax.switch(idx, [leading(s) for s in views], Bt, x, basis.ncols)


def _project_selective(x: jax.Array, basis: _Basis):
    """:func:`_project` that subtracts only the coefficients that matter (``basis.select``).

    ``C = B^T x`` is computed over every used row (one sweep of the basis); the update
    ``x - B C`` (a second sweep) runs only over the leading rows up to the last one with a
    coefficient above ``select |x_j|`` in some column ``j``, rounded up to a static row count,
    and not at all when there is none. Coefficients past those rows are left in ``x`` and
    dropped from ``C`` (so ``x = B C + x'`` holds as computed), which leaves ``x'`` orthogonal to
    every basis row to within ``select`` relative to ``|x|``. In a Lanczos step whose three-term
    couplings were projected out first (``LanczosConfig.local``) the rest of the coefficients
    are rounding-level except along converged Ritz vectors (Paige), which a thick restart puts
    in the leading rows: measured on kNN 50k (Golub-Kahan, d = 64, float32, ``select`` 8 eps),
    80% of the projections needed no update and the rest 12% of the rows on average.
    """
    Bt, ncols = basis.Bt, basis.ncols
    p = Bt.shape[0]
    rows = jnp.arange(p)
    views = _row_views(p, basis.chunk)
    view_arr = jnp.asarray(views, jnp.int32)
    if len(views) == 1:
        c = _dot_rows(p)(Bt, x, ncols)
    else:
        idx = jnp.searchsorted(view_arr, ncols, side="left")
        c = jax.lax.switch(idx, [_dot_rows(s) for s in views], Bt, x, ncols)
    x_norm = jnp.sqrt(jnp.sum(x * x, axis=0))
    big = jnp.any(jnp.abs(c) > basis.select * x_norm[None, :], axis=1)
    last = jnp.max(jnp.where(big, rows + 1, 0))
    # branch 0: nothing to subtract; branch i + 1: the leading views[i] rows
    uidx = jnp.where(last > 0, jnp.searchsorted(view_arr, last, side="left") + 1, 0)
    used = jnp.concatenate([jnp.zeros((1,), jnp.int32), view_arr])[uidx]
    c = jnp.where((rows < used)[:, None], c, 0.0)
    y = jax.lax.switch(uidx, [lambda Bt, x, c: x, *map(_subtract_rows, views)], Bt, x, c)
    return y, c


def _leading_rows(Bt: jax.Array, s: int) -> jax.Array:
    """``Bt[:s]``, or ``Bt`` itself when ``s`` is all of it (no slice to copy)."""
    return Bt[:s] if s < Bt.shape[0] else Bt


def _dot_rows(s: int):
    """``(Bt, x, ncols) -> C = Bt[:s] x``, a branch of the projections' ``lax.switch``.

    Rows from ``ncols`` on are zero, and ``C`` is padded to ``Bt``'s rows.
    """

    def f(Bt, x, ncols):
        c = jnp.where((jnp.arange(s) < ncols)[:, None], _mm(_leading_rows(Bt, s), x), 0.0)
        return jnp.pad(c, ((0, Bt.shape[0] - s), (0, 0)))

    return f


def _subtract_rows(s: int):
    """``(Bt, x, C) -> x - Bt[:s]^T C[:s]`` (a branch of the projections' ``lax.switch``)."""
    return lambda Bt, x, c: (x.T - _mm(c[:s].T, _leading_rows(Bt, s))).T


#: A static leading slice ``Bt[:s]`` of a basis is copied before its product (XLA:CPU, jax 0.10:
#: a copy of ``s`` rows, then the product reads them again), so above this fraction of the rows
#: the products read the whole (zero-padded) basis instead. Measured (2-core EPYC, 50k rows,
#: 8 columns, ``B^T x`` then ``x - B C``): 256 rows, 192 used: slice 6.1-7.9 ms, whole 4.8-5.0
#: ms; 128 used: 3.0-3.3 against 4.7-6.1; 64 used: 1.6-1.8 against 3.9-4.9.
SLICE_FRACTION = 0.5


def _row_views(p: int, chunk: int) -> tuple[int, ...]:
    """Static row counts the products use.

    :func:`_row_sizes` up to ``SLICE_FRACTION p``, then ``p`` (the whole basis, no slice).
    """
    return tuple(sorted({s if s <= SLICE_FRACTION * p else p for s in _row_sizes(p, chunk)}))


def default_rank_tol(dtype: Any, k: int) -> float:
    """Default ``rank_tol`` of :func:`orthonormalize` for ``k`` columns: ``100 sqrt(k) eps``."""
    return 100.0 * float(jnp.finfo(dtype).eps) * max(1.0, k**0.5)


def _row_sizes(p: int, chunk: int, branches: int = 4) -> tuple[int, ...]:
    """At most ``branches`` static row counts (multiples of ``chunk``, the last ``p``) to slice."""
    per = math.ceil(p / branches)
    g = max(chunk, math.ceil(per / chunk) * chunk)
    return (*range(g, p, g), p)


def _gram(x: jax.Array) -> jax.Array:
    """``x^T x``, symmetrised."""
    g = _mm(x.T, x)
    return 0.5 * (g + g.T)


def _deviation(g: jax.Array) -> jax.Array:
    """``max |G_s - I|`` of the unit-diagonal scaled Gram ``G_s`` (zero columns left out)."""
    nrm = jnp.sqrt(jnp.maximum(jnp.diagonal(g), 0.0))
    live = nrm > 0
    nrm = jnp.where(live, nrm, 1.0)
    dg = jnp.abs(g / nrm[:, None] / nrm[None, :] - jnp.eye(g.shape[0], dtype=g.dtype))
    return jnp.max(jnp.where(live[:, None] & live[None, :], dg, 0.0))


def _cholqr(
    x: jax.Array, *, shift: float = 0.0, guard: bool = False, gram: jax.Array | None = None
):
    """One Cholesky QR pass on the column-scaled Gram. Returns ``(Q, R)``.

    ``shift`` (in units of ``(k + 1) eps``) is added to the unit-diagonal scaled Gram; with
    ``guard`` a failed plain factorisation falls back to a shift of 10. Zero columns stay zero.
    ``gram``: ``x``'s Gram (:func:`_gram`) when the caller has it already (one product fewer).
    """
    r, rinv = _chol_factors(_gram(x) if gram is None else gram, shift=shift, guard=guard)
    return _mm(x, rinv), r


def _chol_factors(g: jax.Array, *, shift: float = 0.0, guard: bool = False):
    """``(R, R^{-1})`` of :func:`_cholqr` from the Gram ``g`` alone (no tall product).

    ``x R^{-1}`` is the pass's ``Q``; a caller that needs ``Q`` only in products with small
    matrices (``Q C = x (R^{-1} C)``) can skip forming it.
    """
    k = g.shape[0]
    eps = jnp.finfo(g.dtype).eps
    tiny = jnp.finfo(g.dtype).tiny
    nrm = jnp.sqrt(jnp.maximum(jnp.diagonal(g), 0.0))
    live = nrm > jnp.sqrt(tiny) * 1e3
    scale = jnp.where(live, nrm, 1.0)
    gs = g / scale[:, None] / scale[None, :]
    eye = jnp.eye(k, dtype=g.dtype)
    gs = jnp.where(live[:, None] & live[None, :], gs, eye)
    unit = (k + 1) * eps
    lower = jnp.linalg.cholesky(gs + (shift * unit) * eye if shift else gs)
    if guard:
        ok = jnp.all(jnp.isfinite(lower))
        lower = jnp.where(ok, lower, jnp.linalg.cholesky(gs + (10.0 * unit) * eye))
    r = lower.T * scale[None, :]
    rinv = solve_triangular(lower.T, eye, lower=False) / scale[:, None]
    return r, rinv


def _passes(x: jax.Array, basis: _Basis | None, reorth: float | None):
    """Projection + shifted CholeskyQR, projection + CholeskyQR, and a third pass when needed.

    Without a basis, a block already within ``NEAR_ORTHONORMAL`` of orthonormal (after column
    scaling) takes one plain CholeskyQR pass, whose orthogonality error is ``O(eps cond(x)^2)``:
    a second round on a block like the Chebyshev filter's after one round (``|Q^T Q - I|`` about
    ``4e-3``) costs one Gram and one product instead of three Grams and two products (the solver
    itself now folds that round's product into its Rayleigh-Ritz step, :func:`_chol_factors`).
    Each Gram is formed once and handed to the pass that factors it.
    """
    eps = jnp.finfo(x.dtype).eps
    if basis is None:
        g0 = _gram(x)

        def one(y):
            q, r = _cholqr(y, gram=g0)
            return q, r, None, y

        return jax.lax.cond(
            _deviation(g0) <= NEAR_ORTHONORMAL,
            one,
            lambda y: _passes_from(y, y, None, None, basis, reorth, eps, gram=g0),
            x,
        )
    x_norm = jnp.sqrt(jnp.sum(x * x, axis=0))
    x1, c1 = _project(x, basis)
    return _passes_from(x, x1, x_norm, c1, basis, reorth, eps)


def _passes_from(x, x1, x_norm, c1, basis, reorth, eps, gram=None):
    """The passes of :func:`_passes` from the projected block ``x1`` (``gram``: ``x1``'s Gram)."""
    q1, r1 = _cholqr(x1, shift=10.0, gram=gram)
    if x_norm is None:
        ratio = jnp.ones((), x.dtype)
    else:
        x1_norm = jnp.sqrt(jnp.sum(x1 * x1, axis=0))
        ratio = jnp.min(jnp.where(x_norm > 0, x1_norm / jnp.where(x_norm > 0, x_norm, 1.0), 1.0))

    if basis is None:
        x2, c2 = q1, None
    elif reorth is None:
        x2, c2 = _project(q1, basis)
    else:
        # Second projection only when some column lost more than 1 - reorth of its norm.
        x2, c2 = jax.lax.cond(
            ratio < reorth,
            lambda q: _project(q, basis),
            lambda q: (q, jnp.zeros_like(c1)),
            q1,
        )
    # Plain CholeskyQR of a nearly orthonormal block, unless the Gram says the first pass was not
    # enough (shifted pass of an ill-conditioned block, or cancellation down to ~sqrt(eps)).
    g2 = _gram(x2)
    dev = _deviation(g2)
    hard = (dev > NEAR_ORTHONORMAL) | ~jnp.isfinite(dev) | (ratio < 10 * jnp.sqrt(eps))

    def easy(y):
        q, r = _cholqr(y, gram=g2)
        return q, r, jnp.zeros_like(c1) if c1 is not None else None

    def three(y):
        qa, ra = _cholqr(y, shift=10.0, gram=g2)
        yb, cb = _project(qa, basis)
        qb, rb = _cholqr(yb, guard=True)
        return qb, _mm(rb, ra), (None if cb is None else _mm(cb, ra))

    q, r2, c3 = jax.lax.cond(hard, three, easy, x2)
    r = _mm(r2, r1)
    if c1 is None:
        return q, r, None, x1
    c = c1 + _mm(c2, r1) + _mm(c3, r1)
    return q, r, c, x1


def _orthonormalize(
    x: jax.Array,
    basis: _Basis | None,
    *,
    fill: jax.Array | Callable[[], jax.Array] | None,
    reorth: float | None,
    rank_tol: float,
) -> Orthonormalized:
    """Traceable core of :func:`orthonormalize` (dynamic basis size, optional fill block).

    ``fill`` may be a function of no arguments returning the block: it is then traced inside the
    replacement loop, so its work (a random block) runs only when a column is deficient.
    """
    k = x.shape[1]

    def run(y):
        q, r, c, x1 = _passes(y, basis, reorth)
        y_norm = jnp.sqrt(jnp.sum(y * y, axis=0))
        bad = (jnp.abs(jnp.diagonal(r)) <= rank_tol * y_norm) | (y_norm == 0)
        bad = bad | ~jnp.all(jnp.isfinite(q), axis=0)
        q = jnp.where(jnp.isfinite(q), q, 0.0)
        if c is None:
            c = jnp.zeros((0, k), x.dtype)
        return q, r, c, x1, bad

    q, r, c, x1, deficient = run(x)
    if fill is None:
        return Orthonormalized(q, r, c, deficient)

    # Replace dependent columns by the fill and orthonormalise once more. The second round starts
    # from the projected X, not from round 1's Q: a dependent column's q is a normalised rounding
    # remainder that later columns have components along, and replacing it in Q lost those
    # (X = B C + Q R then failed by a few percent in the columns after it). The second round reuses
    # the same compiled passes (a while loop of at most one iteration keeps the program small).
    def body(carry):
        f = fill() if callable(fill) else fill  # a callable is traced here: runs only when needed
        y = jnp.where(deficient[None, :], f.astype(x.dtype), x1)
        qn, _, _, _, badn = run(y)
        return jnp.asarray(False), qn, _mm(qn.T, x1), badn

    init = (jnp.any(deficient), q, r, deficient)
    _, q, r, _ = jax.lax.while_loop(lambda cr: cr[0], body, init)
    return Orthonormalized(q, r, c, deficient)


def _orthonormalize_local(
    W: jax.Array,
    Bt: jax.Array,
    ncols: Any,
    *,
    local: int,
    chunk: int,
    select_eps: float | None,
    fill: Any,
    reorth: float | None,
    rank_tol: float,
):
    """Block Lanczos orthonormalisation: the last ``local`` basis rows first, then the basis.

    ``Bt`` is the transposed basis (``(p, n)``, rows past ``ncols`` zero). The ``local`` rows
    before ``ncols`` (the blocks a three-term recurrence couples ``W`` to; ``0`` for none) are
    projected out first, a product with ``local`` rows. What is left has only rounding-level
    components along the rest of the basis, so the full projection that follows rarely loses
    more than ``1 - reorth`` of a column's norm (its second pass, a second sweep of the basis,
    is skipped), and with ``select_eps`` (the threshold of :func:`_project_selective` in units
    of the dtype's eps; ``None``: subtract all) most steps skip its update sweep too. Returns
    ``(Q, R, C)`` with ``W = B C + Q R``.
    """
    Cl = start = None
    if local:
        n = W.shape[0]
        start = jnp.maximum(jnp.asarray(ncols, jnp.int32) - local, 0)
        L = jax.lax.dynamic_slice(Bt, ix(start, 0), (local, n))
        Cl = _mm(L, W)
        W = W - _mm(Cl.T, L).T
    select = None if select_eps is None else float(select_eps) * float(jnp.finfo(W.dtype).eps)
    o = _orthonormalize(
        W, _Basis(Bt, ncols, chunk, select), fill=fill, reorth=reorth, rank_tol=rank_tol
    )
    C = o.C
    if Cl is not None:
        C = C + jax.lax.dynamic_update_slice(jnp.zeros_like(C), Cl, ix(start, 0))
    return o.Q, o.R, C


def orthonormalize(
    X: Any,
    basis: Any = None,
    *,
    key: Any = None,
    fill: Any = None,
    rank_tol: float | None = None,
    reorth: float | None = None,
) -> Orthonormalized:
    r"""Orthonormalise the columns of ``X`` (against ``basis`` if given) by CholeskyQR2 / BCGS2.

    Computes ``Q`` (orthonormal columns, ``basis^T Q = 0``), ``R`` and ``C`` with
    ``X = basis @ C + Q @ R``. Every tall-block operation is a matrix product with
    ``Precision.HIGHEST`` (Gram ``X^T X``, projection ``B^T X``, ``X R^{-1}``): shifted CholeskyQR,
    then CholeskyQR, then a third pass only when the second Gram shows it is needed. Works inside
    ``jit``; ``n`` may be row-sharded.

    Columns whose remainder after removing the basis and the earlier columns is below
    ``rank_tol * |X_j|`` (default ``100 sqrt(k) eps``) are *deficient*. With ``key`` (or an
    ``(n, k)`` ``fill`` block) they are replaced by random directions orthonormalised against
    everything else, and ``R`` becomes ``Q^T (X - basis C)``; without either they are returned as is
    and flagged.

    Args:
        X: ``(n, k)`` block, ``k <= n``.
        basis: optional ``(n, p)`` block with orthonormal columns; ``p + k <= n``.
        key: optional PRNG key for replacing dependent columns.
        fill: optional ``(n, k)`` block used instead of a key to replace dependent columns.
        rank_tol: relative threshold for dependent columns.
        reorth: ``None`` (default) projects out the basis twice (BCGS2). A float ``theta`` in
            ``(0, 1)`` projects a second time only when some column lost more than the fraction
            ``1 - theta`` of its norm in the first projection (orthogonality to the basis then about
            ``eps / theta``); solvers derive ``theta`` from their tolerance.

    Returns:
        :class:`Orthonormalized` ``(Q, R, C, deficient)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> X = jax.random.normal(jax.random.key(0), (100, 5))
        >>> Q, R, C, _ = orthonormalize(X)
        >>> bool(jnp.allclose(Q.T @ Q, jnp.eye(5), atol=1e-5))
        True
        >>> bool(jnp.allclose(Q @ R, X, atol=1e-4))
        True
    """
    x = jnp.asarray(X)
    if x.ndim != 2:
        raise ValueError(f"orthonormalize: X must be 2-D (n, k), got shape {tuple(x.shape)}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    n, k = x.shape
    if k == 0 or n == 0:
        raise ValueError(f"orthonormalize: X is empty (shape {tuple(x.shape)})")
    bas = None
    p = 0
    if basis is not None:
        b = jnp.asarray(basis).astype(x.dtype)
        if b.ndim != 2 or b.shape[0] != n:
            raise ValueError(
                f"orthonormalize: basis must have shape ({n}, p) to match X, got {tuple(b.shape)}"
            )
        p = b.shape[1]
        bas = _Basis(b.T) if p > 0 else None
    if p + k > n:
        raise ValueError(
            f"orthonormalize: basis ({p} columns) plus X ({k} columns) exceed the dimension n={n}"
        )
    if reorth is not None and not (0.0 < float(reorth) <= 1.0):
        raise ValueError(f"orthonormalize: reorth must be None or in (0, 1], got {reorth!r}")
    tol = float(rank_tol) if rank_tol is not None else default_rank_tol(x.dtype, k)
    if fill is None and key is not None:
        from ._common import as_key, gaussian

        fill = gaussian(as_key(key), (n, k), x.dtype)
    if fill is not None:
        fill = jnp.asarray(fill)
        if fill.shape != (n, k):
            raise ValueError(f"orthonormalize: fill must have shape {(n, k)}, got {fill.shape}")
    return _orthonormalize(x, bas, fill=fill, reorth=reorth, rank_tol=tol)
