r"""Sparse-times-dense block product kernels (internal), chosen per backend by measurement.

``spmm(rows, cols, vals, indptr, x, num_rows, kernel=..., layout=...)`` returns ``A @ x`` for the
``(num_rows, x.shape[0])`` matrix with entries ``A[rows[e], cols[e]] = vals[e]``, the entries sorted
by row and ``indptr`` their CSR row pointer (``rows[indptr[i]:indptr[i + 1]] == i``):

.. math::  (A x)_{i,:} = \sum_{e:\ \mathrm{rows}[e] = i} \mathrm{vals}[e]\, x_{\mathrm{cols}[e],:}.

Kernels (exact float32/float64 arithmetic; all work under ``jit``, ``vmap`` and ``grad``):

``"segment"``
    Gather ``x[cols]``, scale by ``vals``, add each row's run with a sorted ``segment_sum``. Pure
    XLA, runs everywhere. On CPU XLA does not fuse the gather into the scatter, so the
    ``(nnz, k)`` product is real memory: blocks go in column chunks of ``SEGMENT_CHUNK_COLS``.
``"bcsr"``
    ``jax.experimental.sparse.BCSR @ x``. On CPU this lowers to jaxlib's
    ``cpu_csr_sparse_dense_ffi`` custom call (Eigen's row-major sparse x dense product, split over
    XLA's intra-op thread pool; blocks are zero-padded to a multiple of 8 columns, the width it
    vectorises). On GPU it is cuSPARSE only when ``jax_bcoo_cusparse_lowering`` is set, otherwise
    JAX's gather/scatter; under ``vmap`` over ``x`` JAX also falls back to gather/scatter.
``"ell"``
    Padded ELLPACK plus a CSR tail: the first ``w`` entries of every row sit in a ``(m, w)`` slot
    table and ``A x = sum_j vals_ell[:, j] * x[cols_ell[:, j]]`` is an unrolled sum that XLA fuses
    into one loop with no intermediate; entries beyond slot ``w`` (hub rows) go through ``"bcsr"``
    on CPU and ``"segment"`` elsewhere. Needs an :class:`EllLayout` from :func:`prepare` (pattern
    only, so rescaled or traced ``vals`` keep it valid).

``"auto"`` uses ``"ell"`` when a layout was prepared (``prepare("auto", ...)`` builds one where
ELL was measured fastest: CPU) and the block has at least ``ELL_MIN_COLS`` columns, else
:func:`default_kernel`. The measurements are in ``benchmarks/sparse_kernels/`` (script:
``scripts/measure_sparse_kernels.py``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

KERNELS = ("segment", "bcsr", "ell")

#: Column chunk of the segment kernel (measured on CPU: 4-8 columns per scatter are fastest, 2x
#: faster than one 64-column scatter).
SEGMENT_CHUNK_COLS = 8

#: Upper bound on the ``(nnz, chunk)`` gather buffer of the segment kernel (bytes).
SEGMENT_CHUNK_BYTES = 2**30

#: The CPU BCSR custom call is only vectorised when the block width is a multiple of this;
#: narrower or ragged blocks are zero-padded (measured: 12 columns took 4x longer than 16).
BCSR_CPU_COL_MULTIPLE = 8

#: Narrowest block for which the layout-free default is ``"bcsr"`` on CPU (``"segment"`` below;
#: measured: 1-2 columns segment is as fast or faster, from 4 columns BCSR is 1.4-3x faster).
CPU_BCSR_MIN_COLS = 4

#: Backends on which ``"auto"`` prepares an ELL layout, and the narrowest block it is used for
#: (measured on CPU: ELL is the fastest kernel from 4-8 columns on, up to 2x faster than BCSR;
#: on 1-2 columns segment is as fast or faster).
ELL_AUTO_BACKENDS = ("cpu",)
ELL_MIN_COLS = 4

#: Cost of one tail entry relative to one ELL slot, per backend (sets the ELL width, see
#: :func:`ell_width`). CPU: measured with the BCSR tail; others: a guess for a segment-sum tail.
ELL_TAIL_COST = {"cpu": 2.0}
ELL_TAIL_COST_DEFAULT = 8.0

#: The ELL slot table holds at most this many slots per stored entry (caps the width on skewed
#: degree distributions, whose hubs go to the tail).
ELL_MAX_FILL = 3.0

#: Slots summed in one unrolled group of the ELL kernel (groups run in a ``lax.scan``, each reading
#: and writing the ``(m, k)`` accumulator once). One fused group of up to ``ELL_UNROLL_NARROW``
#: slots, except for blocks wider than ``ELL_WIDE_COLS`` columns whose accumulator fits in the
#: CPU's last-level cache: groups of ``ELL_UNROLL_WIDE`` there. Measured on a 2-core EPYC (32 MiB
#: L3, float32, interleaved medians, ms): kNN 50k x 128 (25.6 MB accumulator, 30 slots) groups of
#: 8 17.5 against one group 25.9; 100k-node block model x 128 (51 MB, 50 slots) 145 against 116;
#: 1M-node block model x 136 (544 MB, 20 slots) 1578 against 812, x 64 758 against 589 (re-reading
#: an accumulator that lives in memory costs more than the narrower loop saves). Up to 32 columns
#: one group was fastest everywhere.
ELL_UNROLL_NARROW = 64
ELL_UNROLL_WIDE = 8
ELL_WIDE_COLS = 32


@functools.cache
def last_level_cache_bytes() -> int:
    """Size of the CPU's last-level cache from sysfs (0 where it cannot be read)."""
    import os

    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in os.listdir(base):
            try:
                with open(f"{base}/{idx}/type") as f:
                    if f.read().strip() == "Instruction":
                        continue
                with open(f"{base}/{idx}/size") as f:
                    txt = f.read().strip().upper()
            except OSError:
                continue
            mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(txt[-1:], 1)
            best = max(best, int(txt.rstrip("KMG")) * mult)
    except (OSError, ValueError):
        return 0
    return best


