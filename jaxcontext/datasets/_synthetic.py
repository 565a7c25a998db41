"""Generated clusters and row sampling: :func:`gaussian_mixture` and :func:`subsample`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validation as V
from ._common import Dataset, _float, _numpy_rng


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
