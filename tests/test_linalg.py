"""Tests for jaxcontext.linalg: svds (every method), orthonormalize, residual certificates.

References are float64 numpy. JAX runs in float32 (x64 stays off, conftest.py); tests taking the
``precision`` fixture run twice, the second time inside ``jax.enable_x64(True)`` with float64
operators, where tolerances tighten with the dtype's eps (tol 1e-12: values to about 1e-12 and
subspaces to 1e-8 of float64 LAPACK). Shapes are shared between tests so that each jitted solver
compiles once per method and dtype (compilation dominates the runtime here).
"""

import warnings
from math import comb

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sps

from jaxcontext import kernels, linalg
from jaxcontext import operators as ops
from jaxcontext.linalg import (
    NotConvergedError,
    NotConvergedWarning,
    SolverInfo,
    Spectrum,
    orthonormalize,
    residuals,
    svds,
)
from jaxcontext.linalg._krylov import krylov_core
from jaxcontext.linalg._lanczos import lanczos_core
from jaxcontext.linalg._randomized import randomized_core

M, N, D = 160, 120, 6  # general problems
NS = 150  # symmetric problems
EPS32 = float(np.finfo(np.float32).eps)
ITERATIVE = ("randomized", "krylov", "lanczos", "chebyshev")
EXACT = ("dense", "lanczos", "chebyshev")


def solver_tol(dtype):
    """The tolerance the method tests ask for: 1e-5 in float32, 1e-12 in float64."""
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def ortho_atol(dtype):
    """Orthonormality tolerance: 2e-5 in float32 (as before), 1e-12 in float64."""
    return 2e-5 if np.dtype(dtype) == np.float32 else 1e-12


