r"""Contexts: samples plus the conditional law ``P+(a | x)`` of a context variable.

A :class:`Context` describes the joint law ``P+(x, a)`` on ``m`` samples ``x_1..x_m`` with weights
``w_i = P_X(x_i)`` and ``M`` context values ``a_1..a_M`` (REFERENCE.md sections 1-2):

* the conditional ``P[i, j] = P+(a_j | x_i)``, a row-stochastic
  :class:`~jaxcontext.operators.LinearOperator` of shape ``(m, M)``;
* the column marginal ``p = P^T w`` (``p_j = P_A(a_j)``);
* the normalised operator

  .. math:: Z = \operatorname{diag}(\sqrt{w})\, P\, \operatorname{diag}(p)^{-1/2},

  whose singular values estimate the contexture's ``1 = s_0 >= s_1 >= ...``. With uniform weights
  ``Z = P diag(p)^{-1/2} / sqrt(m)`` and ``Z Z^T = K_X / m`` with
  ``K_X[i, l] = k_X+(x_i, x_l)``; for a graph ``Z = D^{-1/2} W D^{-1/2}``. The trivial pair
  ``s_0 = 1`` has left vector ``sqrt(w)`` (:meth:`Context.trivial_left`) and right vector
  ``sqrt(p)`` (:meth:`Context.trivial_right`);
* a pair sampler for SVME (:meth:`Context.sample_indices`, :meth:`Context.sample_pairs`: ``i ~ w``,
  ``j ~ P[i, :]``, exact for every builder), the batch Gram of the dual kernel for KISE
  (:meth:`Context.gram`) and, where ``P+(a | x)`` can be evaluated at new inputs,
  :meth:`Context.conditional_rows` for out-of-sample extension.

Builders: :func:`labels`, :func:`graph`, :func:`knn`, :func:`rbf`, :func:`masked`,
:func:`transformation`, :func:`from_conditional`, :func:`from_kernel`, :func:`teacher`. Mixing
(REFERENCE.md section 4) composes operators: :func:`convolve` (``P_1 P_2``), :func:`combine`
(convex combination) and :func:`concat` (``A = (A_1, A_2)``).

Policies:

* **Zero-marginal context values** (``p_j = 0``: a kNN point that is nobody's neighbour, an empty
  class) get zero weight in ``Z`` (column ``j`` of ``Z`` is zero), which for the spectrum is the
  same as dropping the column; a :class:`ZeroMarginalWarning` says how many.
* **Samples without context** (rows of ``P`` summing to zero, e.g. isolated graph nodes):
  ``isolated="error"`` (default) raises a ValueError naming how many and the first few;
  ``isolated="drop"`` removes them with a :class:`ContextWarning`, and
  :attr:`Context.sample_index` maps the remaining samples to the input's indices.
* **Dtypes.** A context computes in the float dtype of its *data input*: ``x`` for :func:`knn`,
  :func:`rbf`, :func:`masked`, :func:`transformation` and :func:`from_kernel`; ``y`` for
  regression :func:`labels`; the adjacency or edge ``weights`` for :func:`graph`; the conditional
  for :func:`from_conditional`; the features for :func:`teacher`. A floating input keeps its
  dtype where JAX can hold it: float64 stays float64 while ``jax_enable_x64`` is on (globally or
  inside ``jax.enable_x64(True)``), float32 stays float32 always, and with x64 off float64
  becomes float32, as ``jnp.asarray`` does. Integer and boolean data (class labels, unweighted
  graphs, integer points) get JAX's default float dtype (float32, or float64 with x64 on);
  half precision is promoted to float32. Everything derived -- ``P``, the weights ``w``, the
  marginal ``p``, ``Z``, the trivial vectors, the samplers' probabilities, Grams and
  :meth:`Context.conditional_rows` (new points are cast to the context's dtype) -- has that
  dtype; secondary inputs (sample weights, mixing weights, kernel parameters) are converted to
  it. Mixtures (:func:`convolve`, :func:`combine`, :func:`concat`) take the promoted dtype of
  their components. Complex input is refused with a TypeError naming the argument.

Example:
    >>> import numpy as np
    >>> from jaxcontext import contexts
    >>> ctx = contexts.labels(np.array([0, 0, 1, 1, 2, 2]))
    >>> np.linalg.svd(np.asarray(ctx.operator().to_dense()), compute_uv=False).round(4).tolist()
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as V
from . import kernels as K
from . import operators as ops
from .operators import _pytree, _static

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "Context",
    "ContextWarning",
    "ZeroMarginalWarning",
    "IndexedValues",
    "DisjointValues",
    "labels",
    "graph",
    "knn",
    "rbf",
    "masked",
    "feature_masks",
    "transformation",
    "from_conditional",
    "from_kernel",
    "teacher",
    "convolve",
    "combine",
    "concat",
]

# entries of one (rows, M) block evaluated at once by the row samplers / row evaluators
_ROW_BLOCK_ENTRIES = 2**24
_DEFAULT_MATERIALIZE = 2**28


class ContextWarning(UserWarning):
    """Warnings about a context's construction (dropped samples, rank, continuous values)."""


class ZeroMarginalWarning(ContextWarning):
    """Some context values have zero marginal ``p_j`` and get zero weight in the operator."""


# --------------------------------------------------------------------------------------------------
# Context values
# --------------------------------------------------------------------------------------------------
@_pytree
class IndexedValues:
    """Context values ``values[index[j]]`` without copying ``values`` (used by :func:`concat`)."""

    values: Any
    index: Array


@_pytree
class DisjointValues:
    """Context values of a disjoint union of spaces (:func:`combine` of different spaces).

    Taking index ``j`` gives ``(component, parts)``: the component each ``j`` falls in and, for
    every component, its values at ``j``'s local index (meaningful only where ``component``
    matches).
    """

    parts: tuple
    offsets: tuple = _static()


def _take(a: Any, j: Array) -> Any:
    """``a_values`` at indices ``j`` (arrays, tuples, dicts, indexed and disjoint values)."""
    if a is None:
        return None
    if isinstance(a, IndexedValues):
        return _take(a.values, a.index[j])
    if isinstance(a, DisjointValues):
        off = a.offsets
        comp = jnp.searchsorted(jnp.asarray(off[1:-1], j.dtype), j, side="right")
        parts = tuple(
            _take(p, jnp.clip(j - off[k], 0, off[k + 1] - off[k] - 1))
            for k, p in enumerate(a.parts)
        )
        return comp, parts
    if isinstance(a, (tuple, list)):
        return tuple(_take(v, j) for v in a)
    if isinstance(a, dict):
        return {k: _take(v, j) for k, v in a.items()}
    return jnp.asarray(a)[j]


