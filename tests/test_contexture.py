"""The contexture of a context: trivial pair removed, known spectra, norms, out-of-sample."""

import warnings

import jax
import numpy as np
import pytest

from jaxcontext import contexts as C
from jaxcontext import datasets, spectrum


def _np_Z(ctx):
    return np.asarray(ctx.operator().to_dense(), np.float64)


def _check_functions(ctx, ct, atol=2e-4):
    w = np.asarray(ctx.weights, np.float64)
    mu = np.asarray(ct.mu, np.float64)
    np.testing.assert_allclose(w @ mu, 0.0, atol=atol)  # mean zero: the constant is removed
    np.testing.assert_allclose(mu.T @ (w[:, None] * mu), np.eye(mu.shape[1]), atol=atol)


def test_cycle_graph_spectrum_without_the_trivial_pair():
    n, d = 40, 9
    prob = datasets.cycle(n)
    ct = spectrum.contexture(prob.context, d, method="dense")
    exact = np.sort(np.abs(np.cos(2 * np.pi * np.arange(n) / n)))[::-1]
    # exact[0] = 1 is the constant; for even n, cos(pi) = -1 gives a second s = 1 that must stay
    np.testing.assert_allclose(np.asarray(ct.s), exact[1 : d + 1], atol=1e-5)
    assert float(ct.s[0]) == pytest.approx(1.0, abs=1e-5)
    _check_functions(prob.context, ct)


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_balanced_labels_keep_the_degenerate_ones(method, rng):
    y = np.repeat(np.arange(5), 40)
    ctx = C.labels(y)
    ct = spectrum.contexture(ctx, 4, method=method, key=0)
    np.testing.assert_allclose(np.asarray(ct.s), 1.0, atol=1e-5)  # s_1..s_4 = 1 next to s_0 = 1
    _check_functions(ctx, ct)
    # the span is the centred class indicators
    ind = (y[:, None] == np.arange(5)[None, :]).astype(float)
    ind -= ind.mean(0)
    q = np.linalg.qr(ind)[0][:, :4]
    mu = np.linalg.qr(np.asarray(ct.mu, np.float64))[0]
    np.testing.assert_allclose(np.linalg.svd(q.T @ mu, compute_uv=False), 1.0, atol=1e-5)


def test_hypercube_contexture_matches_analytic():
    prob = datasets.hypercube(6, 0.2)
    ct = spectrum.contexture(prob.context, 10, method="dense")
    np.testing.assert_allclose(np.asarray(ct.s), prob.singular_values[1:11], rtol=1e-5)


