"""Kronecker-product conditionals of state spaces that factor over coordinates (dense or lazy)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import operators as ops
from ..operators import _pytree
from ._common import _float

# state spaces up to this size get a dense conditional; beyond, a Kronecker operator
_DENSE_STATES = 4096


@_pytree
class _KroneckerOperator(ops.LinearOperator):
    """``factors[0] ⊗ factors[1] ⊗ ... ⊗ factors[D-1]`` for ``(D, n, n)`` factors, never stored.

    A product reshapes the ``(n^D, k)`` block to ``(n, ..., n, k)`` and applies one factor per
    axis: ``O(D n^(D+1) k)`` work, ``O(n^D k)`` memory. Row ``i`` is the C-order multi-index of
    ``i`` (axis 0 = first factor = most significant digit).
    """

    factors: jax.Array

    @property
    def shape(self) -> tuple[int, int]:
        d, n = self.factors.shape[0], self.factors.shape[1]
        return (n**d, n**d)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.factors.dtype)

    def _matmat(self, x):
        return _kron_apply(self.factors, x, transpose=False)

    def _rmatmat(self, y):
        return _kron_apply(self.factors, y, transpose=True)


@functools.partial(jax.jit, static_argnames=("transpose",))
def _kron_apply(factors: jax.Array, x: jax.Array, *, transpose: bool) -> jax.Array:
    # jitted: one program per shape instead of many small eager ops. Axis by axis, view the
    # block as (n^ax, n, rest) and mix the middle axis with the factor,
    # y'[a, i, b] = sum_j f[i, j] y[a, j, b], as n broadcast multiply-adds (exact float32
    # arithmetic, no transposes, cheap to compile)
    d, n = factors.shape[0], factors.shape[1]
    k = x.shape[1]
    y = x
    for ax in range(d):
        f = factors[ax].astype(x.dtype)
        f = f.T if transpose else f
        y = y.reshape(n**ax, n, -1)
        y = sum(f[None, :, j, None] * y[:, j, None, :] for j in range(n))
    return y.reshape(n**d, k)


def _kron_dense(factors: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1))
    for f in factors:
        out = np.kron(out, f)
    return out


def _conditional_operator(factor: np.ndarray, dim: int, dense: bool | None) -> Any:
    """``factor^{⊗ dim}``: a dense float64 array (small) or a lazy Kronecker operator."""
    n = factor.shape[0]
    states = n**dim
    if dense is None:
        dense = states <= _DENSE_STATES
    if dense:
        if states * states > 2**28:
            raise MemoryError(
                f"dense=True: the conditional has {states} x {states} entries; use dense=False "
                "(a Kronecker operator)"
            )
        return _kron_dense([factor] * dim)
    return _KroneckerOperator(factors=jnp.asarray(np.stack([factor] * dim), _float()))
