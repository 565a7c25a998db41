"""Operators: products against float64 numpy, algebra, pytrees, dtypes, bad input.

Products run in float32 and (``precision`` fixture, x64 on, float64 data) in float64, with
tolerances scaled by the dtype's eps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxcontext import kernels
from jaxcontext import operators as ops

RTOL = 1e-5  # float32


def tol(dtype, f32=RTOL):
    """A float32 tolerance ``f32`` scaled to ``dtype`` by the ratio of the eps (float32: as is)."""
    return f32 * float(np.finfo(dtype).eps) / float(np.finfo(np.float32).eps)


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def rbf_dense(x, y, gamma):
    d2 = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
    return np.exp(-gamma * d2)


def make_cases(rng, dt=np.float32):
    """(name, operator, float64 dense reference) for every operator kind and composition.

    The data have dtype ``dt`` (the sparse matrix is given in float64, values representable in
    float32: ``sparse_from_scipy`` keeps float64 with x64 on, rounds exactly without).
    """
    m, n = 37, 29
    a = rng.standard_normal((m, n)).astype(dt)
    s = sp.random(m, n, density=0.2, random_state=rng, format="lil", dtype=np.float64)
    s[3, :] = 0  # an empty row
    s = s.tocsr().astype(np.float32).astype(np.float64)  # values exactly representable in float32
    s.eliminate_zeros()
    x = rng.standard_normal((m, 3)).astype(dt)
    y = rng.standard_normal((n, 3)).astype(dt)
    kd = rbf_dense(x, y, 0.4)
    d1 = rng.uniform(0.5, 2.0, m).astype(dt)
    d2 = rng.uniform(0.5, 2.0, n).astype(dt)
    S, A = ops.sparse_from_scipy(s), ops.dense(a)
    K = ops.kernel_operator(x, y, kernels.RBF(0.4), block_rows=8)  # several tiles, ragged last one
    b = rng.standard_normal((n, 11)).astype(dt)
    return [
        ("dense", A, a.astype(np.float64)),
        ("sparse", S, s.toarray()),
        ("kernel", K, kd),
        ("diag", ops.diag(d1), np.diag(d1.astype(np.float64))),
        ("transpose", S.T, s.toarray().T),
        ("lazy-transpose", ops.TransposedOperator(A), a.T.astype(np.float64)),
        ("product", ops.diag(d1) @ S @ ops.diag(d2), np.diag(d1) @ s.toarray() @ np.diag(d2)),
        ("product-dense", A @ ops.dense(b), a.astype(np.float64) @ b),
        ("sum", 0.3 * S + 0.7 * K, 0.3 * s.toarray() + 0.7 * kd),
        ("difference", A - S, a - s.toarray()),
        ("hstack", ops.hstack([S, K, A]), np.hstack([s.toarray(), kd, a])),
        ("scaled-sparse", S.scale(left=d1, right=d2), np.diag(d1) @ s.toarray() @ np.diag(d2)),
    ]


CASE_NAMES = [c[0] for c in make_cases(np.random.default_rng(0))]


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("k, precision", [(1, "float32"), (5, "float32"), (5, "float64")],
                         indirect=["precision"])
def test_products_match_float64(name, k, precision, rng):
    """float32 data in float32; float64 data with x64 on: float64 operators, ~1e-14 relative."""
    op, ref = next((o, r) for nm, o, r in make_cases(rng, precision) if nm == name)
    m, n = ref.shape
    assert op.shape == (m, n)
    assert op.dtype == precision
    x = rng.standard_normal((n, k))
    y = rng.standard_normal((m, k))
    r = tol(precision)
    out = op.matmat(jnp.asarray(x, precision))
    assert out.dtype == precision
    assert rel_err(out, ref @ x) < r
    assert rel_err(op.rmatmat(jnp.asarray(y, precision)), ref.T @ y) < r
    assert rel_err(op.T.matmat(jnp.asarray(y, precision)), ref.T @ y) < r
    # vectors, the @ operator, and array @ operator
    assert rel_err(op @ jnp.asarray(x[:, 0], precision), ref @ x[:, 0]) < r
    assert rel_err(jnp.asarray(y.T, precision) @ op, y.T @ ref) < r
    dense = op.to_dense()
    assert dense.dtype == precision
    assert rel_err(dense, ref) < r


@pytest.mark.parametrize("name", CASE_NAMES)
def test_operators_are_pytrees_under_jit_and_vmap(name, rng):
    op, ref = next((o, r) for nm, o, r in make_cases(rng) if nm == name)
    m, n = ref.shape
    xs = rng.standard_normal((4, n, 2)).astype(np.float32)
    f = jax.jit(lambda o, v: o.matmat(v))
    assert rel_err(f(op, xs[0]), ref @ xs[0]) < RTOL
    out = jax.vmap(lambda v: op.matmat(v))(jnp.asarray(xs))
    assert rel_err(out, np.einsum("mn,bnk->bmk", ref, xs)) < RTOL
    leaves, treedef = jax.tree_util.tree_flatten(op)
    op2 = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(op2) is type(op) and op2.shape == op.shape


def test_jit_does_not_retrace_for_new_values(rng):
    import chex

    s = sp.random(20, 20, density=0.3, random_state=rng, format="csr")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(o, v):
        return o.matmat(v)

    for _ in range(3):
        S = ops.sparse_from_scipy(s * rng.uniform())
        f(S, jnp.ones((20, 3)))


def test_sum_weights_are_traced(rng):
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((5, 4)).astype(np.float32)

    def loss(w):
        op = ops.weighted_sum([a, b], w)
        return jnp.sum(op.matmat(jnp.ones((4, 1))))

    g = jax.grad(loss)(jnp.array([0.5, 0.5]))
    np.testing.assert_allclose(g, [a.sum(), b.sum()], rtol=1e-5)


def test_sparse_from_edges_sums_duplicates_and_sorts():
    S = ops.sparse_from_edges([2, 0, 2, 1], [1, 0, 1, 2], [1.0, 2.0, 3.0, 4.0], (3, 3))
    ref = np.zeros((3, 3))
    ref[0, 0], ref[2, 1], ref[1, 2] = 2.0, 4.0, 4.0
    np.testing.assert_array_equal(S.to_dense(), ref)
    assert S.nnz == 3
    np.testing.assert_array_equal(np.asarray(S.indptr), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="duplicate"):
        ops.sparse_from_edges([0, 0], [1, 1], None, (2, 2), sum_duplicates=False)


def test_sparse_row_and_col_sums(rng):
    s = sp.random(30, 20, density=0.2, random_state=rng, format="csr")
    S = ops.sparse_from_scipy(s)
    np.testing.assert_allclose(S.row_sums(), np.asarray(s.sum(1)).ravel(), rtol=1e-5)
    np.testing.assert_allclose(S.col_sums(), np.asarray(s.sum(0)).ravel(), rtol=1e-5)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ops.as_operator(np.zeros(0)),
        lambda: ops.sparse_from_edges([0, 5], [0, 1], None, (3, 3)),
        lambda: ops.sparse_from_edges([0, -1], [0, 1], None, (3, 3)),
        lambda: ops.sparse_from_edges([0, 1], [0, 1, 2]),
        lambda: ops.sparse_from_edges([0, 1], [0, 1], [1.0, np.nan]),
        lambda: ops.sparse_from_edges([0, 1], [0, 1], [1.0, 2.0, 3.0]),
        lambda: ops.sparse_from_edges([], []),
        lambda: ops.sparse_from_edges([0.5], [0], None, (2, 2)),
        lambda: ops.sparse_from_edges([0], [0], None, (2, 2), kernel="nope"),
        lambda: ops.dense(np.zeros((0, 3))),
        lambda: ops.dense(np.array([[1.0, np.inf]])),
        lambda: ops.dense(np.ones(3)),
        lambda: ops.kernel_operator(np.ones((3, 2)), np.ones((3, 4)), kernels.RBF(1.0)),
        lambda: ops.kernel_operator(np.ones((3, 2))),
        lambda: ops.kernel_operator(np.full((3, 2), np.nan), kernel=kernels.RBF(1.0)),
        lambda: ops.product(ops.dense(np.ones((2, 3))), ops.dense(np.ones((2, 3)))),
        lambda: ops.weighted_sum([np.ones((2, 3)), np.ones((3, 2))]),
        lambda: ops.weighted_sum([np.ones((2, 3))], [1.0, 2.0]),
        lambda: ops.hstack([np.ones((2, 3)), np.ones((3, 3))]),
        lambda: ops.dense(np.ones((2, 3))).matmat(np.ones((2, 1))),
        lambda: ops.dense(np.ones((2, 3))).rmatmat(np.ones((3, 1))),
        lambda: ops.dense(np.ones((2, 3))).matmat(np.ones((3, 1, 1))),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(build):
    with pytest.raises((ValueError, TypeError)) as exc:
        build()
    assert len(str(exc.value)) > 10


def test_index_overflow_is_caught():
    from jaxcontext import _validation

    with pytest.raises(OverflowError, match="64-bit"):
        _validation.index_dtype(2**31 + 5)


def test_to_dense_refuses_huge():
    K = ops.kernel_operator(np.zeros((10, 2)), kernel=kernels.RBF(1.0))
    with pytest.raises(MemoryError):
        K.to_dense(max_entries=50)


def test_as_operator_accepts_everything(rng):
    from jax.experimental import sparse as jsparse

    a = rng.standard_normal((6, 5)).astype(np.float32)
    s = sp.random(6, 5, density=0.4, random_state=rng, format="csr")
    for obj, ref in [
        (a, a),
        (jnp.asarray(a), a),
        (s, s.toarray()),
        (s.tocoo(), s.toarray()),
        (jsparse.BCOO.fromdense(jnp.asarray(a)), a),
        (jsparse.BCSR.fromdense(jnp.asarray(a)), a),
    ]:
        op = ops.as_operator(obj)
        assert rel_err(op.to_dense(), ref) < RTOL
    S = ops.sparse_from_scipy(s)
    assert ops.as_operator(S) is S


def test_materialize_respects_budget(rng):
    x = rng.standard_normal((40, 2)).astype(np.float32)
    K = ops.kernel_operator(x, kernel=kernels.RBF(1.0))
    D = ops.materialize(K, budget_bytes=40 * 40 * 4)
    assert isinstance(D, ops.DenseOperator)
    assert rel_err(D.array, rbf_dense(x, x, 1.0)) < RTOL
    assert ops.materialize(K, budget_bytes=100) is K


def test_kernel_operator_default_tiles_keep_memory_bounded():
    K = ops.kernel_operator(np.zeros((100_000, 3), np.float32), kernel=kernels.RBF(1.0))
    # one (block_rows, n) float32 tile within the default 64 MiB budget
    assert K.block_rows * 100_000 * 4 <= 64 * 2**20
    small = ops.kernel_operator(np.zeros((10, 3), np.float32), kernel=kernels.RBF(1.0))
    assert small.block_rows <= 16  # no padding far past m for small inputs


def test_plain_function_kernel_is_wrapped(rng):
    x = rng.standard_normal((9, 2)).astype(np.float32)
    K = ops.kernel_operator(x, kernel=lambda a, b: a @ b.T)
    out = jax.jit(lambda o: o.to_dense())(K)
    assert rel_err(out, x.astype(np.float64) @ x.T) < RTOL


def test_operator_dtypes_follow_the_data(rng, precision):
    """float64 data: float64 with x64 on, float32 without; float32 data: float32 always;
    integer data: JAX's default float dtype; scalars and sum weights take the operator's dtype."""
    from jax.experimental import sparse as jsparse

    from jaxcontext import _validation

    default = np.dtype(jnp.zeros((), float).dtype)
    assert default == precision
    a64 = rng.standard_normal((5, 4))
    a32 = a64.astype(np.float32)
    ai = rng.integers(0, 3, (5, 4))
    s64 = sp.random(5, 4, density=0.5, random_state=rng, format="csr")
    got = {
        "dense-f64": ops.as_operator(a64),
        "dense-f32": ops.as_operator(a32),
        "dense-int": ops.as_operator(ai),
        "scipy-f64": ops.as_operator(s64),
        "scipy-f32": ops.as_operator(s64.astype(np.float32)),
        "scipy-int": ops.as_operator(sp.csr_matrix(ai)),
        "bcoo-f32": ops.as_operator(jsparse.BCOO.fromdense(jnp.asarray(a32))),
        "edges-none": ops.sparse_from_edges([0, 1], [1, 0], None, (2, 2)),
        "edges-f64": ops.sparse_from_edges([0, 1], [1, 0], np.array([0.5, 2.0]), (2, 2)),
        "edges-f32": ops.sparse_from_edges([0, 1], [1, 0], np.float32([0.5, 2.0]), (2, 2)),
        "edges-int": ops.sparse_from_edges([0, 1], [1, 0], [1, 2], (2, 2)),
        "diag-f64": ops.diag(a64[:, 0]),
        "diag-int": ops.diag(ai[:, 0]),
        "identity": ops.identity(3),
        "kernel-int": ops.kernel_operator(ai, kernel=kernels.RBF(0.5)),
        "kernel-f32": ops.kernel_operator(a32, kernel=kernels.RBF(0.5)),
        "scaled-f32": 0.5 * ops.as_operator(a32),
        "sum-f32": ops.weighted_sum([a32, a32], np.array([0.3, 0.7])),  # float64 weights
        "difference-f32": ops.as_operator(a32) - ops.as_operator(a32),
        "product-f32-f64": ops.as_operator(a32) @ ops.as_operator(a64.T),
        "kernel-f64": ops.kernel_operator(a64, kernel=kernels.RBF(0.5)),
    }
    want = {k: (np.dtype(np.float32) if "f32" in k and "f64" not in k else precision)
            for k in got}
    assert {k: str(o.dtype) for k, o in got.items()} == {k: str(v) for k, v in want.items()}
    assert ops.kernel_operator(ai, kernel=kernels.RBF(0.5)).x.dtype == precision
    # the products have the operator's dtype; integer operands are promoted
    assert got["scaled-f32"].matmat(np.ones(4, np.float32)).dtype == np.float32
    assert got["dense-int"].matmat(np.ones(4, np.int32)).dtype == precision
    np.testing.assert_array_equal(got["edges-int"].to_dense(), [[0, 1], [2, 0]])
    # the shared input policy: integers become the default float dtype, floats keep theirs
    assert _validation.as_float_array(np.arange(3), "x").dtype == default
    assert _validation.as_float_array(np.ones(2, bool), "x").dtype == default
    assert _validation.as_float_array(a32, "x").dtype == np.float32
    assert _validation.as_float_array(a64, "x").dtype == np.float64  # JAX casts it on entry
    assert _validation.float_dtype(np.float64) == precision
    assert _validation.float_dtype(np.int64) == default


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: ops.as_operator(np.ones((2, 2)) * 1j), "a"),
        (lambda: ops.dense(jnp.ones((2, 2), jnp.complex64)), "a"),
        (lambda: ops.as_operator(sp.csr_matrix(np.eye(2) * (1 + 1j))), "a"),
        (lambda: ops.sparse_from_scipy(sp.eye(2, dtype=complex)), "mat"),
        (lambda: ops.sparse(np.eye(2) + 0j), "a"),
        (lambda: ops.sparse_from_edges([0], [1], [1j], (2, 2)), "vals"),
        (lambda: ops.sparse_from_edges([0j], [1], None, (2, 2)), "rows"),
        (lambda: ops.diag(np.ones(2) + 0j), "d"),
        (lambda: ops.kernel_operator(np.ones((2, 2)) * 1j, kernel=kernels.RBF(1.0)), "x"),
        (lambda: ops.kernel_operator(np.ones((2, 2)), np.ones((2, 2)) + 0j,
                                     kernel=kernels.RBF(1.0)), "y"),
        (lambda: ops.weighted_sum([np.eye(2)], np.array([1j])), "weights"),
        (lambda: ops.low_rank(np.ones(2) * 1j, np.ones(2)), "left"),
    ],
    ids=["as-operator-dense", "dense-jax", "as-operator-scipy", "sparse-from-scipy",
         "sparse-dense", "edges-vals", "edges-rows", "diag", "kernel-x", "kernel-y",
         "weighted-sum", "low-rank"],
)
def test_complex_input_is_refused_naming_the_argument(build, name):
    with pytest.raises(TypeError, match=f"^{name}: complex input"):
        build()