@pytest.mark.parametrize("builder", ["knn", "rbf"])
def test_matches_float64_svd_and_extends_out_of_sample(builder, rng):
    x = rng.standard_normal((120, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", C.ZeroMarginalWarning)
        ctx = C.knn(x, 8) if builder == "knn" else C.rbf(x, 0.5)
    d = 6
    ct = spectrum.contexture(ctx, d, method="lanczos", key=1, tol=1e-5)
    s_ref = np.linalg.svd(_np_Z(ctx), compute_uv=False)
    np.testing.assert_allclose(np.asarray(ct.s), s_ref[1 : d + 1], rtol=1e-4)
    _check_functions(ctx, ct)
    # mu_i(x) = (T nu_i)(x) / s_i reproduces the values at the samples
    np.testing.assert_allclose(np.asarray(ct.evaluate(x)), np.asarray(ct.mu), atol=2e-3)


def test_metrics_on_the_contexture(rng):
    x = rng.standard_normal((150, 2)).astype(np.float32)
    ctx = C.rbf(x, 1.0)
    d = 5
    ct = spectrum.contexture(ctx, d, method="dense")
    s = np.asarray(ct.s, np.float64)
    # compatibility of a singular function is its singular value
    rho = np.asarray(spectrum.compatibility(ctx, ct.mu))
    np.testing.assert_allclose(rho, s, rtol=1e-4)
    # ratio trace: equality for the contexture, strict inequality for a random encoder
    rt = float(spectrum.ratio_trace(ctx, ct.mu))
    assert rt == pytest.approx(float(np.sum(s**2)), rel=1e-4)
    rand = float(spectrum.ratio_trace(ctx, rng.standard_normal((150, d))))
    assert rand < rt
    # the ratio trace is invariant to invertible linear maps of the encoder
    M = rng.standard_normal((d, d)) + 3 * np.eye(d)
    rt2 = float(spectrum.ratio_trace(ctx, np.asarray(ct.mu) @ M))
    assert rt2 == pytest.approx(rt, rel=1e-3)


def test_compatibility_of_a_constant_target_is_an_error(rng):
    ctx = C.labels(np.repeat(np.arange(3), 4))
    with pytest.raises(ValueError, match="constant"):
        spectrum.compatibility(ctx, np.ones(12))
    with pytest.raises(ValueError, match="shape"):
        spectrum.compatibility(ctx, np.ones(11))


def test_d_too_large_is_rejected():
    ctx = C.labels(np.repeat(np.arange(3), 4))
    with pytest.raises(ValueError, match="at most"):
        spectrum.contexture(ctx, 3)


def test_gaussian_noise_quadrature_contexture():
    prob = datasets.gaussian_noise(400, 2, 0.6, sampling="quadrature")
    ct = spectrum.contexture(prob.context, 5, method="dense")
    # degree 1 (x2) and degree 2 (x3): s = rho, rho^2
    np.testing.assert_allclose(
        np.asarray(ct.s) ** 2, [0.36, 0.36, 0.1296, 0.1296, 0.1296], rtol=0.05
    )


def test_truncate_equals_the_smaller_solve():
    """The documented route for a sweep over d: one solve at d_max, then slices (no recompile)."""
    ctx = datasets.cycle(61).context  # odd n: |cos| values come in pairs; d = 4 ends a pair
    big = spectrum.contexture(ctx, 12, method="dense")
    small = spectrum.contexture(ctx, 4, method="dense")
    t = big.truncate(4)
    assert t.d == 4 and t.mu.shape == (61, 4) and t.nu.shape[1] == 4
    assert float(big.s[3]) - float(big.s[4]) > 1e-3
    np.testing.assert_allclose(np.asarray(t.s), np.asarray(small.s), atol=1e-6)
    for a, b in ((t.mu, small.mu), (t.nu, small.nu)):  # same span (projectors)
        qa = np.linalg.qr(np.asarray(a, np.float64))[0]
        qb = np.linalg.qr(np.asarray(b, np.float64))[0]
        np.testing.assert_allclose(qa @ qa.T, qb @ qb.T, atol=1e-4)
    assert t.spectrum.residuals.shape == (4,)
    assert np.asarray(t.spectrum.info.converged).shape == (4,)
    with pytest.raises(ValueError, match="at most 12"):
        big.truncate(13)


@pytest.mark.parametrize("include_self", [False, True])
def test_knn_evaluate_at_training_points_is_mu(precision, include_self):
    """Out-of-sample evaluation at the training points reproduces mu, with duplicated points and
    exact distance ties (integer grid points) in the data (issue 8 item 3)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, 30))
    x[50:60] = x[40:50]  # duplicates
    x[100:130] = rng.integers(-1, 2, size=(30, 30))  # ties among grid points
    x = x.astype(precision)
    ctx = C.knn(x, k=5, include_self=include_self)
    ct = spectrum.contexture(ctx, 6, method="dense")
    got = np.asarray(ct.evaluate(x), np.float64)
    mu = np.asarray(ct.mu, np.float64)
    eps = np.finfo(precision).eps
    np.testing.assert_allclose(got, mu, atol=1e3 * eps * np.abs(mu).max())


def test_label_context_evaluate_takes_the_new_points_labels():
    """A label context's singular functions at new points are functions of their labels:
    ``evaluate(x, y=labels)`` reproduces mu at the training points, gives each new point the
    value of its class, and without labels says what it needs."""
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, size=200)
    x = rng.standard_normal((200, 3)).astype(np.float32)
    ctx = C.labels(y)
    ct = spectrum.contexture(ctx, 3, method="dense")
    mu = np.asarray(ct.mu, np.float64)
    np.testing.assert_allclose(np.asarray(ct.evaluate(x, y=y)), mu, atol=1e-5 * np.abs(mu).max())
    y_new = np.array([4, 0, 0, 3])
    got = np.asarray(ct.evaluate(rng.standard_normal((4, 3)), y=y_new))
    first = [int(np.flatnonzero(y == c)[0]) for c in y_new]
    np.testing.assert_allclose(got, mu[first], atol=1e-5 * np.abs(mu).max())
    with pytest.raises((ValueError, TypeError), match="y"):
        ct.evaluate(x)


@pytest.mark.parametrize("builder", ["knn", "masked", "rbf"])
def test_evaluate_in_bounded_memory_equals_dense_rows(monkeypatch, builder):
    """evaluate never holds all dense rows: kNN averages nu over neighbours, others go in chunks;
    both equal conditional_rows(x) @ nu / s, with duplicated training points among the queries
    (the r-th copy keeps the r-th copy's row even when the copies fall in different chunks)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 4)).astype(np.float32)
    x[20:25] = x[10:15]
    ctx = {
        "knn": lambda: C.knn(x, k=7),
        "masked": lambda: C.masked(x, "knn", k=5, ratio=0.25, num_masks=3, key=jax.random.key(0)),
        "rbf": lambda: C.rbf(x, 0.7),
    }[builder]()
    ct = spectrum.contexture(ctx, 5, method="dense")
    q = np.concatenate([x[:30], rng.standard_normal((40, 4)).astype(np.float32)])
    want = np.asarray(ctx.conditional_rows(q), np.float64) @ np.asarray(ct.nu, np.float64)
    want /= np.asarray(ct.s, np.float64)
    monkeypatch.setattr(spectrum, "EVAL_CHUNK_ENTRIES", 300 * 4)  # chunks of 4 points
    seen = []
    for cls in (C._KnnRows, C._KernelRows):
        orig = cls.new_rows

        def spy(self, x_new, y_new, orig=orig):
            out = orig(self, x_new, y_new)
            seen.append(out.shape[0])
            return out

        monkeypatch.setattr(cls, "new_rows", spy)
    got = np.asarray(ct.evaluate(q), np.float64)
    if builder == "rbf":
        assert seen and max(seen) <= 4  # dense rows only ever 4 points at a time
    else:
        assert seen == []  # kNN: no dense row at all
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(got[:30], np.asarray(ct.mu)[:30], atol=1e-4 * np.abs(want).max())


def _f64_context(builder, rng):
    m = 640  # above svds' dense threshold: the iterative solvers run
    if builder == "knn":
        return C.knn(rng.standard_normal((m, 4)), k=10)
    if builder == "rbf":
        return C.rbf(rng.standard_normal((m, 3)), 0.5)
    if builder == "labels":
        return C.labels(rng.integers(0, 6, m))
    import scipy.sparse as sp

    blocks = np.repeat(np.arange(4), m // 4)
    p = np.where(blocks[:, None] == blocks[None, :], 0.08, 0.01)
    a = np.triu(rng.uniform(size=(m, m)) < p, 1)
    w = sp.csr_matrix((a | a.T) * rng.uniform(0.5, 1.5, (m, m)))
    w = sp.triu(w, 1)
    return C.graph(w + w.T)


@pytest.mark.parametrize("builder", ["knn", "rbf", "labels", "graph"])
def test_float64_contexture_matches_dense_float64(x64, builder):
    """Issue 8 acceptance: with x64 on, float64 data stays float64 end to end, and the contexture
    at tol 1e-12 matches a dense float64 SVD to 1e-10 in the values, 1e-8 in subspace distance."""
    rng = np.random.default_rng(11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", C.ZeroMarginalWarning)
        ctx = _f64_context(builder, rng)
    Z = np.asarray(ctx.operator().to_dense())
    assert Z.dtype == np.float64
    U, s, Vt = np.linalg.svd(Z)
    # d: up to a clear gap (labels: the 5 values equal to 1; others: the largest gap in s_1..s_12)
    d = 5 if builder == "labels" else int(np.argmax(s[1:13] - s[2:14])) + 1
    ct = spectrum.contexture(ctx, d, tol=1e-12, key=0)
    assert ct.s.dtype == np.float64 and ct.mu.dtype == np.float64
    assert bool(np.all(np.asarray(ct.spectrum.info.converged)))
    np.testing.assert_allclose(np.asarray(ct.s), s[1 : d + 1], rtol=0, atol=1e-10)
    w = np.asarray(ctx.weights)
    if builder == "labels":  # s_0..s_5 all equal 1: the span is the centred class indicators
        ref = np.asarray(ctx.conditional.to_dense())  # the one-hot rows of P
    else:
        ref = U[:, 1 : d + 1] / np.sqrt(w)[:, None]  # mu from the dense left vectors
    from jaxcontext import evaluation

    dist = float(evaluation.subspace_distance(np.asarray(ct.mu), ref, weights=w))
    assert dist <= 1e-8, (builder, d, dist)
