"""Smoke check of the exact path on whatever device JAX sees (first stage of gpu_session.sh).

One symmetric sparse matrix (4000 nodes, ~160k entries: large enough for ``prepare("auto")`` to
measure the kernels on a GPU): the product against scipy's float64 one, then ``svds`` with
``auto`` and ``lanczos`` against dense float64 ``eigvalsh``; first call (compile included) and
second call timed apart, and the kernel each product used. Last, the accuracy of the small dense
factorisations the solvers call (JAX's default SVD, the QR algorithm, the Gram route, ``eigh``)
on this device.
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # run from a checkout

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from jaxcontext import _spmm, linalg  # noqa: E402
from jaxcontext import operators as ops  # noqa: E402

print("backend", jax.default_backend(), jax.devices(), "jax", jax.__version__)
rng = np.random.default_rng(0)
n, nnz = 4000, 80_000
r, c = rng.integers(0, n, nnz), rng.integers(0, n, nnz)
a = sp.coo_matrix((rng.uniform(0.5, 1.5, nnz).astype(np.float32), (r, c)), shape=(n, n)).tocsr()
a = (a + a.T).tocsr()
a.sum_duplicates()
op = ops.sparse(a)
x = jnp.asarray(rng.standard_normal((n, 32)).astype(np.float32))
y = np.asarray(op @ x)
ref = a.astype(np.float64) @ np.asarray(x, np.float64)
print(
    f"nnz {a.nnz}: product rel.err {np.abs(y - ref).max() / np.abs(ref).max():.2e}; default "
    f"kernel {_spmm.default_kernel(num_cols=32)}; measured {_spmm._MEASURED}"
)
s_ref = np.sort(np.abs(np.linalg.eigvalsh(a.toarray().astype(np.float64))))[::-1][:16]
for method in ("auto", "lanczos"):
    t0 = time.perf_counter()
    res = jax.block_until_ready(linalg.svds(op, 16, tol=1e-4, hermitian=True, method=method))
    t1 = time.perf_counter()
    res = jax.block_until_ready(linalg.svds(op, 16, tol=1e-4, hermitian=True, method=method))
    t2 = time.perf_counter()
    err = float(np.max(np.abs(np.asarray(res.s, np.float64) - s_ref) / s_ref))
    print(
        f"{method}: first call {t1 - t0:.2f} s, second {t2 - t1:.4f} s, max rel.err {err:.2e}, "
        f"max residual {float(np.max(np.asarray(res.residuals))):.2e}, dtype {res.s.dtype}"
    )

# The small dense factorisations the solvers use, on this device (session 13: JAX's default SVD
# on an H200, cuSOLVER's Jacobi, was 100x less accurate than LAPACK): residuals and
# orthogonality relative to |M| on a 176 x 176 matrix with known singular values.
from jaxcontext.linalg._common import _svd_lapack, _svd_qr, svd_gram  # noqa: E402

k = 176
s_true = np.geomspace(1.0, 1e-2, k)
P = np.linalg.qr(rng.standard_normal((k, k)))[0]
Q = np.linalg.qr(rng.standard_normal((k, k)))[0]
M = (P * s_true) @ Q.T
for name, fn in (("jnp.linalg.svd", _svd_lapack), ("QR algorithm", _svd_qr), ("Gram", svd_gram)):
    X, sv, Y = (np.asarray(v, np.float64) for v in fn(jnp.asarray(M, jnp.float32)))
    r1 = np.linalg.norm(M @ Y - X * sv, axis=0).max()
    r2 = np.linalg.norm(M.T @ X - Y * sv, axis=0).max()
    print(
        f"small SVD {name}: |My - sx| {r1:.1e} |M'x - sy| {r2:.1e} |X'X - I| "
        f"{np.abs(X.T @ X - np.eye(k)).max():.1e} values {np.abs(sv - s_true).max():.1e}"
    )
lam, W = (np.asarray(v, np.float64) for v in jnp.linalg.eigh(jnp.asarray(M + M.T, jnp.float32)))
print(
    f"eigh: |Sw - lw| {np.linalg.norm((M + M.T) @ W - W * lam, axis=0).max():.1e} "
    f"|W'W - I| {np.abs(W.T @ W - np.eye(k)).max():.1e}"
)
