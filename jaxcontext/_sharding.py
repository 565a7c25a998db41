r"""Row sharding of linear operators over a device mesh.

:func:`shard_rows` splits an ``(m, n)`` operator into ``p`` row blocks of ``mb = ceil(m / p)`` rows,
one per device along a mesh axis, so that a block product scales across devices:

.. math::

    A = \begin{bmatrix} A_0 \\ \vdots \\ A_{p-1} \end{bmatrix}, \qquad
    A X = \begin{bmatrix} A_0 X \\ \vdots \\ A_{p-1} X \end{bmatrix}, \qquad
    A^T Y = \sum_b A_b^T Y_b .

* ``A.matmat(X)``: ``X`` (``(n, k)``, any sharding) is gathered on every device, each device
  multiplies its row block, and the ``(m, k)`` result comes back sharded by rows.
* ``A.rmatmat(Y)``: ``Y`` (``(m, k)``, sharded by rows) meets the local row block, the partial sums
  ``A_b^T Y_b`` are reduced and scattered (``psum_scatter``), and the ``(n, k)`` result comes back
  sharded by rows too. A solver iterating ``A.matmat`` / ``A.rmatmat`` thus keeps its tall blocks
  sharded; each product costs one all-gather or one reduce-scatter of a ``(n, k)`` block.

The local product is the single-device operator's own ``_matmat`` / ``_rmatmat`` on the device's
row block (no second copy of the product kernels). Storage: every leaf of the local operator gets a
leading device axis of length ``p`` placed with ``NamedSharding(mesh, P(axis))``; row-split leaves
(dense rows, sparse entries, kernel row points) hold one block per device, shared leaves (kernel
column points and parameters) one copy per device, exactly as replication would. The last block is
padded with zero rows (sparse: explicit zeros) that never reach a result.

Supported operators:

* dense, sparse, kernel, their transposes, ``diag(l) @ B @ diag(r)`` with such a ``B`` (context
  operators), and weighted sums / column stacks of these: one row-sharded operator (one gather of
  ``X`` per ``matmat``, one reduce-scatter per ``rmatmat``);
* diagonal: sharded block-diagonally (no communication at all);
* products, and sums / stacks / transposes of anything else: each part is sharded and the
  composition is kept (the intermediate blocks stay sharded by rows).

Row counts that the device count does not divide work: inside ``jit`` XLA keeps the ``(m, k)``
blocks sharded (padded internally), but a *concrete* JAX array cannot be sharded unevenly, so an
eager product or a ``jit`` output with such a row count comes back replicated. Prefer ``m`` (and
``n``) divisible by the device count when blocks leave ``jit``.

Multi-process (``jax.distributed``): every process calls :func:`shard_rows` on the same host data;
each process only places the blocks of its own devices (``jax.make_array_from_callback``).

Example:
    >>> import numpy as np, jax
    >>> from jaxcontext import operators as ops
    >>> from jaxcontext._sharding import shard_rows
    >>> A = ops.dense(np.arange(12.0).reshape(4, 3))
    >>> As = shard_rows(A)                       # 1-D mesh over all devices
    >>> As.matmat(np.ones((3, 1))).ravel().tolist()
    [3.0, 12.0, 21.0, 30.0]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from . import _validation as V
from . import operators as ops
from .operators import (
    DenseOperator,
    DiagonalOperator,
    HStackOperator,
    KernelOperator,
    LinearOperator,
    ProductOperator,
    SparseOperator,
    SumOperator,
    TransposedOperator,
)

Array = jax.Array

__all__ = ["RowShardedOperator", "shard_rows", "shard_block", "row_mesh"]

_KINDS = ("rows", "blockdiag")


def row_mesh(devices: Any = None, *, axis: str = "rows") -> Mesh:
    """Return a 1-D mesh named ``axis`` over ``devices`` (default: all devices, all processes).

    Built with ``jax.sharding.Mesh`` so the axis type is ``Auto`` on every JAX version (XLA
    propagates shardings through the solver code, no explicit-sharding types needed).
    """
    devs = jax.devices() if devices is None else list(devices)
    if not devs:
        raise ValueError("devices: empty; need at least one device")
    return Mesh(np.array(devs), (axis,))


def _axis_tuple(axis: Any) -> tuple[str, ...]:
    return (axis,) if isinstance(axis, str) else tuple(axis)


def _num_shards(mesh: Mesh, axis: Any) -> int:
    names = _axis_tuple(axis)
    for a in names:
        if a not in mesh.shape:
            raise ValueError(
                f"axis: {a!r} is not a mesh axis; the mesh has axes {tuple(mesh.shape)}"
            )
    return int(math.prod(mesh.shape[a] for a in names))


def _spec(axis: Any) -> P:
    names = _axis_tuple(axis)
    return P(names[0] if len(names) == 1 else names)


def _place(host: np.ndarray, mesh: Mesh, spec: P) -> Array:
    """Place a host array on ``mesh`` with ``spec``; each process builds only its own shards."""
    host = np.asarray(host)
    sharding = NamedSharding(mesh, spec)
    return jax.make_array_from_callback(
        host.shape, sharding, lambda idx: np.ascontiguousarray(host[idx])
    )


# --------------------------------------------------------------------------------------------------
# The sharded operator
# --------------------------------------------------------------------------------------------------
@ops._pytree
class RowShardedOperator(LinearOperator):
    r"""An ``(m, n)`` operator stored as ``p`` row blocks, one per device along a mesh axis.

    ``local`` is the single-device operator of one row block (shape ``(mb, n)``, or ``(mb, mb)``
    for ``kind="blockdiag"``) whose every leaf carries an extra leading axis of length ``p``,
    sharded over ``axis``. Products run in ``jax.shard_map``: ``matmat`` gathers the ``(n, k)``
    operand and returns ``(m, k)`` sharded by rows; ``rmatmat`` takes ``(m, k)`` sharded by rows and
    returns ``(n, k)`` sharded by rows after a reduce-scatter (see the module docstring).
    ``kind="blockdiag"`` is a square block-diagonal operator (a sharded diagonal): its products are
    local, row block by row block, without communication.

    Build with :func:`shard_rows`.
    """

    local: LinearOperator
    shape_: tuple[int, int] = ops._static()
    mesh: Mesh = ops._static()
    axis: Any = ops._static("rows")
    kind: str = ops._static("rows")

    @property
    def shape(self) -> tuple[int, int]:
        return self.shape_

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.local.dtype)

    @property
    def num_shards(self) -> int:
        """Number of row blocks ``p`` (devices along ``axis``)."""
        return _num_shards(self.mesh, self.axis)

    @property
    def block_rows(self) -> int:
        """Rows per block ``mb = ceil(m / p)`` (the last block is padded)."""
        return -(-self.shape_[0] // self.num_shards)

    @property
    def sharding(self) -> NamedSharding:
        """Sharding of the blocks this operator returns: ``NamedSharding(mesh, P(axis))``."""
        return NamedSharding(self.mesh, _spec(self.axis))

    def _matmat(self, x: Array) -> Array:
        return _sharded_matmat(self, x)

    def _rmatmat(self, y: Array) -> Array:
        return _sharded_rmatmat(self, y)


def _unstack(local: Any) -> Any:
    # inside shard_map every stacked leaf has a leading axis of length one: drop it
    return jax.tree.map(lambda a: a[0], local)


def _pad_rows(x: Array, rows: int) -> Array:
    return x if x.shape[0] == rows else jnp.pad(x, ((0, rows - x.shape[0]), (0, 0)))


def _constrain(op: RowShardedOperator, out: Array, rows: int) -> Array:
    if out.shape[0] != rows:
        out = out[:rows]
    return jax.lax.with_sharding_constraint(out, op.sharding)


def _smap(fn: Any, op: RowShardedOperator, in_specs: tuple) -> Any:
    # check_vma=False: the local operators' code (scan carries built with jnp.zeros, ...) is
    # written for one device and need not annotate which values vary across the mesh axis
    return jax.shard_map(
        fn, mesh=op.mesh, in_specs=in_specs, out_specs=_spec(op.axis), check_vma=False
    )


# The two products are jitted (inlined when called under an outer jit): an eager call then compiles
# once per operator structure and operand shape instead of re-tracing the shard_map closure, and
# its result has the row sharding of the with_sharding_constraint.
@jax.jit
def _sharded_matmat(op: RowShardedOperator, x: Array) -> Array:
    p, mb = op.num_shards, op.block_rows
    spec = _spec(op.axis)
    m, n = op.shape_
    if op.kind == "blockdiag":

        def local_fn(loc, xb):
            return _unstack(loc)._matmat(xb)

        fn = _smap(local_fn, op, (spec, spec))
        out = fn(op.local, _pad_rows(x, p * mb))
    else:

        def local_fn(loc, xf):
            return _unstack(loc)._matmat(xf)

        fn = _smap(local_fn, op, (spec, P()))
        out = fn(op.local, x)
    return _constrain(op, out, m)


@jax.jit
def _sharded_rmatmat(op: RowShardedOperator, y: Array) -> Array:
    p, mb = op.num_shards, op.block_rows
    spec = _spec(op.axis)
    m, n = op.shape_
    yp = _pad_rows(y, p * mb)  # zero rows meet the padding rows of the operator
    if op.kind == "blockdiag":

        def local_fn(loc, yb):
            return _unstack(loc)._rmatmat(yb)
    else:
        nb = -(-n // p)
        axis = op.axis

        def local_fn(loc, yb):
            part = _pad_rows(_unstack(loc)._rmatmat(yb), p * nb)
            return jax.lax.psum_scatter(part, axis, scatter_dimension=0, tiled=True)

    fn = _smap(local_fn, op, (spec, spec))
    return _constrain(op, fn(op.local, yp), n)


# --------------------------------------------------------------------------------------------------
# Building the local row blocks (host side, once)
# --------------------------------------------------------------------------------------------------
def _host(a: Any, name: str) -> np.ndarray:
    if isinstance(a, jax.core.Tracer):
        raise TypeError(
            f"shard_rows: {name} is a traced value; build the sharded operator outside jit "
            "(it places concrete row blocks on the devices)"
        )
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        raise ValueError(
            f"shard_rows: {name} is already a multi-process array; pass host data (every process "
            "the same) or a single-process operator"
        )
    # jnp.asarray canonicalises dtypes (float64 -> float32 while x64 is off)
    return np.asarray(jnp.asarray(a))


def _split_rows(a: np.ndarray, p: int, mb: int) -> np.ndarray:
    """``(m, ...)`` -> ``(p, mb, ...)``, the last block padded with zeros."""
    pad = p * mb - a.shape[0]
    if pad:
        a = np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)], axis=0)
    return a.reshape((p, mb) + a.shape[1:])


def _shared(tree: Any, p: int, name: str) -> Any:
    """Give every leaf of ``tree`` a leading axis of ``p`` identical copies (a broadcast view)."""

    def one(leaf):
        h = _host(leaf, name)
        return np.broadcast_to(h, (p,) + h.shape)

    return jax.tree.map(one, tree)


def _swap_args(kernel: Any, a: Array, b: Array) -> Array:
    return kernel(b, a).T


def _transpose_leaf(op: LinearOperator) -> LinearOperator | None:
    """Transpose a dense, sparse, kernel or diagonal operator explicitly (None for others)."""
    if isinstance(op, DenseOperator):
        return dataclasses.replace(op, array=op.array.T)
    if isinstance(op, (SparseOperator, DiagonalOperator)):
        return op.T
    if isinstance(op, KernelOperator):
        # K^T[j, i] = k(x_i, y_j): a kernel operator on (y, x) with the arguments swapped; tiles
        # now span m columns, so re-cap their rows to kernel_operator's default tile budget
        cap = ops._block_rows_for(op.x.shape[0], op.dtype.itemsize, 64 * 2**20)
        return KernelOperator(
            x=op.y,
            y=op.x,
            kernel=jax.tree_util.Partial(_swap_args, op.kernel),
            block_rows=min(op.block_rows, cap),
        )
    return None


def _stack_blocks(blocks: list) -> Any:
    """Stack the leaves of ``p`` block operators (same structure, same leaf shapes) on axis 0."""
    treedefs = {jax.tree.structure(b) for b in blocks}
    shapes = {tuple(np.shape(leaf) for leaf in jax.tree.leaves(b)) for b in blocks}
    if len(treedefs) != 1 or len(shapes) != 1:
        return None
    return jax.tree.map(lambda *ls: np.stack([np.asarray(leaf) for leaf in ls]), *blocks)


def _local_sparse(op: SparseOperator, p: int, mb: int) -> SparseOperator:
    """Cut a sparse operator into ``p`` row blocks of ``mb`` rows, padded to one entry count.

    Each block is built by the operators module's own sorted-entry builder (so it carries whatever
    the product kernel needs), with local row indices and global column indices. Padding entries
    are explicit zeros at ``(mb - 1, n - 1)``, the last position in both sort orders.
    """
    m, n = op.shape_
    rows = _host(op.rows, "rows").astype(np.int64)
    cols = _host(op.cols, "cols").astype(np.int64)
    vals = _host(op.vals, "vals")
    indptr = _host(op.indptr, "indptr").astype(np.int64)
    bounds = indptr[np.minimum(np.arange(p + 1) * mb, m)]
    nnz = max(1, int(np.max(np.diff(bounds))))
    idx = V.index_dtype(mb, n, nnz)

    def blocks(kernel):
        out = []
        for b in range(p):
            lo, hi = int(bounds[b]), int(bounds[b + 1])
            pad = nnz - (hi - lo)
            r = np.concatenate([rows[lo:hi] - b * mb, np.full(pad, mb - 1)])
            c = np.concatenate([cols[lo:hi], np.full(pad, n - 1)])
            v = np.concatenate([vals[lo:hi], np.zeros(pad, vals.dtype)])
            out.append(
                ops._sparse_from_sorted(r, c, v, (mb, n), dtype=vals.dtype, idx=idx, kernel=kernel)
            )
        return out

    local = blocks(op.kernel)
    stacked = _stack_blocks(local)
    if stacked is None:
        # per-block ELL tables differ in shape (slot widths, tail lengths): drop them and let
        # "auto" pick the layout-free kernel for the backend and block width
        local = [dataclasses.replace(b, kernel="auto", layout=None, tlayout=None) for b in local]
        stacked = _stack_blocks(local)
    return stacked


def _local_rows(op: LinearOperator, p: int, mb: int) -> LinearOperator | None:
    """Stack the row blocks of ``op`` on a leading device axis (host arrays; None: unsupported)."""
    if isinstance(op, DenseOperator):
        return dataclasses.replace(op, array=_split_rows(_host(op.array, "array"), p, mb))
    if isinstance(op, SparseOperator):
        return _local_sparse(op, p, mb)
    if isinstance(op, KernelOperator):
        block = min(op.block_rows, 1 << max(0, (mb - 1).bit_length()))
        return KernelOperator(
            x=_split_rows(_host(op.x, "x"), p, mb),
            y=_shared(op.y, p, "y"),
            kernel=_shared(op.kernel, p, "kernel"),
            block_rows=int(block),
        )
    if isinstance(op, TransposedOperator):
        t = _transpose_leaf(op.op)
        return None if t is None or isinstance(t, DiagonalOperator) else _local_rows(t, p, mb)
    if isinstance(op, ProductOperator):
        # diag(l) @ B @ diag(r), B row-shardable: the row block is diag(l_b) @ B_b @ diag(r), so
        # one sharded operator does it (a context operator, or each term of a sum of them, costs
        # one gather / one reduce-scatter per product). Other products are sharded factor-wise.
        core = [i for i, o in enumerate(op.ops) if not isinstance(o, DiagonalOperator)]
        if len(core) != 1:
            return None
        i = core[0]
        mid = _local_rows(op.ops[i], p, mb)
        if mid is None:
            return None
        left = [DiagonalOperator(d=_split_rows(_host(o.d, "d"), p, mb)) for o in op.ops[:i]]
        right = [DiagonalOperator(d=_shared(o.d, p, "d")) for o in op.ops[i + 1 :]]
        return ProductOperator(ops=tuple(left + [mid] + right))
    if isinstance(op, (SumOperator, HStackOperator)):
        parts = [_local_rows(o, p, mb) for o in op.ops]
        if any(q is None for q in parts):
            return None
        if isinstance(op, HStackOperator):
            return HStackOperator(ops=tuple(parts))
        return SumOperator(ops=tuple(parts), weights=_shared(op.weights, p, "weights"))
    return None


def _on_mesh(local_host: Any, mesh: Mesh, axis: Any) -> Any:
    spec = _spec(axis)
    return jax.tree.map(lambda a: _place(a, mesh, spec), local_host)


def _replicated(a: Any, mesh: Mesh) -> Array:
    return _place(_host(a, "weights"), mesh, P())


# --------------------------------------------------------------------------------------------------
# Public constructors
# --------------------------------------------------------------------------------------------------
def shard_rows(op: Any, mesh: Mesh | None = None, *, axis: Any = "rows") -> LinearOperator:
    r"""Shard ``op`` by rows over the devices of ``mesh`` along ``axis``.

    The result is a :class:`~jaxcontext.operators.LinearOperator` with the same shape and products
    as ``op`` (to float rounding), whose ``matmat`` / ``rmatmat`` run on all devices and return
    blocks sharded by rows (``NamedSharding(mesh, P(axis))``). With ``p`` devices, the row block
    ``A_b`` (``mb = ceil(m / p)`` rows) lives on device ``b``:
    ``A X = [A_0 X; ...; A_{p-1} X]`` and ``A^T Y = sum_b A_b^T Y_b``.

    Supported: :class:`~jaxcontext.operators.DenseOperator`,
    :class:`~jaxcontext.operators.SparseOperator`, :class:`~jaxcontext.operators.KernelOperator`
    (row points split, column points replicated), their transposes, products of one of these with
    diagonals (``diag(l) @ B @ diag(r)``, the context operators), and weighted sums / column
    stacks of these (one sharded operator); :class:`~jaxcontext.operators.DiagonalOperator`
    (block-diagonal, communication-free); products, and other sums / stacks / transposes, by
    sharding every part. Arrays and scipy matrices are converted with ``as_operator`` first.

    Call it outside ``jit``, once: it reads the operator on the host and places each device's block
    (in a multi-process run every process passes the same operator and places only its own
    devices' blocks).

    Args:
        op: the operator (or an array / scipy sparse matrix).
        mesh: a device mesh; default :func:`row_mesh` (1-D over all devices of all processes).
        axis: the mesh axis (or tuple of axes) to shard the rows over.

    Returns:
        A :class:`RowShardedOperator`, or for compositions the same composition of sharded parts.

    Raises:
        TypeError: an operator type that cannot be sharded (e.g. a user subclass), or traced input.
        ValueError: ``axis`` is not an axis of ``mesh``.

    Example:
        >>> import numpy as np, scipy.sparse as sp
        >>> from jaxcontext import operators as ops
        >>> S = ops.sparse_from_scipy(sp.random(10, 6, density=0.3, random_state=0))
        >>> Ss = shard_rows(ops.diag(np.ones(10)) @ S)
        >>> bool(np.allclose(Ss.rmatmat(np.ones((10, 2))), S.rmatmat(np.ones((10, 2))), atol=1e-6))
        True
    """
    if mesh is None:
        if not isinstance(axis, str):
            raise ValueError(f"axis: pass a mesh to shard over several axes, got axis={axis!r}")
        mesh = row_mesh(axis=axis)
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a jax.sharding.Mesh, got {type(mesh).__name__}")
    p = _num_shards(mesh, axis)
    op = ops.as_operator(op)

    if isinstance(op, RowShardedOperator):
        if op.mesh != mesh or _axis_tuple(op.axis) != _axis_tuple(axis):
            raise ValueError(
                "shard_rows: op is already sharded over a different mesh or axis "
                f"({op.mesh.shape}, axis={op.axis!r}); shard the unsharded operator instead"
            )
        return op
    if isinstance(op, TransposedOperator) and isinstance(op.op, DiagonalOperator):
        op = op.op
    if isinstance(op, DiagonalOperator):
        m = op.shape[0]
        mb = -(-m // p)
        local = DiagonalOperator(d=_split_rows(_host(op.d, "d"), p, mb))
        return RowShardedOperator(
            local=_on_mesh(local, mesh, axis),
            shape_=op.shape,
            mesh=mesh,
            axis=axis,
            kind="blockdiag",
        )

    mb = -(-op.shape[0] // p)
    local = _local_rows(op, p, mb)
    if local is not None:
        return RowShardedOperator(
            local=_on_mesh(local, mesh, axis), shape_=op.shape, mesh=mesh, axis=axis, kind="rows"
        )

    def part(o):
        return shard_rows(o, mesh, axis=axis)

    if isinstance(op, ProductOperator):
        return ops.product(*(part(o) for o in op.ops))
    if isinstance(op, SumOperator):
        parts = tuple(part(o) for o in op.ops)
        return SumOperator(ops=parts, weights=_replicated(op.weights, mesh))
    if isinstance(op, HStackOperator):
        return HStackOperator(ops=tuple(part(o) for o in op.ops))
    if isinstance(op, TransposedOperator):
        return TransposedOperator(part(op.op))
    raise TypeError(
        f"shard_rows: cannot shard a {type(op).__name__}; supported: DenseOperator, "
        "SparseOperator, KernelOperator, DiagonalOperator and their products, weighted sums, "
        "column stacks and transposes"
    )


def shard_block(x: Any, mesh: Mesh | None = None, *, axis: Any = "rows") -> Array:
    """Place an ``(n,)`` or ``(n, k)`` host block on ``mesh``, sharded by rows over ``axis``.

    Works in multi-process runs (every process passes the same data and places its own shards).
    When ``n`` is not divisible by the number of shards the block is replicated instead (JAX
    arrays cannot be sharded unevenly); the products of a :class:`RowShardedOperator` accept either.

    Example:
        >>> import numpy as np
        >>> shard_block(np.ones((8, 2))).shape
        (8, 2)
    """
    if mesh is None:
        if not isinstance(axis, str):
            raise ValueError(f"axis: pass a mesh to shard over several axes, got axis={axis!r}")
        mesh = row_mesh(axis=axis)
    h = _host(x, "x")
    V.check_ndim(h, "x", (1, 2))
    V.check_nonempty(h, "x")
    p = _num_shards(mesh, axis)
    spec = _spec(axis) if h.shape[0] % p == 0 else P()
    return _place(h, mesh, spec)
