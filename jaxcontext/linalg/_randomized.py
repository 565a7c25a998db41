r"""Randomized SVD (Halko, Martinsson & Tropp 2011) with power iterations and a residual test.

General operators: ``Q = orth(A Omega)``, then repeat ``A^T Q = P R`` (orthonormalised),
``R = X S Y^T`` (small SVD), ``G = A P``, ``Q <- orth(G)``. Each round gives triplets
``u = Q Y``, ``v = P X`` with ``A^T u = s v`` exactly, and ``A v - s u = G X - Q Y S`` costs no
extra product, so the loop stops as soon as every wanted triplet meets ``tol``. The symmetric path
is subspace iteration with Rayleigh-Ritz, ``G = A Q``, ``H = Q^T G``, ``Q <- orth(G)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._common import gaussian, mm, sort_desc, svd_small
from ._orth import orthonormalize


@functools.partial(jax.jit, static_argnames=("d", "l", "maxiter", "hermitian"))
def randomized_core(A, key, tol, *, d: int, l: int, maxiter: int, hermitian: bool):
    """Return ``(s, U, V, sign, est, iterations)`` after at most ``maxiter`` rounds."""
    m, n = A.shape
    dt = A.dtype
    # One Gaussian draw: the test block and the block that replaces dependent columns.
    R0 = gaussian(key, (max(m, n), 2 * l), dt)
    omega, G = R0[:n, :l], R0[:, l:]

    def fill(i, rows):
        return jnp.roll(G, 7919 * (i + 1), axis=0)[:rows]

    tol = jnp.asarray(tol, dt)
    if hermitian:
        Q = orthonormalize(omega, fill=G[:n]).Q
    else:
        Q = orthonormalize(A.matmat(omega), fill=G[:m]).Q
    m_out = n if hermitian else m
    init = (
        Q,
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
        jnp.zeros((d,), dt),
        jnp.zeros((m_out, d), dt),
        jnp.zeros((n, d), dt),
        jnp.ones((d,), dt),
        jnp.full((d,), jnp.inf, dt),
    )

    def cond(st):
        return (~st[2]) & (st[1] < maxiter)

    def body(st):
        Q, it, _, _, _, _, _, _ = st
        if hermitian:
            Gp = A.matmat(Q)
            Hm = mm(Q.T, Gp)
            Hm = 0.5 * (Hm + Hm.T)
            theta, Y = jnp.linalg.eigh(Hm)
            order = sort_desc(jnp.abs(theta))
            theta, Y = theta[order], Y[:, order]
            Wr = mm(Gp, Y) - mm(Q, Y) * theta[None, :]
            s = jnp.abs(theta)
            sign = jnp.where(theta < 0, -1.0, 1.0).astype(dt)
            Vd = mm(Q, Y[:, :d])
            Ud = Vd * sign[None, :d]
            sign = sign[:d]
        else:
            P, R, _, _ = orthonormalize(A.rmatmat(Q), fill=fill(2 * it, n))
            Xr, s, Yr = svd_small(R)  # A^T Q Yr = P Xr S
            Gp = A.matmat(P)
            QY = mm(Q, Yr)
            Wr = mm(Gp, Xr) - QY * s[None, :]
            Ud = QY[:, :d]
            Vd = mm(P, Xr[:, :d])
            sign = jnp.ones((d,), dt)
        est = jnp.sqrt(jnp.sum(Wr * Wr, axis=0))[:d]
        done = jnp.all(est <= tol * s[0])
        Qn = orthonormalize(Gp, fill=fill(2 * it + 1, Gp.shape[0])).Q
        return (Qn, it + 1, done, s[:d], Ud, Vd, sign, est)

    Q, it, done, s, U, V, sign, est = jax.lax.while_loop(cond, body, init)
    return s, U, V, sign, est, it
