"""Construction helpers shared by the builders.

Build-time products, the isolated-sample policy, the normalised operator, sample weights and
:func:`_build`, which finishes a :class:`Context` from its conditional.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import operators as ops
from ._context import Context, ContextWarning, ZeroMarginalWarning
from ._rows import _alias_table

Array = jax.Array

_DEFAULT_MATERIALIZE = 2**28


# Build-time products run jitted at module level, so building many contexts of one shape (a
# benchmark sweep) compiles each product once instead of re-tracing the tiled kernels eagerly.
@jax.jit
def _matvec(op: Any, v: Array) -> Array:
    return op.matmat(v)


@jax.jit
def _rmatvec(op: Any, v: Array) -> Array:
    return op.rmatmat(v)


def _empty_rows(row_sums: np.ndarray, isolated: str, name: str, what: str) -> np.ndarray | None:
    """Apply the isolated policy; return the kept row indices (None when nothing is dropped)."""
    bad = np.flatnonzero(~(row_sums > 0))
    if bad.size == 0:
        return None
    first = bad[:5].tolist()
    if isolated == "error":
        raise ValueError(
            f"{name}: {bad.size} {what} without context (rows of P summing to zero), first "
            f"indices {first}; remove them or pass isolated='drop'"
        )
    if bad.size == row_sums.size:
        raise ValueError(f"{name}: every row of P sums to zero; nothing would remain")
    warnings.warn(
        f"{name}: dropping {bad.size} {what} without context (rows of P summing to zero), first "
        f"indices {first}; Context.sample_index maps the kept samples to the input",
        ContextWarning,
        stacklevel=3,
    )
    return np.flatnonzero(row_sums > 0)


def _simplify(seq: list) -> list:
    """Merge adjacent diagonal factors into each other and into sparse factors."""
    out: list = []
    for o in seq:
        if out:
            prev = out[-1]
            if isinstance(prev, ops.DiagonalOperator) and isinstance(o, ops.DiagonalOperator):
                out[-1] = ops.DiagonalOperator(d=prev.d * o.d)
                continue
            if isinstance(prev, ops.DiagonalOperator) and isinstance(o, ops.SparseOperator):
                out[-1] = o.scale(left=prev.d)
                continue
            if isinstance(prev, ops.SparseOperator) and isinstance(o, ops.DiagonalOperator):
                out[-1] = prev.scale(right=o.d)
                continue
        out.append(o)
    return out


def _normalize(P: ops.LinearOperator, left: Array, right: Array) -> ops.LinearOperator:
    """``diag(left) @ P @ diag(right)`` by composition (diagonals folded into sparse factors)."""
    mid = list(P.ops) if isinstance(P, ops.ProductOperator) else [P]
    seq = _simplify([ops.DiagonalOperator(d=left)] + mid + [ops.DiagonalOperator(d=right)])
    return seq[0] if len(seq) == 1 else ops.ProductOperator(ops=tuple(seq))


def _weights(weights: Any, m: int, dtype: Any) -> tuple[Array, Any]:
    if weights is None:
        return jnp.full((m,), 1.0 / m, dtype), None
    w64 = np.asarray(weights, np.float64)
    sampler = None if np.all(w64 == w64[0]) else _alias_table(w64, dtype)
    return jnp.asarray(w64, dtype), sampler


def _build(
    P: ops.LinearOperator,
    *,
    name: str,
    info: tuple = (),
    p: Any = None,
    weights: Any = None,
    x: Any = None,
    a_values: Any = None,
    rows: Any = None,
    sample_index: Any = None,
    pair_sampler: Any = None,
    normalized: Any = None,
    symmetric: bool = False,
) -> Context:
    """Finish a context from its conditional: marginal, zero-marginal policy, operator.

    Everything derived takes the conditional's dtype.
    """
    m, M = P.shape
    dt = np.dtype(P.dtype)
    w, wsampler = _weights(weights, m, dt)
    if p is None:
        p = _rmatvec(P, w)
    p64 = np.asarray(p, np.float64)
    zero = ~(p64 > 0)
    if zero.any():
        nz = int(zero.sum())
        warnings.warn(
            f"{name}: {nz} of {M} context values have zero marginal p_j = P_A(a_j) (first index "
            f"{int(np.flatnonzero(zero)[0])}); they get zero weight in the normalised operator "
            "(equivalent to dropping those columns for the spectrum)",
            ZeroMarginalWarning,
            stacklevel=3,
        )
    q = np.where(zero, 0.0, 1.0 / np.sqrt(np.where(zero, 1.0, p64)))
    if normalized is None:
        normalized = _normalize(P, jnp.sqrt(w), jnp.asarray(q, dt))
    return Context(
        conditional=P,
        weights=w,
        normalized=normalized,
        right=jnp.asarray(np.sqrt(np.maximum(p64, 0.0)), dt),
        p=jnp.asarray(p64, dt),
        x=x,
        a_values=a_values,
        rows=rows,
        wsampler=wsampler,
        sample_index=sample_index,
        name=name,
        info=tuple(info),
        symmetric=symmetric,
        pair_sampler=pair_sampler,
    )
