r"""Randomized block Krylov (Musco & Musco 2015; Tropp & Webber 2023), one shot of fixed depth.

General operators: the basis of ``[A Omega, (A A^T) A Omega, ..., (A A^T)^q A Omega]`` is built
block by block, each block orthonormalised twice against all earlier ones (BCGS2 with CholeskyQR2).
The products ``Z_i = A^T Q_i`` made on the way are kept, so the thin projection
``B^T = A^T Q = [Z_0, ..., Z_q]`` costs one extra block product; then ``B^T = P R`` and the small
SVD ``R = X S Y^T`` give ``U = Q Y``, ``V = P X`` (Rayleigh-Ritz on the Krylov space, no ``A^T A``).

Symmetric operators use the space ``[Omega, A Omega, ..., A^q Omega]``; the projection coefficients
give ``H = Q^T A Q`` and its eigendecomposition the Ritz pairs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._common import gaussian, mm, sort_desc, svd_small
from ._orth import orthonormalize


@functools.partial(jax.jit, static_argnames=("d", "l", "q", "hermitian"))
def krylov_core(A, key, *, d: int, l: int, q: int, hermitian: bool):
    """Return ``(s, U, V, sign)`` from a Krylov space of ``q + 1`` blocks of ``l`` columns."""
    m, n = A.shape
    dt = A.dtype
    # One Gaussian draw: the test block and the block that replaces dependent columns.
    R0 = gaussian(key, (max(m, n), 2 * l), dt)
    omega, G0 = R0[:n, :l], R0[:, l:]

    def fill(i, rows):
        return jnp.roll(G0, 7919 * (i + 1), axis=0)[:rows]

    K = l * (q + 1)
    if hermitian:
        Q = orthonormalize(omega, fill=fill(0, n)).Q
        blocks = [Q]
        H = jnp.zeros((K, K), dt)
        for i in range(q + 1):
            G = A.matmat(blocks[i])
            basis = jnp.concatenate(blocks, axis=1)
            if i < q:
                o = orthonormalize(G, basis, fill=fill(i + 1, n))
                col = jnp.concatenate([o.C, o.R], axis=0)
                blocks.append(o.Q)
            else:
                col = mm(basis.T, G)
            H = H.at[: col.shape[0], i * l : (i + 1) * l].set(col)
        Qall = jnp.concatenate(blocks, axis=1)
        H = jnp.triu(H) + jnp.triu(H, 1).T
        theta, Y = jnp.linalg.eigh(H)
        order = sort_desc(jnp.abs(theta))[:d]
        theta, Y = theta[order], Y[:, order]
        Vd = mm(Qall, Y)
        sign = jnp.where(theta < 0, -1.0, 1.0).astype(dt)
        return jnp.abs(theta), Vd * sign[None, :], Vd, sign
    Q0 = orthonormalize(A.matmat(omega), fill=fill(0, m)).Q
    blocks = [Q0]
    zs = []
    for i in range(q):
        Z = A.rmatmat(blocks[i])
        zs.append(Z)
        basis = jnp.concatenate(blocks, axis=1)
        blocks.append(orthonormalize(A.matmat(Z), basis, fill=fill(i + 1, m)).Q)
    zs.append(A.rmatmat(blocks[q]))
    Qall = jnp.concatenate(blocks, axis=1)
    Bt = jnp.concatenate(zs, axis=1)  # A^T Q, (n, K)
    P, R, _, _ = orthonormalize(Bt, fill=jnp.roll(jnp.tile(G0[:n], (1, q + 1)), 3, axis=0))
    Xr, s, Yr = svd_small(R)
    U = mm(Qall, Yr[:, :d])
    V = mm(P, Xr[:, :d])
    return s[:d], U, V, jnp.ones((d,), dt)
