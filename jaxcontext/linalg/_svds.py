"""``svds``: the top-d singular triplets of any operator, certified by residuals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..operators import LinearOperator, as_operator
from ._chebyshev import chebyshev_solve
from ._common import ON_FAIL, as_key, blas_single_thread, default_tol, finish
from ._dense import dense_solve
from ._krylov import krylov_core
from ._lanczos import LanczosConfig, lanczos_core
from ._randomized import randomized_core
from ._spectrum import Spectrum

METHODS = ("auto", "dense", "randomized", "krylov", "lanczos", "chebyshev")
# auto: dense up to this size. Measured (2-core CPU, float32): RBF kernel 2000 x 2000, d = 16: numpy
# eigh 1.5 s against block Lanczos 43 ms; a 500 x 500 eigh takes ~30 ms.
DENSE_MAX_DIM = 500
DENSE_MAX_ENTRIES = 2**26


# auto: Chebyshev filtering when a product column costs at most this many flops per row (sparse
# graph and kNN operators); above it (dense, matrix-free kernels, wide compositions) block Lanczos,
# which needs 3-8x fewer products. Measured on a 2-core CPU: 100k-node SBM (50 nnz per row)
# chebyshev 3.1 s, lanczos 7.7 s; materialised RBF kernel 20k x 20k lanczos 1.6 s, chebyshev 12.6 s.
CHEAP_FLOPS_PER_ROW = 1000


def _children(op: Any) -> tuple | None:
    """The operators a composite ``op`` multiplies through (``None`` for a leaf operator)."""
    from .. import operators as ops
    from .._sharding import RowShardedOperator
    from ._chebyshev import _Gram

    if isinstance(op, (ops.TransposedOperator, RowShardedOperator, _Gram)):
        return (getattr(op, "op", None) or getattr(op, "local", None),)
    if isinstance(op, (ops.ProductOperator, ops.SumOperator, ops.HStackOperator)):
        return tuple(op.ops)
    return None


def _flops_per_column(op: Any) -> float:
    """Estimated flops of one product column (``A @ x``) of an operator, by its structure."""
    from .. import operators as ops
    from ._chebyshev import _Gram

    m, n = op.shape
    if isinstance(op, ops.SparseOperator):
        return 2.0 * float(op.vals.shape[0])
    if isinstance(op, ops.DiagonalOperator):
        return float(min(m, n))
    if isinstance(op, ops.LowRankOperator):
        return 2.0 * (m + n) * float(op.left.shape[1])
    if isinstance(op, ops.KernelOperator):
        return float(m) * n * (2.0 * op.x.shape[-1] + 20.0)
    kids = _children(op)
    if kids is not None:
        times = 2.0 if isinstance(op, _Gram) else 1.0  # a Gram operator multiplies twice
        return times * float(sum(_flops_per_column(o) for o in kids))
    return 2.0 * m * n  # dense or unknown


# lanczos: default block for operators that recompute a kernel in every product (matrix-free
# KernelOperator, alone or composed). Such a pass costs about (dim + 10) column products before its
# first column, so wide blocks amortise it. Measured (2-core CPU, float32, normalised RBF kernel on
# 20k points in 8-D, matrix-free, d = 64, tol 1e-4, first call): block 16 41.4 s (304 product
# columns), 32 25.4 s (352), 64 16.8 s (448). On the materialised 20k kernel block 16 stays best
# (2.4 s against 3.3 s at 64): a dense product has no per-pass cost to amortise.
KERNEL_BLOCK_MAX = 64


def _recomputes_kernel(op: Any) -> bool:
    """Whether a product with ``op`` evaluates a matrix-free kernel (a fixed cost per pass)."""
    from .. import operators as ops

    if isinstance(op, ops.KernelOperator):
        return True
    return any(_recomputes_kernel(o) for o in (_children(op) or ()))


def _check_int(value: Any, name: str, *, low: int = 1, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    v = int(value)
    if v < low or (high is not None and v > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: must be {allowed}, got {v}")
    return v


def _round_up(x: float, b: int) -> int:
    return int(math.ceil(x / b) * b)


def _lanczos_config(
    m: int,
    n: int,
    d: int,
    dtype: Any,
    tol: float,
    *,
    hermitian: bool,
    block_size: int | None,
    basis_size: int | None,
    maxiter: int | None,
    max_basis_bytes: int,
    kernel_pass: bool = False,
) -> tuple[LanczosConfig, list[str]]:
    notes: list[str] = []
    N = min(m, n)
    if block_size is not None:
        b = block_size
    elif kernel_pass:
        b = min(KERNEL_BLOCK_MAX, max(16, d))
        notes.append(
            f"block {b}: every product recomputes a matrix-free kernel, so wide blocks amortise it"
        )
    else:
        b = max(min(d, 16), min(d // 4, 64))
    if d + 2 * b > N:
        b_new = max(1, (N - d) // 2)
        notes.append(f"block size clamped from {b} to {b_new} (need d + 2 * block <= min(m, n) = {N})")
        b = b_new
    item = np.dtype(dtype).itemsize
    per_col = item * (n + (0 if hermitian else m))
    k_mem = max(1, max_basis_bytes // per_col)
    if basis_size is None:
        K = _round_up(max(10 * d, d + 8 * b), b)
        if K > k_mem:
            K = max((k_mem // b) * b, _round_up(d + 2 * b, b))
            notes.append(f"basis size {K} from max_basis_bytes={max_basis_bytes}")
    else:
        K = _round_up(basis_size, b)
    K_cap = ((N - b) // b) * b
    if K > K_cap:
        K = K_cap
        notes.append(f"basis size clamped to {K} (min(m, n) = {N})")
    if K < d + b:
        raise ValueError(
            f"basis_size: need at least d + block_size = {d + b} columns, got {K}; raise basis_size "
            "or max_basis_bytes, or use method='dense'"
        )
    k = min(max(_round_up(d, b), ((K // 2) // b) * b), K - b)
    g = b * max(1, math.ceil(K / (6 * b)))
    chunk = b * max(1, 128 // b)
    cfg = LanczosConfig(
        d=d,
        b=b,
        K=K,
        k=k,
        g=g,
        chunk=chunk,
        max_restarts=50 if maxiter is None else maxiter,
        first_check=min(_round_up(d + b, b), K),
        growth=0.1,
        reorth=None,
    )
    return cfg, notes


def svds(
    A: Any,
    d: int,
    *,
    key: Any = None,
    method: str = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    hermitian: bool = False,
    block_size: int | None = None,
    basis_size: int | None = None,
    oversampling: int = 10,
    on_fail: str = "warn",
    dense_float64: bool = False,
    max_basis_bytes: int = 2**30,
    bound: float | None = None,
) -> Spectrum:
    r"""Top-``d`` singular triplets ``A ~ U diag(s) V^T`` of an operator, with a residual certificate.

    Every method ends with fresh products that certify each triplet:
    ``residuals[i] = max(|A v_i - s_i u_i|, |A^T u_i - s_i v_i|) / s_1`` (see :func:`residuals`);
    a triplet has converged when ``residuals[i] <= tol``. Singular values whose residual is ``r``
    are within ``r s_1`` of a true one, and within about ``r^2 s_1 / gap`` when separated by ``gap``.

    Methods:
        * ``"dense"``: materialise (``A.to_dense()``) and call a full SVD (or ``eigh`` with
          ``hermitian=True``); ``dense_float64=True`` runs it in float64 with numpy on the host.
        * ``"randomized"``: randomized SVD with ``d + oversampling`` columns and power iterations,
          re-orthonormalised after every product; stops when every residual meets ``tol`` or after
          ``maxiter`` rounds (default 10). Cheap for fast-decaying spectra.
        * ``"krylov"``: randomized block Krylov of fixed depth ``maxiter`` (default 6) with block
          ``d + oversampling``, Rayleigh-Ritz on the whole Krylov space. One shot.
        * ``"lanczos"``: block Lanczos (``hermitian=True``) or block Golub-Kahan bidiagonalisation
          with full re-orthogonalisation, residual estimates from the Lanczos relation, thick
          restarts and locking; iterates until every triplet meets ``tol`` or ``maxiter`` restarts
          (default 50). For tight tolerances, slowly decaying and clustered spectra.
        * ``"chebyshev"``: Chebyshev-filtered subspace iteration (Zhou & Saad 2007) on ``A``
          (``hermitian=True``) or on the Gram operator ``A^T A`` / ``A A^T``: a short block Lanczos
          probe estimates the spectrum (eigenvalue counts from Gauss quadrature), which sets the block
          (all eigenvalues within 10% of the ``d``-th, so a cluster cut by ``d`` is taken whole) and
          the damping interval; then passes of a polynomial filter of adaptive degree, Householder QR
          and Rayleigh-Ritz until every residual meets ``tol`` or ``maxiter`` passes (default 30).
          Products dominate its cost (no large basis to re-orthogonalise): the fastest here on
          sparse graph and kNN operators. ``bound`` overrides the damping bound.
        * ``"auto"``: ``"dense"`` when ``min(m, n) <= 500`` or ``d > min(m, n) / 4`` (and the dense
          matrix has at most ``2**26`` entries); else ``"chebyshev"`` when a product is cheap (at
          most ~1000 flops per row and column: sparse graph and kNN operators) and ``"lanczos"``
          otherwise (dense, matrix-free kernels), which needs several times fewer products.
          ``info.reason`` says which and why. On a CPU the dense path calls numpy's LAPACK (XLA's
          CPU SVD is several times slower).

    ``hermitian=True`` declares ``A`` symmetric (graph contexts ``D^{-1/2} W D^{-1/2}``, symmetric
    kernels): the solvers work with ``A`` itself (eigenvalues ``lambda``), which converges much faster
    than ``A^T A``; singular values are ``|lambda|`` sorted descending, ``V`` holds the eigenvectors and
    ``U = V sign(lambda)``. Symmetry is not checked.

    Args:
        A: anything :func:`jaxcontext.operators.as_operator` accepts, shape ``(m, n)``.
        d: number of triplets, ``1 <= d <= min(m, n)``.
        key: PRNG key (``jax.random.key``, ``jax.random.PRNGKey``) or int seed; default 0, so results
            are deterministic.
        method: one of ``"auto"``, ``"dense"``, ``"randomized"``, ``"krylov"``, ``"lanczos"``,
            ``"chebyshev"``.
        tol: residual tolerance relative to ``s_1``; default ``sqrt(eps)`` of the operator's dtype
            (3.4e-4 for float32, 1.5e-8 for float64).
        maxiter: iteration budget (meaning per method, above).
        hermitian: ``A`` is symmetric; use the symmetric path.
        block_size: columns per block product (lanczos: default ``min(d, 16)``, more for large d,
            and ``min(max(d, 16), 64)`` when products recompute a matrix-free kernel;
            chebyshev: the filtered block, raised to d if smaller; default from the probe).
        basis_size: lanczos basis columns before a restart (default ``10 d``, capped by
            ``max_basis_bytes``).
        oversampling: extra columns for randomized and krylov (block ``d + oversampling``, clamped
            to ``min(m, n)``).
        on_fail: ``"warn"`` (:class:`NotConvergedWarning`), ``"raise"`` (:class:`NotConvergedError`)
            or ``"ignore"`` when some triplet misses ``tol``; ``info.converged`` always says which.
        dense_float64: dense method in float64 on the host.
        max_basis_bytes: memory budget of the lanczos basis.
        bound: chebyshev only: the damping bound ``a`` (eigenvalue magnitude, or squared singular
            value for the Gram operator, below which the spectrum is damped); default from the probe.

    Returns:
        :class:`Spectrum` ``(s, U, V, residuals, info)``.

    Raises:
        ValueError: bad ``d``, method, tolerance, shapes, an empty operator, or NaN/Inf produced
            by the operator.
        TypeError: a key or integer argument of the wrong type.
        NotConvergedError: with ``on_fail="raise"``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxcontext.linalg import svds
        >>> A = jnp.diag(jnp.arange(1.0, 6.0))
        >>> sp = svds(A, 2, method="dense")
        >>> sp.s.tolist()
        [5.0, 4.0]
        >>> bool(sp.info.converged.all())
        True
    """
    if isinstance(A, LinearOperator):
        op = A
    else:
        try:
            op = as_operator(A)
        except (TypeError, ValueError) as e:
            raise type(e)(f"svds: A is not a usable operator: {e}") from e
    shape = tuple(int(x) for x in op.shape)
    m, n = shape
    if m == 0 or n == 0:
        raise ValueError(f"svds: empty operator of shape {shape}; need m, n >= 1")
    dtype = np.dtype(op.dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"svds: operator dtype must be real floating, got {dtype}")
    N = min(m, n)
    d = _check_int(d, "d")
    if d > N:
        raise ValueError(f"d: must be at most min(m, n) = {N} for an operator of shape {shape}, got {d}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail: expected one of {ON_FAIL}, got {on_fail!r}")
    if hermitian and m != n:
        raise ValueError(f"hermitian=True needs a square operator, got shape {shape}")
    if tol is None:
        tol = default_tol(dtype)
    else:
        try:
            tol = float(tol)
        except (TypeError, ValueError):
            raise TypeError(f"tol: expected a positive float, got {tol!r}") from None
        if not (np.isfinite(tol) and tol > 0):
            raise ValueError(f"tol: expected a positive finite float, got {tol!r}")
    if maxiter is not None:
        maxiter = _check_int(maxiter, "maxiter")
    if block_size is not None:
        block_size = _check_int(block_size, "block_size", high=N)
    if basis_size is not None:
        basis_size = _check_int(basis_size, "basis_size", high=N)
    oversampling = _check_int(oversampling, "oversampling", low=0)
    max_basis_bytes = _check_int(max_basis_bytes, "max_basis_bytes")
    rkey = as_key(key)
    with blas_single_thread():
        return _solve(
            op, d, rkey, method=method, tol=tol, maxiter=maxiter, hermitian=hermitian,
            block_size=block_size, basis_size=basis_size, oversampling=oversampling,
            on_fail=on_fail, dense_float64=dense_float64, max_basis_bytes=max_basis_bytes,
            bound=bound,
        )


def _solve(
    op, d, rkey, *, method, tol, maxiter, hermitian, block_size, basis_size, oversampling,
    on_fail, dense_float64, max_basis_bytes, bound,
) -> Spectrum:
    m, n = op.shape
    N = min(m, n)
    dtype = np.dtype(op.dtype)
    reason = f"method={method!r} requested"
    if method == "auto":
        fits = m * n <= DENSE_MAX_ENTRIES
        if fits and N <= DENSE_MAX_DIM:
            method, reason = "dense", f"auto: min(m, n) = {N} <= {DENSE_MAX_DIM}"
        elif fits and 4 * d > N:
            method, reason = "dense", f"auto: d = {d} is more than a quarter of min(m, n) = {N}"
        else:
            per_row = _flops_per_column(op) / max(m, n)
            if per_row <= CHEAP_FLOPS_PER_ROW:
                method = "chebyshev"
                reason = (
                    f"auto: min(m, n) = {N} > {DENSE_MAX_DIM}, d = {d} small and cheap products "
                    f"(~{per_row:.0f} flops per row and column): Chebyshev-filtered subspace "
                    "iteration"
                )
            else:
                method = "lanczos"
                reason = (
                    f"auto: min(m, n) = {N} > {DENSE_MAX_DIM}, d = {d} small and costly products "
                    f"(~{per_row:.0f} flops per row and column): block Lanczos, fewest products"
                )
            if not fits and (N <= DENSE_MAX_DIM or 4 * d > N):
                reason += f" (dense form would exceed {DENSE_MAX_ENTRIES} entries)"
    common = dict(tol=tol, on_fail=on_fail, hermitian=hermitian)

    def dense(why: str) -> Spectrum:
        s, U, V, sign = dense_solve(
            op, d, hermitian=hermitian, float64=dense_float64, max_entries=max(m * n, 1)
        )
        return finish(
            op, s, U, V, lam_sign=sign, method="dense", reason=why, iterations=1,
            matvecs=0, restarts=0, block_size=n, basis_size=N, **common,
        )

    if method == "dense":
        return dense(reason)

    if method in ("randomized", "krylov"):
        l = min(d + oversampling, N)
        if l < d + oversampling:
            reason += f"; block clamped to min(m, n) = {N}"
        if method == "randomized":
            it = 10 if maxiter is None else maxiter
            s, U, V, sign, _, iters = randomized_core(
                op, rkey, tol, d=d, l=l, maxiter=it, hermitian=hermitian
            )
            iters = int(iters)
            mv = l * iters if hermitian else l * (1 + 2 * iters)
            return finish(
                op, s, U, V, lam_sign=sign, method="randomized", reason=reason, iterations=iters,
                matvecs=mv, restarts=0, block_size=l, basis_size=l, **common,
            )
        q = 6 if maxiter is None else maxiter
        q_cap = N // l - 1
        if q > q_cap:
            reason += f"; depth clamped from {q} to {max(q_cap, 0)} (Krylov space <= min(m, n))"
            q = max(q_cap, 0)
        s, U, V, sign = krylov_core(op, rkey, d=d, l=l, q=q, hermitian=hermitian)
        mv = l * (q + 1) if hermitian else l * (2 * q + 2)
        return finish(
            op, s, U, V, lam_sign=sign, method="krylov", reason=reason, iterations=q,
            matvecs=mv, restarts=0, block_size=l, basis_size=l * (q + 1), **common,
        )

    if method == "chebyshev":
        if bound is not None and not (np.isfinite(bound) and bound > 0):
            raise ValueError(f"bound: expected a positive finite float, got {bound!r}")
        if N < 64 or 4 * d > N:
            if m * n <= DENSE_MAX_ENTRIES:
                return dense(
                    reason + "; min(m, n) too small next to d for a filtered block, dense instead"
                )
            method = "lanczos"
            reason += "; block would not fit min(m, n), lanczos instead"
        else:
            r = chebyshev_solve(
                op, d, rkey, tol, hermitian=hermitian, block_size=block_size, maxiter=maxiter,
                bound=bound,
            )
            return finish(
                op, r.s, r.U, r.V, lam_sign=r.sign, method="chebyshev",
                reason=reason + "; " + r.note, iterations=r.passes, matvecs=r.matvecs, restarts=0,
                block_size=r.block, basis_size=r.block, **common,
            )

    # lanczos
    try:
        cfg, notes = _lanczos_config(
            m, n, d, dtype, tol, hermitian=hermitian, block_size=block_size,
            basis_size=basis_size, maxiter=maxiter, max_basis_bytes=max_basis_bytes,
            kernel_pass=_recomputes_kernel(op),
        )
    except ValueError:
        if m * n <= DENSE_MAX_ENTRIES and N < d + 2 * max(1, min(d, 16)):
            return dense(reason + "; min(m, n) too small for a Krylov basis, dense instead")
        raise
    if notes:
        reason += "; " + "; ".join(notes)
    s, U, V, sign, _, steps, restarts = lanczos_core(op, rkey, tol, cfg=cfg, hermitian=hermitian)
    steps = int(steps)
    mv = cfg.b * steps * (1 if hermitian else 2)
    return finish(
        op, s, U, V, lam_sign=sign, method="lanczos", reason=reason, iterations=steps,
        matvecs=mv, restarts=int(restarts), block_size=cfg.b, basis_size=cfg.K, **common,
    )
