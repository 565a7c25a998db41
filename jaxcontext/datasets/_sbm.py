"""Stochastic block models: :func:`sbm`, its edges, blocks and population spectrum."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from ._common import (
    AnalyticSpectrum,
    Problem,
    _check_count,
    _check_probability,
    _contexts,
    _levels,
    _numpy_rng,
)


def sbm_blocks(num_nodes: int, num_blocks: int) -> np.ndarray:
    """Block ids of the nodes: contiguous, equal sizes (the first ``num_nodes % num_blocks`` +1).

    Example:
        >>> from jaxcontext.datasets import sbm_blocks
        >>> sbm_blocks(7, 3).tolist()
        [0, 0, 0, 1, 1, 2, 2]
    """
    n = V.check_positive_int(num_nodes, "num_nodes")
    b = V.check_positive_int(num_blocks, "num_blocks")
    if b > n:
        raise ValueError(f"num_blocks: at most num_nodes={n} blocks, got {b}")
    sizes = np.full(b, n // b, np.int64)
    sizes[: n % b] += 1
    return np.repeat(np.arange(b), sizes)


def _sample_bernoulli_set(rng: np.random.Generator, total: int, p: float) -> np.ndarray:
    """Sorted indices in ``[0, total)``, each included independently with probability ``p``."""
    if total == 0 or p == 0.0:
        return np.zeros(0, np.int64)
    if total <= 2**22 or p > 0.25:  # enumerate (cost ~ the output size when p is large)
        chunk = 2**22
        parts = []
        for start in range(0, total, chunk):
            size = min(chunk, total - start)
            parts.append(np.flatnonzero(rng.random(size) < p).astype(np.int64) + start)
        return np.concatenate(parts)
    k = int(rng.binomial(total, p))
    # k distinct uniform indices: the set of distinct draws is a uniform random subset
    codes = _sorted_unique(rng.integers(0, total, size=k, dtype=np.int64))
    while codes.size < k:
        extra = rng.integers(0, total, size=k - codes.size, dtype=np.int64)
        codes = _sorted_unique(np.concatenate([codes, extra]))
    return codes


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values by one sort (numpy 2.x's hash-based ``np.unique`` is far slower)."""
    a = np.sort(a)
    keep = np.ones(a.size, bool)
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _decode_pairs(q: np.ndarray, counts: np.ndarray, starts: np.ndarray):
    """Map flat pair indices to ``(i, j)``.

    Node ``i`` owns ``counts[i]`` partners ``starts[i], starts[i] + 1, ...``.
    """
    cum = np.concatenate([[0], np.cumsum(counts)])
    i = np.searchsorted(cum, q, side="right") - 1
    return i, starts[i] + (q - cum[i])


def _check_sbm(num_nodes, num_blocks, p_in, p_out):
    blocks = sbm_blocks(num_nodes, num_blocks)
    return blocks, _check_probability(p_in, "p_in"), _check_probability(p_out, "p_out")


