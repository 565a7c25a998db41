r"""Linear operators as JAX pytrees: dense, sparse, matrix-free kernel, and their algebra.

Every operator ``A`` of shape ``(m, n)`` offers

* ``A.matmat(X)`` for an ``(n, k)`` block (or an ``(n,)`` vector) and ``A @ X``;
* ``A.rmatmat(Y)`` for ``A^T Y`` with an ``(m, k)`` block, and ``A.T`` (a lazy transpose);
* ``A.to_dense()`` for small sizes, ``A.shape``, ``A.dtype``.

Operators are immutable dataclasses registered as pytrees, so they pass through ``jit``, ``vmap``,
``lax.scan`` and ``shard_map`` like arrays; static settings (shapes, tile sizes, the product kernel)
live in the treedef. Algebra (``@`` between operators, ``+``, scalar ``*``, :func:`hstack`,
:func:`diag`) builds lazy compositions, so normalising a context or mixing contexts composes
operators instead of copying code.

Dtypes: an operator keeps the floating dtype of its data where JAX can hold it (float64 stays
float64 while ``jax_enable_x64`` is on, float32 stays float32; with x64 off float64 becomes
float32, as ``jnp.asarray`` does); integer and boolean data get JAX's default float dtype
(float32, or float64 with x64 on). Scalars and sum weights take the dtype of the operators they
scale. Complex data is refused with a TypeError naming the argument. Products promote: the result
has the common dtype of the operator and the operand.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxcontext import operators as ops
    >>> A = ops.as_operator(jnp.arange(6.0).reshape(2, 3))
    >>> B = ops.diag(jnp.array([1.0, 2.0])) @ A          # lazy product
    >>> B.matmat(jnp.ones((3, 1))).ravel().tolist()
    [3.0, 24.0]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as V
from ._pytree import register as _register_pytree

Array = jax.Array
HIGHEST = jax.lax.Precision.HIGHEST

__all__ = [
    "LinearOperator",
    "DenseOperator",
    "DiagonalOperator",
    "SparseOperator",
    "KernelOperator",
    "TransposedOperator",
    "ProductOperator",
    "SumOperator",
    "HStackOperator",
    "LowRankOperator",
    "as_operator",
    "dense",
    "diag",
    "sparse",
    "sparse_from_edges",
    "sparse_from_scipy",
    "kernel_operator",
    "product",
    "weighted_sum",
    "hstack",
    "low_rank",
    "deflate",
    "materialize",
    "identity",
]


def _static(default: Any = dataclasses.MISSING) -> Any:
    return dataclasses.field(default=default, metadata={"static": True})


def _pytree(cls: type) -> type:
    """Make ``cls`` a frozen dataclass registered as a pytree (static fields via metadata)."""
    cls = dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls)
    return _register_pytree(cls)


def _result_dtype(*dtypes: Any) -> np.dtype:
    """Promote to an inexact dtype that JAX can hold (float64 becomes float32 while x64 is off).

    Integer and boolean dtypes alone give JAX's default float dtype (module docstring).
    """
    dt = np.dtype(jnp.result_type(*(jax.dtypes.canonicalize_dtype(d) for d in dtypes)))
    if not jnp.issubdtype(dt, jnp.inexact):
        dt = V.default_float_dtype()
    return dt


class LinearOperator:
    """Base class: an ``(m, n)`` linear map known through block products.

    Subclasses implement ``_matmat`` and ``_rmatmat`` on 2-D blocks and the ``shape`` and ``dtype``
    properties; the public methods validate shapes and handle vectors.
    """

    ndim = 2

    # -- to implement ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:  # pragma: no cover - abstract
        raise NotImplementedError

    def _matmat(self, x: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def _rmatmat(self, y: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- public products ---------------------------------------------------------------------------
    def matmat(self, x: Any) -> Array:
        """Return ``A @ x`` for ``x`` of shape ``(n, k)`` or ``(n,)``."""
        return self._apply(x, self._matmat, self.shape[1], "matmat")

    def rmatmat(self, y: Any) -> Array:
        """Return ``A^T @ y`` for ``y`` of shape ``(m, k)`` or ``(m,)``."""
        return self._apply(y, self._rmatmat, self.shape[0], "rmatmat")

    matvec = matmat
    rmatvec = rmatmat

    def _apply(self, x: Any, fn: Callable[[Array], Array], rows: int, what: str) -> Array:
        x = jnp.asarray(x)
        if x.ndim not in (1, 2) or x.shape[0] != rows:
            raise ValueError(
                f"{type(self).__name__}.{what}: operand has shape {tuple(x.shape)}, expected "
                f"({rows},) or ({rows}, k) for an operator of shape {self.shape}"
            )
        vec = x.ndim == 1
        x2 = x[:, None] if vec else x
        x2 = x2.astype(_result_dtype(self.dtype, x2.dtype))
        out = fn(x2)
        return out[:, 0] if vec else out

    # -- algebra -----------------------------------------------------------------------------------
    @property
    def T(self) -> LinearOperator:  # noqa: N802 - numpy's name
        """The lazy transpose ``A^T``."""
        return TransposedOperator(self)

    def transpose(self) -> LinearOperator:
        """The lazy transpose ``A^T``."""
        return self.T

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return product(self, other)
        return self.matmat(other)

    def __rmatmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):  # pragma: no cover - handled by __matmul__
            return product(other, self)
        other = jnp.asarray(other)
        if other.ndim == 1:
            return self.rmatmat(other)
        return self.rmatmat(other.T).T

    def __add__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return weighted_sum([self, other])

    def __sub__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return weighted_sum([self, other], jnp.array([1.0, -1.0]))

    def __mul__(self, c: Any) -> LinearOperator:
        if isinstance(c, LinearOperator) or np.ndim(c) != 0:
            return NotImplemented
        return weighted_sum([self], jnp.reshape(jnp.asarray(c), (1,)))

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return self * -1.0

    # -- helpers -----------------------------------------------------------------------------------
    def to_dense(self, *, max_entries: int = 2**28) -> Array:
        """Materialise the operator as an ``(m, n)`` array (refused above ``max_entries``)."""
        m, n = self.shape
        if m * n > max_entries:
            raise MemoryError(
                f"to_dense: {m} x {n} = {m * n} entries exceeds max_entries={max_entries}; "
                "use products, or raise max_entries deliberately"
            )
        return self._matmat(jnp.eye(n, dtype=self.dtype))

    @property
    def size(self) -> int:
        """Number of entries of the (virtual) matrix."""
        return self.shape[0] * self.shape[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, dtype={np.dtype(self.dtype).name})"


# ------------------------------------------------------------------------------------------------
# Dense and diagonal
# ------------------------------------------------------------------------------------------------
@_pytree
class DenseOperator(LinearOperator):
    """A dense ``(m, n)`` array. ``precision`` is passed to ``jnp.matmul`` (default HIGHEST)."""

    array: Array
    precision: Any = _static(HIGHEST)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    def _matmat(self, x: Array) -> Array:
        return jnp.matmul(self.array, x, precision=self.precision)

    def _rmatmat(self, y: Array) -> Array:
        return jnp.matmul(self.array.T, y, precision=self.precision)

    def to_dense(self, *, max_entries: int = 2**28) -> Array:
        """Return the stored array."""
        return self.array


@_pytree
class DiagonalOperator(LinearOperator):
    """``diag(d)``: the square operator scaling row ``i`` by ``d[i]``."""

    d: Array

    @property
    def shape(self) -> tuple[int, int]:
        n = self.d.shape[0]
        return (n, n)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.d.dtype)

    def _matmat(self, x: Array) -> Array:
        return self.d[:, None] * x

    _rmatmat = _matmat

    @property
    def T(self) -> LinearOperator:  # noqa: N802
        """A diagonal operator is its own transpose."""
        return self


# ------------------------------------------------------------------------------------------------
# Sparse
# ------------------------------------------------------------------------------------------------
SPARSE_KERNELS = ("segment", "bcsr", "ell")


@_pytree
class SparseOperator(LinearOperator):
    """A sparse ``(m, n)`` matrix in sorted coordinate form with a CSR row pointer.

    Entries are stored twice as index arrays: sorted by row (``rows, cols, vals``) for ``A @ X``,
    and through the permutation ``tperm`` sorted by column for ``A^T @ Y``, so both products run
    the same sorted-segment kernel. ``kernel`` names the product kernel (see ``SPARSE_KERNELS``);
    the default ``"auto"`` uses the one measured fastest for the backend
    (``benchmarks/sparse_kernels``).

    Build with :func:`sparse`, :func:`sparse_from_edges` or :func:`sparse_from_scipy`.
    """

    rows: Array
    cols: Array
    vals: Array
    indptr: Array
    tperm: Array
    tindptr: Array
    shape_: tuple[int, int] = _static()
    kernel: str = _static("auto")
    layout: Any = None
    tlayout: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.shape_

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.vals.dtype)

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return int(self.vals.shape[0])

    def _matmat(self, x: Array) -> Array:
        from . import _spmm

        return _spmm.spmm(
            self.rows,
            self.cols,
            self.vals,
            self.indptr,
            x,
            self.shape_[0],
            kernel=self.kernel,
            layout=self.layout,
        )

    def _rmatmat(self, y: Array) -> Array:
        from . import _spmm

        return _spmm.spmm(
            self.cols[self.tperm],
            self.rows[self.tperm],
            self.vals[self.tperm],
            self.tindptr,
            y,
            self.shape_[1],
            kernel=self.kernel,
            layout=self.tlayout,
        )

    def tuned(self, num_cols: int, *, transpose: bool = True) -> tuple[SparseOperator, str]:
        """The operator with its kernel fixed to the faster of ELL and BCSR at ``num_cols``.

        Only for ``kernel="auto"`` on CPU with at least ``_spmm.TUNE_MIN_NNZ`` entries and an ELL
        layout (elsewhere the operator is returned as it is, with an empty note): the two kernels
        are timed on this pattern (cached per pattern, see ``_spmm.tune``), ``A @ X`` and, with
        ``transpose``, ``A^T @ Y`` too (their total decides). Solvers call this with their block
        width; the note says what was measured.
        """
        from . import _spmm

        if (
            self.kernel != "auto"
            or jax.default_backend() != "cpu"
            or self.nnz < _spmm.TUNE_MIN_NNZ
            or not isinstance(self.layout, _spmm.EllLayout)
        ):
            return self, ""
        m, n = self.shape_
        _, fwd = _spmm.tune(
            self.rows, self.cols, self.indptr, (m, n), self.layout, num_cols, dtype=self.dtype
        )
        total = dict(fwd)
        if transpose and isinstance(self.tlayout, _spmm.EllLayout):
            _, bwd = _spmm.tune(
                self.cols[self.tperm], self.rows[self.tperm], self.tindptr, (n, m),
                self.tlayout, num_cols, dtype=self.dtype,
            )
            total = {k: total[k] + bwd[k] for k in total if k in bwd}
        if not total:
            return self, ""
        best = min(total, key=total.get)
        per_col = ", ".join(
            f"{k} {1e3 * t / num_cols:.2g}" for k, t in sorted(total.items(), key=lambda kv: kv[1])
        )
        note = (
            f"sparse product kernel {best} (measured at {num_cols} columns, ms per column: "
            f"{per_col})"
        )
        return dataclasses.replace(self, kernel=best), note

    def to_dense(self, *, max_entries: int = 2**28) -> Array:
        """Scatter the entries into an ``(m, n)`` array."""
        m, n = self.shape_
        if m * n > max_entries:
            raise MemoryError(f"to_dense: {m} x {n} exceeds max_entries={max_entries}")
        return jnp.zeros(self.shape_, self.dtype).at[self.rows, self.cols].add(self.vals)

    def row_sums(self) -> Array:
        """``A @ 1`` without a product."""
        return jax.ops.segment_sum(
            self.vals, self.rows, num_segments=self.shape_[0], indices_are_sorted=True
        )

    def col_sums(self) -> Array:
        """``A^T @ 1`` without a product."""
        return jax.ops.segment_sum(self.vals, self.cols, num_segments=self.shape_[1])

    def scale(self, left: Any = None, right: Any = None) -> SparseOperator:
        """Return ``diag(left) @ A @ diag(right)`` as a new sparse operator (same pattern)."""
        v = self.vals
        if left is not None:
            v = v * jnp.asarray(left, v.dtype)[self.rows]
        if right is not None:
            v = v * jnp.asarray(right, v.dtype)[self.cols]
        return dataclasses.replace(self, vals=v)

    @property
    def T(self) -> LinearOperator:  # noqa: N802
        """The transpose as a sparse operator (re-sorted by the stored permutation)."""
        inv = jnp.argsort(self.tperm)
        return SparseOperator(
            rows=self.cols[self.tperm],
            cols=self.rows[self.tperm],
            vals=self.vals[self.tperm],
            indptr=self.tindptr,
            tperm=inv,
            tindptr=self.indptr,
            shape_=(self.shape_[1], self.shape_[0]),
            kernel=self.kernel,
            layout=self.tlayout,
            tlayout=self.layout,
        )


def sparse_from_edges(
    rows: Any,
    cols: Any,
    vals: Any = None,
    shape: tuple[int, int] | None = None,
    *,
    dtype: Any = None,
    sum_duplicates: bool = True,
    kernel: str = "auto",
) -> SparseOperator:
    """Build a :class:`SparseOperator` from coordinate lists (an edge list).

    Args:
        rows: integer row indices.
        cols: integer column indices, as many as ``rows``.
        vals: entry values (default all ones).
        shape: ``(m, n)``; default ``(max(rows) + 1, max(cols) + 1)``.
        dtype: floating dtype of the stored values; default: that of ``vals`` as JAX holds it
            (JAX's default float dtype for integer, boolean or absent values).
        sum_duplicates: repeated ``(row, col)`` pairs are summed (as scipy does); with False they
            raise ValueError.
        kernel: product kernel, ``"auto"`` or one of ``SPARSE_KERNELS``.

    Raises:
        ValueError: mismatched lengths, out-of-range or non-integer indices, NaN/Inf values,
            empty input without a shape.
        TypeError: complex or non-numeric indices or values.
        OverflowError: indices that need 64 bits while ``jax_enable_x64`` is off.
    """
    r = V.as_real_array(rows, "rows").ravel()
    c = V.as_real_array(cols, "cols").ravel()
    if r.shape != c.shape:
        raise ValueError(
            f"rows and cols must have the same length, got {r.shape[0]} and {c.shape[0]}"
        )
    if vals is None:
        v = np.ones(r.shape, dtype=np.float64)
        vdt = V.default_float_dtype()
    else:
        v0 = V.as_real_array(vals, "vals")
        vdt = V.float_dtype(v0.dtype)
        v = v0.astype(np.float64).ravel()
    dtype = vdt if dtype is None else dtype
    if v.shape != r.shape:
        raise ValueError(f"vals has length {v.shape[0]}, expected {r.shape[0]} (one per edge)")
    V.check_finite(v, "vals")
    if shape is None:
        if r.size == 0:
            raise ValueError("empty edge list: pass shape= to build an all-zero operator")
        shape = (int(r.max()) + 1, int(c.max()) + 1)
    m, n = (int(s) for s in shape)
    if m < 1 or n < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    V.check_int_range(r, "rows", 0, m)
    V.check_int_range(c, "cols", 0, n)
    idx = V.index_dtype(m, n, r.size)
    r = r.astype(np.int64)
    c = c.astype(np.int64)
    # sort by (row, col) and merge duplicates
    key = r * n + c
    order = np.argsort(key, kind="stable")
    key, v = key[order], v[order]
    uniq, start = np.unique(key, return_index=True)
    if uniq.size != key.size:
        if not sum_duplicates:
            raise ValueError(
                f"{key.size - uniq.size} duplicate (row, col) entries; pass sum_duplicates=True"
            )
        v = np.add.reduceat(v, start) if v.size else v
        key = uniq
    r, c = key // n, key % n
    return _sparse_from_sorted(r, c, v, (m, n), dtype=dtype, idx=idx, kernel=kernel)


def _sparse_from_sorted(r, c, v, shape, *, dtype, idx, kernel) -> SparseOperator:
    m, n = shape
    dtype = _result_dtype(dtype)
    if kernel != "auto" and kernel not in SPARSE_KERNELS:
        raise ValueError(f"kernel must be 'auto' or one of {SPARSE_KERNELS}, got {kernel!r}")
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=m), out=indptr[1:])
    tperm = np.argsort(c, kind="stable")
    tindptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(c, minlength=n), out=tindptr[1:])
    from . import _spmm

    layout = _spmm.prepare(kernel, r, c, v, indptr, (m, n))
    tlayout = _spmm.prepare(kernel, c[tperm], r[tperm], v[tperm], tindptr, (n, m))
    return SparseOperator(
        rows=jnp.asarray(r.astype(idx)),
        cols=jnp.asarray(c.astype(idx)),
        vals=jnp.asarray(v, dtype=dtype),
        indptr=jnp.asarray(indptr.astype(idx)),
        tperm=jnp.asarray(tperm.astype(idx)),
        tindptr=jnp.asarray(tindptr.astype(idx)),
        shape_=(m, n),
        kernel=kernel,
        layout=layout,
        tlayout=tlayout,
    )


def sparse_from_scipy(
    mat: Any, *, dtype: Any = None, kernel: str = "auto"
) -> SparseOperator:
    """Build a :class:`SparseOperator` from any ``scipy.sparse`` matrix or array.

    ``dtype`` defaults to the matrix's own dtype as JAX holds it (module docstring).
    """
    V.check_real(mat, "mat")
    coo = mat.tocoo()
    return sparse_from_edges(
        coo.row, coo.col, coo.data, coo.shape, dtype=dtype, sum_duplicates=True, kernel=kernel
    )


def sparse(a: Any, *, dtype: Any = None, kernel: str = "auto") -> SparseOperator:
    """Build a :class:`SparseOperator` from a scipy sparse matrix, a BCOO/BCSR, or a dense array."""
    V.check_real(a if hasattr(a, "dtype") else np.asarray(a), "a")
    if hasattr(a, "tocoo") and not isinstance(a, jax.Array):  # scipy.sparse
        return sparse_from_scipy(a, dtype=dtype, kernel=kernel)
    try:
        from jax.experimental import sparse as jsparse

        if isinstance(a, (jsparse.BCOO, jsparse.BCSR)):
            coo = a.to_bcoo() if isinstance(a, jsparse.BCSR) else a
            ij = np.asarray(coo.indices)
            return sparse_from_edges(
                ij[:, 0],
                ij[:, 1],
                np.asarray(coo.data),
                coo.shape,
                dtype=dtype or coo.dtype,
                kernel=kernel,
            )
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(a)
    V.check_ndim(arr, "a", 2)
    r, c = np.nonzero(arr)
    return sparse_from_edges(
        r, c, arr[r, c], arr.shape, dtype=dtype or _result_dtype(arr.dtype), kernel=kernel
    )


# ------------------------------------------------------------------------------------------------
# Matrix-free kernel operator
# ------------------------------------------------------------------------------------------------
@_pytree
class KernelOperator(LinearOperator):
    r"""The ``(m, n)`` matrix ``K[i, j] = kernel(x_i, y_j)``, evaluated tile by tile, never stored.

    A product streams over row tiles of ``block_rows`` rows: each step evaluates a
    ``(block_rows, n)`` tile, multiplies it, and drops it, so peak memory is about
    ``block_rows * n * itemsize`` plus the operands. ``kernel`` is a pytree callable
    ``kernel(x_tile, y_tile) -> Gram tile`` (see :mod:`jaxcontext.kernels`), so its parameters can
    be traced.
    """

    x: Array
    y: Array
    kernel: Any
    block_rows: int = _static(256)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.x.shape[0], self.y.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return _result_dtype(self.x.dtype, self.y.dtype)

    def _tiles(self) -> tuple[Array, int]:
        m, b = self.x.shape[0], self.block_rows
        nb = -(-m // b)
        pad = nb * b - m
        xp = jnp.pad(self.x, ((0, pad), (0, 0)))
        return xp.reshape(nb, b, self.x.shape[1]), pad

    def _valid(self, i: Array) -> Array:
        return (i * self.block_rows + jnp.arange(self.block_rows)) < self.x.shape[0]

    def _matmat(self, v: Array) -> Array:
        return _kernel_matmat(self, v)

    def _rmatmat(self, w: Array) -> Array:
        return _kernel_rmatmat(self, w)

    def _matmat_impl(self, v: Array) -> Array:
        tiles, pad = self._tiles()
        y = self.y

        def one(args):
            xt = args
            return jnp.matmul(self.kernel(xt, y).astype(v.dtype), v, precision=HIGHEST)

        out = jax.lax.map(one, tiles)
        return out.reshape(-1, v.shape[1])[: self.x.shape[0]]

    def _rmatmat_impl(self, w: Array) -> Array:
        tiles, pad = self._tiles()
        nb, b = tiles.shape[0], self.block_rows
        wp = jnp.pad(w, ((0, pad), (0, 0))).reshape(nb, b, w.shape[1])
        y = self.y

        def step(acc, args):
            xt, wt = args
            kt = self.kernel(xt, y).astype(w.dtype)
            return acc + jnp.matmul(kt.T, wt, precision=HIGHEST), None

        acc0 = jnp.zeros((y.shape[0], w.shape[1]), w.dtype)
        acc, _ = jax.lax.scan(step, acc0, (tiles, wp))
        return acc

    def to_dense(self, *, max_entries: int = 2**28) -> Array:
        """Evaluate the whole kernel matrix (refused above ``max_entries``)."""
        m, n = self.shape
        if m * n > max_entries:
            raise MemoryError(f"to_dense: {m} x {n} exceeds max_entries={max_entries}")
        return self.kernel(self.x, self.y).astype(self.dtype)

    def row_sums(self) -> Array:
        """``K @ 1``."""
        return self._matmat(jnp.ones((self.shape[1], 1), self.dtype))[:, 0]


# Module-level jits: eager products compile once per shape (nested in an outer jit they inline).
_kernel_matmat = jax.jit(lambda op, v: op._matmat_impl(v))
_kernel_rmatmat = jax.jit(lambda op, w: op._rmatmat_impl(w))


def _block_rows_for(n: int, itemsize: int, tile_bytes: int) -> int:
    b = max(8, tile_bytes // max(1, n * itemsize))
    return int(2 ** int(math.floor(math.log2(b))))


def kernel_operator(
    x: Any,
    y: Any = None,
    kernel: Any = None,
    *,
    block_rows: int | None = None,
    tile_bytes: int = 64 * 2**20,
) -> KernelOperator:
    """Build a matrix-free :class:`KernelOperator` ``K[i, j] = kernel(x_i, y_j)``.

    Args:
        x: ``(m, D)`` points for the rows.
        y: ``(n, D)`` points for the columns (default ``x``).
        kernel: a callable ``kernel(x_tile, y_tile) -> (b, n)`` tile, e.g. ``kernels.RBF(gamma)``;
            plain functions are wrapped in ``jax.tree_util.Partial``.
        block_rows: rows per tile; default chosen so one tile takes about ``tile_bytes``.
        tile_bytes: memory budget of one kernel tile.
    """
    if kernel is None:
        raise ValueError("kernel_operator: pass kernel=, e.g. jaxcontext.kernels.RBF(gamma=1.0)")
    V.check_real(x if hasattr(x, "dtype") else np.asarray(x), "x")
    x = jnp.asarray(x)
    if y is not None:
        V.check_real(y if hasattr(y, "dtype") else np.asarray(y), "y")
    y = x if y is None else jnp.asarray(y)
    # integer / boolean points become JAX's default float dtype (floating ones keep theirs)
    x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(V.default_float_dtype())
    y = y if jnp.issubdtype(y.dtype, jnp.floating) else y.astype(V.default_float_dtype())
    for name, a in (("x", x), ("y", y)):
        V.check_ndim(a, name, 2)
        V.check_nonempty(a, name)
        V.check_finite(a, name)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y need the same feature dimension, got {x.shape[1]} and {y.shape[1]}"
        )
    if not isinstance(kernel, jax.tree_util.Partial) and not _is_pytree_callable(kernel):
        kernel = jax.tree_util.Partial(kernel)
    dt = _result_dtype(x.dtype, y.dtype)
    if block_rows is None:
        block_rows = min(
            _block_rows_for(y.shape[0], dt.itemsize, tile_bytes), 1 << (x.shape[0] - 1).bit_length()
        )
    return KernelOperator(x=x, y=y, kernel=kernel, block_rows=int(block_rows))


def _is_pytree_callable(f: Any) -> bool:
    # registered dataclass kernels (jaxcontext.kernels) flatten to themselves' fields
    leaves, treedef = jax.tree_util.tree_flatten(f)
    return not (len(leaves) == 1 and leaves[0] is f)


# ------------------------------------------------------------------------------------------------
# Algebra
# ------------------------------------------------------------------------------------------------
@_pytree
class TransposedOperator(LinearOperator):
    """The lazy transpose of another operator."""

    op: LinearOperator

    @property
    def shape(self) -> tuple[int, int]:
        m, n = self.op.shape
        return (n, m)

    @property
    def dtype(self) -> np.dtype:
        return self.op.dtype

    def _matmat(self, x: Array) -> Array:
        return self.op._rmatmat(x)

    def _rmatmat(self, y: Array) -> Array:
        return self.op._matmat(y)

    @property
    def T(self) -> LinearOperator:  # noqa: N802
        """Transposing twice returns the original operator."""
        return self.op


@_pytree
class ProductOperator(LinearOperator):
    """The lazy product ``ops[0] @ ops[1] @ ... @ ops[-1]``."""

    ops: tuple

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ops[0].shape[0], self.ops[-1].shape[1])

    @property
    def dtype(self) -> np.dtype:
        return _result_dtype(*(o.dtype for o in self.ops))

    def _matmat(self, x: Array) -> Array:
        for o in reversed(self.ops):
            x = o._matmat(x)
        return x

    def _rmatmat(self, y: Array) -> Array:
        for o in self.ops:
            y = o._rmatmat(y)
        return y


@_pytree
class SumOperator(LinearOperator):
    """The lazy weighted sum ``sum_i weights[i] * ops[i]`` (weights are traced leaves)."""

    ops: tuple
    weights: Array

    @property
    def shape(self) -> tuple[int, int]:
        return self.ops[0].shape

    @property
    def dtype(self) -> np.dtype:
        return _result_dtype(self.weights.dtype, *(o.dtype for o in self.ops))

    def _matmat(self, x: Array) -> Array:
        return sum(self.weights[i].astype(x.dtype) * o._matmat(x) for i, o in enumerate(self.ops))

    def _rmatmat(self, y: Array) -> Array:
        return sum(self.weights[i].astype(y.dtype) * o._rmatmat(y) for i, o in enumerate(self.ops))


@_pytree
class HStackOperator(LinearOperator):
    """Column concatenation ``[ops[0], ops[1], ...]`` (equal row counts)."""

    ops: tuple

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ops[0].shape[0], sum(o.shape[1] for o in self.ops))

    @property
    def dtype(self) -> np.dtype:
        return _result_dtype(*(o.dtype for o in self.ops))

    def _matmat(self, x: Array) -> Array:
        out, start = None, 0
        for o in self.ops:
            n = o.shape[1]
            part = o._matmat(x[start : start + n])
            out = part if out is None else out + part
            start += n
        return out

    def _rmatmat(self, y: Array) -> Array:
        return jnp.concatenate([o._rmatmat(y) for o in self.ops], axis=0)


@_pytree
class LowRankOperator(LinearOperator):
    """``left @ right^T`` with ``left`` (m, r) and ``right`` (n, r), never formed."""

    left: Array
    right: Array

    @property
    def shape(self) -> tuple[int, int]:
        return (self.left.shape[0], self.right.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return _result_dtype(self.left.dtype, self.right.dtype)

    def _matmat(self, x: Array) -> Array:
        return jnp.matmul(
            self.left, jnp.matmul(self.right.T, x, precision=HIGHEST), precision=HIGHEST
        )

    def _rmatmat(self, y: Array) -> Array:
        return jnp.matmul(
            self.right, jnp.matmul(self.left.T, y, precision=HIGHEST), precision=HIGHEST
        )


# ------------------------------------------------------------------------------------------------
# Constructors
# ------------------------------------------------------------------------------------------------
def as_operator(obj: Any, *, dtype: Any = None) -> LinearOperator:
    """Return ``obj`` as a :class:`LinearOperator`.

    Accepts operators (returned unchanged), numpy/jax 2-D arrays (dense), ``scipy.sparse`` matrices
    and JAX BCOO/BCSR arrays (sparse). The dtype is ``dtype`` if given, else the data's own
    floating dtype as JAX holds it (JAX's default float dtype for integer or boolean data; module
    docstring); complex data raises TypeError.
    """
    if isinstance(obj, LinearOperator):
        return obj
    if hasattr(obj, "tocoo") and not isinstance(obj, (np.ndarray, jax.Array)):
        return sparse(obj, dtype=dtype)
    try:
        from jax.experimental import sparse as jsparse

        if isinstance(obj, (jsparse.BCOO, jsparse.BCSR)):
            return sparse(obj, dtype=dtype)
    except ImportError:  # pragma: no cover
        pass
    return dense(obj, dtype=dtype)


def dense(a: Any, *, dtype: Any = None, precision: Any = HIGHEST) -> DenseOperator:
    """Wrap a 2-D array (checked: rank 2, non-empty, finite) as a :class:`DenseOperator`."""
    V.check_real(a if hasattr(a, "dtype") else np.asarray(a), "a")
    if isinstance(a, jax.core.Tracer):
        arr = a
    else:
        arr = jnp.asarray(a)
        V.check_nonempty(arr, "a")
        V.check_finite(arr, "a")
    V.check_ndim(arr, "a", 2)
    dt = _result_dtype(arr.dtype if dtype is None else dtype)
    return DenseOperator(array=arr.astype(dt), precision=precision)


def diag(d: Any) -> DiagonalOperator:
    """The square diagonal operator ``diag(d)``."""
    V.check_real(d if hasattr(d, "dtype") else np.asarray(d), "d")
    d = jnp.asarray(d)
    V.check_ndim(d, "d", 1)
    V.check_nonempty(d, "d")
    V.check_finite(d, "d")
    return DiagonalOperator(d=d.astype(_result_dtype(d.dtype)))


def identity(n: int, dtype: Any = None) -> DiagonalOperator:
    """The ``n x n`` identity (default dtype: JAX's default float dtype)."""
    dt = V.default_float_dtype() if dtype is None else _result_dtype(dtype)
    return DiagonalOperator(d=jnp.ones((V.check_positive_int(n, "n"),), dt))


def product(*ops: Any) -> ProductOperator:
    """Lazy product ``ops[0] @ ops[1] @ ...`` (nested products are flattened)."""
    flat: list[LinearOperator] = []
    for o in ops:
        o = as_operator(o)
        flat.extend(o.ops if isinstance(o, ProductOperator) else (o,))
    if not flat:
        raise ValueError("product: need at least one operator")
    for a, b in zip(flat[:-1], flat[1:], strict=True):
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"product: inner dimensions differ, {a.shape} @ {b.shape}")
    return ProductOperator(ops=tuple(flat))


def weighted_sum(ops: Sequence[Any], weights: Any = None) -> SumOperator:
    """Lazy ``sum_i weights[i] * ops[i]``; all operators must share one shape.

    For a convex combination of contexts (REFERENCE.md section 4) pass non-negative weights that sum
    to one; this function itself allows any real weights. The weights take the operators' common
    dtype (float32 operators stay float32 with float64 weights).
    """
    ops = tuple(as_operator(o) for o in ops)
    if not ops:
        raise ValueError("weighted_sum: need at least one operator")
    shapes = {o.shape for o in ops}
    if len(shapes) != 1:
        raise ValueError(f"weighted_sum: operators must have one shape, got {sorted(shapes)}")
    dt = _result_dtype(*(o.dtype for o in ops))
    w = jnp.ones((len(ops),), dt) if weights is None else jnp.asarray(weights)
    V.check_real(w, "weights")
    if w.shape != (len(ops),):
        raise ValueError(f"weights: expected shape ({len(ops)},), got {tuple(w.shape)}")
    V.check_finite(w, "weights")
    return SumOperator(ops=ops, weights=w.astype(dt))


def hstack(ops: Sequence[Any]) -> HStackOperator:
    """Lazy column concatenation ``[A_1, A_2, ...]`` (equal row counts)."""
    ops = tuple(as_operator(o) for o in ops)
    if not ops:
        raise ValueError("hstack: need at least one operator")
    rows = {o.shape[0] for o in ops}
    if len(rows) != 1:
        raise ValueError(f"hstack: operators need one row count, got {sorted(rows)}")
    return HStackOperator(ops=ops)


def low_rank(left: Any, right: Any) -> LowRankOperator:
    """The rank-``r`` operator ``left @ right^T`` (vectors are taken as one column)."""
    left, right = jnp.asarray(left), jnp.asarray(right)
    V.check_real(left, "left")
    V.check_real(right, "right")
    left = left[:, None] if left.ndim == 1 else left
    right = right[:, None] if right.ndim == 1 else right
    V.check_ndim(left, "left", 2)
    V.check_ndim(right, "right", 2)
    if left.shape[1] != right.shape[1]:
        raise ValueError(
            f"left and right need the same rank, got {left.shape[1]} and {right.shape[1]}"
        )
    V.check_finite(left, "left")
    V.check_finite(right, "right")
    return LowRankOperator(left=left, right=right)


def deflate(op: Any, u: Any, v: Any, s: Any = 1.0) -> SumOperator:
    """``op - s * u v^T``: remove a known singular triplet (e.g. a context's trivial pair).

    With orthonormal ``u`` (m, r), ``v`` (n, r) that are exact singular vectors of ``op`` with
    values ``s`` (``s_0 = 1`` for a context), the result has the remaining singular values of
    ``op`` (and zeros for the removed ones).
    """
    op = as_operator(op)
    lr = low_rank(jnp.asarray(u) * jnp.asarray(s, op.dtype), v)
    if lr.shape != op.shape:
        raise ValueError(f"deflate: u v^T has shape {lr.shape}, operator has {op.shape}")
    return weighted_sum([op, lr], jnp.array([1.0, -1.0], op.dtype))


def materialize(op: Any, *, budget_bytes: int = 2**30) -> LinearOperator:
    """Return ``op`` as a :class:`DenseOperator` when its dense form fits ``budget_bytes``.

    Otherwise ``op`` is returned unchanged.

    Useful for kernel operators that are small enough that one dense matrix beats re-evaluating
    tiles at every product.
    """
    op = as_operator(op)
    if isinstance(op, DenseOperator):
        return op
    if op.size * np.dtype(op.dtype).itemsize > budget_bytes:
        return op
    return DenseOperator(array=op.to_dense(max_entries=op.size))
