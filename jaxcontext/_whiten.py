r"""The one whitening routine of the learned path and of evaluation.

``whiten(z)`` centres ``z`` (``(n, d)``) under optional sample weights and multiplies it by
``L^{-T}``, where ``L L^T = C + eps_rel * tr(C) / d * I`` is the Cholesky factor of the (weighted)
covariance: the result has covariance ``I`` (up to the jitter). Cholesky, not a symmetric inverse
square root, because its gradient stays finite when covariance eigenvalues coincide (``eigh``'s does
not), so the same routine serves batch-whitening objectives and evaluation. Whitenings differ by an
orthogonal map, so distances between whitened features (mutual kNN) do not depend on the choice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


class Whitened(NamedTuple):
    """Whitened features and the map that made them.

    Attributes:
        z: ``(n, d)`` whitened features, ``z = (x - mean) @ W``.
        mean: ``(d,)`` the (weighted) mean that was removed.
        W: ``(d, d)`` the whitening map ``L^{-T}`` (upper triangular).
    """

    z: jax.Array
    mean: jax.Array
    W: jax.Array


def whiten(z: Any, *, weights: Any = None, eps: float = 1e-6, ddof: int = 0) -> Whitened:
    r"""Centre and whiten features by the Cholesky factor of their covariance.

    Args:
        z: ``(n, d)`` features (traceable; differentiable).
        weights: optional ``(n,)`` non-negative sample weights summing to one (default uniform).
        eps: relative jitter added to the covariance's diagonal, ``eps * tr(C) / d``; keeps the
            factor defined for rank-deficient batches.
        ddof: ``1`` divides the unweighted covariance by ``n - 1`` (ignored with ``weights``).

    Returns:
        A :class:`Whitened` ``(z, mean, W)``: ``z`` has covariance ``I`` up to the jitter.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jax.random.normal(jax.random.key(0), (500, 3)) @ jnp.array(
        ...     [[2.0, 0, 0], [1, 1, 0], [0, 0, 3]])
        >>> w = whiten(x)
        >>> bool(jnp.allclose(w.z.T @ w.z / 500, jnp.eye(3), atol=1e-4))
        True
    """
    z = jnp.asarray(z)
    if z.ndim != 2:
        raise ValueError(f"z: expected an (n, d) array, got shape {tuple(z.shape)}")
    n, d = z.shape
    if weights is None:
        mean = jnp.mean(z, axis=0)
        zc = z - mean
        C = jnp.matmul(zc.T, zc, precision=HIGHEST) / (n - ddof)
    else:
        w = jnp.asarray(weights, z.dtype)
        mean = jnp.sum(w[:, None] * z, axis=0)
        zc = z - mean
        C = jnp.matmul((w[:, None] * zc).T, zc, precision=HIGHEST)
    C = 0.5 * (C + C.T)
    jitter = eps * jnp.trace(C) / d + jnp.finfo(z.dtype).tiny
    L = jnp.linalg.cholesky(C + jitter * jnp.eye(d, dtype=z.dtype))
    W = jax.scipy.linalg.solve_triangular(L, jnp.eye(d, dtype=z.dtype), lower=True).T
    return Whitened(z=jnp.matmul(zc, W, precision=HIGHEST), mean=mean, W=W)
