"""Helpers on known-spectrum problems: exact levels, singular vectors at the samples, projectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import AnalyticSpectrum, Problem

# projectors are m x m float64: refuse beyond this many samples
_MAX_PROJECTOR = 20000


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
