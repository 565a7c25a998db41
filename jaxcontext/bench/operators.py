r"""The ``operators`` suite: block products of every operator kind, jaxcontext against its peers.

Every case multiplies one operator by a block of ``k`` columns, in the benchmark dtype, with
jaxcontext and with the established tool on the same inputs, and checks both against a float64
reference before timing:

============  ======================================  =============================================
case          jaxcontext                               baseline (``*``) and other peers
============  ======================================  =============================================
dense         ``ops.dense(A) @ X``                     numpy ``A @ X`` (BLAS)
sparse        ``ops.sparse_from_scipy(A) @ X``         scipy CSR ``A @ X``; ``A @ x`` k times
sparse-T      ``op.rmatmat(Y)`` (``A^T Y``)           scipy ``A.T @ Y`` (CSC product)
kernel-rbf    ``kernel_operator(x, RBF(g)) @ V``       numpy materialise ``K`` then ``K @ V``
composed      ``diag(d) @ A @ diag(d) @ X`` (lazy)     scipy ``d * (A @ (d * X))``
============  ======================================  =============================================

Sparse matrices are random symmetric graphs (``deg`` non-zeros per row on average, weights in
[0.5, 1.5]); ``sparse-T`` uses the random-walk matrix ``D^{-1} A`` (not symmetric) and ``composed``
the normalised ``D^{-1/2} A D^{-1/2}``, the shapes of the context operators in REFERENCE.md. The
kernel case has no scipy peer; its reference is checked on a sample of rows when ``m`` is large, and
its matrix-free peak memory is measured in a subprocess.

Sizes: ``tiny`` (tests, seconds), ``quick`` (default, about 1-2 minutes on a 2-core CPU) and
``full`` (the acceptance sizes: a 100k-node graph with about 5M non-zeros, a 100k-point kernel).

Example:
    >>> from jaxcontext.bench import operators
    >>> [c.name for c in operators.cases("tiny")][:2]
    ['dense/200x100/k8', 'sparse/n400/k1']
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ._harness import Case, Impl, rel_error

SUITE = "operators"

# Sizes per case kind. dense: (m, n, k); sparse: nodes, mean degree, widths; kernel: (m, D, k).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        dense=[(200, 100, 8)],
        graph_n=[400],
        deg=10,
        sparse_k=(1, 8),
        t_k=8,
        kernel=[(300, 4, 8)],
        composed_k=8,
        memory_sparse=False,
    ),
    "quick": dict(
        dense=[(2048, 2048, 64), (16384, 512, 64)],
        graph_n=[10_000],
        deg=50,
        sparse_k=(1, 16, 64),
        t_k=64,
        kernel=[(5000, 16, 64)],
        composed_k=64,
        memory_sparse=False,
    ),
    "full": dict(
        dense=[(8192, 8192, 64), (65536, 1024, 64)],
        graph_n=[100_000],
        deg=50,
        sparse_k=(1, 16, 64),
        t_k=64,
        kernel=[(10_000, 16, 64), (100_000, 16, 64)],
        composed_k=64,
        memory_sparse=True,
    ),
}

# Largest dense kernel matrix the numpy peer may materialise (bytes of the benchmark dtype).
MATERIALISE_BUDGET = 1 << 30
# Rows of the float64 kernel reference: all of them up to this many, else a random sample of it.
KERNEL_REF_ROWS = 2048


def _tol(dtype: np.dtype, factor: float) -> float:
    """Return the tolerance ``factor * eps`` of ``dtype``.

    Cases use ``8 sqrt(inner length)``: the rounding of a sum of that many products, with a wide
    margin (measured errors are 10-50x smaller). The kernel gets more: its entries also carry the
    rounding of ``exp`` and of the squared-distance expansion.
    """
    return float(factor * np.finfo(dtype).eps)


def _jax_mul(op, x):
    return op @ x


def _seed(seed: int, *parts: Any) -> np.random.Generator:
    """Return a generator per case: the same ``seed`` and case always give the same inputs."""
    import zlib

    return np.random.default_rng([seed, zlib.crc32(repr(parts).encode())])


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def random_graph(n: int, deg: int, rng: np.random.Generator):
    """Return a random symmetric weighted graph: float64 scipy CSR, about ``n * deg`` non-zeros.

    ``n * deg / 2`` uniform random pairs (self-loops dropped) with weights in [0.5, 1.5],
    symmetrised as ``W + W^T`` (duplicates summed). No locality: the worst case for caches.
    """
    import scipy.sparse as sp

    pairs = n * deg // 2
    i = rng.integers(0, n, pairs)
    j = rng.integers(0, n, pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    w = rng.uniform(0.5, 1.5, i.shape[0])
    upper = sp.coo_array((w, (i, j)), shape=(n, n))
    a = (upper + upper.T).tocsr()
    a.sum_duplicates()
    a.sort_indices()
    return a


class _Graph(NamedTuple):
    a64: Any  # scipy CSR float64 (the matrix benchmarked, before the cast)
    a: Any  # the same in the benchmark dtype
    x: np.ndarray  # (n, k) block in the benchmark dtype
    xt: np.ndarray  # x.T, contiguous, for the one-vector-at-a-time peer
    d: np.ndarray | None  # scaling vector (composed case), benchmark dtype


def _sparse_op(a64, dtype, kernel="auto"):
    from jaxcontext import operators as ops

    return ops.sparse_from_scipy(a64, dtype=dtype, kernel=kernel)


def _default_sparse_kernel(k: int | None = None) -> str | None:
    """Name of the product kernel ``kernel="auto"`` runs for ``k`` columns (recorded per case).

    On backends where ``auto`` prepares an ELL layout at construction, blocks of at least
    ``ELL_MIN_COLS`` columns run ``ell``; otherwise the layout-free default for the width.
    """
    import jax

    from jaxcontext import _spmm

    if jax.default_backend() in _spmm.ELL_AUTO_BACKENDS and (k or 64) >= _spmm.ELL_MIN_COLS:
        return "ell"
    return str(_spmm.default_kernel(num_cols=k))


def _sparse_kernel_variants(k: int) -> list[str]:
    """Sparse product kernels registered besides the default for ``k`` columns (one entry each)."""
    try:
        from jaxcontext import _spmm
        from jaxcontext.operators import SPARSE_KERNELS

        available = set(getattr(_spmm, "_KERNELS", {}))
    except Exception:
        return []
    default = _default_sparse_kernel(k)
    return [name for name in SPARSE_KERNELS if name in available and name != default]


# --------------------------------------------------------------------------------------------------
# Case builders
# --------------------------------------------------------------------------------------------------
def _dense_case(m: int, n: int, k: int, dtype: np.dtype, seed: int) -> Case:
    import jax.numpy as jnp

    from jaxcontext import operators as ops

    def build():
        rng = _seed(seed, "dense", m, n, k)
        a = rng.standard_normal((m, n)).astype(dtype)
        x = rng.standard_normal((n, k)).astype(dtype)
        return a, x

    def reference(data):
        a, x = data
        return a.astype(np.float64) @ x.astype(np.float64)

    impls = (
        Impl("jaxcontext", lambda d: (ops.dense(d[0]), jnp.asarray(d[1])), _jax_mul, jax=True),
        Impl("numpy A @ X", lambda d: d, np.matmul, baseline=True),
    )
    return Case(
        SUITE,
        f"dense/{m}x{n}/k{k}",
        dict(kind="dense", m=m, n=n, k=k),
        build,
        reference,
        impls,
        tol=_tol(dtype, 8 * np.sqrt(n)),
    )


def _graph_data(n, deg, k, dtype, seed, kind):
    rng = _seed(seed, "graph", n, deg)
    a64 = random_graph(n, deg, rng)
    d = None
    if kind == "transposed":  # random walk D^{-1} A: not symmetric, so A^T matters
        import scipy.sparse as sp

        a64 = sp.diags_array(1.0 / a64.sum(axis=1)) @ a64
        a64 = a64.tocsr()
    elif kind == "composed":
        d = (1.0 / np.sqrt(a64.sum(axis=1))).astype(dtype)
    xrng = _seed(seed, "block", n, k, kind)
    x = xrng.standard_normal((n, k)).astype(dtype)
    return _Graph(a64=a64, a=a64.astype(dtype), x=x, xt=np.ascontiguousarray(x.T), d=d)


def _one_at_a_time(a, xt):
    return np.stack([a @ v for v in xt], axis=1)


def _sparse_case(n, deg, k, dtype, seed, *, memory=False) -> Case:
    import jax.numpy as jnp

    def build():
        return _graph_data(n, deg, k, dtype, seed, "matmat")

    def reference(g):
        return g.a64 @ g.x.astype(np.float64)

    impls = [
        Impl(
            "jaxcontext", lambda g: (_sparse_op(g.a64, dtype), jnp.asarray(g.x)), _jax_mul, jax=True
        ),
    ]
    if k >= 16:
        for kern in _sparse_kernel_variants(k):
            impls.append(
                Impl(
                    f"jaxcontext[{kern}]",
                    lambda g, kern=kern: (_sparse_op(g.a64, dtype, kern), jnp.asarray(g.x)),
                    _jax_mul,
                    jax=True,
                    probe_memory=False,
                )
            )
    impls.append(Impl("scipy CSR @ X", lambda g: (g.a, g.x), _mul, baseline=True))
    if k > 1:
        impls.append(
            Impl(f"scipy CSR @ x, {k}x", lambda g: (g.a, g.xt), _one_at_a_time, probe_memory=False)
        )
    params = dict(kind="sparse", n=n, mean_degree=deg, k=k, kernel=_default_sparse_kernel(k))
    return Case(
        SUITE,
        f"sparse/n{n}/k{k}",
        params,
        build,
        reference,
        tuple(impls),
        tol=_tol(dtype, 8 * np.sqrt(deg)),
        memory=memory,
    )


def _mul(a, x):
    return a @ x


def _rmatmat(op, y):
    return op.rmatmat(y)


def _transposed_case(n, deg, k, dtype, seed) -> Case:
    import jax.numpy as jnp

    def build():
        return _graph_data(n, deg, k, dtype, seed, "transposed")

    def reference(g):
        return g.a64.T @ g.x.astype(np.float64)

    def prepared_t(g):
        return (_sparse_op(g.a64, dtype).T, jnp.asarray(g.x))

    impls = (
        Impl(
            "jaxcontext", lambda g: (_sparse_op(g.a64, dtype), jnp.asarray(g.x)), _rmatmat, jax=True
        ),
        Impl(
            "jaxcontext[.T prebuilt]",
            prepared_t,
            _jax_mul,
            jax=True,
            note="op.T built once outside the timed call (re-sorted copy), then op.T @ Y",
        ),
        Impl("scipy A.T @ Y", lambda g: (g.a, g.x), _tmul, baseline=True),
    )
    params = dict(
        kind="sparse-T",
        n=n,
        mean_degree=deg,
        k=k,
        kernel=_default_sparse_kernel(k),
        matrix="D^-1 A",
    )
    return Case(
        SUITE,
        f"sparse-T/n{n}/k{k}",
        params,
        build,
        reference,
        impls,
        tol=_tol(dtype, 8 * np.sqrt(deg)),
    )


def _tmul(a, y):
    return a.T @ y


def _composed_case(n, deg, k, dtype, seed) -> Case:
    import jax.numpy as jnp

    from jaxcontext import operators as ops

    def build():
        return _graph_data(n, deg, k, dtype, seed, "composed")

    def reference(g):
        d = g.d.astype(np.float64)[:, None]
        return d * (g.a64 @ (d * g.x.astype(np.float64)))

    def lazy(g):
        dg = ops.diag(g.d)
        return (dg @ _sparse_op(g.a64, dtype) @ dg, jnp.asarray(g.x))

    def folded(g):
        return (_sparse_op(g.a64, dtype).scale(g.d, g.d), jnp.asarray(g.x))

    impls = (
        Impl("jaxcontext", lazy, _jax_mul, jax=True, note="ProductOperator(diag, sparse, diag)"),
        Impl(
            "jaxcontext[scaled]",
            folded,
            _jax_mul,
            jax=True,
            note="SparseOperator.scale(d, d): scaling folded into the values once",
        ),
        Impl("scipy d*(A@(d*X))", lambda g: (g.a, g.d, g.x), _scaled_scipy, baseline=True),
    )
    params = dict(
        kind="composed",
        n=n,
        mean_degree=deg,
        k=k,
        kernel=_default_sparse_kernel(k),
        matrix="D^-1/2 A D^-1/2",
    )
    return Case(
        SUITE,
        f"composed/n{n}/k{k}",
        params,
        build,
        reference,
        impls,
        tol=_tol(dtype, 8 * np.sqrt(deg)),
    )


def _scaled_scipy(a, d, x):
    return d[:, None] * (a @ (d[:, None] * x))


class _KernelData(NamedTuple):
    x: np.ndarray  # (m, D) points
    v: np.ndarray  # (m, k) block
    gamma: float
    rows: np.ndarray  # rows where the float64 reference is evaluated


def rbf_rows_float64(
    xs: np.ndarray, x: np.ndarray, gamma: float, v: np.ndarray, chunk: int = 256
) -> np.ndarray:
    """Float64 ``K[rows] @ v`` for ``K = exp(-gamma |x_i - x_j|^2)``, a chunk of rows at a time."""
    x = x.astype(np.float64)
    v = v.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    out = []
    for s in range(0, xs.shape[0], chunk):
        xc = xs[s : s + chunk].astype(np.float64)
        d2 = np.einsum("ij,ij->i", xc, xc)[:, None] + sq[None, :] - 2.0 * (xc @ x.T)
        out.append(np.exp(-gamma * np.maximum(d2, 0.0)) @ v)
    return np.concatenate(out, axis=0)


def rbf_dense_numpy(x: np.ndarray, gamma: Any) -> np.ndarray:
    """The dense RBF matrix ``exp(-gamma |x_i - x_j|^2)`` with numpy, in one ``m x m`` array."""
    sq = np.einsum("ij,ij->i", x, x)
    g = x @ x.T
    g *= -2.0
    g += sq[:, None]
    g += sq[None, :]
    np.maximum(g, 0.0, out=g)
    g *= -gamma
    np.exp(g, out=g)
    return g


def rbf_materialise_numpy(x: np.ndarray, v: np.ndarray, gamma: Any) -> np.ndarray:
    """Build the dense RBF matrix with numpy, in place (one ``m x m`` array); return ``K @ v``."""
    return rbf_dense_numpy(x, gamma) @ v


def _kernel_case(m, dim, k, dtype, seed, *, memory) -> Case:
    import jax.numpy as jnp

    from jaxcontext import kernels
    from jaxcontext import operators as ops

    gamma = 1.0 / dim  # |x - y|^2 ~ 2 dim for standard normal points: kernel values ~ e^-2

    def build():
        rng = _seed(seed, "kernel", m, dim, k)
        x = rng.standard_normal((m, dim)).astype(dtype)
        v = rng.standard_normal((m, k)).astype(dtype)
        if m <= KERNEL_REF_ROWS:
            rows = np.arange(m)
        else:
            rows = np.sort(rng.choice(m, KERNEL_REF_ROWS, replace=False))
        return _KernelData(x, v, gamma, rows)

    def reference(kd):
        return rbf_rows_float64(kd.x[kd.rows], kd.x, kd.gamma, kd.v)

    def compare(out, ref, kd):
        return rel_error(np.asarray(out)[kd.rows], ref)

    def jx(kd):
        op = ops.kernel_operator(kd.x, kernel=kernels.RBF(gamma=np.asarray(kd.gamma, dtype)))
        return op, jnp.asarray(kd.v)

    need = m * m * np.dtype(dtype).itemsize
    skip = None
    if need > MATERIALISE_BUDGET:
        skip = f"dense K needs {need / 1e9:.0f} GB"
    impls = (
        Impl("jaxcontext", jx, _jax_mul, jax=True, note="matrix-free, tiled"),
        Impl(
            "numpy materialise K @ V",
            lambda kd: (kd.x, kd.v, dtype.type(kd.gamma)),
            rbf_materialise_numpy,
            baseline=True,
            skip=skip,
        ),
    )
    params = dict(
        kind="kernel",
        kernel="rbf",
        m=m,
        dim=dim,
        k=k,
        gamma=gamma,
        reference_rows=min(m, KERNEL_REF_ROWS),
    )
    return Case(
        SUITE,
        f"kernel-rbf/m{m}/k{k}",
        params,
        build,
        reference,
        impls,
        tol=_tol(dtype, 256 + 8 * np.sqrt(m)),
        compare=compare,
        memory=memory,
    )


# --------------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------------
def cases(size: str = "quick", *, dtype: Any = np.float32, seed: int = 0) -> list[Case]:
    """Return the operator cases at ``size`` (``"tiny"``, ``"quick"``, ``"full"``), built lazily."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    s = SIZES[size]
    out: list[Case] = [_dense_case(m, n, k, dtype, seed) for (m, n, k) in s["dense"]]
    for n in s["graph_n"]:
        for k in s["sparse_k"]:
            mem = s["memory_sparse"] and k == max(s["sparse_k"])
            out.append(_sparse_case(n, s["deg"], k, dtype, seed, memory=mem))
        out.append(_transposed_case(n, s["deg"], s["t_k"], dtype, seed))
        out.append(_composed_case(n, s["deg"], s["composed_k"], dtype, seed))
    for m, dim, k in s["kernel"]:
        out.append(_kernel_case(m, dim, k, dtype, seed, memory=True))
    return out
