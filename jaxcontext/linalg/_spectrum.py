"""Result types, warnings and the residual certificate shared by every solver."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "Spectrum",
    "SolverInfo",
    "NotConvergedWarning",
    "NotConvergedError",
    "residuals",
    "residual_parts",
]


class NotConvergedWarning(UserWarning):
    """A solver stopped (``maxiter``) before every requested triplet met ``tol``."""


class NotConvergedError(RuntimeError):
    """Raised instead of :class:`NotConvergedWarning` when ``on_fail="raise"``."""


class SolverInfo(NamedTuple):
    """What a solver did (a pytree of Python scalars, strings and one bool array).

    Attributes:
        method: the method that ran: ``"dense"``, ``"randomized"``, ``"krylov"``, ``"lanczos"``
            or ``"chebyshev"``.
        reason: why this method and these settings were used (the ``"auto"`` choice, clamps).
        iterations: dense: 1; randomized: power iterations; krylov: Krylov depth (blocks after the
            first); lanczos: expansion steps (block products), see ``restarts``.
        matvecs: operator products counted in columns (one ``A @ x`` or ``A^T @ y`` column each),
            the symmetry and spectrum probes and the final certificate products included.
        restarts: thick restarts (lanczos), else 0.
        converged: ``(d,)`` bool, ``residuals <= tol`` for each triplet (from the final products).
        tol: the tolerance that was used (relative to ``s[0]``).
        block_size: columns per block product.
        basis_size: largest number of basis columns held (per side).
        hermitian: whether the symmetric path ran (``U = V`` up to signs), declared by the caller
            or found by the symmetry probe (``reason`` says which).
        stages: with ``svds(..., profile=True)``, wall time per stage of the solve
            (``{stage: {"s": seconds, "calls": n}}`` plus ``"total_s"``, ``"warmup_s"``,
            ``"other_s"``; see :mod:`jaxcontext.linalg._stages`), else None.
    """

    method: str
    reason: str
    iterations: int
    matvecs: int
    restarts: int
    converged: np.ndarray
    tol: float
    block_size: int
    basis_size: int
    hermitian: bool
    stages: dict | None = None


class Spectrum(NamedTuple):
    r"""Top-d singular triplets ``A ~ U diag(s) V^T`` with their certificate.

    Attributes:
        s: ``(d,)`` singular values, descending.
        U: ``(m, d)`` left singular vectors (orthonormal columns).
        V: ``(n, d)`` right singular vectors (orthonormal columns).
        residuals: ``(d,)`` certificate
            ``max(|A v_i - s_i u_i|, |A^T u_i - s_i v_i|) / s_1`` (absolute when ``s_1 = 0``),
            computed with fresh operator products after the solve; :func:`residuals` recomputes it.
        info: :class:`SolverInfo`.

    Sign convention: the entry of largest magnitude of each column of ``U`` is positive (the first
    such entry on ties); ``V``'s column carries the matching sign, so ``A v_i = s_i u_i``.
    """

    s: jax.Array
    U: jax.Array
    V: jax.Array
    residuals: jax.Array
    info: SolverInfo


def _mm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=HIGHEST)


def residual_parts(A: Any, s: jax.Array, U: jax.Array, V: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Return ``(|A v_i - s_i u_i|, |A^T u_i - s_i v_i|)``, two ``(d,)`` arrays (absolute)."""
    r1 = A.matmat(V) - U * s[None, :]
    r2 = A.rmatmat(U) - V * s[None, :]
    return jnp.sqrt(jnp.sum(r1 * r1, axis=0)), jnp.sqrt(jnp.sum(r2 * r2, axis=0))


def _relative(r1: jax.Array, r2: jax.Array, s: jax.Array) -> jax.Array:
    s1 = jnp.max(jnp.abs(s)) if s.shape[0] else jnp.zeros((), r1.dtype)
    den = jnp.where(s1 > 0, s1, 1.0)
    return jnp.maximum(r1, r2) / den


def residuals(A: Any, s: Any, U: Any, V: Any) -> jax.Array:
    r"""The residual certificate of singular triplets ``(s_i, u_i, v_i)`` of ``A``.

    .. math::  r_i = \max(\|A v_i - s_i u_i\|, \|A^T u_i - s_i v_i\|) / s_1,
               \quad s_1 = \max_i s_i

    (absolute when ``s_1 = 0``). Uses ``2 d`` fresh operator products. A triplet with
    ``r_i <= tol`` is an exact triplet of a matrix within ``tol * s_1`` of ``A``; for a singular
    value separated from the rest of the spectrum by ``gap`` its error is at most about
    ``r_i^2 s_1 / gap``.

    Args:
        A: anything :func:`jaxcontext.operators.as_operator` accepts.
        s: ``(d,)`` singular values.
        U: ``(m, d)`` left vectors.
        V: ``(n, d)`` right vectors.

    Returns:
        ``(d,)`` relative residuals.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.diag(jnp.array([3.0, 2.0, 1.0]))
        >>> r = residuals(A, jnp.array([3.0]), jnp.eye(3)[:, :1], jnp.eye(3)[:, :1])
        >>> float(r[0])
        0.0
    """
    from ..operators import as_operator

    A = as_operator(A)
    s = jnp.asarray(s, A.dtype)
    U = jnp.asarray(U, A.dtype)
    V = jnp.asarray(V, A.dtype)
    m, n = A.shape
    if s.ndim != 1 or U.shape != (m, s.shape[0]) or V.shape != (n, s.shape[0]):
        raise ValueError(
            f"residuals: expected s (d,), U ({m}, d), V ({n}, d) for an operator of shape "
            f"{A.shape}; "
            f"got s {tuple(s.shape)}, U {tuple(U.shape)}, V {tuple(V.shape)}"
        )
    r1, r2 = residual_parts(A, s, U, V)
    return _relative(r1, r2, s)
