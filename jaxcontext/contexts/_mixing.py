"""Mixing contexts (REFERENCE.md section 4): :func:`convolve`, :func:`combine`, :func:`concat`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ._checks import _float_dtype, _index_array
from ._construction import _build, _rmatvec
from ._context import Context, DisjointValues, IndexedValues
from ._rows import _ChainRows, _ConcatRows, _DenseRows, _MixtureRows, _sparse_rows


def _need_conditional(c: Any, what: str) -> None:
    if not isinstance(c, Context):
        raise TypeError(f"{what}: expected a Context, got {type(c).__name__}")
    if c.conditional is None:
        raise ValueError(
            f"{what}: the {c.name!r} context has no conditional P (it is given by a dual kernel "
            "or teacher features); mixing needs conditionals"
        )


def _same_samples(cs: Sequence[Context], what: str) -> None:
    m = cs[0].shape[0]
    for c in cs[1:]:
        if c.shape[0] != m:
            raise ValueError(
                f"{what}: contexts must share the samples; got m={m} and m={c.shape[0]}"
            )
        if not np.allclose(np.asarray(c.weights), np.asarray(cs[0].weights), rtol=1e-5, atol=0):
            raise ValueError(f"{what}: contexts must share the sample weights P_X")


def convolve(c1: Context, c2: Context) -> Context:
    r"""Convolution ``P = P_1 P_2``: the context value of ``c1`` is a sample of ``c2``.

    ``P+(a | x) = sum_b P_1(b | x) P_2(a | b)`` with ``c1``'s context space equal to ``c2``'s
    samples (``M_1 = m_2``), a lazy operator product. Samples, weights and ``x`` are ``c1``'s, the
    context values ``c2``'s; ``c2``'s own sample weights are not used (its samples are weighted by
    ``c1``'s marginal, so ``p = P_2^T p_1``). The sampler chains the two samplers. Use it to weaken
    contexts that are too strong (REFERENCE.md section 4). The dtype is the two contexts' promoted
    dtype.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> x = np.random.default_rng(0).normal(size=(10, 2))
        >>> c = contexts.convolve(contexts.rbf(x, 1.0), contexts.rbf(x, 1.0))
        >>> c.shape
        (10, 10)
    """
    _need_conditional(c1, "convolve")
    _need_conditional(c2, "convolve")
    M1, m2 = c1.shape[1], c2.shape[0]
    if M1 != m2:
        raise ValueError(
            f"convolve: c1's context space has M1={M1} values but c2 has m2={m2} samples; they "
            "must be the same set (c1.shape[1] == c2.shape[0])"
        )
    P = ops.product(c1.conditional, c2.conditional)
    p = _rmatvec(c2.conditional, c1.marginal())
    rows = _ChainRows(first=c1.rows, second_op=c2.conditional, second=c2.rows)
    return _build(P, p=p, weights=c1.weights if c1.wsampler is not None else None, x=c1.x,
                  a_values=c2.a_values, rows=rows, sample_index=c1.sample_index, name="convolve",
                  info=(("of", (c1.name, c2.name)),))


def _scaled(op: ops.LinearOperator, c: float) -> ops.LinearOperator:
    if isinstance(op, ops.SparseOperator):
        return dataclasses.replace(op, vals=op.vals * jnp.asarray(c, op.vals.dtype))
    if isinstance(op, ops.DenseOperator):
        return dataclasses.replace(op, array=op.array * jnp.asarray(c, op.array.dtype))
    return ops.weighted_sum([op], [c])  # the weight takes the operator's dtype


def _same_x(cs: Sequence[Context]) -> bool:
    xs = [c.x for c in cs]
    if all(x is None for x in xs):
        return True
    if any(x is None for x in xs):
        return False
    x0 = xs[0]
    return all(x is x0 or (x.shape == x0.shape and np.array_equal(np.asarray(x), np.asarray(x0)))
               for x in xs[1:])


def _union_values(cs: Sequence[Context]) -> Any:
    avs = [c.a_values for c in cs]
    if all(a is None for a in avs):
        return None
    avs = [jnp.arange(c.shape[1]) if a is None else a for a, c in zip(avs, cs, strict=True)]
    if all(isinstance(a, jax.Array) for a in avs) and len(
        {(a.shape[1:], a.dtype) for a in avs}
    ) == 1:
        return jnp.concatenate(avs, axis=0)
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum([c.shape[1] for c in cs])]))
    return DisjointValues(parts=tuple(avs), offsets=offsets)


def combine(contexts: Sequence[Context], weights: Any, *, same_space: bool | None = None
            ) -> Context:
    r"""Convex combination of contexts on the same samples (REFERENCE.md section 4).

    With ``lambda_k >= 0`` summing to one:

    * same context space (``same_space=True``; the default when all share ``M`` and ``x``):
      ``P = sum_k lambda_k P_k`` (a :func:`~jaxcontext.operators.weighted_sum`; sparse
      conditionals are summed into one sparse matrix), ``A`` = the shared space;
    * different spaces: ``P = [lambda_1 P_1, lambda_2 P_2, ...]`` (column stack; ``A`` is the
      disjoint union), so ``Z Z^T = sum_k lambda_k Z_k Z_k^T``.

    Components with weight 0 are left out. The sampler picks component ``k`` with probability
    ``lambda_k``, then samples it. The dtype is the components' promoted dtype.

    Args:
        contexts: contexts with the same samples and sample weights.
        weights: ``(K,)`` mixing weights ``lambda``.
        same_space: force or forbid the shared-space reading.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> x = np.random.default_rng(0).normal(size=(10, 2))
        >>> c = contexts.combine([contexts.rbf(x, 1.0), contexts.rbf(x, 3.0)], [0.5, 0.5])
        >>> c.shape
        (10, 10)
    """
    cs = list(contexts)
    if not cs:
        raise ValueError("combine: need at least one context")
    for c in cs:
        _need_conditional(c, "combine")
    lam = V.as_real_array(weights, "weights", np.float64).ravel()
    if lam.shape != (len(cs),):
        raise ValueError(f"weights: expected {len(cs)} mixing weights, got shape {lam.shape}")
    V.check_finite(lam, "weights")
    if lam.min() < 0 or abs(lam.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"weights: a convex combination needs weights >= 0 summing to 1, got "
            f"{lam.tolist()} (sum {lam.sum():.8g})"
        )
    _same_samples(cs, "combine")
    keep = lam > 0
    cs = [c for c, k in zip(cs, keep, strict=True) if k]
    lam = lam[keep]
    Ms = [c.shape[1] for c in cs]
    if same_space is None:
        same_space = len(set(Ms)) == 1 and _same_x(cs)
    if same_space and len(set(Ms)) != 1:
        raise ValueError(f"combine: same_space=True needs one context-space size, got M={Ms}")
    c0 = cs[0]
    w = c0.weights if c0.wsampler is not None else None
    dt = _float_dtype(*(c.conditional.dtype for c in cs))
    lam_dt = jnp.asarray(lam, dt)
    info = (("of", tuple(c.name for c in cs)), ("weights", tuple(float(v) for v in lam)),
            ("same_space", bool(same_space)))
    parts = tuple(c.rows for c in cs)
    if same_space:
        p = sum(float(lk) * np.asarray(c.p, np.float64) for lk, c in zip(lam, cs, strict=True))
        merged = None
        if all(isinstance(c.conditional, ops.SparseOperator) for c in cs):
            r = np.concatenate([np.asarray(c.conditional.rows) for c in cs])
            cc = np.concatenate([np.asarray(c.conditional.cols) for c in cs])
            v = np.concatenate([lk * np.asarray(c.conditional.vals, np.float64)
                                for lk, c in zip(lam, cs, strict=True)])
            P = ops.sparse_from_edges(r, cc, v, c0.shape, dtype=dt)
            merged = _sparse_rows(P)
        else:
            P = ops.weighted_sum([c.conditional for c in cs], lam_dt)
        rows = _MixtureRows(parts=parts, weights=lam_dt, merged=merged)
        a_values = c0.a_values
    else:
        P = ops.hstack([_scaled(c.conditional, float(lk)) for lk, c in zip(lam, cs, strict=True)])
        p = np.concatenate([float(lk) * np.asarray(c.p, np.float64)
                            for lk, c in zip(lam, cs, strict=True)])
        offsets = tuple(int(o) for o in np.cumsum([0] + Ms[:-1]))
        rows = _MixtureRows(parts=parts, weights=lam_dt, offsets=offsets)
        a_values = _union_values(cs)
    return _build(P, p=p, weights=w, x=c0.x, a_values=a_values, rows=rows,
                  sample_index=c0.sample_index, name="combine", info=info)


def _host_csr(c: Context, what: str, max_entries: int):
    P = c.conditional
    m, M = P.shape
    if isinstance(P, ops.SparseOperator):
        return (np.asarray(P.indptr).astype(np.int64), np.asarray(P.cols).astype(np.int64),
                np.asarray(P.vals, np.float64), True)
    if m * M > max_entries:
        raise MemoryError(
            f"concat: {what}'s conditional is a {type(P).__name__} of shape {P.shape}; its dense "
            f"form ({m * M} entries) exceeds max_entries={max_entries}"
        )
    d = np.asarray(P.to_dense(max_entries=max(m * M, 1)), np.float64)
    r, col = np.nonzero(d)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=m))])
    return indptr, col.astype(np.int64), d[r, col], False


def concat(c1: Context, c2: Context, *, max_entries: int = 2**26) -> Context:
    r"""Concatenation ``A = (A_1, A_2)`` with ``A_1``, ``A_2`` independent given ``x``.

    ``P[i, (j_1, j_2)] = P_1[i, j_1] P_2[i, j_2]`` (a row-wise Khatri-Rao product). Only the pairs
    that occur are stored as context values (so none has zero marginal): sparse with
    ``nnz_1(i) * nnz_2(i)`` entries in row ``i`` for sparse conditionals, dense when either
    conditional is dense and the result is small. ``a_values`` is the pair
    ``(a_1[j_1], a_2[j_2])`` (as :class:`IndexedValues`). Use it to strengthen contexts that are
    too weak (REFERENCE.md section 4). The dtype is the two contexts' promoted dtype.

    Args:
        c1: first context.
        c2: second context, on the same samples with the same weights.
        max_entries: refuse (MemoryError, saying why) when the product needs more stored entries.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> x = np.random.default_rng(0).normal(size=(6, 2))
        >>> y = np.array([0, 0, 0, 1, 1, 1])
        >>> contexts.concat(contexts.labels(y), contexts.rbf(x, 1.0)).shape  # occurring (y, x_j)
        (6, 12)
    """
    _need_conditional(c1, "concat")
    _need_conditional(c2, "concat")
    _same_samples([c1, c2], "concat")
    m = c1.shape[0]
    M2 = c2.shape[1]
    ip1, col1, v1, sp1 = _host_csr(c1, "c1", max_entries)
    ip2, col2, v2, sp2 = _host_csr(c2, "c2", max_entries)
    n1, n2 = np.diff(ip1), np.diff(ip2)
    per_row = n1 * n2
    total = int(per_row.sum())
    if total > max_entries:
        raise MemoryError(
            f"concat: the product space needs {total} stored entries (the sum over samples of "
            f"nnz1 * nnz2 per row, up to {int(per_row.max())} in one row), above "
            f"max_entries={max_entries}; sparsify the contexts (e.g. smaller k) or raise "
            "max_entries"
        )
    row1 = np.repeat(np.arange(m), n1)
    rep = n2[row1]
    e1 = np.repeat(np.arange(col1.size), rep)
    offs = np.arange(total) - np.repeat(np.cumsum(rep) - rep, rep)
    e2 = np.repeat(ip2[row1], rep) + offs
    rr, j1, j2 = row1[e1], col1[e1], col2[e2]
    val = v1[e1] * v2[e2]
    pair = j1 * M2 + j2
    uniq, inv = np.unique(pair, return_inverse=True)
    inv = inv.ravel()
    U = uniq.size
    pj1, pj2 = uniq // M2, uniq % M2
    w64 = np.asarray(c1.weights, np.float64)
    p = np.bincount(inv, weights=val * w64[rr], minlength=U)
    dt = _float_dtype(c1.conditional.dtype, c2.conditional.dtype)
    if (not (sp1 and sp2)) and m * U <= max_entries:
        d = np.zeros((m, U))
        d[rr, inv] = val
        P = ops.DenseOperator(array=jnp.asarray(d, dt))
        base = _DenseRows(P=P.array)
    else:
        P = ops.sparse_from_edges(rr, inv, val, (m, U), dtype=dt)
        base = _sparse_rows(P)

    def values(c, idx):
        vals = jnp.arange(c.shape[1]) if c.a_values is None else c.a_values
        return IndexedValues(values=vals, index=idx)

    i1, i2 = _index_array(pj1, U, c1.shape[1]), _index_array(pj2, U, M2)
    rows = _ConcatRows(base=base, first=c1.rows, second=c2.rows, pj1=i1, pj2=i2)
    return _build(P, p=p, weights=c1.weights if c1.wsampler is not None else None, x=c1.x,
                  a_values=(values(c1, i1), values(c2, i2)), rows=rows,
                  sample_index=c1.sample_index, name="concat",
                  info=(("of", (c1.name, c2.name)),))
