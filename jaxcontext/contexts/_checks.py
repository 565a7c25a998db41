"""Validation and conversion of the builders' inputs (the dtype policy of the package docstring)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from .. import operators as ops

Array = jax.Array


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


def _index_array(a: np.ndarray, *sizes: int) -> Array:
    return jnp.asarray(np.asarray(a).astype(V.index_dtype(*sizes)))


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


def _check_knn(x: Any, k: Any) -> tuple[Array, int]:
    xs = _check_points(x)
    m = xs.shape[0]
    k = V.check_positive_int(k, "k")
    if k >= m:
        raise ValueError(f"k: must be smaller than the number of samples m={m}, got k={k}")
    return xs, k
