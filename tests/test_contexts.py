"""Contexts: operators against float64 numpy built from REFERENCE.md section 2, known spectra,
exact samplers, dual-kernel Grams, rows at new inputs, mixing, dtypes, and bad input.

Builders, Grams, samplers and rows run in both precisions (the ``precision`` fixture: float32, and
float64 inside ``jax.enable_x64``) with tolerances scaled by the dtype's eps; the slow
known-spectrum and bad-input tests run once.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats

from jaxcontext import contexts as C
from jaxcontext import kernels as K
from jaxcontext import operators as ops

RTOL = 1e-5  # float32
MASK_KEY = 7
EPS32 = float(np.finfo(np.float32).eps)


def tol(dtype, f32=RTOL):
    """A float32 tolerance ``f32`` scaled to ``dtype`` by the ratio of the eps (float32: as is)."""
    return f32 * float(np.finfo(dtype).eps) / EPS32



@jax.jit
def dense(op):
    """to_dense, compiled once per operator structure (eager tiled products re-trace)."""
    return op.to_dense()


@jax.jit
def views(ctx, v):
    """Dense Z, dense P and Z @ v in one compiled call."""
    return ctx.operator().to_dense(), ctx.conditional.to_dense(), ctx.operator().matmat(v)


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def quiet(fn, *args, **kw):
    """Build a context, ignoring zero-marginal warnings (kNN points that are nobody's neighbour)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", C.ZeroMarginalWarning)
        return fn(*args, **kw)


# --------------------------------------------------------------------------------------------------
# float64 references (REFERENCE.md section 2)
# --------------------------------------------------------------------------------------------------
def d2(x, y=None):
    x = np.asarray(x, np.float64)
    y = x if y is None else np.asarray(y, np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def ref_knn(x, k, include_self=False):
    d = d2(x)
    if not include_self:
        np.fill_diagonal(d, np.inf)
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    P = np.zeros(d.shape)
    np.put_along_axis(P, idx, 1.0 / k, axis=1)
    return P


def ref_rbf(x, gamma):
    kx = np.exp(-gamma * d2(x))
    return kx / kx.sum(1, keepdims=True)


def ref_masks(d, num_masks, ratio=0.2):
    return np.asarray(C.feature_masks(jax.random.key(MASK_KEY), d, ratio=ratio,
                                      num_masks=num_masks))


def ref_Z(P, w):
    """Z = diag(sqrt w) P diag(p)^(-1/2), p = P^T w, zero-marginal columns zero."""
    p = P.T @ w
    q = np.where(p > 0, 1.0 / np.sqrt(np.where(p > 0, p, 1.0)), 0.0)
    return np.sqrt(w)[:, None] * P * q[None, :]


def ref_gram(P, w):
    p = P.T @ w
    pinv = np.where(p > 0, 1.0 / np.where(p > 0, p, 1.0), 0.0)
    return (P * pinv) @ P.T


def khatri_rao(P1, P2):
    m = P1.shape[0]
    full = (P1[:, :, None] * P2[:, None, :]).reshape(m, -1)
    return full[:, full.sum(0) > 0]


def data(rng, m=12, d=3, dtype=np.float32):
    return rng.standard_normal((m, d)).astype(dtype)


def sym_graph(rng, n=12, density=0.4):
    W = rng.uniform(0.2, 2.0, (n, n)) * (rng.uniform(size=(n, n)) < density)
    W = np.triu(W, 1)
    W = W + W.T
    for i in range(n):  # no isolated node
        W[i, (i + 1) % n] = W[(i + 1) % n, i] = max(W[i, (i + 1) % n], 0.5)
    return W


def flip_sampler(key, xb):
    s = jnp.where(jax.random.bernoulli(key, 0.5, xb.shape), -1.0, 1.0)
    return xb * s


def flip_enum(xi):
    xi = np.asarray(xi, np.float64)
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float64)
    return signs * xi[None, :], np.full(4, 0.25)


def transformation_ref(ctx, x, draws=None):
    """P from independent counting: column of a value found through ctx.a_values."""
    vals = np.asarray(ctx.a_values, np.float64)
    col = {tuple(v): j for j, v in enumerate(vals)}
    P = np.zeros((x.shape[0], len(col)))
    if draws is None:
        for i, xi in enumerate(x):
            v, pr = flip_enum(xi)
            for vv, pp in zip(v, pr, strict=True):
                P[i, col[tuple(vv)]] += pp
    else:
        for a in draws:
            for i, v in enumerate(np.asarray(a, np.float64)):
                P[i, col[tuple(v)]] += 1.0 / len(draws)
    return P


# Every builder: returns (context, P reference, w reference)
def case_labels(rng, dt=np.float32):
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 3, 3, 1])
    return C.labels(y), np.eye(4)[y], np.full(12, 1 / 12)


def case_regression(rng, dt=np.float32):
    y = rng.standard_normal(10)
    return (C.labels(y, kind="regression", gamma=0.8), ref_rbf(y[:, None], 0.8),
            np.full(10, 0.1))


def case_graph(rng, dt=np.float32):
    W = sym_graph(rng)
    deg = W.sum(1)
    return C.graph(sp.csr_matrix(W)), W / deg[:, None], deg / deg.sum()


def case_graph_edges(rng, dt=np.float32):
    n = 12
    e = np.array([[i, (i + 1) % n] for i in range(n)] + [[0, 4], [0, 4], [2, 6]])
    wts = rng.uniform(0.5, 2.0, len(e))
    W = np.zeros((n, n))
    for (a, b), v in zip(e, wts, strict=True):  # duplicates summed, symmetrised by (W + W^T)/2
        W[a, b] += v / 2
        W[b, a] += v / 2
    deg = W.sum(1)
    return C.graph(edges=e, weights=wts), W / deg[:, None], deg / deg.sum()


