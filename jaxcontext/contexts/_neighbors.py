"""Host nearest-neighbour search (scikit-learn) for the kNN contexts and their row model."""

from __future__ import annotations

import numpy as np


def _knn_indices(x: np.ndarray, k: int, include_self: bool, metric: str,
                 search: tuple = ()) -> np.ndarray:
    """``(m, k)`` neighbours of the training points, self excluded or included *by index*.

    Without ``include_self`` sklearn's ``kneighbors(None)`` drops each sample from its own list by
    index (a duplicate of ``x_i`` at distance 0 is a neighbour, ``x_i`` itself is not); with it,
    ``x_i`` is the first entry and its ``k - 1`` nearest other samples follow, so a float32
    self-distance of ~1e-7 or more than ``k`` duplicates cannot push ``x_i`` out of its own list.
    """
    try:
        from sklearn.neighbors import NearestNeighbors
    except ImportError as e:  # pragma: no cover
        raise ImportError("knn contexts need scikit-learn: pip install 'jaxcontext[ref]'") from e
    m = x.shape[0]
    if include_self:
        own = np.arange(m)[:, None]
        if k == 1:
            return own
        nn = NearestNeighbors(n_neighbors=k - 1, metric=metric, **dict(search)).fit(x)
        return np.concatenate([own, nn.kneighbors(None, n_neighbors=k - 1,
                                                  return_distance=False)], axis=1)
    nn = NearestNeighbors(n_neighbors=k, metric=metric, **dict(search)).fit(x)
    return nn.kneighbors(None, n_neighbors=k, return_distance=False)


def _knn_query(xfit, xq, k, metric, search=()) -> np.ndarray:
    """Find the ``k`` nearest training points of new points (none of them a training point)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(metric=metric, **dict(search)).fit(xfit)
    return nn.kneighbors(xq, n_neighbors=k, return_distance=False)


def _training_matches(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """For each query row of ``z``, the index of a training row of ``x`` equal to it, else -1.

    Rows are compared bitwise in ``x``'s dtype, after adding ``+0.0`` (so ``-0.0`` equals
    ``0.0``). Duplicated training values are matched in order: the ``r``-th query row holding a
    value gets the ``r``-th training row holding it (index order), cycling when the query repeats
    the value more often; so ``z = x`` maps every row to itself, duplicates included.
    """
    b = z.shape[0]
    if x.shape[1] == 0 or b == 0:
        return np.full(b, -1, np.int64)
    zero = x.dtype.type(0)
    void = np.dtype((np.void, x.dtype.itemsize * x.shape[1]))
    xv = np.ascontiguousarray(x + zero).view(void).ravel()
    zv = np.ascontiguousarray(z.astype(x.dtype) + zero).view(void).ravel()
    order = np.argsort(xv, kind="stable")  # equal values: ascending index
    xsorted = xv[order]
    lo = np.searchsorted(xsorted, zv, side="left")
    count = np.searchsorted(xsorted, zv, side="right") - lo
    zo = np.argsort(zv, kind="stable")  # rank of each query among equal queries
    zs = zv[zo]
    first = np.ones(b, bool)
    first[1:] = zs[1:] != zs[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(b), 0))
    rank = np.empty(b, np.int64)
    rank[zo] = np.arange(b) - start
    out = np.full(b, -1, np.int64)
    hit = count > 0
    out[hit] = order[lo[hit] + rank[hit] % count[hit]]
    return out


def _search_settings(algorithm: str, n_jobs: int | None) -> tuple:
    return (("algorithm", algorithm), ("n_jobs", n_jobs))
