"""Importance weights of the pair low-rank objectives and ``fit(..., importance=...)``.

The nested acceptance run (scripts/learned_path_acceptance.py, issue 9) draws its inputs from a
wider Gaussian than ``P_X = N(0, 1)`` and corrects with ``w = p_X / q``: these tests check the
weighted estimator against a float64 numpy reference written from the formulas, that constant
weights change nothing, that the weights make the estimates target ``P_X``, and the ``fit`` plumbing
and its errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxcontext as jc
from jaxcontext import contexts, models, training
from jaxcontext import objectives as O

NESTINGS = (None, "joint", "sequential")


def np_weighted_lowrank(f, g, w, nesting, alpha):
    """float64 reference: every expectation a self-normalised weighted mean (halves: even/odd)."""
    f, g, w = (np.asarray(v, np.float64) for v in (f, g, w))

    def wm(v, ww):
        return (ww[:, None] * v).sum(0) / ww.sum()

    fc, gc = f - wm(f, w), g - wm(g, w)
    cdiag = wm(fc * gc, w)

    def mom(v, ww):
        return (v * ww[:, None]).T @ v / ww.sum()

    f1, f2, g1, g2, w1, w2 = fc[0::2], fc[1::2], gc[0::2], gc[1::2], w[0::2], w[1::2]
    P = 0.5 * (mom(f1, w1) * mom(g2, w2) + mom(f2, w2) * mom(g1, w1))
    if nesting is None:
        loss = -2 * cdiag.sum() + P.sum()
    else:
        m = np.cumsum(np.asarray(alpha)[::-1])[::-1]
        idx = np.arange(len(m))
        loss = -2 * (m * cdiag).sum() + (m[np.maximum.outer(idx, idx)] * P).sum()
    s = cdiag / np.sqrt(wm(fc * fc, w) * wm(gc * gc, w))
    return loss, s


@pytest.mark.parametrize("nesting", NESTINGS)
def test_weighted_matches_reference_and_constant_weights_change_nothing(nesting, rng):
    f = rng.normal(size=(64, 4)).astype(np.float32)
    g = (0.6 * f + 0.8 * rng.normal(size=(64, 4))).astype(np.float32)
    w = rng.uniform(0.2, 3.0, size=64).astype(np.float32)
    alpha = np.array([0.4, 0.3, 0.2, 0.1]) if nesting else None
    loss, aux = O.lowrank_loss(f, g, nesting=nesting, weights=alpha, sample_weight=w)
    ref_loss, ref_s = np_weighted_lowrank(f, g, w, nesting, alpha)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(aux["s"]), ref_s, rtol=1e-5, atol=1e-6)
    # constant weights (any scale) are the unweighted estimator, value and gradients
    c = np.full(64, 3.7, np.float32)
    plain, paux = O.lowrank_loss(f, g, nesting=nesting, weights=alpha)
    const, caux = O.lowrank_loss(f, g, nesting=nesting, weights=alpha, sample_weight=c)
    np.testing.assert_allclose(float(const), float(plain), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(caux["s"]), np.asarray(paux["s"]), rtol=1e-5)
    if nesting != "sequential":  # the gradients with the stop_gradient structure suffice
        return

    @jax.jit
    def grads(f, g):
        gp = jax.grad(lambda f, g: O.lowrank_loss(f, g, nesting=nesting)[0], (0, 1))
        gc = jax.grad(
            lambda f, g: O.lowrank_loss(f, g, nesting=nesting, sample_weight=c)[0], (0, 1)
        )
        return gp(f, g), gc(f, g)

    for a, b in zip(*grads(f, g), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_sequential_weighted_gradient_stays_out_of_earlier_columns(rng):
    f = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    w = jnp.asarray(rng.uniform(0.5, 2.0, size=32), jnp.float32)

    # the loss restricted to the last column must not move the first two
    def last_only(f3):
        ff = jnp.concatenate([jax.lax.stop_gradient(f[:, :2]), f3], 1)
        return O.lowrank_loss(ff, g, nesting="sequential", sample_weight=w)[0]

    full, part = jax.jit(
        lambda f: (
            jax.grad(lambda f: O.lowrank_loss(f, g, nesting="sequential", sample_weight=w)[0])(f),
            jax.grad(last_only)(f[:, 2:]),
        )
    )(f)
    np.testing.assert_allclose(np.asarray(full[:, 2:]), np.asarray(part), rtol=1e-4, atol=1e-6)


def test_importance_weights_make_the_estimates_target_px():
    """x ~ N(0, 4), a = rho x + sqrt(1 - rho^2) eps: the weighted s are (rho, rho^2) of N(0, 1)."""
    rho, sigma, b = 0.8, 2.0, 200_000
    k1, k2 = jax.random.split(jax.random.key(0))
    x = sigma * jax.random.normal(k1, (b,))
    a = rho * x + math.sqrt(1 - rho**2) * jax.random.normal(k2, (b,))

    def h(v):  # He_1, He_2 / sqrt(2): the top two singular functions on either side
        return jnp.stack([v, (v**2 - 1) / math.sqrt(2)], 1)

    w = jnp.exp(-0.5 * x**2 * (1 - 1 / sigma**2))
    _, aux = O.lowrank_loss(h(x), h(a), sample_weight=w)
    np.testing.assert_allclose(np.asarray(aux["s"]), [rho, rho**2], atol=0.02)
    _, raw = O.lowrank_loss(h(x), h(a))  # unweighted: the proposal's correlations, not P_X's
    assert float(raw["s"][0]) > rho + 0.1


def test_registry_flags():
    weighted = {n for n in O.NAMES if O.get(n).weighted}
    assert weighted == {"lowrank", "nested_joint", "nested_sequential"}
    assert O.get(lambda batch: (jnp.sum(batch.phi), {}), weighted=True).weighted
    assert not O.get(lambda batch: (jnp.sum(batch.phi), {})).weighted


def _problem(m=512, sigma=2.0, rho=0.8):
    x = sigma * np.asarray(jax.random.normal(jax.random.key(3), (m, 1)))
    sampler = jc.datasets.gaussian_noise(8, 1, rho, key=jax.random.key(0)).info["pair_sampler"]
    return contexts.transformation(x, sampler)


def test_fit_with_importance():
    ctx = _problem()
    enc = models.MLP(1, 3, width=16, depth=1, rngs=nnx.Rngs(0))
    kw = dict(objective="nested_sequential", batch_size=64, steps=3, key=0)
    # the trainer passes the weights to the objective: constant ones are the plain loss
    plain, psi = training.make_trainer(enc, ctx, **kw)
    const, _ = training.make_trainer(
        enc, ctx, importance=lambda x: jnp.full((x.shape[0],), 2.0, x.dtype), **kw
    )
    assert const.batch(ctx, jax.random.key(1))["weight"].shape == (64,)
    st = plain.init(enc, psi)
    args = (st.params, st.rest, ctx, jax.random.key(1))
    (lp, (ap, _)), (lc, (ac, _)) = jax.jit(lambda *a: (plain.loss(*a), const.loss(*a)))(*args)
    np.testing.assert_allclose(float(lc), float(lp), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ac["s"]), np.asarray(ap["s"]), rtol=1e-4, atol=1e-6)
    res = jc.fit(
        enc,
        ctx,
        progress=False,
        log_every=3,
        importance=lambda x: jnp.exp(-0.375 * jnp.sum(x**2, axis=1)),
        **kw,
    )
    assert res.history["s"].shape == (3, 3)
    assert np.all(np.isfinite(res.history["s"]))


def test_fit_importance_errors():
    ctx = _problem()
    enc = models.MLP(1, 3, width=16, depth=1, rngs=nnx.Rngs(0))
    kw = dict(steps=2, batch_size=64, key=0, progress=False)

    def ok(x):
        return jnp.ones((x.shape[0],), x.dtype)

    with pytest.raises(ValueError, match="does not accept importance"):
        jc.fit(enc, ctx, objective="svme", importance=ok, **kw)
    with pytest.raises(ValueError, match=r"must return \(64,\)"):
        jc.fit(enc, ctx, objective="nested_sequential", importance=lambda x: x, **kw)
    with pytest.raises(TypeError, match="importance"):
        jc.fit(enc, ctx, objective="nested_sequential", importance=np.ones(64), **kw)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        O.lowrank_loss(np.ones((4, 2)), np.ones((4, 2)), sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be positive"):
        O.lowrank_loss(np.ones((4, 2)), np.ones((4, 2)), sample_weight=-np.ones(4))
