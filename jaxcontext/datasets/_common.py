"""Shared pieces: the result types, :class:`DatasetWarning`, checks and preparation helpers."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from .. import _validation as V

HIGHEST = jax.lax.Precision.HIGHEST
_float = V.default_float_dtype  # JAX's default float dtype, read at call time (x64 may change)


class DatasetWarning(UserWarning):
    """Warnings about data preparation (constant columns left at zero by standardisation)."""


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------
class AnalyticSpectrum(NamedTuple):
    """Exact singular values as levels with multiplicities.

    Attributes:
        values: ``(L,)`` float64 level values, descending (``values[0] = s_0 = 1``). Levels are
            the problem's natural groups (a total degree, a subset size, a frequency); two levels
            can share a value in corner cases (e.g. ``p = 1/2`` on the hypercube).
        multiplicities: ``(L,)`` int64 multiplicities (``0`` never occurs).
    """

    values: np.ndarray
    multiplicities: np.ndarray

    def expand(self) -> np.ndarray:
        """Return the singular values with each level repeated by its multiplicity."""
        return np.repeat(self.values, self.multiplicities)


class Problem(NamedTuple):
    r"""A problem with a known spectrum.

    Attributes:
        name: the problem's name.
        x: the samples (what an encoder sees): ``(m, D)`` in JAX's default float dtype (float32;
            float64 with x64 on), or ``(m,)`` node ids for :func:`sbm`.
        context: the finite-sample :class:`~jaxcontext.contexts.Context`. Its
            :meth:`~jaxcontext.contexts.Context.operator` has singular values estimating
            ``singular_values`` (eigenvalues estimating their squares when ``context.squared``).
        singular_values: exact (analytic) singular values, float64, sorted descending, including
            ``s_0 = 1``: the whole spectrum for finite problems, a truncation for
            :func:`gaussian_noise`, the top ``num_blocks`` population values for :func:`sbm`.
        singular_functions: ``f(points, n) -> (N, n)`` float64 values of the exact left singular
            functions ``mu_0 = 1, ..., mu_{n-1}`` (unit norm in ``L2(P_X)``), in the order of
            ``singular_values``; None where unknown. Inside a level of equal singular values only
            the span is determined (see :func:`analytic_projector`).
        info: parameters and extras: ``"spectrum"`` (:class:`AnalyticSpectrum`) and per problem
            e.g. ``"pair_sampler"``, ``"blocks"``, ``"y"``.
    """

    name: str
    x: Any
    context: Any
    singular_values: np.ndarray
    singular_functions: Callable[[Any, int], np.ndarray] | None
    info: dict


class Dataset(NamedTuple):
    """A data set: features, targets and their names.

    Attributes:
        name: the data set's name.
        x: ``(m, D)`` float features (standardised when asked): float32, or float64 for float64
            sources while x64 is on (module docstring).
        y: ``(m,)`` targets: int32 class ids ``0..C-1`` for classification, float values (the
            dtype rule of ``x``) for regression (``(m, t)`` for several targets); None when there
            is no target.
        feature_names: ``D`` column names.
        target_name: the target's name (None without a target).
        task: ``"classification"``, ``"regression"``, or None without a target.
        classes: for classification, the original class values / names of ids ``0..C-1``.
        info: provenance and preparation notes, or None: e.g. :func:`rdataset` records the rows
            read and dropped for missing values and the columns dropped or one-hot encoded,
            :func:`gaussian_mixture` the cluster means, :func:`subsample` the rows kept.
    """

    name: str
    x: np.ndarray
    y: np.ndarray | None
    feature_names: tuple
    target_name: str | None
    task: str | None
    classes: tuple | None = None
    info: dict | None = None


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------
def _contexts():
    # imported lazily: importing datasets never depends on contexts being importable
    from .. import contexts

    return contexts


def _numpy_rng(key: Any, name: str = "key") -> np.random.Generator:
    """Seed a numpy Generator deterministically from a JAX key (same key, same stream)."""
    if key is None:
        raise ValueError(f"{name}: a JAX random key is required, e.g. {name}=jax.random.key(0)")
    try:
        data = np.asarray(jax.random.key_data(key))
    except (TypeError, ValueError):
        raise ValueError(
            f"{name}: expected a JAX random key (jax.random.key or jax.random.PRNGKey), got "
            f"{type(key).__name__}"
        ) from None
    return np.random.default_rng(np.random.SeedSequence(data.astype(np.uint64).ravel().tolist()))


def _check_jax_key(key: Any, name: str = "key") -> Any:
    _numpy_rng(key, name)  # validates
    return key


def _check_unit_open(v: Any, name: str) -> float:
    """``v`` as a float in the open interval (-1, 1)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number in (-1, 1), got {v!r}") from None
    if not (np.isfinite(f) and -1.0 < f < 1.0):
        raise ValueError(f"{name}: must lie in the open interval (-1, 1), got {v!r}")
    return f


def _check_probability(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a probability in [0, 1], got {v!r}") from None
    if not (np.isfinite(f) and 0.0 <= f <= 1.0):
        raise ValueError(f"{name}: must be a probability in [0, 1], got {v!r}")
    return f


def _check_points(points: Any, dim: int, name: str = "points") -> np.ndarray:
    """``(N, dim)`` float64 points (a single ``(dim,)`` point is promoted)."""
    a = np.asarray(points)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    V.check_real(a, name)
    a = a.astype(np.float64)
    if a.ndim == 1 and a.shape[0] == dim:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != dim:
        raise ValueError(f"{name}: expected shape (N, {dim}), got {a.shape}")
    V.check_finite(a, name)
    return a


def _check_count(n: Any, total: int | None, name: str = "n") -> int:
    n = V.check_positive_int(n, name)
    if total is not None and n > total:
        raise ValueError(f"{name}: this problem has {total} singular functions, got {name}={n}")
    return n


def _levels(values: np.ndarray, rtol: float = 1e-10) -> AnalyticSpectrum:
    """Group a descending array into levels of (numerically) equal values."""
    vals, mults = [], []
    for v in values:
        if vals and abs(v - vals[-1]) <= rtol * max(1.0, abs(vals[-1])):
            mults[-1] += 1
        else:
            vals.append(float(v))
            mults.append(1)
    return AnalyticSpectrum(np.asarray(vals, np.float64), np.asarray(mults, np.int64))


def _standardize(x: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Zero mean, unit variance columns (float64); constant columns become 0 with a warning."""
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    scale = np.maximum(np.abs(mu), 1.0)
    const = sd <= 1e3 * np.finfo(np.float64).eps * scale
    if const.any():
        bad = [names[i] for i in np.flatnonzero(const)[:5]]
        warnings.warn(
            f"standardize: {int(const.sum())} constant column(s) set to 0 (first: {bad})",
            DatasetWarning,
            stacklevel=3,
        )
    return np.where(const, 0.0, (x - mu) / np.where(const, 1.0, sd))


def _encode_classes(y: np.ndarray, name: str) -> tuple[np.ndarray, tuple]:
    classes, inv = np.unique(y, return_inverse=True)
    if classes.size > 2**31 - 1:  # pragma: no cover
        raise ValueError(f"{name}: too many classes")
    return inv.ravel().astype(np.int32), tuple(c.item() if hasattr(c, "item") else c
                                               for c in classes)
