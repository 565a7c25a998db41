"""Balanced classes with the label context: :func:`balanced_labels`."""

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
    _numpy_rng,
)


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
