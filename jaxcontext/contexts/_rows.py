"""Row models: what a context knows about the rows of its conditional ``P``.

One class per kind of conditional (sparse, dense, labels, kernel, kNN, mixtures, ...): exact
sampling of ``j ~ P[i, :]``, rows of ``P``, ``P+(a | x)`` at new inputs and the dual-kernel Gram;
plus chunked row evaluation, exact categorical draws and Walker's alias table for sample weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops
from ..operators import _pytree, _static
from ._checks import _check_labels, _check_new_points, _index_array, _pick_input
from ._neighbors import _knn_query, _training_matches

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST

# entries of one (rows, M) block evaluated at once by the row samplers / row evaluators
_ROW_BLOCK_ENTRIES = 2**24


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


# jitted at module level like Context's methods (_context.py): one compilation per structure
@jax.jit
def _jit_rows(rows: Any, i: Array) -> Array:
    return rows.rows(i)
