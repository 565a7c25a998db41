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


def sbm_bulk_matrix(n=5000, blocks=20, deg_in=20.0, deg_out=5.0, seed=2):
    """A block model whose top ``blocks`` eigenvalues sit above a dense bulk (scipy CSR, float64).

    ``Z = D^-1/2 W D^-1/2`` of an undirected graph with ``blocks`` equal blocks, expected in-block
    degree ``deg_in`` and out-of-block degree ``deg_out``, edges sampled pair by pair (sparse: no
    dense ``n x n`` draw). Any ``d > blocks`` cuts into the bulk, where the spectrum has no gap
    (the structure of issue 8 item 9: 100k nodes, 50 blocks, d = 64).
    """
    rng = np.random.default_rng(seed)
    size = n // blocks
    n = size * blocks
    lab = np.arange(n) // size
    pairs_in = blocks * size * (size - 1) // 2
    m_in = rng.binomial(pairs_in, deg_in / (size - 1))
    b = rng.integers(0, blocks, 2 * m_in)
    i = b * size + rng.integers(0, size, 2 * m_in)
    j = b * size + rng.integers(0, size, 2 * m_in)
    m_out = rng.binomial(n * (n - size) // 2, deg_out / (n - size))
    i2 = rng.integers(0, n, 2 * m_out)
    j2 = rng.integers(0, n, 2 * m_out)
    keep = lab[i2] != lab[j2]
    r = np.r_[i[i != j][:m_in], i2[keep][:m_out]]
    c = np.r_[j[i != j][:m_in], j2[keep][:m_out]]
    w = sps.coo_matrix((np.ones(r.size), (r, c)), shape=(n, n)).tocsr()
    w = w + w.T
    w.data[:] = 1.0
    deg = np.asarray(w.sum(1)).ravel()
    assert deg.min() > 0
    dis = sps.diags(1.0 / np.sqrt(deg))
    return sps.csr_matrix(dis @ w @ dis)


def knn_context_matrix(m=3000, dim=8, k=10, seed=3):
    """The kNN context operator ``diag(sqrt w) P diag(p)^-1/2`` of Gaussian points (scipy CSR).

    ``P[i, j] = 1/k`` on the ``k`` nearest neighbours of ``x_i`` (itself excluded), ``w = 1/m``,
    ``p = P^T w``. Not symmetric; its singular values decay smoothly (no gap at a cut).
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, dim))
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    np.fill_diagonal(d2, np.inf)
    idx = np.argpartition(d2, k, axis=1)[:, :k]
    p = np.bincount(idx.ravel(), minlength=m) / (m * k)
    q = np.where(p > 0, 1.0 / np.sqrt(np.where(p > 0, p, 1.0)), 0.0)
    rows = np.repeat(np.arange(m), k)
    vals = q[idx.ravel()] / (k * np.sqrt(m))
    a = sps.csr_matrix((vals, (rows, idx.ravel())), shape=(m, m))
    a.sum_duplicates()
    return a


def reference_sparse(a, d, hermitian):
    """Top-``d`` singular values in float64 by ARPACK at ``tol=1e-13`` (for matrices too big for
    dense LAPACK in a test)."""
    import scipy.sparse.linalg as sla

    v0 = np.ones(a.shape[1]) / np.sqrt(a.shape[1])
    if hermitian:
        w = sla.eigsh(a, k=d + 8, which="LM", tol=1e-13, v0=v0, return_eigenvectors=False)
        return np.sort(np.abs(w))[::-1][:d]
    s = sla.svds(a, k=d + 8, tol=1e-13, v0=v0, return_singular_vectors=False)
    return np.sort(s)[::-1][:d]
