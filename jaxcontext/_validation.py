"""Input checks shared by every public entry point.

Checks run on concrete (host) values before tracing; each message names the argument, what was given
and what is allowed (STYLE.md rule 7). Under ``jit`` the values are tracers and value checks are
skipped; shape checks still run because shapes are static.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values that can be read on the host (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def as_float_array(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Convert ``x`` to a floating numpy array and check its rank; integers become float32."""
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got an object array")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    check_ndim(arr, name, ndim)
    return arr


def check_ndim(arr: Any, name: str, ndim: int | tuple[int, ...] | None) -> None:
    """Raise ValueError when ``arr.ndim`` is not ``ndim`` (or one of them)."""
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        raise ValueError(
            f"{name}: expected an array with ndim in {allowed}, got shape {tuple(arr.shape)}"
        )


def check_nonempty(arr: Any, name: str) -> None:
    """Raise ValueError for arrays with a zero-length axis."""
    if any(s == 0 for s in np.shape(arr)):
        raise ValueError(
            f"{name}: empty input (shape {tuple(np.shape(arr))}); need at least one entry"
        )


def check_finite(arr: Any, name: str) -> None:
    """Raise ValueError when a concrete array holds NaN or Inf."""
    if not is_concrete(arr):
        return
    a = np.asarray(arr)
    if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name}: contains {bad} NaN or Inf value(s); all entries must be finite")


def check_nonnegative(arr: Any, name: str) -> None:
    """Raise ValueError when a concrete array has a negative entry (probabilities, weights)."""
    if not is_concrete(arr):
        return
    a = np.asarray(arr)
    if a.size and np.min(a) < 0:
        raise ValueError(
            f"{name}: has negative entries (min {float(np.min(a)):.3g}); weights and probabilities "
            "must be >= 0"
        )


def check_int_range(arr: Any, name: str, low: int, high: int) -> None:
    """Raise ValueError unless every entry of an integer array lies in ``[low, high)``."""
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.integer):
        if a.size and not np.all(np.mod(a, 1) == 0):
            raise ValueError(f"{name}: expected integer indices, got dtype {a.dtype}")
    if a.size and (a.min() < low or a.max() >= high):
        raise ValueError(
            f"{name}: indices must lie in [{low}, {high}), got range [{int(a.min())}, {int(a.max())}]"
        )


def check_positive_int(value: Any, name: str, *, upper: int | None = None) -> int:
    """Return ``value`` as an int, raising when it is not a positive integer (<= ``upper``)."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    v = int(value)
    if upper is not None and v > upper:
        raise ValueError(f"{name}: must be at most {upper}, got {v}")
    return v


def index_dtype(*sizes: int) -> np.dtype:
    """Smallest signed index dtype JAX can hold for arrays indexed up to ``max(sizes)``.

    Raises OverflowError when 64-bit indices are needed but ``jax_enable_x64`` is off (JAX would
    silently truncate them to int32).
    """
    biggest = max(int(s) for s in sizes) if sizes else 0
    if biggest < np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    if jax.config.jax_enable_x64:
        return np.dtype(np.int64)
    raise OverflowError(
        f"indices up to {biggest} need 64-bit integers; enable them with "
        "jax.config.update('jax_enable_x64', True) or split the problem"
    )
