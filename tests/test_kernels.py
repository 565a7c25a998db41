"""Tile kernels against float64 numpy formulas, Mehler's known spectrum, pytrees, bad input.

Kernel values are checked in float32 and (``precision`` fixture, x64 on, float64 points) in float64,
with tolerances scaled by the dtype's eps; tiles have the dtype of their points.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import hermite_e as He

from jaxcontext import kernels as K

RTOL = 1e-5  # float32


def tol(dtype, f32=RTOL):
    """A float32 tolerance ``f32`` scaled to ``dtype`` by the ratio of the eps (float32: as is)."""
    return f32 * float(np.finfo(dtype).eps) / float(np.finfo(np.float32).eps)


def rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def d2_np(x, y):
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def mehler_np(x, y, rho):
    """Mehler's formula per coordinate (REFERENCE.md section 7), product over coordinates."""
    t = rho**2
    x = np.asarray(x, np.float64)[:, None, :]
    y = np.asarray(y, np.float64)[None, :, :]
    e = (2 * t * x * y - t**2 * (x**2 + y**2)) / (2 * (1 - t**2))
    return np.prod(np.exp(e) / np.sqrt(1 - t**2), axis=-1)


@pytest.fixture
def xy(rng):
    x = rng.standard_normal((13, 4)).astype(np.float32)
    y = rng.standard_normal((9, 4)).astype(np.float32)
    return x, y


@pytest.fixture
def xy_p(rng, precision):
    """Points in the dtype under test (float64 inside ``jax.enable_x64``)."""
    x = rng.standard_normal((13, 4)).astype(precision)
    y = rng.standard_normal((9, 4)).astype(precision)
    return x, y


def test_sq_distances_match_numpy_and_are_nonnegative(xy_p, precision):
    x, y = xy_p
    d = K.sq_distances(jnp.asarray(x), jnp.asarray(y))
    assert d.dtype == precision
    assert rel_err(d, d2_np(x, y)) < tol(precision)
    dd = np.asarray(K.sq_distances(jnp.asarray(x), jnp.asarray(x)))
    assert dd.min() >= 0.0
    assert np.abs(np.diag(dd)).max() < tol(precision)


@pytest.mark.parametrize(
    "kernel, ref",
    [
        (K.RBF(0.7), lambda x, y: np.exp(-0.7 * d2_np(x, y))),
        (K.Laplacian(0.4), lambda x, y: np.exp(-0.4 * np.sqrt(d2_np(x, y)))),
        (K.Linear(), lambda x, y: np.asarray(x, np.float64) @ np.asarray(y, np.float64).T),
        (
            K.Polynomial(degree=3, gamma=0.5, coef0=1.5),
            lambda x, y: (0.5 * np.asarray(x, np.float64) @ np.asarray(y, np.float64).T + 1.5)
            ** 3,
        ),
        (K.Mehler(0.6), lambda x, y: mehler_np(x, y, 0.6)),
        (K.Mehler(-0.3), lambda x, y: mehler_np(x, y, -0.3)),
    ],
    ids=["rbf", "laplacian", "linear", "polynomial", "mehler", "mehler-negative-rho"],
)
def test_kernels_match_numpy(kernel, ref, xy_p, precision):
    x, y = xy_p
    got = kernel(jnp.asarray(x), jnp.asarray(y))
    assert got.shape == (13, 9)
    assert got.dtype == precision
    assert rel_err(got, ref(x, y)) < tol(precision)
    masked = K.Masked(base=kernel, mask=jnp.asarray([True, False, True, True]))
    assert masked(jnp.asarray(x), jnp.asarray(y)).dtype == precision


@pytest.mark.parametrize("kernel", [K.RBF(0.7), K.Laplacian(0.4), K.Mehler(0.6)],
                         ids=["rbf", "laplacian", "mehler"])
def test_log_is_log_of_kernel_and_does_not_underflow(kernel, xy_p, precision):
    x, y = xy_p
    lg = kernel.log(jnp.asarray(x), jnp.asarray(y))
    assert lg.dtype == precision
    lg = np.asarray(lg, np.float64)
    assert np.abs(lg - np.log(np.asarray(kernel(x, y), np.float64))).max() < tol(precision, 1e-4)
    far = jnp.full((1, 4), 1e5 if precision == np.float64 else 1000.0, precision)
    assert float(kernel(far, jnp.zeros((1, 4), precision))[0, 0]) == 0.0  # the kernel underflows
    lfar = float(kernel.log(far, jnp.zeros((1, 4), precision))[0, 0])  # its log does not
    assert np.isfinite(lfar) and lfar < -100


def test_masked_kernel_is_base_kernel_on_kept_features(xy):
    x, y = xy
    mask = np.array([True, False, True, False])
    for base in (K.RBF(0.5), K.Laplacian(0.5), K.Linear(), K.Polynomial(degree=2)):
        got = K.Masked(base=base, mask=jnp.asarray(mask))(jnp.asarray(x), jnp.asarray(y))
        want = base(jnp.asarray(x[:, mask]), jnp.asarray(y[:, mask]))
        assert rel_err(got, want) < 1e-6


