"""Contexts from a given conditional matrix: :func:`from_conditional`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ._checks import (
    _check_isolated,
    _check_prob_vector,
    _check_samples,
    _coo,
    _float_dtype,
    _index_array,
)
from ._construction import _build, _empty_rows, _matvec
from ._context import Context
from ._rows import _DenseRows, _OperatorRows, _sparse_rows


def from_conditional(
    conditional: Any,
    *,
    weights: Any = None,
    x: Any = None,
    a_values: Any = None,
    isolated: str = "error",
    name: str = "conditional",
) -> Context:
    r"""Build a context from a given conditional matrix ``P[i, j] ∝ P+(a_j | x_i)``.

    Rows are normalised to sum to one (in float64 on the host for dense and sparse input). Dense
    arrays stay dense, scipy / sparse inputs become a
    :class:`~jaxcontext.operators.SparseOperator`; any other
    :class:`~jaxcontext.operators.LinearOperator` is normalised lazily (its entries must be
    non-negative; that is not checked). The context's dtype is the conditional's (module
    docstring); ``weights`` are converted to it.

    Args:
        conditional: ``(m, M)`` non-negative matrix.
        weights: ``(m,)`` sample weights ``P_X`` summing to one (default uniform).
        x: optional ``(m, ...)`` samples.
        a_values: optional ``(M, ...)`` context values.
        isolated: ``"error"`` or ``"drop"`` for rows summing to zero (not for lazy operators).
        name: the context's name.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> c = contexts.from_conditional(np.array([[1.0, 1.0], [0.0, 2.0]]))
        >>> c.marginal().tolist()
        [0.25, 0.75]
    """
    _check_isolated(isolated)
    dense_in = not isinstance(conditional, ops.LinearOperator) and not hasattr(conditional, "tocoo")
    try:
        from jax.experimental import sparse as jsparse

        dense_in = dense_in and not isinstance(conditional, (jsparse.BCOO, jsparse.BCSR))
    except ImportError:  # pragma: no cover
        pass
    lazy = isinstance(conditional, ops.LinearOperator) and not isinstance(
        conditional, (ops.SparseOperator, ops.DenseOperator)
    )
    if isinstance(conditional, ops.DenseOperator):
        conditional, dense_in = conditional.array, True
    if lazy:
        P0 = conditional
        m = P0.shape[0]
        rs = np.asarray(_matvec(P0, jnp.ones((P0.shape[1],), P0.dtype)), np.float64)
        V.check_finite(rs, "conditional row sums")
        if isolated == "drop" and np.any(~(rs > 0)):
            raise ValueError("isolated='drop' needs a dense or sparse conditional, not a lazy one")
        _empty_rows(rs, "error", name, "sample(s)")
        P = ops.product(ops.diag(jnp.asarray(1.0 / rs, _float_dtype(P0.dtype))), P0)
        w = None if weights is None else _check_prob_vector(weights, "weights", m)
        xs = None if x is None else _check_samples(x, m)
        return _build(P, weights=w, x=xs, a_values=a_values, rows=_OperatorRows(P=P), name=name)
    if dense_in:
        a0 = V.as_float_array(conditional, "conditional", ndim=2)
        dt = _float_dtype(a0.dtype)
        a = a0.astype(np.float64)
        V.check_nonempty(a, "conditional")
        V.check_finite(a, "conditional")
        V.check_nonnegative(a, "conditional")
        rs = a.sum(1)
    else:
        r, c, v, shape, dt = _coo(conditional, "conditional")
        V.check_finite(v, "conditional")
        V.check_nonnegative(v, "conditional")
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"conditional: empty input (shape {shape})")
        rs = np.bincount(r, weights=v, minlength=shape[0])
    m = rs.size
    w = None if weights is None else _check_prob_vector(weights, "weights", m)
    xs = None if x is None else _check_samples(x, m)
    kept = _empty_rows(rs, isolated, name, "sample(s)")
    sample_index = None
    if kept is not None:
        sample_index = _index_array(kept, m)
        if w is not None:
            w = w[kept] / w[kept].sum()
        if xs is not None:
            xs = xs[jnp.asarray(kept)]
    if dense_in:
        if kept is not None:
            a, rs = a[kept], rs[kept]
        pn = a / rs[:, None]
        P = ops.dense(jnp.asarray(pn.astype(dt)))
        rows = _DenseRows(P=P.array)
        wv = np.full(pn.shape[0], 1.0 / pn.shape[0]) if w is None else w
        p = pn.T @ wv
    else:
        if kept is not None:
            new = np.full(m, -1)
            new[kept] = np.arange(kept.size)
            sel = new[r] >= 0
            r, c, v = new[r][sel], c[sel], v[sel]
            rs = rs[kept]
        n_rows = rs.size
        P = ops.sparse_from_edges(r, c, v / rs[r], (n_rows, shape[1]), dtype=dt)
        rows = _sparse_rows(P)
        wv = np.full(n_rows, 1.0 / n_rows) if w is None else w
        p = np.bincount(c, weights=v / rs[r] * wv[r], minlength=shape[1])
    return _build(P, p=p, weights=w, x=xs, a_values=a_values, rows=rows,
                  sample_index=sample_index, name=name)
