"""Known-spectrum problems against dense float64 SVDs; loaders for bundled and user data."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.sparse.linalg import eigsh
from scipy.special import eval_hermitenorm

from jaxcontext import datasets as ds


def _dense(prob):
    return np.asarray(prob.context.operator().to_dense(), np.float64)


def _key(rng):
    return jax.random.key(int(rng.integers(2**31)))


def _cosines(A, B):
    """Cosines of the principal angles between the column spans of A and B."""
    qa, _ = np.linalg.qr(A)
    qb, _ = np.linalg.qr(B)
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


# --------------------------------------------------------------------------------------------------
# Hypercube
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim,p", [(1, 0.2), (3, 0.1), (5, 0.3), (6, 0.75), (4, 0.5), (3, 0.0)])
def test_hypercube_spectrum_matches_dense_svd(dim, p):
    prob = ds.hypercube(dim, p)
    Z = _dense(prob)
    assert Z.shape == (2**dim, 2**dim)
    s = np.linalg.svd(Z, compute_uv=False)
    np.testing.assert_allclose(s, prob.singular_values, atol=1e-5)
    sp = ds.analytic_spectrum(prob)
    assert sp.multiplicities.tolist() == [math.comb(dim, k) for k in range(dim + 1)]
    np.testing.assert_allclose(sp.expand(), prob.singular_values)


@pytest.mark.parametrize("dim,p", [(3, 0.1), (5, 0.3), (6, 0.75)])
def test_hypercube_parities_are_exact_singular_vectors(dim, p):
    prob = ds.hypercube(dim, p)
    n = 2**dim
    U = ds.sample_singular_vectors(prob, n)
    np.testing.assert_allclose(U.T @ U, np.eye(n), atol=1e-12)  # exactly orthonormal
    Z = _dense(prob)
    s2 = prob.singular_values**2
    np.testing.assert_allclose(Z @ (Z.T @ U), U * s2, atol=1e-5)
    # mean zero beyond the constant
    np.testing.assert_allclose(prob.singular_functions(np.asarray(prob.x), n)[:, 1:].mean(0), 0,
                               atol=1e-12)


def test_hypercube_kronecker_matches_dense():
    a = ds.hypercube(6, 0.3, dense=True)
    b = ds.hypercube(6, 0.3, dense=False)
    np.testing.assert_allclose(_dense(b), _dense(a), atol=1e-6)
    np.testing.assert_allclose(np.asarray(b.context.marginal()), 2.0**-6, rtol=1e-5)


def test_hypercube_large_matrix_free():
    dim, p = 13, 0.2
    prob = ds.hypercube(dim, p)  # 8192 states: Kronecker operator, never dense
    Z = prob.context.operator()
    n = 1 + dim + 3
    U = ds.sample_singular_vectors(prob, n).astype(np.float32)
    out = np.asarray(Z.matmat(Z.rmatmat(jnp.asarray(U))), np.float64)
    err = np.abs(out - U * prob.singular_values[:n] ** 2).max() / np.abs(U).max()
    assert err < 1e-4


def test_hypercube_pair_sampler_flips_at_rate_p():
    dim, p = 4, 0.2
    prob = ds.hypercube(dim, p)
    xb, ab = prob.context.sample_pairs(jax.random.key(0), 20000)
    rate = float(np.mean(np.asarray(xb) != np.asarray(ab)))
    assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / (20000 * dim))


def test_parity_functions_values():
    pts = np.array([[1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]])
    F = ds.parity_functions(pts, 8)
    # order: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}, {0,1,2}
    expected = np.stack([np.ones(2), pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 0] * pts[:, 1],
                         pts[:, 0] * pts[:, 2], pts[:, 1] * pts[:, 2], pts.prod(1)], axis=1)
    np.testing.assert_array_equal(F, expected)


# --------------------------------------------------------------------------------------------------
# Cycle
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 7, 8, 12])
def test_cycle_spectrum_and_modes(n):
    prob = ds.cycle(n)
    Z = _dense(prob)
    np.testing.assert_allclose(Z, Z.T, atol=1e-7)
    s = np.sort(np.abs(np.linalg.eigvalsh(Z)))[::-1]
    np.testing.assert_allclose(s, prob.singular_values, atol=1e-6)
    k = np.arange(n)
    np.testing.assert_allclose(np.sort(prob.singular_values),
                               np.sort(np.abs(np.cos(2 * np.pi * k / n))), atol=1e-12)
    U = ds.sample_singular_vectors(prob, n)
    np.testing.assert_allclose(U.T @ U, np.eye(n), atol=1e-6)
    # each mode is an eigenvector with the signed random-walk eigenvalue cos(2 pi f / n)
    lam = np.array([math.cos(2 * math.pi * f / n) for f, _ in prob.info["modes"]])
    np.testing.assert_allclose(Z @ U, U * lam, atol=1e-6)


def test_cycle_functions_node_ids_equal_circle_points():
    prob = ds.cycle(10)
    a = prob.singular_functions(np.arange(10), 10)
    b = prob.singular_functions(np.asarray(prob.x), 10)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # off-grid: half-way between nodes 0 and 1 the first nontrivial cosine is sqrt(2) cos(pi / 10)
    theta = np.pi / 10
    v = prob.singular_functions(np.array([[np.cos(theta), np.sin(theta)]]), 10)
    f, kind = prob.info["modes"][2]
    ref = math.sqrt(2) * (math.cos(f * theta) if kind == "cos" else math.sin(f * theta))
    assert abs(v[0, 2] - ref) < 1e-12


# --------------------------------------------------------------------------------------------------
# Balanced labels
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("C,dim", [(2, None), (5, None), (4, 2)])
def test_balanced_labels_spectrum_and_span(rng, C, dim):
    prob = ds.balanced_labels(C, 7, dim=dim, key=_key(rng))
    assert prob.x.shape == (7 * C, C if dim is None else dim)
    Z = _dense(prob)
    u, s, _ = np.linalg.svd(Z, full_matrices=False)
    np.testing.assert_allclose(s, np.ones(C), atol=1e-5)
    np.testing.assert_allclose(prob.singular_values, np.ones(C))
    Pi = ds.analytic_projector(prob, C)
    np.testing.assert_allclose(u[:, :C] @ u[:, :C].T, Pi, atol=1e-5)
    U = ds.sample_singular_vectors(prob, C)
    np.testing.assert_allclose(U.T @ U, np.eye(C), atol=1e-12)
    # the label is a function of x: features and labels give the same values
    y = prob.info["y"]
    np.testing.assert_array_equal(prob.singular_functions(np.asarray(prob.x), C),
                                  prob.singular_functions(y, C))
    with pytest.raises(ValueError, match="splits a level"):
        ds.analytic_projector(prob, C - 1) if C > 2 else ds.analytic_projector(prob, 1)


# --------------------------------------------------------------------------------------------------
# Gaussian noise (Mehler)
# --------------------------------------------------------------------------------------------------
def test_hermite_functions_match_scipy_and_are_orthonormal():
    pts = np.array([[0.3, -1.2], [2.0, 0.5]])
    F = ds.hermite_functions(pts, 6)
    # order: (0,0), (1,0), (0,1), (2,0), (1,1), (0,2)
    h = lambda k, t: eval_hermitenorm(k, t) / math.sqrt(math.factorial(k))  # noqa: E731
    x1, x2 = pts[:, 0], pts[:, 1]
    ref = np.stack([np.ones(2), h(1, x1), h(1, x2), h(2, x1), h(1, x1) * h(1, x2), h(2, x2)], 1)
    np.testing.assert_allclose(F, ref, atol=1e-12)
    # orthonormal in L2(N(0, I_3)) by a Gauss-Hermite rule exact for these degrees
    z, w = np.polynomial.hermite_e.hermegauss(12)
    w = w / w.sum()
    g = np.stack(np.meshgrid(z, z, z, indexing="ij"), -1).reshape(-1, 3)
    wg = np.einsum("i,j,k->ijk", w, w, w).ravel()
    F = ds.hermite_functions(g, 20)
    np.testing.assert_allclose(F.T @ (wg[:, None] * F), np.eye(20), atol=1e-10)


@pytest.mark.parametrize("dim,m,rho", [(2, 400, 0.6), (1, 30, -0.8), (3, 512, 0.5)])
def test_gaussian_noise_quadrature_spectrum(dim, m, rho):
    prob = ds.gaussian_noise(m, dim, rho, sampling="quadrature")
    Z = _dense(prob)
    s = np.linalg.svd(Z, compute_uv=False)
    sp = ds.analytic_spectrum(prob)
    assert sp.multiplicities[:3].tolist() == [1, dim, dim * (dim + 1) // 2]
    n = int(sp.multiplicities[:3].sum())  # total degree <= 2
    # acceptance: within 5% of rho^n (the quadrature context reaches ~1e-5)
    np.testing.assert_allclose(s[:n], prob.singular_values[:n], rtol=0.05)
    np.testing.assert_allclose(s[:n], prob.singular_values[:n], atol=2e-5)
    U = ds.sample_singular_vectors(prob, n)
    np.testing.assert_allclose(U.T @ U, np.eye(n), atol=1e-6)  # exact under the weights
    np.testing.assert_allclose(Z @ (Z.T @ U), U * prob.singular_values[:n] ** 2, atol=2e-5)


def test_gaussian_noise_quadrature_kronecker_matches_dense():
    a = ds.gaussian_noise(400, 2, 0.6, sampling="quadrature", dense=True)
    b = ds.gaussian_noise(400, 2, 0.6, sampling="quadrature", dense=False)
    np.testing.assert_allclose(_dense(b), _dense(a), atol=1e-6)


def _mehler_gram64(x, rho):
    t = rho * rho
    sq = (x * x).sum(1)
    e = (2 * t * x @ x.T - t * t * (sq[:, None] + sq[None, :])) / (2 * (1 - t * t))
    return (1 - t * t) ** (-x.shape[1] / 2) * np.exp(e)


def test_gaussian_noise_iid_operator_is_mehler_gram(rng):
    m, rho = 300, 0.6
    prob = ds.gaussian_noise(m, 2, rho, key=_key(rng))
    assert prob.context.squared
    x = np.asarray(prob.x, np.float64)
    ref = _mehler_gram64(x, rho) / m
    np.testing.assert_allclose(_dense(prob), ref, rtol=1e-4, atol=1e-5 * ref.max())
    # the pair sampler draws A = rho X + sqrt(1 - rho^2) eps
    xb, ab = prob.context.sample_pairs(_key(rng), 20000)
    xb, ab = np.asarray(xb, np.float64), np.asarray(ab, np.float64)
    resid = ab - rho * xb
    assert abs(resid.var() - (1 - rho**2)) < 0.03
    assert np.abs(np.mean(resid * xb, axis=0)).max() < 0.03


def test_gaussian_noise_iid_spectrum_estimates_rho_powers():
    # i.i.d. sampling error is heavy-tailed (k(x, x) has infinite variance for rho^2 >= 1/3):
    # measured relative error of the degree-1/2 eigenvalues ~ 6 / sqrt(m), so 5% needs
    # m ~ 15000-20000; at m = 2000 the estimates are within ~15%, and a wrong power of rho
    # (e.g. t = rho^2 vs rho^4) would be off by > 60%.
    prob = ds.gaussian_noise(2000, 2, 0.6, key=jax.random.key(0))
    ev = np.sort(eigsh(_dense(prob), k=6, which="LA", return_eigenvectors=False))[::-1]
    np.testing.assert_allclose(ev, prob.singular_values[:6] ** 2, rtol=0.3)
    assert abs(ev[0] - 1.0) < 0.02


# --------------------------------------------------------------------------------------------------
# Stochastic block model
# --------------------------------------------------------------------------------------------------
def _expected_normalized(n, b, p_in, p_out):
    blocks = ds.sbm_blocks(n, b)
    EW = np.where(blocks[:, None] == blocks[None, :], p_in, p_out).astype(np.float64)
    np.fill_diagonal(EW, 0.0)
    d = EW.sum(1)
    return EW / np.sqrt(d[:, None] * d[None, :]), d


@pytest.mark.parametrize(
    "n,b,p_in,p_out", [(60, 3, 0.4, 0.1), (61, 4, 0.3, 0.15), (40, 2, 0.2, 0.4)]
)
def test_sbm_population_spectrum_is_expected_graph(n, b, p_in, p_out):
    sp, vals, vecs = ds.sbm_spectrum(n, b, p_in, p_out)
    M, d = _expected_normalized(n, b, p_in, p_out)
    ev = np.linalg.eigvalsh(M)
    top = np.sort(np.abs(ev))[::-1][:b]
    np.testing.assert_allclose(np.abs(vals), top, atol=1e-10)
    if n % b == 0:  # equal blocks: (s (p_in - p_out) - p_in) / d, multiplicity b - 1
        size = n // b
        s1 = abs(size * (p_in - p_out) - p_in) / d[0]
        np.testing.assert_allclose(np.abs(vals[1:]), s1, atol=1e-12)
        assert abs(s1 - abs(p_in - p_out) / (p_in + (b - 1) * p_out)) < 2 * p_in / d[0]
    # the population singular functions: orthonormal under P_X ~ degree, eigenvectors of M
    F = ds.sbm(n, b, p_in, p_out, key=jax.random.key(1)).singular_functions(np.arange(n), b)
    pi = d / d.sum()
    np.testing.assert_allclose(F.T @ (pi[:, None] * F), np.eye(b), atol=1e-10)
    V = np.sqrt(pi)[:, None] * F
    np.testing.assert_allclose(M @ V, V * vals, atol=1e-10)
    np.testing.assert_allclose(F[:, 0], 1.0, atol=1e-12)


def test_sbm_sample_spectrum_near_population(rng):
    n, b, p_in, p_out = 600, 3, 0.3, 0.05
    prob = ds.sbm(n, b, p_in, p_out, key=_key(rng))
    Z = _dense(prob)
    ev, evec = np.linalg.eigh(Z)
    order = np.argsort(-np.abs(ev))
    s = np.abs(ev[order])
    np.testing.assert_allclose(s[:b], prob.singular_values, atol=0.05)
    assert s[b] < 1.2 * prob.info["bulk_edge"] < prob.singular_values[-1]
    cos = _cosines(ds.sample_singular_vectors(prob, b), evec[:, order[:b]])
    assert cos.min() > 0.95


def _check_edge_law(rows, cols, n, b, p_in, p_out):
    assert rows.dtype == np.int64 and cols.dtype == np.int64
    assert np.all(rows < cols) and rows.min() >= 0 and cols.max() < n
    code = rows * n + cols
    assert np.unique(code).size == code.size  # no duplicate edges
    blocks = ds.sbm_blocks(n, b)
    s = np.bincount(blocks)
    n_in = int((s * (s - 1) // 2).sum())
    n_out = n * (n - 1) // 2 - n_in
    same = blocks[rows] == blocks[cols]
    for count, total, p in ((same.sum(), n_in, p_in), ((~same).sum(), n_out, p_out)):
        sd = math.sqrt(total * p * (1 - p))
        assert abs(count - total * p) < 5 * sd + 1


@pytest.mark.parametrize("n,b,p_in,p_out", [
    (5000, 2, 0.002, 0.0005),  # > 2^22 pairs per part: distinct uniform draws
    (200, 2, 0.5, 0.3),  # dense: every pair tested
])
def test_sbm_edges_law(rng, n, b, p_in, p_out):
    key = _key(rng)
    r, c = ds.sbm_edges(n, b, p_in, p_out, key=key)
    _check_edge_law(r, c, n, b, p_in, p_out)
    r2, c2 = ds.sbm_edges(n, b, p_in, p_out, key=key)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_array_equal(c, c2)
    r3, _ = ds.sbm_edges(n, b, p_in, p_out, key=jax.random.fold_in(key, 1))
    assert r3.size != r.size or not np.array_equal(r3, r)


def test_sbm_blocks_sizes():
    blocks = ds.sbm_blocks(10, 3)
    assert np.bincount(blocks).tolist() == [4, 3, 3]
    assert np.all(np.diff(blocks) >= 0)


# --------------------------------------------------------------------------------------------------
# Problem helpers and errors
# --------------------------------------------------------------------------------------------------
def test_problem_is_namedtuple_with_documented_fields():
    prob = ds.cycle(5)
    assert prob._fields == ("name", "x", "context", "singular_values", "singular_functions",
                            "info")
    assert prob.singular_values.dtype == np.float64
    assert np.all(np.diff(prob.singular_values) <= 1e-15) and prob.singular_values[0] == 1.0


@pytest.mark.parametrize("call,match", [
    (lambda: ds.hypercube(0, 0.1), "dim"),
    (lambda: ds.hypercube(3, 1.5), "p: must be a probability"),
    (lambda: ds.hypercube(3, float("nan")), "p: must be a probability"),
    (lambda: ds.gaussian_noise(100, 2, 1.0, key=jax.random.key(0)), "rho"),
    (lambda: ds.gaussian_noise(100, 2, float("nan"), key=jax.random.key(0)), "rho"),
    (lambda: ds.gaussian_noise(100, 2, 0.5), "key"),
    (lambda: ds.gaussian_noise(100, 2, 0.5, key="seed"), "key"),
    (lambda: ds.gaussian_noise(100, 2, 0.5, key=jax.random.key(0), sampling="sobol"), "sampling"),
    (lambda: ds.gaussian_noise(401, 2, 0.5, sampling="quadrature"), "400 or 441"),
    (lambda: ds.gaussian_noise(900, 2, 0.5, sampling="quadrature"), "at most 22"),
    (lambda: ds.cycle(2), "at least 3"),
    (lambda: ds.balanced_labels(1, 3, key=jax.random.key(0)), "num_classes"),
    (lambda: ds.balanced_labels(3, 0, key=jax.random.key(0)), "per_class"),
    (lambda: ds.balanced_labels(3, 2, separation=-1.0, key=jax.random.key(0)), "separation"),
    (lambda: ds.sbm(5, 6, 0.1, 0.1, key=jax.random.key(0)), "num_blocks"),
    (lambda: ds.sbm(50, 2, -0.1, 0.1, key=jax.random.key(0)), "p_in"),
    (lambda: ds.sbm_edges(50, 2, 0.1, 2.0, key=jax.random.key(0)), "p_out"),
    (lambda: ds.sbm(50, 2, 0.0, 0.0, key=jax.random.key(0)), "expected degree 0"),
    (lambda: ds.cycle(5).singular_functions(np.arange(5), 6), "has 5 singular functions"),
    (lambda: ds.hypercube(3, 0.1).singular_functions(np.ones((4, 2)), 2), r"shape \(N, 3\)"),
    (lambda: ds.cycle(5).singular_functions(np.array([0, 7]), 2), "points"),
])
def test_problem_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------------------
# Bundled real data
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ds.available())
def test_load_every_available_dataset(name):
    d = ds.load(name)
    assert isinstance(d, ds.Dataset) and d.name == name
    m, D = d.x.shape
    assert m >= 10 and D >= 1 and d.x.dtype == np.float32 and np.isfinite(d.x).all()
    assert len(d.feature_names) == D and d.target_name not in d.feature_names
    assert d.y.shape == (m,)
    if d.task == "classification":
        assert d.y.dtype == np.int32 and d.y.min() == 0
        assert d.y.max() + 1 == len(d.classes) == np.unique(d.y).size
    else:
        assert d.task == "regression" and d.y.dtype == np.float32 and d.classes is None
        assert np.isfinite(d.y).all()


def test_load_standardize_and_known_shapes():
    d = ds.load("wine", standardize=True)
    assert d.x.shape == (178, 13) and d.classes == ("class_0", "class_1", "class_2")
    np.testing.assert_allclose(d.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(d.x.std(0), 1, atol=1e-5)
    raw = ds.load("wine")
    np.testing.assert_array_equal(raw.y, d.y)
    ref = (raw.x.astype(np.float64) - raw.x.mean(0)) / raw.x.astype(np.float64).std(0)
    np.testing.assert_allclose(d.x, ref, atol=1e-4)
    assert ds.load("anes96").y.max() == 6  # party identification, 7 classes
    star = ds.load("star98")
    assert star.target_name == "frac_above" and 0 < star.y.min() and star.y.max() < 1


def test_load_digits_constant_columns_warn_and_become_zero():
    with pytest.warns(ds.DatasetWarning, match="constant column"):
        d = ds.load("digits", standardize=True)
    raw = ds.load("digits")
    const = raw.x.std(0) == 0
    assert const.any()
    np.testing.assert_array_equal(d.x[:, const], 0.0)
    np.testing.assert_allclose(d.x[:, ~const].std(0), 1, atol=1e-4)


def test_load_dataframe_and_unknown_name():
    df = ds.load("iris", return_dataframe=True)
    assert df.shape == (150, 5) and df.columns[-1] == "species"
    with pytest.raises(ValueError, match="available: iris, digits"):
        ds.load("mnist")


# --------------------------------------------------------------------------------------------------
# User data
# --------------------------------------------------------------------------------------------------
def test_from_arrays_tasks_and_standardize(rng):
    x = rng.normal(size=(20, 3))
    d = ds.from_arrays(x, rng.integers(3, 6, size=20))
    assert d.task == "classification" and d.y.dtype == np.int32 and d.y.min() == 0
    assert d.classes == tuple(sorted(set(d.classes)))
    d = ds.from_arrays(x, rng.normal(size=20), feature_names=["a", "b", "c"], target_name="t")
    assert d.task == "regression" and d.feature_names == ("a", "b", "c") and d.target_name == "t"
    d = ds.from_arrays(x.astype(np.float32), standardize=True)
    assert d.y is None and d.task is None and d.x.dtype == np.float32
    np.testing.assert_allclose(d.x.mean(0), 0, atol=1e-6)
    xc = np.concatenate([x, np.full((20, 1), 3.0)], axis=1)
    with pytest.warns(ds.DatasetWarning, match="x3"):
        d = ds.from_arrays(xc, standardize=True)
    np.testing.assert_array_equal(d.x[:, 3], 0.0)


@pytest.mark.parametrize("x,y,match", [
    (np.ones(5), None, "2-D"),
    (np.ones((0, 3)), None, "empty"),
    (np.array([[1.0, np.nan]]), None, "NaN"),
    (np.ones((4, 2)), np.ones(3), "expected 4 targets"),
    (np.ones((4, 2)), np.array([0.0, np.inf, 1.0, 2.0]), "NaN or Inf"),
])
def test_from_arrays_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        ds.from_arrays(x, y)


@pytest.mark.parametrize("precision", ["float64"], indirect=True)
def test_dtypes_follow_the_x64_setting(rng, precision):
    """With x64 on, generated samples and contexts have JAX's default float dtype (float64) and
    float64 user and bundled data stay float64, float32 data float32 (x64 off: the float32
    checks of the other tests)."""
    default = np.dtype(jnp.zeros((), float).dtype)
    assert default == precision
    for prob in (ds.hypercube(3, 0.1), ds.cycle(8), ds.balanced_labels(2, 4, key=_key(rng)),
                 ds.gaussian_noise(9, 2, 0.5, sampling="quadrature"),
                 ds.hypercube(3, 0.1, dense=False)):
        assert prob.x.dtype == default, prob.name
        assert prob.context.operator().dtype == default, prob.name
    x = rng.normal(size=(6, 2))
    assert ds.from_arrays(x, rng.normal(size=6)).x.dtype == precision
    assert ds.from_arrays(x, rng.normal(size=6)).y.dtype == precision
    assert ds.from_arrays(x.astype(np.float32)).x.dtype == np.float32
    assert ds.from_arrays(rng.integers(0, 3, (6, 2))).x.dtype == default
    assert ds.load("iris").x.dtype == precision


def test_complex_data_is_refused():
    with pytest.raises(TypeError, match="x: complex"):
        ds.from_arrays(np.ones((3, 2)) * 1j)
    with pytest.raises(TypeError, match="y: complex"):
        ds.from_arrays(np.ones((3, 2)), np.ones(3) * 1j)
    with pytest.raises(TypeError, match="points: complex"):
        ds.hermite_functions(np.ones((2, 1)) * 1j, 2)


def test_from_arrays_bad_task():
    with pytest.raises(ValueError, match="task"):
        ds.from_arrays(np.ones((3, 2)), np.ones(3), task="ranking")
    with pytest.raises(ValueError, match="regression needs numeric"):
        ds.from_arrays(np.ones((2, 2)), np.array(["a", "b"]), task="regression")


def test_from_csv_roundtrip(tmp_path):
    p = tmp_path / "flowers.csv"
    p.write_text("len,width,kind,score\n1.5,2,setosa,0.5\n3,4.25,virginica,1.5\n\n5,6,setosa,2\n")
    d = ds.from_csv(p, target="kind")
    assert d.name == "flowers" and d.feature_names == ("len", "width", "score")
    np.testing.assert_array_equal(d.x, [[1.5, 2, 0.5], [3, 4.25, 1.5], [5, 6, 2]])
    assert d.y.tolist() == [0, 1, 0] and d.classes == ("setosa", "virginica")
    d = ds.from_csv(p, target="score", features=["len", 1])
    assert d.task == "regression" and d.feature_names == ("len", "width")
    np.testing.assert_allclose(d.y, [0.5, 1.5, 2])
    d = ds.from_csv(p, target=-1, features=[0], task="classification", standardize=True)
    assert d.target_name == "score" and d.task == "classification"
    np.testing.assert_allclose(d.x.mean(0), 0, atol=1e-6)


def test_from_csv_integer_target_no_header_and_missing(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("1;2;0\n3;4;1\n5;NA;1\n")
    with pytest.raises(ValueError, match="missing values"):
        ds.from_csv(p, target=2, delimiter=";", header=False)
    d = ds.from_csv(p, target=2, delimiter=";", header=False, missing="drop")
    assert d.x.shape == (2, 2) and d.task == "classification" and d.y.tolist() == [0, 1]
    d = ds.from_csv(p, target=2, delimiter=";", header=False, missing="drop", task="regression")
    assert d.y.dtype == np.float32


@pytest.mark.parametrize("text,kwargs,match", [
    ("a,b\n1,x\n", {}, "non-numeric value 'x'"),
    ("a,b\n1,2\n", {"target": "c"}, r"no column named 'c'; columns are \['a', 'b'\]"),
    ("a,b\n1,2\n3\n", {}, "row 3 has 1 fields"),
    ("a,b\n", {}, "no data rows"),
    ("1,2\n", {"target": "a", "header": False}, "needs header=True"),
    ("a,b\n1,2\n", {"target": "a", "features": ["a"]}, "also a feature"),
    ("a,b\n1,2\n", {"missing": "fill"}, "missing"),
])
def test_from_csv_errors(tmp_path, text, kwargs, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        ds.from_csv(p, **kwargs)


def test_from_npz_roundtrip_and_errors(tmp_path, rng):
    p = tmp_path / "arr.npz"
    x = rng.normal(size=(6, 2))
    np.savez(p, features=x, label=np.array([1, 1, 2, 2, 3, 3]), feature_names=np.array(["u", "v"]))
    d = ds.from_npz(p, x_key="features", y_key="label")
    np.testing.assert_allclose(d.x, x.astype(np.float32))
    assert d.feature_names == ("u", "v") and d.target_name == "label"
    assert d.task == "classification" and d.y.tolist() == [0, 0, 1, 1, 2, 2]
    d = ds.from_npz(p, x_key="features")  # no "y" in the archive: no target
    assert d.y is None
    with pytest.raises(ValueError, match=r"no array 'x' in the archive; it holds"):
        ds.from_npz(p)
    with pytest.raises(ValueError, match="no array 'target'"):
        ds.from_npz(p, x_key="features", y_key="target")
    with pytest.raises(FileNotFoundError):
        ds.from_npz(tmp_path / "missing.npz")


def test_import_does_not_need_contexts_names():
    # datasets builds contexts lazily: the module's public names exist without touching contexts
    for name in ds.__all__:
        assert hasattr(ds, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ds.available()[:2] == ("iris", "digits")
