"""Bit flips on the hypercube: :func:`hypercube`, its spectrum and the parity functions."""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import _validation as V
from ._common import (
    AnalyticSpectrum,
    Problem,
    _check_count,
    _check_points,
    _check_probability,
    _contexts,
    _float,
)
from ._kronecker import _conditional_operator


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
