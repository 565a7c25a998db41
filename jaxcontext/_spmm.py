"""Sparse-times-dense block product kernels (internal).

``spmm(rows, cols, vals, indptr, x, num_rows, kernel=...)`` returns ``A @ x`` for the matrix with
entries ``A[rows[e], cols[e]] = vals[e]``, entries sorted by row, ``indptr`` its CSR row pointer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def spmm_segment(rows, cols, vals, indptr, x, num_rows):
    """Gather the needed rows of ``x``, scale, and sum each row's run with a sorted segment sum."""
    contrib = vals[:, None].astype(x.dtype) * x[cols]
    return jax.ops.segment_sum(contrib, rows, num_segments=num_rows, indices_are_sorted=True)


_KERNELS = {"segment": spmm_segment}


def default_kernel() -> str:
    """The kernel measured fastest on the default backend."""
    return "segment"


def spmm(rows, cols, vals, indptr, x, num_rows, *, kernel="auto"):
    """Dispatch to the named kernel (``"auto"``: :func:`default_kernel`)."""
    name = default_kernel() if kernel == "auto" else kernel
    try:
        fn = _KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown sparse kernel {name!r}; available: {sorted(_KERNELS)}") from None
    return fn(rows, cols, vals, indptr, x, num_rows)
