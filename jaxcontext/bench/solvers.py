r"""The ``solvers`` suite: top-``d`` singular values, jaxcontext against ARPACK, PROPACK, sklearn.

Every case is one context operator in float32, shared by all implementations, with a float64
reference spectrum computed once and cached on disk. Each entry is one solve, timed, with the
largest relative singular-value error over the top ``d``,

.. math::  \mathrm{err} = \max_{i < d} |s_i - s_i^{\mathrm{ref}}| / s_i^{\mathrm{ref}},

and (in ``details``) the solver's work and its residual certificate
``max_i max(|A v_i - s_i u_i|, |A^T u_i - s_i v_i|) / s_1`` (recomputed in float32 for peers).

========  ===========================================  ==========================================
case      operator (float32, same for every entry)      peers (``*`` the baseline)
========  ===========================================  ==========================================
sbm       graph context ``D^-1/2 W D^-1/2`` of a         scipy ``svds`` ARPACK ``*``, ``eigsh`` LM,
          stochastic block model (symmetric)             ``svds`` PROPACK, sklearn
                                                         ``randomized_svd``
knn       kNN context ``diag(sqrt w) P diag(p)^-1/2``    the same without ``eigsh`` (not
          (not symmetric)                                symmetric)
rbf       normalised RBF kernel ``D^-1/2 K D^-1/2``      scipy ``eigsh`` on the materialised ``K``
          (symmetric PSD), materialised float32 and      ``*`` (KernelPCA's route), ``KernelPCA``
          matrix-free                                    (arpack), sklearn ``randomized_svd``
rbf-free  the same, matrix-free only (m = 100k)          none; peak memory probed
========  ===========================================  ==========================================

jaxcontext entries call :func:`jaxcontext.linalg.svds` as a user would (``tol=1e-4``;
``hermitian=True`` for symmetric operators): ``auto`` and ``lanczos`` must reach ``1e-4`` like
ARPACK and certify every triplet (``on_fail="raise"``: an uncertified result fails the entry);
the ``krylov`` (fixed depth) and ``randomized`` entries, and sklearn's ``randomized_svd``, are
approximate methods whose reached accuracy is the point of the entry (accepted up to
``APPROX_TOL``). The first call of each jaxcontext entry (tracing and
compilation included) is the one checked and is not part of the times.

References: dense float64 ``eigvalsh`` / ``svd`` up to ``DENSE_REF_MAX`` rows; beyond, scipy
``eigsh`` / ``svds`` in float64 at ``tol=1e-10`` (sparse) or scipy ``lobpcg`` in float64 on the
materialised float32 kernel (rbf). Cached under ``$JAXCONTEXT_BENCH_CACHE`` (default
``~/.cache/jaxcontext-bench``) keyed by the problem's parameters and seed; their time is never
part of an entry. The 100k matrix-free kernel has no float64 reference (one float64 pass over
the kernel takes minutes): its error column is the certificate bound ``max_i r_i s_1 / s_i``.

Example:
    >>> from jaxcontext.bench import solvers
    >>> [c.name for c in solvers.cases("tiny")]
    ['sbm/n2400/d8', 'knn/m1000/d8', 'rbf/m600/d8']
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zlib
from typing import Any, NamedTuple

import numpy as np

from ._harness import Case, Impl
from .operators import rbf_dense_numpy

SUITE = "solvers"

TOL = 1e-4  # solver tolerance and the accuracy bar of the exact methods
EXACT_METHODS = ("auto", "lanczos", "chebyshev", "dense")  # certified to TOL, or the entry fails
APPROX_TOL = 0.25  # sanity bar of approximate methods (their reached accuracy is recorded)
DENSE_REF_MAX = 2000  # float64 dense reference up to this many rows
MATERIALISE_MAX = 20_000  # rbf cases materialise the float32 kernel up to this many points
BIG_N = 500_000  # from this size on: one timed call per entry, no PROPACK
CACHE_VERSION = 1

# Problem sizes. sbm: (nodes, blocks, expected in-degree, expected out-degree, d); sbm_bulk: the
# same fields for a block model whose d cuts into the dense bulk below the block cluster, passed to
# jaxcontext as a plain scipy CSR matrix with default arguments;
# knn: (points, dim, K, d); rbf: (points, dim, d); rbf_free: (points, dim, d);
# methods: the jaxcontext methods run (tiny keeps two: each method's first call compiles);
# nonhermitian: also the Golub-Kahan lanczos on the symmetric sbm (first sbm case only);
# max_repeats: timed calls per entry at most (solves are slow; the first, checked call is apart).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        sbm=[(2400, 24, 30.0, 20.0, 8)],
        sbm_bulk=[(2000, 10, 20.0, 5.0, 16)],
        knn=[(1000, 8, 10, 8)],
        rbf=[(600, 8, 8)],
        rbf_free=[],
        methods=("auto", "lanczos"),
        nonhermitian=False,
        rbf_dense_lanczos=False,
        max_repeats=1,
    ),
    "quick": dict(
        sbm=[(10_000, 100, 30.0, 20.0, 16)],
        sbm_bulk=[(10_000, 50, 20.0, 5.0, 64)],
        knn=[(5000, 8, 30, 16)],
        rbf=[(2000, 8, 16)],
        rbf_free=[],
        methods=("auto", "lanczos", "krylov", "randomized"),
        nonhermitian=False,
        rbf_dense_lanczos=True,
        max_repeats=3,
    ),
    "full": dict(
        sbm=[(100_000, 100, 30.0, 20.0, 64), (1_000_000, 100, 12.0, 8.0, 32)],
        sbm_bulk=[(100_000, 50, 20.0, 5.0, 64)],
        knn=[(50_000, 8, 30, 64)],
        rbf=[(20_000, 8, 64)],
        rbf_free=[(100_000, 8, 64)],
        methods=("auto", "lanczos", "krylov", "randomized"),
        nonhermitian=True,
        rbf_dense_lanczos=True,
        max_repeats=3,
    ),
}


def _seed(seed: int, *parts: Any) -> np.random.Generator:
    """Return a generator per problem: the same ``seed`` and parts always give the same inputs."""
    return np.random.default_rng([seed, zlib.crc32(repr(parts).encode())])


# --------------------------------------------------------------------------------------------------
# Results and error measure
# --------------------------------------------------------------------------------------------------
class Solved(NamedTuple):
    """A peer's result in one form: singular values (descending) and vectors, ``A v_i ~ s_i u_i``.

    ``ref`` names the reference entry it is compared with (``"s"``; ``"centered"`` for
    KernelPCA, which solves the centred kernel ``H K H``).
    """

    s: Any
    U: Any
    V: Any
    ref: str = "s"


def _values(out: Any) -> np.ndarray:
    return np.asarray(out.s, dtype=np.float64).ravel()


def sv_error(out: Any, ref: Any, data: Any = None) -> float:
    r"""Largest relative singular-value error ``max_i |s_i - s_i^ref| / s_i^ref`` over the top d.

    ``ref`` is a dict of float64 reference spectra (key ``"s"``, and ``"centered"`` for results
    that say so), or None when the case has no reference (then the certificate bound
    ``max_i r_i s_1 / s_i`` of a jaxcontext :class:`~jaxcontext.linalg.Spectrum`).
    """
    s = _values(out)
    if ref is None:
        r = np.asarray(out.residuals, np.float64)
        return float(np.max(r * s[0] / np.maximum(s, np.finfo(np.float64).tiny)))
    key = str(getattr(out, "ref", "s"))
    want = np.asarray(ref[key], np.float64)[: s.size]
    if s.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(s - want) / np.abs(want)))


def _certificate(mul, rmul, s, U, V) -> float:
    """``max_i max(|A v_i - s_i u_i|, |A^T u_i - s_i v_i|) / s_1`` from one product each way.

    In the peer's own dtype (the benchmark dtype), at least float32.
    """
    dt = np.promote_types(np.asarray(U).dtype, np.float32)
    s = np.asarray(s, dt)
    U = np.asarray(U, dt)
    V = np.asarray(V, dt)
    r1 = np.linalg.norm(np.asarray(mul(V)) - U * s, axis=0)
    r2 = np.linalg.norm(np.asarray(rmul(U)) - V * s, axis=0)
    return float(np.max(np.maximum(r1, r2)) / s[0])


def _jax_details(out: Any, data: Any) -> dict:
    info = out.info
    conv = np.asarray(info.converged)
    return {
        "method": str(info.method),
        "iterations": int(info.iterations),
        "matvecs": int(info.matvecs),
        "restarts": int(info.restarts),
        "block_size": int(info.block_size),
        "basis_size": int(info.basis_size),
        "converged": f"{int(conv.sum())}/{conv.size}",
        "max_residual": float(np.max(np.asarray(out.residuals))),
        "dtype": str(np.dtype(out.s.dtype)),
        "reason": str(info.reason),
    }


def _peer_details(extra: dict):
    def details(out: Any, data: Any) -> dict:
        res = {**extra, **_thread_note()}
        if getattr(data, "mul", None) is not None and str(out.ref) == "s":
            res["max_residual"] = _certificate(data.mul, data.rmul, out.s, out.U, out.V)
        return res

    return details


def peer_threads() -> int:
    """Threads every CPU peer runs with: the usable cores (XLA's intra-op pool uses as many)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _threaded(fn):
    """``fn`` under ``threadpool_limits(peer_threads())`` (BLAS and OpenMP pools), when available.

    Every peer then runs with the same thread count as jaxcontext's XLA pool, whatever a library
    defaults to (scipy's ARPACK calls OpenBLAS; PRIMME links its own BLAS).
    """

    def run(*args):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional
            return fn(*args)
        with threadpool_limits(limits=peer_threads()):
            return fn(*args)

    return run


def _thread_note() -> dict:
    try:
        import threadpoolctl  # noqa: F401

        how = "threadpoolctl"
    except ImportError:  # pragma: no cover - optional
        how = "library default (threadpoolctl missing)"
    return {"threads": peer_threads(), "threads_set_by": how}


def _stage_line(stages: Any) -> str:
    from jaxcontext.linalg._stages import format_stages

    return format_stages(stages)


def _profiled_details(profile):
    """Details of a jaxcontext entry plus ``stages``: where the time goes, from one more solve.

    ``profile(data)`` runs the same solve with ``svds(..., profile=True)`` (every stage its own
    compiled call, timed apart: see :mod:`jaxcontext.linalg._stages`), untimed by the harness.
    The stage times add up to more than the fused solve's (no fusion across stages, a host round
    trip after each): read them as shares.
    """

    def details(out: Any, data: Any) -> dict:
        res = _jax_details(out, data)
        res["threads"] = f"XLA {peer_threads()} (BLAS inside svds: 1)"
        if profile is not None:
            sp_ = profile(data)
            res["stages"] = _stage_line(sp_.info.stages)
        return res

    return details


# --------------------------------------------------------------------------------------------------
# Reference cache
# --------------------------------------------------------------------------------------------------
def cache_dir() -> str:
    """The reference cache: ``$JAXCONTEXT_BENCH_CACHE`` or ``~/.cache/jaxcontext-bench``."""
    return os.environ.get("JAXCONTEXT_BENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxcontext-bench"
    )


def cached(params: dict, compute) -> dict:
    """Return ``compute()`` (a dict of float64 arrays), cached on disk under ``params``."""
    key = json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    path = os.path.join(cache_dir(), f"{params.get('problem', 'ref')}-{digest}.npz")
    if os.path.exists(path):
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed
    out = {k: np.asarray(v, np.float64) for k, v in compute().items()}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + f".{os.getpid()}.tmp.npz"
        np.savez(tmp, **out)
        os.replace(tmp, path)
        with open(path[:-4] + ".json", "w") as f:
            f.write(key + "\n")
    except OSError:
        pass  # a read-only home still runs, just without the cache
    return out


def _top_abs(values: np.ndarray, d: int) -> np.ndarray:
    return np.sort(np.abs(np.asarray(values, np.float64)))[::-1][:d]


def _sparse_reference(a64, d: int, symmetric: bool) -> np.ndarray:
    """Top-``d`` singular values of a float64 scipy matrix (dense when small, ARPACK at 1e-10)."""
    import scipy.sparse.linalg as sla

    n = min(a64.shape)
    if n <= DENSE_REF_MAX:
        a = a64.toarray()
        if symmetric:
            return _top_abs(np.linalg.eigvalsh(a), d)
        return np.linalg.svd(a, compute_uv=False)[:d]
    k = min(d + 16, n - 2)
    v0 = np.ones(a64.shape[1]) / np.sqrt(a64.shape[1])
    if symmetric:
        w = sla.eigsh(a64, k=k, which="LM", tol=1e-10, v0=v0, return_eigenvectors=False)
        return _top_abs(w, d)
    s = sla.svds(a64, k=k, tol=1e-10, v0=np.ones(min(a64.shape)), return_singular_vectors=False)
    return np.sort(s)[::-1][:d]


# --------------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------------
class _Problem(NamedTuple):
    a64: Any  # float64 scipy CSR (reference) or None
    a32: Any  # float32 scipy CSR / numpy dense: what the peers get
    op: Any  # the jaxcontext operator (built lazily by prepare) or None
    mul: Any  # A @ X in float32 (certificates)
    rmul: Any  # A^T @ Y
    symmetric: bool
    extra: Any = None


def sbm_graph_edges(num_nodes: int, num_blocks: int, deg_in: float, deg_out: float, seed: int):
    """Edges ``(rows, cols)`` (each once, ``rows < cols``) of the benchmark's block model.

    :func:`jaxcontext.datasets.sbm_edges` with ``p_in = deg_in / (size - 1)`` and
    ``p_out = deg_out / (n - size)`` for blocks of ``size = n / blocks`` nodes.
    """
    import jax

    from jaxcontext import datasets

    size = num_nodes / num_blocks
    p_in = min(1.0, deg_in / (size - 1))
    p_out = min(1.0, deg_out / (num_nodes - size))
    key = jax.random.key(int(zlib.crc32(repr(("sbm", seed, num_nodes, num_blocks)).encode())))
    return datasets.sbm_edges(num_nodes, num_blocks, p_in, p_out, key=key)


def sbm_matrix(num_nodes: int, num_blocks: int, deg_in: float, deg_out: float, seed: int):
    r"""Return the float64 scipy CSR ``Z = D^{-1/2} W D^{-1/2}`` of a stochastic block model.

    Edges from :func:`jaxcontext.datasets.sbm_edges` with ``p_in = deg_in / (size - 1)`` and
    ``p_out = deg_out / (n - size)`` (``size = n / blocks``): expected degree ``deg_in + deg_out``.
    ``W`` is the 0/1 symmetric adjacency; ``Z`` is the graph context's operator
    (:func:`jaxcontext.contexts.graph`).
    """
    import scipy.sparse as sp

    r, c = sbm_graph_edges(num_nodes, num_blocks, deg_in, deg_out, seed)
    w = sp.coo_array((np.ones(r.size), (r, c)), shape=(num_nodes, num_nodes))
    w = (w + w.T).tocsr()
    deg = np.asarray(w.sum(axis=1)).ravel()
    if (deg == 0).any():
        raise ValueError(f"sbm: {int((deg == 0).sum())} isolated node(s); raise the degrees")
    dis = 1.0 / np.sqrt(deg)
    z = sp.diags_array(dis) @ w @ sp.diags_array(dis)
    z = sp.csr_array(z)
    z.sort_indices()
    return z


def knn_matrix(x: np.ndarray, k: int):
    r"""Return the float64 scipy CSR of the kNN context operator ``diag(sqrt w) P diag(p)^{-1/2}``.

    ``P[i, j] = 1/k`` for the ``k`` nearest neighbours of ``x_i`` (itself excluded), ``w = 1/m``,
    ``p = P^T w``; columns with ``p_j = 0`` are zero: :func:`jaxcontext.contexts.knn`'s operator.
    """
    import scipy.sparse as sp
    from sklearn.neighbors import NearestNeighbors

    m = x.shape[0]
    idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(None, return_distance=False)
    p = np.bincount(idx.ravel(), minlength=m) / (m * k)
    q = np.where(p > 0, 1.0 / np.sqrt(np.where(p > 0, p, 1.0)), 0.0)
    rows = np.repeat(np.arange(m), k)
    vals = q[idx.ravel()] / (k * np.sqrt(m))
    z = sp.csr_array((vals, (rows, idx.ravel())), shape=(m, m))
    z.sum_duplicates()
    z.sort_indices()
    return z


def _sparse_problem(z64, symmetric: bool, dtype) -> _Problem:
    a32 = z64.astype(dtype)
    a32t = a32.T.tocsr()
    return _Problem(
        a64=z64,
        a32=a32,
        op=None,
        mul=lambda v: a32 @ v,
        rmul=lambda u: a32t @ u,
        symmetric=symmetric,
    )


def rbf_points(m: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Points ``x_j ~ N(0, sigma_j^2)`` with ``sigma_j = 1 / sqrt(1 + j)`` and ``gamma = 1 / 2``.

    Unequal scales give the kernel a decaying spectrum without the large exact multiplicities of
    an isotropic cloud.
    """
    scales = 1.0 / np.sqrt(1.0 + np.arange(dim))
    return rng.standard_normal((m, dim)) * scales, 0.5


def rbf_degrees64(x: np.ndarray, gamma: float, chunk: int = 1024) -> np.ndarray:
    """Row sums ``K 1`` of ``K = exp(-gamma |x_i - x_j|^2)`` in float64, by chunks of rows."""
    x = np.asarray(x, np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xc = x[s : s + chunk]
        d2 = sq[s : s + chunk, None] + sq[None, :] - 2.0 * (xc @ x.T)
        out[s : s + chunk] = np.exp(-gamma * np.maximum(d2, 0.0)).sum(axis=1)
    return out


def rbf_materialise(x: np.ndarray, gamma: float, dis: np.ndarray) -> np.ndarray:
    """The dense normalised kernel ``D^-1/2 K D^-1/2`` in ``x``'s dtype, built in place."""
    g = rbf_dense_numpy(x, gamma)
    g *= dis[:, None]
    g *= dis[None, :]
    return g


class _Rbf(NamedTuple):
    x: np.ndarray  # points, benchmark dtype
    gamma: float
    dis: np.ndarray  # D^-1/2, benchmark dtype
    a32: Any  # materialised normalised kernel K (benchmark dtype), what the peers get, or None
    mul: Any
    rmul: Any


def _rbf_matrix_free(x, gamma, dis):
    from jaxcontext import kernels
    from jaxcontext import operators as ops

    kop = ops.kernel_operator(x, kernel=kernels.RBF(gamma=np.asarray(gamma, x.dtype)))
    dg = ops.diag(dis)
    return ops.product(dg, kop, dg)


def _rbf_reference(K32: np.ndarray, d: int, *, centered: bool, seed: int) -> np.ndarray:
    """Top-``d`` eigenvalues (all >= 0 here) of the float32 matrix ``K32`` (or ``H K H``), float64.

    Dense ``eigvalsh`` when small; else a float64 randomized range finder followed by scipy's
    ``lobpcg`` (``tol=1e-8``) with float64 products over row chunks of ``K32``, verified by the
    residuals: every ``|K v - theta v| <= 1e-6 theta``, which bounds ``|lambda - theta|``.
    """
    m = K32.shape[0]

    def center(v):
        return v - v.mean(axis=0, keepdims=True)

    if m <= DENSE_REF_MAX:
        a = K32.astype(np.float64)
        if centered:
            a = center(center(a).T).T
        return _top_abs(np.linalg.eigvalsh(a), d)
    import scipy.sparse.linalg as sla

    chunk = max(1, (1 << 27) // (8 * m))

    def mm(v):
        v = np.asarray(v, np.float64)
        if v.ndim == 1:
            v = v[:, None]
        if centered:
            v = center(v)
        out = np.empty((m, v.shape[1]))
        for s in range(0, m, chunk):
            out[s : s + chunk] = K32[s : s + chunk].astype(np.float64) @ v
        return center(out) if centered else out

    op = sla.LinearOperator((m, m), matvec=mm, matmat=mm, dtype=np.float64)
    rng = np.random.default_rng(seed)
    block = d + 32
    q = np.linalg.qr(rng.standard_normal((m, block)))[0]
    for _ in range(4):
        q = np.linalg.qr(mm(q))[0]
    with warnings.catch_warnings():  # stagnation just above tol is checked below instead
        warnings.simplefilter("ignore", UserWarning)
        w, v = sla.lobpcg(op, q, largest=True, tol=1e-8, maxiter=200)
    order = np.argsort(w)[::-1][:d]
    w, v = w[order], v[:, order]
    res = np.linalg.norm(mm(v) - v * w, axis=0)  # |lambda - theta| <= |r| for symmetric K
    if not np.all(res <= 1e-6 * np.abs(w)):
        raise RuntimeError(
            f"float64 reference did not converge: residual / eigenvalue up to "
            f"{float(np.max(res / np.abs(w))):.2e} (need 1e-6)"
        )
    return _top_abs(w, d)


# --------------------------------------------------------------------------------------------------
# Implementations
# --------------------------------------------------------------------------------------------------
def _in_dtype(out: Any, dtype: Any) -> Any:
    """``out`` (a :class:`~jaxcontext.linalg.Spectrum`), checked to be computed in ``dtype``.

    ``--dtype float64`` must really compute in float64: an operator silently built in float32
    would make the float64 figures float32 ones.
    """
    got = np.dtype(out.s.dtype)
    if got != np.dtype(dtype):
        raise TypeError(f"the solve ran in {got}, not in the benchmark dtype {np.dtype(dtype)}")
    return out


def _svds_fn(
    method: str,
    d: int,
    *,
    hermitian: bool | None,
    dtype: Any,
    tol: float = TOL,
    profile: bool = False,
):
    def fn(op):
        from jaxcontext.linalg import svds

        out = svds(
            op,
            d,
            key=0,
            method=method,
            tol=tol,
            hermitian=hermitian,
            # the exact methods must certify every triplet: a miss is a failed entry, not a
            # timed one (the approximate krylov / randomized entries record what they reach)
            on_fail="raise" if method in EXACT_METHODS else "ignore",
            profile=profile,
        )
        return _in_dtype(out, dtype)

    return fn


# jaxcontext entries whose details carry a stage profile (one more, untimed, solve each)
PROFILED_METHODS = ("auto", "lanczos")


def _jax_entry_details(method: str, d: int, *, hermitian: bool | None, dtype: Any, op_of):
    """Details of a jaxcontext entry, with the stage profile for :data:`PROFILED_METHODS`."""
    if method not in PROFILED_METHODS:
        return _profiled_details(None)
    fn = _svds_fn(method, d, hermitian=hermitian, dtype=dtype, profile=True)
    return _profiled_details(lambda g: fn(op_of(g)))


def _arpack_svds(a, d):
    import scipy.sparse.linalg as sla

    u, s, vt = sla.svds(a, k=d, tol=TOL, solver="arpack", random_state=0)
    o = np.argsort(s)[::-1]
    return Solved(s[o], u[:, o], vt[o].T)


def _propack_svds(a, d):
    import scipy.sparse.linalg as sla

    from ._harness import ImplFailed

    try:
        u, s, vt = sla.svds(a, k=d, tol=TOL, solver="propack", random_state=0)
    except np.linalg.LinAlgError as e:  # PROPACK gives up on clustered spectra: recorded
        raise ImplFailed(f"PROPACK did not converge: {e}") from e
    o = np.argsort(s)[::-1]
    return Solved(s[o], u[:, o], vt[o].T)


def _eigsh_lm(a, d, v0):
    import scipy.sparse.linalg as sla

    w, v = sla.eigsh(a, k=d, which="LM", tol=TOL, v0=v0)
    o = np.argsort(np.abs(w))[::-1]
    w, v = w[o], v[:, o]
    return Solved(np.abs(w), v * np.where(w < 0, -1.0, 1.0).astype(v.dtype), v)


def _randomized_svd(a, d, n_iter):
    from sklearn.utils.extmath import randomized_svd

    u, s, vt = randomized_svd(a, n_components=d, n_iter=n_iter, random_state=0)
    return Solved(s, u, vt.T)


def _kernel_pca(K, d):
    from sklearn.decomposition import KernelPCA

    kp = KernelPCA(n_components=d, kernel="precomputed", eigen_solver="arpack", random_state=0)
    kp.fit(K)
    lam = np.sort(np.asarray(kp.eigenvalues_, np.float64))[::-1]
    return Solved(lam, None, None, ref="centered")


def _primme_svds(a, d):
    import primme

    from ._harness import ImplFailed

    try:
        u, s, vt = primme.svds(a, k=d, tol=TOL, which="LM")
    except Exception as e:  # PrimmeSvdsError and friends: a documented give-up, recorded
        raise ImplFailed(f"PRIMME svds: {type(e).__name__}: {e}") from e
    o = np.argsort(s)[::-1]
    return Solved(s[o], u[:, o], vt[o].T)


def _primme_eigsh(a, d):
    import primme

    from ._harness import ImplFailed

    try:
        w, v = primme.eigsh(a, k=d, which="LM", tol=TOL)
    except Exception as e:
        raise ImplFailed(f"PRIMME eigsh: {type(e).__name__}: {e}") from e
    o = np.argsort(np.abs(w))[::-1]
    w, v = w[o], v[:, o]
    return Solved(np.abs(w), v * np.where(w < 0, -1.0, 1.0).astype(v.dtype), v)


def _missing(module: str) -> str | None:
    """A skip reason when ``module`` is not importable, else None."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (optional peer)"
    return None


def _cuda_skip(module: str) -> str | None:
    """A skip reason for a GPU peer: ``module`` missing, or no CUDA device it can use."""
    why = _missing(module)
    if why is not None:
        return why
    try:
        if module == "cupy":
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "cupy: no CUDA device"
        elif module == "torch":
            import torch

            if not torch.cuda.is_available():
                return "torch: no CUDA device (torch peers run on the GPU only)"
    except Exception as e:  # a broken driver or runtime is a skip, not a crash
        return f"{module}: CUDA unavailable ({type(e).__name__}: {e})"
    return None


def _to_cupy(a):
    """The operator on the GPU: a cupy CSR matrix, or a cupy array for a dense one."""
    import cupy
    import cupyx.scipy.sparse as csp

    out = cupy.asarray(a) if isinstance(a, np.ndarray) else csp.csr_matrix(a)
    _cupy_sync()
    return out


def _cupy_sync():
    import cupy

    cupy.cuda.Stream.null.synchronize()


def _cupy_svds(a, d):
    """Return cupy's ``svds``, left on the GPU (the harness copies it for the check only)."""
    import cupy
    import cupyx.scipy.sparse.linalg as cla

    u, s, vt = cla.svds(a, k=d, tol=TOL, which="LM")
    o = cupy.argsort(s)[::-1]
    out = Solved(s[o], u[:, o], vt[o].T)
    _cupy_sync()
    return out


def _cupy_eigsh(a, d):
    import cupy
    import cupyx.scipy.sparse.linalg as cla

    w, v = cla.eigsh(a, k=d, which="LM", tol=TOL)
    o = cupy.argsort(cupy.abs(w))[::-1]
    w, v = w[o], v[:, o]
    out = Solved(cupy.abs(w), v * cupy.where(w < 0, -1.0, 1.0).astype(v.dtype), v)
    _cupy_sync()
    return out


def _to_torch(a):
    """The operator on the GPU: a torch CSR tensor, or a dense tensor for a dense one."""
    import torch

    if isinstance(a, np.ndarray):
        return torch.as_tensor(a).to("cuda")
    c = a.tocoo()
    idx = torch.as_tensor(np.vstack([c.row, c.col]).astype(np.int64))
    t = torch.sparse_coo_tensor(idx, torch.as_tensor(c.data), c.shape).coalesce()
    return t.to_sparse_csr().to("cuda")


def _torch_lobpcg(a, d):
    import torch

    w, v = torch.lobpcg(a, k=d, largest=True, tol=TOL)
    o = torch.argsort(torch.abs(w), descending=True)
    w, v = w[o], v[:, o]
    out = Solved(torch.abs(w), v * torch.where(w < 0, -1.0, 1.0).to(v.dtype), v)
    torch.cuda.synchronize()
    return out


def _torch_svd_lowrank(a, d, n_iter):
    import torch

    u, s, v = torch.svd_lowrank(a, q=d + 10, niter=n_iter)
    out = Solved(s[:d], u[:, :d], v[:, :d])
    torch.cuda.synchronize()
    return out


def _sklearn_n_iter(n: int, d: int) -> int:
    """scikit-learn's ``n_iter="auto"`` rule: 7 when ``d < 0.1 min(m, n)``, else 4."""
    return 7 if d < 0.1 * n else 4


_METHOD_LABEL = {
    "auto": ("jaxcontext", None),
    "lanczos": ("jaxcontext[lanczos]", None),
    "krylov": ("jaxcontext[krylov]", APPROX_TOL),
    "randomized": ("jaxcontext[randomized]", APPROX_TOL),
}


def _jax_impls(
    d: int, methods, *, hermitian: bool, nonhermitian: bool, op_of, dtype: Any
) -> list[Impl]:
    impls = []
    for method in methods:
        label, tol = _METHOD_LABEL[method]
        impls.append(
            Impl(
                label,
                lambda g: (op_of(g),),
                _svds_fn(method, d, hermitian=hermitian, dtype=dtype),
                tol=tol,
                details=_jax_entry_details(
                    method, d, hermitian=hermitian, dtype=dtype, op_of=op_of
                ),
                probe_memory=False,
                note=f"svds(method={method!r}, tol={TOL}, hermitian={hermitian})",
            )
        )
    if hermitian and nonhermitian:
        impls.append(
            Impl(
                "jaxcontext[lanczos, non-hermitian]",
                lambda g: (op_of(g),),
                _svds_fn("lanczos", d, hermitian=False, dtype=dtype),
                details=_jax_details,
                probe_memory=False,
                note=f"svds(method='lanczos', tol={TOL}, hermitian=False): Golub-Kahan",
            )
        )
    return impls


def _peer(
    name: str,
    prepare,
    fn,
    note: str,
    details: dict,
    *,
    needs: str | None = None,
    gpu: bool = False,
    threaded: bool = True,
    **fields: Any,
) -> Impl:
    """One peer entry (``Impl(peer=True)``): ``fn(*prepare(g))``, never probed for memory.

    ``details``: the facts recorded with it, completed by :func:`_peer_details` (thread count,
    residual certificate). CPU peers run under :func:`_threaded` (``threaded=False``: under the
    library's own thread pools); GPU peers (``gpu=True``) run as they are and record
    ``device="cuda"``. ``needs``: the optional module without which the entry is skipped (a GPU
    peer also without a CUDA device). ``fields``: other :class:`Impl` fields (``baseline``,
    ``tol``, ``skip``).
    """
    if gpu:
        details = {**details, "device": "cuda"}
    if needs is not None:
        fields["skip"] = _cuda_skip(needs) if gpu else _missing(needs)
    return Impl(
        name,
        prepare,
        _threaded(fn) if threaded and not gpu else fn,
        details=_peer_details(details),
        probe_memory=False,
        note=note,
        peer=True,
        **fields,
    )


def _peer_impls(d: int, n: int, *, symmetric: bool, dense: bool) -> list[Impl]:
    n_iter = _sklearn_n_iter(n, d)
    tol = {"tol": TOL}

    def a_d(g):
        return (g.a32, d)

    def a_d_v0(g):
        return (g.a32, d, np.full(g.a32.shape[0], 1.0, g.a32.dtype))

    impls = [
        _peer(
            "scipy svds arpack",
            a_d,
            _arpack_svds,
            f"scipy.sparse.linalg.svds(A, k={d}, tol={TOL}, solver='arpack')",
            tol,
            baseline=not dense,
        ),
    ]
    if symmetric:
        note = f"scipy.sparse.linalg.eigsh(A, k={d}, which='LM', tol={TOL}), |lambda|"
        impls.append(_peer("scipy eigsh LM", a_d_v0, _eigsh_lm, note, tol, baseline=dense))
    if not dense:
        too_big = (
            f"n = {n} >= {BIG_N}: left out to bound the run time (PROPACK took 0.9-1.1x "
            "ARPACK's time at 100k nodes on a quiet machine, 3x under load)"
        )
        impls.append(
            _peer(
                "scipy svds propack",
                a_d,
                _propack_svds,
                f"scipy.sparse.linalg.svds(A, k={d}, tol={TOL}, solver='propack')",
                tol,
                skip=too_big if n >= BIG_N else None,
            )
        )
    impls.append(
        _peer(
            "sklearn randomized_svd",
            lambda g: (g.a32, d, n_iter),
            _randomized_svd,
            f"randomized_svd(A, n_components={d}, n_iter={n_iter}, random_state=0)",
            {"n_iter": n_iter},
            tol=APPROX_TOL,
        )
    )
    impls += _optional_peers(d, n, symmetric=symmetric, dense=dense, n_iter=n_iter)
    return impls


def _optional_peers(d: int, n: int, *, symmetric: bool, dense: bool, n_iter: int) -> list[Impl]:
    """PRIMME (CPU), cupy and torch (GPU) peers: entries skipped with a note when unavailable.

    A dense (materialised kernel) case gets the GPU peers on the dense matrix only (``eigsh``,
    ``lobpcg``, ``svd_lowrank``); its CPU peers are ARPACK's. GPU peers leave their result on
    the device and wait for it, as jaxcontext's entries do; the harness copies it to the host for
    the check only, outside the timed calls.
    """
    tol = {"tol": TOL}

    def a_d(g):
        return (g.a32, d)

    def cupy_d(g):
        return (_to_cupy(g.a32), d)

    def torch_d(g):
        return (_to_torch(g.a32), d)

    impls = []
    if not dense:  # PRIMME and cupy's svds take the sparse matrix
        impls.append(
            _peer(
                "primme svds",
                a_d,
                _primme_svds,
                f"primme.svds(A, k={d}, tol={TOL}) (default method)",
                tol,
                needs="primme",
            )
        )
        if symmetric:
            impls.append(
                _peer(
                    "primme eigsh",
                    a_d,
                    _primme_eigsh,
                    f"primme.eigsh(A, k={d}, which='LM', tol={TOL}) (default method), |lambda|",
                    tol,
                    needs="primme",
                )
            )
        impls.append(
            _peer(
                "cupy svds",
                cupy_d,
                _cupy_svds,
                f"cupyx.scipy.sparse.linalg.svds(A, k={d}, tol={TOL}) on the GPU",
                tol,
                needs="cupy",
                gpu=True,
            )
        )
    if symmetric:
        impls.append(
            _peer(
                "cupy eigsh",
                cupy_d,
                _cupy_eigsh,
                f"cupyx.scipy.sparse.linalg.eigsh(A, k={d}, which='LM', tol={TOL}) on the GPU",
                tol,
                needs="cupy",
                gpu=True,
            )
        )
        impls.append(
            _peer(
                "torch lobpcg",
                torch_d,
                _torch_lobpcg,
                f"torch.lobpcg(A, k={d}, largest=True, tol={TOL}) on the GPU (CSR tensor)",
                tol,
                needs="torch",
                gpu=True,
            )
        )
    impls.append(
        _peer(
            "torch svd_lowrank",
            lambda g: (_to_torch(g.a32), d, n_iter),
            _torch_svd_lowrank,
            f"torch.svd_lowrank(A, q={d + 10}, niter={n_iter}) on the GPU (approximate)",
            {"niter": n_iter},
            tol=APPROX_TOL,
            needs="torch",
            gpu=True,
        )
    )
    return impls


# --------------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------------
def _sparse_op(g: _Problem, dtype):
    from jaxcontext import operators as ops

    return ops.sparse_from_scipy(g.a64, dtype=dtype)


def _sbm_problem(params: dict, dtype):
    """``(build, reference)`` of a block-model case: the graph and its cached float64 values."""
    n, b, deg_in, deg_out, d, seed = (
        params[k] for k in ("n", "blocks", "deg_in", "deg_out", "d", "seed")
    )

    def build():
        return _sparse_problem(sbm_matrix(n, b, deg_in, deg_out, seed), True, dtype)

    def reference(g):
        keyp = {k: params[k] for k in ("problem", "n", "blocks", "deg_in", "deg_out", "d", "seed")}
        return cached(keyp, lambda: {"s": _sparse_reference(g.a64, d, True)})

    return build, reference


def _sbm_case(n, b, deg_in, deg_out, d, dtype, seed, size, nonhermitian) -> Case:
    params = dict(
        kind="sbm",
        problem="sbm",
        n=n,
        blocks=b,
        deg_in=deg_in,
        deg_out=deg_out,
        d=d,
        seed=seed,
        matrix="D^-1/2 W D^-1/2 (graph context), symmetric",
        tol=TOL,
    )

    build, reference = _sbm_problem(params, dtype)

    impls = _jax_impls(
        d,
        SIZES[size]["methods"],
        hermitian=True,
        nonhermitian=nonhermitian,
        op_of=lambda g: _sparse_op(g, dtype),
        dtype=dtype,
    )
    impls += _peer_impls(d, n, symmetric=True, dense=False)
    # one timed call after the checked one on the largest graphs (ARPACK takes minutes there)
    max_repeats = 1 if n >= BIG_N else SIZES[size]["max_repeats"]
    return Case(
        SUITE,
        f"sbm/n{n}/d{d}",
        params,
        build,
        reference,
        tuple(impls),
        tol=TOL,
        compare=sv_error,
        max_repeats=max_repeats,
    )


def _sbm_bulk_case(n, b, deg_in, deg_out, d, dtype, seed, size) -> Case:
    """A block model whose ``d`` cuts into the bulk, given to ``svds`` as a user would (CSR).

    ``b`` equal blocks give ``b`` eigenvalues (1 and ``b - 1`` block values) above a dense bulk;
    ``d > b`` cuts into the bulk, where the spectrum has no gap. The jaxcontext entries get the
    float32 scipy CSR matrix itself (converted inside the timed call, as for a user) and no
    ``hermitian``: ``"jaxcontext"`` is ``svds(A, d)`` with every other argument at its default.
    """
    params = dict(
        kind="sbm-bulk",
        problem="sbm",
        n=n,
        blocks=b,
        deg_in=deg_in,
        deg_out=deg_out,
        d=d,
        seed=seed,
        matrix="D^-1/2 W D^-1/2 (graph context), symmetric, passed as scipy CSR; d cuts the bulk",
        tol=TOL,
    )

    build, reference = _sbm_problem(params, dtype)

    def defaults(a):
        from jaxcontext.linalg import svds

        return _in_dtype(svds(a, d), dtype)

    def profiled(g):
        from jaxcontext.linalg import svds

        return svds(g.a32, d, profile=True)

    impls = [
        Impl(
            "jaxcontext",
            lambda g: (g.a32,),
            defaults,
            details=_profiled_details(profiled),
            probe_memory=False,
            note=f"svds(A, {d}) with A the scipy CSR matrix and every other argument at its "
            "default (tol = sqrt(eps), hermitian unset: probed)",
        )
    ]
    # the approximate methods (krylov, randomized; sklearn's randomized_svd) are left out: with no
    # gap at the cut their values are off by up to the spacing of the bulk (95% for jaxcontext's
    # 10 randomized rounds at 100k nodes), which says nothing new and fails the sanity bar
    for method in SIZES[size]["methods"]:
        if method not in ("lanczos",):
            continue
        label, tol = _METHOD_LABEL[method]
        impls.append(
            Impl(
                label,
                lambda g: (g.a32,),
                _svds_fn(method, d, hermitian=None, dtype=dtype),
                tol=tol,
                details=_jax_entry_details(
                    method, d, hermitian=None, dtype=dtype, op_of=lambda g: g.a32
                ),
                probe_memory=False,
                note=f"svds(A, method={method!r}, tol={TOL}) on the scipy CSR matrix",
            )
        )
    impls += [
        i
        for i in _peer_impls(d, n, symmetric=True, dense=False)
        if "randomized" not in i.name and "lowrank" not in i.name
    ]
    return Case(
        SUITE,
        f"sbm-bulk/n{n}/d{d}",
        params,
        build,
        reference,
        tuple(impls),
        tol=TOL,
        compare=sv_error,
        max_repeats=SIZES[size]["max_repeats"],
    )


def _knn_case(m, dim, k, d, dtype, seed, size) -> Case:
    params = dict(
        kind="knn",
        problem="knn",
        m=m,
        dim=dim,
        K=k,
        d=d,
        seed=seed,
        points="standard normal",
        matrix="diag(sqrt w) P diag(p)^-1/2 (kNN context)",
        tol=TOL,
    )

    def build():
        x = _seed(seed, "knn", m, dim).standard_normal((m, dim))
        return _sparse_problem(knn_matrix(x, k), False, dtype)

    def reference(g):
        keyp = {k_: params[k_] for k_ in ("problem", "m", "dim", "K", "d", "seed")}
        return cached(keyp, lambda: {"s": _sparse_reference(g.a64, d, False)})

    impls = _jax_impls(
        d,
        SIZES[size]["methods"],
        hermitian=False,
        nonhermitian=False,
        op_of=lambda g: _sparse_op(g, dtype),
        dtype=dtype,
    )
    impls += _peer_impls(d, m, symmetric=False, dense=False)
    return Case(
        SUITE,
        f"knn/m{m}/d{d}",
        params,
        build,
        reference,
        tuple(impls),
        tol=TOL,
        compare=sv_error,
        max_repeats=SIZES[size]["max_repeats"],
    )


def _rbf_build(m, dim, dtype, seed, *, materialise: bool) -> _Rbf:
    import jax.numpy as jnp

    x64, gamma = rbf_points(m, dim, _seed(seed, "rbf", m, dim))
    x = x64.astype(dtype)
    if m <= MATERIALISE_MAX:
        deg = rbf_degrees64(x, gamma)
    else:  # float64 row sums of a 100k kernel take minutes; one float32 matrix-free product
        from jaxcontext import kernels
        from jaxcontext import operators as ops

        kop = ops.kernel_operator(x, kernel=kernels.RBF(gamma=np.asarray(gamma, dtype)))
        deg = np.asarray(kop @ jnp.ones((m, 1), dtype), np.float64).ravel()
    dis = (1.0 / np.sqrt(deg)).astype(dtype)
    if not materialise:
        return _Rbf(x, gamma, dis, None, None, None)
    K = rbf_materialise(x, dtype.type(gamma), dis)
    return _Rbf(x, gamma, dis, K, lambda v: K @ v, lambda u: K @ u)


def _rbf_case(m, dim, d, dtype, seed, size) -> Case:
    import jax.numpy as jnp

    from jaxcontext import operators as ops

    params = dict(
        kind="rbf",
        problem="rbf",
        m=m,
        dim=dim,
        d=d,
        seed=seed,
        gamma=0.5,
        points="N(0, diag(1/(1+j)))",
        matrix="D^-1/2 K D^-1/2, K = exp(-gamma |x-y|^2), symmetric",
        tol=TOL,
    )

    def build():
        return _rbf_build(m, dim, dtype, seed, materialise=True)

    def reference(g):
        keyp = {k: params[k] for k in ("problem", "m", "dim", "d", "seed", "gamma")}
        keyp["dtype"] = str(dtype)
        return cached(
            keyp,
            lambda: {
                "s": _rbf_reference(g.a32, d, centered=False, seed=seed),
                "centered": _rbf_reference(g.a32, d, centered=True, seed=seed),
            },
        )

    def dense_op(g):
        return ops.dense(jnp.asarray(g.a32))

    def free_op(g):
        return _rbf_matrix_free(g.x, g.gamma, g.dis)

    def jax_impl(name, op_of, method, note, tol=None):
        # matrix-free solves are not profiled (each takes minutes; the kernel is the product)
        m_prof = method if op_of is dense_op else "none"
        return Impl(
            name,
            lambda g: (op_of(g),),
            _svds_fn(method, d, hermitian=True, dtype=dtype),
            tol=tol,
            details=_jax_entry_details(m_prof, d, hermitian=True, dtype=dtype, op_of=op_of),
            probe_memory=False,
            note=note,
        )

    impls = [
        jax_impl(
            "jaxcontext[dense K]",
            dense_op,
            "auto",
            f"svds(dense(K), tol={TOL}, hermitian=True) on the shared materialised K",
        ),
        jax_impl(
            "jaxcontext[dense K, lanczos]",
            dense_op,
            "lanczos",
            f"svds(dense(K), method='lanczos', tol={TOL}, hermitian=True)",
        ),
        jax_impl(
            "jaxcontext[matrix-free, lanczos]",
            free_op,
            "lanczos",
            "svds(diag(dis) @ kernel_operator(x, RBF) @ diag(dis), method='lanczos'): "
            "the kernel is recomputed tile by tile in every product",
        ),
        jax_impl(
            "jaxcontext[dense K, randomized]",
            dense_op,
            "randomized",
            f"svds(dense(K), method='randomized', tol={TOL}, hermitian=True)",
            tol=APPROX_TOL,
        ),
    ]
    methods = SIZES[size]["methods"]
    impls = [
        i
        for i in impls
        if (SIZES[size]["rbf_dense_lanczos"] or i.name != "jaxcontext[dense K, lanczos]")
        and ("randomized" in methods or "randomized" not in i.name)
    ]
    impls += _peer_impls(d, m, symmetric=True, dense=True)
    impls.append(
        _peer(
            "sklearn KernelPCA arpack",
            lambda g: (g.a32, d),
            _kernel_pca,
            f"KernelPCA(n_components={d}, kernel='precomputed', eigen_solver='arpack')"
            ".fit(K): centres K (a copy), then eigsh at tol=0",
            {"note": "centred H K H, compared with its own reference"},
            threaded=False,
        )
    )
    impls = [i for i in impls if i.name != "scipy svds arpack"]
    # one timed call after the checked one from 10k points on: a matrix-free solve recomputes the
    # kernel in every product (minutes at 20k on a 2-core CPU)
    max_repeats = 1 if m >= 10_000 else SIZES[size]["max_repeats"]
    return Case(
        SUITE,
        f"rbf/m{m}/d{d}",
        params,
        build,
        reference,
        tuple(impls),
        tol=TOL,
        compare=sv_error,
        max_repeats=max_repeats,
    )


def _rbf_free_case(m, dim, d, dtype, seed) -> Case:
    params = dict(
        kind="rbf-free",
        problem="rbf",
        m=m,
        dim=dim,
        d=d,
        seed=seed,
        gamma=0.5,
        points="N(0, diag(1/(1+j)))",
        matrix="D^-1/2 K D^-1/2 matrix-free (never materialised)",
        tol=TOL,
        error="no float64 reference at this size: rel.err is the certificate bound "
        "max_i r_i s_1 / s_i (Weyl: an eigenvalue lies within the residual of each Ritz value)",
    )

    def build():
        return _rbf_build(m, dim, dtype, seed, materialise=False)

    impls = (
        Impl(
            "jaxcontext[matrix-free, auto]",
            lambda g: (_rbf_matrix_free(g.x, g.gamma, g.dis),),
            _svds_fn("auto", d, hermitian=True, dtype=dtype),
            baseline=True,
            tol=APPROX_TOL,
            details=_jax_details,
            note=f"svds(op, {d}, tol={TOL}, hermitian=True): certified block Lanczos (block 64: "
            "each product recomputes the kernel tile by tile)",
        ),
    )
    return Case(
        SUITE,
        f"rbf-free/m{m}/d{d}",
        params,
        build,
        lambda g: None,
        impls,
        tol=APPROX_TOL,
        compare=sv_error,
        memory=True,
        max_repeats=1,
    )


def cases(size: str = "quick", *, dtype: Any = np.float32, seed: int = 0) -> list[Case]:
    """Return the solver cases at ``size`` (``"tiny"``, ``"quick"``, ``"full"``), built lazily."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    s = SIZES[size]
    out: list[Case] = []
    for i, (n, b, din, dout, d) in enumerate(s["sbm"]):
        out.append(_sbm_case(n, b, din, dout, d, dtype, seed, size, s["nonhermitian"] and i == 0))
    for n, b, din, dout, d in s["sbm_bulk"]:
        out.append(_sbm_bulk_case(n, b, din, dout, d, dtype, seed, size))
    for m, dim, k, d in s["knn"]:
        out.append(_knn_case(m, dim, k, d, dtype, seed, size))
    for m, dim, d in s["rbf"]:
        out.append(_rbf_case(m, dim, d, dtype, seed, size))
    for m, dim, d in s["rbf_free"]:
        out.append(_rbf_free_case(m, dim, d, dtype, seed))
    return out
