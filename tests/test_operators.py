"""Operators: products and transposed products against float64 numpy, algebra, pytrees, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxcontext import kernels
from jaxcontext import operators as ops

RTOL = 1e-5


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def rbf_dense(x, y, gamma):
    d2 = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
    return np.exp(-gamma * d2)


def make_cases(rng):
    """(name, operator, float64 dense reference) for every operator kind and composition."""
    m, n = 37, 29
    a = rng.standard_normal((m, n)).astype(np.float32)
    s = sp.random(m, n, density=0.2, random_state=rng, format="lil", dtype=np.float64)
    s[3, :] = 0  # an empty row
    s = s.tocsr().astype(np.float32).astype(np.float64)  # values exactly representable in float32
    s.eliminate_zeros()
    x = rng.standard_normal((m, 3)).astype(np.float32)
    y = rng.standard_normal((n, 3)).astype(np.float32)
    kd = rbf_dense(x, y, 0.4)
    d1 = rng.uniform(0.5, 2.0, m).astype(np.float32)
    d2 = rng.uniform(0.5, 2.0, n).astype(np.float32)
    S, A = ops.sparse_from_scipy(s), ops.dense(a)
    K = ops.kernel_operator(x, y, kernels.RBF(0.4), block_rows=8)  # several tiles, ragged last one
    b = rng.standard_normal((n, 11)).astype(np.float32)
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
@pytest.mark.parametrize("k", [1, 5])
def test_products_match_float64(name, k, rng):
    op, ref = next((o, r) for nm, o, r in make_cases(rng) if nm == name)
    m, n = ref.shape
    assert op.shape == (m, n)
    x = rng.standard_normal((n, k))
    y = rng.standard_normal((m, k))
    assert rel_err(op.matmat(jnp.asarray(x, jnp.float32)), ref @ x) < RTOL
    assert rel_err(op.rmatmat(jnp.asarray(y, jnp.float32)), ref.T @ y) < RTOL
    assert rel_err(op.T.matmat(jnp.asarray(y, jnp.float32)), ref.T @ y) < RTOL
    # vectors, the @ operator, and array @ operator
    assert rel_err(op @ jnp.asarray(x[:, 0], jnp.float32), ref @ x[:, 0]) < RTOL
    assert rel_err(jnp.asarray(y.T, jnp.float32) @ op, y.T @ ref) < RTOL
    assert rel_err(op.to_dense(), ref) < RTOL


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