def sbm_edges(
    num_nodes: int, num_blocks: int, p_in: float, p_out: float, *, key: Any
) -> tuple[np.ndarray, np.ndarray]:
    r"""Sample the edges of a stochastic block model (numpy, no dense matrix).

    Each unordered pair ``{i, j}``, ``i != j``, is an edge independently with probability
    ``p_in`` inside a block and ``p_out`` across blocks (blocks: :func:`sbm_blocks`). Pairs are
    indexed per node (node ``i`` owns its partners ``j > i`` in its block, and separately those
    beyond its block), the number of edges is drawn from the binomial law and that many distinct
    pair indices are drawn uniformly (or, for dense parts, every pair is tested): the exact
    Erdos-Renyi-per-block law in ``O(edges log edges)`` time and ``O(num_nodes + edges)`` memory.

    Args:
        num_nodes: number of nodes.
        num_blocks: number of blocks (``num_blocks <= num_nodes``).
        p_in: edge probability inside a block, in ``[0, 1]``.
        p_out: edge probability across blocks, in ``[0, 1]``.
        key: JAX random key (a numpy generator is seeded from it: same key, same graph).

    Returns:
        ``(rows, cols)`` int64 arrays, each undirected edge once with ``rows < cols`` (sorted
        within the two parts). The symmetric adjacency is ``A + A^T`` with ``A`` the 0/1 matrix of
        these pairs, e.g. ``scipy.sparse.coo_matrix((ones, (rows, cols)), (n, n))``.

    Example:
        >>> import jax
        >>> from jaxcontext.datasets import sbm_edges
        >>> r, c = sbm_edges(1000, 2, 0.02, 0.002, key=jax.random.key(0))
        >>> bool((r < c).all()), 4000 < r.size < 6500
        (True, True)
    """
    blocks, p_in, p_out = _check_sbm(num_nodes, num_blocks, p_in, p_out)
    rng = _numpy_rng(key)
    n = blocks.size
    ends = np.concatenate([np.flatnonzero(np.diff(blocks)) + 1, [n]])[blocks]  # end of own block
    node = np.arange(n, dtype=np.int64)
    # within blocks: partners i+1 .. end-1;  across blocks: partners end .. n-1
    r1, c1 = _decode_pairs(_sample_bernoulli_set(rng, int((ends - node - 1).sum()), p_in),
                           ends - node - 1, node + 1)
    r2, c2 = _decode_pairs(_sample_bernoulli_set(rng, int((n - ends).sum()), p_out),
                           n - ends, ends)
    return np.concatenate([r1, r2]).astype(np.int64), np.concatenate([c1, c2]).astype(np.int64)


def sbm_spectrum(
    num_nodes: int, num_blocks: int, p_in: float, p_out: float
) -> tuple[AnalyticSpectrum, np.ndarray, np.ndarray]:
    r"""Compute the population spectrum of an SBM: the expected graph's block eigenpairs.

    For the expected adjacency ``E[W] = Z_b B Z_b^T - p_in I`` (no self-loops; ``B`` the ``b x b``
    matrix of ``p_in`` / ``p_out``) and expected degrees ``d_a``, the normalised matrix
    ``D^{-1/2} E[W] D^{-1/2}`` has, on the span of the block indicators, the eigenpairs of the
    ``b x b`` matrix ``D_b^{-1/2} (S^{1/2} B S^{1/2} - p_in I) D_b^{-1/2}`` (``S`` the block sizes);
    for equal blocks: ``1`` and ``(p_in - p_out) / (p_in + (b - 1) p_out)`` (up to the
    ``O(p_in / d)`` self-loop correction) with multiplicity ``b - 1``. The remaining eigenvalues
    are ``-p_in / (d_a - p_in)`` (tiny); a *sampled* graph's bulk instead spreads to about
    ``2 / sqrt(d)``, and its top values deviate from these by ``O(1 / sqrt(d))``.

    Returns:
        ``(spectrum, values, vectors)``: the block levels as an :class:`AnalyticSpectrum`, the
        ``b`` signed eigenvalues sorted by ``|value|`` descending, and the ``(b, b)`` eigenvectors
        ``c`` (columns), sign-fixed so the first nonzero entry is positive.
    """
    blocks, p_in, p_out = _check_sbm(num_nodes, num_blocks, p_in, p_out)
    b = int(num_blocks)
    s = np.bincount(blocks, minlength=b).astype(np.float64)
    B = np.full((b, b), p_out)
    np.fill_diagonal(B, p_in)
    d = B @ s - p_in
    if np.any(d <= 0):
        raise ValueError(
            f"sbm: block(s) {np.flatnonzero(d <= 0).tolist()} have expected degree 0 "
            f"(p_in={p_in}, p_out={p_out}); every node needs neighbours"
        )
    root = np.sqrt(s)
    M = (root[:, None] * B * root[None, :] - p_in * np.eye(b)) / np.sqrt(d[:, None] * d[None, :])
    vals, vecs = np.linalg.eigh(M)
    order = np.lexsort((-vals, -np.round(np.abs(vals), 12)))
    vals, vecs = vals[order], vecs[:, order]
    for k in range(b):
        nz = np.flatnonzero(np.abs(vecs[:, k]) > 1e-12)
        if nz.size and vecs[nz[0], k] < 0:
            vecs[:, k] = -vecs[:, k]
    return _levels(np.abs(vals)), vals, vecs


