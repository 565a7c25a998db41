"""Helpers shared by the solvers: keys, tolerances, sign convention, certification."""

from __future__ import annotations

import contextlib
import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._spectrum import (
    NotConvergedError,
    NotConvergedWarning,
    SolverInfo,
    Spectrum,
    _relative,
    residual_parts,
)

HIGHEST = jax.lax.Precision.HIGHEST
ON_FAIL = ("warn", "raise", "ignore")


@contextlib.contextmanager
def blas_single_thread():
    """On CPU, run the enclosed solve with OpenBLAS limited to one thread.

    jaxlib's CPU LAPACK kernels (Cholesky, triangular solve, ``eigh``, SVD) call into scipy's
    OpenBLAS, whose worker threads then compete with XLA's own intra-op threads. On a 2-core
    machine this made a 384 x 384 ``eigh`` inside a jitted solver take 2 s instead of 11 ms.
    Uses ``threadpoolctl`` when installed (a scikit-learn dependency); otherwise does nothing.
    """
    if jax.default_backend() != "cpu":
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def ix(*idx: Any) -> tuple[jax.Array, ...]:
    """Start indices for ``lax.dynamic_slice`` / ``dynamic_update_slice``, all as int32.

    The index arguments of those primitives must share one integer type; a Python ``0`` next to an
    int32 counter becomes int64 once ``jax_enable_x64`` is on, so every index goes through here.
    """
    return tuple(jnp.asarray(i, jnp.int32) for i in idx)


