"""Kernel contexts: :func:`rbf` (kernel-normalised rows) and :func:`from_kernel` (a dual kernel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import kernels as K
from .. import operators as ops
from ._checks import _check_points, _check_positive_scalar
from ._construction import _DEFAULT_MATERIALIZE, _build
from ._context import Context
from ._rows import _DualKernelRows, _KernelRows

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST


# Build-time products run jitted at module level (see _construction.py).
@jax.jit
def _kernel_sums(kop: Any, w: Array) -> tuple[Array, Array]:
    """Row sums ``r = K 1`` and the marginal ``K^T (w / r)`` of ``diag(1/r) K``."""
    r = kop.row_sums()
    return r, kop.rmatmat(w / r)


@jax.jit
def _dense_conditional(z: Array, kernel: Any) -> tuple[Array, Array]:
    kd = kernel(z, z)
    pd = kd / jnp.sum(kd, axis=1, keepdims=True)
    w = jnp.full((z.shape[0],), 1.0 / z.shape[0], pd.dtype)
    return pd, jnp.matmul(w, pd, precision=HIGHEST)


def _kernel_parts(z: Array, kernel: Any, *, materialize_bytes: int, block_rows: Any,
                  use: str = "x"):
    """Conditional ``diag(1/K 1) K``, its marginal under uniform weights, and the row model."""
    m = z.shape[0]
    if m * m * z.dtype.itemsize <= int(materialize_bytes):
        pd, p = _dense_conditional(z, kernel)
        P = ops.DenseOperator(array=pd)
    else:
        Kop = ops.kernel_operator(z, z, kernel, block_rows=block_rows)
        r, p = _kernel_sums(Kop, jnp.full((m,), 1.0 / m, z.dtype))
        P = ops.product(ops.DiagonalOperator(d=1.0 / r), Kop)
    return P, p, _KernelRows(x=z, kernel=kernel, use=use)


def rbf(
    x: Any,
    gamma: float,
    *,
    materialize_bytes: int = _DEFAULT_MATERIALIZE,
    block_rows: int | None = None,
) -> Context:
    r"""Build the RBF context (section 5.3): ``P[i, j] ∝ exp(-gamma |x_i - x_j|^2)``.

    ``A = X``. Built on a matrix-free :class:`~jaxcontext.operators.KernelOperator` composed with
    diagonal scalings (row sums by one product), materialised as a dense matrix only when
    ``m * m * itemsize`` bytes fit ``materialize_bytes`` (``itemsize`` of the context's dtype,
    that of ``x``: module docstring).

    Args:
        x: ``(m, D)`` samples.
        gamma: ``> 0``.
        materialize_bytes: budget in bytes for a dense ``m x m`` conditional.
        block_rows: tile rows of the matrix-free kernel (default from a 64 MiB tile budget).

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> ctx = contexts.rbf(np.random.default_rng(0).normal(size=(5, 2)), gamma=0.5)
        >>> float(ctx.conditional.to_dense().sum(1).mean()).__round__(5)
        1.0
    """
    xs = _check_points(x)
    g = _check_positive_scalar(gamma, "gamma")
    P, p, rows = _kernel_parts(xs, K.RBF(g), materialize_bytes=materialize_bytes,
                               block_rows=block_rows)
    return _build(P, p=p, x=xs, a_values=xs, rows=rows, name="rbf", info=(("gamma", g),))


def from_kernel(
    x: Any,
    kernel_fn: Callable,
    *,
    materialize_bytes: int = _DEFAULT_MATERIALIZE,
    block_rows: int | None = None,
) -> Context:
    r"""Build a context given by its dual kernel ``k_X+`` (kernel access only, ``squared``).

    :meth:`Context.operator` is the PSD ``K_X / m`` with ``K_X[i, l] = k_X+(x_i, x_l)``
    (matrix-free through :class:`~jaxcontext.operators.KernelOperator`, dense when it fits
    ``materialize_bytes``); its eigenvalues estimate ``s_i^2``. :meth:`Context.gram` evaluates
    ``kernel_fn``, :meth:`Context.conditional_rows` returns ``k_X+(x_new, x_l)``. There is no
    pair sampler and no marginal. The dtype is that of ``x`` (module docstring); kernel values
    are cast to it.

    Args:
        x: ``(m, D)`` samples.
        kernel_fn: ``kernel_fn(x_batch, y_batch) -> Gram``, symmetric positive semi-definite,
            e.g. :class:`jaxcontext.kernels.Mehler` (a pytree kernel keeps its parameters
            traceable; plain functions are wrapped in ``jax.tree_util.Partial``).
        materialize_bytes: budget in bytes for a dense ``m x m`` operator.
        block_rows: tile rows of the matrix-free operator.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts, kernels
        >>> x = np.random.default_rng(0).normal(size=(50, 1))
        >>> ctx = contexts.from_kernel(x, kernels.Mehler(rho=0.5))
        >>> ctx.squared
        True
    """
    xs = _check_points(x)
    if not callable(kernel_fn):
        raise ValueError(f"kernel_fn: expected a callable, got {type(kernel_fn).__name__}")
    kern = kernel_fn if ops._is_pytree_callable(kernel_fn) else jax.tree_util.Partial(kernel_fn)
    m = xs.shape[0]
    dt = xs.dtype
    if m * m * dt.itemsize <= int(materialize_bytes):
        kd = jnp.asarray(kern(xs, xs))
        if kd.shape != (m, m):
            raise ValueError(f"kernel_fn: expected an ({m}, {m}) Gram, got shape {kd.shape}")
        V.check_real(kd, "kernel_fn(x, x)")
        V.check_finite(kd, "kernel_fn(x, x)")
        kd = kd.astype(dt)
        kh = np.asarray(kd, np.float64)
        tol = 100 * np.finfo(dt).eps * max(1.0, np.abs(kh).max())
        if np.abs(kh - kh.T).max() > tol:
            raise ValueError("kernel_fn: the Gram matrix is not symmetric; a dual kernel must be")
        normalized = ops.DenseOperator(array=kd / m)
    else:
        normalized = ops.kernel_operator(xs, xs, kern, block_rows=block_rows) * (1.0 / m)
    w = jnp.full((m,), 1.0 / m, dt)
    label = repr(kernel_fn) if len(repr(kernel_fn)) <= 80 else type(kernel_fn).__name__
    return Context(conditional=None, weights=w, normalized=normalized, right=jnp.sqrt(w), p=None,
                   x=xs, rows=_DualKernelRows(x=xs, kernel=kern), name="from_kernel",
                   info=(("kernel", label),), squared=True, symmetric=True)
