"""The cycle graph ``C_n``: :func:`cycle` and its spectrum."""

from __future__ import annotations

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
    _contexts,
    _float,
    _levels,
)


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