class EllLayout(NamedTuple):
    """Precomputed ELL slot table for the ``"ell"`` kernel (a pytree of four int arrays).

    Only the sparsity pattern is stored, never values, so the table stays valid when ``vals`` are
    rescaled (``SparseOperator.scale``) or traced.

    Attributes:
        slots: ``(m, w)`` entry positions: row ``i``'s ``j``-th entry is entry ``slots[i, j]`` of
            the row-sorted arrays; empty slots hold ``nnz`` (out of range, read as value zero).
        cols: ``(m, w)`` column of each slot (``cols[slots]``; 0 in empty slots).
        tail: ``(t,)`` positions (ascending, so row-sorted) of the entries beyond slot ``w``.
        tail_ptr: ``(m + 1,)`` CSR row pointer of the tail entries.
    """

    slots: Array
    cols: Array
    tail: Array
    tail_ptr: Array


# --------------------------------------------------------------------------------------------------
# Layout preparation (host side, numpy)
# --------------------------------------------------------------------------------------------------
def ell_width(degrees: Any, *, tail_cost: float | None = None) -> int:
    r"""ELL width ``w`` minimising ``m w + tail_cost * sum_i max(deg_i - w, 0)``.

    Raising ``w`` by one adds ``m`` padded slots and removes one tail entry from every row with
    ``deg_i > w``, so the optimum is the smallest ``w`` with ``#{i: deg_i > w} <= m / tail_cost``:
    a degree quantile. Near-regular graphs get ``w = max degree`` (no tail); skewed ones keep the
    hubs in the tail. ``w`` is capped at ``ELL_MAX_FILL`` times the mean degree (memory).

    Args:
        degrees: entries per row.
        tail_cost: cost of a tail entry relative to a slot; default ``ELL_TAIL_COST`` for the
            default backend.

    Example:
        >>> ell_width(np.array([2, 2, 3, 50]), tail_cost=4.0)
        3
    """
    if tail_cost is None:
        tail_cost = ELL_TAIL_COST.get(jax.default_backend(), ELL_TAIL_COST_DEFAULT)
    tail_cost = float(tail_cost)
    deg = np.asarray(degrees, dtype=np.int64)
    m = deg.size
    if m == 0 or deg.max(initial=0) == 0:
        return 0
    counts = np.bincount(deg)
    # above[w] = #{i : deg_i > w}
    above = m - np.cumsum(counts)
    ok = np.nonzero(above * tail_cost <= m)[0]
    # memory guard: at most ELL_MAX_FILL slots per stored entry
    cap = max(1, int(ELL_MAX_FILL * deg.sum() // m))
    return int(min(ok[0], cap))


def prepare(kernel: str, rows: Any, cols: Any, vals: Any, indptr: Any, shape: Any) -> Any:
    """Precompute what ``kernel`` needs beyond the row-sorted arrays (host side, O(nnz + m w)).

    Returns an :class:`EllLayout` for ``"ell"``, and for ``"auto"`` on backends where ELL was
    measured fastest (``ELL_AUTO_BACKENDS``); ``None`` otherwise (``"segment"`` and ``"bcsr"``
    need nothing). Call it once when the operator is built, and once more for the transposed
    product with the column-sorted arrays. The layout depends on the sparsity pattern only, so it
    stays valid when ``vals`` are rescaled. Host memory and time are O(nnz + m w).

    Args:
        kernel: a name in :data:`KERNELS` or ``"auto"``.
        rows: row index of each entry, ascending.
        cols: column index of each entry.
        vals: entry values (not read: the layout depends on the pattern only).
        indptr: CSR row pointer of length ``shape[0] + 1``.
        shape: ``(m, n)`` of the matrix whose product is prepared.

    Example:
        >>> rows, cols, indptr = [0, 0, 2, 2], [1, 2, 0, 1], [0, 2, 2, 4]
        >>> lay = prepare("ell", rows, cols, None, indptr, (3, 3))
        >>> lay.slots.tolist(), lay.cols.tolist(), lay.tail.tolist()
        ([[0, 1], [4, 4], [2, 3]], [[1, 2], [0, 0], [0, 1]], [])
    """
    if kernel == "auto":
        backend = jax.default_backend()
        if backend not in ELL_AUTO_BACKENDS:
            if backend == "cpu" or not MEASURE_AUTO or len(np.asarray(rows)) < MEASURE_MIN_NNZ:
                return None
            # not measured here before: time the candidates on this matrix, on this device
            lay = prepare("ell", rows, cols, vals, indptr, shape)
            times = measure_kernels(rows, cols, indptr, shape, layout=lay)
            best = min(times, key=times.get)
            if best != "ell":
                _MEASURED[backend] = best
            return lay if best == "ell" else None
    elif resolve_kernel(kernel) != "ell":
        return None
    del vals
    r = np.asarray(rows)
    c = np.asarray(cols)
    ptr = np.asarray(indptr, dtype=np.int64)
    m, n = (int(s) for s in shape)
    nnz = r.size
    if ptr.shape != (m + 1,):
        raise ValueError(f"indptr: expected shape ({m + 1},) for {m} rows, got {ptr.shape}")
    if c.shape != r.shape:
        raise ValueError(f"cols has {c.size} entries, rows has {nnz}")
    deg = np.diff(ptr)
    if ptr[0] != 0 or ptr[-1] != nnz or np.any(deg < 0):
        raise ValueError(
            f"indptr must rise from 0 to nnz = {nnz}, got {int(ptr[0])} .. {int(ptr[-1])}"
        )
    if not np.array_equal(r, np.repeat(np.arange(m), deg)):
        raise ValueError("rows: entries must be sorted by row and agree with indptr")
    idx = np.int32 if max(nnz, m, n) < np.iinfo(np.int32).max else np.int64
    w = ell_width(deg)
    pos = np.arange(nnz, dtype=np.int64) - np.repeat(ptr[:-1], deg)
    head = pos < w
    flat = (r.astype(np.int64) * w + pos)[head]
    slots = np.full(m * w, nnz, dtype=idx)
    slots[flat] = np.flatnonzero(head)
    ell_cols = np.zeros(m * w, dtype=idx)
    ell_cols[flat] = c[head]
    slots, ell_cols = slots.reshape(m, w), ell_cols.reshape(m, w)
    tail = np.flatnonzero(~head).astype(idx)
    tail_ptr = np.zeros(m + 1, dtype=idx)
    np.cumsum(np.maximum(deg - w, 0), out=tail_ptr[1:])
    return EllLayout(
        slots=jnp.asarray(slots),
        cols=jnp.asarray(ell_cols),
        tail=jnp.asarray(tail),
        tail_ptr=jnp.asarray(tail_ptr),
    )


#: Backends other than CPU (GPU, TPU): ``prepare("auto", ...)`` measures every kernel on the
#: matrix itself, on the device, and keeps ELL's layout when ELL is fastest; otherwise the winner
#: between the layout-free kernels becomes :func:`default_kernel`'s choice for that backend. The
#: CPU's choices (``ELL_AUTO_BACKENDS``, ``CPU_BCSR_MIN_COLS``) were measured on a CPU and are
#: not carried over. Set to False to skip the measurement (then ``"segment"``).
MEASURE_AUTO = True
#: Matrices with fewer stored entries are not measured (a product is cheap whatever the kernel).
MEASURE_MIN_NNZ = 100_000
#: Block width and repeats of the measurement.
MEASURE_COLS = 32
MEASURE_REPEATS = 3
#: backend -> the layout-free kernel measured fastest there (last matrix measured).
_MEASURED: dict[str, str] = {}


@functools.cache
def _timed_kernel(name: str, num_rows: int):
    """One jitted product per kernel and row count, so repeated measurements reuse the compile."""
    return jax.jit(lambda r, c, v, p, x, lay: _KERNELS[name](r, c, v, p, x, num_rows, lay))


def measure_kernels(
    rows: Any,
    cols: Any,
    indptr: Any,
    shape: Any,
    *,
    layout: Any = None,
    num_cols: int = MEASURE_COLS,
    repeats: int = MEASURE_REPEATS,
    dtype: Any = np.float32,
    kernels: tuple[str, ...] = KERNELS,
) -> dict[str, float]:
    """Median seconds of one ``A @ X`` (``num_cols`` columns) per kernel, on the default device.

    Every kernel in ``kernels`` is compiled and run once untimed, then timed ``repeats`` times
    (each waited for), the kernels taking turns within each round so that a change of load hits
    all alike. ``"ell"`` is included when ``layout`` is an :class:`EllLayout`. Values are ones:
    the cost depends on the pattern only. Used by :func:`prepare` on backends whose kernel
    choice was never measured (see ``MEASURE_AUTO``) and by :func:`tune`.
    """
    import time

    m, n = (int(s) for s in shape)
    r = jnp.asarray(rows)
    c = jnp.asarray(cols)
    ptr = jnp.asarray(np.asarray(indptr).astype(np.asarray(cols).dtype))
    v = jnp.ones(r.shape, dtype)
    x = jnp.ones((n, num_cols), dtype)
    live: dict[str, tuple[Any, Any]] = {}
    for name in kernels:
        if name == "ell" and not isinstance(layout, EllLayout):
            continue
        f = _timed_kernel(name, m)
        lay = layout if name == "ell" else None
        try:
            jax.block_until_ready(f(r, c, v, ptr, x, lay))
        except Exception:  # a kernel the backend cannot run is not a candidate
            continue
        live[name] = (f, lay)
    if not live:
        raise RuntimeError("measure_kernels: no sparse product kernel ran on this backend")
    times: dict[str, list[float]] = {name: [] for name in live}
    for _ in range(repeats):
        for name, (f, lay) in live.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(r, c, v, ptr, x, lay))
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(ts)) for name, ts in times.items()}


