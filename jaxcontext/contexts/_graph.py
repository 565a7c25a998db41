"""The graph context :func:`graph` (``P = D^{-1} W``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ._checks import _check_isolated, _coo, _float_dtype, _index_array
from ._construction import _build, _empty_rows
from ._context import Context
from ._rows import _sparse_rows


def _coalesce(r, c, v, n_cols):
    key = r * n_cols + c
    uniq, inv = np.unique(key, return_inverse=True)
    vals = np.bincount(inv.ravel(), weights=v, minlength=uniq.size)
    return uniq // n_cols, uniq % n_cols, vals


def graph(
    adjacency: Any = None,
    *,
    edges: Any = None,
    weights: Any = None,
    num_nodes: int | None = None,
    symmetrize: bool = True,
    isolated: str = "error",
) -> Context:
    r"""Build the graph context (Thm 12): ``A`` is a neighbour of node ``x`` along an edge.

    ``P = D^{-1} W`` and ``P_X(u) = deg(u) / sum deg``, so ``Z = D^{-1/2} W D^{-1/2}`` (symmetric
    for an undirected graph) and the singular values are ``|eig(D^{-1/2} W D^{-1/2})|``. Inputs and
    context values are node ids (``x`` is None; :meth:`Context.sample_pairs` returns node ids).
    The dtype is that of the weights (JAX's default float dtype for an unweighted edge list or an
    integer / boolean adjacency); degrees and normalisations are computed in float64 on the host.

    Args:
        adjacency: ``(n, n)`` non-negative weights as a dense array, scipy sparse matrix or
            :class:`~jaxcontext.operators.SparseOperator`.
        edges: alternatively an ``(E, 2)`` integer edge list (duplicates are summed).
        weights: ``(E,)`` non-negative edge weights (default 1).
        num_nodes: number of nodes for an edge list (default ``max(edges) + 1``).
        symmetrize: use ``(W + W^T) / 2`` (a no-op for a symmetric input; an edge listed once
            counts in both directions with half its weight). With False the graph is directed:
            ``P`` uses out-degrees and ``p`` in-degrees.
        isolated: ``"error"`` (default) or ``"drop"`` for nodes of zero degree.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> ring = contexts.graph(edges=np.array([[0, 1], [1, 2], [2, 3], [3, 0]]))
        >>> np.linalg.eigvalsh(np.asarray(ring.operator().to_dense())).round(4).tolist()
        [-1.0, 0.0, 0.0, 1.0]
    """
    _check_isolated(isolated)
    if (adjacency is None) == (edges is None):
        raise ValueError("graph: pass exactly one of adjacency= or edges=")
    if edges is not None:
        e = V.as_real_array(edges, "edges")
        if e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"edges: expected an (E, 2) integer array, got shape {e.shape}")
        V.check_nonempty(e, "edges")
        n = int(e.max()) + 1 if num_nodes is None else V.check_positive_int(num_nodes, "num_nodes")
        V.check_int_range(e, "edges", 0, n)
        r, c = e[:, 0].astype(np.int64), e[:, 1].astype(np.int64)
        if weights is None:
            v, dt = np.ones(r.size), V.default_float_dtype()
        else:
            w0 = V.as_real_array(weights, "weights")
            v, dt = w0.astype(np.float64).ravel(), _float_dtype(w0.dtype)
        if v.shape != r.shape:
            raise ValueError(f"weights: expected {r.size} edge weights, got shape {v.shape}")
        shape = (n, n)
    else:
        if weights is not None or num_nodes is not None:
            raise ValueError("graph: weights= and num_nodes= go with edges=, not adjacency=")
        r, c, v, shape, dt = _coo(adjacency)
        if shape[0] != shape[1]:
            raise ValueError(f"adjacency: expected a square matrix, got shape {shape}")
    name_w = "weights" if edges is not None else "adjacency"
    V.check_finite(v, name_w)
    V.check_nonnegative(v, name_w)
    n = int(shape[0])
    if symmetrize:
        r, c, v = np.concatenate([r, c]), np.concatenate([c, r]), np.concatenate([v, v]) / 2.0
    keep = v > 0
    r, c, v = _coalesce(r[keep], c[keep], v[keep], n)
    deg = np.bincount(r, weights=v, minlength=n)
    kept = _empty_rows(deg, isolated, "graph", "isolated node(s)")
    sample_index = None
    col_ids = np.arange(n)
    n_rows = n_cols = n
    if kept is not None:
        new = np.full(n, -1)
        new[kept] = np.arange(kept.size)
        sample_index = _index_array(kept, n)
        r = new[r]
        n_rows = kept.size
        if symmetrize:  # an isolated node is also an empty column
            c = new[c]
            col_ids = kept
            n_cols = kept.size
        deg = deg[kept]
    din = np.bincount(c, weights=v, minlength=n_cols)
    vol = deg.sum()
    P = ops.sparse_from_edges(r, c, v / deg[r], (n_rows, n_cols), dtype=dt)
    Z = dataclasses.replace(P, vals=jnp.asarray(v / np.sqrt(deg[r] * din[c]), P.vals.dtype))
    sym = n_rows == n_cols and _is_symmetric(r, c, v, n_cols)
    return _build(P, p=din / vol, weights=deg / vol, a_values=_index_array(col_ids, n),
                  rows=_sparse_rows(P), sample_index=sample_index, normalized=Z, symmetric=sym,
                  name="graph", info=(("num_nodes", n_rows), ("num_edges", int(r.size)),
                                      ("symmetrize", bool(symmetrize))))


def _is_symmetric(r, c, v, n) -> bool:
    order = np.argsort(c * n + r, kind="stable")
    return bool(np.array_equal(r, c[order]) and np.array_equal(c, r[order])
                and np.array_equal(v, v[order]))