def case_knn(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    return quiet(C.knn, x, 3), ref_knn(x, 3), np.full(12, 1 / 12)


def case_knn_self(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    return quiet(C.knn, x, 3, include_self=True), ref_knn(x, 3, True), np.full(12, 1 / 12)


def case_rbf(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    return C.rbf(x, 0.7), ref_rbf(x, 0.7), np.full(12, 1 / 12)


def case_rbf_matrix_free(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    ctx = C.rbf(x, 0.7, materialize_bytes=0, block_rows=4)
    assert not isinstance(ctx.conditional, ops.DenseOperator)
    return ctx, ref_rbf(x, 0.7), np.full(12, 1 / 12)


def case_masked_rbf(rng, dt=np.float32):
    x = data(rng, d=5, dtype=dt)
    masks = ref_masks(5, 6)
    P = np.mean([ref_rbf(x[:, mk], 0.5) for mk in masks], axis=0)
    ctx = C.masked(x, "rbf", key=jax.random.key(MASK_KEY), gamma=0.5, num_masks=6)
    return ctx, P, np.full(12, 1 / 12)


def case_masked_rbf_matrix_free(rng, dt=np.float32):
    x = data(rng, d=5, dtype=dt)
    masks = ref_masks(5, 3)
    P = np.mean([ref_rbf(x[:, mk], 0.5) for mk in masks], axis=0)
    ctx = C.masked(x, "rbf", key=jax.random.key(MASK_KEY), gamma=0.5, num_masks=3,
                   materialize_bytes=0)
    assert isinstance(ctx.conditional, ops.SumOperator)
    return ctx, P, np.full(12, 1 / 12)


def case_masked_knn(rng, dt=np.float32):
    x = data(rng, d=5, dtype=dt)
    masks = ref_masks(5, 6)
    P = np.mean([ref_knn(x[:, mk], 3) for mk in masks], axis=0)
    ctx = quiet(C.masked, x, "knn", key=jax.random.key(MASK_KEY), k=3, num_masks=6)
    return ctx, P, np.full(12, 1 / 12)


def case_transformation_enum(rng, dt=np.float32):
    x = rng.integers(1, 4, (12, 2)).astype(dt)
    ctx = C.transformation(x, flip_sampler, enumerate_fn=flip_enum)
    return ctx, transformation_ref(ctx, x), np.full(12, 1 / 12)


def case_transformation_draws(rng, dt=np.float32):
    x = rng.integers(1, 4, (12, 2)).astype(dt)
    key = jax.random.key(3)
    ctx = C.transformation(x, flip_sampler, key=key, num_draws=16)
    draws = [flip_sampler(k, jnp.asarray(x)) for k in jax.random.split(key, 16)]
    return ctx, transformation_ref(ctx, x, draws), np.full(12, 1 / 12)


def case_from_conditional_dense(rng, dt=np.float32):
    a = rng.uniform(size=(12, 7)) * (rng.uniform(size=(12, 7)) < 0.6)
    a[:, 0] += 0.1
    w = rng.uniform(0.5, 1.5, 12)
    w /= w.sum()
    return C.from_conditional(a, weights=w), a / a.sum(1, keepdims=True), w


def case_from_conditional_lazy(rng, dt=np.float32):
    x, y = data(rng, 12, dtype=dt), data(rng, 7, dtype=dt)
    Kop = ops.kernel_operator(x, y, K.RBF(0.5))
    kd = np.exp(-0.5 * d2(x, y))
    return C.from_conditional(Kop), kd / kd.sum(1, keepdims=True), np.full(12, 1 / 12)


def case_convolve(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    c = quiet(C.convolve, quiet(C.knn, x, 3), C.rbf(x, 0.7))
    return c, ref_knn(x, 3) @ ref_rbf(x, 0.7), np.full(12, 1 / 12)


def case_convolve_graph(rng, dt=np.float32):
    W = sym_graph(rng)
    deg = W.sum(1)
    feats = data(rng, 12, dtype=dt)
    c = C.convolve(C.graph(W), C.rbf(feats, 0.5))
    return c, (W / deg[:, None]) @ ref_rbf(feats, 0.5), deg / deg.sum()


def case_combine_same(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    c = quiet(C.combine, [quiet(C.knn, x, 3), C.rbf(x, 0.7)], [0.3, 0.7])
    assert isinstance(c.conditional, ops.SumOperator)
    return c, 0.3 * ref_knn(x, 3) + 0.7 * ref_rbf(x, 0.7), np.full(12, 1 / 12)


def case_combine_same_sparse(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    c = quiet(C.combine, [quiet(C.knn, x, 2), quiet(C.knn, x, 5)], [0.6, 0.4])
    assert isinstance(c.conditional, ops.SparseOperator)  # merged into one sparse matrix
    return c, 0.6 * ref_knn(x, 2) + 0.4 * ref_knn(x, 5), np.full(12, 1 / 12)


def case_combine_disjoint(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
    c = quiet(C.combine, [C.labels(y), quiet(C.knn, x, 3)], [0.4, 0.6])
    assert c.shape == (12, 15)
    return c, np.hstack([0.4 * np.eye(3)[y], 0.6 * ref_knn(x, 3)]), np.full(12, 1 / 12)


def case_concat_sparse(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
    c = C.concat(C.labels(y), quiet(C.knn, x, 3))
    assert isinstance(c.conditional, ops.SparseOperator)
    return c, khatri_rao(np.eye(3)[y], ref_knn(x, 3)), np.full(12, 1 / 12)


def case_concat_dense(rng, dt=np.float32):
    x = data(rng, dtype=dt)
    y = np.array([0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0])
    c = C.concat(C.rbf(x, 0.5), C.labels(y))
    assert isinstance(c.conditional, ops.DenseOperator)
    return c, khatri_rao(ref_rbf(x, 0.5), np.eye(2)[y]), np.full(12, 1 / 12)


CASES = {
    "labels": case_labels,
    "regression-labels": case_regression,
    "graph": case_graph,
    "graph-edges": case_graph_edges,
    "knn": case_knn,
    "knn-include-self": case_knn_self,
    "rbf": case_rbf,
    "rbf-matrix-free": case_rbf_matrix_free,
    "masked-rbf": case_masked_rbf,
    "masked-rbf-matrix-free": case_masked_rbf_matrix_free,
    "masked-knn": case_masked_knn,
    "transformation-enumerated": case_transformation_enum,
    "transformation-draws": case_transformation_draws,
    "from-conditional-dense": case_from_conditional_dense,
    "from-conditional-lazy": case_from_conditional_lazy,
    "convolve": case_convolve,
    "convolve-graph": case_convolve_graph,
    "combine-same": case_combine_same,
    "combine-same-sparse": case_combine_same_sparse,
    "combine-disjoint": case_combine_disjoint,
    "concat-sparse": case_concat_sparse,
    "concat-dense": case_concat_dense,
}


# --------------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CASES))
def test_operator_matches_numpy_and_has_trivial_pair(name, rng, precision):
    """Every builder against float64 numpy, in float32 and (x64 on, float64 data) in float64.

    Everything derived from the data (P, Z, w, p, the trivial vectors, products) has the data's
    dtype: float64 data stays float64 when x64 is on.
    """
    ctx, P, w = CASES[name](rng, precision)
    v = np.random.default_rng(0).standard_normal((P.shape[1], 3))
    Z, Pd, Zv = views(ctx, jnp.asarray(v, precision))
    derived = {"Z": Z, "P": Pd, "Zv": Zv, "w": ctx.weights, "p": ctx.marginal(),
               "left": ctx.trivial_left(), "right": ctx.trivial_right()}
    assert {k: str(a.dtype) for k, a in derived.items() if a.dtype != precision} == {}
    assert ctx.operator().dtype == ctx.conditional.dtype == precision
    Z = np.asarray(Z, np.float64)
    assert Z.shape == P.shape == ctx.shape
    assert rel_err(Z, ref_Z(P, w)) < tol(precision)
    assert rel_err(Pd, P) < tol(precision)
    assert rel_err(ctx.weights, w) < tol(precision)
    assert rel_err(ctx.marginal(), P.T @ w) < tol(precision)
    u0 = np.asarray(ctx.trivial_left(), np.float64)
    v0 = np.asarray(ctx.trivial_right(), np.float64)
    assert abs(np.linalg.norm(u0) - 1) < tol(precision, 1e-6)
    assert abs(np.linalg.norm(v0) - 1) < tol(precision)
    assert np.linalg.norm(Z @ v0 - u0) < tol(precision)
    assert np.linalg.norm(Z.T @ u0 - v0) < tol(precision)
    assert abs(np.linalg.svd(Z, compute_uv=False)[0] - 1.0) < tol(precision)
    assert rel_err(Zv, Z @ v) < tol(precision)  # the operator's products agree with its dense form


def test_teacher_operator(rng, precision):
    F = rng.standard_normal((15, 4))
    F[:, 3] = F[:, 0] - 2 * F[:, 1]  # rank 3 after centring
    with pytest.warns(C.ContextWarning, match="1 of 4 directions dropped"):
        ctx = C.teacher(F)
    assert ctx.operator().dtype == ctx.weights.dtype == ctx.trivial_right().dtype == precision
    G = ctx.gram(jnp.arange(15))
    assert G.dtype == precision
    Z = np.asarray(dense(ctx.operator()), np.float64)
    m = 15
    Fc = F - F.mean(0)
    proj = Fc @ np.linalg.pinv(Fc)  # projector on the span of the centred features
    assert Z.shape == (m, 4)
    # Z is unique up to a rotation of the whitened block: compare Z Z^T = (1 + F_w F_w^T) / m
    assert rel_err(Z @ Z.T, (1.0 + m * proj) / m) < tol(precision)
    np.testing.assert_allclose(Z[:, 0], 1 / np.sqrt(m), rtol=tol(precision, 1e-6))
    np.testing.assert_allclose(np.linalg.svd(Z, compute_uv=False), 1.0, atol=tol(precision))
    u0, v0 = np.asarray(ctx.trivial_left()), np.asarray(ctx.trivial_right())
    assert np.linalg.norm(Z @ v0 - u0) < tol(precision, 1e-6)
    assert np.linalg.norm(Z.T @ u0 - v0) < tol(precision)
    assert rel_err(G, 1.0 + m * proj) < tol(precision)


def test_from_kernel_eigenvalues_match_numpy(rng, precision):
    x = rng.standard_normal((24, 2)).astype(precision)
    rho = 0.6
    t = rho**2
    xa = np.asarray(x, np.float64)
    e = (2 * t * xa[:, None, :] * xa[None, :, :] - t**2 * (xa[:, None, :] ** 2 + xa[None] ** 2))
    kref = np.prod(np.exp(e / (2 * (1 - t**2))) / np.sqrt(1 - t**2), axis=-1)
    want = np.linalg.eigvalsh(kref / 24)
    for ctx in (C.from_kernel(x, K.Mehler(rho)),
                C.from_kernel(x, K.Mehler(rho), materialize_bytes=0, block_rows=16)):
        assert ctx.squared and ctx.symmetric
        Zd, G, R = dense(ctx.operator()), ctx.gram(jnp.arange(24)), ctx.conditional_rows(x[:5])
        assert Zd.dtype == G.dtype == R.dtype == ctx.weights.dtype == precision
        got = np.linalg.eigvalsh(np.asarray(Zd, np.float64))
        np.testing.assert_allclose(got, want, atol=tol(precision) * want.max())
        assert rel_err(G, kref) < tol(precision)
        assert rel_err(R, kref[:5]) < tol(precision)
        with pytest.raises(NotImplementedError, match="no pair sampler"):
            ctx.sample_indices(jax.random.key(0), 4)
        with pytest.raises(NotImplementedError, match="marginal"):
            ctx.marginal()


def test_from_kernel_approaches_gaussian_noise_spectrum():
    """Population spectrum rho^(2n) (REFERENCE.md section 7), 1-D, m = 600 samples of N(0, 1)."""
    x = np.random.default_rng(1).standard_normal((600, 1)).astype(np.float32)
    ev = np.sort(np.linalg.eigvalsh(np.asarray(
        C.from_kernel(x, K.Mehler(0.5)).operator().to_dense(), np.float64)))[::-1]
    np.testing.assert_allclose(ev[:4], [1.0, 0.25, 0.0625, 0.015625], atol=0.04)


def test_from_kernel_plain_function_and_asymmetric_kernel(rng):
    x = data(rng)
    ctx = C.from_kernel(x, lambda a, b: jnp.exp(-0.3 * K.sq_distances(a, b)))
    assert rel_err(dense(ctx.operator()), np.exp(-0.3 * d2(x)) / 12) < RTOL
    with pytest.raises(ValueError, match="not symmetric"):
        C.from_kernel(x, lambda a, b: jnp.matmul(a, (2.0 * b).T) + a[:, :1])


# --------------------------------------------------------------------------------------------------
# Known spectra
# --------------------------------------------------------------------------------------------------
def test_balanced_labels_spectrum(precision):
    y = np.repeat(np.arange(4), 5)
    Zd = C.labels(y).operator().to_dense()
    assert Zd.dtype == precision  # integer labels: JAX's default float dtype
    Z = np.asarray(Zd, np.float64)
    atol = tol(precision, 1e-6)
    np.testing.assert_allclose(np.linalg.svd(Z, compute_uv=False), 1.0, atol=atol)
    ev = np.sort(np.linalg.eigvalsh(Z @ Z.T))[::-1]  # s_0 = 1 and s_1..s_{C-1} = 1, then 0
    np.testing.assert_allclose(ev[:4], 1.0, atol=atol)
    np.testing.assert_allclose(ev[4:], 0.0, atol=atol)


def test_graph_singular_values_are_abs_eigenvalues(rng, precision):
    W = sym_graph(rng, n=14, density=0.3)
    dm = 1 / np.sqrt(W.sum(1))
    want = np.sort(np.abs(np.linalg.eigvalsh(dm[:, None] * W * dm[None, :])))[::-1]
    ctx = C.graph(W)
    assert ctx.symmetric
    Zd = dense(ctx.operator())
    assert Zd.dtype == precision  # float64 weights: float64 with x64 on, float32 without
    Z = np.asarray(Zd, np.float64)
    assert np.array_equal(Z, Z.T)  # exactly symmetric
    np.testing.assert_allclose(np.linalg.svd(Z, compute_uv=False), want,
                               atol=tol(precision, 1e-6))


def test_cycle_graph_spectrum(precision):
    n = 12
    ctx = C.graph(edges=np.array([[i, (i + 1) % n] for i in range(n)]))
    Zd = dense(ctx.operator())
    assert Zd.dtype == precision  # unweighted: JAX's default float dtype
    s = np.linalg.svd(np.asarray(Zd, np.float64), compute_uv=False)
    want = np.sort(np.abs(np.cos(2 * np.pi * np.arange(n) / n)))[::-1]
    np.testing.assert_allclose(s, want, atol=tol(precision, 1e-6))


def test_graph_input_formats_agree(rng):
    from jax.experimental import sparse as jsparse

    W = sym_graph(rng)
    Zs = [np.asarray(dense(C.graph(a).operator())) for a in (
        W, sp.coo_matrix(W), ops.sparse(W.astype(np.float32)),
        jsparse.BCOO.fromdense(jnp.asarray(W, jnp.float32)))]
    r, c = np.nonzero(np.triu(W))
    Zs.append(np.asarray(dense(C.graph(edges=np.stack([r, c], 1), weights=W[r, c],
                                       num_nodes=12).operator())))  # each edge listed once
    for Z in Zs[1:]:
        assert rel_err(Z, Zs[0]) < RTOL


def test_directed_graph(rng):
    W = rng.uniform(0.1, 1.0, (6, 6)) * (rng.uniform(size=(6, 6)) < 0.6)
    W[:, 0] += 0.3
    W[0, 1] += 0.3
    ctx = C.graph(W, symmetrize=False)
    assert not ctx.symmetric
    dout, din = W.sum(1), W.sum(0)
    want = W / np.sqrt(dout[:, None] * din[None, :])
    assert rel_err(dense(ctx.operator()), want) < RTOL


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------
# one case per row model: one-hot, sparse rows + alias weights, kernel rows, masked kernel rows,
# merged sparse mixture (kNN rows), operator rows, chain, mixture, disjoint mixture, sparse and
# dense products
SAMPLED = ["labels", "graph", "rbf-matrix-free", "masked-rbf", "masked-knn",
           "from-conditional-lazy", "convolve", "combine-same", "combine-disjoint",
           "concat-sparse", "concat-dense"]
# float64: the row models whose probabilities have a dtype (CDFs and alias table, kernel rows,
# merged sparse mixture, operator rows, mixture weights, dense rows); compiling threefry-heavy
# samplers dominates the cost, so the others run in float32 only
SAMPLED64 = ["graph", "rbf-matrix-free", "masked-knn", "from-conditional-lazy", "combine-same",
             "concat-dense"]


N_DRAWS = 120_000


@jax.jit
def draw_all(ctxs, key):
    """All samplers in one compiled program (threefry-heavy samplers compile faster together)."""
    return [c.sample_indices(key, N_DRAWS) for c in ctxs]


def pair_frequency_problem(i, j, P, w):
    """None when the draws (i, j) fit w_i P_ij (chi-square, p = 1e-5), else a description."""
    i, j = np.asarray(i), np.asarray(j)
    counts = np.zeros(P.shape)
    np.add.at(counts, (i, j), 1)
    expected = i.size * w[:, None] * P
    if counts[expected == 0].sum():
        return "drew a pair of probability zero"
    pos = expected > 0
    chi2 = (((counts - expected) ** 2)[pos] / expected[pos]).sum()
    dof = pos.sum() - 1
    if chi2 >= scipy.stats.chi2.ppf(1 - 1e-5, dof):
        return f"chi2 {chi2:.1f} with {dof} degrees of freedom"
    return None


def test_samplers_match_pair_frequencies(rng, precision):
    """i ~ w, j ~ P[i, :] for every row model; deterministic per key; the same eager and jitted.

    In float64 the samplers' probabilities (CDFs, alias tables, kernel rows) are float64.
    """
    sampled = SAMPLED if precision == np.float32 else SAMPLED64
    built = [CASES[name](rng, precision) for name in sampled]
    ctxs = [b[0] for b in built]
    g = ctxs[sampled.index("graph")]  # the sampling probabilities have the context's dtype
    assert g.wsampler.prob.dtype == g.rows.cdf.dtype == precision
    first = draw_all(ctxs, jax.random.key(11))
    again = draw_all(ctxs, jax.random.key(11))
    other = draw_all(ctxs, jax.random.key(12))
    problems = {}
    for name, (_, P, w), (i, j), (i2, j2), (_, j3) in zip(sampled, built, first, again, other,
                                                           strict=True):
        assert i.shape == j.shape == (N_DRAWS,)
        msg = pair_frequency_problem(i, j, P, w)
        if msg is None and not (np.array_equal(i, i2) and np.array_equal(j, j2)):
            msg = "not deterministic for a key"
        if msg is None and np.array_equal(j, j3):
            msg = "another key gave the same draws"
        if msg is not None:
            problems[name] = msg
    assert not problems, problems
    if precision != np.float32:
        return
    k = SAMPLED.index("combine-disjoint")
    i_e, j_e = ctxs[k].sample_indices(jax.random.key(11), N_DRAWS)  # eager call
    assert np.array_equal(np.asarray(i_e), first[k][0])
    assert np.array_equal(np.asarray(j_e), first[k][1])


def test_two_level_categorical_is_exact(rng):
    """Long rows (M > 1024) are sampled block-then-column; the distribution is unchanged."""
    M, n = 1500, 8000
    p = rng.uniform(0.5, 1.5, M)
    p[:40] *= 20.0  # heavy head
    p[64:128] = 0.0  # a whole zero block (block size 64 for M = 1500)
    p[1490:] = 0.0
    p /= p.sum()
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(p, jnp.float32)), (n, M))
    j = np.asarray(jax.jit(C._categorical_rows)(jax.random.key(0), logits))
    assert p[j].min() > 0  # never a zero-probability column
    bins = np.minimum(np.arange(M) // 50, 29)  # 30 bins of columns
    counts = np.bincount(bins[j], minlength=30)
    expected = n * np.bincount(bins, weights=p, minlength=30)
    pos = expected > 0
    chi2 = ((counts - expected) ** 2)[pos] / expected[pos]
    assert chi2.sum() < scipy.stats.chi2.ppf(1 - 1e-5, pos.sum() - 1)


def knn_neighbours(x, k):
    d = d2(x)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def row_index(x, xb):
    """Index of each row of xb in x (rows of x are distinct)."""
    x, xb = np.asarray(x), np.asarray(xb)
    hit = (xb[:, None, :] == x[None, :, :]).all(-1)
    assert np.all(hit.sum(1) == 1)
    return hit.argmax(1)


def test_sample_pairs_graph(rng):
    W = sym_graph(rng)
    xb, ab = C.graph(W).sample_pairs(jax.random.key(0), 200)
    assert np.all(W[np.asarray(xb), np.asarray(ab)] > 0)  # node ids joined by an edge


def test_sample_pairs_labels_and_concat(rng):
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
    x = data(rng)
    lab = C.labels(y, x=x)
    cc = C.concat(lab, quiet(C.knn, x, 3))
    xb, (a1, a2) = cc.sample_pairs(jax.random.key(2), 200)
    i = row_index(x, xb)
    assert np.array_equal(np.asarray(a1), y[i])  # the label part is the label of x_i
    nb = knn_neighbours(x, 3)[i]  # the kNN part is one of x_i's neighbours
    assert np.all((nb == row_index(x, a2)[:, None]).any(1))


def test_sample_pairs_disjoint_values(rng):
    ctx, _, _ = case_combine_disjoint(rng)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
    x = np.asarray(ctx.rows.parts[1].x)  # the kNN part's samples; the labels part has no x
    ib, (comp, (lab, xa)) = ctx.sample_pairs(jax.random.key(4), 400)
    ib, comp = np.asarray(ib), np.asarray(comp)
    assert set(comp.tolist()) == {0, 1}
    assert np.array_equal(np.asarray(lab)[comp == 0], y[ib[comp == 0]])
    nb = knn_neighbours(x, 3)[ib[comp == 1]]
    assert np.all((nb == row_index(x, np.asarray(xa)[comp == 1])[:, None]).any(1))


def test_transformation_pairs_use_the_user_sampler(rng):
    ctx, _, _ = case_transformation_draws(rng)
    xb, ab = jax.jit(lambda c, k: c.sample_pairs(k, 64))(ctx, jax.random.key(5))
    xb, ab = np.asarray(xb), np.asarray(ab)
    assert np.array_equal(np.abs(ab), np.abs(xb))  # sign flips of the sampled inputs
    assert (np.sign(ab) != np.sign(xb)).any()


def test_alias_table_is_exact(rng):
    """Walker/Vose: column k keeps prob[k] and gives 1 - prob[k] to alias[k]; totals are w * n."""
    w = rng.uniform(0.0, 1.0, 50) ** 3
    w /= w.sum()
    tab = C._alias_table(w)
    prob, alias = np.asarray(tab.prob, np.float64), np.asarray(tab.alias)
    implied = prob.copy()
    np.add.at(implied, alias, 1.0 - prob)
    np.testing.assert_allclose(implied / w.size, w, atol=1e-7)
    g, _, wg = case_graph(rng)  # a graph's degree weights use it
    assert g.wsampler is not None and np.allclose(np.asarray(g.weights), wg)


# --------------------------------------------------------------------------------------------------
# Dual-kernel Gram and rows at new inputs
# --------------------------------------------------------------------------------------------------
# one case per Gram route: one-hot, sparse rows, kernel rows, masked kernel rows, dense rows,
# operator rows, chain, mixture, merged sparse mixture, disjoint mixture, concatenation
GRAM_CASES = ["labels", "graph", "rbf", "masked-rbf", "from-conditional-dense",
              "from-conditional-lazy", "convolve", "combine-same", "combine-same-sparse",
              "combine-disjoint", "concat-sparse"]


@pytest.mark.parametrize("name", GRAM_CASES)
def test_gram_matches_numpy(name, rng, precision):
    ctx, P, w = CASES[name](rng, precision)
    Gref = ref_gram(P, w)
    m = P.shape[0]
    idx = np.array([3, 0, 5, 5, m - 1])
    idx2 = np.arange(m)[::-1]
    G1, G2 = jax.jit(lambda c, a, b: (c.gram(a), c.gram(a, b)))(ctx, jnp.asarray(idx),
                                                                  jnp.asarray(idx2))
    assert G1.dtype == G2.dtype == precision
    assert rel_err(G1, Gref[np.ix_(idx, idx)]) < tol(precision)
    assert rel_err(G2, Gref[np.ix_(idx, idx2)]) < tol(precision)


def test_gram_sparse_compressed_and_dense_routes(rng):
    x = data(rng, m=40)
    ctx = quiet(C.knn, x, 2)
    Gref = ref_gram(ref_knn(x, 2), np.full(40, 1 / 40))
    gram = jax.jit(lambda c, a: c.gram(a))
    small = np.array([1, 7, 9, 30])  # 2 * 4 * 2 = 16 touched columns < 40: compressed route
    assert rel_err(gram(ctx, jnp.asarray(small)), Gref[np.ix_(small, small)]) < RTOL
    big = np.arange(40)  # dense rows route
    assert rel_err(gram(ctx, jnp.asarray(big)), Gref) < RTOL


ROW_CASES = ["regression-labels", "knn", "knn-include-self", "rbf", "rbf-matrix-free",
             "masked-rbf", "masked-knn", "convolve", "combine-same", "combine-same-sparse",
             "combine-disjoint"]


@pytest.mark.parametrize("name", ROW_CASES)
def test_conditional_rows_at_training_points(name, rng, precision):
    ctx, P, _ = CASES[name](rng, precision)
    if name == "regression-labels":
        rows = ctx.conditional_rows(y=np.asarray(ctx.a_values)[:, 0])
    elif name == "combine-disjoint":  # labels and kNN: the rows need both y and x
        y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
        rows = ctx.conditional_rows(np.asarray(ctx.rows.parts[1].x), y=y)
    else:
        rows = ctx.conditional_rows(np.asarray(ctx.x))
    assert rows.dtype == precision
    assert rel_err(rows, P) < tol(precision)


def test_conditional_rows_labels_and_concat(rng):
    ctx, P, _ = case_labels(rng)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 3, 3, 1])
    assert rel_err(ctx.conditional_rows(y), P) < RTOL
    assert rel_err(ctx.conditional_rows(y=y), P) < RTOL
    with pytest.raises(ValueError, match="num_classes"):
        ctx.conditional_rows(np.array([4]))
    cc, Pc, _ = case_concat_sparse(rng)
    yc = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
    x = np.asarray(cc.rows.second.x)  # the kNN part's samples (the labels part has no x)
    assert rel_err(cc.conditional_rows(x, y=yc), Pc) < RTOL


def test_conditional_rows_at_new_points(rng, precision):
    x = data(rng, dtype=precision)
    xn = data(rng, m=4, dtype=precision)
    r = C.rbf(x, 0.7).conditional_rows(xn)
    kn = np.exp(-0.7 * d2(xn, x))
    assert r.dtype == precision
    assert rel_err(r, kn / kn.sum(1, keepdims=True)) < tol(precision)
    far = np.full((1, 3), 1e3, precision)  # kernel underflows; rows stay normalised
    rf = np.asarray(C.rbf(x, 0.7).conditional_rows(far))
    assert np.all(np.isfinite(rf)) and abs(rf.sum() - 1) < tol(precision)
    rk = quiet(C.knn, x, 3).conditional_rows(xn)
    assert rk.dtype == precision
    dn = d2(xn, x)
    want = np.zeros((4, 12))
    np.put_along_axis(want, np.argsort(dn, axis=1)[:, :3], 1 / 3, axis=1)
    assert rel_err(rk, want) < tol(precision)


@pytest.mark.parametrize("name", ["graph", "transformation-enumerated"])
def test_conditional_rows_not_available(name, rng):
    ctx, _, _ = CASES[name](rng)
    with pytest.raises(NotImplementedError, match="new inputs"):
        ctx.conditional_rows(np.zeros((1, 2)))


# --------------------------------------------------------------------------------------------------
# kNN at the training points: the stored rows of P, exactly (duplicates and ties included)
# --------------------------------------------------------------------------------------------------
def gaussian_with_duplicates(rng, dtype, m=400, d=30):
    """30-D Gaussian points with 20 duplicated pairs and a point repeated four times."""
    x = rng.standard_normal((m, d)).astype(dtype)
    x[200:220] = x[:20]
    x[300:303] = x[5]
    return x


def grid_with_duplicates(rng, dtype):
    """Integer grid points (distance ties everywhere), every point twice, a few three times."""
    g = np.stack(np.meshgrid(np.arange(7), np.arange(7), indexing="ij"), -1).reshape(-1, 2)
    x = np.concatenate([g, g, g[:5]]).astype(dtype)
    return x[rng.permutation(x.shape[0])]


@pytest.mark.parametrize("include_self", [False, True])
def test_knn_rows_at_training_points_are_the_rows_of_P(rng, precision, include_self):
    """conditional_rows(x_train) == P exactly: K = 5, 400 points in 30-D, with duplicates.

    float32 neighbour search gives self-distances near 1e-7, so a ``dist == 0`` self test
    misses training points; they are matched by value instead (REFERENCE.md section 2's P).
    """
    x = gaussian_with_duplicates(rng, precision)
    ctx = quiet(C.knn, x, 5, include_self=include_self)
    P = np.asarray(ctx.conditional.to_dense())
    rows = ctx.conditional_rows(x)
    assert rows.dtype == precision
    assert knn_row_problems(x, P, 5, include_self) == []
    assert np.array_equal(np.asarray(rows), P)


def knn_row_problems(x, P, k, include_self):
    """Rows of P that are not a kNN row of x in float64: 1/k on k columns, x_i itself included
    (``include_self``) or not, the others among the nearest other samples (any order of ties)."""
    d = d2(x)
    np.fill_diagonal(d, np.inf)
    n_other = k - 1 if include_self else k
    bad = []
    for i in range(x.shape[0]):
        cols = np.flatnonzero(P[i])
        others = cols[cols != i]
        kth = np.sort(d[i])[n_other - 1] if n_other else 0.0
        ok = (cols.size == k and np.allclose(P[i, cols], 1 / k)
              and (i in cols) == include_self
              and (others.size == 0 or d[i, others].max() <= kth * (1 + 1e-5)))
        if not ok:
            bad.append(i)
    return bad


@pytest.mark.parametrize("include_self", [False, True])
def test_knn_rows_at_training_points_with_ties(rng, precision, include_self):
    """Integer grid points, every point duplicated: distance ties everywhere; rows still exact."""
    x = grid_with_duplicates(rng, precision)
    ctx = quiet(C.knn, x, 5, include_self=include_self)
    P = np.asarray(ctx.conditional.to_dense())
    assert knn_row_problems(x, P, 5, include_self) == []
    assert np.array_equal(np.asarray(ctx.conditional_rows(x)), P)
    mk = quiet(C.masked, x, "knn", key=jax.random.key(MASK_KEY), k=5, num_masks=3, ratio=0.5,
               include_self=include_self)  # each mask keeps one coordinate: more ties
    assert np.array_equal(np.asarray(mk.conditional_rows(x)),
                          np.asarray(mk.conditional.to_dense()))


def test_knn_rows_duplicates_are_matched_in_order_and_new_points_use_neighbours(rng):
    """The r-th query of a duplicated value gets the r-th copy's row; other points their k NN."""
    x = data(rng, m=60, d=4)
    x[40:42] = x[7]  # x[7] is held by samples 7, 40, 41
    ctx = quiet(C.knn, x, 3)
    P = np.asarray(ctx.conditional.to_dense())
    q = x[[41, 7, 7, 7, 7, 3]]  # five queries of one value (held by 7, 40, 41), then x_3
    rows = np.asarray(ctx.conditional_rows(q))
    copies = [7, 40, 41]  # index order; the five queries cycle through them
    want = [P[7], P[40], P[41], P[7], P[40], P[3]]
    assert np.array_equal(rows, np.stack(want))
    assert not np.array_equal(P[7], P[40])  # the copies' rows differ: the order matters
    assert all(P[c, c] == 0 for c in copies)  # self excluded by index, copies are neighbours
    # a point near x_3 but not equal to it is a new point: x_3 is one of its neighbours
    near = x[3:4] + np.float32(1e-3)
    r = np.asarray(ctx.conditional_rows(near))[0]
    dn = d2(near, x)[0]
    want_new = np.zeros(60)
    want_new[np.argsort(dn, kind="stable")[:3]] = 1 / 3
    assert r[3] == np.float32(1 / 3) and np.array_equal(r, want_new.astype(np.float32))
    negzero = np.zeros((2, 4), np.float32)
    negzero[1] = -0.0  # -0.0 equals 0.0: both rows are matched to the same training point
    x0 = np.concatenate([x, np.zeros((1, 4), np.float32)])
    c0 = quiet(C.knn, x0, 3)
    r0 = np.asarray(c0.conditional_rows(negzero))
    assert np.array_equal(r0[0], r0[1]) and r0[0, 60] == 0


def test_knn_include_self_keeps_every_copy_in_its_own_row():
    """With more copies of a point than k, include_self still puts x_i in row i."""
    x = np.concatenate([np.zeros((6, 2)), np.arange(1, 7, dtype=np.float64)[:, None] * [1, 0]])
    ctx = quiet(C.knn, x.astype(np.float32), 3, include_self=True)
    P = np.asarray(ctx.conditional.to_dense())
    assert np.all(np.diag(P) == np.float32(1 / 3))
    assert np.all((P > 0).sum(1) == 3)
    assert np.all(P[:6, 6:] == 0)  # the zeros' other neighbours are copies at distance 0


# --------------------------------------------------------------------------------------------------
# Dtypes: float inputs keep their dtype where x64 allows, integers get the default float dtype
# --------------------------------------------------------------------------------------------------
def dtype_cases(rng, dtype):
    """(name, build) for every builder fed data of ``dtype`` (integer dtypes: labels and grids)."""
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 5, (10, 3)).astype(dtype)
        W = rng.integers(1, 3, (10, 10)).astype(dtype)
    else:
        x = rng.standard_normal((10, 3)).astype(dtype)
        W = rng.uniform(0.5, 1.0, (10, 10)).astype(dtype)
    W = W + W.T
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    key = jax.random.key(MASK_KEY)
    return [
        ("knn", lambda: quiet(C.knn, x, 3)),
        ("rbf", lambda: C.rbf(x, 0.5)),
        ("masked-knn", lambda: quiet(C.masked, x, "knn", key=key, k=3, num_masks=2)),
        ("masked-rbf", lambda: C.masked(x, "rbf", key=key, gamma=0.5, num_masks=2)),
        ("graph", lambda: C.graph(W)),
        ("graph-scipy", lambda: C.graph(sp.csr_matrix(W))),
        ("graph-edge-weights", lambda: C.graph(edges=np.array([[0, 1], [1, 2], [2, 0]]),
                                               weights=W[0, :3])),
        ("from-conditional", lambda: C.from_conditional(W)),
        ("from-conditional-scipy", lambda: C.from_conditional(sp.csr_matrix(W))),
        ("from-kernel", lambda: C.from_kernel(x, K.RBF(0.5))),
        ("teacher", lambda: quiet(C.teacher, x)),
        ("transformation", lambda: C.transformation(x, flip_sampler, enumerate_fn=lambda xi: (
            np.stack([xi, -xi]), np.array([0.5, 0.5])))),
        ("regression-labels", lambda: C.labels(x[:, 0], kind="regression", gamma=0.5)),
        ("combine", lambda: quiet(C.combine, [C.labels(y), quiet(C.knn, x, 3)], [0.5, 0.5])),
        ("concat", lambda: C.concat(C.labels(y), quiet(C.knn, x, 3))),
    ]


def context_dtypes(ctx):
    """The dtypes of everything a context derives from its data, by name."""
    out = {"Z": ctx.operator().dtype, "w": ctx.weights.dtype, "right": ctx.trivial_right().dtype}
    if ctx.conditional is not None:
        out.update(P=ctx.conditional.dtype, p=ctx.marginal().dtype)
    return {k: np.dtype(v) for k, v in out.items()}


@pytest.mark.parametrize("precision", ["float64"], indirect=True)
@pytest.mark.parametrize("source", ["float32", "int32"])
def test_context_dtype_follows_the_data(rng, precision, source):
    """With x64 on, float32 data stays float32 and integer data gets JAX's default float dtype
    (float64 here). With x64 off both are float32, as every float32 test checks; float64 data
    is checked by every test taking ``precision`` (float64 with x64 on, float32 without)."""
    want = np.dtype(np.float32) if source == "float32" else precision
    wrong = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", C.ContextWarning)  # rank / zero marginals: not the point
        for name, build in dtype_cases(rng, np.dtype(source)):
            if source == "float32" and name in ("combine", "concat"):
                continue  # mixed with labels (default float): test_mixtures_promote
            bad = {k: str(v) for k, v in context_dtypes(build()).items() if v != want}
            if bad:
                wrong[name] = bad
    assert wrong == {}


@pytest.mark.parametrize("precision", ["float64"], indirect=True)
def test_mixtures_promote(rng, precision):
    """Mixtures take the promoted dtype of their parts (labels: the default float dtype, float64
    with x64 on; a float32 kNN part stays float32 on its own)."""
    x = data(rng, dtype=np.float32)
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 2, 0, 1])
    c = quiet(C.combine, [C.labels(y), quiet(C.knn, x, 3)], [0.5, 0.5])
    assert quiet(C.knn, x, 3).operator().dtype == np.float32
    assert c.operator().dtype == c.marginal().dtype == precision


# --------------------------------------------------------------------------------------------------
# Policies, pytrees, metadata
# --------------------------------------------------------------------------------------------------
def test_zero_marginal_values_get_zero_weight_with_warning():
    y = np.array([0, 1, 2, 0, 1, 2])
    with pytest.warns(C.ZeroMarginalWarning, match="1 of 4 context values"):
        ctx = C.labels(y, num_classes=4)
    Z = np.asarray(dense(ctx.operator()))
    assert np.all(Z[:, 3] == 0)
    assert rel_err(Z[:, :3], ref_Z(np.eye(3)[y], np.full(6, 1 / 6))) < RTOL


def test_isolated_nodes_error_and_drop(rng):
    W = sym_graph(rng, n=7)
    W[3, :] = W[:, 3] = 0.0
    with pytest.raises(ValueError, match=r"1 isolated node\(s\).*\[3\]"):
        C.graph(W)
    with pytest.warns(C.ContextWarning, match="dropping 1 isolated"):
        ctx = C.graph(W, isolated="drop")
    keep = np.array([0, 1, 2, 4, 5, 6])
    Wk = W[np.ix_(keep, keep)]
    deg = Wk.sum(1)
    assert ctx.shape == (6, 6)
    assert np.array_equal(np.asarray(ctx.sample_index), keep)
    assert np.array_equal(np.asarray(ctx.a_values), keep)
    assert rel_err(dense(ctx.operator()), ref_Z(Wk / deg[:, None], deg / deg.sum())) < RTOL
    xb, _ = ctx.sample_pairs(jax.random.key(0), 50)
    assert set(np.asarray(xb).tolist()) <= set(keep.tolist())


def test_from_conditional_empty_rows(rng):
    a = rng.uniform(size=(5, 4))
    a[2] = 0
    with pytest.raises(ValueError, match="1 sample"):
        C.from_conditional(a)
    with pytest.warns(C.ContextWarning, match="dropping 1"):
        ctx = C.from_conditional(sp.csr_matrix(a), isolated="drop")
    ak = a[[0, 1, 3, 4]]
    assert rel_err(dense(ctx.operator()), ref_Z(ak / ak.sum(1, keepdims=True),
                                                     np.full(4, 0.25))) < RTOL


def test_context_is_a_pytree(rng):
    for name in ("rbf-matrix-free", "combine-disjoint"):
        ctx, _, _ = CASES[name](rng)
        leaves, tree = jax.tree_util.tree_flatten(ctx)
        back = jax.tree_util.tree_unflatten(tree, leaves)
        assert back.name == ctx.name and back.info == ctx.info
        v = jnp.ones((ctx.shape[1],))
        out = jax.jit(lambda c, u: c.operator().matmat(u))(ctx, v)
        assert rel_err(out, ctx.operator().matmat(v)) < 1e-6
        assert ctx.name in repr(ctx)


def test_feature_masks():
    m1 = np.asarray(C.feature_masks(jax.random.key(0), 10, ratio=0.3, num_masks=20))
    m2 = np.asarray(C.feature_masks(jax.random.key(0), 10, ratio=0.3, num_masks=20))
    assert m1.shape == (20, 10) and m1.dtype == bool
    assert np.array_equal(m1, m2)
    assert np.all(m1.sum(1) == 7)  # each mask hides round(0.3 * 10) = 3 features
    assert len({r.tobytes() for r in m1}) > 1
    with pytest.raises(ValueError, match="at least one feature"):
        C.feature_masks(jax.random.key(0), 2, ratio=0.9)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
def _nan_x():
    x = np.ones((6, 2))
    x[1, 0] = np.nan
    return x


def _inf_x():
    x = np.ones((6, 2))
    x[0, 1] = np.inf
    return x


BAD = [
    ("knn-nan", lambda: C.knn(_nan_x(), 2), ValueError, "NaN or Inf"),
    ("rbf-inf", lambda: C.rbf(_inf_x(), 1.0), ValueError, "NaN or Inf"),
    ("masked-nan", lambda: C.masked(_nan_x(), key=jax.random.key(0), gamma=1.0), ValueError,
     "NaN or Inf"),
    ("knn-empty", lambda: C.knn(np.zeros((0, 3)), 1), ValueError, "empty"),
    ("rbf-empty", lambda: C.rbf(np.zeros((4, 0)), 1.0), ValueError, "empty"),
    ("knn-k-too-big", lambda: C.knn(np.eye(5), 5), ValueError, "k: must be smaller than"),
    ("knn-k-zero", lambda: C.knn(np.eye(5), 0), ValueError, "positive integer"),
    ("rbf-gamma", lambda: C.rbf(np.eye(3), -1.0), ValueError, "gamma"),
    ("labels-negative", lambda: C.labels(np.array([0, -1, 2])), ValueError, ">= 0"),
    ("labels-float", lambda: C.labels(np.array([0.5, 1.0])), ValueError, "integer"),
    ("labels-num-classes", lambda: C.labels(np.array([0, 3]), num_classes=3), ValueError,
     "num_classes"),
    ("labels-kind", lambda: C.labels(np.array([0, 1]), kind="ordinal"), ValueError, "kind"),
    ("regression-gamma", lambda: C.labels(np.ones(4), kind="regression"), ValueError, "gamma"),
    ("graph-negative", lambda: C.graph(np.array([[0.0, -1.0], [-1.0, 0.0]])), ValueError,
     "negative"),
    ("graph-edge-range", lambda: C.graph(edges=np.array([[0, 1], [1, 5]]), num_nodes=3),
     ValueError, r"indices must lie in \[0, 3\)"),
    ("graph-edge-negative-weight", lambda: C.graph(edges=np.array([[0, 1]]), weights=[-2.0]),
     ValueError, "weights: has negative"),
    ("graph-not-square", lambda: C.graph(np.ones((2, 3))), ValueError, "square"),
    ("graph-both", lambda: C.graph(np.ones((2, 2)), edges=np.array([[0, 1]])), ValueError,
     "exactly one"),
    ("graph-isolated-policy", lambda: C.graph(np.ones((2, 2)), isolated="ignore"), ValueError,
     "isolated"),
    ("combine-negative", lambda: C.combine([C.rbf(np.eye(3), 1.0)] * 2, [1.5, -0.5]),
     ValueError, "convex combination"),
    ("combine-sum", lambda: C.combine([C.rbf(np.eye(3), 1.0)] * 2, [0.5, 0.6]), ValueError,
     "sum 1.1"),
    ("combine-length", lambda: C.combine([C.rbf(np.eye(3), 1.0)] * 2, [1.0]), ValueError,
     "expected 2"),
    ("combine-samples", lambda: C.combine([C.rbf(np.eye(3), 1.0), C.rbf(np.eye(4), 1.0)],
                                          [0.5, 0.5]), ValueError, "share the samples"),
    ("combine-teacher", lambda: C.combine([C.teacher(np.eye(3)[:, :2])], [1.0]), ValueError,
     "no conditional"),
    ("convolve-shapes", lambda: C.convolve(C.rbf(np.eye(4), 1.0), C.labels(np.arange(6))),
     ValueError, "M1=4 values but c2 has m2=6"),
    ("concat-memory", lambda: C.concat(C.rbf(np.eye(6), 1.0), C.rbf(np.eye(6), 1.0),
                                       max_entries=100), MemoryError, "product space needs 216"),
    ("transformation-probs", lambda: C.transformation(
        np.eye(2), None, enumerate_fn=lambda xi: (np.stack([xi, -xi]), np.array([0.5, 0.6]))),
     ValueError, "sum to 1.1"),
    ("transformation-sampler-type", lambda: C.transformation(np.eye(2), "flip"), TypeError,
     "callable"),
    ("transformation-sampler-rows", lambda: C.transformation(
        np.eye(3), lambda key, xb: xb[:1]), ValueError, "one transformed value per row"),
    ("teacher-nan", lambda: C.teacher(_nan_x()), ValueError, "NaN or Inf"),
    ("masked-base", lambda: C.masked(np.eye(5), "pca", key=jax.random.key(0)), ValueError,
     "base"),
    ("from-conditional-negative", lambda: C.from_conditional(-np.eye(3)), ValueError,
     "negative"),
    ("from-conditional-weights", lambda: C.from_conditional(np.eye(3), weights=[0.5, 0.5, 0.5]),
     ValueError, "sum to 1"),
    # complex input: refused, naming the argument (numpy would drop the imaginary part)
    ("rbf-complex", lambda: C.rbf(np.eye(3) + 1j, 1.0), TypeError, "x: complex"),
    ("knn-complex", lambda: C.knn(np.eye(4) * 1j, 1), TypeError, "x: complex"),
    ("masked-complex", lambda: C.masked(np.eye(5) + 0j, key=jax.random.key(0), gamma=1.0),
     TypeError, "x: complex"),
    ("graph-complex", lambda: C.graph(np.ones((3, 3)) + 1j), TypeError, "adjacency: complex"),
    ("graph-scipy-complex", lambda: C.graph(sp.csr_matrix(np.ones((3, 3)) * (1 + 1j))),
     TypeError, "adjacency: complex"),
    ("graph-weights-complex", lambda: C.graph(edges=np.array([[0, 1]]), weights=[1j]),
     TypeError, "weights: complex"),
    ("graph-edges-complex", lambda: C.graph(edges=np.array([[0, 1j]])), TypeError,
     "edges: complex"),
    ("labels-complex", lambda: C.labels(np.array([0, 1j])), TypeError, "y: complex"),
    ("regression-complex", lambda: C.labels(np.ones(3) * 1j, kind="regression", gamma=1.0),
     TypeError, "y: complex"),
    ("from-conditional-complex", lambda: C.from_conditional(np.eye(3) + 0j), TypeError,
     "conditional: complex"),
    ("from-conditional-scipy-complex", lambda: C.from_conditional(sp.eye(3, dtype=complex)),
     TypeError, "conditional: complex"),
    ("from-conditional-weights-complex", lambda: C.from_conditional(
        np.eye(2), weights=np.array([0.5, 0.5 + 0j])), TypeError, "weights: complex"),
    ("from-kernel-complex", lambda: C.from_kernel(np.eye(3) * 1j, K.RBF(1.0)), TypeError,
     "x: complex"),
    ("teacher-complex", lambda: C.teacher(np.eye(3) + 1j), TypeError, "features: complex"),
    ("transformation-complex", lambda: C.transformation(
        np.eye(2) + 1j, None, enumerate_fn=flip_enum), TypeError, "x: complex"),
    ("combine-weights-complex", lambda: C.combine([C.rbf(np.eye(3), 1.0)] * 2,
                                                  np.array([0.5, 0.5j])), TypeError,
     "weights: complex"),
    ("rows-complex", lambda: C.rbf(np.eye(3), 1.0).conditional_rows(np.eye(3) * 1j),
     TypeError, "x_new: complex"),
]


@pytest.mark.parametrize("name, make, exc, match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises(name, make, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", C.ContextWarning)
        with pytest.raises(exc, match=match):
            make()


def test_gram_index_validation(rng):
    ctx, _, _ = case_rbf(rng)
    with pytest.raises(ValueError, match=r"idx: indices must lie in \[0, 12\)"):
        ctx.gram(jnp.array([0, 12]))
    with pytest.raises(ValueError, match="integer"):
        ctx.gram(jnp.array([0.5]))
    with pytest.raises(ValueError, match="batch"):
        ctx.sample_indices(jax.random.key(0), 0)


def test_continuous_transformation_warns(rng):
    x = rng.standard_normal((5, 2)).astype(np.float32)

    def noise(key, xb):
        return xb + jax.random.normal(key, xb.shape)

    with pytest.warns(C.ContextWarning, match="distinct value"):
        C.transformation(x, noise, key=jax.random.key(0), num_draws=3)


def test_sampler_only_transformation_builds_no_operator(rng):
    """Continuous augmentations: a sampler is all a context needs for SVME; no operator is built
    and asking for one says what an exact operator needs."""
    x = rng.standard_normal((50, 3)).astype(np.float32)

    def noise(key, xb):
        return 0.6 * xb + 0.8 * jax.random.normal(key, xb.shape, xb.dtype)

    ctx = C.transformation(x, noise)
    assert ctx.num_samples == 50 and ctx.shape == (50, None) and ctx.conditional is None
    xb, ab = ctx.sample_pairs(jax.random.key(1), 16)
    assert xb.shape == ab.shape == (16, 3)
    # every x_b is a sample; a_b is its noisy copy (exactly the user's sampler)
    idx = [int(np.argmin(np.abs(x - np.asarray(r)).sum(1))) for r in np.asarray(xb)]
    np.testing.assert_array_equal(x[idx], np.asarray(xb))
    for fn in (ctx.operator, ctx.trivial_right, lambda: jc_contexture(ctx)):
        with pytest.raises(NotImplementedError, match="enumerate_fn"):
            fn()
    with pytest.raises(NotImplementedError):
        ctx.gram(np.arange(4))


def jc_contexture(ctx):
    from jaxcontext import spectrum

    return spectrum.contexture(ctx, 2)
