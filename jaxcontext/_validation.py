"""Input checks shared by every public entry point.

Checks run on concrete (host) values before tracing; each message names the argument, what was given
and what is allowed (STYLE.md rule 7). Under ``jit`` the values are tracers and value checks are
skipped; shape checks still run because shapes are static.

Dtype policy (shared by every builder; :func:`float_dtype`): a floating input keeps its dtype where
JAX can hold it -- float64 stays float64 while ``jax_enable_x64`` is on (globally or inside
``jax.enable_x64(True)``), float32 stays float32 always, and with x64 off float64 becomes float32,
as ``jnp.asarray`` does. Integer and boolean inputs get JAX's default float dtype
(:func:`default_float_dtype`: float32, or float64 with x64 on). Complex inputs are refused with a
TypeError naming the argument (:func:`check_real`): a context, kernel or operator built from them
would silently drop the imaginary part.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values that can be read on the host (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


def default_float_dtype() -> np.dtype:
    """JAX's default float dtype under the current x64 setting (float32, or float64 with x64 on)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(float))


def float_dtype(*dtypes: Any, min_single: bool = False) -> np.dtype:
    """The float dtype the policy gives inputs of ``dtypes`` (the module docstring's rule).

    The result type of the floating ones, canonicalised as JAX holds it (float64 becomes float32
    while x64 is off); :func:`default_float_dtype` when none is floating (integers, booleans, or
    no argument). With ``min_single`` half-precision types (float16, bfloat16) are promoted to
    float32 (contexts normalise rows and take square roots of marginals: 11 bits would not do).
    Complex dtypes raise TypeError (use :func:`check_real` for a message naming the argument).
    """
    floats = []
    for d in dtypes:
        dt = np.dtype(d)
        if jnp.issubdtype(dt, jnp.complexfloating):
            raise TypeError(f"complex dtype {dt} is not supported; pass real arrays")
        if jnp.issubdtype(dt, jnp.floating):
            floats.append(jax.dtypes.canonicalize_dtype(dt))
    if not floats:
        return default_float_dtype()
    dt = np.dtype(jnp.result_type(*floats))
    if min_single and dt.itemsize < 4:
        dt = np.dtype(np.float32)
    return dt


def check_real(arr: Any, name: str) -> None:
    """Raise TypeError for complex, object or non-numeric input (by dtype: works on tracers).

    Numpy would otherwise cast complex values to real with only a ComplexWarning, silently
    dropping the imaginary part.
    """
    dt = getattr(arr, "dtype", None)
    if dt is None:
        return
    dt = np.dtype(dt)
    if dt.kind == "O":
        raise TypeError(f"{name}: expected a numeric array, got an object array")
    if jnp.issubdtype(dt, jnp.complexfloating):
        raise TypeError(
            f"{name}: complex input (dtype {dt.name}) is not supported; the imaginary part would "
            "be dropped. Pass real values (the real part, or the real and imaginary parts as "
            "separate features)"
        )
    if not (jnp.issubdtype(dt, jnp.number) or dt == np.bool_):
        raise TypeError(f"{name}: expected a numeric array, got dtype {dt}")


def as_real_array(x: Any, name: str, dtype: Any = None) -> np.ndarray:
    """``np.asarray(x)``, refusing complex, object and non-numeric input; cast to ``dtype``."""
    arr = np.asarray(x)
    check_real(arr, name)
    return arr if dtype is None else arr.astype(dtype)


def as_float_array(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Convert ``x`` to a real floating numpy array and check its rank.

    Floating input keeps its dtype (the caller decides with :func:`float_dtype` what JAX holds);
    integers and booleans become :func:`default_float_dtype`; complex, object and non-numeric
    input raise TypeError naming ``name``.
    """
    arr = as_real_array(x, name)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(default_float_dtype())
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
            f"{name}: indices must lie in [{low}, {high}), got range "
            f"[{int(a.min())}, {int(a.max())}]"
        )


def check_positive_int(value: Any, name: str, *, upper: int | None = None) -> int:
    """Return ``value`` as an int, raising when it is not a positive integer (<= ``upper``)."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    v = int(value)
    if upper is not None and v > upper:
        raise ValueError(f"{name}: must be at most {upper}, got {v}")
    return v


def check_positive_float(value: Any, name: str) -> float:
    """``value`` as a positive finite float, or a ValueError naming ``name``."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not (np.isfinite(f) and f > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return f


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