#: CPU: solvers fix the product kernel of a large sparse operator by timing ``"ell"`` against
#: ``"bcsr"`` at their own block width (:func:`tune`). The winner depends on the pattern and the
#: width: measured on a quiet 2-core CPU, 8 columns, ms per column: 100k-node block models (25
#: and 50 entries per row, random column order) BCSR 0.67 / 1.14 against ELL 0.93 / 1.49; a
#: 50k-point kNN graph (30 per row) ELL 0.28 against BCSR 0.42. Smaller matrices keep ``"auto"``.
TUNE_MIN_NNZ = 1_000_000
TUNE_REPEATS = 3
#: (backend, pattern fingerprint, columns, dtype) -> (winner, {kernel: seconds}); the fingerprint
#: (shape, row pointer, column sample) also tells the two orientations of a matrix apart.
_TUNED: dict[tuple, tuple[str, dict[str, float]]] = {}


def _fingerprint(indptr: Any, cols: Any, shape: Any) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(np.asarray(indptr)).tobytes())
    c = np.asarray(cols)
    h.update(np.ascontiguousarray(c[:: max(1, c.size // 65536)]).tobytes())
    return h.hexdigest()


def tune(
    rows: Any,
    cols: Any,
    indptr: Any,
    shape: Any,
    layout: Any,
    num_cols: int,
    *,
    dtype: Any = np.float32,
) -> tuple[str, dict[str, float]]:
    """The faster of ``"ell"`` and ``"bcsr"`` for this pattern at ``num_cols`` columns.

    Returns ``(kernel, {kernel: seconds per product})``, measured on the default device by
    :func:`measure_kernels` (kernels taking turns, medians of ``TUNE_REPEATS``) and cached per
    pattern fingerprint (the row pointer and a sample of the column indices), width and dtype, so
    a matrix solved again is not re-measured. Without an ELL layout the answer is ``"auto"``.
    """
    if not isinstance(layout, EllLayout):
        return "auto", {}
    key = (
        jax.default_backend(),
        _fingerprint(indptr, cols, shape),
        int(num_cols),
        np.dtype(dtype).name,
    )
    if key not in _TUNED:
        times = measure_kernels(
            rows, cols, indptr, shape, layout=layout, num_cols=int(num_cols),
            repeats=TUNE_REPEATS, dtype=dtype, kernels=("ell", "bcsr"),
        )
        _TUNED[key] = (min(times, key=times.get), times)
    return _TUNED[key]


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------
def _segment_cols(rows, cols, vals, x, num_rows):
    contrib = vals[:, None] * x[cols]
    return jax.ops.segment_sum(contrib, rows, num_segments=num_rows, indices_are_sorted=True)


def _column_chunks(fn, x, chunk):
    """Apply ``fn`` to ``x`` in column chunks of width ``chunk`` (a ``lax.map``, zero-padded)."""
    n, k = x.shape
    if k <= chunk:
        return fn(x)
    nchunks = -(-k // chunk)
    xs = jnp.pad(x, ((0, 0), (0, nchunks * chunk - k))).reshape(n, nchunks, chunk)
    out = jax.lax.map(fn, xs.transpose(1, 0, 2))
    m = out.shape[1]
    return out.transpose(1, 0, 2).reshape(m, nchunks * chunk)[:, :k]


def spmm_segment(rows, cols, vals, indptr, x, num_rows, layout=None):
    """Gather ``x[cols]``, scale, and add each row's run with a sorted segment sum.

    Blocks wider than ``SEGMENT_CHUNK_COLS`` are processed in column chunks (a ``lax.map``): on
    CPU XLA's scatter-add is several times faster per column on 4-8 columns than on 64, and the
    ``(nnz, chunk)`` gather buffer stays small (it is also capped at ``SEGMENT_CHUNK_BYTES``).
    """
    del indptr, layout
    vals = vals.astype(x.dtype)
    nnz = vals.shape[0]
    chunk = max(1, min(SEGMENT_CHUNK_COLS, SEGMENT_CHUNK_BYTES // max(1, nnz * x.dtype.itemsize)))
    return _column_chunks(lambda xc: _segment_cols(rows, cols, vals, xc, num_rows), x, chunk)


def spmm_bcsr(rows, cols, vals, indptr, x, num_rows, layout=None):
    """``jax.experimental.sparse.BCSR((vals, cols, indptr)) @ x`` (Eigen custom call on CPU).

    On CPU the block is zero-padded to a multiple of ``BCSR_CPU_COL_MULTIPLE`` columns, the width
    at which the custom call vectorises.
    """
    from jax.experimental import sparse as jsparse

    del rows, layout
    k = x.shape[1]
    kp = k
    if jax.default_backend() == "cpu":
        kp = -(-k // BCSR_CPU_COL_MULTIPLE) * BCSR_CPU_COL_MULTIPLE
    xp = jnp.pad(x, ((0, 0), (0, kp - k))) if kp != k else x
    mat = jsparse.BCSR(
        (vals.astype(x.dtype), cols, indptr.astype(cols.dtype)), shape=(num_rows, x.shape[0])
    )
    out = mat @ xp
    return out[:, :k] if kp != k else out


def spmm_ell(rows, cols, vals, indptr, x, num_rows, layout=None):
    """Sum the padded ELL slots in fused loops, and the tail with BCSR/segment (needs a layout)."""
    del indptr
    if layout is None:
        raise ValueError(
            "kernel='ell' needs the slot table from jaxcontext._spmm.prepare('ell', ...); "
            "build the operator with kernel='ell' so it stores one"
        )
    slots, ell_cols, tail, tail_ptr = layout
    if slots.shape[0] != num_rows:
        raise ValueError(
            f"layout: slot table has {slots.shape[0]} rows, the product has {num_rows}; was it "
            "prepared for the other orientation?"
        )
    vals = vals.astype(x.dtype)
    w = slots.shape[1]
    out = jnp.zeros((num_rows, x.shape[1]), x.dtype)
    if w:
        v_ell = jnp.take(vals, slots, mode="fill", fill_value=0)
        out = _ell_sum(ell_cols, v_ell, x)
    if tail.shape[0]:
        out = out + _ell_tail(rows, cols, vals, tail, tail_ptr, x, num_rows)
    return out


def _ell_tail(rows, cols, vals, tail, tail_ptr, x, num_rows):
    """Product with the entries beyond the slot table: BCSR on CPU (measured), segment elsewhere."""
    if jax.default_backend() == "cpu":
        return spmm_bcsr(None, cols[tail], vals[tail], tail_ptr, x, num_rows)
    return spmm_segment(rows[tail], cols[tail], vals[tail], None, x, num_rows)


def _ell_group(acc, c, v, x):
    for j in range(c.shape[1]):
        acc = acc + v[:, j, None] * x[c[:, j]]
    return acc


def _ell_unroll(m: int, k: int, itemsize: int) -> int:
    """Slots per fused group for an ``(m, k)`` accumulator (see ``ELL_UNROLL_WIDE``).

    Wide blocks take narrow groups only where the accumulator is known to fit in the CPU's
    last-level cache (elsewhere, or with the cache size unknown, one group).
    """
    if k <= ELL_WIDE_COLS or jax.default_backend() != "cpu":
        return ELL_UNROLL_NARROW
    llc = last_level_cache_bytes()
    return ELL_UNROLL_WIDE if 0 < m * k * itemsize <= llc else ELL_UNROLL_NARROW


def _ell_sum(c_ell, v_ell, x):
    m, w = c_ell.shape
    u = _ell_unroll(m, x.shape[1], x.dtype.itemsize)
    acc = jnp.zeros((m, x.shape[1]), x.dtype)
    if w <= u:
        return _ell_group(acc, c_ell, v_ell, x)
    groups = -(-w // u)
    pad = groups * u - w
    cg = jnp.pad(c_ell, ((0, 0), (0, pad))).reshape(m, groups, u).transpose(1, 0, 2)
    vg = jnp.pad(v_ell, ((0, 0), (0, pad))).reshape(m, groups, u).transpose(1, 0, 2)

    def step(acc, cv):
        return _ell_group(acc, cv[0], cv[1], x), None

    return jax.lax.scan(step, acc, (cg, vg))[0]


_KERNELS = {"segment": spmm_segment, "bcsr": spmm_bcsr, "ell": spmm_ell}


def default_kernel(backend: str | None = None, num_cols: int | None = None) -> str:
    """Return the layout-free kernel measured fastest on ``backend`` for ``num_cols`` columns.

    ``backend`` defaults to ``jax.default_backend()``; ``num_cols=None`` means a solver block
    (8-128 columns). This is what ``"auto"`` runs when no ELL layout was prepared.

    * CPU (measured, ``benchmarks/sparse_kernels/README.md``): ``"bcsr"`` (jaxlib's Eigen CSR
      custom call, multithreaded) for ``num_cols >= CPU_BCSR_MIN_COLS``, ``"segment"`` for
      narrower blocks.
    * GPU and other backends: the kernel :func:`prepare` measured fastest on the device (when
      an operator with at least ``MEASURE_MIN_NNZ`` entries was built there, ``MEASURE_AUTO``),
      else ``"segment"``, a reasoned default: pure XLA (a fused gather, then a sorted
      scatter-add run with atomics), which is also what ``"bcsr"`` lowers to on GPU unless the
      global ``jax_bcoo_cusparse_lowering`` flag is set.

    Example:
        >>> default_kernel("cpu", 64), default_kernel("cpu", 1), default_kernel("gpu", 64)
        ('bcsr', 'segment', 'segment')
    """
    backend = jax.default_backend() if backend is None else backend
    if backend == "cpu":
        if num_cols is not None and num_cols < CPU_BCSR_MIN_COLS:
            return "segment"
        return "bcsr"
    return _MEASURED.get(backend, "segment")


def resolve_kernel(kernel: str, num_cols: int | None = None, layout: Any = None) -> str:
    """Return the kernel that :func:`spmm` runs for ``kernel`` on ``num_cols`` columns.

    ``"auto"`` becomes ``"ell"`` when ``layout`` is an :class:`EllLayout` and the block has at least
    ``ELL_MIN_COLS`` columns, else :func:`default_kernel`; other names are checked and returned.

    Example:
        >>> resolve_kernel("auto", 64, None) == default_kernel(num_cols=64)
        True
    """
    if kernel == "auto":
        if isinstance(layout, EllLayout) and (num_cols is None or num_cols >= ELL_MIN_COLS):
            return "ell"
        return default_kernel(num_cols=num_cols)
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be 'auto' or one of {KERNELS}, got {kernel!r}")
    return kernel


def spmm(rows, cols, vals, indptr, x, num_rows, *, kernel="auto", layout=None):
    """Return ``A @ x`` with the named kernel.

    ``"auto"`` runs ``"ell"`` when ``layout`` is an :class:`EllLayout` and ``x`` has at least
    ``ELL_MIN_COLS`` columns, else :func:`default_kernel` for the backend and block width.

    Args:
        rows: row index of each entry, ascending.
        cols: column index of each entry.
        vals: entry values.
        indptr: CSR row pointer, length ``num_rows + 1``.
        x: ``(n, k)`` block.
        num_rows: ``m``, rows of ``A`` (static).
        kernel: ``"auto"`` or a name in :data:`KERNELS`.
        layout: what :func:`prepare` returned for this kernel and orientation (required by
            ``"ell"``; optional for ``"auto"``).

    Example:
        >>> rows, cols = jnp.array([0, 0, 1]), jnp.array([0, 1, 1])
        >>> vals, indptr = jnp.array([1.0, 2.0, 3.0]), jnp.array([0, 2, 3])
        >>> spmm(rows, cols, vals, indptr, jnp.ones((2, 1)), 2, kernel="segment").ravel().tolist()
        [3.0, 3.0]
    """
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D (n, k) block, got shape {tuple(x.shape)}")
    name = resolve_kernel(kernel, x.shape[1], layout)
    return _KERNELS[name](rows, cols, vals, indptr, x, num_rows, layout)