# --------------------------------------------------------------------------------------------------
# Chunked row evaluation
# --------------------------------------------------------------------------------------------------
def _chunk_rows(b: int, ncols: int) -> int:
    return max(1, min(b, _ROW_BLOCK_ENTRIES // max(1, ncols)))


def _chunked(fn: Callable, a: Array, ncols: int) -> Array:
    """``fn(a)`` for a leading batch axis, in chunks so that one ``(chunk, ncols)`` block fits."""
    b = a.shape[0]
    chunk = _chunk_rows(b, ncols)
    if chunk >= b:
        return fn(a)
    n = -(-b // chunk)
    pad = n * chunk - b
    ap = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape((n, chunk) + a.shape[1:])
    out = jax.lax.map(fn, ap)
    return out.reshape((n * chunk,) + out.shape[2:])[:b]


def _chunked_sample(fn: Callable, key: Array, i: Array, ncols: int) -> Array:
    """``fn(key, i)`` in chunks of the index batch (one key per chunk)."""
    b = i.shape[0]
    chunk = _chunk_rows(b, ncols)
    if chunk >= b:
        return fn(key, i)
    n = -(-b // chunk)
    ip = jnp.pad(i, (0, n * chunk - b)).reshape(n, chunk)
    keys = jax.random.split(key, n)
    out = jax.lax.map(lambda a: fn(a[0], a[1]), (keys, ip))
    return out.reshape(-1)[:b]


def _categorical_rows(key: Array, logits: Array) -> Array:
    """One exact draw per row of ``(b, M)`` unnormalised log-probabilities.

    Two-level Gumbel-max: a block of ``~sqrt(M)`` columns is drawn with probability its total
    (``logsumexp`` of the block), then a column within the block. Exact like plain Gumbel-max,
    but it needs ``~2 sqrt(M)`` random numbers per row instead of ``M`` (random bits dominate the
    cost of sampling long kernel rows).
    """
    b, M = logits.shape
    if M <= 1024:
        return jax.random.categorical(key, logits, axis=-1)
    blk = 1 << int(math.ceil(math.log2(math.sqrt(M))))
    nblk = -(-M // blk)
    lg = jnp.pad(logits, ((0, 0), (0, nblk * blk - M)), constant_values=-jnp.inf)
    lg = lg.reshape(b, nblk, blk)
    k1, k2 = jax.random.split(key)
    c = jax.random.categorical(k1, jax.nn.logsumexp(lg, axis=-1), axis=-1)
    inner = jnp.take_along_axis(lg, c[:, None, None], axis=1)[:, 0, :]
    return c * blk + jax.random.categorical(k2, inner, axis=-1)


# --------------------------------------------------------------------------------------------------
# Row models: exact sampling of j ~ P[i, :], rows of P, P+(a|x) at new inputs, the dual-kernel Gram
# --------------------------------------------------------------------------------------------------
class _RowModel:
    """What a context knows about the rows of its conditional (internal)."""

    def sample(self, key, i):
        raise NotImplementedError("exact sampling of a ~ P+(a | x_i) is not available")

    def rows(self, i):
        raise NotImplementedError("rows of the conditional P are not available")

    def new_rows(self, x_new, y_new):
        raise NotImplementedError(
            "P+(a | x) cannot be evaluated at new inputs for this context (available for knn, "
            "rbf, masked, labels, from_kernel and their mixtures)"
        )

    def gram(self, i, l, pinv):
        r1 = self.rows(i)
        r2 = r1 if l is None else self.rows(l)
        return jnp.matmul(r1 * pinv[None, :].astype(r1.dtype), r2.T, precision=HIGHEST)

    def new_rows_times(self, x_new, y_new, M, chunk):
        """``new_rows(x_new, y_new) @ M`` with at most ``chunk`` dense rows alive at a time."""
        n = _num_new(x_new, y_new)
        if n is None or n <= chunk:
            return _rows_times(self.new_rows(x_new, y_new), M)
        part = lambda a, i: None if a is None else a[i : i + chunk]  # noqa: E731
        return jnp.concatenate(
            [_rows_times(self.new_rows(part(x_new, i), part(y_new, i)), M)
             for i in range(0, n, chunk)],
            axis=0,
        )


def _num_new(x_new, y_new):
    """Number of new points (rows of whichever input is given), None if unknown."""
    for a in (x_new, y_new):
        if a is not None and getattr(a, "ndim", 0):
            return int(a.shape[0])
    return None


def _rows_times(rows, M):
    rows = jnp.asarray(rows)
    return jnp.matmul(rows, jnp.asarray(M, rows.dtype), precision=HIGHEST)


@_pytree
class _SparseRows(_RowModel):
    """Rows of a CSR conditional; sampling by binary search of the in-row cumulative sums."""

    indptr: Array
    cols: Array
    vals: Array
    cdf: Array
    num_cols: int = _static()
    max_row: int = _static()

    def sample(self, key, i):
        u = jax.random.uniform(key, i.shape, dtype=self.cdf.dtype)
        lo = self.indptr[i]
        hi = self.indptr[i + 1] - 1

        def body(_, state):
            lo, hi = state
            mid = (lo + hi) // 2
            left = self.cdf[mid] > u
            return jnp.where(left, lo, mid + 1), jnp.where(left, mid, hi)

        steps = max(1, int(self.max_row).bit_length())
        lo, _ = jax.lax.fori_loop(0, steps, body, (lo, hi))
        return self.cols[lo]

    def gather(self, i):
        """Return columns and values of rows ``i``, padded to the longest row: ``(b, max_row)``."""
        kk = self.max_row
        start = self.indptr[i]
        n = self.indptr[i + 1] - start
        ar = jnp.arange(kk, dtype=start.dtype)
        valid = ar[None, :] < n[:, None]
        pos = jnp.where(valid, start[:, None] + ar[None, :], 0)
        return jnp.where(valid, self.cols[pos], 0), jnp.where(valid, self.vals[pos], 0.0)

    def rows(self, i):
        c, v = self.gather(i)
        b = i.shape[0]
        return jnp.zeros((b, self.num_cols), v.dtype).at[jnp.arange(b)[:, None], c].add(v)

    def gram(self, i, l, pinv):
        c1, v1 = self.gather(i)
        c2, v2 = (c1, v1) if l is None else self.gather(l)
        u = c1.size + c2.size
        if self.num_cols <= u:  # dense rows are no bigger than the compressed ones
            return super().gram(i, l, pinv)
        # compress the columns touched by the batch: equal columns map to equal positions
        allc = jnp.sort(jnp.concatenate([c1.ravel(), c2.ravel()]))
        p1 = jnp.searchsorted(allc, c1)
        p2 = jnp.searchsorted(allc, c2)
        b1, b2 = c1.shape[0], c2.shape[0]
        r1 = jnp.zeros((b1, u), v1.dtype).at[jnp.arange(b1)[:, None], p1].add(v1 * pinv[c1])
        r2 = jnp.zeros((b2, u), v2.dtype).at[jnp.arange(b2)[:, None], p2].add(v2)
        return jnp.matmul(r1, r2.T, precision=HIGHEST)


def _sparse_rows(P: ops.SparseOperator) -> _SparseRows:
    """Row model of a sparse conditional (in-row CDFs computed on the host in float64)."""
    indptr = np.asarray(P.indptr).astype(np.int64)
    vals = np.asarray(P.vals, np.float64)
    m = P.shape[0]
    counts = np.diff(indptr)
    cs = np.cumsum(vals)
    before = np.concatenate([[0.0], cs])[indptr[:-1]]
    rows = np.repeat(np.arange(m), counts)
    within = cs - before[rows]
    ends = indptr[1:][counts > 0] - 1
    total = np.zeros(m)
    total[counts > 0] = within[ends]
    cdf = within / np.where(total > 0, total, 1.0)[rows]
    cdf[ends] = 1.0
    return _SparseRows(
        indptr=P.indptr,
        cols=P.cols,
        vals=P.vals,
        cdf=jnp.asarray(cdf, P.vals.dtype),
        num_cols=int(P.shape[1]),
        max_row=int(max(1, counts.max(initial=1))),
    )


@_pytree
class _DenseRows(_RowModel):
    """Rows of a dense conditional; categorical sampling."""

    P: Array

    def sample(self, key, i):
        return _chunked_sample(
            lambda k, ic: _categorical_rows(k, jnp.log(self.P[ic])),
            key, i, self.P.shape[1],
        )

    def rows(self, i):
        return self.P[i]


@_pytree
class _OperatorRows(_RowModel):
    """Rows of any conditional operator through ``P^T e_i`` (fallback)."""

    P: Any

    def rows(self, i):
        m = self.P.shape[0]
        return _chunked(
            lambda ic: self.P.rmatmat(jax.nn.one_hot(ic, m, dtype=self.P.dtype).T).T,
            i, self.P.shape[1],
        )

    def sample(self, key, i):
        return _chunked_sample(
            lambda k, ic: _categorical_rows(k, jnp.log(jnp.maximum(self.rows(ic), 0.0))),
            key, i, self.P.shape[1],
        )


@_pytree
class _OneHotRows(_RowModel):
    """Classification labels: ``P[i] = onehot(y_i)``; new rows from given labels."""

    y: Array
    num_classes: int = _static()
    dtype: Any = _static(np.dtype(np.float32))

    def sample(self, key, i):
        return self.y[i]

    def rows(self, i):
        return jax.nn.one_hot(self.y[i], self.num_classes, dtype=self.dtype)

    def new_rows(self, x_new, y_new):
        lab = y_new if y_new is not None else x_new
        if lab is None:
            raise ValueError(
                "labels context: pass the labels of the new points, conditional_rows(y)"
            )
        lab = _check_labels(lab, "y", self.num_classes)
        return jax.nn.one_hot(jnp.asarray(lab), self.num_classes, dtype=self.dtype)

    def gram(self, i, l, pinv):
        yi = self.y[i]
        yl = yi if l is None else self.y[l]
        return (yi[:, None] == yl[None, :]).astype(self.dtype) * pinv[yi][:, None].astype(
            self.dtype)


@_pytree
class _KernelRows(_RowModel):
    """Kernel-normalised rows ``P[i, j] = k(x_i, x_j) / sum_l k(x_i, x_l)`` evaluated on demand."""

    x: Array
    kernel: Any
    use: str = _static("x")

    def _probs(self, xb):
        return jax.nn.softmax(self.kernel.log(xb, self.x), axis=-1)

    def sample(self, key, i):
        return _chunked_sample(
            lambda k, ic: _categorical_rows(k, self.kernel.log(self.x[ic], self.x)),
            key, i, self.x.shape[0],
        )

    def rows(self, i):
        return _chunked(self._probs, self.x[i], self.x.shape[0])

    def new_rows(self, x_new, y_new):
        z = _pick_input(self.use, x_new, y_new)
        z = _check_new_points(z, self.x.shape[1], "y" if self.use == "y" else "x_new",
                              self.x.dtype)
        return _chunked(self._probs, z, self.x.shape[0])


@_pytree
class _MaskedKernelRows(_RowModel):
    """Average over feature masks of radial-kernel rows (masked RBF); one mask drawn per sample."""

    x: Array
    masks: Array  # (R, D) of 0/1, 1 = feature kept
    kernel: Any  # a kernels.Radial

    def _logits(self, xb, mb):
        xm = xb * mb
        a = jnp.sum(xm * xb, axis=1)
        q = jnp.matmul(mb, (self.x * self.x).T, precision=HIGHEST)
        c = jnp.matmul(xm, self.x.T, precision=HIGHEST)
        return self.kernel.log_radial(jnp.maximum(a[:, None] + q - 2.0 * c, 0.0))

    def sample(self, key, i):
        nm = self.masks.shape[0]

        def one(k, ic):
            kr, kc = jax.random.split(k)
            r = jax.random.randint(kr, ic.shape, 0, nm)
            return _categorical_rows(kc, self._logits(self.x[ic], self.masks[r]))

        return _chunked_sample(one, key, i, self.x.shape[0])

    def _avg(self, xb):
        def body(acc, mk):
            lg = self._logits(xb, jnp.broadcast_to(mk, xb.shape))
            return acc + jax.nn.softmax(lg, axis=-1), None

        acc0 = jnp.zeros((xb.shape[0], self.x.shape[0]), xb.dtype)
        acc, _ = jax.lax.scan(body, acc0, self.masks)
        return acc / self.masks.shape[0]

    def rows(self, i):
        return _chunked(self._avg, self.x[i], self.x.shape[0])

    def new_rows(self, x_new, y_new):
        z = _check_new_points(_pick_input("x", x_new, y_new), self.x.shape[1], "x_new",
                              self.x.dtype)
        return _chunked(self._avg, z, self.x.shape[0])


@_pytree
class _KnnRows(_RowModel):
    """kNN rows (sparse); new rows by a host neighbour search (sklearn), averaged over masks.

    Query points equal to training points get the stored rows of ``P`` (:func:`_training_matches`);
    the others the ``k`` nearest training points (per mask).
    """

    base: Any
    x: Array
    masks: Any = None  # (R, D) bool for masked kNN
    k: int = _static(1)
    include_self: bool = _static(False)
    metric: str = _static("euclidean")
    search: tuple = _static(())  # extra NearestNeighbors settings, as (name, value) pairs

    def sample(self, key, i):
        return self.base.sample(key, i)

    def rows(self, i):
        return self.base.rows(i)

    def gram(self, i, l, pinv):
        return self.base.gram(i, l, pinv)

    def _query(self, x_new, y_new):
        """``(z, xs, match)``: the checked host query points, the training points, the matches."""
        z = _pick_input("x", x_new, y_new)
        if not V.is_concrete(z):
            raise ValueError(
                "knn conditional_rows runs a host neighbour search; call it outside jit"
            )
        z = np.asarray(_check_new_points(z, self.x.shape[1], "x_new", self.x.dtype))
        xs = np.asarray(self.x)
        return z, xs, _training_matches(xs, z)

    def new_rows(self, x_new, y_new):
        dt = self.x.dtype
        z, xs, match = self._query(x_new, y_new)
        m = xs.shape[0]
        out = np.zeros((z.shape[0], m), dt)
        hit = np.flatnonzero(match >= 0)
        if hit.size:  # training points: their stored rows of P, exactly
            out[hit] = np.asarray(_jit_rows(self.base, _index_array(match[hit], m)))
        new = np.flatnonzero(match < 0)
        if new.size:  # other points: the k nearest training points (under each mask)
            masks = [np.ones(xs.shape[1], bool)] if self.masks is None else np.asarray(self.masks)
            acc = np.zeros((new.size, m))
            rr = np.repeat(np.arange(new.size), self.k)
            for keep in masks:
                idx = _knn_query(xs[:, keep], z[new][:, keep], self.k, self.metric, self.search)
                np.add.at(acc, (rr, idx.ravel()), 1.0)
            out[new] = acc / (self.k * len(masks))
        return jnp.asarray(out)

    def new_rows_times(self, x_new, y_new, M, chunk):
        """``new_rows(x_new) @ M`` without dense rows: neighbour averages of ``M``'s rows.

        Training points are matched over all of ``x_new`` at once (so the ``r``-th copy of a
        duplicated value keeps its row); only their stored rows go through in chunks.
        """
        dt = self.x.dtype
        z, xs, match = self._query(x_new, y_new)
        m = xs.shape[0]
        Mh = np.asarray(M, np.float64)
        out = np.zeros((z.shape[0], Mh.shape[1]), np.float64)
        hit = np.flatnonzero(match >= 0)
        for c in range(0, hit.size, chunk):  # training points: their stored rows of P
            h = hit[c : c + chunk]
            rows = np.asarray(_jit_rows(self.base, _index_array(match[h], m)), np.float64)
            out[h] = rows @ Mh
        new = np.flatnonzero(match < 0)
        if new.size:  # other points: the mean of M over the k nearest training points
            masks = [np.ones(xs.shape[1], bool)] if self.masks is None else np.asarray(self.masks)
            for keep in masks:
                idx = _knn_query(xs[:, keep], z[new][:, keep], self.k, self.metric, self.search)
                out[new] += Mh[idx].sum(axis=1)
            out[new] /= self.k * len(masks)
        return jnp.asarray(out, dt)


@_pytree
class _ChainRows(_RowModel):
    """Convolution ``P_1 P_2``: ``j_1 ~ P_1[i]`` then ``j ~ P_2[j_1]``."""

    first: Any
    second_op: Any
    second: Any

    def sample(self, key, i):
        k1, k2 = jax.random.split(key)
        return self.second.sample(k2, self.first.sample(k1, i))

    def _apply(self, r1):
        return self.second_op.rmatmat(r1.T).T

    def rows(self, i):
        return self._apply(self.first.rows(i))

    def new_rows(self, x_new, y_new):
        return self._apply(self.first.new_rows(x_new, y_new))


@_pytree
class _MixtureRows(_RowModel):
    """Convex combination: component ``c ~ weights``, then ``j ~ P_c[i]`` (offset when disjoint)."""

    parts: tuple
    weights: Array
    merged: Any = None  # a _SparseRows of the summed conditional (same space, all sparse)
    offsets: Any = _static(None)  # column offsets of the components (disjoint spaces)

    def sample(self, key, i):
        if self.merged is not None:
            return self.merged.sample(key, i)
        keys = jax.random.split(key, len(self.parts) + 1)
        c = jax.random.categorical(keys[0], jnp.log(self.weights), shape=i.shape)
        js = []
        for k, part in enumerate(self.parts):
            j = part.sample(keys[k + 1], i)
            js.append(j if self.offsets is None else j + self.offsets[k])
        return jnp.take_along_axis(jnp.stack(js), c[None, :], axis=0)[0]

    def _mix(self, rs):
        if self.offsets is None:
            return sum(self.weights[k] * r for k, r in enumerate(rs))
        return jnp.concatenate([self.weights[k] * r for k, r in enumerate(rs)], axis=1)

    def rows(self, i):
        if self.merged is not None:
            return self.merged.rows(i)
        return self._mix([p.rows(i) for p in self.parts])

    def new_rows(self, x_new, y_new):
        return self._mix([p.new_rows(x_new, y_new) for p in self.parts])

    def gram(self, i, l, pinv):
        if self.merged is not None:
            return self.merged.gram(i, l, pinv)
        return super().gram(i, l, pinv)


@_pytree
class _ConcatRows(_RowModel):
    """Concatenation ``A = (A_1, A_2)``: rows of the stored product, new rows from both parts."""

    base: Any
    first: Any
    second: Any
    pj1: Array
    pj2: Array

    def sample(self, key, i):
        return self.base.sample(key, i)

    def rows(self, i):
        return self.base.rows(i)

    def gram(self, i, l, pinv):
        return self.base.gram(i, l, pinv)

    def new_rows(self, x_new, y_new):
        r1 = self.first.new_rows(x_new, y_new)
        r2 = self.second.new_rows(x_new, y_new)
        return r1[:, self.pj1] * r2[:, self.pj2]


@_pytree
class _DualKernelRows(_RowModel):
    """A context given by its dual kernel: Gram and new rows are kernel evaluations."""

    x: Array
    kernel: Any

    def sample(self, key, i):
        raise NotImplementedError(
            "a context given by its dual kernel has no pair sampler (kernel access only: use gram)"
        )

    def gram(self, i, l, pinv):
        return self.kernel(self.x[i], self.x[i if l is None else l]).astype(self.x.dtype)

    def new_rows(self, x_new, y_new):
        z = _check_new_points(_pick_input("x", x_new, y_new), self.x.shape[1], "x_new",
                              self.x.dtype)
        return _chunked(lambda zc: self.kernel(zc, self.x).astype(self.x.dtype), z,
                        self.x.shape[0])


@_pytree
class _FactorRows(_RowModel):
    """Teacher context: ``k_X+(x, x') = 1 + <f_w(x), f_w(x')>`` with whitened features ``f_w``."""

    f: Array

    def sample(self, key, i):
        raise NotImplementedError(
            "a teacher context has no pair sampler (kernel access only: use gram)"
        )

    def gram(self, i, l, pinv):
        return 1.0 + jnp.matmul(self.f[i], self.f[i if l is None else l].T, precision=HIGHEST)


@_pytree
class _Alias:
    """Walker's alias table: exact O(1) sampling from a fixed categorical distribution."""

    prob: Array
    alias: Array

    def sample(self, key, n):
        k1, k2 = jax.random.split(key)
        c = jax.random.randint(k1, (n,), 0, self.prob.shape[0], dtype=self.alias.dtype)
        u = jax.random.uniform(k2, (n,), self.prob.dtype)
        return jnp.where(u < self.prob[c], c, self.alias[c])


def _alias_table(w: np.ndarray, dtype: Any = None) -> _Alias:
    """Vose's construction in float64 on the host; probabilities stored in ``dtype``.

    ``dtype`` defaults to JAX's default float dtype.
    """
    n = w.size
    q = (w * (n / w.sum())).tolist()
    prob = [1.0] * n
    alias = list(range(n))
    small = [i for i in range(n) if q[i] < 1.0]
    large = [i for i in range(n) if q[i] >= 1.0]
    while small and large:
        s = small.pop()
        g = large[-1]
        prob[s] = q[s]
        alias[s] = g
        q[g] = (q[g] + q[s]) - 1.0
        if q[g] < 1.0:
            large.pop()
            small.append(g)
    idx = V.index_dtype(n)
    dt = V.default_float_dtype() if dtype is None else np.dtype(dtype)
    return _Alias(prob=jnp.asarray(np.array(prob), dt), alias=jnp.asarray(np.array(alias, idx)))


# --------------------------------------------------------------------------------------------------
# The Context
# --------------------------------------------------------------------------------------------------
@_pytree
class Context:
    r"""Samples, weights and the conditional ``P+(a | x)`` of a context (a pytree).

    Build contexts with the module's builders (:func:`knn`, :func:`graph`, ...), not directly.

    Attributes:
        conditional: ``P``, a row-stochastic ``(m, M)`` operator with ``P[i, j] = P+(a_j | x_i)``;
            None for contexts given by a dual kernel (:func:`from_kernel`) or teacher features.
        weights: ``(m,)`` sample weights ``w_i = P_X(x_i)`` summing to one.
        normalized: the operator returned by :meth:`operator`.
        right: the trivial right singular vector (:meth:`trivial_right`).
        p: ``(M,)`` column marginal ``P^T w`` (None when there is no conditional).
        x: the samples (``(m, D)`` or ``(m, ...)``), or None (graphs: inputs are node ids).
        a_values: what an SVME encoder ``Psi`` sees for context value ``j`` (``x`` itself when
            ``A = X``, the class index for labels, node ids for graphs), or None.
        rows: the row model (exact sampler, rows of ``P``, ``P+(a|x)`` at new inputs; internal).
        wsampler: alias table for non-uniform weights (None: uniform).
        sample_index: ``(m,)`` indices of the samples in the builder's input when some were
            dropped (``isolated="drop"``), or None.
        name, info: builder name and parameters (static metadata).
        squared: True for contexts defined by a dual kernel (:func:`from_kernel`): then
            :meth:`operator` is the symmetric PSD ``diag(sqrt w) K_X diag(sqrt w)`` (``K_X / m``)
            whose *eigenvalues* are ``s_i^2``; solvers take square roots.
        symmetric: True when :meth:`operator` is a symmetric matrix (undirected graphs, dual
            kernels), so a Hermitian solver applies.
        pair_sampler: a user sampler ``sampler(key, x_batch) -> a_batch`` used by
            :meth:`sample_pairs` (transformations), or None.
    """

    conditional: Any
    weights: Array
    normalized: Any
    right: Array
    p: Any
    x: Any = None
    a_values: Any = None
    rows: Any = None
    wsampler: Any = None
    sample_index: Any = None
    name: str = _static("context")
    info: tuple = _static(())
    squared: bool = _static(False)
    symmetric: bool = _static(False)
    pair_sampler: Any = _static(None)

    # -- shape -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(m, M)``: samples by context values (for ``squared`` contexts ``(m, m)``).

        ``M`` is None for a context given only by a sampler (continuous context values).
        """
        if self.normalized is None:
            return (int(self.weights.shape[0]), None)  # type: ignore[return-value]
        return tuple(self.normalized.shape)  # type: ignore[return-value]

    @property
    def num_samples(self) -> int:
        """``m``."""
        return int(self.weights.shape[0])

    @property
    def num_values(self) -> int:
        """``M`` (the number of context values)."""
        return self.shape[1]

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.info)
        sq = ", squared=True" if self.squared else ""
        return f"Context(name={self.name!r}, m={self.shape[0]}, M={self.shape[1]}{sq}{extra})"

    # -- operators ---------------------------------------------------------------------------------
    def marginal(self) -> Array:
        """``p = P^T w`` of shape ``(M,)``: ``p_j = P_A(a_j)``."""
        if self.p is None:
            raise NotImplementedError(
                f"{self.name}: a context given by its dual kernel or teacher features has no "
                "context-value marginal"
            )
        return self.p

    def operator(self) -> ops.LinearOperator:
        r"""Return the normalised operator ``Z = diag(sqrt w) P diag(p)^{-1/2}``, shape ``(m, M)``.

        Its singular values are ``1 = s_0 >= s_1 >= ...`` with the trivial pair
        (:meth:`trivial_left`, :meth:`trivial_right`). Columns with ``p_j = 0`` are zero. For
        ``squared`` contexts this is instead the PSD ``diag(sqrt w) K_X diag(sqrt w)`` whose
        eigenvalues are ``s_i^2``.

        Raises:
            NotImplementedError: for a context given only by a sampler (:func:`transformation`
                without ``enumerate_fn`` or ``key``), with what an exact operator needs.
        """
        if self.normalized is None:
            raise NotImplementedError(
                f"{self.name}: this context is given only by its sampler, so it has no exact "
                "operator. An exact operator needs the context values to be enumerable: pass "
                "enumerate_fn=(x_i -> (values, probs)) to contexts.transformation, or key= (and "
                "num_draws=) for discrete transformations whose values repeat. For continuous "
                "transformations (noise, SCARF corruption) train with a pair objective "
                "(jaxcontext.fit(..., objective='svme')) and estimate the spectrum post hoc "
                "(jaxcontext.evaluation.posthoc_spectrum) with a kernel or a context that has one."
            )
        return self.normalized

    def trivial_left(self) -> Array:
        """``sqrt(w)``: the left singular vector of ``s_0 = 1`` (unit norm)."""
        return jnp.sqrt(self.weights)

    def trivial_right(self) -> Array:
        """``sqrt(p)``: the right singular vector of ``s_0 = 1`` (``e_0`` for teacher contexts).

        For ``squared`` contexts the eigenvector ``sqrt(w)`` of the constant function (exact when
        the kernel integrates to one, as a dual kernel does in the population).
        """
        if self.right is None:
            self.operator()  # raises: a sampler-only context has no operator
        return self.right

    # -- sampling ----------------------------------------------------------------------------------
    def _sample_x(self, key: Array, batch: int) -> Array:
        if self.wsampler is None:
            m = self.shape[0]
            return jax.random.randint(key, (batch,), 0, m, dtype=V.index_dtype(m))
        return self.wsampler.sample(key, batch)

    def sample_indices(self, key: Array, batch: int) -> tuple[Array, Array]:
        r"""Draw ``batch`` index pairs ``(i, j)`` with ``i ~ w`` and ``j ~ P[i, :]``, exactly.

        Jittable (``batch`` is static) and deterministic for a key: sparse conditionals search the
        row's cumulative sums, kernel contexts evaluate the batch's kernel rows and draw
        categorically, labels return ``y_i``, mixtures pick a component then sample it.

        Example:
            >>> import jax, numpy as np
            >>> from jaxcontext import contexts
            >>> ctx = contexts.labels(np.array([0, 1, 1, 2]))
            >>> i, j = ctx.sample_indices(jax.random.key(0), 5)
            >>> bool((np.array([0, 1, 1, 2])[np.asarray(i)] == np.asarray(j)).all())
            True
        """
        batch = V.check_positive_int(batch, "batch")
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: this context has no conditional to sample")
        try:
            return _jit_sample_indices(self, key, batch)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def _sample_indices(self, key: Array, batch: int) -> tuple[Array, Array]:
        ki, kj = jax.random.split(key)
        i = self._sample_x(ki, batch)
        return i, self.rows.sample(kj, i)

    def sample_pairs(self, key: Array, batch: int) -> tuple[Any, Any]:
        """Draw ``batch`` pairs ``(x, a) ~ P+`` for SVME: ``(x[i], a_values[j])``.

        Where ``x`` is None the sample ids are returned (graph node ids, ``sample_index``); where
        ``a_values`` is None the context-value indices ``j``. Transformation contexts draw
        ``a = sampler(key, x[i])`` with the user's sampler directly.
        """
        batch = V.check_positive_int(batch, "batch")
        if self.pair_sampler is None and self.rows is None:
            raise NotImplementedError(f"{self.name}: this context has no conditional to sample")
        try:
            return _jit_sample_pairs(self, key, batch)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def _sample_pairs(self, key: Array, batch: int) -> tuple[Any, Any]:
        if self.pair_sampler is not None:
            ki, ka = jax.random.split(key)
            i = self._sample_x(ki, batch)
            xb = _take(self.x, i)
            return xb, self.pair_sampler(ka, xb)
        i, j = self._sample_indices(key, batch)
        if self.x is not None:
            xb = _take(self.x, i)
        elif self.sample_index is not None:
            xb = self.sample_index[i]
        else:
            xb = i
        ab = j if self.a_values is None else _take(self.a_values, j)
        return xb, ab

    # -- kernels -----------------------------------------------------------------------------------
    def _check_idx(self, idx: Any, name: str) -> Array:
        a = jnp.asarray(idx)
        V.check_ndim(a, name, 1)
        if not jnp.issubdtype(a.dtype, jnp.integer):
            raise ValueError(f"{name}: expected integer sample indices, got dtype {a.dtype}")
        if V.is_concrete(a):
            V.check_int_range(np.asarray(a), name, 0, self.shape[0])
        return a

    def gram(self, idx: Any, idx2: Any = None) -> Array:
        r"""Batch Gram of the dual kernel ``k_X+(x_i, x_l) = sum_j P[i, j] P[l, j] / p_j``.

        Args:
            idx: ``(b,)`` sample indices.
            idx2: ``(b2,)`` sample indices (default ``idx``).

        Returns:
            ``(b, b2)`` array. Context values with ``p_j = 0`` do not contribute. Sparse
            conditionals gather the batch's rows (compressing the columns they touch), kernel
            contexts evaluate their rows, ``from_kernel`` contexts evaluate the kernel.
        """
        i = self._check_idx(idx, "idx")
        l = None if idx2 is None else self._check_idx(idx2, "idx2")
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: no rows to build a Gram from")
        try:
            return _jit_gram(self, i, l)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def _gram(self, i: Array, l: Array | None) -> Array:
        pinv = None
        if self.p is not None:
            pinv = jnp.where(self.p > 0, 1.0 / jnp.where(self.p > 0, self.p, 1.0), 0.0)
        return self.rows.gram(i, l, pinv)

    def conditional_rows(self, x_new: Any = None, *, y: Any = None) -> Array:
        r"""Dense rows ``P+(a_j | x)`` at new inputs, shape ``(b, M)``.

        Available for :func:`knn` (host neighbour search), :func:`rbf`, :func:`masked`,
        :func:`labels` (pass the new points' labels, positionally or as ``y=``; regression targets
        likewise), their mixtures, and :func:`from_kernel`, where the rows are the dual-kernel
        rows ``k_X+(x, x_l)`` of shape ``(b, m)``. Used for out-of-sample extension of singular
        functions. New points are cast to the context's dtype, and so are the rows.

        At the training points the rows equal those of ``P``: for kernel contexts to rounding (the
        same formula), for :func:`knn` exactly -- a query point equal to a training point (bitwise,
        in the context's dtype) gets that point's stored row, the ``r``-th query of a duplicated
        value the row of the ``r``-th training point holding it (see :func:`knn`).

        Raises:
            NotImplementedError: for contexts whose conditional cannot be evaluated at new inputs
                (graphs, transformations, teacher).
        """
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: no conditional to evaluate")
        try:
            return self.rows.new_rows(x_new, y)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None

    def conditional_rows_times(
        self, x_new: Any, M: Any, *, y: Any = None, max_entries: int = 2**24
    ) -> Array:
        r"""``conditional_rows(x_new, y=y) @ M`` without holding all the dense rows.

        ``M`` has one row per context value (``(M_values, c)``). kNN contexts average ``M``'s rows
        over each point's neighbours (no dense row at all); other contexts build their dense rows
        in chunks of at most ``max_entries`` entries. This is what out-of-sample extension
        (:meth:`jaxcontext.spectrum.Contexture.evaluate`) uses, so evaluating many points of a
        large context stays in bounded memory.
        """
        if self.rows is None:
            raise NotImplementedError(f"{self.name}: no conditional to evaluate")
        cols = int(np.shape(M)[0])
        chunk = max(1, int(max_entries) // max(cols, 1))
        try:
            return self.rows.new_rows_times(x_new, y, M, chunk)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.name}: {e}") from None


# Methods run through module-level jitted functions: eager calls compile once per context
# structure and batch size (the loops inside would otherwise re-trace at every call); inside a
# user's jit they are inlined.
@functools.partial(jax.jit, static_argnames=("batch",))
def _jit_sample_indices(ctx: Context, key: Array, batch: int) -> tuple[Array, Array]:
    return ctx._sample_indices(key, batch)


@functools.partial(jax.jit, static_argnames=("batch",))
def _jit_sample_pairs(ctx: Context, key: Array, batch: int) -> tuple[Any, Any]:
    return ctx._sample_pairs(key, batch)


@jax.jit
def _jit_gram(ctx: Context, i: Array, l: Array | None) -> Array:
    return ctx._gram(i, l)


@jax.jit
def _jit_rows(rows: Any, i: Array) -> Array:
    return rows.rows(i)


# --------------------------------------------------------------------------------------------------
# Construction helpers
# --------------------------------------------------------------------------------------------------
# Build-time products run jitted at module level, so building many contexts of one shape (a
# benchmark sweep) compiles each product once instead of re-tracing the tiled kernels eagerly.
@jax.jit
def _matvec(op: Any, v: Array) -> Array:
    return op.matmat(v)


@jax.jit
def _rmatvec(op: Any, v: Array) -> Array:
    return op.rmatmat(v)


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


@jax.jit
def _dense_masked_conditional(z: Array, masks: Array, kernel: Any) -> tuple[Array, Array]:
    def body(acc, mk):
        kd = kernel(z * mk, z * mk)
        return acc + kd / jnp.sum(kd, axis=1, keepdims=True), None

    acc, _ = jax.lax.scan(body, jnp.zeros((z.shape[0],) * 2, z.dtype), masks)
    pd = acc / masks.shape[0]
    w = jnp.full((z.shape[0],), 1.0 / z.shape[0], pd.dtype)
    return pd, jnp.matmul(w, pd, precision=HIGHEST)


def _pick_input(use: str, x_new: Any, y_new: Any) -> Any:
    if use == "y":
        z = y_new if y_new is not None else x_new
        if z is None:
            raise ValueError("this context's conditional depends on labels/targets: pass y=")
        return z
    if x_new is None:
        raise ValueError("conditional_rows: pass the new inputs x_new")
    return x_new


def _float_dtype(*dtypes: Any) -> np.dtype:
    """The dtype policy of the module docstring (half precision promoted to float32)."""
    return V.float_dtype(*dtypes, min_single=True)


def _check_points(x: Any, name: str = "x", *, ndim: Any = 2, dtype: Any = None) -> Array:
    """Real, finite, non-empty points as a JAX array of ``dtype`` (default: the policy's)."""
    arr = V.as_float_array(x, name, ndim=ndim)
    V.check_nonempty(arr, name)
    V.check_finite(arr, name)
    return jnp.asarray(arr.astype(_float_dtype(arr.dtype) if dtype is None else dtype))


def _check_new_points(z: Any, dim: int, name: str, dtype: Any) -> Array:
    """New points for ``conditional_rows``, cast to the context's ``dtype``."""
    if isinstance(z, jax.core.Tracer):
        V.check_real(z, name)
        a = z.astype(dtype)
    else:
        a = _check_points(z, name, ndim=(1, 2), dtype=dtype)
    if a.ndim == 1:
        a = a[:, None] if dim == 1 else a[None, :]
    if a.shape[1] != dim:
        raise ValueError(f"{name}: expected points with {dim} features, got shape {tuple(a.shape)}")
    return a


_check_positive_scalar = V.check_positive_float


def _check_labels(y: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    a = V.as_real_array(y, name)
    V.check_ndim(a, name, 1)
    V.check_nonempty(a, name)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(
                f"{name}: expected integer class labels, got dtype {a.dtype}; map them with "
                "np.unique(y, return_inverse=True)"
            )
        V.check_finite(a, name)
        if not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"{name}: expected integer class labels, got non-integer values")
    a = a.astype(np.int64)
    if a.min() < 0:
        raise ValueError(f"{name}: class labels must be >= 0, got minimum {int(a.min())}")
    if num_classes is not None and a.max() >= num_classes:
        raise ValueError(
            f"{name}: labels must be < num_classes={num_classes}, got maximum {int(a.max())}"
        )
    return a


def _check_isolated(isolated: str) -> None:
    if isolated not in ("error", "drop"):
        raise ValueError(f"isolated: expected 'error' or 'drop', got {isolated!r}")


def _check_prob_vector(w: Any, name: str, n: int) -> np.ndarray:
    a = V.as_real_array(w, name, np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
    V.check_finite(a, name)
    V.check_nonnegative(a, name)
    if abs(a.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"{name}: must sum to 1 (a probability vector), got sum {a.sum():.8g}; "
            f"pass {name} / {name}.sum()"
        )
    return a


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


def _index_array(a: np.ndarray, *sizes: int) -> Array:
    return jnp.asarray(np.asarray(a).astype(V.index_dtype(*sizes)))


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------
def labels(
    y: Any,
    *,
    num_classes: int | None = None,
    kind: str = "classification",
    gamma: float | None = None,
    x: Any = None,
    materialize_bytes: int = _DEFAULT_MATERIALIZE,
) -> Context:
    r"""Build the label context: ``A`` is the label of ``x``.

    Classification: ``P+(a | x_i) = onehot(y_i)`` (sparse ``m x C``, JAX's default float dtype),
    ``A`` = the class index, ``k_X+(x, x') = 1[y = y'] / p_y``; balanced ``C`` classes give
    ``s_1..s_{C-1} = 1``, then 0.
    Regression (``kind="regression"``): an RBF context on the target values,
    ``P[i, j] = exp(-gamma |y_i - y_j|^2) / sum_l exp(-gamma |y_i - y_l|^2)``, ``A`` = the samples'
    targets (see :func:`rbf`).

    Args:
        y: ``(m,)`` integer class labels in ``[0, num_classes)``, or ``(m,)`` / ``(m, t)``
            real targets for regression.
        num_classes: number of classes ``C`` (default ``max(y) + 1``); empty classes have zero
            marginal (warned).
        kind: ``"classification"`` or ``"regression"``.
        gamma: RBF parameter on the targets (required for regression).
        x: optional ``(m, ...)`` inputs, returned by :meth:`Context.sample_pairs`.
        materialize_bytes: regression only, see :func:`rbf`.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> contexts.labels(np.array([0, 1, 1, 0])).marginal().tolist()
        [0.5, 0.5]
    """
    if kind == "regression":
        zj = _check_points(y, "y", ndim=(1, 2))
        if zj.ndim == 1:
            zj = zj[:, None]
        if gamma is None:
            raise ValueError("labels: gamma is required for kind='regression' (RBF on the targets)")
        g = _check_positive_scalar(gamma, "gamma")
        xs = None if x is None else _check_samples(x, zj.shape[0])
        P, p, rows = _kernel_parts(zj, K.RBF(g), materialize_bytes=materialize_bytes,
                                   block_rows=None, use="y")
        return _build(P, p=p, x=xs, a_values=zj, rows=rows, name="labels",
                      info=(("kind", "regression"), ("gamma", g)))
    if kind != "classification":
        raise ValueError(f"kind: expected 'classification' or 'regression', got {kind!r}")
    ya = _check_labels(y, "y", num_classes)
    C = int(ya.max()) + 1 if num_classes is None else V.check_positive_int(num_classes,
                                                                           "num_classes")
    m = ya.shape[0]
    xs = None if x is None else _check_samples(x, m)
    dt = V.default_float_dtype()  # integer labels: JAX's default float dtype
    P = ops.sparse_from_edges(np.arange(m), ya, np.ones(m), (m, C), dtype=dt)
    p = np.bincount(ya, minlength=C) / m
    rows = _OneHotRows(y=_index_array(ya, C), num_classes=C, dtype=dt)
    return _build(P, p=p, x=xs, a_values=jnp.arange(C), rows=rows, name="labels",
                  info=(("kind", "classification"), ("num_classes", C)))


def _check_samples(x: Any, m: int) -> Array:
    a = V.as_real_array(x, "x")
    if a.ndim == 0 or a.shape[0] != m:
        raise ValueError(f"x: expected {m} samples (leading axis), got shape {a.shape}")
    V.check_finite(a, "x")
    return jnp.asarray(a)


def _coo(adjacency: Any, name: str = "adjacency"
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.dtype]:
    """Host COO arrays (float64 values) of a dense / scipy / SparseOperator / BCOO matrix.

    The last item is the float dtype the policy gives the matrix's values.
    """
    if isinstance(adjacency, ops.SparseOperator):
        return (np.asarray(adjacency.rows).astype(np.int64), np.asarray(adjacency.cols).astype(
            np.int64), np.asarray(adjacency.vals, np.float64), adjacency.shape,
            _float_dtype(adjacency.dtype))
    if isinstance(adjacency, ops.LinearOperator):
        raise ValueError(
            f"{name}: expected a dense array, scipy sparse matrix or SparseOperator, got "
            f"{type(adjacency).__name__}"
        )
    if hasattr(adjacency, "tocoo") and not isinstance(adjacency, (np.ndarray, jax.Array)):
        V.check_real(adjacency, name)
        c = adjacency.tocoo()
        return (np.asarray(c.row, np.int64), np.asarray(c.col, np.int64),
                np.asarray(c.data, np.float64), tuple(c.shape), _float_dtype(c.dtype))
    try:
        from jax.experimental import sparse as jsparse

        if isinstance(adjacency, (jsparse.BCOO, jsparse.BCSR)):
            V.check_real(adjacency, name)
            return _coo(ops.sparse(adjacency), name)
    except ImportError:  # pragma: no cover
        pass
    a0 = V.as_real_array(adjacency, name)
    a = a0.astype(np.float64)
    V.check_ndim(a, name, 2)
    V.check_finite(a, name)
    r, c = np.nonzero(a)
    return r.astype(np.int64), c.astype(np.int64), a[r, c], a.shape, _float_dtype(a0.dtype)


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


def _knn_indices(x: np.ndarray, k: int, include_self: bool, metric: str,
                 search: tuple = ()) -> np.ndarray:
    """``(m, k)`` neighbours of the training points, self excluded or included *by index*.

    Without ``include_self`` sklearn's ``kneighbors(None)`` drops each sample from its own list by
    index (a duplicate of ``x_i`` at distance 0 is a neighbour, ``x_i`` itself is not); with it,
    ``x_i`` is the first entry and its ``k - 1`` nearest other samples follow, so a float32
    self-distance of ~1e-7 or more than ``k`` duplicates cannot push ``x_i`` out of its own list.
    """
    try:
        from sklearn.neighbors import NearestNeighbors
    except ImportError as e:  # pragma: no cover
        raise ImportError("knn contexts need scikit-learn: pip install 'jaxcontext[ref]'") from e
    m = x.shape[0]
    if include_self:
        own = np.arange(m)[:, None]
        if k == 1:
            return own
        nn = NearestNeighbors(n_neighbors=k - 1, metric=metric, **dict(search)).fit(x)
        return np.concatenate([own, nn.kneighbors(None, n_neighbors=k - 1,
                                                  return_distance=False)], axis=1)
    nn = NearestNeighbors(n_neighbors=k, metric=metric, **dict(search)).fit(x)
    return nn.kneighbors(None, n_neighbors=k, return_distance=False)


def _knn_query(xfit, xq, k, metric, search=()) -> np.ndarray:
    """Find the ``k`` nearest training points of new points (none of them a training point)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(metric=metric, **dict(search)).fit(xfit)
    return nn.kneighbors(xq, n_neighbors=k, return_distance=False)


def _training_matches(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """For each query row of ``z``, the index of a training row of ``x`` equal to it, else -1.

    Rows are compared bitwise in ``x``'s dtype, after adding ``+0.0`` (so ``-0.0`` equals
    ``0.0``). Duplicated training values are matched in order: the ``r``-th query row holding a
    value gets the ``r``-th training row holding it (index order), cycling when the query repeats
    the value more often; so ``z = x`` maps every row to itself, duplicates included.
    """
    b = z.shape[0]
    if x.shape[1] == 0 or b == 0:
        return np.full(b, -1, np.int64)
    zero = x.dtype.type(0)
    void = np.dtype((np.void, x.dtype.itemsize * x.shape[1]))
    xv = np.ascontiguousarray(x + zero).view(void).ravel()
    zv = np.ascontiguousarray(z.astype(x.dtype) + zero).view(void).ravel()
    order = np.argsort(xv, kind="stable")  # equal values: ascending index
    xsorted = xv[order]
    lo = np.searchsorted(xsorted, zv, side="left")
    count = np.searchsorted(xsorted, zv, side="right") - lo
    zo = np.argsort(zv, kind="stable")  # rank of each query among equal queries
    zs = zv[zo]
    first = np.ones(b, bool)
    first[1:] = zs[1:] != zs[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(b), 0))
    rank = np.empty(b, np.int64)
    rank[zo] = np.arange(b) - start
    out = np.full(b, -1, np.int64)
    hit = count > 0
    out[hit] = order[lo[hit] + rank[hit] % count[hit]]
    return out


def _check_knn(x: Any, k: Any) -> tuple[Array, int]:
    xs = _check_points(x)
    m = xs.shape[0]
    k = V.check_positive_int(k, "k")
    if k >= m:
        raise ValueError(f"k: must be smaller than the number of samples m={m}, got k={k}")
    return xs, k


def _search_settings(algorithm: str, n_jobs: int | None) -> tuple:
    return (("algorithm", algorithm), ("n_jobs", n_jobs))


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


def feature_masks(key: Array, num_features: int, *, ratio: float = 0.2,
                  num_masks: int = 50) -> Array:
    r"""Random feature masks: ``(num_masks, num_features)`` booleans, True = feature kept.

    Each mask hides ``round(ratio * num_features)`` features chosen uniformly at random. The masks
    used by :func:`masked` with the same key.

    Example:
        >>> import jax
        >>> from jaxcontext.contexts import feature_masks
        >>> feature_masks(jax.random.key(0), 10, ratio=0.2, num_masks=3).sum(1).tolist()
        [8, 8, 8]
    """
    D = V.check_positive_int(num_features, "num_features")
    R = V.check_positive_int(num_masks, "num_masks")
    ratio = float(ratio)
    if not (0.0 <= ratio < 1.0):
        raise ValueError(f"ratio: expected a fraction in [0, 1), got {ratio!r}")
    hide = int(math.floor(ratio * D + 0.5))
    if hide >= D:
        raise ValueError(
            f"ratio: {ratio} hides {hide} of {D} features; at least one feature must stay visible"
        )
    u = jax.random.uniform(key, (R, D))
    ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
    return ranks >= hide


def masked(
    x: Any,
    base: str = "rbf",
    *,
    key: Array,
    ratio: float = 0.2,
    num_masks: int = 50,
    gamma: float | None = None,
    k: int | None = None,
    include_self: bool = False,
    metric: str = "euclidean",
    algorithm: str = "auto",
    n_jobs: int | None = None,
    materialize_bytes: int = _DEFAULT_MATERIALIZE,
    block_rows: int | None = None,
) -> Context:
    r"""Masked RBF / kNN context: the average of the base conditional over random feature masks.

    ``P = (1/R) sum_r P_r`` where ``P_r`` is the RBF (or kNN) conditional computed on the features
    kept by mask ``r`` (:func:`feature_masks`: each mask hides ``round(ratio * D)`` features): a
    convex combination of conditionals on the same space ``A = X`` (REFERENCE.md section 2). For
    RBF it is a :func:`~jaxcontext.operators.weighted_sum` of matrix-free per-mask conditionals
    (materialised dense when ``m * m * itemsize`` bytes fit ``materialize_bytes``); for kNN the
    per-mask sparse conditionals are summed into one sparse matrix (the same operator, faster
    products). The sampler draws a mask per sample, then a neighbour under it.

    Args:
        x: ``(m, D)`` samples.
        base: ``"rbf"`` (needs ``gamma``) or ``"knn"`` (needs ``k``).
        key: PRNG key of the masks.
        ratio: fraction of features hidden by each mask.
        num_masks: ``R``.
        gamma: RBF parameter (base ``"rbf"``).
        k: number of neighbours (base ``"knn"``).
        include_self: kNN option, see :func:`knn`.
        metric: kNN metric, see :func:`knn`.
        algorithm: kNN search algorithm, see :func:`knn`.
        n_jobs: kNN search jobs, see :func:`knn`.
        materialize_bytes: dense budget, see :func:`rbf`.
        block_rows: kernel tile rows, see :func:`rbf`.

    Example:
        >>> import jax, numpy as np
        >>> from jaxcontext import contexts
        >>> x = np.random.default_rng(0).normal(size=(8, 5))
        >>> contexts.masked(x, "rbf", key=jax.random.key(0), gamma=0.3, num_masks=4).shape
        (8, 8)
    """
    xs = _check_points(x)
    m, D = xs.shape
    masks = feature_masks(key, D, ratio=ratio, num_masks=num_masks)
    R = masks.shape[0]
    if int(math.floor(float(ratio) * D + 0.5)) == 0:
        warnings.warn(f"masked: ratio={ratio} hides no feature of D={D}; the context equals "
                      f"its base", ContextWarning, stacklevel=2)
    info = (("base", base), ("ratio", float(ratio)), ("num_masks", R))
    if base == "rbf":
        if gamma is None:
            raise ValueError("masked: gamma is required for base='rbf'")
        g = _check_positive_scalar(gamma, "gamma")
        kern = K.RBF(g)
        mf = masks.astype(xs.dtype)
        w = jnp.full((m,), 1.0 / m, xs.dtype)
        if m * m * xs.dtype.itemsize <= int(materialize_bytes):
            pd, p = _dense_masked_conditional(xs, mf, kern)
            P = ops.DenseOperator(array=pd)
        else:
            parts, p = [], 0.0
            for r in range(R):
                Kop = ops.kernel_operator(xs, xs, K.Masked(base=kern, mask=mf[r]),
                                          block_rows=block_rows)
                rs, pr = _kernel_sums(Kop, w)
                parts.append(ops.product(ops.DiagonalOperator(d=1.0 / rs), Kop))
                p = p + pr
            P = ops.weighted_sum(parts, jnp.full((R,), 1.0 / R, xs.dtype))
            p = p / R
        rows = _MaskedKernelRows(x=xs, masks=mf, kernel=kern)
        return _build(P, p=p, x=xs, a_values=xs, rows=rows, name="masked",
                      info=info + (("gamma", g),))
    if base == "knn":
        if k is None:
            raise ValueError("masked: k is required for base='knn'")
        xs, k = _check_knn(xs, k)
        xh = np.asarray(xs)
        mh = np.asarray(masks)
        search = _search_settings(algorithm, n_jobs)
        cols = np.concatenate([
            _knn_indices(xh[:, keep], k, include_self, metric, search).ravel() for keep in mh
        ])
        rws = np.tile(np.repeat(np.arange(m), k), R)
        P = ops.sparse_from_edges(rws, cols, np.full(cols.size, 1.0 / (k * R)), (m, m),
                                  dtype=xs.dtype)
        p = np.bincount(cols, minlength=m) / (m * k * R)
        rows = _KnnRows(base=_sparse_rows(P), x=xs, masks=jnp.asarray(mh), k=k,
                        include_self=bool(include_self), metric=metric, search=search)
        return _build(P, p=p, x=xs, a_values=xs, rows=rows, name="masked",
                      info=info + (("k", k), ("include_self", bool(include_self)),
                                   ("metric", metric)))
    raise ValueError(f"base: expected 'rbf' or 'knn', got {base!r}")


def transformation(
    x: Any,
    sampler: Callable | None,
    *,
    key: Array | None = None,
    num_draws: int = 64,
    enumerate_fn: Callable | None = None,
) -> Context:
    r"""Build a random-transformation context ``a = t(x)`` (crops, noise, SCARF corruption).

    The pair sampler is the user's ``sampler(key, x_batch) -> a_batch`` (one independent draw per
    row), used by :meth:`Context.sample_pairs` and so by :func:`jaxcontext.fit` with pair
    objectives (SVME, low-rank, contrastive).

    * **Sampler only** (the default: no ``enumerate_fn``, no ``key``): continuous augmentations such
      as Gaussian noise or SCARF corruption, the commonest case in self-supervised learning. No
      operator is built (every draw would be a distinct value); :meth:`Context.operator` says what
      an exact one needs.
    * **Exact**, ``enumerate_fn(x_i) -> (values, probs)``: ``P[i, v] = probs`` over the distinct
      enumerated values.
    * **Empirical**, ``key=``: ``num_draws`` draws per sample, ``P[i, v]`` = empirical frequency of
      value ``v``; the values must be discrete for this to mean anything (if every draw is
      distinct a :class:`ContextWarning` says so).

    ``a_values`` holds the distinct values. The operator's dtype is that of ``x`` (JAX's default
    float dtype for integer ``x``; module docstring).

    Args:
        x: ``(m, ...)`` samples.
        sampler: the transformation sampler (may be None when ``enumerate_fn`` is given).
        key: PRNG key of the draws of an empirical operator (None: sampler only).
        num_draws: draws per sample for the empirical operator.
        enumerate_fn: exact enumeration of the transformed values and their probabilities.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jaxcontext import contexts
        >>> flip = lambda key, xb: xb * jnp.where(jax.random.bernoulli(key, 0.5, xb.shape), -1, 1)
        >>> enum = lambda xi: (np.stack([xi, -xi]), np.array([0.5, 0.5]))
        >>> ctx = contexts.transformation(np.eye(3), flip, enumerate_fn=enum)
        >>> ctx.shape
        (3, 6)
    """
    xa = V.as_real_array(x, "x")
    dt = _float_dtype(xa.dtype)
    V.check_nonempty(xa, "x")
    if xa.ndim == 0:
        raise ValueError("x: expected (m, ...) samples, got a scalar")
    V.check_finite(xa, "x")
    m = xa.shape[0]
    if enumerate_fn is not None:
        vals, rws, prs = [], [], []
        for i in range(m):
            v, pr = enumerate_fn(xa[i])
            v = np.asarray(v)
            pr = np.asarray(pr, np.float64).ravel()
            if v.ndim == 0 or v.shape[0] != pr.shape[0]:
                raise ValueError(
                    f"enumerate_fn: sample {i} gave {v.shape[0] if v.ndim else 0} values and "
                    f"{pr.shape[0]} probabilities; they must match"
                )
            V.check_finite(pr, f"enumerate_fn probabilities (sample {i})")
            V.check_nonnegative(pr, f"enumerate_fn probabilities (sample {i})")
            if abs(pr.sum() - 1.0) > 1e-6:
                raise ValueError(
                    f"enumerate_fn: probabilities of sample {i} sum to {pr.sum():.8g}, expected 1"
                )
            vals.append(v)
            rws.append(np.full(v.shape[0], i))
            prs.append(pr)
        shapes = {v.shape[1:] for v in vals}
        if len(shapes) != 1:
            raise ValueError(f"enumerate_fn: values must share one shape, got {sorted(shapes)}")
        allv, rows_, probs = np.concatenate(vals), np.concatenate(rws), np.concatenate(prs)
        info = (("enumerated", True),)
    else:
        if sampler is None:
            raise ValueError("transformation: pass a sampler or an enumerate_fn")
        if not callable(sampler):
            raise TypeError(f"sampler: expected a callable, got {type(sampler).__name__}")
        if key is None:
            xj = jnp.asarray(xa, dt)
            probe = jax.eval_shape(sampler, jax.random.key(0), xj[: min(m, 2)])
            if not hasattr(probe, "shape") or probe.shape[:1] != (min(m, 2),):
                raise ValueError(
                    "sampler: expected sampler(key, x_batch) to return one transformed value per "
                    f"row; for a batch of {min(m, 2)} it returned {probe}"
                )
            V.check_real(probe, "sampler output")
            w = jnp.full((m,), 1.0 / m, dt)
            return Context(conditional=None, weights=w, normalized=None, right=None, p=None,
                           x=xj, pair_sampler=sampler, name="transformation",
                           info=(("sampler_only", True),))
        T = V.check_positive_int(num_draws, "num_draws")
        keys = jax.random.split(key, T)
        xj = jnp.asarray(xa)
        draws = []
        for t in range(T):
            a = np.asarray(sampler(keys[t], xj))
            if a.ndim == 0 or a.shape[0] != m:
                raise ValueError(
                    f"sampler: expected a batch of {m} transformed values, got shape {a.shape}"
                )
            draws.append(a)
        allv = np.concatenate(draws)
        rows_ = np.tile(np.arange(m), T)
        probs = np.full(allv.shape[0], 1.0 / T)
        info = (("num_draws", T),)
    V.check_real(allv, "transformed values")
    V.check_finite(allv, "transformed values")
    flat = allv.reshape(allv.shape[0], -1)
    uniq, inv = np.unique(flat, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    U = uniq.shape[0]
    if enumerate_fn is None and probs.size > 1 and U == flat.shape[0]:
        warnings.warn(
            "transformation: every draw gave a distinct value, so the empirical operator has all "
            "singular values 1; for continuous transformations pass enumerate_fn or use the "
            "post-hoc spectrum estimate",
            ContextWarning,
            stacklevel=2,
        )
    P = ops.sparse_from_edges(rows_, inv, probs, (m, U), dtype=dt)
    p = np.bincount(inv, weights=probs / m, minlength=U)
    a_values = jnp.asarray(uniq.reshape((U,) + allv.shape[1:]))
    return _build(P, p=p, x=jnp.asarray(xa), a_values=a_values, rows=_sparse_rows(P),
                  pair_sampler=sampler, name="transformation", info=info)


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


def teacher(features: Any, *, x: Any = None) -> Context:
    r"""Build the teacher context: the kernel ``1 + <f_w(x), f_w(x')>`` of whitened features.

    The features ``F`` (``m x r``) are centred and whitened (``F_w^T F_w / m = I``), dropping
    rank-deficient directions with a :class:`ContextWarning`; then
    ``Z = [1, F_w] / sqrt(m)`` (dense, ``m x (1 + rank)``) has orthonormal columns: every singular
    value is 1 (multiplicity ``1 + rank``), the trivial pair is ``(sqrt(w), e_0)``. Whitening runs
    in float64 on the host; the result has the features' dtype (module docstring).

    Args:
        features: ``(m, r)`` teacher features ``f(x_i)``.
        x: optional ``(m, ...)`` inputs.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import contexts
        >>> ctx = contexts.teacher(np.random.default_rng(0).normal(size=(20, 3)))
        >>> ctx.shape
        (20, 4)
    """
    fa = V.as_float_array(features, "features", ndim=2)
    V.check_nonempty(fa, "features")
    V.check_finite(fa, "features")
    dt = _float_dtype(fa.dtype)
    eps = np.finfo(fa.dtype).eps
    F = fa.astype(np.float64)
    m, r0 = F.shape
    Fc = F - F.mean(axis=0)
    U, s, _ = np.linalg.svd(Fc, full_matrices=False)
    tol = (s.max() if s.size else 0.0) * max(m, r0) * eps
    rank = int(np.sum(s > tol)) if s.size and s.max() > 0 else 0
    if rank < r0:
        warnings.warn(
            f"teacher: features have rank {rank} after centring ({r0 - rank} of {r0} directions "
            "dropped as rank-deficient)",
            ContextWarning,
            stacklevel=2,
        )
    Fw = U[:, :rank] * np.sqrt(m)
    Z = np.concatenate([np.ones((m, 1)), Fw], axis=1) / np.sqrt(m)
    w = jnp.full((m,), 1.0 / m, dt)
    xs = None if x is None else _check_samples(x, m)
    right = np.zeros(1 + rank)
    right[0] = 1.0
    return Context(conditional=None, weights=w, normalized=ops.DenseOperator(array=jnp.asarray(
        Z, dt)), right=jnp.asarray(right, dt), p=None, x=xs,
        rows=_FactorRows(f=jnp.asarray(Fw, dt)), name="teacher", info=(("rank", rank),))


# --------------------------------------------------------------------------------------------------
# Mixing (REFERENCE.md section 4)
# --------------------------------------------------------------------------------------------------
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
