"""Pytree registration: tree structures tell classes apart (jit's cache relies on it)."""

import jax
import numpy as np

from jaxcontext import kernels as K
from jaxcontext import operators as ops


def test_same_layout_different_classes_are_different_trees():
    # register_dataclass (JAX 0.10.2) makes these equal; jit then may reuse one's executable
    kinds = (K.RBF(0.3), K.Laplacian(0.3), K.Mehler(0.4))
    a, b, c = (jax.tree_util.tree_structure(k) for k in kinds)
    assert a != b and a != c and b != c
    assert jax.tree_util.tree_structure(K.RBF(0.3)) == jax.tree_util.tree_structure(K.RBF(0.7))


def test_jit_never_runs_one_kernel_class_for_another(rng):
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = rng.standard_normal((5, 3)).astype(np.float32)
    kernels = [K.RBF(0.3), K.Laplacian(0.3), K.Mehler(0.4)] * 10
    for i in range(len(kernels)):  # a fresh jit each round: many cache insertions and lookups
        f = jax.jit(lambda k, a, b: k(a, b))
        for kern in kernels[i : i + 3]:
            np.testing.assert_allclose(f(kern, x, y), kern(x, y), rtol=1e-5)


def test_round_trip_keeps_static_fields_and_keys():
    kern = K.Polynomial(degree=3, gamma=2.0, coef0=1.0)
    leaves, tree = jax.tree_util.tree_flatten(kern)
    assert len(leaves) == 2 and jax.tree_util.tree_unflatten(tree, leaves) == kern
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(K.RBF(0.2))[0]]
    assert paths == [(jax.tree_util.GetAttrKey("gamma"),)]
    op = ops.as_operator(np.eye(3, dtype=np.float32))
    assert type(jax.tree_util.tree_map(lambda v: v, op)) is type(op)