def sbm(
    num_nodes: int,
    num_blocks: int,
    p_in: float,
    p_out: float,
    *,
    key: Any,
    isolated: str = "error",
) -> Problem:
    r"""Build a stochastic block model graph as a graph context (``contexts.graph``).

    Edges from :func:`sbm_edges` (scalable: numpy, sparse, exact law). The "exact" values are the
    *population* ones of the expected graph (:func:`sbm_spectrum`): ``singular_values`` holds the
    top ``num_blocks`` values (``1``, then ``(p_in - p_out) / (p_in + (b - 1) p_out)`` for equal
    blocks); the sample spectrum deviates by ``O(1 / sqrt(degree))`` and has a bulk up to about
    ``info["bulk_edge"] = 2 / sqrt(mean expected degree)``, so the block values are visible when
    they exceed it. ``singular_functions(node_ids, n)`` (``n <= num_blocks``) evaluates the
    population singular functions, constant on blocks and orthonormal under the expected-degree
    law ``P_X(u) ∝ d_{a(u)}``.

    ``x`` is the node ids ``0..num_nodes-1`` (the graph has no features); blocks are contiguous
    (``info["blocks"]``). A rare node without edges raises (``isolated="error"``, the default) or
    is dropped (``isolated="drop"``, see ``contexts.graph``).

    Example:
        >>> import jax
        >>> from jaxcontext import datasets
        >>> prob = datasets.sbm(600, 3, 0.2, 0.02, key=jax.random.key(0))
        >>> prob.singular_values.round(2).tolist()
        [1.0, 0.75, 0.75]
    """
    spectrum, vals, vecs = sbm_spectrum(num_nodes, num_blocks, p_in, p_out)
    blocks = sbm_blocks(num_nodes, num_blocks)
    rows, cols = sbm_edges(num_nodes, num_blocks, p_in, p_out, key=key)
    n, b = blocks.size, int(num_blocks)
    if rows.size == 0:
        raise ValueError(f"sbm: the sampled graph has no edges (p_in={p_in}, p_out={p_out})")
    ctx = _contexts().graph(edges=np.stack([rows, cols], axis=1), num_nodes=n, isolated=isolated)
    s = np.bincount(blocks, minlength=b).astype(np.float64)
    B = np.full((b, b), float(p_out))
    np.fill_diagonal(B, float(p_in))
    d = B @ s - float(p_in)
    pi = d / float(s @ d)  # expected-degree law of one node of each block
    table = vecs / np.sqrt(s * pi)[:, None]  # mu_k on block a

    def funcs(points: Any, k: int) -> np.ndarray:
        k = _check_count(k, b)
        a = np.asarray(points)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"points: expected (N,) integer node ids, got {a.dtype} {a.shape}")
        V.check_int_range(a, "points", 0, n)
        return table[blocks[a], :k]

    info = {
        "num_blocks": b, "p_in": float(p_in), "p_out": float(p_out), "blocks": blocks,
        "spectrum": spectrum, "eigenvalues": vals, "num_edges": int(rows.size),
        "expected_degree": d[blocks].mean(), "bulk_edge": 2.0 / math.sqrt(d[blocks].mean()),
    }
    x = jnp.arange(n, dtype=V.index_dtype(n))
    return Problem("sbm", x, ctx, np.abs(vals), funcs, info)
