"""Sparse product kernels (jaxcontext._spmm) vs float64 scipy, directly and via SparseOperator."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from jaxcontext import _spmm
from jaxcontext import operators as ops

# float32 products of short sums; the brief's bound is 1e-5 relative (80 eps = 9.5e-6)
TOL = 80 * float(jnp.finfo(jnp.float32).eps)
KERNELS = _spmm.KERNELS
OP_KERNELS = ("auto", *KERNELS)
# SparseOperator stores the ELL layout once the lead adds the fields (see the helper's report)
HAS_LAYOUT = "layout" in {f.name for f in dataclasses.fields(ops.SparseOperator)}


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    return np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-300)


def awkward_matrix(rng, m=41, n=29, density=0.15):
    """Random sparse matrix with empty rows, empty columns, a dense row and a dense column."""
    a = sp.random(m, n, density=density, random_state=rng, format="lil", dtype=np.float64)
    a[7, :] = rng.standard_normal(n)  # dense row (a hub: goes to the ELL tail)
    a[:, 2] = rng.standard_normal((m, 1))  # dense column (a hub of the transpose)
    a[3, :] = 0.0  # empty row
    a[m - 1, :] = 0.0  # empty last row
    a[:, 5] = 0.0  # empty column
    a = a.tocsr()
    a.eliminate_zeros()
    a.sort_indices()
    return a


def raw(a):
    """The row-sorted arrays of a scipy CSR matrix, as the kernels take them."""
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr)).astype(np.int32)
    return (
        jnp.asarray(rows),
        jnp.asarray(a.indices.astype(np.int32)),
        jnp.asarray(a.data.astype(np.float32)),
        jnp.asarray(a.indptr.astype(np.int32)),
    )


def direct(a, kernel, x):
    rows, cols, vals, indptr = raw(a)
    layout = _spmm.prepare(kernel, rows, cols, vals, indptr, a.shape)
    return _spmm.spmm(rows, cols, vals, indptr, x, a.shape[0], kernel=kernel, layout=layout)


def needs_layout(kernel):
    return pytest.mark.xfail(
        kernel == "ell" and not HAS_LAYOUT,
        reason="SparseOperator does not store the ELL layout yet (fields layout/tlayout)",
        raises=ValueError,
        strict=True,
    )


# --------------------------------------------------------------------------------------------------
# kernels called directly
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("k", [1, 3, 13])
def test_kernel_matches_scipy(rng, kernel, k):
    a = awkward_matrix(rng)
    x = rng.standard_normal((a.shape[1], k)).astype(np.float32)
    ref = a @ x.astype(np.float64)
    got = direct(a, kernel, jnp.asarray(x))
    assert got.shape == (a.shape[0], k)
    assert rel_err(got, ref) < TOL
    assert np.all(np.asarray(got)[[3, a.shape[0] - 1]] == 0.0)  # empty rows stay exactly zero


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_wide_block_chunks(rng, kernel, monkeypatch):
    # more columns than one segment chunk and not a multiple of the BCSR padding width
    monkeypatch.setattr(_spmm, "SEGMENT_CHUNK_COLS", 4)
    a = sp.random(60, 50, density=0.1, random_state=rng, format="csr")
    x = rng.standard_normal((50, 21)).astype(np.float32)
    rows, cols, vals, indptr = raw(a)
    layout = _spmm.prepare(kernel, rows, cols, vals, indptr, a.shape)

    def f(lay, x):
        return _spmm.spmm(rows, cols, vals, indptr, x, 60, kernel=kernel, layout=lay)

    got = jax.jit(f)(layout, jnp.asarray(x))
    assert rel_err(got, a @ x.astype(np.float64)) < TOL


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_all_zero_matrix(kernel):
    a = sp.csr_matrix((5, 4), dtype=np.float64)
    got = direct(a, kernel, jnp.ones((4, 3), jnp.float32))
    np.testing.assert_array_equal(np.asarray(got), np.zeros((5, 3)))


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_grad_is_transpose_product(rng, kernel):
    a = awkward_matrix(rng, m=23, n=17)
    rows, cols, vals, indptr = raw(a)
    layout = _spmm.prepare(kernel, rows, cols, vals, indptr, a.shape)
    w = rng.standard_normal((23, 4))

    def loss(x):
        y = _spmm.spmm(rows, cols, vals, indptr, x, 23, kernel=kernel, layout=layout)
        return jnp.sum(y * jnp.asarray(w, jnp.float32))

    g = jax.grad(loss)(jnp.asarray(rng.standard_normal((17, 4)), jnp.float32))
    assert rel_err(g, a.T @ w) < TOL


def test_ell_tail_and_width_cap(rng):
    # a power-law-like pattern: the hubs exceed the ELL width and go to the COO tail
    m = n = 300
    deg = np.minimum(n, (3 * (np.arange(1, m + 1) ** -0.8) * 60).astype(int) + 1)
    r = np.repeat(np.arange(m), deg)
    c = np.concatenate([rng.choice(n, d, replace=False) for d in deg])
    a = sp.csr_matrix((rng.random(r.size) + 0.5, (r, c)), shape=(m, n))
    a.sort_indices()
    rows, cols, vals, indptr = raw(a)
    lay = _spmm.prepare("ell", rows, cols, vals, indptr, a.shape)
    w = lay.slots.shape[1]
    assert 0 < w < deg.max() and lay.tail.shape[0] == np.maximum(deg - w, 0).sum()
    assert lay.slots.size <= _spmm.ELL_MAX_FILL * a.nnz + m
    # every entry appears exactly once in slots + tail
    used = np.concatenate([np.asarray(lay.slots).ravel(), np.asarray(lay.tail)])
    assert np.array_equal(np.sort(used[used < a.nnz]), np.arange(a.nnz))
    x = rng.standard_normal((n, 5)).astype(np.float32)
    got = _spmm.spmm(rows, cols, vals, indptr, jnp.asarray(x), m, kernel="ell", layout=lay)
    assert rel_err(got, a @ x.astype(np.float64)) < TOL



@pytest.mark.parametrize("llc", [0, 2**10, 32 * 2**20])
def test_ell_wide_block_groups_follow_the_cache(rng, monkeypatch, llc):
    """Wide blocks sum the slots in groups of ELL_UNROLL_WIDE only where the (m, k) accumulator
    fits in the last-level cache (else, or with the cache unknown, one group); both forms are
    the same product."""
    monkeypatch.setattr(_spmm, "last_level_cache_bytes", lambda: llc)
    m, k = 200, 40  # 32 kB accumulator in float32
    want = _spmm.ELL_UNROLL_WIDE if llc >= m * k * 4 else _spmm.ELL_UNROLL_NARROW
    assert _spmm._ell_unroll(m, k, 4) == want
    assert _spmm._ell_unroll(m, _spmm.ELL_WIDE_COLS, 4) == _spmm.ELL_UNROLL_NARROW
    a = sp.random(m, 150, density=0.15, random_state=rng, format="csr")  # ~22 slots a row
    rows, cols, vals, indptr = raw(a)
    lay = _spmm.prepare("ell", rows, cols, vals, indptr, a.shape)
    assert lay.slots.shape[1] > _spmm.ELL_UNROLL_WIDE  # several groups on the scan path
    x = rng.standard_normal((150, k)).astype(np.float32)
    f = jax.jit(lambda lay, x: _spmm.spmm(rows, cols, vals, indptr, x, m, kernel="ell", layout=lay))
    assert rel_err(f(lay, jnp.asarray(x)), a @ x.astype(np.float64)) < TOL

def test_ell_width_is_degree_quantile():
    # raising w past 3 would add 4 slots to save one tail entry (cost 4 < 4 * 1 is not a gain)
    assert _spmm.ell_width(np.array([2, 2, 3, 50]), tail_cost=4.0) == 3
    assert _spmm.ell_width(np.full(10, 7)) == 7  # regular: no tail
    assert _spmm.ell_width(np.zeros(4, int)) == 0
    # cap: w <= ELL_MAX_FILL * mean degree, whatever the tail cost
    deg = np.array([1] * 99 + [10_000])
    assert _spmm.ell_width(deg, tail_cost=1e9) <= _spmm.ELL_MAX_FILL * deg.mean()


def test_prepare_needs_nothing_for_other_kernels(rng):
    rows, cols, vals, indptr = raw(awkward_matrix(rng))
    for kernel in ("segment", "bcsr"):
        assert _spmm.prepare(kernel, rows, cols, vals, indptr, (41, 29)) is None


def test_prepare_checks_its_input():
    with pytest.raises(ValueError, match="indptr"):
        _spmm.prepare("ell", [0, 1], [0, 0], [1.0, 1.0], [0, 1, 2], (3, 2))
    with pytest.raises(ValueError, match="sorted by row"):
        _spmm.prepare("ell", [1, 0], [0, 0], [1.0, 1.0], [0, 1, 2], (2, 2))
    with pytest.raises(ValueError, match="kernel must be"):
        _spmm.prepare("csc", [0], [0], [1.0], [0, 1], (1, 1))


def test_bad_kernel_name():
    one = jnp.array([0])
    with pytest.raises(ValueError, match=r"segment.*'nope'"):
        _spmm.spmm(one, one, jnp.ones(1), jnp.array([0, 1]), jnp.ones((1, 1)), 1, kernel="nope")


def test_ell_without_layout_says_how_to_get_one():
    one = jnp.array([0])
    with pytest.raises(ValueError, match="prepare"):
        _spmm.spmm(one, one, jnp.ones(1), jnp.array([0, 1]), jnp.ones((1, 1)), 1, kernel="ell")


def test_ell_layout_of_the_other_orientation_is_refused(rng):
    a = awkward_matrix(rng)
    rows, cols, vals, indptr = raw(a)
    lay = _spmm.prepare("ell", rows, cols, vals, indptr, a.shape)
    at = a.T.tocsr()
    at.sort_indices()
    trows, tcols, tvals, tindptr = raw(at)
    with pytest.raises(ValueError, match="other orientation"):
        _spmm.spmm(trows, tcols, tvals, tindptr, jnp.ones((41, 2)), 29, kernel="ell", layout=lay)


def test_default_kernel_is_a_layout_free_kernel():
    for backend in ("cpu", "gpu", "tpu"):
        for k in (None, 1, 2, 8, 64, 128):
            name = _spmm.default_kernel(backend, k)
            assert name in KERNELS and name != "ell"


def test_auto_uses_a_prepared_ell_layout(rng):
    a = awkward_matrix(rng)
    rows, cols, vals, indptr = raw(a)
    lay = _spmm.prepare("auto", rows, cols, vals, indptr, a.shape)
    if jax.default_backend() in _spmm.ELL_AUTO_BACKENDS:
        assert isinstance(lay, _spmm.EllLayout)
    else:
        assert lay is None
    ell = _spmm.prepare("ell", rows, cols, vals, indptr, a.shape)
    k0 = _spmm.ELL_MIN_COLS
    assert _spmm.resolve_kernel("auto", k0, ell) == "ell"
    assert _spmm.resolve_kernel("auto", k0 - 1, ell) == _spmm.default_kernel(num_cols=k0 - 1)
    assert _spmm.resolve_kernel("auto", k0, None) == _spmm.default_kernel(num_cols=k0)
    for k in (1, k0 - 1, k0, 9):
        x = rng.standard_normal((a.shape[1], k)).astype(np.float32)
        ref = a @ x.astype(np.float64)
        for layout in (None, ell):
            got = _spmm.spmm(rows, cols, vals, indptr, jnp.asarray(x), a.shape[0], layout=layout)
            assert rel_err(got, ref) < TOL


def test_ell_segment_tail_off_cpu(rng, monkeypatch):
    # the tail goes through "segment" on non-CPU backends; exercise that branch here
    a = awkward_matrix(rng)
    rows, cols, vals, indptr = raw(a)
    lay = _spmm.prepare("ell", rows, cols, vals, indptr, a.shape)
    assert lay.tail.shape[0] > 0  # the dense row overflows the slot table
    monkeypatch.setattr(_spmm.jax, "default_backend", lambda: "gpu")
    x = rng.standard_normal((a.shape[1], 5)).astype(np.float32)
    got = _spmm.spmm(rows, cols, vals, indptr, jnp.asarray(x), a.shape[0], kernel="ell", layout=lay)
    assert rel_err(got, a @ x.astype(np.float64)) < TOL


# --------------------------------------------------------------------------------------------------
# through SparseOperator: A @ X and A^T @ Y, eager, jit (operator as argument) and vmap
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", [pytest.param(k, marks=needs_layout(k)) for k in OP_KERNELS])
def test_operator_products(rng, kernel):
    a = awkward_matrix(rng)
    m, n = a.shape
    A = ops.sparse_from_scipy(a, kernel=kernel)
    X = rng.standard_normal((n, 6)).astype(np.float32)
    Y = rng.standard_normal((m, 6)).astype(np.float32)
    refX, refY = a @ X.astype(np.float64), a.T @ Y.astype(np.float64)
    assert rel_err(A @ X, refX) < TOL
    assert rel_err(A.rmatmat(Y), refY) < TOL
    assert rel_err(A.T @ Y, refY) < TOL
    assert rel_err(A.matvec(X[:, 0]), refX[:, 0]) < TOL
    mm = jax.jit(lambda A, X: A @ X)
    rm = jax.jit(lambda A, Y: A.rmatmat(Y))
    assert rel_err(mm(A, X), refX) < TOL
    assert rel_err(rm(A, Y), refY) < TOL
    assert rel_err(mm(A.T, Y), refY) < TOL


@pytest.mark.parametrize("kernel", [pytest.param(k, marks=needs_layout(k)) for k in OP_KERNELS])
def test_operator_under_vmap(rng, kernel):
    a = awkward_matrix(rng, m=31, n=19)
    A = ops.sparse_from_scipy(a, kernel=kernel)
    Xs = rng.standard_normal((3, 19, 4)).astype(np.float32)
    Ys = rng.standard_normal((3, 31, 4)).astype(np.float32)
    got = jax.jit(jax.vmap(lambda X: A @ X))(Xs)
    gotT = jax.vmap(lambda Y: A.rmatmat(Y))(Ys)
    for i in range(3):
        assert rel_err(got[i], a @ Xs[i].astype(np.float64)) < TOL
        assert rel_err(gotT[i], a.T @ Ys[i].astype(np.float64)) < TOL
    # batched values on a fixed pattern (e.g. a family of reweighted graphs)
    scales = jnp.asarray([0.5, 2.0, -1.0], jnp.float32)
    X = Xs[0]
    out = jax.vmap(lambda s: dataclasses.replace(A, vals=A.vals * s) @ X)(scales)
    for i, s in enumerate([0.5, 2.0, -1.0]):
        assert rel_err(out[i], s * (a @ X.astype(np.float64))) < TOL


@pytest.mark.parametrize("kernel", [pytest.param(k, marks=needs_layout(k)) for k in OP_KERNELS])
def test_operator_scaled_keeps_kernel_exact(rng, kernel):
    # scale() rewrites vals only; a kernel's stored layout must stay valid
    a = awkward_matrix(rng)
    A = ops.sparse_from_scipy(a, kernel=kernel)
    left = rng.random(a.shape[0]) + 0.5
    right = rng.random(a.shape[1]) + 0.5
    B = A.scale(left, right)
    ref = sp.diags(left) @ a @ sp.diags(right)
    X = rng.standard_normal((a.shape[1], 3)).astype(np.float32)
    Y = rng.standard_normal((a.shape[0], 3)).astype(np.float32)
    assert rel_err(B @ X, ref @ X.astype(np.float64)) < TOL
    assert rel_err(B.rmatmat(Y), ref.T @ Y.astype(np.float64)) < TOL


# --------------------------------------------------------------------------------------------------
# issue 12 item 4: off the CPU, "auto" picks the kernel by measuring on the device
# --------------------------------------------------------------------------------------------------
def test_measure_kernels_times_every_kernel(rng):
    a = awkward_matrix(rng)
    coo = a.tocoo()
    lay = _spmm.prepare("ell", coo.row, coo.col, coo.data, a.indptr, a.shape)
    t = _spmm.measure_kernels(
        coo.row, coo.col, a.indptr, a.shape, layout=lay, num_cols=4, repeats=1
    )
    assert set(t) == set(KERNELS) and all(v > 0 for v in t.values())
    t2 = _spmm.measure_kernels(coo.row, coo.col, a.indptr, a.shape, num_cols=4, repeats=1)
    assert set(t2) == {"segment", "bcsr"}  # no layout: no ELL


@pytest.mark.parametrize("winner", ["ell", "bcsr", "segment"])
def test_auto_on_an_unmeasured_backend_follows_the_measurement(rng, monkeypatch, winner):
    """As on a GPU: prepare('auto') keeps ELL's layout iff ELL won, else sets the default."""
    a = awkward_matrix(rng)
    coo = a.tocoo()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(_spmm, "MEASURE_MIN_NNZ", 0)
    monkeypatch.setattr(_spmm, "_MEASURED", {})
    fake = {"segment": 3.0, "bcsr": 2.0, "ell": 1.0}
    fake = {k: (0.5 if k == winner else v + 1.0) for k, v in fake.items()}
    monkeypatch.setattr(_spmm, "measure_kernels", lambda *a, **k: dict(fake))
    lay = _spmm.prepare("auto", coo.row, coo.col, coo.data, a.indptr, a.shape)
    if winner == "ell":
        assert isinstance(lay, _spmm.EllLayout)
        assert _spmm.default_kernel("gpu") == "segment"  # nothing layout-free was measured
    else:
        assert lay is None
        assert _spmm.default_kernel("gpu") == winner
    monkeypatch.setattr(_spmm, "MEASURE_AUTO", False)
    assert _spmm.prepare("auto", coo.row, coo.col, coo.data, a.indptr, a.shape) is None


