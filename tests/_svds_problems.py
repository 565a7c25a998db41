"""Small problems shared by the 1-device, 4-device and 2-process svds tests.

A block model ``Z = D^-1/2 W D^-1/2`` (symmetric, a cluster of block eigenvalues cut by ``d``) and a
kNN-like non-symmetric sparse operator, both built in numpy float64 from a seed, so that every
process builds the same arrays.
"""

import numpy as np
import scipy.sparse as sps

SVDS_METHODS = ("chebyshev", "lanczos", "krylov", "randomized")
SVDS_EXACT = ("chebyshev", "lanczos")  # the 2-process test runs these (compile time)
SVDS_D = 6


def sbm_matrix(n=480, blocks=8, deg_in=14.0, deg_out=4.0, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.arange(n) * blocks // n
    p = np.where(lab[:, None] == lab[None, :], deg_in / (n / blocks), deg_out / (n - n / blocks))
    w = np.triu(rng.random((n, n)) < p, 1).astype(np.float64)
    w = w + w.T
    deg = w.sum(1)
    assert deg.min() > 0
    dis = 1.0 / np.sqrt(deg)
    return sps.csr_matrix(dis[:, None] * w * dis[None, :])


def knn_like(m=400, n=360, k=8, seed=1):
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, n, size=(m, k))
    rows = np.repeat(np.arange(m), k)
    a = sps.csr_matrix((rng.random(m * k) + 0.5, (rows, cols.ravel())), shape=(m, n))
    a.sum_duplicates()
    return a


def problems():
    """``name -> (scipy float64 matrix, hermitian)``."""
    return {"sbm": (sbm_matrix(), True), "knn": (knn_like(), False)}


def reference(a, d, hermitian):
    """Top-``d`` singular values in float64 (dense LAPACK)."""
    a = a.toarray()
    if hermitian:
        return np.sort(np.abs(np.linalg.eigvalsh(a)))[::-1][:d]
    return np.linalg.svd(a, compute_uv=False)[:d]
