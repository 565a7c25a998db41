"""The k-nearest-neighbour context :func:`knn`."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import operators as ops
from ._checks import _check_knn
from ._construction import _build
from ._context import Context
from ._neighbors import _knn_indices, _search_settings
from ._rows import _KnnRows, _sparse_rows


def knn(
    x: Any,
    k: int,
    *,
    include_self: bool = False,
    metric: str = "euclidean",
    algorithm: str = "auto",
    n_jobs: int | None = None,
) -> Context:
    r"""Build the kNN context (section 5.3): ``A`` is one of the ``k`` nearest neighbours of ``x``.

    ``P[i, j] = 1/k`` for the ``k`` nearest neighbours ``j`` of ``x_i`` (sparse ``m x m``, not
    symmetric), ``A = X`` (``a_values`` = ``x``). Points that are nobody's neighbour have zero
    marginal (warned, zero weight). Neighbours come from
    :class:`sklearn.neighbors.NearestNeighbors`, searched on ``x`` as stored (in the context's
    dtype); ties in distance are broken by sklearn's search. ``x_i`` itself is excluded (or, with
    ``include_self``, included first) by index, so a duplicate of ``x_i`` is an ordinary neighbour
    at distance 0.

    :meth:`Context.conditional_rows` at a query point equal to a training point (bitwise in the
    context's dtype) returns that point's stored row of ``P``; with duplicated training points the
    ``r``-th query of a value gets the row of the ``r``-th training point holding it, so
    ``conditional_rows(x)`` reproduces ``P`` exactly. Any other point gets ``1/k`` on its ``k``
    nearest training points.

    Args:
        x: ``(m, D)`` samples.
        k: number of neighbours, ``1 <= k < m``.
        include_self: count ``x_i`` as its own nearest neighbour.
        metric: any metric sklearn's ``NearestNeighbors`` accepts.
        algorithm: sklearn's search algorithm (``"auto"``, ``"kd_tree"``, ``"ball_tree"``,
            ``"brute"``); ``"brute"`` is often faster from about ten features on.
        n_jobs: parallel jobs of the neighbour search (sklearn's ``n_jobs``).

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> ctx = contexts.knn(np.arange(6.0)[:, None], 2)
        >>> ctx.shape
        (6, 6)
    """
    xs, k = _check_knn(x, k)
    m = xs.shape[0]
    search = _search_settings(algorithm, n_jobs)
    idx = _knn_indices(np.asarray(xs), k, include_self, metric, search)
    P = ops.sparse_from_edges(np.repeat(np.arange(m), k), idx.ravel(), np.full(m * k, 1.0 / k),
                              (m, m), dtype=xs.dtype)
    p = np.bincount(idx.ravel(), minlength=m) / (m * k)
    rows = _KnnRows(base=_sparse_rows(P), x=xs, k=k, include_self=bool(include_self),
                    metric=metric, search=search)
    return _build(P, p=p, x=xs, a_values=xs, rows=rows, name="knn",
                  info=(("k", k), ("include_self", bool(include_self)), ("metric", metric)))