# --------------------------------------------------------------------------------------------------
# issue 8 item 9 / issue 12: on CPU the solvers fix the kernel of a large sparse operator by timing
# ELL against BCSR at their own block width (the winner depends on the pattern)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("winner", ["ell", "bcsr"])
def test_tune_follows_the_measurement_and_caches_it(rng, monkeypatch, winner):
    a = awkward_matrix(rng)
    coo = a.tocoo()
    lay = _spmm.prepare("ell", coo.row, coo.col, coo.data, a.indptr, a.shape)
    calls = []

    def fake(*args, **kw):
        calls.append(kw)
        return {"ell": 1.0, "bcsr": 2.0} if winner == "ell" else {"ell": 2.0, "bcsr": 1.0}

    monkeypatch.setattr(_spmm, "measure_kernels", fake)
    monkeypatch.setattr(_spmm, "_TUNED", {})
    best, times = _spmm.tune(coo.row, coo.col, a.indptr, a.shape, lay, 8)
    assert best == winner and set(times) == {"ell", "bcsr"}
    assert calls[0]["kernels"] == ("ell", "bcsr") and calls[0]["num_cols"] == 8
    # the same pattern again (a fresh copy of the arrays): cached, not re-measured
    assert _spmm.tune(coo.row.copy(), coo.col.copy(), a.indptr.copy(), a.shape, lay, 8)[0] == best
    assert len(calls) == 1
    # another width, or another pattern, is measured
    _spmm.tune(coo.row, coo.col, a.indptr, a.shape, lay, 16)
    b = awkward_matrix(np.random.default_rng(7))
    cb = b.tocoo()
    lb = _spmm.prepare("ell", cb.row, cb.col, cb.data, b.indptr, b.shape)
    _spmm.tune(cb.row, cb.col, b.indptr, b.shape, lb, 8)
    assert len(calls) == 3
    # without an ELL layout there is nothing to choose
    assert _spmm.tune(coo.row, coo.col, a.indptr, a.shape, None, 8) == ("auto", {})