def test_mehler_is_hermite_series():
    """k(x, y) = sum_n t^n He_n(x) He_n(y) / n! in one dimension (t = rho^2)."""
    rho = 0.5
    t = rho**2
    x = np.linspace(-2.5, 2.5, 11)
    series = sum(
        t**n * np.outer(He.hermeval(x, [0] * n + [1]), He.hermeval(x, [0] * n + [1]))
        / math.factorial(n)
        for n in range(60)
    )
    got = K.Mehler(rho)(jnp.asarray(x[:, None], jnp.float32), jnp.asarray(x[:, None], jnp.float32))
    assert rel_err(got, series) < 1e-5


def _gauss_rule(n):
    nodes, weights = He.hermegauss(n)  # weight exp(-x^2/2)
    return nodes, weights / math.sqrt(2 * math.pi)  # probability weights of N(0, 1)


def test_mehler_integrates_to_one_under_the_gaussian():
    """E_{y ~ N(0, I)} k(x, y) = 1: only the constant Hermite term survives."""
    nodes, wts = _gauss_rule(60)
    x = np.array([[-1.5], [0.0], [0.7], [2.0]])
    k = np.asarray(K.Mehler(0.7)(jnp.asarray(x, jnp.float32), jnp.asarray(nodes[:, None],
                                                                            jnp.float32)))
    np.testing.assert_allclose(k.astype(np.float64) @ wts, 1.0, rtol=1e-4)


@pytest.mark.parametrize("dim", [1, 2])
def test_mehler_operator_has_known_spectrum(dim):
    """Eigenvalues of the integral operator on L2(N(0, I_D)) are t^n, multiplicity C(n+D-1, D-1)."""
    rho = 0.6
    t = rho**2
    nodes, wts = _gauss_rule(40 if dim == 1 else 24)
    if dim == 2:
        gx, gy = np.meshgrid(nodes, nodes, indexing="ij")
        pts = np.stack([gx.ravel(), gy.ravel()], 1)
        w = np.outer(wts, wts).ravel()
    else:
        pts, w = nodes[:, None], wts
    k = np.asarray(K.Mehler(rho)(jnp.asarray(pts, jnp.float32), jnp.asarray(pts, jnp.float32)),
                   np.float64)
    sw = np.sqrt(w)
    ev = np.sort(np.linalg.eigvalsh(sw[:, None] * k * sw[None, :]))[::-1]
    want = np.concatenate([[t**n] * math.comb(n + dim - 1, dim - 1) for n in range(5)])
    np.testing.assert_allclose(ev[: want.size], want, atol=2e-5)


def test_kernels_are_pytrees_with_traced_parameters(xy):
    x, y = xy
    f = jax.jit(lambda kern, a, b: kern(a, b))
    for kern in (K.RBF(0.3), K.Laplacian(0.3), K.Mehler(0.4), K.Polynomial(degree=2)):
        leaves, tree = jax.tree_util.tree_flatten(kern)
        assert jax.tree_util.tree_unflatten(tree, leaves) == kern
        assert rel_err(f(kern, x, y), kern(jnp.asarray(x), jnp.asarray(y))) < 1e-6
    g = jax.grad(lambda gamma: K.RBF(gamma)(jnp.asarray(x), jnp.asarray(x)).sum())(0.3)
    want = -(d2_np(x, x) * np.exp(-0.3 * d2_np(x, x))).sum()
    assert abs(float(g) - want) / abs(want) < 1e-4
    # the Laplacian's gradient in x is finite on the diagonal (distance 0)
    gx = jax.grad(lambda a: K.Laplacian(1.0)(a, a).sum())(jnp.asarray(x))
    assert np.all(np.isfinite(np.asarray(gx)))


def test_polynomial_degree_is_static():
    kern = K.Polynomial(degree=3, gamma=1.0, coef0=0.0)
    leaves = jax.tree_util.tree_leaves(kern)
    assert len(leaves) == 2  # gamma, coef0; degree lives in the treedef


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: K.RBF(-1.0), "gamma"),
        (lambda: K.RBF(float("nan")), "gamma"),
        (lambda: K.Laplacian(0.0), "gamma"),
        (lambda: K.Mehler(1.0), "rho"),
        (lambda: K.Mehler(-1.5), "rho"),
        (lambda: K.Polynomial(degree=0), "degree"),
        (lambda: K.Polynomial(degree=2.5), "degree"),
        (lambda: K.Polynomial(degree=2, coef0=-1.0), "coef0"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_validation_skips_traced_parameters():
    # inside jit the parameter is a tracer and is not checked (nor does the check fail)
    out = jax.jit(lambda r: K.Mehler(r)(jnp.ones((1, 1)), jnp.ones((1, 1))))(0.5)
    assert np.isfinite(float(out[0, 0]))
