"""Gaussian noise (Mehler): :func:`gaussian_noise`, its spectrum and the Hermite functions."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from ._common import (
    AnalyticSpectrum,
    Problem,
    _check_jax_key,
    _check_points,
    _check_unit_open,
    _contexts,
    _float,
)
from ._kronecker import _conditional_operator, _kron_dense


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
    from .. import kernels

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