def mm(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` with ``Precision.HIGHEST`` (Gram, projection and Rayleigh-Ritz products)."""
    return jnp.matmul(a, b, precision=HIGHEST)


# Small dense SVDs (Rayleigh-Ritz problems, the dense path). On CPU, jnp.linalg.svd is LAPACK's
# gesdd: accurate to rounding. On NVIDIA GPUs JAX's default for matrices up to 1024 is cuSOLVER's
# Jacobi gesvdj, measured on an H200 (session 13, JAX 0.11.2, float32) on a 176 x 176 Golub-Kahan
# matrix: residuals |B y - theta x| 1.0e-5 and |X^T X - I| 1.1e-5 relative, 100x LAPACK's
# (7e-7), enough to spoil the Lanczos relation across restarts (bases orthonormal only to
# 1.7e-4, 49 of 64 triplets certified). Same matrix there, median of a jitted call: gesvdj
# 3.9 ms, the QR algorithm (gesvd) 14.6 ms (residual 2.5e-6), eigh of the Gram 1.6 ms (6e-7).
# Scripts: scripts/gpu_small_svd.py; figures in benchmarks/solvers/README.md.


def svd_gram(M: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``X, s, Y`` (descending ``s``) with ``M ~ X diag(s) Y^T``, from ``eigh(M^T M)``.

    ``y_i`` is an eigenvector of the Gram (backward stable), ``s_i = |M y_i|`` and
    ``x_i = M y_i / s_i``, so ``M y_i = s_i x_i`` holds to rounding and the other residual is
    ``|M^T x_i - s_i y_i| ~ eps |M|^2 / s_i``: as accurate as an SVD for the values above about
    ``sqrt(eps) |M|`` (every wanted value of a Lanczos solve at float32 tolerances), worse below.
    Columns with ``s_i = 0`` come back unnormalised (zero).
    """
    _, Y = jnp.linalg.eigh(mm(M.T, M))
    Y = Y[:, ::-1]
    MY = mm(M, Y)
    s = jnp.sqrt(jnp.sum(MY * MY, axis=0))
    return MY / jnp.where(s > 0, s, 1.0)[None, :], s, Y


def svd_small(M: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``X, s, Y`` (descending ``s``, thin) with ``M = X diag(s) Y^T``, accurate on every backend.

    LAPACK's gesdd on CPU; elsewhere the QR algorithm (``SvdAlgorithm.QR``), since JAX's default
    on GPUs (Jacobi) is 100x less accurate (see above). For one-off problems (a Rayleigh-Ritz
    step per pass, the dense path), where accuracy matters more than the few milliseconds.
    """
    return jax.lax.platform_dependent(M, cpu=_svd_lapack, default=_svd_qr)


def _svd_lapack(M):
    X, s, Yt = jnp.linalg.svd(M, full_matrices=False)
    return X, s, Yt.T


def _svd_qr(M):
    X, s, Yt = jax.lax.linalg.svd(M, full_matrices=False, algorithm=jax.lax.linalg.SvdAlgorithm.QR)
    return X, s, Yt.T


def as_key(key: Any) -> jax.Array:
    """Accept ``None`` (key 0), an int seed, a typed key or a raw ``uint32[2]`` PRNGKey."""
    if key is None:
        return jax.random.key(0)
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"key: expected a PRNG key or an int seed, got {key!r}")
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    arr = key if isinstance(key, jax.Array) else None
    if arr is None:
        try:
            arr = jnp.asarray(key)
        except TypeError:
            raise TypeError(
                f"key: expected jax.random.key(...), jax.random.PRNGKey(...) or an int seed, "
                f"got {type(key).__name__}"
            ) from None
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.shape != ():
            raise ValueError(f"key: expected a single key, got a key array of shape {arr.shape}")
        return arr
    if arr.dtype == jnp.uint32 and arr.shape == (2,):
        return jax.random.wrap_key_data(arr)
    raise TypeError(
        "key: expected jax.random.key(...), jax.random.PRNGKey(...) (uint32[2]) or an int seed, "
        f"got an array of dtype {arr.dtype} and shape {tuple(arr.shape)}"
    )


def default_tol(dtype: Any) -> float:
    """``sqrt(eps)`` of the dtype: 3.4e-4 for float32, 1.5e-8 for float64."""
    return float(np.sqrt(np.finfo(np.dtype(dtype)).eps))


def fix_signs(U: jax.Array, V: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flip column pairs so that the largest-magnitude entry of each ``U`` column is positive.

    (A tie between ``+t`` and ``-t`` keeps the sign.) From the column maxima and minima: an
    ``argmax`` over the long axis was a variadic reduction, 21 ms against 3.5 ms at 100k x 64 on
    CPU.
    """
    sgn = jnp.where(jnp.max(U, axis=0) >= -jnp.min(U, axis=0), 1.0, -1.0).astype(U.dtype)
    return U * sgn[None, :], V * sgn[None, :]


@functools.partial(jax.jit, static_argnames=("probe",))
def _signed_product(A, U, V, key, *, probe: int):
    """Signs fixed, then one block product ``A [V, Z]`` (``Z``: ``2 probe`` Gaussian columns).

    Its own compiled call, so the product is one materialised output: inside one program with the
    residuals, its three slices each took the sparse kernel's slot sum as a fused producer, and
    XLA materialised every gathered operand instead (1M-node block model, 20 slots x 36 columns:
    3.4 GB of temporaries against 0.55 GB; an optimisation barrier is removed before fusion on CPU).
    """
    U, V = fix_signs(U, V)
    Z = gaussian(key, (V.shape[0], 2 * probe), V.dtype) if probe else None
    return U, V, Z, A.matmat(V if Z is None else jnp.concatenate([V, Z], axis=1))


@functools.partial(jax.jit, static_argnames=("probe",))
def _hermitian_residuals(out, s, U, V, Z, lam_sign, *, probe: int):
    """Relative residuals and the symmetry probe from ``out = A [V, Z]``."""
    d = V.shape[1]
    av = out[:, :d]
    r1 = av - U * s[None, :]
    r2 = av * lam_sign[None, :] - V * s[None, :]
    n1 = jnp.sqrt(jnp.sum(r1 * r1, axis=0))
    n2 = jnp.sqrt(jnp.sum(r2 * r2, axis=0))
    if probe:
        X, Y = Z[:, :probe], Z[:, probe:]
        AX, AY = out[:, d : d + probe], out[:, d + probe :]
        D = mm(X.T, AY) - mm(AX.T, Y)

        def nrm(a):
            return jnp.sqrt(jnp.sum(a * a))

        sym = (nrm(D), nrm(X) * nrm(AY) + nrm(AX) * nrm(Y))
    else:
        sym = (jnp.zeros((), V.dtype), jnp.ones((), V.dtype))
    return _relative(n1, n2, s), sym


@jax.jit
def _general_certify(A, s, U, V):
    U, V = fix_signs(U, V)
    n1, n2 = residual_parts(A, s, U, V)
    return U, V, _relative(n1, n2, s), (jnp.zeros((), V.dtype), jnp.ones((), V.dtype))


def _certify(A, s, U, V, lam_sign, key, *, hermitian: bool, probe: int):
    """Signs, residual certificate and (``probe > 0``) the symmetry probe, from fresh products.

    For ``hermitian``, ``A^T u = A (sign * v)`` for symmetric ``A``: one block product gives both
    residuals, and ``2 probe`` Gaussian columns ride along in it to test that symmetry
    (:mod:`._symmetry`): ``(delta, scale)`` with ``rho = delta / scale``. Otherwise ``A v`` and
    ``A^T u`` (``residual_parts``).
    """
    if not hermitian:
        return _general_certify(A, s, U, V)
    U, V, Z, out = _signed_product(A, U, V, key, probe=probe)
    res, sym = _hermitian_residuals(out, s, U, V, Z, lam_sign, probe=probe)
    return U, V, res, sym


def finish(
    A: Any,
    s: jax.Array,
    U: jax.Array,
    V: jax.Array,
    *,
    lam_sign: jax.Array | None,
    tol: float,
    on_fail: str,
    method: str,
    reason: str,
    iterations: int,
    matvecs: int,
    restarts: int,
    block_size: int,
    basis_size: int,
    hermitian: bool,
    declared: bool = True,
    key: jax.Array | None = None,
    timer: Any = None,
) -> Spectrum:
    """Fix signs, certify with fresh products, check finiteness and convergence, build the result.

    ``hermitian`` says which path ran. When it was ``declared`` by the caller, the certificate's
    product also carries the symmetry probe (:mod:`._symmetry`) and a ValueError is raised when
    ``A`` is far from symmetric; when the symmetric path was chosen by the probe before the solve
    (``declared=False``), the certificate uses both products (``A v`` and ``A^T u``).
    """
    from ._symmetry import ASYMMETRIC_EPS, PROBE_COLUMNS

    d = int(s.shape[0])
    sign = jnp.ones((d,), s.dtype) if lam_sign is None else lam_sign
    sym_cert = hermitian and declared
    probe = PROBE_COLUMNS if sym_cert else 0
    key = jax.random.key(0) if key is None else key
    if timer is not None:
        U, V, res, (delta, scale) = timer.run(
            "certificate", _certify, A, s, U, V, sign, key, hermitian=sym_cert, probe=probe
        )
    else:
        U, V, res, (delta, scale) = _certify(
            A, s, U, V, sign, key, hermitian=sym_cert, probe=probe
        )
    matvecs = int(matvecs) + (d + 2 * probe if sym_cert else 2 * d)
    res_np = np.asarray(res)
    if probe:
        delta, scale = float(delta), float(scale)
        eps = float(np.finfo(np.dtype(s.dtype)).eps)
        rho = delta / scale if scale > 0 else 0.0
        if np.isfinite(rho) and rho > ASYMMETRIC_EPS * eps:
            raise ValueError(
                f"hermitian=True, but A is not symmetric: a randomised probe found "
                f"|X^T A Y - (A X)^T Y| / (|X| |A Y| + |A X| |Y|) = {rho:.2e}, {rho / eps:.3g} "
                f"times eps of {np.dtype(s.dtype).name} (symmetric operators give at most a few "
                f"eps; the limit is {ASYMMETRIC_EPS:g}); the symmetric solvers' values would be "
                "wrong. Pass hermitian=False (or leave it unset) for a non-symmetric operator"
            )
    if not (np.all(np.isfinite(res_np)) and bool(jnp.all(jnp.isfinite(s)))):
        raise ValueError(
            f"svds ({method}): the result contains NaN or Inf; the operator produced non-finite "
            "values in its products (check its entries, kernel parameters and scaling)"
        )
    converged = res_np <= tol
    info = SolverInfo(
        method=method,
        reason=reason,
        iterations=int(iterations),
        matvecs=matvecs,
        restarts=int(restarts),
        converged=converged,
        tol=float(tol),
        block_size=int(block_size),
        basis_size=int(basis_size),
        hermitian=bool(hermitian),
    )
    out = Spectrum(s=s, U=U, V=V, residuals=res, info=info)
    report_convergence(out, on_fail, stacklevel=4)
    return out


def report_convergence(out: Spectrum, on_fail: str, *, stacklevel: int = 3) -> None:
    """Warn (``on_fail="warn"``) or raise (``"raise"``) when a triplet of ``out`` missed its tol."""
    info = out.info
    converged = np.asarray(info.converged)
    if converged.all() or on_fail == "ignore":
        return
    d = converged.size
    missed = int(d - converged.sum())
    method = info.method
    msg = (
        f"svds ({method}): {missed} of {d} triplets missed tol={info.tol:.3g} after "
        f"{int(info.iterations)} iterations ({info.matvecs} matvecs); worst residual "
        f"{float(np.max(np.asarray(out.residuals))):.3g} (relative to s_1). "
        + ("Raise maxiter." if method in ("lanczos", "chebyshev") else
           "Raise maxiter, or use method='chebyshev' or 'lanczos'.")
    )
    if on_fail == "raise":
        raise NotConvergedError(msg)
    warnings.warn(msg, NotConvergedWarning, stacklevel=stacklevel)


def sort_desc(vals: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Indices sorting ``vals`` descending, invalid entries last."""
    keyv = -vals
    if valid is not None:
        keyv = jnp.where(valid, keyv, jnp.inf)
    return jnp.argsort(keyv, stable=True)


def _mix32(x: jax.Array) -> jax.Array:
    """A 32-bit integer finaliser (xor-shift-multiply): unrelated outputs for consecutive inputs."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _seeds(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    data = jax.random.key_data(key).reshape(-1).astype(jnp.uint32)
    s0 = _mix32(data[0] ^ jnp.uint32(0x9E3779B9))
    return s0, _mix32(data[-1] + s0)


def uniform(key: jax.Array, shape: tuple[int, int], dtype: Any) -> jax.Array:
    """Unit-variance uniform block on ``(-sqrt 3, sqrt 3)`` from one hash per entry.

    For start blocks whose only job is to be generic: a continuous law with bounded density
    meets every fixed direction with probability one and anti-concentrates like a Gaussian, at
    about a fifth of :func:`gaussian`'s cost (no logarithm or cosine, one hash instead of two:
    100k x 127 float32 on 2 CPU cores, 16 ms against 82 ms). Deterministic for a key.
    """
    s0, s1 = _seeds(key)
    rows, cols = shape
    i = jax.lax.broadcasted_iota(jnp.uint32, (rows, cols), 0)
    j = jax.lax.broadcasted_iota(jnp.uint32, (rows, cols), 1)
    a = _mix32(_mix32((i * jnp.uint32(cols) + j) ^ s0) + s1)
    # 24-bit midpoints in (0, 1), symmetric about 1/2
    u = ((a >> 8).astype(jnp.float32) + 0.5) * (1.0 / 16777216.0)
    return ((u - 0.5) * (2.0 * 3.0**0.5)).astype(dtype)


def gaussian(key: jax.Array, shape: tuple[int, int], dtype: Any) -> jax.Array:
    """Standard normal block from a counter-based hash seeded by ``key`` (Box-Muller).

    Used for start blocks and replacement directions: a few elementwise integer ops, so it compiles
    in milliseconds (``jax.random.normal`` costs seconds of XLA compile time on CPU) and stays
    partitionable. Deterministic for a key; not ``jax.random``'s stream.
    """
    s0, s1 = _seeds(key)
    rows, cols = shape
    i = jax.lax.broadcasted_iota(jnp.uint32, (rows, cols), 0)
    j = jax.lax.broadcasted_iota(jnp.uint32, (rows, cols), 1)
    ctr = i * jnp.uint32(2 * cols) + 2 * j
    a = _mix32(_mix32(ctr ^ s0) + s1)
    b = _mix32(_mix32((ctr + 1) ^ s0) + s1)
    # 24-bit uniforms in (0, 1]
    u1 = ((a >> 8).astype(jnp.float32) + 1.0) * (1.0 / 16777216.0)
    u2 = (b >> 8).astype(jnp.float32) * (1.0 / 16777216.0)
    z = jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * jnp.pi * u2)
    return z.astype(dtype)