def test_measure_kernels_subset_really_times(rng):
    a = awkward_matrix(rng)
    coo = a.tocoo()
    lay = _spmm.prepare("ell", coo.row, coo.col, coo.data, a.indptr, a.shape)
    t = _spmm.measure_kernels(
        coo.row, coo.col, a.indptr, a.shape, layout=lay, num_cols=8, repeats=2,
        kernels=("ell", "bcsr"),
    )
    assert set(t) == {"ell", "bcsr"} and all(v > 0 for v in t.values())


def test_operator_tuned_keeps_products_and_skips_small_matrices(rng, monkeypatch):
    a = awkward_matrix(rng)
    op = ops.sparse_from_scipy(a)
    assert op.kernel == "auto"
    # below TUNE_MIN_NNZ: unchanged, no note
    same, note = op.tuned(8)
    assert same is op and note == ""
    monkeypatch.setattr(_spmm, "TUNE_MIN_NNZ", 0)
    monkeypatch.setattr(_spmm, "_TUNED", {})
    fwd = {"ell": 2.0, "bcsr": 1.0}
    bwd = {"ell": 0.5, "bcsr": 3.0}  # the transposed product decides the total: ELL
    seen = []

    def fake(rows, cols, indptr, shape, **kw):
        seen.append(tuple(shape))
        return dict(fwd if tuple(shape) == a.shape else bwd)

    monkeypatch.setattr(_spmm, "measure_kernels", fake)
    t, note = op.tuned(8)
    assert t.kernel == "ell" and "sparse product kernel ell" in note and "8 columns" in note
    assert seen == [a.shape, a.shape[::-1]]
    t1, _ = op.tuned(16, transpose=False)  # forward product only: BCSR
    assert t1.kernel == "bcsr"
    x = rng.standard_normal((a.shape[1], 3))
    y = rng.standard_normal((a.shape[0], 3))
    for tk in (t, t1):
        assert rel_err(tk @ jnp.asarray(x, jnp.float32), a @ x) < TOL
        assert rel_err(tk.T @ jnp.asarray(y, jnp.float32), a.T @ y) < TOL
    # an explicitly chosen kernel is never overridden
    fixed = ops.sparse_from_scipy(a, kernel="segment")
    assert fixed.tuned(8)[0] is fixed