def subspace_distance(X, Y):
    """``|(I - Y Y^T) X|_2`` for orthonormal columns (the sine of the largest principal angle)."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    return float(np.linalg.norm(X - Y @ (Y.T @ X), 2))


def check_dtypes(sp, dtype):
    for name in ("s", "U", "V", "residuals"):
        assert getattr(sp, name).dtype == np.dtype(dtype), (name, getattr(sp, name).dtype)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def with_spectrum(rng, m, n, s, *, vectors=False):
    """U diag(s) V^T in float64 with random orthonormal U (m x r) and V (n x r)."""
    r = len(s)
    U = np.linalg.qr(rng.standard_normal((m, r)))[0]
    V = np.linalg.qr(rng.standard_normal((n, r)))[0]
    A = (U * s) @ V.T
    return (A, U, V) if vectors else A


def symmetric_with_eigs(rng, n, lam, *, vectors=False):
    Q = np.linalg.qr(rng.standard_normal((n, len(lam))))[0]
    A = (Q * lam) @ Q.T
    return (A, Q) if vectors else A


SPECTRA = {
    "geometric": lambda r: 0.8 ** np.arange(r),
    "polynomial": lambda r: 1.0 / (1.0 + np.arange(r)) ** 2,
    "clustered": lambda r: np.r_[
        1.0, 0.9 + 1e-3 * np.arange(6)[::-1], 0.5 * 0.7 ** np.arange(r - 7)
    ],
    "plateau_gap": lambda r: np.r_[np.full(D, 1.0), 0.3 * 0.9 ** np.arange(r - D)],
}


def check_orthonormal(X, atol=2e-5):
    X = np.asarray(X, np.float64)
    np.testing.assert_allclose(X.T @ X, np.eye(X.shape[1]), atol=atol)


def check_spectrum(sp, ref_s, *, d, tol_s, A64=None):
    dtype = np.dtype(sp.s.dtype)
    eps = float(np.finfo(dtype).eps)
    s = np.asarray(sp.s, np.float64)
    assert s.shape == (d,)
    assert np.all(np.diff(s) <= 1e-6 * s[0]), "singular values must be descending"
    np.testing.assert_allclose(s, ref_s[:d], rtol=0, atol=tol_s * ref_s[0])
    check_orthonormal(sp.U, ortho_atol(dtype))
    check_orthonormal(sp.V, ortho_atol(dtype))
    if A64 is not None:  # certificate: reported residuals equal recomputed float64 ones
        U = np.asarray(sp.U, np.float64)
        V = np.asarray(sp.V, np.float64)
        r1 = np.linalg.norm(A64 @ V - U * s, axis=0)
        r2 = np.linalg.norm(A64.T @ U - V * s, axis=0)
        r = np.maximum(r1, r2) / s[0]
        np.testing.assert_allclose(np.asarray(sp.residuals), r, rtol=0.05, atol=20 * eps)


# --------------------------------------------------------------------------------------------------
# public surface
# --------------------------------------------------------------------------------------------------
def test_public_names():
    for name in linalg.__all__:
        assert hasattr(linalg, name), name
    assert issubclass(NotConvergedWarning, UserWarning)
    assert Spectrum._fields == ("s", "U", "V", "residuals", "info")
    assert "converged" in SolverInfo._fields and "matvecs" in SolverInfo._fields


# --------------------------------------------------------------------------------------------------
# orthonormalize
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cond", [1.0, 1e3, 1e6])
def test_orthonormalize_against_basis(rng, cond):
    n, k, p = 500, 12, 20
    X = with_spectrum(rng, n, k, np.logspace(0, -np.log10(cond), k))
    B = np.linalg.qr(rng.standard_normal((n, p)))[0]
    X = X + B @ rng.standard_normal((p, k))
    Q, R, C, deficient = orthonormalize(jnp.asarray(X, jnp.float32), jnp.asarray(B, jnp.float32))
    Q = np.asarray(Q, np.float64)
    check_orthonormal(Q, atol=5e-6)
    assert np.abs(B.T @ Q).max() < 5e-6
    recon = B @ np.asarray(C, np.float64) + Q @ np.asarray(R, np.float64)
    assert np.abs(recon - X).max() < 1e-5 * np.abs(X).max()
    assert not bool(deficient[0])


def test_orthonormalize_nearly_orthonormal_block_takes_one_pass(rng, precision):
    """Within NEAR_ORTHONORMAL of orthonormal: one plain CholeskyQR pass, still orthonormal."""
    from jaxcontext.linalg._orth import NEAR_ORTHONORMAL, _cholqr

    n, k = 2000, 24
    eps = float(np.finfo(precision).eps)
    Q0 = np.linalg.qr(rng.standard_normal((n, k)))[0]
    X = (Q0 + 0.02 * rng.standard_normal((n, k)) / np.sqrt(n)).astype(precision)
    X = X * np.linspace(0.5, 3.0, k).astype(precision)  # columns of unequal norm
    g = np.asarray(X, np.float64).T @ np.asarray(X, np.float64)
    dn = np.sqrt(np.diag(g))
    assert np.abs(g / np.outer(dn, dn) - np.eye(k)).max() < NEAR_ORTHONORMAL
    o = orthonormalize(jnp.asarray(X))
    assert o.Q.dtype == precision
    one = _cholqr(jnp.asarray(X))[0]
    # exactly the one-pass result (three passes would round differently)
    np.testing.assert_array_equal(np.asarray(o.Q), np.asarray(one))
    check_orthonormal(o.Q, atol=50 * eps)
    np.testing.assert_allclose(
        np.asarray(o.Q @ o.R, np.float64), X, atol=50 * eps * np.abs(X).max()
    )
    # a far-from-orthonormal block still takes the full passes (and ends orthonormal)
    Y = with_spectrum(rng, n, k, np.logspace(0, -5, k)).astype(precision)
    oy = orthonormalize(jnp.asarray(Y))
    check_orthonormal(oy.Q, atol=50 * eps)
    one_y = np.asarray(_cholqr(jnp.asarray(Y))[0])  # NaN in float32, 1e-6 off in float64
    assert not np.allclose(np.asarray(oy.Q), one_y, rtol=0, atol=100 * eps)


def test_orthonormalize_rank_deficient_fills_with_key():
    n = 64
    X = np.zeros((n, 4), np.float32)
    X[:, 0] = 1.0
    X[:, 1] = 1.0  # duplicate column
    X[:, 2] = np.arange(n)  # independent
    # column 3 is zero
    o = orthonormalize(X, key=jax.random.key(3))
    assert np.asarray(o.deficient).tolist() == [False, True, False, True]
    check_orthonormal(o.Q, atol=1e-6)
    np.testing.assert_allclose(np.asarray(o.Q @ o.R), X, atol=1e-4 * n)
    o2 = orthonormalize(X)  # no key: flagged, not replaced
    assert np.asarray(o2.deficient).tolist() == [False, True, False, True]
    assert float(jnp.linalg.norm(o2.Q[:, 3])) == 0.0


@pytest.mark.parametrize("with_basis", [False, True])
def test_orthonormalize_replacement_keeps_x_equal_to_bc_plus_qr(rng, with_basis):
    """With dependent columns replaced, ``X = B C + Q R`` still holds for every column.

    A dependent column's first-round ``q`` is a normalised rounding remainder, and the columns
    after it have components along it; the replacement round must orthonormalise the projected
    ``X`` (not the first round's ``Q``), or those components are lost (it lost 3% of a column).
    """
    n = 200
    B = np.linalg.qr(rng.standard_normal((n, 10)))[0].astype(np.float32)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    X[:, 4] = X[:, 0] - 3 * X[:, 1]  # dependent on earlier columns
    if with_basis:
        X[:, 2] = 2.0 * B[:, 3]  # dependent on the basis
    basis = B if with_basis else None
    for kw in (dict(key=jax.random.key(1)), dict(fill=rng.standard_normal((n, 6)))):
        o = orthonormalize(X, basis, **kw)
        want = [False, False, with_basis, False, True, False]
        assert np.asarray(o.deficient).tolist() == want
        Q, R = np.asarray(o.Q, np.float64), np.asarray(o.R, np.float64)
        check_orthonormal(Q, atol=2e-6)
        fit = Q @ R
        if with_basis:
            assert np.abs(B.T @ Q).max() < 1e-6
            fit = fit + B @ np.asarray(o.C, np.float64)
        err = np.linalg.norm(fit - X, axis=0) / np.linalg.norm(X, axis=0)
        assert err.max() < 1e-5, err


def test_orthonormalize_fill_may_be_drawn_lazily():
    """A callable fill (drawn inside the replacement loop) replaces like the same block given."""
    from jaxcontext.linalg._common import gaussian
    from jaxcontext.linalg._orth import _orthonormalize

    n = 64
    X = np.zeros((n, 4), np.float32)
    X[:, 0] = 1.0
    X[:, 1] = 1.0  # duplicate column
    X[:, 2] = np.arange(n)
    G = gaussian(jax.random.key(3), (n, 4), jnp.float32)
    calls = []

    def lazy():
        calls.append(1)  # traced once, inside the loop body
        return G

    kw = dict(reorth=None, rank_tol=1e-5)
    eager = _orthonormalize(jnp.asarray(X), None, fill=G, **kw)
    drawn = jax.jit(lambda x: _orthonormalize(x, None, fill=lazy, **kw))(jnp.asarray(X))
    assert calls == [1]
    assert np.asarray(drawn.deficient).tolist() == [False, True, False, True]
    np.testing.assert_array_equal(np.asarray(drawn.Q), np.asarray(eager.Q))
    check_orthonormal(drawn.Q, atol=1e-6)


def test_uniform_start_block_law(precision):
    """``uniform``: unit variance, zero mean, bounded by sqrt 3, deterministic, in the dtype."""
    from jaxcontext.linalg._common import uniform

    a = uniform(jax.random.key(0), (20000, 16), precision)
    assert a.dtype == precision and a.shape == (20000, 16)
    x = np.asarray(a, np.float64)
    assert abs(x.mean()) < 0.02 and abs(x.var() - 1.0) < 0.02
    assert np.abs(x).max() < np.sqrt(3.0) and np.abs(x).max() > 1.7
    # columns and keys are unrelated; the same key gives the same block
    c = np.corrcoef(x.T)
    assert np.abs(c - np.eye(16)).max() < 0.05
    np.testing.assert_array_equal(np.asarray(uniform(jax.random.key(0), (20000, 16), precision)), x)
    y = np.asarray(uniform(jax.random.key(1), (20000, 16), precision), np.float64)
    assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.02


def test_fix_signs_makes_each_largest_entry_positive(rng, precision):
    from jaxcontext.linalg._common import fix_signs

    U = rng.standard_normal((500, 7)).astype(precision)
    V = rng.standard_normal((300, 7)).astype(precision)
    U[17, 2] = -50.0  # a negative largest entry: the pair is flipped
    U[3, 4] = 50.0
    Uf, Vf = fix_signs(jnp.asarray(U), jnp.asarray(V))
    assert Uf.dtype == precision and Vf.dtype == precision
    piv = U[np.argmax(np.abs(U), axis=0), np.arange(7)]
    sgn = np.where(piv < 0, -1.0, 1.0)
    assert sgn[2] == -1.0 and sgn[4] == 1.0
    np.testing.assert_array_equal(np.asarray(Uf), U * sgn)
    np.testing.assert_array_equal(np.asarray(Vf), V * sgn)


def test_orthonormalize_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        orthonormalize(jnp.ones(5))
    with pytest.raises(ValueError, match="basis"):
        orthonormalize(jnp.ones((5, 2)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="exceed"):
        orthonormalize(jnp.ones((5, 3)), jnp.eye(5)[:, :3])
    with pytest.raises(ValueError, match="reorth"):
        orthonormalize(jnp.ones((5, 2)), jnp.eye(5)[:, :1], reorth=2.0)


# --------------------------------------------------------------------------------------------------
# every method on prescribed spectra (general operators)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spectrum", sorted(SPECTRA))
@pytest.mark.parametrize("method", ["dense", *ITERATIVE])
def test_methods_on_prescribed_spectra(rng, precision, method, spectrum):
    s_ref = SPECTRA[spectrum](N)
    A64, U0, V0 = with_spectrum(rng, M, N, s_ref, vectors=True)
    tol = solver_tol(precision)
    eps = float(np.finfo(precision).eps)
    kw = {"tol": tol} if method != "dense" else {}
    if method == "krylov":
        kw["maxiter"] = 6
    if method == "randomized":
        kw["maxiter"] = 30
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        sp = svds(A64.astype(precision), D, method=method, **kw)
    assert sp.info.method == method
    check_dtypes(sp, precision)
    conv = np.asarray(sp.info.converged)
    if method in ("dense", "lanczos", "krylov") or (method in EXACT and precision == np.float64):
        assert conv.all(), (method, spectrum, np.asarray(sp.residuals))
    # values within tol relative (plus rounding) where the method met tol
    err = np.abs(np.asarray(sp.s, np.float64) - s_ref[:D]) / s_ref[0]
    assert np.all(err[conv] <= tol + 20 * eps), err
    check_orthonormal(sp.U, ortho_atol(precision))
    check_orthonormal(sp.V, ortho_atol(precision))
    check_spectrum(sp, s_ref, d=D, tol_s=1.0, A64=A64)  # certificate == recomputed
    if precision == np.float64 and method in EXACT:  # the float64 LAPACK subspaces, to 1e-8
        assert subspace_distance(sp.U, U0[:, :D]) <= 1e-8
        assert subspace_distance(sp.V, V0[:, :D]) <= 1e-8
    # sign convention: the largest-magnitude entry of every column of U is positive
    U = np.asarray(sp.U)
    assert np.all(U[np.abs(U).argmax(0), np.arange(D)] > 0)


def test_residuals_function_matches_certificate(rng):
    A64 = with_spectrum(rng, M, N, SPECTRA["geometric"](N))
    A = jnp.asarray(A64, jnp.float32)
    sp = svds(A, D, method="lanczos")
    np.testing.assert_allclose(residuals(A, sp.s, sp.U, sp.V), sp.residuals, rtol=1e-3, atol=1e-7)
    # a perturbed triplet has a larger residual
    r = residuals(A, sp.s * 1.01, sp.U, sp.V)
    expected = 0.01 * np.asarray(sp.s) / float(sp.s[0])  # |A v - 1.01 s u| = 0.01 s
    np.testing.assert_allclose(np.asarray(r), expected, rtol=1e-2)
    with pytest.raises(ValueError, match="residuals"):
        residuals(A, sp.s, sp.U[:, :2], sp.V)


def test_dense_float64_option(rng):
    A64 = with_spectrum(rng, M, N, SPECTRA["polynomial"](N))
    sp = svds(A64.astype(np.float32), D, method="dense", dense_float64=True)
    ref = np.linalg.svd(A64.astype(np.float32), compute_uv=False)[:D]
    np.testing.assert_allclose(np.asarray(sp.s), ref, rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# symmetric path
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dense", *ITERATIVE])
def test_hermitian_negative_eigenvalues(rng, precision, method):
    # |lambda| sorted: 1, -0.9, 0.8, -0.7, ... ; singular values are |lambda|
    lam = np.array([1.0, -0.95, 0.9, -0.85, 0.8, -0.75, 0.5, -0.45, 0.3, 0.1])
    A64, Q = symmetric_with_eigs(rng, NS, lam, vectors=True)
    tol = solver_tol(precision)
    eps = float(np.finfo(precision).eps)
    kw = {"tol": tol}
    if method == "randomized":
        kw["maxiter"] = 60
    sp = svds(A64.astype(precision), D, method=method, hermitian=True, **kw)
    assert sp.info.hermitian
    assert sp.info.converged.all()
    check_dtypes(sp, precision)
    check_spectrum(sp, np.abs(lam), d=D, tol_s=tol + 20 * eps, A64=A64)
    # U = V sign(lambda)
    signs = np.sign(lam[:D])
    np.testing.assert_allclose(np.asarray(sp.U), np.asarray(sp.V) * signs, atol=1e-6 * tol / 1e-5)
    if precision == np.float64 and method in EXACT:
        assert subspace_distance(sp.V, Q[:, :D]) <= 1e-8


def test_hermitian_needs_square():
    with pytest.raises(ValueError, match="square"):
        svds(jnp.ones((5, 4)), 1, hermitian=True)


# --------------------------------------------------------------------------------------------------
# known spectra
# --------------------------------------------------------------------------------------------------
def cycle_operator(n, dtype=np.float32):
    i = np.arange(n)
    ij = (np.r_[i, i], np.r_[(i + 1) % n, (i - 1) % n])
    W = sps.coo_matrix((np.ones(2 * n), ij), shape=(n, n))
    deg = np.asarray(W.sum(1)).ravel()
    dis = (1.0 / np.sqrt(deg)).astype(dtype)
    return ops.sparse_from_scipy(W, dtype=dtype).scale(left=dis, right=dis)


@pytest.mark.parametrize("hermitian", [True, False])
def test_cycle_graph(precision, hermitian):
    _check_cycle_graph(precision, hermitian)


def _check_cycle_graph(precision, hermitian):
    # |cos(2 pi k / n)|: 1 twice, then four-fold clusters with gaps ~1e-3 (restarts needed)
    n, d = NS, 7
    Z = cycle_operator(n, precision)
    tol = solver_tol(precision)
    sp = svds(Z, d, method="lanczos", hermitian=hermitian, tol=tol)
    assert sp.info.converged.all() and sp.info.restarts > 0
    check_dtypes(sp, precision)
    ref = np.sort(np.abs(np.cos(2 * np.pi * np.arange(n) / n)))[::-1]
    np.testing.assert_allclose(np.asarray(sp.s), ref[:d], atol=2 * tol)
    check_orthonormal(sp.U, ortho_atol(precision))
    check_orthonormal(sp.V, ortho_atol(precision))


def test_balanced_labels():
    # label context Z = P diag(p)^-1/2 / sqrt(m): C classes give C singular values 1 (the constant
    # pair included), the rest 0
    m, C = 120, 5
    y = np.arange(m) % C
    P = np.eye(C)[y]
    p = P.mean(0)
    Z = P / np.sqrt(p) / np.sqrt(m)
    for method in ("dense", "randomized"):
        sp = svds(Z.astype(np.float32), C, method=method, tol=1e-5)
        np.testing.assert_allclose(np.asarray(sp.s), np.ones(C), atol=1e-5)
        assert sp.info.converged.all()
    # the m x m dual kernel Z Z^T (rank C, multiplicity C): Krylov bases must refill
    K = ops.dense((Z @ Z.T).astype(np.float32))
    sp = svds(K, C, method="lanczos", hermitian=True, tol=1e-5)
    np.testing.assert_allclose(np.asarray(sp.s), np.ones(C), atol=1e-5)
    check_orthonormal(sp.V)


def test_hypercube_bit_flips():
    Dim, p = 7, 0.1
    x = np.arange(2**Dim)
    ham = np.array([[bin(a ^ b).count("1") for b in x] for a in x])
    P = p**ham * (1 - p) ** (Dim - ham)  # symmetric, doubly stochastic: Z = P
    ref = np.concatenate([np.full(comb(Dim, k), (1 - 2 * p) ** k) for k in range(Dim + 1)])
    ref = np.sort(ref)[::-1]
    d = 1 + Dim + 3  # 1, (1-2p) x Dim, (1-2p)^2 x 3: multiplicities inside the block
    for method in ("dense", "lanczos"):
        sp = svds(P.astype(np.float32), d, method=method, hermitian=True, tol=1e-5)
        np.testing.assert_allclose(np.asarray(sp.s), ref[:d], atol=2e-5)
        check_orthonormal(sp.V)


def test_kernel_operator_matches_dense(rng):
    X = rng.standard_normal((NS, 3)).astype(np.float32)
    Kop = ops.kernel_operator(X, kernel=kernels.RBF(gamma=0.5), block_rows=64)
    Kd = np.asarray(Kop.to_dense(), np.float64)
    ref = np.sort(np.abs(np.linalg.eigvalsh(Kd)))[::-1]
    sp = svds(Kop, D, method="lanczos", hermitian=True, tol=1e-5)
    np.testing.assert_allclose(np.asarray(sp.s), ref[:D], rtol=0, atol=1e-5 * ref[0] + 1e-5)
    assert sp.info.converged.all()
    check_spectrum(sp, ref, d=D, tol_s=1e-4, A64=Kd)
    # products recompute the kernel: a wide default block amortises each pass, also when composed
    wide = min(64, max(16, D), (NS - D) // 2)
    assert sp.info.block_size == wide and "matrix-free kernel" in sp.info.reason
    w = rng.uniform(0.5, 1.5, NS).astype(np.float32)
    comp = ops.product(ops.diag(w), Kop, ops.diag(w))
    sc = svds(comp, D, method="lanczos", hermitian=True, tol=1e-5)
    assert sc.info.block_size == wide
    ref_c = np.sort(np.abs(np.linalg.eigvalsh(w[:, None] * Kd * w[None, :])))[::-1]
    np.testing.assert_allclose(np.asarray(sc.s), ref_c[:D], rtol=0, atol=1e-5 * ref_c[0] + 1e-5)
    # the same matrix stored densely keeps the narrow default block (no per-pass cost)
    sd = svds(ops.dense(Kd.astype(np.float32)), D, method="lanczos", hermitian=True, tol=1e-5)
    assert sd.info.block_size < wide and "matrix-free kernel" not in sd.info.reason


# --------------------------------------------------------------------------------------------------
# convergence reporting, determinism, auto, compilation
# --------------------------------------------------------------------------------------------------
def test_unmet_tolerance_is_reported(rng):
    A = jnp.asarray(with_spectrum(rng, M, N, SPECTRA["polynomial"](N)), jnp.float32)
    with pytest.warns(NotConvergedWarning, match=r"of 6 triplets missed tol"):
        sp = svds(A, D, method="randomized", maxiter=1, tol=1e-6)
    assert not sp.info.converged.all()
    assert sp.info.iterations == 1
    with pytest.raises(NotConvergedError, match="worst residual"):
        svds(A, D, method="randomized", maxiter=1, tol=1e-6, on_fail="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp = svds(A, D, method="randomized", maxiter=1, tol=1e-6, on_fail="ignore")
    assert not sp.info.converged.all()
    with pytest.warns(NotConvergedWarning):
        svds(A, D, method="lanczos", maxiter=1, basis_size=24, block_size=6, tol=1e-7)


def test_deterministic_for_a_key(rng):
    A = jnp.asarray(with_spectrum(rng, M, N, SPECTRA["geometric"](N)), jnp.float32)
    a = svds(A, D, method="lanczos", key=7)
    b = svds(A, D, method="lanczos", key=jax.random.key(7))
    c = svds(A, D, method="lanczos", key=jax.random.PRNGKey(7))
    for x in (b, c):
        np.testing.assert_array_equal(np.asarray(a.U), np.asarray(x.U))
        np.testing.assert_array_equal(np.asarray(a.s), np.asarray(x.s))
    d0 = svds(A, D, method="randomized")
    d1 = svds(A, D, method="randomized", key=0)
    np.testing.assert_array_equal(np.asarray(d0.V), np.asarray(d1.V))


def test_auto_choice_is_recorded():
    small = svds(np.diag(np.arange(1.0, 11.0)), 2)
    assert small.info.method == "dense" and "auto" in small.info.reason
    n = 2100  # min(m, n) > 500: Krylov-type
    vals = np.r_[[5.0, -4.0, 3.0], np.linspace(0.0, 1.0, n - 3)]
    sp = svds(sps.diags(vals).tocsr(), 3, hermitian=True)  # cheap sparse products
    assert sp.info.method == "chebyshev"
    assert "auto" in sp.info.reason and "2100" in sp.info.reason and "cheap" in sp.info.reason
    np.testing.assert_allclose(np.asarray(sp.s), [5.0, 4.0, 3.0], rtol=1e-5)
    dense = svds(np.diag(vals).astype(np.float32), 3, hermitian=True)  # costly dense products
    assert dense.info.method == "lanczos" and "costly" in dense.info.reason
    np.testing.assert_allclose(np.asarray(dense.s), [5.0, 4.0, 3.0], rtol=1e-5)


def test_no_recompilation_for_same_shapes(rng):
    A1 = jnp.asarray(with_spectrum(rng, M, N, SPECTRA["geometric"](N)), jnp.float32)
    A2 = jnp.asarray(with_spectrum(rng, M, N, SPECTRA["clustered"](N)), jnp.float32)
    cores = (lanczos_core, randomized_core, krylov_core)
    for method in ITERATIVE:
        svds(A1, D, method=method, on_fail="ignore")
    before = [f._cache_size() for f in cores]
    for method in ITERATIVE:
        svds(A2, D, method=method, on_fail="ignore", key=3, tol=1e-3)  # new values, key and tol
    assert [f._cache_size() for f in cores] == before


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_bad_input_errors():
    A = jnp.ones((6, 5))
    with pytest.raises(ValueError, match=r"d: must be in|d: must be >= 1"):
        svds(A, 0)
    with pytest.raises(ValueError, match=r"d: must be at most min\(m, n\) = 5"):
        svds(A, 6)
    with pytest.raises(TypeError, match="d: expected an integer"):
        svds(A, 2.5)
    with pytest.raises(ValueError, match="method: expected one of"):
        svds(A, 1, method="arpack")
    with pytest.raises(ValueError, match="tol"):
        svds(A, 1, tol=-1.0)
    with pytest.raises(ValueError, match="tol"):
        svds(A, 1, tol=float("nan"))
    with pytest.raises(ValueError, match="on_fail"):
        svds(A, 1, on_fail="shout")
    with pytest.raises(TypeError, match="key"):
        svds(A, 1, key="seed")
    with pytest.raises(TypeError, match="key"):
        svds(A, 1, key=jnp.ones(3))
    with pytest.raises(ValueError, match="maxiter"):
        svds(A, 1, maxiter=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        svds(np.array([[1.0, np.nan], [0.0, 1.0]]), 1)  # caught by the dense constructor
    with pytest.raises(ValueError, match="empty"):
        svds(np.zeros((0, 3)), 1)


def test_non_finite_products_are_caught():
    # an operator that only produces NaN in its products (built around validation)
    bad = ops.DenseOperator(array=jnp.array([[1.0, 0.0], [0.0, jnp.nan]]))
    with pytest.raises(ValueError, match="NaN or Inf"):
        svds(bad, 1, method="dense")
    big = ops.DenseOperator(array=jnp.full((NS, NS), jnp.inf))
    with pytest.raises(ValueError, match="NaN or Inf"):
        svds(big, 2, method="lanczos", hermitian=True, maxiter=1)


def test_block_clamped_and_said(rng):
    A = jnp.asarray(with_spectrum(rng, 12, 10, SPECTRA["geometric"](10)), jnp.float32)
    sp = svds(A, 4, method="randomized")
    assert sp.info.block_size == 10 and "clamped" in sp.info.reason


def test_chebyshev_options_and_cluster_cut():
    """block_size is used as given; a bad bound is refused; a cluster cut by d is resolved."""
    from _svds_problems import reference, sbm_matrix

    a = sbm_matrix()  # 8 blocks: s_1 = 1 and a cluster of 7 block eigenvalues, cut by d = 4
    ref = reference(a, 4, True)
    A = ops.sparse_from_scipy(a.astype(np.float32))
    sp = svds(A, 4, method="chebyshev", hermitian=True, block_size=24, tol=1e-5)
    assert sp.info.method == "chebyshev" and sp.info.block_size == 24
    np.testing.assert_allclose(np.asarray(sp.s), ref, rtol=1e-5)
    assert bool(sp.info.converged.all()) and float(np.max(sp.residuals)) <= 1e-5
    with pytest.raises(ValueError, match="bound"):
        svds(A, 4, method="chebyshev", hermitian=True, bound=-1.0)


# --------------------------------------------------------------------------------------------------
# dtypes: float32 and float64 kept, x64 on or off; other dtypes refused before tracing
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["float64"], indirect=True)
def test_float32_operators_stay_float32_with_x64_on(precision):
    """Under x64 a float32 operator (sparse, deflated) is solved and returned in float32.

    Dense and block Lanczos here (compile time: Lanczos is where int32 and int64 indices met);
    every method's float32 path under x64 was audited by hand (chebyshev, randomized and krylov
    keep the operator's dtype the same way).
    """
    from _svds_problems import reference, sbm_matrix

    a = sbm_matrix()
    A = ops.sparse_from_scipy(a, dtype=np.float32)
    u = np.linalg.eigh(a.toarray())[1][:, -1].astype(np.float32)
    deflated = ops.deflate(A, u, u, 1.0)
    ref = reference(a, D + 1, True)
    for method in ("dense", "lanczos"):
        sp = svds(deflated, D, method=method, hermitian=True, tol=1e-5)
        check_dtypes(sp, np.float32)
        np.testing.assert_allclose(np.asarray(sp.s), ref[1 : D + 1], rtol=0, atol=2e-5)


def test_low_precision_complex_and_odd_dtypes_are_refused():
    import ml_dtypes

    for bad, what in [
        (np.eye(6, dtype=np.float16), "float16"),
        (np.eye(6).astype(ml_dtypes.bfloat16), "bfloat16"),
        (jnp.eye(6, dtype=jnp.bfloat16), "bfloat16"),
        (np.eye(6, dtype=np.complex64), "complex"),
        (sps.eye(6, dtype=np.complex128, format="csr"), "complex"),
        (np.array([["a", "b"], ["c", "d"]]), "expected a real floating or integer"),
    ]:
        with pytest.raises(TypeError, match=rf"^A: .*{what}"):
            svds(bad, 1)


def test_integer_operators_get_the_default_float_dtype(precision):
    sp = svds(np.diag(np.arange(1, 7)), 2)
    check_dtypes(sp, precision)
    np.testing.assert_allclose(np.asarray(sp.s), [6.0, 5.0])
    sp = svds(sps.csr_matrix(np.eye(6, dtype=bool)), 1)
    check_dtypes(sp, precision)


# --------------------------------------------------------------------------------------------------
# symmetry: hermitian=True checked by a randomised probe; hermitian unset: probed and used
# --------------------------------------------------------------------------------------------------
def test_hermitian_true_is_checked(rng, precision):
    from _svds_problems import sbm_matrix

    S = symmetric_with_eigs(rng, NS, SPECTRA["geometric"](NS))
    a = sbm_matrix()
    X = rng.standard_normal((NS, 3)).astype(precision)
    K = ops.kernel_operator(X, kernel=kernels.RBF(gamma=np.asarray(0.5, precision)))
    u = (np.ones(a.shape[0]) / np.sqrt(a.shape[0])).astype(precision)
    symmetric = {
        "dense": S.astype(precision),
        "sparse": ops.sparse_from_scipy(a, dtype=precision),
        "kernel": ops.product(ops.diag(np.linspace(0.5, 1.5, NS).astype(precision)), K,
                              ops.diag(np.linspace(0.5, 1.5, NS).astype(precision))),
        "deflated": ops.deflate(ops.sparse_from_scipy(a, dtype=precision), u, u, 0.5),
    }
    for name, op in symmetric.items():
        sp = svds(op, D, method="dense", hermitian=True)
        assert sp.info.hermitian, name
    # mildly non-symmetric: a 2% asymmetric part, in a dense and in a sparse matrix
    E = rng.standard_normal((NS, NS))
    A = S + 0.02 * np.linalg.norm(S) / np.linalg.norm(E) * E
    a2 = a.tolil()
    a2[0, a2.rows[0][0]] *= 1.5  # one entry of the graph operator changed
    bad = [(A.astype(precision), "dense"), (A.astype(precision), "lanczos"),
           (ops.sparse_from_scipy(a2.tocsr(), dtype=precision), "dense")]  # fmt: skip
    for op, method in bad:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            with pytest.raises(ValueError, match="hermitian=True, but A is not symmetric"):
                svds(op, D, method=method, hermitian=True)


def test_symmetry_is_probed_when_hermitian_is_unset(rng):
    from _svds_problems import knn_context_matrix, sbm_matrix

    a = sbm_matrix()
    sym = svds(a.astype(np.float32), D, method="dense")  # a scipy matrix, hermitian unset
    assert sym.info.hermitian and "symmetric path" in sym.info.reason
    ref = np.sort(np.abs(np.linalg.eigvalsh(a.toarray())))[::-1][:D]
    np.testing.assert_allclose(np.asarray(sym.s), ref, rtol=1e-5)
    assert float(np.max(sym.residuals)) <= 1e-5  # certified with both products
    gen = svds(knn_context_matrix(m=NS, k=5).astype(np.float32), D, method="dense")
    assert not gen.info.hermitian and "general path" in gen.info.reason
    off = svds(a.astype(np.float32), D, method="dense", hermitian=False)
    assert not off.info.hermitian and "probe" not in off.info.reason
    with pytest.raises(TypeError, match="hermitian"):
        svds(a, D, hermitian="yes")


# --------------------------------------------------------------------------------------------------
# auto on cut spectra (issue 8 item 9): no gap at the cut -> block Lanczos, bounded work
# --------------------------------------------------------------------------------------------------
def test_cut_in_a_dense_bulk_takes_block_lanczos():
    """A block model whose d cuts into the bulk, as a plain scipy CSR matrix, default arguments."""
    from _svds_problems import reference_sparse, sbm_bulk_matrix

    a = sbm_bulk_matrix()  # 5000 nodes, 20 blocks: d = 32 cuts 12 values into the bulk
    d = 32
    ref = reference_sparse(a, d, True)
    sp = svds(a.astype(np.float32), d)
    info = sp.info
    assert info.method == "lanczos" and "no gap" in info.reason, info.reason
    assert info.hermitian and "symmetric path" in info.reason
    assert info.converged.all() and float(np.max(sp.residuals)) <= info.tol
    # no gap: values are first order in the residual, so the default tol is tightened to 1e-4
    assert info.tol <= 1e-4 and "tightened" in info.reason
    np.testing.assert_allclose(np.asarray(sp.s), ref, rtol=1e-4)
    # bounded work: a 16-column block, a basis of a few d, at most 60 d product columns (the
    # filtered subspace iteration this problem used to get took a 376-column block and ~10^4)
    assert info.block_size <= 16 and info.basis_size <= 5 * d
    assert info.matvecs <= 60 * d, info.matvecs
    # no gap means many restarts: auto's Lanczos takes the longer gapless basis (4 d, 1.5 d kept)
    b = info.block_size
    K = max(4 * d, d + 16 * b)
    assert f"basis {K}, {round(1.5 * d)} kept" in info.reason, info.reason
    assert info.basis_size == K


def test_gapless_basis_sizes():
    """The gapless sizes (4 d, 1.5 d kept) apply only to cheap products with no gap at the cut;
    an explicit basis_size and the other paths keep their rules."""
    from jaxcontext.linalg._svds import _basis_sizes

    kw = dict(hermitian=True, basis_size=None, max_basis_bytes=2**30)
    assert _basis_sizes(10**5, 10**5, 64, 8, np.float32, cheap=True, gapless=True, **kw)[:2] == (
        256, 96)
    assert _basis_sizes(10**5, 10**5, 64, 8, np.float32, cheap=True, **kw)[:2] == (192, 96)
    assert _basis_sizes(10**5, 10**5, 64, 8, np.float32, gapless=True, **kw)[:2] == (640, 320)
    kw["basis_size"] = 200
    assert _basis_sizes(10**5, 10**5, 64, 8, np.float32, cheap=True, gapless=True, **kw)[:2] == (
        200, 96)


@pytest.mark.parametrize(
    "precision, method",
    [("float32", "auto"), ("float32", "lanczos"), ("float64", "lanczos")],
    indirect=["precision"],
)
def test_knn_smooth_cut(precision, method):
    """A kNN context operator (not symmetric, no gap at the cut): right, certified, bounded work."""
    from _svds_problems import knn_context_matrix, reference_sparse

    a = knn_context_matrix()
    d = 24
    ref = reference_sparse(a, d, False)
    tol = 1e-4 if precision == np.float32 else 1e-10
    sp = svds(a.astype(precision), d, method=method, tol=tol)
    info = sp.info
    check_dtypes(sp, precision)
    assert not info.hermitian and info.converged.all()
    # auto: filtering A^T A would take ~80 product columns per triplet here (over
    # GRAM_COLUMNS_PER_D), so Golub-Kahan block Lanczos, as on the 50k-point suite case
    assert info.method == "lanczos", info.reason
    if method == "auto":
        assert "Golub-Kahan block Lanczos instead" in info.reason, info.reason
    np.testing.assert_allclose(np.asarray(sp.s), ref, rtol=tol)
    assert info.block_size <= 4 * d and info.matvecs <= 300 * d, (info.block_size, info.matvecs)


# --------------------------------------------------------------------------------------------------
# one compile per bucket of d (issue 8 item 7)
# --------------------------------------------------------------------------------------------------
def test_sweep_over_d_compiles_block_lanczos_once(rng):
    lam = 0.9 ** np.arange(NS)
    A = jnp.asarray(symmetric_with_eigs(rng, NS, lam), jnp.float32)
    svds(A, 16, method="lanczos", hermitian=True, tol=1e-5)
    before = lanczos_core._cache_size()
    for d in (24, 40, 64):
        sp = svds(A, d, method="lanczos", hermitian=True, tol=1e-5)
        assert sp.s.shape == (d,) and sp.info.converged.all()
        assert "compiled for d <= 64" in sp.info.reason
        np.testing.assert_allclose(np.asarray(sp.s), lam[:d], rtol=0, atol=2e-5)
    assert lanczos_core._cache_size() == before


# --------------------------------------------------------------------------------------------------
# issue 12: stage profile, the local pass of block Lanczos, the filtered block's orthonormalisation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lanczos", "chebyshev"])
def test_profile_reports_stages_and_changes_nothing(method):
    """profile=True: the same solve (values, counts), with wall time per stage in info.stages."""
    from _svds_problems import sbm_bulk_matrix

    a = ops.sparse_from_scipy(sbm_bulk_matrix().astype(np.float32))
    d = 16
    plain = svds(a, d, method=method, hermitian=True, tol=1e-4)
    prof = svds(a, d, method=method, hermitian=True, tol=1e-4, profile=True)
    assert plain.info.stages is None
    st = prof.info.stages
    want = {"products", "orthonormalisation", "rayleigh-ritz", "certificate"}
    want |= {"restarts"} if method == "lanczos" and prof.info.restarts else set()
    want |= {"probe"} if method == "chebyshev" else set()
    assert want <= set(st), sorted(st)
    for k, v in st.items():
        if isinstance(v, dict):
            assert v["s"] >= 0 and v["calls"] >= 1, (k, v)
    assert st["total_s"] == pytest.approx(sum(v["s"] for v in st.values() if isinstance(v, dict)))
    if method == "lanczos":  # one product and one orthonormalisation per step, one RR check each
        steps = prof.info.iterations
        assert st["products"]["calls"] == steps and st["orthonormalisation"]["calls"] == steps
        if prof.info.restarts:
            assert st["restarts"]["calls"] == prof.info.restarts
    assert prof.info.iterations == plain.info.iterations
    assert prof.info.matvecs == plain.info.matvecs
    np.testing.assert_allclose(np.asarray(prof.s), np.asarray(plain.s), rtol=1e-5)
    from jaxcontext.linalg._stages import format_stages

    line = format_stages(st)
    assert "products" in line and "stages total" in line


def test_profile_general_lanczos_counts_both_products():
    from _svds_problems import knn_context_matrix

    a = knn_context_matrix().astype(np.float32)
    sp = svds(a, 8, method="lanczos", tol=1e-4, profile=True)
    st = sp.info.stages
    assert not sp.info.hermitian
    assert st["products"]["calls"] == 2 * sp.info.iterations  # A v and A^T u per step
    assert sp.info.converged.all()


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_lanczos_local_pass_matches_full_projection(precision):
    """The local two-block pass (cheap products) and the selective update of the full projection
    after it (CPU) give the same Ritz values, orthonormality and steps as the full projection."""
    from _svds_problems import reference_sparse, sbm_bulk_matrix

    from jaxcontext.linalg._svds import _lanczos_config

    a = sbm_bulk_matrix()
    d = 32
    ref = reference_sparse(a, d, True)
    op = ops.sparse_from_scipy(a.astype(precision))
    n = a.shape[0]
    cfg, sel, _ = _lanczos_config(
        n, n, d, precision, hermitian=True, block_size=None, basis_size=None, maxiter=None,
        max_basis_bytes=2**30, cheap=True,
    )
    # auto's setting for cheap products
    assert cfg.local and cfg.reorth is not None and cfg.select is not None
    tol = 1e-4 if precision == np.float32 else 1e-10
    outs = {}
    for local, select in ((True, cfg.select), (True, None), (False, None)):
        c = cfg._replace(local=local, select=select)
        s, U, V, sign, est, steps, restarts = lanczos_core(
            op, jax.random.key(0), tol, d, sel, cfg=c, hermitian=True
        )
        s = np.asarray(s)[:d]
        np.testing.assert_allclose(s, ref, rtol=3 * tol)
        Vn = np.asarray(V, np.float64)[:, :d]
        assert np.max(np.abs(Vn.T @ Vn - np.eye(d))) < 100 * np.finfo(precision).eps * np.sqrt(d)
        outs[local, select] = int(steps)
    # neither changes the Krylov space: the same number of steps (within a check)
    assert max(outs.values()) - min(outs.values()) <= 2, outs


def _orthonormal_rows(rng, p, n, precision, junk_from):
    """``(p, n)`` rows, the first ``junk_from`` orthonormal and the rest arbitrary (never read
    as basis rows: past ``ncols``)."""
    Bt = np.linalg.qr(rng.standard_normal((n, p)))[0].T
    Bt[junk_from:] = rng.standard_normal((p - junk_from, n))
    return Bt.astype(precision)


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_project_against_leading_rows_matches_numpy(precision, rng):
    """_project with ``ncols``: every static view (leading slice or the whole basis) gives
    ``x - B C`` and ``C = B^T x`` over the first ``ncols`` rows only, ``C`` zero past them."""
    from jaxcontext.linalg._orth import _Basis, _project, _row_views

    p, n, k = 256, 3000, 8
    assert _row_views(p, 64) == (64, 128, 256)  # two slices, then the whole basis
    x = rng.standard_normal((n, k)).astype(precision)
    for ncols in (8, 64, 100, 130, 200, 256):
        Bt = _orthonormal_rows(rng, p, n, precision, ncols)
        y, c = jax.jit(lambda x, B, nc: _project(x, _Basis(B, nc, 64)))(
            jnp.asarray(x), jnp.asarray(Bt), ncols
        )
        B64 = Bt[:ncols].astype(np.float64)
        c_ref = B64 @ x
        atol = 50 * np.finfo(precision).eps * np.sqrt(n)
        np.testing.assert_allclose(np.asarray(c)[:ncols], c_ref, atol=atol)
        assert np.all(np.asarray(c)[ncols:] == 0)
        np.testing.assert_allclose(np.asarray(y), x - B64.T @ c_ref, atol=atol)


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_selective_projection_subtracts_only_what_matters(precision, rng):
    """_project_selective: rows up to the last coefficient above ``select |x|`` (rounded up to a
    view) are subtracted, the rest left in ``x`` and out of ``C``; nothing is touched when every
    coefficient is below ``select``; ``x = B C + y`` holds as computed."""
    from jaxcontext.linalg._orth import _Basis, _project, _project_selective

    p, n, k, ncols = 256, 3000, 4, 240
    eps = float(np.finfo(precision).eps)
    select = 8 * eps
    Bt = _orthonormal_rows(rng, p, n, precision, ncols)
    B64 = Bt[:ncols].astype(np.float64)
    r = rng.standard_normal((n, k))
    r -= B64.T @ (B64 @ r)  # orthogonal to the basis
    r /= np.linalg.norm(r, axis=0)
    tiny = 0.01 * select * rng.standard_normal((ncols, k))  # below the threshold everywhere
    proj = jax.jit(lambda x: _project_selective(x, _Basis(jnp.asarray(Bt), ncols, 64, select)))
    for big_rows, view in (((), 0), ((5, 70), 128), ((3, 200), 256)):
        a = tiny.copy()
        for i in big_rows:
            a[i] = 0.3
        x = (r + B64.T @ a).astype(precision)
        y, c = (np.asarray(v, np.float64) for v in proj(jnp.asarray(x)))
        if view == 0:
            np.testing.assert_array_equal(y, x)
            assert np.all(c == 0)
            continue
        assert np.all(c[view:] == 0) and np.all(c[big_rows, :] != 0)
        # subtracted rows: y is orthogonal to them; the rest keep their (tiny) components
        atol = 100 * eps * np.sqrt(k)
        assert np.abs(B64[:view] @ y).max() < atol
        assert np.abs(B64 @ y).max() <= select * np.linalg.norm(x, axis=0).max() + atol
        np.testing.assert_allclose(y + B64.T @ c[:ncols], x, atol=atol)
    # on the CPU, _project routes a basis with ``select`` here
    x = (r + B64.T @ tiny).astype(precision)
    y, c = jax.jit(lambda x: _project(x, _Basis(jnp.asarray(Bt), ncols, 64, select)))(x)
    np.testing.assert_array_equal(np.asarray(y), x)
    assert np.all(np.asarray(c) == 0)


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_filtered_block_orthonormalisation_handles_rank_deficiency(precision, rng):
    """_orth_block: orthonormal to rounding on a numerically rank-deficient block, same span (the
    second round folded into ``Rinv``: the basis is ``Q Rinv``, formed here as the solver's
    products form it); _orth_full, its fallback, gives the same."""
    from jaxcontext.linalg._chebyshev import _orth_block, _orth_full
    from jaxcontext.linalg._common import mm

    n, k, r = 3000, 48, 20
    # r strong directions, the rest 1e-9 of them (condition far past 1 / eps) plus a collapse
    base = np.linalg.qr(rng.standard_normal((n, k)))[0]
    scales = np.r_[np.logspace(0, -3, r), np.full(k - r, 1e-9)]
    mix = np.linalg.qr(rng.standard_normal((k, k)))[0]
    Y = (base * scales) @ mix
    Q1, Rinv, ok = _orth_block(jnp.asarray(Y, precision))
    assert bool(ok) and Rinv.dtype == precision
    eps = np.finfo(precision).eps
    if precision == np.float32:  # in float32 the first round alone is not orthonormal to rounding
        Q1_64 = np.asarray(Q1, np.float64)
        assert np.max(np.abs(Q1_64.T @ Q1_64 - np.eye(k))) > 5 * eps * k
    for Qj in (mm(Q1, Rinv), _orth_full(Q1)[0]):
        Q = np.asarray(Qj, np.float64)
        # two rounds: about 0.05 eps k measured; one round left 3.6e-4 = 63 eps k in float32
        dev = np.max(np.abs(Q.T @ Q - np.eye(k)))
        assert dev < 5 * eps * k, dev
        # the strong directions are kept (to their scale's precision)
        assert subspace_distance(base[:, :r][:, :10], Q) < 1e3 * eps
    np.testing.assert_array_equal(np.asarray(_orth_full(Q1)[1]), np.eye(k))


def test_svds_lanczos_tunes_the_sparse_kernel_of_composite_operators(monkeypatch):
    """Issue 8 item 9: the Lanczos path fixes each large sparse part's kernel by measurement at
    its block width, inside products of operators too, says so, and the answer is unchanged."""
    from jaxcontext import _spmm

    rng = np.random.default_rng(3)
    w = sps.random(600, 600, density=0.02, random_state=rng, format="csr")
    w = (w + w.T).tocsr()
    deg = np.asarray(w.sum(axis=1)).ravel() + 1.0
    dis = 1.0 / np.sqrt(deg)
    composite = ops.ProductOperator(
        (ops.DiagonalOperator(jnp.asarray(dis, jnp.float32)), ops.sparse_from_scipy(w),
         ops.DiagonalOperator(jnp.asarray(dis, jnp.float32)))
    )
    ref = np.sort(np.abs(np.linalg.eigvalsh((dis[:, None] * w.toarray()) * dis[None, :])))[::-1]
    from jaxcontext.linalg._svds import _tuned_products

    same, note = _tuned_products(composite, 8, False)  # 600 x 600: below TUNE_MIN_NNZ
    assert note == "" and same.ops[1].kernel == "auto"
    monkeypatch.setattr(_spmm, "TUNE_MIN_NNZ", 0)
    monkeypatch.setattr(_spmm, "_TUNED", {})
    monkeypatch.setattr(
        _spmm, "measure_kernels", lambda *a, **k: {"ell": 2.0, "bcsr": 1.0}
    )
    tuned = linalg.svds(composite, 6, method="lanczos", hermitian=True, tol=1e-5)
    assert "sparse product kernel bcsr" in tuned.info.reason
    np.testing.assert_allclose(np.asarray(tuned.s), ref[:6], rtol=1e-4)
    t2, _ = _tuned_products(ops.TransposedOperator(composite), 8, False)
    assert t2.op.ops[1].kernel == "bcsr"  # under a transpose (and products) too


# --------------------------------------------------------------------------------------------------
# issue 12: Chebyshev filter panels, the first pass's start block and segments, the probe
# --------------------------------------------------------------------------------------------------
def _random_symmetric_sparse(n, density, seed, dtype):
    rng = np.random.default_rng(seed)
    w = sps.random(n, n, density=density, random_state=rng, format="csr")
    w = (w + w.T).tocsr()
    deg = np.asarray(w.sum(axis=1)).ravel() + 1.0
    dis = sps.diags(1.0 / np.sqrt(deg))
    return (dis @ w @ dis).tocsr().astype(dtype)


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
@pytest.mark.parametrize("hermitian", [True, False])
def test_chebyshev_later_passes_start_from_all_ritz_vectors(precision, hermitian):
    """A solve of several passes: each later pass filters all ``k`` Ritz vectors (the top ``d``
    from the residual step, the rest formed only then); the Gram path extracts the triplets from
    the top ``d``. Values and vectors match float64 LAPACK."""
    rng = np.random.default_rng(5)
    n, d = 400, 6
    s = 1.0 / np.sqrt(1.0 + np.arange(n))  # slow decay: one pass does not reach tol
    U = np.linalg.qr(rng.standard_normal((n, n)))[0]
    V = U if hermitian else np.linalg.qr(rng.standard_normal((n, n)))[0]
    A = (U * s) @ V.T
    tol = 1e-5 if precision == np.float32 else 1e-10
    sp = svds(jnp.asarray(A.astype(precision)), d, method="chebyshev", hermitian=hermitian, tol=tol)
    assert sp.s.dtype == precision
    assert sp.info.iterations >= 2, sp.info.reason
    assert bool(sp.info.converged.all()) and float(np.max(sp.residuals)) <= tol
    np.testing.assert_allclose(np.asarray(sp.s, np.float64), s[:d], rtol=0, atol=2 * tol)
    assert subspace_distance(V[:, :d], np.asarray(sp.V, np.float64)) < 1e3 * tol
    # the pieces: Ritz pairs of the top d with their residuals, then all k vectors, on a basis
    # given orthonormal (Rinv = I) or as Q Rinv with a non-orthonormal Q (the folded round)
    from jaxcontext.linalg._chebyshev import _complete, _ritz

    S = jnp.asarray((A @ A.T if not hermitian else A).astype(precision))
    S64 = np.asarray(S, np.float64)
    k = 16
    Qo = np.linalg.qr(rng.standard_normal((n, k)))[0]
    T = np.eye(k) + 0.1 * np.triu(rng.standard_normal((k, k)))  # Q = Qo T, Rinv = T^-1
    eps = float(np.finfo(precision).eps)
    X_ref = None
    for Qn, Rn in ((Qo, np.eye(k)), (Qo @ T, np.linalg.inv(T))):
        Q, Rinv = (jnp.asarray(x.astype(precision)) for x in (Qn, Rn))
        theta, C, Xd, res = _ritz(ops.dense(S), Q, Rinv, d=d)
        X64 = np.asarray(Q, np.float64) @ np.asarray(C, np.float64)
        assert Xd.shape == (n, d) and res.shape == (d,) and C.shape == (k, k)
        # orthonormal Ritz vectors, the same for either form of the basis (up to sign)
        assert np.max(np.abs(X64.T @ X64 - np.eye(k))) < 50 * eps
        if X_ref is None:
            X_ref = X64
        else:
            np.testing.assert_allclose(np.abs(X64), np.abs(X_ref), atol=1e3 * eps)
        np.testing.assert_allclose(np.asarray(Xd), X64[:, :d], atol=50 * eps)
        R64 = S64 @ X64[:, :d] - X64[:, :d] * np.asarray(theta, np.float64)[:d]
        np.testing.assert_allclose(np.asarray(res), np.linalg.norm(R64, axis=0), atol=50 * eps)
        np.testing.assert_allclose(np.asarray(_complete(Q, C, Xd, d=d)), X64, atol=50 * eps)


def test_chebyshev_filter_in_panels_matches_the_whole_block(precision):
    """The recurrence run panel by panel (whole panels, then a narrower one for the columns past
    them), in place or not, is the same filter."""
    from jaxcontext.linalg._chebyshev import _filter, _filter_inplace

    a = _random_symmetric_sparse(3000, 0.004, 0, precision)
    S = ops.sparse_from_scipy(a)
    X = jax.random.normal(jax.random.key(0), (3000, 40), precision)
    xs = jnp.linspace(0.0, 3.0, 40).astype(precision)
    lo, hi = jnp.asarray(-0.3, precision), jnp.asarray(0.3, precision)
    whole = np.asarray(_filter(S, X, lo, hi, xs, 7), np.float64)
    for panel in (8, 16):  # 40 = 5 x 8; 40 = 2 x 16 + 8
        got = np.asarray(_filter(S, X, lo, hi, xs, 7, panel=panel), np.float64)
        assert got.shape == whole.shape and got.dtype == whole.dtype
        err = np.linalg.norm(got - whole) / np.linalg.norm(whole)
        assert err < 100 * np.finfo(precision).eps, (panel, err)
        donated = jnp.array(X)  # the in-place filter takes its input over
        np.testing.assert_array_equal(
            np.asarray(_filter_inplace(S, donated, lo, hi, xs, 7, panel=panel), np.float64), got
        )


def test_panel_width_follows_the_cache_and_the_operator(monkeypatch):
    from jaxcontext.linalg import _chebyshev as ch

    # budget 8 MiB per iterate
    monkeypatch.setattr(ch, "_last_level_cache_bytes", lambda: 32 * 2**20)
    big = ops.sparse_from_scipy(sps.identity(100_000, format="csr", dtype=np.float32))
    assert ch.panel_width(big, 128) == 16  # 8 MiB / 400 kB per column: 20 -> 16, divides 128
    assert ch.panel_width(big, 136) == 16  # 9 panels of 16 pad 136 by 8 columns (< 1/8)
    assert ch.panel_width(ch._Gram(big, False), 128) == 16
    small = ops.sparse_from_scipy(sps.identity(10_000, format="csr", dtype=np.float32))
    assert ch.panel_width(small, 128) == 0  # the whole block fits the budget
    huge = ops.sparse_from_scipy(sps.identity(1_000_000, format="csr", dtype=np.float32))
    assert ch.panel_width(huge, 128) == 0  # no panel of 16 columns fits
    assert ch.panel_width(ops.DenseOperator(jnp.ones((3000, 3000))), 128) == 0  # dense: GEMM
    monkeypatch.setattr(ch, "_last_level_cache_bytes", lambda: 0)  # unknown cache: no panels
    assert ch.panel_width(big, 128) == 0


def test_last_level_cache_is_read_where_sysfs_has_it():
    from jaxcontext.linalg._chebyshev import _last_level_cache_bytes

    size = _last_level_cache_bytes()
    assert size == 0 or 2**16 <= size <= 2**32


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_chebyshev_start_block_covers_a_wide_cluster_in_one_pass(precision):
    """Inside a cluster the probe's Ritz vectors are nearly degenerate; the start block takes only
    the isolated top ones (TAKE_ABOVE), so one pass resolves a 60-value cluster cut at d = 30
    (taking 40 probe vectors needed a second pass here, in float64 too)."""
    rng = np.random.default_rng(0)
    n, cl = 8000, 60
    vals = np.r_[1.0, np.linspace(0.66, 0.64, cl), rng.uniform(-0.42, 0.42, n - cl - 1)]
    A = ops.sparse_from_scipy(sps.diags(vals.astype(precision)).tocsr())
    sp = svds(A, cl // 2, method="chebyshev", hermitian=True, tol=1e-4)
    ref = np.sort(np.abs(vals))[::-1][: cl // 2]
    np.testing.assert_allclose(np.asarray(sp.s, np.float64), ref, rtol=1e-5)
    assert bool(sp.info.converged.all())
    assert sp.info.iterations == 1, sp.info.reason


@pytest.mark.parametrize("precision", ["float32", "float64"], indirect=True)
def test_chebyshev_first_pass_is_segmented_only_where_rounding_would_floor_it(precision):
    """Float32 with a wide spread between the top value and the cut: the first pass is cut into
    segments (CholeskyQR between them) and still converges; float64 has the headroom for one."""
    from _svds_problems import reference_sparse

    rng = np.random.default_rng(1)
    n, cl = 8000, 60
    vals = np.r_[1.0, np.linspace(0.52, 0.50, cl), rng.uniform(-0.45, 0.45, n - cl - 1)]
    q = sps.random(n, n, density=3e-4, random_state=rng, format="csr")  # mixes the eigenbasis
    a = sps.diags(vals) + 1e-3 * (q + q.T)
    ref = reference_sparse(a.tocsr(), 30, True)
    A = ops.sparse_from_scipy(a.astype(precision).tocsr())
    sp = svds(A, 30, method="chebyshev", hermitian=True, tol=1e-4)
    np.testing.assert_allclose(np.asarray(sp.s, np.float64), ref, rtol=2e-5)
    assert bool(sp.info.converged.all())
    first = sp.info.reason.split("degrees [")[1].split(",")[0].split("]")[0]
    assert ("+" in first) == (precision == np.float32), sp.info.reason


def test_solver_programs_use_full_float32_matmuls(tmp_path):
    """Every dot in the solvers' compiled programs asks for HIGHEST precision.

    A dot left at DEFAULT runs in TF32 on recent NVIDIA GPUs and in bfloat16 passes on TPUs
    (1e-3 relative), which no 1e-4 certificate survives; on the CPU the two are the same, so the
    requested precision is read from the lowered programs (sizes used nowhere else, so every
    stage is lowered afresh here).
    """
    import glob
    import os
    import re

    rng = np.random.default_rng(7)
    n = 1013
    a = sps.random(n, n, density=0.02, random_state=3, dtype=np.float32)
    sym = ops.sparse((a + a.T).tocsr())
    gen = ops.sparse(a.tocsr())
    den = ops.dense(rng.standard_normal((n, n)).astype(np.float32))
    old = os.environ.get("JAX_DUMP_IR_TO", "")  # the option's default source
    jax.config.update("jax_dump_ir_to", str(tmp_path))
    try:
        # four compiled solvers cover every program: Chebyshev (probe, filter, Ritz), the
        # Lanczos core (its Rayleigh-Ritz is shared by both paths), krylov on a dense operator
        # (its product), randomized
        runs = [(sym, True, "chebyshev"), (gen, False, "lanczos")]
        runs += [(den, False, "krylov"), (gen, False, "randomized")]
        for op, herm, method in runs:
            linalg.svds(op, 7, method=method, tol=1e-3, hermitian=herm, on_fail="ignore")
    finally:
        jax.config.update("jax_dump_ir_to", old)
    files = glob.glob(str(tmp_path / "*.mlir"))
    names = " ".join(files)
    for stage in ("lanczos_core", "krylov_core", "randomized_core", "_filter_impl", "_ritz"):
        assert stage in names, f"no lowered program for {stage}: the check would be vacuous"
    loose = []
    for f in files:
        with open(f) as fh:
            text = fh.read()
        for line in text.splitlines():
            if "dot_general" in line and re.search(r"precision = \[DEFAULT", line):
                loose.append(f"{f.rsplit('/', 1)[-1]}: {line.strip()[:160]}")
    assert not loose, "dots at DEFAULT precision:\n" + "\n".join(loose[:10])


@pytest.mark.parametrize("shape", [(40, 40), (50, 30), (30, 50)])
def test_small_svds_give_accurate_triplets(precision, shape):
    """The small-SVD routes the solvers take off the CPU, run here on known triplets.

    ``_svd_qr`` (the QR algorithm, ``svd_small`` off the CPU) and ``_svd_lapack`` (on it): both
    residuals at rounding; ``svd_gram`` (Golub-Kahan Lanczos off the CPU): ``M y = s x`` at
    rounding, ``M^T x - s y`` at most ``~eps |M|^2 / s`` (its documented limit).
    """
    from jaxcontext.linalg._common import _svd_lapack, _svd_qr, svd_gram

    m, n = shape
    k = min(m, n)
    s = np.geomspace(1.0, 0.02, k)
    M = with_spectrum(np.random.default_rng(3), m, n, s)
    eps = float(np.finfo(precision).eps)
    routes = [_svd_lapack, _svd_qr] + ([svd_gram] if m >= n else [])
    for fn in routes:
        X, sv, Y = fn(jnp.asarray(M, precision))
        assert X.dtype == sv.dtype == Y.dtype == precision, fn.__name__
        X, sv, Y = (np.asarray(a, np.float64)[..., :k] for a in (X, sv, Y))
        np.testing.assert_allclose(sv, s, atol=100 * eps, err_msg=fn.__name__)
        r1 = np.linalg.norm(M @ Y - X * sv, axis=0)
        r2 = np.linalg.norm(M.T @ X - Y * sv, axis=0)
        assert r1.max() <= 100 * eps, (fn.__name__, r1.max() / eps)
        limit = 100 * eps / s if fn is svd_gram else 100 * eps
        assert np.all(r2 <= limit), (fn.__name__, np.max(r2 / limit))


def _bidiagonal_problem(c: int, size: int, b: int = 4):
    """A Golub-Kahan-like projected matrix: ``c x c`` active block, zeros to ``size + b``."""
    rng = np.random.default_rng(11)
    H = np.zeros((size + b, size + b), np.float32)
    H[:c, :c] = np.triu(rng.standard_normal((c, c))) * np.geomspace(1.0, 0.1, c)[None, :]
    return jnp.asarray(H)


def test_lanczos_small_problem_reports_its_own_residual(monkeypatch):
    """``rs`` is the small SVD's residual: rounding when exact, large when the SVD is loose.

    The residual estimates add it to the Lanczos coupling, so a loose small SVD (as JAX's default
    on a GPU, 1e-5) cannot pass for convergence. Here the SVD's vectors are perturbed by 1e-3:
    ``rs`` must show it.
    """
    from jaxcontext.linalg import _lanczos

    c, size = 20, 24
    H = _bidiagonal_problem(c, size)
    run = jax.jit(lambda H: _lanczos._small_solve(H, c, s=size, K=size, hermitian=False))
    theta, Y, X, mu, rs = run(H)
    Hc = np.asarray(H, np.float64)[:c, :c]
    th, Yc, Xc = (np.asarray(a, np.float64) for a in (theta[:c], Y[:c, :c], X[:c, :c]))
    r1 = np.linalg.norm(Hc @ Yc - Xc * th, axis=0)
    r2 = np.linalg.norm(Hc.T @ Xc - Yc * th, axis=0)
    np.testing.assert_allclose(np.asarray(rs[:c]), np.maximum(r1, r2), atol=1e-6)
    assert float(np.max(rs[:c])) < 1e-5
    real = _lanczos._fixed_small

    def loose(Hs, Hz, active, mu, how):
        theta, Y, X = real(Hs, Hz, active, mu, how)
        return theta, Y + 1e-3 * jnp.sin(jnp.arange(Y.size).reshape(Y.shape)), X

    monkeypatch.setattr(_lanczos, "_fixed_small", loose)
    _, _, _, _, rs_loose = jax.jit(
        lambda H: _lanczos._small_solve(H, c, s=size, K=size, hermitian=False)
    )(H)
    assert float(np.min(rs_loose[:c])) > 1e-4


def test_golub_kahan_lanczos_with_the_gram_small_svd(precision, monkeypatch):
    """Golub-Kahan block Lanczos with the small SVD it uses off the CPU (``svd_gram``).

    On an H200 JAX's default SVD left 49 of 64 kNN triplets uncertified; the Gram route certified
    64. Here it runs on the CPU on the cycle graph (four-fold clusters, restarts) and must match
    the known spectrum as the LAPACK route does (``test_cycle_graph``).
    """
    from jaxcontext.linalg import _lanczos

    monkeypatch.setattr(_lanczos, "SMALL_SVD", "gram")
    _check_cycle_graph(precision, hermitian=False)


def test_gram_route_keeps_left_vectors_orthonormal_on_a_decaying_spectrum(monkeypatch):
    """With ``svd_gram``, ``x = B y / theta`` loses orthogonality as ``eps / theta^2``.

    Top 16 of a spectrum falling to 2.5e-3 of ``s_1`` in float32: unpolished, the returned ``U``
    was orthonormal only to 1.5e-4 with every residual certified (nothing else would notice);
    the QR polish of the left coefficients brings it to LAPACK's level (1e-6).
    """
    from jaxcontext.linalg import _lanczos

    monkeypatch.setattr(_lanczos, "SMALL_SVD", "gram")
    n, d = 400, 16
    s = np.concatenate([np.geomspace(1.0, 1e-4, 24), 1e-4 * np.geomspace(0.7, 0.01, n - 24)])
    M = with_spectrum(np.random.default_rng(2), n, n, s).astype(np.float32)
    sp = svds(ops.dense(M), d, method="lanczos", hermitian=False, tol=1e-5)
    assert sp.info.converged.all()
    np.testing.assert_allclose(np.asarray(sp.s, np.float64), s[:d], rtol=1e-4)
    check_orthonormal(sp.U, ortho_atol(np.float32))
    check_orthonormal(sp.V, ortho_atol(np.float32))


@pytest.mark.parametrize("hermitian", [True, False])
def test_lanczos_does_not_depend_on_the_operator_scale(hermitian):
    """The same steps and relative results for ``A``, ``1e-4 A`` and ``1e4 A``.

    The masked coordinates of the small problem once got ``3 |H|_F + 1``: at ``1e-4 A`` the
    absolute ``1`` dwarfed the active block and Golub-Kahan certified 10 of 12 triplets after
    twice the steps.
    """
    n, d = 1201, 12  # the shapes of the retry test below
    a = sps.random(n, n, density=0.01, random_state=5, dtype=np.float32)
    a = (a + a.T).tocsr() if hermitian else a.tocsr()
    runs = {}
    for scale in (1.0, 1e-4, 1e4):
        op = ops.sparse((a * np.float32(scale)).astype(np.float32))
        runs[scale] = linalg.svds(op, d, method="lanczos", tol=1e-5, hermitian=hermitian)
    for scale, sp in runs.items():
        assert sp.info.converged.all(), (scale, np.asarray(sp.residuals))
        assert sp.info.iterations == runs[1.0].info.iterations, scale
        np.testing.assert_allclose(
            np.asarray(sp.s, np.float64) / scale, np.asarray(runs[1.0].s, np.float64), rtol=1e-5
        )


@pytest.mark.parametrize("hermitian", [True, False])
def test_lanczos_solves_again_when_the_certificate_disagrees_with_its_estimates(
    monkeypatch, hermitian
):
    """Estimates met tol but fresh products say otherwise: one more, tighter solve, certified.

    Seen on an H200 (kNN 50k, Golub-Kahan): 48 of 64 certified, worst 1.4 tol, where the CPU's
    estimates and certificate agree. Here the first certificate is inflated 100x (every triplet
    fails it), the second is the true one: the solver must solve again with a tighter internal
    tolerance and return that certified result, with no warning.
    """
    from jaxcontext.linalg import _common

    real = _common._certify
    calls = []

    def pessimistic(*args, **kwargs):
        U, V, res, sym = real(*args, **kwargs)
        calls.append(float(np.max(np.asarray(res))))
        return U, V, res * (100.0 if len(calls) == 1 else 1.0), sym

    monkeypatch.setattr(_common, "_certify", pessimistic)
    n = 1201
    a = sps.random(n, n, density=0.01, random_state=5, dtype=np.float32)
    a = (a + a.T).tocsr() if hermitian else a.tocsr()
    tol = 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NotConvergedWarning may escape
        out = linalg.svds(ops.sparse(a), 12, method="lanczos", tol=tol, hermitian=hermitian)
    assert "solved again" in out.info.reason and len(calls) == 2
    assert calls[1] < calls[0]  # the second solve went to a tighter tolerance
    assert np.all(np.asarray(out.info.converged))
    assert float(np.max(np.asarray(out.residuals))) <= tol
    s_ref = np.linalg.svd(a.toarray().astype(np.float64), compute_uv=False)[:12]
    np.testing.assert_allclose(np.asarray(out.s, np.float64), s_ref, rtol=2 * tol)
