r"""Thick-restarted block Lanczos (symmetric operators) and block Golub-Kahan-Lanczos (general).

Both keep the whole solve inside one ``jit``: a ``lax.while_loop`` over block steps with static block
shapes. A step multiplies the newest block, orthonormalises the result against the basis with
:func:`~jaxcontext.linalg.orthonormalize` (the coefficients of that projection fill the projected
matrix, so ``H = V^T A V`` (or ``B = U^T A V``) is built from the same products), and appends it.
Every few steps (a geometric schedule) a Rayleigh-Ritz step on the small projected matrix gives Ritz
values and *residual estimates* from the Lanczos relation

.. math::  A V_c = V_c H_c + V_{next} R E_{last}^T \quad\Rightarrow\quad
           \|A (V_c y_i) - \theta_i V_c y_i\| = \|R\, y_i^{(last)}\|

(and the analogous ``A^T U = V B^T + V_{next} S E_{last}^T`` for the bidiagonalisation), so convergence
is tested without extra products; the final answer is certified with fresh products by the caller.
When the basis is full, a *thick restart* keeps the ``k`` wanted Ritz vectors (``V <- V Y_k``) and the
next block, and continues. Ritz vectors whose estimate is below ``tol`` at a restart are *locked*: their
couplings in the projected matrix are dropped (they are below ``tol``), so later Rayleigh-Ritz steps
keep them unchanged, while new blocks are still orthogonalised against them.

Variable-size slices of the basis use ``lax.switch`` over a few static bucket sizes, so the products
and Rayleigh-Ritz problems stay close to the filled size and nothing recompiles between calls.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._common import gaussian, mm, sort_desc
from ._orth import _Basis, _orthonormalize, orthonormalize


class LanczosConfig(NamedTuple):
    """Static settings of a Lanczos run (hashable: part of the jit cache key)."""

    d: int
    b: int  # block size
    K: int  # basis size (multiple of b)
    k: int  # kept at a restart (multiple of b, d <= k <= K - b)
    g: int  # bucket granularity of the Rayleigh-Ritz sizes (multiple of b)
    chunk: int  # columns per product in the chunked projections (multiple of b)
    max_restarts: int
    first_check: int
    growth: float
    reorth: float | None


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


def _small_solve(H: jax.Array, c: jax.Array, s: int, K: int, hermitian: bool):
    """Eigen/singular decomposition of the leading ``c x c`` block of ``H[:s, :s]`` (rest masked).

    Masked coordinates get the value ``mu``, far above the active spectrum, so they never mix with
    active ones and are recognised by value. Outputs are padded to ``K``.
    """
    Hs = H[:s, :s]
    if hermitian:
        Hs = jnp.triu(Hs) + jnp.triu(Hs, 1).T
    active = jnp.arange(s) < c
    Hs = jnp.where(active[:, None] & active[None, :], Hs, 0.0)
    mu = 3.0 * jnp.sqrt(jnp.sum(Hs * Hs)) + 1.0
    Hs = Hs + jnp.diag(jnp.where(active, 0.0, mu))
    if hermitian:
        theta, Y = jnp.linalg.eigh(Hs)
        X = Y
    else:
        X, theta, Yt = jnp.linalg.svd(Hs, full_matrices=False)
        Y = Yt.T
    if s < K:
        p = K - s
        theta = jnp.pad(theta, (0, p), constant_values=mu)
        Y = jnp.pad(Y, ((0, p), (0, p)))
        X = jnp.pad(X, ((0, p), (0, p))) if not hermitian else Y
    return theta, Y, X, mu


def _rayleigh_ritz(st: _State, cfg: LanczosConfig, hermitian: bool):
    """Ritz values, coefficients and residual estimates for the filled basis.

    The decomposition runs at one of a few bucket sizes (``lax.switch``) just above the filled size.
    """
    b, K = cfg.b, cfg.K
    sizes = _buckets(cfg)[1:]
    idx = _bucket_index(st.c, sizes)
    branches = [functools.partial(_small_solve, s=s, K=K, hermitian=hermitian) for s in sizes]
    theta, Y, X, mu = jax.lax.switch(idx, [lambda H, c, f=f: f(H, c) for f in branches], st.H, st.c)
    valid = jnp.abs(theta) < 0.5 * mu
    order = sort_desc(jnp.abs(theta), valid)
    theta, Y, valid = theta[order], Y[:, order], valid[order]
    active = (jnp.arange(K) < st.c)[:, None]
    Y = Y * active
    X = X[:, order] * active if not hermitian else Y
    c = st.c
    # coupling of the last block to the next one: R (symmetric) or S^T (general)
    if hermitian:
        cpl = jax.lax.dynamic_slice(st.H, (c, c - b), (b, b))
        last = jax.lax.dynamic_slice(Y, (c - b, 0), (b, K))
    else:
        cpl = jax.lax.dynamic_slice(st.H, (c - b, c), (b, b)).T
        last = jax.lax.dynamic_slice(X, (c - b, 0), (b, K))
    w = mm(cpl, last)
    est = jnp.sqrt(jnp.sum(w * w, axis=0))
    coef2 = X * X
    wl = coef2.T @ st.locked.astype(coef2.dtype)
    est = jnp.where(wl > 0.5, coef2.T @ st.locked_res, est)
    est = jnp.where(valid, est, jnp.inf)
    return theta, Y, X, est, valid


def _padded(cols: int, cfg: LanczosConfig) -> int:
    """Basis width rounded up to whole chunks (the extra columns stay zero)."""
    return -(-cols // cfg.chunk) * cfg.chunk


def _fill(G: jax.Array, steps: jax.Array) -> jax.Array:  # G: (rows, b)
    """A fresh-looking Gaussian block for replacing dependent columns: ``G`` with rows rolled."""
    return jnp.roll(G, 7919 * (steps + 1), axis=0)


def _orth_into(W, basis, ncols, fill, cfg: LanczosConfig):
    """Orthonormalise ``W`` against the first ``ncols`` columns of ``basis`` (chunked products)."""
    o = _orthonormalize(
        W,
        _Basis(basis, ncols, cfg.chunk),
        fill=fill,
        reorth=cfg.reorth,
        rank_tol=100.0 * float(jnp.finfo(W.dtype).eps) * max(1.0, cfg.b**0.5),
    )
    return o.Q, o.R, o.C


def _step(A, st: _State, G, cfg: LanczosConfig, hermitian: bool) -> _State:
    b, K = cfg.b, cfg.K
    c = st.c
    n = st.V.shape[1]
    Vj = jax.lax.dynamic_slice(st.V, (c, 0), (b, n)).T
    rows = st.H.shape[0]
    locked = jnp.pad(st.locked, (0, rows - K))[:, None]
    if hermitian:
        W = A.matmat(Vj)
        Q, R, C = _orth_into(W, st.V, c + b, _fill(G, st.steps)[:n], cfg)
        C = jnp.where(locked, 0.0, C[:rows])  # locked vectors: coupling dropped
        col = jax.lax.dynamic_update_slice(C, R, (c + b, 0))
        H = jax.lax.dynamic_update_slice(st.H, col, (0, c))
        V = jax.lax.dynamic_update_slice(st.V, Q.T, (c + b, 0))
        return st._replace(V=V, H=H, c=c + b, steps=st.steps + 1)
    m = st.U.shape[1]
    W = A.matmat(Vj)
    Qu, R, C = _orth_into(W, st.U, c, _fill(G, st.steps)[:m], cfg)
    C = jnp.pad(C, ((0, max(0, rows - C.shape[0])), (0, 0)))[:rows]
    C = jnp.where(locked, 0.0, C)
    col = jax.lax.dynamic_update_slice(C, R, (c, 0))
    H = jax.lax.dynamic_update_slice(st.H, col, (0, c))
    U = jax.lax.dynamic_update_slice(st.U, Qu.T, (c, 0))
    Z = A.rmatmat(Qu)
    Qv, S, _ = _orth_into(Z, st.V, c + b, _fill(G, st.steps + 1)[:n], cfg)
    H = jax.lax.dynamic_update_slice(H, S.T, (c, c + b))
    V = jax.lax.dynamic_update_slice(st.V, Qv.T, (c + b, 0))
    return st._replace(V=V, U=U, H=H, c=c + b, steps=st.steps + 1)


def _restart(st: _State, cfg: LanczosConfig, hermitian: bool, tol: jax.Array) -> _State:
    """Thick restart: keep the top ``k`` Ritz vectors and the next block; lock converged ones."""
    b, K, k = cfg.b, cfg.K, cfg.k
    Vk = mm(st.Y[:, :k].T, st.V[:K])
    V = jnp.zeros_like(st.V).at[:k].set(Vk).at[k : k + b].set(st.V[K : K + b])
    U = st.U
    if not hermitian:
        Uk = mm(st.X[:, :k].T, st.U[:K])
        U = jnp.zeros_like(st.U).at[:k].set(Uk)
    H = jnp.zeros_like(st.H).at[jnp.arange(k), jnp.arange(k)].set(st.theta[:k])
    lock = (st.est[:k] <= _tol_abs(st.theta, st.valid, tol)) & st.valid[:k]
    locked = jnp.zeros((K,), bool).at[:k].set(lock)
    locked_res = jnp.zeros((K,), st.est.dtype).at[:k].set(jnp.where(lock, st.est[:k], 0.0))
    c = jnp.asarray(k, jnp.int32)
    return st._replace(
        V=V,
        U=U,
        H=H,
        c=c,
        restarts=st.restarts + 1,
        next_check=jnp.minimum(_next_check(c, cfg), K),
        locked=locked,
        locked_res=locked_res,
    )


def _max_steps(cfg: LanczosConfig) -> int:
    return cfg.K // cfg.b + cfg.max_restarts * ((cfg.K - cfg.k) // cfg.b)


def _tol_abs(theta, valid, tol):
    """``tol`` relative to the largest valid Ritz value."""
    return tol * jnp.max(jnp.where(valid, jnp.abs(theta), 0.0))


def _check(st: _State, cfg: LanczosConfig, hermitian: bool, tol: jax.Array) -> _State:
    """Rayleigh-Ritz and convergence test. Only small arrays go through the ``cond`` that calls
    this (the basis would be copied through a conditional)."""
    d = cfg.d

    def run(small):
        H, c, steps, restarts, locked, locked_res, _, _, _, _, _ = small
        view = st._replace(H=H, c=c, locked=locked, locked_res=locked_res)
        theta, Y, X, est, valid = _rayleigh_ritz(view, cfg, hermitian)
        conv = jnp.all((est[:d] <= _tol_abs(theta, valid, tol)) & valid[:d])
        full = c >= cfg.K
        done = conv | (full & (restarts >= cfg.max_restarts)) | (steps >= _max_steps(cfg))
        X = X if not hermitian else small[8]
        return theta, Y, X, est, valid, done, jnp.minimum(_next_check(c, cfg), cfg.K)

    def keep(small):
        return (*small[6:], st.done, st.next_check)

    small = (
        st.H, st.c, st.steps, st.restarts, st.locked, st.locked_res,
        st.theta, st.Y, st.X, st.est, st.valid,
    )
    do = (st.c >= st.next_check) | (st.c >= cfg.K) | (st.steps >= _max_steps(cfg))
    theta, Y, X, est, valid, done, nxt = jax.lax.cond(do, run, keep, small)
    return st._replace(theta=theta, Y=Y, X=X, est=est, valid=valid, done=done, next_check=nxt)


@functools.partial(jax.jit, static_argnames=("cfg", "hermitian"))
def lanczos_core(A, key, tol, *, cfg: LanczosConfig, hermitian: bool):
    """Run the restarted block Lanczos / Golub-Kahan iteration; returns raw Ritz data.

    Two nested loops: the inner one expands the basis block by block (with checks), the outer one
    restarts a full basis; the basis only flows through loop carries, never through a conditional
    (no copies).
    """
    m, n = A.shape
    dt = A.dtype
    b, K = cfg.b, cfg.K
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
        next_check=jnp.asarray(cfg.first_check, jnp.int32),
        done=jnp.asarray(False),
        locked=jnp.zeros((K,), bool),
        locked_res=jnp.zeros((K,), dt),
        theta=jnp.zeros((K,), dt),
        Y=jnp.zeros((K, K), dt),
        X=jnp.zeros((K, K), dt) if not hermitian else jnp.zeros((1, 1), dt),
        est=jnp.full((K,), jnp.inf, dt),
        valid=jnp.zeros((K,), bool),
    )
    tol = jnp.asarray(tol, dt)
    max_steps = _max_steps(cfg)

    def expand(st):
        def cond(st):
            return (~st.done) & (st.c < K) & (st.steps < max_steps)

        def body(st):
            return _check(_step(A, st, G, cfg, hermitian), cfg, hermitian, tol)

        return jax.lax.while_loop(cond, body, st)

    def cycle_cond(st):
        return (~st.done) & (st.restarts < cfg.max_restarts) & (st.steps < max_steps)

    st = expand(st)
    st = jax.lax.while_loop(
        cycle_cond, lambda st: expand(_restart(st, cfg, hermitian, tol)), st
    )
    theta, Y, X, est = st.theta, st.Y, st.X, st.est
    d = cfg.d
    Vd = mm(Y[:, :d].T, st.V[:K]).T
    if hermitian:
        s = jnp.abs(theta[:d])
        sign = jnp.where(theta[:d] < 0, -1.0, 1.0).astype(dt)
        Ud = Vd * sign[None, :]
    else:
        s = theta[:d]
        sign = jnp.ones((d,), dt)
        Ud = mm(X[:, :d].T, st.U[:K]).T
    return s, Ud, Vd, sign, est[:d], st.steps, st.restarts
