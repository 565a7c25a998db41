"""jaxcontext.evaluation against float64 numpy / scipy / scikit-learn references and invariants."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla

from jaxcontext import contexts, datasets, evaluation, spectrum
from jaxcontext._whiten import whiten


def _tol(dtype, f32, f64):
    return f64 if np.dtype(dtype) == np.float64 else f32


# ------------------------------------------------------------------------------------------------
# float64 numpy references
# ------------------------------------------------------------------------------------------------
def np_basis(x, w=None):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    w = np.full(len(x), 1.0 / len(x)) if w is None else np.asarray(w, np.float64) / np.sum(w)
    g = np.sqrt(w)[:, None] * (x - w @ x)
    u, s, _ = np.linalg.svd(g, full_matrices=False)
    return u[:, s > s[0] * max(g.shape) * np.finfo(np.float64).eps]


def np_cca(a, b, w=None):
    qa, qb = np_basis(a, w), np_basis(b, w)
    corr = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return corr, np.sum(corr**2) / min(qa.shape[1], qb.shape[1])


def centred_orthonormal(rng, n, k):
    g = rng.normal(size=(n, k))
    q, _ = np.linalg.qr(g - g.mean(0))
    return q  # orthonormal columns with zero mean


def well_conditioned(rng, k):
    u, _ = np.linalg.qr(rng.normal(size=(k, k)))
    v, _ = np.linalg.qr(rng.normal(size=(k, k)))
    return u @ np.diag(np.linspace(1.0, 3.0, k)) @ v


N = 120  # alignment tests share shapes (N, 4) and (N, 3): one compiled program per dtype


def pair_with_angles4(rng, theta):
    """(N, 4) and (N, 3) centred bases with principal angles ``theta`` (three of them)."""
    q = centred_orthonormal(rng, N, 7)
    A, B = q[:, :3], q[:, :3] * np.cos(theta) + q[:, 3:6] * np.sin(theta)
    return np.c_[A, q[:, 6]], B


# ------------------------------------------------------------------------------------------------
# CCA
# ------------------------------------------------------------------------------------------------
def test_cca_matches_numpy_reference(precision, rng):
    a = rng.normal(size=(N, 4))
    b = np.c_[a[:, :2] @ rng.normal(size=(2, 2)), rng.normal(size=N)] + 0.5 * rng.normal(
        size=(N, 3)
    )
    tol = _tol(precision, 2e-5, 1e-12)
    for w in (None, rng.uniform(0.1, 1.0, N)):
        r = evaluation.cca(a, b, weights=w)
        corr, r2 = np_cca(a, b, w)
        assert r.correlations.dtype == precision and r.correlations.shape == (3,)
        np.testing.assert_allclose(np.asarray(r.correlations), corr, atol=tol)
        assert float(r.r2) == pytest.approx(r2, abs=tol)
        assert int(r.rank_a) == 4 and int(r.rank_b) == 3


def test_cca_invariances(precision, rng):
    x = rng.normal(size=(N, 3))
    a = np.c_[x, rng.normal(size=N)]
    b = np.tanh(x @ rng.normal(size=(3, 3))) + 0.3 * rng.normal(size=(N, 3))
    tol = _tol(precision, 1e-5, 1e-13)
    # a linear invertible map of the same features (plus a shift) lies in a's span: R2 = 1
    same = evaluation.cca(a, x @ well_conditioned(rng, 3) + 7.0)
    assert float(same.r2) == pytest.approx(1.0, abs=tol)
    np.testing.assert_allclose(np.asarray(same.correlations), 1.0, atol=tol)
    base = evaluation.cca(a, b)
    moved = evaluation.cca(a @ well_conditioned(rng, 4) - 2.0, b @ well_conditioned(rng, 3) + 1.0)
    np.testing.assert_allclose(np.asarray(moved.correlations), np.asarray(base.correlations),
                               atol=_tol(precision, 1e-5, 1e-12))
    assert float(moved.r2) == pytest.approx(float(base.r2), abs=tol)
    # integer features get JAX's default float (float64 under x64), like every other builder
    as_int = evaluation.cca(np.rint(10 * a).astype(np.int64), b)
    assert as_int.correlations.dtype == precision and 0 < float(as_int.r2) <= 1


def test_cca_independent_and_known_correlations(rng):
    n = 4000
    r = evaluation.cca(rng.normal(size=(n, 4)), rng.normal(size=(n, 3)))
    assert float(r.r2) < 0.01  # E[R2] ~ d / n
    rho = np.array([0.9, 0.5, 0.0])  # latent model with these population canonical correlations
    z = rng.normal(size=(n, 3))
    a = np.c_[z, rng.normal(size=n)] @ well_conditioned(rng, 4)
    b = (rho * z + np.sqrt(1 - rho**2) * rng.normal(size=(n, 3))) @ well_conditioned(rng, 3)
    np.testing.assert_allclose(np.asarray(evaluation.cca(a, b).correlations), rho, atol=0.05)


def test_rank_deficient_inputs_drop_directions(precision, rng):
    x = rng.normal(size=(N, 3))
    a = np.c_[x[:, 0], x[:, 1], x[:, 0] + x[:, 1], np.full(N, 4.0)]  # rank 2 after centring
    tol = _tol(precision, 1e-5, 1e-12)
    r = evaluation.cca(a, x)
    assert int(r.rank_a) == 2 and int(r.rank_b) == 3
    # d = min(d_a, d_b) = 3 columns: the lost direction counts as correlation 0 (a collapsed
    # encoder is not scored on the directions it kept only)
    assert float(r.r2) == pytest.approx(2 / 3, abs=tol)
    np.testing.assert_allclose(np.asarray(r.correlations), [1.0, 1.0, 0.0], atol=tol)
    assert float(evaluation.subspace_distance(a, x)) == pytest.approx(1 / 3, abs=tol)
    c = np.c_[x[:, 0], x[:, 0], x[:, 0], 2 * x[:, 0]]  # rank 1
    r = evaluation.cca(c, x)
    assert int(r.rank_a) == 1 and float(r.r2) == pytest.approx(1 / 3, abs=tol)
    np.testing.assert_array_equal(np.asarray(r.correlations)[1:], 0.0)
    ang = np.asarray(evaluation.principal_angles(c, x))
    assert ang[0] < 1e-3 and np.all(ang[1:] == np.asarray(np.pi / 2, precision))
    assert float(evaluation.subspace_distance(c, x)) == pytest.approx(2 / 3, abs=tol)
    # the common use: the span of a collapsed encoder's kept directions, against itself
    assert float(evaluation.subspace_distance(c[:, :1], x[:, :1])) < tol


# ------------------------------------------------------------------------------------------------
# Principal angles and subspace distance
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["small", "large", "mixed"])
def test_principal_angles_small_and_right_angles_vs_scipy(precision, rng, case):
    f64 = precision == np.float64
    small = [1e-6, 1e-4, 1e-3] if f64 else [1e-3, 1e-2, 0.3]
    large = [1.0, np.pi / 2 - 1e-4, np.pi / 2]
    theta = np.array({"small": small, "large": large, "mixed": small[:2] + large[2:]}[case])
    A, B = pair_with_angles4(rng, theta)
    ang = np.asarray(evaluation.principal_angles(A @ well_conditioned(rng, 4),
                                                 B @ well_conditioned(rng, 3) + 3.0))
    assert ang.dtype == precision and np.all(np.diff(ang) >= 0)
    rtol, atol = (1e-8, 1e-15) if f64 else (0, 2e-5)
    np.testing.assert_allclose(ang, theta, rtol=rtol, atol=atol)
    if case != "mixed":
        # scipy (1.17) pairs its sine/cosine mask with the angles in reverse order, so with
        # small and large angles together it takes arccos of cosines near 1 (~1e-3 relative
        # error at 1e-6); the single-regime cases are where it is accurate
        np.testing.assert_allclose(ang, np.sort(sla.subspace_angles(A, B)), rtol=rtol, atol=atol)


def test_principal_angles_either_side_wider(precision, rng):
    A, B = pair_with_angles4(rng, np.array([1e-3, 0.2, 0.7]))
    for a, b in [(A, B), (B, A)]:  # rank_a >= rank_b and rank_a < rank_b
        ang = np.asarray(evaluation.principal_angles(a, b))
        assert ang.shape == (3,)
        np.testing.assert_allclose(ang, np.sort(sla.subspace_angles(a, b)),
                                   rtol=_tol(precision, 1e-3, 1e-9), atol=_tol(precision, 2e-5, 0))


def test_subspace_distance_is_mean_sin2_and_accurate_near_zero(precision, rng):
    f64 = precision == np.float64
    theta = np.array([1e-7, 3e-7, 1e-6]) if f64 else np.array([1e-3, 3e-3, 0.01])
    A, B = pair_with_angles4(rng, theta)
    dist = float(evaluation.subspace_distance(A @ well_conditioned(rng, 4), B))
    assert dist == pytest.approx(np.mean(np.sin(theta) ** 2), rel=_tol(precision, 1e-3, 1e-7))
    theta = np.array([0.2, 0.9, 1.4])
    A, B = pair_with_angles4(rng, theta)
    dist = float(evaluation.subspace_distance(A, B))
    tol = _tol(precision, 1e-6, 1e-14)
    assert dist == pytest.approx(np.mean(np.sin(theta) ** 2), abs=tol)
    assert dist == pytest.approx(1.0 - float(evaluation.cca(A, B).r2), abs=tol)


def test_alignment_metrics_jit(rng):
    a, b = rng.normal(size=(N, 4)), rng.normal(size=(N, 3))

    def all_metrics(a, b):
        return (evaluation.cca(a, b), evaluation.principal_angles(a, b),
                evaluation.subspace_distance(a, b), evaluation.mutual_knn(a, b, k=5))

    chex.clear_trace_counter()
    step = jax.jit(chex.assert_max_traces(all_metrics, n=1))  # e.g. logged in a training loop
    eager = jax.tree_util.tree_leaves(all_metrics(a, b))
    jitted = jax.tree_util.tree_leaves(step(jnp.asarray(a), jnp.asarray(b)))
    for e, j in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(np.asarray(j), np.asarray(e), atol=1e-5)
    step(jnp.asarray(a + 1.0), jnp.asarray(2.0 * b))  # new values, same shapes: no retrace


@pytest.mark.parametrize(
    "fn", [evaluation.cca, evaluation.principal_angles, evaluation.subspace_distance,
           evaluation.mutual_knn]
)
def test_alignment_metrics_reject_bad_input(fn, rng):
    a = rng.normal(size=(30, 3))
    with pytest.raises(ValueError, match="same points"):
        fn(a, a[:20])
    with pytest.raises(ValueError, match="n=3 <= d=3"):
        fn(a[:3], a[:3])
    bad = a.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, a)
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((30, 0)), a)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        fn(a[:, :, None], a)
    with pytest.raises(TypeError, match="complex"):
        fn(a + 1j, a)


def test_basis_metrics_reject_bad_weights_and_constants(rng):
    a = rng.normal(size=(N, 3))
    with pytest.raises(ValueError, match="weights"):
        evaluation.cca(a, a, weights=np.ones(N - 1))
    with pytest.raises(ValueError, match="negative"):
        evaluation.cca(a, a, weights=-np.ones(N))
    with pytest.raises(ValueError, match="zero"):
        evaluation.cca(a, a, weights=np.zeros(N))
    with pytest.raises(ValueError, match="constant"):
        evaluation.principal_angles(np.ones((N, 4)), a)


# ------------------------------------------------------------------------------------------------
# Mutual kNN
# ------------------------------------------------------------------------------------------------
def np_mutual_knn(a, b, k):
    def nbrs(x):
        x = np.asarray(x, np.float64)
        xc = x - x.mean(0)
        C = xc.T @ xc / len(x)
        C += 1e-6 * np.trace(C) / C.shape[0] * np.eye(C.shape[0])  # whiten()'s jitter
        diff = xc[:, None, :] - xc[None, :, :]
        d2 = np.einsum("ijk,kl,ijl->ij", diff, np.linalg.inv(C), diff)  # Mahalanobis
        np.fill_diagonal(d2, np.inf)
        return np.argsort(d2, axis=1, kind="stable")[:, :k]

    na, nb = nbrs(a), nbrs(b)
    return np.mean([len(set(na[i]) & set(nb[i])) for i in range(len(na))]) / k


def test_mutual_knn_matches_bruteforce(precision, rng):
    n, k = 157, 10  # n not a multiple of the tile
    a = rng.normal(size=(n, 3))
    b = np.c_[a[:, 0] + 0.3 * rng.normal(size=n), rng.normal(size=(n, 2))] @ well_conditioned(
        rng, 3
    )
    got = evaluation.mutual_knn(a, b, k=k, block_rows=16)
    assert got.dtype == precision
    ref = np_mutual_knn(a, b, k)
    assert 0.05 < ref < 0.95
    assert float(got) == pytest.approx(ref, abs=_tol(precision, 1.5 / (n * k), 1e-12))
    # invariant to invertible maps (whitened), and 1 for the same span
    one = evaluation.mutual_knn(a, a @ well_conditioned(rng, 3) + 5.0, k=k, block_rows=16)
    assert float(one) == pytest.approx(1.0, abs=_tol(precision, 2e-3, 0))


def test_mutual_knn_rejects_bad_k(rng):
    a = rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="k="):
        evaluation.mutual_knn(a, a, k=20)
    with pytest.raises(ValueError, match="positive"):
        evaluation.mutual_knn(a, a, k=0)


# ------------------------------------------------------------------------------------------------
# Post-hoc spectrum and the dimensional-collapse remedy
# ------------------------------------------------------------------------------------------------
M = 48  # samples of every post-hoc problem


def exact_top(ctx, d, gram=None):
    """float64 reference: eigh of the operator restricted to centred functions."""
    w = np.full(M, 1.0 / M) if ctx is None else np.asarray(ctx.weights, np.float64)
    w = w / w.sum()
    if gram is not None:
        A = np.sqrt(w)[:, None] * np.asarray(gram, np.float64) * np.sqrt(w)[None, :]
    else:
        Z = np.asarray(ctx.operator().to_dense(), np.float64)
        A = Z if ctx.squared else Z @ Z.T
    u0 = np.sqrt(w)
    Pp = np.eye(len(w)) - np.outer(u0, u0)
    lam, U = np.linalg.eigh(Pp @ A @ Pp)
    lam, U = lam[::-1][:d], U[:, ::-1][:, :d]
    return np.sqrt(np.maximum(lam, 0)), U / np.sqrt(w)[:, None], w


def rbf_gram(x):
    return np.exp(-0.5 * np.sum((x[:, None] - x[None]) ** 2, -1))


def make_problem(kind, rng):
    """(context, gram): a conditional, Gauss-Hermite (non-uniform P_X), dual-kernel, or Gram."""
    if kind == "conditional":
        return contexts.from_conditional(rng.uniform(size=(M, 30)) ** 4), None
    if kind == "quadrature":  # weights = Gauss-Hermite quadrature weights; s_i -> 0.6^i
        ctx = datasets.gaussian_noise(24, 1, 0.6, sampling="quadrature").context
        return ctx, None
    x = rng.normal(size=(M, 2))
    if kind == "kernel":  # a squared context: operator K / m
        return contexts.from_kernel(x, lambda u, v: jnp.exp(-0.5 * jnp.sum(
            (u[:, None, :] - v[None, :, :]) ** 2, -1))), None
    return None, rbf_gram(x)


def aligned_error(f, mu, w):
    """L2(P_X) error of each estimated function after fixing its sign."""
    f = np.asarray(f, np.float64) * np.sign(np.sum(w[:, None] * np.asarray(f) * mu, axis=0))
    return np.sqrt(np.sum(w[:, None] * (f - mu) ** 2, axis=0))


@pytest.mark.parametrize(
    "kind, precision",
    [("conditional", "float32"), ("conditional", "float64"), ("quadrature", "float64"),
     ("kernel", "float32"), ("gram", "float32"), ("gram", "float64")],
    indirect=["precision"],
)
def test_posthoc_spectrum_recovers_exact_pairs(precision, rng, kind):
    d = 4
    ctx, G = make_problem(kind, rng)
    s, mu, w = exact_top(ctx, d, G)
    assert np.all(-np.diff(s) > 1e-3)  # distinct values: functions are defined up to sign
    phi = mu @ well_conditioned(rng, d) + 3.0  # the exact span, mixed and shifted
    res = evaluation.posthoc_spectrum(phi, context=ctx, gram=G)
    assert res.s.dtype == precision and res.V.shape == (d, d) and int(res.rank) == d
    np.testing.assert_allclose(np.asarray(res.s), s, atol=_tol(precision, 2e-5, 1e-11))
    np.testing.assert_allclose(np.asarray(res.lambdas), s**2, atol=_tol(precision, 2e-5, 1e-11))
    assert aligned_error(res.functions, mu, w).max() < _tol(precision, 2e-3, 1e-8)
    f = np.asarray(res.functions, np.float64)  # unit norm and orthogonal in L2(P_X)
    assert np.all(f[np.argmax(np.abs(f), axis=0), np.arange(d)] > 0)  # sign convention
    np.testing.assert_allclose(f.T @ (w[:, None] * f), np.eye(d), atol=_tol(precision, 1e-4, 1e-11))
    np.testing.assert_allclose(np.asarray(res.transform(phi)), f, atol=_tol(precision, 1e-3, 1e-9))
    if kind == "conditional" and precision == np.float64:  # sum lambda = tr(C^-1 B) (Lemma 22)
        rt = float(jax.jit(spectrum.ratio_trace)(ctx, phi))
        assert float(jnp.sum(res.lambdas)) == pytest.approx(rt, rel=_tol(precision, 1e-4, 1e-10))
    if kind == "gram" and precision == np.float32:  # the same through a context's operator
        x = rng.normal(size=(M, 2))
        G = rbf_gram(x)
        ctx = contexts.from_kernel(x, lambda u, v: jnp.exp(-0.5 * jnp.sum(
            (u[:, None, :] - v[None, :, :]) ** 2, -1)))
        a = evaluation.posthoc_spectrum(phi, context=ctx)
        b = evaluation.posthoc_spectrum(phi, gram=G)
        np.testing.assert_allclose(np.asarray(b.s), np.asarray(a.s), atol=1e-5)


def test_top_eigenfunctions_recover_from_wide_collapsed_encoder(precision, rng):
    d = 3
    ctx = contexts.from_conditional(rng.uniform(size=(M, 30)) ** 4)
    s, mu, w = exact_top(ctx, d)
    noise = rng.normal(size=(M, 4))
    collapsed = np.c_[mu[:, :1] * 2.0, noise[:, :2] @ rng.normal(size=(2, 3))]  # no new rank
    wide = np.c_[mu, noise, collapsed] @ well_conditioned(rng, 11) + 1.0  # d1 = 11, rank 7
    res = evaluation.top_eigenfunctions(wide, d, context=ctx)
    assert res.V.shape == (11, d) and int(res.rank) == 7
    np.testing.assert_allclose(np.asarray(res.s), s, atol=_tol(precision, 5e-5, 1e-10))
    assert aligned_error(res.transform(wide), mu, w).max() < _tol(precision, 5e-3, 1e-7)
    if precision == np.float64:
        full = evaluation.posthoc_spectrum(wide, context=ctx)
        assert int(full.rank) == 7 and np.all(np.asarray(full.s)[7:] == 0)
        assert np.all(np.asarray(full.V)[:, 7:] == 0)


def test_posthoc_is_jittable(rng):
    ctx = contexts.from_conditional(rng.uniform(size=(M, 30)) ** 4)
    phi = rng.normal(size=(M, 4))
    eager = evaluation.posthoc_spectrum(phi, context=ctx)
    jitted = jax.jit(lambda p, c: evaluation.top_eigenfunctions(p, 2, context=c))(
        jnp.asarray(phi), ctx
    )
    np.testing.assert_allclose(np.asarray(jitted.s), np.asarray(eager.s[:2]), atol=1e-5)


def test_posthoc_rejects_bad_input(rng):
    ctx = contexts.from_conditional(rng.uniform(size=(M, 30)) ** 4)
    phi = rng.normal(size=(M, 4))
    G = np.eye(M)
    with pytest.raises(ValueError, match="exactly one"):
        evaluation.posthoc_spectrum(phi)
    with pytest.raises(ValueError, match="exactly one"):
        evaluation.posthoc_spectrum(phi, context=ctx, gram=G)
    with pytest.raises(ValueError, match="weights"):
        evaluation.posthoc_spectrum(phi, context=ctx, weights=np.ones(M))
    with pytest.raises(ValueError, match="one row per context sample"):
        evaluation.posthoc_spectrum(phi[:20], context=ctx)
    with pytest.raises(ValueError, match="n=48 <= d=48"):
        evaluation.posthoc_spectrum(rng.normal(size=(M, M)), context=ctx)
    with pytest.raises(ValueError, match="NaN"):
        evaluation.posthoc_spectrum(np.where(phi > 2, np.inf, phi), context=ctx)
    with pytest.raises(ValueError, match="symmetric"):
        evaluation.posthoc_spectrum(phi, gram=np.triu(np.ones((M, M))))
    with pytest.raises(ValueError, match=r"\(48, 48\)"):
        evaluation.posthoc_spectrum(phi, gram=np.eye(M - 1))
    with pytest.raises(ValueError, match="constant"):
        evaluation.posthoc_spectrum(np.ones((M, 4)), context=ctx)
    with pytest.raises(ValueError, match="at most 4"):
        evaluation.top_eigenfunctions(phi, 5, context=ctx)
    with pytest.raises(ValueError, match="collapsed"):
        evaluation.top_eigenfunctions(np.c_[phi[:, :1], phi[:, :1], phi[:, :1], phi[:, :1]], 2,
                                      context=ctx)
    res = evaluation.posthoc_spectrum(phi, context=ctx)
    with pytest.raises(ValueError, match="4 features"):
        res.transform(phi[:, :2])


# ------------------------------------------------------------------------------------------------
# Probes
# ------------------------------------------------------------------------------------------------
def test_ridge_matches_sklearn(precision, rng):
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True)
    Y = np.c_[y, y**0.5]  # two targets
    tr, te = slice(0, 320), slice(320, None)
    for alpha in (1e-2, 3.0):
        r = evaluation.ridge_probe(X[tr], Y[tr], X[te], Y[te], alphas=(alpha,))
        sc = StandardScaler().fit(X[tr])
        sk = Ridge(alpha=alpha).fit(sc.transform(X[tr]), Y[tr])
        assert r.coef.dtype == precision and r.coef.shape == (10, 2) and r.cv_error is None
        np.testing.assert_allclose(np.asarray(r.coef), sk.coef_.T / sc.scale_[:, None],
                                   rtol=_tol(precision, 2e-3, 1e-9), atol=_tol(precision, 0.5, 0))
        pred = sk.predict(sc.transform(X[te]))
        np.testing.assert_allclose(np.asarray(r.predict(X[te])), pred,
                                   rtol=_tol(precision, 1e-4, 1e-10))
        mse = np.mean((pred - Y[te]) ** 2)
        assert r.test["mse"] == pytest.approx(mse, rel=_tol(precision, 1e-4, 1e-10))
        r2 = np.mean(1 - ((pred - Y[te]) ** 2).sum(0) / ((Y[te] - Y[te].mean(0)) ** 2).sum(0))
        assert r.test["r2"] == pytest.approx(r2, rel=_tol(precision, 1e-4, 1e-10))


def test_ridge_cv_curve_matches_sklearn_folds(rng):
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    n, d = 120, 6
    X = rng.normal(size=(n, d)) * np.arange(1, d + 1) + 2.0
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    key = jax.random.key(3)
    r = evaluation.ridge_probe(X, y, alphas=(1e-2, 1.0, 1e2), folds=4, key=key)
    ids = evaluation._fold_ids(key, n, 4)
    ref = np.zeros(3)
    for j, alpha in enumerate((1e-2, 1.0, 1e2)):
        for f in range(4):
            tr, va = ids != f, ids == f
            sc = StandardScaler().fit(X[tr])
            p = Ridge(alpha=alpha).fit(sc.transform(X[tr]), y[tr]).predict(sc.transform(X[va]))
            ref[j] += np.sum((p - y[va]) ** 2)
    np.testing.assert_allclose(r.cv_error, ref / n, rtol=1e-4)
    assert r.alpha == (1e-2, 1.0, 1e2)[int(np.argmin(ref))]


def test_ridge_cv_picks_the_bayes_penalty(rng):
    """y = X w + noise, w ~ N(0, tau^2 I), standard X: the best penalty is sigma^2 / tau^2."""
    n, d, tau2 = 200, 150, 0.1  # sigma = 1: alpha* = 10; d close to n makes the curve sharp
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) * np.sqrt(tau2)
    y = X @ w + rng.normal(size=n)
    r = evaluation.ridge_probe(X, y, alphas=(1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3), folds=5,
                               key=jax.random.key(0))
    assert r.alpha == 10.0 and r.alpha == r.alphas[np.argmin(r.cv_error)]
    assert r.cv_error[3] < 0.6 * min(r.cv_error[0], r.cv_error[-1]) and r.train["r2"] > 0.5


@pytest.mark.parametrize("precision", ["float64"], indirect=True)
def test_logistic_matches_sklearn_fits_and_folds(precision):
    """Multinomial logistic probe = scikit-learn's LogisticRegression(C = 1 / alpha); its path."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X, y = X[:300, ::2], y[:300]  # small: 32 features, 10 classes
    cls = np.array([f"digit {c}" for c in range(10)])  # any label type
    alphas, key = (1.0, 30.0), jax.random.key(1)
    r = evaluation.ridge_probe(X[:200], cls[y[:200]], X[200:], cls[y[200:]], alphas=alphas,
                               folds=3, key=key)
    assert r.task == "classification" and list(r.classes) == list(cls)
    assert r.coef.dtype == precision and r.coef.shape == (32, 10) and r.cv_loss.shape == (2,)
    # the cross-validation curve: the same folds through scikit-learn
    ids = evaluation._fold_ids(key, 200, 3)
    ref = np.zeros(2)
    for j, alpha in enumerate(alphas):
        for f in range(3):
            tr, va = ids != f, ids == f
            sc = StandardScaler().fit(X[:200][tr])
            sk = LogisticRegression(C=1 / alpha, tol=1e-8, max_iter=5000)
            sk.fit(sc.transform(X[:200][tr]), y[:200][tr])
            ref[j] += np.sum(sk.predict(sc.transform(X[:200][va])) != y[:200][va])
    np.testing.assert_allclose(r.cv_error, ref / 200, atol=1.5 / 200)  # at most one flip
    # the refit at the chosen penalty
    sc = StandardScaler().fit(X[:200])
    sk = LogisticRegression(C=1 / r.alpha, tol=1e-12, max_iter=10000)
    sk.fit(sc.transform(X[:200]), y[:200])
    p = np.asarray(jax.nn.softmax(r.decision_function(X)))
    np.testing.assert_allclose(p, sk.predict_proba(sc.transform(X)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(r.coef) * sc.scale_[:, None], sk.coef_.T, atol=1e-5)
    top2 = np.sort(p, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # away from the decision boundary
    assert clear.sum() > 280
    assert (r.predict(X) == cls[sk.predict(sc.transform(X))])[clear].all()
    acc = np.mean(sk.predict(sc.transform(X[200:])) == y[200:])
    assert r.test["accuracy"] == pytest.approx(acc) and r.test["accuracy"] > 0.85
    assert r.test["error"] == pytest.approx(1 - r.test["accuracy"])

    # Each fold solves the penalty path strong to weak, warm-started. Run in reverse it starts
    # cold at the weakest penalty (nearly separable classes: the hardest fit): the same fits,
    # Newton far from max_iter; L-BFGS (beyond _NEWTON_MAX_PARAMS) agrees. The shapes are the
    # probe's above, so the Newton program is compiled once (tests run on two xdist workers).
    masks = np.r_[ids[None] != np.arange(3)[:, None], np.ones((1, 200), bool)]
    args = (jnp.asarray(X[:200], precision), jnp.asarray(np.eye(10)[y[:200]], precision),
            jnp.asarray(y[:200], jnp.int32), jnp.asarray(masks, precision))
    tol = float(np.finfo(precision).eps ** (2 / 3))  # the probe's default

    def path(alphas, method):
        _, _, W, b, its = evaluation._logistic_folds(*args, jnp.asarray(alphas, precision), 500,
                                                     tol, method=method)
        z = jnp.einsum("nd,fadc->fanc", args[0], W) + b[:, :, None, :]
        order = np.argsort(alphas)[::-1]  # strong to weak
        return np.asarray(jax.nn.softmax(z, -1))[:, order], np.asarray(its)[:, order]

    warm, its = path((30.0, 1e-3), "newton")
    np.testing.assert_allclose(path((1e-3, 30.0), "newton")[0], warm, atol=1e-9)
    assert its.max() <= 20  # quadratic convergence, to float64 rounding
    # L-BFGS stops on |grad| <= tol: along weakly penalised directions (curvature alpha / n
    # ~ 1e-5) that leaves ~1e-6 in the probabilities
    lbfgs, its = path((30.0, 1e-3), "lbfgs")
    np.testing.assert_allclose(lbfgs, warm, atol=1e-5)
    assert its.max() < 500


def test_binary_logistic_is_sklearns_binomial_fit():
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:200, :6], y[:200]
    r = evaluation.ridge_probe(X, y.astype(bool), alphas=(2.0,))
    sc = StandardScaler().fit(X)
    sk = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(sc.transform(X), y)
    np.testing.assert_allclose(np.asarray(r.coef)[:, 0], 0.0)
    np.testing.assert_allclose(np.asarray(r.coef)[:, 1] * sc.scale_, sk.coef_[0], atol=2e-3)
    p = np.asarray(jax.nn.softmax(r.decision_function(X)))[:, 1]
    np.testing.assert_allclose(p, sk.predict_proba(sc.transform(X))[:, 1], atol=1e-3)


def test_probe_rejects_bad_input(rng):
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="expected 40 targets"):
        evaluation.ridge_probe(X, y[:30], key=key)
    with pytest.raises(ValueError, match=r"\(n,\) or \(n, t\)"):
        evaluation.ridge_probe(X, y.reshape(40, 1, 1), key=key)
    with pytest.raises(ValueError, match="NaN"):
        evaluation.ridge_probe(X, np.where(y > 1, np.nan, y), key=key)
    with pytest.raises(ValueError, match="key"):
        evaluation.ridge_probe(X, y)
    with pytest.raises(ValueError, match="both or neither"):
        evaluation.ridge_probe(X, y, X, key=key)
    with pytest.raises(ValueError, match="3 columns"):
        evaluation.ridge_probe(X, y, X[:, :2], y, key=key)
    with pytest.raises(ValueError, match="trailing shape"):
        evaluation.ridge_probe(X, y, X, np.c_[y, y], key=key)
    with pytest.raises(ValueError, match="alphas"):
        evaluation.ridge_probe(X, y, alphas=(1.0, -1.0), key=key)
    with pytest.raises(ValueError, match="folds"):
        evaluation.ridge_probe(X, y, folds=1, key=key)
    with pytest.raises(ValueError, match="task"):
        evaluation.ridge_probe(X, y, task="ranking", key=key)
    labels = (y > 0).astype(int)
    with pytest.raises(ValueError, match="1-D"):
        evaluation.ridge_probe(X, np.c_[labels, labels], task="classification", key=key)
    with pytest.raises(ValueError, match="2 classes"):
        evaluation.ridge_probe(X, np.zeros(40, int), alphas=(1.0,))
    with pytest.raises(ValueError, match="not seen"):
        evaluation.ridge_probe(X, labels, X, labels + 5, alphas=(1.0,))
    with pytest.raises(ValueError, match="tol"):
        evaluation.ridge_probe(X, labels, alphas=(1.0,), tol=-1.0)


def test_whitening_is_the_projects_routine(rng):
    """mutual_knn whitens with whiten(): neighbours on whiten(a).z equal those on a."""
    a, b = rng.normal(size=(157, 3)) @ well_conditioned(rng, 3), rng.normal(size=(157, 3))
    za = np.asarray(jax.jit(whiten)(a).z)
    assert float(evaluation.mutual_knn(a, b, k=10, block_rows=16)) == pytest.approx(
        float(evaluation.mutual_knn(za, b, k=10, block_rows=16))
    )
