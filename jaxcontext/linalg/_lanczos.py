r"""Thick-restarted block Lanczos (symmetric operators) and block Golub-Kahan-Lanczos (general).

Both keep the whole solve inside one ``jit``: a ``lax.while_loop`` over block steps with static
block shapes. A step multiplies the newest block, orthonormalises the result against the basis with
:func:`~jaxcontext.linalg.orthonormalize` (the coefficients of that projection fill the projected
matrix, so ``H = V^T A V`` (or ``B = U^T A V``) is built from the same products), and appends it.
Every few steps (a geometric schedule) a Rayleigh-Ritz step on the small projected matrix gives Ritz
values and *residual estimates* from the Lanczos relation

.. math::  A V_c = V_c H_c + V_{next} R E_{last}^T \quad\Rightarrow\quad
           \|A (V_c y_i) - \theta_i V_c y_i\| = \|R\, y_i^{(last)}\|

(and the analogous ``A^T U = V B^T + V_{next} S E_{last}^T`` for the bidiagonalisation), so
convergence is tested without extra products; the final answer is certified with fresh products by
the caller. When the basis is full, a *thick restart* keeps the ``k`` wanted Ritz vectors
(``V <- V Y_k``) and the next block, and continues. Ritz vectors whose estimate is below ``tol`` at
a restart are *locked*: their couplings in the projected matrix are dropped (they are below
``tol``), so later Rayleigh-Ritz steps keep them unchanged, while new blocks are still
orthogonalised against them.

Variable-size slices of the basis use ``lax.switch`` over a few static bucket sizes, so the products
and Rayleigh-Ritz problems stay close to the filled size and nothing recompiles between calls.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._common import _svd_lapack, _svd_qr, gaussian, ix, mm, sort_desc, svd_gram
from ._orth import _orthonormalize_local, default_rank_tol, orthonormalize

# The residual estimates are converged to TOL_MARGIN * tol (see lanczos_core).
TOL_MARGIN = 0.8


class LanczosConfig(NamedTuple):
    """Static settings of a Lanczos run (hashable: part of the jit cache key).

    One compiled solver serves a *bucket* of wanted counts: ``d`` triplets are returned (the
    bucket's size), the number actually wanted is the dynamic ``want`` of :func:`lanczos_core`,
    and the basis size and the number of vectors kept at a restart are one of the static pairs in
    ``shapes``, picked by a dynamic index (``lax.switch`` for the restart rotation, the one
    product that needs their static shapes). ``K`` (the largest basis in ``shapes``) sizes the
    arrays.
    """

    d: int  # triplets returned (the bucket; the convergence test uses the dynamic ``want``)
    b: int  # block size
    K: int  # allocated basis size: the largest in ``shapes`` (multiple of b)
    g: int  # bucket granularity of the Rayleigh-Ritz sizes (multiple of b)
    chunk: int  # row granularity of the projections' static sizes (multiple of b)
    max_restarts: int
    growth: float
    reorth: float | None
    shapes: tuple[tuple[int, int], ...] = ()  # (basis size, kept at a restart), multiples of b
    local: bool = False  # project out the last two blocks before the basis (see _orth_into)
    small_svd: str = "auto"  # the Golub-Kahan small SVD (see SMALL_SVD)
    select: float | None = None  # with local: selective update, in units of eps (_orth_into)


class _Sizes(NamedTuple):
    """The dynamic sizes of one run (int32 scalars)."""

    want: jax.Array  # triplets the convergence test waits for
    sel: jax.Array  # index into ``cfg.shapes``
    K: jax.Array  # basis size before a restart
    k: jax.Array  # kept at a restart
    max_steps: jax.Array


def _sizes(cfg: LanczosConfig, want, sel) -> _Sizes:
    sel = jnp.asarray(sel, jnp.int32)
    K = jnp.asarray([K for K, _ in cfg.shapes], jnp.int32)[sel]
    k = jnp.asarray([k for _, k in cfg.shapes], jnp.int32)[sel]
    steps = K // cfg.b + cfg.max_restarts * ((K - k) // cfg.b)
    return _Sizes(jnp.asarray(want, jnp.int32), sel, K, k, steps)


def _by_shape(cfg: LanczosConfig, sel: jax.Array, fn, *args):
    """``fn(K_i, k_i, *args)`` for the static pair ``cfg.shapes[sel]`` (a switch when several)."""
    branches = [functools.partial(fn, K, k) for K, k in cfg.shapes]
    if len(branches) == 1:
        return branches[0](*args)
    return jax.lax.switch(sel, branches, *args)


def _buckets(cfg: LanczosConfig, lo: int = 0) -> tuple[int, ...]:
    sizes = list(range(cfg.g, cfg.K + 1, cfg.g))
    if not sizes or sizes[-1] != cfg.K:
        sizes.append(cfg.K)
    if lo == 0:
        sizes = [0, *sizes]
    return tuple(sizes)


def _bucket_index(c: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
    return jnp.searchsorted(jnp.asarray(sizes, jnp.int32), c, side="left").astype(jnp.int32)


def _next_check(c: jax.Array, cfg: LanczosConfig) -> jax.Array:
    inc = jnp.ceil(cfg.growth * c.astype(jnp.float32) / cfg.b).astype(jnp.int32) * cfg.b
    return c + jnp.maximum(inc, cfg.b)


class _State(NamedTuple):
    V: jax.Array  # (P, n) right (or symmetric) basis, transposed; rows c:c+b are the next block
    U: jax.Array  # (Pu, m) left basis, transposed (general case), or a (1, 1) placeholder
    H: jax.Array  # (K + b, K + b) projected matrix, written by column blocks
    c: jax.Array  # filled basis size
    steps: jax.Array
    restarts: jax.Array
    next_check: jax.Array
    done: jax.Array
    locked: jax.Array  # (K,) bool, positions locked at the last restart
    locked_res: jax.Array  # (K,) their residual estimates
    theta: jax.Array  # (K,) last Ritz values (signed, symmetric) or singular values
    Y: jax.Array  # (K, K) last right (symmetric) Ritz coefficients
    X: jax.Array  # (K, K) last left Ritz coefficients (general) or (1, 1)
    est: jax.Array  # (K,) last residual estimates (absolute)
    valid: jax.Array  # (K,) bool


def _general_small(Hs: jax.Array, Hz: jax.Array, active: jax.Array, mu: jax.Array, how: str):
    """``theta, Y, X`` of the masked Golub-Kahan matrix ``Hs`` (masked pairs: ``theta = mu``).

    On CPU LAPACK's SVD of ``Hs`` itself. Elsewhere (GPUs, where JAX's default SVD is a loose
    Jacobi, see ``_common``) :func:`~._common.svd_gram` of the active block with the masked rows
    and columns zero rather than ``mu`` (whose square would dwarf the active values in the Gram):
    masked pairs are then told by their support and given ``theta = mu`` as on CPU. Measured on
    an H200 (kNN 50k, d = 64): 132 ms, 64 of 64 certified, against 305 ms and 49 of 64 with the
    default SVD (which also had to solve again).
    """
    return _by_route(how, lambda Hs, Hz, how: _fixed_small(Hs, Hz, active, mu, how), Hs, Hz)


def _by_route(how: str, fn, *args):
    """``fn(*args, how=...)`` with the small-SVD route ``how`` resolved.

    ``"auto"`` is ``"default"`` (LAPACK) on CPU and ``"gram"`` elsewhere, per platform
    (``jax.lax.platform_dependent``); any other value is passed as given.
    """
    if how != "auto":  # a fixed algorithm (scripts/gpu_small_svd.py compares them)
        return fn(*args, how=how)
    return jax.lax.platform_dependent(
        *args,
        cpu=lambda *a: fn(*a, how="default"),
        default=lambda *a: fn(*a, how="gram"),
    )


def _fixed_small(Hs, Hz, active, mu, how: str):
    """``theta, Y, X`` by one algorithm; ``Hz`` is ``Hs`` with zeros where it has ``mu``."""
    if how == "gram":
        X, theta, Y = svd_gram(Hz)
        inside = jnp.sum(Y * Y * active[:, None], axis=0) > 0.5
        return jnp.where(inside, theta, mu), Y, X
    if how == "qr":
        X, theta, Y = _svd_qr(Hs)
        return theta, Y, X
    if how == "augmented":  # eigh of [[0, M], [M^T, 0]]: pairs (+-theta, (x, +-y) / sqrt 2)
        s = Hs.shape[0]
        Z = jnp.zeros_like(Hs)
        lam, W = jnp.linalg.eigh(jnp.block([[Z, Hs], [Hs.T, Z]]))
        top = W[:, s:][:, ::-1] * jnp.sqrt(2.0).astype(Hs.dtype)
        return lam[s:][::-1], top[s:], top[:s]
    X, theta, Y = _svd_lapack(Hs)
    return theta, Y, X


# The Golub-Kahan small SVD of the configs svds builds (LanczosConfig.small_svd, so part of the
# compiled solver's key): "auto" (per platform, see _general_small) or one algorithm on every
# backend: "default" (jnp.linalg.svd), "gram", "qr", "augmented" (for measurements and tests).
SMALL_SVD = "auto"


def _small_solve(H: jax.Array, c: jax.Array, s: int, K: int, hermitian: bool, how: str = "auto"):
    """Eigen/singular decomposition of the leading ``c x c`` block of ``H[:s, :s]`` (rest masked).

    Masked coordinates get the value ``mu``, far above the active spectrum, so they never mix with
    active ones and are recognised by value. Outputs are padded to ``K``; ``rs`` holds each pair's
    residual in the small problem (``|H y - theta y|``, or ``max(|H y - theta x|,
    |H^T x - theta y|)``): rounding level where the small solver is accurate, and part of the
    residual estimates, so that an inaccurate small solve cannot pass for a converged one.
    """
    Hs = H[:s, :s]
    if hermitian:
        Hs = jnp.triu(Hs) + jnp.triu(Hs, 1).T
    active = jnp.arange(s) < c
    Hz = jnp.where(active[:, None] & active[None, :], Hs, 0.0)
    # mu scales with H (an absolute floor such as "+ 1" spoilt the small SVD of operators of
    # norm ~1e-4: Golub-Kahan then missed tol); any positive value does when H is zero
    big = jnp.max(jnp.abs(Hz))
    scale = jnp.where(big > 0, big, 1.0)
    mu = 3.0 * scale * jnp.sqrt(jnp.sum((Hz / scale) ** 2)) + jnp.where(big > 0, 0.0, 1.0)
    Hs = Hz + jnp.diag(jnp.where(active, 0.0, mu))
    if hermitian:
        theta, Y = jnp.linalg.eigh(Hs)
        X = Y
        r = mm(Hs, Y) - Y * theta[None, :]
        rs = jnp.sqrt(jnp.sum(r * r, axis=0))
    else:
        theta, Y, X = _general_small(Hs, Hz, active, mu, how)
        r1 = mm(Hs, Y) - X * theta[None, :]
        r2 = mm(Hs.T, X) - Y * theta[None, :]
        rs = jnp.maximum(jnp.sqrt(jnp.sum(r1 * r1, axis=0)), jnp.sqrt(jnp.sum(r2 * r2, axis=0)))
    if s < K:
        p = K - s
        theta = jnp.pad(theta, (0, p), constant_values=mu)
        Y = jnp.pad(Y, ((0, p), (0, p)))
        X = jnp.pad(X, ((0, p), (0, p))) if not hermitian else Y
        rs = jnp.pad(rs, (0, p))
    return theta, Y, X, mu, rs


def _rayleigh_ritz(st: _State, cfg: LanczosConfig, hermitian: bool):
    """Ritz values, coefficients and residual estimates for the filled basis.

    The decomposition runs at one of a few bucket sizes (``lax.switch``) just above the filled size.
    """
    b, K = cfg.b, cfg.K
    sizes = _buckets(cfg)[1:]
    idx = _bucket_index(st.c, sizes)
    branches = [
        functools.partial(_small_solve, s=s, K=K, hermitian=hermitian, how=cfg.small_svd)
        for s in sizes
    ]
    theta, Y, X, mu, rs = jax.lax.switch(
        idx, [lambda H, c, f=f: f(H, c) for f in branches], st.H, st.c
    )
    valid = jnp.abs(theta) < 0.5 * mu
    order = sort_desc(jnp.abs(theta), valid)
    theta, Y, valid, rs = theta[order], Y[:, order], valid[order], rs[order]
    active = (jnp.arange(K) < st.c)[:, None]
    Y = Y * active
    X = X[:, order] * active if not hermitian else Y
    c = st.c
    # coupling of the last block to the next one: R (symmetric) or S^T (general)
    if hermitian:
        cpl = jax.lax.dynamic_slice(st.H, ix(c, c - b), (b, b))
        last = jax.lax.dynamic_slice(Y, ix(c - b, 0), (b, K))
    else:
        cpl = jax.lax.dynamic_slice(st.H, ix(c - b, c), (b, b)).T
        last = jax.lax.dynamic_slice(X, ix(c - b, 0), (b, K))
    w = mm(cpl, last)
    # coupling to the next block (the Lanczos relation) and the small problem's own residual
    est = jnp.sqrt(jnp.sum(w * w, axis=0) + rs * rs)
    coef2 = X * X
    wl = mm(coef2.T, st.locked.astype(coef2.dtype)[:, None])[:, 0]
    est = jnp.where(wl > 0.5, mm(coef2.T, st.locked_res[:, None])[:, 0], est)
    est = jnp.where(valid, est, jnp.inf)
    return theta, Y, X, est, valid


def _padded(cols: int, cfg: LanczosConfig) -> int:
    """Basis width rounded up to whole chunks (the extra columns stay zero)."""
    return -(-cols // cfg.chunk) * cfg.chunk


def _fill(G: jax.Array, steps: jax.Array) -> jax.Array:  # G: (rows, b)
    """A fresh-looking Gaussian block for replacing dependent columns: ``G`` with rows rolled.

    The steps pass it as a function (``lambda: _fill(...)``), which :func:`._orth._orthonormalize`
    traces inside its replacement loop: the roll (a copy of the block) runs only when a column
    is deficient, not on every step.
    """
    return jnp.roll(G, 7919 * (steps + 1), axis=0)


def _orth_into(W, basis, ncols, fill, cfg: LanczosConfig):
    """Orthonormalise ``W`` against the first ``ncols`` columns of ``basis`` (chunked products).

    With ``cfg.local`` (used with ``cfg.reorth``), the last ``2 b`` filled rows of the basis (the
    blocks the three-term recurrence couples ``W`` to) are projected out first, and with
    ``cfg.select`` the full projection's update covers only the rows that need it
    (:func:`~._orth._orthonormalize_local`); without the local pass the three-term couplings
    themselves trip the second-pass test on most steps.
    """
    return _orthonormalize_local(
        W, basis, ncols, local=2 * cfg.b if cfg.local else 0, chunk=cfg.chunk,
        select_eps=cfg.select if cfg.local else None, fill=fill, reorth=cfg.reorth,
        rank_tol=default_rank_tol(W.dtype, cfg.b),
    )


def _product(A, st: _State, cfg: LanczosConfig) -> jax.Array:
    """``A V_j`` for the newest block ``V_j`` (rows ``c:c+b`` of the transposed basis)."""
    n = st.V.shape[1]
    Vj = jax.lax.dynamic_slice(st.V, ix(st.c, 0), (cfg.b, n)).T
    return A.matmat(Vj)


def _absorb(st: _State, W, G, cfg: LanczosConfig) -> _State:
    """Symmetric step, after the product: orthonormalise ``W = A V_j`` into the basis."""
    b, K = cfg.b, cfg.K
    c = st.c
    n = st.V.shape[1]
    rows = st.H.shape[0]
    locked = jnp.pad(st.locked, (0, rows - K))[:, None]
    Q, R, C = _orth_into(W, st.V, c + b, lambda: _fill(G, st.steps)[:n], cfg)
    C = jnp.where(locked, 0.0, C[:rows])  # locked vectors: coupling dropped
    col = jax.lax.dynamic_update_slice(C, R, ix(c + b, 0))
    H = jax.lax.dynamic_update_slice(st.H, col, ix(0, c))
    V = jax.lax.dynamic_update_slice(st.V, Q.T, ix(c + b, 0))
    return st._replace(V=V, H=H, c=c + b, steps=st.steps + 1)


def _absorb_left(st: _State, W, G, cfg: LanczosConfig) -> tuple[_State, jax.Array]:
    """General step, first half: orthonormalise ``W = A V_j`` into the left basis ``U``."""
    K = cfg.K
    c = st.c
    m = st.U.shape[1]
    rows = st.H.shape[0]
    locked = jnp.pad(st.locked, (0, rows - K))[:, None]
    Qu, R, C = _orth_into(W, st.U, c, lambda: _fill(G, st.steps)[:m], cfg)
    C = jnp.pad(C, ((0, max(0, rows - C.shape[0])), (0, 0)))[:rows]
    C = jnp.where(locked, 0.0, C)
    col = jax.lax.dynamic_update_slice(C, R, ix(c, 0))
    H = jax.lax.dynamic_update_slice(st.H, col, ix(0, c))
    U = jax.lax.dynamic_update_slice(st.U, Qu.T, ix(c, 0))
    return st._replace(U=U, H=H), Qu


def _absorb_right(st: _State, Z, G, cfg: LanczosConfig) -> _State:
    """General step, second half: orthonormalise ``Z = A^T U_j`` into the right basis ``V``."""
    b = cfg.b
    c = st.c
    n = st.V.shape[1]
    Qv, S, _ = _orth_into(Z, st.V, c + b, lambda: _fill(G, st.steps + 1)[:n], cfg)
    H = jax.lax.dynamic_update_slice(st.H, S.T, ix(c, c + b))
    V = jax.lax.dynamic_update_slice(st.V, Qv.T, ix(c + b, 0))
    return st._replace(V=V, H=H, c=c + b, steps=st.steps + 1)


def _step(A, st: _State, G, cfg: LanczosConfig, hermitian: bool) -> _State:
    """One block step: product(s) and orthonormalisation into the basis."""
    W = _product(A, st, cfg)
    if hermitian:
        return _absorb(st, W, G, cfg)
    st, Qu = _absorb_left(st, W, G, cfg)
    return _absorb_right(st, A.rmatmat(Qu), G, cfg)


def _orthonormal_left(X: jax.Array, how: str) -> jax.Array:
    """The left Ritz coefficients ``X`` made orthonormal where the small SVD left them loose.

    ``svd_gram`` (the Golub-Kahan route off the CPU) gives ``x_i = B y_i / theta_i``, whose
    orthogonality degrades as ``eps |B|^2 / theta_i^2``: measured in float32, top-16 of a
    spectrum falling to 2.5e-3 of ``s_1``, ``|X^T X - I|`` 1.5e-4 against 1e-6 from LAPACK, with
    every residual certified. The restart rotation ``U <- U X_k`` would carry that into the
    basis and the extraction into the returned vectors, where no certificate looks; a QR of the
    coefficients (``K x k``, a few times per solve) restores orthonormality with the signs kept.
    Rows of ``X`` past the filled size are zero and stay zero (Householder reflectors of
    columns supported on the leading rows).
    """

    def polish(X, how):
        if how != "gram":  # an SVD route: X is orthonormal to rounding
            return X
        Q, R = jnp.linalg.qr(X)
        sign = jnp.where(jnp.diagonal(R) < 0, -1.0, 1.0).astype(X.dtype)
        return Q * sign[None, :]

    return _by_route(how, polish, X)


def _rotate(K: int, k: int, V, U, Y, X, *, b: int, hermitian: bool, how: str = "auto"):
    """Restart rotation, basis of ``K`` columns: ``V <- [V Y_k, next block]`` (and ``U X_k``)."""
    Vk = mm(Y[:K, :k].T, V[:K])
    V = jnp.zeros_like(V).at[:k].set(Vk).at[k : k + b].set(V[K : K + b])
    if not hermitian:
        Uk = mm(_orthonormal_left(X[:K, :k], how).T, U[:K])
        U = jnp.zeros_like(U).at[:k].set(Uk)
    return V, U


def _restart(
    st: _State, cfg: LanczosConfig, hermitian: bool, tol: jax.Array, sz: _Sizes
) -> _State:
    """Thick restart: keep the top ``k`` Ritz vectors and the next block; lock converged ones."""
    K = cfg.K
    V, U = _by_shape(
        cfg, sz.sel,
        functools.partial(_rotate, b=cfg.b, hermitian=hermitian, how=cfg.small_svd),
        st.V, st.U, st.Y, st.X,
    )
    kept = jnp.arange(K) < sz.k
    H = jnp.zeros_like(st.H).at[jnp.arange(K), jnp.arange(K)].set(jnp.where(kept, st.theta, 0.0))
    locked = kept & (st.est <= _tol_abs(st.theta, st.valid, tol)) & st.valid
    locked_res = jnp.where(locked, st.est, 0.0)
    c = sz.k
    return st._replace(
        V=V,
        U=U,
        H=H,
        c=c,
        restarts=st.restarts + 1,
        next_check=jnp.minimum(_next_check(c, cfg), sz.K),
        locked=locked,
        locked_res=locked_res,
    )


def _tol_abs(theta, valid, tol):
    """``tol`` relative to the largest valid Ritz value."""
    return tol * jnp.max(jnp.where(valid, jnp.abs(theta), 0.0))


def _check(st: _State, cfg: LanczosConfig, hermitian: bool, tol: jax.Array, sz: _Sizes) -> _State:
    """Rayleigh-Ritz and convergence test of the top ``sz.want`` Ritz pairs.

    Only small arrays go through the ``cond`` that calls this (the basis would be copied through a
    conditional).
    """
    wanted = jnp.arange(cfg.K) < sz.want

    def run(small):
        H, c, steps, restarts, locked, locked_res, _, _, _, _, _ = small
        view = st._replace(H=H, c=c, locked=locked, locked_res=locked_res)
        theta, Y, X, est, valid = _rayleigh_ritz(view, cfg, hermitian)
        conv = jnp.all(((est <= _tol_abs(theta, valid, tol)) & valid) | ~wanted)
        full = c >= sz.K
        done = conv | (full & (restarts >= cfg.max_restarts)) | (steps >= sz.max_steps)
        X = X if not hermitian else small[8]
        return theta, Y, X, est, valid, done, jnp.minimum(_next_check(c, cfg), sz.K)

    def keep(small):
        return (*small[6:], st.done, st.next_check)

    small = (
        st.H, st.c, st.steps, st.restarts, st.locked, st.locked_res,
        st.theta, st.Y, st.X, st.est, st.valid,
    )
    do = (st.c >= st.next_check) | (st.c >= sz.K) | (st.steps >= sz.max_steps)
    theta, Y, X, est, valid, done, nxt = jax.lax.cond(do, run, keep, small)
    return st._replace(theta=theta, Y=Y, X=X, est=est, valid=valid, done=done, next_check=nxt)


def _combine(Bt: jax.Array, Y: jax.Array, nrows: jax.Array, chunk: int) -> jax.Array:
    """``Bt[:nrows]^T Y[:nrows]`` (``(n, q)``) by row chunks of ``Bt``: cost follows ``nrows``.

    Rows of ``Y`` past ``nrows`` must be zero (the last chunk reads a few of them).
    """
    p, n = Bt.shape
    rows = -(-Y.shape[0] // chunk) * chunk
    Yp = jnp.pad(Y, ((0, rows - Y.shape[0]), (0, 0)))

    def add(j, acc):
        blk = jax.lax.dynamic_slice(Bt, ix(j * chunk, 0), (chunk, n))
        yj = jax.lax.dynamic_slice(Yp, ix(j * chunk, 0), (chunk, Y.shape[1]))
        return acc + mm(blk.T, yj)

    nchunks = (nrows + chunk - 1) // chunk
    return jax.lax.fori_loop(0, nchunks, add, jnp.zeros((n, Y.shape[1]), Bt.dtype))


def _init(A, key, tol, want, sel, *, cfg: LanczosConfig, hermitian: bool):
    """Start state, the fill block, the dynamic sizes and the internal tolerance."""
    m, n = A.shape
    dt = A.dtype
    b, K = cfg.b, cfg.K
    sz = _sizes(cfg, want, sel)
    # One Gaussian draw: the start block and the block that replaces dependent columns.
    R0 = gaussian(key, (max(m, n), 2 * b), dt)
    G = R0[:, b:]
    Q0 = orthonormalize(R0[:n, :b], fill=G[:n]).Q
    V = jnp.zeros((_padded(K + b, cfg), n), dt).at[:b].set(Q0.T)
    U = jnp.zeros((_padded(K, cfg), m), dt) if not hermitian else jnp.zeros((1, 1), dt)
    st = _State(
        V=V,
        U=U,
        H=jnp.zeros((K + b, K + b), dt),
        c=jnp.asarray(0, jnp.int32),
        steps=jnp.asarray(0, jnp.int32),
        restarts=jnp.asarray(0, jnp.int32),
        next_check=jnp.minimum(-(-(sz.want + b) // b) * b, sz.K),
        done=jnp.asarray(False),
        locked=jnp.zeros((K,), bool),
        locked_res=jnp.zeros((K,), dt),
        theta=jnp.zeros((K,), dt),
        Y=jnp.zeros((K, K), dt),
        X=jnp.zeros((K, K), dt) if not hermitian else jnp.zeros((1, 1), dt),
        est=jnp.full((K,), jnp.inf, dt),
        valid=jnp.zeros((K,), bool),
    )
    # converge the residual estimates to a margin below tol: the certificate recomputes them with
    # fresh products, which in float32 differ from the estimates by a few percent (measured: a
    # triplet estimated at tol certified at 1.0003 tol on a 5000-node block model)
    return st, G, sz, jnp.asarray(TOL_MARGIN * tol, dt)


def _expanding(st: _State, sz: _Sizes) -> jax.Array:
    return (~st.done) & (st.c < sz.K) & (st.steps < sz.max_steps)


def _cycling(st: _State, cfg: LanczosConfig, sz: _Sizes) -> jax.Array:
    return (~st.done) & (st.restarts < cfg.max_restarts) & (st.steps < sz.max_steps)


def _extract(st: _State, *, cfg: LanczosConfig, hermitian: bool):
    """The top ``d`` Ritz vectors ``V Y_d`` (and ``U X_d``), values, signs and estimates."""
    theta, est = st.theta, st.est
    d = cfg.d
    dt = st.V.dtype
    # Y's rows past the filled size are zero
    Vd = _combine(st.V, st.Y[:, :d], st.c, cfg.chunk)
    if hermitian:
        s = jnp.abs(theta[:d])
        sign = jnp.where(theta[:d] < 0, -1.0, 1.0).astype(dt)
        Ud = Vd * sign[None, :]
    else:
        s = theta[:d]
        sign = jnp.ones((d,), dt)
        Ud = _combine(st.U, _orthonormal_left(st.X[:, :d], cfg.small_svd), st.c, cfg.chunk)
    return s, Ud, Vd, sign, est[:d]


@functools.partial(jax.jit, static_argnames=("cfg", "hermitian"))
def lanczos_core(A, key, tol, want, sel, *, cfg: LanczosConfig, hermitian: bool):
    """Run the restarted block Lanczos / Golub-Kahan iteration; returns raw Ritz data.

    Two nested loops: the inner one expands the basis block by block (with checks), the outer one
    restarts a full basis; the basis only flows through loop carries, never through a conditional
    (no copies). ``want`` (dynamic, ``1 <= want <= cfg.d``) is the number of triplets the
    convergence test waits for and ``sel`` (dynamic) picks the basis and restart sizes from
    ``cfg.shapes``; ``cfg.d`` triplets are returned.
    """
    st, G, sz, tol = _init(A, key, tol, want, sel, cfg=cfg, hermitian=hermitian)

    def expand(st):
        def body(st):
            return _check(_step(A, st, G, cfg, hermitian), cfg, hermitian, tol, sz)

        return jax.lax.while_loop(lambda st: _expanding(st, sz), body, st)

    st = expand(st)
    st = jax.lax.while_loop(
        lambda st: _cycling(st, cfg, sz),
        lambda st: expand(_restart(st, cfg, hermitian, tol, sz)),
        st,
    )
    s, Ud, Vd, sign, est = _extract(st, cfg=cfg, hermitian=hermitian)
    return s, Ud, Vd, sign, est, st.steps, st.restarts


# Stage kernels of :func:`lanczos_profile`: each stage of the loop above as its own compiled call
# (the state is donated, so the basis is updated in place as in the loop).
_j_init = jax.jit(_init, static_argnames=("cfg", "hermitian"))
_j_product = jax.jit(_product, static_argnames=("cfg",))
_j_rproduct = jax.jit(lambda A, Q: A.rmatmat(Q))
_j_absorb = jax.jit(_absorb, static_argnames=("cfg",), donate_argnums=(0,))
_j_absorb_left = jax.jit(_absorb_left, static_argnames=("cfg",), donate_argnums=(0,))
_j_absorb_right = jax.jit(_absorb_right, static_argnames=("cfg",), donate_argnums=(0,))
_j_check = jax.jit(_check, static_argnames=("cfg", "hermitian"), donate_argnums=(0,))
_j_restart = jax.jit(_restart, static_argnames=("cfg", "hermitian"), donate_argnums=(0,))
_j_extract = jax.jit(_extract, static_argnames=("cfg", "hermitian"))


def lanczos_profile(A, key, tol, want, sel, *, cfg: LanczosConfig, hermitian: bool, timer):
    """:func:`lanczos_core` driven from the host, each stage timed by ``timer`` (a StageTimer).

    The same stage functions in the same order as the compiled loop (so the same products,
    steps and restarts), each its own compiled call waited for: ``products``,
    ``orthonormalisation`` (projection against the basis, CholeskyQR, the basis update),
    ``rayleigh-ritz`` (the convergence check: small eigen/SVD problem and residual estimates, run
    on the check schedule), ``restarts`` (the rotation ``V Y_k``) and ``extraction``.
    """
    st, G, sz, tol = timer.run(
        "setup", _j_init, A, key, tol, want, sel, cfg=cfg, hermitian=hermitian
    )

    def expand(st):
        while bool(_expanding(st, sz)):
            W = timer.run("products", _j_product, A, st, cfg=cfg)
            if hermitian:
                st = timer.run("orthonormalisation", _j_absorb, st, W, G, cfg=cfg, donate=True)
            else:
                st, Qu = timer.run(
                    "orthonormalisation", _j_absorb_left, st, W, G, cfg=cfg, donate=True
                )
                Z = timer.run("products", _j_rproduct, A, Qu)
                st = timer.run(
                    "orthonormalisation", _j_absorb_right, st, Z, G, cfg=cfg, donate=True
                )
            st = timer.run(
                "rayleigh-ritz", _j_check, st, cfg, hermitian, tol, sz, donate=True
            )
        return st

    st = expand(st)
    while bool(_cycling(st, cfg, sz)):
        st = expand(
            timer.run("restarts", _j_restart, st, cfg, hermitian, tol, sz, donate=True)
        )
    s, Ud, Vd, sign, est = timer.run("extraction", _j_extract, st, cfg=cfg, hermitian=hermitian)
    return s, Ud, Vd, sign, est, st.steps, st.restarts
