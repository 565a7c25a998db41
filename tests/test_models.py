"""Encoders (Flax NNX): shapes, parameter counts against the layer formulas, options, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcontext import models


def mlp_params(D, d, w, depth):
    dims = [D] + [w] * depth + [d]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_mlp_shapes_and_count(depth):
    enc = models.MLP(3, 5, width=16, depth=depth, rngs=nnx.Rngs(0))
    assert enc(jnp.ones((4, 3))).shape == (4, 5)
    assert models.num_params(enc) == mlp_params(3, 5, 16, depth)


def test_mlp_skip_adds_the_input_of_each_later_hidden_layer():
    a = models.MLP(2, 3, width=8, depth=3, rngs=nnx.Rngs(1), skip=True, activation="tanh")
    b = models.MLP(2, 3, width=8, depth=3, rngs=nnx.Rngs(1), skip=False, activation="tanh")
    x = jax.random.normal(jax.random.key(0), (5, 2))
    # same parameters, different wiring
    h = jnp.tanh(a.hidden[0](x))
    for layer in a.hidden[1:]:
        h = h + jnp.tanh(layer(h))
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(a.out(h)), rtol=1e-6)
    assert not np.allclose(np.asarray(a(x)), np.asarray(b(x)))


def test_residual_mlp_and_cnn():
    r = models.ResidualMLP(4, 6, width=16, depth=2, rngs=nnx.Rngs(0))
    assert r(jnp.ones((3, 4))).shape == (3, 6)
    # inp + 2 blocks x (norm, up, down) + final norm + out
    count = (4 * 16 + 16) + 2 * (2 * 16 + 16 * 32 + 32 + 32 * 16 + 16) + 2 * 16 + (16 * 6 + 6)
    assert models.num_params(r) == count
    c = models.CNN((8, 8), 7, rngs=nnx.Rngs(0), channels=4, width=16)
    x = jax.random.normal(jax.random.key(1), (2, 64))
    y = c(x)
    assert y.shape == (2, 7)
    np.testing.assert_allclose(np.asarray(c(x.reshape(2, 8, 8))), np.asarray(y), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(c(x.reshape(2, 8, 8, 1))), np.asarray(y), rtol=1e-6)
    with pytest.raises(ValueError, match="images"):
        c(jnp.ones((2, 63)))


def test_embedding_and_fresh_like():
    e = models.Embedding(10, 3, rngs=nnx.Rngs(0))
    assert e(jnp.array([0, 9, 3])).shape == (3, 3)
    with pytest.raises(ValueError, match="integer"):
        e(jnp.ones((3,)))
    enc = models.MLP(2, 4, width=8, depth=2, rngs=nnx.Rngs(0), activation="gelu")
    f = models.fresh_like(enc, nnx.Rngs(1))
    assert type(f) is models.MLP and f.config == enc.config
    assert models.num_params(f) == models.num_params(enc)
    assert not np.allclose(np.asarray(f.out.kernel[...]), np.asarray(enc.out.kernel[...]))
    for m in (
        models.CNN((8, 8), 3, rngs=nnx.Rngs(0)),
        e,
        models.ResidualMLP(2, 3, width=8, depth=1, rngs=nnx.Rngs(0)),
    ):
        assert models.fresh_like(m, nnx.Rngs(2)).config == m.config


def test_family_spans_sizes_sorted_by_count():
    fam = models.family(8, 4, widths=[16, 64, 256], depths=[1, 3], activation="tanh", skip=True)
    assert len(fam) == 6
    counts = [s.params for s in fam]
    assert counts == sorted(counts) and counts[-1] / counts[0] > 100
    for s in fam:
        m = s.make(nnx.Rngs(0))
        assert models.num_params(m) == s.params == mlp_params(8, 4, s.width, s.depth)
    assert models.family(2, 2, widths=[8], depths=[2], kind="resmlp")[0].name == "resmlp-w8-d2"


def test_float64_parameters(precision):
    enc = models.MLP(2, 3, width=8, depth=2, rngs=nnx.Rngs(0), param_dtype=precision)
    x = jnp.ones((4, 2), precision)
    assert enc(x).dtype == precision


def test_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        models.MLP(2, 3, width=0, depth=1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="rngs"):
        models.MLP(2, 3, width=4, depth=1, rngs=0)
    with pytest.raises(ValueError, match="activation"):
        models.MLP(2, 3, width=4, depth=1, rngs=nnx.Rngs(0), activation="nope")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        models.MLP(2, 3, width=4, depth=1, rngs=nnx.Rngs(0))(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="kind"):
        models.family(2, 2, widths=[8], depths=[1], kind="transformer")
