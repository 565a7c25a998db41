"""Spectrum metrics (REFERENCE.md section 4) against direct float64 evaluation of the formulas."""

import numpy as np
import pytest

from jaxcontext import spectrum


def tau_by_loop(s, d0, beta):
    s2 = np.asarray(s, np.float64) ** 2
    vals = []
    for d in range(1, d0 + 1):
        first = np.inf if s2[d] >= 1 else 1.0 / (1.0 - s2[d])  # s2[d] is s_{d+1}^2
        vals.append(first + beta * s2[:d].sum() / s2[:d0].sum())
    return np.array(vals)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_tau_matches_formula(rng, beta):
    s = np.sort(rng.uniform(0, 0.99, 80))[::-1]
    r = spectrum.tau(s, d0=64, beta=beta)
    ref = tau_by_loop(s, 64, beta)
    np.testing.assert_allclose(r.tau_d, ref, rtol=1e-12)
    assert r.d == int(np.argmin(ref)) + 1 and r.tau == pytest.approx(ref.min())


def test_tau_extreme_association_is_infinite_until_the_ones_end():
    s = np.r_[np.ones(3), 0.5 ** np.arange(1, 20)]
    r = spectrum.tau(s, d0=10)
    assert np.all(np.isinf(r.tau_d[:2])) and np.isfinite(r.tau_d[2]) and r.d >= 3


def test_tau_rejects_bad_input():
    with pytest.raises(ValueError, match="needs"):
        spectrum.tau(np.linspace(0.9, 0.1, 10), d0=10)
    with pytest.raises(ValueError, match="descending"):
        spectrum.tau(np.linspace(0.1, 0.9, 20), d0=5)
    with pytest.raises(ValueError, match="lie in"):
        spectrum.tau(np.r_[1.5, np.linspace(0.9, 0.1, 20)], d0=5)
    with pytest.raises(ValueError, match="NaN"):
        spectrum.tau(np.r_[np.nan, np.linspace(0.9, 0.1, 20)], d0=5)
    with pytest.raises(ValueError, match="zero"):
        spectrum.tau(np.zeros(20), d0=5)


@pytest.mark.parametrize("lam", [0.05, 0.3, 1.2])
def test_decay_rate_recovers_exponential(lam):
    i = np.arange(1, 60)
    est, r2 = spectrum.decay_rate(np.exp(-lam * i / 2))
    assert est == pytest.approx(lam, rel=1e-10) and r2 == pytest.approx(1.0)


def test_decay_rate_needs_two_nonzero():
    with pytest.raises(ValueError, match="two"):
        spectrum.decay_rate([0.5, 0.0, 0.0])


def test_worst_case_error_formula_and_range():
    s = np.array([0.9, 0.8, 0.5, 0.3, 0.1])
    lo, hi = 1 - 0.9, 1 - np.sqrt((0.81 + 0.64) / 2)
    for eps in np.linspace(lo, hi, 5):
        for d in (1, 2, 3):
            ref = (0.81 - (1 - eps) ** 2) / (0.81 - s[d] ** 2)
            assert spectrum.worst_case_error(s, d, eps) == pytest.approx(ref, rel=1e-12)
    # at eps = 1 - s_1 the contexture is exact: zero error
    assert spectrum.worst_case_error(s, 2, lo) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="Theorem 16"):
        spectrum.worst_case_error(s, 2, 0.5)
    with pytest.raises(ValueError, match="need"):
        spectrum.worst_case_error(s, 5, lo)


def test_tau_default_d0_uses_every_value_given():
    s = np.sort(np.random.default_rng(3).uniform(0, 0.95, 40))[::-1]
    r = spectrum.tau(s)  # 40 values: d0 = 39
    assert r.tau_d.shape == (39,)
    np.testing.assert_allclose(r.tau_d, tau_by_loop(s, 39, 1.0), rtol=1e-12)
    with pytest.raises(ValueError, match="two"):
        spectrum.tau([0.5])


# -- compatibility and ratio trace: traceable, differentiable, checked on concrete input ----------
def _small_context(rng, m=30):
    from jaxcontext import contexts

    P = rng.uniform(size=(m, 12)) ** 3
    return contexts.from_conditional(P / P.sum(axis=1, keepdims=True))


def _np_parts(ctx, phi):
    Z = np.asarray(ctx.operator().to_dense(), np.float64)
    w = np.asarray(ctx.weights, np.float64)
    g = np.sqrt(w)[:, None] * (phi - w @ phi)
    return g.T @ g, (Z.T @ g).T @ (Z.T @ g)


def test_ratio_trace_is_traceable_and_its_gradient_is_right(rng):
    import jax
    import jax.numpy as jnp

    ctx = _small_context(rng)
    phi = rng.standard_normal((30, 3))
    C, B = _np_parts(ctx, phi)
    ref = np.trace(np.linalg.solve(C, B))
    f = jax.jit(lambda p: spectrum.ratio_trace(ctx, p))
    assert float(f(jnp.asarray(phi, jnp.float32))) == pytest.approx(ref, rel=1e-4)
    g = np.asarray(jax.grad(lambda p: spectrum.ratio_trace(ctx, p))(jnp.asarray(phi, jnp.float32)))
    # central differences of the float64 formula in a random direction
    v = rng.standard_normal(phi.shape)
    h = 1e-5
    fd = (np.trace(np.linalg.solve(*_np_parts(ctx, phi + h * v))) -
          np.trace(np.linalg.solve(*_np_parts(ctx, phi - h * v)))) / (2 * h)
    assert float(np.sum(g * v)) == pytest.approx(fd, rel=2e-3, abs=1e-5)


def test_compatibility_is_traceable(rng):
    import jax
    import jax.numpy as jnp

    ctx = _small_context(rng)
    f = rng.standard_normal((30, 2))
    eager = np.asarray(spectrum.compatibility(ctx, f))
    jitted = jax.jit(lambda t: spectrum.compatibility(ctx, t))(jnp.asarray(f, jnp.float32))
    jitted = np.asarray(jitted)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5)
    grad = jax.grad(lambda t: spectrum.compatibility(ctx, t)[0])(jnp.asarray(f, jnp.float32))
    assert np.all(np.isfinite(np.asarray(grad)))
    # reference: rho^2 = <f~, T T* f~> / |f~|^2
    C, B = _np_parts(ctx, f)
    np.testing.assert_allclose(eager**2, np.diag(B) / np.diag(C), rtol=1e-4)


def test_metrics_refuse_complex_and_bad_input(rng):
    ctx = _small_context(rng)
    with pytest.raises(TypeError, match="complex"):
        spectrum.compatibility(ctx, rng.standard_normal(30) + 1j)
    with pytest.raises(TypeError, match="complex"):
        spectrum.ratio_trace(ctx, rng.standard_normal((30, 2)) * 1j)
    with pytest.raises(ValueError, match="shape"):
        spectrum.ratio_trace(ctx, rng.standard_normal((29, 2)))
    with pytest.raises(ValueError, match="singular"):
        spectrum.ratio_trace(ctx, np.repeat(rng.standard_normal((30, 1)), 2, axis=1))
